"""Search composition in the SQLite backend: what only SQL can get wrong.

The suites check results; these check that chains run inside the database (one hop,
a fixed number of statements whatever the data), that long reference lists work, that
cursor paging keeps to its snapshot while other writes land, and, with Hypothesis,
that sort order and include sets agree with the in-memory backend.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from helios_conformance import BackendConfig, SearchResult, TenantContext
from helios_conformance.testing import MemoryBackend, open_memory_backend
from reference_impl.sqlite import SQLiteBackend, open_sqlite_backend

T = TypeVar("T")
A = TenantContext.of("a")
EXAMPLES = int(os.environ.get("HELIOS_SEARCH_EXAMPLES", "60"))


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as loop_runner:
        yield loop_runner


@pytest.fixture
def run(runner: asyncio.Runner) -> Callable[[Awaitable[T]], T]:
    def _run(awaitable: Awaitable[T]) -> T:
        async def _await() -> T:
            return await awaitable

        return runner.run(_await())

    return _run


@pytest.fixture
def backend(run: Any) -> Iterator[SQLiteBackend]:
    opened = run(open_sqlite_backend(BackendConfig(url=":memory:")))
    try:
        yield opened
    finally:
        run(opened.close())


def _pairs(query: str) -> list[tuple[str, str]]:
    return [(name, value) for name, _, value in (part.partition("=") for part in query.split("&"))]


def _put(run: Any, backend: Any, context: TenantContext, *resources: dict[str, Any]) -> None:
    for resource in resources:
        run(backend.create_or_update(context, resource["resourceType"], resource["id"], resource))


def _org(resource_id: str, name: str) -> dict[str, Any]:
    return {"resourceType": "Organization", "id": resource_id, "name": name}


def _patient(resource_id: str, org: str | None = None, **fields: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Patient", "id": resource_id, **fields}
    if org is not None:
        resource["managingOrganization"] = {"reference": f"Organization/{org}"}
    return resource


def _observation(resource_id: str, subject: str, code: str = "x") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": resource_id,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{subject}"},
    }


def _traced_search(
    run: Any, backend: SQLiteBackend, resource_type: str, query: str
) -> tuple[SearchResult, int, list[str]]:
    """Search, counting hops and the statements the database ran."""
    statements: list[str] = []
    hops = 0
    original = backend._hop

    def trace(connection: sqlite3.Connection, on: bool) -> None:
        connection.set_trace_callback(statements.append if on else None)

    async def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal hops
        hops += 1
        return await original(*args, **kwargs)

    run(original(trace, True))
    backend._hop = counting  # type: ignore[method-assign]
    try:
        result = run(backend.search(A, resource_type, _pairs(query)))
    finally:
        backend._hop = original  # type: ignore[method-assign]
        run(original(trace, False))
    selects = [s for s in statements if s.lstrip().upper().startswith(("SELECT", "WITH"))]
    return result, hops, selects


@pytest.mark.parametrize("patients", [3, 60])
def test_a_chain_is_one_hop_and_one_statement(
    run: Any, backend: SQLiteBackend, patients: int
) -> None:
    """A two-link chain runs as one page statement whatever the number of resources."""
    _put(run, backend, A, _org("acme", "Acme"), _org("other", "Other"))
    for n in range(patients):
        _put(run, backend, A, _patient(f"p{n}", "acme" if n % 2 == 0 else "other"))
        _put(run, backend, A, _observation(f"o{n}", f"p{n}"))

    result, hops, selects = _traced_search(
        run, backend, "Observation", "subject:Patient.organization.name=Acme&_count=1000"
    )

    assert sorted(result.ids) == sorted(f"o{n}" for n in range(0, patients, 2))
    assert hops == 1
    # The snapshot sequence and the page: no per-hop statements over id lists.
    assert len(selects) == 2, selects
    assert not any("json_each" in s for s in selects)


def test_has_and_filter_chains_are_one_statement(run: Any, backend: SQLiteBackend) -> None:
    _put(run, backend, A, _org("acme", "Acme"), _patient("p1", "acme"), _patient("p2"))
    _put(run, backend, A, _observation("o1", "p1", "a"), _observation("o2", "p2", "b"))

    result, hops, selects = _traced_search(
        run, backend, "Patient", "_has:Observation:subject:code=a"
    )
    assert list(result.ids) == ["p1"]
    assert (hops, len(selects)) == (1, 2)

    result, hops, selects = _traced_search(
        run, backend, "Observation", "_filter=subject:Patient.organization.name eq Acme"
    )
    assert list(result.ids) == ["o1"]
    assert (hops, len(selects)) == (1, 2)


def test_a_250_value_reference_list(run: Any, backend: SQLiteBackend) -> None:
    """250 (and 600) OR-ed references, plain and as the chain's starting point."""
    for n in range(300):
        _put(run, backend, A, _patient(f"p{n}", family=None))
        _put(run, backend, A, _observation(f"o{n}", f"p{n}"))
    for size in (250, 600):
        values = ",".join(f"Patient/p{n}" for n in range(0, size, 1))
        result = run(backend.search(A, "Observation", [("subject", values), ("_count", "1000")]))
        assert sorted(result.ids) == sorted(f"o{n}" for n in range(min(size, 300)))
    ids = ",".join(f"p{n}" for n in range(0, 300, 2))
    result = run(
        backend.search(A, "Observation", [("subject:Patient._id", ids), ("_count", "1000")])
    )
    assert sorted(result.ids) == sorted(f"o{n}" for n in range(0, 300, 2))


def test_cursor_paging_keeps_its_snapshot_under_concurrent_creates(
    run: Any, backend: SQLiteBackend
) -> None:
    """Creates running alongside each page neither appear nor shift the pages."""
    families = ["Lee", "Adams", "Zhu", "Kim", "Lee", "Baker", "Ng", "Lee", "Moss", "Ito"]
    for n, family in enumerate(families):
        _put(run, backend, A, _patient(f"p{n}", name=[{"family": family}]))
    expected = [
        f"p{n}" for n, _ in sorted(enumerate(families), key=lambda item: (item[1], f"p{item[0]}"))
    ]
    query = _pairs("_sort=family&_count=3")
    counter = itertools.count()

    async def creates() -> None:
        for family in ("Aaa", "Lee", "Zzz", "Kim"):
            n = next(counter)
            await backend.create_or_update(
                A, "Patient", f"new{n}", _patient(f"new{n}", name=[{"family": family}])
            )

    async def page(cursor: str | None) -> SearchResult:
        result, _ = await asyncio.gather(
            backend.search(A, "Patient", query, cursor=cursor), creates()
        )
        return result

    seen: list[str] = []
    result = run(page(None))
    seen.extend(result.ids)
    while result.next_cursor is not None:
        result = run(page(result.next_cursor))
        seen.extend(result.ids)

    # Only the creates racing the first page can be in its snapshot; none after it.
    assert all(i in {"new0", "new1", "new2", "new3"} for i in seen if i.startswith("new"))
    assert len(seen) == len(set(seen))
    assert [i for i in seen if not i.startswith("new")] == expected


# -- differential: sort order and include sets against the in-memory backend ----------

_tenants = itertools.count()
_FAMILIES = st.sampled_from(["Lee", "lee", "Adams", "Ng", "Ñu", "Zhu", "Lee-Ng"])
_DATES = st.sampled_from(["1950-01-01", "1950", "1975-06-02", "2000-01-01T10:00:00Z", "2000"])


@st.composite
def _patients(draw: st.DrawFn, resource_id: str, ids: list[str]) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Patient", "id": resource_id}
    names = draw(st.lists(_FAMILIES, max_size=3))
    if names:
        resource["name"] = [{"family": family} for family in names]
    if draw(st.booleans()):
        resource["birthDate"] = draw(_DATES)
    if draw(st.booleans()):
        resource["gender"] = draw(st.sampled_from(["male", "female", "other"]))
    links = draw(st.lists(st.sampled_from(ids), max_size=2))
    if links:
        resource["link"] = [
            {"other": {"reference": f"Patient/{other}"}, "type": "seealso"} for other in links
        ]
    if draw(st.booleans()):
        resource["generalPractitioner"] = [
            {"reference": draw(st.sampled_from(["Patient/q0", "#c", "http://x/Patient/q1"]))}
        ]
    return resource


@st.composite
def _scenarios(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    ids = [f"q{n}" for n in range(draw(st.integers(1, 8)))]
    patients = [draw(_patients(rid, ids)) for rid in ids]
    observations = [
        _observation(f"o{n}", draw(st.sampled_from(ids)), draw(st.sampled_from("ab")))
        for n in range(draw(st.integers(0, 5)))
    ]
    keys = draw(
        st.lists(
            st.sampled_from(["family", "birthdate", "gender", "_id", "link"]),
            max_size=3,
            unique=True,
        )
    )
    pairs: list[tuple[str, str]] = []
    if keys:
        pairs.append(("_sort", ",".join(draw(st.sampled_from(["", "-"])) + k for k in keys)))
    pairs.append(("_count", str(draw(st.integers(1, 4)))))
    for spec in draw(
        st.lists(
            st.sampled_from(
                [
                    ("_include", "Patient:link"),
                    ("_include:iterate", "Patient:link"),
                    ("_include", "Patient:*"),
                    ("_revinclude", "Observation:subject"),
                    ("_revinclude:iterate", "Patient:link"),
                    ("_include:iterate", "Observation:subject"),
                ]
            ),
            max_size=3,
            unique=True,
        )
    ):
        pairs.append(spec)
    if draw(st.booleans()):
        pairs.append(("gender:missing", "false"))
    return [*patients, *observations], pairs


async def _all_pages(
    backend: Any, context: TenantContext, pairs: list[tuple[str, str]]
) -> list[tuple[list[str], list[str]]]:
    pages = []
    cursor = None
    while True:
        result = await backend.search(context, "Patient", pairs, cursor=cursor)
        included = [f"{r.resource_type}/{r.id}" for r in result.included]
        pages.append((list(result.ids), included))
        cursor = result.next_cursor
        if cursor is None:
            return pages


@pytest.fixture(scope="module")
def both(runner: asyncio.Runner) -> Iterator[tuple[SQLiteBackend, MemoryBackend]]:
    sqlite_backend = runner.run(open_sqlite_backend(BackendConfig(url=":memory:")))
    memory_backend = runner.run(open_memory_backend(BackendConfig(url="memory://")))
    try:
        yield sqlite_backend, memory_backend
    finally:
        runner.run(sqlite_backend.close())


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(scenario=_scenarios())
def test_sort_and_includes_agree_with_memory(
    runner: asyncio.Runner,
    both: tuple[SQLiteBackend, MemoryBackend],
    scenario: tuple[list[dict[str, Any]], list[tuple[str, str]]],
) -> None:
    resources, pairs = scenario
    context = TenantContext.of(f"d{next(_tenants)}")
    note("query: Patient?" + "&".join(f"{k}={v}" for k, v in pairs))
    got = []
    for backend in both:
        for resource in resources:
            runner.run(
                backend.create_or_update(
                    context, resource["resourceType"], resource["id"], resource
                )
            )
        got.append(runner.run(_all_pages(backend, context, pairs)))
    assert got[0] == got[1]
