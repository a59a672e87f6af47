"""Fixtures of the harness's own tests: those shared by the PostgreSQL test modules.

``server`` is one throwaway server per test module (or ``HELIOS_POSTGRES_URL``'s); with
none to be had the module is skipped with the reason, or fails when ``HELIOS_REQUIRE``
names postgres (as ``--helios-require`` does for the suites). ``run`` drives a
coroutine on the module's event loop; ``open_backend`` opens backends on the server,
each in a fresh worker database, and closes them after the test.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from helios_conformance import BackendConfig, BackendUnavailable
from reference_impl.postgres import PostgresBackend, _server, open_postgres_backend

T = TypeVar("T")
Run = Callable[[Awaitable[T]], T]


@pytest.fixture(scope="module")
def server() -> Iterator[_server.Server]:
    """One throwaway server for the module (or HELIOS_POSTGRES_URL's); else skip or fail."""
    try:
        started = _server.provision(os.environ.get("HELIOS_POSTGRES_URL"))
    except BackendUnavailable as exc:
        required = {part for part in os.environ.get("HELIOS_REQUIRE", "").split(",") if part}
        if required & {"postgres", "all"}:
            pytest.fail(f"no PostgreSQL server (HELIOS_REQUIRE): {exc.message}", pytrace=False)
        pytest.skip(f"no PostgreSQL server: {exc.message}")
    yield started
    started.stop()


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as loop_runner:
        yield loop_runner


@pytest.fixture
def run(runner: asyncio.Runner) -> Run[Any]:
    def _run(awaitable: Awaitable[T]) -> T:
        async def _await() -> T:
            return await awaitable

        return runner.run(_await())

    return _run


@pytest.fixture
def open_backend(server: _server.Server, run: Run[Any]) -> Iterator[Callable[..., PostgresBackend]]:
    """Open backends on the module's server, each in its own worker database; close all."""
    opened: list[PostgresBackend] = []

    def _open(worker_id: str | None = None, **options: str) -> PostgresBackend:
        config = BackendConfig(
            url=server.dsn,
            options=options,
            worker_id=worker_id or f"t{uuid.uuid4().hex[:12]}",
        )
        backend: PostgresBackend = run(open_postgres_backend(config))
        opened.append(backend)
        return backend

    yield _open
    for backend in opened:
        run(backend.close())
