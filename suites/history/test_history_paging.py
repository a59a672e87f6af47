"""History _count paging with opaque cursors, newest first (FHIR R4 http.html#history, http.html#paging)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from helios_conformance import (
    DEFAULT_HISTORY_COUNT,
    MAX_HISTORY_COUNT,
    HistoryPage,
    InvalidSearch,
    StoredResource,
    SyncClient,
)

ClientFactory = Callable[..., SyncClient]
History = Callable[..., HistoryPage]


def instance_level(client: SyncClient, resource_id: str, **query: Any) -> HistoryPage:
    return client.history_instance("Patient", resource_id, **query)


def type_level(client: SyncClient, resource_id: str, **query: Any) -> HistoryPage:
    return client.history_type("Patient", **query)


def system_level(client: SyncClient, resource_id: str, **query: Any) -> HistoryPage:
    return client.history_system(**query)


# The tenant holds one Patient only, so all three levels must page the same entries.
LEVELS = [
    pytest.param(instance_level, marks=pytest.mark.requires("history.instance"), id="instance"),
    pytest.param(type_level, marks=pytest.mark.requires("history.type"), id="type"),
    pytest.param(system_level, marks=pytest.mark.requires("history.system"), id="system"),
]


def write_versions(client: SyncClient, how_many: int) -> list[StoredResource]:
    """Create a Patient and update it until it has ``how_many`` versions; return them oldest first."""
    versions = [client.create({"resourceType": "Patient", "name": [{"family": "V1"}]})]
    resource_id = versions[0].id
    for number in range(2, how_many + 1):
        body = {"resourceType": "Patient", "id": resource_id, "name": [{"family": f"V{number}"}]}
        versions.append(client.update("Patient", resource_id, body))
    return versions


def pages(first: Callable[[str | None], HistoryPage]) -> list[HistoryPage]:
    """Every page of one query, following next_cursor from the first page."""
    collected = [first(None)]
    while collected[-1].next_cursor is not None:
        assert len(collected) < 1000, "paging did not terminate"
        collected.append(first(collected[-1].next_cursor))
    return collected


def version_ids(entries: tuple[StoredResource, ...] | list[StoredResource]) -> list[str]:
    return [entry.version_id for entry in entries]


def tampered(cursor: str, how: str) -> str:
    if how == "first-character-changed":
        return ("B" if cursor[0] == "A" else "A") + cursor[1:]
    if how == "truncated":
        return cursor[:-5]
    return cursor + "x"


class TestHistoryPaging:
    pytestmark = pytest.mark.requires(
        "crud.create", "crud.update", "versioning.version_ids", "history.paging"
    )

    @pytest.mark.parametrize("history", LEVELS)
    def test_five_versions_in_pages_of_two(self, client: SyncClient, history: History) -> None:
        """_count=2 over five versions gives pages [5, 4], [3, 2], [1], the last without a cursor (https://hl7.org/fhir/R4/http.html#history)."""
        first = write_versions(client, 5)[0]

        result = pages(lambda cursor: history(client, first.id, count=2, cursor=cursor))

        assert [version_ids(page.entries) for page in result] == [["5", "4"], ["3", "2"], ["1"]]
        assert [page.next_cursor is None for page in result] == [False, False, True]

    @pytest.mark.requires("history.type")
    def test_pages_concatenate_to_the_unpaged_history(self, client: SyncClient) -> None:
        """Pages of one followed to the end equal one large page, entry for entry (https://hl7.org/fhir/R4/http.html#paging)."""
        write_versions(client, 4)
        client.create({"resourceType": "Patient", "name": [{"family": "Second-patient"}]})

        paged = client.history_all_pages(
            lambda cursor: client.history_type("Patient", count=1, cursor=cursor)
        )

        assert tuple(paged) == client.history_type("Patient", count=MAX_HISTORY_COUNT).entries

    @pytest.mark.requires("history.type")
    def test_full_last_page_has_no_cursor(self, client: SyncClient) -> None:
        """_count=2 over four versions gives two full pages and the second has no next cursor (https://hl7.org/fhir/R4/http.html#paging)."""
        write_versions(client, 4)

        result = pages(lambda cursor: client.history_type("Patient", count=2, cursor=cursor))

        assert [version_ids(page.entries) for page in result] == [["4", "3"], ["2", "1"]]
        assert result[-1].next_cursor is None

    @pytest.mark.requires("history.type")
    def test_default_page_size(self, client: SyncClient) -> None:
        """Without _count a page holds DEFAULT_HISTORY_COUNT (50) entries and links to the rest (https://hl7.org/fhir/R4/http.html#paging)."""
        write_versions(client, DEFAULT_HISTORY_COUNT + 1)

        first = client.history_type("Patient")
        rest = client.history_type("Patient", cursor=first.next_cursor)

        assert len(first.entries) == DEFAULT_HISTORY_COUNT
        assert version_ids(rest.entries) == ["1"]
        assert rest.next_cursor is None

    @pytest.mark.requires("history.type")
    def test_maximum_count_is_accepted(self, client: SyncClient) -> None:
        """_count=MAX_HISTORY_COUNT (1000) is allowed and returns every version on one page (https://hl7.org/fhir/R4/search.html#count)."""
        write_versions(client, 3)

        page = client.history_type("Patient", count=MAX_HISTORY_COUNT)

        assert (version_ids(page.entries), page.next_cursor) == (["3", "2", "1"], None)

    @pytest.mark.requires("history.type", "history.filters")
    def test_paging_respects_since(self, client: SyncClient) -> None:
        """_since=t2 with _count=2 over five versions pages [5, 4], [3, 2] and never reaches version 1 (https://hl7.org/fhir/R4/http.html#history)."""
        versions = write_versions(client, 5)

        result = pages(
            lambda cursor: client.history_type(
                "Patient", since=versions[1].last_updated, count=2, cursor=cursor
            )
        )

        assert [version_ids(page.entries) for page in result] == [["5", "4"], ["3", "2"]]

    @pytest.mark.requires("history.type")
    def test_write_between_pages_neither_repeats_nor_skips(self, client: SyncClient) -> None:
        """A version written after page one has been read does not shift the later pages (https://hl7.org/fhir/R4/http.html#paging)."""
        versions = write_versions(client, 4)
        first = client.history_type("Patient", count=2)
        body = {"resourceType": "Patient", "id": versions[0].id, "name": [{"family": "V5"}]}
        client.update("Patient", versions[0].id, body)

        second = client.history_type("Patient", count=2, cursor=first.next_cursor)

        assert (version_ids(first.entries), version_ids(second.entries)) == (["4", "3"], ["2", "1"])

    @pytest.mark.requires("history.type")
    @pytest.mark.parametrize("count", [0, -1, MAX_HISTORY_COUNT + 1])
    def test_count_out_of_range_raises_invalid_search(self, client: SyncClient, count: int) -> None:
        """_count outside 1..1000 is refused, naming _count (https://hl7.org/fhir/R4/search.html#count)."""
        with pytest.raises(InvalidSearch) as caught:
            client.history_type("Patient", count=count)

        assert caught.value.parameter == "_count"

    @pytest.mark.requires("history.type")
    @pytest.mark.parametrize("how", ["first-character-changed", "truncated", "character-appended"])
    def test_tampered_cursor_raises_invalid_search(self, client: SyncClient, how: str) -> None:
        """A next cursor altered by hand is refused rather than trusted (https://hl7.org/fhir/R4/http.html#paging)."""
        write_versions(client, 3)
        cursor = client.history_type("Patient", count=1).next_cursor
        assert cursor is not None

        with pytest.raises(InvalidSearch):
            client.history_type("Patient", count=1, cursor=tampered(cursor, how))

    @pytest.mark.requires("history.type")
    def test_cursor_from_another_tenant_raises_invalid_search(
        self, client: SyncClient, new_client: ClientFactory
    ) -> None:
        """Tenant B cannot continue a history query tenant A started (https://hl7.org/fhir/R4/http.html#paging)."""
        other = new_client()
        write_versions(client, 3)
        write_versions(other, 3)
        cursor = client.history_type("Patient", count=1).next_cursor
        assert cursor is not None

        with pytest.raises(InvalidSearch):
            other.history_type("Patient", count=1, cursor=cursor)

    @pytest.mark.requires("history.type")
    def test_cursor_from_another_query_raises_invalid_search(self, client: SyncClient) -> None:
        """A Patient history cursor cannot continue Observation history (https://hl7.org/fhir/R4/http.html#paging)."""
        write_versions(client, 3)
        for status in ("registered", "final"):
            client.create({"resourceType": "Observation", "status": status})
        cursor = client.history_type("Patient", count=1).next_cursor
        assert cursor is not None

        with pytest.raises(InvalidSearch):
            client.history_type("Observation", count=1, cursor=cursor)
