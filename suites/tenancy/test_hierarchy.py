"""Hierarchical tenants: a child is reached only by addressing it, with permission (FHIR R4 security.html)."""

from __future__ import annotations

from typing import Any

import pytest

from helios_conformance import (
    AccessDenied,
    InvalidRequest,
    NotFound,
    SyncClient,
    TenantContext,
    TenantPermissions,
)

SECURITY = "https://hl7.org/fhir/R4/security.html"

pytestmark = pytest.mark.requires(
    "tenancy.hierarchy", "crud.create", "crud.update_as_create", "crud.read"
)


def patient(ident: str, family: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": ident, "name": [{"family": family}]}


def family(client: SyncClient, ident: str) -> str:
    body = client.read("Patient", ident).resource
    assert body is not None
    return str(body["name"][0]["family"])


class TestChildTenants:
    def test_parent_does_not_see_its_childs_data(self, client: SyncClient) -> None:
        """Patient/p1 written in acme/research is NotFound in acme, which counts none (https://hl7.org/fhir/R4/security.html)."""
        research = client.for_tenant(client.context.for_child("research"))

        research.create_or_update("Patient", "p1", patient("p1", "Child"))

        with pytest.raises(NotFound):
            client.read("Patient", "p1")
        assert (client.count("Patient"), research.count("Patient")) == (0, 1)

    def test_child_does_not_see_its_parents_data(self, client: SyncClient) -> None:
        """Patient/p1 written in acme is NotFound in acme/research (https://hl7.org/fhir/R4/security.html)."""
        client.create_or_update("Patient", "p1", patient("p1", "Parent"))
        research = client.for_tenant(client.context.for_child("research"))

        with pytest.raises(NotFound):
            research.read("Patient", "p1")
        assert research.exists("Patient", "p1") is False

    def test_same_id_at_each_level_is_its_own_resource(self, client: SyncClient) -> None:
        """Patient/p1 in acme, acme/research and acme/research/oncology are three resources (https://hl7.org/fhir/R4/security.html)."""
        research = client.for_tenant(client.context.for_child("research"))
        oncology = client.for_tenant(client.context.for_child("research/oncology"))

        for level, name in ((client, "Root"), (research, "Research"), (oncology, "Oncology")):
            level.create_or_update("Patient", "p1", patient("p1", name))

        assert [family(c, "p1") for c in (client, research, oncology)] == [
            "Root",
            "Research",
            "Oncology",
        ]
        assert oncology.context.tenant.parent == research.context.tenant

    def test_child_context_derived_stepwise_reaches_the_grandchild(
        self, client: SyncClient
    ) -> None:
        """acme -> research -> oncology addresses the same tenant as acme -> research/oncology (https://hl7.org/fhir/R4/security.html)."""
        stepwise = client.for_tenant(client.context.for_child("research").for_child("oncology"))
        direct = client.for_tenant(client.context.for_child("research/oncology"))

        stepwise.create_or_update("Patient", "p1", patient("p1", "Deep"))

        assert family(direct, "p1") == "Deep"


class TestChildPermission:
    def test_child_access_needs_the_permission(self, client: SyncClient) -> None:
        """A context without child_tenants cannot derive a context for acme/research (https://hl7.org/fhir/R4/security.html)."""
        no_children = TenantContext(
            client.context.tenant,
            TenantPermissions.builder().allow_all_operations().with_child_tenants(False).build(),
        )

        with pytest.raises(AccessDenied):
            no_children.for_child("research")

    def test_storage_refuses_a_forged_child_context(self, client: SyncClient) -> None:
        """A hand-built child context whose permissions forbid child tenants is refused by storage; nothing is written (https://hl7.org/fhir/R4/security.html)."""
        research = client.context.for_child("research")
        forged = TenantContext(
            research.tenant,
            TenantPermissions.builder().allow_all_operations().build(),
            origin=client.context.tenant,
        )

        with pytest.raises(AccessDenied):
            client.for_tenant(forged).create_or_update("Patient", "p1", patient("p1", "Forged"))

        assert client.for_tenant(research).exists("Patient", "p1") is False

    def test_child_cannot_reach_its_sibling_or_parent(self, client: SyncClient) -> None:
        """A context derived for acme/research and pointed at acme/finance or acme is refused; nothing is written (https://hl7.org/fhir/R4/security.html)."""
        research = client.context.for_child("research")
        finance = client.context.for_child("finance")
        for target in (finance.tenant, client.context.tenant):
            forged = TenantContext(target, research.permissions, origin=research.tenant)
            with pytest.raises(AccessDenied):
                client.for_tenant(forged).create_or_update("Patient", "p1", patient("p1", "X"))

        assert client.for_tenant(finance).exists("Patient", "p1") is False
        assert client.exists("Patient", "p1") is False

    def test_child_context_keeps_the_parents_restrictions(self, client: SyncClient) -> None:
        """A read-only caller with child access is read-only in acme/research too (https://hl7.org/fhir/R4/security.html)."""
        reader = TenantContext(
            client.context.tenant,
            TenantPermissions.builder()
            .allow(*TenantPermissions.read_only().operations)
            .with_child_tenants()
            .build(),
        )
        research = client.for_tenant(reader.for_child("research"))

        with pytest.raises(AccessDenied):
            research.create_or_update("Patient", "p1", patient("p1", "X"))
        assert research.exists("Patient", "p1") is False


class TestReservedIds:
    @pytest.mark.parametrize("tenant", ["system", "all", "root", "default", "system/child"])
    def test_reserved_tenant_ids_are_refused(self, tenant: str) -> None:
        """A caller cannot name a tenant starting with a reserved segment (https://hl7.org/fhir/R4/security.html)."""
        with pytest.raises(InvalidRequest, match="reserved"):
            TenantContext.of(tenant)
