"""Blocking calls for transactions, bundles, conditional interactions and patch.

A base of :class:`~helios_conformance.SyncClient`; kept apart so the client module
stays about CRUD, history and search.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar, cast
from urllib.parse import parse_qsl

from ._contract import (
    BundleStorage,
    ConditionalStorage,
    IsolationLevel,
    Patch,
    PatchStorage,
    QueryParameters,
    Transaction,
    TransactionStorage,
)
from ._resource import Resource, SearchResult, StoredResource
from ._tenancy import TenantContext

T = TypeVar("T")
P = TypeVar("P")


def _criteria(criteria: str | QueryParameters) -> list[tuple[str, str]]:
    if isinstance(criteria, str):
        return parse_qsl(criteria, keep_blank_values=True)
    return list(criteria)


class SyncTransaction:
    """A blocking view of an open :class:`~helios_conformance.Transaction`.

    As a context manager it commits on normal exit and rolls back when the block
    raises; an explicit :meth:`commit` or :meth:`rollback` inside the block wins.
    """

    def __init__(self, tx: Transaction, runner: asyncio.Runner, context: TenantContext) -> None:
        self._tx = tx
        self._runner = runner
        self.context = context

    @property
    def transaction(self) -> Transaction:
        """The async transaction, for tests that build coroutines themselves."""
        return self._tx

    @property
    def active(self) -> bool:
        return self._tx.active

    @property
    def isolation(self) -> IsolationLevel:
        return self._tx.isolation

    def _call(self, factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
        return self._runner.run(factory())

    def commit(self) -> None:
        self._call(self._tx.commit)

    def rollback(self) -> None:
        self._call(self._tx.rollback)

    def __enter__(self) -> SyncTransaction:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self._tx.active:
            return
        if exc_type is None:
            self.commit()
        else:
            self.rollback()

    def create(self, resource: Resource) -> StoredResource:
        return self._call(lambda: self._tx.create(self.context, resource))

    def create_or_update(
        self, resource_type: str, resource_id: str, resource: Resource
    ) -> tuple[StoredResource, bool]:
        return self._call(
            lambda: self._tx.create_or_update(self.context, resource_type, resource_id, resource)
        )

    def read(self, resource_type: str, resource_id: str) -> StoredResource:
        return self._call(lambda: self._tx.read(self.context, resource_type, resource_id))

    def vread(self, resource_type: str, resource_id: str, version_id: str) -> StoredResource:
        return self._call(
            lambda: self._tx.vread(self.context, resource_type, resource_id, version_id)
        )

    def update(
        self,
        resource_type: str,
        resource_id: str,
        resource: Resource,
        *,
        expected_version: str | None = None,
    ) -> StoredResource:
        return self._call(
            lambda: self._tx.update(
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
        return self._call(
            lambda: self._tx.delete(
                self.context, resource_type, resource_id, expected_version=expected_version
            )
        )

    def exists(self, resource_type: str, resource_id: str) -> bool:
        return self._call(lambda: self._tx.exists(self.context, resource_type, resource_id))

    def count(self, resource_type: str | None = None) -> int:
        return self._call(lambda: self._tx.count(self.context, resource_type))

    def search(self, resource_type: str, query: str | QueryParameters = "") -> SearchResult:
        parameters = _criteria(query)
        return self._call(lambda: self._tx.search(self.context, resource_type, parameters))


class TransactionCalls:
    """The blocking transaction, bundle, conditional and patch calls of SyncClient."""

    context: TenantContext
    _runner: asyncio.Runner

    def _as(self, protocol: type[P], capability: str) -> P:  # provided by SyncClient
        raise NotImplementedError

    def _run(self, factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
        return self._runner.run(factory())

    def begin(self, *, isolation: IsolationLevel | str = "serializable") -> SyncTransaction:
        """Open an explicit transaction (``with client.begin() as tx: ...``)."""
        storage = self._as(TransactionStorage, "transactions.api")  # type: ignore[type-abstract]
        level = cast(IsolationLevel, isolation)
        tx = self._run(lambda: storage.begin(self.context, isolation=level))
        return SyncTransaction(tx, self._runner, self.context)

    def process_bundle(self, bundle: Resource) -> Resource:
        """Process a transaction or batch Bundle and return the response Bundle."""
        storage = self._as(BundleStorage, "transactions.bundle")  # type: ignore[type-abstract]
        return self._run(lambda: storage.process_bundle(self.context, bundle))

    def transaction(self, bundle: Resource) -> Resource:
        """Process a ``transaction`` Bundle (all or nothing); errors propagate."""
        if bundle.get("type") != "transaction":
            raise ValueError(f"expected a transaction Bundle, got type {bundle.get('type')!r}")
        return self.process_bundle(bundle)

    def batch(self, bundle: Resource) -> Resource:
        """Process a ``batch`` Bundle; each entry's response carries its own outcome."""
        if bundle.get("type") != "batch":
            raise ValueError(f"expected a batch Bundle, got type {bundle.get('type')!r}")
        storage = self._as(BundleStorage, "transactions.batch")  # type: ignore[type-abstract]
        return self._run(lambda: storage.process_bundle(self.context, bundle))

    def conditional_create(
        self, resource: Resource, criteria: str | QueryParameters
    ) -> tuple[StoredResource, bool]:
        storage = self._as(ConditionalStorage, "conditional.create")  # type: ignore[type-abstract]
        pairs = _criteria(criteria)
        return self._run(lambda: storage.conditional_create(self.context, resource, pairs))

    def conditional_update(
        self,
        resource: Resource,
        criteria: str | QueryParameters,
        *,
        allow_create: bool = True,
        expected_version: str | None = None,
    ) -> tuple[StoredResource, bool]:
        storage = self._as(ConditionalStorage, "conditional.update")  # type: ignore[type-abstract]
        pairs = _criteria(criteria)
        return self._run(
            lambda: storage.conditional_update(
                self.context,
                resource,
                pairs,
                allow_create=allow_create,
                expected_version=expected_version,
            )
        )

    def conditional_delete(
        self, resource_type: str, criteria: str | QueryParameters, *, multiple: bool = False
    ) -> tuple[StoredResource, ...]:
        storage = self._as(ConditionalStorage, "conditional.delete")  # type: ignore[type-abstract]
        pairs = _criteria(criteria)
        return self._run(
            lambda: storage.conditional_delete(
                self.context, resource_type, pairs, multiple=multiple
            )
        )

    def conditional_patch(
        self,
        resource_type: str,
        criteria: str | QueryParameters,
        patch: Patch,
        *,
        expected_version: str | None = None,
    ) -> StoredResource:
        storage = self._as(ConditionalStorage, "conditional.patch")  # type: ignore[type-abstract]
        pairs = _criteria(criteria)
        return self._run(
            lambda: storage.conditional_patch(
                self.context, resource_type, pairs, patch, expected_version=expected_version
            )
        )

    def patch(
        self,
        resource_type: str,
        resource_id: str,
        patch: Patch,
        *,
        expected_version: str | None = None,
    ) -> StoredResource:
        storage = self._as(PatchStorage, "patch.json_patch")  # type: ignore[type-abstract]
        return self._run(
            lambda: storage.patch(
                self.context, resource_type, resource_id, patch, expected_version=expected_version
            )
        )
