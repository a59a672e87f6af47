"""Token modifiers :text, :not, :of-type, :code-text and :text-advanced (FHIR R4 search.html#token, R5 search.html#modifiers)."""

from __future__ import annotations

from typing import Any

import pytest

from helios_conformance import SyncClient

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"


def observation(
    resource_id: str,
    codings: list[dict[str, str]],
    text: str | None = None,
) -> dict[str, Any]:
    code: dict[str, Any] = {"coding": codings}
    if text is not None:
        code["text"] = text
    return {"resourceType": "Observation", "id": resource_id, "status": "final", "code": code}


def condition(resource_id: str, text: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": resource_id,
        "subject": {"reference": "Patient/p1"},
        "code": {"text": text},
    }


def patient(resource_id: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": resource_id, **fields}


def put(client: SyncClient, *resources: dict[str, Any]) -> None:
    for resource in resources:
        client.create_or_update(resource["resourceType"], resource["id"], resource)


def ids(client: SyncClient, resource_type: str, query: str | list[tuple[str, str]]) -> set[str]:
    return set(client.search(resource_type, query).ids)


class TestTextModifier:
    pytestmark = pytest.mark.requires(
        "crud.update_as_create", "search.param.token", "search.modifier.text"
    )

    def test_text_matches_codeableconcept_text(self, client: SyncClient) -> None:
        """code:text=blood finds the CodeableConcept whose text is "Blood pressure" (https://hl7.org/fhir/R4/search.html#token)."""
        put(
            client,
            observation("o1", [{"system": LOINC, "code": "85354-9"}], text="Blood pressure"),
            observation("o2", [{"system": LOINC, "code": "8310-5"}], text="Body temperature"),
        )

        assert ids(client, "Observation", "code:text=blood") == {"o1"}

    def test_text_matches_coding_display(self, client: SyncClient) -> None:
        """code:text=heart finds a coding whose display is "Heart rate" (https://hl7.org/fhir/R4/search.html#token)."""
        put(
            client,
            observation("o1", [{"system": LOINC, "code": "8867-4", "display": "Heart rate"}]),
            observation("o2", [{"system": LOINC, "code": "9279-1", "display": "Respiratory rate"}]),
        )

        assert ids(client, "Observation", "code:text=heart") == {"o1"}

    def test_text_is_case_insensitive(self, client: SyncClient) -> None:
        """code:text=BLOOD PRESSURE finds the text "Blood pressure" (https://hl7.org/fhir/R4/search.html#token)."""
        put(client, observation("o1", [{"code": "85354-9"}], text="Blood pressure"))

        assert ids(client, "Observation", [("code:text", "BLOOD PRESSURE")]) == {"o1"}

    def test_text_does_not_match_the_code(self, client: SyncClient) -> None:
        """code:text=8867 does not find code 8867-4: :text searches display and text only (https://hl7.org/fhir/R4/search.html#token)."""
        put(
            client,
            observation("o1", [{"system": LOINC, "code": "8867-4", "display": "Heart rate"}]),
        )

        assert ids(client, "Observation", "code:text=8867") == set()


class TestNotModifier:
    pytestmark = pytest.mark.requires(
        "crud.update_as_create", "search.param.token", "search.modifier.not"
    )

    def test_not_includes_other_values_and_absent_values(self, client: SyncClient) -> None:
        """gender:not=male finds female, unknown and a Patient with no gender (https://hl7.org/fhir/R4/search.html#token)."""
        put(
            client,
            patient("p-male", gender="male"),
            patient("p-female", gender="female"),
            patient("p-unknown", gender="unknown"),
            patient("p-absent"),
        )

        assert ids(client, "Patient", "gender:not=male") == {"p-female", "p-unknown", "p-absent"}

    def test_not_excludes_a_resource_with_any_equal_value(self, client: SyncClient) -> None:
        """code:not=<loinc>|8480-6 excludes an Observation whose second coding is 8480-6 (https://hl7.org/fhir/R4/search.html#token)."""
        put(
            client,
            observation(
                "o1",
                [{"system": "urn:local", "code": "sbp"}, {"system": LOINC, "code": "8480-6"}],
            ),
            observation("o2", [{"system": LOINC, "code": "8462-4"}]),
        )

        assert ids(client, "Observation", f"code:not={LOINC}|8480-6") == {"o2"}

    def test_not_respects_the_system(self, client: SyncClient) -> None:
        """code:not=<loinc>|8480-6 keeps code 8480-6 in another system (https://hl7.org/fhir/R4/search.html#token)."""
        put(
            client,
            observation("o1", [{"system": LOINC, "code": "8480-6"}]),
            observation("o2", [{"system": "urn:local", "code": "8480-6"}]),
        )

        assert ids(client, "Observation", f"code:not={LOINC}|8480-6") == {"o2"}

    def test_not_on_a_boolean(self, client: SyncClient) -> None:
        """active:not=true finds inactive Patients and those with no active flag (https://hl7.org/fhir/R4/search.html#token)."""
        put(
            client,
            patient("p-true", active=True),
            patient("p-false", active=False),
            patient("p-absent"),
        )

        assert ids(client, "Patient", "active:not=true") == {"p-false", "p-absent"}

    def test_not_on_an_identifier(self, client: SyncClient) -> None:
        """identifier:not=A-1 excludes the Patient holding A-1 among other identifiers (https://hl7.org/fhir/R4/search.html#token)."""
        put(
            client,
            patient("p1", identifier=[{"value": "B-2"}, {"value": "A-1"}]),
            patient("p2", identifier=[{"value": "B-2"}]),
            patient("p3"),
        )

        assert ids(client, "Patient", "identifier:not=A-1") == {"p2", "p3"}


class TestOfTypeModifier:
    pytestmark = pytest.mark.requires(
        "crud.update_as_create", "search.param.token", "search.modifier.of_type"
    )

    def test_of_type_matches_identifier_type_and_value(self, client: SyncClient) -> None:
        """identifier:of-type=<v2-0203>|MR|12345 finds the medical record number 12345, not a 12345 of another type (https://hl7.org/fhir/R4/search.html#token)."""

        def typed(code: str, value: str) -> dict[str, Any]:
            return {"type": {"coding": [{"system": V2_0203, "code": code}]}, "value": value}

        put(
            client,
            patient("p1", identifier=[typed("MR", "12345")]),
            patient("p2", identifier=[typed("SS", "12345")]),
            patient("p3", identifier=[typed("MR", "99999")]),
        )

        assert ids(client, "Patient", f"identifier:of-type={V2_0203}|MR|12345") == {"p1"}


class TestCodeTextModifier:
    pytestmark = pytest.mark.requires(
        "crud.update_as_create", "search.param.token", "search.modifier.code_text"
    )

    def test_code_text_matches_the_start_of_the_code(self, client: SyncClient) -> None:
        """code:code-text=8480 finds code 8480-6 by string matching on the code (https://hl7.org/fhir/R5/search.html#modifiercode-text)."""
        put(
            client,
            observation("o1", [{"system": LOINC, "code": "8480-6"}]),
            observation("o2", [{"system": LOINC, "code": "8462-4"}]),
        )

        assert ids(client, "Observation", "code:code-text=8480") == {"o1"}

    def test_code_text_is_case_insensitive(self, client: SyncClient) -> None:
        """identifier:code-text=mrn-12 finds the identifier value MRN-1234 (https://hl7.org/fhir/R5/search.html#modifiercode-text)."""
        put(
            client,
            patient("p1", identifier=[{"value": "MRN-1234"}]),
            patient("p2", identifier=[{"value": "MRN-9999"}]),
        )

        assert ids(client, "Patient", "identifier:code-text=mrn-12") == {"p1"}


class TestTextAdvancedModifier:
    pytestmark = pytest.mark.requires(
        "crud.update_as_create", "search.param.token", "search.modifier.text_advanced"
    )

    def test_text_advanced_matches_a_word_inside_the_text(self, client: SyncClient) -> None:
        """code:text-advanced=headache finds "Severe headache", which plain starts-with would miss (https://hl7.org/fhir/R5/search.html#modifiertext-advanced)."""
        put(client, condition("c1", "Severe headache"), condition("c2", "Lower back pain"))

        assert ids(client, "Condition", "code:text-advanced=headache") == {"c1"}

    def test_text_advanced_stems_words(self, client: SyncClient) -> None:
        """code:text-advanced=headaches finds "Severe headache" by stemming (https://hl7.org/fhir/R5/search.html#modifiertext-advanced)."""
        put(client, condition("c1", "Severe headache"), condition("c2", "Lower back pain"))

        assert ids(client, "Condition", "code:text-advanced=headaches") == {"c1"}
