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
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any

from helios_conformance import Unsupported
from helios_conformance.search import (
    CompositeValue,
    DateValue,
    FilterAnd,
    FilterComparison,
    FilterExpression,
    FilterNot,
    FilterOperator,
    FilterOr,
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


_DATE_ROWS = "({a}.date_low IS NOT NULL OR {a}.date_high IS NOT NULL)"


@dataclass(frozen=True, slots=True)
class BuiltSearch:
    """One search statement and its parameter arrays."""

    sql: str
    texts: list[str]
    numbers: list[Decimal]
    instants: list[datetime]
    floats: list[float]


def refuse_unsupported(query: SearchQuery, cursor: str | None) -> None:
    """Raise Unsupported for what this backend does not (yet) declare."""
    if query.has:
        raise Unsupported(
            f"search parameter {query.has[0].name!r}: _has is not supported by the "
            "postgres backend",
            capability="search.has",
        )
    for test in query.tests:
        if test.chain:
            raise Unsupported(
                f"search parameter {test.name!r}: chained parameters are not supported "
                "by the postgres backend",
                capability="search.chain",
            )
    for attribute, capability, name in (
        ("sort", "search.sort.single", "_sort"),
        ("include", "search.include", "_include"),
        ("revinclude", "search.revinclude", "_revinclude"),
    ):
        if getattr(query, attribute):
            raise Unsupported(
                f"{name} is not supported by the postgres backend", capability=capability
            )
    if query.offset is not None:
        raise Unsupported(
            "_offset is not supported by the postgres backend", capability="search.paging.offset"
        )
    if cursor is not None:
        raise Unsupported(
            "cursor paging is not supported by the postgres backend",
            capability="search.paging.cursor",
        )


class _Builder:
    def __init__(
        self, registry: SearchParameterRegistry, resource_type: str, now: datetime
    ) -> None:
        self.registry = registry
        self.resource_type = resource_type
        self.now = now
        self.p = _Parameters()
        self.tenant = self.p.text("")  # filled in by build_search
        self.type = self.p.text(resource_type)
        self._aliases = 0

    def alias(self) -> str:
        self._aliases += 1
        return f"i{self._aliases}"

    def rows_of(self, alias: str, param: str) -> str:
        """The FROM/WHERE head selecting one resource's rows of one parameter."""
        return (
            f"FROM search_index {alias} WHERE {alias}.tenant = r.tenant"
            f" AND {alias}.resource_type = r.resource_type AND {alias}.resource_id = r.id"
            f" AND {alias}.param = {self.p.text(param)}"
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
        low, high = self.p.instant(value.low), self.p.instant(value.high)
        rows = _DATE_ROWS.format(a=a)
        contained = f"({a}.date_low >= {low} AND {a}.date_high <= {high})"
        prefix = value.prefix
        if prefix is Prefix.EQ:
            condition = contained
        elif prefix is Prefix.NE:
            condition = f"NOT coalesce({contained}, false)"
        elif prefix is Prefix.GT:
            condition = f"({a}.date_high IS NULL OR {a}.date_high > {high})"
        elif prefix is Prefix.LT:
            condition = f"({a}.date_low IS NULL OR {a}.date_low < {low})"
        elif prefix is Prefix.GE:
            condition = f"({contained} OR {a}.date_high IS NULL OR {a}.date_high > {high})"
        elif prefix is Prefix.LE:
            condition = f"({contained} OR {a}.date_low IS NULL OR {a}.date_low < {low})"
        elif prefix is Prefix.SA:
            condition = f"{a}.date_low >= {high}"
        elif prefix is Prefix.EB:
            condition = f"{a}.date_high <= {low}"
        else:
            distance = abs(self.now - value.low)
            widen = max(distance / 10, timedelta(days=1))
            wide_low = self.p.instant(value.low - widen)
            wide_high = self.p.instant(value.high + widen)
            condition = (
                f"({a}.date_high IS NULL OR {a}.date_high > {wide_low})"
                f" AND ({a}.date_low IS NULL OR {a}.date_low < {wide_high})"
            )
        return f"({rows} AND {condition})"

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

    def test(self, test: ParameterTest) -> str:
        """The condition on ``r`` of ``evaluate.parameter_matches``."""
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
        # Every date condition carries the partial date indexes' predicate; repeated
        # outside the OR, the planner can prove it and use them.
        rows = f" AND {_DATE_ROWS.format(a=a)}" if row_type is ParamType.DATE else ""
        exists = f"EXISTS (SELECT 1 {self.rows_of(a, code)}{rows} AND ({' OR '.join(conditions)}))"
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
            raise Unsupported(
                f"_filter: the chained path {comparison.path!r} is not supported",
                capability="search.chain",
            )
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
                f"{_DATE_ROWS.format(a=a)}"
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
) -> BuiltSearch:
    """The statement answering ``query`` (rows: stale, total, id, version, instant, text).

    Without a total it returns the page; with ``_total=accurate|estimate`` every row
    carries the number of matches (and one row of NULLs stands for an empty page);
    ``_summary=count`` returns that one number only.
    """
    builder = _Builder(registry, query.resource_type, now or datetime.now(UTC))
    builder.p.texts[0] = tenant
    conditions = [builder.test(test) for test in query.tests]
    if query.filter is not None:
        conditions.append(builder.filter(query.filter))
    where = "".join(f"\n   AND {condition}" for condition in conditions)
    matches = (
        f"FROM resources r WHERE r.tenant = {builder.tenant}"
        f" AND r.resource_type = {builder.type} AND NOT r.deleted{where}"
    )
    limit = query.page_size
    page_columns = "r.id, r.version_id, r.last_updated, r.resource_text"
    order = 'ORDER BY r.tenant, r.resource_type, r.id COLLATE "C"'
    if query.summary is SummaryMode.COUNT:
        sql = (
            "SELECT false, count(*), NULL::text, NULL::bigint, NULL::timestamptz, NULL::text "
            + matches
        )
    elif query.total in (TotalMode.ACCURATE, TotalMode.ESTIMATE):
        sql = (
            f"WITH m AS MATERIALIZED (SELECT r.id {matches})\n"
            "SELECT false, c.total, p.id, p.version_id, p.last_updated, p.resource_text\n"
            "  FROM (SELECT count(*) AS total FROM m) c\n"
            f"  LEFT JOIN LATERAL (SELECT {page_columns} FROM m JOIN resources r"
            f" ON r.tenant = {builder.tenant} AND r.resource_type = {builder.type}"
            f' AND r.id = m.id ORDER BY m.id COLLATE "C" LIMIT {limit}) p ON true\n'
            ' ORDER BY p.id COLLATE "C"'
        )
    else:
        sql = f"SELECT false, NULL::bigint, {page_columns}\n  {matches}\n {order} LIMIT {limit}"
    p = builder.p
    return BuiltSearch(
        sql=sql, texts=p.texts, numbers=p.numbers, instants=p.instants, floats=p.floats
    )
