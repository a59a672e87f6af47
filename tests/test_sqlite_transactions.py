"""SQLite-specific behaviour of transactions in the reference backend.

The suites check the contract (atomic bundles, conditional operations, the
concurrency guarantees); these tests look at what only SQLite has: the rows a
rolled-back transaction would have left in each table, the in-process registry of
custom SearchParameters, the gate that makes other tasks wait for an open
transaction on the one connection, savepoints for a failed call inside a
transaction, and the hop count of each call.
"""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from helios_conformance import (
    BackendConfig,
    InvalidRequest,
    InvalidSearch,
    NotFound,
    StoredResource,
    TenantContext,
    VersionConflict,
)
from reference_impl.sqlite import SQLITE_CAPABILITIES, SQLiteBackend, open_sqlite_backend

T = TypeVar("T")

A = TenantContext.of("a")

# Every table a write touches, and how to count its rows. FTS5 with external content
# reads its rows from search_index, so its own entries are counted in the docsize
# shadow table (one row per indexed text).
_TABLES = {
    "resources": "SELECT count(*) FROM resources",
    "resource_history": "SELECT count(*) FROM resource_history",
    "search_index": "SELECT count(*) FROM search_index",
    "search_fts": "SELECT count(*) FROM search_fts_docsize",
    "search_parameters": "SELECT count(*) FROM search_parameters",
}

_NICKNAME = {
    "resourceType": "SearchParameter",
    "id": "nickname",
    "url": "http://example.org/SearchParameter/nickname",
    "name": "nickname",
    "status": "active",
    "description": "nickname",
    "code": "nickname",
    "base": ["Patient"],
    "type": "string",
    "expression": "Patient.name.where(use = 'nickname').given",
}


def _patient(resource_id: str, family: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": resource_id, "name": [{"family": family}]}


def _bobby(resource_id: str) -> dict[str, Any]:
    patient = _patient(resource_id, "Smith")
    patient["name"].append({"use": "nickname", "given": ["Bobby"]})
    return patient


def _observation(resource_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": resource_id,
        "status": "final",
        "code": {"text": "Zyzzogeton count"},
    }


async def _open(path: Path) -> SQLiteBackend:
    return await open_sqlite_backend(BackendConfig(url=str(path)))


def _run(scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(scenario())  # type: ignore[arg-type]


def _counts(path: Path) -> dict[str, int]:
    """Count the rows of every table from a second connection (committed data only)."""
    with sqlite3.connect(path) as connection:
        return {name: int(connection.execute(sql).fetchone()[0]) for name, sql in _TABLES.items()}


def _fts_matches(path: Path, token: str) -> list[int]:
    """The rowids the FTS index itself (not its content table) has for ``token``."""
    with sqlite3.connect(path) as connection:
        rows = connection.execute(
            "SELECT rowid FROM search_fts WHERE search_fts MATCH ?", (f'"{token}"',)
        ).fetchall()
        # Raises if the index disagrees with the rows it was built from.
        connection.execute("INSERT INTO search_fts (search_fts) VALUES ('integrity-check')")
    return [int(row[0]) for row in rows]


async def _counts_inside(backend: SQLiteBackend) -> dict[str, int]:
    """Count the rows on the backend's own connection: inside its open transaction."""

    def unit(connection: sqlite3.Connection) -> dict[str, int]:
        return {name: int(connection.execute(sql).fetchone()[0]) for name, sql in _TABLES.items()}

    return await backend._hop(unit)


def test_sqlite_declares_the_transaction_capabilities() -> None:
    """Transactions, batches, conditional operations, patch and concurrency are claimed."""
    assert {
        "transactions.api",
        "transactions.bundle",
        "transactions.batch",
        "conditional.create",
        "conditional.update",
        "conditional.delete",
        "conditional.patch",
        "patch.json_patch",
        "patch.fhirpath_patch",
        "concurrency.conditional_create",
        "concurrency.optimistic_locking",
        "concurrency.transactions",
        "concurrency.version_sequence",
    } <= SQLITE_CAPABILITIES.supported


def test_a_failed_transaction_leaves_no_row_in_any_table(tmp_path: Path) -> None:
    """Creates, updates and deletes of a rolled-back transaction leave no row behind."""
    path = tmp_path / "rollback.sqlite3"

    async def scenario() -> dict[str, int]:
        backend = await _open(path)
        try:
            await backend.create_or_update(A, "Patient", "kept", _patient("kept", "Keeper"))
            await backend.create_or_update(A, "Patient", "gone", _patient("gone", "Goner"))
            before = await _counts_inside(backend)

            async def abandoned() -> None:
                async with backend.transaction(A) as tx:
                    await tx.create(A, _patient("x", "Zyzzogeton"))
                    await tx.update(A, "Patient", "kept", _patient("kept", "Zyzzogeton"))
                    await tx.delete(A, "Patient", "gone")
                    await tx.create_or_update(A, "Observation", "o1", _observation("o1"))
                    inside = await _counts_inside(backend)
                    # The writes are really there, in the open transaction.
                    assert inside["resources"] == before["resources"] + 2
                    assert inside["resource_history"] == before["resource_history"] + 4
                    assert inside["search_index"] > before["search_index"]
                    assert inside["search_fts"] > before["search_fts"]
                    raise RuntimeError("abandon the transaction")

            with pytest.raises(RuntimeError, match="abandon"):
                await abandoned()
            # The rolled-back state is what everyone else sees, and the transaction's
            # own uncommitted writes never escaped.
            assert (await backend.read(A, "Patient", "kept")).resource["name"] == [  # type: ignore[index]
                {"family": "Keeper"}
            ]
            assert await backend.exists(A, "Patient", "gone")
            with pytest.raises(NotFound):
                await backend.read(A, "Observation", "o1")
            assert list((await backend.search(A, "Patient", [("name", "zyzzogeton")])).ids) == []
            return before
        finally:
            await backend.close()

    before = _run(scenario)
    assert _counts(path) == before
    assert _fts_matches(path, "zyzzogeton") == []
    assert _fts_matches(path, "keeper") != []


def test_a_failed_transaction_bundle_leaves_no_row(tmp_path: Path) -> None:
    """A bundle whose last entry fails its ifMatch writes nothing, in any table."""
    path = tmp_path / "bundle.sqlite3"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
                "resource": {"resourceType": "Patient", "name": [{"family": "Zyzzogeton"}]},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    **_observation("o1"),
                    "subject": {"reference": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"},
                },
                "request": {"method": "PUT", "url": "Observation/o1"},
            },
            {
                "resource": _patient("kept", "Zyzzogeton"),
                "request": {"method": "PUT", "url": "Patient/kept", "ifMatch": 'W/"7"'},
            },
        ],
    }

    async def scenario() -> dict[str, int]:
        backend = await _open(path)
        try:
            await backend.create_or_update(A, "Patient", "kept", _patient("kept", "Keeper"))
            before = await _counts_inside(backend)
            with pytest.raises(VersionConflict):
                await backend.process_bundle(A, bundle)
            return before
        finally:
            await backend.close()

    before = _run(scenario)
    assert _counts(path) == before
    assert _fts_matches(path, "zyzzogeton") == []


def test_a_rolled_back_search_parameter_is_forgotten(tmp_path: Path) -> None:
    """A SearchParameter registered in a rolled-back transaction is unknown afterwards,
    in this process and after reopening, while inside the transaction it worked."""
    path = tmp_path / "parameter.sqlite3"

    async def scenario() -> None:
        backend = await _open(path)
        try:
            tx = await backend.begin(A)
            await tx.create_or_update(A, "SearchParameter", "nickname", _NICKNAME)
            await tx.create_or_update(A, "Patient", "p1", _bobby("p1"))
            found = await tx.search(A, "Patient", [("nickname", "bob")])
            assert list(found.ids) == ["p1"]
            await tx.rollback()
            with pytest.raises(InvalidSearch):
                await backend.search(A, "Patient", [("nickname", "bob")])
        finally:
            await backend.close()
        reopened = await _open(path)
        try:
            with pytest.raises(InvalidSearch):
                await reopened.search(A, "Patient", [("nickname", "bob")])
        finally:
            await reopened.close()

    _run(scenario)
    assert _counts(path) == dict.fromkeys(_TABLES, 0)


def test_a_rolled_back_retirement_keeps_the_parameter(tmp_path: Path) -> None:
    """Retiring a committed SearchParameter in a rolled-back transaction changes nothing."""
    path = tmp_path / "retire.sqlite3"

    async def scenario() -> None:
        backend = await _open(path)
        try:
            await backend.create_or_update(A, "SearchParameter", "nickname", _NICKNAME)
            await backend.create_or_update(A, "Patient", "p1", _bobby("p1"))
            async with backend.transaction(A) as tx:
                await tx.create_or_update(
                    A, "SearchParameter", "nickname", {**_NICKNAME, "status": "retired"}
                )
                with pytest.raises(InvalidSearch):
                    await tx.search(A, "Patient", [("nickname", "bob")])
                await tx.rollback()
            found = await backend.search(A, "Patient", [("nickname", "bob")])
            assert list(found.ids) == ["p1"]
        finally:
            await backend.close()

    _run(scenario)
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT url FROM search_parameters").fetchall() == [
            (_NICKNAME["url"],)
        ]


def test_other_tasks_wait_for_an_open_transaction(tmp_path: Path) -> None:
    """Calls from other tasks wait until the transaction commits, then see all of it."""

    async def scenario() -> None:
        backend = await _open(tmp_path / "wait.sqlite3")
        written = asyncio.Event()
        finish = asyncio.Event()

        async def transaction() -> StoredResource:
            async with backend.transaction(A) as tx:
                await tx.update(A, "Patient", "p1", _patient("p1", "During"))
                written.set()
                await finish.wait()
                # The transaction goes on while the others wait (no deadlock), and
                # coroutines it gathers run inside it.
                _, read = await asyncio.gather(
                    tx.create_or_update(A, "Patient", "p2", _patient("p2", "During")),
                    tx.read(A, "Patient", "p1"),
                )
            return read

        try:
            await backend.create_or_update(A, "Patient", "p1", _patient("p1", "Before"))
            # Started from this task, which holds no transaction: they are outsiders.
            holder = asyncio.create_task(transaction())
            await written.wait()
            read = asyncio.create_task(backend.read(A, "Patient", "p1"))
            count = asyncio.create_task(backend.count(A, "Patient"))
            search = asyncio.create_task(backend.search(A, "Patient", [("name", "during")]))
            write = asyncio.create_task(
                backend.create_or_update(A, "Patient", "p3", _patient("p3", "X"))
            )
            conditional = asyncio.create_task(
                backend.conditional_create(A, _patient("p4", "Y"), [("name", "y")])
            )
            others: list[asyncio.Task[Any]] = [read, count, search, write, conditional]
            await asyncio.sleep(0.05)
            assert not any(task.done() for task in others)
            finish.set()
            assert (await holder).version_id == "2"
            # Each ran after the commit and saw all of the transaction.
            assert (await read).version_id == "2"
            assert await count == 2
            assert list((await search).ids) == ["p1", "p2"]
            assert (await write)[1]
            assert (await conditional)[1]
            assert await backend.count(A, "Patient") == 4
        finally:
            await backend.close()

    _run(scenario)


def test_a_failed_call_inside_a_transaction_undoes_only_itself(tmp_path: Path) -> None:
    """A refused write inside a transaction writes nothing; the rest still commits."""
    path = tmp_path / "savepoint.sqlite3"

    async def scenario() -> None:
        backend = await _open(path)
        try:
            await backend.create_or_update(A, "Patient", "p1", _patient("p1", "One"))
            async with backend.transaction(A) as tx:
                await tx.create_or_update(A, "Patient", "p2", _patient("p2", "Two"))
                with pytest.raises(VersionConflict):
                    await tx.update(
                        A, "Patient", "p1", _patient("p1", "Nope"), expected_version="9"
                    )
                await tx.update(A, "Patient", "p1", _patient("p1", "Uno"), expected_version="1")
            assert (await backend.read(A, "Patient", "p1")).version_id == "2"
            assert await backend.exists(A, "Patient", "p2")
        finally:
            await backend.close()

    _run(scenario)
    with sqlite3.connect(path) as connection:
        assert connection.execute(
            "SELECT id, version_id FROM resource_history ORDER BY sequence"
        ).fetchall() == [("p1", 1), ("p2", 1), ("p1", 2)]


def test_nesting_and_a_closed_transaction_are_refused(tmp_path: Path) -> None:
    """A second begin in the same task, and a call after commit, raise InvalidRequest."""

    async def scenario() -> None:
        backend = await _open(tmp_path / "nested.sqlite3")
        try:
            tx = await backend.begin(A, isolation="read_committed")
            assert tx.isolation == "read_committed"
            with pytest.raises(InvalidRequest, match="nested"):
                await backend.begin(A)
            await tx.commit()
            with pytest.raises(InvalidRequest):
                await tx.read(A, "Patient", "p1")
            with pytest.raises(InvalidRequest):
                await tx.commit()
        finally:
            await backend.close()

    _run(scenario)


def test_one_hop_per_call_outside_and_inside_transactions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gate adds no hop: each call is one trip to the worker thread, in a
    transaction or not, and begin, commit and rollback are one each."""

    async def scenario() -> None:
        backend = await _open(tmp_path / "hops.sqlite3")
        connection = backend._connection
        assert connection is not None
        hops: list[str] = []
        original = connection._execute

        async def counting(fn: Any, *args: Any, **kwargs: Any) -> Any:
            hops.append(getattr(fn, "__name__", repr(fn)))
            return await original(fn, *args, **kwargs)  # type: ignore[no-untyped-call]

        monkeypatch.setattr(connection, "_execute", counting)

        async def hops_of(awaitable: Awaitable[Any]) -> int:
            hops.clear()
            await awaitable
            return len(hops)

        try:
            calls: list[Callable[[], Awaitable[Any]]] = [
                lambda: backend.create(A, _patient("ignored", "H")),
                lambda: backend.create_or_update(A, "Patient", "h1", _patient("h1", "H")),
                lambda: backend.update(
                    A, "Patient", "h1", _patient("h1", "H"), expected_version="1"
                ),
                lambda: backend.read(A, "Patient", "h1"),
                lambda: backend.vread(A, "Patient", "h1", "1"),
                lambda: backend.exists(A, "Patient", "h1"),
                lambda: backend.count(A),
                lambda: backend.search(A, "Patient", [("name", "h")]),
                lambda: backend.history_instance(A, "Patient", "h1"),
                lambda: backend.history_type(A, "Patient"),
                lambda: backend.history_system(A),
            ]
            assert [await hops_of(call()) for call in calls] == [1] * len(calls)
            hops.clear()
            tx = await backend.begin(A)
            assert len(hops) == 1
            in_transaction: list[Callable[[], Awaitable[Any]]] = [
                lambda: tx.create(A, _patient("ignored", "H")),
                lambda: tx.update(A, "Patient", "h1", _patient("h1", "H"), expected_version="2"),
                lambda: tx.read(A, "Patient", "h1"),
                lambda: tx.search(A, "Patient", [("name", "h")]),
                lambda: tx.delete(A, "Patient", "h1"),
            ]
            assert [await hops_of(call()) for call in in_transaction] == [1] * len(in_transaction)
            assert await hops_of(tx.rollback()) == 1
            tx = await backend.begin(A)
            assert await hops_of(tx.commit()) == 1
            assert (await backend.read(A, "Patient", "h1")).version_id == "2"
        finally:
            await backend.close()

    _run(scenario)


def test_every_public_call_runs_under_the_gate() -> None:
    """Each public call, inherited ones (bulk storage) included, waits for an open
    transaction; only the calls that open their own transaction are left out."""
    calls = {
        name
        for name in dir(SQLiteBackend)
        if not name.startswith("_") and inspect.iscoroutinefunction(getattr(SQLiteBackend, name))
    }
    gated = {name for name in calls if getattr(getattr(SQLiteBackend, name), "helios_gated", False)}
    assert calls - gated == {
        "begin",
        "close",
        "conditional_create",
        "conditional_delete",
        "conditional_patch",
        "conditional_update",
        "patch",
        "process_bundle",
    }
    assert {"create", "read", "search", "reindex", "history_system"} <= gated
