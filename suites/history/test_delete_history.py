"""Deletions are versions in history; deletes that change nothing write nothing (FHIR R4 http.html#delete)."""

from __future__ import annotations

import pytest

from helios_conformance import NotFound, SyncClient


def patient(resource_id: str, family: str) -> dict[str, object]:
    return {"resourceType": "Patient", "id": resource_id, "name": [{"family": family}]}


class TestDeleteHistory:
    pytestmark = pytest.mark.requires("crud.create", "crud.delete", "history.deletes")

    @pytest.mark.requires("history.instance", "versioning.version_ids")
    def test_instance_history_includes_the_deletion(self, client: SyncClient) -> None:
        """Instance history after create and delete lists the deletion marker, then version 1 (https://hl7.org/fhir/R4/http.html#history)."""
        created = client.create({"resourceType": "Patient", "name": [{"family": "Gone-soon"}]})
        client.delete("Patient", created.id)

        page = client.history_instance("Patient", created.id)

        assert [(e.version_id, e.deleted, e.resource) for e in page.entries] == [
            ("2", True, None),
            ("1", False, created.resource),
        ]

    @pytest.mark.requires("history.instance", "crud.update")
    def test_entries_report_the_method_that_wrote_them(self, client: SyncClient) -> None:
        """History entries of create, update and delete report POST, PUT and DELETE (https://hl7.org/fhir/R4/bundle-definitions.html#Bundle.entry.request.method)."""
        created = client.create({"resourceType": "Patient"})
        client.update("Patient", created.id, patient(created.id, "Updated"))
        client.delete("Patient", created.id)

        page = client.history_instance("Patient", created.id)

        assert [entry.method for entry in page.entries] == ["DELETE", "PUT", "POST"]

    @pytest.mark.requires("history.type")
    def test_type_history_includes_the_deletion(self, client: SyncClient) -> None:
        """Type history lists the deletion of p1 as the newest Patient entry (https://hl7.org/fhir/R4/http.html#history)."""
        p1 = client.create({"resourceType": "Patient", "name": [{"family": "Deleted"}]})
        p2 = client.create({"resourceType": "Patient", "name": [{"family": "Kept"}]})
        deletion = client.delete("Patient", p1.id)

        page = client.history_type("Patient")

        assert page.entries == (deletion, p2, p1)

    @pytest.mark.requires("history.system")
    def test_system_history_includes_the_deletion(self, client: SyncClient) -> None:
        """System history lists the deletion of an Observation among the Patient writes (https://hl7.org/fhir/R4/http.html#history)."""
        obs = client.create({"resourceType": "Observation", "status": "final"})
        pat = client.create({"resourceType": "Patient"})
        deletion = client.delete("Observation", obs.id)

        page = client.history_system()

        assert page.entries == (deletion, pat, obs)

    @pytest.mark.requires("history.type", "history.filters")
    def test_since_the_deletion_returns_only_the_deletion(self, client: SyncClient) -> None:
        """_since the deletion instant keeps the deletion marker and drops the create (https://hl7.org/fhir/R4/http.html#history)."""
        created = client.create({"resourceType": "Patient"})
        deletion = client.delete("Patient", created.id)
        assert deletion is not None

        page = client.history_type("Patient", since=deletion.last_updated)

        assert page.entries == (deletion,)

    @pytest.mark.requires("crud.update_as_create", "history.instance", "versioning.version_ids")
    def test_recreation_continues_the_history(self, client: SyncClient) -> None:
        """Create, delete and re-create of Patient/p1 give history 3 (live), 2 (deleted), 1 (live) (https://hl7.org/fhir/R4/http.html#history)."""
        client.create_or_update("Patient", "p1", patient("p1", "First-life"))
        client.delete("Patient", "p1")
        client.create_or_update("Patient", "p1", patient("p1", "Second-life"))

        page = client.history_instance("Patient", "p1")

        assert [(e.version_id, e.deleted) for e in page.entries] == [
            ("3", False),
            ("2", True),
            ("1", False),
        ]

    @pytest.mark.requires("history.type")
    def test_deleting_a_never_existing_resource_writes_no_history(self, client: SyncClient) -> None:
        """A delete of an id that never existed leaves type history empty (https://hl7.org/fhir/R4/http.html#delete)."""
        assert client.delete("Patient", "never-created") is None

        assert client.history_type("Patient").entries == ()

    @pytest.mark.requires("history.instance")
    def test_deleting_a_never_existing_resource_creates_no_instance(
        self, client: SyncClient
    ) -> None:
        """After a delete of an id that never existed, its instance history is still NotFound (https://hl7.org/fhir/R4/http.html#delete)."""
        client.delete("Patient", "never-created")

        with pytest.raises(NotFound):
            client.history_instance("Patient", "never-created")

    @pytest.mark.requires("history.instance", "versioning.version_ids")
    def test_deleting_twice_writes_one_deletion(self, client: SyncClient) -> None:
        """A second delete of a deleted resource adds no version: history stays 2, 1 (https://hl7.org/fhir/R4/http.html#delete)."""
        created = client.create({"resourceType": "Patient"})
        client.delete("Patient", created.id)

        assert client.delete("Patient", created.id) is None

        page = client.history_instance("Patient", created.id)
        assert [(e.version_id, e.deleted) for e in page.entries] == [("2", True), ("1", False)]

    @pytest.mark.requires("history.instance", "crud.update")
    def test_versions_before_the_deletion_keep_their_bodies(self, client: SyncClient) -> None:
        """After a delete, history still holds every earlier version's body (https://hl7.org/fhir/R4/http.html#history)."""
        created = client.create({"resourceType": "Patient", "name": [{"family": "V1"}]})
        updated = client.update("Patient", created.id, patient(created.id, "V2"))
        client.delete("Patient", created.id)

        page = client.history_instance("Patient", created.id)

        assert [e.resource for e in page.entries[1:]] == [updated.resource, created.resource]
