"""Search in the PostgreSQL backend: its index tables, and differentially against memory.

The conformance suites check what a search returns; these tests check what only
PostgreSQL has: the index rows a write leaves (rewritten on update, gone on delete,
with the ``_lastUpdated`` row and full-text tokens the database's own version and
instant give), one statement per write and per search, row-level security on the
index tables, long ``= ANY`` lists, custom parameters kept in the database and
noticed across processes, reindex, and tsvector/tsquery literals that agree with the
reference tokenizer. With Hypothesis, generated resources and queries of every
parameter type, modifier and prefix return exactly what the in-memory backend (the
executable specification) returns; on disagreement the shrunk case is printed.

``HELIOS_SEARCH_EXAMPLES`` sets the differential examples (default 60); with ``CI``
set they are derandomized.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from helios_conformance import BackendConfig, HeliosError, TenantContext, TenantPermissions
from helios_conformance.search import parse_query, parse_text_query, text_matches, tokenize
from helios_conformance.testing import MemoryBackend
from reference_impl.postgres import PostgresBackend, _server, open_postgres_backend
from reference_impl.postgres._pool import Pool
from reference_impl.postgres._schema import APP_ROLE
from reference_impl.postgres._search import build_search, tsquery_literal, tsvector_literal

asyncpg = pytest.importorskip("asyncpg", reason="the postgres extra is not installed")


T = TypeVar("T")
Run = Callable[[Awaitable[T]], T]

EXAMPLES = int(os.environ.get("HELIOS_SEARCH_EXAMPLES", "400"))


# -- fixtures -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def backend(server: _server.Server, runner: asyncio.Runner) -> Iterator[PostgresBackend]:
    """One backend for the module; every test uses its own tenants."""
    config = BackendConfig(url=server.dsn, worker_id=f"s{uuid.uuid4().hex[:10]}")
    opened = runner.run(open_postgres_backend(config))
    yield opened
    runner.run(opened.close())


def _tenant() -> TenantContext:
    return TenantContext.of(f"t{uuid.uuid4().hex[:12]}")


async def _superuser_fetch(backend: PostgresBackend, sql: str, *args: Any) -> list[Any]:
    connection = await asyncpg.connect(**backend.connect_kwargs())
    try:
        return list(await connection.fetch(sql, *args))
    finally:
        await connection.close()


def _index(
    run: Run[Any], backend: PostgresBackend, context: TenantContext
) -> list[tuple[Any, ...]]:
    rows = run(
        _superuser_fetch(
            backend,
            "SELECT resource_id, param, text, code, date_low FROM helios.search_index"
            " WHERE tenant = $1 AND param IN ('family', 'gender', '_lastUpdated')"
            " ORDER BY resource_id, param, text",
            context.tenant.value,
        )
    )
    return [tuple(row) for row in rows]


def _ids(run: Run[Any], backend: Any, context: TenantContext, query: str) -> list[str]:
    pairs = [tuple(part.split("=", 1)) for part in query.split("&")]
    result = run(backend.search(context, "Patient", pairs))
    return list(result.ids)


def _patient(resource_id: str, family: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": resource_id, "name": [{"family": family}], **fields}


# -- the index tables ------------------------------------------------------------------


def test_index_is_rewritten_on_update_and_removed_on_delete(
    run: Run[Any], backend: PostgresBackend
) -> None:
    """A write replaces the resource's rows; a delete leaves none; instants are the database's."""
    a = _tenant()
    stored, _ = run(
        backend.create_or_update(a, "Patient", "p1", _patient("p1", "Lee", gender="male"))
    )
    rows = _index(run, backend, a)
    assert [row[:4] for row in rows] == [
        ("p1", "_lastUpdated", None, None),
        ("p1", "family", "lee", None),
        ("p1", "gender", None, "male"),
    ]
    assert rows[0][4] == stored.last_updated
    updated = run(backend.update(a, "Patient", "p1", _patient("p1", "Brown")))
    rows = _index(run, backend, a)
    assert [row[:4] for row in rows] == [
        ("p1", "_lastUpdated", None, None),
        ("p1", "family", "brown", None),
    ]
    assert rows[0][4] == updated.last_updated
    assert _ids(run, backend, a, "family=lee") == []
    assert _ids(run, backend, a, "family=brown") == ["p1"]
    run(backend.delete(a, "Patient", "p1"))
    assert _index(run, backend, a) == []
    assert _ids(run, backend, a, "family=brown") == []


def test_content_and_last_updated_see_the_real_version_and_instant(
    run: Run[Any], backend: PostgresBackend
) -> None:
    """_content indexes meta.versionId/lastUpdated as written; _lastUpdated is the instant."""
    a = _tenant()
    run(backend.create_or_update(a, "Patient", "p1", _patient("p1", "Lee")))
    second = run(backend.update(a, "Patient", "p1", _patient("p1", "Lee")))
    instant = second.resource["meta"]["lastUpdated"] if second.resource else ""
    year = instant[:4]
    assert _ids(run, backend, a, "_content=2") == ["p1"]
    assert _ids(run, backend, a, "_content=1") == []
    assert _ids(run, backend, a, f'_content="{instant}"') == ["p1"]
    assert _ids(run, backend, a, f"_content={year} lee") == ["p1"]
    assert _ids(run, backend, a, f"_lastUpdated=eq{instant}") == ["p1"]
    assert _ids(run, backend, a, f"_lastUpdated=gt{instant}") == []


def test_each_write_and_search_is_one_statement(
    run: Run[Any], backend: PostgresBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write with its whole index rewrite, and a search, are each one round trip."""
    a = _tenant()
    run(backend.count(a))
    run(backend.search(a, "Patient", []))  # loads the tenant's registry once
    statements: list[str] = []
    original = Pool.fetch

    async def counting(self: Pool, sql: str, *args: Any) -> Any:
        statements.append(sql)
        return await original(self, sql, *args)

    monkeypatch.setattr(Pool, "fetch", counting)
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org"},
        "text": {"status": "generated", "div": "<div>heart rate</div>"},
        "subject": {"reference": "Patient/p1"},
    }
    composed = [
        ("_has:Observation:subject:code", "8867-4"),
        ("_revinclude:iterate", "Observation:subject"),
        ("_include:iterate", "Observation:has-member"),
        ("_sort", "-family,birthdate"),
        ("_total", "accurate"),
        ("_count", "1"),
    ]
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: backend.create(a, observation),
        lambda: backend.create_or_update(a, "Patient", "p1", _patient("p1", "Lee")),
        lambda: backend.update(a, "Patient", "p1", _patient("p1", "Brown")),
        lambda: backend.search(a, "Patient", [("family", "brown"), ("_total", "accurate")]),
        lambda: backend.search(a, "Observation", [("_text", "heart"), ("code", "8867-4")]),
        lambda: backend.search(a, "Patient", [("_summary", "count")]),
        # Composition: the page, its includes (iterated) and the total, one statement.
        lambda: backend.search(a, "Patient", composed),
        lambda: backend.delete(a, "Patient", "p1"),
    ]
    counts = []
    results = []
    for call in calls:
        statements.clear()
        results.append(run(call()))
        counts.append(len(statements))
    assert counts == [1] * len(calls)
    assert all("helios." in sql for sql in statements)
    page = results[-2]
    assert (list(page.ids), page.total, len(page.included)) == (["p1"], 1, 1)


def test_row_level_security_covers_the_index_tables(
    run: Run[Any], backend: PostgresBackend
) -> None:
    """As the application role, a query without a tenant filter sees only its tenant's rows."""
    a, b = _tenant(), _tenant()
    run(backend.create_or_update(a, "Patient", "p1", _patient("p1", "Lee")))
    run(backend.create_or_update(b, "Patient", "p2", _patient("p2", "Kim")))
    parameter = {
        "resourceType": "SearchParameter",
        "url": f"http://example.org/sp/{uuid.uuid4().hex}",
        "name": "nick",
        "status": "active",
        "code": "nick",
        "base": ["Patient"],
        "type": "string",
        "expression": "Patient.name.given",
        "description": "nickname",
    }
    run(backend.create(b, parameter))

    async def as_application(tenant: str) -> tuple[set[str], set[str]]:
        connection = await asyncpg.connect(**backend.connect_kwargs())
        try:
            if backend.app_role is not None:
                await connection.execute(f"SET ROLE {APP_ROLE}")
            async with connection.transaction():
                await connection.execute("SELECT set_config('helios.tenant', $1, true)", tenant)
                index = await connection.fetch("SELECT DISTINCT tenant FROM helios.search_index")
                registry = await connection.fetch("SELECT tenant FROM helios.search_registry")
            return {r[0] for r in index}, {r[0] for r in registry}
        finally:
            await connection.close()

    assert run(as_application(a.tenant.value)) == ({a.tenant.value}, set())
    assert run(as_application(b.tenant.value)) == ({b.tenant.value}, {b.tenant.value})
    assert run(as_application("nobody")) == (set(), set())
    forced = run(
        _superuser_fetch(
            backend,
            "SELECT relname FROM pg_class WHERE relnamespace = 'helios'::regnamespace"
            " AND relname LIKE 'search%' AND relkind = 'r'"
            " AND relrowsecurity AND relforcerowsecurity ORDER BY 1",
        )
    )
    assert [row[0] for row in forced] == ["search_index", "search_registry"]


async def _plan_as_application(
    backend: PostgresBackend, tenant: str, built: Any, *, seqscan: bool = False
) -> str:
    """EXPLAIN (ANALYZE) a built search as the application role, tenant set (RLS on)."""
    connection = await asyncpg.connect(
        **backend.connect_kwargs(), server_settings={"search_path": "helios"}
    )
    try:
        if backend.app_role is not None:
            await connection.execute(f"SET ROLE {APP_ROLE}")
        async with connection.transaction():
            await connection.execute("SELECT set_config('helios.tenant', $1, true)", tenant)
            if not seqscan:
                await connection.execute("SET LOCAL enable_seqscan = off")
            await connection.execute(
                "PREPARE q(text[], numeric[], timestamptz[], float8[]) AS " + built.sql
            )
            explain = await connection.fetchval(
                "SELECT format('EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)"
                " EXECUTE q(%L, %L, %L, %L)', $1::text[], $2::numeric[], $3::timestamptz[],"
                " $4::float8[])",
                built.texts,
                built.numbers,
                built.instants,
                built.floats,
            )
            rows = await connection.fetch(explain)
        return "\n".join(row[0] for row in rows)
    finally:
        await connection.close()


@pytest.mark.parametrize(
    ("query", "key"),
    [
        ("identifier=urn:mrn|m7", "code_key ="),
        ("family=fam1", "text_key >="),
        ("birthdate=1901", "::timestamp with time zone"),
    ],
)
def test_row_level_security_leaves_the_indexes_usable(
    run: Run[Any], backend: PostgresBackend, query: str, key: str
) -> None:
    """As the application role (security policy on), value conditions are index conditions.

    Only leakproof operators may reach an index scan under row-level security; the
    key columns (text prefixes, float8 numbers) exist for that.
    """
    a = _tenant()
    for n in range(40):
        body = _patient(f"p{n}", f"Fam{n}", birthDate=f"19{n:02d}-01-01")
        body["identifier"] = [{"system": "urn:mrn", "value": f"m{n}"}]
        run(backend.create_or_update(a, "Patient", f"p{n}", body))
    run(_superuser_fetch(backend, "ANALYZE helios.resources, helios.search_index"))
    state = backend._registries[a.tenant.value]
    pairs = [tuple(part.split("=", 1)) for part in query.split("&")]
    built = build_search(a.tenant.value, parse_query("Patient", pairs), state.registry)

    text = run(_plan_as_application(backend, a.tenant.value, built))
    conditions = [line for line in text.splitlines() if "Index Cond" in line]
    assert any(key in line for line in conditions), text
    assert _ids(run, backend, a, query)


def test_chains_and_revincludes_walk_the_reference_indexes(
    run: Run[Any], backend: PostgresBackend
) -> None:
    """With statistics, a chain starts from its terminal's index and probes Observations
    by the Patients' ids; a _revinclude probes the referenced index once per page
    resource; both as the application role, the security policy on, seq scans allowed.

    2,000 Patients: with a few hundred the planner picks these plans even from a
    misleading estimate; at this size a hop condition it misjudges (a function of
    ``exact`` compared with a constant) makes it start from every reference row.
    """
    a = _tenant()
    patients = 2000
    for n in range(patients):
        run(backend.create_or_update(a, "Patient", f"p{n}", _patient(f"p{n}", f"Fam{n}")))
    for n in range(patients // 2):
        observation = {
            "resourceType": "Observation",
            "id": f"o{n}",
            "status": "final",
            "code": {"text": "weight"},
            "subject": {"reference": f"Patient/p{n * 7 % patients}"},
        }
        run(backend.create_or_update(a, "Observation", f"o{n}", observation))
    run(_superuser_fetch(backend, "ANALYZE helios.resources, helios.search_index"))
    registry = backend._registries[a.tenant.value].registry

    def plan(resource_type: str, query: str) -> str:
        pairs = [tuple(part.split("=", 1)) for part in query.split("&")]
        built = build_search(
            a.tenant.value, parse_query(resource_type, pairs, subsetting=True), registry
        )
        return run(_plan_as_application(backend, a.tenant.value, built, seqscan=True))

    def index_conditions(text: str) -> list[str]:
        return [line.strip() for line in text.splitlines() if "Index Cond" in line]

    chain = plan("Observation", "subject:Patient.family=Fam12")
    conditions = index_conditions(chain)
    # The terminal's family range, then each Patient found probes by its id.
    assert any("text_key >=" in line for line in conditions), chain
    assert any("ref_id_key = " in line for line in conditions), chain
    assert "Seq Scan" not in chain, chain
    revinclude = plan("Patient", "family=Fam12&_revinclude=Observation:subject")
    probes = [line for line in index_conditions(revinclude) if "ref_id_key = " in line]
    assert probes, revinclude
    assert "search_index_referenced" in revinclude, revinclude
    # Fam12, Fam120.., Fam1200.. and the Observations pointing at them (p12 <- o56, ...).
    expected = {f"p{n}" for n in range(patients) if str(n).startswith("12")}
    result = run(
        backend.search(
            a,
            "Patient",
            [("family", "Fam12"), ("_revinclude", "Observation:subject"), ("_count", "500")],
        )
    )
    assert set(result.ids) == expected
    assert {i.id for i in result.included} == {
        f"o{n}" for n in range(patients // 2) if f"p{n * 7 % patients}" in expected
    }


def test_a_date_range_is_one_intersection_of_index_only_scans(
    run: Run[Any], backend: PostgresBackend
) -> None:
    """``ge``/``lt`` on one date parameter: each test one index-only range scan on a date
    key, the two intersected, as the application role with the security policy on and
    seq scans allowed; the answers equal the in-memory backend's, periods with open or
    inverted ends included.

    As two EXISTS tests the planner took them to be independent halves (a quarter of
    the resources) and walked resources in id order probing both per resource, reading
    thousands of rows for a range holding a few dozen.
    """
    a = _tenant()
    memory = MemoryBackend()
    patients = 2000
    for n in range(patients):
        body = _patient(f"p{n}", f"Fam{n}", birthDate=f"19{n % 100:02d}-0{1 + n % 9}-1{n % 10}")
        run(backend.create_or_update(a, "Patient", f"p{n}", body))
    periods = [
        {"start": "1950-02-01"},
        {"end": "1950-03-01"},
        {"start": "1949-01-01", "end": "1951-01-01"},
        {"start": "1950-09-01", "end": "1949-09-01"},
        {"start": "1950-03-01", "end": "1950-04-01"},
        {"start": "1960-01-01", "end": "1970-01-01"},
    ]
    for n, period in enumerate(periods):
        encounter = {"resourceType": "Encounter", "id": f"e{n}", "status": "finished"}
        encounter["period"] = period
        run(backend.create_or_update(a, "Encounter", f"e{n}", encounter))
        run(memory.create_or_update(a, "Encounter", f"e{n}", encounter))
    # VACUUM too (autovacuum would): index-only scans need the visibility map.
    run(_superuser_fetch(backend, "VACUUM ANALYZE helios.resources, helios.search_index"))
    registry = backend._registries[a.tenant.value].registry
    query = [("birthdate", "ge1950-01-01"), ("birthdate", "lt1950-07-01")]
    built = build_search(a.tenant.value, parse_query("Patient", query), registry)
    plan = run(_plan_as_application(backend, a.tenant.value, built, seqscan=True))
    assert "Intersect" in plan, plan
    scans = [
        line for line in plan.splitlines() if "Index Only Scan using search_index_date" in line
    ]
    assert len(scans) == 2, plan
    conditions = [line for line in plan.splitlines() if "Index Cond" in line]
    assert any("date_hi_key >=" in line for line in conditions), plan
    assert any("date_lo_key <" in line for line in conditions), plan
    expected = {f"p{n}" for n in range(patients) if n % 100 == 50 and n % 9 < 6}
    found = run(backend.search(a, "Patient", [*query, ("_count", "500")]))
    assert set(found.ids) == expected
    for prefixes in (("ge", "lt"), ("gt", "le"), ("sa", "eb"), ("ap", "ne"), ("eq", "ge")):
        for low, high in (
            ("1950-01-15", "1950-06"),
            ("1949", "1951"),
            ("1950-03-01", "1950-03-01"),
        ):
            pairs = [("date", prefixes[0] + low), ("date", prefixes[1] + high), ("_count", "50")]
            ours = run(backend.search(a, "Encounter", pairs))
            reference = run(memory.search(a, "Encounter", pairs))
            assert sorted(ours.ids) == sorted(reference.ids), pairs


def test_a_long_value_list_is_one_any_array(run: Run[Any], backend: PostgresBackend) -> None:
    """250 OR-ed ids become one ``= ANY`` list, not 250 ORs, and find the right resources."""
    a = _tenant()
    for n in range(0, 300, 30):
        run(backend.create_or_update(a, "Patient", f"p{n:03d}", _patient(f"p{n:03d}", "Lee")))
    wanted = ",".join(f"p{n:03d}" for n in range(250))
    query = parse_query("Patient", [("_id", wanted)])
    built = build_search(a.tenant.value, query, backend._registries[a.tenant.value].registry)
    assert built.sql.count("= ANY(") == 2  # the left(...) prefixes and the full values
    assert " OR " not in built.sql
    assert _ids(run, backend, a, f"_id={wanted}") == [f"p{n:03d}" for n in range(0, 250, 30)]
    assert _ids(run, backend, a, f"gender:not=x&_id={wanted}&_count=3") == ["p000", "p030", "p060"]


def test_long_strings_and_unsendable_values(run: Run[Any], backend: PostgresBackend) -> None:
    """Values beyond the btree limit are indexed; a NUL in a query matches nothing."""
    a = _tenant()
    long_family = "Lee" + "x" * 5000
    run(backend.create_or_update(a, "Patient", "p1", _patient("p1", long_family)))
    assert _ids(run, backend, a, "family=lee") == ["p1"]
    assert _ids(run, backend, a, f"family:exact={long_family}") == ["p1"]
    assert _ids(run, backend, a, f"family:exact={long_family}y") == []
    assert _ids(run, backend, a, "family=le\x00e") == []
    assert _ids(run, backend, a, "family:contains=\x00") == []


def test_custom_parameters_are_kept_and_noticed_across_processes(
    run: Run[Any], backend: PostgresBackend
) -> None:
    """A SearchParameter written through one backend object is used by another at once."""
    a = _tenant()
    other = PostgresBackend(
        server=backend.server,
        dsn=backend._dsn,
        database=backend.database,
        options=backend._options,
        app_role=backend.app_role,
        server_version="",
        admin=None,
    )
    run(other._open_pool())
    try:
        patient = _patient("p1", "Lee")
        patient["name"][0]["given"] = ["Bobby"]
        run(other.create_or_update(a, "Patient", "p1", patient))
        assert run(other.search(a, "Patient", [("family", "lee")])).ids == ("p1",)
        parameter = {
            "resourceType": "SearchParameter",
            "id": "nick",
            "url": "http://example.org/sp/nick",
            "name": "nick",
            "status": "active",
            "code": "nick",
            "base": ["Patient"],
            "type": "string",
            "expression": "Patient.name.given",
            "description": "nickname",
        }
        run(backend.create_or_update(a, "SearchParameter", "nick", parameter))
        # `other` cached the registry before; its next write notices the new generation.
        run(other.create_or_update(a, "Patient", "p2", {**patient, "id": "p2"}))
        assert run(other.search(a, "Patient", [("nick", "bob")])).ids == ("p2",)
        assert run(other.reindex(a, "Patient")) == 2
        assert run(backend.search(a, "Patient", [("nick", "bob")])).ids == ("p1", "p2")
        run(backend.delete(a, "SearchParameter", "nick"))
        with pytest.raises(HeliosError, match="nick"):
            run(other.search(a, "Patient", [("nick", "bob")]))
    finally:
        run(other._pool.close() if other._pool is not None else asyncio.sleep(0))


def test_schema_tenancy_has_its_own_index_tables(run: Run[Any], server: _server.Server) -> None:
    """Under tenancy=schema each tenant schema has search_index and search_registry."""
    config = BackendConfig(
        url=server.dsn, options={"tenancy": "schema"}, worker_id=f"s{uuid.uuid4().hex[:10]}"
    )
    schema_backend: PostgresBackend = run(open_postgres_backend(config))
    try:
        a = _tenant()
        run(schema_backend.create_or_update(a, "Patient", "p1", _patient("p1", "Lee")))
        assert _ids(run, schema_backend, a, "family=le") == ["p1"]
        location = run(schema_backend.tenant_location(a)).name
        rows = run(
            _superuser_fetch(
                schema_backend,
                f'SELECT count(*) FROM "{location}".search_index WHERE param = $1',
                "family",
            )
        )
        assert rows[0][0] == 1
    finally:
        run(schema_backend.close())


# -- compartment restriction ---------------------------------------------------------


def _observation(resource_id: str, code: str, **references: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Observation",
        "id": resource_id,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
    }
    for field_name, reference in references.items():
        value = {"reference": reference}
        body[field_name] = [value] if field_name in ("performer", "hasMember", "focus") else value
    return body


# Patient/p1's compartment holds p1, o1 and o4 (subject p1) and o3 (performer p1); not
# p2, o2 (subject p2), o5 (only its focus is p1: focus is no compartment parameter) or
# the Organization (no Organization is in a Patient compartment).
_COMPARTMENT_DATA = [
    _patient("p1", "One", managingOrganization={"reference": "Organization/org1"}),
    _patient("p2", "Two"),
    {"resourceType": "Organization", "id": "org1", "name": "Acme"},
    _observation("o1", "1234-5", subject="Patient/p1"),
    _observation("o2", "1234-5", subject="Patient/p2"),
    _observation("o3", "1234-5", subject="Patient/p2", performer="Patient/p1"),
    _observation("o4", "1234-5", subject="Patient/p1", hasMember="Observation/o2"),
    _observation("o5", "9999-9", subject="Patient/p2", focus="Patient/p1"),
]

# (type, query) -> (ids, included, total) for a caller restricted to Patient/p1, and
# what an unrestricted caller gets where it differs (so each case can tell them apart).
_COMPARTMENT_CASES: list[tuple[str, str, tuple[Any, ...], tuple[Any, ...] | None]] = [
    (
        "Observation",
        "code=1234-5&_total=accurate",
        (["o1", "o3", "o4"], [], 3),
        (["o1", "o2", "o3", "o4"], [], 4),
    ),
    ("Observation", "subject.family=Two", ([], [], None), (["o2", "o3", "o5"], [], None)),
    ("Observation", "subject.family=One", (["o1", "o4"], [], None), None),
    ("Patient", "_has:Observation:focus:code=9999-9", ([], [], None), (["p1"], [], None)),
    ("Patient", "_has:Observation:performer:code=1234-5", (["p1"], [], None), None),
    (
        "Observation",
        "_id=o1,o2,o3&_include=Observation:subject",
        (["o1", "o3"], ["Patient/p1"], None),
        (["o1", "o2", "o3"], ["Patient/p1", "Patient/p2"], None),
    ),
    (
        "Patient",
        "_id=p1&_revinclude=*",
        (["p1"], ["Observation/o1", "Observation/o3", "Observation/o4"], None),
        (
            ["p1"],
            ["Observation/o1", "Observation/o3", "Observation/o4", "Observation/o5"],
            None,
        ),
    ),
    (
        "Observation",
        "_id=o4&_include:iterate=Observation:has-member",
        (["o4"], [], None),
        (["o4"], ["Observation/o2"], None),
    ),
    (
        "Patient",
        "_include=Patient:organization",
        (["p1"], [], None),
        (["p1", "p2"], ["Organization/org1"], None),
    ),
]


def _restricted(context: TenantContext, compartment: str) -> TenantContext:
    permissions = TenantPermissions.builder().allow_all_operations().in_compartment(compartment)
    return TenantContext(context.tenant, permissions.build())


async def _compartment_answer(
    target: Any, context: TenantContext, resource_type: str, query: str
) -> tuple[Any, ...]:
    pairs = [(name, value) for name, _, value in (p.partition("=") for p in query.split("&"))]
    result = await target.search(context, resource_type, pairs)
    return list(result.ids), sorted(result.included_references), result.total


def test_a_compartment_restricted_search_sees_only_the_compartment(
    run: Run[Any], backend: PostgresBackend
) -> None:
    """Outside the caller's compartment nothing matches, resolves a chain or _has, or is
    included; the answers are exactly the in-memory backend's (compartmentdefinition.html)."""
    memory = MemoryBackend()
    a = _tenant()
    restricted = _restricted(a, "Patient/p1")
    for body in _COMPARTMENT_DATA:
        for target in (memory, backend):
            run(target.create_or_update(a, body["resourceType"], body["id"], body))
    for resource_type, query, inside, everyone in _COMPARTMENT_CASES:
        got = run(_compartment_answer(backend, restricted, resource_type, query))
        assert got == inside, f"{resource_type}?{query}"
        assert got == run(_compartment_answer(memory, restricted, resource_type, query))
        unrestricted = run(_compartment_answer(backend, a, resource_type, query))
        assert unrestricted == (inside if everyone is None else everyone), query


def test_compartment_cursor_pages_stay_in_the_compartment(
    run: Run[Any], backend: PostgresBackend
) -> None:
    """Cursor pages of a restricted caller cover the compartment's matches once, in order."""
    a = _tenant()
    restricted = _restricted(a, "Patient/p1")
    for body in _COMPARTMENT_DATA:
        run(backend.create_or_update(a, body["resourceType"], body["id"], body))
    pages: list[list[str]] = []
    cursor = None
    while True:
        result = run(
            backend.search(
                restricted, "Observation", [("_sort", "-_id"), ("_count", "2")], cursor=cursor
            )
        )
        pages.append(list(result.ids))
        cursor = result.next_cursor
        if cursor is None:
            break
    assert pages == [["o4", "o3"], ["o1"]]


# -- full-text literals ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "query", "expected"),
    [
        ("Heart failure, congestive", "heart failure", True),
        ("Heart failure, congestive", '"failure congestive"', True),
        ("Heart failure, congestive", '"congestive failure"', False),
        ("Heart failure, congestive", "fail*", True),
        ("Heart failure, congestive", "heart NOT congestive", False),
        ("Heart failure, congestive", "lung OR heart", True),
        ("Heart failure, congestive", "(lung OR kidney) heart", False),
        ("generalization of the organization", "generalization", True),
        ("John's dog", "s*", True),
        ("John's dog", "s", True),
        ("O'Brien", "obrien", False),
        ("Chávez", "chavez", True),
        ("naïve café", '"naive cafe"', True),
    ],
)
def test_tsvector_and_tsquery_literals_agree_with_the_tokenizer(
    run: Run[Any], backend: PostgresBackend, document: str, query: str, expected: bool
) -> None:
    """PostgreSQL's @@ on the literals equals text_matches on the reference tokens."""
    parsed = parse_text_query(query)
    assert text_matches(parsed, tokenize(document)) is expected
    rows = run(
        _superuser_fetch(
            backend,
            "SELECT $1::tsvector @@ $2::tsquery",
            tsvector_literal(document),
            tsquery_literal(parsed),
        )
    )
    assert rows[0][0] is expected


# -- differential: the same answers as the in-memory backend ---------------------------------

_WORDS = ["Lee", "lee", "Léé", "Leeds", "Smith", "Smíth", "O'Brien", "Chávez", "van Dyke"]
_NARRATIVE = ["heart", "failure", "failing", "hearts", "fever", "chronic", "the", "s", "naïve"]
_SYSTEMS = ["http://loinc.org", "urn:mrn", "http://snomed.info/sct"]
_CODES = ["a1", "A1", "b2", "8867-4", "x|y", "true"]
_UNITS = [
    ("mg", "http://unitsofmeasure.org", "mg"),
    ("g", "http://unitsofmeasure.org", "g"),
    ("kg", "http://unitsofmeasure.org", "kg"),
    ("beats/min", "http://unitsofmeasure.org", "/min"),
    ("mmHg", None, None),
]
_ZONES = ["", "Z", "+02:00", "-05:30"]
_DECIMALS = ["1", "1.0", "1.00", "0.5", "100", "100.0", "99.5", "1e2", "2.5", "-3", "0", "1000"]


@st.composite
def _dates(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(["2000", "2001"]))
    precision = draw(st.sampled_from(["year", "month", "day", "minute", "second"]))
    if precision == "year":
        return text
    text += draw(st.sampled_from(["-01", "-06", "-12"]))
    if precision == "month":
        return text
    text += draw(st.sampled_from(["-01", "-15", "-31"]))
    if precision == "day":
        return text
    text += draw(st.sampled_from(["T00:00", "T12:30", "T23:59"]))
    if precision == "second":
        text += draw(st.sampled_from([":00", ":59.5"]))
    return text + draw(st.sampled_from(_ZONES[1:]))


def _narrative(draw: st.DrawFn) -> dict[str, Any]:
    words = draw(st.lists(st.sampled_from(_NARRATIVE), min_size=1, max_size=5))
    return {"status": "generated", "div": "<div>" + " ".join(words) + "</div>"}


@st.composite
def _patients(draw: st.DrawFn, resource_id: str) -> dict[str, Any]:
    patient: dict[str, Any] = {"resourceType": "Patient", "id": resource_id}
    if draw(st.booleans()):
        patient["name"] = [
            {
                "family": draw(st.sampled_from(_WORDS)),
                "given": draw(st.lists(st.sampled_from(_WORDS), max_size=2)),
            }
        ]
    if draw(st.booleans()):
        patient["birthDate"] = draw(_dates()).split("T")[0]
    if draw(st.booleans()):
        patient["gender"] = draw(st.sampled_from(["male", "female", "other"]))
    if draw(st.booleans()):
        patient["active"] = draw(st.booleans())
    identifiers = []
    for _ in range(draw(st.integers(0, 2))):
        identifier: dict[str, Any] = {"value": draw(st.sampled_from(_CODES))}
        if draw(st.booleans()):
            identifier["system"] = draw(st.sampled_from(_SYSTEMS))
        if draw(st.booleans()):
            identifier["type"] = {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}
                ],
                "text": "Medical record",
            }
        identifiers.append(identifier)
    if identifiers:
        patient["identifier"] = identifiers
    if draw(st.booleans()):
        patient["generalPractitioner"] = [
            {
                "reference": draw(
                    st.sampled_from(
                        [
                            "Practitioner/d1",
                            "Organization/d1",
                            "http://other.org/fhir/Practitioner/d1",
                            "Practitioner/d2/_history/3",
                        ]
                    )
                )
            }
        ]
    if draw(st.booleans()):
        patient["text"] = _narrative(draw)
    return patient


@st.composite
def _observations(draw: st.DrawFn, resource_id: str) -> dict[str, Any]:
    coding = {"system": draw(st.sampled_from(_SYSTEMS)), "code": draw(st.sampled_from(_CODES))}
    if draw(st.booleans()):
        coding["display"] = " ".join(draw(st.lists(st.sampled_from(_NARRATIVE), max_size=2)))
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "id": resource_id,
        "status": draw(st.sampled_from(["final", "amended"])),
        "code": {"coding": [coding]},
    }
    if draw(st.booleans()):
        observation["subject"] = {"reference": draw(st.sampled_from(["Patient/p0", "Patient/p1"]))}
    effective = draw(st.sampled_from(["none", "dateTime", "period"]))
    if effective == "dateTime":
        observation["effectiveDateTime"] = draw(_dates())
    elif effective == "period":
        period = {}
        if draw(st.booleans()):
            period["start"] = draw(_dates())
        if draw(st.booleans()):
            period["end"] = draw(_dates())
        observation["effectivePeriod"] = period
    if draw(st.booleans()):
        unit, system, code = draw(st.sampled_from(_UNITS))
        quantity: dict[str, Any] = {
            "value": _number(draw(st.sampled_from(_DECIMALS))),
            "unit": unit,
        }
        if system is not None:
            quantity["system"], quantity["code"] = system, code
        observation["valueQuantity"] = quantity
    if draw(st.booleans()):
        observation["text"] = _narrative(draw)
    return observation


def _number(text: str) -> int | float:
    # JSON numbers as json.dumps writes them ("1.00" becomes 1.0, "1e2" 100.0).
    return int(text) if text.lstrip("-").isdigit() else float(text)


def _or(values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.lists(values, min_size=1, max_size=3).map(",".join)


_PREFIX = st.sampled_from(["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"])
_TEXT_TERM = st.sampled_from(
    ["heart", "hearts", "fail*", '"heart failure"', "fever", "s*", "the", "naive", "chron*"]
)
_TEXT = st.lists(
    st.tuples(st.sampled_from(["", "AND ", "OR ", "NOT "]), _TEXT_TERM), min_size=1, max_size=3
).map(lambda parts: " ".join(parts[0][1:] + tuple(f"{op}{t}" for op, t in parts[1:])))


def _token_values() -> st.SearchStrategy[str]:
    code = st.sampled_from(["a1", "A1", "b2", "8867-4", "x\\|y", "true", "male", "final"])
    system = st.sampled_from(_SYSTEMS)
    return st.one_of(
        code,
        st.tuples(system, code).map("|".join),
        code.map(lambda c: "|" + c),
        system.map(lambda s: s + "|"),
    )


def _patient_parameter() -> st.SearchStrategy[tuple[str, str]]:
    word = st.sampled_from([*_WORDS, "le", "LE", "smi", "dyke", "lee\\,x"])
    return st.one_of(
        st.tuples(st.sampled_from(["family", "given", "name"]), _or(word)),
        st.tuples(st.sampled_from(["family:exact", "name:contains", "family:missing"]), word).map(
            lambda t: (t[0], "true" if t[0].endswith("missing") else t[1])
        ),
        st.tuples(
            st.sampled_from(["gender", "gender:not", "active", "identifier"]), _or(_token_values())
        ),
        st.tuples(st.just("identifier:text"), st.sampled_from(["medical", "Med", "x"])),
        st.tuples(
            st.just("identifier:of-type"),
            st.sampled_from(_CODES).map(
                lambda c: (
                    "http://terminology.hl7.org/CodeSystem/v2-0203|MR|" + c.replace("|", "\\|")
                )
            ),
        ),
        st.tuples(st.just("birthdate"), _or(st.tuples(_PREFIX, _dates()).map("".join))),
        st.tuples(
            st.sampled_from(["general-practitioner", "general-practitioner:Practitioner"]),
            _or(
                st.sampled_from(
                    [
                        "d1",
                        "d2",
                        "Practitioner/d1",
                        "Practitioner/d2",
                        "http://other.org/fhir/Practitioner/d1",
                    ]
                )
            ),
        ),
        st.tuples(st.sampled_from(["_text", "_content"]), _TEXT),
        st.tuples(st.just("_id"), _or(st.sampled_from(["p0", "p1", "p2", "x"]))),
        st.tuples(
            st.just("_filter"),
            st.sampled_from(
                [
                    "family eq lee",
                    "family sw le or gender eq male",
                    "not (family co e) and birthdate ge 2000-06",
                    "gender ne male",
                    "family ew th",
                    "birthdate pr false",
                    "identifier eq http://loinc.org|a1",
                ]
            ),
        ),
    )


def _observation_parameter() -> st.SearchStrategy[tuple[str, str]]:
    number = st.sampled_from(_DECIMALS)
    unit = st.sampled_from(
        ["", "|http://unitsofmeasure.org|mg", "|http://unitsofmeasure.org|g", "||mmHg", "||mg"]
    )
    return st.one_of(
        st.tuples(st.just("value-quantity"), _or(st.tuples(_PREFIX, number, unit).map("".join))),
        st.tuples(st.just("date"), _or(st.tuples(_PREFIX, _dates()).map("".join))),
        st.tuples(st.sampled_from(["code", "code:not"]), _or(_token_values())),
        st.tuples(
            st.sampled_from(["code:text", "code:code-text"]),
            st.sampled_from(["hea", "a", "8867", "fail"]),
        ),
        st.tuples(st.just("code:text-advanced"), _TEXT),
        st.tuples(
            st.sampled_from(["subject", "patient"]), _or(st.sampled_from(["p0", "Patient/p1", "x"]))
        ),
        st.tuples(
            st.sampled_from(["value-quantity:missing", "date:missing"]),
            st.sampled_from(["true", "false"]),
        ),
        st.tuples(
            st.just("code-value-quantity"),
            st.tuples(_token_values(), st.just("$"), _PREFIX, number, unit).map("".join),
        ),
        st.tuples(st.sampled_from(["_text", "_content"]), _TEXT),
        st.tuples(
            st.just("_filter"),
            st.sampled_from(
                [
                    "value-quantity gt 1",
                    "date po 2000-06",
                    "status eq final or code eq a1",
                    "not (date lt 2001)",
                ]
            ),
        ),
    )


@st.composite
def _cases(draw: st.DrawFn) -> tuple[str, list[dict[str, Any]], list[list[tuple[str, str]]]]:
    resource_type = draw(st.sampled_from(["Patient", "Observation"]))
    make = _patients if resource_type == "Patient" else _observations
    resources = [
        draw(make(f"{resource_type[0].lower()}{n}")) for n in range(draw(st.integers(1, 6)))
    ]
    parameter = _patient_parameter() if resource_type == "Patient" else _observation_parameter()
    queries = draw(st.lists(st.lists(parameter, min_size=1, max_size=3), min_size=1, max_size=5))
    return resource_type, resources, queries


@pytest.fixture(scope="module")
def memory() -> MemoryBackend:
    return MemoryBackend()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=_cases())
def test_same_matches_as_the_memory_backend(
    runner: asyncio.Runner,
    backend: PostgresBackend,
    memory: MemoryBackend,
    case: tuple[str, list[dict[str, Any]], list[list[tuple[str, str]]]],
) -> None:
    """Generated resources and queries of every type: postgres returns memory's matches."""
    resource_type, resources, queries = case
    context = _tenant()

    async def answer(target: Any, query: list[tuple[str, str]]) -> object:
        try:
            result = await target.search(
                context, resource_type, [*query, ("_count", "1000"), ("_total", "accurate")]
            )
        except HeliosError as exc:
            return type(exc).__name__
        return list(result.ids), result.total

    async def compare() -> None:
        for resource in resources:
            await memory.create_or_update(context, resource_type, resource["id"], resource)
            await backend.create_or_update(context, resource_type, resource["id"], resource)
        for query in queries:
            note(f"query: {query}")
            expected = await answer(memory, query)
            got = await answer(backend, query)
            assert got == expected, f"{query}: postgres {got}, memory {expected}"
            if isinstance(expected, str):
                event(f"refused: {expected}")
            else:
                event("some match" if expected[0] else "no match")

    runner.run(compare())


def _tenant_schema_from_version(
    run: Run[Any], server: _server.Server, monkeypatch: pytest.MonkeyPatch, version: int
) -> dict[str, list[str]]:
    """Migrate a new database to ``version``, create tenant schema 'old', migrate to the
    newest version, create tenant schema 'new'; return each search_index's indexes."""
    from reference_impl.postgres import _schema

    name = f"m{uuid.uuid4().hex[:12]}"

    async def scenario() -> dict[str, list[str]]:
        admin = await asyncpg.connect(dsn=server.dsn)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
            connection = await asyncpg.connect(dsn=server.dsn, database=name)
            try:
                monkeypatch.setattr(_schema, "SCHEMA_VERSION", version)
                assert await _schema.migrate(connection) == version
                old = await connection.fetchval("SELECT helios.ensure_tenant_schema('old')")
                monkeypatch.undo()
                assert await _schema.migrate(connection) == _schema.SCHEMA_VERSION - version
                new = await connection.fetchval("SELECT helios.ensure_tenant_schema('new')")
                rows = await connection.fetch(
                    "SELECT schemaname, indexname FROM pg_indexes"
                    " WHERE tablename = 'search_index' ORDER BY 1, 2"
                )
                indexes: dict[str, list[str]] = {}
                for row in rows:
                    indexes.setdefault(row[0], []).append(row[1])
                assert sorted(indexes) == sorted([old, new, "helios"])
                return indexes
            finally:
                await connection.close()
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()

    return run(scenario())


def test_migration_2_reaches_existing_tenant_schemas(
    run: Run[Any], server: _server.Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database at version 1 with a tenant schema gets search tables there too."""
    indexes = _tenant_schema_from_version(run, server, monkeypatch, 1)
    assert len(indexes) == 3
    assert all("search_index_code" in names for names in indexes.values())


def test_migration_3_reaches_existing_tenant_schemas(
    run: Run[Any], server: _server.Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database at version 2 with a tenant schema gets the _revinclude index there too."""
    indexes = _tenant_schema_from_version(run, server, monkeypatch, 2)
    assert len(indexes) == 3
    assert all("search_index_referenced" in names for names in indexes.values()), indexes


def test_migration_6_reaches_existing_tenant_schemas(
    run: Run[Any], server: _server.Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database at version 5 with a tenant schema gets the date keys there too."""
    indexes = _tenant_schema_from_version(run, server, monkeypatch, 5)
    assert len(indexes) == 3
    for names in indexes.values():
        assert {"search_index_date_lo", "search_index_date_hi"} <= set(names), indexes
        assert not {"search_index_date_low", "search_index_date_high"} & set(names), indexes
