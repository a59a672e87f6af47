"""Conditional patch (FHIR R4 http.html#patch)."""

from __future__ import annotations

import pytest

from helios_conformance import MultipleMatches, NotFound, SyncClient, VersionConflict

SYSTEM = "urn:test"
ACTIVATE = [{"op": "add", "path": "/active", "value": True}]


def patient(family: str, mrn: str) -> dict:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": SYSTEM, "value": mrn}],
        "name": [{"family": family}],
    }


pytestmark = pytest.mark.requires(
    "conditional.patch", "patch.json_patch", "crud.create", "crud.read", "search.param.token"
)


class TestConditionalPatch:
    def test_one_match_is_patched(self, client: SyncClient) -> None:
        """The one matching resource is patched as its version 2 (https://hl7.org/fhir/R4/http.html#patch)."""
        existing = client.create(patient("A", "mrn-1"))

        stored = client.conditional_patch("Patient", f"identifier={SYSTEM}|mrn-1", ACTIVATE)

        assert (stored.id, stored.version_id, stored.resource["active"]) == (existing.id, "2", True)

    def test_no_match_is_not_found(self, client: SyncClient) -> None:
        """With no match it raises NotFound and writes nothing (https://hl7.org/fhir/R4/http.html#patch)."""
        with pytest.raises(NotFound):
            client.conditional_patch("Patient", f"identifier={SYSTEM}|mrn-1", ACTIVATE)

        assert client.count() == 0

    def test_several_matches_fail(self, client: SyncClient) -> None:
        """With two matches it raises MultipleMatches and patches neither (https://hl7.org/fhir/R4/http.html#patch)."""
        first = client.create(patient("A", "twin"))
        client.create(patient("B", "twin"))

        with pytest.raises(MultipleMatches):
            client.conditional_patch("Patient", f"identifier={SYSTEM}|twin", ACTIVATE)

        assert client.read("Patient", first.id).version_id == "1"

    @pytest.mark.requires("versioning.if_match")
    def test_stale_expected_version_conflicts(self, client: SyncClient) -> None:
        """A stale expected version raises VersionConflict (https://hl7.org/fhir/R4/http.html#concurrency)."""
        client.create(patient("A", "mrn-1"))

        with pytest.raises(VersionConflict):
            client.conditional_patch(
                "Patient", f"identifier={SYSTEM}|mrn-1", ACTIVATE, expected_version="7"
            )
