"""create: the server assigns the id and stores the body as given (FHIR R4 http.html#create)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from helios_conformance import (
    ID_PATTERN,
    NotFound,
    SyncClient,
    parse_instant,
    r4_example,
)

OFFICIAL_EXAMPLES = [
    "Patient-example",
    "Observation-example",
    "Encounter-example",
    "Organization-1",
    "Practitioner-example",
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


class TestCreate:
    pytestmark = pytest.mark.requires("crud.create")

    def test_assigns_a_valid_fhir_id(self, client: SyncClient) -> None:
        """Create assigns a server id that is a valid FHIR id (https://hl7.org/fhir/R4/http.html#create)."""
        stored = client.create({"resourceType": "Patient", "name": [{"family": "Chalmers"}]})

        assert ID_PATTERN.fullmatch(stored.id), stored.id
        assert stored.resource_type == "Patient"
        assert stored.deleted is False
        assert stored.resource is not None
        assert stored.resource["id"] == stored.id
        assert stored.resource["resourceType"] == "Patient"

    def test_ignores_the_id_in_the_body(self, client: SyncClient) -> None:
        """Create ignores a client-supplied id and assigns its own (https://hl7.org/fhir/R4/http.html#create)."""
        stored = client.create({"resourceType": "Patient", "id": "client-chosen"})

        assert stored.id != "client-chosen"
        assert stored.resource is not None
        assert stored.resource["id"] == stored.id

    @pytest.mark.requires("crud.read")
    def test_body_id_is_not_stored_under_that_id(self, client: SyncClient) -> None:
        """A create whose body says id "client-chosen" stores nothing at that id (https://hl7.org/fhir/R4/http.html#create)."""
        client.create({"resourceType": "Patient", "id": "client-chosen"})

        with pytest.raises(NotFound):
            client.read("Patient", "client-chosen")

    @pytest.mark.requires("crud.read")
    def test_body_id_naming_an_existing_resource_leaves_it_alone(self, client: SyncClient) -> None:
        """A create whose body carries an existing resource's id makes a new resource instead (https://hl7.org/fhir/R4/http.html#create)."""
        original = client.create({"resourceType": "Patient", "gender": "female"})

        second = client.create({"resourceType": "Patient", "id": original.id, "gender": "male"})

        assert second.id != original.id
        current = client.read("Patient", original.id)
        assert current.version_id == original.version_id
        assert current.resource == original.resource
        assert client.count("Patient") == 2

    @pytest.mark.requires("crud.read")
    def test_two_creates_make_two_resources(self, client: SyncClient) -> None:
        """Two creates of the same body give two resources with distinct ids (https://hl7.org/fhir/R4/http.html#create)."""
        body = {"resourceType": "Patient", "name": [{"family": "Twin"}]}

        first = client.create(body)
        second = client.create(body)

        assert first.id != second.id
        assert client.count("Patient") == 2

    @pytest.mark.parametrize("example", OFFICIAL_EXAMPLES)
    def test_stores_the_body_unchanged(self, client: SyncClient, example: str) -> None:
        """The stored body equals the submitted one apart from id and server meta (https://hl7.org/fhir/R4/http.html#create)."""
        body = r4_example(example)

        stored = client.create(body)

        assert stored.resource_type == body["resourceType"]
        assert stored.resource is not None
        assert without_server_meta(stored.resource) == without_server_meta(body)

    def test_keeps_client_meta_elements(self, client: SyncClient) -> None:
        """Create keeps meta.profile, meta.tag, meta.security and meta.source as submitted (https://hl7.org/fhir/R4/resource.html#Meta)."""
        meta = {
            "source": "urn:example:ward-7",
            "profile": ["http://hl7.org/fhir/StructureDefinition/bmi"],
            "security": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}
            ],
            "tag": [{"system": "urn:example:tags", "code": "needs-review"}],
        }

        stored = client.create({"resourceType": "Observation", "status": "final", "meta": meta})

        assert stored.resource is not None
        kept = {key: value for key, value in stored.resource["meta"].items() if key in meta}
        assert kept == meta

    def test_does_not_mutate_the_callers_body(self, client: SyncClient) -> None:
        """Create leaves the caller's dict untouched: no id or meta is written into it (https://hl7.org/fhir/R4/http.html#create)."""
        body = {"resourceType": "Patient", "meta": {"tag": [{"code": "t"}]}, "active": True}
        snapshot = copy.deepcopy(body)

        client.create(body)

        assert body == snapshot

    @pytest.mark.requires("crud.read")
    def test_returned_body_is_not_shared_with_the_store(self, client: SyncClient) -> None:
        """Mutating the body create returned does not change what the store holds (https://hl7.org/fhir/R4/http.html#create)."""
        stored = client.create({"resourceType": "Patient", "name": [{"family": "Original"}]})
        assert stored.resource is not None

        stored.resource["name"][0]["family"] = "Mutated"

        current = client.read("Patient", stored.id)
        assert current.resource is not None
        assert current.resource["name"] == [{"family": "Original"}]

    @pytest.mark.requires("versioning.version_ids")
    def test_sets_last_updated_to_the_time_of_the_write(self, client: SyncClient) -> None:
        """Create sets meta.lastUpdated to the moment of the write, as an aware instant (https://hl7.org/fhir/R4/resource.html#Meta)."""
        before = datetime.now(UTC)
        stored = client.create({"resourceType": "Patient"})
        after = datetime.now(UTC)

        assert stored.resource is not None
        assert stored.last_updated.utcoffset() is not None
        assert parse_instant(stored.resource["meta"]["lastUpdated"]) == stored.last_updated
        # Generous slack: a server clock may differ a little from the test runner's.
        slack = timedelta(minutes=5)
        assert before - slack <= stored.last_updated <= after + slack
