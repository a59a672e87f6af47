"""The tenancy model in TenantContext.require, and compartment membership."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from helios_conformance import (
    AccessDenied,
    Compartment,
    ExportScan,
    InvalidRequest,
    Operation,
    PatientCompartment,
    TenantContext,
    TenantId,
    TenantPermissions,
    Unsupported,
    restrict_export_scan,
)
from helios_conformance.search import index_resource

ACME = TenantContext.of("acme")


class TestChildren:
    def test_for_child_addresses_a_descendant_with_the_same_permissions(self) -> None:
        child = ACME.for_child("research/oncology")
        assert child.tenant == TenantId.parse("acme/research/oncology")
        assert (child.permissions, child.origin) == (ACME.permissions, ACME.tenant)
        assert child.for_child("trials").origin == ACME.tenant
        child.require(Operation.CREATE, "Patient")

    def test_for_child_needs_the_permission(self) -> None:
        context = TenantContext.of("acme", TenantPermissions.read_only())
        with pytest.raises(AccessDenied, match="child tenants"):
            context.for_child("research")

    @pytest.mark.parametrize("path", ["", "Bad", "a//b"])
    def test_for_child_refuses_malformed_paths(self, path: str) -> None:
        with pytest.raises(InvalidRequest):
            ACME.for_child(path)

    @pytest.mark.parametrize("target", ["acme", "acme2/research", "other", "acme/finance"])
    def test_derived_context_reaches_only_below_its_origin(self, target: str) -> None:
        forged = TenantContext(
            TenantId.parse(target), ACME.permissions, TenantId.parse("acme/research")
        )
        with pytest.raises(AccessDenied, match="cannot reach"):
            forged.require(Operation.READ, "Patient")

    def test_derived_context_without_child_permission_is_refused(self) -> None:
        no_children = TenantPermissions.builder().allow_all_operations().build()
        forged = TenantContext(TenantId.parse("acme/research"), no_children, ACME.tenant)
        with pytest.raises(AccessDenied, match="not permitted"):
            forged.require(Operation.READ, "Patient")


class TestSystemTenant:
    def test_for_system_is_read_only_on_definitions(self) -> None:
        shared = ACME.for_system()
        assert shared.tenant.is_system
        assert shared.origin == ACME.tenant
        shared.require(Operation.SEARCH, "CodeSystem")
        shared.require(Operation.HISTORY)
        with pytest.raises(AccessDenied):
            shared.require(Operation.CREATE, "CodeSystem")
        with pytest.raises(AccessDenied):
            shared.require(Operation.READ, "Patient")

    def test_for_system_keeps_the_callers_narrower_types(self) -> None:
        context = TenantContext.of(
            "acme",
            TenantPermissions.builder().allow_all_operations().only_types(["ValueSet"]).build(),
        )
        assert context.for_system().permissions.resource_types == frozenset({"ValueSet"})

    def test_writes_need_the_operator_context_and_a_definitional_type(self) -> None:
        TenantContext.system().require(Operation.CREATE, "ValueSet")
        with pytest.raises(AccessDenied, match="definitional"):
            TenantContext.system().require(Operation.CREATE, "Patient")

    def test_require_scope_checks_the_model_without_the_operation(self) -> None:
        with pytest.raises(AccessDenied):
            ACME.for_system().require_scope("CodeSystem", writing=True)
        ACME.for_system().require_scope("CodeSystem", writing=False)


class TestTypeRestriction:
    def test_cross_type_reads_are_refused(self) -> None:
        context = TenantContext.of(
            "acme",
            TenantPermissions.builder().allow_all_operations().only_types(["Patient"]).build(),
        )
        context.require(Operation.READ, "Patient")
        for operation in (Operation.READ, Operation.HISTORY, Operation.SEARCH):
            with pytest.raises(AccessDenied, match="across every resource type"):
                context.require(operation)
        context.require(Operation.TRANSACTION)


class TestCompartment:
    def test_parse(self) -> None:
        assert Compartment.parse("Patient/123").reference == "Patient/123"
        with pytest.raises(InvalidRequest):
            Compartment.parse("Patient")
        with pytest.raises(InvalidRequest):
            Compartment.parse("Basic/1")
        with pytest.raises(Unsupported):
            Compartment.parse("Encounter/1")

    def test_membership_by_reference_rows(self) -> None:
        compartment = Compartment.parse("Patient/p1")
        mine = index_resource(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "x"},
                "subject": {"reference": "Patient/p1"},
            }
        )
        theirs = index_resource(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "x"},
                "subject": {"reference": "Patient/p2"},
            }
        )
        assert compartment.contains("Observation", "o1", mine)
        assert not compartment.contains("Observation", "o2", theirs)
        assert compartment.contains("Patient", "p1", ())
        assert not compartment.contains("Patient", "p2", ())
        assert not compartment.contains("Practitioner", "p1", ())
        assert "Practitioner" not in compartment.resource_types

    def test_require_refuses_types_outside_the_compartment(self) -> None:
        context = TenantContext.of(
            "acme",
            TenantPermissions.builder().allow_all_operations().in_compartment("Patient/p1").build(),
        )
        context.require(Operation.READ, "Observation")
        with pytest.raises(AccessDenied, match="compartment"):
            context.require(Operation.READ, "Practitioner")

    def test_restrict_export_scan_narrows_to_the_patient(self) -> None:
        context = TenantContext.of(
            "acme",
            TenantPermissions.builder().allow_all_operations().in_compartment("Patient/p1").build(),
        )
        scan = ExportScan("Observation", datetime(2024, 1, 1, tzinfo=UTC))
        narrowed = restrict_export_scan(context, scan)
        assert narrowed.compartment is not None
        assert narrowed.compartment.patient_ids == frozenset({"p1"})
        assert "subject" in narrowed.compartment.parameters
        other = ExportScan(
            "Observation",
            scan.as_of,
            compartment=PatientCompartment(("subject",), frozenset({"p2"})),
        )
        assert restrict_export_scan(context, other).compartment == PatientCompartment(
            narrowed.compartment.parameters, frozenset()
        )
        assert restrict_export_scan(ACME, scan) is scan
