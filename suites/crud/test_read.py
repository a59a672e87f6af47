"""read, exists and count: the current version of live resources (FHIR R4 http.html#read)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from helios_conformance import Gone, InvalidRequest, NotFound, SyncClient, r4_example

MALFORMED_IDS = [
    pytest.param("", id="empty"),
    pytest.param("x" * 65, id="65-characters"),
    pytest.param("has space", id="space"),
    pytest.param("a/b", id="slash"),
    pytest.param("a_b", id="underscore"),
    pytest.param("caf\u00e9", id="non-ascii"),
]

UNKNOWN_TYPES = [
    pytest.param("Patiant", id="misspelt"),
    pytest.param("patient", id="lower-case"),
    pytest.param("DomainResource", id="abstract"),
    pytest.param("", id="empty"),
]


def without_server_meta(resource: dict[str, Any]) -> dict[str, Any]:
    """The body minus what the server sets: id, meta.versionId and meta.lastUpdated."""
    body = copy.deepcopy(resource)
    body.pop("id", None)
    meta = body.pop("meta", None) or {}
    meta.pop("versionId", None)
    meta.pop("lastUpdated", None)
    if meta:
        body["meta"] = meta
    return body


class TestRead:
    pytestmark = pytest.mark.requires("crud.read")

    @pytest.mark.requires("crud.create")
    def test_returns_the_stored_version(self, client: SyncClient) -> None:
        """Read returns the resource exactly as create stored it (https://hl7.org/fhir/R4/http.html#read)."""
        created = client.create({"resourceType": "Patient", "birthDate": "1974-12-25"})

        current = client.read("Patient", created.id)

        assert (current.resource_type, current.id) == ("Patient", created.id)
        assert current.version_id == created.version_id
        assert current.last_updated == created.last_updated
        assert current.deleted is False
        assert current.resource == created.resource

    @pytest.mark.requires("crud.create", "crud.update")
    def test_returns_the_latest_version(self, client: SyncClient) -> None:
        """Read returns the most recent update, not an earlier version (https://hl7.org/fhir/R4/http.html#read)."""
        created = client.create({"resourceType": "Patient", "gender": "unknown"})
        client.update(
            "Patient", created.id, {"resourceType": "Patient", "id": created.id, "gender": "female"}
        )
        latest = client.update(
            "Patient", created.id, {"resourceType": "Patient", "id": created.id, "gender": "male"}
        )

        current = client.read("Patient", created.id)

        assert current.version_id == latest.version_id
        assert current.resource == latest.resource
        assert current.resource is not None
        assert current.resource["gender"] == "male"

    @pytest.mark.requires("crud.create")
    @pytest.mark.parametrize(
        "example",
        [
            "Patient-example",
            "Observation-example",
            "Encounter-example",
            "Organization-1",
            "Practitioner-example",
        ],
    )
    def test_round_trips_an_official_example(self, client: SyncClient, example: str) -> None:
        """An official R4 example reads back unchanged apart from id and server meta (https://hl7.org/fhir/R4/http.html#read)."""
        body = r4_example(example)
        created = client.create(body)

        current = client.read(body["resourceType"], created.id)

        assert current.resource is not None
        assert without_server_meta(current.resource) == without_server_meta(body)

    def test_never_existing_raises_not_found(self, client: SyncClient) -> None:
        """Reading an id that never existed raises NotFound (404) naming it (https://hl7.org/fhir/R4/http.html#read)."""
        with pytest.raises(NotFound) as caught:
            client.read("Patient", "never-created")

        assert caught.value.http_status == 404
        assert caught.value.issue_code == "not-found"
        assert (caught.value.resource_type, caught.value.resource_id) == (
            "Patient",
            "never-created",
        )

    @pytest.mark.requires("crud.create", "crud.delete")
    def test_deleted_raises_gone(self, client: SyncClient) -> None:
        """Reading a deleted resource raises Gone (410) with the deletion's version (https://hl7.org/fhir/R4/http.html#read)."""
        created = client.create({"resourceType": "Patient"})
        deletion = client.delete("Patient", created.id)
        assert deletion is not None

        with pytest.raises(Gone) as caught:
            client.read("Patient", created.id)

        assert caught.value.http_status == 410
        assert (caught.value.resource_type, caught.value.resource_id) == ("Patient", created.id)
        assert caught.value.version_id == deletion.version_id

    @pytest.mark.requires("crud.create")
    def test_ids_are_scoped_by_resource_type(self, client: SyncClient) -> None:
        """A Patient's id does not find an Observation: read is by type and id (https://hl7.org/fhir/R4/http.html#read)."""
        patient = client.create({"resourceType": "Patient"})

        with pytest.raises(NotFound):
            client.read("Observation", patient.id)

    @pytest.mark.requires("crud.validation")
    @pytest.mark.parametrize("resource_id", MALFORMED_IDS)
    def test_malformed_id_raises_invalid_request(
        self, client: SyncClient, resource_id: str
    ) -> None:
        """Reading a malformed id is a bad request, not a miss (https://hl7.org/fhir/R4/datatypes.html#id)."""
        with pytest.raises(InvalidRequest):
            client.read("Patient", resource_id)

    @pytest.mark.requires("crud.validation")
    @pytest.mark.parametrize("resource_type", UNKNOWN_TYPES)
    def test_unknown_resource_type_raises_invalid_request(
        self, client: SyncClient, resource_type: str
    ) -> None:
        """Reading a type that is not a concrete R4 resource type is a bad request (https://hl7.org/fhir/R4/http.html#read)."""
        with pytest.raises(InvalidRequest):
            client.read(resource_type, "example")


class TestExists:
    pytestmark = pytest.mark.requires("crud.read")

    @pytest.mark.requires("crud.create")
    def test_true_for_a_live_resource(self, client: SyncClient) -> None:
        """exists is true for a created resource and false for an unused id beside it (https://hl7.org/fhir/R4/http.html#read)."""
        created = client.create({"resourceType": "Patient"})

        assert client.exists("Patient", created.id) is True
        assert client.exists("Patient", "never-created") is False

    @pytest.mark.requires("crud.create", "crud.delete")
    def test_false_after_delete(self, client: SyncClient) -> None:
        """exists is false once the resource is deleted (https://hl7.org/fhir/R4/http.html#delete)."""
        created = client.create({"resourceType": "Patient"})
        client.delete("Patient", created.id)

        assert client.exists("Patient", created.id) is False

    @pytest.mark.requires("crud.validation")
    def test_malformed_id_raises_invalid_request(self, client: SyncClient) -> None:
        """exists refuses a malformed id rather than answering false (https://hl7.org/fhir/R4/datatypes.html#id)."""
        with pytest.raises(InvalidRequest):
            client.exists("Patient", "has space")


class TestCount:
    pytestmark = pytest.mark.requires("crud.read")

    def test_zero_in_an_empty_tenant(self, client: SyncClient) -> None:
        """A fresh tenant holds no resources of any type (https://hl7.org/fhir/R4/http.html#read)."""
        assert client.count() == 0
        assert client.count("Patient") == 0

    @pytest.mark.requires("crud.create")
    def test_counts_per_type_and_in_total(self, client: SyncClient) -> None:
        """count(type) counts that type only and count() counts every type (https://hl7.org/fhir/R4/http.html#read)."""
        client.create({"resourceType": "Patient", "name": [{"family": "One"}]})
        client.create({"resourceType": "Patient", "name": [{"family": "Two"}]})
        client.create({"resourceType": "Observation", "status": "final"})

        assert client.count("Patient") == 2
        assert client.count("Observation") == 1
        assert client.count("Encounter") == 0
        assert client.count() == 3

    @pytest.mark.requires("crud.create", "crud.update")
    def test_updates_do_not_add_resources(self, client: SyncClient) -> None:
        """Three versions of one resource still count as one resource (https://hl7.org/fhir/R4/http.html#update)."""
        created = client.create({"resourceType": "Patient", "active": True})
        for active in (False, True):
            client.update(
                "Patient",
                created.id,
                {"resourceType": "Patient", "id": created.id, "active": active},
            )

        assert client.count("Patient") == 1

    @pytest.mark.requires("crud.validation")
    def test_unknown_resource_type_raises_invalid_request(self, client: SyncClient) -> None:
        """Counting a type that is not an R4 resource type is a bad request (https://hl7.org/fhir/R4/resourcelist.html)."""
        with pytest.raises(InvalidRequest):
            client.count("Patiant")
