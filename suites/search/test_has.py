"""Reverse chaining with _has: selecting resources by the resources that refer to them (FHIR R4 search.html#has)."""

from __future__ import annotations

from typing import Any

import pytest

from helios_conformance import InvalidSearch, SyncClient


def put(client: SyncClient, *resources: dict[str, Any]) -> None:
    for resource in resources:
        client.create_or_update(resource["resourceType"], resource["id"], resource)


def patient(resource_id: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": resource_id, **fields}


def observation(
    resource_id: str, subject: str, code: str, effective: str = "2021-03-01"
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": resource_id,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": subject},
        "effectiveDateTime": effective,
    }


def report(resource_id: str, status: str, results: list[str]) -> dict[str, Any]:
    return {
        "resourceType": "DiagnosticReport",
        "id": resource_id,
        "status": status,
        "code": {"text": "panel"},
        "result": [{"reference": f"Observation/{r}"} for r in results],
    }


def found(client: SyncClient, resource_type: str, query: str) -> set[str]:
    return set(client.search(resource_type, query).ids)


def weights_and_heights(client: SyncClient) -> None:
    """p-weighed has a weight (29463-7, 2021); p-measured a height (8302-2, 2019); p-none nothing."""
    put(
        client,
        patient("p-weighed", gender="female"),
        patient("p-measured", gender="male"),
        patient("p-none", gender="female"),
        observation("o-weight", "Patient/p-weighed", "29463-7", "2021-03-01"),
        observation("o-height", "Patient/p-measured", "8302-2", "2019-06-01"),
    )


class TestHas:
    pytestmark = pytest.mark.requires(
        "crud.update_as_create", "search.has", "search.param.reference", "search.param.token"
    )

    def test_has_selects_the_referenced_resources(self, client: SyncClient) -> None:
        """Patient?_has:Observation:subject:code=29463-7 finds the Patient with a weight (https://hl7.org/fhir/R4/search.html#has)."""
        weights_and_heights(client)

        assert found(client, "Patient", "_has:Observation:subject:code=29463-7") == {"p-weighed"}

    def test_has_without_a_matching_source_finds_nothing(self, client: SyncClient) -> None:
        """_has:Observation:subject:code=9999-9 finds no Patient (https://hl7.org/fhir/R4/search.html#has)."""
        weights_and_heights(client)

        assert found(client, "Patient", "_has:Observation:subject:code=9999-9") == set()

    def test_has_through_another_reference_parameter(self, client: SyncClient) -> None:
        """_has:Observation:patient:code=8302-2 follows Observation.patient (https://hl7.org/fhir/R4/search.html#has)."""
        weights_and_heights(client)

        assert found(client, "Patient", "_has:Observation:patient:code=8302-2") == {"p-measured"}

    def test_has_with_or_values(self, client: SyncClient) -> None:
        """_has:Observation:subject:code=29463-7,8302-2 finds both measured Patients (https://hl7.org/fhir/R4/search.html#has)."""
        weights_and_heights(client)

        assert found(client, "Patient", "_has:Observation:subject:code=29463-7,8302-2") == {
            "p-weighed",
            "p-measured",
        }

    def test_has_combines_with_an_ordinary_parameter(self, client: SyncClient) -> None:
        """gender=male&_has:...:code=29463-7,8302-2 keeps only the male Patient (https://hl7.org/fhir/R4/search.html#has)."""
        weights_and_heights(client)

        assert found(
            client, "Patient", "gender=male&_has:Observation:subject:code=29463-7,8302-2"
        ) == {"p-measured"}

    def test_two_has_clauses_are_anded(self, client: SyncClient) -> None:
        """A Patient must have both a weight and a height to match two _has clauses (https://hl7.org/fhir/R4/search.html#has)."""
        weights_and_heights(client)
        put(client, observation("o-weight-2", "Patient/p-measured", "29463-7"))
        query = "_has:Observation:subject:code=29463-7&_has:Observation:subject:code=8302-2"

        assert found(client, "Patient", query) == {"p-measured"}

    @pytest.mark.requires("search.param.date", "search.prefix.ge")
    def test_the_inner_value_keeps_its_date_prefix(self, client: SyncClient) -> None:
        """_has:Observation:subject:date=ge2020-01-01 finds the Patient observed in 2021 (https://hl7.org/fhir/R4/search.html#has)."""
        weights_and_heights(client)

        assert found(client, "Patient", "_has:Observation:subject:date=ge2020-01-01") == {
            "p-weighed"
        }

    def test_nested_has(self, client: SyncClient) -> None:
        """Patient?_has:Observation:subject:_has:DiagnosticReport:result:status=final goes two levels back (https://hl7.org/fhir/R4/search.html#has)."""
        weights_and_heights(client)
        put(
            client,
            report("r-final", "final", ["o-weight"]),
            report("r-draft", "preliminary", ["o-height"]),
        )
        query = "_has:Observation:subject:_has:DiagnosticReport:result:status=final"

        assert found(client, "Patient", query) == {"p-weighed"}

    @pytest.mark.requires("crud.delete")
    def test_has_ignores_deleted_sources(self, client: SyncClient) -> None:
        """After o-weight is deleted, _has:Observation:subject:code=29463-7 finds nobody (https://hl7.org/fhir/R4/search.html#has)."""
        weights_and_heights(client)
        client.delete("Observation", "o-weight")

        assert found(client, "Patient", "_has:Observation:subject:code=29463-7") == set()

    def test_has_with_a_reference_that_cannot_point_here_is_refused(
        self, client: SyncClient
    ) -> None:
        """Patient?_has:Observation:encounter:code=x is refused: encounter never points at a Patient (https://hl7.org/fhir/R4/search.html#has)."""
        with pytest.raises(InvalidSearch):
            client.search("Patient", "_has:Observation:encounter:code=x")

    def test_has_with_an_unknown_type_is_refused(self, client: SyncClient) -> None:
        """Patient?_has:Nonsense:subject:code=x is refused (https://hl7.org/fhir/R4/search.html#has)."""
        with pytest.raises(InvalidSearch):
            client.search("Patient", "_has:Nonsense:subject:code=x")

    def test_has_only_counts_references_to_this_type(self, client: SyncClient) -> None:
        """A Group g1 observed with a weight does not make Patient g1 match (https://hl7.org/fhir/R4/search.html#has)."""
        put(
            client,
            patient("g1"),
            {"resourceType": "Group", "id": "g1", "type": "person", "actual": True},
            observation("o-group", "Group/g1", "29463-7"),
        )

        assert found(client, "Patient", "_has:Observation:subject:code=29463-7") == set()

    @pytest.mark.requires("search.chain", "search.param.string")
    def test_has_with_a_chained_inner_parameter(self, client: SyncClient) -> None:
        """Patient?_has:Observation:subject:performer:Practitioner.name=House follows a chain from the Observation (https://hl7.org/fhir/R4/search.html#has)."""
        weights_and_heights(client)
        weight = observation("o-weight", "Patient/p-weighed", "29463-7")
        weight["performer"] = [{"reference": "Practitioner/dr-house"}]
        put(
            client,
            {"resourceType": "Practitioner", "id": "dr-house", "name": [{"family": "House"}]},
            weight,
        )
        query = "_has:Observation:subject:performer:Practitioner.name=House"

        assert found(client, "Patient", query) == {"p-weighed"}
