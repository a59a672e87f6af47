"""Date search: every value is a range at its precision, time zones respected, Periods as ranges (FHIR R4 search.html#date)."""

from __future__ import annotations

from typing import Any

import pytest

from helios_conformance import SyncClient


def born(resource_id: str, birth_date: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": resource_id, "birthDate": birth_date}


def observed(resource_id: str, **effective: Any) -> dict[str, Any]:
    """An Observation whose effective[x] is given as effectiveDateTime=..., effectivePeriod=... etc."""
    return {
        "resourceType": "Observation",
        "id": resource_id,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]},
        **effective,
    }


def encounter(resource_id: str, **period: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": resource_id,
        "status": "finished",
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "IMP",
        },
        "period": period,
    }


def put(client: SyncClient, *resources: dict[str, Any]) -> None:
    for resource in resources:
        client.create_or_update(resource["resourceType"], resource["id"], resource)


def ids(client: SyncClient, resource_type: str, query: str | list[tuple[str, str]]) -> set[str]:
    return set(client.search(resource_type, query).ids)


# Two days: from the 1st at 10:00Z to the 3rd at 10:00Z.
SPAN = {"start": "2024-01-01T10:00:00Z", "end": "2024-01-03T10:00:00Z"}


class TestSearchPrecision:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.param.date")

    def put_birthdates(self, client: SyncClient) -> None:
        put(
            client,
            born("dec-1979", "1979-12-31"),
            born("may-01", "1980-05-01"),
            born("may-31", "1980-05-31"),
            born("jun-01", "1980-06-01"),
            born("jan-1981", "1981-01-01"),
        )

    def test_year_matches_every_day_of_that_year(self, client: SyncClient) -> None:
        """birthdate=1980 finds the three 1980 births, not 1979-12-31 or 1981-01-01 (https://hl7.org/fhir/R4/search.html#date)."""
        self.put_birthdates(client)

        assert ids(client, "Patient", "birthdate=1980") == {"may-01", "may-31", "jun-01"}

    def test_month_matches_every_day_of_that_month(self, client: SyncClient) -> None:
        """birthdate=1980-05 finds 1980-05-01 and 1980-05-31, not 1980-06-01 (https://hl7.org/fhir/R4/search.html#date)."""
        self.put_birthdates(client)

        assert ids(client, "Patient", "birthdate=1980-05") == {"may-01", "may-31"}

    def test_day_matches_that_day_only(self, client: SyncClient) -> None:
        """birthdate=1980-05-31 finds only that day (https://hl7.org/fhir/R4/search.html#date)."""
        self.put_birthdates(client)

        assert ids(client, "Patient", "birthdate=1980-05-31") == {"may-31"}

    def test_minute_precision_matches_that_minute(self, client: SyncClient) -> None:
        """date=2024-03-15T10:30Z finds 10:30:00 and 10:30:59 but not 10:31:00 (https://hl7.org/fhir/R4/search.html#date)."""
        put(
            client,
            observed("o30-00", effectiveDateTime="2024-03-15T10:30:00Z"),
            observed("o30-59", effectiveDateTime="2024-03-15T10:30:59Z"),
            observed("o31-00", effectiveDateTime="2024-03-15T10:31:00Z"),
        )

        assert ids(client, "Observation", "date=2024-03-15T10:30Z") == {"o30-00", "o30-59"}

    def test_second_precision_matches_that_second(self, client: SyncClient) -> None:
        """date=2024-03-15T10:30:15Z finds 10:30:15 but not 10:30:16 (https://hl7.org/fhir/R4/search.html#date)."""
        put(
            client,
            observed("o15", effectiveDateTime="2024-03-15T10:30:15Z"),
            observed("o16", effectiveDateTime="2024-03-15T10:30:16Z"),
        )

        assert ids(client, "Observation", "date=2024-03-15T10:30:15Z") == {"o15"}

    def test_second_contains_a_stored_fraction(self, client: SyncClient) -> None:
        """date=2024-03-15T10:30:15Z finds an instant stored as 10:30:15.123Z (https://hl7.org/fhir/R4/search.html#date)."""
        put(
            client,
            observed("o1", effectiveInstant="2024-03-15T10:30:15.123Z"),
            observed("o2", effectiveInstant="2024-03-15T10:30:16.123Z"),
        )

        assert ids(client, "Observation", "date=2024-03-15T10:30:15Z") == {"o1"}

    def test_fraction_does_not_contain_a_whole_second(self, client: SyncClient) -> None:
        """date=2024-03-15T10:30:15.500Z does not find 10:30:15Z: the stored second is wider than the search (https://hl7.org/fhir/R4/search.html#date)."""
        put(client, observed("o1", effectiveDateTime="2024-03-15T10:30:15Z"))

        assert ids(client, "Observation", "date=2024-03-15T10:30:15.500Z") == set()


class TestStoredPrecision:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.param.date")

    def test_wider_search_contains_a_month_precision_value(self, client: SyncClient) -> None:
        """birthdate=1980 finds a birthDate stored as 1980-05 (https://hl7.org/fhir/R4/search.html#date)."""
        put(client, born("p1", "1980-05"), born("p2", "1981-05"))

        assert ids(client, "Patient", "birthdate=1980") == {"p1"}

    def test_narrower_search_does_not_equal_a_year_precision_value(
        self, client: SyncClient
    ) -> None:
        """birthdate=1980-05-01 does not find a birthDate stored as 1980: eq needs the search range to contain it (https://hl7.org/fhir/R4/search.html#date)."""
        put(client, born("year-only", "1980"), born("exact-day", "1980-05-01"))

        assert ids(client, "Patient", "birthdate=1980-05-01") == {"exact-day"}

    def test_instant_search_does_not_equal_a_whole_day(self, client: SyncClient) -> None:
        """birthdate=1980-06-15T10:00:00Z does not find birthDate 1980-06-15: a second cannot contain a day (https://hl7.org/fhir/R4/search.html#date)."""
        put(client, born("p1", "1980-06-15"))

        assert ids(client, "Patient", "birthdate=1980-06-15T10:00:00Z") == set()

    @pytest.mark.requires("search.prefix.ge")
    def test_instant_search_overlaps_a_whole_day(self, client: SyncClient) -> None:
        """birthdate=ge1980-06-15T10:00:00Z finds birthDate 1980-06-15, whose day runs past 10:00 (https://hl7.org/fhir/R4/search.html#date)."""
        put(client, born("p1", "1980-06-15"), born("p0", "1980-06-13"))

        assert ids(client, "Patient", "birthdate=ge1980-06-15T10:00:00Z") == {"p1"}

    def test_day_search_contains_a_midday_datetime(self, client: SyncClient) -> None:
        """date=2024-03-15 finds an Observation at 2024-03-15T12:00:00Z and not one on the 16th (https://hl7.org/fhir/R4/search.html#date)."""
        put(
            client,
            observed("o15", effectiveDateTime="2024-03-15T12:00:00Z"),
            observed("o16", effectiveDateTime="2024-03-16T12:00:00Z"),
        )

        assert ids(client, "Observation", "date=2024-03-15") == {"o15"}


class TestTimeZones:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.param.date")

    def test_same_instant_in_another_zone_matches(self, client: SyncClient) -> None:
        """date=2024-01-02T04:30:00Z finds 2024-01-01T23:30:00-05:00, the same instant (https://hl7.org/fhir/R4/search.html#date)."""
        put(
            client,
            observed("new-york", effectiveDateTime="2024-01-01T23:30:00-05:00"),
            observed("utc-evening", effectiveDateTime="2024-01-01T23:30:00Z"),
        )

        assert ids(client, "Observation", "date=2024-01-02T04:30:00Z") == {"new-york"}

    @pytest.mark.requires("search.prefix.ge")
    def test_offset_moves_a_value_across_midnight(self, client: SyncClient) -> None:
        """date=ge2024-01-02T00:00:00Z finds 2024-01-01T23:30:00-05:00 (which is 04:30Z on the 2nd) but not 2024-01-02T03:00:00+05:00 (22:00Z on the 1st) (https://hl7.org/fhir/R4/search.html#date)."""
        put(
            client,
            observed("new-york", effectiveDateTime="2024-01-01T23:30:00-05:00"),
            observed("karachi", effectiveDateTime="2024-01-02T03:00:00+05:00"),
        )

        assert ids(client, "Observation", "date=ge2024-01-02T00:00:00Z") == {"new-york"}

    @pytest.mark.requires("search.prefix.lt")
    def test_search_value_offset_is_respected(self, client: SyncClient) -> None:
        """date=lt2024-01-01T20:00:00-05:00 (01:00Z on the 2nd) finds 2024-01-02T00:30:00Z and not 2024-01-02T01:30:00Z (https://hl7.org/fhir/R4/search.html#date)."""
        put(
            client,
            observed("before", effectiveDateTime="2024-01-02T00:30:00Z"),
            observed("after", effectiveDateTime="2024-01-02T01:30:00Z"),
        )

        assert ids(client, "Observation", [("date", "lt2024-01-01T20:00:00-05:00")]) == {"before"}


class TestPeriods:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.param.date")

    def test_period_inside_the_search_range_matches(self, client: SyncClient) -> None:
        """date=2024-01 finds an Encounter from the 1st to the 3rd of January (https://hl7.org/fhir/R4/search.html#date)."""
        put(client, encounter("e1", **SPAN))

        assert ids(client, "Encounter", "date=2024-01") == {"e1"}

    def test_period_overlapping_a_day_does_not_equal_it(self, client: SyncClient) -> None:
        """date=2024-01-02 does not find a period spanning the 1st to the 3rd: eq needs containment (https://hl7.org/fhir/R4/search.html#date)."""
        put(client, encounter("e1", **SPAN))

        assert ids(client, "Encounter", "date=2024-01-02") == set()

    @pytest.mark.parametrize(
        "prefix",
        [
            pytest.param(prefix, marks=pytest.mark.requires(f"search.prefix.{prefix}"), id=prefix)
            for prefix in ("gt", "lt", "ge", "le", "ne")
        ],
    )
    def test_period_overlapping_the_boundary_matches_open_comparisons(
        self, client: SyncClient, prefix: str
    ) -> None:
        """gt, lt, ge, le and ne 2024-01-02 all find a period running through the 2nd; a June 2023 period only for lt, le, ne (https://hl7.org/fhir/R4/search.html#prefix)."""
        put(
            client,
            encounter("e1", **SPAN),
            encounter("e2", start="2023-06-01T10:00:00Z", end="2023-06-02T10:00:00Z"),
        )
        expected = {"e1", "e2"} if prefix in {"lt", "le", "ne"} else {"e1"}

        assert ids(client, "Encounter", f"date={prefix}2024-01-02") == expected

    @pytest.mark.parametrize(
        "prefix",
        [
            pytest.param(prefix, marks=pytest.mark.requires(f"search.prefix.{prefix}"), id=prefix)
            for prefix in ("sa", "eb")
        ],
    )
    def test_period_overlapping_the_boundary_is_neither_after_nor_before(
        self, client: SyncClient, prefix: str
    ) -> None:
        """sa2024-01-02 and eb2024-01-02 do not find a period that runs through the 2nd (https://hl7.org/fhir/R4/search.html#prefix)."""
        put(client, encounter("e1", **SPAN))

        assert ids(client, "Encounter", f"date={prefix}2024-01-02") == set()

    @pytest.mark.requires("search.prefix.gt")
    def test_period_without_an_end_is_open_to_the_future(self, client: SyncClient) -> None:
        """date=gt2099-01-01 finds an ongoing Encounter with no end, not a finished one (https://hl7.org/fhir/R4/search.html#date)."""
        put(
            client,
            encounter("ongoing", start="2024-01-01T10:00:00Z"),
            encounter("finished", **SPAN),
        )

        assert ids(client, "Encounter", "date=gt2099-01-01") == {"ongoing"}

    @pytest.mark.requires("search.prefix.lt")
    def test_period_without_a_start_is_open_to_the_past(self, client: SyncClient) -> None:
        """date=lt1900-01-01 finds an Encounter with only an end, not one with both ends (https://hl7.org/fhir/R4/search.html#date)."""
        put(
            client,
            encounter("no-start", end="2024-01-03T10:00:00Z"),
            encounter("finished", **SPAN),
        )

        assert ids(client, "Encounter", "date=lt1900-01-01") == {"no-start"}

    def test_observation_effective_period_is_searched_by_date(self, client: SyncClient) -> None:
        """Observation date=2024-03 finds an effectivePeriod inside March and not one in April (https://hl7.org/fhir/R4/search.html#date)."""
        put(
            client,
            observed(
                "march",
                effectivePeriod={"start": "2024-03-10T08:00:00Z", "end": "2024-03-10T09:00:00Z"},
            ),
            observed(
                "april",
                effectivePeriod={"start": "2024-04-10T08:00:00Z", "end": "2024-04-10T09:00:00Z"},
            ),
        )

        assert ids(client, "Observation", "date=2024-03") == {"march"}


class TestOtherDateElements:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.param.date")

    def test_death_date_indexes_only_deceased_datetime(self, client: SyncClient) -> None:
        """death-date=2020 finds deceasedDateTime 2020-05-01, not deceasedBoolean true (https://hl7.org/fhir/R4/search.html#date)."""
        put(
            client,
            {"resourceType": "Patient", "id": "p1", "deceasedDateTime": "2020-05-01"},
            {"resourceType": "Patient", "id": "p2", "deceasedBoolean": True},
            {"resourceType": "Patient", "id": "p3", "deceasedDateTime": "2021-05-01"},
        )

        assert ids(client, "Patient", "death-date=2020") == {"p1"}

    @pytest.mark.requires("search.prefix.ge", "search.prefix.lt")
    def test_repeated_date_parameter_is_an_and(self, client: SyncClient) -> None:
        """birthdate=ge1980&birthdate=lt1990 finds the 1985 birth only (https://hl7.org/fhir/R4/search.html#combining)."""
        put(
            client,
            born("p1975", "1975-01-01"),
            born("p1985", "1985-06-15"),
            born("p1995", "1995-01-01"),
        )

        assert ids(client, "Patient", "birthdate=ge1980&birthdate=lt1990") == {"p1985"}
