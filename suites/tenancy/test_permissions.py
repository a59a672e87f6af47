"""Permissions are enforced by storage: a denied call raises AccessDenied and writes nothing (FHIR R4 security.html)."""

from __future__ import annotations

from typing import Any

import pytest

from helios_conformance import (
    AccessDenied,
    Operation,
    SyncClient,
    TenantContext,
    TenantPermissions,
)

SECURITY = "https://hl7.org/fhir/R4/security.html"

pytestmark = pytest.mark.requires("tenancy.permissions")


def restricted(client: SyncClient, permissions: TenantPermissions) -> SyncClient:
    """A client on the same tenant as ``client`` with narrower permissions."""
    return client.for_tenant(TenantContext(client.context.tenant, permissions))


def patient(ident: str, family: str = "Lee") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": ident, "name": [{"family": family}]}


def observation(ident: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": ident,
        "status": "final",
        "code": {"text": "weight"},
        "subject": {"reference": "Patient/p1"},
    }


class TestOperations:
    @pytest.mark.requires("crud.create", "crud.read")
    def test_read_only_caller_cannot_create(self, client: SyncClient) -> None:
        """A read-only caller's create raises AccessDenied and stores nothing (https://hl7.org/fhir/R4/security.html)."""
        reader = restricted(client, TenantPermissions.read_only())

        with pytest.raises(AccessDenied):
            reader.create({"resourceType": "Patient"})

        assert client.count("Patient") == 0

    @pytest.mark.requires("crud.update_as_create", "crud.read")
    def test_read_only_caller_cannot_upsert(self, client: SyncClient) -> None:
        """A read-only caller's update-as-create raises AccessDenied and Patient/p1 does not exist (https://hl7.org/fhir/R4/security.html)."""
        reader = restricted(client, TenantPermissions.read_only())

        with pytest.raises(AccessDenied):
            reader.create_or_update("Patient", "p1", patient("p1"))

        assert client.exists("Patient", "p1") is False

    @pytest.mark.requires("crud.update_as_create", "crud.update", "crud.read")
    def test_read_only_caller_cannot_update(self, client: SyncClient) -> None:
        """A read-only caller's update raises AccessDenied and Patient/p1 stays at version 1 (https://hl7.org/fhir/R4/security.html)."""
        stored, _ = client.create_or_update("Patient", "p1", patient("p1"))
        reader = restricted(client, TenantPermissions.read_only())

        with pytest.raises(AccessDenied):
            reader.update("Patient", "p1", patient("p1", "Changed"))

        current = client.read("Patient", "p1")
        assert (current.version_id, current.resource) == ("1", stored.resource)

    @pytest.mark.requires("crud.update_as_create", "crud.delete", "crud.read")
    def test_read_only_caller_cannot_delete(self, client: SyncClient) -> None:
        """A read-only caller's delete raises AccessDenied and Patient/p1 stays live (https://hl7.org/fhir/R4/security.html)."""
        client.create_or_update("Patient", "p1", patient("p1"))
        reader = restricted(client, TenantPermissions.read_only())

        with pytest.raises(AccessDenied):
            reader.delete("Patient", "p1")

        assert client.read("Patient", "p1").version_id == "1"

    @pytest.mark.requires("crud.update_as_create", "crud.read", "versioning.vread")
    def test_read_only_caller_reads(self, client: SyncClient) -> None:
        """A read-only caller reads, vreads and counts the tenant's resources (https://hl7.org/fhir/R4/security.html)."""
        client.create_or_update("Patient", "p1", patient("p1"))
        reader = restricted(client, TenantPermissions.read_only())

        assert reader.read("Patient", "p1").version_id == "1"
        assert reader.vread("Patient", "p1", "1").id == "p1"
        assert (reader.exists("Patient", "p1"), reader.count("Patient")) == (True, 1)

    @pytest.mark.requires("crud.update_as_create", "history.instance", "history.type")
    def test_history_needs_the_history_operation(self, client: SyncClient) -> None:
        """A caller allowed only read gets AccessDenied for instance and type history (https://hl7.org/fhir/R4/security.html)."""
        client.create_or_update("Patient", "p1", patient("p1"))
        reader = restricted(client, TenantPermissions.builder().allow(Operation.READ).build())

        with pytest.raises(AccessDenied):
            reader.history_instance("Patient", "p1")
        with pytest.raises(AccessDenied):
            reader.history_type("Patient")

    @pytest.mark.requires("crud.update_as_create", "search.param.string")
    def test_search_needs_the_search_operation(self, client: SyncClient) -> None:
        """A caller allowed only read gets AccessDenied for a search (https://hl7.org/fhir/R4/security.html)."""
        client.create_or_update("Patient", "p1", patient("p1"))
        reader = restricted(client, TenantPermissions.builder().allow(Operation.READ).build())

        with pytest.raises(AccessDenied):
            reader.search("Patient", "family=Lee")

    @pytest.mark.requires("crud.create", "crud.read", "crud.update_as_create")
    def test_create_only_caller_cannot_read(self, client: SyncClient) -> None:
        """A caller allowed only create stores a Patient but its read raises AccessDenied (https://hl7.org/fhir/R4/security.html)."""
        writer = restricted(client, TenantPermissions.builder().allow(Operation.CREATE).build())

        created = writer.create({"resourceType": "Patient"})

        with pytest.raises(AccessDenied):
            writer.read("Patient", created.id)
        assert client.exists("Patient", created.id) is True


class TestResourceTypes:
    @pytest.mark.requires("crud.create", "crud.read")
    def test_create_of_another_type_is_denied(self, client: SyncClient) -> None:
        """A caller restricted to Patient cannot create an Observation; none is stored (https://hl7.org/fhir/R4/security.html)."""
        only_patients = restricted(
            client,
            TenantPermissions.builder().allow_all_operations().only_types(["Patient"]).build(),
        )

        with pytest.raises(AccessDenied):
            only_patients.create(
                {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
            )

        assert client.count("Observation") == 0
        assert only_patients.create({"resourceType": "Patient"}).resource_type == "Patient"

    @pytest.mark.requires("crud.update_as_create", "crud.read")
    def test_read_of_another_type_is_denied(self, client: SyncClient) -> None:
        """A caller restricted to Patient gets AccessDenied reading Observation/o1, and reads Patient/p1 (https://hl7.org/fhir/R4/security.html)."""
        client.create_or_update("Patient", "p1", patient("p1"))
        client.create_or_update("Observation", "o1", observation("o1"))
        only_patients = restricted(
            client,
            TenantPermissions.builder().allow_all_operations().only_types(["Patient"]).build(),
        )

        with pytest.raises(AccessDenied):
            only_patients.read("Observation", "o1")
        with pytest.raises(AccessDenied):
            only_patients.exists("Observation", "o1")
        assert only_patients.read("Patient", "p1").id == "p1"

    @pytest.mark.requires("crud.update_as_create", "crud.read")
    def test_counting_every_type_is_denied(self, client: SyncClient) -> None:
        """A caller restricted to Patient may count Patients but not every type, which would count Observations (https://hl7.org/fhir/R4/security.html)."""
        client.create_or_update("Patient", "p1", patient("p1"))
        client.create_or_update("Observation", "o1", observation("o1"))
        only_patients = restricted(
            client,
            TenantPermissions.builder().allow_all_operations().only_types(["Patient"]).build(),
        )

        assert only_patients.count("Patient") == 1
        with pytest.raises(AccessDenied):
            only_patients.count()

    @pytest.mark.requires("crud.update_as_create", "history.system", "history.type")
    def test_system_history_is_denied_to_a_type_restricted_caller(self, client: SyncClient) -> None:
        """A caller restricted to Patient reads Patient history but system history is AccessDenied (https://hl7.org/fhir/R4/security.html)."""
        client.create_or_update("Patient", "p1", patient("p1"))
        client.create_or_update("Observation", "o1", observation("o1"))
        only_patients = restricted(
            client,
            TenantPermissions.builder().allow_all_operations().only_types(["Patient"]).build(),
        )

        assert [e.id for e in only_patients.history_type("Patient").entries] == ["p1"]
        with pytest.raises(AccessDenied):
            only_patients.history_system()

    @pytest.mark.requires("crud.update_as_create", "crud.delete", "crud.read")
    def test_delete_of_another_type_is_denied(self, client: SyncClient) -> None:
        """A caller restricted to Patient cannot delete Observation/o1; it stays live (https://hl7.org/fhir/R4/security.html)."""
        client.create_or_update("Observation", "o1", observation("o1"))
        only_patients = restricted(
            client,
            TenantPermissions.builder().allow_all_operations().only_types(["Patient"]).build(),
        )

        with pytest.raises(AccessDenied):
            only_patients.delete("Observation", "o1")

        assert client.exists("Observation", "o1") is True


class TestTransactions:
    @pytest.mark.requires("transactions.bundle", "crud.read")
    def test_transaction_needs_the_transaction_operation(self, client: SyncClient) -> None:
        """A caller allowed create but not transaction gets AccessDenied for a transaction Bundle; nothing is stored (https://hl7.org/fhir/R4/http.html#transaction)."""
        writer = restricted(
            client, TenantPermissions.builder().allow(Operation.CREATE, Operation.READ).build()
        )
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "request": {"method": "PUT", "url": "Patient/p1"},
                    "resource": patient("p1"),
                }
            ],
        }

        with pytest.raises(AccessDenied):
            writer.transaction(bundle)

        assert client.exists("Patient", "p1") is False

    @pytest.mark.requires("transactions.bundle", "crud.read")
    def test_denied_entry_rolls_back_the_whole_transaction(self, client: SyncClient) -> None:
        """A transaction of a caller restricted to Patient that also writes an Observation is refused whole: Patient/p1 is not stored (https://hl7.org/fhir/R4/http.html#transaction)."""
        only_patients = restricted(
            client,
            TenantPermissions.builder().allow_all_operations().only_types(["Patient"]).build(),
        )
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"request": {"method": "PUT", "url": "Patient/p1"}, "resource": patient("p1")},
                {
                    "request": {"method": "PUT", "url": "Observation/o1"},
                    "resource": observation("o1"),
                },
            ],
        }

        with pytest.raises(AccessDenied):
            only_patients.transaction(bundle)

        assert client.exists("Patient", "p1") is False
