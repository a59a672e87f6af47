"""Search composition over index rows: chains, ``_has``, includes, sort order, subsets.

Everything here is expressed over the :class:`IndexRow` s of *other* resources, never
over resource JSON, so a SQL backend can mirror it with joins on its index table:

- **chains** (search.html#chaining) resolve inside out. For
  ``subject:Patient.organization.name=Acme`` the Organizations whose ``name`` rows
  match form a set; the Patients with an ``organization`` reference row to one of them
  form the next; an Observation matches when a ``subject`` reference row points at one
  of those Patients. A reference row *points at* ``Type/id`` when it is a relative
  reference (``ref_type``/``ref_id`` set, ``exact`` neither ``#contained`` nor an
  absolute URL) to a live resource of that type in the same tenant. SQL: ``ref_id IN
  (SELECT id FROM index WHERE ...)`` nested once per link.
- **_has** (search.html#has) is the reverse: ``_has:Observation:subject:code=x`` on
  Patient matches the Patients that some matching Observation's ``subject`` rows point
  at; nested ``_has`` nests the same way.
- **includes** (search.html#include): ``_include`` adds the live resources the page's
  matches point at through the named reference parameter (every reference parameter
  for ``*``), restricted to the target type when one is given; ``_revinclude`` adds the
  live resources of the source type that point at a match. ``:iterate`` specs are then
  applied again to what was added, until nothing new appears (so cycles end). Matches
  are never included, and nothing is included twice; includes are ordered by
  ``(resource type, id)``.
- **sort** (search.html#sort): see :func:`sort_key`.
- **subsets** (search.html#elements, #summary): see :func:`subset_resource`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from .._cursor import CursorCodec
from .._errors import InvalidSearch, Unsupported
from .._resource import StoredResource
from ._evaluate import RowsByParam, _comparison_matches, parameter_matches
from ._model import (
    ChainLink,
    FilterAnd,
    FilterComparison,
    FilterExpression,
    FilterNot,
    FilterOr,
    HasClause,
    IncludeSpec,
    IndexRow,
    ParameterTest,
    ParamType,
    SearchQuery,
    SortDirection,
    SortKey,
    SummaryMode,
)

ResourceKey = tuple[str, str]
"""``(resource type, id)`` of a resource in the store."""


class IndexSource(Protocol):
    """The live resources of one tenant, as index rows grouped by parameter code.

    A backend passes one to :class:`ComposedEvaluator` and :func:`resolve_includes`;
    the in-memory backend answers from its own stored index rows.
    """

    def live(self, resource_type: str) -> Iterable[tuple[str, RowsByParam]]:
        """``(id, rows)`` of every live resource of ``resource_type``."""
        ...

    def live_types(self) -> Iterable[str]:
        """The resource types that have live resources."""
        ...

    def get(self, resource_type: str, resource_id: str) -> RowsByParam | None:
        """The rows of a live resource, or ``None`` when it does not exist or is deleted."""
        ...


def points_at(row: IndexRow) -> ResourceKey | None:
    """The ``(type, id)`` a reference row points at on this server, or ``None``.

    Only relative references count: a contained ``#id`` or an absolute URL (which
    may name another server) does not resolve to a stored resource.
    """
    if row.type is not ParamType.REFERENCE or row.component is not None:
        return None
    if row.ref_type is None or row.ref_id is None:
        return None
    exact = row.exact or ""
    if exact.startswith("#") or ":" in exact:
        return None
    return row.ref_type, row.ref_id


def references(
    rows: RowsByParam, code: str | None, target_type: str | None = None
) -> list[ResourceKey]:
    """What a resource's reference rows of ``code`` (every code when ``None``) point at."""
    if code is None:
        candidates: Iterable[IndexRow] = (row for group in rows.values() for row in group)
    else:
        candidates = rows.get(code, ())
    found = []
    for row in candidates:
        target = points_at(row)
        if target is not None and (target_type is None or target[0] == target_type):
            found.append(target)
    return found


# -- chains and _has ----------------------------------------------------------------


def chain_targets(
    links: Sequence[ChainLink],
    terminal: Callable[[RowsByParam], bool],
    source: IndexSource,
) -> frozenset[ResourceKey]:
    """The resources of ``links[0].target_type`` from which the rest of the chain matches.

    ``terminal`` tests the resources at the end of the chain; each earlier link keeps
    the resources with a ``links[i].parameter`` reference to the set found so far.
    """
    last = links[-1].target_type
    current = frozenset((last, rid) for rid, rows in source.live(last) if terminal(rows))
    for index in range(len(links) - 1, 0, -1):
        link = links[index]
        owner_type = links[index - 1].target_type
        current = frozenset(
            (owner_type, rid)
            for rid, rows in source.live(owner_type)
            if any(
                target in current
                for target in references(rows, link.parameter.code, link.target_type)
            )
        )
    return current


class ComposedEvaluator:
    """Evaluate a query whose tests may be chained and that may carry ``_has`` clauses.

    Chains and ``_has`` are resolved against ``source`` once, lazily, into sets of
    ``(type, id)``; :meth:`matches` then tests one candidate resource.
    """

    def __init__(
        self, query: SearchQuery, source: IndexSource, *, now: datetime | None = None
    ) -> None:
        self.query = query
        self.source = source
        self.now = now
        self._sets: dict[int, frozenset[ResourceKey]] = {}

    # A chained test (or filter comparison) -> the set its first link must point into.
    def _chain_set(
        self, key: object, compute: Callable[[], frozenset[ResourceKey]]
    ) -> frozenset[ResourceKey]:
        found = self._sets.get(id(key))
        if found is None:
            found = self._sets[id(key)] = compute()
        return found

    def test_matches(self, test: ParameterTest, rows: RowsByParam) -> bool:
        """Whether rows satisfy one (possibly chained) parameter test."""
        if not test.chain:
            return parameter_matches(test, rows, now=self.now)
        terminal = replace(test, chain=())
        targets = self._chain_set(
            test,
            lambda: chain_targets(
                test.chain,
                lambda target_rows: parameter_matches(terminal, target_rows, now=self.now),
                self.source,
            ),
        )
        first = test.chain[0]
        return any(
            target in targets
            for target in references(rows, first.parameter.code, first.target_type)
        )

    def has_ids(self, clause: HasClause, target_type: str) -> frozenset[ResourceKey]:
        """The ``target_type`` resources some matching ``clause.resource_type`` points at."""

        def compute() -> frozenset[ResourceKey]:
            found: set[ResourceKey] = set()
            for rid, rows in self.source.live(clause.resource_type):
                if self._inner_matches(clause, rid, rows):
                    found.update(references(rows, clause.reference.code, target_type))
            return frozenset(found)

        return self._chain_set(clause, compute)

    def _inner_matches(self, clause: HasClause, resource_id: str, rows: RowsByParam) -> bool:
        inner = clause.test
        if isinstance(inner, HasClause):
            return (clause.resource_type, resource_id) in self.has_ids(inner, clause.resource_type)
        return self.test_matches(inner, rows)

    def filter_matches(self, expression: FilterExpression, rows: RowsByParam) -> bool:
        """Whether rows satisfy a ``_filter`` expression whose paths may be chained."""
        if isinstance(expression, FilterAnd):
            return all(self.filter_matches(e, rows) for e in expression.operands)
        if isinstance(expression, FilterOr):
            return any(self.filter_matches(e, rows) for e in expression.operands)
        if isinstance(expression, FilterNot):
            return not self.filter_matches(expression.operand, rows)
        return self._comparison(expression, rows)

    def _comparison(self, comparison: FilterComparison, rows: RowsByParam) -> bool:
        if not comparison.chain:
            return _comparison_matches(comparison, rows, self.now)
        terminal = replace(comparison, chain=())
        targets = self._chain_set(
            comparison,
            lambda: chain_targets(
                comparison.chain,
                lambda target_rows: _comparison_matches(terminal, target_rows, self.now),
                self.source,
            ),
        )
        first = comparison.chain[0]
        return any(
            target in targets
            for target in references(rows, first.parameter.code, first.target_type)
        )

    def matches(self, resource_id: str, rows: RowsByParam) -> bool:
        """Whether the resource ``query.resource_type/resource_id`` with ``rows`` matches."""
        if not all(self.test_matches(test, rows) for test in self.query.tests):
            return False
        own = (self.query.resource_type, resource_id)
        if not all(
            own in self.has_ids(clause, self.query.resource_type) for clause in self.query.has
        ):
            return False
        return self.query.filter is None or self.filter_matches(self.query.filter, rows)


# -- includes -----------------------------------------------------------------------


def _include_targets(
    spec: IncludeSpec, resources: Iterable[tuple[ResourceKey, RowsByParam]], source: IndexSource
) -> set[ResourceKey]:
    found: set[ResourceKey] = set()
    for (kind, _), rows in resources:
        if spec.source_type != kind:
            continue
        code = spec.parameter.code if spec.parameter is not None else None
        for target in references(rows, code, spec.target_type):
            if source.get(*target) is not None:
                found.add(target)
    return found


def _revinclude_sources(
    spec: IncludeSpec, targets: set[ResourceKey], source: IndexSource
) -> set[ResourceKey]:
    if spec.target_type is not None:
        targets = {target for target in targets if target[0] == spec.target_type}
    if not targets:
        return set()
    kinds = list(source.live_types()) if spec.source_type == "*" else [spec.source_type]
    code = spec.parameter.code if spec.parameter is not None else None
    found: set[ResourceKey] = set()
    for kind in kinds:
        for rid, rows in source.live(kind):
            if any(target in targets for target in references(rows, code)):
                found.add((kind, rid))
    return found


def resolve_includes(
    query: SearchQuery,
    matches: Sequence[tuple[ResourceKey, RowsByParam]],
    source: IndexSource,
) -> list[ResourceKey]:
    """The resources ``_include``/``_revinclude`` add to a page of ``matches``.

    Every spec applies to the matches; ``:iterate`` specs then apply to what was added,
    repeatedly, until nothing new appears. Matches are never included; nothing twice.

    Returns:
        ``(type, id)`` of the included resources, ordered by type then id.
    """
    seen: set[ResourceKey] = {key for key, _ in matches}
    included: set[ResourceKey] = set()
    frontier: list[tuple[ResourceKey, RowsByParam]] = list(matches)
    first = True
    while frontier:
        added: set[ResourceKey] = set()
        frontier_keys = {key for key, _ in frontier}
        for spec in query.include:
            if first or spec.iterate:
                added |= _include_targets(spec, frontier, source)
        for spec in query.revinclude:
            if first or spec.iterate:
                added |= _revinclude_sources(spec, frontier_keys, source)
        added -= seen
        seen |= added
        included |= added
        first = False
        frontier = []
        if any(spec.iterate for spec in (*query.include, *query.revinclude)):
            for key in sorted(added):
                rows = source.get(*key)
                if rows is not None:
                    frontier.append((key, rows))
    return sorted(included)


# -- sort ---------------------------------------------------------------------------

SortValue = str | Decimal | datetime | tuple[str, str]
"""The value one index row contributes to a sort key (see :func:`row_sort_value`)."""


def row_sort_value(row: IndexRow) -> SortValue | None:
    """The value a row sorts by, per parameter type (``None``: the row has none).

    string: the folded text; token: ``(code, system or "")``; date: the range start
    (its end for a range open at the start); number and quantity: the number as
    written; reference, uri: the normalized reference / URI.
    """
    if row.component is not None:
        return None
    if row.type is ParamType.STRING:
        return row.text
    if row.type is ParamType.TOKEN:
        return None if row.code is None else (row.code, row.system or "")
    if row.type is ParamType.DATE:
        return row.date_low if row.date_low is not None else row.date_high
    if row.type in (ParamType.NUMBER, ParamType.QUANTITY):
        return row.number
    if row.type in (ParamType.REFERENCE, ParamType.URI):
        return row.exact
    return None


class _Descending:
    """Reverses the order of a value inside a sort key tuple."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __lt__(self, other: _Descending) -> bool:
        return bool(other.value < self.value)

    def __gt__(self, other: _Descending) -> bool:
        return bool(other.value > self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Descending) and bool(self.value == other.value)

    def __hash__(self) -> int:
        return hash(self.value)

    def __repr__(self) -> str:
        return f"_Descending({self.value!r})"


def sort_values(keys: Sequence[SortKey], rows: RowsByParam) -> tuple[SortValue | None, ...]:
    """The value of each sort key for one resource.

    A parameter with several values sorts by its lowest value ascending and its
    highest descending; ``None`` when the resource has no value for the key.
    """
    values: list[SortValue | None] = []
    for key in keys:
        own = [
            v
            for v in (row_sort_value(row) for row in rows.get(key.parameter.code, ()))
            if v is not None
        ]
        if not own:
            values.append(None)
        elif key.direction is SortDirection.ASCENDING:
            values.append(min(own))
        else:
            values.append(max(own))
    return tuple(values)


def sort_key(
    keys: Sequence[SortKey], values: Sequence[SortValue | None], resource_id: str
) -> tuple[Any, ...]:
    """A total order key: each sort key, then the id ascending as the tie-breaker.

    A resource with no value for a key sorts after every resource with one, in both
    directions (search.html#sort leaves it open; last is the common choice).
    """
    parts: list[Any] = []
    for key, value in zip(keys, values, strict=True):
        if value is None:
            parts.append((1,))
        elif key.direction is SortDirection.ASCENDING:
            parts.append((0, value))
        else:
            parts.append((0, _Descending(value)))
    parts.append(resource_id)
    return tuple(parts)


def encode_sort_values(values: Sequence[SortValue | None]) -> list[Any]:
    """JSON-ready form of :func:`sort_values` (for keyset cursors)."""
    encoded: list[Any] = []
    for value in values:
        if value is None:
            encoded.append(None)
        elif isinstance(value, str):
            encoded.append({"s": value})
        elif isinstance(value, Decimal):
            encoded.append({"n": str(value)})
        elif isinstance(value, datetime):
            encoded.append({"t": value.isoformat()})
        else:
            encoded.append({"k": list(value)})
    return encoded


def decode_sort_values(encoded: Sequence[Any]) -> tuple[SortValue | None, ...]:
    """The inverse of :func:`encode_sort_values`."""
    values: list[SortValue | None] = []
    for item in encoded:
        if item is None:
            values.append(None)
        elif "s" in item:
            values.append(str(item["s"]))
        elif "n" in item:
            values.append(Decimal(item["n"]))
        elif "t" in item:
            values.append(datetime.fromisoformat(item["t"]))
        else:
            code, system = item["k"]
            values.append((str(code), str(system)))
    return tuple(values)


# -- subsets ------------------------------------------------------------------------

SUBSETTED_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
"""The system of the SUBSETTED tag (search.html#summary)."""

_ALWAYS_KEPT = frozenset({"resourceType", "id", "meta"})

# Top-level elements marked isSummary (Σ) in the R4 resource definitions, beyond the
# Resource-level id, meta and implicitRules; and the mandatory (min 1) top-level
# elements. Only these types are known here; others raise Unsupported for
# _summary=true/text rather than guess.
_RESOURCE_SUMMARY = frozenset({"id", "meta", "implicitRules"})
SUMMARY_ELEMENTS: Mapping[str, frozenset[str]] = {
    "Patient": frozenset(
        {
            "identifier",
            "active",
            "name",
            "telecom",
            "gender",
            "birthDate",
            "deceasedBoolean",
            "deceasedDateTime",
            "address",
            "managingOrganization",
            "link",
        }
    ),
    "Practitioner": frozenset(
        {"identifier", "active", "name", "telecom", "address", "gender", "birthDate"}
    ),
    "Organization": frozenset({"identifier", "active", "type", "name", "partOf"}),
    "Observation": frozenset(
        {
            "identifier",
            "basedOn",
            "partOf",
            "status",
            "code",
            "subject",
            "focus",
            "encounter",
            "effectiveDateTime",
            "effectivePeriod",
            "effectiveTiming",
            "effectiveInstant",
            "issued",
            "performer",
            "valueQuantity",
            "valueCodeableConcept",
            "valueString",
            "valueBoolean",
            "valueInteger",
            "valueRange",
            "valueRatio",
            "valueSampledData",
            "valueTime",
            "valueDateTime",
            "valuePeriod",
            "hasMember",
            "derivedFrom",
            "component",
        }
    ),
}
MANDATORY_ELEMENTS: Mapping[str, frozenset[str]] = {
    "Patient": frozenset(),
    "Practitioner": frozenset(),
    "Organization": frozenset(),
    "Observation": frozenset({"status", "code"}),
}


def _tagged(resource: dict[str, Any]) -> dict[str, Any]:
    meta = dict(resource.get("meta") or {})
    tags = list(meta.get("tag") or [])
    if not any(
        isinstance(tag, Mapping)
        and tag.get("system") == SUBSETTED_SYSTEM
        and tag.get("code") == "SUBSETTED"
        for tag in tags
    ):
        tags.append({"system": SUBSETTED_SYSTEM, "code": "SUBSETTED"})
    meta["tag"] = tags
    resource["meta"] = meta
    return resource


def _element_selected(key: str, names: Iterable[str]) -> bool:
    for name in names:
        if key == name:
            return True
        # A choice element is asked for by its base name: value -> valueQuantity.
        if key.startswith(name) and len(key) > len(name) and key[len(name)].isupper():
            return True
    return False


def subset_resource(
    resource: Mapping[str, Any],
    *,
    elements: Sequence[str] = (),
    summary: SummaryMode | None = None,
) -> dict[str, Any]:
    """Return the subset ``_elements``/``_summary`` asks for, tagged SUBSETTED.

    - ``_elements=a,b``: the listed top-level elements (a choice element by its base
      name) plus ``resourceType``, ``id`` and ``meta``;
    - ``_summary=true``: the elements marked as summary in the resource definition;
    - ``_summary=text``: ``text``, ``id``, ``meta`` and the mandatory top-level elements;
    - ``_summary=data``: everything but ``text``;
    - neither (or ``_summary=false``): the resource unchanged and untagged.

    Raises:
        Unsupported: ``_summary=true``/``text`` on a type whose summary elements are not
            known here (capability ``search.summary``).
    """
    kind = str(resource.get("resourceType"))
    if elements:
        kept = {
            k: copy.deepcopy(v)
            for k, v in resource.items()
            if k in _ALWAYS_KEPT or _element_selected(k, elements)
        }
        return _tagged(kept)
    if summary in (None, SummaryMode.FALSE, SummaryMode.COUNT):
        return dict(resource)
    if summary is SummaryMode.DATA:
        return _tagged({k: copy.deepcopy(v) for k, v in resource.items() if k != "text"})
    if kind not in SUMMARY_ELEMENTS:
        raise Unsupported(
            f"_summary={summary.value}: the summary elements of {kind} are not known",
            capability="search.summary",
        )
    if summary is SummaryMode.TRUE:
        wanted = SUMMARY_ELEMENTS[kind] | _RESOURCE_SUMMARY
    else:
        wanted = MANDATORY_ELEMENTS[kind] | {"text"}
    kept = {k: copy.deepcopy(v) for k, v in resource.items() if k in _ALWAYS_KEPT or k in wanted}
    return _tagged(kept)


def subset_match(stored: StoredResource, query: SearchQuery) -> StoredResource:
    """A search match as ``query``'s ``_elements``/``_summary`` asks (:func:`subset_resource`);
    unchanged when it asks for no subset."""
    if not query.elements and query.summary in (None, SummaryMode.FALSE):
        return stored
    assert stored.resource is not None
    subset = subset_resource(stored.resource, elements=query.elements, summary=query.summary)
    return replace(stored, resource=subset)


def search_cursor_scope(
    tenant: str, resource_type: str, parameters: Sequence[tuple[str, str]]
) -> str:
    """What a search cursor is bound to: the tenant, the type and the normalized query.

    The query is normalized by sorting its pairs (their order does not change what
    it means); ``_offset`` is left out because a cursor replaces it.
    """
    pairs = sorted((name, value) for name, value in parameters if name != "_offset")
    return json.dumps(["search", tenant, resource_type, pairs], separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class SearchCursor:
    """Where a cursor's page starts: after the match with these (encoded) sort values
    and this id, among the resources first written by write ``snapshot``."""

    after_values: tuple[Any, ...]
    after_id: str
    snapshot: int

    def payload(self) -> dict[str, Any]:
        """What :class:`~helios_conformance.CursorCodec` signs for this cursor."""
        return {"after": list(self.after_values), "id": self.after_id, "snapshot": self.snapshot}


def read_search_cursor(
    codec: CursorCodec, scope: str, cursor: str, query: SearchQuery
) -> SearchCursor:
    """Verify and read a search cursor issued for ``scope`` (:func:`search_cursor_scope`).

    Raises:
        InvalidSearch: ``_offset`` given too (both say where the page starts), or the
            cursor is forged, from another query, or does not fit ``query``'s sort.
    """
    if query.offset is not None:
        raise InvalidSearch(
            "_offset and a cursor both say where the page starts; use one of them",
            parameter="_offset",
        )
    payload = codec.decode(scope, cursor)
    values = payload["after"]
    if not isinstance(values, list) or len(values) != len(query.sort):
        raise InvalidSearch("cursor: it does not fit this query", parameter="cursor")
    return SearchCursor(tuple(values), str(payload["id"]), int(payload["snapshot"]))


def check_result_parameters(query: SearchQuery) -> None:
    """Refuse combinations of result parameters that have no single meaning.

    Raises:
        InvalidSearch: ``_elements`` together with ``_summary`` (other than false).
    """
    if query.elements and query.summary not in (None, SummaryMode.FALSE):
        raise InvalidSearch(
            "_elements and _summary both choose the returned elements; use one of them",
            parameter="_elements",
        )
