"""Instance history: every version of one resource, newest first (FHIR R4 http.html#history)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from helios_conformance import InvalidRequest, NotFound, StoredResource, SyncClient

ClientFactory = Callable[..., SyncClient]


def patient(resource_id: str, family: str) -> dict[str, object]:
    return {"resourceType": "Patient", "id": resource_id, "name": [{"family": family}]}


def write_three_versions(client: SyncClient) -> list[StoredResource]:
    """Create a Patient named V1 and update it to V2 and V3; return the stored versions."""
    versions = [client.create({"resourceType": "Patient", "name": [{"family": "V1"}]})]
    for family in ("V2", "V3"):
        versions.append(client.update("Patient", versions[0].id, patient(versions[0].id, family)))
    return versions


class TestInstanceHistory:
    pytestmark = pytest.mark.requires("crud.create", "history.instance")

    @pytest.mark.requires("crud.update", "versioning.version_ids")
    def test_lists_versions_newest_first(self, client: SyncClient) -> None:
        """Instance history of a thrice-written resource lists versions 3, 2, 1 (https://hl7.org/fhir/R4/http.html#history)."""
        versions = write_three_versions(client)

        page = client.history_instance("Patient", versions[0].id)

        assert [entry.version_id for entry in page.entries] == ["3", "2", "1"]
        assert page.next_cursor is None

    @pytest.mark.requires("crud.update")
    def test_entries_carry_each_versions_body(self, client: SyncClient) -> None:
        """Each history entry holds the body and lastUpdated that version was stored with (https://hl7.org/fhir/R4/http.html#history)."""
        versions = write_three_versions(client)

        page = client.history_instance("Patient", versions[0].id)

        expected = [(v.version_id, v.last_updated, v.resource) for v in reversed(versions)]
        assert [(e.version_id, e.last_updated, e.resource) for e in page.entries] == expected
        assert all(
            (e.resource_type, e.id, e.deleted) == ("Patient", versions[0].id, False)
            for e in page.entries
        )

    def test_single_version_has_one_entry(self, client: SyncClient) -> None:
        """A resource that was only created has exactly its one version in history (https://hl7.org/fhir/R4/http.html#history)."""
        created = client.create({"resourceType": "Patient"})

        page = client.history_instance("Patient", created.id)

        assert page.entries == (created,)

    @pytest.mark.requires("crud.update")
    def test_excludes_other_resources(self, client: SyncClient) -> None:
        """History of p1 omits p2 even when their writes interleave (https://hl7.org/fhir/R4/http.html#history)."""
        p1 = client.create({"resourceType": "Patient", "name": [{"family": "Tracked"}]})
        p2 = client.create({"resourceType": "Patient", "name": [{"family": "Other"}]})
        client.update("Patient", p1.id, patient(p1.id, "Tracked-2"))
        client.update("Patient", p2.id, patient(p2.id, "Other-2"))

        page = client.history_instance("Patient", p1.id)

        assert {entry.id for entry in page.entries} == {p1.id}
        assert len(page.entries) == 2

    @pytest.mark.requires("crud.update_as_create")
    def test_excludes_the_same_id_of_another_type(self, client: SyncClient) -> None:
        """History of Patient/shared omits Observation/shared (https://hl7.org/fhir/R4/http.html#history)."""
        client.create_or_update("Patient", "shared", patient("shared", "Kept"))
        client.create_or_update(
            "Observation",
            "shared",
            {"resourceType": "Observation", "id": "shared", "status": "final"},
        )

        page = client.history_instance("Patient", "shared")

        assert [(e.resource_type, e.id) for e in page.entries] == [("Patient", "shared")]

    def test_never_existing_raises_not_found(self, client: SyncClient) -> None:
        """Instance history of a resource that never existed raises NotFound naming it (https://hl7.org/fhir/R4/http.html#history)."""
        with pytest.raises(NotFound) as caught:
            client.history_instance("Patient", "never-created")

        assert (caught.value.resource_type, caught.value.resource_id) == (
            "Patient",
            "never-created",
        )

    @pytest.mark.requires("crud.validation")
    def test_malformed_id_raises_invalid_request(self, client: SyncClient) -> None:
        """Instance history of a malformed id is a bad request (https://hl7.org/fhir/R4/datatypes.html#id)."""
        with pytest.raises(InvalidRequest):
            client.history_instance("Patient", "has space")

    @pytest.mark.requires("crud.update_as_create")
    def test_excludes_another_tenants_writes_to_the_same_id(
        self, client: SyncClient, new_client: ClientFactory
    ) -> None:
        """History of Patient/shared in A omits B's writes to its own Patient/shared (https://hl7.org/fhir/R4/http.html#history)."""
        other = new_client()
        mine, _ = client.create_or_update("Patient", "shared", patient("shared", "Of-A"))
        other.create_or_update("Patient", "shared", patient("shared", "Of-B"))
        other.create_or_update("Patient", "shared", patient("shared", "Of-B-2"))

        page = client.history_instance("Patient", "shared")

        assert page.entries == (mine,)

    def test_another_tenants_resource_raises_not_found(
        self, client: SyncClient, new_client: ClientFactory
    ) -> None:
        """Instance history from B of a resource created in A raises NotFound (https://hl7.org/fhir/R4/http.html#history)."""
        created = client.create({"resourceType": "Patient"})

        with pytest.raises(NotFound):
            new_client().history_instance("Patient", created.id)
