"""Paging through search results by offset and by cursor, and _total (FHIR R4 http.html#paging, search.html#total)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from helios_conformance import InvalidSearch, SearchResult, SyncClient

ClientFactory = Callable[..., SyncClient]


def put(client: SyncClient, *resources: dict[str, Any]) -> None:
    for resource in resources:
        client.create_or_update(resource["resourceType"], resource["id"], resource)


def patient(resource_id: str, family: str | None = None, **fields: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Patient", "id": resource_id, **fields}
    if family is not None:
        resource["name"] = [{"family": family}]
    return resource


def seven(client: SyncClient) -> None:
    """p1..p7 with families chosen so _sort=family differs from id order (ties on Lee)."""
    put(
        client,
        patient("p1", "Ng"),
        patient("p2", "Lee"),
        patient("p3", "Adams"),
        patient("p4", "Lee"),
        patient("p5", "Zhu"),
        patient("p6", "Baker"),
        patient("p7", "Lee"),
    )


BY_FAMILY = ["p3", "p6", "p2", "p4", "p7", "p1", "p5"]
BY_FAMILY_DESC = ["p5", "p1", "p2", "p4", "p7", "p6", "p3"]


def page_ids(pages: list[SearchResult]) -> list[list[str]]:
    return [list(page.ids) for page in pages]


class TestCursorPaging:
    pytestmark = pytest.mark.requires(
        "crud.update_as_create", "search.paging.cursor", "search.count"
    )

    def test_cursor_pages_cover_every_match_once(self, client: SyncClient) -> None:
        """_count=3 over seven Patients pages 3, 3, 1 with each Patient once (http://hl7.org/fhir/R4/http.html#paging)."""
        seven(client)

        pages = client.search_pages("Patient", "_count=3")

        assert [len(page.entries) for page in pages] == [3, 3, 1]
        assert sorted(i for page in pages for i in page.ids) == [f"p{n}" for n in range(1, 8)]

    def test_the_last_page_has_no_cursor(self, client: SyncClient) -> None:
        """_count=7 over seven Patients is one page without next_cursor (http://hl7.org/fhir/R4/http.html#paging)."""
        seven(client)

        assert client.search("Patient", "_count=7").next_cursor is None

    def test_a_page_with_more_to_come_has_a_cursor(self, client: SyncClient) -> None:
        """_count=6 over seven Patients returns a next_cursor (http://hl7.org/fhir/R4/http.html#paging)."""
        seven(client)

        assert client.search("Patient", "_count=6").next_cursor is not None

    @pytest.mark.requires("search.sort.single", "search.param.string")
    def test_cursor_paging_follows_the_sort_order(self, client: SyncClient) -> None:
        """_sort=family&_count=2 pages through the exact sorted order, ties by id (http://hl7.org/fhir/R4/http.html#paging)."""
        seven(client)

        pages = client.search_pages("Patient", "_sort=family&_count=2")

        assert page_ids(pages) == [["p3", "p6"], ["p2", "p4"], ["p7", "p1"], ["p5"]]

    @pytest.mark.requires("search.sort.single", "search.param.string")
    def test_cursor_paging_descending(self, client: SyncClient) -> None:
        """_sort=-family&_count=3 pages through the descending order (http://hl7.org/fhir/R4/http.html#paging)."""
        seven(client)

        pages = client.search_pages("Patient", "_sort=-family&_count=3")

        assert [i for page in pages for i in page.ids] == BY_FAMILY_DESC

    @pytest.mark.requires("search.sort.multi", "search.param.string", "search.param.date")
    def test_cursor_paging_with_a_multi_key_sort(self, client: SyncClient) -> None:
        """_sort=family,-birthdate&_count=2 pages in the exact two-key order (http://hl7.org/fhir/R4/http.html#paging)."""
        put(
            client,
            patient("a", "Lee", birthDate="1950-01-01"),
            patient("b", "Lee", birthDate="2000-01-01"),
            patient("c", "Kim", birthDate="1990-01-01"),
            patient("d", "Lee", birthDate="1975-01-01"),
            patient("e", "Kim"),
        )

        pages = client.search_pages("Patient", "_sort=family,-birthdate&_count=2")

        assert page_ids(pages) == [["c", "e"], ["b", "d"], ["a"]]

    @pytest.mark.requires("search.sort.single", "search.param.string")
    def test_cursor_paging_over_missing_values(self, client: SyncClient) -> None:
        """_sort=-family&_count=1 pages the named Patients, then the unnamed ones by id (http://hl7.org/fhir/R4/http.html#paging)."""
        put(client, patient("n2"), patient("lee", "Lee"), patient("n1"), patient("kim", "Kim"))

        pages = client.search_pages("Patient", "_sort=-family&_count=1")

        assert [i for page in pages for i in page.ids] == ["lee", "kim", "n1", "n2"]

    @pytest.mark.requires("search.sort.single", "search.param.date")
    def test_cursor_paging_by_date(self, client: SyncClient) -> None:
        """_sort=birthdate&_count=2 pages through dates in order (http://hl7.org/fhir/R4/http.html#paging)."""
        put(
            client,
            patient("y2000", birthDate="2000-01-01"),
            patient("y1990", birthDate="1990-07-01"),
            patient("y1990b", birthDate="1990-07-01"),
            patient("y1980", birthDate="1980-03-04"),
        )

        pages = client.search_pages("Patient", "_sort=birthdate&_count=2")

        assert page_ids(pages) == [["y1980", "y1990"], ["y1990b", "y2000"]]

    @pytest.mark.requires("search.sort.single", "search.param.string")
    def test_creates_during_paging_are_neither_repeated_nor_skipped(
        self, client: SyncClient
    ) -> None:
        """Patients created between pages (sorting before and after the cursor) do not disturb the pages (http://hl7.org/fhir/R4/http.html#paging)."""
        seven(client)
        first = client.search("Patient", "_sort=family&_count=3")
        put(
            client,
            patient("new-a", "Aaron"),
            patient("new-l", "Lee"),
            patient("new-m", "Moss"),
            patient("new-z", "Zzz"),
        )
        rest: list[str] = []
        cursor = first.next_cursor
        while cursor is not None:
            page = client.search("Patient", "_sort=family&_count=3", cursor=cursor)
            rest.extend(page.ids)
            cursor = page.next_cursor

        assert list(first.ids) + rest == BY_FAMILY

    def test_creates_during_default_order_paging(self, client: SyncClient) -> None:
        """Without _sort, Patients created between pages do not appear in later pages (http://hl7.org/fhir/R4/http.html#paging)."""
        seven(client)
        first = client.search("Patient", "_count=4")
        put(client, patient("p0"), patient("p99"))
        assert first.next_cursor is not None

        second = client.search("Patient", "_count=4", cursor=first.next_cursor)

        assert sorted([*first.ids, *second.ids]) == [f"p{n}" for n in range(1, 8)]

    def test_a_tampered_cursor_is_refused(self, client: SyncClient) -> None:
        """A cursor with one character changed is refused with InvalidSearch (http://hl7.org/fhir/R4/http.html#paging)."""
        seven(client)
        cursor = client.search("Patient", "_count=2").next_cursor
        assert cursor is not None
        tampered = cursor[:5] + ("A" if cursor[5] != "A" else "B") + cursor[6:]

        with pytest.raises(InvalidSearch):
            client.search("Patient", "_count=2", cursor=tampered)

    def test_a_garbage_cursor_is_refused(self, client: SyncClient) -> None:
        """A cursor that was never issued is refused with InvalidSearch (http://hl7.org/fhir/R4/http.html#paging)."""
        seven(client)

        with pytest.raises(InvalidSearch):
            client.search("Patient", "_count=2", cursor="not-a-cursor")

    @pytest.mark.requires("search.param.string")
    def test_a_cursor_of_another_query_is_refused(self, client: SyncClient) -> None:
        """A cursor from _count=2 is refused for family=Lee&_count=2 (http://hl7.org/fhir/R4/http.html#paging)."""
        seven(client)
        cursor = client.search("Patient", "_count=2").next_cursor
        assert cursor is not None

        with pytest.raises(InvalidSearch):
            client.search("Patient", "family=Lee&_count=2", cursor=cursor)

    def test_a_cursor_of_another_type_is_refused(self, client: SyncClient) -> None:
        """A Patient search's cursor is refused for an Organization search (http://hl7.org/fhir/R4/http.html#paging)."""
        seven(client)
        cursor = client.search("Patient", "_count=2").next_cursor
        assert cursor is not None

        with pytest.raises(InvalidSearch):
            client.search("Organization", "_count=2", cursor=cursor)

    def test_a_cursor_of_another_tenant_is_refused(
        self, client: SyncClient, new_client: ClientFactory
    ) -> None:
        """Tenant A's cursor is refused in tenant B for the same query (http://hl7.org/fhir/R4/http.html#paging)."""
        other = new_client()
        seven(client)
        seven(other)
        cursor = client.search("Patient", "_count=2").next_cursor
        assert cursor is not None

        with pytest.raises(InvalidSearch):
            other.search("Patient", "_count=2", cursor=cursor)

    def test_count_zero_has_no_next_page(self, client: SyncClient) -> None:
        """_count=0 returns no entries and no cursor (http://hl7.org/fhir/R4/http.html#paging)."""
        seven(client)

        result = client.search("Patient", "_count=0")

        assert (result.entries, result.next_cursor) == ((), None)

    @pytest.mark.requires("search.include", "search.param.reference")
    def test_each_page_carries_the_includes_of_its_matches(self, client: SyncClient) -> None:
        """Paging Observations with _include=Observation:subject includes each page's Patients (http://hl7.org/fhir/R4/http.html#paging)."""
        put(client, patient("pa"), patient("pb"))
        for oid, subject in (("o1", "pa"), ("o2", "pb"), ("o3", "pa")):
            put(
                client,
                {
                    "resourceType": "Observation",
                    "id": oid,
                    "status": "final",
                    "code": {"text": "weight"},
                    "subject": {"reference": f"Patient/{subject}"},
                },
            )

        pages = client.search_pages("Observation", "_count=2&_include=Observation:subject")

        assert [(list(p.ids), sorted(p.included_references)) for p in pages] == [
            (["o1", "o2"], ["Patient/pa", "Patient/pb"]),
            (["o3"], ["Patient/pa"]),
        ]


class TestOffsetPaging:
    pytestmark = pytest.mark.requires(
        "crud.update_as_create", "search.paging.offset", "search.count"
    )

    @pytest.mark.requires("search.sort.single", "search.param.string")
    def test_offset_skips_matches_in_sort_order(self, client: SyncClient) -> None:
        """_sort=family&_count=2&_offset=2 returns the third and fourth in order (http://hl7.org/fhir/R4/http.html#paging)."""
        seven(client)

        assert list(client.search("Patient", "_sort=family&_count=2&_offset=2").ids) == [
            "p2",
            "p4",
        ]

    @pytest.mark.requires("search.sort.single", "search.param.string")
    def test_offset_pages_cover_every_match_once(self, client: SyncClient) -> None:
        """Following next_offset with _sort=-family&_count=3 yields the exact descending order (http://hl7.org/fhir/R4/http.html#paging)."""
        seven(client)

        pages = client.search_offset_pages("Patient", "_sort=-family&_count=3")

        assert [i for page in pages for i in page.ids] == BY_FAMILY_DESC

    @pytest.mark.requires("search.sort.multi", "search.param.string", "search.param.date")
    def test_offset_paging_with_a_multi_key_sort(self, client: SyncClient) -> None:
        """_sort=family,-birthdate pages by offset in the exact two-key order (http://hl7.org/fhir/R4/http.html#paging)."""
        put(
            client,
            patient("a", "Lee", birthDate="1950-01-01"),
            patient("b", "Lee", birthDate="2000-01-01"),
            patient("c", "Kim", birthDate="1990-01-01"),
            patient("d", "Lee", birthDate="1975-01-01"),
        )

        pages = client.search_offset_pages("Patient", "_sort=family,-birthdate&_count=3")

        assert page_ids(pages) == [["c", "b", "d"], ["a"]]

    def test_the_next_offset_is_where_the_next_page_starts(self, client: SyncClient) -> None:
        """_count=3&_offset=3 over seven Patients says the next page starts at 6 (http://hl7.org/fhir/R4/http.html#paging)."""
        seven(client)

        assert client.search("Patient", "_count=3&_offset=3").next_offset == 6

    def test_the_last_page_has_no_next_offset(self, client: SyncClient) -> None:
        """_count=3&_offset=6 over seven Patients is the last page (http://hl7.org/fhir/R4/http.html#paging)."""
        seven(client)

        result = client.search("Patient", "_count=3&_offset=6")

        assert (list(result.ids), result.next_offset) == (["p7"], None)

    def test_an_offset_past_the_end_is_empty(self, client: SyncClient) -> None:
        """_offset=50 over seven Patients returns no entries (http://hl7.org/fhir/R4/http.html#paging)."""
        seven(client)

        assert client.search("Patient", "_offset=50").entries == ()

    def test_a_malformed_offset_is_refused(self, client: SyncClient) -> None:
        """_offset=-1 is refused with InvalidSearch naming _offset (http://hl7.org/fhir/R4/http.html#paging)."""
        with pytest.raises(InvalidSearch) as caught:
            client.search("Patient", "_offset=-1")

        assert caught.value.parameter == "_offset"


class TestTotal:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.total")

    def test_total_accurate_counts_every_match_not_the_page(self, client: SyncClient) -> None:
        """_total=accurate&_count=2 over seven Patients reports 7 (https://hl7.org/fhir/R4/search.html#total)."""
        seven(client)

        assert client.search("Patient", "_total=accurate&_count=2").total == 7

    def test_total_none_reports_no_number(self, client: SyncClient) -> None:
        """_total=none reports no total (https://hl7.org/fhir/R4/search.html#total)."""
        seven(client)

        assert client.search("Patient", "_total=none").total is None

    def test_total_estimate_reports_a_number(self, client: SyncClient) -> None:
        """_total=estimate reports a non-negative number (https://hl7.org/fhir/R4/search.html#total)."""
        seven(client)

        total = client.search("Patient", "_total=estimate").total

        assert total is not None
        assert total >= 0

    @pytest.mark.requires("search.paging.cursor", "search.count")
    def test_total_is_the_same_on_every_page(self, client: SyncClient) -> None:
        """_total=accurate&_count=3 reports 7 on each of the three pages (https://hl7.org/fhir/R4/search.html#total)."""
        seven(client)

        pages = client.search_pages("Patient", "_total=accurate&_count=3")

        assert [page.total for page in pages] == [7, 7, 7]

    @pytest.mark.requires("search.include", "search.param.reference")
    def test_total_does_not_count_includes(self, client: SyncClient) -> None:
        """_total=accurate with _include counts the one Observation, not its Patient (https://hl7.org/fhir/R4/search.html#total)."""
        put(
            client,
            patient("p1"),
            {
                "resourceType": "Observation",
                "id": "o1",
                "status": "final",
                "code": {"text": "weight"},
                "subject": {"reference": "Patient/p1"},
            },
        )

        result = client.search("Observation", "_total=accurate&_include=Observation:subject")

        assert (result.total, len(result.included)) == (1, 1)

    def test_a_malformed_total_is_refused(self, client: SyncClient) -> None:
        """_total=some is refused with InvalidSearch (https://hl7.org/fhir/R4/search.html#total)."""
        with pytest.raises(InvalidSearch):
            client.search("Patient", "_total=some")
