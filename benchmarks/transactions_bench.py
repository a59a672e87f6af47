"""Transaction benchmark for the SQLite and PostgreSQL reference backends (not a timed test).

Run ``python -m benchmarks.transactions_bench [--backend sqlite|postgres] [--runs N]
[--singles N] [--url DSN]``. It reports, in one run on one machine, on a WAL file
database (``synchronous=NORMAL``, the backend's own settings) or on PostgreSQL (the
``--url`` server, else a throwaway one as the suites use):

- **100-entry transaction Bundles** through ``process_bundle`` (p50/p95 over
  ``--runs`` Bundles): per Bundle a quarter of the entries are Patient POSTs with a
  ``urn:uuid`` fullUrl and a conditional create (``ifNoneExist`` on the MRN), the rest
  Observation POSTs whose ``subject`` is the ``urn:uuid`` of one of those Patients.
  ``--matched`` of the conditional creates (default 20 %) name an MRN an earlier
  Bundle created, so they match (200, nothing written) and the references to them
  resolve to the existing Patient; the others create (201);
- **single-resource create transactions** per second: a transaction Bundle with one
  Patient POST, ``--singles`` times in a row (and their p50/p95);
- next to the **raw single-row commit floor** measured in the same run: a plain
  ``sqlite3`` connection to another file in the same directory, WAL,
  ``synchronous=NORMAL``, ``BEGIN IMMEDIATE; INSERT`` one resource row ``; COMMIT``,
  ``--singles`` times, in commits per second; on PostgreSQL a plain asyncpg
  connection to the same database, ``BEGIN; INSERT`` one row into a table of the same
  shape ``; COMMIT`` (three round trips, as few as a client can make).

"per second" is the number timed over the sum of their latencies (building each
Bundle is not timed). Every Bundle's response is checked (the expected status per
entry, in request order) and a sample of the stored Observations is checked for
resolved ``urn:uuid`` references, outside the timings. The defaults take well under a
minute; ``--runs 20 --singles 500`` is a quick run.
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
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from helios_conformance import BackendConfig, TenantContext
from reference_impl.postgres import PostgresBackend, open_postgres_backend
from reference_impl.sqlite import open_sqlite_backend

TENANT = TenantContext.of("bench")
MRN = "urn:oid:1.2.36.146.595.217.0.1"
_FAMILIES = ["Anders", "Berg", "Chen", "Dubois", "Eriksen", "Fischer", "Garcia", "Hoffmann"]
_LOINC = ["29463-7", "8302-2", "8867-4", "9279-1", "8310-5"]


def percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def patient(mrn: str, rng: random.Random) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": MRN, "value": mrn}],
        "name": [{"family": rng.choice(_FAMILIES), "given": ["Ann"]}],
        "gender": rng.choice(["female", "male"]),
        "birthDate": f"{rng.randint(1930, 2020):04d}-{rng.randint(1, 12):02d}-"
        f"{rng.randint(1, 28):02d}",
    }


def observation(subject: str, rng: random.Random) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": rng.choice(_LOINC)}]},
        "subject": {"reference": subject},
        "effectiveDateTime": f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "valueQuantity": {"value": round(rng.uniform(3, 150), 1), "unit": "kg"},
    }


class BundleMaker:
    """Transaction Bundles of ``entries`` entries; MRNs fresh or of earlier Bundles."""

    def __init__(self, entries: int, matched: float, seed: int) -> None:
        self.rng = random.Random(seed)
        self.patients = max(1, entries // 4)
        self.observations = entries - self.patients
        self.matched = matched
        self.created: list[str] = []  # MRNs an earlier Bundle created
        self.next_mrn = 0

    def make(self) -> tuple[dict[str, Any], list[str]]:
        """A Bundle and the statuses its response must carry, in entry order."""
        rng = self.rng
        entries: list[dict[str, Any]] = []
        expected: list[str] = []
        urns: list[str] = []
        fresh: list[str] = []
        used: set[str] = set()
        for _ in range(self.patients):
            if self.created and rng.random() < self.matched:
                mrn = rng.choice(self.created)
                if mrn in used:  # two entries with the same criteria: keep them apart
                    mrn = None
            else:
                mrn = None
            if mrn is None:
                mrn = f"MRN{self.next_mrn:08d}"
                self.next_mrn += 1
                fresh.append(mrn)
                expected.append("201")
            else:
                expected.append("200")
            used.add(mrn)
            urn = f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}"
            urns.append(urn)
            entries.append(
                {
                    "fullUrl": urn,
                    "resource": patient(mrn, rng),
                    "request": {
                        "method": "POST",
                        "url": "Patient",
                        "ifNoneExist": f"identifier={MRN}|{mrn}",
                    },
                }
            )
        for _ in range(self.observations):
            urn = f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}"
            entries.append(
                {
                    "fullUrl": urn,
                    "resource": observation(rng.choice(urns), rng),
                    "request": {"method": "POST", "url": "Observation"},
                }
            )
            expected.append("201")
        # Mix the entry order: the backend must process POSTs whatever order they arrive in.
        order = list(range(len(entries)))
        rng.shuffle(order)
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [entries[i] for i in order],
        }
        self.created.extend(fresh)
        return bundle, [expected[i] for i in order]


def check_response(response: dict[str, Any], expected: list[str]) -> None:
    statuses = [entry["response"]["status"].split()[0] for entry in response["entry"]]
    if statuses != expected:
        raise SystemExit(f"unexpected response statuses: {statuses} != {expected}")


def raw_floor(path: Path, commits: int, body: str) -> list[float]:
    """``commits`` single-row write transactions on a plain sqlite3 connection (ms each)."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute(
            "CREATE TABLE resources (tenant TEXT NOT NULL, resource_type TEXT NOT NULL,"
            " id TEXT NOT NULL, version_id INTEGER NOT NULL, last_updated INTEGER NOT NULL,"
            " deleted INTEGER NOT NULL, resource TEXT,"
            " PRIMARY KEY (tenant, resource_type, id)) WITHOUT ROWID"
        )
        timings = []
        for number in range(commits):
            start = time.perf_counter()
            connection.execute("BEGIN IMMEDIATE")
            connection.execute(
                "INSERT INTO resources VALUES ('bench', 'Patient', ?, 1, ?, 0, ?)",
                (f"raw{number:08d}", time.time_ns() // 1000, body),
            )
            connection.execute("COMMIT")
            timings.append((time.perf_counter() - start) * 1000)
        return timings
    finally:
        connection.close()


async def raw_postgres_floor(backend: PostgresBackend, commits: int, body: str) -> list[float]:
    """``commits`` single-row write transactions on a plain asyncpg connection (ms each)."""
    import asyncpg

    connection = await asyncpg.connect(**backend.connect_kwargs())
    table = f"public.raw_floor_{uuid.uuid4().hex[:8]}"
    try:
        await connection.execute(
            f"CREATE TABLE {table} (tenant text NOT NULL, resource_type text NOT NULL,"
            " id text NOT NULL, version_id bigint NOT NULL, last_updated timestamptz NOT NULL,"
            " deleted boolean NOT NULL, resource_text text,"
            " PRIMARY KEY (tenant, resource_type, id))"
        )
        insert = f"INSERT INTO {table} VALUES ('bench', 'Patient', $1, 1, now(), false, $2)"
        timings = []
        for number in range(commits):
            start = time.perf_counter()
            await connection.execute("BEGIN")
            await connection.execute(insert, f"raw{number:08d}", body)
            await connection.execute("COMMIT")
            timings.append((time.perf_counter() - start) * 1000)
        await connection.execute(f"DROP TABLE {table}")
        return timings
    finally:
        await connection.close()


def _row(name: str, timings: Sequence[float]) -> str:
    total = sum(timings) / 1000
    return (
        f"{name:44} {percentile(timings, 0.5):9.3f} {percentile(timings, 0.95):9.3f}"
        f" {len(timings) / total:10,.0f}"
    )


async def run(
    directory: Path,
    entries: int,
    runs: int,
    singles: int,
    matched: float,
    seed: int,
    backend_name: str = "sqlite",
    url: str | None = None,
) -> None:
    body = json.dumps(patient("RAW00000000", random.Random(seed + 2)))
    if backend_name == "postgres":
        backend: Any = await open_postgres_backend(
            BackendConfig(url=url, worker_id=f"txbench{os.getpid()}")
        )
        floor_name = "raw floor: BEGIN; INSERT; COMMIT (asyncpg)"
    else:
        database = directory / "transactions-bench.sqlite3"
        backend = await open_sqlite_backend(BackendConfig(url=str(database)))
        floor_name = "raw floor: BEGIN IMMEDIATE; INSERT; COMMIT"
    try:
        maker = BundleMaker(entries, matched, seed)
        print(
            f"transaction Bundles: {entries} entries ({maker.patients} conditional Patient"
            f" creates with urn:uuid fullUrls, {maker.observations} Observations referencing"
            f" them), {matched:.0%} of the conditional creates matching; {runs} Bundles"
            f" after 3 warm-up Bundles",
            flush=True,
        )
        bundle_timings: list[float] = []
        for number in range(runs + 3):
            bundle, expected = maker.make()
            start = time.perf_counter()
            response = await backend.process_bundle(TENANT, bundle)
            elapsed = (time.perf_counter() - start) * 1000
            check_response(response, expected)
            if number >= 3:
                bundle_timings.append(elapsed)
        # The urn:uuid references were rewritten to the stored Patients.
        sample = await backend.search(TENANT, "Observation", [("_count", "20")])
        for entry in sample.entries:
            assert entry.resource is not None
            reference = entry.resource["subject"]["reference"]
            if not reference.startswith("Patient/"):
                raise SystemExit(f"a urn:uuid reference was not resolved: {reference}")

        rng = random.Random(seed + 1)
        single_timings: list[float] = []
        for number in range(singles + 20):
            bundle = {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {
                        "resource": patient(f"ONE{number:08d}", rng),
                        "request": {"method": "POST", "url": "Patient"},
                    }
                ],
            }
            start = time.perf_counter()
            response = await backend.process_bundle(TENANT, bundle)
            elapsed = (time.perf_counter() - start) * 1000
            check_response(response, ["201"])
            if number >= 20:
                single_timings.append(elapsed)
        stored = await backend.count(TENANT)
        if backend_name == "postgres":
            await raw_postgres_floor(backend, 20, body)
            floor_timings = await raw_postgres_floor(backend, singles, body)
    finally:
        await backend.close()

    if backend_name != "postgres":
        raw_floor(directory / "warm.sqlite3", 20, body)
        floor_timings = raw_floor(directory / "raw-floor.sqlite3", singles, body)

    print(f"\n{stored:,} resources stored by the {backend_name} backend at the end")
    print(f"{'milliseconds':44} {'p50':>9} {'p95':>9} {'per second':>10}")
    print(_row(f"transaction Bundle, {entries} entries", bundle_timings))
    per_entry = [t / entries for t in bundle_timings]
    print(
        f"{'  (per entry)':44} {percentile(per_entry, 0.5):9.3f} {percentile(per_entry, 0.95):9.3f}"
    )
    print(_row("single-resource create transaction", single_timings))
    print(_row(floor_name, floor_timings))
    ratio = (len(floor_timings) / sum(floor_timings)) / (len(single_timings) / sum(single_timings))
    print(f"\nsingle-resource create transactions: {ratio:.1f}x slower than the raw commit floor")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.transactions_bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--entries", type=int, default=100, help="entries per transaction Bundle")
    parser.add_argument("--runs", type=int, default=100, help="Bundles timed")
    parser.add_argument(
        "--singles", type=int, default=2000, help="single-create transactions (and floor commits)"
    )
    parser.add_argument(
        "--matched", type=float, default=0.2, help="share of conditional creates that match"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--url", help="postgres: a postgresql:// DSN (default: a throwaway local server)"
    )
    parser.add_argument(
        "--directory", type=Path, help="where the SQLite files go (default: a temporary one)"
    )
    arguments = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="helios-bench-") as scratch:
        directory = arguments.directory or Path(scratch)
        directory.mkdir(parents=True, exist_ok=True)
        if any(directory.glob("*.sqlite3")):
            raise SystemExit(f"{directory} holds SQLite files; give an empty directory")
        asyncio.run(
            run(
                directory,
                arguments.entries,
                arguments.runs,
                arguments.singles,
                arguments.matched,
                arguments.seed,
                arguments.backend,
                arguments.url,
            )
        )


if __name__ == "__main__":
    main()
