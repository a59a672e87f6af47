"""History _since (inclusive) and before (exclusive) filters (FHIR R4 http.html#history)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from helios_conformance import HistoryPage, InvalidSearch, StoredResource, SyncClient

History = Callable[..., HistoryPage]


def instance_level(client: SyncClient, resource_id: str, **window: Any) -> HistoryPage:
    return client.history_instance("Patient", resource_id, **window)


def type_level(client: SyncClient, resource_id: str, **window: Any) -> HistoryPage:
    return client.history_type("Patient", **window)


def system_level(client: SyncClient, resource_id: str, **window: Any) -> HistoryPage:
    return client.history_system(**window)


# The tenant holds one Patient only, so all three levels must give the same entries.
LEVELS = [
    pytest.param(instance_level, marks=pytest.mark.requires("history.instance"), id="instance"),
    pytest.param(type_level, marks=pytest.mark.requires("history.type"), id="type"),
    pytest.param(system_level, marks=pytest.mark.requires("history.system"), id="system"),
]


def write_three_versions(client: SyncClient) -> list[StoredResource]:
    """Create a Patient and update it twice; versions 1, 2, 3 get increasing lastUpdated t1 < t2 < t3."""
    versions = [client.create({"resourceType": "Patient", "name": [{"family": "V1"}]})]
    resource_id = versions[0].id
    for family in ("V2", "V3"):
        body = {"resourceType": "Patient", "id": resource_id, "name": [{"family": family}]}
        versions.append(client.update("Patient", resource_id, body))
    return versions


def version_ids(page: HistoryPage) -> list[str]:
    return [entry.version_id for entry in page.entries]


class TestHistoryFilters:
    pytestmark = pytest.mark.requires(
        "crud.create", "crud.update", "versioning.version_ids", "history.filters"
    )

    @pytest.mark.parametrize("history", LEVELS)
    def test_since_includes_the_boundary_version(
        self, client: SyncClient, history: History
    ) -> None:
        """_since=t2 keeps versions written at or after t2: versions 3 and 2 (https://hl7.org/fhir/R4/http.html#history)."""
        v1, v2, _ = write_three_versions(client)

        page = history(client, v1.id, since=v2.last_updated)

        assert version_ids(page) == ["3", "2"]

    @pytest.mark.parametrize("history", LEVELS)
    def test_before_excludes_the_boundary_version(
        self, client: SyncClient, history: History
    ) -> None:
        """before=t2 keeps versions written strictly before t2: version 1 only (https://hl7.org/fhir/R4/http.html#history)."""
        v1, v2, _ = write_three_versions(client)

        page = history(client, v1.id, before=v2.last_updated)

        assert version_ids(page) == ["1"]

    @pytest.mark.parametrize("history", LEVELS)
    def test_since_and_before_select_a_window(self, client: SyncClient, history: History) -> None:
        """_since=t2 with before=t3 keeps exactly version 2 (https://hl7.org/fhir/R4/http.html#history)."""
        v1, v2, v3 = write_three_versions(client)

        page = history(client, v1.id, since=v2.last_updated, before=v3.last_updated)

        assert version_ids(page) == ["2"]

    @pytest.mark.requires("history.type")
    def test_since_after_the_latest_write_is_empty(self, client: SyncClient) -> None:
        """_since one microsecond after the last write matches nothing (https://hl7.org/fhir/R4/http.html#history)."""
        *_, v3 = write_three_versions(client)

        page = client.history_type("Patient", since=v3.last_updated + timedelta(microseconds=1))

        assert (page.entries, page.next_cursor) == ((), None)

    @pytest.mark.requires("history.type")
    def test_before_the_first_write_is_empty(self, client: SyncClient) -> None:
        """before=t1 matches nothing, since no version is older than the first (https://hl7.org/fhir/R4/http.html#history)."""
        v1, *_ = write_three_versions(client)

        page = client.history_type("Patient", before=v1.last_updated)

        assert page.entries == ()

    @pytest.mark.requires("history.type")
    def test_since_excludes_older_resources_of_the_type(self, client: SyncClient) -> None:
        """_since the creation of p2 keeps p2 and omits the older, untouched p1 (https://hl7.org/fhir/R4/http.html#history)."""
        client.create({"resourceType": "Patient", "name": [{"family": "Older"}]})
        p2 = client.create({"resourceType": "Patient", "name": [{"family": "Newer"}]})

        page = client.history_type("Patient", since=p2.last_updated)

        assert page.entries == (p2,)

    @pytest.mark.requires("history.type")
    @pytest.mark.parametrize("parameter", ["since", "before"])
    def test_naive_datetime_raises_invalid_search(self, client: SyncClient, parameter: str) -> None:
        """An instant without a time zone is ambiguous and refused (https://hl7.org/fhir/R4/datatypes.html#instant)."""
        naive = datetime(2024, 1, 1, 12, 0, 0)

        with pytest.raises(InvalidSearch) as caught:
            client.history_type("Patient", **{parameter: naive})

        assert caught.value.parameter == {"since": "_since", "before": "before"}[parameter]
        assert caught.value.http_status == 400

    @pytest.mark.requires("history.type")
    @pytest.mark.parametrize(
        "offset",
        [
            pytest.param(timedelta(0), id="before-equals-since"),
            pytest.param(timedelta(seconds=-1), id="before-earlier"),
        ],
    )
    def test_empty_window_raises_invalid_search(
        self, client: SyncClient, offset: timedelta
    ) -> None:
        """before at or earlier than _since can match nothing and is refused (https://hl7.org/fhir/R4/http.html#history)."""
        v1, _, _ = write_three_versions(client)

        with pytest.raises(InvalidSearch) as caught:
            client.history_type("Patient", since=v1.last_updated, before=v1.last_updated + offset)

        assert caught.value.parameter == "before"
