"""The PostgreSQL reference backend (``--backend=postgres``), built on asyncpg.

asyncpg (and any server it needs) is touched only when the backend is opened, so
importing this package is cheap and a missing driver is a
:class:`~helios_conformance.BackendUnavailable` naming the extra to install.
"""

from __future__ import annotations

from ._backend import (
    POSTGRES_CAPABILITIES,
    PostgresBackend,
    PostgresOptions,
    open_postgres_backend,
    postgres_capabilities,
)

__all__ = [
    "POSTGRES_CAPABILITIES",
    "PostgresBackend",
    "PostgresOptions",
    "open_postgres_backend",
    "postgres_capabilities",
]
