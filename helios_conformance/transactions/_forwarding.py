"""The storage calls of a transaction, each forwarded to storage that runs it inside.

A :class:`~helios_conformance.Transaction` offers the ResourceStorage, VersionedStorage
and SearchStorage calls with the backend's own signatures; a backend usually answers
them with its own methods, run inside the open transaction (in the transaction's
connection, savepoint, lock...). :class:`ForwardingTransaction` writes those
forwarding methods once: a subclass supplies :meth:`~ForwardingTransaction._call`,
which checks the transaction is usable and runs one call on the storage in it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from .._contract import QueryParameters, ResourceStorage, SearchStorage, VersionedStorage
from .._resource import Resource, SearchResult, StoredResource
from .._tenancy import TenantContext

T = TypeVar("T")


class ForwardedStorage(ResourceStorage, VersionedStorage, SearchStorage, Protocol):
    """What a transaction's calls are forwarded to (usually the backend, or a view of it)."""


class ForwardingTransaction:
    """A transaction's storage calls, each run by :meth:`_call` (see the module docstring)."""

    async def _call(
        self, context: TenantContext, call: Callable[[ForwardedStorage], Awaitable[T]]
    ) -> T:
        """Run ``call`` on the storage inside the transaction, for ``context``.

        Raises:
            InvalidRequest: the transaction is no longer active, or belongs to another
                tenant (as the contract says).
        """
        raise NotImplementedError(f"{type(self).__name__} must implement _call()")

    async def create(self, context: TenantContext, resource: Resource) -> StoredResource:
        return await self._call(context, lambda storage: storage.create(context, resource))

    async def create_or_update(
        self, context: TenantContext, resource_type: str, resource_id: str, resource: Resource
    ) -> tuple[StoredResource, bool]:
        return await self._call(
            context,
            lambda storage: storage.create_or_update(context, resource_type, resource_id, resource),
        )

    async def read(
        self, context: TenantContext, resource_type: str, resource_id: str
    ) -> StoredResource:
        return await self._call(
            context, lambda storage: storage.read(context, resource_type, resource_id)
        )

    async def update(
        self,
        context: TenantContext,
        resource_type: str,
        resource_id: str,
        resource: Resource,
        *,
        expected_version: str | None = None,
    ) -> StoredResource:
        return await self._call(
            context,
            lambda storage: storage.update(
                context, resource_type, resource_id, resource, expected_version=expected_version
            ),
        )

    async def delete(
        self,
        context: TenantContext,
        resource_type: str,
        resource_id: str,
        *,
        expected_version: str | None = None,
    ) -> StoredResource | None:
        return await self._call(
            context,
            lambda storage: storage.delete(
                context, resource_type, resource_id, expected_version=expected_version
            ),
        )

    async def exists(self, context: TenantContext, resource_type: str, resource_id: str) -> bool:
        return await self._call(
            context, lambda storage: storage.exists(context, resource_type, resource_id)
        )

    async def count(self, context: TenantContext, resource_type: str | None = None) -> int:
        return await self._call(context, lambda storage: storage.count(context, resource_type))

    async def vread(
        self, context: TenantContext, resource_type: str, resource_id: str, version_id: str
    ) -> StoredResource:
        return await self._call(
            context,
            lambda storage: storage.vread(context, resource_type, resource_id, version_id),
        )

    async def search(
        self,
        context: TenantContext,
        resource_type: str,
        parameters: QueryParameters,
        *,
        strict: bool = True,
        cursor: str | None = None,
    ) -> SearchResult:
        # The cursor keyword is passed only when set (as the client does), so storage
        # that does not page by cursor is called as it expects.
        if cursor is None:
            return await self._call(
                context,
                lambda storage: storage.search(context, resource_type, parameters, strict=strict),
            )
        return await self._call(
            context,
            lambda storage: storage.search(
                context, resource_type, parameters, strict=strict, cursor=cursor
            ),
        )
