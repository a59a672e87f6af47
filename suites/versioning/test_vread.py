"""vread: any version of a resource, by version id (FHIR R4 http.html#vread)."""

from __future__ import annotations

import pytest

from helios_conformance import InvalidRequest, NotFound, StoredResource, SyncClient


def patient(resource_id: str, family: str) -> dict[str, object]:
    return {"resourceType": "Patient", "id": resource_id, "name": [{"family": family}]}


def write_three_versions(client: SyncClient) -> list[StoredResource]:
    """Create a Patient named V1 and update it to V2 and V3; return the stored versions."""
    versions = [client.create({"resourceType": "Patient", "name": [{"family": "V1"}]})]
    for family in ("V2", "V3"):
        versions.append(client.update("Patient", versions[0].id, patient(versions[0].id, family)))
    return versions


class TestVread:
    pytestmark = pytest.mark.requires("crud.create", "versioning.version_ids", "versioning.vread")

    @pytest.mark.requires("crud.update")
    def test_each_version_returns_its_own_body(self, client: SyncClient) -> None:
        """vread of versions 1, 2 and 3 returns exactly the body each write stored (https://hl7.org/fhir/R4/http.html#vread)."""
        versions = write_three_versions(client)
        resource_id = versions[0].id

        read_back = [client.vread("Patient", resource_id, v.version_id) for v in versions]

        assert [(v.version_id, v.resource) for v in read_back] == [
            (v.version_id, v.resource) for v in versions
        ]
        assert [v.last_updated for v in read_back] == [v.last_updated for v in versions]

    @pytest.mark.requires("crud.update", "crud.read")
    def test_current_version_equals_read(self, client: SyncClient) -> None:
        """vread of the current version returns what read returns (https://hl7.org/fhir/R4/http.html#vread)."""
        versions = write_three_versions(client)

        assert client.vread("Patient", versions[0].id, "3") == client.read(
            "Patient", versions[0].id
        )

    @pytest.mark.requires("crud.delete", "history.deletes")
    def test_deletion_version_is_a_marker(self, client: SyncClient) -> None:
        """vread of the deletion version returns a deleted marker without a body (https://hl7.org/fhir/R4/http.html#vread)."""
        created = client.create({"resourceType": "Patient"})
        client.delete("Patient", created.id)

        marker = client.vread("Patient", created.id, "2")

        assert (marker.id, marker.version_id, marker.deleted, marker.resource) == (
            created.id,
            "2",
            True,
            None,
        )

    @pytest.mark.requires("crud.delete", "history.deletes")
    def test_versions_before_a_delete_stay_readable(self, client: SyncClient) -> None:
        """After a delete, vread of version 1 still returns its body (https://hl7.org/fhir/R4/http.html#vread)."""
        created = client.create({"resourceType": "Patient", "name": [{"family": "Before-delete"}]})
        client.delete("Patient", created.id)

        first = client.vread("Patient", created.id, "1")

        assert (first.deleted, first.resource) == (False, created.resource)

    @pytest.mark.requires("crud.update_as_create", "crud.delete", "history.deletes")
    def test_recreated_resource_keeps_every_version(self, client: SyncClient) -> None:
        """After create, delete and re-create, vread 1, 2 and 3 return body, marker and new body (https://hl7.org/fhir/R4/http.html#vread)."""
        first, _ = client.create_or_update("Patient", "p1", patient("p1", "First-life"))
        client.delete("Patient", "p1")
        third, _ = client.create_or_update("Patient", "p1", patient("p1", "Second-life"))

        versions = [client.vread("Patient", "p1", version_id) for version_id in ("1", "2", "3")]

        assert [(v.deleted, v.resource) for v in versions] == [
            (False, first.resource),
            (True, None),
            (False, third.resource),
        ]

    def test_version_after_the_current_raises_not_found(self, client: SyncClient) -> None:
        """vread of version 2 of a resource that only has version 1 raises NotFound naming it (https://hl7.org/fhir/R4/http.html#vread)."""
        created = client.create({"resourceType": "Patient"})

        with pytest.raises(NotFound) as caught:
            client.vread("Patient", created.id, "2")

        assert (caught.value.resource_type, caught.value.resource_id) == ("Patient", created.id)
        assert caught.value.version_id == "2"

    def test_never_existing_resource_raises_not_found(self, client: SyncClient) -> None:
        """vread of a resource that never existed raises NotFound (https://hl7.org/fhir/R4/http.html#vread)."""
        with pytest.raises(NotFound) as caught:
            client.vread("Patient", "never-created", "1")

        assert (caught.value.resource_type, caught.value.resource_id) == (
            "Patient",
            "never-created",
        )

    def test_ids_are_scoped_by_resource_type(self, client: SyncClient) -> None:
        """vread of Observation/<a Patient's id> raises NotFound (https://hl7.org/fhir/R4/http.html#vread)."""
        created = client.create({"resourceType": "Patient"})

        with pytest.raises(NotFound):
            client.vread("Observation", created.id, "1")

    @pytest.mark.parametrize(
        "version_id",
        [
            pytest.param("0", id="zero"),
            pytest.param("-1", id="negative"),
            pytest.param("abc", id="letters"),
            pytest.param("1.5", id="fraction"),
            pytest.param("", id="empty"),
        ],
    )
    def test_malformed_version_raises_invalid_request(
        self, client: SyncClient, version_id: str
    ) -> None:
        """vread of a version id that is not a positive integer is a bad request, not a miss (https://hl7.org/fhir/R4/http.html#vread)."""
        created = client.create({"resourceType": "Patient"})

        with pytest.raises(InvalidRequest):
            client.vread("Patient", created.id, version_id)

    @pytest.mark.requires("crud.read")
    def test_returned_body_is_not_shared_with_the_store(self, client: SyncClient) -> None:
        """Mutating a vread result does not change the stored version (https://hl7.org/fhir/R4/http.html#vread)."""
        created = client.create({"resourceType": "Patient", "name": [{"family": "Original"}]})
        first = client.vread("Patient", created.id, "1")
        assert first.resource is not None

        first.resource["name"] = [{"family": "Mutated"}]

        assert client.vread("Patient", created.id, "1").resource == created.resource
