"""The system tenant: shared definitions every tenant reads and none writes (FHIR R4 security.html)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from helios_conformance import AccessDenied, NotFound, SyncClient, TenantContext

SECURITY = "https://hl7.org/fhir/R4/security.html"

pytestmark = pytest.mark.requires("tenancy.permissions", "crud.update_as_create", "crud.read")


def code_system(ident: str) -> dict[str, Any]:
    return {
        "resourceType": "CodeSystem",
        "id": ident,
        "url": f"http://example.org/cs/{ident}",
        "status": "active",
        "content": "complete",
    }


@pytest.fixture
def admin(client: SyncClient) -> SyncClient:
    """An operator's client on the system tenant (shared across tests: ids are unique)."""
    return client.for_tenant(TenantContext.system())


class TestSystemTenant:
    def test_every_tenant_reads_shared_definitions(
        self, client: SyncClient, new_client: Any, admin: SyncClient
    ) -> None:
        """A CodeSystem the operator stores in the system tenant is readable from two tenants (https://hl7.org/fhir/R4/security.html)."""
        ident = f"cs-{uuid.uuid4().hex[:12]}"
        admin.create_or_update("CodeSystem", ident, code_system(ident))

        for tenant in (client, new_client()):
            shared = tenant.for_tenant(tenant.context.for_system())
            assert shared.read("CodeSystem", ident).id == ident

    def test_shared_definitions_are_not_tenant_data(
        self, client: SyncClient, admin: SyncClient
    ) -> None:
        """A system CodeSystem is NotFound in the tenant's own data (https://hl7.org/fhir/R4/security.html)."""
        ident = f"cs-{uuid.uuid4().hex[:12]}"
        admin.create_or_update("CodeSystem", ident, code_system(ident))

        with pytest.raises(NotFound):
            client.read("CodeSystem", ident)
        assert client.count("CodeSystem") == 0

    def test_tenants_cannot_write_shared_definitions(
        self, client: SyncClient, admin: SyncClient
    ) -> None:
        """A tenant's create and update in the system tenant raise AccessDenied and write nothing (https://hl7.org/fhir/R4/security.html)."""
        ident = f"cs-{uuid.uuid4().hex[:12]}"
        admin.create_or_update("CodeSystem", ident, code_system(ident))
        shared = client.for_tenant(client.context.for_system())
        other = f"cs-{uuid.uuid4().hex[:12]}"

        with pytest.raises(AccessDenied):
            shared.create_or_update("CodeSystem", other, code_system(other))
        with pytest.raises(AccessDenied):
            shared.create_or_update(
                "CodeSystem", ident, {**code_system(ident), "status": "retired"}
            )

        assert admin.exists("CodeSystem", other) is False
        assert admin.read("CodeSystem", ident).version_id == "1"

    def test_system_tenant_holds_only_definitions(self, admin: SyncClient) -> None:
        """Even the operator cannot store a Patient in the system tenant (https://hl7.org/fhir/R4/security.html)."""
        ident = f"p-{uuid.uuid4().hex[:12]}"

        with pytest.raises(AccessDenied):
            admin.create_or_update("Patient", ident, {"resourceType": "Patient", "id": ident})

    @pytest.mark.requires("search.param.uri")
    def test_tenants_search_shared_definitions(self, client: SyncClient, admin: SyncClient) -> None:
        """CodeSystem?url= from a tenant finds the system tenant's CodeSystem (https://hl7.org/fhir/R4/security.html)."""
        ident = f"cs-{uuid.uuid4().hex[:12]}"
        admin.create_or_update("CodeSystem", ident, code_system(ident))
        shared = client.for_tenant(client.context.for_system())

        found = shared.search("CodeSystem", f"url=http://example.org/cs/{ident}")

        assert [entry.id for entry in found.entries] == [ident]
