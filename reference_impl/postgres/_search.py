"""FHIR search on PostgreSQL: index rows to column arrays, and a query to one statement.

Writing: :func:`index_arrays` turns the :class:`IndexRow` s of a resource (or of many,
for reindex) into one array per ``search_index`` column; the write function unnests
them, so a write and its whole index rewrite are one statement, one round trip.

Searching: :func:`build_search` translates a :class:`SearchQuery` into one SELECT over
``resources`` (alias ``r``) whose conditions restate, branch by branch, the reference
evaluator (``helios_conformance.search._evaluate``) as conditions on ``search_index``
rows (alias ``i``):

- a parameter test is ``EXISTS (rows of the resource and parameter WHERE value OR
  value ...)``; tests are ANDed; token, ``_id`` and reference values of one test
  collapse into ``= ANY($1[a:b])`` lists instead of OR chains;
- ``:not`` and ``:missing=true`` are ``NOT EXISTS`` of the positive set;
- composites: a row of component 0 and, correlated on the same ``grp``, an ``EXISTS``
  per further component;
- numbers and quantities compare exact ``numeric`` values with bounds computed in
  Python with exact decimal arithmetic; dates compare ``timestamptz`` ranges, ``NULL``
  being an open end; ``ap`` is widened in Python from the same clock reading;
- strings compare ``COLLATE "C"`` columns (code-point order, as Python compares),
  ``starts with`` as a range on the indexed 128-character key column plus
  ``starts_with``; numbers are found through a ``float8`` key (see ``_schema.py``:
  under row-level security only leakproof operators reach an index);
- full text (``_text``, ``_content``, ``:text-advanced``): see below;
- ``_filter`` becomes the same conditions under AND/OR/NOT.

Composition, as ``helios_conformance.search._compose`` and the SQLite backend:

- a chain is ``r.id IN (rows of r's reference parameter WHERE ref_id_key IN (the
  live targets the rest of the chain matches from))``, nested once per link; ``_has``
  the reverse (``r.id IN (ref_id of the matching sources' reference rows)``). The sets
  are uncorrelated, so the planner may start from the most selective end;
- ``_sort``: per key a correlated ``min``/``max`` over the resource's rows (see
  :data:`_SORT_VALUES`), NULLs last, then id in code-point order; the matches with
  their keys are materialized once (``m``) and the page taken from them;
- paging: ``LIMIT page+1 OFFSET n``; a cursor continues with a keyset condition on
  the keys and id, every resource first written after the first page's snapshot
  (its tenant's newest history sequence) left out;
- includes: a ``LATERAL`` level over the page's matches, recursive (``UNION``, so it
  ends on cycles) when a spec is ``:iterate``;
- a compartment restriction bounds every resource read (matches, chain and ``_has``
  hops, includes) with an ``EXISTS`` over its reference rows.

The page, its includes, the total and the snapshot come back from one statement, one
round trip (see :func:`build_search`).

Every value travels as a parameter: ``$1`` text[], ``$2`` numeric[], ``$3``
timestamptz[], ``$4`` float8[] (the function ``helios.search`` runs the statement with ``EXECUTE ...
USING`` once the tenant is set); lists are slices (``$1[4:9]``). A value PostgreSQL
cannot hold (a NUL, a lone surrogate) equals no stored value, which never holds one,
so its condition is ``FALSE``.

Full-text agreement. The reference tokenizer (fold, split on non-alphanumerics, the
original Porter stemmer of ``snowballstemmer``) is not PostgreSQL's (its ``english``
configuration stems with Porter2, and its parser splits differently and depends on
the locale), so PostgreSQL never tokenizes or stems anything here: the ``tsv``
column is a tsvector *literal* written by :func:`tsvector_literal` from the reference
tokens with their positions, and the query is a tsquery *literal* written by
:func:`tsquery_literal` from the parsed :class:`TextQuery` (terms already stemmed by
the parser): a term is ``'~t'``, a prefix ``'~t':*``, a phrase ``'~a' <-> '~b'``, NOT
``!``, AND ``&``, OR ``|``. Both are cast with ``::tsvector``/``::tsquery``, which
parse the literal without any dictionary. Every lexeme
carries a ``~`` in front (the stemmer turns ``s`` into ``""``, which a tsvector cannot
hold, and the empty prefix ``s*`` must match every token: ``'~':*`` does). Each
matches exactly as ``_text.text_matches`` does, within tsvector's limits: a lexeme
keeps at most 256 positions and positions stop at 16,383, so a *phrase* whose match
lies beyond either in a long document may be missed (terms, prefixes and boolean
operators only need presence and are exact); a token over 2,046 bytes is stored and
searched as a hash (whole-token matches only).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any

from helios_conformance import Compartment, InvalidSearch, Unsupported
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
    IndexRow,
    MissingValue,
    NumberValue,
    ParameterTest,
    ParamType,
    Prefix,
    QuantityValue,
    ReferenceValue,
    SearchParameterRegistry,
    SearchQuery,
    SearchValue,
    SortDirection,
    SortKey,
    StringValue,
    SummaryMode,
    TextAnd,
    TextNot,
    TextPhrase,
    TextQuery,
    TextSearchValue,
    TextTerm,
    TokenValue,
    TotalMode,
    UriValue,
    fold,
    tokenize,
)

PREFIX_CHARS = 128
"""Text columns are btree-indexed through ``<col>_key``, their first PREFIX_CHARS."""

_KEYED = frozenset(
    {"text", "exact", "system", "code", "code_folded", "type_system", "type_code", "ref_id"}
)
_NUMBER_KEYS = {"number": "number_key", "canonical_number": "canonical_key"}


def _key(column: str) -> str | None:
    """The indexed key column of ``alias.column``, if it has one."""
    alias, _, name = column.partition(".")
    return f"{alias}.{name}_key" if name in _KEYED else None


_MAX_LEXEME_BYTES = 2046
_AP_FRACTION = Decimal("0.1")
# The rows full-text search reads: _text/_content and token display/text
# (:text-advanced); the parser allows full text on nothing else.
_FULL_TEXT_TYPES = frozenset({ParamType.SPECIAL, ParamType.TOKEN})


# -- writing ---------------------------------------------------------------------------


def _lexeme(token: str) -> str:
    """A token as a tsvector lexeme.

    Every lexeme starts with ``~``: the Porter stemmer reduces some tokens to ``""``
    (``s``), which a tsvector cannot hold, and a prefix term may be empty (``s*``),
    which must match every token: ``'~':*`` does. A token too long for a lexeme is
    stored as a hash (``~#...``; tokens never start with ``#``).
    """
    if len(token.encode("utf-8")) > _MAX_LEXEME_BYTES:
        return "~#" + hashlib.sha256(token.encode("utf-8")).hexdigest()
    return "~" + token


def _quote_lexeme(lexeme: str) -> str:
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


def tsvector_literal(text: str) -> str:
    """The tsvector literal of ``text``: each reference token at its 1-based position."""
    positions: dict[str, list[int]] = defaultdict(list)
    for position, token in enumerate(tokenize(text), start=1):
        positions[_lexeme(token)].append(min(position, 16383))
    return " ".join(
        f"{_quote_lexeme(lexeme)}:{','.join(map(str, places))}"
        for lexeme, places in positions.items()
    )


def tsquery_literal(query: TextQuery) -> str:
    """The tsquery literal of a parsed full-text query (see the module docstring)."""
    if isinstance(query, TextTerm):
        lexeme = _lexeme(query.term)
        return _quote_lexeme(lexeme) + (
            ":*" if query.prefix and not lexeme.startswith("~#") else ""
        )
    if isinstance(query, TextPhrase):
        return "(" + " <-> ".join(tsquery_literal(term) for term in query.terms) + ")"
    if isinstance(query, TextNot):
        return "!(" + tsquery_literal(query.operand) + ")"
    joiner = " & " if isinstance(query, TextAnd) else " | "
    return "(" + joiner.join(tsquery_literal(operand) for operand in query.operands) + ")"


@dataclass(slots=True)
class IndexArrays:
    """The ``search_index`` rows of one or more resources, one list per column."""

    owner: list[int] = field(default_factory=list)
    param: list[str] = field(default_factory=list)
    kind: list[str] = field(default_factory=list)
    grp: list[int] = field(default_factory=list)
    component: list[int | None] = field(default_factory=list)
    text: list[str | None] = field(default_factory=list)
    exact: list[str | None] = field(default_factory=list)
    system: list[str | None] = field(default_factory=list)
    code: list[str | None] = field(default_factory=list)
    code_folded: list[str | None] = field(default_factory=list)
    type_system: list[str | None] = field(default_factory=list)
    type_code: list[str | None] = field(default_factory=list)
    number: list[Decimal | None] = field(default_factory=list)
    canonical_number: list[Decimal | None] = field(default_factory=list)
    canonical_unit: list[str | None] = field(default_factory=list)
    date_low: list[datetime | None] = field(default_factory=list)
    date_high: list[datetime | None] = field(default_factory=list)
    ref_type: list[str | None] = field(default_factory=list)
    ref_id: list[str | None] = field(default_factory=list)
    ref_version: list[str | None] = field(default_factory=list)
    tsv: list[str | None] = field(default_factory=list)
    number_key: list[float | None] = field(default_factory=list)
    canonical_key: list[float | None] = field(default_factory=list)

    def add(self, rows: Iterable[IndexRow], owner: int = 0, *, skip: str | None = None) -> None:
        """Append the rows of one resource (``skip``: a parameter code left out)."""
        for row in rows:
            if row.param == skip:
                continue
            full_text = row.text is not None and row.type in _FULL_TEXT_TYPES
            self.owner.append(owner)
            self.param.append(row.param)
            self.kind.append(row.type.value)
            self.grp.append(row.group)
            self.component.append(row.component)
            # Special rows are only ever searched through tsv (their text can be long).
            self.text.append(None if row.type is ParamType.SPECIAL else row.text)
            self.exact.append(row.exact)
            self.system.append(row.system)
            self.code.append(row.code)
            self.code_folded.append(None if row.code is None else fold(row.code))
            self.type_system.append(row.type_system)
            self.type_code.append(row.type_code)
            self.number.append(row.number)
            self.canonical_number.append(row.canonical_number)
            self.canonical_unit.append(row.canonical_unit)
            self.date_low.append(row.date_low)
            self.date_high.append(row.date_high)
            self.ref_type.append(row.ref_type)
            self.ref_id.append(row.ref_id)
            self.ref_version.append(row.ref_version)
            self.tsv.append(tsvector_literal(row.text) if full_text and row.text else None)
            # float() of a Decimal is correctly rounded, hence monotonic: a sound key.
            self.number_key.append(None if row.number is None else float(row.number))
            self.canonical_key.append(
                None if row.canonical_number is None else float(row.canonical_number)
            )

    def columns(self) -> tuple[list[Any], ...]:
        """The arrays in the order the SQL functions take them (without ``owner``)."""
        return (
            self.param,
            self.kind,
            self.grp,
            self.component,
            self.text,
            self.exact,
            self.system,
            self.code,
            self.code_folded,
            self.type_system,
            self.type_code,
            self.number,
            self.canonical_number,
            self.canonical_unit,
            self.date_low,
            self.date_high,
            self.ref_type,
            self.ref_id,
            self.ref_version,
            self.tsv,
            self.number_key,
            self.canonical_key,
        )


# -- searching ----------------------------------------------------------------------------


class _Unmatchable(Exception):
    """A value PostgreSQL cannot hold, so no stored value equals it."""


def _successor(prefix: str) -> str | None:
    """The least string above every string starting with ``prefix`` (code-point order)."""
    last = ord(prefix[-1])
    if last >= 0x10FFFF:
        return None
    following = last + 1
    if 0xD800 <= following <= 0xDFFF:
        following = 0xE000
    return prefix[:-1] + chr(following)


class _Parameters:
    """The statement's values: $1 text[], $2 numeric[], $3 timestamptz[], $4 float8[]."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.numbers: list[Decimal] = []
        self.instants: list[datetime] = []
        self.floats: list[float] = []

    @staticmethod
    def _check(value: str) -> str:
        if "\x00" in value:
            raise _Unmatchable
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _Unmatchable from None
        return value

    def text(self, value: str) -> str:
        self.texts.append(self._check(value))
        return f"$1[{len(self.texts)}]"

    def texts_list(self, values: Sequence[str]) -> str:
        checked = []
        for value in values:
            try:
                checked.append(self._check(value))
            except _Unmatchable:
                continue
        if not checked:
            raise _Unmatchable
        start = len(self.texts) + 1
        self.texts.extend(checked)
        return f"$1[{start}:{len(self.texts)}]"

    def number(self, value: Decimal) -> str:
        self.numbers.append(value)
        return f"$2[{len(self.numbers)}]"

    def instant(self, value: datetime) -> str:
        self.instants.append(value)
        return f"$3[{len(self.instants)}]"

    def float(self, value: Decimal) -> str:
        self.floats.append(float(value))
        return f"$4[{len(self.floats)}]"


# What a sort key's value is, per parameter type, as ``row_sort_value`` of the harness:
# the column expression over index row ``{a}`` and the kind of value it yields (which
# parameter array a cursor's value travels back in). A token's code and system are
# joined by U+0001, below every character PostgreSQL text can hold (NUL it cannot),
# so text order is the order of the (code, system) tuple.
_SORT_VALUES: dict[ParamType, tuple[str, str]] = {
    ParamType.STRING: ("{a}.text", "text"),
    ParamType.TOKEN: ("{a}.code || chr(1) || coalesce({a}.system, '')", "text"),
    ParamType.DATE: ("coalesce({a}.date_low, {a}.date_high)", "instant"),
    ParamType.NUMBER: ("{a}.number", "number"),
    ParamType.QUANTITY: ("{a}.number", "number"),
    ParamType.REFERENCE: ("{a}.exact", "text"),
    ParamType.URI: ("{a}.exact", "text"),
}
_SORT_VALUE_TYPES = {"text": str, "number": Decimal, "instant": datetime}

SortValue = str | Decimal | datetime
"""A sort key's value as the database returns it (``None``: the resource has none)."""


@dataclass(frozen=True, slots=True)
class BuiltSearch:
    """One search statement, its parameter arrays, and how to read its rows.

    ``sort_kinds`` says, per ``_sort`` key, which typed key array of a match row holds
    its value: ``text``, ``number`` or ``instant``.
    """

    sql: str
    texts: list[str]
    numbers: list[Decimal]
    instants: list[datetime]
    floats: list[float]
    sort_kinds: tuple[str, ...] = ()


def points_at(alias: str) -> str:
    """Row ``alias`` of ``search_index`` points at ``ref_type/ref_id`` on this server.

    As ``points_at`` of the harness: a reference row (not a composite component) whose
    reference is relative (not ``#contained``, no scheme). That ``ref_type`` and
    ``ref_id`` are set is left to the caller, which always equates both with something
    (so neither is NULL): stated here too, the planner would multiply in their rarity
    among all rows a second time and underestimate a hop by orders of magnitude.
    ``NOT LIKE`` rather than ``starts_with``/``strpos`` for the same reason: a pattern
    is estimated from the column's statistics, a function's result compared with a
    constant is taken to be rare.
    """
    return (
        f"{alias}.type = 'reference' AND {alias}.component IS NULL"
        f" AND ({alias}.exact IS NULL OR ({alias}.exact NOT LIKE '#%'"
        f" AND {alias}.exact NOT LIKE '%:%'))"
    )


class ConditionBuilder:
    """Translate one :class:`SearchQuery` into conditions on ``resources`` aliases
    (used by search and by bulk export's ``_typeFilter``).

    A test is *about* a subject: ``r`` (the resources searched) at the top, an inner
    resource alias inside a chain or ``_has``. ``snapshot`` (a cursor's write
    sequence) and ``compartment`` bound every resource the statement reads: matches,
    chain and ``_has`` hops, includes.
    """

    def __init__(
        self,
        registry: SearchParameterRegistry,
        resource_type: str,
        now: datetime,
        tenant: str = "",
        *,
        snapshot: int | None = None,
        compartment: Compartment | None = None,
    ) -> None:
        self.registry = registry
        self.resource_type = resource_type
        self.now = now
        self.p = _Parameters()
        self.tenant = self.p.text(tenant)
        self.type = self.p.text(resource_type)
        self.snapshot = snapshot
        self.compartment = compartment
        self._aliases = 0
        self.subject = "r"
        self.subject_type = self.type

    def alias(self, prefix: str = "i") -> str:
        self._aliases += 1
        return f"{prefix}{self._aliases}"

    def rows_of(self, alias: str, param: str) -> str:
        """The FROM/WHERE head selecting the subject's rows of one parameter."""
        s = self.subject
        return (
            f"FROM search_index {alias} WHERE {alias}.tenant = {s}.tenant"
            f" AND {alias}.resource_type = {s}.resource_type AND {alias}.resource_id = {s}.id"
            f" AND {alias}.param = {self.p.text(param)}"
        )

    @contextlib.contextmanager
    def about(self, alias: str, type_parameter: str) -> Iterator[None]:
        """Build the conditions inside the block about resource ``alias`` of that type."""
        saved = self.subject, self.subject_type
        self.subject, self.subject_type = alias, type_parameter
        try:
            yield
        finally:
            self.subject, self.subject_type = saved

    # -- which resources exist for this statement --------------------------------------

    def live(self, alias: str, type_parameter: str | None, resource_type: str | None) -> str:
        """``alias`` (over ``resources``) is live, in the snapshot and in the compartment.

        ``type_parameter`` (the bound type) also pins its type; ``None`` when a join
        already did. ``resource_type`` is the type when known while building (it lets
        the compartment test name the type's parameters directly).
        """
        condition = f"NOT {alias}.deleted"
        if type_parameter is not None:
            condition = (
                f"{alias}.tenant = {self.tenant} AND {alias}.resource_type = {type_parameter}"
                f" AND {condition}"
            )
        if self.snapshot is not None:
            history = self.alias("h")
            # The first version written is the least sequence; a later version keeps
            # a resource in the snapshot, as in the in-memory backend.
            condition += (
                f" AND (SELECT min({history}.sequence) FROM resource_history {history}"
                f" WHERE {history}.tenant = {alias}.tenant"
                f" AND {history}.resource_type = {alias}.resource_type"
                f" AND {history}.id = {alias}.id) <= {int(self.snapshot)}"
            )
        if self.compartment is not None:
            condition += " AND " + self.in_compartment(alias, resource_type)
        return condition

    def in_compartment(self, alias: str, resource_type: str | None) -> str:
        """Resource ``alias`` is in the compartment (:meth:`Compartment.contains`).

        The compartment's own resource, or one with a reference row, of a parameter
        the CompartmentDefinition lists for its type, holding the relative reference
        (``Patient/123``). With the type unknown while building (includes), the
        definition travels as one jsonb value looked up by the row's type.
        """
        compartment = self.compartment
        assert compartment is not None
        row = self.alias("cm")
        own = (
            f"({alias}.resource_type = {self.p.text(compartment.kind)}"
            f" AND {alias}.id = {self.p.text(compartment.id)})"
        )
        if resource_type is not None:
            parameters = compartment.parameters(resource_type)
            if not parameters:
                return own
            listed = f"{row}.param = ANY({self.p.texts_list(sorted(parameters))})"
        else:
            definition = {
                kind: list(compartment.parameters(kind))
                for kind in sorted(compartment.resource_types)
            }
            listed = (
                f"{row}.param IN (SELECT jsonb_array_elements_text("
                f"{self.p.text(json.dumps(definition))}::jsonb -> {alias}.resource_type))"
            )
        return (
            f"({own} OR EXISTS (SELECT 1 FROM search_index {row}"
            f" WHERE {row}.tenant = {alias}.tenant AND {row}.resource_type = {alias}.resource_type"
            f" AND {row}.resource_id = {alias}.id AND {listed}"
            f" AND {row}.type = 'reference' AND {row}.component IS NULL"
            f" AND {self.eq(f'{row}.ref_type', compartment.kind)}"
            f" AND {self.eq(f'{row}.ref_id', compartment.id)}"
            f" AND {self.eq(f'{row}.exact', compartment.reference)}))"
        )

    # -- column helpers ----------------------------------------------------------------

    def eq(self, column: str, value: str | None) -> str:
        """``column = value`` through its key column's index; ``IS NULL`` for None."""
        if value is None:
            return f"{column} IS NULL"
        full = self.p.text(value)
        key = _key(column)
        if key is None:
            return f"{column} = {full}"
        return f"({key} = {self.p.text(value[:PREFIX_CHARS])} AND {column} = {full})"

    def eq_any(self, column: str, values: Sequence[str]) -> str:
        unique = sorted(set(values))
        if len(unique) == 1:
            return self.eq(column, unique[0])
        full = self.p.texts_list(unique)
        key = _key(column)
        if key is None:
            return f"{column} = ANY({full})"
        short = self.p.texts_list(sorted({value[:PREFIX_CHARS] for value in unique}))
        return f"({key} = ANY({short}) AND {column} = ANY({full}))"

    def starts(self, column: str, prefix: str) -> str:
        """``column`` starts with ``prefix``: a range on the indexed left(...) first."""
        full = self.p.text(prefix)
        if not prefix:
            return f"{column} IS NOT NULL"
        short = prefix[:PREFIX_CHARS]
        head = _key(column)
        if head is None:
            return f"starts_with({column}, {full})"
        successor = _successor(short)
        bound = f" AND {head} < {self.p.text(successor)}" if successor is not None else ""
        return f"({head} >= {self.p.text(short)}{bound} AND starts_with({column}, {full}))"

    def contains(self, column: str, needle: str) -> str:
        return f"strpos({column}, {self.p.text(needle)}) > 0"

    def ends(self, column: str, suffix: str) -> str:
        value = self.p.text(suffix)
        return f"right({column}, length({value})) = {value}"

    # -- one value against one row ------------------------------------------------------

    def value(
        self,
        a: str,
        value: SearchValue,
        modifier: str | None,
        row_type: ParamType,
        target_type: str | None = None,
    ) -> str:
        """The condition on row ``a`` of ``evaluate.value_matches(value, row, modifier)``."""
        try:
            return self._value(a, value, modifier, row_type, target_type)
        except _Unmatchable:
            return "FALSE"

    def _value(
        self,
        a: str,
        value: SearchValue,
        modifier: str | None,
        row_type: ParamType,
        target_type: str | None,
    ) -> str:
        if isinstance(value, StringValue):
            if row_type is ParamType.URI or modifier in ("above", "below"):
                return self.uri(a, UriValue(value.exact), modifier)
            if modifier == "exact":
                return self.eq(f"{a}.exact", value.exact)
            if modifier == "contains":
                return f"({a}.text IS NOT NULL AND {self.contains(f'{a}.text', value.text)})"
            return self.starts(f"{a}.text", value.text)
        if isinstance(value, TokenValue):
            if row_type is ParamType.REFERENCE:
                return f"({a}.code IS NOT NULL AND {self.token(a, value)})"
            if modifier == "text":
                if value.text is None:
                    return "FALSE"
                return self.starts(f"{a}.text", value.text)
            if modifier == "code-text":
                if value.text is None:
                    return "FALSE"
                return self.starts(f"{a}.code_folded", value.text)
            return self.token(a, value)
        if isinstance(value, DateValue):
            return self.date(a, value)
        if isinstance(value, NumberValue):
            return f"({a}.number IS NOT NULL AND {self.number(f'{a}.number', value)})"
        if isinstance(value, QuantityValue):
            return self.quantity(a, value)
        if isinstance(value, ReferenceValue):
            return self.reference(a, value, target_type)
        if isinstance(value, UriValue):
            return self.uri(a, value, modifier)
        if isinstance(value, TextSearchValue):
            literal = self.p.text(tsquery_literal(value.query))
            return f"({a}.tsv IS NOT NULL AND {a}.tsv @@ {literal}::tsquery)"
        return "FALSE"

    def token(self, a: str, value: TokenValue) -> str:
        if value.type_system is not None or value.type_code is not None:
            return (
                f"({self.eq(f'{a}.type_code', value.type_code)}"
                f" AND {self.eq(f'{a}.type_system', value.type_system)}"
                f" AND {self.eq(f'{a}.code', value.code)})"
            )
        parts = []
        if value.code is not None:
            parts.append(self.eq(f"{a}.code", value.code))
        if value.system is None:
            if value.code is None:
                return "FALSE"
        elif value.system == "":
            parts.append(f"{a}.system IS NULL")
        else:
            parts.append(self.eq(f"{a}.system", value.system))
        return "(" + " AND ".join(parts) + ")"

    def tokens(self, a: str, values: Sequence[TokenValue], row_type: ParamType) -> list[str]:
        """Plain tokens of one test as few ``= ANY`` lists: by system, then the rest."""
        by_system: dict[str | None, list[str]] = defaultdict(list)
        rest: list[TokenValue] = []
        for value in values:
            plain = value.type_system is None and value.type_code is None
            if plain and value.code is not None:
                by_system[value.system].append(value.code)
            else:
                rest.append(value)
        conditions = []
        guard = f"{a}.code IS NOT NULL AND " if row_type is ParamType.REFERENCE else ""
        for system, codes in sorted(by_system.items(), key=lambda item: str(item[0])):
            try:
                condition = self.eq_any(f"{a}.code", codes)
                if system == "":
                    condition += f" AND {a}.system IS NULL"
                elif system is not None:
                    condition += " AND " + self.eq(f"{a}.system", system)
            except _Unmatchable:
                continue
            conditions.append(f"({guard}{condition})")
        conditions.extend(self.value(a, value, None, row_type) for value in rest)
        return conditions

    def number(self, column: str, value: NumberValue) -> str:
        return self._compare_number(column, value.prefix, value.value, value.low, value.high)

    def _compare_number(
        self, column: str, prefix: Prefix, value: Decimal, low: Decimal, high: Decimal
    ) -> str:
        exact = self._exact_number(column, prefix, value, low, high)
        # The float8 key narrows through the index (float() is monotonic, so the
        # inclusive float bounds keep every exact match); the numeric column decides.
        alias, _, name = column.partition(".")
        key = f"{alias}.{_NUMBER_KEYS[name]}"
        if prefix is Prefix.EQ:
            bounds = f"{key} >= {self.p.float(low)} AND {key} <= {self.p.float(high)}"
        elif prefix in (Prefix.GT, Prefix.SA, Prefix.GE):
            bounds = f"{key} >= {self.p.float(value)}"
        elif prefix in (Prefix.LT, Prefix.EB, Prefix.LE):
            bounds = f"{key} <= {self.p.float(value)}"
        elif prefix is Prefix.AP:
            near_low, near_high = self._near(value)
            bounds = (
                f"{key} >= {self.p.float(min(near_low, low))}"
                f" AND {key} <= {self.p.float(max(near_high, high))}"
            )
        else:
            return exact
        return f"({bounds} AND {exact})"

    @staticmethod
    def _near(value: Decimal) -> tuple[Decimal, Decimal]:
        # ap: |x - v| <= |v| * 10%, with exact bounds.
        with localcontext() as context:
            context.prec = 1000
            width = abs(value) * _AP_FRACTION
            return value - width, value + width

    def _exact_number(
        self, column: str, prefix: Prefix, value: Decimal, low: Decimal, high: Decimal
    ) -> str:
        if prefix is Prefix.EQ:
            return f"({column} >= {self.p.number(low)} AND {column} < {self.p.number(high)})"
        if prefix is Prefix.NE:
            return f"NOT ({column} >= {self.p.number(low)} AND {column} < {self.p.number(high)})"
        if prefix in (Prefix.GT, Prefix.SA):
            return f"{column} > {self.p.number(value)}"
        if prefix in (Prefix.LT, Prefix.EB):
            return f"{column} < {self.p.number(value)}"
        if prefix is Prefix.GE:
            return f"{column} >= {self.p.number(value)}"
        if prefix is Prefix.LE:
            return f"{column} <= {self.p.number(value)}"
        near_low, near_high = self._near(value)
        return (
            f"(({column} >= {self.p.number(near_low)} AND {column} <= {self.p.number(near_high)})"
            f" OR ({column} >= {self.p.number(low)} AND {column} < {self.p.number(high)}))"
        )

    def quantity(self, a: str, value: QuantityValue) -> str:
        branches = []
        if (
            value.canonical_unit is not None
            and value.canonical_low is not None
            and value.canonical_high is not None
            and value.canonical_value is not None
        ):
            try:
                unit = self.eq(f"{a}.canonical_unit", value.canonical_unit)
                compare = self._compare_number(
                    f"{a}.canonical_number",
                    value.prefix,
                    value.canonical_value,
                    value.canonical_low,
                    value.canonical_high,
                )
                branches.append(f"({a}.canonical_number IS NOT NULL AND {unit} AND {compare})")
            except _Unmatchable:
                pass
        try:
            parts = [f"{a}.number IS NOT NULL"]
            if value.system is not None:
                parts.append(self.eq(f"{a}.system", value.system))
            if value.code is not None:
                if value.system is None:
                    parts.append(
                        f"({self.eq(f'{a}.code', value.code)}"
                        f" OR {self.eq(f'{a}.exact', value.code)})"
                    )
                else:
                    parts.append(self.eq(f"{a}.code", value.code))
            parts.append(self.number(f"{a}.number", value.number))
            branches.append("(" + " AND ".join(parts) + ")")
        except _Unmatchable:
            pass
        return "(" + " OR ".join(branches) + ")" if branches else "FALSE"

    def date(self, a: str, value: DateValue) -> str:
        """The exact condition on ``date_low``/``date_high`` (``NULL``: an open end),
        behind a range on one key column that it implies (see ``_schema.py``, version 4:
        ``date_lo_key``/``date_hi_key`` are the least and greatest end, open ends
        infinite, ``NULL`` on rows that are not dates). So each prefix but ``ne`` is an
        index range scan on one key, the exact condition a filter on the same index
        entries; and the key being set is what makes the row a date row.
        """
        low, high = self.p.instant(value.low), self.p.instant(value.high)
        lo, hi = f"{a}.date_lo_key", f"{a}.date_hi_key"
        contained = f"({a}.date_low >= {low} AND {a}.date_high <= {high})"
        prefix = value.prefix
        if prefix is Prefix.EQ:
            bound, condition = f"{hi} >= {low} AND {lo} <= {high}", contained
        elif prefix is Prefix.NE:
            bound, condition = f"{lo} IS NOT NULL", f"NOT coalesce({contained}, false)"
        elif prefix is Prefix.GT:
            bound = f"{hi} > {high}"
            condition = f"({a}.date_high IS NULL OR {a}.date_high > {high})"
        elif prefix is Prefix.LT:
            bound = f"{lo} < {low}"
            condition = f"({a}.date_low IS NULL OR {a}.date_low < {low})"
        elif prefix is Prefix.GE:
            bound = f"{hi} >= {low}"
            condition = f"({contained} OR {a}.date_high IS NULL OR {a}.date_high > {high})"
        elif prefix is Prefix.LE:
            bound = f"{lo} <= {high}"
            condition = f"({contained} OR {a}.date_low IS NULL OR {a}.date_low < {low})"
        elif prefix is Prefix.SA:
            bound, condition = f"{hi} >= {high}", f"{a}.date_low >= {high}"
        elif prefix is Prefix.EB:
            bound, condition = f"{lo} <= {low}", f"{a}.date_high <= {low}"
        else:
            distance = abs(self.now - value.low)
            widen = max(distance / 10, timedelta(days=1))
            wide_low = self.p.instant(value.low - widen)
            wide_high = self.p.instant(value.high + widen)
            bound = f"{hi} > {wide_low} AND {lo} < {wide_high}"
            condition = (
                f"({a}.date_high IS NULL OR {a}.date_high > {wide_low})"
                f" AND ({a}.date_low IS NULL OR {a}.date_low < {wide_high})"
            )
        return f"({bound} AND {condition})"

    def reference(self, a: str, value: ReferenceValue, target_type: str | None) -> str:
        if value.identifier is not None:
            return f"({a}.code IS NOT NULL AND {self.token(a, value.identifier)})"
        if value.exact is not None:
            condition = self.eq(f"{a}.exact", value.exact)
            if value.version is not None:
                condition += " AND " + self.eq(f"{a}.ref_version", value.version)
            return f"({condition})"
        if value.id is None:
            return "FALSE"
        return self._bare_ids(a, [value.id], target_type)

    def _bare_ids(self, a: str, ids: Sequence[str], target_type: str | None) -> str:
        # A bare id is a resource on this server: relative references only (not
        # contained '#id' ones, not absolute URLs that may name another server).
        condition = (
            f"{self.eq_any(f'{a}.ref_id', ids)}"
            f" AND NOT starts_with(coalesce({a}.exact, ''), '#')"
            f" AND strpos(coalesce({a}.exact, ''), ':') = 0"
        )
        if target_type is not None:
            condition += " AND " + self.eq(f"{a}.ref_type", target_type)
        return f"({condition})"

    def references(
        self, a: str, values: Sequence[ReferenceValue], target_type: str | None
    ) -> list[str]:
        exact: list[str] = []
        bare: list[str] = []
        rest: list[ReferenceValue] = []
        for value in values:
            if value.identifier is None and value.exact is not None and value.version is None:
                exact.append(value.exact)
            elif value.identifier is None and value.exact is None and value.id is not None:
                bare.append(value.id)
            else:
                rest.append(value)
        conditions = []
        with contextlib.suppress(_Unmatchable):
            if exact:
                conditions.append(self.eq_any(f"{a}.exact", exact))
        with contextlib.suppress(_Unmatchable):
            if bare:
                conditions.append(self._bare_ids(a, bare, target_type))
        conditions.extend(self.value(a, v, None, ParamType.REFERENCE, target_type) for v in rest)
        return conditions

    def uri(self, a: str, value: UriValue, modifier: str | None) -> str:
        column = f"{a}.exact"
        if modifier == "below":
            below = value.uri.rstrip("/") + "/"
            return f"({self.eq(column, value.uri)} OR {self.starts(column, below)})"
        if modifier == "above":
            uri = self.p.text(value.uri)
            return f"({column} = {uri} OR starts_with({uri}, rtrim({column}, '/') || '/'))"
        return self.eq(column, value.uri)

    # -- tests --------------------------------------------------------------------------

    def test(self, test: ParameterTest, *, as_set: bool = False) -> str:
        """The condition on ``r`` of ``evaluate.parameter_matches``.

        ``as_set``: instead, the uncorrelated SELECT of the ids of the subject's type
        that match (a plain test only: no modifier, not composite), or ``FALSE``.
        """
        a = self.alias()
        code = test.code
        row_type = test.parameter.type
        if test.modifier == "missing":
            value = test.values[0]
            assert isinstance(value, MissingValue)
            exists = f"EXISTS (SELECT 1 {self.rows_of(a, code)})"
            return f"NOT {exists}" if value.missing else exists
        if test.parameter.type is ParamType.COMPOSITE:
            composites = [
                self.composite(code, value, test.parameter.component)
                for value in test.values
                if isinstance(value, CompositeValue)
            ]
            return "(" + " OR ".join(composites) + ")" if composites else "FALSE"
        modifier = None if test.modifier == "not" else test.modifier
        values = test.values
        tokens = [v for v in values if isinstance(v, TokenValue)]
        references = [v for v in values if isinstance(v, ReferenceValue)]
        conditions: list[str] = []
        if tokens and modifier is None:
            conditions.extend(self.tokens(a, tokens, row_type))
            values = tuple(v for v in values if not isinstance(v, TokenValue))
        if references and modifier is None:
            conditions.extend(self.references(a, references, test.target_type))
            values = tuple(v for v in values if not isinstance(v, ReferenceValue))
        conditions.extend(
            self.value(a, value, modifier, row_type, test.target_type) for value in values
        )
        conditions = [c for c in conditions if c != "FALSE"] or ["FALSE"]
        if as_set:
            if conditions == ["FALSE"]:
                return "FALSE"
            return (
                f"SELECT {a}.resource_id FROM search_index {a} WHERE {a}.tenant = {self.tenant}"
                f" AND {a}.resource_type = {self.subject_type}"
                f" AND {a}.param = {self.p.text(code)} AND ({' OR '.join(conditions)})"
            )
        exists = f"EXISTS (SELECT 1 {self.rows_of(a, code)} AND ({' OR '.join(conditions)}))"
        if conditions == ["FALSE"]:
            exists = "FALSE"
        if test.modifier == "not":
            return "TRUE" if exists == "FALSE" else f"NOT {exists}"
        return exists

    def composite(self, code: str, value: CompositeValue, components: Sequence[Any]) -> str:
        aliases = [self.alias() for _ in value.components]
        conditions = []
        for position, (alias, component) in enumerate(zip(aliases, value.components, strict=True)):
            definition = None
            if position < len(components):
                definition = self.registry.by_url(components[position].definition)
            row_type = definition.type if definition is not None else ParamType.STRING
            conditions.append(self.value(alias, component, None, row_type))
        # Each further component: a row of the same resource, parameter and grp.
        further = "".join(
            f" AND EXISTS (SELECT 1 {self.rows_of(aliases[p], code)}"
            f" AND {aliases[p]}.grp = {aliases[0]}.grp AND {aliases[p]}.component = {p}"
            f" AND {conditions[p]})"
            for p in range(1, len(aliases))
        )
        first = aliases[0]
        return (
            f"EXISTS (SELECT 1 {self.rows_of(first, code)} AND {first}.component = 0"
            f" AND {conditions[0]}{further})"
        )

    # -- chains and _has --------------------------------------------------------------------

    def any_test(self, test: ParameterTest) -> str:
        """One parameter test about the subject, chained or not."""
        if not test.chain:
            return self.test(test)
        terminal = replace(test, chain=())
        return self.chained(test.chain, lambda: self.test(terminal))

    def _referencing(self, row: str, owner_type: str, code: str, target_type: str) -> str:
        """Row ``row``: an ``owner_type`` resource's ``code`` reference to a ``target_type``."""
        return (
            f"{row}.tenant = {self.tenant} AND {row}.resource_type = {owner_type}"
            f" AND {row}.param = {self.p.text(code)} AND {points_at(row)}"
            f" AND {row}.ref_type = {target_type}"
        )

    def chain_set(self, links: Sequence[ChainLink], terminal: Callable[[], str]) -> str:
        """A SELECT of the ids of ``links[0].target_type`` from which the chain matches.

        Inside out, as ``chain_targets``: the live resources of the last type meeting
        ``terminal``, then per earlier link the live resources with a reference row
        into the set so far. Each hop is an uncorrelated ``IN``, so the planner can
        start from the most selective end (the terminal's index) and walk the
        ``ref_id`` index outwards.

        ``ref_id_key IN (ids)`` is exact: ids are at most 64 characters
        (``check_id``), so a key (the first 128 characters) equals one only when the
        whole ``ref_id`` does; comparing the key lets row-level security keep the index.
        """
        last = links[-1].target_type
        alias = self.alias("c")
        last_type = self.p.text(last)
        with self.about(alias, last_type):
            condition = terminal()
        sql = (
            f"SELECT {alias}.id FROM resources {alias}"
            f" WHERE {self.live(alias, last_type, last)} AND {condition}"
        )
        for index in range(len(links) - 1, 0, -1):
            link = links[index]
            owner = links[index - 1].target_type
            owner_type = self.p.text(owner)
            outer, row = self.alias("c"), self.alias()
            referencing = self._referencing(
                row, owner_type, link.parameter.code, self.p.text(link.target_type)
            )
            sql = (
                f"SELECT {outer}.id FROM resources {outer}"
                f" WHERE {self.live(outer, owner_type, owner)}"
                f" AND {outer}.id IN (SELECT {row}.resource_id FROM search_index {row}"
                f" WHERE {referencing} AND {row}.ref_id_key IN ({sql}))"
            )
        return sql

    def chained(self, links: Sequence[ChainLink], terminal: Callable[[], str]) -> str:
        """The subject has a ``links[0]`` reference to a resource the chain matches from."""
        first = links[0]
        targets = self.chain_set(links, terminal)
        row = self.alias()
        referencing = self._referencing(
            row, self.subject_type, first.parameter.code, self.p.text(first.target_type)
        )
        return (
            f"{self.subject}.id IN (SELECT {row}.resource_id FROM search_index {row}"
            f" WHERE {referencing} AND {row}.ref_id_key IN ({targets}))"
        )

    def has(self, clause: HasClause) -> str:
        """The subject is pointed at by a live ``clause.resource_type`` that matches.

        As ``ComposedEvaluator.has_ids``: the matching sources (an uncorrelated set,
        nested ``_has`` inside it), then their ``clause.reference`` rows pointing at
        the subject's type. ``ref_id`` is compared in the default collation so the
        primary key of ``resources`` serves the join.
        """
        source, row = self.alias("c"), self.alias()
        source_type = self.p.text(clause.resource_type)
        with self.about(source, source_type):
            inner = clause.test
            condition = self.has(inner) if isinstance(inner, HasClause) else self.any_test(inner)
        sources = (
            f"SELECT {source}.id FROM resources {source}"
            f" WHERE {self.live(source, source_type, clause.resource_type)} AND {condition}"
        )
        referencing = self._referencing(row, source_type, clause.reference.code, self.subject_type)
        return (
            f'{self.subject}.id IN (SELECT {row}.ref_id COLLATE "default"'
            f" FROM search_index {row} WHERE {referencing}"
            f" AND {row}.resource_id IN ({sources}))"
        )

    def where(self, query: SearchQuery) -> list[str]:
        """The conditions on ``r`` beyond tenant, type, liveness and compartment.

        Several plain date tests of one parameter (a range: ``ge``, ``lt``) are one
        ``r.id IN (ids of the first INTERSECT ids of the second ...)``. As separate
        EXISTS tests the planner takes them to be independent: two halves of the
        resources would leave a quarter, so it walks resources in id order probing
        both per resource, when in fact a range is a sliver of them (1950-01 to
        1950-07: 133 of 20,000) and it probes thousands. An intersection cannot be
        probed: each test is one index-only range scan, hashed, then intersected.
        """
        dates: dict[str, list[ParameterTest]] = defaultdict(list)
        for test in query.tests:
            if not test.chain and test.modifier is None and test.parameter.type is ParamType.DATE:
                dates[test.code].append(test)
        ranges = {code: tests for code, tests in dates.items() if len(tests) > 1}
        conditions = []
        for test in query.tests:
            grouped = ranges.get(test.code, [])
            if not any(test is member for member in grouped):
                conditions.append(self.any_test(test))
            elif test is grouped[0]:
                sets = [self.test(member, as_set=True) for member in grouped]
                if "FALSE" in sets:
                    conditions.append("FALSE")
                else:
                    conditions.append(f"{self.subject}.id IN ({' INTERSECT '.join(sets)})")
        conditions.extend(self.has(clause) for clause in query.has)
        if query.filter is not None:
            conditions.append(self.filter(query.filter))
        return conditions

    # -- sort and keyset -------------------------------------------------------------------

    def sort_value(self, key: SortKey) -> tuple[str, str]:
        """The correlated subquery of one sort key's value for ``r``, and its kind.

        As ``sort_values``: over the resource's rows of the parameter (not composite
        components), the lowest value ascending and the highest descending; NULL when
        it has none. Text values compare in code-point order (``COLLATE "C"``).
        """
        expression, kind = _SORT_VALUES[key.parameter.type]
        row = self.alias()
        value = expression.format(a=row)
        if kind == "text":
            value = f'({value}) COLLATE "C"'
        aggregate = "min" if key.direction is SortDirection.ASCENDING else "max"
        return (
            f"(SELECT {aggregate}({value}) FROM search_index {row}"
            f" WHERE {row}.tenant = r.tenant AND {row}.resource_type = r.resource_type"
            f" AND {row}.resource_id = r.id AND {row}.param = {self.p.text(key.parameter.code)}"
            f" AND {row}.type = {self.p.text(key.parameter.type.value)}"
            f" AND {row}.component IS NULL)",
            kind,
        )

    def bind_sort_value(self, kind: str, value: object) -> str:
        """A cursor's sort value as a typed parameter (``InvalidSearch`` if it does not fit)."""
        if not isinstance(value, _SORT_VALUE_TYPES[kind]):
            raise InvalidSearch("cursor: it does not fit this query", parameter="cursor")
        try:
            if isinstance(value, str):
                return f'({self.p.text(value)} COLLATE "C")'
            if isinstance(value, Decimal):
                return self.p.number(value)
            assert isinstance(value, datetime)
            return self.p.instant(value)
        except _Unmatchable:
            raise InvalidSearch("cursor: it does not fit this query", parameter="cursor") from None

    def after(
        self,
        keys: Sequence[SortKey],
        kinds: Sequence[str],
        values: Sequence[object],
        after_id: str,
        alias: str = "m",
    ) -> str:
        """Keyset over ``alias``: the rows strictly after ``(values, after_id)`` in sort order.

        Lexicographic over ``(k IS NULL, k)`` per key (NULLs last both ways), then the
        id in code-point order: ``(k1 > a1) OR (k1 = a1 AND (... id > i))``. One
        ascending key with a value is the row comparison ``(k, id) > (a, i)``.
        """
        try:
            identifier = f'({self.p.text(after_id)} COLLATE "C")'
        except _Unmatchable:
            raise InvalidSearch("cursor: it does not fit this query", parameter="cursor") from None
        own_id = f'{alias}.id COLLATE "C"'
        if (
            len(keys) == 1
            and keys[0].direction is SortDirection.ASCENDING
            and values[0] is not None
        ):
            bound = self.bind_sort_value(kinds[0], values[0])
            return f"(({alias}.k0, {own_id}) > ({bound}, {identifier}) OR {alias}.k0 IS NULL)"
        condition = f"{own_id} > {identifier}"
        for position in range(len(keys) - 1, -1, -1):
            column, value = f"{alias}.k{position}", values[position]
            if value is None:
                # Among the NULLs (last): only equal, never after.
                condition = f"({column} IS NULL AND {condition})"
                continue
            bound = self.bind_sort_value(kinds[position], value)
            operator = ">" if keys[position].direction is SortDirection.ASCENDING else "<"
            condition = (
                f"({column} IS NULL OR {column} {operator} {bound}"
                f" OR ({column} = {bound} AND {condition}))"
            )
        return condition

    # -- _include and _revinclude ----------------------------------------------------------

    def include_level(self, query: SearchQuery) -> str:
        """What the applicable specs add to one frontier resource ``w`` (a LATERAL body).

        As ``resolve_includes``: an ``_include`` adds the live targets of ``w``'s
        reference rows (of the parameter, or every one for ``*``; of the target type
        when given) when ``w`` is of the source type; a ``_revinclude`` adds the live
        resources (of the source type, or any for ``*``) whose rows point at ``w``.
        A spec without ``:iterate`` applies to the matches only (``w.is_match``).
        Ids travel in the default collation, so the primary key and the
        ``(tenant, resource_type, resource_id, param)`` index serve the joins.
        """
        parts = []
        for spec in query.include:
            row, target = self.alias("s"), self.alias("t")
            conditions = [
                f"{row}.tenant = {self.tenant}",
                f"{row}.resource_type = w.kind",
                f"{row}.resource_id = w.id",
                f"w.kind = {self.p.text(spec.source_type)}",
                points_at(row),
                self.live(target, None, None),
            ]
            if spec.parameter is not None:
                conditions.append(f"{row}.param = {self.p.text(spec.parameter.code)}")
            if spec.target_type is not None:
                conditions.append(f"{row}.ref_type = {self.p.text(spec.target_type)}")
            if not spec.iterate:
                conditions.append("w.is_match")
            parts.append(
                f'SELECT {row}.ref_type COLLATE "default", {row}.ref_id COLLATE "default"'
                f" FROM search_index {row}"
                f" JOIN resources {target} ON {target}.tenant = {row}.tenant"
                f' AND {target}.resource_type = {row}.ref_type COLLATE "default"'
                f' AND {target}.id = {row}.ref_id COLLATE "default"'
                f" WHERE {' AND '.join(conditions)}"
            )
        for spec in query.revinclude:
            row, source = self.alias("s"), self.alias("u")
            source_type = None if spec.source_type == "*" else spec.source_type
            conditions = [
                f"{row}.tenant = {self.tenant}",
                f"{row}.ref_type = w.kind",
                # Exact: w.id is a stored id, at most 64 characters (see chain_set).
                f"{row}.ref_id_key = w.id",
                points_at(row),
                self.live(source, None, source_type),
            ]
            if spec.target_type is not None:
                conditions.append(f"w.kind = {self.p.text(spec.target_type)}")
            if source_type is not None:
                conditions.append(f"{row}.resource_type = {self.p.text(source_type)}")
            if spec.parameter is not None:
                conditions.append(f"{row}.param = {self.p.text(spec.parameter.code)}")
            if not spec.iterate:
                conditions.append("w.is_match")
            parts.append(
                f"SELECT {row}.resource_type, {row}.resource_id FROM search_index {row}"
                f" JOIN resources {source} ON {source}.tenant = {row}.tenant"
                f" AND {source}.resource_type = {row}.resource_type"
                f" AND {source}.id = {row}.resource_id"
                f" WHERE {' AND '.join(conditions)}"
            )
        return " UNION ALL ".join(parts)

    # -- _filter ---------------------------------------------------------------------------

    def filter(self, expression: FilterExpression) -> str:
        if isinstance(expression, FilterAnd):
            return "(" + " AND ".join(self.filter(e) for e in expression.operands) + ")"
        if isinstance(expression, FilterOr):
            return "(" + " OR ".join(self.filter(e) for e in expression.operands) + ")"
        if isinstance(expression, FilterNot):
            return f"NOT ({self.filter(expression.operand)})"
        return self.comparison(expression)

    def comparison(self, comparison: FilterComparison) -> str:
        if comparison.chain:
            terminal = replace(comparison, chain=())
            return self.chained(comparison.chain, lambda: self.comparison(terminal))
        a = self.alias()
        code = comparison.parameter.code
        value = comparison.value
        operator = comparison.operator
        row_type = comparison.parameter.type
        if isinstance(value, MissingValue):
            exists = f"EXISTS (SELECT 1 {self.rows_of(a, code)})"
            return f"NOT {exists}" if value.missing else exists
        condition: str
        if isinstance(value, StringValue | UriValue):
            if isinstance(value, UriValue):
                column, needle = f"{a}.exact", value.uri
            elif row_type is ParamType.URI:
                column, needle = f"{a}.exact", value.exact
            else:
                column, needle = f"{a}.text", value.text
            try:
                condition = f"{column} IS NOT NULL AND " + self.text_compare(
                    operator, column, needle
                )
            except _Unmatchable:
                condition = "FALSE"
        elif isinstance(value, TokenValue | ReferenceValue):
            match = self.value(a, value, None, row_type)
            # ne: "an item in the set has an unequal value" (search_filter.html)
            condition = f"NOT coalesce({match}, false)" if operator is FilterOperator.NE else match
        elif isinstance(value, DateValue) and operator is FilterOperator.PO:
            low, high = self.p.instant(value.low), self.p.instant(value.high)
            condition = (
                f"{a}.date_hi_key > {low} AND {a}.date_lo_key < {high}"
                f" AND ({a}.date_high IS NULL OR {a}.date_high > {low})"
                f" AND ({a}.date_low IS NULL OR {a}.date_low < {high})"
            )
        else:
            condition = self.value(a, value, None, row_type)
        return f"EXISTS (SELECT 1 {self.rows_of(a, code)} AND ({condition}))"

    def text_compare(self, operator: FilterOperator, column: str, needle: str) -> str:
        if operator is FilterOperator.EQ:
            return f"{column} = {self.p.text(needle)}"
        if operator is FilterOperator.NE:
            try:
                return f"{column} <> {self.p.text(needle)}"
            except _Unmatchable:
                return "TRUE"
        if operator is FilterOperator.CO:
            return self.contains(column, needle)
        if operator is FilterOperator.SW:
            return self.starts(column, needle)
        if operator is FilterOperator.EW:
            return self.ends(column, needle)
        raise Unsupported(
            f"_filter: the operator {operator.value} does not apply to text",
            capability="search.filter",
        )


def build_search(
    tenant: str,
    query: SearchQuery,
    registry: SearchParameterRegistry,
    *,
    now: datetime | None = None,
    compartment: Compartment | None = None,
    offset: int = 0,
    after: tuple[Sequence[object], str] | None = None,
    snapshot: int | None = None,
) -> BuiltSearch:
    """The one statement answering a page of ``query``, includes and total with it.

    Its rows (see ``helios.search``) have a role: ``match`` rows are the page in order
    (``position``), one more than the page size when there is a next page, each with
    its sort values in the typed key arrays; ``include`` rows are what ``_include``
    and ``_revinclude`` add to the page (its first ``page_size`` matches); one
    ``meta`` row carries the total (when asked for) and, on a first page, the
    tenant's newest write sequence, the snapshot later pages are bounded to.

    Args:
        compartment: the caller's compartment: resources outside it neither match,
            nor resolve chains or ``_has``, nor are included.
        offset: matches skipped (``_offset``).
        after: a cursor's last sort values and id: the page starts after them.
        snapshot: a cursor's write sequence: resources first written later do not
            exist for the statement.

    Raises:
        InvalidSearch: the cursor's values do not fit this query's sort keys.
    """
    builder = ConditionBuilder(
        registry,
        query.resource_type,
        now or datetime.now(UTC),
        tenant,
        snapshot=snapshot,
        compartment=compartment,
    )
    b = builder
    conditions = [b.live("r", b.type, query.resource_type), *b.where(query)]
    matches = "FROM resources r WHERE " + "\n   AND ".join(conditions)
    counted = query.summary is SummaryMode.COUNT or query.total in (
        TotalMode.ACCURATE,
        TotalMode.ESTIMATE,
    )
    newest = (
        "NULL::bigint"
        if snapshot is not None
        else f"(SELECT max(h.sequence) FROM resource_history h WHERE h.tenant = {b.tenant})"
    )
    if query.summary is SummaryMode.COUNT:
        sql = _meta_row(f"(SELECT count(*) {matches})", "NULL::bigint")
        return _built(b, sql, ())
    sort = [b.sort_value(key) for key in query.sort]
    kinds = tuple(kind for _, kind in sort)
    limit = query.page_size + 1
    ctes: list[str] = []
    total = "NULL::bigint"
    if sort or counted:
        values = "".join(f", {value} AS k{n}" for n, (value, _) in enumerate(sort))
        ctes.append(f"m AS MATERIALIZED (SELECT r.id{values} {matches})")
        keyset = "" if after is None else " WHERE " + b.after(query.sort, kinds, *after)
        page_rows = (
            "SELECT r.id, r.version_id, r.last_updated, r.resource_text"
            + "".join(f", q.k{n}" for n in range(len(sort)))
            + f" FROM (SELECT m.* FROM m{keyset} ORDER BY {_order('m', query.sort, kinds)}"
            f" LIMIT {limit} OFFSET {int(offset)}) q"
            f" JOIN resources r ON r.tenant = {b.tenant} AND r.resource_type = {b.type}"
            " AND r.id = q.id"
        )
        if counted:
            total = "(SELECT count(*) FROM m)"
    else:
        keyset = "" if after is None else " AND " + b.after((), (), (), after[1], "r")
        page_rows = (
            f"SELECT r.id, r.version_id, r.last_updated, r.resource_text {matches}{keyset}"
            ' ORDER BY r.tenant, r.resource_type, r.id COLLATE "C"'
            f" LIMIT {limit} OFFSET {int(offset)}"
        )
    # Not MATERIALIZED: inlined when only the output reads it (no includes), kept
    # once when the includes read it too (PostgreSQL's rule for CTEs).
    ctes.append(
        f"page AS (SELECT x.*, row_number() OVER"
        f" (ORDER BY {_order('x', query.sort, kinds)}) AS position FROM ({page_rows}) x)"
    )
    key_arrays = ", ".join(
        "ARRAY["
        + ", ".join(f"p.k{n}" if kind == wanted else "NULL" for n, kind in enumerate(kinds))
        + f"]::{array_type}"
        if sort
        else f"NULL::{array_type}"
        for wanted, array_type in (
            ("text", "text[]"),
            ("number", "numeric[]"),
            ("instant", "timestamptz[]"),
        )
    )
    parts = [
        "SELECT false, 'match'::text, p.position, NULL::text, p.id::text, p.version_id,"
        f" p.last_updated, p.resource_text, {key_arrays}, NULL::bigint, NULL::bigint"
        " FROM page p"
    ]
    recursive = ""
    if query.include or query.revinclude:
        ctes.append(
            f"seed AS (SELECT {b.type}::text AS kind, p.id::text AS id FROM page p"
            f" WHERE p.position <= {query.page_size})"
        )
        # OFFSET 0 keeps the level a subquery run per frontier resource (one index
        # probe each); flattened, the planner may merge-join a whole parameter's
        # reference rows in key order instead, reading far more than a page needs.
        level = f"SELECT * FROM ({b.include_level(query)}) l OFFSET 0"
        if any(spec.iterate for spec in (*query.include, *query.revinclude)):
            # Each step applies the :iterate specs to what the last one added; UNION
            # drops what was already found, so cycles end.
            recursive = "RECURSIVE "
            ctes.append(
                "inc(kind, id, is_match) AS (SELECT kind, id, true FROM seed UNION"
                f" SELECT x.kind, x.id, false FROM inc w CROSS JOIN LATERAL ({level}) x(kind, id))"
            )
        else:
            ctes.append(
                "inc(kind, id, is_match) AS (SELECT x.kind, x.id, false FROM"
                f" (SELECT kind, id, true AS is_match FROM seed) w"
                f" CROSS JOIN LATERAL ({level}) x(kind, id))"
            )
        parts.append(
            "SELECT false, 'include'::text, NULL::bigint, t.resource_type, t.id, t.version_id,"
            " t.last_updated, t.resource_text, NULL::text[], NULL::numeric[],"
            " NULL::timestamptz[], NULL::bigint, NULL::bigint"
            " FROM (SELECT DISTINCT kind, id FROM inc WHERE NOT is_match"
            " EXCEPT SELECT kind, id FROM seed) n"
            f" JOIN resources t ON t.tenant = {b.tenant} AND t.resource_type = n.kind"
            " AND t.id = n.id"
        )
    parts.append(_meta_row(total, newest))
    sql = f"WITH {recursive}" + ",\n".join(ctes) + "\n" + "\nUNION ALL ".join(parts)
    return _built(b, sql, kinds)


def _order(alias: str, keys: Sequence[SortKey], kinds: Sequence[str]) -> str:
    """ORDER BY over ``alias.k0, ...`` and ``alias.id``: NULLs last, then id (code points)."""
    order = []
    for n, (key, kind) in enumerate(zip(keys, kinds, strict=True)):
        column = f"{alias}.k{n}"
        collated = f'{column} COLLATE "C"' if kind == "text" else column
        descending = " DESC" if key.direction is SortDirection.DESCENDING else ""
        order.append(f"{column} IS NULL, {collated}{descending}")
    order.append(f'{alias}.id COLLATE "C"')
    return ", ".join(order)


def _meta_row(total: str, newest: str) -> str:
    return (
        "SELECT false, 'meta'::text, NULL::bigint, NULL::text, NULL::text, NULL::bigint,"
        " NULL::timestamptz, NULL::text, NULL::text[], NULL::numeric[], NULL::timestamptz[],"
        f" {total}, {newest}"
    )


def _built(builder: ConditionBuilder, sql: str, kinds: tuple[str, ...]) -> BuiltSearch:
    p = builder.p
    return BuiltSearch(
        sql=sql,
        texts=p.texts,
        numbers=p.numbers,
        instants=p.instants,
        floats=p.floats,
        sort_kinds=kinds,
    )
