"""delete: a deletion version hides the resource from read and count (FHIR R4 http.html#delete)."""

from __future__ import annotations

import pytest

from helios_conformance import SyncClient


class TestDelete:
    pytestmark = pytest.mark.requires("crud.create", "crud.delete")

    @pytest.mark.requires("versioning.version_ids")
    def test_returns_the_deletion_version(self, client: SyncClient) -> None:
        """Delete writes and returns a deletion version after the current one, with no body (https://hl7.org/fhir/R4/http.html#delete)."""
        created = client.create({"resourceType": "Patient"})

        deletion = client.delete("Patient", created.id)

        assert deletion is not None
        assert (deletion.resource_type, deletion.id, deletion.version_id) == (
            "Patient",
            created.id,
            "2",
        )
        assert deletion.deleted is True
        assert deletion.resource is None
        assert deletion.last_updated > created.last_updated

    @pytest.mark.requires("crud.read")
    def test_count_excludes_deleted_resources(self, client: SyncClient) -> None:
        """count leaves out the deleted p2 and keeps the live p1 and p3 (https://hl7.org/fhir/R4/http.html#delete)."""
        p1 = client.create({"resourceType": "Patient", "name": [{"family": "Kept-1"}]})
        p2 = client.create({"resourceType": "Patient", "name": [{"family": "Deleted"}]})
        p3 = client.create({"resourceType": "Patient", "name": [{"family": "Kept-3"}]})

        client.delete("Patient", p2.id)

        assert client.count("Patient") == 2
        assert client.count() == 2
        assert [client.exists("Patient", p.id) for p in (p1, p2, p3)] == [True, False, True]

    @pytest.mark.requires("crud.read")
    def test_leaves_other_resources_unchanged(self, client: SyncClient) -> None:
        """Deleting p1 leaves p2 readable at its own version and body (https://hl7.org/fhir/R4/http.html#delete)."""
        p1 = client.create({"resourceType": "Patient", "name": [{"family": "Deleted"}]})
        p2 = client.create({"resourceType": "Patient", "name": [{"family": "Kept"}]})

        client.delete("Patient", p1.id)

        current = client.read("Patient", p2.id)
        assert (current.version_id, current.resource) == (p2.version_id, p2.resource)

    @pytest.mark.requires("crud.read")
    def test_ids_are_scoped_by_resource_type(self, client: SyncClient) -> None:
        """Deleting Observation/<a Patient's id> deletes nothing and leaves the Patient readable (https://hl7.org/fhir/R4/http.html#delete)."""
        created = client.create({"resourceType": "Patient"})

        assert client.delete("Observation", created.id) is None

        assert client.read("Patient", created.id).version_id == created.version_id

    def test_never_existing_returns_none(self, client: SyncClient) -> None:
        """Deleting an id that never existed succeeds and returns no version (https://hl7.org/fhir/R4/http.html#delete)."""
        assert client.delete("Patient", "never-created") is None

    def test_already_deleted_returns_none(self, client: SyncClient) -> None:
        """Deleting an already deleted resource succeeds and returns no version (https://hl7.org/fhir/R4/http.html#delete)."""
        created = client.create({"resourceType": "Patient"})
        client.delete("Patient", created.id)

        assert client.delete("Patient", created.id) is None

    @pytest.mark.requires("crud.read")
    def test_create_after_delete_makes_a_new_resource(self, client: SyncClient) -> None:
        """A create after a delete gets a new id; the deleted resource stays deleted (https://hl7.org/fhir/R4/http.html#delete)."""
        deleted = client.create({"resourceType": "Patient"})
        client.delete("Patient", deleted.id)

        fresh = client.create({"resourceType": "Patient"})

        assert fresh.id != deleted.id
        assert client.exists("Patient", deleted.id) is False
        assert client.count("Patient") == 1
