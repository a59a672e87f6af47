"""FHIR search in SQL: index rows to table rows, and a :class:`SearchQuery` to one SELECT.

The semantics are those of the reference evaluator
(``helios_conformance.search._evaluate``); every rule below restates one of its
branches as a condition on a ``search_index`` row (alias ``i``) or on the resource
(alias ``r``):

- one parameter test is ``r.id IN (SELECT resource_id FROM search_index WHERE
  <tenant, type, param> AND (<value> OR <value> ...))``; tests are ANDed, so a
  query is a conjunction of such semi-joins that SQLite can drive from whichever
  index is most selective. Token and reference values of one test collapse into
  ``IN (...)`` lists (``code IN (...)``, ``system = ? AND code IN (...)``,
  ``exact IN (...)``, ``ref_id IN (...)``) instead of OR chains;
- ``:not`` and ``:missing=true`` are ``r.id NOT IN (...)`` of the positive set;
- composites: a row of component 0 and, correlated on the same ``grp``, an
  ``EXISTS`` per further component;
- decimals compare on the REAL column, with ties settled exactly by
  ``helios_decimal_cmp`` (see ``_schema.py``);
- dates compare integer microseconds, ``NULL`` being an open end;
- full text (``_text``, ``_content``, ``:text-advanced``) is an FTS5 ``MATCH`` built
  from the parsed :class:`TextQuery` with every term quoted (never the user's text);
  the parts FTS5 cannot say alone (a ``NOT`` with nothing positive beside it) become
  SQL ``NOT`` around a MATCH.

A condition that SQL evaluates to ``NULL`` means "no match", as the evaluator's
``False``; a condition that is negated is wrapped in ``coalesce(..., 0)`` first.
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any

from helios_conformance import Compartment, Unsupported
from helios_conformance.search import (
    ChainLink,
    CompositeValue,
    DateValue,
    FilterAnd,
    FilterComparison,
    FilterExpression,
    FilterNot,
    FilterOperator,
    FilterOr,
    HasClause,
    IncludeSpec,
    IndexRow,
    MissingValue,
    NumberValue,
    ParameterTest,
    ParamType,
    Prefix,
    QuantityValue,
    ReferenceValue,
    SearchQuery,
    SearchValue,
    SortDirection,
    SortKey,
    StringValue,
    TextAnd,
    TextNot,
    TextOr,
    TextPhrase,
    TextQuery,
    TextSearchValue,
    TextTerm,
    TokenValue,
    UriValue,
    fold,
    tokenize,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_AP_FRACTION = Decimal("0.1")

INDEX_COLUMNS = (
    "tenant",
    "resource_type",
    "resource_id",
    "param",
    "type",
    "grp",
    "component",
    "text",
    "exact",
    "system",
    "code",
    "code_folded",
    "type_system",
    "type_code",
    "number",
    "number_text",
    "canonical_number",
    "canonical_text",
    "canonical_unit",
    "date_low",
    "date_high",
    "ref_type",
    "ref_id",
    "ref_version",
    "fts_tokens",
)
INSERT_INDEX_ROW = (
    f"INSERT INTO search_index ({', '.join(INDEX_COLUMNS)})"
    f" VALUES ({', '.join('?' for _ in INDEX_COLUMNS)})"
)

# The rows full-text search reads: _text/_content and token display/text
# (:text-advanced). Other rows never meet a TextSearchValue (the parser allows full
# text on token and those special parameters only).
_FULL_TEXT_TYPES = frozenset({ParamType.SPECIAL, ParamType.TOKEN})

IndexValues = tuple[Any, ...]


# -- values ---------------------------------------------------------------------------


def to_micros(moment: datetime) -> int:
    """An aware instant as whole microseconds since the Unix epoch (exact)."""
    return (moment - _EPOCH) // _MICROSECOND


def decimal_compare(left: str | None, right: str | None) -> int | None:
    """``helios_decimal_cmp``: -1, 0 or 1 comparing two decimals written as text."""
    if left is None or right is None:
        return None
    a, b = Decimal(left), Decimal(right)
    return (a > b) - (a < b)


def _real(value: Decimal | None) -> float | None:
    # float() of a Decimal is correctly rounded (and monotonic); huge values become inf.
    return None if value is None else float(value)


def _text_of(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def index_values(
    tenant: str, resource_type: str, resource_id: str, rows: Iterable[IndexRow]
) -> list[IndexValues]:
    """The ``search_index`` rows (in :data:`INDEX_COLUMNS` order) of one resource.

    This is the CPU side of indexing, run before the database hop: full-text rows
    are tokenized here with the reference tokenizer.
    """
    values: list[IndexValues] = []
    for row in rows:
        fts_tokens = None
        if row.text is not None and row.type in _FULL_TEXT_TYPES:
            fts_tokens = " ".join(tokenize(row.text))
        values.append(
            (
                tenant,
                resource_type,
                resource_id,
                row.param,
                row.type.value,
                row.group,
                row.component,
                row.text,
                row.exact,
                row.system,
                row.code,
                None if row.code is None else fold(row.code),
                row.type_system,
                row.type_code,
                _real(row.number),
                _text_of(row.number),
                _real(row.canonical_number),
                _text_of(row.canonical_number),
                row.canonical_unit,
                None if row.date_low is None else to_micros(row.date_low),
                None if row.date_high is None else to_micros(row.date_high),
                row.ref_type,
                row.ref_id,
                row.ref_version,
                fts_tokens,
            )
        )
    return values


def _successor(prefix: str) -> str | None:
    """The least string greater than every string starting with ``prefix``, if any.

    SQLite compares TEXT with memcmp on UTF-8, which is code-point order, so
    ``prefix <= s < successor`` is exactly ``s.startswith(prefix)`` and is a range
    scan on an index.
    """
    last = ord(prefix[-1])
    if last >= 0x10FFFF:
        return None
    following = last + 1
    if 0xD800 <= following <= 0xDFFF:
        following = 0xE000
    return prefix[:-1] + chr(following)


def _quote_term(term: TextTerm) -> str:
    # FTS5 strings are double-quoted; a quote inside is doubled. The reference
    # tokenizer yields letters and digits only, so this is belt and braces.
    return '"' + term.term.replace('"', '""') + '"' + ("*" if term.prefix else "")


def fts_expression(query: TextQuery) -> str | None:
    """The FTS5 MATCH expression for ``query``, or ``None`` when FTS5 cannot say it.

    FTS5's NOT is binary (``a NOT b``), so a NOT with nothing positive beside it
    (``TextNot`` alone, or inside an OR) has no FTS5 form; the caller composes
    those in SQL instead.
    """
    if isinstance(query, TextTerm):
        return _quote_term(query)
    if isinstance(query, TextPhrase):
        return " + ".join(_quote_term(term) for term in query.terms)
    if isinstance(query, TextNot):
        return None
    if isinstance(query, TextOr):
        parts = [fts_expression(operand) for operand in query.operands]
        if any(part is None for part in parts):
            return None
        return "(" + " OR ".join(f"({part})" for part in parts) + ")"
    positives = [o for o in query.operands if not isinstance(o, TextNot)]
    negatives = [o.operand for o in query.operands if isinstance(o, TextNot)]
    if not positives:
        return None
    positive_parts = [fts_expression(o) for o in positives]
    negative_parts = [fts_expression(o) for o in negatives]
    if any(part is None for part in positive_parts + negative_parts):
        return None
    expression = "(" + " AND ".join(f"({part})" for part in positive_parts) + ")"
    for part in negative_parts:
        expression = f"({expression} NOT ({part}))"
    return expression


def points_at(alias: str) -> str:
    """Row ``alias`` of ``search_index`` points at ``ref_type/ref_id`` on this server.

    As ``points_at`` of the harness: a reference row (not a composite component) with
    a type and an id whose reference is relative (not ``#contained``, no scheme).
    """
    return (
        f"{alias}.type = 'reference' AND {alias}.component IS NULL"
        f" AND {alias}.ref_type IS NOT NULL AND {alias}.ref_id IS NOT NULL"
        f" AND ({alias}.exact IS NULL OR (substr({alias}.exact, 1, 1) <> '#'"
        f" AND instr({alias}.exact, ':') = 0))"
    )


def compartment_condition(alias: str, compartment: Compartment, bind: Callable[[Any], str]) -> str:
    """Resource ``alias`` (over ``resources``) is in ``compartment``, on its current index rows.

    The compartment's own resource, or an ``EXISTS`` over the resource's reference
    rows: a parameter the CompartmentDefinition lists for its type
    (:meth:`Compartment.parameters`) holding the relative reference
    :attr:`Compartment.reference` (as :meth:`Compartment.contains`). ``bind`` returns
    the placeholder of a value; it is called in the order the placeholders appear, so
    positional (``?``) binding works too.
    """
    definition = {
        kind: list(compartment.parameters(kind)) for kind in sorted(compartment.resource_types)
    }
    own_type = bind(compartment.kind)
    own_id = bind(compartment.id)
    parameters = bind(json.dumps(definition, separators=(",", ":")))
    ref_type = bind(compartment.kind)
    ref_id = bind(compartment.id)
    reference = bind(compartment.reference)
    return (
        f"(({alias}.resource_type = {own_type} AND {alias}.id = {own_id})"
        " OR EXISTS (SELECT 1 FROM search_index cm"
        f" WHERE cm.tenant = {alias}.tenant AND cm.resource_type = {alias}.resource_type"
        f" AND cm.resource_id = {alias}.id"
        f" AND cm.param IN (SELECT value FROM json_each({parameters},"
        f" '$.' || {alias}.resource_type))"
        " AND cm.type = 'reference' AND cm.component IS NULL"
        f" AND cm.ref_type = {ref_type} AND cm.ref_id = {ref_id} AND cm.exact = {reference}))"
    )


def positional(arguments: list[Any]) -> Callable[[Any], str]:
    """A ``bind`` for :func:`compartment_condition` that appends to ``arguments``."""

    def bind(value: Any) -> str:
        arguments.append(value)
        return "?"

    return bind


def values_in_compartment(
    compartment: Compartment,
    resource_type: str,
    resource_id: str,
    rows: Iterable[IndexValues],
) -> bool:
    """:meth:`Compartment.contains` on ``search_index`` rows (:data:`INDEX_COLUMNS` order)
    computed before a write's hop."""
    if resource_type == compartment.kind and resource_id == compartment.id:
        return True
    wanted = frozenset(compartment.parameters(resource_type))
    return any(
        row[_PARAM] in wanted
        and row[_TYPE] == ParamType.REFERENCE.value
        and row[_COMPONENT] is None
        and row[_REF_TYPE] == compartment.kind
        and row[_REF_ID] == compartment.id
        and row[_EXACT] == compartment.reference
        for row in rows
    )


_PARAM, _TYPE, _COMPONENT, _EXACT, _REF_TYPE, _REF_ID = (
    INDEX_COLUMNS.index(name)
    for name in ("param", "type", "component", "exact", "ref_type", "ref_id")
)


def first_written_by(alias: str, bound: str) -> str:
    """Resource ``alias`` (over ``resources``) was first written at or before ``bound``."""
    return (
        f"(SELECT min(h.sequence) FROM resource_history h WHERE h.tenant = {alias}.tenant"
        f" AND h.resource_type = {alias}.resource_type AND h.id = {alias}.id) <= {bound}"
    )


# -- the compiler --------------------------------------------------------------------


class SearchCompiler:
    """Translate one :class:`SearchQuery` into SQL over ``resources r``.

    ``now`` pins the instant ``ap`` on dates measures from (default: the clock), as
    the evaluator's ``now`` does.
    """

    def __init__(
        self,
        tenant: str,
        resource_type: str,
        *,
        now: datetime | None = None,
    ) -> None:
        self.params: dict[str, Any] = {"tenant": tenant, "rtype": resource_type}
        self.now = now
        self._aliases = 0
        # What a test is about: the id column and the (bound) type of the resources
        # tested. ``r`` at the top; a chain's or _has's inner resources below it.
        self._subject_id = "r.id"
        self._subject_type = ":rtype"
        # The write sequence bounding a cursor's later pages (``None``: no bound).
        self.snapshot: int | None = None
        # The compartment a restricted caller sees (``None``: no restriction): every
        # resource the query reads (matches, chain and _has hops) must lie in it.
        self.compartment: Compartment | None = None
        # The sets chains and _has go through, as common table expressions: each
        # hop names the one before instead of nesting it (SQLite's parser has a
        # bounded stack), and none is correlated with the row tested.
        self._sets: list[str] = []

    def _set(self, body: str) -> str:
        """Name ``body`` (a SELECT of one ``id`` column) as a CTE; return a SELECT of it."""
        name = f"s{len(self._sets) + 1}"
        self._sets.append(f"{name}(id) AS ({body})")
        return f"SELECT id FROM {name}"

    def with_clause(self, *more: str) -> str:
        """``WITH`` the sets (and ``more``), or nothing."""
        parts = [*self._sets, *more]
        return "WITH " + ", ".join(parts) + " " if parts else ""

    def bind(self, value: Any) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return ":" + name

    def _alias(self) -> str:
        self._aliases += 1
        return f"i{self._aliases}"

    def _scope(self, alias: str, code: str) -> str:
        return (
            f"{alias}.tenant = :tenant AND {alias}.resource_type = {self._subject_type}"
            f" AND {alias}.param = {self.bind(code)}"
        )

    def _semi(self, code: str, condition: str | None, *, negate: bool = False) -> str:
        """``r.id [NOT] IN`` the resources with a row of ``code`` meeting ``condition``."""
        alias = self._alias()
        where = self._scope(alias, code)
        if condition is not None:
            where += " AND " + condition.replace("{a}", alias)
        operator = "NOT IN" if negate else "IN"
        return (
            f"{self._subject_id} {operator}"
            f" (SELECT {alias}.resource_id FROM search_index {alias} WHERE {where})"
        )

    # -- the query ------------------------------------------------------------------

    @contextmanager
    def _about(self, id_column: str, type_bind: str) -> Iterator[None]:
        """Compile the tests inside the block about ``id_column`` of type ``type_bind``."""
        saved = self._subject_id, self._subject_type
        self._subject_id, self._subject_type = id_column, type_bind
        try:
            yield
        finally:
            self._subject_id, self._subject_type = saved

    def live(self, alias: str, type_bind: str) -> str:
        """``alias`` (over ``resources``) is a live resource of the tenant and type,
        first written at or before the snapshot when there is one."""
        condition = (
            f"{alias}.tenant = :tenant AND {alias}.resource_type = {type_bind}"
            f" AND {alias}.deleted = 0"
        )
        if self.snapshot is not None:
            condition += " AND " + first_written_by(alias, ":snapshot")
        if self.compartment is not None:
            condition += " AND " + compartment_condition(alias, self.compartment, self.bind)
        return condition

    def _chain_set(self, links: Sequence[ChainLink], terminal: Callable[[], str]) -> str:
        """A SELECT of the ids of ``links[0].target_type`` from which the chain matches.

        Inside out: the live resources of the last type meeting ``terminal``, then per
        earlier link the live resources with a reference row into the set so far; each
        hop is one nested semi-join, all in one statement.
        """
        last = links[-1].target_type
        alias = self._alias()
        last_type = self.bind(last)
        with self._about(f"{alias}.id", last_type):
            condition = terminal()
        sql = self._set(
            f"SELECT {alias}.id FROM resources {alias}"
            f" WHERE {self.live(alias, last_type)} AND {condition}"
        )
        for index in range(len(links) - 1, 0, -1):
            link = links[index]
            owner = self.bind(links[index - 1].target_type)
            outer, row = self._alias(), self._alias()
            sql = self._set(
                f"SELECT {outer}.id FROM resources {outer} WHERE {self.live(outer, owner)}"
                f" AND {outer}.id IN (SELECT {row}.resource_id FROM search_index {row}"
                f" WHERE {row}.tenant = :tenant AND {row}.resource_type = {owner}"
                f" AND {row}.param = {self.bind(link.parameter.code)}"
                f" AND {points_at(row)} AND {row}.ref_type = {self.bind(link.target_type)}"
                f" AND {row}.ref_id IN ({sql}))"
            )
        return sql

    def _chained(self, links: Sequence[ChainLink], terminal: Callable[[], str]) -> str:
        """The subject has a ``links[0]`` reference to a resource the chain matches from."""
        first = links[0]
        targets = self._chain_set(links, terminal)
        row = self._alias()
        return (
            f"{self._subject_id} IN (SELECT {row}.resource_id FROM search_index {row}"
            f" WHERE {row}.tenant = :tenant AND {row}.resource_type = {self._subject_type}"
            f" AND {row}.param = {self.bind(first.parameter.code)} AND {points_at(row)}"
            f" AND {row}.ref_type = {self.bind(first.target_type)}"
            f" AND {row}.ref_id IN ({targets}))"
        )

    def any_test(self, test: ParameterTest) -> str:
        """One parameter test, chained or not."""
        if not test.chain:
            return self.test(test)
        terminal = replace(test, chain=())
        return self._chained(test.chain, lambda: self.test(terminal))

    def has(self, clause: HasClause) -> str:
        """The subject is pointed at by a live ``clause.resource_type`` that matches."""
        source, row = self._alias(), self._alias()
        source_type = self.bind(clause.resource_type)
        with self._about(f"{source}.id", source_type):
            inner = clause.test
            condition = self.has(inner) if isinstance(inner, HasClause) else self.any_test(inner)
        sources = self._set(
            f"SELECT {source}.id FROM resources {source}"
            f" WHERE {self.live(source, source_type)} AND {condition}"
        )
        return (
            f"{self._subject_id} IN (SELECT {row}.ref_id FROM search_index {row}"
            f" WHERE {row}.tenant = :tenant AND {row}.resource_type = {source_type}"
            f" AND {row}.param = {self.bind(clause.reference.code)} AND {points_at(row)}"
            f" AND {row}.ref_type = {self._subject_type} AND {row}.resource_id IN ({sources}))"
        )

    def where(self, query: SearchQuery) -> list[str]:
        """The conditions on ``r`` beyond tenant, type and liveness."""
        clauses = [self.any_test(test) for test in query.tests]
        clauses.extend(self.has(clause) for clause in query.has)
        if query.filter is not None:
            clauses.append(self.filter(query.filter))
        return clauses

    def _sort_value(self, key: SortKey) -> str:
        """The correlated subquery of one sort key's value for ``r`` (NULL: none).

        Per row type as ``row_sort_value``: string the folded text; token the code,
        then the system ("" when absent), joined by U+0001 (below every character a
        FHIR string may hold) so text order is tuple order; date the range start, else
        its end; number and quantity the number; reference and uri the exact value.
        Ascending takes the lowest value, descending the highest.
        """
        row = self._alias()
        aggregate = "min" if key.direction is SortDirection.ASCENDING else "max"
        value = (
            f"CASE {row}.type WHEN 'string' THEN {row}.text"
            f" WHEN 'token' THEN {row}.code || char(1) || coalesce({row}.system, '')"
            f" WHEN 'date' THEN coalesce({row}.date_low, {row}.date_high)"
            f" WHEN 'number' THEN {row}.number WHEN 'quantity' THEN {row}.number"
            f" WHEN 'reference' THEN {row}.exact WHEN 'uri' THEN {row}.exact END"
        )
        return (
            f"(SELECT {aggregate}({value}) FROM search_index {row}"
            f" WHERE {row}.tenant = r.tenant AND {row}.resource_type = r.resource_type"
            f" AND {row}.resource_id = r.id AND {row}.param = {self.bind(key.parameter.code)}"
            f" AND {row}.component IS NULL)"
        )

    def _after(self, keys: Sequence[SortKey], after: Sequence[Any], after_id: str) -> str:
        """Keyset: the rows strictly after ``(after, after_id)`` in the sort order.

        Lexicographic over ``(k IS NULL, k)`` per key (NULLs last both ways), then id:
        ``(k1 > a1) OR (k1 = a1 AND ((k2 > a2) OR (k2 = a2 AND ... id > i)))``. One
        ascending key with a value is the row value comparison ``(k, id) > (a, i)``.
        """
        identifier = self.bind(after_id)
        if len(keys) == 1 and keys[0].direction is SortDirection.ASCENDING and after[0] is not None:
            return f"((m.k0, m.id) > ({self.bind(after[0])}, {identifier}) OR m.k0 IS NULL)"
        condition = f"m.id > {identifier}"
        for position in range(len(keys) - 1, -1, -1):
            column, value = f"m.k{position}", after[position]
            if value is None:
                # Among the NULLs (last): only equal, never after.
                condition = f"({column} IS NULL AND {condition})"
                continue
            bound = self.bind(value)
            operator = ">" if keys[position].direction is SortDirection.ASCENDING else "<"
            condition = (
                f"({column} IS NULL OR {column} {operator} {bound}"
                f" OR ({column} = {bound} AND {condition}))"
            )
        return condition

    def select(
        self,
        query: SearchQuery,
        *,
        limit: int,
        offset: int = 0,
        after: tuple[Sequence[Any], str] | None = None,
    ) -> tuple[str, str]:
        """The page statement and the count statement.

        The page selects ``id, version_id, last_updated, resource, k0, k1, ...`` (the
        sort values, for the next cursor) of the matches in the ``_sort`` order, NULLs
        last and id ascending as the tie-breaker, strictly after ``after`` (sort
        values, id) when given, ``offset`` skipped and at most ``limit`` rows.
        """
        conditions = [self.live("r", ":rtype"), *self.where(query)]
        where = " AND ".join(conditions)
        keys = query.sort
        values = "".join(f", {self._sort_value(key)} AS k{n}" for n, key in enumerate(keys))
        order = [
            f"m.k{n} IS NULL, m.k{n}"
            + (" DESC" if key.direction is SortDirection.DESCENDING else "")
            for n, key in enumerate(keys)
        ]
        outer = "" if after is None or not keys else " WHERE " + self._after(keys, *after)
        self.params["limit"] = limit
        self.params["offset"] = offset
        page = self.with_clause(
            "m AS MATERIALIZED (SELECT r.id AS id, r.version_id AS version_id,"
            f" r.last_updated AS last_updated, r.resource AS resource{values}"
            f" FROM resources r WHERE {where})"
        ) + (
            f"SELECT * FROM m{outer} ORDER BY {', '.join([*order, 'm.id'])}"
            " LIMIT :limit OFFSET :offset"
        )
        if not keys:
            # No sort: the primary key order, no materialization.
            page = self.with_clause() + (
                "SELECT r.id, r.version_id, r.last_updated, r.resource FROM resources r"
                f" WHERE {where}"
                + ("" if after is None else f" AND r.id > {self.bind(after[1])}")
                + " ORDER BY r.id LIMIT :limit OFFSET :offset"
            )
        count = self.with_clause() + f"SELECT count(*) FROM resources r WHERE {where}"
        return page, count

    # -- parameter tests ---------------------------------------------------------------

    def test(self, test: ParameterTest) -> str:
        code = test.code
        if test.modifier == "missing":
            value = test.values[0]
            assert isinstance(value, MissingValue)
            return self._semi(code, None, negate=value.missing)
        if test.modifier == "not":
            condition = self._values(test.values, None, test.parameter.type, None)
            return self._semi(code, condition, negate=True)
        if test.parameter.type is ParamType.COMPOSITE:
            parts = []
            for value in test.values:
                assert isinstance(value, CompositeValue)
                parts.append(self._composite(code, value))
            return "(" + " OR ".join(parts) + ")"
        condition = self._values(test.values, test.modifier, test.parameter.type, test.target_type)
        return self._semi(code, condition)

    def _values(
        self,
        values: Sequence[SearchValue],
        modifier: str | None,
        param_type: ParamType,
        target_type: str | None,
    ) -> str:
        """One row condition (with ``{a}`` for the alias): any of the OR values."""
        parts: list[str] = []
        rest: list[SearchValue] = []
        if param_type is ParamType.TOKEN and modifier is None:
            rest = self._token_lists(values, parts)
        elif param_type is ParamType.REFERENCE and modifier is None:
            rest = self._reference_lists(values, target_type, parts)
        else:
            rest = list(values)
        for value in rest:
            parts.append(self.value(value, modifier, param_type, target_type))
        return parts[0] if len(parts) == 1 else "(" + " OR ".join(f"({p})" for p in parts) + ")"

    def _in(self, column: str, values: Sequence[Any]) -> str:
        unique = list(dict.fromkeys(values))
        if len(unique) == 1:
            return f"{column} = {self.bind(unique[0])}"
        return f"{column} IN ({', '.join(self.bind(v) for v in unique)})"

    def _token_lists(self, values: Sequence[SearchValue], parts: list[str]) -> list[SearchValue]:
        """Collapse plain token values into IN lists; return the values left over."""
        any_system: list[str] = []
        no_system: list[str] = []
        by_system: dict[str, list[str]] = defaultdict(list)
        whole_systems: list[str] = []
        rest: list[SearchValue] = []
        for value in values:
            if not isinstance(value, TokenValue) or (
                value.type_system is not None or value.type_code is not None
            ):
                rest.append(value)
            elif value.code is None:
                if value.system:
                    whole_systems.append(value.system)
                else:
                    rest.append(value)
            elif value.system is None:
                any_system.append(value.code)
            elif value.system == "":
                no_system.append(value.code)
            else:
                by_system[value.system].append(value.code)
        if any_system:
            parts.append(self._in("{a}.code", any_system))
        if no_system:
            parts.append(f"{{a}}.system IS NULL AND {self._in('{a}.code', no_system)}")
        for system, codes in by_system.items():
            parts.append(f"{{a}}.system = {self.bind(system)} AND {self._in('{a}.code', codes)}")
        if whole_systems:
            parts.append(self._in("{a}.system", whole_systems))
        return rest

    def _reference_lists(
        self, values: Sequence[SearchValue], target_type: str | None, parts: list[str]
    ) -> list[SearchValue]:
        exacts: list[str] = []
        ids: list[str] = []
        rest: list[SearchValue] = []
        for value in values:
            if isinstance(value, ReferenceValue) and value.identifier is None:
                if value.exact is not None and value.version is None:
                    exacts.append(value.exact)
                    continue
                if value.exact is None and value.id is not None:
                    ids.append(value.id)
                    continue
            rest.append(value)
        if exacts:
            parts.append(self._in("{a}.exact", exacts))
        if ids:
            parts.append(self._bare_ids(ids, target_type))
        return rest

    def _bare_ids(self, ids: Sequence[str], target_type: str | None) -> str:
        # A bare id names a resource on this server: relative references only, not
        # contained "#id" ones nor absolute URLs.
        condition = (
            f"{self._in('{a}.ref_id', ids)} AND ({{a}}.exact IS NULL"
            " OR (substr({a}.exact, 1, 1) <> '#' AND instr({a}.exact, ':') = 0))"
        )
        if target_type is not None:
            condition += f" AND {{a}}.ref_type = {self.bind(target_type)}"
        return condition

    def _composite(self, code: str, value: CompositeValue) -> str:
        first = self._alias()
        where = [self._scope(first, code), f"{first}.component = 0"]
        where.append(self.value(value.components[0], None, None, None).replace("{a}", first))
        for position, component in enumerate(value.components[1:], start=1):
            alias = self._alias()
            condition = self.value(component, None, None, None).replace("{a}", alias)
            where.append(
                f"EXISTS (SELECT 1 FROM search_index {alias} WHERE"
                f" {alias}.tenant = {first}.tenant AND {alias}.resource_type = {first}.resource_type"
                f" AND {alias}.resource_id = {first}.resource_id AND {alias}.param = {first}.param"
                f" AND {alias}.grp = {first}.grp AND {alias}.component = {position}"
                f" AND ({condition}))"
            )
        return (
            f"{self._subject_id} IN (SELECT {first}.resource_id FROM search_index {first} WHERE "
            + " AND ".join(f"({w})" for w in where)
            + ")"
        )

    # -- single values ---------------------------------------------------------------

    def value(
        self,
        value: SearchValue,
        modifier: str | None,
        param_type: ParamType | None,
        target_type: str | None,
    ) -> str:
        """The row condition for one value; ``param_type`` ``None`` means "read the row's type"."""
        if isinstance(value, StringValue):
            return self._string(value, modifier, param_type)
        if isinstance(value, TokenValue):
            return self._token_value(value, modifier, param_type)
        if isinstance(value, DateValue):
            return self._date(value.prefix, value.low, value.high)
        if isinstance(value, NumberValue):
            return "{a}.number IS NOT NULL AND " + self._number(
                "{a}.number", "{a}.number_text", value.prefix, value.value, value.low, value.high
            )
        if isinstance(value, QuantityValue):
            return self._quantity(value)
        if isinstance(value, ReferenceValue):
            return self._reference(value, target_type)
        if isinstance(value, UriValue):
            return self._uri(value.uri, modifier)
        if isinstance(value, TextSearchValue):
            return "{a}.text IS NOT NULL AND " + self._text(value.query)
        return "0"

    def _prefix(self, column: str, prefix: str) -> str:
        if not prefix:
            return f"{column} IS NOT NULL"
        successor = _successor(prefix)
        if successor is None:
            return f"substr({column}, 1, {len(prefix)}) = {self.bind(prefix)}"
        return f"{column} >= {self.bind(prefix)} AND {column} < {self.bind(successor)}"

    def _string(
        self, value: StringValue, modifier: str | None, param_type: ParamType | None
    ) -> str:
        if modifier in ("above", "below") or param_type is ParamType.URI:
            return self._uri(value.exact, modifier)
        if modifier == "exact":
            condition = f"{{a}}.exact = {self.bind(value.exact)}"
        elif modifier == "contains":
            condition = f"instr({{a}}.text, {self.bind(value.text)}) > 0"
        else:
            condition = self._prefix("{a}.text", value.text)
        if param_type is None:
            # A composite component: the evaluator reads a uri row as a uri.
            uri = self._uri(value.exact, None)
            return (
                f"CASE WHEN {{a}}.type = 'uri' THEN coalesce(({uri}), 0)"
                f" ELSE coalesce(({condition}), 0) END"
            )
        return condition

    def _token_value(
        self, value: TokenValue, modifier: str | None, param_type: ParamType | None
    ) -> str:
        if modifier == "text":
            return self._prefix("{a}.text", value.text) if value.text is not None else "0"
        if modifier == "code-text":
            return self._prefix("{a}.code_folded", value.text) if value.text is not None else "0"
        condition = self._token(value)
        if param_type is ParamType.REFERENCE:
            return f"{{a}}.code IS NOT NULL AND {condition}"
        if param_type is None:
            return f"({{a}}.type <> 'reference' OR {{a}}.code IS NOT NULL) AND {condition}"
        return condition

    def _token(self, value: TokenValue) -> str:
        if value.type_system is not None or value.type_code is not None:
            return (
                f"{{a}}.type_system IS {self.bind(value.type_system)}"
                f" AND {{a}}.type_code IS {self.bind(value.type_code)}"
                f" AND {{a}}.code IS {self.bind(value.code)}"
            )
        conditions = []
        if value.code is not None:
            conditions.append(f"{{a}}.code = {self.bind(value.code)}")
        if value.system is None:
            if value.code is None:
                return "0"
        elif value.system == "":
            conditions.append("{a}.system IS NULL")
        else:
            conditions.append(f"{{a}}.system = {self.bind(value.system)}")
        return " AND ".join(conditions)

    def _decimal(self, column: str, text_column: str, operator: str, bound: Decimal) -> str:
        """``column operator bound`` exactly: REAL comparison, ties settled on the text."""
        real = self.bind(float(bound))
        strict = "<" if operator in ("<", "<=") else ">"
        return (
            f"({column} {strict} {real} OR ({column} = {real}"
            f" AND helios_decimal_cmp({text_column}, {self.bind(str(bound))}) {operator} 0))"
        )

    def _number(
        self,
        column: str,
        text_column: str,
        prefix: Prefix,
        value: Decimal,
        low: Decimal,
        high: Decimal,
    ) -> str:
        in_range = (
            f"({self._decimal(column, text_column, '>=', low)}"
            f" AND {self._decimal(column, text_column, '<', high)})"
        )
        if prefix is Prefix.EQ:
            return in_range
        if prefix is Prefix.NE:
            return f"NOT coalesce({in_range}, 0)"
        # With a comparison prefix R4 compares with the exact value (search.html#number).
        if prefix in (Prefix.GT, Prefix.SA):
            return self._decimal(column, text_column, ">", value)
        if prefix in (Prefix.LT, Prefix.EB):
            return self._decimal(column, text_column, "<", value)
        if prefix is Prefix.GE:
            return self._decimal(column, text_column, ">=", value)
        if prefix is Prefix.LE:
            return self._decimal(column, text_column, "<=", value)
        # ap: |x - v| <= 10% of |v|, i.e. v - d <= x <= v + d, computed exactly.
        with localcontext() as context:
            context.prec = 1000
            spread = abs(value) * _AP_FRACTION
            near_low, near_high = value - spread, value + spread
        near = (
            f"({self._decimal(column, text_column, '>=', near_low)}"
            f" AND {self._decimal(column, text_column, '<=', near_high)})"
        )
        return f"({near} OR {in_range})"

    def _quantity(self, value: QuantityValue) -> str:
        number = value.number
        parts = []
        if (
            value.canonical_unit is not None
            and value.canonical_low is not None
            and value.canonical_high is not None
            and value.canonical_value is not None
        ):
            parts.append(
                f"{{a}}.canonical_unit = {self.bind(value.canonical_unit)}"
                " AND {a}.canonical_number IS NOT NULL AND "
                + self._number(
                    "{a}.canonical_number",
                    "{a}.canonical_text",
                    value.prefix,
                    value.canonical_value,
                    value.canonical_low,
                    value.canonical_high,
                )
            )
        plain = ["{a}.number IS NOT NULL"]
        if value.system is not None:
            plain.append(f"{{a}}.system = {self.bind(value.system)}")
        if value.code is not None:
            code = self.bind(value.code)
            if value.system is None:
                # number||code matches the unit code or the human unit text.
                plain.append(f"({{a}}.code = {code} OR {{a}}.exact = {code})")
            else:
                plain.append(f"{{a}}.code = {code}")
        plain.append(
            self._number(
                "{a}.number", "{a}.number_text", value.prefix, number.value, number.low, number.high
            )
        )
        parts.append(" AND ".join(plain))
        return "(" + " OR ".join(f"({p})" for p in parts) + ")"

    def _reference(self, value: ReferenceValue, target_type: str | None) -> str:
        if value.identifier is not None:
            return f"{{a}}.code IS NOT NULL AND {self._token(value.identifier)}"
        if value.exact is not None:
            condition = f"{{a}}.exact = {self.bind(value.exact)}"
            if value.version is not None:
                condition += f" AND {{a}}.ref_version = {self.bind(value.version)}"
            return condition
        if value.id is None:
            return "0"
        return self._bare_ids([value.id], target_type)

    def _uri(self, uri: str, modifier: str | None) -> str:
        if modifier == "below":
            return (
                f"({{a}}.exact = {self.bind(uri)}"
                f" OR ({self._prefix('{a}.exact', uri.rstrip('/') + '/')}))"
            )
        if modifier == "above":
            # The value starts with the stored URI (trailing slashes dropped) and "/".
            bound = self.bind(uri)
            return (
                f"({{a}}.exact = {bound} OR substr({bound}, 1, length(rtrim({{a}}.exact, '/')) + 1)"
                f" = rtrim({{a}}.exact, '/') || '/')"
            )
        return f"{{a}}.exact = {self.bind(uri)}"

    def _date(self, prefix: Prefix, low_moment: datetime, high_moment: datetime) -> str:
        low, high = self.bind(to_micros(low_moment)), self.bind(to_micros(high_moment))
        dated = "({a}.date_low IS NOT NULL OR {a}.date_high IS NOT NULL)"
        # contained: low <= date_low and date_high <= high. Written so SQLite can range
        # over date_low on both sides (date_low <= date_high <= high) and find the
        # inverted Periods (date_low > date_high) in their own small index; the unary
        # "+" keeps the planner from choosing the one-sided date_high range instead.
        contained = (
            f"(({{a}}.date_low >= {low} AND {{a}}.date_low <= {high}"
            f" AND +{{a}}.date_high <= {high}) OR ({{a}}.date_low > {{a}}.date_high"
            f" AND {{a}}.date_low > {high} AND +{{a}}.date_high <= {high}))"
        )
        if prefix is Prefix.EQ:
            return contained
        if prefix is Prefix.NE:
            return f"{dated} AND NOT coalesce({contained}, 0)"
        if prefix is Prefix.GT:
            return f"{dated} AND ({{a}}.date_high IS NULL OR {{a}}.date_high > {high})"
        if prefix is Prefix.LT:
            return f"{dated} AND ({{a}}.date_low IS NULL OR {{a}}.date_low < {low})"
        if prefix is Prefix.GE:
            return (
                f"{dated} AND ({contained} OR {{a}}.date_high IS NULL OR {{a}}.date_high > {high})"
            )
        if prefix is Prefix.LE:
            return f"{dated} AND ({contained} OR {{a}}.date_low IS NULL OR {{a}}.date_low < {low})"
        if prefix is Prefix.SA:
            return f"{{a}}.date_low >= {high}"
        if prefix is Prefix.EB:
            return f"{{a}}.date_high <= {low}"
        # ap: the ranges overlap once the search range is widened by 10% of its
        # distance from now (at least a day). A widened end beyond the calendar is open.
        moment = self.now or datetime.now(UTC)
        distance = abs(moment - low_moment)
        widen = max(distance / 10, timedelta(days=1))
        conditions = [dated]
        try:
            wide_low = to_micros(low_moment - widen)
        except OverflowError:
            wide_low = None
        try:
            wide_high = to_micros(high_moment + widen)
        except OverflowError:
            wide_high = None
        if wide_low is not None:
            conditions.append(
                f"({{a}}.date_high IS NULL OR {{a}}.date_high > {self.bind(wide_low)})"
            )
        if wide_high is not None:
            conditions.append(
                f"({{a}}.date_low IS NULL OR {{a}}.date_low < {self.bind(wide_high)})"
            )
        return " AND ".join(conditions)

    def _text(self, query: TextQuery) -> str:
        expression = fts_expression(query)
        if expression is not None:
            return (
                "{a}.row_id IN (SELECT rowid FROM search_fts WHERE search_fts MATCH "
                f"{self.bind(expression)})"
            )
        if isinstance(query, TextNot):
            return f"NOT ({self._text(query.operand)})"
        if isinstance(query, TextAnd):
            return "(" + " AND ".join(f"({self._text(o)})" for o in query.operands) + ")"
        assert isinstance(query, TextOr)
        return "(" + " OR ".join(f"({self._text(o)})" for o in query.operands) + ")"

    # -- _filter ---------------------------------------------------------------------

    def filter(self, expression: FilterExpression) -> str:
        if isinstance(expression, FilterAnd):
            return "(" + " AND ".join(f"({self.filter(e)})" for e in expression.operands) + ")"
        if isinstance(expression, FilterOr):
            return "(" + " OR ".join(f"({self.filter(e)})" for e in expression.operands) + ")"
        if isinstance(expression, FilterNot):
            return f"NOT ({self.filter(expression.operand)})"
        return self._comparison(expression)

    def _comparison(self, comparison: FilterComparison) -> str:
        if comparison.chain:
            terminal = replace(comparison, chain=())
            return self._chained(comparison.chain, lambda: self._comparison(terminal))
        code = comparison.parameter.code
        param_type = comparison.parameter.type
        value = comparison.value
        operator = comparison.operator
        if isinstance(value, MissingValue):
            return self._semi(code, None, negate=value.missing)
        if isinstance(value, StringValue):
            if param_type is ParamType.URI:
                return self._semi(code, self._text_compare(operator, "{a}.exact", value.exact))
            return self._semi(code, self._text_compare(operator, "{a}.text", value.text))
        if isinstance(value, UriValue):
            return self._semi(code, self._text_compare(operator, "{a}.exact", value.uri))
        if isinstance(value, (TokenValue, ReferenceValue)):
            condition = self.value(value, None, param_type, None)
            if operator is FilterOperator.NE:
                # "an item in the set has an unequal value" (search_filter.html)
                return self._semi(code, f"NOT coalesce(({condition}), 0)")
            return self._semi(code, condition)
        if isinstance(value, DateValue) and operator is FilterOperator.PO:
            low, high = self.bind(to_micros(value.low)), self.bind(to_micros(value.high))
            return self._semi(
                code,
                "({a}.date_low IS NOT NULL OR {a}.date_high IS NOT NULL)"
                f" AND ({{a}}.date_high IS NULL OR {{a}}.date_high > {low})"
                f" AND ({{a}}.date_low IS NULL OR {{a}}.date_low < {high})",
            )
        return self._semi(code, self.value(value, None, param_type, None))

    def _text_compare(self, operator: FilterOperator, column: str, needle: str) -> str:
        present = f"{column} IS NOT NULL"
        if operator is FilterOperator.EQ:
            return f"{column} = {self.bind(needle)}"
        if operator is FilterOperator.NE:
            return f"{column} <> {self.bind(needle)}"
        if operator is FilterOperator.CO:
            return f"{present} AND instr({column}, {self.bind(needle)}) > 0"
        if operator is FilterOperator.SW:
            return self._prefix(column, needle)
        if operator is FilterOperator.EW:
            if not needle:
                return present
            bound = self.bind(needle)
            return (
                f"substr({column}, -{len(needle)}) = {bound} AND length({column}) >= {len(needle)}"
            )
        raise Unsupported(
            f"_filter: the operator {operator.value} does not apply to text",
            capability="search.filter",
        )


# -- one search: the page, the total, the includes, in one hop --------------------------

ResourceRow = tuple[str, int, int, str]
"""``id, version_id, last_updated, resource`` of a live resource."""
IncludedRow = tuple[str, str, int, int, str]
"""``resource_type, id, version_id, last_updated, resource`` of an included resource."""


@dataclass(frozen=True, slots=True)
class SearchPlan:
    """Everything a search runs in the database, compiled on the event loop.

    ``page_sql`` is ``None`` for ``_summary=count``, ``count_sql`` ``None`` when no
    total is asked for. ``snapshot`` is the cursor's write sequence (``None`` on a
    first page: the unit then reads the newest sequence, in the same transaction, for
    the next cursor).
    """

    tenant: str
    resource_type: str
    page_sql: str | None
    count_sql: str | None
    parameters: dict[str, Any]
    page_size: int
    sort_keys: int
    snapshot: int | None
    include: tuple[IncludeSpec, ...] = ()
    revinclude: tuple[IncludeSpec, ...] = ()
    compartment: Compartment | None = None


@dataclass(slots=True)
class SearchOutcome:
    """What :func:`run_search` read: the page (one row more than asked, when there is
    a next page, is dropped here and reported in ``more``)."""

    rows: list[ResourceRow]
    keys: list[tuple[Any, ...]]
    total: int | None
    snapshot: int
    more: bool
    included: list[IncludedRow] = field(default_factory=list)


def plan_search(
    tenant: str,
    query: SearchQuery,
    *,
    summary_only: bool,
    counted: bool,
    offset: int = 0,
    after: tuple[Sequence[Any], str] | None = None,
    snapshot: int | None = None,
    compartment: Compartment | None = None,
) -> SearchPlan:
    """Compile ``query`` into a :class:`SearchPlan` (asks one row more than the page).

    With a ``compartment``, resources outside it neither match, nor resolve chains or
    ``_has``, nor are included.
    """
    compiler = SearchCompiler(tenant, query.resource_type)
    compiler.snapshot = snapshot
    compiler.compartment = compartment
    if snapshot is not None:
        compiler.params["snapshot"] = snapshot
    page_sql, count_sql = compiler.select(
        query, limit=query.page_size + 1, offset=offset, after=after
    )
    return SearchPlan(
        tenant=tenant,
        resource_type=query.resource_type,
        page_sql=None if summary_only else page_sql,
        count_sql=count_sql if counted else None,
        parameters=compiler.params,
        page_size=query.page_size,
        sort_keys=len(query.sort),
        snapshot=snapshot,
        include=query.include,
        revinclude=query.revinclude,
        compartment=compartment,
    )


def run_search(connection: sqlite3.Connection, plan: SearchPlan) -> SearchOutcome:
    """Run a plan; call it inside one read transaction (a consistent snapshot)."""
    snapshot = plan.snapshot
    if snapshot is None:
        newest = connection.execute("SELECT max(sequence) FROM resource_history").fetchone()[0]
        snapshot = int(newest or 0)
    total = None
    if plan.count_sql is not None:
        total = int(connection.execute(plan.count_sql, plan.parameters).fetchone()[0])
    rows: list[ResourceRow] = []
    keys: list[tuple[Any, ...]] = []
    more = False
    if plan.page_sql is not None:
        found = connection.execute(plan.page_sql, plan.parameters).fetchall()
        more = plan.page_size > 0 and len(found) > plan.page_size
        for row in found[: plan.page_size]:
            rows.append((row[0], row[1], row[2], row[3]))
            keys.append(tuple(row[4 : 4 + plan.sort_keys]))
    outcome = SearchOutcome(rows, keys, total, snapshot, more)
    if rows and (plan.include or plan.revinclude):
        matches = [(plan.resource_type, row[0]) for row in rows]
        outcome.included = _included(connection, plan, matches, plan.snapshot)
    return outcome


def _live_join(
    alias: str, snapshot: int | None, compartment: Compartment | None, arguments: list[Any]
) -> str:
    """``alias`` is live (in the snapshot, in the compartment); appends its arguments."""
    condition = f"{alias}.deleted = 0"
    if snapshot is not None:
        condition += " AND " + first_written_by(alias, str(int(snapshot)))
    if compartment is not None:
        condition += " AND " + compartment_condition(alias, compartment, positional(arguments))
    return condition


def _include_level(
    connection: sqlite3.Connection,
    plan: SearchPlan,
    frontier: Sequence[tuple[str, str]],
    *,
    first: bool,
    snapshot: int | None,
) -> set[tuple[str, str]]:
    """What the applicable specs add to ``frontier``: one query per spec (and type)."""
    by_type: dict[str, list[str]] = defaultdict(list)
    for kind, rid in frontier:
        by_type[kind].append(rid)
    added: set[tuple[str, str]] = set()
    for spec in plan.include:
        if not (first or spec.iterate) or spec.source_type not in by_type:
            continue
        arguments: list[Any] = [
            plan.tenant,
            spec.source_type,
            json.dumps(by_type[spec.source_type]),
        ]
        sql = (
            "SELECT s.ref_type, s.ref_id FROM search_index s JOIN resources t"
            " ON t.tenant = s.tenant AND t.resource_type = s.ref_type AND t.id = s.ref_id"
            " WHERE s.tenant = ? AND s.resource_type = ?"
            " AND s.resource_id IN (SELECT value FROM json_each(?))"
            f" AND {points_at('s')}"
            f" AND {_live_join('t', snapshot, plan.compartment, arguments)}"
        )
        if spec.parameter is not None:
            sql += " AND s.param = ?"
            arguments.append(spec.parameter.code)
        if spec.target_type is not None:
            sql += " AND s.ref_type = ?"
            arguments.append(spec.target_type)
        added.update((kind, rid) for kind, rid in connection.execute(sql, arguments))
    for spec in plan.revinclude:
        if not (first or spec.iterate):
            continue
        for kind, ids in by_type.items():
            if spec.target_type is not None and kind != spec.target_type:
                continue
            arguments = [plan.tenant, kind, json.dumps(ids)]
            sql = (
                "SELECT s.resource_type, s.resource_id FROM search_index s JOIN resources u"
                " ON u.tenant = s.tenant AND u.resource_type = s.resource_type"
                " AND u.id = s.resource_id"
                " WHERE s.tenant = ? AND s.ref_type = ?"
                " AND s.ref_id IN (SELECT value FROM json_each(?))"
                f" AND {points_at('s')}"
                f" AND {_live_join('u', snapshot, plan.compartment, arguments)}"
            )
            if spec.source_type != "*":
                sql += " AND s.resource_type = ?"
                arguments.append(spec.source_type)
            if spec.parameter is not None:
                sql += " AND s.param = ?"
                arguments.append(spec.parameter.code)
            added.update((k, rid) for k, rid in connection.execute(sql, arguments))
    return added


def _included(
    connection: sqlite3.Connection,
    plan: SearchPlan,
    matches: Sequence[tuple[str, str]],
    snapshot: int | None,
) -> list[IncludedRow]:
    """``resolve_includes`` in SQL: levels until nothing new; by (type, id); no match."""
    seen = set(matches)
    included: set[tuple[str, str]] = set()
    frontier: list[tuple[str, str]] = list(matches)
    iterate = any(spec.iterate for spec in (*plan.include, *plan.revinclude))
    first = True
    while frontier:
        added = _include_level(connection, plan, frontier, first=first, snapshot=snapshot)
        added -= seen
        seen |= added
        included |= added
        first = False
        frontier = sorted(added) if iterate else []
    if not included:
        return []
    ordered = sorted(included)
    found = connection.execute(
        "SELECT r.resource_type, r.id, r.version_id, r.last_updated, r.resource"
        " FROM json_each(?) j JOIN resources r ON r.tenant = ?"
        " AND r.resource_type = json_extract(j.value, '$[0]')"
        " AND r.id = json_extract(j.value, '$[1]')",
        (json.dumps(ordered), plan.tenant),
    ).fetchall()
    by_key = {(row[0], row[1]): row for row in found}
    return [by_key[key] for key in ordered if key in by_key]
