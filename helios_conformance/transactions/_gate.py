"""One open transaction per backend at a time, nesting refused, the holder re-entrant."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar

from .._contract import ISOLATION_LEVELS, IsolationLevel
from .._errors import InvalidRequest

# The gates the current task (its context) holds. Tasks created while a gate is held
# inherit a copy, so coroutines gathered inside a transaction count as its holder.
_HELD: ContextVar[frozenset[int]] = ContextVar("helios_transaction_gates", default=frozenset())
_TOKENS = itertools.count(1)


def check_isolation(isolation: object) -> IsolationLevel:
    """Return ``isolation`` if it is one of :data:`ISOLATION_LEVELS`.

    Raises:
        InvalidRequest: anything else, naming the value and the valid levels.
    """
    for level in ISOLATION_LEVELS:
        if isolation == level:
            return level
    raise InvalidRequest(
        f"isolation level {isolation!r} is not known; use one of {', '.join(ISOLATION_LEVELS)}"
    )


class TransactionGate:
    """Serialise the transactions of one backend (the simplest way to be serializable).

    :meth:`enter`/:meth:`leave` bracket a transaction; :meth:`exclusive` brackets one
    call made outside any transaction, so it never sees uncommitted writes. The task
    holding the gate passes through :meth:`exclusive` without waiting (its calls are
    part of its transaction), and :meth:`enter` refuses it (a nested transaction).

    An SQL backend with one connection uses it around ``BEGIN IMMEDIATE`` ... ``COMMIT``.
    """

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._token = next(_TOKENS)

    @property
    def held(self) -> bool:
        """True when the current task holds this gate."""
        return self._token in _HELD.get()

    @property
    def locked(self) -> bool:
        """True while any task holds this gate."""
        return self._lock.locked()

    async def enter(self) -> None:
        """Wait for the gate and hold it for a transaction.

        Raises:
            InvalidRequest: the current task already holds it (a nested transaction).
        """
        if self.held:
            raise InvalidRequest(
                "nested transaction refused: this task already has a transaction open on "
                "this backend; commit or roll it back first"
            )
        await self._lock.acquire()
        _HELD.set(_HELD.get() | {self._token})

    def leave(self) -> None:
        """Release the gate held since :meth:`enter`."""
        _HELD.set(_HELD.get() - {self._token})
        self._lock.release()

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """Hold the gate for one call, unless the current task holds it already."""
        if self.held:
            yield
            return
        async with self._lock:
            token = _HELD.set(_HELD.get() | {self._token})
            try:
                yield
            finally:
                _HELD.reset(token)
