"""Token search: system|code, |code, system|, bare code, identifiers, booleans, ContactPoints (FHIR R4 search.html#token)."""

from __future__ import annotations

from typing import Any

import pytest

from helios_conformance import SyncClient

LOINC = "http://loinc.org"
OTHER_SYSTEM = "http://example.org/local-codes"
MRN = "http://hospital.example.org/mrn"
SSN = "http://hl7.org/fhir/sid/us-ssn"


def coding(code: str, system: str | None = None, display: str | None = None) -> dict[str, str]:
    result = {"code": code}
    if system is not None:
        result["system"] = system
    if display is not None:
        result["display"] = display
    return result


def observation(resource_id: str, *codings: dict[str, str], **fields: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": resource_id,
        "status": fields.pop("status", "final"),
        "code": {"coding": list(codings)},
        **fields,
    }


def patient(resource_id: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": resource_id, **fields}


def put(client: SyncClient, *resources: dict[str, Any]) -> None:
    for resource in resources:
        client.create_or_update(resource["resourceType"], resource["id"], resource)


def ids(client: SyncClient, resource_type: str, query: str | list[tuple[str, str]]) -> set[str]:
    return set(client.search(resource_type, query).ids)


TELECOM = [
    {"system": "phone", "value": "555-0100", "use": "home"},
    {"system": "email", "value": "ann@example.org"},
]


class TestCodings:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.param.token")

    def put_three_systems(self, client: SyncClient) -> None:
        """o1 has LOINC 8480-6, o2 has 8480-6 in another system, o3 has 8480-6 with no system, o4 has LOINC 8462-4."""
        put(
            client,
            observation("o1", coding("8480-6", LOINC)),
            observation("o2", coding("8480-6", OTHER_SYSTEM)),
            observation("o3", coding("8480-6")),
            observation("o4", coding("8462-4", LOINC)),
        )

    def test_system_and_code_match_only_that_system(self, client: SyncClient) -> None:
        """code=http://loinc.org|8480-6 finds only the LOINC coding (https://hl7.org/fhir/R4/search.html#token)."""
        self.put_three_systems(client)

        assert ids(client, "Observation", f"code={LOINC}|8480-6") == {"o1"}

    def test_bare_code_matches_any_system(self, client: SyncClient) -> None:
        """code=8480-6 finds the code in any system and with no system (https://hl7.org/fhir/R4/search.html#token)."""
        self.put_three_systems(client)

        assert ids(client, "Observation", "code=8480-6") == {"o1", "o2", "o3"}

    def test_empty_system_matches_only_codes_without_a_system(self, client: SyncClient) -> None:
        """code=|8480-6 finds only the coding that has no system (https://hl7.org/fhir/R4/search.html#token)."""
        self.put_three_systems(client)

        assert ids(client, "Observation", "code=|8480-6") == {"o3"}

    def test_system_alone_matches_any_code_in_it(self, client: SyncClient) -> None:
        """code=http://loinc.org| finds every LOINC coding, whatever the code (https://hl7.org/fhir/R4/search.html#token)."""
        self.put_three_systems(client)

        assert ids(client, "Observation", f"code={LOINC}|") == {"o1", "o4"}

    def test_any_coding_of_a_codeableconcept_matches(self, client: SyncClient) -> None:
        """A CodeableConcept matches when its second coding has the code (https://hl7.org/fhir/R4/search.html#token)."""
        put(
            client,
            observation("o1", coding("local-bp", OTHER_SYSTEM), coding("8480-6", LOINC)),
            observation("o2", coding("local-bp", OTHER_SYSTEM)),
        )

        assert ids(client, "Observation", f"code={LOINC}|8480-6") == {"o1"}

    def test_code_is_not_matched_by_prefix(self, client: SyncClient) -> None:
        """code=8480 does not find 8480-6: tokens match whole codes (https://hl7.org/fhir/R4/search.html#token)."""
        put(client, observation("o1", coding("8480-6", LOINC)))

        assert ids(client, "Observation", "code=8480") == set()

    def test_code_does_not_match_the_display(self, client: SyncClient) -> None:
        """code=Systolic does not find a coding whose display is Systolic (https://hl7.org/fhir/R4/search.html#token)."""
        put(client, observation("o1", coding("8480-6", LOINC, "Systolic")))

        assert ids(client, "Observation", "code=Systolic") == set()

    def test_comma_separated_codes_are_alternatives(self, client: SyncClient) -> None:
        """code=8480-6,8462-4 finds Observations with either code (https://hl7.org/fhir/R4/search.html#token)."""
        put(
            client,
            observation("o1", coding("8480-6", LOINC)),
            observation("o2", coding("8462-4", LOINC)),
            observation("o3", coding("29463-7", LOINC)),
        )

        assert ids(client, "Observation", "code=8480-6,8462-4") == {"o1", "o2"}

    def test_component_code_matches_component_codings(self, client: SyncClient) -> None:
        """component-code=8462-4 finds a blood pressure whose diastolic component is 8462-4 (https://hl7.org/fhir/R4/search.html#token)."""
        bp = observation(
            "o1",
            coding("85354-9", LOINC),
            component=[{"code": {"coding": [coding("8462-4", LOINC)]}}],
        )
        put(client, bp, observation("o2", coding("8462-4", LOINC)))

        assert ids(client, "Observation", f"component-code={LOINC}|8462-4") == {"o1"}

    def test_value_concept_matches_the_value_codeableconcept(self, client: SyncClient) -> None:
        """value-concept=http://snomed.info/sct|260385009 finds the Observation valued Negative (https://hl7.org/fhir/R4/search.html#token)."""
        negative = {"coding": [coding("260385009", "http://snomed.info/sct", "Negative")]}
        positive = {"coding": [coding("10828004", "http://snomed.info/sct", "Positive")]}
        put(
            client,
            observation("o1", coding("94500-6", LOINC), valueCodeableConcept=negative),
            observation("o2", coding("94500-6", LOINC), valueCodeableConcept=positive),
        )

        assert ids(client, "Observation", "value-concept=http://snomed.info/sct|260385009") == {
            "o1"
        }


class TestCodesAndBooleans:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.param.token")

    def test_code_element_matches(self, client: SyncClient) -> None:
        """gender=female finds the female Patient only (https://hl7.org/fhir/R4/search.html#token)."""
        put(
            client,
            patient("p1", gender="female"),
            patient("p2", gender="male"),
            patient("p3"),
        )

        assert ids(client, "Patient", "gender=female") == {"p1"}

    def test_observation_status_matches(self, client: SyncClient) -> None:
        """status=final finds the final Observation, not the preliminary one (https://hl7.org/fhir/R4/search.html#token)."""
        put(
            client,
            observation("o1", coding("8480-6", LOINC), status="final"),
            observation("o2", coding("8480-6", LOINC), status="preliminary"),
        )

        assert ids(client, "Observation", "status=final") == {"o1"}

    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            pytest.param("active=true", {"p-true"}, id="true"),
            pytest.param("active=false", {"p-false"}, id="false"),
        ],
    )
    def test_boolean_matches_only_that_value(
        self, client: SyncClient, query: str, expected: set[str]
    ) -> None:
        """active=true and active=false each find only that value; an absent active matches neither (https://hl7.org/fhir/R4/search.html#token)."""
        put(
            client,
            patient("p-true", active=True),
            patient("p-false", active=False),
            patient("p-absent"),
        )

        assert ids(client, "Patient", query) == expected


class TestIdentifiers:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.param.token")

    def put_identified(self, client: SyncClient) -> None:
        """p1 has MRN 12345, p2 has SSN 12345, p3 has 12345 with no system, p4 has MRN 99999."""
        put(
            client,
            patient("p1", identifier=[{"system": MRN, "value": "12345"}]),
            patient("p2", identifier=[{"system": SSN, "value": "12345"}]),
            patient("p3", identifier=[{"value": "12345"}]),
            patient("p4", identifier=[{"system": MRN, "value": "99999"}]),
        )

    def test_system_and_value_match(self, client: SyncClient) -> None:
        """identifier=<mrn>|12345 finds only the MRN 12345 (https://hl7.org/fhir/R4/search.html#token)."""
        self.put_identified(client)

        assert ids(client, "Patient", f"identifier={MRN}|12345") == {"p1"}

    def test_bare_value_matches_any_system(self, client: SyncClient) -> None:
        """identifier=12345 finds 12345 in every system and with none (https://hl7.org/fhir/R4/search.html#token)."""
        self.put_identified(client)

        assert ids(client, "Patient", "identifier=12345") == {"p1", "p2", "p3"}

    def test_empty_system_matches_identifiers_without_a_system(self, client: SyncClient) -> None:
        """identifier=|12345 finds only the identifier with no system (https://hl7.org/fhir/R4/search.html#token)."""
        self.put_identified(client)

        assert ids(client, "Patient", "identifier=|12345") == {"p3"}

    def test_system_alone_matches_every_value_in_it(self, client: SyncClient) -> None:
        """identifier=<mrn>| finds every MRN (https://hl7.org/fhir/R4/search.html#token)."""
        self.put_identified(client)

        assert ids(client, "Patient", f"identifier={MRN}|") == {"p1", "p4"}

    def test_value_that_looks_like_a_prefix_is_literal(self, client: SyncClient) -> None:
        """identifier=gt100 finds the identifier "gt100": tokens take no prefixes (https://hl7.org/fhir/R4/search.html#prefix)."""
        put(
            client,
            patient("p1", identifier=[{"value": "gt100"}]),
            patient("p2", identifier=[{"value": "101"}]),
        )

        assert ids(client, "Patient", "identifier=gt100") == {"p1"}


class TestContactPoints:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.param.token")

    @pytest.mark.parametrize(
        "query",
        [
            pytest.param("telecom=555-0100", id="telecom-phone"),
            pytest.param("telecom=ann@example.org", id="telecom-email"),
            pytest.param("phone=555-0100", id="phone"),
            pytest.param("email=ann@example.org", id="email"),
        ],
    )
    def test_contact_point_value_matches(self, client: SyncClient, query: str) -> None:
        """telecom, phone and email match a ContactPoint's value (https://hl7.org/fhir/R4/search.html#token)."""
        put(
            client,
            patient("p1", telecom=TELECOM),
            patient("p2", telecom=[{"system": "phone", "value": "555-0199"}]),
        )

        assert ids(client, "Patient", query) == {"p1"}

    def test_email_does_not_match_a_phone_value(self, client: SyncClient) -> None:
        """email=555-0100 does not find a phone number: email only indexes system=email (https://hl7.org/fhir/R4/search.html#token)."""
        put(client, patient("p1", telecom=TELECOM))

        assert ids(client, "Patient", "email=555-0100") == set()
