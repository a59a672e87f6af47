"""The backend contract of Bulk Data: the few storage primitives the bulk engine needs.

FHIR semantics (export levels, ``_typeFilter`` and compartment rules, manifests, the
submission lifecycle, rollback) live in :mod:`helios_conformance.bulk`; a backend only
offers two small protocols:

- :class:`ExportStorage`: one keyset-paged read of resources of one type *as of* an
  instant, filtered by search criteria and by patient compartment, returning the stored
  JSON text so export writes it out without parsing it;
- :class:`BulkJobStore`: durable, tenant-scoped job documents (export jobs and
  submissions) with optimistic concurrency and an atomic per-tenant cap on active jobs,
  plus the per-line journal of a submission.

Both are re-exported by :mod:`helios_conformance._contract`. Every call takes the
:class:`TenantContext` first; a backend MUST keep tenants apart. The bulk engine calls
``context.require(Operation.BULK_EXPORT / BULK_SUBMIT)`` itself; the backend MUST still
call ``context.require(Operation.BULK_EXPORT, resource_type)`` in :meth:`scan_export`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from ._tenancy import TenantContext

QueryPairs = tuple[tuple[str, str], ...]
"""One search as URL-decoded ``(name, value)`` pairs: repeated names AND, commas OR."""


@dataclass(frozen=True, slots=True)
class PatientCompartment:
    """Restrict a scan to the R4 Patient compartment of some patients.

    A resource of the scanned type is in the compartment when any of ``parameters``
    (the CompartmentDefinition's search parameters for that type, e.g. ``subject`` and
    ``performer`` for Observation) has a reference value ``Patient/<id>`` with ``<id>``
    among the patients. A ``Patient`` resource is also in the compartment of itself:
    for ``resource_type == "Patient"`` the resource's own id counts as a match.

    ``patient_ids`` of ``None`` means "every Patient live in the snapshot" (patient-level
    export of all patients), so a backend can use a join instead of a long id list.
    """

    parameters: tuple[str, ...]
    patient_ids: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class ExportScan:
    """One page request of :meth:`ExportStorage.scan_export`.

    Attributes:
        resource_type: the one type scanned.
        as_of: the snapshot instant (inclusive). For each resource the scan looks at
            its latest version with ``last_updated <= as_of``; the resource is skipped
            when there is none or that version is a deletion. Writes after ``as_of``
            therefore never change what a job exports, and a resumed job sees the same
            set as before the restart.
        since: when set, keep only resources whose snapshot version was written
            strictly after it (Bulk Data ``_since``: "lastUpdated is later than").
        filters: an OR of searches (``_typeFilter``): keep a resource when at least one
            matches it, with the ordinary search semantics of the backend (the shared
            parser with the tenant's SearchParameter registry). Empty: no filter.
            Searches are evaluated on the snapshot version's index.
        compartment: when set, keep only resources in that patient compartment.
        cursor: ``next_cursor`` of the previous page of the same scan, or ``None``.
        limit: the most rows to return; 0 only validates the request (filters are
            parsed, so a bad ``_typeFilter`` raises) and returns an empty page.
    """

    resource_type: str
    as_of: datetime
    since: datetime | None = None
    filters: tuple[QueryPairs, ...] = ()
    compartment: PatientCompartment | None = None
    cursor: str | None = None
    limit: int = 1000


@dataclass(frozen=True, slots=True)
class ExportRow:
    """One exported resource: its id, snapshot version and stored JSON text.

    ``text`` is the stored JSON of that version (``id`` and ``meta`` set) on one line:
    no raw line breaks (JSON escapes them inside strings). It is written to the NDJSON
    output as is.
    """

    resource_id: str
    version_id: str
    last_updated: datetime
    text: str


@dataclass(frozen=True, slots=True)
class ExportPage:
    """Rows in ascending id order (code-point order) and where the next page starts.

    ``next_cursor`` is ``None`` on the last page. It MUST stay valid across a restart
    of the backend over the same storage (persisted in the job document), so it must
    not be signed with a per-process secret; a keyset on the last id suffices because
    the snapshot never changes.
    """

    rows: tuple[ExportRow, ...]
    next_cursor: str | None = None


@runtime_checkable
class ExportStorage(Protocol):
    """The reads Bulk Data export needs (FHIR Bulk Data Access IG, export.html)."""

    async def stored_resource_types(self, context: TenantContext) -> frozenset[str]:
        """The resource types with at least one stored version in the tenant.

        A superset is allowed (types whose resources are all deleted); it only saves
        a system-level export from scanning every R4 type.
        """
        ...

    async def scan_export(self, context: TenantContext, scan: ExportScan) -> ExportPage:
        """Return one page of the snapshot described by ``scan``.

        Raises:
            InvalidSearch: a malformed ``filters`` search (even with ``limit=0``).
            InvalidRequest: an unknown resource type or a cursor that is not this
                backend's.
            AccessDenied: the context may not export ``scan.resource_type``.
        """
        ...


@dataclass(frozen=True, slots=True)
class BulkJobRecord:
    """A durable bulk job document.

    Attributes:
        kind: ``"export"`` or ``"submission"``; ids are unique per tenant and kind.
        job_id: the engine-chosen id.
        status: the engine's status name; the backend stores it in a column so the
            active-job cap can count it, and otherwise never interprets it.
        document: JSON text owned by the engine (progress cursors, parts, options).
        revision: 1 when inserted, +1 on every save; optimistic concurrency.
    """

    kind: str
    job_id: str
    status: str
    document: str
    revision: int = 1


@dataclass(frozen=True, slots=True)
class SubmissionEntry:
    """The outcome of one NDJSON line of a bulk submission, and its change journal.

    Attributes:
        sequence: processing order within the submission, from 1, unique.
        manifest_url: the manifest the line came from.
        source_url: the NDJSON file (the manifest's output ``url``).
        line: the 1-based line number in that file.
        outcome: ``success``, ``validation-error``, ``processing-error`` or ``skipped``.
        resource_type / resource_id: the resource written or meant (``None`` when the
            line could not be read).
        previous_version: the live version before the write, ``None`` when the write
            created the resource (it was absent or deleted); rollback restores it.
        version: the version the write produced (success only).
        message: why the line failed or was skipped.
    """

    sequence: int
    manifest_url: str
    source_url: str
    line: int
    outcome: str
    resource_type: str | None = None
    resource_id: str | None = None
    previous_version: str | None = None
    version: str | None = None
    message: str | None = None


@runtime_checkable
class BulkJobStore(Protocol):
    """Durable bulk job state per tenant: job documents and submission journals.

    Documents survive a restart of the backend over the same storage; this is what
    lets an export resume from its cursor and an abort roll a submission back.
    """

    async def insert_bulk_job(
        self,
        context: TenantContext,
        record: BulkJobRecord,
        *,
        max_active: int | None = None,
        active_statuses: frozenset[str] = frozenset(),
    ) -> BulkJobRecord:
        """Store a new job document (``record.revision`` is ignored; stored as 1).

        Atomically with the insert, count the tenant's jobs of the same kind whose
        status is in ``active_statuses``; when ``max_active`` is set and the count is
        already at it, insert nothing.

        Raises:
            TooManyRequests: the tenant is at ``max_active`` active jobs.
            InvalidRequest: a job of that kind and id already exists.
        """
        ...

    async def load_bulk_job(self, context: TenantContext, kind: str, job_id: str) -> BulkJobRecord:
        """Return the job document. Raises NotFound when there is none in this tenant."""
        ...

    async def save_bulk_job(
        self, context: TenantContext, record: BulkJobRecord, *, expected_revision: int
    ) -> BulkJobRecord:
        """Replace status and document when the stored revision is ``expected_revision``.

        Returns the stored record with the incremented revision.

        Raises:
            NotFound: no such job (deleted meanwhile).
            VersionConflict: the stored revision differs; nothing was written.
        """
        ...

    async def list_bulk_jobs(self, context: TenantContext, kind: str) -> tuple[BulkJobRecord, ...]:
        """Every job document of a kind in the tenant, by ascending job id."""
        ...

    async def delete_bulk_job(self, context: TenantContext, kind: str, job_id: str) -> bool:
        """Delete a job document and, for a submission, its entries; False if absent."""
        ...

    async def append_submission_entries(
        self, context: TenantContext, submission_id: str, entries: Sequence[SubmissionEntry]
    ) -> None:
        """Append journal entries (one call per batch of lines; sequences increase)."""
        ...

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
        """Entries of a submission by sequence, optionally of one outcome or manifest.

        Ascending returns sequences greater than ``after_sequence``; descending
        (rollback order) returns the newest first and ignores ``after_sequence`` when
        it is 0, otherwise returns sequences smaller than it.
        """
        ...
