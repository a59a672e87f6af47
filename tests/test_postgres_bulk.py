"""PostgreSQL-specific behaviour of the Bulk Data primitives (``reference_impl/postgres/_bulk.py``).

The bulk suites check the contract; these tests check what only PostgreSQL has: the
active-job cap under concurrent kick-offs on several connections and backends, job
tables in tenant schemas (also those created before migration 4) under forced
row-level security, a page as one statement, a snapshot that a write in flight cannot
slip into, the stored text byte for byte, resuming with another backend process, the
Python side (old snapshot versions, chains) agreeing with the in-memory backend page
for page, and a compartment-restricted caller's export, which the suites gate on
``tenancy.compartment`` (not declared: reads and search still refuse such callers).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from helios_conformance import (
    AccessDenied,
    BackendConfig,
    BulkJobRecord,
    ExportScan,
    PatientCompartment,
    TenantContext,
    TenantPermissions,
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
from reference_impl.postgres import PostgresBackend, _server, open_postgres_backend
from reference_impl.postgres._schema import APP_ROLE

asyncpg = pytest.importorskip("asyncpg", reason="the postgres extra is not installed")


T = TypeVar("T")
Run = Callable[[Awaitable[T]], T]

A = TenantContext.of("a")
B = TenantContext.of("b")
ACTIVE = frozenset({"accepted", "in-progress"})


# -- fixtures -----------------------------------------------------------------------


def _direct(server: _server.Server, backend: PostgresBackend, **options: str) -> BackendConfig:
    """A config for a second backend (another "process") on ``backend``'s database."""
    dsn = server.dsn.replace("/postgres?", f"/{backend.database}?")
    if dsn == server.dsn:
        pytest.skip("cannot rewrite this DSN's database")
    return BackendConfig(url=dsn, options={"database": "direct", **options})


async def _superuser_fetch(backend: PostgresBackend, sql: str, *args: Any) -> list[Any]:
    connection = await asyncpg.connect(**backend.connect_kwargs())
    try:
        return list(await connection.fetch(sql, *args))
    finally:
        await connection.close()


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


async def _exported_ids(
    service: ExportService, context: TenantContext, job_id: str
) -> Counter[str]:
    job = await service.status(context, job_id)
    assert job.status is ExportStatus.COMPLETE, job
    assert job.manifest is not None
    seen: Counter[str] = Counter()
    for output in job.manifest["output"]:
        data = await service.read_output(context, job_id, output["url"])
        for line in data.decode().splitlines():
            resource = json.loads(line)
            seen[f"{resource['resourceType']}/{resource['id']}"] += 1
    return seen


# -- the job store -------------------------------------------------------------------------


@pytest.mark.parametrize("tenancy", ["shared", "schema"])
def test_the_active_job_cap_holds_under_concurrent_inserts(
    run: Run[Any], open_backend: Any, server: _server.Server, tenancy: str
) -> None:
    """Two backends, eight connections, 24 kick-offs at once with a cap of 3: exactly 3 stored.

    Repeated for several tenants: a count-then-insert race needs a few tries to show.
    """
    first = open_backend(tenancy=tenancy)
    second = run(open_postgres_backend(_direct(server, first, tenancy=tenancy)))
    tenants = [TenantContext.of(f"cap{n}") for n in range(8)]

    async def warm(backend: PostgresBackend) -> None:
        # Every pool connection open, and each tenant's schema made, before the race.
        await asyncio.gather(*(backend.count(context) for context in tenants * 4))

    async def kick_offs(context: TenantContext) -> tuple[int, int, int]:
        async def insert(backend: PostgresBackend, number: int) -> bool:
            record = BulkJobRecord("export", f"job{number:02d}", "accepted", "{}")
            try:
                await backend.insert_bulk_job(context, record, max_active=3, active_statuses=ACTIVE)
            except TooManyRequests:
                return False
            return True

        results = await asyncio.gather(*(insert(first if n % 2 else second, n) for n in range(24)))
        stored = await first.list_bulk_jobs(context, "export")
        other_kind = await second.list_bulk_jobs(context, "submission")
        return sum(results), len(stored), len(other_kind)

    async def scenario() -> list[tuple[int, int, int]]:
        await warm(first)
        await warm(second)
        return [await kick_offs(context) for context in tenants]

    try:
        assert run(scenario()) == [(3, 3, 0)] * len(tenants)
    finally:
        run(second.close())


def test_job_tables_live_in_the_tenant_schema(run: Run[Any], open_backend: Any) -> None:
    """tenancy=schema: each tenant's jobs and entries are in its schema, forced under RLS."""
    backend = open_backend(tenancy="schema")
    for context in (A, B):
        record = BulkJobRecord("submission", f"s-{context.tenant}", "in-progress", "{}")
        run(backend.insert_bulk_job(context, record))
    run(backend.delete_bulk_job(B, "submission", "s-b"))
    schema_a = run(backend.tenant_location(A)).name
    jobs = run(_superuser_fetch(backend, f'SELECT tenant, id FROM "{schema_a}".bulk_jobs'))
    assert [tuple(row) for row in jobs] == [("a", "s-a")]
    assert run(_superuser_fetch(backend, "SELECT count(*) FROM helios.bulk_jobs"))[0][0] == 0
    forced = run(
        _superuser_fetch(
            backend,
            "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class"
            " WHERE relnamespace = $1::regnamespace AND relname LIKE 'bulk%' AND relkind = 'r'"
            " ORDER BY relname",
            schema_a,
        )
    )
    assert [tuple(row) for row in forced] == [
        ("bulk_entries", True, True),
        ("bulk_jobs", True, True),
    ]


def test_migration_3_reaches_existing_tenant_schemas(
    run: Run[Any], server: _server.Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database at version 3 with a tenant schema gets bulk tables and the export index
    there; a schema made after migration 4 has them and the composition index too."""
    from reference_impl.postgres import _schema

    name = f"m{uuid.uuid4().hex[:12]}"

    async def scenario() -> tuple[list[str], list[str], list[str]]:
        admin = await asyncpg.connect(dsn=server.dsn)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
            connection = await asyncpg.connect(dsn=server.dsn, database=name)
            try:
                monkeypatch.setattr(_schema, "SCHEMA_VERSION", 3)
                assert await _schema.migrate(connection) == 3
                old = await connection.fetchval("SELECT helios.ensure_tenant_schema('old')")
                monkeypatch.undo()
                assert await _schema.migrate(connection) == _schema.SCHEMA_VERSION - 3
                new = await connection.fetchval("SELECT helios.ensure_tenant_schema('new')")
                tables = await connection.fetch(
                    "SELECT table_schema FROM information_schema.tables"
                    " WHERE table_name IN ('bulk_jobs', 'bulk_entries')"
                    " GROUP BY 1 HAVING count(*) = 2 ORDER BY 1"
                )
                indexes = await connection.fetch(
                    "SELECT schemaname FROM pg_indexes"
                    " WHERE indexname = 'resources_export_order' ORDER BY 1"
                )
                referenced = await connection.fetch(
                    "SELECT schemaname FROM pg_indexes"
                    " WHERE indexname = 'search_index_referenced' ORDER BY 1"
                )
                assert [r[0] for r in referenced] == sorted([old, new, "helios"])
                return sorted([old, new, "helios"]), [r[0] for r in tables], [r[0] for r in indexes]
            finally:
                await connection.close()
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()

    expected, tables, indexes = run(scenario())
    assert tables == expected
    assert indexes == expected


def test_bulk_rows_are_kept_apart_by_the_database(run: Run[Any], open_backend: Any) -> None:
    """As the application role, a query without a tenant filter sees only the tenant it set."""
    backend = open_backend()
    for context in (A, B):
        run(backend.insert_bulk_job(context, BulkJobRecord("export", "j", "accepted", "{}")))

    async def as_application() -> tuple[list[Any], list[Any], str | None]:
        connection = await asyncpg.connect(**backend.connect_kwargs())
        try:
            await connection.execute(f"SET ROLE {APP_ROLE}")
            nothing_set = await connection.fetch("SELECT tenant FROM helios.bulk_jobs")
            await connection.execute("SELECT set_config('helios.tenant', 'a', false)")
            rows = await connection.fetch("SELECT tenant, id FROM helios.bulk_jobs")
            refused = None
            try:
                await connection.execute(
                    "INSERT INTO helios.bulk_entries (tenant, submission, seq, manifest_url,"
                    " source_url, line, outcome) VALUES ('b', 's', 1, 'm', 'u', 1, 'success')"
                )
            except asyncpg.PostgresError as exc:
                refused = exc.sqlstate
            return list(nothing_set), [tuple(row) for row in rows], refused
        finally:
            await connection.close()

    nothing_set, rows, refused = run(as_application())
    assert nothing_set == []
    assert rows == [("a", "j")]
    assert refused == "42501"  # new row violates row-level security policy


# -- export scans ---------------------------------------------------------------------------


def test_each_page_and_job_call_is_one_statement(
    run: Run[Any], open_backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page (filtered in SQL or not) and every job-store call is one statement: one round trip."""
    backend = open_backend()
    run(_seed(backend, A, patients=5, per_patient=2))
    as_of = datetime.now(UTC)
    pool = backend._pool
    assert pool is not None
    statements: list[str] = []
    original = type(pool).fetch

    async def counting(self: Any, sql: str, *args: Any, **kwargs: Any) -> Any:
        statements.append(sql)
        return await original(self, sql, *args, **kwargs)

    run(backend.count(A))  # the registry is loaded by the first call that needs it
    run(backend.search(A, "Patient", []))
    monkeypatch.setattr(type(pool), "fetch", counting)

    def statements_of(awaitable: Awaitable[Any]) -> int:
        statements.clear()
        run(awaitable)
        return len(statements)

    record = BulkJobRecord("submission", "s1", "in-progress", "{}")
    loinc = (("code", "http://loinc.org|29463-7"),)
    scans = [
        ExportScan("Observation", as_of, limit=3),
        ExportScan("Observation", as_of, filters=(loinc,), limit=3, cursor="o001-0"),
        ExportScan("Observation", as_of, compartment=PatientCompartment(("subject",)), limit=3),
        ExportScan("Patient", as_of, since=as_of - timedelta(days=1), limit=100),
    ]
    assert [statements_of(backend.scan_export(A, scan)) for scan in scans] == [1, 1, 1, 1]
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: backend.stored_resource_types(A),
        lambda: backend.insert_bulk_job(A, record, max_active=2, active_statuses=ACTIVE),
        lambda: backend.load_bulk_job(A, "submission", "s1"),
        lambda: backend.save_bulk_job(A, record, expected_revision=1),
        lambda: backend.list_bulk_jobs(A, "submission"),
        lambda: backend.list_submission_entries(A, "s1", descending=True),
        lambda: backend.delete_bulk_job(A, "submission", "s1"),
    ]
    assert [statements_of(call()) for call in calls] == [1] * len(calls)


def test_a_page_waits_for_a_write_in_flight_before_its_snapshot(
    run: Run[Any], open_backend: Any
) -> None:
    """A write stamped at or before as_of but not yet committed is waited for, not missed."""
    backend = open_backend()
    run(backend.create_or_update(A, "Patient", "early", {"resourceType": "Patient", "id": "early"}))
    as_of = datetime.now(UTC)
    late_text = '{"resourceType":"Patient","id":"late"}'

    async def scenario() -> tuple[bool, list[str], datetime]:
        # A writer that drew its instant (before as_of) under the tenant's lock and
        # has not committed yet, written by hand as write_version would.
        writer = await asyncpg.connect(**backend.connect_kwargs())
        try:
            async with writer.transaction():
                await writer.execute("SELECT pg_advisory_xact_lock(hashtextextended('a', 0))")
                stamp = as_of - timedelta(milliseconds=1)
                await writer.execute(
                    "INSERT INTO helios.resource_history (tenant, resource_type, id, version_id,"
                    " last_updated, deleted, resource_text)"
                    " VALUES ('a', 'Patient', 'late', 1, $1, false, $2)",
                    stamp,
                    late_text,
                )
                await writer.execute(
                    "INSERT INTO helios.resources (tenant, resource_type, id, version_id,"
                    " last_updated, deleted, resource_text)"
                    " VALUES ('a', 'Patient', 'late', 1, $1, false, $2)",
                    stamp,
                    late_text,
                )
                scan = asyncio.create_task(backend.scan_export(A, ExportScan("Patient", as_of)))
                await asyncio.sleep(0.5)
                waited = not scan.done()
        finally:
            await writer.close()
        page = await scan
        after = await backend.create_or_update(
            A, "Patient", "after", {"resourceType": "Patient", "id": "after"}
        )
        return waited, [row.resource_id for row in page.rows], after[0].last_updated

    waited, ids, written_after = run(scenario())
    assert waited
    assert ids == ["early", "late"]
    assert written_after > as_of


def test_an_export_carries_the_stored_text_unchanged(
    run: Run[Any], open_backend: Any, tmp_path: Path
) -> None:
    """Rows and NDJSON lines are the stored JSON text byte for byte (no re-serialisation)."""
    backend = open_backend()
    body = {
        "resourceType": "Observation",
        "id": "exact",
        "status": "final",
        "code": {"text": 'Zürich \u2028 line\nbreak "quoted" \U0001f600'},
        "valueQuantity": {"value": 1.50, "unit": "kg"},
    }

    async def scenario() -> tuple[str, str]:
        await backend.create_or_update(A, "Observation", "exact", body)
        page = await backend.scan_export(A, ExportScan("Observation", datetime.now(UTC)))
        service = ExportService(backend, FilesystemOutputStore(tmp_path / "out"))
        job = await service.kick_off(A, ExportRequest.from_query("system"))
        job = await service.run(A, job.id)
        assert job.manifest is not None
        data = await service.read_output(A, job.id, job.manifest["output"][0]["url"])
        (row,) = page.rows
        return row.text, data.decode()

    text, ndjson = run(scenario())
    [(stored,)] = run(
        _superuser_fetch(
            backend, "SELECT resource_text FROM helios.resource_history WHERE id = 'exact'"
        )
    )
    assert text == stored
    assert ndjson == stored + "\n"
    assert "\n" not in stored


def test_an_export_resumes_in_another_backend_process(
    run: Run[Any], open_backend: Any, server: _server.Server, tmp_path: Path
) -> None:
    """Close the backend mid-export, resume with another on the same database: each resource once."""
    first = open_backend()
    settings = BulkSettings(page_size=4, max_part_resources=5)

    async def first_half() -> str:
        await _seed(first, A, patients=9, per_patient=2)
        # Another tenant's data must not leak into the export.
        await _seed(first, B, patients=2, per_patient=1)
        service = ExportService(first, FilesystemOutputStore(tmp_path / "out"), settings)
        job = await service.kick_off(A, ExportRequest.from_query("system"))
        job = await service.run(A, job.id, max_resources=11)
        assert (job.status, job.exported) == (ExportStatus.IN_PROGRESS, 11)
        # Written after the job's snapshot: must not be exported.
        await first.create_or_update(
            A, "Patient", "late", {"resourceType": "Patient", "id": "late"}
        )
        await first.update(A, "Observation", "o008-1", _observation("o008-1", "p000"))
        return job.id

    async def second_half(job_id: str) -> Counter[str]:
        second = await open_postgres_backend(_direct(server, first))
        try:
            service = ExportService(second, FilesystemOutputStore(tmp_path / "out"), settings)
            job = await service.run(A, job_id)
            assert job.status is ExportStatus.COMPLETE
            return await _exported_ids(service, A, job_id)
        finally:
            await second.close()

    job_id = run(first_half())
    run(first.close())
    seen = run(second_half(job_id))

    expected = {f"Patient/p{n:03d}" for n in range(9)} | {
        f"Observation/o{n:03d}-{k}" for n in range(9) for k in range(2)
    }
    assert set(seen) == expected
    assert max(seen.values()) == 1


@pytest.mark.parametrize(
    ("filters", "compartment"),
    [
        ({}, None),
        ({"Observation": ((("code", "http://loinc.org|29463-7"),),)}, None),
        ({"Observation": ((("subject:Patient.gender", "female"),),)}, None),
        ({"Patient": ((("_has:Observation:subject:code", "8302-2"),),)}, None),
        ({}, PatientCompartment(("subject",), None)),
        ({}, PatientCompartment(("subject",), frozenset({"p1"}))),
        (
            {"Observation": ((("code", "http://loinc.org|8302-2"),),)},
            PatientCompartment(("subject",), None),
        ),
    ],
    ids=["all", "filter", "chain", "has", "all-patients", "one-patient", "filter-and-compartment"],
)
def test_old_snapshot_versions_scan_as_the_memory_backend_does(
    run: Run[Any],
    open_backend: Any,
    filters: dict[str, tuple[tuple[tuple[str, str], ...], ...]],
    compartment: PatientCompartment | None,
) -> None:
    """Resources changed after as_of are exported as their snapshot version was, page for page."""

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
        for resource_type in ("Patient", "Observation"):
            cursor = None
            while True:
                page = await backend.scan_export(
                    A,
                    ExportScan(
                        resource_type,
                        as_of,
                        filters=filters.get(resource_type, ()),
                        compartment=compartment,
                        cursor=cursor,
                        limit=1,
                    ),
                )
                pages.append(
                    (
                        resource_type,
                        str(page.next_cursor),
                        [f"{row.resource_id}@{row.version_id}" for row in page.rows],
                    )
                )
                cursor = page.next_cursor
                if cursor is None:
                    break
        return pages

    backend = open_backend()
    expected = run(scan(MemoryBackend()))
    actual = run(scan(backend))
    assert actual == expected


# -- a compartment-restricted caller ----------------------------------------------------------


def test_a_compartment_restricted_caller_exports_only_its_compartment(
    run: Run[Any], open_backend: Any, tmp_path: Path
) -> None:
    """Limited to Patient/p1: a patient-level export holds p1's compartment, a system one is refused.

    The suites' TestCompartmentPermission, which they gate on tenancy.compartment.
    """
    backend = open_backend()
    restricted = TenantContext(A.tenant, TenantPermissions(compartment="Patient/p1"))

    async def scenario() -> Counter[str]:
        for pid in ("p1", "p2"):
            await backend.create_or_update(
                A, "Patient", pid, {"resourceType": "Patient", "id": pid}
            )
        await backend.create_or_update(A, "Observation", "o-p1", _observation("o-p1", "p1"))
        await backend.create_or_update(A, "Observation", "o-p2", _observation("o-p2", "p2"))
        service = ExportService(backend, FilesystemOutputStore(tmp_path / "out"))
        with pytest.raises(AccessDenied, match="compartment"):
            await service.kick_off(restricted, ExportRequest.from_query("system"))
        # Without _type the stored types are listed; with it, they are not.
        exported: Counter[str] = Counter()
        for query in ("", "_type=Patient,Observation"):
            job = await service.kick_off(restricted, ExportRequest.from_query("patient", query))
            job = await service.run(restricted, job.id)
            exported.update(await _exported_ids(service, restricted, job.id))
        # A direct scan is narrowed too, even when it asks for everyone.
        page = await backend.scan_export(
            restricted,
            ExportScan(
                "Observation", datetime.now(UTC), compartment=PatientCompartment(("subject",))
            ),
        )
        exported.update(f"scan:{row.resource_id}" for row in page.rows)
        return exported

    assert run(scenario()) == Counter({"Patient/p1": 2, "Observation/o-p1": 2, "scan:o-p1": 1})
