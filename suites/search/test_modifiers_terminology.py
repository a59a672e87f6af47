"""Terminology modifiers :in, :not-in and :above/:below on tokens, using ValueSets and CodeSystems stored in the tenant (FHIR R4 search.html#token)."""

from __future__ import annotations

from typing import Any

import pytest

from helios_conformance import SyncClient

LOINC = "http://loinc.org"
VITALS_VS = "http://example.org/fhir/ValueSet/blood-pressure-codes"
ANIMALS_CS = "http://example.org/fhir/CodeSystem/animals"


def observation(resource_id: str, code: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": resource_id,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
    }


def condition(resource_id: str, code: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": resource_id,
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": ANIMALS_CS, "code": code}]},
    }


def blood_pressure_value_set() -> dict[str, Any]:
    """A ValueSet holding the systolic (8480-6) and diastolic (8462-4) LOINC codes only."""
    return {
        "resourceType": "ValueSet",
        "id": "bp-codes",
        "url": VITALS_VS,
        "status": "active",
        "compose": {
            "include": [
                {"system": LOINC, "concept": [{"code": "8480-6"}, {"code": "8462-4"}]},
            ]
        },
    }


def animals_code_system() -> dict[str, Any]:
    """A hierarchy: animal > mammal > dog, and animal > bird."""
    return {
        "resourceType": "CodeSystem",
        "id": "animals",
        "url": ANIMALS_CS,
        "status": "active",
        "content": "complete",
        "hierarchyMeaning": "is-a",
        "concept": [
            {
                "code": "animal",
                "concept": [
                    {"code": "mammal", "concept": [{"code": "dog"}]},
                    {"code": "bird"},
                ],
            }
        ],
    }


def put(client: SyncClient, *resources: dict[str, Any]) -> None:
    for resource in resources:
        client.create_or_update(resource["resourceType"], resource["id"], resource)


def ids(client: SyncClient, resource_type: str, query: str | list[tuple[str, str]]) -> set[str]:
    return set(client.search(resource_type, query).ids)


class TestValueSetMembership:
    def put_vitals(self, client: SyncClient) -> None:
        """o-sys (8480-6) and o-dia (8462-4) are in the value set; o-weight (29463-7) is not."""
        put(
            client,
            blood_pressure_value_set(),
            observation("o-sys", "8480-6"),
            observation("o-dia", "8462-4"),
            observation("o-weight", "29463-7"),
        )

    @pytest.mark.requires("crud.update_as_create", "search.param.token", "search.modifier.in")
    def test_in_matches_codes_in_the_value_set(self, client: SyncClient) -> None:
        """code:in=<ValueSet url> finds the Observations whose code is in the value set (https://hl7.org/fhir/R4/search.html#token)."""
        self.put_vitals(client)

        assert ids(client, "Observation", f"code:in={VITALS_VS}") == {"o-sys", "o-dia"}

    @pytest.mark.requires("crud.update_as_create", "search.param.token", "search.modifier.not_in")
    def test_not_in_matches_codes_outside_the_value_set(self, client: SyncClient) -> None:
        """code:not-in=<ValueSet url> finds the Observation whose code is not in the value set (https://hl7.org/fhir/R4/search.html#token)."""
        self.put_vitals(client)

        assert ids(client, "Observation", f"code:not-in={VITALS_VS}") == {"o-weight"}


class TestSubsumption:
    pytestmark = pytest.mark.requires(
        "crud.update_as_create", "search.param.token", "search.modifier.subsumption"
    )

    def put_animals(self, client: SyncClient) -> None:
        put(
            client,
            animals_code_system(),
            condition("c-animal", "animal"),
            condition("c-mammal", "mammal"),
            condition("c-dog", "dog"),
            condition("c-bird", "bird"),
        )

    def test_below_matches_the_code_and_its_descendants(self, client: SyncClient) -> None:
        """code:below=<animals>|mammal finds mammal and dog, not animal or bird (https://hl7.org/fhir/R4/search.html#token)."""
        self.put_animals(client)

        assert ids(client, "Condition", f"code:below={ANIMALS_CS}|mammal") == {"c-mammal", "c-dog"}

    def test_above_matches_the_code_and_its_ancestors(self, client: SyncClient) -> None:
        """code:above=<animals>|dog finds dog, mammal and animal, not bird (https://hl7.org/fhir/R4/search.html#token)."""
        self.put_animals(client)

        assert ids(client, "Condition", f"code:above={ANIMALS_CS}|dog") == {
            "c-dog",
            "c-mammal",
            "c-animal",
        }
