"""update: a new version of an existing, live resource (FHIR R4 http.html#update)."""

from __future__ import annotations

import copy

import pytest

from helios_conformance import Gone, InvalidResource, NotFound, SyncClient


def patient(resource_id: str, family: str) -> dict[str, object]:
    return {"resourceType": "Patient", "id": resource_id, "name": [{"family": family}]}


class TestUpdate:
    pytestmark = pytest.mark.requires("crud.create", "crud.update")

    @pytest.mark.requires("crud.read")
    def test_stores_the_new_body(self, client: SyncClient) -> None:
        """After an update, read returns the new body (https://hl7.org/fhir/R4/http.html#update)."""
        created = client.create({"resourceType": "Patient", "name": [{"family": "Before"}]})

        updated = client.update("Patient", created.id, patient(created.id, "After"))

        current = client.read("Patient", created.id)
        assert current.resource == updated.resource
        assert current.resource is not None
        assert current.resource["name"] == [{"family": "After"}]

    def test_returns_the_stored_version(self, client: SyncClient) -> None:
        """Update returns the stored version, stamped with the target id and not deleted (https://hl7.org/fhir/R4/http.html#update)."""
        created = client.create({"resourceType": "Patient"})

        updated = client.update("Patient", created.id, patient(created.id, "After"))

        assert (updated.resource_type, updated.id, updated.deleted) == (
            "Patient",
            created.id,
            False,
        )
        assert updated.resource is not None
        assert updated.resource["id"] == created.id
        assert updated.resource["name"] == [{"family": "After"}]

    @pytest.mark.requires("crud.read")
    def test_replaces_the_whole_body(self, client: SyncClient) -> None:
        """Update replaces the resource; elements left out of the new body are gone (https://hl7.org/fhir/R4/http.html#update)."""
        created = client.create(
            {"resourceType": "Patient", "birthDate": "1974-12-25", "gender": "male"}
        )

        client.update(
            "Patient", created.id, {"resourceType": "Patient", "id": created.id, "gender": "male"}
        )

        current = client.read("Patient", created.id)
        assert current.resource is not None
        assert "birthDate" not in current.resource
        assert current.resource["gender"] == "male"

    def test_keeps_client_meta_elements(self, client: SyncClient) -> None:
        """Update keeps meta.tag and meta.profile from the new body (https://hl7.org/fhir/R4/resource.html#Meta)."""
        created = client.create({"resourceType": "Patient"})
        tag = [{"system": "urn:example:tags", "code": "reviewed"}]
        profile = ["http://example.org/StructureDefinition/my-patient"]

        updated = client.update(
            "Patient",
            created.id,
            {"resourceType": "Patient", "id": created.id, "meta": {"tag": tag, "profile": profile}},
        )

        assert updated.resource is not None
        assert updated.resource["meta"]["tag"] == tag
        assert updated.resource["meta"]["profile"] == profile

    def test_does_not_mutate_the_callers_body(self, client: SyncClient) -> None:
        """Update leaves the caller's dict untouched (https://hl7.org/fhir/R4/http.html#update)."""
        created = client.create({"resourceType": "Patient"})
        body = patient(created.id, "After")
        snapshot = copy.deepcopy(body)

        client.update("Patient", created.id, body)

        assert body == snapshot

    @pytest.mark.requires("crud.read")
    def test_missing_resource_raises_not_found_and_creates_nothing(
        self, client: SyncClient
    ) -> None:
        """Update of an id that does not exist raises NotFound and creates nothing (https://hl7.org/fhir/R4/http.html#update)."""
        with pytest.raises(NotFound) as caught:
            client.update("Patient", "nobody", patient("nobody", "Ghost"))

        assert (caught.value.resource_type, caught.value.resource_id) == ("Patient", "nobody")
        assert client.exists("Patient", "nobody") is False
        assert client.count() == 0

    def test_ids_are_scoped_by_resource_type(self, client: SyncClient) -> None:
        """Updating Observation/<a Patient's id> finds no Observation and raises NotFound (https://hl7.org/fhir/R4/http.html#update)."""
        created = client.create({"resourceType": "Patient"})

        with pytest.raises(NotFound):
            client.update(
                "Observation",
                created.id,
                {"resourceType": "Observation", "id": created.id, "status": "final"},
            )

    @pytest.mark.requires("crud.delete", "crud.read")
    def test_deleted_resource_raises_gone(self, client: SyncClient) -> None:
        """Update of a deleted resource raises Gone and does not revive it (https://hl7.org/fhir/R4/http.html#update)."""
        created = client.create({"resourceType": "Patient"})
        deletion = client.delete("Patient", created.id)
        assert deletion is not None

        with pytest.raises(Gone) as caught:
            client.update("Patient", created.id, patient(created.id, "Lazarus"))

        assert caught.value.version_id == deletion.version_id
        assert client.exists("Patient", created.id) is False

    @pytest.mark.requires("crud.validation", "crud.read")
    def test_body_without_id_raises_invalid_resource(self, client: SyncClient) -> None:
        """An update body must carry the id; without it the update is refused and nothing stored (https://hl7.org/fhir/R4/http.html#update)."""
        created = client.create({"resourceType": "Patient", "gender": "female"})

        with pytest.raises(InvalidResource) as caught:
            client.update("Patient", created.id, {"resourceType": "Patient", "gender": "male"})

        assert caught.value.location == "id"
        current = client.read("Patient", created.id)
        assert current.version_id == created.version_id
        assert current.resource == created.resource

    @pytest.mark.requires("crud.validation", "crud.read")
    def test_body_id_differing_from_target_raises_invalid_resource(
        self, client: SyncClient
    ) -> None:
        """A body id other than the target id is refused and nothing is stored (https://hl7.org/fhir/R4/http.html#update)."""
        created = client.create({"resourceType": "Patient", "gender": "female"})

        with pytest.raises(InvalidResource) as caught:
            client.update("Patient", created.id, patient("someone-else", "Other"))

        assert caught.value.location == "id"
        current = client.read("Patient", created.id)
        assert current.version_id == created.version_id
        assert current.resource == created.resource
        assert client.exists("Patient", "someone-else") is False

    @pytest.mark.requires("crud.validation", "crud.read")
    def test_body_type_differing_from_target_raises_invalid_resource(
        self, client: SyncClient
    ) -> None:
        """A body of another resource type than the target is refused and nothing is stored (https://hl7.org/fhir/R4/http.html#update)."""
        created = client.create({"resourceType": "Patient", "gender": "female"})

        with pytest.raises(InvalidResource) as caught:
            client.update(
                "Patient",
                created.id,
                {"resourceType": "Observation", "id": created.id, "status": "final"},
            )

        assert caught.value.location == "resourceType"
        current = client.read("Patient", created.id)
        assert current.version_id == created.version_id
        assert current.resource == created.resource
        assert client.count("Observation") == 0
