"""The same id in two tenants is two independent resources (FHIR R4 http.html#read)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from helios_conformance import NotFound, SyncClient

ClientFactory = Callable[..., SyncClient]


def patient(resource_id: str, family: str) -> dict[str, object]:
    return {"resourceType": "Patient", "id": resource_id, "name": [{"family": family}]}


class TestTenantScope:
    @pytest.mark.requires("crud.update_as_create", "crud.read")
    def test_same_id_holds_each_tenants_own_body(
        self, client: SyncClient, new_client: ClientFactory
    ) -> None:
        """Patient/shared written in tenants A and B reads back each tenant's own body (https://hl7.org/fhir/R4/http.html#read)."""
        other = new_client()
        client.create_or_update("Patient", "shared", patient("shared", "Of-A"))

        _, created_in_b = other.create_or_update("Patient", "shared", patient("shared", "Of-B"))

        assert created_in_b is True
        a_body, b_body = (
            client.read("Patient", "shared").resource,
            other.read("Patient", "shared").resource,
        )
        assert a_body is not None
        assert b_body is not None
        assert (a_body["name"], b_body["name"]) == ([{"family": "Of-A"}], [{"family": "Of-B"}])

    @pytest.mark.requires("crud.update_as_create", "crud.update", "crud.read")
    def test_update_in_one_tenant_leaves_the_other_unchanged(
        self, client: SyncClient, new_client: ClientFactory
    ) -> None:
        """Updating Patient/shared in A leaves B's Patient/shared as it was (https://hl7.org/fhir/R4/http.html#update)."""
        other = new_client()
        client.create_or_update("Patient", "shared", patient("shared", "Of-A"))
        b_original, _ = other.create_or_update("Patient", "shared", patient("shared", "Of-B"))

        client.update("Patient", "shared", patient("shared", "Of-A-updated"))

        b_current = other.read("Patient", "shared")
        assert (b_current.version_id, b_current.resource) == (
            b_original.version_id,
            b_original.resource,
        )

    @pytest.mark.requires("crud.update_as_create", "crud.delete", "crud.read")
    def test_delete_in_one_tenant_leaves_the_other_readable(
        self, client: SyncClient, new_client: ClientFactory
    ) -> None:
        """Deleting Patient/shared in A leaves B's Patient/shared live (https://hl7.org/fhir/R4/http.html#delete)."""
        other = new_client()
        client.create_or_update("Patient", "shared", patient("shared", "Of-A"))
        b_original, _ = other.create_or_update("Patient", "shared", patient("shared", "Of-B"))

        client.delete("Patient", "shared")

        assert client.exists("Patient", "shared") is False
        assert other.read("Patient", "shared").resource == b_original.resource

    @pytest.mark.requires("crud.create", "crud.read")
    def test_counts_are_per_tenant(self, client: SyncClient, new_client: ClientFactory) -> None:
        """A tenant counts only its own resources: A has two Patients, B one (https://hl7.org/fhir/R4/http.html#read)."""
        other = new_client()
        client.create({"resourceType": "Patient"})
        client.create({"resourceType": "Patient"})
        other.create({"resourceType": "Patient"})

        assert (client.count("Patient"), other.count("Patient")) == (2, 1)
        assert (client.count(), other.count()) == (2, 1)

    @pytest.mark.requires("crud.create", "crud.read")
    def test_other_tenants_resource_is_not_found(
        self, client: SyncClient, new_client: ClientFactory
    ) -> None:
        """A resource created in A is NotFound in B and does not exist there (https://hl7.org/fhir/R4/http.html#read)."""
        other = new_client()
        created = client.create({"resourceType": "Patient"})

        with pytest.raises(NotFound):
            other.read("Patient", created.id)
        assert other.exists("Patient", created.id) is False

    @pytest.mark.requires("crud.create", "crud.update", "crud.read")
    def test_update_cannot_reach_another_tenant(
        self, client: SyncClient, new_client: ClientFactory
    ) -> None:
        """Updating A's resource from B raises NotFound and leaves A's resource as it was (https://hl7.org/fhir/R4/http.html#update)."""
        other = new_client()
        created = client.create({"resourceType": "Patient", "gender": "female"})

        with pytest.raises(NotFound):
            other.update(
                "Patient",
                created.id,
                {"resourceType": "Patient", "id": created.id, "gender": "male"},
            )

        current = client.read("Patient", created.id)
        assert (current.version_id, current.resource) == (created.version_id, created.resource)

    @pytest.mark.requires("crud.create", "crud.delete", "crud.read")
    def test_delete_cannot_reach_another_tenant(
        self, client: SyncClient, new_client: ClientFactory
    ) -> None:
        """Deleting A's resource from B deletes nothing and A's resource stays live (https://hl7.org/fhir/R4/http.html#delete)."""
        other = new_client()
        created = client.create({"resourceType": "Patient"})

        assert other.delete("Patient", created.id) is None

        assert client.read("Patient", created.id).version_id == created.version_id

    @pytest.mark.requires("crud.update_as_create", "crud.update", "versioning.version_ids")
    def test_version_chains_are_per_tenant(
        self, client: SyncClient, new_client: ClientFactory
    ) -> None:
        """B's first write of Patient/shared is version 1 even after A wrote three versions (https://hl7.org/fhir/R4/http.html#upsert)."""
        other = new_client()
        client.create_or_update("Patient", "shared", patient("shared", "A-1"))
        client.update("Patient", "shared", patient("shared", "A-2"))
        client.update("Patient", "shared", patient("shared", "A-3"))

        stored, created = other.create_or_update("Patient", "shared", patient("shared", "B-1"))

        assert (stored.version_id, created) == ("1", True)
