"""SQLite-specific behaviour of the Bulk Data primitives (``reference_impl/sqlite/_bulk.py``).

The bulk suites check the contract; these tests check what only a database file has:
an export resumes after the database is really closed and reopened, the active-job cap
holds when several connections insert at once, exports carry the stored JSON text
byte for byte, and the scans of snapshot versions older than the current ones (decided
in Python, not on ``search_index``) agree with the in-memory backend.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from helios_conformance import (
    BackendConfig,
    BulkJobRecord,
    ExportScan,
    PatientCompartment,
    TenantContext,
    TooManyRequests,
)
from helios_conformance.bulk import (
    BulkSettings,
    ExportRequest,
    ExportService,
    ExportStatus,
    FilesystemOutputStore,
)
from helios_conformance.testing import MemoryBackend
from reference_impl.sqlite import SQLiteBackend, open_sqlite_backend

A = TenantContext.of("a")
B = TenantContext.of("b")


async def _open(path: Path) -> SQLiteBackend:
    return await open_sqlite_backend(BackendConfig(url=str(path)))


def _observation(ident: str, patient: str, code: str = "29463-7") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": ident,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
    }


async def _seed(backend: Any, context: TenantContext, patients: int, per_patient: int) -> None:
    for number in range(patients):
        pid = f"p{number:03d}"
        await backend.create_or_update(
            context, "Patient", pid, {"resourceType": "Patient", "id": pid}
        )
        for k in range(per_patient):
            oid = f"o{number:03d}-{k}"
            await backend.create_or_update(context, "Observation", oid, _observation(oid, pid))


async def _exported_ids(service: ExportService, job_id: str) -> Counter[str]:
    job = await service.status(A, job_id)
    assert job.status is ExportStatus.COMPLETE
    assert job.manifest is not None
    seen: Counter[str] = Counter()
    for output in job.manifest["output"]:
        data = await service.read_output(A, job_id, output["url"])
        for line in data.decode().splitlines():
            resource = json.loads(line)
            seen[f"{resource['resourceType']}/{resource['id']}"] += 1
    return seen


def test_an_export_resumes_after_the_database_is_closed_and_reopened(tmp_path: Path) -> None:
    """Close the file mid-export, reopen it: the job ends with every resource exactly once."""
    database = tmp_path / "bulk.sqlite3"
    settings = BulkSettings(page_size=4, max_part_resources=5)

    async def first_half() -> str:
        backend = await _open(database)
        try:
            await _seed(backend, A, patients=9, per_patient=2)
            # Another tenant's data must not leak into the export.
            await _seed(backend, B, patients=2, per_patient=1)
            service = ExportService(backend, FilesystemOutputStore(tmp_path / "out"), settings)
            job = await service.kick_off(A, ExportRequest.from_query("system"))
            job = await service.run(A, job.id, max_resources=11)
            assert (job.status, job.exported) == (ExportStatus.IN_PROGRESS, 11)
            # Written after the job's snapshot: must not be exported.
            await backend.create_or_update(
                A, "Patient", "late", {"resourceType": "Patient", "id": "late"}
            )
            return job.id
        finally:
            await backend.close()

    async def second_half(job_id: str) -> Counter[str]:
        backend = await _open(database)
        try:
            service = ExportService(backend, FilesystemOutputStore(tmp_path / "out"), settings)
            job = await service.run(A, job_id)
            assert job.status is ExportStatus.COMPLETE
            return await _exported_ids(service, job_id)
        finally:
            await backend.close()

    job_id = asyncio.run(first_half())
    seen = asyncio.run(second_half(job_id))

    expected = {f"Patient/p{n:03d}" for n in range(9)} | {
        f"Observation/o{n:03d}-{k}" for n in range(9) for k in range(2)
    }
    assert set(seen) == expected
    assert max(seen.values()) == 1


def test_the_active_job_cap_holds_under_concurrent_inserts(tmp_path: Path) -> None:
    """Four connections inserting 24 jobs at once with a cap of 3: exactly 3 are stored."""
    database = tmp_path / "cap.sqlite3"

    async def scenario() -> tuple[int, int, int]:
        backends = [await _open(database) for _ in range(4)]
        try:

            async def insert(backend: SQLiteBackend, number: int) -> bool:
                record = BulkJobRecord("export", f"job{number:02d}", "accepted", "{}")
                try:
                    await backend.insert_bulk_job(
                        A,
                        record,
                        max_active=3,
                        active_statuses=frozenset({"accepted", "in-progress"}),
                    )
                except TooManyRequests:
                    return False
                return True

            results = await asyncio.gather(*(insert(backends[n % 4], n) for n in range(24)))
            stored = await backends[0].list_bulk_jobs(A, "export")
            other_tenant = await backends[1].list_bulk_jobs(B, "export")
            return sum(results), len(stored), len(other_tenant)
        finally:
            for backend in backends:
                await backend.close()

    assert asyncio.run(scenario()) == (3, 3, 0)


def test_an_export_carries_the_stored_text_unchanged(tmp_path: Path) -> None:
    """Rows and NDJSON lines are the stored JSON text byte for byte (no re-serialisation)."""
    database = tmp_path / "text.sqlite3"
    body = {
        "resourceType": "Observation",
        "id": "exact",
        "status": "final",
        "code": {"text": 'Zürich \u2028 line\nbreak "quoted"'},
        "valueQuantity": {"value": 1.50, "unit": "kg"},
    }

    async def scenario() -> tuple[str, str]:
        backend = await _open(database)
        try:
            await backend.create_or_update(A, "Observation", "exact", body)
            page = await backend.scan_export(
                A, ExportScan("Observation", datetime.now().astimezone())
            )
            service = ExportService(backend, FilesystemOutputStore(tmp_path / "out"))
            job = await service.kick_off(A, ExportRequest.from_query("system"))
            job = await service.run(A, job.id)
            assert job.manifest is not None
            data = await service.read_output(A, job.id, job.manifest["output"][0]["url"])
            (row,) = page.rows
            return row.text, data.decode()
        finally:
            await backend.close()

    text, ndjson = asyncio.run(scenario())
    with sqlite3.connect(database) as connection:
        (stored,) = connection.execute(
            "SELECT resource FROM resource_history WHERE id = 'exact'"
        ).fetchone()
    assert text == stored
    assert ndjson == stored + "\n"
    assert "\n" not in stored


@pytest.mark.parametrize(
    ("filters", "compartment"),
    [
        ((), None),
        (((("code", "http://loinc.org|29463-7"),),), None),
        (((("subject:Patient.gender", "female"),),), None),
        ((), PatientCompartment(("subject",), None)),
        ((), PatientCompartment(("subject",), frozenset({"p1"}))),
        (((("code", "http://loinc.org|8302-2"),),), PatientCompartment(("subject",), None)),
    ],
    ids=["all", "filter", "chain", "all-patients", "one-patient", "filter-and-compartment"],
)
def test_old_snapshot_versions_scan_as_the_memory_backend_does(
    tmp_path: Path,
    filters: tuple[tuple[tuple[str, str], ...], ...],
    compartment: PatientCompartment | None,
) -> None:
    """Resources changed after ``as_of`` are exported as their snapshot version was."""

    async def changes(backend: Any) -> datetime:
        for pid, gender in (("p1", "female"), ("p2", "male"), ("p3", "female")):
            body = {"resourceType": "Patient", "id": pid, "gender": gender}
            await backend.create_or_update(A, "Patient", pid, body)
        await backend.create_or_update(A, "Observation", "o1", _observation("o1", "p1"))
        await backend.create_or_update(A, "Observation", "o2", _observation("o2", "p2", "8302-2"))
        await backend.create_or_update(A, "Observation", "o3", _observation("o3", "p3"))
        await backend.create_or_update(A, "Observation", "o4", _observation("o4", "p1"))
        as_of = (await backend.read(A, "Observation", "o4")).last_updated
        # After the snapshot: retarget, recode, delete, flip a gender, add more.
        await backend.update(A, "Observation", "o1", _observation("o1", "p2", "8302-2"))
        await backend.update(A, "Observation", "o2", _observation("o2", "p1"))
        await backend.delete(A, "Observation", "o3")
        await backend.delete(A, "Patient", "p3")
        await backend.update(A, "Patient", "p1", {"resourceType": "Patient", "id": "p1"})
        await backend.create_or_update(A, "Observation", "o5", _observation("o5", "p1"))
        assert isinstance(as_of, datetime)
        return as_of

    async def scan(backend: Any) -> list[tuple[str, str, list[str]]]:
        as_of = await changes(backend)
        pages = []
        cursor = None
        for resource_type in ("Patient", "Observation"):
            cursor = None
            while True:
                scanned = ExportScan(
                    resource_type,
                    as_of,
                    filters=filters if resource_type == "Observation" else (),
                    compartment=compartment,
                    cursor=cursor,
                    limit=1,
                )
                page = await backend.scan_export(A, scanned)
                pages.append(
                    (
                        resource_type,
                        str(page.next_cursor),
                        [f"{row.resource_id}@{row.version_id}={row.text}" for row in page.rows],
                    )
                )
                cursor = page.next_cursor
                if cursor is None:
                    break
        return pages

    async def both() -> tuple[Any, Any]:
        memory = MemoryBackend()
        sqlite = await _open(tmp_path / "snapshot.sqlite3")
        try:
            return await scan(memory), await scan(sqlite)
        finally:
            await sqlite.close()

    expected, actual = asyncio.run(both())
    # Texts differ only in lastUpdated (two clocks); compare ids, versions and shapes.
    assert _shape(actual) == _shape(expected)


def _shape(pages: list[tuple[str, str, list[str]]]) -> list[tuple[str, str, list[str]]]:
    return [(kind, cursor, [row.split("=", 1)[0] for row in rows]) for kind, cursor, rows in pages]
