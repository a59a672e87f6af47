"""Full-text search: _text over the narrative, _content over the whole resource (FHIR R4 search.html#text, #content).

The expectations stay within what a stemming full-text index (e.g. SQLite FTS5 with the
porter tokenizer) and a reference evaluator agree on: whole words matched case-insensitively,
English suffixes stemmed, "quoted phrases", AND / OR / NOT, parentheses and word* prefixes.
"""

from __future__ import annotations

from typing import Any

import pytest

from helios_conformance import SyncClient


def narrated(resource_id: str, narrative: str, **fields: Any) -> dict[str, Any]:
    """A Condition whose narrative div holds ``narrative`` inside a paragraph."""
    return {
        "resourceType": "Condition",
        "id": resource_id,
        "subject": {"reference": "Patient/p1"},
        "text": {
            "status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{narrative}</p></div>',
        },
        **fields,
    }


def put(client: SyncClient, *resources: dict[str, Any]) -> None:
    for resource in resources:
        client.create_or_update(resource["resourceType"], resource["id"], resource)


def ids(client: SyncClient, resource_type: str, parameter: str, value: str) -> set[str]:
    return set(client.search(resource_type, [(parameter, value)]).ids)


def put_symptoms(client: SyncClient) -> None:
    put(
        client,
        narrated("cough", "Persistent dry cough for two weeks."),
        narrated("fever", "High fever since Monday."),
        narrated("both", "Cough and fever, worse at night."),
        narrated("rash", "Itchy rash on both arms."),
    )


class TestNarrativeText:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.text")

    def test_word_in_the_narrative_matches(self, client: SyncClient) -> None:
        """_text=cough finds the narratives that mention a cough (https://hl7.org/fhir/R4/search.html#text)."""
        put_symptoms(client)

        assert ids(client, "Condition", "_text", "cough") == {"cough", "both"}

    def test_matching_is_case_insensitive(self, client: SyncClient) -> None:
        """_text=FEVER finds "fever" and "Fever" (https://hl7.org/fhir/R4/search.html#text)."""
        put_symptoms(client)

        assert ids(client, "Condition", "_text", "FEVER") == {"fever", "both"}

    def test_words_are_stemmed(self, client: SyncClient) -> None:
        """_text=running finds a narrative that says "run" (https://hl7.org/fhir/R4/search.html#text)."""
        put(
            client,
            narrated("run", "Pain after a long run."),
            narrated("walk", "Pain after a long walk."),
        )

        assert ids(client, "Condition", "_text", "running") == {"run"}

    def test_quoted_phrase_needs_the_words_together(self, client: SyncClient) -> None:
        """_text="heart attack" finds "heart attack" but not "attack of the heart" (https://hl7.org/fhir/R4/search.html#text)."""
        put(
            client,
            narrated("phrase", "History of heart attack in 2019."),
            narrated("apart", "Panic attack, heart rate normal."),
        )

        assert ids(client, "Condition", "_text", '"heart attack"') == {"phrase"}

    def test_or_matches_either_word(self, client: SyncClient) -> None:
        """_text=cough OR rash finds every narrative with either word (https://hl7.org/fhir/R4/search.html#text)."""
        put_symptoms(client)

        assert ids(client, "Condition", "_text", "cough OR rash") == {"cough", "both", "rash"}

    def test_and_needs_both_words(self, client: SyncClient) -> None:
        """_text=cough AND fever finds only the narrative with both words (https://hl7.org/fhir/R4/search.html#text)."""
        put_symptoms(client)

        assert ids(client, "Condition", "_text", "cough AND fever") == {"both"}

    def test_not_excludes_a_word(self, client: SyncClient) -> None:
        """_text=cough NOT fever finds the cough without fever (https://hl7.org/fhir/R4/search.html#text)."""
        put_symptoms(client)

        assert ids(client, "Condition", "_text", "cough NOT fever") == {"cough"}

    def test_parentheses_group(self, client: SyncClient) -> None:
        """_text=(cough OR fever) AND night finds only the narrative mentioning night (https://hl7.org/fhir/R4/search.html#text)."""
        put_symptoms(client)

        assert ids(client, "Condition", "_text", "(cough OR fever) AND night") == {"both"}

    def test_prefix_term_matches_longer_words(self, client: SyncClient) -> None:
        """_text=cardio* finds "cardiology" (https://hl7.org/fhir/R4/search.html#text)."""
        put(
            client,
            narrated("cardio", "Referred to cardiology."),
            narrated("neuro", "Referred to neurology."),
        )

        assert ids(client, "Condition", "_text", "cardio*") == {"cardio"}

    def test_word_is_not_matched_inside_another_word(self, client: SyncClient) -> None:
        """_text=card does not find "cardiology" without a * (https://hl7.org/fhir/R4/search.html#text)."""
        put(client, narrated("cardio", "Referred to cardiology."))

        assert ids(client, "Condition", "_text", "card") == set()

    def test_text_searches_only_the_narrative(self, client: SyncClient) -> None:
        """_text=migraine does not find a Condition whose code says migraine but whose narrative does not (https://hl7.org/fhir/R4/search.html#text)."""
        put(
            client,
            narrated("in-narrative", "Recurring migraine."),
            narrated("in-code-only", "Recurring headaches.", code={"text": "Migraine"}),
        )

        assert ids(client, "Condition", "_text", "migraine") == {"in-narrative"}

    def test_markup_is_not_text(self, client: SyncClient) -> None:
        """_text=xmlns finds nothing: the XHTML markup of the narrative is not its text (https://hl7.org/fhir/R4/search.html#text)."""
        put_symptoms(client)

        assert ids(client, "Condition", "_text", "xmlns") == set()


class TestContent:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.content")

    def test_content_searches_structured_elements(self, client: SyncClient) -> None:
        """_content=migraine finds the Condition whose code text says Migraine (https://hl7.org/fhir/R4/search.html#content)."""
        put(
            client,
            narrated("in-code", "Recurring headaches.", code={"text": "Migraine"}),
            narrated("other", "Recurring headaches.", code={"text": "Tension headache"}),
        )

        assert ids(client, "Condition", "_content", "migraine") == {"in-code"}

    def test_content_includes_the_narrative(self, client: SyncClient) -> None:
        """_content=cough finds narratives that mention a cough (https://hl7.org/fhir/R4/search.html#content)."""
        put_symptoms(client)

        assert ids(client, "Condition", "_content", "cough") == {"cough", "both"}

    def test_content_finds_names_on_a_patient(self, client: SyncClient) -> None:
        """_content=Okonkwo finds the Patient with that family name (https://hl7.org/fhir/R4/search.html#content)."""
        put(
            client,
            {"resourceType": "Patient", "id": "p1", "name": [{"family": "Okonkwo"}]},
            {"resourceType": "Patient", "id": "p2", "name": [{"family": "Smith"}]},
        )

        assert ids(client, "Patient", "_content", "okonkwo") == {"p1"}

    def test_content_finds_coding_displays(self, client: SyncClient) -> None:
        """_content=asthma finds a Condition whose coding display is "Asthma" (https://hl7.org/fhir/R4/search.html#content)."""
        asthma = {
            "coding": [
                {"system": "http://snomed.info/sct", "code": "195967001", "display": "Asthma"}
            ]
        }
        put(
            client,
            narrated("asthma", "Seen today.", code=asthma),
            narrated("other", "Seen today.", code={"text": "Eczema"}),
        )

        assert ids(client, "Condition", "_content", "asthma") == {"asthma"}

    def test_content_and_needs_both_words_anywhere(self, client: SyncClient) -> None:
        """_content=wheeze AND asthma finds the Condition with wheeze in its narrative and asthma in its code (https://hl7.org/fhir/R4/search.html#content)."""
        put(
            client,
            narrated("both", "Audible wheeze.", code={"text": "Asthma"}),
            narrated("wheeze-only", "Audible wheeze.", code={"text": "Bronchitis"}),
        )

        assert ids(client, "Condition", "_content", "wheeze AND asthma") == {"both"}

    def test_content_is_scoped_to_the_resource_type(self, client: SyncClient) -> None:
        """Condition?_content=okonkwo does not find a Patient named Okonkwo (https://hl7.org/fhir/R4/search.html#content)."""
        put(
            client,
            {"resourceType": "Patient", "id": "p1", "name": [{"family": "Okonkwo"}]},
            narrated("c1", "Seen today."),
        )

        assert ids(client, "Condition", "_content", "okonkwo") == set()

    def test_content_phrase(self, client: SyncClient) -> None:
        """_content="short of breath" finds the exact phrase only (https://hl7.org/fhir/R4/search.html#content)."""
        put(
            client,
            narrated("phrase", "Short of breath on exertion."),
            narrated("apart", "Breath sounds short and shallow."),
        )

        assert ids(client, "Condition", "_content", '"short of breath"') == {"phrase"}
