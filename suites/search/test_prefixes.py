"""The prefixes eq ne gt lt ge le sa eb ap on date, number and quantity parameters (FHIR R4 search.html#prefix)."""

from __future__ import annotations

from typing import Any

import pytest

from helios_conformance import SyncClient

UCUM = "http://unitsofmeasure.org"


def born(resource_id: str, birth_date: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": resource_id, "birthDate": birth_date}


def risk(resource_id: str, probability: float) -> dict[str, Any]:
    return {
        "resourceType": "RiskAssessment",
        "id": resource_id,
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "prediction": [{"probabilityDecimal": probability}],
    }


def weighed(resource_id: str, value: float, code: str = "kg") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": resource_id,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "valueQuantity": {"value": value, "unit": code, "system": UCUM, "code": code},
    }


def put(client: SyncClient, *resources: dict[str, Any]) -> None:
    for resource in resources:
        client.create_or_update(resource["resourceType"], resource["id"], resource)


def ids(client: SyncClient, resource_type: str, query: str | list[tuple[str, str]]) -> set[str]:
    return set(client.search(resource_type, query).ids)


def prefixed(prefix: str, expected: set[str]) -> Any:
    return pytest.param(
        prefix, expected, marks=pytest.mark.requires(f"search.prefix.{prefix}"), id=prefix
    )


def put_birthdates(client: SyncClient) -> None:
    """dec-1979 is before 1980, mid-1980 inside it, jan-1981 after it; year-1980 is stored at year precision."""
    put(
        client,
        born("dec-1979", "1979-12-31"),
        born("mid-1980", "1980-06-15"),
        born("jan-1981", "1981-01-01"),
        born("year-1980", "1980"),
    )


class TestDatePrefixes:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.param.date")

    @pytest.mark.parametrize(
        ("prefix", "expected"),
        [
            prefixed("eq", {"mid-1980", "year-1980"}),
            prefixed("ne", {"dec-1979", "jan-1981"}),
            prefixed("gt", {"jan-1981"}),
            prefixed("lt", {"dec-1979"}),
            prefixed("ge", {"mid-1980", "year-1980", "jan-1981"}),
            prefixed("le", {"dec-1979", "mid-1980", "year-1980"}),
            prefixed("sa", {"jan-1981"}),
            prefixed("eb", {"dec-1979"}),
        ],
    )
    def test_prefix_against_a_year(
        self, client: SyncClient, prefix: str, expected: set[str]
    ) -> None:
        """birthdate=<prefix>1980 compares each birthDate's range with the year 1980 (https://hl7.org/fhir/R4/search.html#prefix)."""
        put_birthdates(client)

        assert ids(client, "Patient", f"birthdate={prefix}1980") == expected

    @pytest.mark.parametrize(
        ("prefix", "expected"),
        [
            prefixed("eq", {"mid-1980"}),
            # The year 1980 is not contained in the day, so ne matches it.
            prefixed("ne", {"dec-1979", "jan-1981", "year-1980"}),
            # The year 1980 overlaps the days after 1980-06-15 and before it.
            prefixed("gt", {"jan-1981", "year-1980"}),
            prefixed("lt", {"dec-1979", "year-1980"}),
            prefixed("ge", {"mid-1980", "jan-1981", "year-1980"}),
            prefixed("le", {"dec-1979", "mid-1980", "year-1980"}),
            # ... but it neither starts after nor ends before that day.
            prefixed("sa", {"jan-1981"}),
            prefixed("eb", {"dec-1979"}),
        ],
    )
    def test_prefix_against_a_day_inside_a_year_precision_value(
        self, client: SyncClient, prefix: str, expected: set[str]
    ) -> None:
        """birthdate=<prefix>1980-06-15 treats a birthDate stored as 1980 as the whole year (https://hl7.org/fhir/R4/search.html#prefix)."""
        put_birthdates(client)

        assert ids(client, "Patient", f"birthdate={prefix}1980-06-15") == expected

    @pytest.mark.requires("search.prefix.ap")
    def test_ap_matches_a_nearby_date_and_not_a_distant_one(self, client: SyncClient) -> None:
        """birthdate=ap1980-06-15 finds 1980-06-15 and 1980-06-20 but not 1950-01-01 or 2010-01-01 (https://hl7.org/fhir/R4/search.html#prefix)."""
        put(
            client,
            born("same-day", "1980-06-15"),
            born("five-days-later", "1980-06-20"),
            born("thirty-years-before", "1950-01-01"),
            born("thirty-years-after", "2010-01-01"),
        )

        assert ids(client, "Patient", "birthdate=ap1980-06-15") == {"same-day", "five-days-later"}

    @pytest.mark.parametrize(
        "prefix",
        [
            pytest.param(prefix, marks=pytest.mark.requires(f"search.prefix.{prefix}"), id=prefix)
            for prefix in ("ne", "gt", "lt", "sa", "eb")
        ],
    )
    def test_prefix_never_matches_an_absent_value(self, client: SyncClient, prefix: str) -> None:
        """birthdate=<prefix>1980 never finds a Patient with no birthDate: there is no range to compare (https://hl7.org/fhir/R4/search.html#prefix)."""
        put(client, born("dec-1979", "1979-12-31"), born("jan-1981", "1981-01-01"))
        put(client, {"resourceType": "Patient", "id": "no-birthdate"})

        assert "no-birthdate" not in ids(client, "Patient", f"birthdate={prefix}1980")

    @pytest.mark.requires("search.prefix.eq")
    def test_explicit_eq_is_the_default(self, client: SyncClient) -> None:
        """birthdate=eq1980 and birthdate=1980 find the same Patients (https://hl7.org/fhir/R4/search.html#prefix)."""
        put_birthdates(client)

        assert ids(client, "Patient", "birthdate=eq1980") == ids(
            client, "Patient", "birthdate=1980"
        )


class TestNumberPrefixes:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.param.number")

    @pytest.mark.parametrize(
        ("prefix", "expected"),
        [
            prefixed("eq", {"r100"}),
            prefixed("ne", {"r99", "r101"}),
            prefixed("gt", {"r101"}),
            prefixed("lt", {"r99"}),
            prefixed("ge", {"r100", "r101"}),
            prefixed("le", {"r99", "r100"}),
            prefixed("sa", {"r101"}),
            prefixed("eb", {"r99"}),
        ],
    )
    def test_prefix_on_a_number(self, client: SyncClient, prefix: str, expected: set[str]) -> None:
        """probability=<prefix>100 against stored 99, 100 and 101 (https://hl7.org/fhir/R4/search.html#prefix)."""
        put(client, risk("r99", 99), risk("r100", 100), risk("r101", 101))

        assert ids(client, "RiskAssessment", f"probability={prefix}100") == expected

    @pytest.mark.requires("search.prefix.ap")
    def test_ap_matches_within_ten_percent(self, client: SyncClient) -> None:
        """probability=ap100 finds 95 and 100, not 80 or 120 (https://hl7.org/fhir/R4/search.html#prefix)."""
        put(client, risk("r80", 80), risk("r95", 95), risk("r100", 100), risk("r120", 120))

        assert ids(client, "RiskAssessment", "probability=ap100") == {"r95", "r100"}

    @pytest.mark.requires("search.prefix.ne")
    def test_ne_excludes_the_whole_implicit_range(self, client: SyncClient) -> None:
        """probability=ne100 excludes 100.2, inside [99.5, 100.5), and keeps 100.7 (https://hl7.org/fhir/R4/search.html#number)."""
        put(client, risk("inside", 100.2), risk("outside", 100.7))

        assert ids(client, "RiskAssessment", "probability=ne100") == {"outside"}


class TestQuantityPrefixes:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.param.quantity")

    @pytest.mark.parametrize(
        ("prefix", "expected"),
        [
            prefixed("eq", {"w70"}),
            prefixed("ne", {"w60", "w80"}),
            prefixed("gt", {"w80"}),
            prefixed("lt", {"w60"}),
            prefixed("ge", {"w70", "w80"}),
            prefixed("le", {"w60", "w70"}),
            prefixed("sa", {"w80"}),
            prefixed("eb", {"w60"}),
        ],
    )
    def test_prefix_on_a_quantity(
        self, client: SyncClient, prefix: str, expected: set[str]
    ) -> None:
        """value-quantity=<prefix>70|UCUM|kg against stored 60, 70 and 80 kg (https://hl7.org/fhir/R4/search.html#prefix)."""
        put(client, weighed("w60", 60), weighed("w70", 70), weighed("w80", 80))

        assert ids(client, "Observation", [("value-quantity", f"{prefix}70|{UCUM}|kg")]) == expected

    @pytest.mark.requires("search.prefix.ap")
    def test_ap_matches_within_ten_percent(self, client: SyncClient) -> None:
        """value-quantity=ap70|UCUM|kg finds 67 and 70 kg, not 50 or 90 kg (https://hl7.org/fhir/R4/search.html#prefix)."""
        put(
            client,
            weighed("w50", 50),
            weighed("w67", 67),
            weighed("w70", 70),
            weighed("w90", 90),
        )

        assert ids(client, "Observation", [("value-quantity", f"ap70|{UCUM}|kg")]) == {
            "w67",
            "w70",
        }
