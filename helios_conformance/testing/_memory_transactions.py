"""Transactions for the in-memory backend: one lock and an undo log.

Every public call of the backend runs under one :class:`TransactionGate`: a
transaction holds it from ``begin`` to commit/rollback, and a call outside any
transaction holds it for its duration. So transactions run one at a time
(serializable), and nobody outside a transaction sees its uncommitted writes. Writes
go straight into the store; rollback undoes them from the append-only version log
(every write appends exactly one entry), which restores resources, history, search
index rows (they belong to the versions) and custom SearchParameters.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from .._capabilities import CapabilityDeclaration
from .._contract import IsolationLevel, Transaction
from .._errors import InvalidRequest
from .._tenancy import TenantContext, TenantId
from ..search import SearchParameterRegistry
from ..transactions import (
    UNGATED_METHODS,
    FhirTransactionsMixin,
    ForwardedStorage,
    ForwardingTransaction,
    check_isolation,
)

if TYPE_CHECKING:
    from ._memory import _Chain, _Version

MEMORY_TRANSACTION_CAPABILITIES = CapabilityDeclaration.of(
    supported=[
        "transactions.api",
        "transactions.bundle",
        "transactions.batch",
        "conditional.create",
        "conditional.update",
        "conditional.delete",
        "conditional.patch",
        "patch.json_patch",
        "patch.fhirpath_patch",
        "concurrency.conditional_create",
        "concurrency.optimistic_locking",
        "concurrency.transactions",
        "concurrency.version_sequence",
    ]
)
"""Transactions, batches, conditional interactions, patch and the concurrency guarantees."""

P = ParamSpec("P")
T = TypeVar("T")


def _serialised(method: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    @functools.wraps(method)
    async def call(*args: P.args, **kwargs: P.kwargs) -> T:
        backend = args[0]
        assert isinstance(backend, MemoryTransactions)
        async with backend.transaction_gate.exclusive():
            return await method(*args, **kwargs)

    return call


class MemoryTransactions(FhirTransactionsMixin):
    """The transaction primitive of the in-memory backend (a base of MemoryBackend).

    Subclasses get each public ``async`` method they define wrapped so that it runs
    under the backend's gate; the FHIR interactions come from
    :class:`FhirTransactionsMixin`.
    """

    _chains: dict[tuple[TenantId, str, str], _Chain]
    _log: list[tuple[TenantId, _Chain, _Version]]
    _registries: dict[TenantId, SearchParameterRegistry]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, value in list(vars(cls).items()):
            if (
                not name.startswith("_")
                and name not in UNGATED_METHODS
                and inspect.iscoroutinefunction(value)
            ):
                setattr(cls, name, _serialised(value))

    async def begin(
        self, context: TenantContext, *, isolation: IsolationLevel = "serializable"
    ) -> Transaction:
        """Open a transaction; it waits while another task's transaction is open.

        Every level is honoured by running serializable, the strongest.
        """
        level = check_isolation(isolation)
        await self.transaction_gate.enter()
        return MemoryTransaction(self, context, level, len(self._log))

    def _undo_since(self, mark: int) -> None:
        """Remove every version written after log position ``mark``."""
        undone = self._log[mark:]
        del self._log[mark:]
        registries: set[TenantId] = set()
        for tenant, chain, version in reversed(undone):
            popped = chain.versions.pop()
            assert popped is version, "the version log and the chains disagree"
            if not chain.versions:
                del self._chains[(tenant, chain.resource_type, chain.resource_id)]
            if chain.resource_type == "SearchParameter":
                registries.add(tenant)
        for tenant in registries:
            self._rebuild_registry(tenant)

    def _rebuild_registry(self, tenant: TenantId) -> None:
        """Recreate a tenant's registry from its live SearchParameter resources."""
        registry = self._registries[tenant] = SearchParameterRegistry()
        for (owner, kind, _), chain in self._chains.items():
            current = chain.versions[-1]
            if owner == tenant and kind == "SearchParameter" and current.text is not None:
                registry.register(json.loads(current.text))


class MemoryTransaction(ForwardingTransaction):
    """One open in-memory transaction: the backend's calls, bound to one tenant."""

    def __init__(
        self,
        backend: MemoryTransactions,
        context: TenantContext,
        isolation: IsolationLevel,
        mark: int,
    ) -> None:
        self._backend: Any = backend
        self._context = context
        self._isolation: IsolationLevel = isolation
        self._mark = mark
        self._active = True

    @property
    def isolation(self) -> IsolationLevel:
        return self._isolation

    @property
    def active(self) -> bool:
        return self._active

    def _check(self, context: TenantContext) -> Any:
        if not self._active:
            raise InvalidRequest("the transaction is no longer active (committed or rolled back)")
        if context.tenant != self._context.tenant:
            raise InvalidRequest(
                f"the transaction belongs to tenant {self._context.tenant}, not {context.tenant}"
            )
        return self._backend

    async def commit(self) -> None:
        self._check(self._context)
        self._active = False
        self._backend.transaction_gate.leave()

    async def rollback(self) -> None:
        self._check(self._context)
        self._active = False
        try:
            self._backend._undo_since(self._mark)
        finally:
            self._backend.transaction_gate.leave()

    async def _call(
        self, context: TenantContext, call: Callable[[ForwardedStorage], Awaitable[T]]
    ) -> T:
        return await call(self._check(context))
