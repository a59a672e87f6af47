"""System-level $export: every live resource of the tenant (Bulk Data IG export.html)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from helios_conformance import (
    AccessDenied,
    InvalidRequest,
    Operation,
    SyncClient,
    TenantPermissions,
)
from helios_conformance.bulk import ExportStatus, SyncBulk

EXPORT = "https://hl7.org/fhir/uv/bulkdata/STU2/export.html"

pytestmark = pytest.mark.requires("bulk.export.system", "crud.create", "crud.update_as_create")


@pytest.fixture
def bulk(client: SyncClient, tmp_path: Any) -> SyncBulk:
    return client.bulk(tmp_path / "exports")


def put(client: SyncClient, resource: dict[str, Any]) -> None:
    client.create_or_update(resource["resourceType"], resource["id"], resource)


def patient(ident: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": ident}


def observation(ident: str, subject: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": ident,
        "status": "final",
        "code": {"text": "weight"},
        "subject": {"reference": subject},
    }


class TestSystemExport:
    def test_exports_every_live_resource_by_type(self, client: SyncClient, bulk: SyncBulk) -> None:
        """A system-level export returns every resource of every type, grouped by type (EXPORT#endpoint---system-level-export)."""
        for resource in (patient("p1"), patient("p2"), observation("o1", "Patient/p1")):
            put(client, resource)
        put(client, {"resourceType": "Organization", "id": "org1", "name": "Acme"})

        job = bulk.export("system")

        assert job.status is ExportStatus.COMPLETE
        assert bulk.exported_ids(job.id) == {
            "Patient": {"p1", "p2"},
            "Observation": {"o1"},
            "Organization": {"org1"},
        }

    @pytest.mark.requires("crud.delete")
    def test_deleted_resources_are_not_exported(self, client: SyncClient, bulk: SyncBulk) -> None:
        """p2 was deleted before kick-off, so only p1 is exported (EXPORT#bulk-data-output-file-request)."""
        put(client, patient("p1"))
        put(client, patient("p2"))
        client.delete("Patient", "p2")

        job = bulk.export("system")

        assert bulk.exported_ids(job.id) == {"Patient": {"p1"}}

    @pytest.mark.requires("crud.delete")
    def test_recreated_resource_is_exported_once_at_its_latest_version(
        self, client: SyncClient, bulk: SyncBulk
    ) -> None:
        """A resource deleted and created again is live: exported once, as version 3 (EXPORT)."""
        put(client, patient("p1"))
        client.delete("Patient", "p1")
        put(client, {**patient("p1"), "active": True})

        job = bulk.export("system")

        [exported] = bulk.exported(job.id)
        assert (exported["id"], exported["meta"]["versionId"], exported["active"]) == (
            "p1",
            "3",
            True,
        )

    def test_lines_are_the_stored_resources(self, client: SyncClient, bulk: SyncBulk) -> None:
        """Each NDJSON line is one resource, identical to what a read returns (EXPORT#file-request)."""
        put(client, {**patient("p1"), "name": [{"family": "Ünal", "given": ["Zoë"]}]})

        job = bulk.export("system")

        [entry] = bulk.manifest(job.id)["output"]
        lines = bulk.output_lines(job.id, entry["url"])
        assert len(lines) == 1
        assert json.loads(lines[0]) == client.read("Patient", "p1").resource

    @pytest.mark.requires("crud.update")
    def test_writes_after_kick_off_are_not_exported(
        self, client: SyncClient, bulk: SyncBulk
    ) -> None:
        """The export is a snapshot at transactionTime: a later update and a later create are not in it (EXPORT#response---complete-status)."""
        put(client, {**patient("p1"), "active": False})
        job = bulk.start_export("system")
        client.update("Patient", "p1", {**patient("p1"), "active": True})
        put(client, patient("p2"))

        bulk.run_export(job.id)

        [exported] = bulk.exported(job.id)
        assert (exported["id"], exported["active"], exported["meta"]["versionId"]) == (
            "p1",
            False,
            "1",
        )

    def test_other_tenants_are_never_exported(
        self, client: SyncClient, new_client: Any, bulk: SyncBulk
    ) -> None:
        """An export sees only its own tenant: the neighbour's p9 is absent (EXPORT)."""
        put(client, patient("p1"))
        put(new_client(), patient("p9"))

        job = bulk.export("system")

        assert bulk.exported_ids(job.id) == {"Patient": {"p1"}}

    def test_empty_tenant_gives_an_empty_output_array(self, bulk: SyncBulk) -> None:
        """With nothing to export the manifest's output is an empty array (EXPORT#response---complete-status)."""
        job = bulk.export("system")

        assert bulk.manifest(job.id)["output"] == []

    def test_patient_parameter_is_refused_at_system_level(self, bulk: SyncBulk) -> None:
        """The patient parameter does not apply to a system-level export (EXPORT#query-parameters)."""
        with pytest.raises(InvalidRequest, match="patient"):
            bulk.start_export("system", "patient=Patient/p1")

    @pytest.mark.parametrize(
        "output_format", ["application/fhir+ndjson", "application/ndjson", "ndjson"]
    )
    def test_ndjson_output_formats_are_accepted(
        self, client: SyncClient, bulk: SyncBulk, output_format: str
    ) -> None:
        """The full NDJSON content type and its two abbreviations are accepted (EXPORT#query-parameters)."""
        put(client, patient("p1"))

        job = bulk.export("system", [("_outputFormat", output_format)])

        assert bulk.exported_ids(job.id) == {"Patient": {"p1"}}

    def test_other_output_formats_are_refused(self, bulk: SyncBulk) -> None:
        """An output format the server does not support is refused at kick-off (EXPORT#query-parameters)."""
        with pytest.raises(InvalidRequest, match="_outputFormat"):
            bulk.start_export("system", [("_outputFormat", "text/csv")])

    def test_unknown_parameters_are_refused(self, bulk: SyncBulk) -> None:
        """A kick-off parameter the IG does not define is refused, naming it (EXPORT#query-parameters)."""
        with pytest.raises(InvalidRequest, match="_sort"):
            bulk.start_export("system", "_sort=_id")

    @pytest.mark.requires("tenancy.permissions")
    def test_export_needs_the_bulk_export_permission(self, new_client: Any, tmp_path: Any) -> None:
        """A caller without the bulk-export operation is refused before a job exists (EXPORT)."""
        permissions = TenantPermissions.builder().allow(Operation.READ, Operation.SEARCH).build()
        bulk = new_client(permissions).bulk(tmp_path / "denied")

        with pytest.raises(AccessDenied, match="bulk-export"):
            bulk.start_export("system")
