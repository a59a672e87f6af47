"""The backend contract: small async Protocols, one per capability group.

A backend plugin is an entry point in the group ``helios_conformance.backends`` that
names an async factory ``(BackendConfig) -> Backend``. The returned object is the
:class:`Backend` and implements whichever storage protocols below it supports; the
capabilities it declares say which behaviours the suites may hold it to. Nothing
requires subclassing: the suites decide conformance.

Every storage call takes a :class:`TenantContext` first. A backend MUST keep tenants
apart (the same id in two tenants is two resources) and MUST call
``context.require(...)`` before touching storage so a denied call has no effect.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from . import _bulk_contract
from ._capabilities import CapabilityDeclaration
from ._resource import HistoryPage, Resource, SearchResult, StoredResource
from ._tenancy import TenantContext

# The Bulk Data primitives live in _bulk_contract.py; these names re-export them.
BulkJobRecord = _bulk_contract.BulkJobRecord
BulkJobStore = _bulk_contract.BulkJobStore
ExportPage = _bulk_contract.ExportPage
ExportRow = _bulk_contract.ExportRow
ExportScan = _bulk_contract.ExportScan
ExportStorage = _bulk_contract.ExportStorage
PatientCompartment = _bulk_contract.PatientCompartment
SubmissionEntry = _bulk_contract.SubmissionEntry


@dataclass(frozen=True, slots=True)
class BackendInfo:
    """Identity of a backend for the results document."""

    name: str
    version: str
    server_version: str | None = None


@dataclass(frozen=True, slots=True)
class BackendConfig:
    """How the harness asks a factory to open its backend.

    Attributes:
        url: an explicit server URL/DSN or database path (``--backend-url`` or
            ``HELIOS_BACKEND_URL``), or ``None`` to let the backend choose.
        options: free ``key=value`` options (``--backend-option``).
        worker_id: ``"main"`` or the pytest-xdist worker id; backends use one
            database/namespace per worker.
        scratch_dir: a private directory the backend may use for files.
        required: when true a missing server is an error, not a reason to skip.
    """

    url: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    worker_id: str = "main"
    scratch_dir: Path = field(default_factory=lambda: Path("."))
    required: bool = False


@runtime_checkable
class Backend(Protocol):
    """The entry object of a backend plugin."""

    @property
    def info(self) -> BackendInfo:
        """Name, version and (where there is one) the server version."""
        ...

    @property
    def capabilities(self) -> CapabilityDeclaration:
        """The capability ids this backend claims; the suites hold it to every one."""
        ...

    async def close(self) -> None:
        """Release every connection and file; called once, at the end of the session."""
        ...


BackendFactory = Callable[[BackendConfig], Awaitable[Backend]]
"""What an entry point in ``helios_conformance.backends`` must name.

The factory MAY raise :class:`BackendUnavailable` (no server, no driver); the harness
then skips the backend's tests with that reason unless the backend is required.
"""


@runtime_checkable
class ResourceStorage(Protocol):
    """Create, read, update, delete, exists and count (FHIR R4 http.html)."""

    async def create(self, context: TenantContext, resource: Resource) -> StoredResource:
        """Store a new resource under a fresh server-assigned id, as version "1".

        Any ``id`` in the body is ignored (R4 http.html#create). MUST raise
        :class:`InvalidResource` for a malformed body and store nothing.
        """
        ...

    async def create_or_update(
        self, context: TenantContext, resource_type: str, resource_id: str, resource: Resource
    ) -> tuple[StoredResource, bool]:
        """Store ``resource`` at a client-chosen id (update as create, R4 http.html#upsert).

        The body MUST carry ``id`` equal to ``resource_id``, as for any PUT
        (R4 http.html#update). Returns the stored version and whether it was created.
        A missing resource is
        created as version "1"; a deleted one is re-created, continuing its version
        chain; a live one is updated.
        """
        ...

    async def read(
        self, context: TenantContext, resource_type: str, resource_id: str
    ) -> StoredResource:
        """Return the current version.

        Raises:
            NotFound: it never existed. Gone: its current version is a deletion.
        """
        ...

    async def update(
        self,
        context: TenantContext,
        resource_type: str,
        resource_id: str,
        resource: Resource,
        *,
        expected_version: str | None = None,
    ) -> StoredResource:
        """Write a new version of an existing, live resource.

        The body MUST carry ``id`` equal to ``resource_id`` (R4 http.html#update).

        Raises:
            NotFound: no such resource (use ``create_or_update`` to create).
            Gone: the resource is deleted.
            VersionConflict: ``expected_version`` is not the current version;
                nothing is written.
        """
        ...

    async def delete(
        self,
        context: TenantContext,
        resource_type: str,
        resource_id: str,
        *,
        expected_version: str | None = None,
    ) -> StoredResource | None:
        """Delete the resource by writing a deletion version, and return that version.

        Deleting a resource that never existed, or is already deleted, succeeds and
        writes nothing (returns ``None``), as R4 http.html#delete allows.

        Raises:
            VersionConflict: ``expected_version`` is not the current version (a
                missing or deleted resource has no current version).
        """
        ...

    async def exists(self, context: TenantContext, resource_type: str, resource_id: str) -> bool:
        """True when the resource exists and is not deleted."""
        ...

    async def count(self, context: TenantContext, resource_type: str | None = None) -> int:
        """The number of live (not deleted) resources of a type, or of every type."""
        ...


@runtime_checkable
class VersionedStorage(Protocol):
    """Version reads (R4 http.html#vread); expected versions are on update/delete."""

    async def vread(
        self, context: TenantContext, resource_type: str, resource_id: str, version_id: str
    ) -> StoredResource:
        """Return one version, deletion markers included (``deleted`` is then true).

        Raises:
            NotFound: no such resource or no such version.
        """
        ...


TenantLocationKind = Literal["shared", "schema", "database"]


@dataclass(frozen=True, slots=True)
class TenantLocation:
    """Where a backend keeps one tenant's data.

    Attributes:
        kind: ``shared`` (tables shared by every tenant, rows carrying the tenant:
            capability ``tenancy.shared_schema``), ``schema`` (a schema of its own:
            ``tenancy.schema_per_tenant``) or ``database`` (a database of its own:
            ``tenancy.database_per_tenant``).
        name: the shared store's, schema's or database's name (a file for SQLite).
    """

    kind: TenantLocationKind
    name: str


@runtime_checkable
class TenancyInspection(Protocol):
    """How a backend lays out tenants, for the suites to check (``suites/tenancy``).

    Optional: a backend that declares ``tenancy.shared_schema``,
    ``tenancy.schema_per_tenant`` or ``tenancy.database_per_tenant`` implements it.
    """

    async def tenant_location(self, context: TenantContext) -> TenantLocation:
        """Where ``context``'s tenant's data lives (created on first use if need be)."""
        ...


@runtime_checkable
class RowLevelSecurityProbe(Protocol):
    """Proof that the database, not the application, keeps tenants apart.

    Optional: a backend that declares ``tenancy.row_level_security`` implements it.
    """

    async def ids_seen_without_tenant_filter(
        self, context: TenantContext
    ) -> tuple[tuple[str, str], ...]:
        """Run, as the application's own database role and session (with the tenant set
        as every call sets it), a query over every stored resource that has *no*
        condition on the tenant; return the (type, id) of each row it sees.

        With row-level security enforced by the database these are ``context``'s
        tenant's resources only, whatever other tenants store beside them.
        """
        ...


@runtime_checkable
class HistoryStorage(Protocol):
    """History at instance, type and system level (R4 http.html#history).

    Entries are newest first and include deletions. ``since`` keeps versions written
    at or after the instant, ``before`` those written strictly before it; ``count`` is
    the page size, and ``cursor`` is a ``next_cursor`` from a previous page of the
    same query (an opaque token; a foreign or tampered one raises InvalidSearch).
    """

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
        """History of one resource. Raises NotFound if it never existed."""
        ...

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
        """History of every resource of one type in the tenant."""
        ...

    async def history_system(
        self,
        context: TenantContext,
        *,
        since: datetime | None = None,
        before: datetime | None = None,
        count: int | None = None,
        cursor: str | None = None,
    ) -> HistoryPage:
        """History of every resource in the tenant."""
        ...


QueryParameters = Sequence[tuple[str, str]]
"""A FHIR search as ordered ``(name, value)`` pairs, already URL-decoded; a name that
repeats is an AND, commas inside a value are an OR (R4 search.html)."""


@runtime_checkable
class SearchStorage(Protocol):
    """Type-level search (R4 search.html).

    A backend parses ``parameters`` with the harness's shared parser
    (``helios_conformance.search``), so every backend agrees on what a query means,
    and evaluates it with the semantics of the reference evaluator.
    """

    async def search(
        self,
        context: TenantContext,
        resource_type: str,
        parameters: QueryParameters,
        *,
        strict: bool = True,
        cursor: str | None = None,
    ) -> SearchResult:
        """Return one page of live resources of ``resource_type`` matching the query.

        Under strict handling an unknown parameter raises InvalidSearch; under lenient
        handling it is ignored and named in ``SearchResult.ignored``.

        Paging (R4 http.html#paging) comes in two forms, each a capability:

        - offset (``search.paging.offset``): ``_offset=N`` among the parameters skips
          the first N matches of the (sorted) result; the page says where the next
          one starts in ``SearchResult.next_offset``. An HTTP server's ``next`` link
          is the same query with ``_offset=N``.
        - cursor (``search.paging.cursor``): ``cursor`` is a ``next_cursor`` from the
          previous page, passed back with the *same* parameters (an HTTP server puts
          it in its ``next`` link as an opaque parameter). The backend MUST continue
          after the last entry it returned (keyset on the sort values and id), MUST
          neither repeat nor skip the resources that existed when the first page was
          served even while others are created, and MUST refuse with InvalidSearch
          a cursor that was altered or issued for another query or tenant (sign it,
          e.g. with ``helios_conformance.CursorCodec``). A backend without cursor
          paging MAY ignore the keyword's existence (the client only passes it when
          it is set).

        Raises:
            InvalidSearch: a malformed query or cursor; the message names the parameter.
            Unsupported: a modifier or feature the backend does not implement.
        """
        ...


IsolationLevel = Literal["read_committed", "repeatable_read", "serializable"]
"""The isolation levels a transaction may ask for, weakest first (SQL names)."""

ISOLATION_LEVELS: tuple[IsolationLevel, ...] = ("read_committed", "repeatable_read", "serializable")

Patch = Sequence[Mapping[str, Any]] | Mapping[str, Any]
"""A patch document: a JSON Patch (RFC 6902) is a JSON array of operation objects; a
FHIRPath Patch (R4 fhirpatch.html) is a ``Parameters`` resource. The shape says which,
as the Content-Type does over HTTP."""


@runtime_checkable
class Transaction(ResourceStorage, VersionedStorage, SearchStorage, Protocol):
    """One open storage transaction, from :meth:`TransactionStorage.begin`.

    It offers the ResourceStorage, VersionedStorage and SearchStorage calls, with the
    same signatures and errors, executed inside the transaction: they see its own
    writes, and nobody else does until :meth:`commit`. It is bound to the tenant
    context it was opened with; a call with another tenant's context raises
    InvalidRequest. After commit or rollback every call raises InvalidRequest.

    A failed call inside a transaction leaves the transaction open and usable (the
    call itself wrote nothing); the caller decides whether to roll back.
    """

    @property
    def isolation(self) -> IsolationLevel:
        """The isolation level the transaction runs at (at least the one asked for)."""
        ...

    @property
    def active(self) -> bool:
        """True until :meth:`commit` or :meth:`rollback` has been called."""
        ...

    async def commit(self) -> None:
        """Make every write of the transaction durable and visible, atomically.

        Raises:
            InvalidRequest: the transaction is no longer active.
        """
        ...

    async def rollback(self) -> None:
        """Undo every write of the transaction: no resource, history entry or index row
        it wrote survives.

        Raises:
            InvalidRequest: the transaction is no longer active.
        """
        ...


@runtime_checkable
class TransactionStorage(Protocol):
    """Explicit storage transactions (capability ``transactions.api``).

    Guarantees the suites hold a backend to (``concurrency.*``): transactions are
    atomic; concurrent transactions (different tasks) behave as if run one after the
    other at ``serializable``; readers outside a transaction never see its uncommitted
    writes; version ids of a resource never repeat or skip. A backend MAY achieve this
    by running transactions one at a time (the in-memory backend holds one lock;
    SQLite holds its one connection in ``BEGIN IMMEDIATE``).

    :class:`helios_conformance.transactions.TransactionGate` gives the bookkeeping:
    one open transaction per backend at a time, nesting refused.
    """

    async def begin(
        self, context: TenantContext, *, isolation: IsolationLevel = "serializable"
    ) -> Transaction:
        """Open a transaction, waiting while a transaction of another task is open.

        Opening a transaction checks no permission; every call inside checks its own.

        Raises:
            InvalidRequest: ``isolation`` is not one of :data:`ISOLATION_LEVELS`, or the
                calling task already has a transaction open on this backend (nested
                transactions are refused; the message says "nested").
            Unsupported: the backend cannot run at ``isolation`` (capability
                ``transactions.api``).
        """
        ...

    def transaction(
        self, context: TenantContext, *, isolation: IsolationLevel = "serializable"
    ) -> AbstractAsyncContextManager[Transaction]:
        """``async with backend.transaction(ctx) as tx``: :meth:`begin`, then commit on
        normal exit and roll back when the block raises (the exception propagates).

        A block that commits or rolls back explicitly is left as it is on exit.
        """
        ...


@runtime_checkable
class ConditionalStorage(Protocol):
    """Conditional create, update, delete and patch (R4 http.html#ccreate,
    #cond-update, #cdelete, #patch).

    ``criteria`` is a type-level search (ordered, URL-decoded pairs) with the meaning
    of :class:`SearchStorage`; only filtering parameters are allowed (``_count``,
    ``_sort``, ``_include`` and the other result parameters raise InvalidSearch), an
    unknown parameter raises InvalidSearch, and empty criteria raise InvalidRequest.
    Each call is atomic: the search and the write happen in one transaction, so two
    concurrent conditional creates with the same criteria store one resource.
    """

    async def conditional_create(
        self, context: TenantContext, resource: Resource, criteria: QueryParameters
    ) -> tuple[StoredResource, bool]:
        """Create ``resource`` unless a resource of its type matches ``criteria``.

        Returns ``(stored, created)``: no match stores the resource (``created`` is
        true, as :meth:`ResourceStorage.create`); one match returns its current version
        and writes nothing (``created`` is false).

        Raises:
            MultipleMatches: several resources match; nothing is written.
        """
        ...

    async def conditional_update(
        self,
        context: TenantContext,
        resource: Resource,
        criteria: QueryParameters,
        *,
        allow_create: bool = True,
        expected_version: str | None = None,
    ) -> tuple[StoredResource, bool]:
        """Update the one resource of the body's type that matches ``criteria``.

        Returns ``(stored, created)``. One match: the body (whose ``id``, if present,
        must be the match's id) is written as its next version. No match: the body is
        created, at its ``id`` if it carries one (update as create) or else at a
        fresh id, unless ``allow_create`` is false.

        Raises:
            MultipleMatches: several resources match.
            InvalidResource: the body's id differs from the matched resource's id.
            NotFound: no match and ``allow_create`` is false.
            VersionConflict: ``expected_version`` is not the match's current version.
        """
        ...

    async def conditional_delete(
        self,
        context: TenantContext,
        resource_type: str,
        criteria: QueryParameters,
        *,
        multiple: bool = False,
    ) -> tuple[StoredResource, ...]:
        """Delete the resources of ``resource_type`` that match ``criteria``.

        Returns the deletion versions written, in id order (empty when nothing matched,
        which is not an error). In single mode (``multiple=False``) several matches
        raise MultipleMatches and nothing is deleted; in multiple mode every match is
        deleted.
        """
        ...

    async def conditional_patch(
        self,
        context: TenantContext,
        resource_type: str,
        criteria: QueryParameters,
        patch: Patch,
        *,
        expected_version: str | None = None,
    ) -> StoredResource:
        """Apply ``patch`` to the one resource of ``resource_type`` matching ``criteria``.

        Raises:
            NotFound: nothing matches. MultipleMatches: several match. Otherwise as
            :meth:`PatchStorage.patch`.
        """
        ...


@runtime_checkable
class PatchStorage(Protocol):
    """Patch with JSON Patch and FHIRPath Patch (R4 http.html#patch, fhirpatch.html)."""

    async def patch(
        self,
        context: TenantContext,
        resource_type: str,
        resource_id: str,
        patch: Patch,
        *,
        expected_version: str | None = None,
    ) -> StoredResource:
        """Apply ``patch`` to the current version and write the result as the next one.

        Raises:
            NotFound / Gone: no such live resource.
            VersionConflict: ``expected_version`` is not the current version.
            InvalidRequest: the patch document is malformed.
            PatchFailed: a JSON Patch ``test`` failed or a path does not exist (422).
            InvalidResource: the result is not a valid resource (for example its
                ``id`` or ``resourceType`` changed); nothing is written.
        """
        ...


@runtime_checkable
class BundleStorage(Protocol):
    """FHIR transaction and batch Bundles (R4 http.html#transaction)."""

    async def process_bundle(self, context: TenantContext, bundle: Resource) -> Resource:
        """Process a ``transaction`` or ``batch`` Bundle and return the response Bundle.

        A transaction is all or nothing: entries run in the FHIR order (DELETE, POST,
        PUT/PATCH, GET/HEAD), ``urn:uuid`` fullUrls and conditional references are
        resolved, and the response (type ``transaction-response``) has one entry per
        request entry in request order. A transaction requires the TRANSACTION
        permission. A batch runs each entry on its own; a failed entry's response
        carries its HTTP status and an OperationOutcome.

        Raises:
            InvalidRequest: the Bundle itself is malformed or of another type.
            HeliosError: for a transaction, the error of the first failing entry (with
                a note naming the entry); nothing was written.
        """
        ...
