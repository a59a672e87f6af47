"""Conditional update (FHIR R4 http.html#cond-update)."""

from __future__ import annotations

from typing import Any

import pytest

from helios_conformance import (
    InvalidResource,
    MultipleMatches,
    NotFound,
    SyncClient,
    VersionConflict,
)

SYSTEM = "urn:test"


def patient(family: str, mrn: str, resource_id: str | None = None) -> dict:
    body: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [{"system": SYSTEM, "value": mrn}],
        "name": [{"family": family}],
    }
    if resource_id is not None:
        body["id"] = resource_id
    return body


CRITERIA = f"identifier={SYSTEM}|mrn-1"

pytestmark = pytest.mark.requires(
    "conditional.update", "crud.create", "crud.read", "crud.update", "search.param.token"
)


class TestOneMatch:
    def test_updates_the_match(self, client: SyncClient) -> None:
        """With one match the body is written as its version 2 (https://hl7.org/fhir/R4/http.html#cond-update)."""
        existing = client.create(patient("A", "mrn-1"))

        stored, created = client.conditional_update(patient("B", "mrn-1"), CRITERIA)

        assert (created, stored.id, stored.version_id) == (False, existing.id, "2")
        assert client.read("Patient", existing.id).resource["name"] == [{"family": "B"}]

    def test_body_id_equal_to_the_match_is_accepted(self, client: SyncClient) -> None:
        """A body id equal to the matched resource's id is accepted (https://hl7.org/fhir/R4/http.html#cond-update)."""
        existing = client.create(patient("A", "mrn-1"))

        stored, _ = client.conditional_update(patient("B", "mrn-1", existing.id), CRITERIA)

        assert (stored.id, stored.version_id) == (existing.id, "2")

    def test_body_id_different_from_the_match_is_refused(self, client: SyncClient) -> None:
        """A body id that differs from the matched resource's id is refused; nothing is written (https://hl7.org/fhir/R4/http.html#cond-update)."""
        existing = client.create(patient("A", "mrn-1"))

        with pytest.raises(InvalidResource):
            client.conditional_update(patient("B", "mrn-1", "someone-else"), CRITERIA)

        assert client.read("Patient", existing.id).version_id == "1"

    @pytest.mark.requires("versioning.if_match")
    def test_expected_current_version_updates(self, client: SyncClient) -> None:
        """An expected version equal to the match's current version updates it (https://hl7.org/fhir/R4/http.html#concurrency)."""
        client.create(patient("A", "mrn-1"))

        stored, _ = client.conditional_update(patient("B", "mrn-1"), CRITERIA, expected_version="1")

        assert stored.version_id == "2"

    @pytest.mark.requires("versioning.if_match")
    def test_stale_expected_version_conflicts(self, client: SyncClient) -> None:
        """A stale expected version raises VersionConflict and writes nothing (https://hl7.org/fhir/R4/http.html#concurrency)."""
        existing = client.create(patient("A", "mrn-1"))
        client.update("Patient", existing.id, patient("B", "mrn-1", existing.id))

        with pytest.raises(VersionConflict):
            client.conditional_update(patient("C", "mrn-1"), CRITERIA, expected_version="1")

        assert client.read("Patient", existing.id).version_id == "2"


class TestNoMatch:
    def test_creates_at_a_server_id(self, client: SyncClient) -> None:
        """With no match and no body id the resource is created at a new id (https://hl7.org/fhir/R4/http.html#cond-update)."""
        stored, created = client.conditional_update(patient("A", "mrn-1"), CRITERIA)

        assert (created, stored.version_id, client.count("Patient")) == (True, "1", 1)

    @pytest.mark.requires("crud.update_as_create")
    def test_creates_at_the_body_id(self, client: SyncClient) -> None:
        """With no match and a body id the resource is created at that id (https://hl7.org/fhir/R4/http.html#cond-update)."""
        stored, created = client.conditional_update(patient("A", "mrn-1", "chosen-1"), CRITERIA)

        assert (created, stored.id) == (True, "chosen-1")

    def test_refused_when_creation_is_not_allowed(self, client: SyncClient) -> None:
        """With no match and allow_create=False it raises NotFound and creates nothing (https://hl7.org/fhir/R4/http.html#cond-update)."""
        with pytest.raises(NotFound):
            client.conditional_update(patient("A", "mrn-1"), CRITERIA, allow_create=False)

        assert client.count() == 0


class TestSeveralMatches:
    def test_several_matches_fail(self, client: SyncClient) -> None:
        """With two matches it fails with MultipleMatches and neither is updated (https://hl7.org/fhir/R4/http.html#cond-update)."""
        first = client.create(patient("A", "mrn-1"))
        second = client.create(patient("B", "mrn-1"))

        with pytest.raises(MultipleMatches):
            client.conditional_update(patient("C", "mrn-1"), CRITERIA)

        assert (
            client.read("Patient", first.id).version_id,
            client.read("Patient", second.id).version_id,
        ) == ("1", "1")
