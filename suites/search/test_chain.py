"""Chained parameters: following references to search on the referenced resource (FHIR R4 search.html#chaining)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from helios_conformance import InvalidSearch, SyncClient

CHAINING = "https://hl7.org/fhir/R4/search.html#chaining"
ClientFactory = Callable[..., SyncClient]


def put(client: SyncClient, *resources: dict[str, Any]) -> None:
    for resource in resources:
        client.create_or_update(resource["resourceType"], resource["id"], resource)


def patient(resource_id: str, family: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": resource_id, "name": [{"family": family}], **fields}


def organization(resource_id: str, name: str, part_of: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Organization", "id": resource_id, "name": name}
    if part_of is not None:
        resource["partOf"] = {"reference": f"Organization/{part_of}"}
    return resource


def observation(resource_id: str, subject: str, code: str = "weight") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": resource_id,
        "status": "final",
        "code": {"coding": [{"system": "http://example.org/codes", "code": code}]},
        "subject": {"reference": subject},
    }


def found(client: SyncClient, resource_type: str, query: str) -> set[str]:
    return set(client.search(resource_type, query).ids)


def lee_and_kim(client: SyncClient) -> None:
    """o-lee is about Patient p-lee (Lee, female, born 1990); o-kim about p-kim (Kim, male, 1970)."""
    put(
        client,
        patient("p-lee", "Lee", gender="female", birthDate="1990-05-01"),
        patient("p-kim", "Kim", gender="male", birthDate="1970-02-01"),
        observation("o-lee", "Patient/p-lee"),
        observation("o-kim", "Patient/p-kim"),
    )


class TestForwardChain:
    pytestmark = pytest.mark.requires(
        "crud.update_as_create", "search.chain", "search.param.reference"
    )

    @pytest.mark.requires("search.param.string")
    def test_chain_with_type_modifier(self, client: SyncClient) -> None:
        """subject:Patient.name=Lee finds the Observation about the Patient named Lee (https://hl7.org/fhir/R4/search.html#chaining)."""
        lee_and_kim(client)

        assert found(client, "Observation", "subject:Patient.name=Lee") == {"o-lee"}

    @pytest.mark.requires("search.param.string")
    def test_chain_through_a_single_target_reference_needs_no_type(
        self, client: SyncClient
    ) -> None:
        """patient.family=Lee follows Observation.patient, whose only target is Patient (https://hl7.org/fhir/R4/search.html#chaining)."""
        lee_and_kim(client)

        assert found(client, "Observation", "patient.family=Lee") == {"o-lee"}

    @pytest.mark.requires("search.param.string")
    def test_two_links(self, client: SyncClient) -> None:
        """subject:Patient.organization.name=Acme follows two references (https://hl7.org/fhir/R4/search.html#chaining)."""
        put(
            client,
            organization("acme", "Acme"),
            organization("globex", "Globex"),
            patient("p-acme", "Lee", managingOrganization={"reference": "Organization/acme"}),
            patient("p-globex", "Lee", managingOrganization={"reference": "Organization/globex"}),
            observation("o-acme", "Patient/p-acme"),
            observation("o-globex", "Patient/p-globex"),
        )

        assert found(client, "Observation", "subject:Patient.organization.name=Acme") == {"o-acme"}

    @pytest.mark.requires("search.param.string")
    def test_three_links(self, client: SyncClient) -> None:
        """subject:Patient.organization.partof.name=Parent follows three references (https://hl7.org/fhir/R4/search.html#chaining)."""
        put(
            client,
            organization("parent", "Parent"),
            organization("other", "Other"),
            organization("ward", "Ward", part_of="parent"),
            organization("clinic", "Clinic", part_of="other"),
            patient("p-ward", "Lee", managingOrganization={"reference": "Organization/ward"}),
            patient("p-clinic", "Lee", managingOrganization={"reference": "Organization/clinic"}),
            observation("o-ward", "Patient/p-ward"),
            observation("o-clinic", "Patient/p-clinic"),
        )

        assert found(client, "Observation", "subject:Patient.organization.partof.name=Parent") == {
            "o-ward"
        }

    @pytest.mark.requires("search.param.string")
    def test_four_links_are_within_the_default_limit(self, client: SyncClient) -> None:
        """A chain of four links (the default limit) is followed to its end (https://hl7.org/fhir/R4/search.html#chaining)."""
        put(
            client,
            organization("root", "Root"),
            organization("region", "Region", part_of="root"),
            organization("ward", "Ward", part_of="region"),
            organization("elsewhere", "Elsewhere"),
            organization("stray", "Stray", part_of="elsewhere"),
            organization("ward2", "Ward 2", part_of="stray"),
            patient("p-in", "Lee", managingOrganization={"reference": "Organization/ward"}),
            patient("p-out", "Lee", managingOrganization={"reference": "Organization/ward2"}),
            observation("o-in", "Patient/p-in"),
            observation("o-out", "Patient/p-out"),
        )

        query = "subject:Patient.organization.partof.partof.name=Root"
        assert found(client, "Observation", query) == {"o-in"}

    def test_a_chain_beyond_the_limit_is_refused(self, client: SyncClient) -> None:
        """A chain of nine links (beyond the largest allowed limit, 8) is refused with a reason (https://hl7.org/fhir/R4/search.html#chaining)."""
        query = "subject:Patient.organization" + ".partof" * 7 + ".name=Root"

        with pytest.raises(InvalidSearch) as caught:
            client.search("Observation", query)

        assert "at most" in str(caught.value)

    @pytest.mark.requires("search.param.string")
    def test_an_ambiguous_chain_is_refused(self, client: SyncClient) -> None:
        """subject.name=Lee is refused: subject may be a Patient or a Location, both with a name (https://hl7.org/fhir/R4/search.html#chaining)."""
        lee_and_kim(client)

        with pytest.raises(InvalidSearch) as caught:
            client.search("Observation", "subject.name=Lee")

        assert "ambiguous" in str(caught.value)

    def test_a_type_modifier_that_is_not_a_target_is_refused(self, client: SyncClient) -> None:
        """subject:Medication.code=x is refused: Observation.subject cannot be a Medication (https://hl7.org/fhir/R4/search.html#chaining)."""
        with pytest.raises(InvalidSearch):
            client.search("Observation", "subject:Medication.code=x")

    def test_chaining_through_a_non_reference_is_refused(self, client: SyncClient) -> None:
        """code.name=x is refused: code is a token, not a reference (https://hl7.org/fhir/R4/search.html#chaining)."""
        with pytest.raises(InvalidSearch):
            client.search("Observation", "code.name=x")

    def test_an_unknown_parameter_at_the_end_is_refused(self, client: SyncClient) -> None:
        """subject:Patient.colour=red is refused: Patient has no parameter colour (https://hl7.org/fhir/R4/search.html#chaining)."""
        with pytest.raises(InvalidSearch):
            client.search("Observation", "subject:Patient.colour=red")

    @pytest.mark.requires("search.param.date", "search.prefix.ge")
    def test_the_terminal_value_keeps_its_date_prefix(self, client: SyncClient) -> None:
        """subject:Patient.birthdate=ge1980-01-01 compares the Patient's birth date (https://hl7.org/fhir/R4/search.html#chaining)."""
        lee_and_kim(client)

        assert found(client, "Observation", "subject:Patient.birthdate=ge1980-01-01") == {"o-lee"}

    @pytest.mark.requires("search.param.token")
    def test_the_terminal_value_is_a_token(self, client: SyncClient) -> None:
        """subject:Patient.gender=male matches the Observation about the male Patient (https://hl7.org/fhir/R4/search.html#chaining)."""
        lee_and_kim(client)

        assert found(client, "Observation", "subject:Patient.gender=male") == {"o-kim"}

    @pytest.mark.requires("search.param.string", "search.modifier.exact")
    def test_the_terminal_parameter_takes_its_modifier(self, client: SyncClient) -> None:
        """subject:Patient.name:exact=lee does not match the Patient named Lee (https://hl7.org/fhir/R4/search.html#chaining)."""
        lee_and_kim(client)

        assert (
            found(client, "Observation", "subject:Patient.name:exact=lee"),
            found(client, "Observation", "subject:Patient.name:exact=Lee"),
        ) == (set(), {"o-lee"})

    @pytest.mark.requires("search.param.string")
    def test_or_values_at_the_end_of_a_chain(self, client: SyncClient) -> None:
        """subject:Patient.name=Lee,Kim matches Observations about either Patient (https://hl7.org/fhir/R4/search.html#chaining)."""
        lee_and_kim(client)
        put(client, patient("p-ng", "Ng"), observation("o-ng", "Patient/p-ng"))

        assert found(client, "Observation", "subject:Patient.name=Lee,Kim") == {"o-lee", "o-kim"}

    @pytest.mark.requires("search.param.string", "search.param.token")
    def test_a_chain_combines_with_an_ordinary_parameter(self, client: SyncClient) -> None:
        """subject:Patient.name=Lee&code=height needs both: the Lee weight is not found (https://hl7.org/fhir/R4/search.html#chaining)."""
        lee_and_kim(client)
        put(client, observation("o-lee-height", "Patient/p-lee", code="height"))

        assert found(
            client, "Observation", "subject:Patient.name=Lee&code=http://example.org/codes|height"
        ) == {"o-lee-height"}

    @pytest.mark.requires("search.param.string", "search.param.token")
    def test_two_chains_are_anded(self, client: SyncClient) -> None:
        """subject:Patient.name=Lee&subject:Patient.gender=male finds nothing: Lee is female (https://hl7.org/fhir/R4/search.html#chaining)."""
        lee_and_kim(client)

        assert (
            found(client, "Observation", "subject:Patient.name=Lee&subject:Patient.gender=male"),
            found(client, "Observation", "subject:Patient.name=Lee&subject:Patient.gender=female"),
        ) == (set(), {"o-lee"})

    @pytest.mark.requires("search.param.string", "crud.delete")
    def test_a_chain_does_not_follow_a_deleted_target(self, client: SyncClient) -> None:
        """After Patient/p-lee is deleted, subject:Patient.name=Lee finds nothing (https://hl7.org/fhir/R4/search.html#chaining)."""
        lee_and_kim(client)
        client.delete("Patient", "p-lee")

        assert found(client, "Observation", "subject:Patient.name=Lee") == set()

    @pytest.mark.requires("search.param.string")
    def test_a_chain_does_not_follow_a_dangling_reference(self, client: SyncClient) -> None:
        """An Observation about Patient/ghost (never stored) is not found by a chain (https://hl7.org/fhir/R4/search.html#chaining)."""
        lee_and_kim(client)
        put(client, observation("o-ghost", "Patient/ghost"))

        assert found(client, "Observation", "subject:Patient.name:missing=true") == set()

    @pytest.mark.requires("search.param.string")
    def test_a_chain_stays_in_its_tenant(
        self, client: SyncClient, new_client: ClientFactory
    ) -> None:
        """Tenant A's o1 points at Patient/p1; tenant B's p1 named Lee does not make o1 match (https://hl7.org/fhir/R4/search.html#chaining)."""
        other = new_client()
        put(client, patient("p1", "Kim"), observation("o1", "Patient/p1"))
        put(other, patient("p1", "Lee"))

        assert found(client, "Observation", "subject:Patient.name=Lee") == set()

    @pytest.mark.requires("search.param.string")
    def test_a_chain_sees_the_current_version_of_the_target(self, client: SyncClient) -> None:
        """After p-kim is renamed Lee, subject:Patient.name=Lee finds both Observations (https://hl7.org/fhir/R4/search.html#chaining)."""
        lee_and_kim(client)
        put(client, patient("p-kim", "Lee"))

        assert found(client, "Observation", "subject:Patient.name=Lee") == {"o-lee", "o-kim"}


class TestValueLists:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.param.reference")

    def test_a_reference_search_with_250_values(self, client: SyncClient) -> None:
        """subject=Patient/p0,...,Patient/p249 (250 OR values) matches the Observations about any of them (https://hl7.org/fhir/R4/search.html#reference)."""
        put(
            client,
            observation("o-first", "Patient/p0"),
            observation("o-last", "Patient/p249"),
            observation("o-outside", "Patient/p250"),
        )
        values = ",".join(f"Patient/p{n}" for n in range(250))

        assert found(client, "Observation", f"subject={values}") == {"o-first", "o-last"}

    @pytest.mark.requires("search.param.common")
    def test_an_id_search_with_300_values(self, client: SyncClient) -> None:
        """_id with 300 OR values finds the two stored Patients among them (https://hl7.org/fhir/R4/search.html#id)."""
        put(client, patient("p7", "Lee"), patient("p299", "Kim"), patient("p300", "Ng"))
        values = ",".join(f"p{n}" for n in range(300))

        assert found(client, "Patient", f"_id={values}") == {"p7", "p299"}

    @pytest.mark.requires("search.chain", "search.param.common")
    def test_a_chain_whose_target_set_is_large(self, client: SyncClient) -> None:
        """subject:Patient._id with 250 ids follows the chain through all of them (https://hl7.org/fhir/R4/search.html#chaining)."""
        put(
            client,
            patient("p3", "Lee"),
            patient("p249", "Kim"),
            patient("p900", "Ng"),
            observation("o3", "Patient/p3"),
            observation("o249", "Patient/p249"),
            observation("o900", "Patient/p900"),
        )
        values = ",".join(f"p{n}" for n in range(250))

        assert found(client, "Observation", f"subject:Patient._id={values}") == {"o3", "o249"}
