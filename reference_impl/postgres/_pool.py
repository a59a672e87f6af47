"""A lean connection pool for one-statement calls.

asyncpg's own ``Pool`` costs about 30 µs per call here (its release runs in a shielded
task: one more event-loop iteration), a third of a primary-key read. Every call of this
backend is a single statement with nothing to reset afterwards (all settings are
transaction-local), so a pool can be a deque of idle connections and a FIFO of waiters:
taking and returning a connection never suspends when one is idle.

A connection whose statement was cancelled, or whose socket failed, is terminated
rather than reused: its protocol state is unknown.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncpg


class Pool:
    """Up to ``max_size`` connections made by ``connect``; at least one kept open."""

    def __init__(self, connect: Callable[[], Awaitable[asyncpg.Connection]], max_size: int) -> None:
        self._connect = connect
        self._max_size = max_size
        self._idle: deque[asyncpg.Connection] = deque()
        self._waiters: deque[asyncio.Future[asyncpg.Connection]] = deque()
        self._size = 0
        self._closed = False

    @property
    def busy(self) -> bool:
        """Whether a connection is in use or being made, or a caller is waiting."""
        return self._size > len(self._idle) or bool(self._waiters)

    async def open(self) -> None:
        """Make the first connection, so a bad DSN or role fails at open, not at first use."""
        self._size += 1
        try:
            self._idle.append(await self._connect())
        except BaseException:
            self._size -= 1
            raise

    async def _acquire(self) -> asyncpg.Connection:
        if self._closed:
            raise _closed()
        if self._idle:
            return self._idle.popleft()
        if self._size < self._max_size:
            self._size += 1
            try:
                return await self._connect()
            except BaseException:
                self._size -= 1
                raise
        waiter: asyncio.Future[asyncpg.Connection] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            # Cancelled just after being handed a connection: pass it on.
            if waiter.done() and not waiter.cancelled():
                self._release(waiter.result(), healthy=True)
            raise

    def _release(self, connection: asyncpg.Connection, *, healthy: bool) -> None:
        if not healthy or self._closed or connection.is_closed():
            connection.terminate()
            self._size -= 1
            if self._waiters and not self._closed:
                # A waiter was promised a connection: make it a new one.
                self._size += 1
                asyncio.get_running_loop().create_task(self._replace())
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        self._idle.append(connection)

    async def _replace(self) -> None:
        try:
            connection = await self._connect()
        except Exception as exc:
            self._size -= 1
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_exception(exc)
                    return
            return
        self._release(connection, healthy=True)

    async def _run(self, method: str, sql: str, *args: Any) -> Any:
        connection = await self._acquire()
        healthy = False
        try:
            result = await getattr(connection, method)(sql, *args)
            healthy = True
            return result
        except Exception as exc:
            # A server-side error ends the statement's implicit transaction cleanly.
            healthy = _is_server_error(exc)
            raise
        finally:
            self._release(connection, healthy=healthy)

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """Run one statement and return its rows."""
        rows: list[asyncpg.Record] = await self._run("fetch", sql, *args)
        return rows

    async def fetchval(self, sql: str, *args: Any) -> Any:
        """Run one statement and return the first column of its first row."""
        return await self._run("fetchval", sql, *args)

    async def execute(self, sql: str, *args: Any) -> str:
        """Run one statement and return its status tag."""
        status: str = await self._run("execute", sql, *args)
        return status

    async def acquire(self) -> asyncpg.Connection:
        """Take a connection for several statements (a transaction); give it back with
        :meth:`release`."""
        return await self._acquire()

    def release(self, connection: asyncpg.Connection, *, healthy: bool) -> None:
        """Give back a connection from :meth:`acquire`; one in an unknown state
        (``healthy=False``) is terminated rather than reused."""
        self._release(connection, healthy=healthy)

    async def close(self) -> None:
        """Close the idle connections; connections in use are closed when returned."""
        self._closed = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(_closed())
        self._waiters.clear()
        idle, self._idle = list(self._idle), deque()
        self._size -= len(idle)
        await asyncio.gather(*(connection.close() for connection in idle))


def _closed() -> Exception:
    import asyncpg

    return asyncpg.InterfaceError("the connection pool is closed")


def _is_server_error(exc: BaseException) -> bool:
    import asyncpg

    return isinstance(exc, asyncpg.PostgresError)
