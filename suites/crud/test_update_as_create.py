"""Update as create: storing at a client-chosen id (FHIR R4 http.html#upsert)."""

from __future__ import annotations

import copy

import pytest

from helios_conformance import InvalidResource, SyncClient


class TestUpdateAsCreate:
    pytestmark = pytest.mark.requires("crud.update_as_create")

    @pytest.mark.requires("versioning.version_ids")
    def test_missing_resource_is_created_at_the_client_id(self, client: SyncClient) -> None:
        """A missing id is created as version 1 at exactly the client's id (https://hl7.org/fhir/R4/http.html#upsert)."""
        stored, created = client.create_or_update(
            "Patient",
            "pat-chosen-by-client",
            {"resourceType": "Patient", "id": "pat-chosen-by-client"},
        )

        assert created is True
        assert (stored.resource_type, stored.id, stored.version_id) == (
            "Patient",
            "pat-chosen-by-client",
            "1",
        )
        assert stored.resource is not None
        assert stored.resource["id"] == "pat-chosen-by-client"

    @pytest.mark.requires("crud.read")
    def test_created_resource_reads_back(self, client: SyncClient) -> None:
        """A resource created by update reads back with the stored body (https://hl7.org/fhir/R4/http.html#upsert)."""
        stored, _ = client.create_or_update(
            "Observation",
            "obs-1",
            {"resourceType": "Observation", "id": "obs-1", "status": "preliminary"},
        )

        assert client.read("Observation", "obs-1").resource == stored.resource
        assert client.count("Observation") == 1

    @pytest.mark.requires("versioning.version_ids", "crud.read")
    def test_existing_resource_is_updated(self, client: SyncClient) -> None:
        """Putting to an existing id updates it: created is false and the version is 2 (https://hl7.org/fhir/R4/http.html#upsert)."""
        client.create_or_update(
            "Patient", "p1", {"resourceType": "Patient", "id": "p1", "gender": "female"}
        )

        stored, created = client.create_or_update(
            "Patient", "p1", {"resourceType": "Patient", "id": "p1", "gender": "male"}
        )

        assert created is False
        assert stored.version_id == "2"
        assert client.read("Patient", "p1").resource == stored.resource
        assert client.count("Patient") == 1

    @pytest.mark.requires("crud.create", "versioning.version_ids")
    def test_server_assigned_id_is_updated(self, client: SyncClient) -> None:
        """Putting to an id the server assigned on create updates that resource (https://hl7.org/fhir/R4/http.html#upsert)."""
        original = client.create({"resourceType": "Patient", "active": True})

        stored, created = client.create_or_update(
            "Patient", original.id, {"resourceType": "Patient", "id": original.id, "active": False}
        )

        assert created is False
        assert (stored.id, stored.version_id) == (original.id, "2")

    @pytest.mark.requires("crud.delete", "versioning.version_ids", "history.deletes", "crud.read")
    def test_deleted_resource_is_recreated_continuing_its_versions(
        self, client: SyncClient
    ) -> None:
        """Putting to a deleted id re-creates it as the version after the deletion (https://hl7.org/fhir/R4/http.html#upsert)."""
        client.create_or_update(
            "Patient", "p1", {"resourceType": "Patient", "id": "p1", "gender": "female"}
        )
        deletion = client.delete("Patient", "p1")
        assert deletion is not None

        stored, created = client.create_or_update(
            "Patient", "p1", {"resourceType": "Patient", "id": "p1", "gender": "other"}
        )

        assert created is True
        assert (deletion.version_id, stored.version_id) == ("2", "3")
        current = client.read("Patient", "p1")
        assert current.version_id == "3"
        assert current.resource is not None
        assert current.resource["gender"] == "other"

    @pytest.mark.requires("crud.read")
    def test_same_id_in_two_types_makes_two_resources(self, client: SyncClient) -> None:
        """Patient/shared and Observation/shared are different resources, both created (https://hl7.org/fhir/R4/http.html#upsert)."""
        _, patient_created = client.create_or_update(
            "Patient", "shared", {"resourceType": "Patient", "id": "shared"}
        )
        _, observation_created = client.create_or_update(
            "Observation",
            "shared",
            {"resourceType": "Observation", "id": "shared", "status": "final"},
        )

        assert (patient_created, observation_created) == (True, True)
        assert client.read("Patient", "shared").resource_type == "Patient"
        assert client.read("Observation", "shared").resource_type == "Observation"
        assert client.count() == 2

    def test_does_not_mutate_the_callers_body(self, client: SyncClient) -> None:
        """Update as create leaves the caller's dict untouched (https://hl7.org/fhir/R4/http.html#upsert)."""
        body = {"resourceType": "Patient", "id": "p1", "meta": {"tag": [{"code": "t"}]}}
        snapshot = copy.deepcopy(body)

        client.create_or_update("Patient", "p1", body)

        assert body == snapshot

    @pytest.mark.requires("crud.validation", "crud.read")
    def test_body_id_differing_from_target_stores_nothing(self, client: SyncClient) -> None:
        """A body id other than the target id is refused and neither id is created (https://hl7.org/fhir/R4/http.html#update)."""
        with pytest.raises(InvalidResource) as caught:
            client.create_or_update("Patient", "target", {"resourceType": "Patient", "id": "other"})

        assert caught.value.location == "id"
        assert client.exists("Patient", "target") is False
        assert client.exists("Patient", "other") is False
        assert client.count() == 0

    @pytest.mark.requires("crud.validation", "crud.read")
    def test_body_type_differing_from_target_stores_nothing(self, client: SyncClient) -> None:
        """A body whose resourceType differs from the target type is refused and nothing is stored (https://hl7.org/fhir/R4/http.html#update)."""
        with pytest.raises(InvalidResource) as caught:
            client.create_or_update(
                "Patient", "p1", {"resourceType": "Observation", "id": "p1", "status": "final"}
            )

        assert caught.value.location == "resourceType"
        assert client.count() == 0
