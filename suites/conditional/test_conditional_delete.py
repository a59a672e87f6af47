"""Conditional delete, single and multiple modes (FHIR R4 http.html#delete)."""

from __future__ import annotations

import pytest

from helios_conformance import Gone, MultipleMatches, SyncClient

SYSTEM = "urn:test"


def patient(family: str, mrn: str) -> dict:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": SYSTEM, "value": mrn}],
        "name": [{"family": family}],
    }


pytestmark = pytest.mark.requires(
    "conditional.delete", "crud.create", "crud.read", "crud.delete", "search.param.token"
)


class TestSingleMode:
    def test_one_match_is_deleted(self, client: SyncClient) -> None:
        """The one matching resource is deleted and its deletion version returned (https://hl7.org/fhir/R4/http.html#delete)."""
        existing = client.create(patient("A", "mrn-1"))

        deleted = client.conditional_delete("Patient", f"identifier={SYSTEM}|mrn-1")

        assert [(d.id, d.version_id, d.deleted) for d in deleted] == [(existing.id, "2", True)]
        with pytest.raises(Gone):
            client.read("Patient", existing.id)

    def test_no_match_deletes_nothing(self, client: SyncClient) -> None:
        """With no match nothing is deleted and no error is raised (https://hl7.org/fhir/R4/http.html#delete)."""
        kept = client.create(patient("A", "mrn-2"))

        assert client.conditional_delete("Patient", f"identifier={SYSTEM}|mrn-1") == ()
        assert client.read("Patient", kept.id).version_id == "1"

    def test_several_matches_fail_and_delete_nothing(self, client: SyncClient) -> None:
        """In single mode two matches raise MultipleMatches and both resources stay (https://hl7.org/fhir/R4/http.html#delete)."""
        client.create(patient("A", "twin"))
        client.create(patient("B", "twin"))

        with pytest.raises(MultipleMatches):
            client.conditional_delete("Patient", f"identifier={SYSTEM}|twin")

        assert client.count("Patient") == 2

    @pytest.mark.requires("history.instance")
    def test_deletion_is_a_history_version(self, client: SyncClient) -> None:
        """A conditional delete writes a deletion version into the history (https://hl7.org/fhir/R4/http.html#delete)."""
        existing = client.create(patient("A", "mrn-1"))

        client.conditional_delete("Patient", f"identifier={SYSTEM}|mrn-1")

        entries = client.history_instance("Patient", existing.id).entries
        assert [(e.version_id, e.deleted) for e in entries] == [("2", True), ("1", False)]


class TestMultipleMode:
    def test_every_match_is_deleted(self, client: SyncClient) -> None:
        """In multiple mode every match is deleted, reported in id order (https://hl7.org/fhir/R4/http.html#delete)."""
        first = client.create(patient("A", "twin"))
        second = client.create(patient("B", "twin"))

        deleted = client.conditional_delete("Patient", f"identifier={SYSTEM}|twin", multiple=True)

        assert [d.id for d in deleted] == sorted([first.id, second.id])
        assert client.count("Patient") == 0

    def test_non_matching_resources_stay(self, client: SyncClient) -> None:
        """In multiple mode resources that do not match are kept (https://hl7.org/fhir/R4/http.html#delete)."""
        client.create(patient("A", "twin"))
        client.create(patient("B", "twin"))
        kept = client.create(patient("C", "other"))

        client.conditional_delete("Patient", f"identifier={SYSTEM}|twin", multiple=True)

        assert client.search("Patient", "").ids == (kept.id,)

    def test_no_match_is_not_an_error(self, client: SyncClient) -> None:
        """In multiple mode no match deletes nothing (https://hl7.org/fhir/R4/http.html#delete)."""
        assert client.conditional_delete("Patient", f"identifier={SYSTEM}|x", multiple=True) == ()
