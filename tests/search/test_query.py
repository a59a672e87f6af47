"""The query parser: pairs -> SearchQuery, and errors that name the parameter."""

from __future__ import annotations

from decimal import Decimal

import pytest

from helios_conformance import InvalidSearch, Unsupported
from helios_conformance.search import (
    CompositeValue,
    DateValue,
    FilterAnd,
    FilterComparison,
    FilterOperator,
    MissingValue,
    NumberValue,
    Prefix,
    QuantityValue,
    ReferenceValue,
    StringValue,
    SummaryMode,
    TextSearchValue,
    TokenValue,
    TotalMode,
    parse_query,
    split_escaped,
    unescape,
)


def test_repetition_is_and_and_commas_are_or() -> None:
    query = parse_query("Patient", [("family", "Lee,Kim"), ("family", "Park")])
    assert [len(test.values) for test in query.tests] == [2, 1]
    assert query.tests[0].values == (StringValue("Lee", "lee"), StringValue("Kim", "kim"))


@pytest.mark.parametrize(
    ("value", "pieces"),
    [
        (r"a\,b,c", [r"a\,b", "c"]),
        (r"a\\,b", [r"a\\", "b"]),
        ("a,,b", ["a", "", "b"]),
    ],
)
def test_split_escaped_keeps_escapes(value: str, pieces: list[str]) -> None:
    assert split_escaped(value, ",") == pieces


def test_unescape() -> None:
    assert unescape(r"a\,b\|c\$d\\e\x") == r"a,b|c$d\e\x"


def test_escaped_separators_are_literal() -> None:
    query = parse_query("Patient", [("family", r"Lee\,Kim"), ("identifier", r"sys|a\|b")])
    assert query.tests[0].values == (StringValue("Lee,Kim", "lee,kim"),)
    assert query.tests[1].values == (TokenValue(system="sys", code="a|b"),)


@pytest.mark.parametrize(
    ("value", "token"),
    [
        ("male", TokenValue(None, "male")),
        ("http://hl7.org/fhir/administrative-gender|male", TokenValue("http://hl7.org/fhir/administrative-gender", "male")),
        ("|male", TokenValue("", "male")),
        ("http://hl7.org/fhir/administrative-gender|", TokenValue("http://hl7.org/fhir/administrative-gender", None)),
    ],
)  # fmt: skip
def test_token_forms(value: str, token: TokenValue) -> None:
    assert parse_query("Patient", [("gender", value)]).tests[0].values == (token,)


def test_prefixes_only_for_ordered_types() -> None:
    query = parse_query("Patient", [("family", "le"), ("family", "gtx"), ("birthdate", "le2000")])
    assert query.tests[0].values == (StringValue("le", "le"),)
    assert query.tests[1].values == (StringValue("gtx", "gtx"),)
    birthdate = query.tests[2].values[0]
    assert isinstance(birthdate, DateValue)
    assert birthdate.prefix is Prefix.LE


def test_number_and_quantity_values() -> None:
    query = parse_query(
        "Observation",
        [("value-quantity", "gt5.40|http://unitsofmeasure.org|mg"), ("value-quantity", "5.4||mg")],
    )
    first, second = (test.values[0] for test in query.tests)
    assert isinstance(first, QuantityValue)
    assert isinstance(second, QuantityValue)
    assert first.prefix is Prefix.GT
    assert first.number.value == Decimal("5.40")
    assert first.canonical_unit == "kilogram"
    assert first.canonical_value == Decimal("0.00000540")
    assert second.system is None
    assert second.code == "mg"
    assert second.canonical_unit is None
    probability = parse_query("RiskAssessment", [("probability", "ap1e2")]).tests[0].values[0]
    assert probability == NumberValue(
        Prefix.AP, Decimal("1e2"), Decimal("50"), Decimal("150"), "1e2"
    )


def test_reference_forms() -> None:
    query = parse_query(
        "Observation",
        [
            ("subject", "Patient/p1"),
            ("subject:Patient", "p1"),
            ("subject", "p1"),
            ("subject", "http://x.org/fhir/Patient/p1"),
            ("subject:identifier", "urn:mrn|123"),
        ],
    )
    values = [test.values[0] for test in query.tests]
    assert values[0] == ReferenceValue(
        raw="Patient/p1", exact="Patient/p1", type="Patient", id="p1"
    )
    assert values[1] == ReferenceValue(raw="p1", exact="Patient/p1", type="Patient", id="p1")
    assert query.tests[1].target_type == "Patient"
    assert query.tests[1].modifier is None
    assert values[2] == ReferenceValue(raw="p1", id="p1")
    assert isinstance(values[3], ReferenceValue)
    assert values[3].exact == "http://x.org/fhir/Patient/p1"
    assert isinstance(values[4], ReferenceValue)
    assert values[4].identifier == TokenValue("urn:mrn", "123")


def test_composite_missing_and_text_values() -> None:
    query = parse_query(
        "Observation",
        [
            ("code-value-quantity", "http://loinc.org|8480-6$gt120"),
            ("value-quantity:missing", "true"),
            ("_text", '"heart attack" OR stroke*'),
        ],
    )
    composite, missing, text = (test.values[0] for test in query.tests)
    assert isinstance(composite, CompositeValue)
    assert len(composite.components) == 2
    assert missing == MissingValue(True)
    assert isinstance(text, TextSearchValue)


def test_result_parameters() -> None:
    query = parse_query(
        "Patient",
        [("_count", "2"), ("_total", "accurate"), ("_summary", "count"), ("_format", "json")],
    )
    assert query.count == 2
    assert query.total is TotalMode.ACCURATE
    assert query.summary is SummaryMode.COUNT
    assert query.tests == ()
    assert parse_query("Patient", [("_count", "100000")]).count == 1000
    assert parse_query("Patient", []).page_size == 50


def test_sort_include_chain_and_has_are_parsed() -> None:
    query = parse_query(
        "Observation",
        [
            ("_sort", "-date,code"),
            ("_include", "Observation:subject:Patient"),
            ("subject:Patient.name", "Lee"),
            ("_has:Provenance:target:agent", "Practitioner/1"),
        ],
    )
    assert [key.parameter.code for key in query.sort] == ["date", "code"]
    assert query.include[0].target_type == "Patient"
    assert query.tests[0].chain[0].target_type == "Patient"
    assert query.tests[0].code == "name"
    assert query.has[0].resource_type == "Provenance"


def test_filter_is_parsed() -> None:
    query = parse_query(
        "Patient", [("_filter", 'family eq "Lee" and (birthdate ge 2000 or not(gender eq male))')]
    )
    assert isinstance(query.filter, FilterAnd)
    first = query.filter.operands[0]
    assert isinstance(first, FilterComparison)
    assert first.operator is FilterOperator.EQ


@pytest.mark.parametrize(
    ("pairs", "parameter", "message"),
    [
        ([("family", "")], "family", "empty"),
        ([("family", "Lee,")], "family", "empty"),
        ([("birthdate", "2013-13")], "birthdate", "not a valid date"),
        ([("birthdate", "2013/01/01")], "birthdate", "not a FHIR date"),
        ([("birthdate", "xx2013")], "birthdate", "known prefix"),
        ([("probability", "gt1.2.3")], "probability", "not a number"),
        ([("value-quantity", "5|mg")], "value-quantity", "not a quantity"),
        ([("gender", "a|b|c")], "gender", "more than one '|'"),
        ([("gender", "|")], "gender", "alone is not a token"),
        ([("active", "yes")], "active", "not a boolean"),
        ([("family:exactly", "Lee")], "family:exactly", "does not apply to a string"),
        ([("birthdate:exact", "2000")], "birthdate:exact", "does not apply to a date"),
        ([("family:missing", "maybe")], "family:missing", "true or false"),
        ([("subject:Medication", "1")], "subject:Medication", "not a target"),
        ([("subject", "Patient/bad id")], "subject", "not a valid resource id"),
        ([("subject", "Nothing/1")], "subject", "not a reference"),
        ([("code-value-quantity", "a|b")], "code-value-quantity", "separated parts"),
        ([("identifier:of-type", "a|b")], "identifier:of-type", ":of-type takes"),
        ([("nosuch", "1")], "nosuch", "no search parameter 'nosuch'"),
        ([("_count", "-1")], "_count", "non-negative integer"),
        ([("_total", "some")], "_total", "none, estimate or accurate"),
        ([("_text", "NOT cough")], "_text", "NOT must follow"),
        ([("_filter", "family zz Lee")], "_filter", "not a filter operator"),
        ([("_filter", "nosuch eq 1")], "_filter", "no search parameter"),
        ([("name.family", "Lee")], "name.family", "not a reference"),
    ],
)
def test_errors_name_the_parameter(
    pairs: list[tuple[str, str]], parameter: str, message: str
) -> None:
    resource_type = (
        "Observation"
        if pairs[0][0] in ("value-quantity", "subject:Medication", "subject", "code-value-quantity")
        else "Patient"
    )
    if pairs[0][0] == "probability":
        resource_type = "RiskAssessment"
    with pytest.raises(InvalidSearch, match=message) as caught:
        parse_query(resource_type, pairs)
    assert caught.value.parameter == parameter
    assert repr(parameter) in str(caught.value)


def test_lenient_handling_ignores_and_reports_unknown_parameters() -> None:
    query = parse_query("Patient", [("nosuch", "1"), ("family", "Lee")], strict=False)
    assert query.ignored == ("nosuch",)
    assert len(query.tests) == 1


@pytest.mark.parametrize(
    ("pairs", "capability"),
    [
        ([("code:in", "http://vs")], "search.modifier.in"),
        ([("code:not-in", "http://vs")], "search.modifier.not_in"),
        ([("code:below", "http://loinc.org|1")], "search.modifier.subsumption"),
        ([("_summary", "true")], "search.summary"),
        ([("_elements", "id")], "search.elements"),
        ([("_filter", "code in http://vs")], "search.modifier.in"),
        ([("_filter", "value-quantity co 5")], "search.filter"),
    ],
)
def test_unsupported_features_name_the_capability(
    pairs: list[tuple[str, str]], capability: str
) -> None:
    with pytest.raises(Unsupported) as caught:
        parse_query("Observation", pairs)
    assert caught.value.capability == capability
