"""Transactions for the SQLite backend: one gate, one connection, ``BEGIN IMMEDIATE``.

The backend has one connection, so it runs one transaction at a time (serializable,
the strongest level, whatever level is asked for). A :class:`TransactionGate` says
who may use the connection: a transaction holds it from ``begin`` to commit or
rollback, and every public call made outside a transaction holds it for its
duration, so it waits for an open transaction to end and never sees uncommitted
writes. The task that holds the gate passes straight through, so the calls of a
transaction (and of coroutines it gathers) run inside it.

Inside a transaction each contract call runs its usual single hop, but on the open
transaction: its unit of work opens a SAVEPOINT instead of ``BEGIN`` (see
:func:`savepoint`), so a failed call undoes only its own writes and leaves the
transaction usable, as the contract asks. Resources, history rows, search-index rows,
FTS rows and the ``search_parameters`` table are all plain rows of the one SQLite
transaction, so ``ROLLBACK`` removes them together; the in-process registries of
custom SearchParameters are restored from a snapshot taken at ``begin``.
"""

from __future__ import annotations

import functools
import inspect
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from helios_conformance import (
    BackendFailure,
    CapabilityDeclaration,
    InvalidRequest,
    TenantContext,
)
from helios_conformance.search import SearchParameterRegistry
from helios_conformance.transactions import (
    UNGATED_METHODS,
    FhirTransactionsMixin,
    ForwardedStorage,
    ForwardingTransaction,
    check_isolation,
)

if TYPE_CHECKING:
    from helios_conformance import IsolationLevel, Transaction

    from ._backend import SQLiteBackend

SQLITE_TRANSACTION_CAPABILITIES = CapabilityDeclaration.of(
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


_SAVEPOINT = "helios_unit"


@contextmanager
def savepoint(connection: sqlite3.Connection) -> Iterator[None]:
    """Run a unit of work inside the open transaction, undoing only its own writes on error.

    Used by the backend's ``_transaction`` when the connection is already in a
    transaction, i.e. inside :meth:`SQLiteTransactions.begin`'s ``BEGIN IMMEDIATE``.

    Raises:
        BackendFailure: SQLite rolled the whole transaction back itself (it does on
            some errors, such as a full disk), so the transaction cannot go on.
    """
    connection.execute(f"SAVEPOINT {_SAVEPOINT}")
    try:
        yield
    except BaseException as exc:
        if not connection.in_transaction:
            raise BackendFailure(
                f"sqlite rolled the whole transaction back after an error: {exc}"
            ) from exc
        connection.execute(f"ROLLBACK TO {_SAVEPOINT}")
        connection.execute(f"RELEASE {_SAVEPOINT}")
        raise
    connection.execute(f"RELEASE {_SAVEPOINT}")


def _begin_unit(connection: sqlite3.Connection) -> None:
    # The write lock up front: a transaction never fails half way on a lock upgrade,
    # and another process writing the same file waits (busy_timeout) or refuses now.
    connection.execute("BEGIN IMMEDIATE")


def _commit_unit(connection: sqlite3.Connection) -> None:
    try:
        connection.execute("COMMIT")
    except BaseException:
        # rollback() is a no-op when SQLite already ended the transaction itself.
        connection.rollback()
        raise


def _rollback_unit(connection: sqlite3.Connection) -> None:
    connection.rollback()


def _in_transaction_unit(connection: sqlite3.Connection) -> bool:
    return connection.in_transaction


def _serialised(method: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    @functools.wraps(method)
    async def call(*args: P.args, **kwargs: P.kwargs) -> T:
        backend = args[0]
        assert isinstance(backend, SQLiteTransactions)
        context = args[1] if len(args) > 1 else None
        async with backend.transaction_gate.exclusive(), backend._tenant_scope(context):
            return await method(*args, **kwargs)

    call.helios_gated = True  # type: ignore[attr-defined]
    return call


class SQLiteTransactions(FhirTransactionsMixin):
    """The transaction primitive of the SQLite backend (a base of ``SQLiteBackend``).

    Every public ``async`` method of a subclass, its own or inherited from its other
    bases (such as the bulk storage), is wrapped so that it runs under the backend's
    gate; the FHIR interactions (bundles, conditional operations,
    patch) come from :class:`FhirTransactionsMixin` on top of :meth:`begin`.
    """

    _registries: dict[str, SearchParameterRegistry]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in dir(cls):
            if name.startswith("_") or name in UNGATED_METHODS:
                continue
            owner = next(klass for klass in cls.__mro__ if name in vars(klass))
            if owner in SQLiteTransactions.__mro__:
                continue
            value = vars(owner)[name]
            if inspect.iscoroutinefunction(value) and not getattr(value, "helios_gated", False):
                setattr(cls, name, _serialised(value))

    @asynccontextmanager
    async def _tenant_scope(self, context: object) -> AsyncIterator[None]:
        """Run the block on ``context``'s database (database per tenant mode; the
        backend overrides it). The shared database needs nothing."""
        del context
        yield

    async def begin(
        self, context: TenantContext, *, isolation: IsolationLevel = "serializable"
    ) -> Transaction:
        """Open a transaction; it waits while another task's transaction is open.

        Every level is honoured by running serializable, the strongest. One hop
        (``BEGIN IMMEDIATE``).

        Raises:
            InvalidRequest: an unknown isolation level, or a nested transaction.
            BackendFailure: SQLite could not start the transaction (for example
                another process holds the database's write lock).
        """
        level = check_isolation(isolation)
        gate = self.transaction_gate
        await gate.enter()
        try:
            backend: SQLiteBackend = self  # type: ignore[assignment]
            transaction = SQLiteTransaction(backend, context, level, dict(self._registries))
            async with self._tenant_scope(context):
                await backend._hop(_begin_unit)
        except BaseException:
            gate.leave()
            raise
        return transaction


class SQLiteTransaction(ForwardingTransaction):
    """One open SQLite transaction: the backend's calls, bound to one tenant."""

    def __init__(
        self,
        backend: SQLiteBackend,
        context: TenantContext,
        isolation: IsolationLevel,
        registries: dict[str, SearchParameterRegistry],
    ) -> None:
        self._backend = backend
        self._context = context
        self._isolation: IsolationLevel = isolation
        # The registries are copy-on-write (a SearchParameter write publishes a new
        # one), so a shallow copy of the mapping is a snapshot of them all.
        self._registries = registries
        self._active = True
        self._aborted = False

    @property
    def isolation(self) -> IsolationLevel:
        return self._isolation

    @property
    def active(self) -> bool:
        return self._active

    def _check(self, context: TenantContext) -> SQLiteBackend:
        if not self._active:
            raise InvalidRequest("the transaction is no longer active (committed or rolled back)")
        if context.tenant != self._context.tenant:
            raise InvalidRequest(
                f"the transaction belongs to tenant {self._context.tenant}, not {context.tenant}"
            )
        if self._aborted:
            raise BackendFailure(
                "sqlite rolled this transaction back after an error; roll it back and retry"
            )
        return self._backend

    async def _call(
        self, context: TenantContext, call: Callable[[ForwardedStorage], Awaitable[T]]
    ) -> T:
        backend = self._check(context)
        try:
            return await call(backend)
        except BackendFailure:
            # Some SQLite errors end the whole transaction; later calls must not run
            # (they would autocommit), so find out with one more hop.
            async with backend._tenant_scope(self._context):
                in_transaction = await backend._hop(_in_transaction_unit)
            if not in_transaction:
                self._aborted = True
            raise

    def _restore_registries(self) -> None:
        registries = self._backend._registries
        registries.clear()
        registries.update(self._registries)

    async def commit(self) -> None:
        """Commit (one hop) and let the next transaction or call in.

        Raises:
            InvalidRequest: the transaction is no longer active.
            BackendFailure: SQLite could not commit; nothing was written.
        """
        if not self._active:
            raise InvalidRequest("the transaction is no longer active (committed or rolled back)")
        self._active = False
        try:
            if self._aborted:
                raise BackendFailure(
                    "sqlite rolled this transaction back after an error; nothing was written"
                )
            async with self._backend._tenant_scope(self._context):
                await self._backend._hop(_commit_unit)
        except BaseException:
            self._restore_registries()
            raise
        finally:
            self._backend.transaction_gate.leave()

    async def rollback(self) -> None:
        """Roll back (one hop): no resource, history, index or FTS row of it survives.

        Raises:
            InvalidRequest: the transaction is no longer active.
        """
        if not self._active:
            raise InvalidRequest("the transaction is no longer active (committed or rolled back)")
        self._active = False
        try:
            async with self._backend._tenant_scope(self._context):
                await self._backend._hop(_rollback_unit)
        finally:
            self._restore_registries()
            self._backend.transaction_gate.leave()
