"""The reference evaluator: every type, modifier and prefix on small readable data."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from helios_conformance import Unsupported
from helios_conformance.search import (
    Prefix,
    date_matches,
    date_range,
    matches,
    number_matches,
    parse_query,
    precision_range,
)

Search = Callable[[list[dict[str, Any]], str], set[str]]


def patient(resource_id: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": resource_id, **fields}


def observation(resource_id: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": resource_id, "status": "final",
            "code": {"text": "x"}, **fields}  # fmt: skip


PEOPLE = [
    patient("lee", name=[{"family": "Lee", "given": ["Ann"]}], gender="female", birthDate="1985-07-20"),
    patient("leeds", name=[{"family": "Leeds"}], gender="male", birthDate="1985"),
    patient("chavez", name=[{"family": "Chávez"}], gender="male"),
    patient("anon"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("family=lee", {"lee", "leeds"}),
        ("family:exact=Lee", {"lee"}),
        ("family:exact=lee", set()),
        ("family:contains=EED", {"leeds"}),
        ("family=chavez", {"chavez"}),
        ("name=ann", {"lee"}),
        ("family=lee,chav", {"lee", "leeds", "chavez"}),
        ("family=lee&family=leeds", {"leeds"}),
        ("family:missing=true", {"anon"}),
        ("gender=male", {"leeds", "chavez"}),
        ("gender:not=male", {"lee", "anon"}),
        ("gender=http://hl7.org/fhir/administrative-gender|male", set()),
        ("_id=lee,anon", {"lee", "anon"}),
    ],
)
def test_strings_and_tokens(search: Search, query: str, expected: set[str]) -> None:
    assert search(PEOPLE, query) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("birthdate=1985", {"lee", "leeds"}),
        ("birthdate=1985-07", {"lee"}),
        ("birthdate=gt1985-07-20", {"leeds"}),
        ("birthdate=ge1985-07-20", {"lee", "leeds"}),
        ("birthdate=lt1985-07-20", {"leeds"}),
        ("birthdate=sa1984", {"lee", "leeds"}),
        ("birthdate=eb1986", {"lee", "leeds"}),
        ("birthdate=ne1985-07-20", {"leeds"}),
        ("birthdate:missing=false", {"lee", "leeds"}),
    ],
)
def test_dates(search: Search, query: str, expected: set[str]) -> None:
    assert search(PEOPLE, query) == expected


def _range(text: str) -> tuple[datetime, datetime]:
    return date_range(text)


@pytest.mark.parametrize(
    ("prefix", "search_value", "target", "expected"),
    [
        (Prefix.EQ, "2013", ("2013-06-01", "2013-06-02"), True),
        (Prefix.EQ, "2013", ("2012-12-31T23:00:00Z", "2013-01-01T01:00:00Z"), False),
        (Prefix.GT, "2013", ("2013-12-31T23:00:00Z", "2014-01-01T01:00:00Z"), True),
        (Prefix.LT, "2013", ("2012-12-31T23:00:00Z", "2013-01-01T01:00:00Z"), True),
        (Prefix.SA, "2013", ("2014-01-01", "2014-02-01"), True),
        (Prefix.EB, "2013", ("2012-01-01", "2012-12-31"), True),
        (Prefix.GT, "2013", ("2010", None), True),
        (Prefix.SA, "2013", ("2014", None), True),
        (Prefix.EQ, "2013", ("2013", None), False),
        (Prefix.LT, "2013", (None, "2012"), True),
    ],
)
def test_date_range_rules(
    prefix: Prefix, search_value: str, target: tuple[str | None, str | None], expected: bool
) -> None:
    low, high = _range(search_value)
    row_low = _range(target[0])[0] if target[0] else None
    row_high = _range(target[1])[1] if target[1] else None
    assert date_matches(prefix, low, high, row_low, row_high) is expected


def test_time_zones_are_respected(search: Search) -> None:
    resources = [observation("tz", effectiveDateTime="2013-01-14T23:30:00-05:00")]
    assert search(resources, "date=2013-01-15") == {"tz"}
    assert search(resources, "date=2013-01-14") == set()


def test_period_is_one_range_with_open_ends(search: Search) -> None:
    resources = [
        observation("open", effectivePeriod={"start": "2010-01-01"}),
        observation("closed", effectivePeriod={"start": "2010-01-01", "end": "2010-06-30"}),
    ]
    assert search(resources, "date=gt2020") == {"open"}
    assert search(resources, "date=2010") == {"closed"}
    assert search(resources, "date=le2010-03") == {"open", "closed"}


@pytest.mark.parametrize(
    ("prefix", "value", "x", "expected"),
    [
        (Prefix.EQ, "100", "99.5", True),
        (Prefix.EQ, "100", "100.5", False),
        (Prefix.EQ, "100.0", "100.04", True),
        (Prefix.EQ, "100.0", "100.06", False),
        (Prefix.NE, "100", "101", True),
        (Prefix.GT, "100", "100.4", True),
        (Prefix.GT, "100", "100", False),
        (Prefix.GE, "100", "100", True),
        (Prefix.LT, "100", "99.9", True),
        (Prefix.LE, "100", "100", True),
        (Prefix.AP, "100", "109", True),
        (Prefix.AP, "100", "111", False),
    ],
)
def test_number_rules(prefix: Prefix, value: str, x: str, expected: bool) -> None:
    number = Decimal(value)
    low, high = precision_range(number)
    assert number_matches(prefix, number, low, high, Decimal(x)) is expected


def test_quantities_compare_through_ucum(search: Search) -> None:
    ucum = "http://unitsofmeasure.org"
    resources = [
        observation(
            "mg", valueQuantity={"value": 5400, "system": ucum, "code": "mg", "unit": "mg"}
        ),
        observation("g", valueQuantity={"value": 5.4, "system": ucum, "code": "g"}),
        observation("cel", valueQuantity={"value": 37, "system": ucum, "code": "Cel"}),
    ]
    assert search(resources, f"value-quantity=5.4|{ucum}|g") == {"mg", "g"}
    assert search(resources, f"value-quantity=gt5|{ucum}|g") == {"mg", "g"}
    assert search(resources, "value-quantity=5.4||g") == {"g"}
    assert search(resources, "value-quantity=5400||mg") == {"mg"}
    assert search(resources, f"value-quantity=37|{ucum}|Cel") == {"cel"}
    assert search(resources, "value-quantity=37") == {"cel"}


def test_references(search: Search) -> None:
    resources = [
        observation("rel", subject={"reference": "Patient/p1"}),
        observation("ver", subject={"reference": "Patient/p1/_history/3"}),
        observation("abs", subject={"reference": "http://other.org/fhir/Patient/p1"}),
        observation("grp", subject={"reference": "Group/p1"}),
        observation("ident", subject={"identifier": {"system": "urn:mrn", "value": "7"}}),
    ]
    assert search(resources, "subject=Patient/p1") == {"rel", "ver"}
    assert search(resources, "subject=p1") == {"rel", "ver", "grp"}
    assert search(resources, "subject:Patient=p1") == {"rel", "ver"}
    assert search(resources, "subject=http://other.org/fhir/Patient/p1") == {"abs"}
    assert search(resources, "subject:identifier=urn:mrn|7") == {"ident"}
    assert search(resources, "patient=p1") == {"rel", "ver"}


def test_token_modifiers(search: Search) -> None:
    resources = [
        patient("mr", identifier=[{"system": "urn:h", "value": "123",
                 "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}],
                          "text": "Medical record number"}}]),
        patient("dl", identifier=[{"system": "urn:dl", "value": "123",
                 "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "DL"}]}}]),
    ]  # fmt: skip
    assert search(resources, "identifier=123") == {"mr", "dl"}
    assert search(resources, "identifier=urn:h|") == {"mr"}
    assert search(
        resources, "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|123"
    ) == {"mr"}
    assert search(resources, "identifier:text=medical rec") == {"mr"}
    conditions = [
        {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p"},
         "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003", "display": "Hypertensive disorder"}],
                  "text": "High blood pressure"}},
    ]  # fmt: skip
    assert search(conditions, "code:text=high blood") == {"c1"}
    assert search(conditions, "code:text=hypertensive") == {"c1"}
    assert search(conditions, "code:code-text=3834") == {"c1"}
    assert search(conditions, "code:text-advanced=pressures") == {"c1"}


def test_uri_modifiers(search: Search) -> None:
    resources = [
        {
            "resourceType": "ValueSet",
            "id": "v",
            "status": "active",
            "url": "http://acme.org/fhir/ValueSet/123",
        },
    ]
    assert search(resources, "url=http://acme.org/fhir/ValueSet/123") == {"v"}
    assert search(resources, "url=http://acme.org/fhir") == set()
    assert search(resources, "url:below=http://acme.org/fhir") == {"v"}
    assert search(resources, "url:above=http://acme.org/fhir/ValueSet/123/_history/5") == {"v"}


def test_composite_components_come_from_one_element(search: Search) -> None:
    loinc = "http://loinc.org"
    ucum = "http://unitsofmeasure.org"
    resources = [
        observation("bp", component=[
            {"code": {"coding": [{"system": loinc, "code": "8480-6"}]}, "valueQuantity": {"value": 140, "system": ucum, "code": "mm[Hg]"}},
            {"code": {"coding": [{"system": loinc, "code": "8462-4"}]}, "valueQuantity": {"value": 90, "system": ucum, "code": "mm[Hg]"}},
        ]),
    ]  # fmt: skip
    assert search(resources, f"component-code-value-quantity={loinc}|8480-6$gt130") == {"bp"}
    # 90 belongs to the diastolic component, not the systolic one.
    assert search(resources, f"component-code-value-quantity={loinc}|8480-6$lt100") == set()


def test_full_text(search: Search) -> None:
    def narrated(resource_id: str, text: str) -> dict[str, Any]:
        return {"resourceType": "Condition", "id": resource_id, "subject": {"reference": "Patient/p"},
                "text": {"status": "generated", "div": f"<div><p>{text}</p></div>"}}  # fmt: skip

    resources = [narrated("a", "Heart attack while running"), narrated("b", "attack of the heart")]
    assert search(resources, "_text=runs") == {"a"}
    assert search(resources, '_text="heart attack"') == {"a"}
    assert search(resources, "_text=heart AND attack") == {"a", "b"}
    assert search(resources, "_text=heart NOT running") == {"b"}
    assert search(resources, "_text=run*") == {"a"}
    assert search(resources, "_content=Patient") == set()


def test_filter(search: Search) -> None:
    assert search(PEOPLE, "_filter=family eq lee") == {"lee"}
    assert search(PEOPLE, "_filter=family sw lee and gender eq male") == {"leeds"}
    assert search(PEOPLE, "_filter=family ew ds or not(birthdate pr true)") == {
        "leeds",
        "chavez",
        "anon",
    }
    assert search(PEOPLE, "_filter=birthdate po 1985-07") == {"lee", "leeds"}
    assert search(PEOPLE, "_filter=gender ne male") == {"lee"}


def test_chains_and_has_are_refused_by_the_evaluator() -> None:
    chained = parse_query("Observation", [("subject:Patient.name", "Lee")])
    with pytest.raises(Unsupported) as caught:
        matches([], chained)
    assert caught.value.capability == "search.chain"
    has = parse_query("Patient", [("_has:Observation:subject:code", "1")])
    with pytest.raises(Unsupported) as caught:
        matches([], has)
    assert caught.value.capability == "search.has"


def test_ap_on_dates_widens_by_a_tenth_of_the_distance_from_now() -> None:
    now = datetime(2020, 1, 1, tzinfo=UTC)
    low, high = date_range("2010")
    near = date_range("2010-12-31T12:00:00Z")
    assert date_matches(Prefix.AP, low, high, *near, now=now)
    far = date_range("2013")
    assert not date_matches(Prefix.AP, low, high, *far, now=now)
