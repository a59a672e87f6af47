"""Conditional create (FHIR R4 http.html#ccreate)."""

from __future__ import annotations

from typing import Any

import pytest

from helios_conformance import InvalidRequest, InvalidSearch, MultipleMatches, SyncClient

SYSTEM = "urn:test"


def patient(family: str, mrn: str) -> dict:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": SYSTEM, "value": mrn}],
        "name": [{"family": family}],
    }


pytestmark = pytest.mark.requires(
    "conditional.create", "crud.create", "crud.read", "search.param.token"
)


class TestConditionalCreate:
    def test_no_match_creates(self, client: SyncClient) -> None:
        """With no match the resource is created as version 1 (https://hl7.org/fhir/R4/http.html#ccreate)."""
        stored, created = client.conditional_create(
            patient("A", "mrn-1"), f"identifier={SYSTEM}|mrn-1"
        )

        assert (created, stored.version_id, client.count("Patient")) == (True, "1", 1)

    def test_one_match_returns_the_existing_resource(self, client: SyncClient) -> None:
        """With one match the existing resource is returned and nothing is created (https://hl7.org/fhir/R4/http.html#ccreate)."""
        existing = client.create(patient("A", "mrn-1"))

        stored, created = client.conditional_create(
            patient("B", "mrn-1"), f"identifier={SYSTEM}|mrn-1"
        )

        assert (created, stored.id, stored.version_id) == (False, existing.id, "1")
        assert client.count("Patient") == 1

    @pytest.mark.requires("history.instance")
    def test_one_match_writes_no_version(self, client: SyncClient) -> None:
        """With one match the existing resource gets no new version (https://hl7.org/fhir/R4/http.html#ccreate)."""
        existing = client.create(patient("A", "mrn-1"))

        client.conditional_create(patient("B", "mrn-1"), f"identifier={SYSTEM}|mrn-1")

        assert [e.version_id for e in client.history_instance("Patient", existing.id).entries] == [
            "1"
        ]

    def test_several_matches_fail(self, client: SyncClient) -> None:
        """With two matches it fails with MultipleMatches (412) and creates nothing (https://hl7.org/fhir/R4/http.html#ccreate)."""
        client.create(patient("A", "twin"))
        client.create(patient("B", "twin"))

        with pytest.raises(MultipleMatches) as caught:
            client.conditional_create(patient("C", "twin"), f"identifier={SYSTEM}|twin")

        assert (caught.value.http_status, client.count("Patient")) == (412, 2)

    @pytest.mark.requires("crud.delete")
    def test_deleted_resources_do_not_match(self, client: SyncClient) -> None:
        """A deleted resource does not count as a match, so a new one is created (https://hl7.org/fhir/R4/http.html#ccreate)."""
        gone = client.create(patient("A", "mrn-1"))
        client.delete("Patient", gone.id)

        stored, created = client.conditional_create(
            patient("B", "mrn-1"), f"identifier={SYSTEM}|mrn-1"
        )

        assert (created, stored.id != gone.id) == (True, True)

    def test_only_the_same_type_matches(self, client: SyncClient) -> None:
        """A Practitioner with the identifier does not stop a Patient being created (https://hl7.org/fhir/R4/http.html#ccreate)."""
        client.create(
            {"resourceType": "Practitioner", "identifier": [{"system": SYSTEM, "value": "mrn-1"}]}
        )

        _, created = client.conditional_create(patient("A", "mrn-1"), f"identifier={SYSTEM}|mrn-1")

        assert created is True

    def test_other_tenants_do_not_match(self, client: SyncClient, new_client: Any) -> None:
        """A matching resource in another tenant is invisible, so a new one is created (https://hl7.org/fhir/R4/security.html)."""
        new_client().create(patient("A", "mrn-1"))

        _, created = client.conditional_create(patient("A", "mrn-1"), f"identifier={SYSTEM}|mrn-1")

        assert created is True

    def test_criteria_with_two_parameters_are_anded(self, client: SyncClient) -> None:
        """Criteria identifier and family both have to match (https://hl7.org/fhir/R4/http.html#ccreate)."""
        client.create(patient("Lee", "mrn-1"))

        _, created = client.conditional_create(
            patient("Kim", "mrn-1"), f"identifier={SYSTEM}|mrn-1&family=Kim"
        )

        assert created is True

    def test_empty_criteria_are_refused(self, client: SyncClient) -> None:
        """Conditional create without criteria is refused with InvalidRequest (https://hl7.org/fhir/R4/http.html#ccreate)."""
        with pytest.raises(InvalidRequest):
            client.conditional_create(patient("A", "mrn-1"), "")

        assert client.count() == 0

    def test_result_parameters_are_refused(self, client: SyncClient) -> None:
        """_count in the criteria is refused with InvalidSearch naming it (https://hl7.org/fhir/R4/http.html#ccreate)."""
        with pytest.raises(InvalidSearch) as caught:
            client.conditional_create(patient("A", "mrn-1"), f"identifier={SYSTEM}|mrn-1&_count=1")

        assert caught.value.parameter == "_count"

    def test_unknown_parameters_are_refused(self, client: SyncClient) -> None:
        """An unknown parameter in the criteria is refused with InvalidSearch, not ignored (https://hl7.org/fhir/R4/http.html#ccreate)."""
        with pytest.raises(InvalidSearch):
            client.conditional_create(patient("A", "mrn-1"), "no-such-parameter=1")

        assert client.count() == 0
