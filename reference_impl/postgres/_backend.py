"""The PostgreSQL reference backend, on asyncpg.

It behaves call for call like the in-memory backend (``helios_conformance.testing``),
the executable specification: the same validation in the same order, the same
permission checks, the same errors and messages, the same history order and cursors.

Every contract call is one statement, ``SELECT * FROM helios.<function>(...)``, on a
pooled connection: the PL/pgSQL function (see :mod:`._schema`) sets the tenant for its
own transaction, then reads, checks and writes. One round trip, one transaction; a call
that fails writes nothing. Checks that need the stored state (Gone, VersionConflict,
the create-or-update permission) come back as an outcome code and are raised here, so
messages are built in one place, exactly as the memory backend words them.

Tenancy (``--backend-option tenancy=...``):

``shared`` (default)
    One set of tables; rows carry the tenant and row-level security, enforced by the
    database, shows a transaction only the rows of the tenant it set.
``schema``
    One schema per tenant (``tenant_<md5 prefix>``), created on first use by a
    ``SECURITY DEFINER`` function; each call sets ``search_path`` for its transaction.
``database``
    One database per tenant, created on first use from the migrated template, each
    with its own small connection pool.

``lastUpdated`` and history order are decided by the database, not by this process:
writers of a tenant take a transaction-scoped advisory lock, the history ``sequence``
is drawn under it, and the instant is ``greatest(clock_timestamp(), previous + 1 µs)``
from the tenant's clock row. So several processes writing one database still give
every tenant strictly increasing instants that agree with the history order.

Beyond the one-statement calls: transactions (``_transactions.py``: one connection
under the tenant's lock, a savepoint per call; bundles, conditional interactions and
patch come from the harness on top), compartment-restricted callers
(``_compartments.py``: short transactions that check membership), search with
composition (``_search.py``: a page, its includes and its total in one statement) and
Bulk Data (``_bulk.py``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from helios_conformance import (
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
    InvalidSearch,
    NotFound,
    Operation,
    QueryParameters,
    Resource,
    SearchResult,
    StoredResource,
    TenantContext,
    TenantLocation,
    Unsupported,
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
    IndexRow,
    SearchCursor,
    SearchParameterRegistry,
    SearchQuery,
    SummaryMode,
    TotalMode,
    check_result_parameters,
    decode_sort_values,
    encode_sort_values,
    index_resource,
    parse_query,
    parse_resource_json,
    read_search_cursor,
    search_cursor_scope,
    subset_match,
    validate_search_parameter,
)

from . import _compartments as compartments
from ._bulk import POSTGRES_BULK_CAPABILITIES, PostgresBulkStorage
from ._driver import translate_errors
from ._pool import Pool
from ._schema import SETUP_LOCK, SchemaTooNew, cursor_secret, ensure_app_role, migrate
from ._search import BuiltSearch, IndexArrays, build_search
from ._server import Server, provision
from ._transactions import (
    POSTGRES_TRANSACTION_CAPABILITIES,
    PostgresTransactions,
    _Binding,
    refuse_write_beside_own_transaction,
    run_in_session,
)

if TYPE_CHECKING:
    import asyncpg

_POSTGRES_STORAGE_CAPABILITIES = CapabilityDeclaration.of(
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
        "tenancy.row_level_security",
        "tenancy.schema_per_tenant",
        "tenancy.database_per_tenant",
        "tenancy.compartment",
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
"""CRUD, versions, history, every tenancy mode, and search with composition."""

POSTGRES_CAPABILITIES = CapabilityDeclaration.of(
    supported=_POSTGRES_STORAGE_CAPABILITIES.supported
    | POSTGRES_TRANSACTION_CAPABILITIES.supported
    | POSTGRES_BULK_CAPABILITIES.supported
)
"""Everything the PostgreSQL backend can declare (each tenancy mode declares its own
layout: :func:`postgres_capabilities`): the above, transactions
(``_transactions.py``) and Bulk Data (``_bulk.py``). Not declared (refused with
Unsupported, as by every backend here): the terminology modifiers (``:in``,
``:not-in``, ``:above``/``:below`` on codes).
"""

_LAYOUT_CAPABILITIES = {
    "shared": frozenset({"tenancy.shared_schema", "tenancy.row_level_security"}),
    "schema": frozenset({"tenancy.schema_per_tenant"}),
    "database": frozenset({"tenancy.database_per_tenant"}),
}
"""The tenancy layout each mode has; row-level security is what isolates shared tables
(the tables of a tenant schema or database carry it too, but isolate nothing there)."""


def postgres_capabilities(tenancy: str) -> CapabilityDeclaration:
    """What the backend declares with ``--backend-option tenancy=<tenancy>``: everything
    but the tenancy layouts of the other modes."""
    others = frozenset().union(
        *(layout for mode, layout in _LAYOUT_CAPABILITIES.items() if mode != tenancy)
    )
    return CapabilityDeclaration.of(supported=POSTGRES_CAPABILITIES.supported - others)


TENANCY_MODES = ("shared", "schema", "database")
TEMPLATE_DATABASE = "helios_template"
"""The database holding the migrated schema; worker and tenant databases copy it."""

_OPTION_NAMES = ("tenancy", "server", "database", "pool_size")
_MAX_BIGINT = 2**63 - 1
_REGISTRY_RETRIES = 5
_MAX_TENANT_POOLS = 16
_REINDEX_BATCH = 500
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNSAFE_NAME = re.compile(r"[^a-z0-9_]")


# -- options and names ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PostgresOptions:
    """The ``--backend-option`` values this backend understands.

    Attributes:
        tenancy: ``shared`` (row-level security), ``schema`` or ``database``.
        server: ``auto`` or one throwaway source (``embedded``, ``binaries``,
            ``container``); ignored when a DSN is given.
        database: ``worker`` (a fresh ``helios_<worker>`` database per xdist worker,
            copied from the template) or ``direct`` (the DSN's own database, migrated
            in place, for a role that may not create databases).
        pool_size: connections per pool.
    """

    tenancy: str = "shared"
    server: str = "auto"
    database: str = "worker"
    pool_size: int = 4

    @classmethod
    def parse(cls, options: Mapping[str, str]) -> PostgresOptions:
        """Check ``options``; raise :class:`BackendUnavailable` naming a bad one."""
        unknown = sorted(set(options) - set(_OPTION_NAMES))
        if unknown:
            raise BackendUnavailable(
                f"unknown postgres option(s) {', '.join(unknown)}; "
                f"known: {', '.join(_OPTION_NAMES)}"
            )
        tenancy = options.get("tenancy", "shared")
        if tenancy not in TENANCY_MODES:
            raise BackendUnavailable(
                f"tenancy={tenancy!r} is not one of {', '.join(TENANCY_MODES)}"
            )
        database = options.get("database", "worker")
        if database not in ("worker", "direct"):
            raise BackendUnavailable(f"database={database!r} is not 'worker' or 'direct'")
        if database == "direct" and tenancy == "database":
            raise BackendUnavailable("tenancy=database needs database=worker")
        try:
            pool_size = int(options.get("pool_size", "4"))
        except ValueError:
            pool_size = 0
        if pool_size < 1:
            raise BackendUnavailable(
                f"pool_size={options['pool_size']!r} is not a positive whole number"
            )
        return cls(tenancy, options.get("server", "auto"), database, pool_size)


def worker_database_name(worker_id: str) -> str:
    """``helios_<worker>``: the database one xdist worker (or ``main``) works in."""
    return "helios_" + _UNSAFE_NAME.sub("_", worker_id.lower())[:40]


def tenant_database_name(worker_database: str, tenant: str) -> str:
    """The database of ``tenant`` under ``tenancy=database``: the worker's name plus a hash."""
    return f"{worker_database}_t_{hashlib.sha256(tenant.encode()).hexdigest()[:20]}"


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# -- values ----------------------------------------------------------------------------


def _dumps(resource: Resource) -> tuple[str, bool]:
    """The resource as JSON text, and whether PostgreSQL's ``jsonb`` can hold it too."""
    text = json.dumps(resource, ensure_ascii=False)
    jsonb_ok = True
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # validate_resource refuses lone surrogates today; should one get here,
            # \u-escaping keeps it exactly in the text, and jsonb would refuse it.
            text = json.dumps(resource)
            jsonb_ok = False
    # jsonb refuses \u0000 (text cannot hold NUL); the text column keeps the escape.
    if "\\u0000" in text:
        jsonb_ok = False
    return text, jsonb_ok


@dataclass(frozen=True, slots=True)
class _Serialized:
    """A body serialized with placeholders for the version and instant the database picks."""

    text: str
    token: str
    jsonb_ok: bool


def _serialize(body: Resource, resource_id: str) -> _Serialized:
    """Stamp ``body`` with placeholder meta values and serialize it (see ``write_version``).

    ``body`` keeps the placeholders' key positions; :func:`stamp` with the real values
    later puts them in the same places, so the returned resource equals the stored text.
    """
    while True:
        token = secrets.token_hex(16)
        version_marker, instant_marker = f"helios-version-{token}", f"helios-instant-{token}"
        stamp(body, resource_id, version_marker, _EPOCH)
        body["meta"]["lastUpdated"] = instant_marker
        text, jsonb_ok = _dumps(body)
        # Always 1 and 1: the token is 128 random bits nobody could have written.
        if text.count(version_marker) == 1 and text.count(instant_marker) == 1:
            return _Serialized(text, token, jsonb_ok)


def _index_text(serialized: _Serialized) -> str:
    """The serialized body with index sentinels for the meta values the database picks.

    ``meta.versionId`` becomes one token and ``meta.lastUpdated`` eight tokens, as
    many as the real values give the reference tokenizer, so every full-text position
    is right; ``helios.write_version`` swaps the sentinel lexemes for the real tokens.
    A sentinel ends in ``z``, which no Porter rule strips. The sentinel instant is no
    date, so no ``_lastUpdated`` row comes of it: the function writes that row.
    """
    token = serialized.token
    instant = " ".join(f"z{letter}{token}z" for letter in "abcdefgh")
    return serialized.text.replace(f"helios-version-{token}", f"zv{token}z").replace(
        f"helios-instant-{token}", instant
    )


@dataclass(slots=True)
class _RegistryState:
    """A tenant's search parameters as this process knows them, at a generation."""

    generation: int
    registry: SearchParameterRegistry
    # SearchParameter id -> its url: what a later update or delete unregisters.
    urls: dict[str, str]

    def after_write(self, resource_id: str, body: Resource | None) -> _RegistryState:
        """The state once SearchParameter ``resource_id`` is ``body`` (None: deleted).

        As the in-memory backend: a changed or removed url is unregistered, the new
        body registered (a retired one unregisters its url).
        """
        registry = self.registry.copy()
        urls = dict(self.urls)
        old_url = urls.pop(resource_id, None)
        new_url = body.get("url") if body is not None else None
        if old_url is not None and old_url != new_url:
            registry.unregister(old_url)
        if body is not None:
            registry.register(body)
            if isinstance(new_url, str):
                urls[resource_id] = new_url
        return _RegistryState(self.generation + 1, registry, urls)


def _stored(
    resource_type: str,
    resource_id: str,
    version_id: int,
    last_updated: datetime,
    deleted: bool,
    text: str | None,
) -> StoredResource:
    return StoredResource(
        resource_type=resource_type,
        id=resource_id,
        version_id=str(version_id),
        last_updated=last_updated,
        deleted=deleted,
        resource=None if text is None else json.loads(text),
    )


def _not_found(resource_type: str, resource_id: str) -> NotFound:
    return NotFound(
        f"{resource_type}/{resource_id} does not exist",
        resource_type=resource_type,
        resource_id=resource_id,
    )


def _gone(resource_type: str, resource_id: str, version_id: int) -> Gone:
    return Gone(
        f"{resource_type}/{resource_id} was deleted (version {version_id})",
        resource_type=resource_type,
        resource_id=resource_id,
        version_id=str(version_id),
    )


def _conflict(
    resource_type: str, resource_id: str, expected: str, actual: int | None
) -> VersionConflict:
    if actual is None:
        message = (
            f"{resource_type}/{resource_id} has no current version to match "
            f"expected version {expected!r}"
        )
    else:
        message = (
            f"{resource_type}/{resource_id}: expected version {expected!r} "
            f"but the current version is {str(actual)!r}; nothing was written"
        )
    return VersionConflict(
        message,
        resource_type=resource_type,
        resource_id=resource_id,
        expected_version=expected,
        actual_version=None if actual is None else str(actual),
    )


# -- the backend ---------------------------------------------------------------------------


class PostgresBackend(PostgresBulkStorage, PostgresTransactions):
    """The contract on PostgreSQL: CRUD, versions, history, search, transactions and
    Bulk Data, multi-tenant.

    Open it with :func:`open_postgres_backend`. A copy of it bound to one connection
    in an open transaction (``_binding``) runs the calls of that transaction.
    """

    _binding: _Binding | None = None

    def __init__(
        self,
        *,
        server: Server,
        dsn: str,
        database: str,
        options: PostgresOptions,
        app_role: str | None,
        server_version: str,
        admin: asyncpg.Connection | None,
        cursor_key: bytes | None = None,
    ) -> None:
        self._server = server
        self._dsn = dsn
        self._database = database
        self._options = options
        self._app_role = app_role
        self._server_version = server_version
        # Kept open under tenancy=database only: it creates the tenant databases.
        self._admin = admin
        self._admin_lock = asyncio.Lock()
        self._pool: Pool | None = None
        self._schemas: dict[str, str] = {}
        self._tenant_pools: dict[str, Pool] = {}
        # The database's key (see _schema.cursor_secret): every process using the
        # database honours the cursors of every other.
        self._cursors = CursorCodec(cursor_key)
        self._registries: dict[str, _RegistryState] = {}
        self._closed = False

    @property
    def info(self) -> BackendInfo:
        return BackendInfo(
            name="postgres", version=__version__, server_version=self._server_version
        )

    @property
    def capabilities(self) -> CapabilityDeclaration:
        """What the backend declares in the tenancy mode it runs in."""
        return postgres_capabilities(self._options.tenancy)

    @property
    def database(self) -> str:
        """The database this backend works in (tenant databases are named after it)."""
        return self._database

    @property
    def tenancy(self) -> str:
        return self._options.tenancy

    @property
    def server(self) -> Server:
        return self._server

    @property
    def app_role(self) -> str | None:
        """The role queries run as, or ``None`` when they run as the connecting role."""
        return self._app_role

    def connect_kwargs(self, database: str | None = None) -> dict[str, Any]:
        """Arguments for ``asyncpg.connect`` to a database of this server."""
        return {"dsn": self._dsn, "database": database or self._database}

    async def _init_connection(self, connection: asyncpg.Connection) -> None:
        if self._app_role is not None:
            await connection.execute(f"SET ROLE {self._app_role}")

    async def _create_pool(self, database: str, size: int) -> Pool:
        import asyncpg

        async def connect() -> asyncpg.Connection:
            connection: asyncpg.Connection = await asyncpg.connect(
                **self.connect_kwargs(database),
                server_settings={
                    "search_path": "helios",
                    "application_name": "helios-conformance",
                },
            )
            try:
                await self._init_connection(connection)
            except BaseException:
                connection.terminate()
                raise
            return connection

        pool = Pool(connect, size)
        await pool.open()
        return pool

    async def _open_pool(self) -> None:
        with translate_errors():
            self._pool = await self._create_pool(self._database, self._options.pool_size)

    async def close(self) -> None:
        """Close every pool and connection, then stop the server if this process started it."""
        if self._closed:
            return
        self._closed = True
        pools = [*self._tenant_pools.values()]
        if self._pool is not None:
            pools.append(self._pool)
        self._pool = None
        self._tenant_pools.clear()
        admin, self._admin = self._admin, None
        try:
            with translate_errors():
                for pool in pools:
                    await pool.close()
                if admin is not None:
                    await admin.close()
        finally:
            self._server.stop()

    # -- routing ---------------------------------------------------------------------

    async def _route(self, tenant: str) -> tuple[Pool, str | None]:
        """The pool, and the schema (``tenancy=schema``), that hold ``tenant``'s data."""
        pool = self._pool
        if pool is None:
            raise BackendFailure("the postgres backend is closed")
        tenancy = self._options.tenancy
        if tenancy == "shared":
            return pool, None
        if tenancy == "schema":
            schema = self._schemas.get(tenant)
            if schema is None:
                schema = str(await pool.fetchval("SELECT helios.ensure_tenant_schema($1)", tenant))
                self._schemas[tenant] = schema
            return pool, schema
        tenant_pool = self._tenant_pools.pop(tenant, None)
        if tenant_pool is None:
            tenant_pool = await self._open_tenant_database(tenant)
        else:
            # Most recently used last: eviction takes the front.
            self._tenant_pools[tenant] = tenant_pool
        return tenant_pool, None

    async def _open_tenant_database(self, tenant: str) -> Pool:
        async with self._admin_lock:
            existing = self._tenant_pools.get(tenant)
            if existing is not None:
                return existing
            admin = self._admin
            if admin is None:
                raise BackendFailure("the postgres backend is closed")
            name = tenant_database_name(self._database, tenant)
            await admin.execute("SELECT pg_advisory_lock($1)", SETUP_LOCK)
            try:
                if (
                    await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
                    is None
                ):
                    await admin.execute(
                        f"CREATE DATABASE {_quote_ident(name)} TEMPLATE {_quote_ident(TEMPLATE_DATABASE)}"
                    )
            finally:
                await admin.execute("SELECT pg_advisory_unlock($1)", SETUP_LOCK)
            pool = await self._create_pool(name, 2)
            self._tenant_pools[tenant] = pool
            await self._evict_tenant_pools()
            return pool

    async def _evict_tenant_pools(self) -> None:
        """Close the least recently used idle tenant pools beyond ``_MAX_TENANT_POOLS``.

        Every tenant database holds connections; without a bound, a server with many
        tenants runs out of connection slots. A pool in use is never closed.
        """
        excess = len(self._tenant_pools) - _MAX_TENANT_POOLS
        for tenant in list(self._tenant_pools):
            if excess <= 0:
                break
            pool = self._tenant_pools[tenant]
            if pool.busy:
                continue
            del self._tenant_pools[tenant]
            excess -= 1
            await pool.close()

    async def tenant_location(self, context: TenantContext) -> TenantLocation:
        """Where ``context``'s rows live: its schema, its database, or the shared tables
        (``TenancyInspection``; a tenant's schema is created on first use)."""
        tenant = context.tenant.value
        tenancy = self._options.tenancy
        if tenancy == "schema":
            with translate_errors():
                _, schema = await self._route(tenant)
            assert schema is not None
            return TenantLocation("schema", schema)
        if tenancy == "database":
            return TenantLocation("database", tenant_database_name(self._database, tenant))
        return TenantLocation("shared", f"{self._database}.helios")

    async def ids_seen_without_tenant_filter(
        self, context: TenantContext
    ) -> tuple[tuple[str, str], ...]:
        """``SELECT resource_type, id FROM resources``, with no tenant condition, on a
        pooled connection (the application role) with the tenant set as every call sets
        it (``TenancyInspection``): row-level security leaves the tenant's rows only."""

        async def probe(view: PostgresBackend) -> tuple[tuple[str, str], ...]:
            assert view._binding is not None
            rows = await view._binding.connection.fetch("SELECT resource_type, id FROM resources")
            return tuple((str(row[0]), str(row[1])) for row in rows)

        return await run_in_session(self, context, probe, writer=False)

    async def _fetch(
        self, context: TenantContext, sql: str, *args: Any, compartment_enforced: bool = False
    ) -> list[asyncpg.Record]:
        """Run ``sql`` (``$1`` tenant, ``$2`` schema, then ``args``) on the tenant's pool.

        A path that enforces the caller's compartment restriction itself passes
        ``compartment_enforced=True``; every other path refuses a restricted caller.
        """
        if context.permissions.compartment is not None and not compartment_enforced:
            # Every statement passes here: a compartment-restricted caller is refused
            # before the database is touched, rather than served unfiltered data.
            raise Unsupported(
                "the postgres backend does not enforce compartment restrictions "
                f"({context.permissions.compartment}); refusing rather than over-sharing",
                capability="tenancy.compartment",
            )
        tenant = context.tenant.value
        binding = self._binding
        with translate_errors():
            if binding is not None:
                if binding.tenant != tenant:
                    raise BackendFailure(
                        f"a call for tenant {tenant!r} reached the transaction of "
                        f"tenant {binding.tenant!r}"
                    )
                return await binding.connection.fetch(sql, tenant, binding.schema, *args)
            pool, schema = await self._route(tenant)
            return await pool.fetch(sql, tenant, schema, *args)

    async def _fetchrow(
        self, context: TenantContext, sql: str, *args: Any, compartment_enforced: bool = False
    ) -> asyncpg.Record:
        rows = await self._fetch(context, sql, *args, compartment_enforced=compartment_enforced)
        if len(rows) != 1:
            raise BackendFailure(f"postgres returned {len(rows)} rows where one was expected")
        return rows[0]

    # -- writes -------------------------------------------------------------------------

    async def _registry_state(self, context: TenantContext) -> _RegistryState:
        """The tenant's registry, loaded from its live SearchParameters on first use."""
        tenant = context.tenant.value
        state = self._registries.get(tenant)
        if state is not None:
            return state
        # The registry is the tenant's configuration, read for the backend's own use
        # (parsing and indexing); none of it reaches a compartment-restricted caller.
        rows = await self._fetch(
            context,
            "SELECT o_generation, o_id, o_text FROM helios.search_registry($1, $2)",
            compartment_enforced=True,
        )
        registry = SearchParameterRegistry()
        urls: dict[str, str] = {}
        for _, resource_id, text in rows:
            if resource_id is None:
                continue
            body = json.loads(text)
            try:
                registry.register(body)
            except InvalidResource:
                # Valid when written; it may clash with a parameter registered since.
                continue
            if isinstance(body.get("url"), str):
                urls[resource_id] = body["url"]
        state = _RegistryState(int(rows[0][0]), registry, urls)
        self._registries[tenant] = state
        return state

    async def _write(
        self,
        context: TenantContext,
        mode: str,
        resource_type: str,
        resource_id: str,
        body: Resource | None,
        expected_version: str | None,
    ) -> tuple[str, int | None, datetime | None]:
        """Write one version and its index rows in one statement.

        The index rows are computed here with the tenant's registry at a generation
        the function checks; if another process changed the registry meanwhile the
        function writes nothing, and the registry is reloaded and the write retried.
        """
        tenant = context.tenant.value
        compartment = context_compartment(context)
        if self._binding is None:
            refuse_write_beside_own_transaction(self, tenant)
            if compartment is not None:
                # The check and the write in one transaction under the tenant's lock.
                return await run_in_session(
                    self,
                    context,
                    lambda view: view._write(
                        context, mode, resource_type, resource_id, body, expected_version
                    ),
                    writer=True,
                )
        permissions = context.permissions
        for _ in range(_REGISTRY_RETRIES):
            state = await self._registry_state(context)
            after = state
            refusal: InvalidResource | None = None
            if resource_type == "SearchParameter":
                try:
                    if body is not None:
                        validate_search_parameter(body, state.registry)
                    after = state.after_write(resource_id, body)
                except InvalidResource as exc:
                    refusal = exc
            serialized = None if body is None else _serialize(body, resource_id)
            arrays = IndexArrays()
            last_updated_param = None
            rows: tuple[IndexRow, ...] = ()
            if serialized is not None and refusal is None:
                rows = index_resource(parse_resource_json(_index_text(serialized)), after.registry)
                arrays.add(rows, skip="_lastUpdated")
                if after.registry.get(resource_type, "_lastUpdated") is not None:
                    last_updated_param = "_lastUpdated"
            if compartment is not None:
                # The rows just computed decide the new body's membership (an unusable
                # SearchParameter, never a compartment member, is indexed here alone).
                body_rows = None
                if body is not None:
                    body_rows = rows if refusal is None else index_resource(body, state.registry)
                await self._check_compartment_write(
                    context,
                    compartment,
                    mode,
                    resource_type,
                    resource_id,
                    body_rows,
                    expected_version,
                )
            row = await self._fetchrow(
                context,
                "SELECT o_outcome, o_version_id, o_last_updated, o_generation"
                " FROM helios.write_version($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,"
                " $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26,"
                " $27, $28, $29, $30, $31, $32, $33, $34, $35, $36)",
                mode,
                resource_type,
                resource_id,
                expected_version,
                permissions.allows(Operation.CREATE, resource_type),
                permissions.allows(Operation.UPDATE, resource_type),
                None if serialized is None else serialized.text,
                None if serialized is None else serialized.token,
                serialized is not None and serialized.jsonb_ok,
                state.generation,
                refusal is not None,
                last_updated_param,
                *arrays.columns(),
                compartment_enforced=compartment is not None,
            )
            outcome, version_id, last_updated, generation = row[0], row[1], row[2], row[3]
            if outcome == "stale_registry":
                self._registries.pop(tenant, None)
                continue
            if outcome == "refused":
                assert refusal is not None
                raise refusal
            if resource_type == "SearchParameter" and outcome in ("created", "updated"):
                if generation == state.generation + 1 and self._registries.get(tenant) is state:
                    self._registries[tenant] = after
                else:
                    self._registries.pop(tenant, None)
            elif generation != state.generation:
                self._registries.pop(tenant, None)
            if body is not None and outcome in ("created", "updated"):
                stamp(body, resource_id, str(version_id), last_updated)
            return outcome, version_id, last_updated
        raise BackendFailure(
            f"the search parameters of tenant {tenant!r} kept changing while writing "
            f"{resource_type}/{resource_id}; try again"
        )

    async def _check_compartment_write(
        self,
        context: TenantContext,
        compartment: Compartment,
        mode: str,
        resource_type: str,
        resource_id: str,
        body_rows: Sequence[IndexRow] | None,
        expected_version: str | None,
    ) -> None:
        """Refuse a write touching a resource outside ``compartment`` (AccessDenied).

        ``body_rows``: the new version's index rows (``None`` for a delete).

        Runs under the tenant's lock, just before the write. As in the memory
        backend, a write that fails anyway (NotFound, Gone, a version conflict, a
        delete of nothing) fails with that error, so those cases are left to
        ``helios.write_version``.
        """
        current = await self._fetch(
            context,
            "SELECT o_version_id, o_deleted FROM helios.read_current($1, $2, $3, $4)",
            resource_type,
            resource_id,
            compartment_enforced=True,
        )
        live = bool(current) and not current[0][1]
        if mode in ("update", "delete") and (
            not live or (expected_version is not None and expected_version != str(current[0][0]))
        ):
            return
        await compartments.check_write(
            self, context, compartment, resource_type, resource_id, live, body_rows
        )

    @staticmethod
    def _written(
        resource_type: str,
        resource_id: str,
        version_id: int | None,
        last_updated: datetime | None,
        body: Resource | None,
    ) -> StoredResource:
        assert version_id is not None
        assert last_updated is not None
        return StoredResource(
            resource_type=resource_type,
            id=resource_id,
            version_id=str(version_id),
            last_updated=last_updated,
            deleted=body is None,
            # The stamped body is this call's private copy (validate_resource copied
            # it) and equals what was stored, so it is returned without a re-parse.
            resource=body,
        )

    async def create(self, context: TenantContext, resource: Resource) -> StoredResource:
        body = validate_resource(resource, ignore_id=True)
        resource_type = body["resourceType"]
        context.require(Operation.CREATE, resource_type)
        resource_id = str(uuid.uuid4())
        _, version_id, last_updated = await self._write(
            context, "create", resource_type, resource_id, body, None
        )
        return self._written(resource_type, resource_id, version_id, last_updated, body)

    async def create_or_update(
        self, context: TenantContext, resource_type: str, resource_id: str, resource: Resource
    ) -> tuple[StoredResource, bool]:
        check_resource_type(resource_type)
        check_id(resource_id)
        body = validate_resource(
            resource, expected_type=resource_type, expected_id=resource_id, require_id=True
        )
        # Whether this is a create or an update (and so which permission applies)
        # depends on the stored state: the function decides, and refuses, in one go.
        # The tenancy model (the system tenant's types, a derived context's reach)
        # does not depend on it, so it is checked first.
        context.require_scope(resource_type, writing=True)
        outcome, version_id, last_updated = await self._write(
            context, "upsert", resource_type, resource_id, body, None
        )
        if outcome == "denied_create":
            context.require(Operation.CREATE, resource_type)
        elif outcome == "denied_update":
            context.require(Operation.UPDATE, resource_type)
        if outcome not in ("created", "updated"):
            raise BackendFailure(f"unexpected outcome {outcome!r} of create_or_update")
        stored = self._written(resource_type, resource_id, version_id, last_updated, body)
        return stored, outcome == "created"

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
        outcome, version_id, last_updated = await self._write(
            context, "update", resource_type, resource_id, body, expected_version
        )
        if outcome == "not_found":
            raise _not_found(resource_type, resource_id)
        if outcome == "gone":
            assert version_id is not None
            raise _gone(resource_type, resource_id, version_id)
        if outcome == "conflict":
            assert expected_version is not None
            raise _conflict(resource_type, resource_id, expected_version, version_id)
        return self._written(resource_type, resource_id, version_id, last_updated, body)

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
        outcome, version_id, last_updated = await self._write(
            context, "delete", resource_type, resource_id, None, expected_version
        )
        if outcome == "unchanged":
            return None
        if outcome in ("conflict", "conflict_absent"):
            assert expected_version is not None
            actual = version_id if outcome == "conflict" else None
            raise _conflict(resource_type, resource_id, expected_version, actual)
        return self._written(resource_type, resource_id, version_id, last_updated, None)

    # -- reads --------------------------------------------------------------------------

    async def read(
        self, context: TenantContext, resource_type: str, resource_id: str
    ) -> StoredResource:
        context.require(Operation.READ, resource_type)
        check_resource_type(resource_type)
        check_id(resource_id)
        compartment = context_compartment(context)
        if compartment is not None and self._binding is None:
            return await run_in_session(
                self,
                context,
                lambda view: view.read(context, resource_type, resource_id),
                writer=False,
            )
        rows = await self._fetch(
            context,
            "SELECT o_version_id, o_last_updated, o_deleted, o_text"
            " FROM helios.read_current($1, $2, $3, $4)",
            resource_type,
            resource_id,
            compartment_enforced=compartment is not None,
        )
        if not rows:
            raise _not_found(resource_type, resource_id)
        version_id, last_updated, deleted, text = rows[0]
        if deleted:
            raise _gone(resource_type, resource_id, version_id)
        if compartment is not None and not await compartments.member_now(
            self, context, compartment, resource_type, resource_id
        ):
            raise compartments.hidden(resource_type, resource_id)
        return _stored(resource_type, resource_id, version_id, last_updated, False, text)

    async def vread(
        self, context: TenantContext, resource_type: str, resource_id: str, version_id: str
    ) -> StoredResource:
        context.require(Operation.READ, resource_type)
        check_version_id(version_id)
        check_resource_type(resource_type)
        check_id(resource_id)
        compartment = context_compartment(context)
        if compartment is not None and self._binding is None:
            return await run_in_session(
                self,
                context,
                lambda view: view.vread(context, resource_type, resource_id, version_id),
                writer=False,
            )
        # A 19-digit version id may exceed bigint; no such version can exist.
        wanted = min(int(version_id), _MAX_BIGINT)
        rows = await self._fetch(
            context,
            "SELECT o_current, o_found, o_last_updated, o_deleted, o_text"
            " FROM helios.read_version($1, $2, $3, $4, $5)",
            resource_type,
            resource_id,
            wanted,
            compartment_enforced=compartment is not None,
        )
        if not rows:
            raise _not_found(resource_type, resource_id)
        current, found, last_updated, deleted, text = rows[0]
        if not found or wanted != int(version_id):
            raise NotFound(
                f"{resource_type}/{resource_id} has no version {version_id} (current is {current})",
                resource_type=resource_type,
                resource_id=resource_id,
                version_id=version_id,
            )
        if compartment is not None:
            judge = compartments.VersionJudge(
                self, context, compartment, (await self._registry_state(context)).registry
            )
            # The row as history reads it: (sequence, type, id, version, instant, deleted, text).
            version = (None, resource_type, resource_id, wanted, last_updated, deleted, text)
            if not await judge.contains(version):
                raise compartments.hidden(resource_type, resource_id)
        return _stored(resource_type, resource_id, wanted, last_updated, deleted, text)

    async def exists(self, context: TenantContext, resource_type: str, resource_id: str) -> bool:
        context.require(Operation.READ, resource_type)
        check_resource_type(resource_type)
        check_id(resource_id)
        compartment = context_compartment(context)
        if compartment is not None and self._binding is None:
            return await run_in_session(
                self,
                context,
                lambda view: view.exists(context, resource_type, resource_id),
                writer=False,
            )
        row = await self._fetchrow(
            context,
            "SELECT helios.resource_exists($1, $2, $3, $4)",
            resource_type,
            resource_id,
            compartment_enforced=compartment is not None,
        )
        if compartment is not None and row[0]:
            return await compartments.member_now(
                self, context, compartment, resource_type, resource_id
            )
        return bool(row[0])

    async def count(self, context: TenantContext, resource_type: str | None = None) -> int:
        context.require(Operation.READ, resource_type)
        if resource_type is not None:
            check_resource_type(resource_type)
        compartment = context_compartment(context)
        if compartment is not None:
            if self._binding is None:
                return await run_in_session(
                    self, context, lambda view: view.count(context, resource_type), writer=False
                )
            return await compartments.count_members(self, context, compartment, resource_type)
        row = await self._fetchrow(context, "SELECT helios.count_live($1, $2, $3)", resource_type)
        return int(row[0])

    # -- history ------------------------------------------------------------------------

    async def _history_rows(
        self,
        context: TenantContext,
        window: HistoryWindow,
        resource_type: str | None,
        resource_id: str | None,
        before_sequence: int | None,
        limit: int,
        *,
        compartment_enforced: bool = False,
    ) -> list[asyncpg.Record]:
        return await self._fetch(
            context,
            "SELECT o_sequence, o_type, o_id, o_version_id, o_last_updated, o_deleted, o_text"
            " FROM helios.history($1, $2, $3, $4, $5, $6, $7, $8)",
            resource_type,
            resource_id,
            before_sequence,
            window.since,
            window.before,
            limit,
            compartment_enforced=compartment_enforced,
        )

    async def _history(
        self,
        context: TenantContext,
        scope: str,
        window: HistoryWindow,
        cursor: str | None,
        resource_type: str | None,
        resource_id: str | None,
    ) -> HistoryPage:
        # The same scope string as the memory backend: tenant, target and window.
        full_scope = f"{context.tenant}|{scope}|{window.scope()}"
        compartment = context_compartment(context)
        if compartment is not None:
            if self._binding is None:
                return await run_in_session(
                    self,
                    context,
                    lambda view: view._history(
                        context, scope, window, cursor, resource_type, resource_id
                    ),
                    writer=False,
                )
            rows, next_cursor = await compartments.restricted_history(
                self,
                context,
                compartment,
                full_scope,
                window,
                cursor,
                resource_type,
                resource_id,
            )
            return HistoryPage(tuple(_stored(*row[1:]) for row in rows), next_cursor)
        scope = full_scope
        before_sequence = None
        if cursor is not None:
            try:
                before_sequence = int(self._cursors.decode(scope, cursor)["before_sequence"])
            except InvalidSearch:
                # An unknown resource is NotFound whatever cursor came with it.
                if resource_id is not None:
                    assert resource_type is not None
                    probe = await self._history_rows(
                        context, window, resource_type, resource_id, None, 1
                    )
                    if not probe:
                        raise _not_found(resource_type, resource_id) from None
                raise
        # One row more than the page tells whether there is a next page.
        rows = await self._history_rows(
            context, window, resource_type, resource_id, before_sequence, window.count + 1
        )
        if resource_id is not None and not rows:
            assert resource_type is not None
            raise _not_found(resource_type, resource_id)
        rows = [row for row in rows if row[0] is not None]
        more = len(rows) > window.count
        rows = rows[: window.count]
        next_cursor = None
        if more:
            next_cursor = self._cursors.encode(scope, {"before_sequence": rows[-1][0]})
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
        return await self._history(
            context, f"{resource_type}/{resource_id}", window, cursor, resource_type, resource_id
        )

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
        return await self._history(context, resource_type, window, cursor, resource_type, None)

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
        return await self._history(context, "", window, cursor, None, None)

    # -- search -------------------------------------------------------------------------

    async def search(
        self,
        context: TenantContext,
        resource_type: str,
        parameters: QueryParameters,
        *,
        strict: bool = True,
        cursor: str | None = None,
    ) -> SearchResult:
        """Search live resources of one type: one statement (see ``_search.py``).

        As the in-memory backend, composition included: chains and ``_has`` are
        nested semi-joins, ``_include``/``_revinclude`` (``:iterate`` a recursive
        query) come back with the page in the same statement. Order: the ``_sort``
        keys (NULLs last), then ascending id in code-point order. ``_count`` (default
        ``DEFAULT_PAGE_SIZE``) limits the page, ``_offset`` skips matches, ``cursor``
        continues after the page that returned it (keyset on the sort values and id,
        bounded to the resources first written by the first page's snapshot).
        ``_summary=count`` returns only the total; ``_total=accurate``/``estimate``
        the exact number. A compartment-restricted caller sees only the compartment.

        Raises:
            InvalidSearch: a malformed query or cursor (the message names the parameter).
            Unsupported: what the in-memory backend refuses, with the same capability.
        """
        context.require(Operation.SEARCH, resource_type)
        check_resource_type(resource_type)
        tenant = context.tenant.value
        compartment = context_compartment(context)
        scope = search_cursor_scope(tenant, resource_type, parameters)
        for _ in range(_REGISTRY_RETRIES):
            state = await self._registry_state(context)
            query = parse_query(
                resource_type,
                parameters,
                registry=state.registry,
                strict=strict,
                subsetting=True,
            )
            check_result_parameters(query)
            after: tuple[tuple[Any, ...], str] | None = None
            snapshot: int | None = None
            if cursor is not None:
                resume = read_search_cursor(self._cursors, scope, cursor, query)
                after = (decode_sort_values(resume.after_values), resume.after_id)
                snapshot = resume.snapshot
            built = build_search(
                tenant,
                query,
                state.registry,
                compartment=compartment,
                offset=query.offset or 0,
                after=after,
                snapshot=snapshot,
            )
            rows = await self._fetch(
                context,
                "SELECT o_stale, o_role, o_position, o_type, o_id, o_version_id,"
                " o_last_updated, o_text, o_key_texts, o_key_numbers, o_key_instants,"
                " o_total, o_snapshot FROM helios.search($1, $2, $3, $4, $5, $6, $7, $8)",
                state.generation,
                built.sql,
                built.texts,
                built.numbers,
                built.instants,
                built.floats,
                compartment_enforced=True,
            )
            if rows and rows[0][0]:
                self._registries.pop(tenant, None)
                continue
            return self._search_result(query, scope, built, rows, snapshot, cursor is None)
        raise BackendFailure(
            f"the search parameters of tenant {tenant!r} kept changing during a search; try again"
        )

    def _search_result(
        self,
        query: SearchQuery,
        scope: str,
        built: BuiltSearch,
        rows: list[asyncpg.Record],
        snapshot: int | None,
        first_form: bool,
    ) -> SearchResult:
        """The :class:`SearchResult` of ``helios.search``'s rows (see ``build_search``)."""
        meta = next(row for row in rows if row[1] == "meta")
        counted = query.summary is SummaryMode.COUNT or query.total in (
            TotalMode.ACCURATE,
            TotalMode.ESTIMATE,
        )
        total = int(meta[11]) if counted else None
        if query.summary is SummaryMode.COUNT:
            return SearchResult(entries=(), total=total, ignored=query.ignored)
        found = sorted((row for row in rows if row[1] == "match"), key=lambda row: row[2])
        page = found[: query.page_size]
        next_cursor = next_offset = None
        if query.page_size > 0 and len(found) > query.page_size:
            last = page[-1]
            keys = {"text": last[8], "number": last[9], "instant": last[10]}
            values = [keys[kind][n] for n, kind in enumerate(built.sort_kinds)]
            resume = SearchCursor(
                tuple(encode_sort_values(values)),
                last[4],
                snapshot if snapshot is not None else int(meta[12] or 0),
            )
            next_cursor = self._cursors.encode(scope, resume.payload())
            if first_form:
                next_offset = (query.offset or 0) + len(page)
        entries = tuple(
            subset_match(_stored(query.resource_type, row[4], row[5], row[6], False, row[7]), query)
            for row in page
        )
        included = tuple(
            _stored(row[3], row[4], row[5], row[6], False, row[7])
            for row in sorted(
                (row for row in rows if row[1] == "include"), key=lambda row: (row[3], row[4])
            )
        )
        return SearchResult(
            entries=entries,
            included=included,
            total=total,
            next_cursor=next_cursor,
            ignored=query.ignored,
            next_offset=next_offset,
        )

    async def reindex(self, context: TenantContext, resource_type: str | None = None) -> int:
        """Recompute the search index of current versions with the tenant's parameters.

        Run it after registering a custom SearchParameter so resources written before
        it become searchable by it. Rows go in batches of 500 resources, one statement
        each; a resource written meanwhile keeps the index its own write gave it.
        Returns the number of resources reindexed.
        """
        context.require(Operation.UPDATE, resource_type)
        if resource_type is not None:
            check_resource_type(resource_type)
        tenant = context.tenant.value
        for _ in range(_REGISTRY_RETRIES):
            state = await self._registry_state(context)
            current = await self._fetch(
                context,
                "SELECT o_type, o_id, o_version_id, o_text"
                " FROM helios.current_resources($1, $2, $3)",
                resource_type,
            )
            done = 0
            for start in range(0, len(current), _REINDEX_BATCH):
                batch = current[start : start + _REINDEX_BATCH]
                arrays = IndexArrays()
                for owner, record in enumerate(batch, start=1):
                    rows = index_resource(parse_resource_json(record[3]), state.registry)
                    arrays.add(rows, owner)
                count = await self._fetchrow(
                    context,
                    "SELECT helios.replace_index($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,"
                    " $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25,"
                    " $26, $27, $28, $29)",
                    state.generation,
                    [record[0] for record in batch],
                    [record[1] for record in batch],
                    [record[2] for record in batch],
                    arrays.owner,
                    *arrays.columns(),
                )
                if count[0] < 0:
                    break
                done += int(count[0])
            else:
                return done
            self._registries.pop(tenant, None)
        raise BackendFailure(
            f"the search parameters of tenant {tenant!r} kept changing during reindex; try again"
        )


# -- opening ------------------------------------------------------------------------------


@asynccontextmanager
async def _connection(dsn: str, database: str | None = None) -> AsyncIterator[asyncpg.Connection]:
    import asyncpg

    kwargs: dict[str, Any] = {"dsn": dsn}
    if database is not None:
        kwargs["database"] = database
    connection = await asyncpg.connect(**kwargs)
    try:
        yield connection
    finally:
        await connection.close()


async def _prepare_worker_database(
    admin: asyncpg.Connection, dsn: str, database: str
) -> str | None:
    """Under the server-wide setup lock: role, template, and a fresh worker database.

    The template is created and migrated once per server (later openers find it current
    and only check); the worker database is dropped, stale tenant databases of the
    worker with it, and copied from the template: a new, empty, migrated database for
    every session, without replaying migrations or rebuilding a schema per test.
    """
    await admin.execute("SELECT pg_advisory_lock($1)", SETUP_LOCK)
    try:
        app_role = await ensure_app_role(admin)
        found = await admin.fetchval(
            "SELECT 1 FROM pg_database WHERE datname = $1", TEMPLATE_DATABASE
        )
        if found is None:
            await admin.execute(f"CREATE DATABASE {_quote_ident(TEMPLATE_DATABASE)}")
        async with _connection(dsn, TEMPLATE_DATABASE) as template:
            await migrate(template)
        stale = await admin.fetch(
            "SELECT datname FROM pg_database WHERE datname = $1 OR datname LIKE $2",
            database,
            database.replace("_", "\\_") + "\\_t\\_%",
        )
        for (name,) in stale:
            await admin.execute(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")
        await admin.execute(
            f"CREATE DATABASE {_quote_ident(database)} TEMPLATE {_quote_ident(TEMPLATE_DATABASE)}"
        )
        return app_role
    finally:
        await admin.execute("SELECT pg_advisory_unlock($1)", SETUP_LOCK)


async def open_postgres_backend(config: BackendConfig) -> PostgresBackend:
    """Open the PostgreSQL backend (entry point ``postgres``).

    The server is ``config.url`` (a ``postgresql://`` DSN whose role may create
    databases and, ideally, roles) or else a throwaway server this process starts and
    stops (see :mod:`._server`). On it, the backend works in ``helios_<worker_id>``, a
    fresh copy of the migrated ``helios_template`` database, so xdist workers never
    share a database and no test rebuilds a schema.

    Raises:
        BackendUnavailable: asyncpg is missing, no server can be reached or started,
            an option is wrong, or the database is from a newer release.
        BackendFailure: the server refused to prepare the databases.
    """
    try:
        import asyncpg
    except ImportError as exc:
        raise BackendUnavailable(
            "the postgres backend needs asyncpg: pip install 'helios-conformance[postgres]'"
        ) from exc

    options = PostgresOptions.parse(config.options)
    server = provision(config.url, options.server)
    admin: asyncpg.Connection | None = None
    backend: PostgresBackend | None = None
    try:
        try:
            admin = await asyncpg.connect(dsn=server.dsn)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            raise BackendUnavailable(
                f"cannot connect to the PostgreSQL server ({server.description}): {exc}"
            ) from exc
        with translate_errors():
            server_version = str(await admin.fetchval("SHOW server_version"))
            if options.database == "direct":
                database = str(await admin.fetchval("SELECT current_database()"))
                await admin.execute("SELECT pg_advisory_lock($1)", SETUP_LOCK)
                try:
                    app_role = await ensure_app_role(admin)
                finally:
                    await admin.execute("SELECT pg_advisory_unlock($1)", SETUP_LOCK)
                await migrate(admin)
                cursor_key = await cursor_secret(admin)
            else:
                database = worker_database_name(config.worker_id)
                app_role = await _prepare_worker_database(admin, server.dsn, database)
                async with _connection(server.dsn, database) as owner:
                    cursor_key = await cursor_secret(owner)
        if options.tenancy != "database":
            await admin.close()
            admin = None
        backend = PostgresBackend(
            server=server,
            dsn=server.dsn,
            database=database,
            options=options,
            app_role=app_role,
            server_version=server_version,
            admin=admin,
            cursor_key=cursor_key,
        )
        admin = None
        await backend._open_pool()
        return backend
    except SchemaTooNew as exc:
        await _abandon(backend, admin, server)
        raise BackendUnavailable(f"{server.description}: {exc}") from exc
    except BaseException:
        await _abandon(backend, admin, server)
        raise


async def _abandon(
    backend: PostgresBackend | None, admin: asyncpg.Connection | None, server: Server
) -> None:
    try:
        if backend is not None:
            await backend.close()
        elif admin is not None:
            await admin.close()
    finally:
        server.stop()
