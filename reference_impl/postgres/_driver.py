"""The driver boundary: every asyncpg and connection error becomes a :class:`BackendFailure`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from helios_conformance import BackendFailure, HeliosError


@contextmanager
def translate_errors() -> Iterator[None]:
    """Map every asyncpg (and connection) error to :class:`BackendFailure`."""
    try:
        yield
    except HeliosError:
        raise
    except Exception as exc:
        import asyncpg

        if isinstance(exc, asyncpg.PostgresError):
            raise BackendFailure(
                f"postgres failed ({exc.sqlstate} {type(exc).__name__}): {exc}"
            ) from exc
        if isinstance(exc, asyncpg.InterfaceError | OSError | TimeoutError):
            raise BackendFailure(
                f"postgres connection failed ({type(exc).__name__}): {exc}"
            ) from exc
        raise
