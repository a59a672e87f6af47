"""String modifiers :exact and :contains (FHIR R4 search.html#string)."""

from __future__ import annotations

from typing import Any

import pytest

from helios_conformance import SyncClient


def named(resource_id: str, family: str, *given: str) -> dict[str, Any]:
    name: dict[str, Any] = {"family": family}
    if given:
        name["given"] = list(given)
    return {"resourceType": "Patient", "id": resource_id, "name": [name]}


def put(client: SyncClient, *resources: dict[str, Any]) -> None:
    for resource in resources:
        client.create_or_update(resource["resourceType"], resource["id"], resource)


def ids(client: SyncClient, resource_type: str, query: str | list[tuple[str, str]]) -> set[str]:
    return set(client.search(resource_type, query).ids)


class TestExactModifier:
    pytestmark = pytest.mark.requires(
        "crud.update_as_create", "search.param.string", "search.modifier.exact"
    )

    def test_exact_matches_the_whole_value_only(self, client: SyncClient) -> None:
        """family:exact=Lee finds Lee but not Leeds (https://hl7.org/fhir/R4/search.html#string)."""
        put(client, named("p1", "Lee"), named("p2", "Leeds"))

        assert ids(client, "Patient", "family:exact=Lee") == {"p1"}

    def test_exact_is_case_sensitive(self, client: SyncClient) -> None:
        """family:exact=lee does not find Lee (https://hl7.org/fhir/R4/search.html#string)."""
        put(client, named("p1", "Lee"), named("p2", "lee"))

        assert ids(client, "Patient", "family:exact=lee") == {"p2"}

    def test_exact_is_accent_sensitive(self, client: SyncClient) -> None:
        """given:exact=Zoe finds Zoe but not Zoë (https://hl7.org/fhir/R4/search.html#string)."""
        put(client, named("p1", "Lee", "Zoë"), named("p2", "Lee", "Zoe"))

        assert ids(client, "Patient", [("given:exact", "Zoe")]) == {"p2"}

    def test_exact_matches_an_accented_value(self, client: SyncClient) -> None:
        """given:exact=Zoë finds Zoë but not Zoe (https://hl7.org/fhir/R4/search.html#string)."""
        put(client, named("p1", "Lee", "Zoë"), named("p2", "Lee", "Zoe"))

        assert ids(client, "Patient", [("given:exact", "Zoë")]) == {"p1"}

    def test_exact_compares_each_value_of_a_repeating_element(self, client: SyncClient) -> None:
        """given:exact=Ann finds a Patient whose given names are Mary and Ann (https://hl7.org/fhir/R4/search.html#string)."""
        put(client, named("p1", "Lee", "Mary", "Ann"), named("p2", "Lee", "Anna"))

        assert ids(client, "Patient", "given:exact=Ann") == {"p1"}


class TestContainsModifier:
    pytestmark = pytest.mark.requires(
        "crud.update_as_create", "search.param.string", "search.modifier.contains"
    )

    def test_contains_matches_anywhere_in_the_value(self, client: SyncClient) -> None:
        """family:contains=ee finds Lee and Beeton but not Kim (https://hl7.org/fhir/R4/search.html#string)."""
        put(client, named("p1", "Lee"), named("p2", "Beeton"), named("p3", "Kim"))

        assert ids(client, "Patient", "family:contains=ee") == {"p1", "p2"}

    def test_contains_is_case_insensitive(self, client: SyncClient) -> None:
        """family:contains=EET finds Beeton (https://hl7.org/fhir/R4/search.html#string)."""
        put(client, named("p1", "Beeton"), named("p2", "Kim"))

        assert ids(client, "Patient", "family:contains=EET") == {"p1"}

    def test_contains_is_accent_insensitive(self, client: SyncClient) -> None:
        """family:contains=ulle finds Müller (https://hl7.org/fhir/R4/search.html#string)."""
        put(client, named("p1", "Müller"), named("p2", "Miller"))

        assert ids(client, "Patient", "family:contains=ulle") == {"p1"}

    def test_contains_on_the_name_parameter(self, client: SyncClient) -> None:
        """name:contains=nni finds the given name Annie (https://hl7.org/fhir/R4/search.html#string)."""
        put(client, named("p1", "Lee", "Annie"), named("p2", "Lee", "Anna"))

        assert ids(client, "Patient", "name:contains=nni") == {"p1"}

    def test_contains_on_an_address(self, client: SyncClient) -> None:
        """address:contains=green finds "742 Evergreen Terrace" (https://hl7.org/fhir/R4/search.html#string)."""
        put(
            client,
            {
                "resourceType": "Patient",
                "id": "p1",
                "address": [{"line": ["742 Evergreen Terrace"], "city": "Springfield"}],
            },
            {
                "resourceType": "Patient",
                "id": "p2",
                "address": [{"line": ["1 Main Street"], "city": "Springfield"}],
            },
        )

        assert ids(client, "Patient", "address:contains=green") == {"p1"}
