"""_revinclude: adding the resources that refer to the matches (FHIR R4 search.html#revinclude)."""

from __future__ import annotations

from typing import Any

import pytest

from helios_conformance import SearchResult, SyncClient


def put(client: SyncClient, *resources: dict[str, Any]) -> None:
    for resource in resources:
        client.create_or_update(resource["resourceType"], resource["id"], resource)


def patient(resource_id: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": resource_id, **fields}


def observation(resource_id: str, subject: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": resource_id,
        "status": "final",
        "code": {"text": "weight"},
        "subject": {"reference": subject},
    }


def provenance(resource_id: str, target: str) -> dict[str, Any]:
    return {
        "resourceType": "Provenance",
        "id": resource_id,
        "target": [{"reference": target}],
        "recorded": "2021-01-01T00:00:00Z",
        "agent": [{"who": {"reference": "Practitioner/dr1"}}],
    }


def encounter(resource_id: str, subject: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": resource_id,
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": {"reference": subject},
    }


def included(result: SearchResult) -> set[str]:
    return set(result.included_references)


class TestRevinclude:
    pytestmark = pytest.mark.requires(
        "crud.update_as_create", "search.revinclude", "search.param.reference"
    )

    def test_revinclude_adds_the_referring_resources(self, client: SyncClient) -> None:
        """Patient?_id=p1&_revinclude=Observation:subject adds the Observations about p1 only (https://hl7.org/fhir/R4/search.html#revinclude)."""
        put(
            client,
            patient("p1"),
            patient("p2"),
            observation("o1", "Patient/p1"),
            observation("o2", "Patient/p1"),
            observation("o3", "Patient/p2"),
        )

        result = client.search("Patient", "_id=p1&_revinclude=Observation:subject")

        assert (result.ids, included(result)) == (
            ("p1",),
            {"Observation/o1", "Observation/o2"},
        )

    @pytest.mark.requires("search.count")
    def test_revincludes_are_not_counted_in_the_page_size(self, client: SyncClient) -> None:
        """_count=1 with three referring Observations returns one match and all three includes (https://hl7.org/fhir/R4/search.html#count)."""
        put(
            client,
            patient("p1"),
            observation("o1", "Patient/p1"),
            observation("o2", "Patient/p1"),
            observation("o3", "Patient/p1"),
        )

        result = client.search("Patient", "_count=1&_revinclude=Observation:subject")

        assert (result.ids, len(result.included)) == (("p1",), 3)

    def test_revinclude_with_a_target_type(self, client: SyncClient) -> None:
        """_revinclude=Observation:subject:Group adds nothing for a Patient (https://hl7.org/fhir/R4/search.html#revinclude)."""
        put(client, patient("p1"), observation("o1", "Patient/p1"))

        assert client.search("Patient", "_revinclude=Observation:subject:Group").included == ()

    def test_revinclude_wildcard(self, client: SyncClient) -> None:
        """_revinclude=* adds every resource that refers to a match, whatever its type (https://hl7.org/fhir/R4/search.html#revinclude)."""
        put(
            client,
            patient("p1"),
            patient("p2"),
            observation("o1", "Patient/p1"),
            encounter("e1", "Patient/p1"),
            encounter("e2", "Patient/p2"),
        )

        result = client.search("Patient", "_id=p1&_revinclude=*")

        assert included(result) == {"Observation/o1", "Encounter/e1"}

    @pytest.mark.requires("crud.delete")
    def test_a_deleted_referrer_is_not_included(self, client: SyncClient) -> None:
        """After o1 is deleted, _revinclude=Observation:subject adds only o2 (https://hl7.org/fhir/R4/search.html#revinclude)."""
        put(
            client,
            patient("p1"),
            observation("o1", "Patient/p1"),
            observation("o2", "Patient/p1"),
        )
        client.delete("Observation", "o1")

        result = client.search("Patient", "_revinclude=Observation:subject")

        assert result.included_references == ("Observation/o2",)

    def test_a_match_is_never_revincluded(self, client: SyncClient) -> None:
        """Patient?_revinclude=Patient:link with p1 linked to p2, both matches, includes nothing (https://hl7.org/fhir/R4/search.html#revinclude)."""
        put(
            client,
            patient("p1", link=[{"other": {"reference": "Patient/p2"}, "type": "seealso"}]),
            patient("p2"),
        )

        result = client.search("Patient", "_revinclude=Patient:link")

        assert (set(result.ids), result.included) == ({"p1", "p2"}, ())

    @pytest.mark.requires("search.include")
    def test_include_and_revinclude_together_include_each_resource_once(
        self, client: SyncClient
    ) -> None:
        """Observation?_include=Observation:subject&_revinclude=Provenance:target adds p1 and the Provenance once each (https://hl7.org/fhir/R4/search.html#revinclude)."""
        put(
            client,
            patient("p1"),
            observation("o1", "Patient/p1"),
            observation("o2", "Patient/p1"),
            provenance("prov1", "Observation/o1"),
        )

        result = client.search(
            "Observation", "_include=Observation:subject&_revinclude=Provenance:target"
        )

        assert sorted(result.included_references) == ["Patient/p1", "Provenance/prov1"]

    @pytest.mark.requires("search.include.iterate")
    def test_revinclude_iterate_follows_referrers_of_included_resources(
        self, client: SyncClient
    ) -> None:
        """Patient?_revinclude=Observation:subject&_revinclude:iterate=Provenance:target adds the Provenance of the Observation (https://hl7.org/fhir/R4/search.html#revinclude)."""
        put(
            client,
            patient("p1"),
            observation("o1", "Patient/p1"),
            provenance("prov-o1", "Observation/o1"),
            provenance("prov-other", "Observation/o-other"),
        )

        result = client.search(
            "Patient", "_revinclude=Observation:subject&_revinclude:iterate=Provenance:target"
        )

        assert included(result) == {"Observation/o1", "Provenance/prov-o1"}

    def test_revinclude_without_iterate_is_one_level(self, client: SyncClient) -> None:
        """Without :iterate, _revinclude=Provenance:target on Patients skips the Observation's Provenance (https://hl7.org/fhir/R4/search.html#revinclude)."""
        put(
            client,
            patient("p1"),
            observation("o1", "Patient/p1"),
            provenance("prov-o1", "Observation/o1"),
        )

        result = client.search(
            "Patient", "_revinclude=Observation:subject&_revinclude=Provenance:target"
        )

        assert included(result) == {"Observation/o1"}
