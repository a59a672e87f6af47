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
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from ._capabilities import CapabilityDeclaration
from ._resource import HistoryPage, Resource, SearchResult, StoredResource
from ._tenancy import TenantContext


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
    ) -> SearchResult:
        """Return the first page of live resources of ``resource_type`` matching the query.

        Under strict handling an unknown parameter raises InvalidSearch; under lenient
        handling it is ignored and named in ``SearchResult.ignored``.

        Raises:
            InvalidSearch: a malformed query; the message names the parameter.
            Unsupported: a modifier or feature the backend does not implement.
        """
        ...
