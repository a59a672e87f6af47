"""SQLite-specific behaviour of compartment restrictions in the reference backend.

The suites (``suites/tenancy``) check the contract; these tests look at what only
SQLite has: the membership test compiled into the SQL of a search, per-version
membership of history (``search_index`` holds only current versions, so history and
vread judge each version on its own content), the write check on the index rows
computed before the hop (a refused write leaves no row in any table), the check
inside an explicit transaction, and a reopened database.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from helios_conformance import (
    AccessDenied,
    BackendConfig,
    Compartment,
    NotFound,
    TenantContext,
    TenantPermissions,
)
from helios_conformance.search import index_resource, parse_query
from reference_impl.sqlite import SQLITE_CAPABILITIES, SQLiteBackend, open_sqlite_backend
from reference_impl.sqlite._search import index_values, plan_search, values_in_compartment

T = TypeVar("T")

A = TenantContext.of("a")
B = TenantContext.of("b")
P1 = TenantContext(
    A.tenant,
    TenantPermissions.builder().allow_all_operations().in_compartment("Patient/p1").build(),
)

_TABLES = ("resources", "resource_history", "search_index", "search_fts_docsize")


def _patient(resource_id: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": resource_id, "name": [{"family": resource_id}]}


def _observation(resource_id: str, subject: str, value: int = 1) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": resource_id,
        "status": "final",
        "code": {"text": "weight"},
        "subject": {"reference": subject},
        "valueQuantity": {"value": value},
    }


async def _open(path: Path) -> SQLiteBackend:
    return await open_sqlite_backend(BackendConfig(url=str(path)))


def _run(scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(scenario())  # type: ignore[arg-type]


def _counts(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as connection:
        return {
            table: int(connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            for table in _TABLES
        }


async def _seed(backend: SQLiteBackend) -> None:
    for context in (A, B):
        for ident in ("p1", "p2"):
            await backend.create_or_update(context, "Patient", ident, _patient(ident))
        await backend.create_or_update(
            context, "Observation", "o1", _observation("o1", "Patient/p1")
        )
        await backend.create_or_update(
            context, "Observation", "o2", _observation("o2", "Patient/p2")
        )


def test_sqlite_declares_compartment_enforcement() -> None:
    """``tenancy.compartment`` is declared beside the other tenancy capabilities."""
    assert {
        "tenancy.shared_schema",
        "tenancy.permissions",
        "tenancy.isolation",
        "tenancy.hierarchy",
        "tenancy.compartment",
    } <= SQLITE_CAPABILITIES.supported


def test_the_search_filters_by_compartment_in_sql() -> None:
    """The page and count statements carry the EXISTS over the reference rows."""
    query = parse_query("Observation", [("code:text", "weight")])
    compartment = Compartment.parse("Patient/p1")

    plan = plan_search("a", query, summary_only=False, counted=True, compartment=compartment)
    unrestricted = plan_search("a", query, summary_only=False, counted=True)

    assert plan.page_sql is not None
    assert plan.count_sql is not None
    for sql in (plan.page_sql, plan.count_sql):
        assert "EXISTS (SELECT 1 FROM search_index cm" in sql
    assert "Patient/p1" in plan.parameters.values()
    assert plan.compartment == compartment
    assert unrestricted.page_sql is not None
    assert "search_index cm" not in unrestricted.page_sql


@pytest.mark.parametrize(
    ("reference", "member"),
    [
        ("Patient/p1", True),
        ("Patient/p2", False),
        ("#p1", False),
        ("http://elsewhere.example/fhir/Patient/p1", False),
        ("Group/p1", False),
    ],
)
def test_the_write_check_agrees_with_the_harness(reference: str, member: bool) -> None:
    """The check on pre-computed index rows is :meth:`Compartment.contains`."""
    compartment = Compartment.parse("Patient/p1")
    body = _observation("o9", reference)
    rows = index_resource(body)
    values = index_values("a", "Observation", "o9", rows)

    assert compartment.contains("Observation", "o9", rows) is member
    assert values_in_compartment(compartment, "Observation", "o9", values) is member
    # The compartment's own resource is a member whatever its rows.
    assert values_in_compartment(compartment, "Patient", "p1", [])


def test_restricted_reads_only_see_the_compartment(tmp_path: Path) -> None:
    """read, exists, count, search with _revinclude: p1's resources of tenant a only."""

    async def scenario() -> None:
        backend = await _open(tmp_path / "reads.sqlite3")
        try:
            await _seed(backend)
            assert (await backend.read(P1, "Observation", "o1")).id == "o1"
            with pytest.raises(NotFound):
                await backend.read(P1, "Observation", "o2")
            assert await backend.exists(P1, "Patient", "p1")
            assert not await backend.exists(P1, "Patient", "p2")
            assert await backend.count(P1) == 2
            assert await backend.count(A) == 4
            result = await backend.search(P1, "Patient", [("_revinclude", "Observation:subject")])
            assert [e.id for e in result.entries] == ["p1"]
            assert [(e.resource_type, e.id) for e in result.included] == [("Observation", "o1")]
        finally:
            await backend.close()

    _run(scenario)


def test_history_judges_each_version_on_its_own_content(tmp_path: Path) -> None:
    """An Observation moved from p2 to p1 and deleted: the p1 caller sees the versions
    that were about p1 (and the deletion of one), never the one about p2."""

    async def scenario() -> None:
        backend = await _open(tmp_path / "history.sqlite3")
        try:
            await _seed(backend)
            await backend.update(A, "Observation", "o2", _observation("o2", "Patient/p1", 2))
            await backend.delete(A, "Observation", "o2")
            await backend.update(A, "Observation", "o1", _observation("o1", "Patient/p2", 3))

            o2 = await backend.history_instance(P1, "Observation", "o2")
            assert [(e.version_id, e.deleted) for e in o2.entries] == [("3", True), ("2", False)]
            with pytest.raises(NotFound):
                await backend.vread(P1, "Observation", "o2", "1")
            assert (await backend.vread(P1, "Observation", "o2", "2")).version_id == "2"
            # o1 is now about p2: not readable, but its version 1 still is.
            with pytest.raises(NotFound):
                await backend.read(P1, "Observation", "o1")
            assert (await backend.vread(P1, "Observation", "o1", "1")).version_id == "1"
            system = await backend.history_system(P1)
            assert sorted((e.resource_type, e.id, e.version_id) for e in system.entries) == [
                ("Observation", "o1", "1"),
                ("Observation", "o2", "2"),
                ("Observation", "o2", "3"),
                ("Patient", "p1", "1"),
            ]
            # Paging keeps to the compartment too.
            first = await backend.history_type(P1, "Observation", count=2)
            assert first.next_cursor is not None
            rest = await backend.history_type(P1, "Observation", count=2, cursor=first.next_cursor)
            seen = [(e.id, e.version_id) for e in (*first.entries, *rest.entries)]
            assert seen == [("o2", "3"), ("o2", "2"), ("o1", "1")]
        finally:
            await backend.close()

    _run(scenario)


def test_a_refused_write_leaves_no_row(tmp_path: Path) -> None:
    """Creating, updating or deleting outside the compartment writes nothing at all."""
    path = tmp_path / "writes.sqlite3"

    async def seed() -> None:
        backend = await _open(path)
        try:
            await _seed(backend)
        finally:
            await backend.close()

    _run(seed)
    before = _counts(path)

    async def scenario() -> None:
        backend = await _open(path)
        try:
            with pytest.raises(AccessDenied):
                await backend.create(P1, _observation("x", "Patient/p2"))
            with pytest.raises(AccessDenied):
                await backend.update(P1, "Observation", "o2", _observation("o2", "Patient/p1"))
            with pytest.raises(AccessDenied):
                await backend.update(P1, "Observation", "o1", _observation("o1", "Patient/p2"))
            with pytest.raises(AccessDenied):
                await backend.delete(P1, "Observation", "o2")
            with pytest.raises(AccessDenied):
                await backend.create_or_update(
                    P1, "Observation", "o3", _observation("o3", "Patient/p2")
                )
        finally:
            await backend.close()

    _run(scenario)
    assert _counts(path) == before


def test_the_compartment_holds_inside_a_transaction(tmp_path: Path) -> None:
    """In an explicit transaction a hidden resource is NotFound, a write outside is
    refused, and the transaction stays usable."""

    async def scenario() -> None:
        backend = await _open(tmp_path / "transaction.sqlite3")
        try:
            await _seed(backend)
            transaction = await backend.begin(P1)
            with pytest.raises(NotFound):
                await transaction.read(P1, "Patient", "p2")
            with pytest.raises(AccessDenied):
                await transaction.create(P1, _observation("x", "Patient/p2"))
            created = await transaction.create(P1, _observation("y", "Patient/p1"))
            assert await transaction.count(P1, "Observation") == 2
            await transaction.commit()
            assert (await backend.read(A, "Observation", created.id)).version_id == "1"
            assert await backend.count(A, "Observation") == 3
        finally:
            await backend.close()

    _run(scenario)


def test_a_reopened_database_enforces_the_compartment(tmp_path: Path) -> None:
    """The per-version membership function is registered on every connection opened."""
    path = tmp_path / "reopen.sqlite3"

    async def seed() -> None:
        backend = await _open(path)
        try:
            await _seed(backend)
        finally:
            await backend.close()

    async def scenario() -> list[str]:
        backend = await _open(path)
        try:
            page = await backend.history_type(P1, "Observation")
            return [e.id for e in page.entries]
        finally:
            await backend.close()

    _run(seed)
    assert _run(scenario) == ["o1"]


# -- database per tenant (--backend-option tenancy=database) ---------------------------

ACME_RESEARCH = TenantContext.of("acme").for_child("research")
_SEARCH_PARAMETER = {
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


async def _open_per_tenant(root: Path, pool_size: int = 8) -> SQLiteBackend:
    return await open_sqlite_backend(
        BackendConfig(url=str(root), options={"tenancy": "database", "pool_size": str(pool_size)})
    )


def _tenant_rows(path: Path) -> set[str]:
    with sqlite3.connect(path) as connection:
        return {
            str(row[0])
            for table in ("resources", "resource_history", "search_index")
            for row in connection.execute(f"SELECT DISTINCT tenant FROM {table}")
        }


def test_database_mode_declares_database_per_tenant(tmp_path: Path) -> None:
    """Only that mode declares ``tenancy.database_per_tenant`` (and not the shared schema)."""

    async def scenario() -> tuple[frozenset[str], frozenset[str]]:
        shared = await _open(tmp_path / "shared.sqlite3")
        per_tenant = await _open_per_tenant(tmp_path / "tenants")
        try:
            return shared.capabilities.supported, per_tenant.capabilities.supported
        finally:
            await shared.close()
            await per_tenant.close()

    shared, per_tenant = _run(scenario)
    assert "tenancy.database_per_tenant" not in shared
    assert "tenancy.shared_schema" in shared
    assert "tenancy.database_per_tenant" in per_tenant
    assert "tenancy.shared_schema" not in per_tenant
    assert per_tenant - {"tenancy.database_per_tenant"} == shared - {"tenancy.shared_schema"}


@pytest.mark.parametrize(
    "options",
    [{"tenancy": "schema"}, {"tenancy": "database", "pool_size": "0"}, {"pool_size": "2"}],
)
def test_bad_tenancy_options_are_refused(tmp_path: Path, options: dict[str, str]) -> None:
    """An unknown mode, an empty pool, or a pool without tenancy=database."""
    from helios_conformance import BackendUnavailable

    with pytest.raises(BackendUnavailable):
        _run(lambda: open_sqlite_backend(BackendConfig(url=str(tmp_path / "x"), options=options)))


def test_each_tenant_has_its_own_file_created_lazily(tmp_path: Path) -> None:
    """Tenants a and acme/research write to their own migrated files; b never used has none."""
    root = tmp_path / "tenants"

    async def scenario() -> None:
        backend = await _open_per_tenant(root)
        try:
            assert not any(root.iterdir())
            await backend.create_or_update(A, "Patient", "p1", _patient("p1"))
            await backend.create_or_update(ACME_RESEARCH, "Patient", "p1", _patient("p1"))
            assert await backend.count(A) == 1
            assert not await backend.exists(B, "Patient", "p1")
        finally:
            await backend.close()

    _run(scenario)
    assert _tenant_rows(root / "a.sqlite3") == {"a"}
    assert _tenant_rows(root / "acme" / "research.sqlite3") == {"acme/research"}
    # b was only read: its file exists (empty, migrated), with no rows.
    assert _tenant_rows(root / "b.sqlite3") == set()
    with sqlite3.connect(root / "a.sqlite3") as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == 3
    assert not (root / "acme.sqlite3").exists()


def test_the_pool_is_bounded_and_reopens_evicted_databases(tmp_path: Path) -> None:
    """With room for two, four tenants evict each other; evicted data is read back."""
    tenants = [TenantContext.of(f"t{n}") for n in range(4)]

    async def scenario() -> None:
        backend = await _open_per_tenant(tmp_path / "tenants", pool_size=2)
        pool = backend.tenant_databases
        assert pool is not None
        try:
            for n, context in enumerate(tenants):
                body = {**_patient("p"), "name": [{"family": f"n{n}"}]}
                await backend.create_or_update(context, "Patient", "p", body)
                assert len(pool.open_tenants) <= 2
            assert pool.evicted == 2
            for n, context in enumerate(tenants):
                stored = await backend.read(context, "Patient", "p")
                assert stored.resource is not None
                assert stored.resource["name"] == [{"family": f"n{n}"}]
            assert pool.open_tenants == ("t2", "t3")
        finally:
            await backend.close()

    _run(scenario)


def test_a_database_with_an_open_transaction_is_never_evicted(tmp_path: Path) -> None:
    """Pool of one: the transaction's tenant stays open while another tenant is used."""

    async def scenario() -> None:
        backend = await _open_per_tenant(tmp_path / "tenants", pool_size=1)
        pool = backend.tenant_databases
        assert pool is not None
        try:
            transaction = await backend.begin(A)
            await transaction.create_or_update(A, "Patient", "p1", _patient("p1"))
            # The task holding the gate may still call the backend for another tenant.
            await backend.create_or_update(B, "Patient", "p1", _patient("p1"))
            assert set(pool.open_tenants) == {"a", "b"}
            assert pool.evicted == 0
            await transaction.create_or_update(A, "Patient", "p2", _patient("p2"))
            await transaction.commit()
            # Once the transaction ended, the next call shrinks the pool back.
            assert await backend.count(B) == 1
            assert pool.open_tenants == ("b",)
            assert await backend.count(A) == 2
        finally:
            await backend.close()

    _run(scenario)


def test_a_reopened_root_loads_each_tenants_parameters(tmp_path: Path) -> None:
    """A custom SearchParameter of tenant a is known again after reopening, in a only."""
    root = tmp_path / "tenants"
    bobby = _patient("p1")
    bobby["name"].append({"use": "nickname", "given": ["Bobby"]})

    async def seed() -> None:
        backend = await _open_per_tenant(root)
        try:
            await backend.create_or_update(A, "SearchParameter", "nickname", _SEARCH_PARAMETER)
            await backend.create_or_update(A, "Patient", "p1", bobby)
            await backend.create_or_update(B, "Patient", "p1", bobby)
        finally:
            await backend.close()

    async def scenario() -> tuple[list[str], bool]:
        backend = await open_sqlite_backend(
            BackendConfig(url=str(root), options={"tenancy": "database"})
        )
        try:
            found = await backend.search(A, "Patient", [("nickname", "Bobby")])
            strict = await backend.search(B, "Patient", [("nickname", "Bobby")], strict=False)
            return [e.id for e in found.entries], bool(strict.ignored)
        finally:
            await backend.close()

    _run(seed)
    assert _run(scenario) == (["p1"], True)
