"""The SQLite reference backend, on aiosqlite.

It behaves call for call like the in-memory backend (``helios_conformance.testing``),
which is the executable specification: the same validation in the same order, the same
permission checks, the same errors and messages, the same history order and cursors.

Every contract call is one *unit of work*: the arguments are validated on the event
loop, then one plain synchronous function runs in aiosqlite's worker thread and does
all of the reading, checking and writing inside one transaction (see
:meth:`SQLiteBackend._hop`). A call that raises, for whatever reason, has rolled back
and left nothing behind.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, NamedTuple, ParamSpec, TypeVar, cast

from helios_conformance import (
    BackendConfig,
    BackendFailure,
    BackendInfo,
    BackendUnavailable,
    CapabilityDeclaration,
    CursorCodec,
    Gone,
    HistoryPage,
    HistoryWindow,
    MonotonicClock,
    NotFound,
    Operation,
    Resource,
    StoredResource,
    TenantContext,
    VersionConflict,
    __version__,
    check_id,
    check_resource_type,
    check_version_id,
    history_window,
    stamp,
    validate_resource,
)

from ._schema import SchemaTooNew, configure, migrate

if TYPE_CHECKING:
    import aiosqlite

P = ParamSpec("P")
T = TypeVar("T")

SQLITE_CAPABILITIES = CapabilityDeclaration.of(
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
    ],
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
    """
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


class SQLiteBackend:
    """The contract on one SQLite database: CRUD, versions and history, multi-tenant.

    Open it with :func:`open_sqlite_backend`. Tenants share the tables and are kept
    apart by a ``tenant`` column that every statement filters on.
    """

    def __init__(self, connection: aiosqlite.Connection, database: str) -> None:
        self._connection: aiosqlite.Connection | None = connection
        self._database = database
        self._clock = MonotonicClock()
        self._cursors = CursorCodec()

    @property
    def info(self) -> BackendInfo:
        return BackendInfo(
            name="sqlite", version=__version__, server_version=sqlite3.sqlite_version
        )

    @property
    def capabilities(self) -> CapabilityDeclaration:
        return SQLITE_CAPABILITIES

    @property
    def database(self) -> str:
        """The database path, or ``:memory:``."""
        return self._database

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with _translate_errors():
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
        connection = self._connection
        if connection is None:
            raise BackendFailure("the sqlite backend is closed")
        with _translate_errors():
            result = await connection._execute(  # type: ignore[no-untyped-call]
                unit, connection._conn, *args, **kwargs
            )
        return cast(T, result)

    async def _prepare(self, *, file_backed: bool) -> None:
        """Configure, migrate and read the newest ``lastUpdated``: one hop at open."""
        newest = await self._hop(_prepare_database, file_backed=file_backed)
        if newest is not None:
            self._clock.observe(_from_micros(newest))

    # -- writes (run in the worker thread) --------------------------------------

    def _append(
        self,
        connection: sqlite3.Connection,
        target: _Target,
        current: _Current | None,
        body: Resource | None,
    ) -> StoredResource:
        version_id = 1 if current is None else current.version_id + 1
        # The clock is read inside the transaction, in the one worker thread, so
        # lastUpdated order always agrees with the sequence (write) order.
        moment = self._clock.now()
        text = None
        if body is not None:
            text = _dumps(stamp(body, target.resource_id, str(version_id), moment))
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

    def _create_unit(
        self, connection: sqlite3.Connection, target: _Target, body: Resource
    ) -> StoredResource:
        with _transaction(connection, write=True):
            return self._append(connection, target, None, body)

    def _create_or_update_unit(
        self,
        connection: sqlite3.Connection,
        target: _Target,
        body: Resource,
        context: TenantContext,
    ) -> tuple[StoredResource, bool]:
        with _transaction(connection, write=True):
            current = _current(connection, target)
            created = current is None or current.deleted
            context.require(Operation.CREATE if created else Operation.UPDATE, target.resource_type)
            return self._append(connection, target, current, body), created

    def _update_unit(
        self,
        connection: sqlite3.Connection,
        target: _Target,
        body: Resource,
        expected_version: str | None,
    ) -> StoredResource:
        with _transaction(connection, write=True):
            current = _live(connection, target)
            _check_expected(target, current, expected_version)
            return self._append(connection, target, current, body)

    def _delete_unit(
        self, connection: sqlite3.Connection, target: _Target, expected_version: str | None
    ) -> StoredResource | None:
        with _transaction(connection, write=True):
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
            return self._append(connection, target, current, None)

    # -- writes -----------------------------------------------------------------

    async def create(self, context: TenantContext, resource: Resource) -> StoredResource:
        body = validate_resource(resource, ignore_id=True)
        context.require(Operation.CREATE, body["resourceType"])
        target = _Target(context.tenant.value, body["resourceType"], str(uuid.uuid4()))
        return await self._hop(self._create_unit, target, body)

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
        return await self._hop(self._create_or_update_unit, target, body, context)

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
        return await self._hop(self._update_unit, target, body, expected_version)

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
        return await self._hop(self._delete_unit, target, expected_version)

    # -- reads ------------------------------------------------------------------

    async def read(
        self, context: TenantContext, resource_type: str, resource_id: str
    ) -> StoredResource:
        context.require(Operation.READ, resource_type)
        check_resource_type(resource_type)
        check_id(resource_id)
        return await self._hop(
            _read_unit, _Target(context.tenant.value, resource_type, resource_id)
        )

    async def vread(
        self, context: TenantContext, resource_type: str, resource_id: str, version_id: str
    ) -> StoredResource:
        context.require(Operation.READ, resource_type)
        check_version_id(version_id)
        check_resource_type(resource_type)
        check_id(resource_id)
        target = _Target(context.tenant.value, resource_type, resource_id)
        return await self._hop(_vread_unit, target, int(version_id))

    async def exists(self, context: TenantContext, resource_type: str, resource_id: str) -> bool:
        context.require(Operation.READ, resource_type)
        check_resource_type(resource_type)
        check_id(resource_id)
        return await self._hop(
            _exists_unit, _Target(context.tenant.value, resource_type, resource_id)
        )

    async def count(self, context: TenantContext, resource_type: str | None = None) -> int:
        context.require(Operation.READ, resource_type)
        if resource_type is not None:
            check_resource_type(resource_type)
        return await self._hop(_count_unit, context.tenant.value, resource_type)

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
                _existing(connection, _Target(query.tenant, query.resource_type, query.resource_id))
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


@dataclass(frozen=True, slots=True)
class _HistoryQuery:
    """One history query: which rows, which window, and the scope its cursors bind to."""

    tenant: str
    scope: str
    window: HistoryWindow
    resource_type: str | None
    resource_id: str | None

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
        return cls(context.tenant.value, scope, window, resource_type, resource_id)

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


def _prepare_database(connection: sqlite3.Connection, *, file_backed: bool) -> int | None:
    configure(connection, file_backed=file_backed)
    migrate(connection)
    row = connection.execute("SELECT max(last_updated) FROM resource_history").fetchone()
    return None if row[0] is None else int(row[0])


def _read_unit(connection: sqlite3.Connection, target: _Target) -> StoredResource:
    row = connection.execute(
        "SELECT version_id, last_updated, deleted, resource FROM resources"
        " WHERE tenant = ? AND resource_type = ? AND id = ?",
        (target.tenant, target.resource_type, target.resource_id),
    ).fetchone()
    if row is None:
        raise _not_found(target)
    version_id, last_updated, deleted, text = row
    if deleted:
        raise Gone(
            f"{target.reference} was deleted (version {version_id})",
            resource_type=target.resource_type,
            resource_id=target.resource_id,
            version_id=str(version_id),
        )
    return _stored(target.resource_type, target.resource_id, version_id, last_updated, 0, text)


def _vread_unit(connection: sqlite3.Connection, target: _Target, version_id: int) -> StoredResource:
    with _transaction(connection, write=False):
        current = _existing(connection, target)
        # Compared in Python first: a 19-digit version id may not fit SQLite's int64.
        row = None
        if version_id <= current.version_id:
            row = connection.execute(
                "SELECT last_updated, deleted, resource FROM resource_history"
                " WHERE tenant = ? AND resource_type = ? AND id = ? AND version_id = ?",
                (target.tenant, target.resource_type, target.resource_id, version_id),
            ).fetchone()
    if row is None:
        raise NotFound(
            f"{target.reference} has no version {version_id} (current is {current.version_id})",
            resource_type=target.resource_type,
            resource_id=target.resource_id,
            version_id=str(version_id),
        )
    last_updated, deleted, text = row
    return _stored(
        target.resource_type, target.resource_id, version_id, last_updated, deleted, text
    )


def _exists_unit(connection: sqlite3.Connection, target: _Target) -> bool:
    row = connection.execute(
        "SELECT deleted FROM resources WHERE tenant = ? AND resource_type = ? AND id = ?",
        (target.tenant, target.resource_type, target.resource_id),
    ).fetchone()
    return row is not None and not row[0]


def _count_unit(connection: sqlite3.Connection, tenant: str, resource_type: str | None) -> int:
    if resource_type is None:
        row = connection.execute(
            "SELECT count(*) FROM resources WHERE tenant = ? AND deleted = 0", (tenant,)
        ).fetchone()
    else:
        row = connection.execute(
            "SELECT count(*) FROM resources WHERE tenant = ? AND resource_type = ? AND deleted = 0",
            (tenant, resource_type),
        ).fetchone()
    return int(row[0])


# -- opening --------------------------------------------------------------------


async def open_sqlite_backend(config: BackendConfig) -> SQLiteBackend:
    """Open (creating or migrating as needed) the SQLite database ``config`` names.

    ``config.url`` is a database path, ``:memory:``, or a ``sqlite:///relative``,
    ``sqlite:////absolute`` or ``sqlite://`` (in-memory) URL. Without a URL the
    backend uses ``helios-<worker_id>.sqlite3`` in ``config.scratch_dir``, one file per
    xdist worker, removing any stale file left by an earlier run.

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
