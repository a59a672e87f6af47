"""Database per tenant for the SQLite backend (``--backend-option tenancy=database``).

Each tenant's data lives in its own SQLite file under a root directory: tenant
``acme/research`` in ``<root>/acme/research.sqlite3`` (tenant id segments are
lower-case letters, digits, ``-`` and ``_``, so a tenant id is a safe relative path,
and the reserved ``system`` root segment keeps the system tenant's
``<root>/system.sqlite3`` apart from every caller's). A file is created and migrated
lazily, the first time its tenant is used.

Every file has the same schema as the shared database, tenant column included (it
holds one value there), so the SQL of every read and write path is unchanged: the
isolation comes from the file a call runs on, the tenant filter stays as a second
guard.

Open connections are kept in a bounded LRU pool. A connection is evicted (closed)
only when no call is running on it and it has no open transaction; when every open
connection is busy or inside a transaction the pool stays over its bound until one
frees up, rather than closing a transaction under its owner.
"""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import aiosqlite

DEFAULT_POOL_SIZE = 8
"""Open tenant databases kept by default (``--backend-option pool_size=N``)."""


class TenantDatabases:
    """The bounded LRU pool of open tenant databases under ``root``.

    ``prepare(tenant, connection)`` configures and migrates a newly opened file (and
    loads what the backend keeps in memory about the tenant); ``connect(path)`` opens
    one.
    """

    def __init__(
        self,
        root: Path,
        size: int,
        connect: Callable[[str], Awaitable[aiosqlite.Connection]],
        prepare: Callable[[str, aiosqlite.Connection], Awaitable[None]],
    ) -> None:
        if size < 1:
            raise ValueError(f"the pool needs room for one database at least, got {size}")
        self.root = root
        self.size = size
        self._connect = connect
        self._prepare = prepare
        self._open: OrderedDict[str, aiosqlite.Connection] = OrderedDict()
        self._busy: Counter[str] = Counter()
        self._lock = asyncio.Lock()
        self.opened = 0
        self.evicted = 0

    def path(self, tenant: str) -> Path:
        """The database file of ``tenant`` (a validated tenant id: a safe relative path)."""
        return self.root / f"{tenant}.sqlite3"

    @property
    def open_tenants(self) -> tuple[str, ...]:
        """The tenants whose database is open, least recently used first."""
        return tuple(self._open)

    @asynccontextmanager
    async def use(self, tenant: str) -> AsyncIterator[aiosqlite.Connection]:
        """Hold ``tenant``'s connection (opening it if needed) for one call."""
        connection = await self._acquire(tenant)
        try:
            yield connection
        finally:
            self._busy[tenant] -= 1
            if self._busy[tenant] <= 0:
                del self._busy[tenant]

    async def _acquire(self, tenant: str) -> aiosqlite.Connection:
        async with self._lock:
            connection = self._open.get(tenant)
            if connection is None:
                path = self.path(tenant)
                path.parent.mkdir(parents=True, exist_ok=True)
                connection = await self._connect(str(path))
                try:
                    await self._prepare(tenant, connection)
                except BaseException:
                    await connection.close()
                    raise
                self._open[tenant] = connection
                self.opened += 1
            self._open.move_to_end(tenant)
            self._busy[tenant] += 1
            await self._evict()
            return connection

    def _evictable(self, tenant: str, connection: aiosqlite.Connection) -> bool:
        if self._busy[tenant] > 0:
            return False
        # No hop runs on an idle connection, so reading its state here is safe.
        raw = connection._conn
        return raw is None or not raw.in_transaction

    async def _evict(self) -> None:
        while len(self._open) > self.size:
            victim = next(
                (tenant for tenant, c in self._open.items() if self._evictable(tenant, c)),
                None,
            )
            if victim is None:
                return
            connection = self._open.pop(victim)
            self.evicted += 1
            await connection.close()

    async def close(self) -> None:
        """Close every open database (refreshing the planner's statistics first)."""
        while self._open:
            _, connection = self._open.popitem(last=False)
            try:
                await connection.execute("PRAGMA optimize")
            finally:
                await connection.close()
