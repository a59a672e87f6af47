"""Type history: every version of every resource of one type, newest first (FHIR R4 http.html#history)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from helios_conformance import InvalidRequest, SyncClient

ClientFactory = Callable[..., SyncClient]


def patient(resource_id: str, family: str) -> dict[str, object]:
    return {"resourceType": "Patient", "id": resource_id, "name": [{"family": family}]}


class TestTypeHistory:
    pytestmark = pytest.mark.requires("crud.create", "history.type")

    def test_empty_tenant_has_no_history(self, client: SyncClient) -> None:
        """Type history in a fresh tenant is one empty, final page (https://hl7.org/fhir/R4/http.html#history)."""
        page = client.history_type("Patient")

        assert (page.entries, page.next_cursor) == ((), None)

    @pytest.mark.requires("crud.update", "versioning.version_ids")
    def test_interleaved_writes_are_listed_in_write_order_newest_first(
        self, client: SyncClient
    ) -> None:
        """Writes p1, p2, p1, p2 appear as p2 v2, p1 v2, p2 v1, p1 v1 (https://hl7.org/fhir/R4/http.html#history)."""
        p1 = client.create({"resourceType": "Patient", "name": [{"family": "First"}]})
        p2 = client.create({"resourceType": "Patient", "name": [{"family": "Second"}]})
        client.update("Patient", p1.id, patient(p1.id, "First-2"))
        client.update("Patient", p2.id, patient(p2.id, "Second-2"))

        page = client.history_type("Patient")

        assert [(e.id, e.version_id) for e in page.entries] == [
            (p2.id, "2"),
            (p1.id, "2"),
            (p2.id, "1"),
            (p1.id, "1"),
        ]

    def test_excludes_other_types(self, client: SyncClient) -> None:
        """Patient history omits the Observation written between the two Patients (https://hl7.org/fhir/R4/http.html#history)."""
        p1 = client.create({"resourceType": "Patient"})
        client.create({"resourceType": "Observation", "status": "final"})
        p2 = client.create({"resourceType": "Patient"})

        page = client.history_type("Patient")

        assert page.entries == (p2, p1)

    def test_excludes_another_tenants_writes(
        self, client: SyncClient, new_client: ClientFactory
    ) -> None:
        """Patient history in A omits the Patients tenant B created (https://hl7.org/fhir/R4/http.html#history)."""
        other = new_client()
        other.create({"resourceType": "Patient", "name": [{"family": "Of-B"}]})
        mine = client.create({"resourceType": "Patient", "name": [{"family": "Of-A"}]})
        other.create({"resourceType": "Patient", "name": [{"family": "Of-B-later"}]})

        page = client.history_type("Patient")

        assert page.entries == (mine,)

    @pytest.mark.requires("crud.validation")
    def test_unknown_type_raises_invalid_request(self, client: SyncClient) -> None:
        """Type history of a type that is not an R4 resource type is a bad request (https://hl7.org/fhir/R4/http.html#history)."""
        with pytest.raises(InvalidRequest):
            client.history_type("Patiant")
