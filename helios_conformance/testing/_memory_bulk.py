"""Bulk Data primitives of the in-memory backend: snapshot scans and the job store.

A base class of :class:`MemoryBackend`; it reads the backend's version chains and
per-tenant SearchParameter registries and keeps its own job documents. Every method
runs without an ``await`` in the middle, so each is atomic on the event loop (the
active-job cap and optimistic revisions need no lock).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING

from .._bulk_contract import (
    BulkJobRecord,
    ExportPage,
    ExportRow,
    ExportScan,
    PatientCompartment,
    SubmissionEntry,
)
from .._capabilities import CapabilityDeclaration
from .._errors import InvalidRequest, NotFound, TooManyRequests, VersionConflict
from .._resource import ID_PATTERN, check_resource_type
from .._tenancy import Operation, TenantContext, TenantId
from ..search import (
    ComposedEvaluator,
    ParamType,
    RowsByParam,
    SearchParameterRegistry,
    group_rows,
    parse_query,
)

if TYPE_CHECKING:
    from ._memory import _Chain, _Version

MEMORY_BULK_CAPABILITIES = CapabilityDeclaration.of(
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
"""Bulk Data: every export level and parameter, the job lifecycle, submit and rollback."""


@dataclass(slots=True)
class _BulkState:
    jobs: dict[tuple[TenantId, str, str], BulkJobRecord] = field(default_factory=dict)
    entries: dict[tuple[TenantId, str], list[SubmissionEntry]] = field(default_factory=dict)


def _as_of(chain: _Chain, moment: datetime) -> _Version | None:
    """The chain's latest version written at or before ``moment``."""
    for version in reversed(chain.versions):
        if version.last_updated <= moment:
            return version
    return None


class _SnapshotSource:
    """The tenant's resources as of an instant, as an ``IndexSource`` for _typeFilter chains."""

    def __init__(self, chains: Iterable[tuple[str, str, _Chain]], moment: datetime) -> None:
        self._by_type: dict[str, dict[str, RowsByParam]] = {}
        for kind, rid, chain in chains:
            version = _as_of(chain, moment)
            if version is not None and not version.deleted:
                self._by_type.setdefault(kind, {})[rid] = group_rows(version.rows)

    def live(self, resource_type: str) -> Iterable[tuple[str, RowsByParam]]:
        return self._by_type.get(resource_type, {}).items()

    def live_types(self) -> Iterable[str]:
        return sorted(self._by_type)

    def get(self, resource_type: str, resource_id: str) -> RowsByParam | None:
        return self._by_type.get(resource_type, {}).get(resource_id)


def _in_compartment(
    resource_type: str,
    resource_id: str,
    rows: RowsByParam,
    compartment: PatientCompartment,
    patients: frozenset[str],
) -> bool:
    if resource_type == "Patient" and resource_id in patients:
        return True
    for parameter in compartment.parameters:
        for row in rows.get(parameter, ()):
            if (
                row.type is ParamType.REFERENCE
                and row.component is None
                and row.ref_type == "Patient"
                and row.ref_id in patients
                # Only relative references point at this server's patients.
                and row.exact == f"Patient/{row.ref_id}"
            ):
                return True
    return False


class MemoryBulkStorage:
    """``ExportStorage`` and ``BulkJobStore`` over the in-memory backend's chains."""

    _chains: dict[tuple[TenantId, str, str], _Chain]
    _bulk_state: _BulkState | None = None

    def _registry(self, context: TenantContext) -> SearchParameterRegistry:
        raise NotImplementedError  # provided by MemoryBackend

    def _bulk(self) -> _BulkState:
        if self._bulk_state is None:
            self._bulk_state = _BulkState()
        return self._bulk_state

    def _close_bulk(self) -> None:
        self._bulk_state = None

    def _tenant_chains(self, tenant: TenantId) -> list[tuple[str, str, _Chain]]:
        return [
            (kind, rid, chain)
            for (owner, kind, rid), chain in self._chains.items()
            if owner == tenant
        ]

    # -- ExportStorage ---------------------------------------------------------------

    async def stored_resource_types(self, context: TenantContext) -> frozenset[str]:
        context.require(Operation.BULK_EXPORT)
        return frozenset(kind for (owner, kind, _) in self._chains if owner == context.tenant)

    async def scan_export(self, context: TenantContext, scan: ExportScan) -> ExportPage:
        check_resource_type(scan.resource_type)
        context.require(Operation.BULK_EXPORT, scan.resource_type)
        if scan.limit < 0:
            raise InvalidRequest(f"scan limit must not be negative, got {scan.limit}")
        if scan.cursor is not None and not ID_PATTERN.fullmatch(scan.cursor):
            raise InvalidRequest(f"{scan.cursor!r} is not an export cursor of this backend")
        registry = self._registry(context)
        queries = [
            parse_query(scan.resource_type, list(search), registry=registry)
            for search in scan.filters
        ]
        if scan.limit == 0:
            return ExportPage(())
        tenant_chains = self._tenant_chains(context.tenant)
        evaluators: list[ComposedEvaluator] = []
        if queries:
            source = _SnapshotSource(tenant_chains, scan.as_of)
            evaluators = [ComposedEvaluator(query, source) for query in queries]
        patients: frozenset[str] = frozenset()
        if scan.compartment is not None:
            given = scan.compartment.patient_ids
            patients = (
                given
                if given is not None
                else frozenset(
                    rid
                    for kind, rid, chain in tenant_chains
                    if kind == "Patient"
                    and (version := _as_of(chain, scan.as_of)) is not None
                    and not version.deleted
                )
            )
        candidates = sorted(
            (rid, chain)
            for kind, rid, chain in tenant_chains
            if kind == scan.resource_type and (scan.cursor is None or rid > scan.cursor)
        )
        rows: list[ExportRow] = []
        more = False
        for rid, chain in candidates:
            version = _as_of(chain, scan.as_of)
            if version is None or version.deleted or version.text is None:
                continue
            if scan.since is not None and version.last_updated <= scan.since:
                continue
            grouped: RowsByParam | None = None
            if scan.compartment is not None:
                grouped = group_rows(version.rows)
                if not _in_compartment(
                    scan.resource_type, rid, grouped, scan.compartment, patients
                ):
                    continue
            if evaluators:
                grouped = grouped if grouped is not None else group_rows(version.rows)
                if not any(evaluator.matches(rid, grouped) for evaluator in evaluators):
                    continue
            if len(rows) == scan.limit:
                more = True
                break
            rows.append(ExportRow(rid, version.version_id, version.last_updated, version.text))
        return ExportPage(tuple(rows), rows[-1].resource_id if more else None)

    # -- BulkJobStore --------------------------------------------------------------------

    async def insert_bulk_job(
        self,
        context: TenantContext,
        record: BulkJobRecord,
        *,
        max_active: int | None = None,
        active_statuses: frozenset[str] = frozenset(),
    ) -> BulkJobRecord:
        jobs = self._bulk().jobs
        key = (context.tenant, record.kind, record.job_id)
        if key in jobs:
            raise InvalidRequest(f"{record.kind} {record.job_id} already exists")
        if max_active is not None:
            active = sum(
                1
                for (tenant, kind, _), stored in jobs.items()
                if tenant == context.tenant
                and kind == record.kind
                and stored.status in active_statuses
            )
            if active >= max_active:
                raise TooManyRequests(
                    f"tenant {context.tenant} already has {active} active {record.kind} job(s); "
                    f"at most {max_active} may run at once"
                )
        stored = replace(record, revision=1)
        jobs[key] = stored
        return stored

    async def load_bulk_job(self, context: TenantContext, kind: str, job_id: str) -> BulkJobRecord:
        stored = self._bulk().jobs.get((context.tenant, kind, job_id))
        if stored is None:
            raise NotFound(f"there is no {kind} job {job_id!r} in tenant {context.tenant}")
        return stored

    async def save_bulk_job(
        self, context: TenantContext, record: BulkJobRecord, *, expected_revision: int
    ) -> BulkJobRecord:
        key = (context.tenant, record.kind, record.job_id)
        stored = self._bulk().jobs.get(key)
        if stored is None:
            raise NotFound(
                f"there is no {record.kind} job {record.job_id!r} in tenant {context.tenant}"
            )
        if stored.revision != expected_revision:
            raise VersionConflict(
                f"{record.kind} job {record.job_id}: expected revision {expected_revision} but "
                f"the stored one is {stored.revision}; nothing was written",
                resource_type=record.kind,
                resource_id=record.job_id,
                expected_version=str(expected_revision),
                actual_version=str(stored.revision),
            )
        saved = replace(record, revision=stored.revision + 1)
        self._bulk().jobs[key] = saved
        return saved

    async def list_bulk_jobs(self, context: TenantContext, kind: str) -> tuple[BulkJobRecord, ...]:
        return tuple(
            record
            for (tenant, stored_kind, _), record in sorted(
                self._bulk().jobs.items(), key=lambda item: item[0][2]
            )
            if tenant == context.tenant and stored_kind == kind
        )

    async def delete_bulk_job(self, context: TenantContext, kind: str, job_id: str) -> bool:
        state = self._bulk()
        if kind == "submission":
            state.entries.pop((context.tenant, job_id), None)
        return state.jobs.pop((context.tenant, kind, job_id), None) is not None

    async def append_submission_entries(
        self, context: TenantContext, submission_id: str, entries: Sequence[SubmissionEntry]
    ) -> None:
        self._bulk().entries.setdefault((context.tenant, submission_id), []).extend(entries)

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
        stored = self._bulk().entries.get((context.tenant, submission_id), [])
        selected: list[SubmissionEntry] = []
        ordered: Iterable[SubmissionEntry] = reversed(stored) if descending else stored
        for entry in ordered:
            if outcome is not None and entry.outcome != outcome:
                continue
            if manifest_url is not None and entry.manifest_url != manifest_url:
                continue
            if after_sequence and (
                entry.sequence >= after_sequence if descending else entry.sequence <= after_sequence
            ):
                continue
            if limit is not None and len(selected) == limit:
                break
            selected.append(entry)
        return tuple(selected)
