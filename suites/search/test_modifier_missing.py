""":missing=true finds resources with no value for a parameter, :missing=false those with one (FHIR R4 search.html#modifiers)."""

from __future__ import annotations

from typing import Any

import pytest

from helios_conformance import InvalidSearch, SyncClient


def put(client: SyncClient, *resources: dict[str, Any]) -> None:
    for resource in resources:
        client.create_or_update(resource["resourceType"], resource["id"], resource)


def ids(client: SyncClient, resource_type: str, query: str) -> set[str]:
    return set(client.search(resource_type, query).ids)


def patient(resource_id: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": resource_id, **fields}


def observation(resource_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": resource_id,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
        **fields,
    }


# Per parameter type: (resource type, parameter, the resource with a value, the one without).
CASES = [
    pytest.param(
        "Patient",
        "gender",
        patient("with", gender="female"),
        patient("without"),
        marks=pytest.mark.requires("search.param.token"),
        id="token",
    ),
    pytest.param(
        "Patient",
        "birthdate",
        patient("with", birthDate="1980-06-15"),
        patient("without"),
        marks=pytest.mark.requires("search.param.date"),
        id="date",
    ),
    pytest.param(
        "Patient",
        "family",
        patient("with", name=[{"family": "Lee"}]),
        # A name without a family: the family parameter still has no value.
        patient("without", name=[{"given": ["Ann"]}]),
        marks=pytest.mark.requires("search.param.string"),
        id="string",
    ),
    pytest.param(
        "Observation",
        "subject",
        observation("with", subject={"reference": "Patient/p1"}),
        observation("without"),
        marks=pytest.mark.requires("search.param.reference"),
        id="reference",
    ),
    pytest.param(
        "Observation",
        "value-quantity",
        observation("with", valueQuantity={"value": 120, "unit": "mmHg"}),
        # A value of another type: value-quantity has nothing to index.
        observation("without", valueString="not measured"),
        marks=pytest.mark.requires("search.param.quantity"),
        id="quantity",
    ),
    pytest.param(
        "RiskAssessment",
        "probability",
        {
            "resourceType": "RiskAssessment",
            "id": "with",
            "status": "final",
            "subject": {"reference": "Patient/p1"},
            "prediction": [{"probabilityDecimal": 0.3}],
        },
        {
            "resourceType": "RiskAssessment",
            "id": "without",
            "status": "final",
            "subject": {"reference": "Patient/p1"},
        },
        marks=pytest.mark.requires("search.param.number"),
        id="number",
    ),
    pytest.param(
        "ValueSet",
        "url",
        {
            "resourceType": "ValueSet",
            "id": "with",
            "status": "active",
            "url": "http://example.org/fhir/ValueSet/a",
        },
        {"resourceType": "ValueSet", "id": "without", "status": "draft"},
        marks=pytest.mark.requires("search.param.uri"),
        id="uri",
    ),
]


class TestMissingModifier:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.modifier.missing")

    @pytest.mark.parametrize(("resource_type", "parameter", "with_value", "without_value"), CASES)
    def test_missing_true_finds_resources_without_a_value(
        self,
        client: SyncClient,
        resource_type: str,
        parameter: str,
        with_value: dict[str, Any],
        without_value: dict[str, Any],
    ) -> None:
        """<param>:missing=true finds only the resource with no value for it (https://hl7.org/fhir/R4/search.html#modifiers)."""
        put(client, with_value, without_value)

        assert ids(client, resource_type, f"{parameter}:missing=true") == {"without"}

    @pytest.mark.parametrize(("resource_type", "parameter", "with_value", "without_value"), CASES)
    def test_missing_false_finds_resources_with_a_value(
        self,
        client: SyncClient,
        resource_type: str,
        parameter: str,
        with_value: dict[str, Any],
        without_value: dict[str, Any],
    ) -> None:
        """<param>:missing=false finds only the resource that has a value for it (https://hl7.org/fhir/R4/search.html#modifiers)."""
        put(client, with_value, without_value)

        assert ids(client, resource_type, f"{parameter}:missing=false") == {"with"}

    @pytest.mark.requires("search.param.token")
    def test_missing_combines_with_other_parameters(self, client: SyncClient) -> None:
        """gender:missing=true&family=Lee finds only the Lee with no gender (https://hl7.org/fhir/R4/search.html#modifiers)."""
        put(
            client,
            patient("p1", name=[{"family": "Lee"}]),
            patient("p2", name=[{"family": "Lee"}], gender="male"),
            patient("p3", name=[{"family": "Kim"}]),
        )

        assert ids(client, "Patient", "gender:missing=true&family=Lee") == {"p1"}

    @pytest.mark.requires("search.param.token")
    @pytest.mark.parametrize("value", ["yes", "1", ""])
    def test_missing_accepts_only_true_or_false(self, client: SyncClient, value: str) -> None:
        """gender:missing=<not true|false> is refused naming gender (https://hl7.org/fhir/R4/search.html#modifiers)."""
        with pytest.raises(InvalidSearch) as caught:
            client.search("Patient", [("gender:missing", value)])

        assert caught.value.parameter is not None
        assert caught.value.parameter.split(":")[0] == "gender"
