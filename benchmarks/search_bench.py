"""Search benchmark for the SQLite reference backend (not a timed test).

Run ``python -m benchmarks.search_bench [--resources N]`` (default 100,000 Patients).
It reports, in one run on one machine:

- the index extraction rate (FHIRPath extraction + normalisation + the SQL row
  tuples, resources/s on one core), and the load rate through ``create_or_update``;
- first-page search latency (p50/p95, ``_count`` 50 by default) through the backend's
  ``search`` for a selective token (``identifier=system|value``), an unselective token
  (``gender=female``), a string prefix (``family=<3 letters>``) and a date range
  (``birthdate=eq<year>``: birth dates inside that year),
- each next to the raw floor: the equivalent hand-written SQL against the same
  ``search_index``/``resources`` tables on a plain ``sqlite3`` connection to the same
  file (no parsing, no aiosqlite hop, no JSON decoding), and the ratio;
- over the Observations of the dataset (``--observation-ratio`` per Patient, default
  0.25, each referencing a random Patient as ``subject``): a chained search
  (``subject:Patient.family=<3 letters>``, and a selective one on the Patient's MRN,
  ``subject:Patient.identifier=system|value``) and a reference search with 250 values
  (``subject=Patient/a,Patient/b,...``, 250 Patients that have Observations), each
  next to a hand-written SQL join floor (``search_index`` joined to itself in a
  fixed order, no liveness check of the Patients, ids bound through ``json_each``)
  measured in the same run. The first page of each is checked against its floor once
  before timing.

Loading 100,000 Patients (and 25,000 Observations) takes several minutes (extraction
is the bulk of it, see the extraction rate); ``--resources 20000`` gives the same
picture faster.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from helios_conformance import BackendConfig, TenantContext
from helios_conformance.search import date_range, fold, index_resource, parse_resource_json
from reference_impl.sqlite import open_sqlite_backend
from reference_impl.sqlite._search import index_values, to_micros

TENANT = TenantContext.of("bench")
MRN = "urn:oid:1.2.36.146.595.217.0.1"
_SYLLABLES = ["an", "ber", "cha", "dor", "el", "fen", "gar", "hol", "is", "jor", "ka", "lin", "mo", "nor", "os", "pel", "qui", "ros", "sta", "tur", "ul", "ven", "wel", "xu", "yor", "zim"]  # fmt: skip
_GIVEN = ["Ann", "Bob", "Chloé", "Dmitri", "Eve", "Farah", "Günter", "Hiro", "Ines", "José"]


def _family(rng: random.Random) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()


def generate_patients(count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` Patients with a unique MRN, a family name, a gender and a birth date."""
    rng = random.Random(seed)
    patients = []
    for number in range(count):
        year = rng.randint(1930, 2020)
        patients.append(
            {
                "resourceType": "Patient",
                "id": f"pat{number:07d}",
                "identifier": [{"system": MRN, "value": f"MRN{number:07d}"}],
                "active": rng.random() < 0.9,
                "name": [{"family": _family(rng), "given": [rng.choice(_GIVEN)]}],
                "gender": rng.choice(["female", "male", "other", "unknown"]),
                "birthDate": f"{year:04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                "address": [{"city": rng.choice(["Boston", "Zürich", "Lyon", "Osaka"])}],
            }
        )
    return patients


def generate_observations(
    count: int, patients: Sequence[dict[str, Any]], seed: int
) -> list[dict[str, Any]]:
    """``count`` Observations, each with a random Patient of ``patients`` as subject."""
    rng = random.Random(seed)
    observations = []
    for number in range(count):
        patient = rng.choice(patients)
        observations.append(
            {
                "resourceType": "Observation",
                "id": f"obs{number:07d}",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": rng.choice(_LOINC)}]},
                "subject": {"reference": f"Patient/{patient['id']}"},
                "effectiveDateTime": f"{rng.randint(2000, 2024):04d}-{rng.randint(1, 12):02d}-"
                f"{rng.randint(1, 28):02d}",
                "valueQuantity": {"value": round(rng.uniform(3, 150), 1), "unit": "kg"},
            }
        )
    return observations


_LOINC = ["29463-7", "8302-2", "8867-4", "9279-1", "8310-5"]


def percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def _timed(call: Callable[[], Awaitable[Any]], repeats: int) -> list[float]:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        await call()
        timings.append((time.perf_counter() - start) * 1000)
    return timings


def _raw_timed(
    connection: sqlite3.Connection, sql: str, parameters: Callable[[], Sequence[Any]], repeats: int
) -> tuple[list[float], int]:
    timings = []
    found = 0
    for _ in range(repeats):
        arguments = parameters()
        start = time.perf_counter()
        rows = connection.execute(sql, arguments).fetchall()
        timings.append((time.perf_counter() - start) * 1000)
        found = len(rows)
    return timings, found


# The raw floor: the same lookups written by hand, returning the page of (id, JSON).
_RAW_PAGE = (
    "SELECT r.id, r.resource FROM resources r WHERE r.tenant = 'bench'"
    " AND r.resource_type = 'Patient' AND r.deleted = 0 AND r.id IN ("
    " SELECT i.resource_id FROM search_index i WHERE i.tenant = 'bench'"
    " AND i.resource_type = 'Patient' AND {condition}) ORDER BY r.id LIMIT ?"
)
RAW_TOKEN = _RAW_PAGE.format(condition="i.param = 'identifier' AND i.code = ? AND i.system = ?")
RAW_GENDER = _RAW_PAGE.format(condition="i.param = 'gender' AND i.code = ?")
RAW_PREFIX = _RAW_PAGE.format(condition="i.param = 'family' AND i.text >= ? AND i.text < ?")
RAW_DATE = _RAW_PAGE.format(
    condition="i.param = 'birthdate' AND i.date_low BETWEEN ?1 AND ?2 AND i.date_high <= ?2"
)

# The Observation floors: a page of Observations whose subject row points at Patients
# picked by a join on the Patients' own index rows (chains) or by an id list. CROSS
# JOIN fixes the join order (the Patient rows drive), as a hand-tuned query would.
_RAW_OBSERVATIONS = (
    "SELECT r.id, r.resource FROM resources r WHERE r.tenant = 'bench'"
    " AND r.resource_type = 'Observation' AND r.deleted = 0 AND r.id IN ("
    " SELECT s.resource_id FROM {source} WHERE s.tenant = 'bench'"
    " AND s.resource_type = 'Observation' AND s.param = 'subject'"
    " AND s.ref_type = 'Patient' AND {condition}) ORDER BY r.id LIMIT ?"
)
_PATIENT_JOIN = (
    "search_index p CROSS JOIN search_index s ON p.tenant = 'bench'"
    " AND p.resource_type = 'Patient' AND s.ref_id = p.resource_id"
)
RAW_CHAIN_PREFIX = _RAW_OBSERVATIONS.format(
    source=_PATIENT_JOIN, condition="p.param = 'family' AND p.text >= ? AND p.text < ?"
)
RAW_CHAIN_TOKEN = _RAW_OBSERVATIONS.format(
    source=_PATIENT_JOIN, condition="p.param = 'identifier' AND p.code = ? AND p.system = ?"
)
RAW_REFERENCES = _RAW_OBSERVATIONS.format(
    source="search_index s", condition="s.ref_id IN (SELECT value FROM json_each(?))"
)


async def run(
    resources: int,
    repeats: int,
    seed: int,
    database: Path,
    page: int,
    observation_ratio: float = 0.25,
    reference_values: int = 250,
) -> None:
    observation_count = round(resources * observation_ratio)
    print(
        f"generating {resources:,} Patients and {observation_count:,} Observations"
        f" (seed {seed}) ...",
        flush=True,
    )
    patients = generate_patients(resources, seed)
    observations = generate_observations(observation_count, patients, seed + 2)

    # Extraction: what a write does before its hop (parse, FHIRPath, normalise, tuples).
    sample = patients[: min(len(patients), 5000)]
    texts = [json.dumps(p) for p in sample]
    start = time.perf_counter()
    for patient, text in zip(sample, texts, strict=True):
        rows = index_resource(parse_resource_json(text))
        index_values("bench", "Patient", patient["id"], rows)
    extraction = len(sample) / (time.perf_counter() - start)
    print(f"index extraction: {extraction:,.0f} resources/s ({len(sample):,} Patients)")

    backend = await open_sqlite_backend(BackendConfig(url=str(database)))
    try:
        start = time.perf_counter()
        for number, patient in enumerate(patients, start=1):
            await backend.create_or_update(TENANT, "Patient", patient["id"], patient)
            if number % 20000 == 0:
                print(f"  loaded {number:,}", flush=True)
        for number, observation in enumerate(observations, start=1):
            await backend.create_or_update(TENANT, "Observation", observation["id"], observation)
            if number % 20000 == 0:
                print(f"  loaded {number:,} Observations", flush=True)
        load_seconds = time.perf_counter() - start
        loaded = resources + observation_count
        print(
            f"load through create_or_update: {loaded:,} in {load_seconds:,.1f} s"
            f" ({loaded / load_seconds:,.0f} resources/s)"
        )

        rng = random.Random(seed + 1)
        families = [fold(p["name"][0]["family"]) for p in patients]

        def mrn() -> str:
            return f"MRN{rng.randrange(resources):07d}"

        def family_prefix() -> str:
            return rng.choice(families)[:3]

        def year() -> int:
            return rng.randint(1930, 2020)

        async def search(pairs: list[tuple[str, str]]) -> Any:
            return await backend.search(TENANT, "Patient", [*pairs, ("_count", str(page))])

        cases: list[tuple[str, Callable[[], Awaitable[Any]], str, Callable[[], Sequence[Any]]]] = [
            (
                "token identifier=system|value",
                lambda: search([("identifier", f"{MRN}|{mrn()}")]),
                RAW_TOKEN,
                lambda: (mrn(), MRN, page),
            ),
            (
                "token gender=female",
                lambda: search([("gender", "female")]),
                RAW_GENDER,
                lambda: ("female", page),
            ),
            (
                "string prefix family=abc",
                lambda: search([("family", family_prefix())]),
                RAW_PREFIX,
                lambda: (*_prefix_bounds(family_prefix()), page),
            ),
            (
                "date range birthdate=eqYYYY",
                lambda: search([("birthdate", f"eq{year():04d}")]),
                RAW_DATE,
                lambda: (*_year_bounds(year()), page),
            ),
        ]
        raw = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        print(f"\nfirst page (_count={page}), {repeats} queries each, milliseconds:")
        print(f"{'query':36} {'p50':>8} {'p95':>8} {'raw p50':>8} {'raw p95':>8} {'ratio p50':>9}")
        for name, call, raw_sql, raw_parameters in cases:
            await _timed(call, 5)  # warm the page cache and the statement cache
            timings = await _timed(call, repeats)
            _raw_timed(raw, raw_sql, raw_parameters, 5)
            raw_timings, _ = _raw_timed(raw, raw_sql, raw_parameters, repeats)
            p50, p95 = percentile(timings, 0.5), percentile(timings, 0.95)
            r50, r95 = percentile(raw_timings, 0.5), percentile(raw_timings, 0.95)
            print(f"{name:36} {p50:8.3f} {p95:8.3f} {r50:8.3f} {r95:8.3f} {p50 / r50:8.1f}x")
        print(
            f"\nmean search latency over all queries: {statistics.mean(timings):.3f} ms (last case)"
        )
        if observations:
            await _observation_cases(
                backend, raw, patients, observations, seed, repeats, page, reference_values
            )
        raw.close()
    finally:
        await backend.close()


async def _observation_cases(
    backend: Any,
    raw: sqlite3.Connection,
    patients: Sequence[dict[str, Any]],
    observations: Sequence[dict[str, Any]],
    seed: int,
    repeats: int,
    page: int,
    reference_values: int,
) -> None:
    """Chained and many-valued reference searches over Observations, next to SQL floors."""
    rng = random.Random(seed + 3)
    families = [fold(p["name"][0]["family"]) for p in patients]
    subjects = sorted({o["subject"]["reference"].removeprefix("Patient/") for o in observations})
    width = min(reference_values, len(subjects))
    # Each timed query takes the next of a fixed pool of arguments, the backend's and
    # the floor's runs alike, so both see the same values in the same order.
    pool = 32
    prefixes = [rng.choice(families)[:3] for _ in range(pool)]
    mrns = [f"MRN{int(rng.choice(subjects).removeprefix('pat')):07d}" for _ in range(pool)]
    id_lists = [rng.sample(subjects, width) for _ in range(pool)]

    def cycle(values: Sequence[Any]) -> Callable[[], Any]:
        position = -1

        def following() -> Any:
            nonlocal position
            position = (position + 1) % len(values)
            return values[position]

        return following

    async def search(pairs: list[tuple[str, str]]) -> Any:
        return await backend.search(TENANT, "Observation", [*pairs, ("_count", str(page))])

    def cases() -> list[tuple[str, Callable[[], Awaitable[Any]], str, Callable[[], Sequence[Any]]]]:
        prefix, prefix_raw = cycle(prefixes), cycle(prefixes)
        mrn, mrn_raw = cycle(mrns), cycle(mrns)
        ids, ids_raw = cycle(id_lists), cycle(id_lists)
        return [
            (
                "chain subject:Patient.family=abc",
                lambda: search([("subject:Patient.family", prefix())]),
                RAW_CHAIN_PREFIX,
                lambda: (*_prefix_bounds(prefix_raw()), page),
            ),
            (
                "chain subject:Patient.identifier=s|v",
                lambda: search([("subject:Patient.identifier", f"{MRN}|{mrn()}")]),
                RAW_CHAIN_TOKEN,
                lambda: (mrn_raw(), MRN, page),
            ),
            (
                f"reference subject=<{width} ids>",
                lambda: search([("subject", ",".join(f"Patient/{i}" for i in ids()))]),
                RAW_REFERENCES,
                lambda: (json.dumps(ids_raw()), page),
            ),
        ]

    print(
        f"\nObservations ({len(observations):,}, subject a random Patient):"
        f" first page (_count={page}), {repeats} queries each, milliseconds:"
    )
    print(f"{'query':36} {'p50':>8} {'p95':>8} {'raw p50':>8} {'raw p95':>8} {'ratio p50':>9}")
    # Once, untimed: the backend's first page is the floor's (same ids, same order).
    for name, call, raw_sql, raw_parameters in cases():
        result = await call()
        expected = [row[0] for row in raw.execute(raw_sql, raw_parameters()).fetchall()]
        found = [entry.id for entry in result.entries]
        if found != expected:
            print(f"  warning: {name}: backend page {found[:3]}... != floor {expected[:3]}...")
    for name, call, raw_sql, raw_parameters in cases():
        await _timed(call, 5)  # warm the page cache and the statement cache
        timings = await _timed(call, repeats)
        _raw_timed(raw, raw_sql, raw_parameters, 5)
        raw_timings, _ = _raw_timed(raw, raw_sql, raw_parameters, repeats)
        p50, p95 = percentile(timings, 0.5), percentile(timings, 0.95)
        r50, r95 = percentile(raw_timings, 0.5), percentile(raw_timings, 0.95)
        print(f"{name:36} {p50:8.3f} {p95:8.3f} {r50:8.3f} {r95:8.3f} {p50 / r50:8.1f}x")


def _prefix_bounds(prefix: str) -> tuple[str, str]:
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _year_bounds(year: int) -> tuple[int, int]:
    low, _ = date_range(f"{year:04d}")
    high, _ = date_range(f"{year + 1:04d}")
    return to_micros(low), to_micros(high)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.search_bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--resources", type=int, default=100_000, help="Patients to load")
    parser.add_argument(
        "--observation-ratio",
        type=float,
        default=0.25,
        help="Observations per Patient (0: none, no chained/reference searches)",
    )
    parser.add_argument(
        "--reference-values", type=int, default=250, help="ids in the reference search"
    )
    parser.add_argument("--queries", type=int, default=200, help="searches per query shape")
    parser.add_argument("--count", type=int, default=50, help="the page size (_count)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--database", type=Path, help="the SQLite file (default: a temporary one)")
    arguments = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="helios-bench-") as scratch:
        database = arguments.database or Path(scratch) / "search-bench.sqlite3"
        if database.exists():
            raise SystemExit(f"{database} exists; give a new path")
        asyncio.run(
            run(
                arguments.resources,
                arguments.queries,
                arguments.seed,
                database,
                arguments.count,
                arguments.observation_ratio,
                arguments.reference_values,
            )
        )


if __name__ == "__main__":
    main()
