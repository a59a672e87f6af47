"""Bulk Data benchmark for the SQLite and PostgreSQL reference backends (not a timed test).

Run ``python -m benchmarks.bulk_bench [--resources N] [--backend sqlite|postgres|both]``
(default 20,000 resources, both backends; the issue's figure is ``--resources 100000``).
It reports, in one run on one machine, for each backend:

- **export**: a system-level ``$export`` of the generated dataset (Patients and
  Observations, half each) through :class:`ExportService` with a filesystem output
  store, in resources/s, next to the **raw streaming floor** measured on the same
  database in the same run: for SQLite a plain ``sqlite3`` connection reading every
  current resource's stored JSON in id order and writing it out as NDJSON (no job, no
  pages, no hop); for PostgreSQL a plain asyncpg connection streaming the same column
  through a server-side cursor into an NDJSON file (no job, no pages, no function, no
  row-level security), plus, for reference, ``COPY (SELECT ...) TO STDOUT`` of it
  (the fastest way out, though its text format escapes backslashes, so its file is not
  the NDJSON export writes);
- **scan only**: the same snapshot read through ``scan_export`` page by page with
  nothing written (the storage side of export, without the engine's files and
  checkpoints);
- **submit**: a bulk submission of the same number of resources (new ids) from NDJSON
  files through :class:`SubmitService`, in resources/s.

PostgreSQL: without ``--url`` (or ``HELIOS_POSTGRES_URL``) a throwaway server is started
as the test suites do; the dataset is loaded through the backend (``create_or_update``,
``--concurrency`` calls in flight).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from helios_conformance import BackendConfig, ExportScan, TenantContext
from helios_conformance.bulk import (
    BulkSettings,
    ExportRequest,
    ExportService,
    FileSourceReader,
    FilesystemOutputStore,
    SubmissionOptions,
    SubmitService,
)
from reference_impl.postgres import PostgresBackend, open_postgres_backend
from reference_impl.sqlite import open_sqlite_backend

TENANT = TenantContext.of("bench")


def generate(count: int, seed: int, prefix: str = "") -> list[dict[str, Any]]:
    """``count`` resources: Patients and one Observation per Patient."""
    rng = random.Random(seed)
    resources: list[dict[str, Any]] = []
    for number in range(count // 2):
        pid = f"{prefix}pat{number:07d}"
        resources.append(
            {
                "resourceType": "Patient",
                "id": pid,
                "gender": rng.choice(["female", "male"]),
                "birthDate": f"{rng.randint(1930, 2020)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
                "name": [{"family": f"Fam{rng.randint(0, 999)}", "given": ["Ann"]}],
            }
        )
        resources.append(
            {
                "resourceType": "Observation",
                "id": f"{prefix}obs{number:07d}",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
                "subject": {"reference": f"Patient/{pid}"},
                "valueQuantity": {"value": round(rng.uniform(3, 150), 1), "unit": "kg"},
            }
        )
    return resources


def raw_floor(database: Path, out: Path) -> tuple[int, float]:
    """Read every live resource's stored text in id order and write NDJSON: the floor."""
    start = time.perf_counter()
    written = 0
    connection = sqlite3.connect(database)
    try:
        with out.open("w", encoding="utf-8") as sink:
            for (text,) in connection.execute(
                "SELECT resource FROM resources WHERE tenant = ? AND deleted = 0"
                " ORDER BY resource_type, id",
                (TENANT.tenant.value,),
            ):
                sink.write(text)
                sink.write("\n")
                written += 1
    finally:
        connection.close()
    return written, time.perf_counter() - start


async def _export(backend: Any, root: Path, count: int, page_size: int) -> float:
    """Seconds for a system-level export of every resource through ExportService."""
    settings = BulkSettings(page_size=page_size)
    exports = ExportService(backend, FilesystemOutputStore(root / "out"), settings)
    start = time.perf_counter()
    job = await exports.kick_off(TENANT, ExportRequest.from_query("system"))
    job = await exports.run(TENANT, job.id)
    seconds = time.perf_counter() - start
    assert job.exported == count, (job.exported, count)
    return seconds


async def _scan_only(backend: Any, count: int, page_size: int) -> float:
    """Seconds for the storage side alone: every page of every type, no job, no files."""
    as_of = datetime.now(UTC)
    start = time.perf_counter()
    scanned = 0
    for resource_type in sorted(await backend.stored_resource_types(TENANT)):
        cursor = None
        while True:
            scan = ExportScan(resource_type, as_of, cursor=cursor, limit=page_size)
            page = await backend.scan_export(TENANT, scan)
            scanned += len(page.rows)
            cursor = page.next_cursor
            if cursor is None:
                break
    seconds = time.perf_counter() - start
    assert scanned == count, (scanned, count)
    return seconds


async def _submit(backend: Any, root: Path, count: int, page_size: int) -> float:
    """Seconds for a bulk submission of ``count`` new resources from NDJSON files."""
    # One NDJSON file per type, as an export would have written them.
    files: dict[str, list[str]] = {}
    for resource in generate(count, seed=2, prefix="s"):
        files.setdefault(resource["resourceType"], []).append(json.dumps(resource))
    outputs = []
    for resource_type, lines in files.items():
        path = root / f"{resource_type}.ndjson"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        outputs.append({"type": resource_type, "url": path.as_uri()})
    submit = SubmitService(backend, FileSourceReader(), BulkSettings(page_size=page_size))
    start = time.perf_counter()
    submission = await submit.create(TENANT, submitter="bench", options=SubmissionOptions())
    await submit.add_manifest(
        TENANT, submission.id, "https://example.org/manifest.json", {"output": outputs}
    )
    await submit.process(TENANT, submission.id)
    seconds = time.perf_counter() - start
    # Every submitted line was written (next to the exported ones).
    assert await backend.count(TENANT) == 2 * count
    return seconds


def _figures(
    count: int,
    page_size: int,
    load: float,
    export: float,
    scan: float,
    floor: float,
    submit: float | None,
) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "resources": count,
        "page_size": page_size,
        "load_resources_per_s": round(count / load),
        "export_seconds": round(export, 3),
        "export_resources_per_s": round(count / export),
        "scan_only_seconds": round(scan, 3),
        "scan_only_resources_per_s": round(count / scan),
        "raw_floor_seconds": round(floor, 3),
        "raw_floor_resources_per_s": round(count / floor),
        "export_vs_floor": round(export / floor, 1),
        "scan_only_vs_floor": round(scan / floor, 1),
    }
    if submit is not None:
        figures["submit_seconds"] = round(submit, 3)
        figures["submit_resources_per_s"] = round(count / submit)
    return figures


async def bench_sqlite(count: int, page_size: int, submit: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        database = root / "bulk.sqlite3"
        backend = await open_sqlite_backend(BackendConfig(url=str(database)))
        try:
            start = time.perf_counter()
            for resource in generate(count, seed=1):
                await backend.create_or_update(
                    TENANT, resource["resourceType"], resource["id"], resource
                )
            load_seconds = time.perf_counter() - start
            export_seconds = await _export(backend, root, count, page_size)
            scan_seconds = await _scan_only(backend, count, page_size)
            floor_count, floor_seconds = raw_floor(database, root / "floor.ndjson")
            assert floor_count == count
            submit_seconds = await _submit(backend, root, count, page_size) if submit else None
        finally:
            await backend.close()
    return _figures(
        count, page_size, load_seconds, export_seconds, scan_seconds, floor_seconds, submit_seconds
    )


async def _rate_limited(
    items: list[dict[str, Any]], concurrency: int, write: Callable[[dict[str, Any]], Awaitable[Any]]
) -> None:
    pending = iter(items)

    async def worker() -> None:
        for item in pending:
            await write(item)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


# The live resources of the tenant in export order: what every floor reads.
_PG_FLOOR_QUERY = (
    "SELECT resource_text FROM helios.resources WHERE tenant = $1 AND NOT deleted"
    ' ORDER BY resource_type, id COLLATE "C"'
)


async def postgres_floors(backend: PostgresBackend, out: Path) -> tuple[int, float, float]:
    """The streaming-cursor floor (count, seconds) and the ``COPY ... TO STDOUT`` seconds."""
    import asyncpg

    connection = await asyncpg.connect(**backend.connect_kwargs())
    try:
        start = time.perf_counter()
        written = 0
        with out.open("w", encoding="utf-8") as sink:
            async with connection.transaction():
                async for (text,) in connection.cursor(
                    _PG_FLOOR_QUERY, TENANT.tenant.value, prefetch=1000
                ):
                    sink.write(text)
                    sink.write("\n")
                    written += 1
        cursor_seconds = time.perf_counter() - start
        start = time.perf_counter()
        await connection.copy_from_query(
            _PG_FLOOR_QUERY, TENANT.tenant.value, output=str(out.with_suffix(".copy"))
        )
        copy_seconds = time.perf_counter() - start
    finally:
        await connection.close()
    return written, cursor_seconds, copy_seconds


async def bench_postgres(
    count: int, page_size: int, concurrency: int, url: str | None, submit: bool
) -> dict[str, Any]:
    import asyncpg

    config = BackendConfig(
        url=url or os.environ.get("HELIOS_POSTGRES_URL"),
        worker_id=f"bulkbench{os.getpid()}",
        options={"pool_size": str(max(4, concurrency))},
    )
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        backend = await open_postgres_backend(config)
        try:

            async def write(resource: dict[str, Any]) -> None:
                await backend.create_or_update(
                    TENANT, resource["resourceType"], resource["id"], resource
                )

            start = time.perf_counter()
            await _rate_limited(generate(count, seed=1), concurrency, write)
            load_seconds = time.perf_counter() - start
            # Fresh statistics, as a loaded database would have (autovacuum lags a load).
            admin = await asyncpg.connect(**backend.connect_kwargs())
            try:
                await admin.execute("ANALYZE helios.resources; ANALYZE helios.resource_history")
            finally:
                await admin.close()
            export_seconds = await _export(backend, root, count, page_size)
            scan_seconds = await _scan_only(backend, count, page_size)
            floor_count, floor_seconds, copy_seconds = await postgres_floors(
                backend, root / "floor.ndjson"
            )
            assert floor_count == count
            exported = sum(path.stat().st_size for path in (root / "out").rglob("*.ndjson"))
            # The export wrote exactly the floor's bytes: the stored text, one per line.
            assert exported == (root / "floor.ndjson").stat().st_size
            submit_seconds = await _submit(backend, root, count, page_size) if submit else None
        finally:
            await backend.close()
    figures = _figures(
        count, page_size, load_seconds, export_seconds, scan_seconds, floor_seconds, submit_seconds
    )
    figures["copy_to_stdout_seconds"] = round(copy_seconds, 3)
    figures["copy_to_stdout_resources_per_s"] = round(count / copy_seconds)
    return figures


async def main(
    count: int, page_size: int, backends: list[str], concurrency: int, url: str | None, submit: bool
) -> dict[str, Any]:
    report: dict[str, Any] = {}
    if "sqlite" in backends:
        report["sqlite"] = await bench_sqlite(count, page_size, submit)
    if "postgres" in backends:
        report["postgres"] = await bench_postgres(count, page_size, concurrency, url, submit)
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resources", type=int, default=20_000)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument(
        "--concurrency", type=int, default=8, help="PostgreSQL writes in flight while loading"
    )
    parser.add_argument("--url", help="a PostgreSQL DSN (default: a throwaway server)")
    parser.add_argument(
        "--no-submit", action="store_true", help="skip the (slow) bulk submission figure"
    )
    arguments = parser.parse_args()
    chosen = ["sqlite", "postgres"] if arguments.backend == "both" else [arguments.backend]
    report = asyncio.run(
        main(
            arguments.resources,
            arguments.page_size,
            chosen,
            arguments.concurrency,
            arguments.url,
            not arguments.no_submit,
        )
    )
    print(json.dumps(report, indent=2, sort_keys=True))
