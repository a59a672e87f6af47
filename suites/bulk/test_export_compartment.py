"""Patient- and group-level $export: the R4 Patient compartment and Group membership.

Bulk Data IG export.html (endpoint---all-patients, endpoint---group-of-patients);
membership in the compartment follows the R4 CompartmentDefinition for Patient.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from helios_conformance import (
    AccessDenied,
    Gone,
    InvalidRequest,
    NotFound,
    SyncClient,
    TenantPermissions,
)
from helios_conformance.bulk import SyncBulk

ALL_PATIENTS = "https://hl7.org/fhir/uv/bulkdata/STU2/export.html#endpoint---all-patients"
GROUP = "https://hl7.org/fhir/uv/bulkdata/STU2/export.html#endpoint---group-of-patients"
COMPARTMENT = "https://hl7.org/fhir/R4/compartmentdefinition-patient.html"
EXPORT = "https://hl7.org/fhir/uv/bulkdata/STU2/export.html"


@pytest.fixture
def bulk(client: SyncClient, tmp_path: Any) -> SyncBulk:
    return client.bulk(tmp_path / "exports")


def put(client: SyncClient, resource: dict[str, Any]) -> None:
    client.create_or_update(resource["resourceType"], resource["id"], resource)


def obs(ident: str, **links: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Observation",
        "id": ident,
        "status": "final",
        "code": {"text": "x"},
    }
    for element, reference in links.items():
        value = {"reference": reference}
        body[element] = [value] if element == "performer" else value
    return body


def seed(client: SyncClient) -> None:
    """p1, p2, p3 with observations linked by subject or performer, plus a Medication.

    - o-p1 (subject p1), o-p2 (subject p2), o-perf (performer p3): in a compartment
    - o-ghost (subject Patient/ghost, never created), o-none (no patient): in none
    - Medication med1: its type is not in the Patient compartment at all
    """
    for ident in ("p1", "p2", "p3"):
        put(client, {"resourceType": "Patient", "id": ident})
    put(client, obs("o-p1", subject="Patient/p1"))
    put(client, obs("o-p2", subject="Patient/p2"))
    put(client, obs("o-perf", performer="Patient/p3"))
    put(client, obs("o-ghost", subject="Patient/ghost"))
    put(client, obs("o-none"))
    put(client, {"resourceType": "Medication", "id": "med1"})


def group(ident: str, *members: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Group",
        "id": ident,
        "type": "person",
        "actual": True,
        "member": list(members),
    }


def member(reference: str, **extra: Any) -> dict[str, Any]:
    return {"entity": {"reference": reference}, **extra}


class TestPatientExport:
    pytestmark = pytest.mark.requires("bulk.export.patient", "crud.update_as_create")

    def test_exports_the_compartments_of_all_patients(
        self, client: SyncClient, bulk: SyncBulk
    ) -> None:
        """Patients and resources in some patient's compartment; o-ghost, o-none and med1 are not (ALL_PATIENTS, COMPARTMENT)."""
        seed(client)

        job = bulk.export("patient")

        assert bulk.exported_ids(job.id) == {
            "Patient": {"p1", "p2", "p3"},
            "Observation": {"o-p1", "o-p2", "o-perf"},
        }

    def test_performer_links_a_resource_to_the_compartment(
        self, client: SyncClient, bulk: SyncBulk
    ) -> None:
        """Observation.performer is a compartment parameter, so o-perf belongs to p3 (COMPARTMENT)."""
        seed(client)

        job = bulk.export("patient", "patient=Patient/p3")

        assert bulk.exported_ids(job.id) == {"Patient": {"p3"}, "Observation": {"o-perf"}}

    def test_patient_parameter_restricts_to_those_patients(
        self, client: SyncClient, bulk: SyncBulk
    ) -> None:
        """patient=Patient/p1,Patient/p2 exports their compartments only (ALL_PATIENTS)."""
        seed(client)

        job = bulk.export("patient", "patient=Patient/p1,Patient/p2")

        assert bulk.exported_ids(job.id) == {
            "Patient": {"p1", "p2"},
            "Observation": {"o-p1", "o-p2"},
        }

    def test_an_unknown_patient_is_reported_in_the_error_file(
        self, client: SyncClient, bulk: SyncBulk
    ) -> None:
        """patient=Patient/nobody exports nothing for it and says why in an OperationOutcome (ALL_PATIENTS)."""
        seed(client)

        job = bulk.export("patient", "patient=Patient/p1,Patient/nobody")

        manifest = bulk.manifest(job.id)
        assert bulk.exported_ids(job.id) == {"Patient": {"p1"}, "Observation": {"o-p1"}}
        [error] = manifest["error"]
        assert (error["type"], error["count"]) == ("OperationOutcome", 1)
        [line] = bulk.output_lines(job.id, error["url"])
        outcome = json.loads(line)
        assert outcome["resourceType"] == "OperationOutcome"
        assert "Patient/nobody" in outcome["issue"][0]["diagnostics"]

    @pytest.mark.requires("bulk.export.type")
    def test_types_outside_the_compartment_are_refused(self, bulk: SyncBulk) -> None:
        """_type=Medication cannot be answered by a patient-level export (ALL_PATIENTS)."""
        with pytest.raises(InvalidRequest, match="Medication"):
            bulk.start_export("patient", "_type=Patient,Medication")

    @pytest.mark.requires("bulk.export.type")
    def test_type_narrows_the_compartment_types(self, client: SyncClient, bulk: SyncBulk) -> None:
        """_type=Observation at patient level exports the compartment's observations only (ALL_PATIENTS)."""
        seed(client)

        job = bulk.export("patient", "_type=Observation")

        assert bulk.exported_ids(job.id) == {"Observation": {"o-p1", "o-p2", "o-perf"}}

    def test_a_linked_patient_is_in_the_compartment(
        self, client: SyncClient, bulk: SyncBulk
    ) -> None:
        """Patient p-alias links to p1 (Patient.link), so it is in p1's compartment (COMPARTMENT)."""
        seed(client)
        put(
            client,
            {
                "resourceType": "Patient",
                "id": "p-alias",
                "link": [{"other": {"reference": "Patient/p1"}, "type": "seealso"}],
            },
        )

        job = bulk.export("patient", "patient=Patient/p1&_type=Patient")

        assert bulk.exported_ids(job.id) == {"Patient": {"p1", "p-alias"}}

    @pytest.mark.requires("crud.delete")
    def test_resources_of_a_deleted_patient_are_not_exported(
        self, client: SyncClient, bulk: SyncBulk
    ) -> None:
        """p2 is deleted, so neither it nor its observation o-p2 is in any live compartment (ALL_PATIENTS)."""
        seed(client)
        client.delete("Patient", "p2")

        job = bulk.export("patient", "_type=Patient,Observation")

        assert bulk.exported_ids(job.id) == {
            "Patient": {"p1", "p3"},
            "Observation": {"o-p1", "o-perf"},
        }

    @pytest.mark.requires("bulk.export.type_filter", "bulk.export.type")
    def test_type_filter_applies_within_the_compartment(
        self, client: SyncClient, bulk: SyncBulk
    ) -> None:
        """_typeFilter=Observation?subject=Patient/p2 keeps o-p2 of the compartment's observations (ALL_PATIENTS)."""
        seed(client)

        job = bulk.export(
            "patient", [("_type", "Observation"), ("_typeFilter", "Observation?subject=Patient/p2")]
        )

        assert bulk.exported_ids(job.id) == {"Observation": {"o-p2"}}


class TestGroupExport:
    pytestmark = pytest.mark.requires(
        "bulk.export.group", "crud.update_as_create", "bulk.export.type"
    )

    def test_exports_the_members_and_their_compartments(
        self, client: SyncClient, bulk: SyncBulk
    ) -> None:
        """Group g holds p1 and p3: their compartments are exported, p2's is not (GROUP)."""
        seed(client)
        put(client, group("g", member("Patient/p1"), member("Patient/p3")))

        job = bulk.export("group", "_type=Patient,Observation", group_id="g")

        assert bulk.exported_ids(job.id) == {
            "Patient": {"p1", "p3"},
            "Observation": {"o-p1", "o-perf"},
        }

    def test_nested_groups_contribute_their_members(
        self, client: SyncClient, bulk: SyncBulk
    ) -> None:
        """Outer holds p1 and Group/inner, inner holds p2: both patients are exported (GROUP)."""
        seed(client)
        put(client, group("inner", member("Patient/p2")))
        put(client, group("outer", member("Patient/p1"), member("Group/inner")))

        job = bulk.export("group", "_type=Patient", group_id="outer")

        assert bulk.exported_ids(job.id) == {"Patient": {"p1", "p2"}}

    def test_cyclic_groups_terminate(self, client: SyncClient, bulk: SyncBulk) -> None:
        """a holds p1 and Group/b, b holds p2 and Group/a: members are collected once (GROUP)."""
        seed(client)
        put(client, group("a", member("Patient/p1"), member("Group/b")))
        put(client, group("b", member("Patient/p2"), member("Group/a")))

        job = bulk.export("group", "_type=Patient", group_id="a")

        assert bulk.exported_ids(job.id) == {"Patient": {"p1", "p2"}}

    def test_inactive_members_are_excluded(self, client: SyncClient, bulk: SyncBulk) -> None:
        """A member with inactive=true is not part of the export (https://hl7.org/fhir/R4/group-definitions.html#Group.member.inactive)."""
        seed(client)
        put(client, group("g", member("Patient/p1"), member("Patient/p2", inactive=True)))

        job = bulk.export("group", "_type=Patient", group_id="g")

        assert bulk.exported_ids(job.id) == {"Patient": {"p1"}}

    def test_members_outside_their_period_are_excluded(
        self, client: SyncClient, bulk: SyncBulk
    ) -> None:
        """p2's membership ended in 2001 and p3's starts in 2999; only p1 (open period) is a member now (https://hl7.org/fhir/R4/group-definitions.html#Group.member.period)."""
        seed(client)
        put(
            client,
            group(
                "g",
                member("Patient/p1", period={"start": "2000-01-01"}),
                member("Patient/p2", period={"start": "2000-01-01", "end": "2001-01-01"}),
                member("Patient/p3", period={"start": "2999-01-01"}),
            ),
        )

        job = bulk.export("group", "_type=Patient", group_id="g")

        assert bulk.exported_ids(job.id) == {"Patient": {"p1"}}

    def test_patient_parameter_narrows_the_group(self, client: SyncClient, bulk: SyncBulk) -> None:
        """patient=Patient/p1,Patient/p2 with g={p1,p3}: p1 is exported, p2 is reported as a non-member (GROUP)."""
        seed(client)
        put(client, group("g", member("Patient/p1"), member("Patient/p3")))

        job = bulk.export("group", "_type=Patient&patient=Patient/p1,Patient/p2", group_id="g")

        assert bulk.exported_ids(job.id) == {"Patient": {"p1"}}
        [error] = bulk.manifest(job.id)["error"]
        [line] = bulk.output_lines(job.id, error["url"])
        assert (
            "Patient/p2 is not a member of Group/g" in json.loads(line)["issue"][0]["diagnostics"]
        )

    def test_an_empty_group_exports_nothing(self, client: SyncClient, bulk: SyncBulk) -> None:
        """A group without members has empty compartments: the output is empty (GROUP)."""
        seed(client)
        put(client, group("g"))

        job = bulk.export("group", "_type=Patient,Observation", group_id="g")

        assert bulk.manifest(job.id)["output"] == []

    def test_an_unknown_group_is_not_found(self, bulk: SyncBulk) -> None:
        """Kick-off for Group/missing fails with NotFound and creates no job (GROUP)."""
        with pytest.raises(NotFound):
            bulk.start_export("group", group_id="missing")
        assert bulk.export_jobs() == ()

    @pytest.mark.requires("crud.delete")
    def test_a_deleted_group_is_gone(self, client: SyncClient, bulk: SyncBulk) -> None:
        """Kick-off for a deleted Group fails with Gone (GROUP)."""
        put(client, group("g", member("Patient/p1")))
        client.delete("Group", "g")

        with pytest.raises(Gone):
            bulk.start_export("group", group_id="g")


class TestCompartmentPermission:
    pytestmark = pytest.mark.requires(
        "bulk.export.patient",
        "bulk.export.system",
        "tenancy.permissions",
        "tenancy.compartment",
        "crud.update_as_create",
    )

    def test_a_compartment_restricted_caller_exports_only_its_compartment(
        self, client: SyncClient, tmp_path: Any
    ) -> None:
        """A caller limited to Patient/p1 gets p1's compartment from a patient-level export (ALL_PATIENTS)."""
        seed(client)
        permissions = TenantPermissions(compartment="Patient/p1")
        bulk = client.for_tenant(client.context.tenant.value, permissions).bulk(
            tmp_path / "exports"
        )

        job = bulk.export("patient", "_type=Patient,Observation")

        assert bulk.exported_ids(job.id) == {"Patient": {"p1"}, "Observation": {"o-p1"}}

    def test_a_compartment_restricted_caller_cannot_export_the_system(
        self, client: SyncClient, tmp_path: Any
    ) -> None:
        """A system-level export would leak resources outside the caller's compartment: refused (EXPORT)."""
        permissions = TenantPermissions(compartment="Patient/p1")
        bulk = client.for_tenant(client.context.tenant.value, permissions).bulk(
            tmp_path / "exports"
        )

        with pytest.raises(AccessDenied, match="compartment"):
            bulk.start_export("system")
