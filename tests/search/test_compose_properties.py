"""Differential property tests: the in-memory backend against brute-force oracles.

The oracles below read the resource JSON directly and share no code with the
evaluator: they encode the documented semantics of sort order (lowest value
ascending, highest descending, missing last, ties by id), paging, chains and the
include closure, and Hypothesis looks for data where the backend disagrees.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from datetime import date
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from helios_conformance import SearchResult, TenantContext
from helios_conformance.testing import MemoryBackend

FAMILIES = st.sampled_from(["Lee", "lee", "Kim", "Adams", "Ng", "Zhu", "Baker"])
GIVENS = st.lists(st.sampled_from(["Ann", "Bo", "Cy", "Dee", "Eve"]), max_size=3)
DATES = st.dates(min_value=date(1950, 1, 1)).map(lambda d: d.isoformat())


@st.composite
def patients(draw: st.DrawFn) -> list[dict[str, Any]]:
    ids = draw(
        st.lists(
            st.from_regex(r"[a-z][a-z0-9]{0,3}", fullmatch=True),
            unique=True,
            min_size=1,
            max_size=12,
        )
    )
    people = []
    for rid in ids:
        resource: dict[str, Any] = {"resourceType": "Patient", "id": rid}
        name: dict[str, Any] = {}
        family = draw(st.none() | FAMILIES)
        if family is not None:
            name["family"] = family
        given = draw(GIVENS)
        if given:
            name["given"] = given
        if name:
            resource["name"] = [name]
        birth = draw(st.none() | DATES)
        if birth is not None:
            resource["birthDate"] = birth
        people.append(resource)
    return people


SORT_KEYS = st.lists(
    st.tuples(st.sampled_from(["family", "given", "birthdate", "_id"]), st.booleans()),
    min_size=1,
    max_size=3,
    unique_by=lambda key: key[0],
)


def _values(resource: dict[str, Any], code: str) -> list[str]:
    names = resource.get("name", [])
    if code == "family":
        return [n["family"].lower() for n in names if "family" in n]
    if code == "given":
        return [g.lower() for n in names for g in n.get("given", [])]
    if code == "birthdate":
        return [resource["birthDate"]] if "birthDate" in resource else []
    return [resource["id"]]


def oracle_order(people: list[dict[str, Any]], keys: list[tuple[str, bool]]) -> list[str]:
    """Sort by comparing pairs, the way a reader of search.html#sort would."""

    def compare(a: dict[str, Any], b: dict[str, Any]) -> int:
        for code, descending in keys:
            va, vb = _values(a, code), _values(b, code)
            if not va or not vb:
                if va or vb:
                    return -1 if va else 1
                continue
            xa = max(va) if descending else min(va)
            xb = max(vb) if descending else min(vb)
            if xa != xb:
                less = xa < xb
                return (1 if less else -1) if descending else (-1 if less else 1)
        return -1 if a["id"] < b["id"] else (1 if a["id"] > b["id"] else 0)

    return [p["id"] for p in sorted(people, key=functools.cmp_to_key(compare))]


def _sort_param(keys: list[tuple[str, bool]]) -> str:
    return ",".join(("-" if descending else "") + code for code, descending in keys)


def _load_into(
    backend: MemoryBackend, context: TenantContext, resources: list[dict[str, Any]]
) -> None:
    async def load() -> None:
        for resource in resources:
            await backend.create_or_update(
                context, resource["resourceType"], resource["id"], resource
            )

    asyncio.run(load())


def _fresh(backend: MemoryBackend, resources: list[dict[str, Any]]) -> TenantContext:
    context = TenantContext.of(f"t{uuid.uuid4().hex}")
    _load_into(backend, context, resources)
    return context


def _search(
    backend: MemoryBackend,
    context: TenantContext,
    resource_type: str,
    pairs: list[tuple[str, str]],
    cursor: str | None = None,
) -> SearchResult:
    return asyncio.run(backend.search(context, resource_type, pairs, cursor=cursor))


BACKEND = MemoryBackend()


@settings(max_examples=60, deadline=None)
@given(people=patients(), keys=SORT_KEYS)
def test_sort_order_matches_the_oracle(
    people: list[dict[str, Any]], keys: list[tuple[str, bool]]
) -> None:
    context = _fresh(BACKEND, people)
    result = _search(BACKEND, context, "Patient", [("_sort", _sort_param(keys)), ("_count", "100")])
    assert list(result.ids) == oracle_order(people, keys)


@settings(max_examples=40, deadline=None)
@given(people=patients(), keys=SORT_KEYS, size=st.integers(1, 4), added=patients())
def test_cursor_paging_matches_the_oracle_under_concurrent_creates(
    people: list[dict[str, Any]],
    keys: list[tuple[str, bool]],
    size: int,
    added: list[dict[str, Any]],
) -> None:
    context = _fresh(BACKEND, people)
    pairs = [("_sort", _sort_param(keys)), ("_count", str(size))]
    page = _search(BACKEND, context, "Patient", pairs)
    seen = list(page.ids)
    existing = {p["id"] for p in people}
    # Creates between pages (ids not already used) must not disturb the rest.
    newcomers = [dict(p, id="new-" + p["id"]) for p in added]
    _load_into(BACKEND, context, newcomers)
    while page.next_cursor is not None:
        page = _search(BACKEND, context, "Patient", pairs, cursor=page.next_cursor)
        assert len(page.ids) <= size
        seen.extend(page.ids)
    assert seen == oracle_order(people, keys)
    assert set(seen) == existing


@settings(max_examples=40, deadline=None)
@given(people=patients(), keys=SORT_KEYS, size=st.integers(1, 5))
def test_offset_paging_matches_the_oracle(
    people: list[dict[str, Any]], keys: list[tuple[str, bool]], size: int
) -> None:
    context = _fresh(BACKEND, people)
    pairs = [("_sort", _sort_param(keys)), ("_count", str(size))]
    seen: list[str] = []
    offset: int | None = 0
    while offset is not None:
        page = _search(BACKEND, context, "Patient", [*pairs, ("_offset", str(offset))])
        seen.extend(page.ids)
        offset = page.next_offset
    assert seen == oracle_order(people, keys)


# -- includes and chains over a random organization graph -------------------------


@st.composite
def organization_graphs(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    count = draw(st.integers(1, 8))
    org_ids = [f"org{n}" for n in range(count)]
    names = st.sampled_from(["Acme", "Globex", "Initech"])
    orgs = []
    for oid in org_ids:
        org: dict[str, Any] = {"resourceType": "Organization", "id": oid, "name": draw(names)}
        parent = draw(st.none() | st.sampled_from([*org_ids, "ghost"]))
        if parent is not None:
            org["partOf"] = {"reference": f"Organization/{parent}"}
        orgs.append(org)
    people = []
    for n in range(draw(st.integers(1, 6))):
        person: dict[str, Any] = {"resourceType": "Patient", "id": f"p{n}"}
        target = draw(st.none() | st.sampled_from([*org_ids, "ghost"]))
        if target is not None:
            person["managingOrganization"] = {"reference": f"Organization/{target}"}
        people.append(person)
    return orgs, people


def _parent(org: dict[str, Any]) -> str | None:
    ref = org.get("partOf", {}).get("reference")
    return None if ref is None else str(ref).split("/")[1]


@settings(max_examples=60, deadline=None)
@given(graph=organization_graphs())
def test_include_iterate_matches_the_closure(
    graph: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    orgs, people = graph
    context = _fresh(BACKEND, orgs + people)
    by_id = {o["id"]: o for o in orgs}
    expected: set[str] = set()
    frontier = [
        p["managingOrganization"]["reference"].split("/")[1]
        for p in people
        if "managingOrganization" in p
    ]
    while frontier:
        oid = frontier.pop()
        if oid in by_id and oid not in expected:
            expected.add(oid)
            parent = _parent(by_id[oid])
            if parent is not None:
                frontier.append(parent)

    result = _search(
        BACKEND,
        context,
        "Patient",
        [
            ("_include", "Patient:organization"),
            ("_include:iterate", "Organization:partof"),
            ("_count", "100"),
        ],
    )

    references = list(result.included_references)
    assert len(references) == len(set(references))
    assert set(references) == {f"Organization/{oid}" for oid in expected}


@settings(max_examples=60, deadline=None)
@given(graph=organization_graphs(), name=st.sampled_from(["Acme", "Globex", "Initech"]))
def test_chains_and_has_match_the_oracle(
    graph: tuple[list[dict[str, Any]], list[dict[str, Any]]], name: str
) -> None:
    orgs, people = graph
    context = _fresh(BACKEND, orgs + people)
    by_id = {o["id"]: o for o in orgs}

    def org_of(person: dict[str, Any]) -> dict[str, Any] | None:
        ref = person.get("managingOrganization", {}).get("reference")
        return None if ref is None else by_id.get(ref.split("/")[1])

    def parent_of(org: dict[str, Any]) -> dict[str, Any] | None:
        parent = _parent(org)
        return None if parent is None else by_id.get(parent)

    one_link = {p["id"] for p in people if (o := org_of(p)) is not None and o["name"] == name}
    two_links = {
        p["id"]
        for p in people
        if (o := org_of(p)) is not None
        and (parent := parent_of(o)) is not None
        and parent["name"] == name
    }
    has_named = {
        o["id"] for o in orgs if any(org_of(p) is o for p in people if p["id"] in {"p0", "p1"})
    }

    def ids(resource_type: str, pairs: list[tuple[str, str]]) -> set[str]:
        return set(_search(BACKEND, context, resource_type, [*pairs, ("_count", "100")]).ids)

    assert ids("Patient", [("organization.name", name)]) == one_link
    assert ids("Patient", [("organization.partof.name", name)]) == two_links
    assert ids("Organization", [("_has:Patient:organization:_id", "p0,p1")]) == has_named


@settings(max_examples=40, deadline=None)
@given(graph=organization_graphs())
def test_revinclude_matches_the_oracle(
    graph: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    orgs, people = graph
    context = _fresh(BACKEND, orgs + people)
    expected = {
        f"Patient/{p['id']}"
        for p in people
        if p.get("managingOrganization", {}).get("reference") == "Organization/org0"
    }

    result = _search(
        BACKEND, context, "Organization", [("_id", "org0"), ("_revinclude", "Patient:organization")]
    )

    assert set(result.included_references) == expected
    assert len(result.included) == len(expected)
