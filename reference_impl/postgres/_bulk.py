"""Bulk Data primitives of the PostgreSQL backend: snapshot scans and the job store.

A base class of :class:`~reference_impl.postgres.PostgresBackend`, mirroring the
in-memory backend's ``MemoryBulkStorage`` (the executable specification) call for
call, with the same validation order, errors and messages, as the SQLite backend's
``SQLiteBulkStorage`` does. Every call is one statement, ``SELECT ... FROM
helios.<function>(...)`` (migration 3 in :mod:`._schema`), through the backend's
``_fetch``, which sets the tenant for row-level security and the schema under
``tenancy=schema``.

**Export scans.** One page is one statement (``helios.export_scan`` running a SELECT
built here): each resource of the type (``resources``, keyset-paged on the id in
code-point order through ``resources_export_order``) with its snapshot version, the
current row itself when it was written at or before ``as_of`` (no history lookup),
otherwise the newest ``resource_history`` version at or before it. The stored JSON
text is returned as is. ``_since``, the patient compartment and ``_typeFilter`` are
conditions of the same SELECT; the registry generation the filters were built with is
checked by it too (a stale registry is reloaded and the page retried).

``export_scan`` also *closes* the snapshot: it moves the tenant's clock up to
``as_of`` (waiting for a write in flight), so no version written later can be stamped
at or before ``as_of``. Pages of a job, however far apart, and a job resumed after a
restart, therefore read the same snapshot, and reads of it in other statements (the
Python side below) agree with the page.

As in the SQLite backend, ``search_index`` only holds the rows of *current* versions,
so it decides compartment membership and ``_typeFilter`` only for resources whose
snapshot version is current, which is every resource not written after ``as_of``.
The SELECT keeps a row when ``NOT current OR <condition>``; older snapshot versions are
decided here, in Python, on index rows extracted from the snapshot text with the
tenant's current registry and the harness's evaluator (``ComposedEvaluator``), exactly
as the in-memory backend evaluates its stored rows (the same documented limitation as
SQLite: an old version is indexed with today's registry). Whether a patient referenced
by such a version was live in the snapshot takes one more statement
(``helios.export_snapshot``) for that page.

``_typeFilter`` is translated with the search translation of :mod:`._search` (its
``ConditionBuilder``, the very code ``search`` uses, so both agree). What it cannot express,
chains and ``_has``, is evaluated in Python for every row of the page, with an
``IndexSource`` over the snapshot versions of the types the query reaches, read in one
statement per type. When the Python side drops rows, the page is topped up with
further statements from where the last one stopped, so pages always hold ``limit``
rows while more exist, as in the in-memory backend.

**Job store.** ``bulk_jobs`` and ``bulk_entries``. The active-job cap is counted and the
job inserted in one function under an advisory lock per tenant and kind, so two
concurrent kick-offs, from any connections or processes, cannot both pass it; saves
are optimistic (``UPDATE ... WHERE revision = expected``).

**Compartment-restricted callers.** ``_fetch`` refuses them unless a path says it
enforces the restriction. ``scan_export`` narrows the scan with
:func:`restrict_export_scan` first and so passes ``compartment_enforced=True``; the
job store and ``stored_resource_types`` do as the SQLite and in-memory backends do
(no compartment filter: job documents are not resources, the engine refuses a
restricted caller's system-level export, and a superset of type names is allowed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from helios_conformance import (
    ID_PATTERN,
    BackendFailure,
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
    FilterExpression,
    FilterNot,
    FilterOr,
    HasClause,
    ParameterTest,
    ParamType,
    RowsByParam,
    SearchParameterRegistry,
    SearchQuery,
    group_rows,
    index_resource,
    parse_query,
    parse_resource_json,
)

from ._search import ConditionBuilder

if TYPE_CHECKING:
    import asyncpg

    from ._backend import _RegistryState

POSTGRES_BULK_CAPABILITIES = CapabilityDeclaration.of(
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
"""Bulk Data on PostgreSQL: every export level and parameter, jobs, submit and rollback."""

_SUBMISSION_KIND = "submission"
_REGISTRY_RETRIES = 5
_MIN_BIGINT = -(2**63)
_MAX_BIGINT = 2**63 - 1


def _bigint(value: int) -> int:
    """``value`` clamped to bigint: no stored revision or sequence lies beyond it."""
    return max(_MIN_BIGINT, min(value, _MAX_BIGINT))


# -- the page statement ----------------------------------------------------------------

# The snapshot version of resource r as of {as_of}: the current row when it is old
# enough, else the newest history version at or before the instant (none: no row).
# ``s.text`` is NULL when that version is a deletion.
_SNAPSHOT = (
    "CROSS JOIN LATERAL ("
    "SELECT r.version_id, r.last_updated, r.resource_text, true"
    " WHERE r.last_updated <= {as_of}"
    " UNION ALL"
    " (SELECT h.version_id, h.last_updated, h.resource_text, false"
    " FROM resource_history h WHERE r.last_updated > {as_of} AND h.tenant = r.tenant"
    " AND h.resource_type = r.resource_type AND h.id = r.id AND h.last_updated <= {as_of}"
    " ORDER BY h.version_id DESC LIMIT 1)"
    ") AS s(version_id, last_updated, text, is_current)"
)

# Whether Patient {ref} is live in the snapshot (its snapshot version is no deletion).
# ``COLLATE "default"``: ref_id is a "C" column; the primary key is in the default one.
_PATIENT_LIVE = (
    "EXISTS (SELECT 1 FROM resources p WHERE p.tenant = r.tenant"
    " AND p.resource_type = 'Patient' AND p.id = ({ref} COLLATE \"default\")"
    " AND CASE WHEN p.last_updated <= {as_of} THEN NOT p.deleted ELSE coalesce(("
    "SELECT NOT h.deleted FROM resource_history h WHERE h.tenant = p.tenant"
    " AND h.resource_type = p.resource_type AND h.id = p.id AND h.last_updated <= {as_of}"
    " ORDER BY h.version_id DESC LIMIT 1), false) END)"
)


def _reaches_other_resources(query: SearchQuery) -> bool:
    """True when the query has a chain or ``_has`` (in a parameter or inside ``_filter``)."""
    if query.has or any(test.chain for test in query.tests):
        return True
    return any(node.chain for node in _comparisons(query.filter))


def _comparisons(expression: FilterExpression | None) -> Iterable[FilterComparison]:
    pending = [expression] if expression is not None else []
    while pending:
        node = pending.pop()
        if isinstance(node, FilterComparison):
            yield node
        elif isinstance(node, FilterNot):
            pending.append(node.operand)
        elif isinstance(node, FilterAnd | FilterOr):
            pending.extend(node.operands)


def _types_reached(query: SearchQuery) -> set[str]:
    """The resource types a query's chains and ``_has`` clauses read (their snapshot)."""
    types: set[str] = set()

    def test(parameter_test: ParameterTest) -> None:
        types.update(link.target_type for link in parameter_test.chain)

    def has(clause: HasClause) -> None:
        types.add(clause.resource_type)
        if isinstance(clause.test, HasClause):
            has(clause.test)
        else:
            test(clause.test)

    for parameter_test in query.tests:
        test(parameter_test)
    for clause in query.has:
        has(clause)
    for comparison in _comparisons(query.filter):
        types.update(link.target_type for link in comparison.chain)
    return types


@dataclass(slots=True)
class _PagePlan:
    """A page's SELECT (with a slot for the cursor) and what Python must still decide."""

    sql_head: str
    texts: list[str]
    numbers: list[Any]
    instants: list[datetime]
    floats: list[float]
    cursor_slot: int
    queries: tuple[SearchQuery, ...]
    filters_in_sql: bool

    def statement(self, limit: int) -> str:
        # The limit is an int we computed, never caller text.
        return f"{self.sql_head} LIMIT {int(limit)})"

    def arguments(self, cursor: str | None) -> tuple[list[str], list[Any], list[datetime]]:
        texts = list(self.texts)
        # Ids are never empty, so "" orders before every id: the first page.
        texts[self.cursor_slot] = cursor or ""
        return texts, self.numbers, self.instants


def _compartment_sql(builder: ConditionBuilder, scan: ExportScan, as_of: str) -> str:
    """Membership of ``r`` in ``scan.compartment``, on the current version's index rows."""
    compartment = scan.compartment
    assert compartment is not None
    p = builder.p
    if compartment.patient_ids is None:
        patient = _PATIENT_LIVE.format(ref="ci.ref_id", as_of=as_of)
        # The scanned Patient is live in the snapshot, so it is in its own compartment.
        itself = "TRUE" if scan.resource_type == "Patient" else None
    else:
        # Only an id can name a stored Patient; anything else matches nothing.
        ids = sorted(i for i in compartment.patient_ids if ID_PATTERN.fullmatch(i))
        if not ids:
            return "FALSE"
        listed = p.texts_list(ids)
        patient = f"ci.ref_id = ANY({listed})"
        itself = f"r.id = ANY({listed})" if scan.resource_type == "Patient" else None
    members = []
    if compartment.parameters:
        codes = p.texts_list(sorted(set(compartment.parameters)))
        members.append(
            "EXISTS (SELECT 1 FROM search_index ci WHERE ci.tenant = r.tenant"
            " AND ci.resource_type = r.resource_type AND ci.resource_id = r.id"
            f" AND ci.param = ANY({codes}) AND ci.type = 'reference' AND ci.component IS NULL"
            " AND ci.ref_type = 'Patient' AND ci.exact = 'Patient/' || ci.ref_id"
            f" AND {patient})"
        )
    if itself is not None:
        members.append(itself)
    return "(" + (" OR ".join(members) or "FALSE") + ")"


def _plan(
    tenant: str,
    scan: ExportScan,
    queries: Sequence[SearchQuery],
    registry: SearchParameterRegistry,
) -> _PagePlan:
    builder = ConditionBuilder(registry, scan.resource_type, datetime.now(UTC))
    p = builder.p
    p.texts[0] = tenant
    as_of = p.instant(scan.as_of)
    cursor_slot = len(p.texts)
    cursor = p.text("")
    conditions = [f'r.id COLLATE "C" > {cursor}', "s.text IS NOT NULL"]
    if scan.since is not None:
        conditions.append(f"s.last_updated > {p.instant(scan.since)}")
    # Rows of an older snapshot version pass these conditions; Python decides them.
    if scan.compartment is not None:
        conditions.append(f"(NOT s.is_current OR {_compartment_sql(builder, scan, as_of)})")
    # Chains and _has must see the referenced resources as of the snapshot too, which
    # only the harness evaluator over snapshot versions does: such filters stay in Python.
    filters_in_sql = not any(_reaches_other_resources(query) for query in queries)
    if queries and filters_in_sql:
        try:
            alternatives = []
            for query in queries:
                parts = [builder.test(test) for test in query.tests]
                if query.filter is not None:
                    parts.append(builder.filter(query.filter))
                alternatives.append(" AND ".join(parts) or "TRUE")
        except Unsupported:
            # What the translation refuses, the harness evaluator decides for every row.
            filters_in_sql = False
        else:
            conditions.append(f"(NOT s.is_current OR ({') OR ('.join(alternatives)}))")
    # The registry check and the page share the statement, hence one snapshot: a page
    # is never filtered with definitions older than those it is checked against.
    head = (
        "WITH registry AS MATERIALIZED (SELECT coalesce((SELECT g.generation"
        f" FROM search_registry g WHERE g.tenant = {builder.tenant}), 0) = $5 AS fresh)"
        " SELECT true, NULL::text, NULL::bigint, NULL::timestamptz, NULL::text, NULL::boolean"
        " FROM registry WHERE NOT registry.fresh"
        " UNION ALL"
        " (SELECT false, r.id, s.version_id, s.last_updated, s.text, s.is_current"
        f" FROM registry, resources r {_SNAPSHOT.format(as_of=as_of)}"
        f" WHERE registry.fresh AND r.tenant = {builder.tenant} AND r.resource_type = {builder.type}"
        f" AND {' AND '.join(conditions)}"
        ' ORDER BY r.id COLLATE "C"'
    )
    return _PagePlan(
        sql_head=head,
        texts=p.texts,
        numbers=p.numbers,
        instants=p.instants,
        floats=p.floats,
        cursor_slot=cursor_slot,
        queries=tuple(queries),
        filters_in_sql=filters_in_sql,
    )


# -- what Python decides --------------------------------------------------------------


@dataclass(slots=True)
class _SnapshotSource:
    """Snapshot versions read for the Python side: an ``IndexSource`` for chains and _has.

    Holds the types loaded up front (those the page's queries reach); asking for
    another type is a defect of :func:`_types_reached`, reported rather than answered
    with an empty (and so wrong) set.
    """

    registry: SearchParameterRegistry
    types: dict[str, dict[str, RowsByParam]] = field(default_factory=dict)

    def rows_of(self, text: str) -> RowsByParam:
        return group_rows(index_resource(parse_resource_json(text), self.registry))

    def load(self, resource_type: str, rows: Iterable[tuple[str, str]]) -> None:
        self.types[resource_type] = {rid: self.rows_of(text) for rid, text in rows}

    def _loaded(self, resource_type: str) -> dict[str, RowsByParam]:
        found = self.types.get(resource_type)
        if found is None:
            raise BackendFailure(
                f"export evaluated a _typeFilter reaching {resource_type}, "
                "whose snapshot was not loaded"
            )
        return found

    def live(self, resource_type: str) -> Iterable[tuple[str, RowsByParam]]:
        return self._loaded(resource_type).items()

    def live_types(self) -> Iterable[str]:
        return sorted(kind for kind, rows in self.types.items() if rows)

    def get(self, resource_type: str, resource_id: str) -> RowsByParam | None:
        return self._loaded(resource_type).get(resource_id)


def _patient_references(rows: RowsByParam, parameters: Iterable[str]) -> set[str]:
    """The patients a resource's compartment parameters point at (relative references)."""
    return {
        row.ref_id
        for parameter in parameters
        for row in rows.get(parameter, ())
        if row.type is ParamType.REFERENCE
        and row.component is None
        and row.ref_type == "Patient"
        and row.ref_id is not None
        and row.exact == f"Patient/{row.ref_id}"
    }


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
    return any(is_patient(ref) for ref in _patient_references(rows, compartment.parameters))


@dataclass(frozen=True, slots=True)
class _Candidate:
    resource_id: str
    version_id: int
    last_updated: datetime
    text: str
    current: bool


def _job_not_found(context: TenantContext, kind: str, job_id: str) -> NotFound:
    return NotFound(f"there is no {kind} job {job_id!r} in tenant {context.tenant}")


# -- the mixin ---------------------------------------------------------------------------


class PostgresBulkStorage:
    """``ExportStorage`` and ``BulkJobStore`` for :class:`PostgresBackend`.

    It needs the backend's ``_fetch`` (one statement on the tenant's pool) and
    ``_registry_state`` (the tenant's SearchParameter registry at a generation).
    """

    _registries: dict[str, _RegistryState]

    async def _fetch(
        self, context: TenantContext, sql: str, *args: Any, compartment_enforced: bool = False
    ) -> list[asyncpg.Record]:
        raise NotImplementedError  # provided by PostgresBackend

    async def _registry_state(self, context: TenantContext) -> _RegistryState:
        raise NotImplementedError  # provided by PostgresBackend

    # -- ExportStorage -------------------------------------------------------------

    async def stored_resource_types(self, context: TenantContext) -> frozenset[str]:
        context.require(Operation.BULK_EXPORT)
        # Type names only, a superset of what the caller may see (the contract allows
        # it); each type's scan then applies the compartment restriction.
        rows = await self._fetch(
            context, "SELECT o_type FROM helios.export_types($1, $2)", compartment_enforced=True
        )
        return frozenset(str(row[0]) for row in rows)

    async def scan_export(self, context: TenantContext, scan: ExportScan) -> ExportPage:
        """One page of an export snapshot: one statement (see the module docstring)."""
        check_resource_type(scan.resource_type)
        context.require(Operation.BULK_EXPORT, scan.resource_type)
        # A compartment-restricted caller scans its own compartment only; everything
        # below filters by scan.compartment, hence compartment_enforced=True.
        scan = restrict_export_scan(context, scan)
        if scan.limit < 0:
            raise InvalidRequest(f"scan limit must not be negative, got {scan.limit}")
        if scan.cursor is not None and not ID_PATTERN.fullmatch(scan.cursor):
            raise InvalidRequest(f"{scan.cursor!r} is not an export cursor of this backend")
        tenant = context.tenant.value
        for _ in range(_REGISTRY_RETRIES):
            state = await self._registry_state(context)
            queries = [
                parse_query(scan.resource_type, list(search), registry=state.registry)
                for search in scan.filters
            ]
            if scan.limit == 0:
                return ExportPage(())
            page = await self._scan_page(context, scan, state, queries)
            if page is not None:
                return page
            self._registries.pop(tenant, None)
        raise BackendFailure(
            f"the search parameters of tenant {tenant!r} kept changing during an export; try again"
        )

    async def _candidates(
        self,
        context: TenantContext,
        plan: _PagePlan,
        generation: int,
        as_of: datetime,
        cursor: str | None,
        limit: int,
    ) -> list[_Candidate] | None:
        """One statement: up to ``limit`` rows after ``cursor`` (None: stale registry)."""
        texts, numbers, instants = plan.arguments(cursor)
        rows = await self._fetch(
            context,
            "SELECT o_stale, o_id, o_version_id, o_last_updated, o_text, o_current"
            " FROM helios.export_scan($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            generation,
            as_of,
            plan.statement(limit),
            texts,
            numbers,
            instants,
            plan.floats,
            compartment_enforced=True,
        )
        if rows and rows[0][0]:
            return None
        found = [_Candidate(row[1], row[2], row[3], row[4], row[5]) for row in rows]
        # Code-point order (what COLLATE "C" sorted by), whatever order UNION ALL kept.
        found.sort(key=lambda candidate: candidate.resource_id)
        return found

    async def _snapshot(
        self,
        context: TenantContext,
        as_of: datetime,
        resource_type: str,
        ids: Sequence[str] | None = None,
    ) -> list[tuple[str, str]]:
        rows = await self._fetch(
            context,
            "SELECT o_id, o_text FROM helios.export_snapshot($1, $2, $3, $4, $5)",
            as_of,
            resource_type,
            None if ids is None else list(ids),
            compartment_enforced=True,
        )
        return [(str(row[0]), str(row[1])) for row in rows]

    async def _scan_page(
        self,
        context: TenantContext,
        scan: ExportScan,
        state: _RegistryState,
        queries: Sequence[SearchQuery],
    ) -> ExportPage | None:
        """The page, deciding old snapshot versions (and chains) in Python; None: stale.

        Usually one statement. Only when Python may drop rows does the page take more:
        the snapshots a chained filter reaches, whether the patients an old version
        references were live, and further candidates to fill the page.
        """
        plan = _plan(context.tenant.value, scan, queries, state.registry)
        source = _SnapshotSource(state.registry)
        if not plan.filters_in_sql:
            reached: set[str] = set()
            for query in queries:
                reached |= _types_reached(query)
            for resource_type in sorted(reached):
                source.load(resource_type, await self._snapshot(context, scan.as_of, resource_type))
        evaluators = [ComposedEvaluator(query, source) for query in plan.queries]
        compartment = scan.compartment
        # Without a patient list, the patients live in the snapshot, found as needed.
        live_patients: set[str] = set()
        looked_up: set[str] = set()
        if compartment is not None and compartment.patient_ids is not None:
            live_patients = set(compartment.patient_ids)

        def in_compartment(candidate: _Candidate, rows: RowsByParam) -> bool:
            assert compartment is not None
            if compartment.patient_ids is None and scan.resource_type == "Patient":
                # The scanned Patient is live in the snapshot: in its own compartment.
                return True
            return _in_compartment(
                scan.resource_type,
                candidate.resource_id,
                rows,
                compartment,
                live_patients.__contains__,
            )

        kept: list[ExportRow] = []
        cursor = scan.cursor
        # One row more than the page tells whether there is a next page.
        while len(kept) <= scan.limit:
            wanted = scan.limit + 1 - len(kept)
            batch = await self._candidates(
                context, plan, state.generation, scan.as_of, cursor, wanted
            )
            if batch is None:
                return None
            # search_index decided current versions in SQL; older ones, and filters
            # SQL could not express, are decided here on rows extracted from the text.
            check_compartment = {
                c.resource_id for c in batch if compartment is not None and not c.current
            }
            check_filters = {
                c.resource_id
                for c in batch
                if evaluators and not (c.current and plan.filters_in_sql)
            }
            grouped = {
                c.resource_id: source.rows_of(c.text)
                for c in batch
                if c.resource_id in check_compartment or c.resource_id in check_filters
            }
            if compartment is not None and compartment.patient_ids is None:
                unknown = {
                    patient
                    for rid in check_compartment
                    for patient in _patient_references(grouped[rid], compartment.parameters)
                } - looked_up
                if unknown:
                    found = await self._snapshot(context, scan.as_of, "Patient", sorted(unknown))
                    live_patients.update(rid for rid, _ in found)
                    looked_up |= unknown
            for candidate in batch:
                cursor = candidate.resource_id
                rows = grouped.get(candidate.resource_id)
                if candidate.resource_id in check_compartment:
                    assert rows is not None
                    if not in_compartment(candidate, rows):
                        continue
                if candidate.resource_id in check_filters:
                    assert rows is not None
                    if not any(e.matches(candidate.resource_id, rows) for e in evaluators):
                        continue
                kept.append(
                    ExportRow(
                        candidate.resource_id,
                        str(candidate.version_id),
                        candidate.last_updated,
                        candidate.text,
                    )
                )
                if len(kept) > scan.limit:
                    break
            if len(batch) < wanted:
                break
        page = kept[: scan.limit]
        more = len(kept) > scan.limit
        return ExportPage(tuple(page), page[-1].resource_id if more else None)

    # -- BulkJobStore --------------------------------------------------------------
    #
    # Job documents are the engine's, not resources: as in the SQLite and in-memory
    # backends they are stored for any caller of the tenant (compartment_enforced).

    async def insert_bulk_job(
        self,
        context: TenantContext,
        record: BulkJobRecord,
        *,
        max_active: int | None = None,
        active_statuses: frozenset[str] = frozenset(),
    ) -> BulkJobRecord:
        row = (
            await self._fetch(
                context,
                "SELECT o_outcome, o_active"
                " FROM helios.bulk_insert_job($1, $2, $3, $4, $5, $6, $7, $8)",
                record.kind,
                record.job_id,
                record.status,
                record.document,
                None if max_active is None else _bigint(max_active),
                sorted(active_statuses),
                compartment_enforced=True,
            )
        )[0]
        outcome, active = row[0], row[1]
        if outcome == "exists":
            raise InvalidRequest(f"{record.kind} {record.job_id} already exists")
        if outcome == "too_many":
            raise TooManyRequests(
                f"tenant {context.tenant} already has {active} active {record.kind} job(s); "
                f"at most {max_active} may run at once"
            )
        if outcome != "inserted":
            raise BackendFailure(f"unexpected outcome {outcome!r} of insert_bulk_job")
        return replace(record, revision=1)

    async def load_bulk_job(self, context: TenantContext, kind: str, job_id: str) -> BulkJobRecord:
        rows = await self._fetch(
            context,
            "SELECT o_status, o_revision, o_document FROM helios.bulk_load_job($1, $2, $3, $4)",
            kind,
            job_id,
            compartment_enforced=True,
        )
        if not rows:
            raise _job_not_found(context, kind, job_id)
        status, revision, document = rows[0]
        return BulkJobRecord(kind, job_id, status, document, int(revision))

    async def save_bulk_job(
        self, context: TenantContext, record: BulkJobRecord, *, expected_revision: int
    ) -> BulkJobRecord:
        row = (
            await self._fetch(
                context,
                "SELECT o_outcome, o_revision"
                " FROM helios.bulk_save_job($1, $2, $3, $4, $5, $6, $7)",
                record.kind,
                record.job_id,
                record.status,
                record.document,
                _bigint(expected_revision),
                compartment_enforced=True,
            )
        )[0]
        outcome, revision = row[0], row[1]
        if outcome == "not_found":
            raise _job_not_found(context, record.kind, record.job_id)
        if outcome == "conflict":
            raise VersionConflict(
                f"{record.kind} job {record.job_id}: expected revision {expected_revision} but "
                f"the stored one is {revision}; nothing was written",
                resource_type=record.kind,
                resource_id=record.job_id,
                expected_version=str(expected_revision),
                actual_version=str(revision),
            )
        if outcome != "saved":
            raise BackendFailure(f"unexpected outcome {outcome!r} of save_bulk_job")
        return replace(record, revision=int(revision))

    async def list_bulk_jobs(self, context: TenantContext, kind: str) -> tuple[BulkJobRecord, ...]:
        rows = await self._fetch(
            context,
            "SELECT o_id, o_status, o_revision, o_document FROM helios.bulk_list_jobs($1, $2, $3)",
            kind,
            compartment_enforced=True,
        )
        return tuple(
            BulkJobRecord(kind, job_id, status, document, int(revision))
            for job_id, status, revision, document in rows
        )

    async def delete_bulk_job(self, context: TenantContext, kind: str, job_id: str) -> bool:
        rows = await self._fetch(
            context,
            "SELECT helios.bulk_delete_job($1, $2, $3, $4, $5)",
            kind,
            job_id,
            kind == _SUBMISSION_KIND,
            compartment_enforced=True,
        )
        return bool(rows[0][0])

    async def append_submission_entries(
        self, context: TenantContext, submission_id: str, entries: Sequence[SubmissionEntry]
    ) -> None:
        if not entries:
            return
        await self._fetch(
            context,
            "SELECT helios.bulk_append_entries($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,"
            " $12, $13)",
            submission_id,
            [entry.sequence for entry in entries],
            [entry.manifest_url for entry in entries],
            [entry.source_url for entry in entries],
            [entry.line for entry in entries],
            [entry.outcome for entry in entries],
            [entry.resource_type for entry in entries],
            [entry.resource_id for entry in entries],
            [entry.previous_version for entry in entries],
            [entry.version for entry in entries],
            [entry.message for entry in entries],
            compartment_enforced=True,
        )

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
        rows = await self._fetch(
            context,
            "SELECT o_seq, o_manifest_url, o_source_url, o_line, o_outcome, o_resource_type,"
            " o_resource_id, o_previous_version, o_version, o_message"
            " FROM helios.bulk_list_entries($1, $2, $3, $4, $5, $6, $7, $8)",
            submission_id,
            outcome,
            manifest_url,
            _bigint(after_sequence),
            # As in the in-memory backend, a negative limit limits nothing.
            None if limit is None or limit < 0 else _bigint(limit),
            descending,
            compartment_enforced=True,
        )
        return tuple(SubmissionEntry(*row) for row in rows)
