"""Custom SearchParameters: creating one makes resources written afterwards searchable by it (FHIR R4 searchparameter.html)."""

from __future__ import annotations

from typing import Any

import pytest

from helios_conformance import InvalidSearch, SyncClient

EYE_COLOUR = "http://example.org/fhir/StructureDefinition/eye-colour"
FIRST_VISIT = "http://example.org/fhir/StructureDefinition/first-visit"


def search_parameter(
    code: str, base: str, param_type: str, expression: str, **fields: Any
) -> dict[str, Any]:
    return {
        "resourceType": "SearchParameter",
        "id": code,
        "url": f"http://example.org/fhir/SearchParameter/{code}",
        "name": code.replace("-", "_"),
        "status": "active",
        "description": f"Custom {param_type} parameter {code}",
        "code": code,
        "base": [base],
        "type": param_type,
        "expression": expression,
        **fields,
    }


def patient(resource_id: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": resource_id, **fields}


def with_extension(resource_id: str, url: str, **value: Any) -> dict[str, Any]:
    return patient(resource_id, extension=[{"url": url, **value}])


def put(client: SyncClient, *resources: dict[str, Any]) -> None:
    for resource in resources:
        client.create_or_update(resource["resourceType"], resource["id"], resource)


def ids(client: SyncClient, resource_type: str, query: str | list[tuple[str, str]]) -> set[str]:
    return set(client.search(resource_type, query).ids)


NICKNAME = search_parameter(
    "nickname", "Patient", "string", "Patient.name.where(use = 'nickname').given"
)


class TestCustomParameters:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.param.custom")

    @pytest.mark.requires("search.param.string")
    def test_custom_string_parameter(self, client: SyncClient) -> None:
        """After registering nickname (the given names of nickname-use names), nickname=bob finds Bobby (https://hl7.org/fhir/R4/searchparameter.html)."""
        put(client, NICKNAME)
        put(
            client,
            patient(
                "p1",
                name=[
                    {"family": "Smith", "given": ["Robert"]},
                    {"use": "nickname", "given": ["Bobby"]},
                ],
            ),
            # Bob is p2's official given name, not a nickname.
            patient("p2", name=[{"family": "Jones", "given": ["Bob"]}]),
        )

        assert ids(client, "Patient", "nickname=bob") == {"p1"}

    @pytest.mark.requires("search.param.token")
    def test_custom_token_parameter_on_an_extension(self, client: SyncClient) -> None:
        """After registering eye-colour on an extension's valueCode, eye-colour=blue finds the blue-eyed Patient (https://hl7.org/fhir/R4/searchparameter.html)."""
        put(
            client,
            search_parameter(
                "eye-colour", "Patient", "token", f"Patient.extension('{EYE_COLOUR}').value"
            ),
        )
        put(
            client,
            with_extension("blue", EYE_COLOUR, valueCode="blue"),
            with_extension("brown", EYE_COLOUR, valueCode="brown"),
            patient("unknown"),
        )

        assert ids(client, "Patient", "eye-colour=blue") == {"blue"}

    @pytest.mark.requires("search.param.date", "search.prefix.ge")
    def test_custom_date_parameter(self, client: SyncClient) -> None:
        """After registering first-visit on an extension's valueDate, first-visit=ge2020 finds the 2021 visit (https://hl7.org/fhir/R4/searchparameter.html)."""
        put(
            client,
            search_parameter(
                "first-visit", "Patient", "date", f"Patient.extension('{FIRST_VISIT}').value"
            ),
        )
        put(
            client,
            with_extension("recent", FIRST_VISIT, valueDate="2021-04-01"),
            with_extension("old", FIRST_VISIT, valueDate="2010-04-01"),
        )

        assert ids(client, "Patient", "first-visit=ge2020") == {"recent"}

    @pytest.mark.requires("search.param.reference")
    def test_custom_reference_parameter(self, client: SyncClient) -> None:
        """After registering contact-organization, contact-organization=Organization/o1 finds the Patient whose contact works there (https://hl7.org/fhir/R4/searchparameter.html)."""
        put(
            client,
            search_parameter(
                "contact-organization",
                "Patient",
                "reference",
                "Patient.contact.organization",
                target=["Organization"],
            ),
        )
        put(
            client,
            patient("p1", contact=[{"organization": {"reference": "Organization/o1"}}]),
            patient("p2", contact=[{"organization": {"reference": "Organization/o2"}}]),
        )

        assert ids(client, "Patient", "contact-organization=Organization/o1") == {"p1"}

    @pytest.mark.requires("search.param.string")
    def test_custom_parameter_on_another_resource_type(self, client: SyncClient) -> None:
        """After registering note-text on Observation.note.text, note-text=fasting finds the annotated Observation (https://hl7.org/fhir/R4/searchparameter.html)."""
        put(client, search_parameter("note-text", "Observation", "string", "Observation.note.text"))

        def noted(resource_id: str, note: str) -> dict[str, Any]:
            return {
                "resourceType": "Observation",
                "id": resource_id,
                "status": "final",
                "code": {"text": "glucose"},
                "note": [{"text": note}],
            }

        put(client, noted("o1", "Fasting sample"), noted("o2", "Random sample"))

        assert ids(client, "Observation", "note-text=fasting") == {"o1"}

    @pytest.mark.requires("search.param.string", "search.modifier.exact")
    def test_custom_parameter_takes_modifiers_of_its_type(self, client: SyncClient) -> None:
        """nickname:exact=Bob finds the nickname Bob and not Bobby (https://hl7.org/fhir/R4/searchparameter.html)."""
        put(client, NICKNAME)
        put(
            client,
            patient("bob", name=[{"use": "nickname", "given": ["Bob"]}]),
            patient("bobby", name=[{"use": "nickname", "given": ["Bobby"]}]),
        )

        assert ids(client, "Patient", "nickname:exact=Bob") == {"bob"}

    @pytest.mark.requires("search.param.string")
    def test_parameter_is_unknown_before_registration(self, client: SyncClient) -> None:
        """nickname=bob is refused as unknown until the SearchParameter exists, then accepted (https://hl7.org/fhir/R4/searchparameter.html)."""
        put(client, patient("p1", name=[{"use": "nickname", "given": ["Bobby"]}]))

        with pytest.raises(InvalidSearch) as caught:
            client.search("Patient", "nickname=bob")
        put(client, NICKNAME)
        put(client, patient("p2", name=[{"use": "nickname", "given": ["Bobby"]}]))

        assert caught.value.parameter == "nickname"
        assert "p2" in client.search("Patient", "nickname=bob").ids

    @pytest.mark.requires("search.param.string", "search.param.token")
    def test_custom_parameter_combines_with_standard_ones(self, client: SyncClient) -> None:
        """nickname=bob&gender=male finds the male Bobby only (https://hl7.org/fhir/R4/searchparameter.html)."""
        put(client, NICKNAME)
        put(
            client,
            patient("male", gender="male", name=[{"use": "nickname", "given": ["Bobby"]}]),
            patient("female", gender="female", name=[{"use": "nickname", "given": ["Bobbie"]}]),
        )

        assert ids(client, "Patient", "nickname=bob&gender=male") == {"male"}
