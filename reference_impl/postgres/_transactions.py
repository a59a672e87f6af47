"""Transactions for the PostgreSQL backend: one connection, the tenant's lock, savepoints.

``begin`` takes a pooled connection of the tenant and, in one round trip, opens a
``READ COMMITTED`` transaction, sets the tenant for row-level security (and the
tenant's schema), and takes the tenant's transaction-scoped advisory lock: the very
lock every write function (``helios.write_version``) takes. So, across every process
using the database:

- the transactions of one tenant run one after the other, and a single write outside
  a transaction waits for an open one: read-modify-write cycles cannot lose updates
  and a conditional create cannot find "no match" twice. Each statement of a
  transaction sees everything committed before it took the lock, and nothing of the
  tenant can be committed by anybody else until it ends; that is ``serializable`` for
  the tenant's data, whatever level was asked for;
- readers outside never wait and never see uncommitted writes (PostgreSQL's MVCC);
- transactions of different tenants run side by side.

The calls of a transaction are the backend's own calls, run by a *view* of the backend
bound to the transaction's connection (``PostgresBackend._binding``): the same one
statement per call, on that connection instead of the pool. Each call runs inside a
``SAVEPOINT`` (made in the same round trip that releases the previous call's), so a
call that fails undoes only its own writes and the transaction stays usable, as the
contract asks; calls of one transaction run one at a time (one
connection runs one statement at a time). Custom SearchParameters written inside a
transaction go to the view's own registry cache; the backend's cache of the tenant is
dropped on commit (reloaded on next use) and untouched on rollback.

A task that holds a transaction and writes to the same tenant *outside* it would wait
for its own lock forever; that call is refused with InvalidRequest instead.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from helios_conformance import (
    BackendFailure,
    CapabilityDeclaration,
    InvalidRequest,
    TenantContext,
)
from helios_conformance.transactions import (
    FhirTransactionsMixin,
    ForwardedStorage,
    ForwardingTransaction,
    check_isolation,
)

from ._driver import translate_errors

if TYPE_CHECKING:
    import asyncpg

    from helios_conformance import IsolationLevel, Transaction

    from ._backend import PostgresBackend
    from ._pool import Pool

POSTGRES_TRANSACTION_CAPABILITIES = CapabilityDeclaration.of(
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

T = TypeVar("T")

_NESTED = (
    "nested transaction refused: this task already has a transaction open on this "
    "backend; commit or roll it back first"
)
_ENDED = "the transaction is no longer active (committed or rolled back)"
_SAVEPOINT = "helios_call"
_BINDING_IDS = itertools.count(1)

# The transactions the current task (its context) holds, by backend. Tasks created
# while one is held inherit a copy, as coroutines gathered inside a transaction should.
_HELD: ContextVar[tuple[_Binding, ...]] = ContextVar("helios_postgres_transactions", default=())


def quote_literal(value: str) -> str:
    """``value`` as an SQL string literal (``standard_conforming_strings`` is on)."""
    if "\x00" in value:
        raise InvalidRequest("a tenant id cannot hold a NUL character")
    return "'" + value.replace("'", "''") + "'"


@dataclass(eq=False)
class _Binding:
    """One connection in an open transaction of one tenant, and who may use it."""

    backend_id: int
    pool: Pool
    connection: asyncpg.Connection
    tenant: str
    schema: str | None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    active: bool = True
    aborted: bool = False
    # Whether the call savepoint exists: the next call releases and re-establishes
    # it in one round trip, and COMMIT releases the last one.
    savepoint: bool = False
    id: int = field(default_factory=lambda: next(_BINDING_IDS))

    @classmethod
    async def open(
        cls,
        backend_id: int,
        pool: Pool,
        tenant: str,
        schema: str | None,
        *,
        writer: bool,
    ) -> _Binding:
        """Take a connection and open the transaction in one round trip.

        A ``writer`` takes the tenant's advisory lock first, so READ COMMITTED then
        sees the latest commit; a reader runs REPEATABLE READ, so its statements agree.
        """
        level = "READ COMMITTED" if writer else "REPEATABLE READ"
        script = (
            f"BEGIN ISOLATION LEVEL {level};"
            f" SELECT set_config('helios.tenant', {quote_literal(tenant)}, true),"
            f" set_config('search_path', {quote_literal(schema or 'helios')}, true)"
        )
        if writer:
            script += f", pg_advisory_xact_lock(hashtextextended({quote_literal(tenant)}, 0))"
        connection = await pool.acquire()
        try:
            await connection.execute(script)
        except BaseException:
            pool.release(connection, healthy=False)
            raise
        return cls(backend_id, pool, connection, tenant, schema)

    async def finish(self, *, commit: bool) -> None:
        """Commit or roll back, and give the connection back.

        Raises:
            BackendFailure: the commit failed, or the transaction had been aborted by
                a failed statement; nothing of it was written.
        """
        if not self.active:
            raise InvalidRequest(_ENDED)
        self.active = False
        healthy = False
        try:
            if commit and not self.aborted:
                status = await self.connection.execute("COMMIT")
                healthy = True
                if status != "COMMIT":
                    raise BackendFailure(
                        f"postgres ended the transaction with {status}; nothing was written"
                    )
            else:
                await self.connection.execute("ROLLBACK")
                healthy = True
                if commit:
                    raise BackendFailure(
                        "postgres aborted this transaction after a failed statement; "
                        "nothing was written"
                    )
        finally:
            self.pool.release(self.connection, healthy=healthy)


def held_transaction(backend_id: int, tenant: str) -> _Binding | None:
    """The open transaction of ``tenant`` on the backend that the current task holds."""
    for binding in _HELD.get():
        if binding.active and binding.backend_id == backend_id and binding.tenant == tenant:
            return binding
    return None


def bound_view(backend: PostgresBackend, binding: _Binding) -> PostgresBackend:
    """A shallow copy of ``backend`` whose calls run on ``binding``'s connection.

    It shares the pools, schemas and cursor secret, and has its own copy of the
    registry cache (a SearchParameter written in the transaction is not published
    before it commits).
    """
    view = copy.copy(backend)
    view._binding = binding
    view._registries = dict(backend._registries)
    return view


def publish_registries(backend: PostgresBackend, view: PostgresBackend, tenant: str) -> None:
    """After a commit: drop the backend's cache of the tenant's registry if the
    transaction changed it (the next call reloads it from the database)."""
    if view._registries.get(tenant) is not backend._registries.get(tenant):
        backend._registries.pop(tenant, None)


async def run_in_session(
    backend: PostgresBackend,
    context: TenantContext,
    call: Callable[[PostgresBackend], Awaitable[T]],
    *,
    writer: bool,
) -> T:
    """Run ``call`` on a view bound to a short transaction of its own (or to the
    transaction ``backend`` is already bound to): for a call of several statements
    that must be atomic (``writer``: under the tenant's lock) or agree (a snapshot)."""
    if backend._binding is not None:
        return await call(backend)
    tenant = context.tenant.value
    if writer:
        refuse_write_beside_own_transaction(backend, tenant)
    with translate_errors():
        pool, schema = await backend._route(tenant)
        binding = await _Binding.open(id(backend), pool, tenant, schema, writer=writer)
    view = bound_view(backend, binding)
    try:
        result = await call(view)
    except BaseException:
        await binding.finish(commit=False)
        raise
    with translate_errors():
        await binding.finish(commit=True)
    publish_registries(backend, view, tenant)
    return result


def refuse_write_beside_own_transaction(backend: PostgresBackend, tenant: str) -> None:
    """Refuse a write the current task makes outside the transaction it holds on the
    same tenant: it would wait for that transaction's lock forever.

    Raises:
        InvalidRequest: naming the tenant and what to do instead.
    """
    if held_transaction(id(backend), tenant) is not None:
        raise InvalidRequest(
            f"this task has a transaction open on tenant {tenant!r}; a write outside it "
            "would wait for that transaction forever: make the write through the "
            "transaction, or end it first"
        )


class PostgresTransactions(FhirTransactionsMixin):
    """The transaction primitive of the PostgreSQL backend (a base of ``PostgresBackend``).

    The FHIR interactions (bundles, conditional operations, patch) come from
    :class:`FhirTransactionsMixin` on top of :meth:`begin`.
    """

    async def begin(
        self, context: TenantContext, *, isolation: IsolationLevel = "serializable"
    ) -> Transaction:
        """Open a transaction of ``context``'s tenant (one round trip).

        It waits while another transaction of the tenant is open (in any process).
        Every level is honoured by running serializable for the tenant (see the
        module docstring).

        Raises:
            InvalidRequest: an unknown isolation level, or a nested transaction.
            BackendFailure: PostgreSQL could not start the transaction.
        """
        check_isolation(isolation)
        backend: PostgresBackend = self  # type: ignore[assignment]
        if backend._binding is not None or any(
            binding.active and binding.backend_id == id(backend) for binding in _HELD.get()
        ):
            raise InvalidRequest(_NESTED)
        tenant = context.tenant.value
        with translate_errors():
            pool, schema = await backend._route(tenant)
            binding = await _Binding.open(id(backend), pool, tenant, schema, writer=True)
        _HELD.set((*(held for held in _HELD.get() if held.active), binding))
        return PostgresTransaction(backend, bound_view(backend, binding), context, binding)


class PostgresTransaction(ForwardingTransaction):
    """One open PostgreSQL transaction: the backend's calls on its connection."""

    def __init__(
        self,
        backend: PostgresBackend,
        view: PostgresBackend,
        context: TenantContext,
        binding: _Binding,
    ) -> None:
        self._backend = backend
        self._view = view
        self._context = context
        self._binding = binding

    @property
    def isolation(self) -> IsolationLevel:
        return "serializable"

    @property
    def active(self) -> bool:
        return self._binding.active

    def _check(self, context: TenantContext) -> None:
        if not self._binding.active:
            raise InvalidRequest(_ENDED)
        if context.tenant != self._context.tenant:
            raise InvalidRequest(
                f"the transaction belongs to tenant {self._context.tenant}, not {context.tenant}"
            )
        if self._binding.aborted:
            raise BackendFailure(
                "postgres aborted this transaction after a failed statement; roll it back and retry"
            )

    async def _call(
        self, context: TenantContext, call: Callable[[ForwardedStorage], Awaitable[T]]
    ) -> T:
        """Run one contract call inside a savepoint: on failure only its writes go."""
        self._check(context)
        binding = self._binding
        async with binding.lock:
            self._check(context)
            connection = binding.connection
            with translate_errors():
                if binding.savepoint:
                    # The previous call's savepoint goes as this call's is made.
                    await connection.execute(
                        f"RELEASE SAVEPOINT {_SAVEPOINT}; SAVEPOINT {_SAVEPOINT}"
                    )
                else:
                    await connection.execute(f"SAVEPOINT {_SAVEPOINT}")
                    binding.savepoint = True
            try:
                return await call(self._view)
            except BaseException:
                try:
                    # The savepoint stays established; the next call releases it.
                    await connection.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
                except BaseException:
                    binding.aborted = True
                raise

    def _forget(self) -> None:
        _HELD.set(tuple(held for held in _HELD.get() if held.active))

    async def commit(self) -> None:
        """Commit (one round trip) and let the tenant's next transaction or write in.

        Raises:
            InvalidRequest: the transaction is no longer active.
            BackendFailure: PostgreSQL could not commit; nothing was written.
        """
        async with self._binding.lock:
            try:
                with translate_errors():
                    await self._binding.finish(commit=True)
            finally:
                self._forget()
        publish_registries(self._backend, self._view, self._binding.tenant)

    async def rollback(self) -> None:
        """Roll back (one round trip): no resource, history or index row of it survives.

        Raises:
            InvalidRequest: the transaction is no longer active.
        """
        async with self._binding.lock:
            try:
                with translate_errors():
                    await self._binding.finish(commit=False)
            finally:
                self._forget()
