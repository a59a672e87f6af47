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

from collections import defaultdict
from collections.abc import Iterable, Sequence
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
    SearchQuery,
    SearchValue,
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


# -- the compiler --------------------------------------------------------------------


def _unsupported_chain(name: str) -> Unsupported:
    return Unsupported(
        f"search parameter {name!r}: chained parameters are not supported",
        capability="search.chain",
    )


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

    def bind(self, value: Any) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return ":" + name

    def _alias(self) -> str:
        self._aliases += 1
        return f"i{self._aliases}"

    def _scope(self, alias: str, code: str) -> str:
        return (
            f"{alias}.tenant = :tenant AND {alias}.resource_type = :rtype"
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
            f"r.id {operator} (SELECT {alias}.resource_id FROM search_index {alias} WHERE {where})"
        )

    # -- the query ------------------------------------------------------------------

    def where(self, query: SearchQuery) -> list[str]:
        """The conditions on ``r`` beyond tenant, type and liveness."""
        if query.has:
            raise Unsupported(
                f"search parameter {query.has[0].name!r}: _has is not supported",
                capability="search.has",
            )
        for test in query.tests:
            if test.chain:
                raise _unsupported_chain(test.name)
        clauses = [self.test(test) for test in query.tests]
        if query.filter is not None:
            clauses.append(self.filter(query.filter))
        return clauses

    def select(self, query: SearchQuery, *, limit: int) -> tuple[str, str]:
        """The page statement (``LIMIT`` bound as ``:limit``) and the count statement."""
        conditions = [
            "r.tenant = :tenant",
            "r.resource_type = :rtype",
            "r.deleted = 0",
            *self.where(query),
        ]
        self.params["limit"] = limit
        where = " AND ".join(conditions)
        page = (
            "SELECT r.id, r.version_id, r.last_updated, r.resource FROM resources r"
            f" WHERE {where} ORDER BY r.id LIMIT :limit"
        )
        count = f"SELECT count(*) FROM resources r WHERE {where}"
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
            f"r.id IN (SELECT {first}.resource_id FROM search_index {first} WHERE "
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
            raise Unsupported(
                f"_filter: the chained path {comparison.path!r} is not supported",
                capability="search.chain",
            )
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
