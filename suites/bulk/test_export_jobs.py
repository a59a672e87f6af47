"""The export job lifecycle: status, progress, cancel, delete, expiry, the per-tenant cap, resume.

Bulk Data IG export.html#bulk-data-status-request and #bulk-data-delete-request.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from helios_conformance import InvalidRequest, NotFound, SyncClient, TooManyRequests
from helios_conformance.bulk import BulkSettings, ExportStatus, FilesystemOutputStore, SyncBulk

STATUS = "https://hl7.org/fhir/uv/bulkdata/STU2/export.html#bulk-data-status-request"
DELETE = "https://hl7.org/fhir/uv/bulkdata/STU2/export.html#bulk-data-delete-request"

pytestmark = pytest.mark.requires("bulk.export.system", "bulk.export.jobs", "crud.update_as_create")


class Crash(Exception):
    """Stands for the process dying: the engine must not catch it."""


class CrashingOutput(FilesystemOutputStore):
    """A filesystem store that writes half of the ``crash_at``-th append, then dies."""

    def __init__(self, root: Any, crash_at: int) -> None:
        super().__init__(root)
        self.appends = 0
        self.crash_at = crash_at

    async def append(self, key: str, data: bytes) -> int:
        self.appends += 1
        if self.appends == self.crash_at:
            await super().append(key, data[: len(data) // 2])
            raise Crash(f"crashed while appending to {key}")
        return await super().append(key, data)


def settings(**overrides: Any) -> BulkSettings:
    return BulkSettings(**{"page_size": 2, **overrides})


@pytest.fixture
def bulk(client: SyncClient, tmp_path: Any) -> SyncBulk:
    return client.bulk(tmp_path / "exports", settings=settings())


def seed_patients(client: SyncClient, count: int) -> list[str]:
    ids = [f"p{n:02d}" for n in range(1, count + 1)]
    for ident in ids:
        client.create_or_update("Patient", ident, {"resourceType": "Patient", "id": ident})
    return ids


def seed_observations(client: SyncClient, count: int) -> list[str]:
    ids = [f"o{n:02d}" for n in range(1, count + 1)]
    for ident in ids:
        body = {
            "resourceType": "Observation",
            "id": ident,
            "status": "final",
            "code": {"text": "x"},
        }
        client.create_or_update("Observation", ident, body)
    return ids


class TestStatus:
    def test_kick_off_answers_accepted(self, client: SyncClient, bulk: SyncBulk) -> None:
        """A new job is accepted and has exported nothing yet (STATUS)."""
        seed_patients(client, 1)

        job = bulk.start_export("system")

        assert (job.status, job.exported, job.manifest) == (ExportStatus.ACCEPTED, 0, None)

    def test_a_partly_run_job_is_in_progress_with_per_type_progress(
        self, client: SyncClient, bulk: SyncBulk
    ) -> None:
        """After 4 of 5 resources (Observation first) the job is in progress: Observation done, Patient at 1 (STATUS)."""
        seed_observations(client, 3)
        seed_patients(client, 2)
        job = bulk.start_export("system", "_type=Observation,Patient")

        job = bulk.run_export(job.id, max_resources=4)

        assert job.status is ExportStatus.IN_PROGRESS
        assert [(p.resource_type, p.exported, p.done) for p in job.progress] == [
            ("Observation", 3, True),
            ("Patient", 1, False),
        ]
        assert job.progress_text == "1/2 types, 4 resources"

    def test_a_finished_job_is_complete_with_its_manifest(
        self, client: SyncClient, bulk: SyncBulk
    ) -> None:
        """Running a job to its end makes it complete, with a manifest and an expiry (STATUS)."""
        seed_patients(client, 3)
        job = bulk.start_export("system")

        job = bulk.run_export(job.id)

        assert job.status is ExportStatus.COMPLETE
        assert job.manifest is not None
        assert job.expires is not None
        assert job.finished is not None
        assert [entry["count"] for entry in job.manifest["output"]] == [3]

    def test_an_unknown_job_is_not_found(self, bulk: SyncBulk) -> None:
        """A status request for a job that never existed is NotFound (STATUS)."""
        with pytest.raises(NotFound):
            bulk.export_status("no-such-job")

    def test_jobs_are_invisible_to_other_tenants(
        self, client: SyncClient, new_client: Any, bulk: SyncBulk
    ) -> None:
        """Another tenant asking for this tenant's job id gets NotFound (STATUS)."""
        seed_patients(client, 1)
        job = bulk.export("system")

        with pytest.raises(NotFound):
            bulk.for_client(new_client()).export_status(job.id)


class TestCancelDelete:
    def test_cancel_stops_a_running_job(self, client: SyncClient, bulk: SyncBulk) -> None:
        """A cancelled job is cancelled and running it again does nothing (DELETE)."""
        seed_patients(client, 5)
        job = bulk.start_export("system")
        bulk.run_export(job.id, max_resources=2)

        cancelled = bulk.cancel_export(job.id)
        again = bulk.run_export(job.id)

        assert (cancelled.status, again.status, again.exported) == (
            ExportStatus.CANCELLED,
            ExportStatus.CANCELLED,
            2,
        )

    def test_cancel_removes_written_files(
        self, client: SyncClient, bulk: SyncBulk, tmp_path: Any
    ) -> None:
        """Files a cancelled job already wrote are deleted (DELETE)."""
        seed_patients(client, 5)
        job = bulk.start_export("system")
        bulk.run_export(job.id, max_resources=2)

        bulk.cancel_export(job.id)

        assert [path for path in (tmp_path / "exports").rglob("*.ndjson")] == []

    def test_a_finished_job_cannot_be_cancelled(self, client: SyncClient, bulk: SyncBulk) -> None:
        """Cancel applies to accepted or in-progress jobs; a complete one must be deleted (DELETE)."""
        seed_patients(client, 1)
        job = bulk.export("system")

        with pytest.raises(InvalidRequest, match="complete"):
            bulk.cancel_export(job.id)

    def test_delete_removes_the_job_and_its_files(
        self, client: SyncClient, bulk: SyncBulk, tmp_path: Any
    ) -> None:
        """After delete the status is NotFound and the files are gone (DELETE)."""
        seed_patients(client, 3)
        job = bulk.export("system")

        bulk.delete_export(job.id)

        with pytest.raises(NotFound):
            bulk.export_status(job.id)
        assert [path for path in (tmp_path / "exports").rglob("*.ndjson")] == []


class TestExpiry:
    def test_outputs_are_kept_until_they_expire(self, client: SyncClient, bulk: SyncBulk) -> None:
        """Just before its expiry a complete job survives expiry (STATUS: the Expires header)."""
        seed_patients(client, 1)
        job = bulk.export("system")
        assert job.expires is not None

        expired = bulk.expire_exports(now=job.expires - timedelta(seconds=1))

        assert expired == ()
        assert bulk.export_status(job.id).status is ExportStatus.COMPLETE

    def test_expired_jobs_are_removed(self, client: SyncClient, bulk: SyncBulk) -> None:
        """At its expiry the job and its files are removed; its status is NotFound (STATUS)."""
        seed_patients(client, 1)
        job = bulk.export("system")
        assert job.expires is not None

        expired = bulk.expire_exports(now=job.expires)

        assert expired == (job.id,)
        with pytest.raises(NotFound):
            bulk.export_status(job.id)

    def test_running_jobs_never_expire(self, client: SyncClient, bulk: SyncBulk) -> None:
        """An in-progress job has no expiry yet and survives any expiry run (STATUS)."""
        seed_patients(client, 3)
        job = bulk.start_export("system")
        bulk.run_export(job.id, max_resources=1)

        expired = bulk.expire_exports(now=job.created + timedelta(days=3650))

        assert expired == ()
        assert bulk.export_status(job.id).status is ExportStatus.IN_PROGRESS


class TestConcurrencyCap:
    def test_kick_off_beyond_the_cap_is_refused(self, client: SyncClient, tmp_path: Any) -> None:
        """With max_active_exports=2 a third running job is refused with 429 (STATUS: Too Many Requests)."""
        bulk = client.bulk(tmp_path / "exports", settings=settings(max_active_exports=2))
        bulk.start_export("system")
        bulk.start_export("system")

        with pytest.raises(TooManyRequests) as raised:
            bulk.start_export("system")
        assert raised.value.http_status == 429

    def test_a_finished_job_frees_its_slot(self, client: SyncClient, tmp_path: Any) -> None:
        """Once a job completes another can be started (STATUS)."""
        bulk = client.bulk(tmp_path / "exports", settings=settings(max_active_exports=1))
        first = bulk.start_export("system")
        bulk.run_export(first.id)

        second = bulk.start_export("system")

        assert second.status is ExportStatus.ACCEPTED

    def test_the_cap_is_per_tenant(
        self, client: SyncClient, new_client: Any, tmp_path: Any
    ) -> None:
        """A tenant at its cap does not stop another tenant from exporting (STATUS)."""
        bulk = client.bulk(tmp_path / "exports", settings=settings(max_active_exports=1))
        bulk.start_export("system")

        other = bulk.for_client(new_client()).start_export("system")

        assert other.status is ExportStatus.ACCEPTED


class TestResume:
    def test_a_restarted_engine_resumes_from_the_cursor(
        self, client: SyncClient, bulk: SyncBulk
    ) -> None:
        """A job half done before a restart finishes afterwards with every resource exactly once (STATUS)."""
        ids = seed_patients(client, 7)
        job = bulk.start_export("system")
        bulk.run_export(job.id, max_resources=3)

        restarted = bulk.restart()
        done = restarted.run_export(job.id)

        assert done.status is ExportStatus.COMPLETE
        exported = [resource["id"] for resource in restarted.exported(job.id)]
        assert sorted(exported) == ids

    def test_a_crash_mid_write_neither_duplicates_nor_loses_lines(
        self, client: SyncClient, tmp_path: Any
    ) -> None:
        """The engine dies half-way through writing page 2; after restart each of 7 patients is in the output once (STATUS)."""
        ids = seed_patients(client, 7)
        crashing = client.bulk(
            CrashingOutput(tmp_path / "exports", crash_at=2), settings=settings()
        )
        job = crashing.start_export("system")
        with pytest.raises(Crash):
            crashing.run_export(job.id)

        restarted = crashing.restart(FilesystemOutputStore(tmp_path / "exports"))
        done = restarted.run_export(job.id)

        assert done.status is ExportStatus.COMPLETE
        exported = [resource["id"] for resource in restarted.exported(job.id)]
        assert exported == ids
        assert [entry["count"] for entry in restarted.manifest(job.id)["output"]] == [7]
