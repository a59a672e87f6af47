"""Unit tests of search composition in the harness: chains, _has, includes, sort, subsets."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from helios_conformance import InvalidSearch, SearchStorage, TenantContext, Unsupported
from helios_conformance.search import (
    DEFAULT_CHAIN_DEPTH,
    MAX_CHAIN_DEPTH,
    SUBSETTED_SYSTEM,
    ComposedEvaluator,
    IndexRow,
    ParamType,
    RowsByParam,
    SortDirection,
    SummaryMode,
    chain_targets,
    check_chain_depth,
    decode_sort_values,
    encode_sort_values,
    group_rows,
    index_resource,
    parse_query,
    parse_resource_json,
    points_at,
    resolve_includes,
    sort_key,
    sort_values,
    subset_resource,
)
from helios_conformance.testing import MemoryBackend


class DictSource:
    """An IndexSource over a handful of resources, indexed with the official registry."""

    def __init__(self, *resources: dict[str, Any]) -> None:
        self.rows: dict[str, dict[str, RowsByParam]] = {}
        for resource in resources:
            rows = index_resource(parse_resource_json(json.dumps(resource)))
            self.rows.setdefault(resource["resourceType"], {})[resource["id"]] = group_rows(rows)

    def live(self, resource_type: str) -> Iterable[tuple[str, RowsByParam]]:
        return self.rows.get(resource_type, {}).items()

    def live_types(self) -> Iterable[str]:
        return sorted(self.rows)

    def get(self, resource_type: str, resource_id: str) -> RowsByParam | None:
        return self.rows.get(resource_type, {}).get(resource_id)


def org(oid: str, name: str, part_of: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Organization", "id": oid, "name": name}
    if part_of:
        resource["partOf"] = {"reference": f"Organization/{part_of}"}
    return resource


def person(pid: str, organization: str | None = None, family: str = "Lee") -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Patient", "id": pid, "name": [{"family": family}]}
    if organization:
        resource["managingOrganization"] = {"reference": f"Organization/{organization}"}
    return resource


def matching(source: DictSource, resource_type: str, pairs: list[tuple[str, str]]) -> set[str]:
    evaluator = ComposedEvaluator(parse_query(resource_type, pairs), source)
    return {rid for rid, rows in source.live(resource_type) if evaluator.matches(rid, rows)}


# -- parsing -----------------------------------------------------------------------


def test_chain_depth_limits() -> None:
    assert (DEFAULT_CHAIN_DEPTH, MAX_CHAIN_DEPTH) == (4, 8)
    assert check_chain_depth(8) == 8
    for bad in (0, 9):
        with pytest.raises(ValueError, match="between 1 and 8"):
            check_chain_depth(bad)


def test_a_chain_longer_than_the_limit_is_refused_with_the_reason() -> None:
    name = "organization.partof.partof.name"
    assert parse_query("Patient", [(name, "x")], max_chain_depth=3).tests[0].chain
    with pytest.raises(InvalidSearch, match="follows 3 references; this server follows at most 2"):
        parse_query("Patient", [(name, "x")], max_chain_depth=2)


def test_an_empty_chain_link_is_refused() -> None:
    with pytest.raises(InvalidSearch, match="empty link"):
        parse_query("Patient", [("organization..name", "x")])


def test_subsetting_is_opt_in() -> None:
    with pytest.raises(Unsupported):
        parse_query("Patient", [("_elements", "name")])
    with pytest.raises(Unsupported):
        parse_query("Patient", [("_summary", "true")])
    query = parse_query("Patient", [("_elements", "name,gender")], subsetting=True)
    assert query.elements == ("name", "gender")
    assert parse_query("Patient", [("_summary", "text")], subsetting=True).summary is (
        SummaryMode.TEXT
    )


def test_offset_is_parsed() -> None:
    assert parse_query("Patient", [("_offset", "20")]).offset == 20
    assert parse_query("Patient", []).offset is None
    with pytest.raises(InvalidSearch):
        parse_query("Patient", [("_offset", "x")])


def test_sort_on_special_or_composite_parameters_is_refused() -> None:
    with pytest.raises(InvalidSearch, match="no order"):
        parse_query("Observation", [("_sort", "combo-code-value-quantity")])
    with pytest.raises(InvalidSearch, match="no order"):
        parse_query("Patient", [("_sort", "_text")])


# -- chains and _has -----------------------------------------------------------------


def test_points_at_only_relative_references() -> None:
    relative = IndexRow(
        "subject", ParamType.REFERENCE, exact="Patient/1", ref_type="Patient", ref_id="1"
    )
    absolute = IndexRow(
        "subject",
        ParamType.REFERENCE,
        exact="http://other/fhir/Patient/1",
        ref_type="Patient",
        ref_id="1",
    )
    contained = IndexRow("subject", ParamType.REFERENCE, exact="#p", ref_type="Patient", ref_id="p")
    assert [points_at(r) for r in (relative, absolute, contained)] == [("Patient", "1"), None, None]


def test_chain_targets_resolve_inside_out() -> None:
    source = DictSource(org("root", "Root"), org("mid", "Mid", "root"), org("leaf", "Leaf", "mid"))
    query = parse_query("Patient", [("organization.partof.partof.name", "Root")])
    test = query.tests[0]
    found = chain_targets(
        test.chain, lambda rows: any(r.text == "root" for r in rows.get("name", ())), source
    )
    # Only leaf's parent's parent is Root: the set is of targets of the first link.
    assert found == {("Organization", "leaf")}
    assert matching(
        DictSource(
            org("root", "Root"),
            org("mid", "Mid", "root"),
            org("leaf", "Leaf", "mid"),
            person("p-leaf", "leaf"),
            person("p-mid", "mid"),
        ),
        "Patient",
        [("organization.partof.partof.name", "Root")],
    ) == {"p-leaf"}


def test_composed_evaluator_handles_has_and_filter_chains() -> None:
    source = DictSource(
        org("acme", "Acme"), org("globex", "Globex"), person("p1", "acme"), person("p2", "globex")
    )
    assert matching(source, "Organization", [("_has:Patient:organization:_id", "p2")]) == {"globex"}
    assert matching(source, "Patient", [("_filter", 'organization.name eq "acme"')]) == {"p1"}
    assert matching(source, "Patient", [("_filter", 'not (organization.name eq "acme")')]) == {"p2"}


# -- includes -----------------------------------------------------------------------


def test_resolve_includes_stops_on_cycles_and_never_repeats_matches() -> None:
    source = DictSource(org("a", "A", "b"), org("b", "B", "c"), org("c", "C", "a"))
    query = parse_query("Organization", [("_include:iterate", "Organization:partof")])
    a_rows = source.get("Organization", "a")
    assert a_rows is not None
    assert resolve_includes(query, [(("Organization", "a"), a_rows)], source) == [
        ("Organization", "b"),
        ("Organization", "c"),
    ]


def test_resolve_includes_without_iterate_is_one_level() -> None:
    source = DictSource(org("a", "A", "b"), org("b", "B", "c"), org("c", "C"))
    query = parse_query("Organization", [("_include", "Organization:partof")])
    a_rows = source.get("Organization", "a")
    assert a_rows is not None
    assert resolve_includes(query, [(("Organization", "a"), a_rows)], source) == [
        ("Organization", "b")
    ]


# -- sort ---------------------------------------------------------------------------


def test_sort_values_take_the_lowest_ascending_and_highest_descending() -> None:
    rows = group_rows(
        index_resource({"resourceType": "Patient", "id": "x", "name": [{"given": ["Zed", "Amy"]}]})
    )
    up = parse_query("Patient", [("_sort", "given")]).sort
    down = parse_query("Patient", [("_sort", "-given")]).sort
    assert (sort_values(up, rows), sort_values(down, rows)) == (("amy",), ("zed",))
    assert down[0].direction is SortDirection.DESCENDING


def test_missing_values_sort_last_in_both_directions() -> None:
    for spec in ("family", "-family"):
        keys = parse_query("Patient", [("_sort", spec)]).sort
        present = sort_key(keys, ("lee",), "z")
        missing = sort_key(keys, (None,), "a")
        assert present < missing


def test_sort_values_round_trip_through_cursor_encoding() -> None:
    values = (
        "lee",
        Decimal("1.50"),
        datetime(2020, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        ("male", "http://hl7.org/fhir/administrative-gender"),
        None,
    )
    encoded = encode_sort_values(values)
    assert decode_sort_values(json.loads(json.dumps(encoded))) == values


# -- subsets ------------------------------------------------------------------------


PATIENT = {
    "resourceType": "Patient",
    "id": "p",
    "meta": {"versionId": "1", "tag": [{"system": "http://example.org", "code": "x"}]},
    "text": {"status": "generated", "div": "<div/>"},
    "name": [{"family": "Lee"}],
    "photo": [{"title": "me"}],
}


def test_subset_elements_keeps_mandatory_elements_and_existing_tags() -> None:
    subset = subset_resource(PATIENT, elements=("name",))
    assert sorted(subset) == ["id", "meta", "name", "resourceType"]
    assert subset["meta"]["tag"] == [
        {"system": "http://example.org", "code": "x"},
        {"system": SUBSETTED_SYSTEM, "code": "SUBSETTED"},
    ]
    assert len(PATIENT["meta"]["tag"]) == 1  # type: ignore[index]


def test_subset_summary_modes() -> None:
    assert "photo" not in subset_resource(PATIENT, summary=SummaryMode.TRUE)
    assert sorted(subset_resource(PATIENT, summary=SummaryMode.TEXT)) == [
        "id",
        "meta",
        "resourceType",
        "text",
    ]
    assert "text" not in subset_resource(PATIENT, summary=SummaryMode.DATA)
    assert subset_resource(PATIENT, summary=SummaryMode.FALSE) == PATIENT
    with pytest.raises(Unsupported):
        subset_resource({"resourceType": "Account", "id": "a"}, summary=SummaryMode.TRUE)


# -- contract and memory backend ----------------------------------------------------


def test_the_search_contract_takes_a_cursor() -> None:
    parameters = inspect.signature(SearchStorage.search).parameters
    assert parameters["cursor"].default is None
    assert parameters["cursor"].kind is inspect.Parameter.KEYWORD_ONLY


def test_memory_backend_chain_depth_is_configurable() -> None:
    with pytest.raises(ValueError, match="between 1 and 8"):
        MemoryBackend(max_chain_depth=9)
    backend = MemoryBackend(max_chain_depth=1)
    context = TenantContext.of("acme")
    with pytest.raises(InvalidSearch, match="at most 1"):
        asyncio.run(backend.search(context, "Patient", [("organization.partof.name", "x")]))


def test_memory_backend_refuses_offset_with_a_cursor() -> None:
    backend = MemoryBackend()
    context = TenantContext.of("acme")

    async def scenario() -> None:
        for n in range(3):
            await backend.create_or_update(context, "Patient", f"p{n}", person(f"p{n}"))
        first = await backend.search(context, "Patient", [("_count", "1")])
        assert first.next_cursor is not None
        with pytest.raises(InvalidSearch) as caught:
            await backend.search(
                context, "Patient", [("_count", "1"), ("_offset", "1")], cursor=first.next_cursor
            )
        assert caught.value.parameter == "_offset"

    asyncio.run(scenario())


def test_memory_cursor_is_bound_to_the_query_not_its_pair_order() -> None:
    backend = MemoryBackend()
    context = TenantContext.of("acme")

    async def scenario() -> list[str]:
        for n in range(3):
            await backend.create_or_update(context, "Patient", f"p{n}", person(f"p{n}"))
        first = await backend.search(context, "Patient", [("_count", "1"), ("family", "Lee")])
        second = await backend.search(
            context, "Patient", [("family", "Lee"), ("_count", "1")], cursor=first.next_cursor
        )
        return [*first.ids, *second.ids]

    assert asyncio.run(scenario()) == ["p0", "p1"]
