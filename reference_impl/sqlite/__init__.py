"""The SQLite reference backend (``--backend=sqlite``), built on aiosqlite.

aiosqlite is imported only when the backend is opened, so a missing driver is a
:class:`~helios_conformance.BackendUnavailable` naming the extra to install.
"""

from __future__ import annotations

from ._backend import SQLITE_CAPABILITIES, SQLiteBackend, open_sqlite_backend

__all__ = ["SQLITE_CAPABILITIES", "SQLiteBackend", "open_sqlite_backend"]
