"""SQLite-specific behaviour of the reference backend.

The conformance suites check the contract; these tests check what only SQLite has:
the schema and its version, WAL, one worker-thread hop per unit of work, rollback of
failed writes, reopening a database, and, differentially, that the backend answers
every call exactly as the in-memory backend (the executable specification) does.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference_impl.sqlite
from helios_conformance import (
    AccessDenied,
    BackendConfig,
    BackendFailure,
    BackendUnavailable,
    HeliosError,
    HistoryPage,
    InvalidResource,
    NotFound,
    Operation,
    StoredResource,
    TenantContext,
    TenantPermissions,
    VersionConflict,
    format_instant,
)
from helios_conformance.testing import MEMORY_CAPABILITIES, MemoryBackend
from reference_impl.sqlite import SQLITE_CAPABILITIES, SQLiteBackend, open_sqlite_backend
from reference_impl.sqlite._backend import _url_to_database
from reference_impl.sqlite._schema import SCHEMA_VERSION

T = TypeVar("T")

A = TenantContext.of("a")
B = TenantContext.of("b")


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as loop_runner:
        yield loop_runner


@pytest.fixture
def run(runner: asyncio.Runner) -> Callable[[Awaitable[T]], T]:
    def _run(awaitable: Awaitable[T]) -> T:
        async def _await() -> T:
            return await awaitable

        return runner.run(_await())

    return _run


def _open(run: Callable[[Awaitable[SQLiteBackend]], SQLiteBackend], url: str) -> SQLiteBackend:
    return run(open_sqlite_backend(BackendConfig(url=url)))


def _patient(family: str, resource_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"resourceType": "Patient", "name": [{"family": family}]}
    if resource_id is not None:
        body["id"] = resource_id
    return body


def _history_rows(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as connection:
        return connection.execute(
            "SELECT tenant, resource_type, id, version_id, deleted FROM resource_history"
            " ORDER BY sequence"
        ).fetchall()


# -- identity ---------------------------------------------------------------------


def test_public_names() -> None:
    """The package re-exports exactly its front door."""
    assert reference_impl.sqlite.__all__ == [
        "SQLITE_CAPABILITIES",
        "SQLiteBackend",
        "open_sqlite_backend",
    ]


def test_info_and_capabilities(run: Any) -> None:
    """The backend names itself, its version and SQLite's, and claims memory's storage set.

    Its search claims are checked in ``test_sqlite_search.py``.
    """
    backend = _open(run, ":memory:")
    try:
        assert backend.info.name == "sqlite"
        assert backend.info.server_version == sqlite3.sqlite_version
        assert backend.capabilities == SQLITE_CAPABILITIES
        assert SQLITE_CAPABILITIES.supported >= MEMORY_CAPABILITIES.supported
    finally:
        run(backend.close())


# -- opening ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "database"),
    [
        ("/tmp/x.sqlite3", "/tmp/x.sqlite3"),
        (":memory:", ":memory:"),
        ("sqlite:///relative.db", "relative.db"),
        ("sqlite:////absolute/x.db", "/absolute/x.db"),
        ("sqlite:///:memory:", ":memory:"),
        ("sqlite://", ":memory:"),
    ],
)
def test_url_forms(url: str, database: str) -> None:
    """Plain paths and SQLAlchemy-style sqlite URLs name the same databases."""
    assert _url_to_database(url) == database


def test_url_with_a_host_is_refused() -> None:
    """``sqlite://host/x`` has no meaning for SQLite and is refused, not guessed at."""
    with pytest.raises(BackendUnavailable, match="sqlite:////absolute/path"):
        _url_to_database("sqlite://host/x.db")


def test_default_database_is_per_worker_and_stale_files_are_removed(
    run: Any, tmp_path: Path
) -> None:
    """Without a URL the database is scratch_dir/helios-<worker>.sqlite3, always fresh."""
    stale = tmp_path / "helios-gw3.sqlite3"
    stale.write_bytes(b"not a database, left over from a crashed run")
    config = BackendConfig(url=None, worker_id="gw3", scratch_dir=tmp_path)
    backend = run(open_sqlite_backend(config))
    try:
        assert backend.database == str(stale)
        assert run(backend.count(A)) == 0
    finally:
        run(backend.close())


def test_schema_is_created_once_and_reopening_keeps_version_chains(
    run: Any, tmp_path: Path
) -> None:
    """Reopening a database keeps its data and continues each version chain."""
    path = tmp_path / "kept.sqlite3"
    backend = _open(run, str(path))
    run(backend.create_or_update(A, "Patient", "p1", _patient("One", "p1")))
    run(backend.update(A, "Patient", "p1", _patient("Two", "p1")))
    run(backend.close())
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        # Marks the schema so that a second CREATE TABLE at reopen would be noticed.
        connection.execute("CREATE TABLE reopen_marker (x)")

    backend = _open(run, str(path))
    try:
        assert run(backend.read(A, "Patient", "p1")).resource["name"] == [{"family": "Two"}]
        third = run(backend.update(A, "Patient", "p1", _patient("Three", "p1")))
        assert third.version_id == "3"
        history = run(backend.history_instance(A, "Patient", "p1"))
        assert [entry.version_id for entry in history.entries] == ["3", "2", "1"]
    finally:
        run(backend.close())
    with sqlite3.connect(path) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert {"resources", "resource_history", "reopen_marker"} <= tables


def test_a_newer_schema_is_refused(run: Any, tmp_path: Path) -> None:
    """A database from a newer release makes the backend unavailable, naming both versions."""
    path = tmp_path / "future.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(BackendUnavailable, match=f"schema version {SCHEMA_VERSION + 1}"):
        _open(run, str(path))


def test_a_file_that_is_not_a_database_is_a_backend_failure(run: Any, tmp_path: Path) -> None:
    """A driver error at open is translated, with the driver error as its cause."""
    path = tmp_path / "junk.sqlite3"
    path.write_bytes(b"this is not an SQLite database file, not at all" * 20)
    with pytest.raises(BackendFailure) as caught:
        _open(run, str(path))
    assert isinstance(caught.value.__cause__, sqlite3.Error)


def test_file_database_uses_wal(run: Any, tmp_path: Path) -> None:
    """File databases are in WAL mode with synchronous=NORMAL."""
    path = tmp_path / "wal.sqlite3"
    backend = _open(run, str(path))
    try:
        run(backend.create_or_update(A, "Patient", "p1", _patient("W", "p1")))
        with sqlite3.connect(path) as connection:
            assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        run(backend.close())


def test_memory_database_works(run: Any) -> None:
    """``:memory:`` gives a working, private database."""
    backend = _open(run, ":memory:")
    try:
        stored = run(backend.create(A, _patient("M")))
        assert run(backend.read(A, "Patient", stored.id)) == stored
    finally:
        run(backend.close())


def test_missing_driver_is_unavailable(run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without aiosqlite the backend is unavailable and says which extra to install."""
    monkeypatch.setitem(sys.modules, "aiosqlite", None)
    with pytest.raises(BackendUnavailable, match=r"helios-conformance\[sqlite\]"):
        _open(run, ":memory:")


def test_close_is_idempotent_and_later_calls_fail_cleanly(run: Any) -> None:
    """close() twice is fine; a call after close is a BackendFailure, not a driver error."""
    backend = _open(run, ":memory:")
    run(backend.close())
    run(backend.close())
    with pytest.raises(BackendFailure, match="closed"):
        run(backend.count(A))


# -- units of work ------------------------------------------------------------------


def test_each_contract_call_is_one_hop(
    run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every call, reads and multi-statement writes alike, is one trip to the worker thread."""
    backend = _open(run, str(tmp_path / "hops.sqlite3"))
    connection = backend._connection
    assert connection is not None
    hops: list[str] = []
    original = connection._execute

    async def counting(fn: Any, *args: Any, **kwargs: Any) -> Any:
        hops.append(getattr(fn, "__name__", repr(fn)))
        return await original(fn, *args, **kwargs)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(connection, "_execute", counting)

    def hops_of(awaitable: Awaitable[T]) -> int:
        hops.clear()
        run(awaitable)
        return len(hops)

    try:
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
        assert [hops_of(call()) for call in calls] == [1] * len(calls)
        # A refused call costs one hop too, and a call refused by validation none.
        hops.clear()
        with pytest.raises(VersionConflict):
            run(backend.update(A, "Patient", "h1", _patient("H", "h1"), expected_version="1"))
        assert len(hops) == 1
        hops.clear()
        with pytest.raises(HeliosError):
            run(backend.update(A, "Patient", "h1", _patient("H", "other")))
        assert hops == []
    finally:
        run(backend.close())


def test_a_failed_write_leaves_nothing(run: Any, tmp_path: Path) -> None:
    """A version conflict, or a permission refused inside the unit of work, writes no row."""
    path = tmp_path / "rollback.sqlite3"
    backend = _open(run, str(path))
    try:
        run(backend.create_or_update(A, "Patient", "p1", _patient("Before", "p1")))
        before = _history_rows(path)
        with pytest.raises(VersionConflict):
            run(backend.update(A, "Patient", "p1", _patient("After", "p1"), expected_version="7"))
        with pytest.raises(VersionConflict):
            run(backend.delete(A, "Patient", "p1", expected_version="7"))
        # create_or_update learns that p1 exists (an update) inside the transaction.
        create_only = TenantContext(
            A.tenant, TenantPermissions.builder().allow(Operation.CREATE).build()
        )
        with pytest.raises(AccessDenied):
            run(backend.create_or_update(create_only, "Patient", "p1", _patient("After", "p1")))
        assert _history_rows(path) == before
        current = run(backend.read(A, "Patient", "p1"))
        assert (current.version_id, current.resource["name"]) == ("1", [{"family": "Before"}])
    finally:
        run(backend.close())


def test_concurrent_if_match_updates_one_wins(run: Any) -> None:
    """Ten concurrent updates expecting version 1: exactly one succeeds, as version 2."""
    backend = _open(run, ":memory:")

    async def race() -> list[Any]:
        return await asyncio.gather(
            *(
                backend.update(A, "Patient", "p1", _patient(f"R{n}", "p1"), expected_version="1")
                for n in range(10)
            ),
            return_exceptions=True,
        )

    try:
        run(backend.create_or_update(A, "Patient", "p1", _patient("R", "p1")))
        results = run(race())
        winners = [result for result in results if isinstance(result, StoredResource)]
        assert [winner.version_id for winner in winners] == ["2"]
        assert sum(isinstance(result, VersionConflict) for result in results) == 9
    finally:
        run(backend.close())


# -- values -------------------------------------------------------------------------


def test_last_updated_stays_monotonic_after_reopen(run: Any, tmp_path: Path) -> None:
    """A reopened database never stamps a version earlier than one it already holds."""
    path = tmp_path / "clock.sqlite3"
    backend = _open(run, str(path))
    first = run(backend.create_or_update(A, "Patient", "p1", _patient("C", "p1")))[0]
    run(backend.close())
    # As if the database came from a machine whose clock ran a day ahead.
    ahead = first.last_updated + timedelta(days=1)
    with sqlite3.connect(path) as connection:
        connection.execute(
            "UPDATE resource_history SET last_updated = last_updated + ?",
            (86_400_000_000,),
        )
    backend = _open(run, str(path))
    try:
        second = run(backend.update(A, "Patient", "p1", _patient("C", "p1")))
        assert second.last_updated > ahead
        assert second.resource["meta"]["lastUpdated"] == format_instant(second.last_updated)
    finally:
        run(backend.close())


def test_history_window_filters_on_exact_instants(run: Any) -> None:
    """_since keeps versions at or after the instant, before those strictly earlier."""
    backend = _open(run, ":memory:")
    try:
        versions = [
            run(backend.create_or_update(A, "Patient", "p1", _patient(f"V{n}", "p1")))[0]
            for n in range(3)
        ]
        middle = versions[1].last_updated
        since = run(backend.history_instance(A, "Patient", "p1", since=middle))
        before = run(backend.history_instance(A, "Patient", "p1", before=middle))
        assert [entry.version_id for entry in since.entries] == ["3", "2"]
        assert [entry.version_id for entry in before.entries] == ["1"]
        assert since.entries[1] == versions[1]
    finally:
        run(backend.close())


def test_tenants_are_isolated(run: Any) -> None:
    """The same Type/id in two tenants is two resources with their own chains and history."""
    backend = _open(run, ":memory:")
    try:
        run(backend.create_or_update(A, "Patient", "same", _patient("InA", "same")))
        run(backend.create_or_update(A, "Patient", "same", _patient("InA2", "same")))
        stored_b, created = run(
            backend.create_or_update(B, "Patient", "same", _patient("InB", "same"))
        )
        assert (stored_b.version_id, created) == ("1", True)
        assert run(backend.read(B, "Patient", "same")).resource["name"] == [{"family": "InB"}]
        assert run(backend.count(A)) == run(backend.count(B)) == 1
        run(backend.delete(A, "Patient", "same"))
        assert run(backend.exists(B, "Patient", "same"))
        assert len(run(backend.history_system(A)).entries) == 3
        assert len(run(backend.history_system(B)).entries) == 1
    finally:
        run(backend.close())


def test_lone_surrogate_is_refused_and_nothing_stored(run: Any) -> None:
    """A lone surrogate is not Unicode: the write is refused before the database sees it."""
    backend = _open(run, ":memory:")
    try:
        with pytest.raises(InvalidResource, match="lone surrogate"):
            run(backend.create_or_update(A, "Patient", "s", _patient("x\ud800y", "s")))
        assert run(backend.count(A)) == 0
    finally:
        run(backend.close())


# -- differential against the memory backend ------------------------------------------

# Skewed towards one tenant, type and id, so that calls keep meeting the same resources.
# LIMITED is tenant a seen by a caller who may create but not update, and only Patients.
LIMITED = TenantContext(
    A.tenant,
    TenantPermissions.builder()
    .allow(Operation.CREATE, Operation.READ, Operation.HISTORY)
    .only_types(["Patient"])
    .build(),
)
_TENANTS = st.sampled_from([A, A, A, A, B, LIMITED])
_TYPES = st.sampled_from(["Patient", "Patient", "Patient", "Observation"])
# "bad id" is not a FHIR id: both backends must refuse it alike.
_CLIENT_IDS = frozenset({"x", "y", "bad id"})
_IDS = st.sampled_from(["x", "x", "x", "y", "bad id"])
# Mostly well-formed PUT bodies, so that chains grow; sometimes one without its id.
_WITH_ID = st.sampled_from([True, True, True, False])
_EXPECTED = st.sampled_from([None, None, "1", "2", "3"])

_OPERATION_KINDS = {
    "create": st.tuples(_TENANTS, _TYPES, _IDS, st.booleans()),
    "create_or_update": st.tuples(_TENANTS, _TYPES, _IDS, _WITH_ID, st.integers(0, 9)),
    "update": st.tuples(_TENANTS, _TYPES, _IDS, _WITH_ID, _EXPECTED),
    "delete": st.tuples(_TENANTS, _TYPES, _IDS, _EXPECTED),
    "read": st.tuples(_TENANTS, _TYPES, _IDS),
    "vread": st.tuples(_TENANTS, _TYPES, _IDS, st.sampled_from(["1", "2", "3", "0"])),
    "exists": st.tuples(_TENANTS, _TYPES, _IDS),
    "count": st.tuples(_TENANTS, st.none() | _TYPES),
    "history": st.tuples(
        _TENANTS,
        st.sampled_from(["instance", "type", "system"]),
        _TYPES,
        _IDS,
        st.integers(1, 3),
    ),
}
# Writes that build chains come up most often; st.one_of would favour its first branch.
_KIND_WEIGHTS = {"create_or_update": 4, "update": 2, "delete": 2, "vread": 2, "history": 2}
_OPERATIONS = st.sampled_from(
    [kind for kind in _OPERATION_KINDS for _ in range(_KIND_WEIGHTS.get(kind, 1))]
).flatmap(lambda kind: _OPERATION_KINDS[kind].map(lambda args: (kind, *args)))


def _body(resource_type: str, resource_id: str, with_id: bool, marker: object) -> dict[str, Any]:
    body: dict[str, Any] = {"resourceType": resource_type, "language": f"x-{marker}"}
    if with_id:
        body["id"] = resource_id
    return body


def _normal(value: object) -> object:
    """A backend answer without what legitimately differs (instants, cursor tokens)."""
    if isinstance(value, StoredResource):
        resource = value.resource
        if resource is not None:
            assert resource["meta"]["lastUpdated"] == format_instant(value.last_updated)
            resource = {**resource, "meta": {**resource["meta"], "lastUpdated": None}}
        resource_id = value.id
        if resource_id not in _CLIENT_IDS:
            # Each backend assigns its own random id on create.
            resource_id = "<server-assigned>"
            if resource is not None:
                resource = {**resource, "id": resource_id}
        return (value.resource_type, resource_id, value.version_id, value.deleted, resource)
    if isinstance(value, tuple):
        return tuple(_normal(item) for item in value)
    return value


async def _history(backend: Any, op: tuple[Any, ...]) -> list[object]:
    _, context, level, resource_type, resource_id, count = op
    pages: list[object] = []
    cursor = None
    # A backend whose cursors never run out must fail the test, not hang it.
    for _ in range(100):
        if level == "instance":
            page: HistoryPage = await backend.history_instance(
                context, resource_type, resource_id, count=count, cursor=cursor
            )
        elif level == "type":
            page = await backend.history_type(context, resource_type, count=count, cursor=cursor)
        else:
            page = await backend.history_system(context, count=count, cursor=cursor)
        pages.append(_normal(page.entries))
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor
    raise AssertionError(f"history paging did not end after 100 pages: {op!r}")


async def _apply(backend: Any, op: tuple[Any, ...]) -> object:
    kind = op[0]
    try:
        if kind == "create":
            _, context, resource_type, resource_id, with_id = op
            # Any id in the body is ignored, even one that is not a FHIR id.
            return _normal(
                await backend.create(context, _body(resource_type, resource_id, with_id, "c"))
            )
        if kind == "create_or_update":
            _, context, resource_type, resource_id, with_id, marker = op
            body = _body(resource_type, resource_id, with_id, marker)
            return _normal(
                await backend.create_or_update(context, resource_type, resource_id, body)
            )
        if kind == "update":
            _, context, resource_type, resource_id, with_id, expected = op
            body = _body(resource_type, resource_id, with_id, "u")
            return _normal(
                await backend.update(
                    context, resource_type, resource_id, body, expected_version=expected
                )
            )
        if kind == "delete":
            _, context, resource_type, resource_id, expected = op
            return _normal(
                await backend.delete(context, resource_type, resource_id, expected_version=expected)
            )
        if kind == "read":
            return _normal(await backend.read(*op[1:]))
        if kind == "vread":
            return _normal(await backend.vread(*op[1:]))
        if kind == "exists":
            return await backend.exists(*op[1:])
        if kind == "count":
            return await backend.count(*op[1:])
        return await _history(backend, op)
    except HeliosError as exc:
        return (type(exc).__name__, str(exc))


@settings(max_examples=50, deadline=None)
@given(operations=st.lists(_OPERATIONS, min_size=20, max_size=80))
def test_same_answers_as_the_memory_backend(
    runner: asyncio.Runner, operations: list[tuple[Any, ...]]
) -> None:
    """Any sequence of calls gets the same answers (errors and messages included) as memory."""

    async def compare() -> None:
        memory = MemoryBackend()
        sqlite = await open_sqlite_backend(BackendConfig(url=":memory:"))
        try:
            for step, op in enumerate(operations):
                expected = await _apply(memory, op)
                got = await _apply(sqlite, op)
                assert got == expected, f"step {step}: {op!r}"
            # Finally the whole record of each tenant, in pages of two.
            for context in (A, B):
                final = ("history", context, "system", "Patient", "x", 2)
                assert await _history(sqlite, final) == await _history(memory, final)
        finally:
            await sqlite.close()
            await memory.close()

    runner.run(compare())


def test_compartment_restricted_callers_see_only_their_compartment(run: Any) -> None:
    """A caller restricted to Patient/p2 is served, but Patient/p1 does not exist for it
    (tests/test_sqlite_tenancy.py has the rest)."""
    backend = _open(run, ":memory:")
    try:
        run(backend.create_or_update(A, "Patient", "p1", _patient("One", "p1")))
        restricted = TenantContext(
            A.tenant,
            TenantPermissions.builder().allow_all_operations().in_compartment("Patient/p2").build(),
        )
        with pytest.raises(NotFound):
            run(backend.read(restricted, "Patient", "p1"))
        assert run(backend.search(restricted, "Patient", [])).entries == ()
        assert run(backend.exists(A, "Patient", "p1"))
    finally:
        run(backend.close())
