"""The SQLite reference backend, on aiosqlite.

It behaves call for call like the in-memory backend (``helios_conformance.testing``),
which is the executable specification: the same validation in the same order, the same
permission checks, the same errors and messages, the same history order and cursors.

Every contract call is one *unit of work*: the arguments are validated on the event
loop, then one plain synchronous function runs in aiosqlite's worker thread and does
all of the reading, checking and writing inside one transaction (see
:meth:`SQLiteBackend._hop`). A call that raises, for whatever reason, has rolled back
and left nothing behind.

Search follows the same rule: a write extracts its index rows on the event loop
(FHIRPath, normalisation and tokenizing are CPU work) and its hop replaces the
resource's ``search_index`` rows in the same transaction as the version it writes; a
search is parsed by the harness, compiled to one SELECT (``_search.py``) and run in
one hop. The search parameters of a tenant live in one registry per tenant, as in the
in-memory backend; custom SearchParameters are also kept in the ``search_parameters``
table, so a reopened database knows them. (A second process writing SearchParameters
to the same file is not seen until this one reopens the database.)
"""

from __future__ import annotations

import functools
import json
import shutil
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, NamedTuple, ParamSpec, TypeVar, cast

from helios_conformance import (
    AccessDenied,
    BackendConfig,
    BackendFailure,
    BackendInfo,
    BackendUnavailable,
    CapabilityDeclaration,
    Compartment,
    CursorCodec,
    Gone,
    HistoryPage,
    HistoryWindow,
    InvalidResource,
    MonotonicClock,
    NotFound,
    Operation,
    QueryParameters,
    Resource,
    SearchResult,
    StoredResource,
    TenantContext,
    TenantLocation,
    VersionConflict,
    __version__,
    check_id,
    check_resource_type,
    check_version_id,
    context_compartment,
    history_window,
    stamp,
    validate_resource,
)
from helios_conformance.search import (
    SearchCursor,
    SearchParameterRegistry,
    SearchQuery,
    SummaryMode,
    TotalMode,
    check_result_parameters,
    index_resource,
    parse_query,
    parse_resource_json,
    read_search_cursor,
    search_cursor_scope,
    subset_match,
    validate_search_parameter,
)

from ._bulk import SQLITE_BULK_CAPABILITIES, SQLiteBulkStorage
from ._schema import SCHEMA_VERSION, SchemaTooNew, configure, migrate
from ._search import (
    INSERT_INDEX_ROW,
    IndexValues,
    SearchOutcome,
    SearchPlan,
    compartment_condition,
    decimal_compare,
    index_values,
    plan_search,
    positional,
    run_search,
    values_in_compartment,
)
from ._tenants import DEFAULT_POOL_SIZE, TenantDatabases
from ._transactions import SQLITE_TRANSACTION_CAPABILITIES, SQLiteTransactions, savepoint

if TYPE_CHECKING:
    import aiosqlite

P = ParamSpec("P")
T = TypeVar("T")

_STORAGE_CAPABILITIES = CapabilityDeclaration.of(
    supported=[
        "crud.create",
        "crud.read",
        "crud.update",
        "crud.update_as_create",
        "crud.delete",
        "crud.validation",
        "versioning.version_ids",
        "versioning.vread",
        "versioning.if_match",
        "history.instance",
        "history.type",
        "history.system",
        "history.deletes",
        "history.filters",
        "history.paging",
        "tenancy.shared_schema",
        "tenancy.permissions",
        "tenancy.isolation",
        "tenancy.hierarchy",
        "tenancy.compartment",
    ],
)

SQLITE_SEARCH_CAPABILITIES = CapabilityDeclaration.of(
    supported=[
        "search.param.common",
        "search.param.string",
        "search.param.token",
        "search.param.date",
        "search.param.number",
        "search.param.quantity",
        "search.param.reference",
        "search.param.uri",
        "search.param.composite",
        "search.param.custom",
        "search.modifier.exact",
        "search.modifier.contains",
        "search.modifier.text",
        "search.modifier.not",
        "search.modifier.missing",
        "search.modifier.above",
        "search.modifier.below",
        "search.modifier.identifier",
        "search.modifier.type",
        "search.modifier.of_type",
        "search.modifier.code_text",
        "search.modifier.text_advanced",
        *(f"search.prefix.{p}" for p in ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")),
        "search.text",
        "search.content",
        "search.filter",
        "search.count",
        "search.summary_count",
        "search.total",
        "search.chain",
        "search.has",
        "search.include",
        "search.include.iterate",
        "search.revinclude",
        "search.sort.single",
        "search.sort.multi",
        "search.paging.offset",
        "search.paging.cursor",
        "search.elements",
        "search.summary",
    ],
)
"""The search capabilities SQLite implements in SQL (the in-memory backend's set).

Listed here rather than copied from the in-memory backend: that one grows as the
harness's evaluator does, and a claim is only made once SQLite passes it. Refused with
Unsupported: the terminology modifiers.
"""

SQLITE_CAPABILITIES = CapabilityDeclaration.of(
    supported=_STORAGE_CAPABILITIES.supported
    | SQLITE_SEARCH_CAPABILITIES.supported
    | SQLITE_TRANSACTION_CAPABILITIES.supported
    | SQLITE_BULK_CAPABILITIES.supported
)
"""Everything the SQLite backend declares: storage, versions, history, tenancy, search,
transactions (bundles, conditional operations, patch, the concurrency guarantees),
Bulk Data (export scans and the bulk job store, ``_bulk.py``)."""

SQLITE_DATABASE_PER_TENANT_CAPABILITIES = CapabilityDeclaration.of(
    supported=(SQLITE_CAPABILITIES.supported - {"tenancy.shared_schema"})
    | {"tenancy.database_per_tenant"}
)
"""What the backend declares with ``--backend-option tenancy=database``: a database
file per tenant (``_tenants.py``) instead of the shared schema."""

_SEARCH_PARAMETER = "SearchParameter"

# The tenant database a call of a database-per-tenant backend runs on: set for the
# duration of each public call (see ``SQLiteBackend._tenant_scope``), read by ``_hop``.
_ACTIVE: ContextVar[tuple[object, aiosqlite.Connection] | None] = ContextVar(
    "helios_sqlite_tenant_database", default=None
)

MEMORY_DATABASE = ":memory:"
_URL_SCHEME = "sqlite://"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


# -- values -------------------------------------------------------------------


def _to_micros(moment: datetime) -> int:
    """An aware instant as whole microseconds since the Unix epoch (exact, no rounding)."""
    return (moment - _EPOCH) // _MICROSECOND


def _from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


@dataclass(frozen=True, slots=True)
class _Indexed:
    """What a write prepares on the event loop before its hop.

    ``moment`` is read from the clock right before the hop is queued: aiosqlite runs
    hops in the order they are queued, so lastUpdated order still agrees with the
    write order. ``rows`` were extracted with ``registry``; the hop re-extracts only
    if the tenant's registry changed in between (a SearchParameter written
    concurrently) or the resource is itself a SearchParameter.
    """

    moment: datetime
    registry: SearchParameterRegistry | None
    rows: list[IndexValues]
    # The caller's compartment restriction: the hop refuses a write whose current or
    # new version lies outside it (the new version judged on ``rows``).
    compartment: Compartment | None = None


def _dumps(resource: Resource) -> str:
    # validate_resource already refused lone surrogates, so this always encodes as UTF-8.
    return json.dumps(resource, ensure_ascii=False)


class _Current(NamedTuple):
    """The head of a version chain, as the ``resources`` table holds it."""

    version_id: int
    deleted: bool


@dataclass(frozen=True, slots=True)
class _Target:
    """The resource a unit of work addresses."""

    tenant: str
    resource_type: str
    resource_id: str

    @property
    def reference(self) -> str:
        return f"{self.resource_type}/{self.resource_id}"


def _stored(
    resource_type: str,
    resource_id: str,
    version_id: int,
    last_updated: int,
    deleted: int,
    text: str | None,
) -> StoredResource:
    return StoredResource(
        resource_type=resource_type,
        id=resource_id,
        version_id=str(version_id),
        last_updated=_from_micros(last_updated),
        deleted=bool(deleted),
        resource=None if text is None else json.loads(text),
    )


# -- the driver boundary ------------------------------------------------------


@contextmanager
def _translate_errors() -> Iterator[None]:
    """Map every sqlite3 error to :class:`BackendFailure`; no driver error escapes."""
    try:
        yield
    except sqlite3.Error as exc:
        kind = getattr(exc, "sqlite_errorname", type(exc).__name__)
        raise BackendFailure(f"sqlite failed ({kind}): {exc}") from exc


@contextmanager
def _transaction(connection: sqlite3.Connection, *, write: bool) -> Iterator[None]:
    """Run the block in one transaction; roll back on any exception.

    Writes take the write lock up front (``BEGIN IMMEDIATE``) so a unit of work never
    fails half way on a lock upgrade; reads take a consistent snapshot (``BEGIN``).
    Inside an explicit transaction (``_transactions.py``) the block runs in a
    savepoint of it instead, so a failed call undoes only its own writes.
    """
    if connection.in_transaction:
        with savepoint(connection):
            yield
        return
    connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    try:
        yield
        connection.execute("COMMIT")
    except BaseException:
        # rollback() is a no-op when SQLite already ended the transaction itself.
        connection.rollback()
        raise


def _current(connection: sqlite3.Connection, target: _Target) -> _Current | None:
    row = connection.execute(
        "SELECT version_id, deleted FROM resources"
        " WHERE tenant = ? AND resource_type = ? AND id = ?",
        (target.tenant, target.resource_type, target.resource_id),
    ).fetchone()
    return None if row is None else _Current(row[0], bool(row[1]))


def _not_found(target: _Target) -> NotFound:
    return NotFound(
        f"{target.reference} does not exist",
        resource_type=target.resource_type,
        resource_id=target.resource_id,
    )


def _existing(connection: sqlite3.Connection, target: _Target) -> _Current:
    current = _current(connection, target)
    if current is None:
        raise _not_found(target)
    return current


def _live(connection: sqlite3.Connection, target: _Target) -> _Current:
    current = _existing(connection, target)
    if current.deleted:
        raise Gone(
            f"{target.reference} was deleted (version {current.version_id})",
            resource_type=target.resource_type,
            resource_id=target.resource_id,
            version_id=str(current.version_id),
        )
    return current


def _check_expected(target: _Target, current: _Current, expected_version: str | None) -> None:
    actual = str(current.version_id)
    if expected_version is not None and expected_version != actual:
        raise VersionConflict(
            f"{target.reference}: expected version {expected_version!r} "
            f"but the current version is {actual!r}; nothing was written",
            resource_type=target.resource_type,
            resource_id=target.resource_id,
            expected_version=expected_version,
            actual_version=actual,
        )


def _url_to_database(url: str) -> str:
    """``sqlite:///relative.db``, ``sqlite:////absolute.db``, ``sqlite://`` or a plain path."""
    if not url.startswith(_URL_SCHEME):
        return url
    rest = url[len(_URL_SCHEME) :]
    if not rest:
        return MEMORY_DATABASE
    if not rest.startswith("/"):
        raise BackendUnavailable(
            f"cannot use {url!r}: write sqlite:///relative/path, sqlite:////absolute/path "
            "or sqlite:///:memory:"
        )
    return rest[1:]


def _remove_database_files(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


# -- the backend --------------------------------------------------------------


class SQLiteBackend(SQLiteBulkStorage, SQLiteTransactions):
    """The contract on one SQLite database: CRUD, versions and history, multi-tenant.

    Open it with :func:`open_sqlite_backend`. Tenants share the tables and are kept
    apart by a ``tenant`` column that every statement filters on.
    """

    def __init__(
        self,
        connection: aiosqlite.Connection | None,
        database: str,
        *,
        tenants: TenantDatabases | None = None,
    ) -> None:
        self._connection: aiosqlite.Connection | None = connection
        self._database = database
        # Database per tenant: the pool of tenant files (``None``: the shared database).
        self._tenants = tenants
        # The tenants whose custom SearchParameters were loaded from their file.
        self._loaded_tenants: set[str] = set()
        self._clock = MonotonicClock()
        self._cursors = CursorCodec()
        # One registry per tenant: custom SearchParameters are tenant data. A write of
        # a SearchParameter builds a new registry in its hop and publishes it here
        # after its commit (copy on write), so a search never sees a half update.
        self._registries: dict[str, SearchParameterRegistry] = {}
        self._pending_registry: tuple[str, SearchParameterRegistry] | None = None

    @property
    def info(self) -> BackendInfo:
        return BackendInfo(
            name="sqlite", version=__version__, server_version=sqlite3.sqlite_version
        )

    @property
    def capabilities(self) -> CapabilityDeclaration:
        if self._tenants is not None:
            return SQLITE_DATABASE_PER_TENANT_CAPABILITIES
        return SQLITE_CAPABILITIES

    @property
    def tenant_databases(self) -> TenantDatabases | None:
        """The pool of tenant databases in database-per-tenant mode, else ``None``."""
        return self._tenants

    def _registry(self, tenant: str) -> SearchParameterRegistry:
        registry = self._registries.get(tenant)
        if registry is None:
            registry = self._registries.setdefault(tenant, SearchParameterRegistry())
        return registry

    @property
    def database(self) -> str:
        """The database path, or ``:memory:``."""
        return self._database

    async def tenant_location(self, context: TenantContext) -> TenantLocation:
        """The shared database, or the tenant's own file (``TenancyInspection``)."""
        if self._tenants is not None:
            return TenantLocation("database", str(self._tenants.path(context.tenant.value)))
        return TenantLocation("shared", self._database)

    async def close(self) -> None:
        tenants, self._tenants = self._tenants, None
        if tenants is not None:
            with _translate_errors():
                await tenants.close()
        connection, self._connection = self._connection, None
        if connection is not None:
            with _translate_errors():
                # Refresh the planner's statistics where they went stale (cheap: bounded
                # by analysis_limit, see configure), as SQLite advises before closing.
                try:
                    await connection.execute("PRAGMA optimize")
                finally:
                    await connection.close()

    async def _hop(
        self,
        unit: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``unit(connection, *args)`` in aiosqlite's worker thread: one hop.

        aiosqlite sends every awaited call to its thread and back (about 100 µs each).
        Running a whole unit of work (read, check, write, in one transaction) as one
        plain function costs a single hop, and no other call on this backend can
        interleave with it. ``Connection._execute`` is how aiosqlite runs its own
        methods; it and ``_conn`` (the sqlite3 connection it wraps) are the only
        private aiosqlite names this module touches (present since aiosqlite 0.17).
        """
        active = _ACTIVE.get()
        connection = active[1] if active is not None and active[0] is self else self._connection
        if connection is None:
            raise BackendFailure("the sqlite backend is closed")
        with _translate_errors():
            result = await connection._execute(  # type: ignore[no-untyped-call]
                unit, connection._conn, *args, **kwargs
            )
        return cast(T, result)

    async def _prepare(self, *, file_backed: bool) -> None:
        """Configure, migrate, read the newest ``lastUpdated`` and the custom parameters.

        One hop at open; a database migrated from schema 1 (no search index yet) is
        reindexed in a second one.
        """
        prepared = await self._hop(_prepare_database, file_backed=file_backed)
        if prepared.newest is not None:
            self._clock.observe(_from_micros(prepared.newest))
        self._load_search_parameters(prepared.search_parameters)
        if prepared.backfill:
            await self._hop(self._backfill_unit)

    @asynccontextmanager
    async def _tenant_scope(self, context: object) -> AsyncIterator[None]:
        """Run the block on ``context``'s own database file (database per tenant).

        The pool opens (and lazily creates and migrates) the file, and does not evict
        it while the block runs or while it has an open transaction.
        """
        if self._tenants is None or not isinstance(context, TenantContext):
            yield
            return
        with _translate_errors():
            held = self._tenants.use(context.tenant.value)
            connection = await held.__aenter__()
        token = _ACTIVE.set((self, connection))
        try:
            yield
        finally:
            _ACTIVE.reset(token)
            await held.__aexit__(None, None, None)

    async def _prepare_tenant(self, tenant: str, connection: aiosqlite.Connection) -> None:
        """Configure and migrate a tenant's file the pool just opened (``_prepare``).

        Its custom SearchParameters are loaded the first time only: after that the
        in-process registry is the one the tenant's writes keep up to date.
        """
        token = _ACTIVE.set((self, connection))
        try:
            prepared = await self._hop(_prepare_database, file_backed=True)
            if prepared.newest is not None:
                self._clock.observe(_from_micros(prepared.newest))
            if tenant not in self._loaded_tenants:
                self._load_search_parameters(prepared.search_parameters)
                self._loaded_tenants.add(tenant)
            if prepared.backfill:
                await self._hop(self._backfill_unit)
        except SchemaTooNew as exc:
            raise BackendFailure(f"tenant {tenant}: {exc}") from exc
        finally:
            _ACTIVE.reset(token)

    def _backfill_unit(self, connection: sqlite3.Connection) -> None:
        """Index a database written before search existed (schema 1).

        Its SearchParameter resources are registered first, in write order, as if
        they had just been written; then every live resource is indexed.
        """
        with self._write(connection):
            found = connection.execute(
                "SELECT r.tenant, r.resource FROM resources r"
                " JOIN resource_history h ON h.tenant = r.tenant"
                " AND h.resource_type = r.resource_type AND h.id = r.id"
                " AND h.version_id = r.version_id"
                " WHERE r.resource_type = ? AND r.deleted = 0 ORDER BY h.sequence",
                (_SEARCH_PARAMETER,),
            ).fetchall()
            for tenant, text in found:
                try:
                    definition = self._registry(tenant).register(json.loads(text))
                except InvalidResource:
                    continue
                if definition is not None:
                    connection.execute(
                        "INSERT INTO search_parameters (tenant, url, position, resource)"
                        " VALUES (?, ?, (SELECT coalesce(max(position), 0) + 1"
                        " FROM search_parameters WHERE tenant = ?), ?)"
                        " ON CONFLICT (tenant, url) DO UPDATE SET"
                        " position = excluded.position, resource = excluded.resource",
                        (tenant, definition.url, tenant, text),
                    )
        self._reindex_unit(connection, None, None)

    def _load_search_parameters(self, stored: list[tuple[str, str]]) -> None:
        """Register each tenant's custom SearchParameters in registration order.

        One that cannot be registered yet (a composite whose component was
        re-registered after it) is retried once the others are in.
        """
        waiting: dict[str, list[str]] = {}
        for tenant, text in stored:
            waiting.setdefault(tenant, []).append(text)
        for tenant, texts in waiting.items():
            registry = self._registry(tenant)
            while texts:
                left = []
                for text in texts:
                    try:
                        registry.register(json.loads(text))
                    except InvalidResource:
                        left.append(text)
                if len(left) == len(texts):
                    break
                texts = left

    # -- writes (run in the worker thread) --------------------------------------

    @contextmanager
    def _write(self, connection: sqlite3.Connection) -> Iterator[None]:
        """A write transaction that publishes a registry the write built, after COMMIT."""
        self._pending_registry = None
        with _transaction(connection, write=True):
            yield
        if self._pending_registry is not None:
            tenant, registry = self._pending_registry
            self._registries[tenant] = registry
            self._pending_registry = None

    def _append(
        self,
        connection: sqlite3.Connection,
        target: _Target,
        current: _Current | None,
        body: Resource | None,
        indexed: _Indexed,
    ) -> StoredResource:
        if indexed.compartment is not None:
            _check_compartment_write(connection, target, current, body, indexed)
        version_id = 1 if current is None else current.version_id + 1
        moment = indexed.moment
        text = None
        if body is not None:
            text = _dumps(stamp(body, target.resource_id, str(version_id), moment))
        rows = indexed.rows
        if target.resource_type == _SEARCH_PARAMETER:
            registry = self._update_registry(connection, target, body, text)
            rows = _index_text(target, text, registry)
        elif text is not None and self._registries.get(target.tenant) is not indexed.registry:
            rows = _index_text(target, text, self._registry(target.tenant))
        row = (
            target.tenant,
            target.resource_type,
            target.resource_id,
            version_id,
            _to_micros(moment),
            body is None,
            text,
        )
        connection.execute(
            "INSERT INTO resource_history"
            " (tenant, resource_type, id, version_id, last_updated, deleted, resource)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            row,
        )
        connection.execute(
            "INSERT INTO resources"
            " (tenant, resource_type, id, version_id, last_updated, deleted, resource)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (tenant, resource_type, id) DO UPDATE SET"
            " version_id = excluded.version_id, last_updated = excluded.last_updated,"
            " deleted = excluded.deleted, resource = excluded.resource",
            row,
        )
        # A live current version has index rows to replace; a new or deleted one has none.
        _write_index(connection, target, rows, replace=current is not None and not current.deleted)
        return StoredResource(
            resource_type=target.resource_type,
            id=target.resource_id,
            version_id=str(version_id),
            last_updated=moment,
            deleted=body is None,
            # The stamped body is this call's private copy (validate_resource copied
            # it) and equals what was stored, so it is returned without a re-parse.
            resource=body,
        )

    def _update_registry(
        self,
        connection: sqlite3.Connection,
        target: _Target,
        body: Resource | None,
        text: str | None,
    ) -> SearchParameterRegistry:
        """Apply a SearchParameter write to a copy of the tenant's registry and table.

        The same steps, in the same order, as the in-memory backend: refuse an
        unusable SearchParameter before anything is written, drop the registration of
        a URL the previous version had, register (or, when retired, unregister) the
        new one. The copy is published after the commit (see :meth:`_write`).
        """
        current_registry = self._registry(target.tenant)
        if body is not None:
            validate_search_parameter(body, current_registry)
        registry = current_registry.copy()
        found = connection.execute(
            "SELECT resource FROM resources WHERE tenant = ? AND resource_type = ? AND id = ?",
            (target.tenant, target.resource_type, target.resource_id),
        ).fetchone()
        previous = None if found is None else found[0]
        new_url = json.loads(text).get("url") if text is not None else None
        if previous is not None:
            old_url = json.loads(previous).get("url")
            if isinstance(old_url, str) and old_url != new_url:
                registry.unregister(old_url)
                connection.execute(
                    "DELETE FROM search_parameters WHERE tenant = ? AND url = ?",
                    (target.tenant, old_url),
                )
        if text is not None:
            definition = registry.register(json.loads(text))
            if definition is None:
                connection.execute(
                    "DELETE FROM search_parameters WHERE tenant = ? AND url = ?",
                    (target.tenant, new_url),
                )
            else:
                connection.execute(
                    "INSERT INTO search_parameters (tenant, url, position, resource)"
                    " VALUES (?, ?, (SELECT coalesce(max(position), 0) + 1"
                    " FROM search_parameters WHERE tenant = ?), ?)"
                    " ON CONFLICT (tenant, url) DO UPDATE SET"
                    " position = excluded.position, resource = excluded.resource",
                    (target.tenant, definition.url, target.tenant, text),
                )
        self._pending_registry = (target.tenant, registry)
        return registry

    def _create_unit(
        self, connection: sqlite3.Connection, target: _Target, body: Resource, indexed: _Indexed
    ) -> StoredResource:
        with self._write(connection):
            stored = self._append(connection, target, None, body, indexed)
        return stored

    def _create_or_update_unit(
        self,
        connection: sqlite3.Connection,
        target: _Target,
        body: Resource,
        context: TenantContext,
        indexed: _Indexed,
    ) -> tuple[StoredResource, bool]:
        with self._write(connection):
            current = _current(connection, target)
            created = current is None or current.deleted
            context.require(Operation.CREATE if created else Operation.UPDATE, target.resource_type)
            stored = self._append(connection, target, current, body, indexed)
        return stored, created

    def _update_unit(
        self,
        connection: sqlite3.Connection,
        target: _Target,
        body: Resource,
        expected_version: str | None,
        indexed: _Indexed,
    ) -> StoredResource:
        with self._write(connection):
            current = _live(connection, target)
            _check_expected(target, current, expected_version)
            stored = self._append(connection, target, current, body, indexed)
        return stored

    def _delete_unit(
        self,
        connection: sqlite3.Connection,
        target: _Target,
        expected_version: str | None,
        indexed: _Indexed,
    ) -> StoredResource | None:
        with self._write(connection):
            current = _current(connection, target)
            if current is None or current.deleted:
                if expected_version is not None:
                    raise VersionConflict(
                        f"{target.reference} has no current version to match "
                        f"expected version {expected_version!r}",
                        resource_type=target.resource_type,
                        resource_id=target.resource_id,
                        expected_version=expected_version,
                        actual_version=None,
                    )
                return None
            _check_expected(target, current, expected_version)
            stored = self._append(connection, target, current, None, indexed)
        return stored

    def _index(self, context: TenantContext, target: _Target, body: Resource | None) -> _Indexed:
        """Read the clock and extract the index rows of ``body``: the CPU half of a write.

        The version id is not known before the hop; no search parameter reads
        ``meta.versionId``, so the rows are extracted from the body stamped as version 1
        (a SearchParameter is indexed again in the hop, with its own registration).
        """
        moment = self._clock.now()
        compartment = context_compartment(context)
        if body is None or target.resource_type == _SEARCH_PARAMETER:
            return _Indexed(moment, None, [], compartment)
        registry = self._registry(target.tenant)
        text = _dumps(stamp(body, target.resource_id, "1", moment))
        return _Indexed(moment, registry, _index_text(target, text, registry), compartment)

    # -- writes -----------------------------------------------------------------

    async def create(self, context: TenantContext, resource: Resource) -> StoredResource:
        body = validate_resource(resource, ignore_id=True)
        context.require(Operation.CREATE, body["resourceType"])
        target = _Target(context.tenant.value, body["resourceType"], str(uuid.uuid4()))
        indexed = self._index(context, target, body)
        return await self._hop(self._create_unit, target, body, indexed)

    async def create_or_update(
        self, context: TenantContext, resource_type: str, resource_id: str, resource: Resource
    ) -> tuple[StoredResource, bool]:
        check_resource_type(resource_type)
        check_id(resource_id)
        body = validate_resource(
            resource, expected_type=resource_type, expected_id=resource_id, require_id=True
        )
        target = _Target(context.tenant.value, resource_type, resource_id)
        # Whether this is a create or an update (and so which permission applies)
        # depends on the stored state: the check runs inside the unit of work.
        indexed = self._index(context, target, body)
        return await self._hop(self._create_or_update_unit, target, body, context, indexed)

    async def update(
        self,
        context: TenantContext,
        resource_type: str,
        resource_id: str,
        resource: Resource,
        *,
        expected_version: str | None = None,
    ) -> StoredResource:
        check_resource_type(resource_type)
        check_id(resource_id)
        body = validate_resource(
            resource, expected_type=resource_type, expected_id=resource_id, require_id=True
        )
        context.require(Operation.UPDATE, resource_type)
        target = _Target(context.tenant.value, resource_type, resource_id)
        indexed = self._index(context, target, body)
        return await self._hop(self._update_unit, target, body, expected_version, indexed)

    async def delete(
        self,
        context: TenantContext,
        resource_type: str,
        resource_id: str,
        *,
        expected_version: str | None = None,
    ) -> StoredResource | None:
        check_resource_type(resource_type)
        check_id(resource_id)
        context.require(Operation.DELETE, resource_type)
        target = _Target(context.tenant.value, resource_type, resource_id)
        indexed = self._index(context, target, None)
        return await self._hop(self._delete_unit, target, expected_version, indexed)

    # -- reads ------------------------------------------------------------------

    async def read(
        self, context: TenantContext, resource_type: str, resource_id: str
    ) -> StoredResource:
        context.require(Operation.READ, resource_type)
        check_resource_type(resource_type)
        check_id(resource_id)
        return await self._hop(
            _read_unit,
            _Target(context.tenant.value, resource_type, resource_id),
            context_compartment(context),
        )

    async def vread(
        self, context: TenantContext, resource_type: str, resource_id: str, version_id: str
    ) -> StoredResource:
        context.require(Operation.READ, resource_type)
        check_version_id(version_id)
        check_resource_type(resource_type)
        check_id(resource_id)
        target = _Target(context.tenant.value, resource_type, resource_id)
        return await self._hop(_vread_unit, target, int(version_id), context_compartment(context))

    async def exists(self, context: TenantContext, resource_type: str, resource_id: str) -> bool:
        context.require(Operation.READ, resource_type)
        check_resource_type(resource_type)
        check_id(resource_id)
        return await self._hop(
            _exists_unit,
            _Target(context.tenant.value, resource_type, resource_id),
            context_compartment(context),
        )

    async def count(self, context: TenantContext, resource_type: str | None = None) -> int:
        context.require(Operation.READ, resource_type)
        if resource_type is not None:
            check_resource_type(resource_type)
        return await self._hop(
            _count_unit, context.tenant.value, resource_type, context_compartment(context)
        )

    # -- history ----------------------------------------------------------------

    def _history_unit(
        self,
        connection: sqlite3.Connection,
        query: _HistoryQuery,
        cursor: str | None,
    ) -> HistoryPage:
        with _transaction(connection, write=False):
            if query.resource_id is not None:
                assert query.resource_type is not None
                target = _Target(query.tenant, query.resource_type, query.resource_id)
                _existing(connection, target)
                if query.compartment is not None and not _any_version_in(
                    connection, target, query.compartment
                ):
                    # No version in the compartment: the resource does not exist for
                    # the caller.
                    raise _not_found(target)
            # Decoded after the existence check, as the memory backend does: an unknown
            # resource is NotFound whatever cursor came with it.
            before_sequence = None
            if cursor is not None:
                before_sequence = int(self._cursors.decode(query.scope, cursor)["before_sequence"])
            sql, parameters = query.sql(before_sequence)
            rows = connection.execute(sql, parameters).fetchall()
        window = query.window
        more = len(rows) > window.count
        rows = rows[: window.count]
        next_cursor = None
        if more:
            next_cursor = self._cursors.encode(query.scope, {"before_sequence": rows[-1][0]})
        return HistoryPage(tuple(_stored(*row[1:]) for row in rows), next_cursor)

    async def history_instance(
        self,
        context: TenantContext,
        resource_type: str,
        resource_id: str,
        *,
        since: datetime | None = None,
        before: datetime | None = None,
        count: int | None = None,
        cursor: str | None = None,
    ) -> HistoryPage:
        context.require(Operation.HISTORY, resource_type)
        window = history_window(since, before, count)
        check_resource_type(resource_type)
        check_id(resource_id)
        query = _HistoryQuery.of(
            context, f"{resource_type}/{resource_id}", window, resource_type, resource_id
        )
        return await self._hop(self._history_unit, query, cursor)

    async def history_type(
        self,
        context: TenantContext,
        resource_type: str,
        *,
        since: datetime | None = None,
        before: datetime | None = None,
        count: int | None = None,
        cursor: str | None = None,
    ) -> HistoryPage:
        context.require(Operation.HISTORY, resource_type)
        check_resource_type(resource_type)
        window = history_window(since, before, count)
        query = _HistoryQuery.of(context, resource_type, window, resource_type)
        return await self._hop(self._history_unit, query, cursor)

    async def history_system(
        self,
        context: TenantContext,
        *,
        since: datetime | None = None,
        before: datetime | None = None,
        count: int | None = None,
        cursor: str | None = None,
    ) -> HistoryPage:
        context.require(Operation.HISTORY)
        window = history_window(since, before, count)
        query = _HistoryQuery.of(context, "", window)
        return await self._hop(self._history_unit, query, cursor)

    # -- search -----------------------------------------------------------------

    async def search(
        self,
        context: TenantContext,
        resource_type: str,
        parameters: QueryParameters,
        *,
        strict: bool = True,
        cursor: str | None = None,
    ) -> SearchResult:
        """Search live resources of one type: one hop (``_search.py`` runs it in SQL).

        The semantics are the reference evaluator's, composition included (chains and
        ``_has`` as nested semi-joins, includes level by level in the same hop). Order:
        the ``_sort`` keys (NULLs last), then ascending id. ``_count`` (default
        ``DEFAULT_PAGE_SIZE``) limits the page; ``_offset`` skips matches; ``cursor``
        continues after the page that returned it (keyset on the sort values and id,
        bounded to the resources first written by the first page's snapshot).

        Raises:
            InvalidSearch: a malformed query or cursor (the message names the parameter).
            Unsupported: what the in-memory backend refuses, with the same capability.
        """
        context.require(Operation.SEARCH, resource_type)
        check_resource_type(resource_type)
        tenant = context.tenant.value
        registry = self._registry(tenant)
        query = parse_query(
            resource_type, parameters, registry=registry, strict=strict, subsetting=True
        )
        check_result_parameters(query)
        scope = search_cursor_scope(tenant, resource_type, parameters)
        after: tuple[list[Any], str] | None = None
        snapshot: int | None = None
        if cursor is not None:
            resume = read_search_cursor(self._cursors, scope, cursor, query)
            after = (list(resume.after_values), resume.after_id)
            snapshot = resume.snapshot
        summary_only = query.summary is SummaryMode.COUNT
        plan = plan_search(
            tenant,
            query,
            summary_only=summary_only,
            counted=summary_only or query.total in (TotalMode.ACCURATE, TotalMode.ESTIMATE),
            offset=query.offset or 0,
            after=after,
            snapshot=snapshot,
            compartment=context_compartment(context),
        )
        outcome = await self._hop(_search_unit, plan)
        if summary_only:
            return SearchResult(entries=(), total=outcome.total, ignored=query.ignored)
        return self._search_result(query, scope, outcome, cursor is None)

    def _search_result(
        self, query: SearchQuery, scope: str, outcome: SearchOutcome, first_form: bool
    ) -> SearchResult:
        next_cursor = next_offset = None
        if outcome.more:
            last = outcome.rows[-1]
            next_cursor = self._cursors.encode(
                scope,
                SearchCursor(tuple(outcome.keys[-1]), last[0], outcome.snapshot).payload(),
            )
            if first_form:
                next_offset = (query.offset or 0) + len(outcome.rows)
        entries = tuple(
            subset_match(_stored(query.resource_type, rid, version, updated, 0, text), query)
            for rid, version, updated, text in outcome.rows
        )
        included = tuple(
            _stored(kind, rid, version, updated, 0, text)
            for kind, rid, version, updated, text in outcome.included
        )
        return SearchResult(
            entries=entries,
            included=included,
            total=outcome.total,
            next_cursor=next_cursor,
            ignored=query.ignored,
            next_offset=next_offset,
        )

    async def reindex(self, context: TenantContext, resource_type: str | None = None) -> int:
        """Recompute the search index of current versions with the tenant's parameters.

        Run it after registering a custom SearchParameter so resources written before
        it become searchable by it. One hop; the extraction runs in the database
        thread, since this is maintenance rather than a request path. Returns the
        number of resources reindexed.
        """
        context.require(Operation.UPDATE, resource_type)
        if resource_type is not None:
            check_resource_type(resource_type)
        return await self._hop(self._reindex_unit, context.tenant.value, resource_type)

    def _reindex_unit(
        self, connection: sqlite3.Connection, tenant: str | None, resource_type: str | None
    ) -> int:
        conditions = ["deleted = 0"]
        parameters: list[Any] = []
        if tenant is not None:
            conditions.append("tenant = ?")
            parameters.append(tenant)
        if resource_type is not None:
            conditions.append("resource_type = ?")
            parameters.append(resource_type)
        with _transaction(connection, write=True):
            found = connection.execute(
                "SELECT tenant, resource_type, id, resource FROM resources WHERE "
                + " AND ".join(conditions),
                parameters,
            ).fetchall()
            for row_tenant, row_type, row_id, text in found:
                target = _Target(row_tenant, row_type, row_id)
                rows = _index_text(target, text, self._registry(row_tenant))
                _write_index(connection, target, rows, replace=True)
        return len(found)


@dataclass(frozen=True, slots=True)
class _HistoryQuery:
    """One history query: which rows, which window, and the scope its cursors bind to."""

    tenant: str
    scope: str
    window: HistoryWindow
    resource_type: str | None
    resource_id: str | None
    # The caller's compartment restriction: only versions in it are listed.
    compartment: Compartment | None = None

    @classmethod
    def of(
        cls,
        context: TenantContext,
        target: str,
        window: HistoryWindow,
        resource_type: str | None = None,
        resource_id: str | None = None,
    ) -> _HistoryQuery:
        # The same scope string as the memory backend: tenant, target and window.
        scope = f"{context.tenant}|{target}|{window.scope()}"
        return cls(
            context.tenant.value,
            scope,
            window,
            resource_type,
            resource_id,
            context_compartment(context),
        )

    def sql(self, before_sequence: int | None) -> tuple[str, list[Any]]:
        conditions = ["tenant = ?"]
        parameters: list[Any] = [self.tenant]
        if self.resource_type is not None:
            conditions.append("resource_type = ?")
            parameters.append(self.resource_type)
        if self.resource_id is not None:
            conditions.append("id = ?")
            parameters.append(self.resource_id)
        if before_sequence is not None:
            conditions.append("sequence < ?")
            parameters.append(before_sequence)
        if self.window.since is not None:
            conditions.append("last_updated >= ?")
            parameters.append(_to_micros(self.window.since))
        if self.window.before is not None:
            conditions.append("last_updated < ?")
            parameters.append(_to_micros(self.window.before))
        if self.compartment is not None:
            conditions.append(_VERSION_IN_COMPARTMENT.format(h="resource_history"))
            parameters.append(self.compartment.reference)
        # One row more than the page tells whether there is a next page.
        parameters.append(self.window.count + 1)
        sql = (
            "SELECT sequence, resource_type, id, version_id, last_updated, deleted, resource"
            " FROM resource_history WHERE "
            + " AND ".join(conditions)
            + " ORDER BY sequence DESC LIMIT ?"
        )
        return sql, parameters


# -- read units (run in the worker thread) --------------------------------------


class _Prepared(NamedTuple):
    newest: int | None
    search_parameters: list[tuple[str, str]]
    backfill: bool


def _prepare_database(connection: sqlite3.Connection, *, file_backed: bool) -> _Prepared:
    configure(connection, file_backed=file_backed)
    # Settles decimal ties exactly in search (see _schema.py); deterministic, so SQLite
    # may use it in indexes and constant-fold it.
    connection.create_function("helios_decimal_cmp", 2, decimal_compare, deterministic=True)
    # Compartment membership of a history version (see _VERSION_IN_COMPARTMENT).
    connection.create_function(
        "helios_version_in_compartment", 4, _version_in_compartment_sql, deterministic=True
    )
    steps = migrate(connection)
    row = connection.execute("SELECT max(last_updated) FROM resource_history").fetchone()
    newest = None if row[0] is None else int(row[0])
    stored = connection.execute(
        "SELECT tenant, resource FROM search_parameters ORDER BY tenant, position"
    ).fetchall()
    # A database from schema 1 has resources but no search index yet.
    backfill = SCHEMA_VERSION - steps == 1 and newest is not None
    return _Prepared(newest, [(str(t), str(r)) for t, r in stored], backfill)


def _index_text(
    target: _Target, text: str | None, registry: SearchParameterRegistry
) -> list[IndexValues]:
    """The ``search_index`` rows of a stored resource's JSON (none for a deletion)."""
    if text is None:
        return []
    rows = index_resource(parse_resource_json(text), registry)
    return index_values(target.tenant, target.resource_type, target.resource_id, rows)


def _write_index(
    connection: sqlite3.Connection, target: _Target, rows: list[IndexValues], *, replace: bool
) -> None:
    """Replace a resource's index rows: a few statements, never one per row.

    The FTS5 index has external content, so its entries are removed ("delete"
    command, with the old tokens) before the rows they came from.
    """
    key = (target.tenant, target.resource_type, target.resource_id)
    if replace:
        connection.execute(
            "INSERT INTO search_fts (search_fts, rowid, fts_tokens)"
            " SELECT 'delete', row_id, fts_tokens FROM search_index"
            " WHERE tenant = ? AND resource_type = ? AND resource_id = ?"
            " AND fts_tokens IS NOT NULL",
            key,
        )
        connection.execute(
            "DELETE FROM search_index WHERE tenant = ? AND resource_type = ? AND resource_id = ?",
            key,
        )
    if not rows:
        return
    connection.executemany(INSERT_INDEX_ROW, rows)
    if any(row[-1] is not None for row in rows):
        connection.execute(
            "INSERT INTO search_fts (rowid, fts_tokens)"
            " SELECT row_id, fts_tokens FROM search_index"
            " WHERE tenant = ? AND resource_type = ? AND resource_id = ?"
            " AND fts_tokens IS NOT NULL",
            key,
        )


def _search_unit(connection: sqlite3.Connection, plan: SearchPlan) -> SearchOutcome:
    with _transaction(connection, write=False):
        return run_search(connection, plan)


def _member_column(compartment: Compartment | None, arguments: list[Any]) -> str:
    """Whether ``r`` (over ``resources``) is in ``compartment`` (1 when there is none)."""
    if compartment is None:
        return "1"
    return compartment_condition("r", compartment, positional(arguments))


def _read_unit(
    connection: sqlite3.Connection, target: _Target, compartment: Compartment | None = None
) -> StoredResource:
    arguments: list[Any] = []
    member = _member_column(compartment, arguments)
    row = connection.execute(
        f"SELECT version_id, last_updated, deleted, resource, {member} FROM resources r"
        " WHERE tenant = ? AND resource_type = ? AND id = ?",
        (*arguments, target.tenant, target.resource_type, target.resource_id),
    ).fetchone()
    if row is None:
        raise _not_found(target)
    version_id, last_updated, deleted, text, inside = row
    if deleted:
        raise Gone(
            f"{target.reference} was deleted (version {version_id})",
            resource_type=target.resource_type,
            resource_id=target.resource_id,
            version_id=str(version_id),
        )
    if not inside:
        # Outside the caller's compartment: the same NotFound as a missing resource.
        raise _not_found(target)
    return _stored(target.resource_type, target.resource_id, version_id, last_updated, 0, text)


def _vread_unit(
    connection: sqlite3.Connection,
    target: _Target,
    version_id: int,
    compartment: Compartment | None = None,
) -> StoredResource:
    with _transaction(connection, write=False):
        current = _existing(connection, target)
        # Compared in Python first: a 19-digit version id may not fit SQLite's int64.
        row = None
        if version_id <= current.version_id:
            member = "1"
            arguments: list[Any] = []
            if compartment is not None:
                member = _VERSION_IN_COMPARTMENT.format(h="resource_history")
                arguments.append(compartment.reference)
            row = connection.execute(
                f"SELECT last_updated, deleted, resource, {member} FROM resource_history"
                " WHERE tenant = ? AND resource_type = ? AND id = ? AND version_id = ?",
                (*arguments, target.tenant, target.resource_type, target.resource_id, version_id),
            ).fetchone()
    if row is None:
        raise NotFound(
            f"{target.reference} has no version {version_id} (current is {current.version_id})",
            resource_type=target.resource_type,
            resource_id=target.resource_id,
            version_id=str(version_id),
        )
    last_updated, deleted, text, inside = row
    if not inside:
        raise _not_found(target)
    return _stored(
        target.resource_type, target.resource_id, version_id, last_updated, deleted, text
    )


def _exists_unit(
    connection: sqlite3.Connection, target: _Target, compartment: Compartment | None = None
) -> bool:
    arguments: list[Any] = []
    member = _member_column(compartment, arguments)
    row = connection.execute(
        f"SELECT deleted, {member} FROM resources r"
        " WHERE tenant = ? AND resource_type = ? AND id = ?",
        (*arguments, target.tenant, target.resource_type, target.resource_id),
    ).fetchone()
    return row is not None and not row[0] and bool(row[1])


def _count_unit(
    connection: sqlite3.Connection,
    tenant: str,
    resource_type: str | None,
    compartment: Compartment | None = None,
) -> int:
    arguments: list[Any] = []
    member = ""
    if compartment is not None:
        member = " AND " + _member_column(compartment, arguments)
    if resource_type is None:
        row = connection.execute(
            f"SELECT count(*) FROM resources r WHERE tenant = ? AND deleted = 0{member}",
            (tenant, *arguments),
        ).fetchone()
    else:
        row = connection.execute(
            "SELECT count(*) FROM resources r WHERE tenant = ? AND resource_type = ?"
            f" AND deleted = 0{member}",
            (tenant, resource_type, *arguments),
        ).fetchone()
    return int(row[0])


# -- compartments (run in the worker thread) --------------------------------------

_VERSION_IN_COMPARTMENT = (
    "helios_version_in_compartment(?, {h}.resource_type, {h}.id, coalesce({h}.resource,"
    " (SELECT p.resource FROM resource_history p WHERE p.tenant = {h}.tenant"
    " AND p.resource_type = {h}.resource_type AND p.id = {h}.id"
    " AND p.version_id = {h}.version_id - 1)))"
)
"""Whether the version in row ``{h}`` of ``resource_history`` is in the compartment
bound to its ``?``: judged on that version's own content (``search_index`` holds only
current versions), a deletion marker on the version it deleted, as the in-memory
backend does."""


@functools.lru_cache(maxsize=4096)
def _version_in_compartment(
    reference: str, resource_type: str, resource_id: str, text: str | None
) -> bool:
    compartment = Compartment.parse(reference)
    if resource_type == compartment.kind and resource_id == compartment.id:
        return True
    if text is None or not compartment.parameters(resource_type):
        return False
    rows = index_resource(parse_resource_json(text))
    return compartment.contains(resource_type, resource_id, rows)


def _version_in_compartment_sql(
    reference: str, resource_type: str, resource_id: str, text: str | None
) -> int:
    """``helios_version_in_compartment``, registered on the connection."""
    return int(_version_in_compartment(reference, resource_type, resource_id, text))


def _any_version_in(
    connection: sqlite3.Connection, target: _Target, compartment: Compartment
) -> bool:
    """Whether some version of ``target`` is in ``compartment`` (its history is visible)."""
    row = connection.execute(
        "SELECT 1 FROM resource_history WHERE tenant = ? AND resource_type = ? AND id = ?"
        f" AND {_VERSION_IN_COMPARTMENT.format(h='resource_history')} LIMIT 1",
        (target.tenant, target.resource_type, target.resource_id, compartment.reference),
    ).fetchone()
    return row is not None


def _check_compartment_write(
    connection: sqlite3.Connection,
    target: _Target,
    current: _Current | None,
    body: Resource | None,
    indexed: _Indexed,
) -> None:
    """Refuse a write whose current live version or new version lies outside the
    caller's compartment, before anything is written (as the in-memory backend).

    The current version is judged on its ``search_index`` rows, the new one on the
    rows :meth:`SQLiteBackend._index` computed before the hop.
    """
    compartment = indexed.compartment
    assert compartment is not None
    if current is not None and not current.deleted:
        arguments: list[Any] = []
        member = _member_column(compartment, arguments)
        row = connection.execute(
            f"SELECT {member} FROM resources r WHERE tenant = ? AND resource_type = ? AND id = ?",
            (*arguments, target.tenant, target.resource_type, target.resource_id),
        ).fetchone()
        if row is None or not row[0]:
            raise AccessDenied(
                f"{target.reference} is outside compartment {compartment.reference};"
                " nothing was written"
            )
    if body is not None and not values_in_compartment(
        compartment, target.resource_type, target.resource_id, indexed.rows
    ):
        raise AccessDenied(
            f"the new version of {target.reference} would lie outside compartment "
            f"{compartment.reference}; nothing was written"
        )


# -- opening --------------------------------------------------------------------


async def open_sqlite_backend(config: BackendConfig) -> SQLiteBackend:
    """Open (creating or migrating as needed) the SQLite database ``config`` names.

    ``config.url`` is a database path, ``:memory:``, or a ``sqlite:///relative``,
    ``sqlite:////absolute`` or ``sqlite://`` (in-memory) URL. Without a URL the
    backend uses ``helios-<worker_id>.sqlite3`` in ``config.scratch_dir``, one file per
    xdist worker, removing any stale file left by an earlier run.

    Options: ``tenancy=shared`` (the default: one database, a tenant column) or
    ``tenancy=database`` (a database file per tenant, see ``_tenants.py``; the URL,
    if any, names the root directory, by default ``helios-<worker_id>-tenants`` in
    ``config.scratch_dir``, emptied first) with ``pool_size=N`` open tenant
    databases at most (default 8).

    Raises:
        BackendUnavailable: aiosqlite is not installed, the URL is not a sqlite URL,
            or the database was written by a newer schema.
        BackendFailure: SQLite could not open or prepare the database.
    """
    try:
        import aiosqlite
    except ImportError as exc:
        raise BackendUnavailable(
            "the sqlite backend needs aiosqlite: pip install 'helios-conformance[sqlite]'"
        ) from exc

    tenancy, pool_size = _parse_options(config.options)
    if tenancy == "database":
        return await _open_database_per_tenant(config, pool_size)

    if config.url is None:
        path = Path(config.scratch_dir) / f"helios-{config.worker_id}.sqlite3"
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_database_files(path)
        database = str(path)
    else:
        database = _url_to_database(config.url)
    file_backed = database != MEMORY_DATABASE

    with _translate_errors():
        # isolation_level=None: the sqlite3 module must not open transactions on its
        # own; every unit of work issues its own BEGIN/COMMIT.
        connection = await aiosqlite.connect(database, isolation_level=None)
    backend = SQLiteBackend(connection, database)
    try:
        await backend._prepare(file_backed=file_backed)
    except SchemaTooNew as exc:
        await backend.close()
        raise BackendUnavailable(f"{database}: {exc}") from exc
    except BaseException:
        await backend.close()
        raise
    return backend


_OPTION_NAMES = ("tenancy", "pool_size")


def _parse_options(options: Mapping[str, str]) -> tuple[str, int]:
    """``tenancy`` (``shared`` or ``database``) and ``pool_size``; refuse anything else."""
    unknown = sorted(set(options) - set(_OPTION_NAMES))
    if unknown:
        raise BackendUnavailable(
            f"unknown sqlite option(s) {', '.join(unknown)}; known: {', '.join(_OPTION_NAMES)}"
        )
    tenancy = options.get("tenancy", "shared")
    if tenancy not in ("shared", "database"):
        raise BackendUnavailable(f"tenancy={tenancy!r}: use tenancy=shared or tenancy=database")
    text = options.get("pool_size", str(DEFAULT_POOL_SIZE))
    try:
        pool_size = int(text)
    except ValueError:
        pool_size = 0
    if pool_size < 1:
        raise BackendUnavailable(f"pool_size={text!r} is not a positive whole number")
    if "pool_size" in options and tenancy != "database":
        raise BackendUnavailable("pool_size applies to tenancy=database only")
    return tenancy, pool_size


async def _open_database_per_tenant(config: BackendConfig, pool_size: int) -> SQLiteBackend:
    """Open the database-per-tenant backend: no file is opened until a tenant is used."""
    try:
        import aiosqlite
    except ImportError as exc:
        raise BackendUnavailable(
            "the sqlite backend needs aiosqlite: pip install 'helios-conformance[sqlite]'"
        ) from exc

    if config.url is None:
        root = Path(config.scratch_dir) / f"helios-{config.worker_id}-tenants"
        shutil.rmtree(root, ignore_errors=True)
    else:
        location = _url_to_database(config.url)
        if location == MEMORY_DATABASE:
            raise BackendUnavailable(
                "tenancy=database needs a directory, not an in-memory database"
            )
        root = Path(location)
    if root.exists() and not root.is_dir():
        raise BackendUnavailable(f"tenancy=database: {root} is not a directory")
    root.mkdir(parents=True, exist_ok=True)

    async def connect(path: str) -> aiosqlite.Connection:
        # isolation_level=None: every unit of work issues its own BEGIN/COMMIT.
        return await aiosqlite.connect(path, isolation_level=None)

    backend: SQLiteBackend | None = None

    async def prepare(tenant: str, connection: aiosqlite.Connection) -> None:
        assert backend is not None
        await backend._prepare_tenant(tenant, connection)

    tenants = TenantDatabases(root, pool_size, connect, prepare)
    backend = SQLiteBackend(None, str(root), tenants=tenants)
    return backend
