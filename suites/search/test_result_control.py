"""Result control on the first page: _count, _summary=count and _total=accurate (FHIR R4 search.html#count, #summary, #total)."""

from __future__ import annotations

from typing import Any

import pytest

from helios_conformance import SyncClient


def named(resource_id: str, family: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": resource_id, "name": [{"family": family}]}


def put_lees_and_kims(client: SyncClient) -> None:
    """Three Lees (l1, l2, l3) and two Kims (k1, k2)."""
    for resource in (
        named("l1", "Lee"),
        named("l2", "Lee"),
        named("l3", "Lee"),
        named("k1", "Kim"),
        named("k2", "Kim"),
    ):
        client.create_or_update("Patient", resource["id"], resource)


class TestCount:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.count")

    @pytest.mark.requires("search.param.string")
    def test_count_limits_the_page(self, client: SyncClient) -> None:
        """family=Lee&_count=2 returns two of the three Lees, each once (https://hl7.org/fhir/R4/search.html#count)."""
        put_lees_and_kims(client)

        page = client.search("Patient", "family=Lee&_count=2").ids

        assert len(page) == 2
        assert len(set(page)) == 2
        assert set(page) <= {"l1", "l2", "l3"}

    def test_count_larger_than_the_matches_returns_them_all(self, client: SyncClient) -> None:
        """_count=50 over five Patients returns all five (https://hl7.org/fhir/R4/search.html#count)."""
        put_lees_and_kims(client)

        assert set(client.search("Patient", "_count=50").ids) == {"l1", "l2", "l3", "k1", "k2"}

    def test_count_one_returns_one(self, client: SyncClient) -> None:
        """_count=1 over five Patients returns exactly one (https://hl7.org/fhir/R4/search.html#count)."""
        put_lees_and_kims(client)

        assert len(client.search("Patient", "_count=1").ids) == 1

    def test_count_zero_returns_no_entries(self, client: SyncClient) -> None:
        """_count=0 returns no entries (https://hl7.org/fhir/R4/search.html#count)."""
        put_lees_and_kims(client)

        assert client.search("Patient", "_count=0").entries == ()

    def test_count_is_a_known_parameter(self, client: SyncClient) -> None:
        """Under lenient handling _count=3 is recognised, not reported as ignored (https://hl7.org/fhir/R4/search.html#count)."""
        put_lees_and_kims(client)

        assert client.search("Patient", "_count=3", strict=False).ignored == ()


class TestSummaryCount:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.summary_count")

    def test_summary_count_returns_the_total_and_no_entries(self, client: SyncClient) -> None:
        """_summary=count over five Patients returns total 5 and no entries (https://hl7.org/fhir/R4/search.html#summary)."""
        put_lees_and_kims(client)

        result = client.search("Patient", "_summary=count")

        assert (result.total, result.entries) == (5, ())

    @pytest.mark.requires("search.param.string")
    def test_summary_count_counts_only_matches(self, client: SyncClient) -> None:
        """family=Kim&_summary=count returns total 2 (https://hl7.org/fhir/R4/search.html#summary)."""
        put_lees_and_kims(client)

        result = client.search("Patient", "family=Kim&_summary=count")

        assert (result.total, result.entries) == (2, ())

    @pytest.mark.requires("search.param.string")
    def test_summary_count_with_no_matches_is_zero(self, client: SyncClient) -> None:
        """family=Nobody&_summary=count returns total 0 (https://hl7.org/fhir/R4/search.html#summary)."""
        put_lees_and_kims(client)

        result = client.search("Patient", "family=Nobody&_summary=count")

        assert (result.total, result.entries) == (0, ())

    @pytest.mark.requires("search.count")
    def test_summary_count_ignores_the_page_size(self, client: SyncClient) -> None:
        """_summary=count&_count=2 still counts all five Patients (https://hl7.org/fhir/R4/search.html#summary)."""
        put_lees_and_kims(client)

        assert client.search("Patient", "_summary=count&_count=2").total == 5


class TestTotal:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.total")

    @pytest.mark.requires("search.param.string", "search.count")
    def test_accurate_total_counts_beyond_the_page(self, client: SyncClient) -> None:
        """family=Lee&_total=accurate&_count=1 returns one entry and total 3 (https://hl7.org/fhir/R4/search.html#total)."""
        put_lees_and_kims(client)

        result = client.search("Patient", "family=Lee&_total=accurate&_count=1")

        assert (len(result.entries), result.total) == (1, 3)

    def test_accurate_total_with_entries(self, client: SyncClient) -> None:
        """_total=accurate over five Patients returns the five entries and total 5 (https://hl7.org/fhir/R4/search.html#total)."""
        put_lees_and_kims(client)

        result = client.search("Patient", "_total=accurate")

        assert (set(result.ids), result.total) == ({"l1", "l2", "l3", "k1", "k2"}, 5)

    @pytest.mark.requires("search.param.string")
    def test_accurate_total_of_no_matches_is_zero(self, client: SyncClient) -> None:
        """family=Nobody&_total=accurate returns no entries and total 0 (https://hl7.org/fhir/R4/search.html#total)."""
        put_lees_and_kims(client)

        result = client.search("Patient", "family=Nobody&_total=accurate")

        assert (result.entries, result.total) == ((), 0)

    @pytest.mark.parametrize("value", ["none", "estimate"])
    def test_other_total_values_are_accepted(self, client: SyncClient, value: str) -> None:
        """_total=none and _total=estimate are valid and do not change the matches (https://hl7.org/fhir/R4/search.html#total)."""
        put_lees_and_kims(client)

        result = client.search("Patient", f"_total={value}")

        assert set(result.ids) == {"l1", "l2", "l3", "k1", "k2"}
