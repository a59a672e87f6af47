"""_include and _include:iterate: adding the resources the matches refer to (FHIR R4 search.html#include)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from helios_conformance import InvalidSearch, SearchResult, SyncClient

ClientFactory = Callable[..., SyncClient]


def put(client: SyncClient, *resources: dict[str, Any]) -> None:
    for resource in resources:
        client.create_or_update(resource["resourceType"], resource["id"], resource)


def patient(resource_id: str, organization: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Patient", "id": resource_id}
    if organization is not None:
        resource["managingOrganization"] = {"reference": f"Organization/{organization}"}
    return resource


def organization(resource_id: str, part_of: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Organization", "id": resource_id}
    if part_of is not None:
        resource["partOf"] = {"reference": f"Organization/{part_of}"}
    return resource


def observation(
    resource_id: str, subject: str, performer: str | None = None, code: str = "weight"
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": resource_id,
        "status": "final",
        "code": {"coding": [{"system": "http://example.org/codes", "code": code}]},
        "subject": {"reference": subject},
    }
    if performer is not None:
        resource["performer"] = [{"reference": performer}]
    return resource


def practitioner(resource_id: str) -> dict[str, Any]:
    return {"resourceType": "Practitioner", "id": resource_id}


def included(result: SearchResult) -> set[str]:
    return set(result.included_references)


class TestInclude:
    pytestmark = pytest.mark.requires(
        "crud.update_as_create", "search.include", "search.param.reference"
    )

    def test_include_adds_the_referenced_resource(self, client: SyncClient) -> None:
        """Observation?_include=Observation:subject adds Patient/p1 as an include (https://hl7.org/fhir/R4/search.html#include)."""
        put(client, patient("p1"), patient("p2"), observation("o1", "Patient/p1"))

        result = client.search("Observation", "_include=Observation:subject")

        assert (result.ids, included(result)) == (("o1",), {"Patient/p1"})

    def test_included_resources_are_not_matches(self, client: SyncClient) -> None:
        """The included Patient is in included, not in entries, and carries its body (https://hl7.org/fhir/R4/search.html#include)."""
        put(client, patient("p1"), observation("o1", "Patient/p1"))

        result = client.search("Observation", "_include=Observation:subject")

        assert [entry.reference for entry in result.entries] == ["Observation/o1"]
        assert [(e.reference, (e.resource or {}).get("id")) for e in result.included] == [
            ("Patient/p1", "p1")
        ]

    def test_include_with_a_target_type(self, client: SyncClient) -> None:
        """_include=Observation:subject:Patient adds the Patient subject but not the Group one (https://hl7.org/fhir/R4/search.html#include)."""
        put(
            client,
            patient("p1"),
            {"resourceType": "Group", "id": "g1", "type": "person", "actual": True},
            observation("o1", "Patient/p1"),
            observation("o2", "Group/g1"),
        )

        result = client.search("Observation", "_include=Observation:subject:Patient")

        assert (set(result.ids), included(result)) == ({"o1", "o2"}, {"Patient/p1"})

    def test_include_wildcard_follows_every_reference(self, client: SyncClient) -> None:
        """_include=Observation:* adds both the subject and the performer (https://hl7.org/fhir/R4/search.html#include)."""
        put(
            client,
            patient("p1"),
            practitioner("dr1"),
            observation("o1", "Patient/p1", performer="Practitioner/dr1"),
        )

        result = client.search("Observation", "_include=Observation:*")

        assert included(result) == {"Patient/p1", "Practitioner/dr1"}

    def test_two_includes_add_both_targets(self, client: SyncClient) -> None:
        """_include=Observation:subject&_include=Observation:performer adds both (https://hl7.org/fhir/R4/search.html#include)."""
        put(
            client,
            patient("p1"),
            practitioner("dr1"),
            observation("o1", "Patient/p1", performer="Practitioner/dr1"),
        )

        result = client.search(
            "Observation", "_include=Observation:subject&_include=Observation:performer"
        )

        assert included(result) == {"Patient/p1", "Practitioner/dr1"}

    @pytest.mark.requires("search.count")
    def test_includes_are_not_counted_in_the_page_size(self, client: SyncClient) -> None:
        """_count=1&_include=Observation:subject returns one match and its Patient as well (https://hl7.org/fhir/R4/search.html#count)."""
        put(client, patient("p1"), observation("o1", "Patient/p1"))

        result = client.search("Observation", "_count=1&_include=Observation:subject")

        assert (result.ids, included(result)) == (("o1",), {"Patient/p1"})

    def test_a_resource_is_included_once(self, client: SyncClient) -> None:
        """Two Observations about Patient/p1 include it once (https://hl7.org/fhir/R4/search.html#include)."""
        put(
            client,
            patient("p1"),
            observation("o1", "Patient/p1"),
            observation("o2", "Patient/p1"),
        )

        result = client.search("Observation", "_include=Observation:subject")

        assert result.included_references == ("Patient/p1",)

    def test_a_match_is_never_also_included(self, client: SyncClient) -> None:
        """Patient?_include=Patient:link with p1 linked to p2, both matches, includes nothing (https://hl7.org/fhir/R4/search.html#include)."""
        linked = patient("p1")
        linked["link"] = [{"other": {"reference": "Patient/p2"}, "type": "seealso"}]
        put(client, linked, patient("p2"))

        result = client.search("Patient", "_include=Patient:link")

        assert (set(result.ids), result.included) == ({"p1", "p2"}, ())

    def test_a_dangling_reference_includes_nothing(self, client: SyncClient) -> None:
        """An Observation about Patient/ghost (never stored) includes nothing (https://hl7.org/fhir/R4/search.html#include)."""
        put(client, observation("o1", "Patient/ghost"))

        result = client.search("Observation", "_include=Observation:subject")

        assert (result.ids, result.included) == (("o1",), ())

    @pytest.mark.requires("crud.delete")
    def test_a_deleted_target_is_not_included(self, client: SyncClient) -> None:
        """After Patient/p1 is deleted, _include=Observation:subject does not include it (https://hl7.org/fhir/R4/search.html#include)."""
        put(client, patient("p1"), observation("o1", "Patient/p1"))
        client.delete("Patient", "p1")

        assert client.search("Observation", "_include=Observation:subject").included == ()

    def test_include_without_iterate_is_one_level(self, client: SyncClient) -> None:
        """_include=Patient:organization on Observations adds nothing: it applies to matches only (https://hl7.org/fhir/R4/search.html#include)."""
        put(client, organization("org1"), patient("p1", "org1"), observation("o1", "Patient/p1"))

        result = client.search(
            "Observation", "_include=Observation:subject&_include=Patient:organization"
        )

        assert included(result) == {"Patient/p1"}

    def test_include_stays_in_its_tenant(
        self, client: SyncClient, new_client: ClientFactory
    ) -> None:
        """Tenant A's o1 points at Patient/p1, which exists only in tenant B: nothing is included (https://hl7.org/fhir/R4/search.html#include)."""
        put(client, observation("o1", "Patient/p1"))
        put(new_client(), patient("p1"))

        assert client.search("Observation", "_include=Observation:subject").included == ()

    @pytest.mark.requires("search.count", "search.sort.single")
    def test_include_applies_to_the_page_only(self, client: SyncClient) -> None:
        """_count=1&_sort=_id includes o1's Patient, not that of o2 on the next page (https://hl7.org/fhir/R4/search.html#include)."""
        put(
            client,
            patient("p1"),
            patient("p2"),
            observation("o1", "Patient/p1"),
            observation("o2", "Patient/p2"),
        )

        result = client.search("Observation", "_count=1&_sort=_id&_include=Observation:subject")

        assert (result.ids, included(result)) == (("o1",), {"Patient/p1"})

    def test_include_of_an_unknown_parameter_is_refused(self, client: SyncClient) -> None:
        """_include=Observation:colour is refused: no such reference parameter (https://hl7.org/fhir/R4/search.html#include)."""
        with pytest.raises(InvalidSearch):
            client.search("Observation", "_include=Observation:colour")

    def test_include_of_a_non_reference_parameter_is_refused(self, client: SyncClient) -> None:
        """_include=Observation:code is refused: code is a token (https://hl7.org/fhir/R4/search.html#include)."""
        with pytest.raises(InvalidSearch):
            client.search("Observation", "_include=Observation:code")


class TestIncludeIterate:
    pytestmark = pytest.mark.requires(
        "crud.update_as_create",
        "search.include",
        "search.include.iterate",
        "search.param.reference",
    )

    def test_iterate_follows_references_of_included_resources(self, client: SyncClient) -> None:
        """_include:iterate=Patient:organization adds the organization of the included Patient (https://hl7.org/fhir/R4/search.html#include)."""
        put(client, organization("org1"), patient("p1", "org1"), observation("o1", "Patient/p1"))

        result = client.search(
            "Observation", "_include=Observation:subject&_include:iterate=Patient:organization"
        )

        assert included(result) == {"Patient/p1", "Organization/org1"}

    def test_iterate_is_transitive(self, client: SyncClient) -> None:
        """_include:iterate=Organization:partof walks org1 -> org2 -> org3 -> org4 (https://hl7.org/fhir/R4/search.html#include)."""
        put(
            client,
            organization("org4"),
            organization("org3", "org4"),
            organization("org2", "org3"),
            organization("org1", "org2"),
            organization("other"),
        )

        result = client.search("Organization", "_id=org1&_include:iterate=Organization:partof")

        assert (result.ids, included(result)) == (
            ("org1",),
            {"Organization/org2", "Organization/org3", "Organization/org4"},
        )

    def test_iterate_ends_on_a_cycle(self, client: SyncClient) -> None:
        """With org-a part of org-b part of org-a, iterating includes org-b once and stops (https://hl7.org/fhir/R4/search.html#include)."""
        put(client, organization("org-a", "org-b"), organization("org-b", "org-a"))

        result = client.search("Organization", "_id=org-a&_include:iterate=Organization:partof")

        assert (result.ids, result.included_references) == (("org-a",), ("Organization/org-b",))

    def test_iterate_ends_on_a_self_reference(self, client: SyncClient) -> None:
        """An Organization that is part of itself includes nothing (https://hl7.org/fhir/R4/search.html#include)."""
        put(client, organization("org-a", "org-a"))

        result = client.search("Organization", "_include:iterate=Organization:partof")

        assert (result.ids, result.included) == (("org-a",), ())

    def test_iterate_deduplicates_shared_targets(self, client: SyncClient) -> None:
        """Two Patients of one Organization include it once through iterate (https://hl7.org/fhir/R4/search.html#include)."""
        put(
            client,
            organization("org1"),
            patient("p1", "org1"),
            patient("p2", "org1"),
            observation("o1", "Patient/p1"),
            observation("o2", "Patient/p2"),
        )

        result = client.search(
            "Observation", "_include=Observation:subject&_include:iterate=Patient:organization"
        )

        assert sorted(result.included_references) == [
            "Organization/org1",
            "Patient/p1",
            "Patient/p2",
        ]
