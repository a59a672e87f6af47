"""Bulk Data benchmark for the SQLite reference backend (not a timed test).

Run ``python -m benchmarks.bulk_bench [--resources N]`` (default 20,000; the issue's
figure is ``--resources 100000``). It reports, in one run on one machine:

- **export**: a system-level ``$export`` of the generated dataset (Patients and
  Observations, half each) through :class:`ExportService` with a filesystem output
  store, in resources/s, next to the **raw streaming floor** measured on the same file
  in the same run: a plain ``sqlite3`` connection reading every current resource's
  stored JSON in id order and writing it out as NDJSON (no job, no pages, no hop);
- **submit**: a bulk submission of the same number of resources (new ids) from NDJSON
  files through :class:`SubmitService`, in resources/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from helios_conformance import BackendConfig, TenantContext
from helios_conformance.bulk import (
    BulkSettings,
    ExportRequest,
    ExportService,
    FileSourceReader,
    FilesystemOutputStore,
    SubmissionOptions,
    SubmitService,
)
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


async def main(count: int, page_size: int) -> dict[str, Any]:
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

            settings = BulkSettings(page_size=page_size)
            exports = ExportService(backend, FilesystemOutputStore(root / "out"), settings)
            start = time.perf_counter()
            job = await exports.kick_off(TENANT, ExportRequest.from_query("system"))
            job = await exports.run(TENANT, job.id)
            export_seconds = time.perf_counter() - start
            assert job.exported == count, (job.exported, count)

            floor_count, floor_seconds = raw_floor(database, root / "floor.ndjson")
            assert floor_count == count

            # One NDJSON file per type, as an export would have written them.
            files: dict[str, list[str]] = {}
            for resource in generate(count, seed=2, prefix="s"):
                files.setdefault(resource["resourceType"], []).append(json.dumps(resource))
            outputs = []
            for resource_type, lines in files.items():
                path = root / f"{resource_type}.ndjson"
                path.write_text("\n".join(lines) + "\n", encoding="utf-8")
                outputs.append({"type": resource_type, "url": path.as_uri()})
            submit = SubmitService(backend, FileSourceReader(), settings)
            start = time.perf_counter()
            submission = await submit.create(TENANT, submitter="bench", options=SubmissionOptions())
            await submit.add_manifest(
                TENANT, submission.id, "https://example.org/manifest.json", {"output": outputs}
            )
            await submit.process(TENANT, submission.id)
            submit_seconds = time.perf_counter() - start
            # Every submitted line was written (next to the exported ones).
            assert await backend.count(TENANT) == 2 * count
        finally:
            await backend.close()
    return {
        "resources": count,
        "page_size": page_size,
        "load_resources_per_s": round(count / load_seconds),
        "export_seconds": round(export_seconds, 3),
        "export_resources_per_s": round(count / export_seconds),
        "raw_floor_seconds": round(floor_seconds, 3),
        "raw_floor_resources_per_s": round(count / floor_seconds),
        "export_vs_floor": round(export_seconds / floor_seconds, 1),
        "submit_seconds": round(submit_seconds, 3),
        "submit_resources_per_s": round(count / submit_seconds),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resources", type=int, default=20_000)
    parser.add_argument("--page-size", type=int, default=1000)
    arguments = parser.parse_args()
    report = asyncio.run(main(arguments.resources, arguments.page_size))
    print(json.dumps(report, indent=2, sort_keys=True))
