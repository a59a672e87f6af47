"""URI search: exact match by default, :below and :above by path (FHIR R4 search.html#uri)."""

from __future__ import annotations

from typing import Any

import pytest

from helios_conformance import SyncClient


def value_set(resource_id: str, url: str, *include_systems: str) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "ValueSet",
        "id": resource_id,
        "url": url,
        "status": "active",
    }
    if include_systems:
        resource["compose"] = {"include": [{"system": system} for system in include_systems]}
    return resource


def put(client: SyncClient, *resources: dict[str, Any]) -> None:
    for resource in resources:
        client.create_or_update(resource["resourceType"], resource["id"], resource)


def ids(client: SyncClient, resource_type: str, query: list[tuple[str, str]]) -> set[str]:
    return set(client.search(resource_type, query).ids)


def put_value_sets(client: SyncClient) -> None:
    """vs123 and vs1234 live under http://acme.org/fhir/; vs-other under http://other.org/fhir/."""
    put(
        client,
        value_set("vs123", "http://acme.org/fhir/ValueSet/123"),
        value_set("vs1234", "http://acme.org/fhir/ValueSet/1234"),
        value_set("vs-other", "http://other.org/fhir/ValueSet/123"),
    )


class TestUriMatching:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.param.uri")

    def test_uri_matches_exactly(self, client: SyncClient) -> None:
        """url=http://acme.org/fhir/ValueSet/123 finds that ValueSet and not .../1234 (https://hl7.org/fhir/R4/search.html#uri)."""
        put_value_sets(client)

        assert ids(client, "ValueSet", [("url", "http://acme.org/fhir/ValueSet/123")]) == {"vs123"}

    def test_uri_is_not_matched_by_prefix(self, client: SyncClient) -> None:
        """url=http://acme.org/fhir/ValueSet/12 finds nothing: uri matching is not starts-with (https://hl7.org/fhir/R4/search.html#uri)."""
        put_value_sets(client)

        assert ids(client, "ValueSet", [("url", "http://acme.org/fhir/ValueSet/12")]) == set()

    def test_uri_on_a_repeating_element(self, client: SyncClient) -> None:
        """ValueSet reference=http://loinc.org finds the ValueSet that includes LOINC among other systems (https://hl7.org/fhir/R4/search.html#uri)."""
        put(
            client,
            value_set(
                "vs1",
                "http://acme.org/fhir/ValueSet/a",
                "http://snomed.info/sct",
                "http://loinc.org",
            ),
            value_set("vs2", "http://acme.org/fhir/ValueSet/b", "http://snomed.info/sct"),
        )

        assert ids(client, "ValueSet", [("reference", "http://loinc.org")]) == {"vs1"}

    def test_code_system_url_parameter(self, client: SyncClient) -> None:
        """CodeSystem system=<url> finds the CodeSystem with that canonical url (https://hl7.org/fhir/R4/search.html#uri)."""
        put(
            client,
            {
                "resourceType": "CodeSystem",
                "id": "cs1",
                "url": "http://acme.org/fhir/CodeSystem/colours",
                "status": "active",
                "content": "complete",
            },
            {
                "resourceType": "CodeSystem",
                "id": "cs2",
                "url": "http://acme.org/fhir/CodeSystem/shapes",
                "status": "active",
                "content": "complete",
            },
        )

        assert ids(
            client, "CodeSystem", [("system", "http://acme.org/fhir/CodeSystem/colours")]
        ) == {"cs1"}

    def test_urn_matches_exactly(self, client: SyncClient) -> None:
        """url=urn:oid:1.2.3.4 finds that ValueSet and not urn:oid:1.2.3.45 (https://hl7.org/fhir/R4/search.html#uri)."""
        put(
            client,
            value_set("oid", "urn:oid:1.2.3.4"),
            value_set("longer-oid", "urn:oid:1.2.3.45"),
        )

        assert ids(client, "ValueSet", [("url", "urn:oid:1.2.3.4")]) == {"oid"}


class TestBelowModifier:
    pytestmark = pytest.mark.requires(
        "crud.update_as_create", "search.param.uri", "search.modifier.below"
    )

    def test_below_matches_everything_under_the_path(self, client: SyncClient) -> None:
        """url:below=http://acme.org/fhir/ finds both acme ValueSets, not the other.org one (https://hl7.org/fhir/R4/search.html#uri)."""
        put_value_sets(client)

        assert ids(client, "ValueSet", [("url:below", "http://acme.org/fhir/")]) == {
            "vs123",
            "vs1234",
        }

    def test_below_matches_the_exact_uri_too(self, client: SyncClient) -> None:
        """url:below=http://acme.org/fhir/ValueSet/1234 finds that ValueSet itself (https://hl7.org/fhir/R4/search.html#uri)."""
        put_value_sets(client)

        assert ids(client, "ValueSet", [("url:below", "http://acme.org/fhir/ValueSet/1234")]) == {
            "vs1234"
        }


class TestAboveModifier:
    pytestmark = pytest.mark.requires(
        "crud.update_as_create", "search.param.uri", "search.modifier.above"
    )

    def test_above_matches_uris_that_are_a_prefix_of_the_value(self, client: SyncClient) -> None:
        """url:above=http://acme.org/fhir/ValueSet/123/_history/5 finds .../123 but not .../1234 (https://hl7.org/fhir/R4/search.html#uri)."""
        put_value_sets(client)

        assert ids(
            client, "ValueSet", [("url:above", "http://acme.org/fhir/ValueSet/123/_history/5")]
        ) == {"vs123"}

    def test_above_does_not_match_deeper_uris(self, client: SyncClient) -> None:
        """url:above=http://acme.org/fhir/ finds nothing: both acme ValueSets lie below it, not above (https://hl7.org/fhir/R4/search.html#uri)."""
        put_value_sets(client)

        assert ids(client, "ValueSet", [("url:above", "http://acme.org/fhir/")]) == set()
