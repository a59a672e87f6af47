"""Reference search: Type/id, bare id, absolute URLs, versioned references, :[type], :identifier, canonicals (FHIR R4 search.html#reference)."""

from __future__ import annotations

from typing import Any

import pytest

from helios_conformance import SyncClient

MRN = "http://hospital.example.org/mrn"


def about(resource_id: str, subject: dict[str, Any] | None) -> dict[str, Any]:
    """An Observation whose subject is the given Reference."""
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": resource_id,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
    }
    if subject is not None:
        resource["subject"] = subject
    return resource


def ref(reference: str) -> dict[str, str]:
    return {"reference": reference}


def put(client: SyncClient, *resources: dict[str, Any]) -> None:
    for resource in resources:
        client.create_or_update(resource["resourceType"], resource["id"], resource)


def ids(client: SyncClient, resource_type: str, query: str | list[tuple[str, str]]) -> set[str]:
    return set(client.search(resource_type, query).ids)


class TestRelativeReferences:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.param.reference")

    def test_type_and_id_match(self, client: SyncClient) -> None:
        """subject=Patient/p1 finds the Observation about Patient/p1, not Patient/p2 (https://hl7.org/fhir/R4/search.html#reference)."""
        put(client, about("o1", ref("Patient/p1")), about("o2", ref("Patient/p2")))

        assert ids(client, "Observation", "subject=Patient/p1") == {"o1"}

    def test_type_must_match(self, client: SyncClient) -> None:
        """subject=Patient/x1 does not find an Observation about Group/x1 (https://hl7.org/fhir/R4/search.html#reference)."""
        put(client, about("o-patient", ref("Patient/x1")), about("o-group", ref("Group/x1")))

        assert ids(client, "Observation", "subject=Patient/x1") == {"o-patient"}

    def test_bare_id_matches_the_reference_id(self, client: SyncClient) -> None:
        """subject=p1 finds the Observation about Patient/p1, not Patient/p2 (https://hl7.org/fhir/R4/search.html#reference)."""
        put(client, about("o1", ref("Patient/p1")), about("o2", ref("Patient/p2")))

        assert ids(client, "Observation", "subject=p1") == {"o1"}

    def test_id_is_not_matched_by_prefix(self, client: SyncClient) -> None:
        """subject=Patient/p1 does not find Patient/p10 (https://hl7.org/fhir/R4/search.html#reference)."""
        put(client, about("o1", ref("Patient/p1")), about("o10", ref("Patient/p10")))

        assert ids(client, "Observation", "subject=Patient/p1") == {"o1"}

    def test_comma_separated_references_are_alternatives(self, client: SyncClient) -> None:
        """subject=Patient/p1,Patient/p2 finds Observations about either (https://hl7.org/fhir/R4/search.html#reference)."""
        put(
            client,
            about("o1", ref("Patient/p1")),
            about("o2", ref("Patient/p2")),
            about("o3", ref("Patient/p3")),
        )

        assert ids(client, "Observation", "subject=Patient/p1,Patient/p2") == {"o1", "o2"}

    def test_versioned_reference_matches_its_resource(self, client: SyncClient) -> None:
        """subject=Patient/p1 finds an Observation whose subject is Patient/p1/_history/2 (https://hl7.org/fhir/R4/search.html#reference)."""
        put(
            client,
            about("o-versioned", ref("Patient/p1/_history/2")),
            about("o-other", ref("Patient/p2/_history/1")),
        )

        assert ids(client, "Observation", "subject=Patient/p1") == {"o-versioned"}

    def test_patient_parameter_matches_only_patient_subjects(self, client: SyncClient) -> None:
        """patient=x1 finds the Observation about Patient/x1, not one about Group/x1 (https://hl7.org/fhir/R4/search.html#reference)."""
        put(client, about("o-patient", ref("Patient/x1")), about("o-group", ref("Group/x1")))

        assert ids(client, "Observation", "patient=x1") == {"o-patient"}

    def test_reference_in_a_repeating_element_matches(self, client: SyncClient) -> None:
        """general-practitioner=Practitioner/dr2 finds a Patient whose second practitioner is dr2 (https://hl7.org/fhir/R4/search.html#reference)."""
        put(
            client,
            {
                "resourceType": "Patient",
                "id": "p1",
                "generalPractitioner": [ref("Practitioner/dr1"), ref("Practitioner/dr2")],
            },
            {
                "resourceType": "Patient",
                "id": "p2",
                "generalPractitioner": [ref("Practitioner/dr1")],
            },
        )

        assert ids(client, "Patient", "general-practitioner=Practitioner/dr2") == {"p1"}

    def test_organization_reference_matches(self, client: SyncClient) -> None:
        """organization=Organization/org1 finds the Patient managed by org1 (https://hl7.org/fhir/R4/search.html#reference)."""
        put(
            client,
            {
                "resourceType": "Patient",
                "id": "p1",
                "managingOrganization": ref("Organization/org1"),
            },
            {
                "resourceType": "Patient",
                "id": "p2",
                "managingOrganization": ref("Organization/org2"),
            },
        )

        assert ids(client, "Patient", "organization=Organization/org1") == {"p1"}


class TestAbsoluteReferences:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.param.reference")

    def test_absolute_url_matches_the_same_url(self, client: SyncClient) -> None:
        """subject=http://other.example.org/fhir/Patient/p9 finds the Observation with that absolute reference (https://hl7.org/fhir/R4/search.html#reference)."""
        put(
            client,
            about("o-remote", ref("http://other.example.org/fhir/Patient/p9")),
            about("o-remote-other", ref("http://other.example.org/fhir/Patient/p8")),
        )

        assert ids(client, "Observation", "subject=http://other.example.org/fhir/Patient/p9") == {
            "o-remote"
        }

    def test_absolute_url_on_another_server_is_not_a_local_reference(
        self, client: SyncClient
    ) -> None:
        """subject=Patient/p9 does not find a reference to Patient/p9 on another server (https://hl7.org/fhir/R4/search.html#reference)."""
        put(
            client,
            about("o-local", ref("Patient/p9")),
            about("o-remote", ref("http://other.example.org/fhir/Patient/p9")),
        )

        assert ids(client, "Observation", "subject=Patient/p9") == {"o-local"}

    def test_absolute_url_with_another_base_does_not_match(self, client: SyncClient) -> None:
        """subject=http://a.example.org/fhir/Patient/p9 does not find http://b.example.org/fhir/Patient/p9 (https://hl7.org/fhir/R4/search.html#reference)."""
        put(
            client,
            about("o-a", ref("http://a.example.org/fhir/Patient/p9")),
            about("o-b", ref("http://b.example.org/fhir/Patient/p9")),
        )

        assert ids(client, "Observation", "subject=http://a.example.org/fhir/Patient/p9") == {"o-a"}


class TestCanonicalReferences:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.param.reference")

    QUESTIONNAIRE = "http://example.org/fhir/Questionnaire/intake"

    def answered(self, resource_id: str, questionnaire: str) -> dict[str, Any]:
        return {
            "resourceType": "QuestionnaireResponse",
            "id": resource_id,
            "status": "completed",
            "questionnaire": questionnaire,
        }

    def test_canonical_without_version_matches_every_version(self, client: SyncClient) -> None:
        """questionnaire=<url> finds responses to <url>|1.0, <url>|2.0 and <url>, not another questionnaire (https://hl7.org/fhir/R4/search.html#reference)."""
        put(
            client,
            self.answered("v1", f"{self.QUESTIONNAIRE}|1.0"),
            self.answered("v2", f"{self.QUESTIONNAIRE}|2.0"),
            self.answered("unversioned", self.QUESTIONNAIRE),
            self.answered("other", "http://example.org/fhir/Questionnaire/discharge"),
        )

        assert ids(client, "QuestionnaireResponse", [("questionnaire", self.QUESTIONNAIRE)]) == {
            "v1",
            "v2",
            "unversioned",
        }

    def test_canonical_with_version_matches_that_version(self, client: SyncClient) -> None:
        """questionnaire=<url>|2.0 finds the response to version 2.0 only (https://hl7.org/fhir/R4/search.html#reference)."""
        put(
            client,
            self.answered("v1", f"{self.QUESTIONNAIRE}|1.0"),
            self.answered("v2", f"{self.QUESTIONNAIRE}|2.0"),
        )

        assert ids(
            client, "QuestionnaireResponse", [("questionnaire", f"{self.QUESTIONNAIRE}|2.0")]
        ) == {"v2"}


class TestTypeModifier:
    pytestmark = pytest.mark.requires(
        "crud.update_as_create", "search.param.reference", "search.modifier.type"
    )

    def test_type_modifier_restricts_the_target_type(self, client: SyncClient) -> None:
        """subject:Patient=x1 finds the Observation about Patient/x1, not Group/x1 (https://hl7.org/fhir/R4/search.html#reference)."""
        put(client, about("o-patient", ref("Patient/x1")), about("o-group", ref("Group/x1")))

        assert ids(client, "Observation", "subject:Patient=x1") == {"o-patient"}

    def test_type_modifier_with_another_type(self, client: SyncClient) -> None:
        """subject:Group=x1 finds the Observation about Group/x1 only (https://hl7.org/fhir/R4/search.html#reference)."""
        put(client, about("o-patient", ref("Patient/x1")), about("o-group", ref("Group/x1")))

        assert ids(client, "Observation", "subject:Group=x1") == {"o-group"}


class TestIdentifierModifier:
    pytestmark = pytest.mark.requires(
        "crud.update_as_create", "search.param.reference", "search.modifier.identifier"
    )

    def test_identifier_matches_a_logical_reference(self, client: SyncClient) -> None:
        """subject:identifier=<mrn>|MRN-1 finds the Observation whose subject is identified as MRN-1 (https://hl7.org/fhir/R4/search.html#reference)."""
        put(
            client,
            about("o1", {"identifier": {"system": MRN, "value": "MRN-1"}}),
            about("o2", {"identifier": {"system": MRN, "value": "MRN-2"}}),
        )

        assert ids(client, "Observation", f"subject:identifier={MRN}|MRN-1") == {"o1"}

    def test_identifier_value_alone_matches(self, client: SyncClient) -> None:
        """subject:identifier=MRN-1 finds the logical reference MRN-1 in any system (https://hl7.org/fhir/R4/search.html#reference)."""
        put(
            client,
            about("o1", {"identifier": {"system": MRN, "value": "MRN-1"}}),
            about("o2", {"identifier": {"system": MRN, "value": "MRN-2"}}),
        )

        assert ids(client, "Observation", "subject:identifier=MRN-1") == {"o1"}

    def test_identifier_does_not_resolve_literal_references(self, client: SyncClient) -> None:
        """subject:identifier=<mrn>|MRN-1 ignores a literal Patient/p1 reference even though p1 has that identifier (https://hl7.org/fhir/R4/search.html#reference)."""
        put(
            client,
            {
                "resourceType": "Patient",
                "id": "p1",
                "identifier": [{"system": MRN, "value": "MRN-1"}],
            },
            about("o-literal", ref("Patient/p1")),
            about("o-logical", {"identifier": {"system": MRN, "value": "MRN-1"}}),
        )

        assert ids(client, "Observation", f"subject:identifier={MRN}|MRN-1") == {"o-logical"}
