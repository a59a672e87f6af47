"""_elements and _summary: returning marked subsets of the matches (FHIR R4 search.html#elements, #summary)."""

from __future__ import annotations

from typing import Any

import pytest

from helios_conformance import InvalidSearch, SyncClient

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
}

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "text": {
        "status": "generated",
        "div": '<div xmlns="http://www.w3.org/1999/xhtml">Ann Lee</div>',
    },
    "name": [{"family": "Lee", "given": ["Ann"]}],
    "gender": "female",
    "birthDate": "1980-02-03",
    "maritalStatus": {"text": "married"},
    "contact": [{"name": {"family": "Lee", "given": ["Bo"]}}],
}

OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "o1",
    "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">72 kg</div>'},
    "status": "final",
    "code": {"text": "weight"},
    "subject": {"reference": "Patient/p1"},
    "valueQuantity": {"value": 72, "unit": "kg"},
    "note": [{"text": "after breakfast"}],
}


def put(client: SyncClient, *resources: dict[str, Any]) -> None:
    for resource in resources:
        client.create_or_update(resource["resourceType"], resource["id"], resource)


def only(client: SyncClient, resource_type: str, query: str) -> dict[str, Any]:
    result = client.search(resource_type, query)
    assert len(result.entries) == 1
    body = result.entries[0].resource
    assert body is not None
    return body


def tagged(body: dict[str, Any]) -> bool:
    return any(
        tag.get("system") == SUBSETTED["system"] and tag.get("code") == SUBSETTED["code"]
        for tag in body.get("meta", {}).get("tag", [])
    )


class TestElements:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.elements")

    def test_elements_returns_the_listed_elements(self, client: SyncClient) -> None:
        """_elements=name,gender returns name, gender and the mandatory id, meta, resourceType (https://hl7.org/fhir/R4/search.html#elements)."""
        put(client, PATIENT)

        body = only(client, "Patient", "_elements=name,gender")

        assert sorted(body) == ["gender", "id", "meta", "name", "resourceType"]

    def test_elements_marks_the_subset(self, client: SyncClient) -> None:
        """A resource returned with _elements carries the SUBSETTED tag (https://hl7.org/fhir/R4/search.html#elements)."""
        put(client, PATIENT)

        assert tagged(only(client, "Patient", "_elements=name"))

    def test_elements_names_a_choice_element_by_its_base_name(self, client: SyncClient) -> None:
        """_elements=value returns Observation.valueQuantity (https://hl7.org/fhir/R4/search.html#elements)."""
        put(client, OBSERVATION)

        body = only(client, "Observation", "_elements=value")

        assert body["valueQuantity"] == {"value": 72, "unit": "kg"}
        assert "note" not in body

    @pytest.mark.requires("search.param.string")
    def test_elements_does_not_change_what_matches(self, client: SyncClient) -> None:
        """family=Lee&_elements=gender matches p1 by a name it does not return (https://hl7.org/fhir/R4/search.html#elements)."""
        put(client, PATIENT)

        body = only(client, "Patient", "family=Lee&_elements=gender")

        assert (body["id"], "name" in body) == ("p1", False)

    @pytest.mark.requires("crud.read")
    def test_elements_does_not_change_the_stored_resource(self, client: SyncClient) -> None:
        """A read after an _elements search returns the whole, untagged Patient (https://hl7.org/fhir/R4/search.html#elements)."""
        put(client, PATIENT)
        only(client, "Patient", "_elements=gender")

        body = client.read("Patient", "p1").resource
        assert body is not None
        assert ("contact" in body, tagged(body)) == (True, False)

    def test_without_elements_the_resource_is_whole_and_untagged(self, client: SyncClient) -> None:
        """A search without _elements or _summary returns every element, untagged (https://hl7.org/fhir/R4/search.html#elements)."""
        put(client, PATIENT)

        body = only(client, "Patient", "")

        assert (set(PATIENT) <= set(body), tagged(body)) == (True, False)

    def test_a_malformed_element_name_is_refused(self, client: SyncClient) -> None:
        """_elements=name.family is refused: only top-level element names are allowed (https://hl7.org/fhir/R4/search.html#elements)."""
        with pytest.raises(InvalidSearch):
            client.search("Patient", "_elements=name.family")

    @pytest.mark.requires("search.summary")
    def test_elements_with_summary_is_refused(self, client: SyncClient) -> None:
        """_elements=name&_summary=true is refused: both choose the returned elements (https://hl7.org/fhir/R4/search.html#elements)."""
        with pytest.raises(InvalidSearch):
            client.search("Patient", "_elements=name&_summary=true")


class TestSummary:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.summary")

    def test_summary_true_keeps_summary_elements(self, client: SyncClient) -> None:
        """_summary=true keeps Patient.name, gender and birthDate (https://hl7.org/fhir/R4/search.html#summary)."""
        put(client, PATIENT)

        body = only(client, "Patient", "_summary=true")

        assert (body["name"], body["gender"], body["birthDate"]) == (
            PATIENT["name"],
            "female",
            "1980-02-03",
        )

    def test_summary_true_drops_other_elements(self, client: SyncClient) -> None:
        """_summary=true drops text, maritalStatus and contact, which are not summary elements (https://hl7.org/fhir/R4/search.html#summary)."""
        put(client, PATIENT)

        body = only(client, "Patient", "_summary=true")

        assert {"text", "maritalStatus", "contact"} & set(body) == set()

    def test_summary_true_marks_the_subset(self, client: SyncClient) -> None:
        """_summary=true results carry the SUBSETTED tag (https://hl7.org/fhir/R4/search.html#summary)."""
        put(client, PATIENT)

        assert tagged(only(client, "Patient", "_summary=true"))

    def test_summary_text_keeps_text_and_mandatory_elements(self, client: SyncClient) -> None:
        """_summary=text on an Observation keeps text, id, meta and the mandatory status and code (https://hl7.org/fhir/R4/search.html#summary)."""
        put(client, OBSERVATION)

        body = only(client, "Observation", "_summary=text")

        assert sorted(body) == ["code", "id", "meta", "resourceType", "status", "text"]
        assert tagged(body)

    def test_summary_data_drops_only_the_text(self, client: SyncClient) -> None:
        """_summary=data returns every element but text (https://hl7.org/fhir/R4/search.html#summary)."""
        put(client, PATIENT)

        body = only(client, "Patient", "_summary=data")

        assert sorted(set(body) - {"meta"}) == sorted(set(PATIENT) - {"text"})

    def test_summary_data_marks_the_subset(self, client: SyncClient) -> None:
        """_summary=data results carry the SUBSETTED tag (https://hl7.org/fhir/R4/search.html#summary)."""
        put(client, PATIENT)

        assert tagged(only(client, "Patient", "_summary=data"))

    def test_summary_false_returns_the_whole_resource(self, client: SyncClient) -> None:
        """_summary=false returns every element, untagged (https://hl7.org/fhir/R4/search.html#summary)."""
        put(client, PATIENT)

        body = only(client, "Patient", "_summary=false")

        assert (set(PATIENT) <= set(body), tagged(body)) == (True, False)

    def test_an_unknown_summary_mode_is_refused(self, client: SyncClient) -> None:
        """_summary=short is refused with InvalidSearch (https://hl7.org/fhir/R4/search.html#summary)."""
        with pytest.raises(InvalidSearch):
            client.search("Patient", "_summary=short")
