"""Bulk Data primitives of the SQLite backend: snapshot scans and the job store.

A base class of :class:`~reference_impl.sqlite.SQLiteBackend`, mirroring the in-memory
backend's ``MemoryBulkStorage`` (the executable specification) call for call.

**Export scans.** One page is one SELECT, run in one hop inside one read transaction:
the snapshot version of each resource of the type (its current version when that was
written at or before ``as_of``, otherwise the newest history version at or before it),
keyset-paged on the id (``resources``' primary key gives the order, so nothing is
sorted), joined to ``resource_history`` for the stored JSON text, which is returned
as is. ``_since``, compartment and ``_typeFilter`` are conditions of the same query.

``search_index`` only holds the rows of *current* versions, so it can only decide
compartment membership and ``_typeFilter`` for a resource whose snapshot version is
its current version; that is every resource unless it was written after ``as_of``
(a job running while the data changes). The query therefore keeps a row when
``snapshot version <> current version OR <condition on search_index>``, and the rows
of older snapshot versions are decided in Python: their index rows are extracted from
the snapshot text with the tenant's current SearchParameter registry and evaluated
with the harness's evaluator (``ComposedEvaluator``), exactly as the in-memory
backend evaluates its stored rows. Two consequences, both documented limitations:

- such a page streams the query rather than ending it with ``LIMIT`` (the Python
  filter may drop rows), stopping once ``limit + 1`` rows were kept;
- an old snapshot version is indexed with today's registry, where the in-memory
  backend kept the rows extracted when the version was written. They differ only for a
  custom SearchParameter registered between the write and the export.

``_typeFilter`` is compiled with the SQLite search translation (``SearchCompiler``).
What that translation refuses (chains, ``_has``) is evaluated in Python for every
row of the page instead, with a snapshot :class:`IndexSource` that reads the other
resources' snapshot versions from the database (so chains resolve *as of* the
snapshot, as in the in-memory backend).

**Job store.** ``bulk_jobs`` and ``bulk_entries`` (migration 3). The active-job cap is
counted and the job inserted in one ``BEGIN IMMEDIATE`` transaction, so two
concurrent kick-offs, even from two processes on the same file, cannot both pass it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar

from helios_conformance import (
    ID_PATTERN,
    BulkJobRecord,
    CapabilityDeclaration,
    ExportPage,
    ExportRow,
    ExportScan,
    InvalidRequest,
    NotFound,
    Operation,
    PatientCompartment,
    SubmissionEntry,
    TenantContext,
    TooManyRequests,
    Unsupported,
    VersionConflict,
    check_resource_type,
    restrict_export_scan,
)
from helios_conformance.search import (
    ComposedEvaluator,
    FilterAnd,
    FilterComparison,
    FilterNot,
    FilterOr,
    ParamType,
    RowsByParam,
    SearchParameterRegistry,
    SearchQuery,
    group_rows,
    index_resource,
    parse_query,
    parse_resource_json,
)

from ._search import SearchCompiler, to_micros
from ._transactions import SQLiteTransactions, savepoint

P = ParamSpec("P")
T = TypeVar("T")

SQLITE_BULK_CAPABILITIES = CapabilityDeclaration.of(
    supported=[
        "bulk.export.system",
        "bulk.export.patient",
        "bulk.export.group",
        "bulk.export.type",
        "bulk.export.since",
        "bulk.export.type_filter",
        "bulk.export.elements",
        "bulk.export.jobs",
        "bulk.submit",
        "bulk.submit.rollback",
    ],
)
"""Bulk Data on SQLite: every export level and parameter, jobs, submit and rollback."""

_SUBMISSION_KIND = "submission"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Rows fetched per step while a page is streamed and filtered in Python.
_FETCH = 256

_ENTRY_COLUMNS = (
    "seq, manifest_url, source_url, line, outcome,"
    " resource_type, resource_id, previous_version, version, message"
)


def _from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


@contextmanager
def _transaction(connection: sqlite3.Connection, *, write: bool) -> Iterator[None]:
    """One transaction (``BEGIN IMMEDIATE`` for writes); rolled back on any exception.

    The backend's own ``_transaction`` (not imported: ``_backend`` imports this
    module): inside an explicit transaction the block runs in a savepoint of it.
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
        connection.rollback()
        raise


# -- snapshots ----------------------------------------------------------------------

# The snapshot version id of resource ``{c}`` (a ``resources`` row) as of ``:as_of``:
# the current one when it is old enough (no history lookup), else the newest older one.
_SNAPSHOT_VERSION = (
    "CASE WHEN {c}.last_updated <= :as_of THEN {c}.version_id ELSE"
    " (SELECT max(v.version_id) FROM resource_history v WHERE v.tenant = {c}.tenant"
    " AND v.resource_type = {c}.resource_type AND v.id = {c}.id"
    " AND v.last_updated <= :as_of) END"
)

# Whether Patient ``{ref}`` is live in the snapshot (its newest version <= as_of is
# not a deletion); NULL (false) when it had no version yet.
_PATIENT_LIVE = (
    "(SELECT pv.deleted FROM resource_history pv WHERE pv.tenant = :tenant"
    " AND pv.resource_type = 'Patient' AND pv.id = {ref} AND pv.last_updated <= :as_of"
    " ORDER BY pv.version_id DESC LIMIT 1) = 0"
)


def _snapshot_rows(
    connection: sqlite3.Connection,
    tenant: str,
    resource_type: str,
    as_of: int,
    resource_id: str | None = None,
) -> Iterator[tuple[str, str]]:
    """``(id, text)`` of the live snapshot versions of one type (or one resource)."""
    condition = "" if resource_id is None else " AND c.id = :rid"
    sql = (
        "SELECT h.id, h.resource FROM resources c JOIN resource_history h"
        " ON h.tenant = c.tenant AND h.resource_type = c.resource_type AND h.id = c.id"
        f" AND h.version_id = ({_SNAPSHOT_VERSION.format(c='c')})"
        f" WHERE c.tenant = :tenant AND c.resource_type = :rtype{condition}"
        " AND h.deleted = 0 ORDER BY c.id"
    )
    parameters = {"tenant": tenant, "rtype": resource_type, "as_of": as_of, "rid": resource_id}
    for rid, text in connection.execute(sql, parameters):
        yield str(rid), str(text)


class _SnapshotSource:
    """The tenant's resources as of an instant, read lazily: an ``IndexSource`` for chains.

    Used inside the hop (it reads through the hop's connection and transaction), only
    when a ``_typeFilter`` has chains or ``_has`` or a snapshot version is not current.
    """

    def __init__(
        self,
        connection: sqlite3.Connection,
        tenant: str,
        as_of: int,
        registry: SearchParameterRegistry,
    ) -> None:
        self._connection = connection
        self._tenant = tenant
        self._as_of = as_of
        self._registry = registry
        self._types: dict[str, dict[str, RowsByParam]] = {}

    def rows_of(self, text: str) -> RowsByParam:
        return group_rows(index_resource(parse_resource_json(text), self._registry))

    def live(self, resource_type: str) -> Iterable[tuple[str, RowsByParam]]:
        found = self._types.get(resource_type)
        if found is None:
            found = self._types[resource_type] = {
                rid: self.rows_of(text)
                for rid, text in _snapshot_rows(
                    self._connection, self._tenant, resource_type, self._as_of
                )
            }
        return found.items()

    def live_types(self) -> Iterable[str]:
        stored = self._connection.execute(
            "SELECT DISTINCT resource_type FROM resources WHERE tenant = ? ORDER BY 1",
            (self._tenant,),
        ).fetchall()
        return [str(kind) for (kind,) in stored if any(True for _ in self.live(str(kind)))]

    def get(self, resource_type: str, resource_id: str) -> RowsByParam | None:
        cached = self._types.get(resource_type)
        if cached is not None:
            return cached.get(resource_id)
        for _, text in _snapshot_rows(
            self._connection, self._tenant, resource_type, self._as_of, resource_id
        ):
            return self.rows_of(text)
        return None


def _in_compartment(
    resource_type: str,
    resource_id: str,
    rows: RowsByParam,
    compartment: PatientCompartment,
    is_patient: Callable[[str], bool],
) -> bool:
    """The in-memory backend's membership test, with a callable patient set."""
    if resource_type == "Patient" and is_patient(resource_id):
        return True
    for parameter in compartment.parameters:
        for row in rows.get(parameter, ()):
            if (
                row.type is ParamType.REFERENCE
                and row.component is None
                and row.ref_type == "Patient"
                and row.ref_id is not None
                # Only relative references point at this server's patients.
                and row.exact == f"Patient/{row.ref_id}"
                and is_patient(row.ref_id)
            ):
                return True
    return False


@dataclass(frozen=True, slots=True)
class _ScanPlan:
    """One page's SELECT and what the hop must still decide in Python."""

    sql: str
    parameters: dict[str, Any]
    queries: tuple[SearchQuery, ...]
    filters_in_sql: bool
    # The query may keep rows the Python side drops, so it is streamed (no LIMIT).
    streamed: bool


def _compartment_sql(compiler: SearchCompiler, scan: ExportScan) -> str:
    """Membership of ``r`` in ``scan.compartment``, on the current version's index rows."""
    compartment = scan.compartment
    assert compartment is not None
    if compartment.patient_ids is None:
        patient = _PATIENT_LIVE
        # The scanned Patient is live in the snapshot, so it is in its own compartment.
        itself = "1" if scan.resource_type == "Patient" else None
    else:
        ids = compiler.bind(json.dumps(sorted(compartment.patient_ids)))
        patient = f"{{ref}} IN (SELECT value FROM json_each({ids}))"
        itself = f"r.id IN (SELECT value FROM json_each({ids}))"
        if scan.resource_type != "Patient":
            itself = None
    members = []
    if compartment.parameters:
        codes = ", ".join(compiler.bind(code) for code in compartment.parameters)
        members.append(
            "EXISTS (SELECT 1 FROM search_index ci WHERE ci.tenant = :tenant"
            " AND ci.resource_type = :rtype AND ci.resource_id = r.id"
            f" AND ci.param IN ({codes}) AND ci.type = 'reference' AND ci.component IS NULL"
            " AND ci.ref_type = 'Patient' AND ci.exact = 'Patient/' || ci.ref_id"
            f" AND {patient.format(ref='ci.ref_id')})"
        )
    if itself is not None:
        members.append(itself)
    return "(" + (" OR ".join(members) or "0") + ")"


def _reaches_other_resources(query: SearchQuery) -> bool:
    """True when the query has a chain or ``_has`` (in a parameter or inside ``_filter``)."""
    if query.has or any(test.chain for test in query.tests):
        return True
    pending = [query.filter] if query.filter is not None else []
    while pending:
        node = pending.pop()
        if isinstance(node, FilterComparison):
            if node.chain:
                return True
        elif isinstance(node, FilterNot):
            pending.append(node.operand)
        elif isinstance(node, FilterAnd | FilterOr):
            pending.extend(node.operands)
    return False


def _plan(tenant: str, scan: ExportScan, queries: Sequence[SearchQuery]) -> _ScanPlan:
    compiler = SearchCompiler(tenant, scan.resource_type)
    compiler.params["as_of"] = to_micros(scan.as_of)
    conditions = ["h.deleted = 0"]
    if scan.cursor is not None:
        conditions.append(f"r.id > {compiler.bind(scan.cursor)}")
    if scan.since is not None:
        conditions.append(f"h.last_updated > {compiler.bind(to_micros(scan.since))}")
    # Rows of an older snapshot version pass these conditions; Python decides them.
    not_current = "r.version_id <> r.current_version"
    if scan.compartment is not None:
        conditions.append(f"({not_current} OR {_compartment_sql(compiler, scan)})")
    # Chains and _has must see the referenced resources as of the snapshot too, which
    # only the harness evaluator over snapshot versions does: such filters stay in Python.
    filters_in_sql = not any(_reaches_other_resources(query) for query in queries)
    if queries and filters_in_sql:
        try:
            alternatives = [" AND ".join(compiler.where(query)) or "1" for query in queries]
        except Unsupported:
            # Chains and _has: the harness evaluator decides every row of the page.
            filters_in_sql = False
        else:
            conditions.append(f"({not_current} OR ({') OR ('.join(alternatives)}))")
    streamed = scan.compartment is not None or bool(queries)
    limit = ""
    if not streamed:
        limit = f" LIMIT {compiler.bind(scan.limit + 1)}"
    sql = compiler.with_clause() + (
        "SELECT r.id, r.version_id, h.last_updated, h.resource,"
        " r.version_id = r.current_version"
        " FROM (SELECT c.id AS id, c.version_id AS current_version,"
        f" {_SNAPSHOT_VERSION.format(c='c')} AS version_id"
        " FROM resources c WHERE c.tenant = :tenant AND c.resource_type = :rtype) r"
        " JOIN resource_history h ON h.tenant = :tenant AND h.resource_type = :rtype"
        " AND h.id = r.id AND h.version_id = r.version_id"
        f" WHERE {' AND '.join(conditions)} ORDER BY r.id{limit}"
    )
    return _ScanPlan(sql, compiler.params, tuple(queries), filters_in_sql, streamed)


def _scan_unit(
    connection: sqlite3.Connection,
    tenant: str,
    scan: ExportScan,
    plan: _ScanPlan,
    registry: SearchParameterRegistry,
) -> ExportPage:
    """Run one page's SELECT, deciding old snapshot versions (and chains) in Python."""
    as_of = to_micros(scan.as_of)
    source = _SnapshotSource(connection, tenant, as_of, registry)
    evaluators = [ComposedEvaluator(query, source) for query in plan.queries]
    patients: dict[str, bool] = {}
    compartment = scan.compartment or PatientCompartment(())

    def is_patient(patient_id: str) -> bool:
        if compartment.patient_ids is not None:
            return patient_id in compartment.patient_ids
        live = patients.get(patient_id)
        if live is None:
            live = patients[patient_id] = source.get("Patient", patient_id) is not None
        return live

    rows: list[ExportRow] = []
    more = False
    with _transaction(connection, write=False):
        cursor = connection.execute(plan.sql, plan.parameters)
        try:
            while not more:
                batch = cursor.fetchmany(scan.limit + 1 if not plan.streamed else _FETCH)
                if not batch:
                    break
                for rid, version_id, last_updated, text, current in batch:
                    # search_index decided current versions in SQL; older ones, and
                    # filters SQL could not express, are decided here.
                    check_compartment = scan.compartment is not None and not current
                    check_filters = bool(evaluators) and not (current and plan.filters_in_sql)
                    if check_compartment or check_filters:
                        grouped = source.rows_of(text)
                        if check_compartment and not _in_compartment(
                            scan.resource_type, rid, grouped, compartment, is_patient
                        ):
                            continue
                        if check_filters and not any(
                            evaluator.matches(rid, grouped) for evaluator in evaluators
                        ):
                            continue
                    if len(rows) == scan.limit:
                        more = True
                        break
                    rows.append(ExportRow(rid, str(version_id), _from_micros(last_updated), text))
        finally:
            cursor.close()
    return ExportPage(tuple(rows), rows[-1].resource_id if more else None)


def _stored_types_unit(connection: sqlite3.Connection, tenant: str) -> frozenset[str]:
    # A loose index scan: one primary-key probe per type, not one row per resource.
    found = connection.execute(
        "WITH RECURSIVE kinds(kind) AS ("
        " SELECT min(resource_type) FROM resources WHERE tenant = :tenant"
        " UNION ALL SELECT (SELECT min(resource_type) FROM resources"
        " WHERE tenant = :tenant AND resource_type > kinds.kind)"
        " FROM kinds WHERE kinds.kind IS NOT NULL)"
        " SELECT kind FROM kinds WHERE kind IS NOT NULL",
        {"tenant": tenant},
    ).fetchall()
    return frozenset(str(kind) for (kind,) in found)


# -- the job store ------------------------------------------------------------------


def _record(kind: str, job_id: str, status: str, revision: int, document: str) -> BulkJobRecord:
    return BulkJobRecord(kind, job_id, status, document, revision)


def _job_not_found(context: TenantContext, kind: str, job_id: str) -> NotFound:
    return NotFound(f"there is no {kind} job {job_id!r} in tenant {context.tenant}")


def _insert_job_unit(
    connection: sqlite3.Connection,
    context: TenantContext,
    record: BulkJobRecord,
    max_active: int | None,
    active_statuses: frozenset[str],
) -> BulkJobRecord:
    tenant = context.tenant.value
    # BEGIN IMMEDIATE takes the write lock before counting: the count and the insert
    # are one step for every connection to the file, not just this one.
    with _transaction(connection, write=True):
        exists = connection.execute(
            "SELECT 1 FROM bulk_jobs WHERE tenant = ? AND kind = ? AND id = ?",
            (tenant, record.kind, record.job_id),
        ).fetchone()
        if exists is not None:
            raise InvalidRequest(f"{record.kind} {record.job_id} already exists")
        if max_active is not None:
            (active,) = connection.execute(
                "SELECT count(*) FROM bulk_jobs WHERE tenant = ? AND kind = ?"
                " AND status IN (SELECT value FROM json_each(?))",
                (tenant, record.kind, json.dumps(sorted(active_statuses))),
            ).fetchone()
            if active >= max_active:
                raise TooManyRequests(
                    f"tenant {context.tenant} already has {active} active {record.kind} "
                    f"job(s); at most {max_active} may run at once"
                )
        connection.execute(
            "INSERT INTO bulk_jobs (tenant, kind, id, status, revision, document)"
            " VALUES (?, ?, ?, ?, 1, ?)",
            (tenant, record.kind, record.job_id, record.status, record.document),
        )
    return replace(record, revision=1)


def _load_job_unit(
    connection: sqlite3.Connection, context: TenantContext, kind: str, job_id: str
) -> BulkJobRecord:
    found = connection.execute(
        "SELECT status, revision, document FROM bulk_jobs WHERE tenant = ? AND kind = ? AND id = ?",
        (context.tenant.value, kind, job_id),
    ).fetchone()
    if found is None:
        raise _job_not_found(context, kind, job_id)
    status, revision, document = found
    return _record(kind, job_id, status, revision, document)


def _save_job_unit(
    connection: sqlite3.Connection,
    context: TenantContext,
    record: BulkJobRecord,
    expected_revision: int,
) -> BulkJobRecord:
    key = (context.tenant.value, record.kind, record.job_id)
    with _transaction(connection, write=True):
        found = connection.execute(
            "SELECT revision FROM bulk_jobs WHERE tenant = ? AND kind = ? AND id = ?", key
        ).fetchone()
        if found is None:
            raise _job_not_found(context, record.kind, record.job_id)
        stored_revision = int(found[0])
        if stored_revision != expected_revision:
            raise VersionConflict(
                f"{record.kind} job {record.job_id}: expected revision {expected_revision} "
                f"but the stored one is {stored_revision}; nothing was written",
                resource_type=record.kind,
                resource_id=record.job_id,
                expected_version=str(expected_revision),
                actual_version=str(stored_revision),
            )
        connection.execute(
            "UPDATE bulk_jobs SET status = ?, document = ?, revision = ?"
            " WHERE tenant = ? AND kind = ? AND id = ?",
            (record.status, record.document, stored_revision + 1, *key),
        )
    return replace(record, revision=stored_revision + 1)


def _list_jobs_unit(
    connection: sqlite3.Connection, context: TenantContext, kind: str
) -> tuple[BulkJobRecord, ...]:
    found = connection.execute(
        "SELECT id, status, revision, document FROM bulk_jobs"
        " WHERE tenant = ? AND kind = ? ORDER BY id",
        (context.tenant.value, kind),
    ).fetchall()
    return tuple(_record(kind, *row) for row in found)


def _delete_job_unit(
    connection: sqlite3.Connection, context: TenantContext, kind: str, job_id: str
) -> bool:
    tenant = context.tenant.value
    with _transaction(connection, write=True):
        if kind == _SUBMISSION_KIND:
            connection.execute(
                "DELETE FROM bulk_entries WHERE tenant = ? AND submission = ?", (tenant, job_id)
            )
        deleted = connection.execute(
            "DELETE FROM bulk_jobs WHERE tenant = ? AND kind = ? AND id = ?",
            (tenant, kind, job_id),
        ).rowcount
    return deleted > 0


def _append_entries_unit(
    connection: sqlite3.Connection,
    context: TenantContext,
    submission_id: str,
    entries: Sequence[SubmissionEntry],
) -> None:
    rows = [
        (
            context.tenant.value,
            submission_id,
            entry.sequence,
            entry.manifest_url,
            entry.source_url,
            entry.line,
            entry.outcome,
            entry.resource_type,
            entry.resource_id,
            entry.previous_version,
            entry.version,
            entry.message,
        )
        for entry in entries
    ]
    with _transaction(connection, write=True):
        connection.executemany(
            f"INSERT INTO bulk_entries (tenant, submission, {_ENTRY_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )


@dataclass(frozen=True, slots=True)
class _EntryQuery:
    submission_id: str
    outcome: str | None
    manifest_url: str | None
    after_sequence: int
    limit: int | None
    descending: bool


def _list_entries_unit(
    connection: sqlite3.Connection, context: TenantContext, query: _EntryQuery
) -> tuple[SubmissionEntry, ...]:
    conditions = ["tenant = ?", "submission = ?"]
    parameters: list[Any] = [context.tenant.value, query.submission_id]
    if query.outcome is not None:
        conditions.append("outcome = ?")
        parameters.append(query.outcome)
    if query.manifest_url is not None:
        conditions.append("manifest_url = ?")
        parameters.append(query.manifest_url)
    if query.after_sequence:
        conditions.append("seq < ?" if query.descending else "seq > ?")
        parameters.append(query.after_sequence)
    sql = (
        f"SELECT {_ENTRY_COLUMNS} FROM bulk_entries WHERE {' AND '.join(conditions)}"
        f" ORDER BY seq {'DESC' if query.descending else 'ASC'}"
    )
    # As in the in-memory backend, a negative limit limits nothing.
    if query.limit is not None and query.limit >= 0:
        sql += " LIMIT ?"
        parameters.append(query.limit)
    return tuple(SubmissionEntry(*row) for row in connection.execute(sql, parameters))


# -- the mixin ----------------------------------------------------------------------


class SQLiteBulkStorage(SQLiteTransactions):
    """``ExportStorage`` and ``BulkJobStore`` for :class:`SQLiteBackend`.

    It needs the backend's ``_hop`` (run a unit of work in the database thread) and
    ``_registry`` (the tenant's SearchParameter registry). It derives from
    :class:`SQLiteTransactions` so that its public methods, like the backend's own,
    run under the transaction gate (wrapped by ``__init_subclass__``) and never see
    another task's open transaction.
    """

    async def _hop(
        self,
        unit: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        raise NotImplementedError  # provided by SQLiteBackend

    def _registry(self, tenant: str) -> SearchParameterRegistry:
        raise NotImplementedError  # provided by SQLiteBackend

    # -- ExportStorage -------------------------------------------------------------

    async def stored_resource_types(self, context: TenantContext) -> frozenset[str]:
        context.require(Operation.BULK_EXPORT)
        return await self._hop(_stored_types_unit, context.tenant.value)

    async def scan_export(self, context: TenantContext, scan: ExportScan) -> ExportPage:
        """One page of an export snapshot: one SELECT in one hop (see the module doc)."""
        context.require(Operation.BULK_EXPORT, scan.resource_type)
        scan = restrict_export_scan(context, scan)
        check_resource_type(scan.resource_type)
        context.require(Operation.BULK_EXPORT, scan.resource_type)
        if scan.limit < 0:
            raise InvalidRequest(f"scan limit must not be negative, got {scan.limit}")
        if scan.cursor is not None and not ID_PATTERN.fullmatch(scan.cursor):
            raise InvalidRequest(f"{scan.cursor!r} is not an export cursor of this backend")
        tenant = context.tenant.value
        registry = self._registry(tenant)
        queries = [
            parse_query(scan.resource_type, list(search), registry=registry)
            for search in scan.filters
        ]
        if scan.limit == 0:
            return ExportPage(())
        plan = _plan(tenant, scan, queries)
        return await self._hop(_scan_unit, tenant, scan, plan, registry)

    # -- BulkJobStore --------------------------------------------------------------

    async def insert_bulk_job(
        self,
        context: TenantContext,
        record: BulkJobRecord,
        *,
        max_active: int | None = None,
        active_statuses: frozenset[str] = frozenset(),
    ) -> BulkJobRecord:
        return await self._hop(_insert_job_unit, context, record, max_active, active_statuses)

    async def load_bulk_job(self, context: TenantContext, kind: str, job_id: str) -> BulkJobRecord:
        return await self._hop(_load_job_unit, context, kind, job_id)

    async def save_bulk_job(
        self, context: TenantContext, record: BulkJobRecord, *, expected_revision: int
    ) -> BulkJobRecord:
        return await self._hop(_save_job_unit, context, record, expected_revision)

    async def list_bulk_jobs(self, context: TenantContext, kind: str) -> tuple[BulkJobRecord, ...]:
        return await self._hop(_list_jobs_unit, context, kind)

    async def delete_bulk_job(self, context: TenantContext, kind: str, job_id: str) -> bool:
        return await self._hop(_delete_job_unit, context, kind, job_id)

    async def append_submission_entries(
        self, context: TenantContext, submission_id: str, entries: Sequence[SubmissionEntry]
    ) -> None:
        if entries:
            await self._hop(_append_entries_unit, context, submission_id, tuple(entries))

    async def list_submission_entries(
        self,
        context: TenantContext,
        submission_id: str,
        *,
        outcome: str | None = None,
        manifest_url: str | None = None,
        after_sequence: int = 0,
        limit: int | None = None,
        descending: bool = False,
    ) -> tuple[SubmissionEntry, ...]:
        query = _EntryQuery(submission_id, outcome, manifest_url, after_sequence, limit, descending)
        return await self._hop(_list_entries_unit, context, query)
