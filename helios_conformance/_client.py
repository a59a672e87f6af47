"""The synchronous client the suites use to drive an async backend.

Suites are plain sync pytest tests. The client runs each backend coroutine on one
long-lived event loop (an :class:`asyncio.Runner` per worker) so connection pools stay
valid across tests, Hypothesis works unchanged, and concurrency tests can still hand
several coroutines to :meth:`SyncClient.gather`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import parse_qsl

from ._client_transactions import TransactionCalls
from ._contract import (
    Backend,
    HistoryStorage,
    QueryParameters,
    ResourceStorage,
    SearchStorage,
    VersionedStorage,
)
from ._errors import Unsupported
from ._resource import HistoryPage, Resource, SearchResult, StoredResource
from ._tenancy import TenantContext, TenantPermissions

if TYPE_CHECKING:
    from .bulk import BulkSettings, OutputStore, SourceReader, SyncBulk

T = TypeVar("T")
P = TypeVar("P")


def _pairs(query: str | QueryParameters) -> list[tuple[str, str]]:
    return parse_qsl(query, keep_blank_values=True) if isinstance(query, str) else list(query)


class SyncClient(TransactionCalls):
    """A backend bound to one tenant context, with a blocking method per contract call.

    Every call passes :attr:`context` to the backend as its first argument. Calls to a
    protocol the backend does not implement raise :class:`Unsupported`.
    """

    def __init__(self, backend: Backend, runner: asyncio.Runner, context: TenantContext) -> None:
        self._backend = backend
        self._runner = runner
        self.context = context

    @property
    def backend(self) -> Backend:
        """The async backend, for tests that build coroutines themselves."""
        return self._backend

    def for_tenant(
        self, tenant: str | TenantContext, permissions: TenantPermissions | None = None
    ) -> SyncClient:
        """A client for another tenant context on the same backend and event loop."""
        context = (
            tenant if isinstance(tenant, TenantContext) else TenantContext.of(tenant, permissions)
        )
        return SyncClient(self._backend, self._runner, context)

    def run(self, awaitable: Coroutine[Any, Any, T]) -> T:
        """Run one coroutine to completion on the worker's event loop."""
        return self._runner.run(awaitable)

    def gather(
        self, *awaitables: Awaitable[T], return_exceptions: bool = True
    ) -> list[T | BaseException]:
        """Run several coroutines concurrently; exceptions are returned, not raised."""

        async def _all() -> list[T | BaseException]:
            return list(await asyncio.gather(*awaitables, return_exceptions=return_exceptions))

        return self._runner.run(_all())

    def _as(self, protocol: type[P], capability: str) -> P:
        if not isinstance(self._backend, protocol):
            raise Unsupported(
                f"backend {self._backend.info.name!r} does not implement {protocol.__name__}",
                capability=capability,
            )
        return cast(P, self._backend)

    def _call(self, factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
        return self._runner.run(factory())

    # -- ResourceStorage --------------------------------------------------------

    def create(self, resource: Resource) -> StoredResource:
        storage = self._as(ResourceStorage, "crud.create")  # type: ignore[type-abstract]
        return self._call(lambda: storage.create(self.context, resource))

    def create_or_update(
        self, resource_type: str, resource_id: str, resource: Resource
    ) -> tuple[StoredResource, bool]:
        storage = self._as(ResourceStorage, "crud.update_as_create")  # type: ignore[type-abstract]
        return self._call(
            lambda: storage.create_or_update(self.context, resource_type, resource_id, resource)
        )

    def read(self, resource_type: str, resource_id: str) -> StoredResource:
        storage = self._as(ResourceStorage, "crud.read")  # type: ignore[type-abstract]
        return self._call(lambda: storage.read(self.context, resource_type, resource_id))

    def update(
        self,
        resource_type: str,
        resource_id: str,
        resource: Resource,
        *,
        expected_version: str | None = None,
    ) -> StoredResource:
        storage = self._as(ResourceStorage, "crud.update")  # type: ignore[type-abstract]
        return self._call(
            lambda: storage.update(
                self.context,
                resource_type,
                resource_id,
                resource,
                expected_version=expected_version,
            )
        )

    def delete(
        self, resource_type: str, resource_id: str, *, expected_version: str | None = None
    ) -> StoredResource | None:
        storage = self._as(ResourceStorage, "crud.delete")  # type: ignore[type-abstract]
        return self._call(
            lambda: storage.delete(
                self.context, resource_type, resource_id, expected_version=expected_version
            )
        )

    def exists(self, resource_type: str, resource_id: str) -> bool:
        storage = self._as(ResourceStorage, "crud.read")  # type: ignore[type-abstract]
        return self._call(lambda: storage.exists(self.context, resource_type, resource_id))

    def count(self, resource_type: str | None = None) -> int:
        storage = self._as(ResourceStorage, "crud.read")  # type: ignore[type-abstract]
        return self._call(lambda: storage.count(self.context, resource_type))

    # -- VersionedStorage -------------------------------------------------------

    def vread(self, resource_type: str, resource_id: str, version_id: str) -> StoredResource:
        storage = self._as(VersionedStorage, "versioning.vread")  # type: ignore[type-abstract]
        return self._call(
            lambda: storage.vread(self.context, resource_type, resource_id, version_id)
        )

    # -- HistoryStorage ---------------------------------------------------------

    def history_instance(
        self,
        resource_type: str,
        resource_id: str,
        *,
        since: datetime | None = None,
        before: datetime | None = None,
        count: int | None = None,
        cursor: str | None = None,
    ) -> HistoryPage:
        storage = self._as(HistoryStorage, "history.instance")  # type: ignore[type-abstract]
        return self._call(
            lambda: storage.history_instance(
                self.context,
                resource_type,
                resource_id,
                since=since,
                before=before,
                count=count,
                cursor=cursor,
            )
        )

    def history_type(
        self,
        resource_type: str,
        *,
        since: datetime | None = None,
        before: datetime | None = None,
        count: int | None = None,
        cursor: str | None = None,
    ) -> HistoryPage:
        storage = self._as(HistoryStorage, "history.type")  # type: ignore[type-abstract]
        return self._call(
            lambda: storage.history_type(
                self.context, resource_type, since=since, before=before, count=count, cursor=cursor
            )
        )

    def history_system(
        self,
        *,
        since: datetime | None = None,
        before: datetime | None = None,
        count: int | None = None,
        cursor: str | None = None,
    ) -> HistoryPage:
        storage = self._as(HistoryStorage, "history.system")  # type: ignore[type-abstract]
        return self._call(
            lambda: storage.history_system(
                self.context, since=since, before=before, count=count, cursor=cursor
            )
        )

    # -- SearchStorage -------------------------------------------------------------

    def search(
        self,
        resource_type: str,
        query: str | QueryParameters = "",
        *,
        strict: bool = True,
        cursor: str | None = None,
    ) -> SearchResult:
        """Search ``resource_type`` with a query string (``"family=Lee&_count=2"``) or pairs.

        A string is split and URL-decoded the way an HTTP server would
        (``urllib.parse.parse_qsl``, blank values kept so they can be refused).
        ``cursor`` is the ``next_cursor`` of the previous page of the same query.
        """
        storage = self._as(SearchStorage, "search.param.common")  # type: ignore[type-abstract]
        parameters = _pairs(query)
        if cursor is None:
            return self._call(
                lambda: storage.search(self.context, resource_type, parameters, strict=strict)
            )
        return self._call(
            lambda: storage.search(
                self.context, resource_type, parameters, strict=strict, cursor=cursor
            )
        )

    def search_pages(
        self,
        resource_type: str,
        query: str | QueryParameters = "",
        *,
        strict: bool = True,
        max_pages: int = 10_000,
    ) -> list[SearchResult]:
        """Every page of a search, following ``next_cursor`` from the first page."""
        pages = [self.search(resource_type, query, strict=strict)]
        while pages[-1].next_cursor is not None:
            if len(pages) >= max_pages:
                raise AssertionError(f"search paging did not end after {max_pages} pages")
            pages.append(
                self.search(resource_type, query, strict=strict, cursor=pages[-1].next_cursor)
            )
        return pages

    def search_offset_pages(
        self,
        resource_type: str,
        query: str | QueryParameters = "",
        *,
        strict: bool = True,
        max_pages: int = 10_000,
    ) -> list[SearchResult]:
        """Every page of a search, repeating it with ``_offset=next_offset``."""
        base = [(name, value) for name, value in _pairs(query) if name != "_offset"]
        pages = [self.search(resource_type, base, strict=strict)]
        while pages[-1].next_offset is not None:
            if len(pages) >= max_pages:
                raise AssertionError(f"search paging did not end after {max_pages} pages")
            offset = pages[-1].next_offset
            pages.append(
                self.search(resource_type, [*base, ("_offset", str(offset))], strict=strict)
            )
        return pages

    def bulk(
        self,
        output: OutputStore | Path | str,
        *,
        settings: BulkSettings | None = None,
        source: SourceReader | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> SyncBulk:
        """Bulk Data export and submit for this client's backend and tenant.

        ``output`` is an output store, or a directory for a filesystem one. Raises
        Unsupported at the first call when the backend lacks the bulk primitives.
        """
        from .bulk import FilesystemOutputStore, SyncBulk

        store = FilesystemOutputStore(output) if isinstance(output, (Path, str)) else output
        return SyncBulk(self, store, settings=settings, source=source, clock=clock)

    def history_all_pages(self, first: Callable[[str | None], HistoryPage]) -> list[StoredResource]:
        """Follow ``next_cursor`` from the first page to the last and return every entry."""
        entries: list[StoredResource] = []
        cursor: str | None = None
        for _ in range(100_000):
            page = first(cursor)
            entries.extend(page.entries)
            cursor = page.next_cursor
            if cursor is None:
                return entries
        raise AssertionError("history paging did not terminate after 100000 pages")
