"""Optimistic locking: update and delete with an expected version (FHIR R4 http.html#concurrency)."""

from __future__ import annotations

import pytest

from helios_conformance import Gone, NotFound, SyncClient, VersionConflict


def patient(resource_id: str, family: str) -> dict[str, object]:
    return {"resourceType": "Patient", "id": resource_id, "name": [{"family": family}]}


class TestUpdateIfMatch:
    pytestmark = pytest.mark.requires(
        "crud.create", "crud.update", "versioning.version_ids", "versioning.if_match"
    )

    def test_current_version_succeeds(self, client: SyncClient) -> None:
        """An update expecting the current version 1 is written as version 2 (https://hl7.org/fhir/R4/http.html#concurrency)."""
        created = client.create({"resourceType": "Patient"})

        updated = client.update(
            "Patient", created.id, patient(created.id, "Second"), expected_version="1"
        )

        assert updated.version_id == "2"

    def test_successive_expected_versions_chain(self, client: SyncClient) -> None:
        """Expecting 1 then 2 writes versions 2 then 3 (https://hl7.org/fhir/R4/http.html#concurrency)."""
        created = client.create({"resourceType": "Patient"})

        second = client.update(
            "Patient", created.id, patient(created.id, "Second"), expected_version="1"
        )
        third = client.update(
            "Patient", created.id, patient(created.id, "Third"), expected_version="2"
        )

        assert (second.version_id, third.version_id) == ("2", "3")

    def test_stale_version_raises_version_conflict(self, client: SyncClient) -> None:
        """Expecting version 1 when version 2 is current raises a 409 VersionConflict naming both (https://hl7.org/fhir/R4/http.html#concurrency)."""
        created = client.create({"resourceType": "Patient"})
        client.update("Patient", created.id, patient(created.id, "Second"))

        with pytest.raises(VersionConflict) as caught:
            client.update(
                "Patient", created.id, patient(created.id, "Lost-update"), expected_version="1"
            )

        conflict = caught.value
        assert (conflict.resource_type, conflict.resource_id) == ("Patient", created.id)
        assert (conflict.expected_version, conflict.actual_version) == ("1", "2")
        assert (conflict.http_status, conflict.issue_code) == (409, "conflict")

    def test_future_version_raises_version_conflict(self, client: SyncClient) -> None:
        """Expecting version 5 of a resource at version 1 raises VersionConflict (https://hl7.org/fhir/R4/http.html#concurrency)."""
        created = client.create({"resourceType": "Patient"})

        with pytest.raises(VersionConflict) as caught:
            client.update(
                "Patient", created.id, patient(created.id, "Too-early"), expected_version="5"
            )

        assert (caught.value.expected_version, caught.value.actual_version) == ("5", "1")

    @pytest.mark.requires("crud.read", "history.instance")
    def test_stale_version_writes_nothing(self, client: SyncClient) -> None:
        """A conflicting update leaves the current version and the history as they were (https://hl7.org/fhir/R4/http.html#concurrency)."""
        created = client.create({"resourceType": "Patient"})
        second = client.update("Patient", created.id, patient(created.id, "Second"))

        with pytest.raises(VersionConflict):
            client.update(
                "Patient", created.id, patient(created.id, "Lost-update"), expected_version="1"
            )

        current = client.read("Patient", created.id)
        assert (current.version_id, current.resource) == ("2", second.resource)
        history = client.history_instance("Patient", created.id)
        assert [entry.version_id for entry in history.entries] == ["2", "1"]

    def test_conflict_does_not_use_up_a_version(self, client: SyncClient) -> None:
        """After a conflict the next update is version 3, directly after version 2 (https://hl7.org/fhir/R4/http.html#concurrency)."""
        created = client.create({"resourceType": "Patient"})
        client.update("Patient", created.id, patient(created.id, "Second"))
        with pytest.raises(VersionConflict):
            client.update(
                "Patient", created.id, patient(created.id, "Lost-update"), expected_version="1"
            )

        third = client.update(
            "Patient", created.id, patient(created.id, "Third"), expected_version="2"
        )

        assert third.version_id == "3"

    @pytest.mark.requires("crud.read")
    def test_missing_resource_raises_not_found(self, client: SyncClient) -> None:
        """An expected version on an update of a missing resource still raises NotFound and creates nothing (https://hl7.org/fhir/R4/http.html#update)."""
        with pytest.raises(NotFound):
            client.update("Patient", "nobody", patient("nobody", "Ghost"), expected_version="1")

        assert client.count() == 0

    @pytest.mark.requires("crud.delete")
    def test_deleted_resource_raises_gone(self, client: SyncClient) -> None:
        """An update expecting the deletion's version 2 still raises Gone (https://hl7.org/fhir/R4/http.html#update)."""
        created = client.create({"resourceType": "Patient"})
        client.delete("Patient", created.id)

        with pytest.raises(Gone):
            client.update(
                "Patient", created.id, patient(created.id, "Lazarus"), expected_version="2"
            )


class TestDeleteIfMatch:
    pytestmark = pytest.mark.requires(
        "crud.create", "crud.delete", "versioning.version_ids", "versioning.if_match"
    )

    def test_current_version_succeeds(self, client: SyncClient) -> None:
        """A delete expecting the current version 1 writes deletion version 2 (https://hl7.org/fhir/R4/http.html#concurrency)."""
        created = client.create({"resourceType": "Patient"})

        deletion = client.delete("Patient", created.id, expected_version="1")

        assert deletion is not None
        assert (deletion.version_id, deletion.deleted) == ("2", True)

    @pytest.mark.requires("crud.update", "crud.read")
    def test_stale_version_raises_conflict_and_deletes_nothing(self, client: SyncClient) -> None:
        """A delete expecting version 1 of a version-2 resource raises VersionConflict and it stays live (https://hl7.org/fhir/R4/http.html#concurrency)."""
        created = client.create({"resourceType": "Patient"})
        second = client.update("Patient", created.id, patient(created.id, "Second"))

        with pytest.raises(VersionConflict) as caught:
            client.delete("Patient", created.id, expected_version="1")

        assert (caught.value.expected_version, caught.value.actual_version) == ("1", "2")
        current = client.read("Patient", created.id)
        assert (current.version_id, current.resource) == ("2", second.resource)

    def test_missing_resource_raises_conflict_without_actual_version(
        self, client: SyncClient
    ) -> None:
        """A delete expecting a version of a resource that never existed raises VersionConflict with no actual version (https://hl7.org/fhir/R4/http.html#concurrency)."""
        with pytest.raises(VersionConflict) as caught:
            client.delete("Patient", "never-created", expected_version="1")

        conflict = caught.value
        assert (conflict.resource_type, conflict.resource_id) == ("Patient", "never-created")
        assert (conflict.expected_version, conflict.actual_version) == ("1", None)

    @pytest.mark.requires("history.instance", "history.deletes")
    def test_deleted_resource_raises_conflict_and_writes_nothing(self, client: SyncClient) -> None:
        """A delete expecting a version of a deleted resource raises VersionConflict and adds no version (https://hl7.org/fhir/R4/http.html#concurrency)."""
        created = client.create({"resourceType": "Patient"})
        client.delete("Patient", created.id)

        with pytest.raises(VersionConflict) as caught:
            client.delete("Patient", created.id, expected_version="2")

        assert (caught.value.expected_version, caught.value.actual_version) == ("2", None)
        history = client.history_instance("Patient", created.id)
        assert [entry.version_id for entry in history.entries] == ["2", "1"]
