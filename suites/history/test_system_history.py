"""System history: every version of every resource in the tenant, newest first (FHIR R4 http.html#history)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from helios_conformance import SyncClient, r4_example

ClientFactory = Callable[..., SyncClient]


class TestSystemHistory:
    pytestmark = pytest.mark.requires("crud.create", "history.system")

    def test_empty_tenant_has_no_history(self, client: SyncClient) -> None:
        """System history in a fresh tenant is one empty, final page (https://hl7.org/fhir/R4/http.html#history)."""
        page = client.history_system()

        assert (page.entries, page.next_cursor) == ((), None)

    @pytest.mark.requires("crud.update", "versioning.version_ids")
    def test_lists_every_type_newest_first(self, client: SyncClient) -> None:
        """Writes Patient, Observation, Patient update appear as Patient v2, Observation v1, Patient v1 (https://hl7.org/fhir/R4/http.html#history)."""
        pat = client.create({"resourceType": "Patient", "gender": "female"})
        obs = client.create({"resourceType": "Observation", "status": "final"})
        client.update(
            "Patient", pat.id, {"resourceType": "Patient", "id": pat.id, "gender": "male"}
        )

        page = client.history_system()

        assert [(e.resource_type, e.id, e.version_id) for e in page.entries] == [
            ("Patient", pat.id, "2"),
            ("Observation", obs.id, "1"),
            ("Patient", pat.id, "1"),
        ]

    def test_carries_each_official_example(self, client: SyncClient) -> None:
        """Five official examples of five types appear in reverse write order with their bodies (https://hl7.org/fhir/R4/http.html#history)."""
        names = [
            "Patient-example",
            "Observation-example",
            "Encounter-example",
            "Organization-1",
            "Practitioner-example",
        ]
        created = [client.create(r4_example(name)) for name in names]

        page = client.history_system()

        assert page.entries == tuple(reversed(created))

    def test_excludes_another_tenants_writes(
        self, client: SyncClient, new_client: ClientFactory
    ) -> None:
        """System history in A omits everything tenant B wrote, of any type (https://hl7.org/fhir/R4/http.html#history)."""
        other = new_client()
        other.create({"resourceType": "Observation", "status": "final"})
        mine = client.create({"resourceType": "Patient"})
        other.create({"resourceType": "Patient"})

        page = client.history_system()

        assert page.entries == (mine,)
