"""Search never sees another tenant's resources (FHIR R4 search.html; project tenancy rules)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from helios_conformance import SyncClient

ClientFactory = Callable[..., SyncClient]


def named(resource_id: str, family: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": resource_id, "name": [{"family": family}], **fields}


def put(client: SyncClient, *resources: dict[str, Any]) -> None:
    for resource in resources:
        client.create_or_update(resource["resourceType"], resource["id"], resource)


class TestSearchTenantScope:
    pytestmark = pytest.mark.requires("crud.update_as_create")

    @pytest.mark.requires("search.param.string")
    def test_string_search_sees_only_its_tenant(
        self, client: SyncClient, new_client: ClientFactory
    ) -> None:
        """A Lee written in tenant A is not found by family=Lee in tenant B (https://hl7.org/fhir/R4/search.html#string)."""
        other = new_client()
        put(client, named("a-lee", "Lee"))
        put(other, named("b-lee", "Lee"))

        assert (
            set(client.search("Patient", "family=Lee").ids),
            set(other.search("Patient", "family=Lee").ids),
        ) == (
            {"a-lee"},
            {"b-lee"},
        )

    @pytest.mark.requires("search.param.common")
    def test_search_without_parameters_sees_only_its_tenant(
        self, client: SyncClient, new_client: ClientFactory
    ) -> None:
        """Patient? in an empty tenant B finds nothing although tenant A holds Patients (https://hl7.org/fhir/R4/search.html#all)."""
        other = new_client()
        put(client, named("p1", "Lee"), named("p2", "Kim"))

        assert other.search("Patient").ids == ()

    @pytest.mark.requires("search.param.common")
    def test_same_id_returns_each_tenants_own_body(
        self, client: SyncClient, new_client: ClientFactory
    ) -> None:
        """_id=shared in each tenant returns that tenant's own Patient/shared (https://hl7.org/fhir/R4/search.html#id)."""
        other = new_client()
        put(client, named("shared", "Of-A"))
        put(other, named("shared", "Of-B"))

        (a_entry,) = client.search("Patient", "_id=shared").entries
        (b_entry,) = other.search("Patient", "_id=shared").entries

        assert a_entry.resource is not None
        assert b_entry.resource is not None
        assert (a_entry.resource["name"], b_entry.resource["name"]) == (
            [{"family": "Of-A"}],
            [{"family": "Of-B"}],
        )

    @pytest.mark.requires("search.param.token")
    def test_token_search_sees_only_its_tenant(
        self, client: SyncClient, new_client: ClientFactory
    ) -> None:
        """identifier=MRN-1 in tenant B does not find tenant A's Patient with that identifier (https://hl7.org/fhir/R4/search.html#token)."""
        other = new_client()
        put(client, named("p1", "Lee", identifier=[{"value": "MRN-1"}]))

        assert other.search("Patient", "identifier=MRN-1").ids == ()

    @pytest.mark.requires("search.param.reference")
    def test_reference_search_sees_only_its_tenant(
        self, client: SyncClient, new_client: ClientFactory
    ) -> None:
        """subject=Patient/p1 finds only the searching tenant's Observation about p1 (https://hl7.org/fhir/R4/search.html#reference)."""
        other = new_client()

        def about(resource_id: str) -> dict[str, Any]:
            return {
                "resourceType": "Observation",
                "id": resource_id,
                "status": "final",
                "code": {"text": "weight"},
                "subject": {"reference": "Patient/p1"},
            }

        put(client, about("a-obs"))
        put(other, about("b-obs"))

        assert other.search("Observation", "subject=Patient/p1").ids == ("b-obs",)

    @pytest.mark.requires("search.summary_count")
    def test_summary_count_counts_only_its_tenant(
        self, client: SyncClient, new_client: ClientFactory
    ) -> None:
        """_summary=count gives 2 in tenant A and 1 in tenant B (https://hl7.org/fhir/R4/search.html#summary)."""
        other = new_client()
        put(client, named("p1", "Lee"), named("p2", "Kim"))
        put(other, named("p3", "Lee"))

        assert (
            client.search("Patient", "_summary=count").total,
            other.search("Patient", "_summary=count").total,
        ) == (2, 1)

    @pytest.mark.requires("search.total")
    def test_accurate_total_counts_only_its_tenant(
        self, client: SyncClient, new_client: ClientFactory
    ) -> None:
        """_total=accurate in tenant B counts only B's one Patient (https://hl7.org/fhir/R4/search.html#total)."""
        other = new_client()
        put(client, named("p1", "Lee"), named("p2", "Lee"))
        put(other, named("p3", "Lee"))

        assert other.search("Patient", "_total=accurate").total == 1

    @pytest.mark.requires("search.content")
    def test_content_search_sees_only_its_tenant(
        self, client: SyncClient, new_client: ClientFactory
    ) -> None:
        """_content=okonkwo in tenant B does not find tenant A's Okonkwo (https://hl7.org/fhir/R4/search.html#content)."""
        other = new_client()
        put(client, named("p1", "Okonkwo"))

        assert other.search("Patient", [("_content", "okonkwo")]).ids == ()

    @pytest.mark.requires("search.text")
    def test_text_search_sees_only_its_tenant(
        self, client: SyncClient, new_client: ClientFactory
    ) -> None:
        """_text=cough in tenant B does not find tenant A's narrative (https://hl7.org/fhir/R4/search.html#text)."""
        other = new_client()
        narrative = {
            "status": "generated",
            "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>Dry cough.</p></div>',
        }
        put(client, named("p1", "Lee", text=narrative))

        assert other.search("Patient", [("_text", "cough")]).ids == ()

    @pytest.mark.requires("search.filter")
    def test_filter_sees_only_its_tenant(
        self, client: SyncClient, new_client: ClientFactory
    ) -> None:
        """_filter=family eq "Lee" in tenant B finds only B's Lee (https://hl7.org/fhir/R4/search_filter.html)."""
        other = new_client()
        put(client, named("a-lee", "Lee"))
        put(other, named("b-lee", "Lee"))

        assert other.search("Patient", [("_filter", 'family eq "Lee"')]).ids == ("b-lee",)

    @pytest.mark.requires("search.param.custom", "search.param.string")
    def test_custom_parameter_indexes_only_its_tenants_resources(
        self, client: SyncClient, new_client: ClientFactory
    ) -> None:
        """A custom parameter registered in tenant A finds only A's resources there (https://hl7.org/fhir/R4/searchparameter.html)."""
        other = new_client()
        put(
            client,
            {
                "resourceType": "SearchParameter",
                "id": "nickname",
                "url": "http://example.org/fhir/SearchParameter/nickname",
                "name": "nickname",
                "status": "active",
                "description": "Nickname",
                "code": "nickname",
                "base": ["Patient"],
                "type": "string",
                "expression": "Patient.name.where(use = 'nickname').given",
            },
        )
        nicknamed = {"resourceType": "Patient", "name": [{"use": "nickname", "given": ["Bobby"]}]}
        put(other, {**nicknamed, "id": "b-bobby"})
        put(client, {**nicknamed, "id": "a-bobby"})

        assert client.search("Patient", "nickname=bob").ids == ("a-bobby",)
