"""The reference evaluator: does a resource's index match a :class:`SearchQuery`?

This is the executable definition of search semantics; every backend must return
the same matches. Per type (FHIR R4 search.html):

- **string**: the folded value starts with the folded search text; ``:contains``
  anywhere; ``:exact`` equal as written (case and accents count).
- **token**: ``code`` any system, ``system|code``, ``|code`` (no system),
  ``system|`` (any code in the system); codes compare case-sensitively. ``:text``
  folded starts-with on display/text; ``:code-text`` folded starts-with on the code;
  ``:text-advanced`` full-text (``_text.py``) on display/text; ``:of-type``
  identifier type and value; ``:not`` matches when *no* value equals (so a resource
  without the element matches).
- **date**: the search value and each indexed value are ``[low, high)`` ranges:
  ``eq`` search range contains target; ``ne`` not eq; ``gt`` target ends after the
  search range (``high_t > high_s``); ``lt`` target starts before it (``low_t <
  low_s``); ``ge`` gt or eq; ``le`` lt or eq; ``sa`` target starts at/after the
  search range ends; ``eb`` target ends at/before it starts; ``ap`` the ranges
  overlap after widening the search range by 10% of its distance from now (at least
  one day). Open ends of a Period are infinite.
- **number / quantity**: the indexed value is a point ``x``. Without a prefix (or
  with ``eq``/``ne``) the search value is its implicit-precision range ``[low,
  high)``: ``eq`` low <= x < high, ``ne`` otherwise. With an order prefix R4 compares
  with the exact value ``v`` ("gt100: greater than exactly 100"): ``gt``/``sa`` x > v,
  ``lt``/``eb`` x < v, ``ge`` x >= v, ``le`` x <= v; ``ap`` within 10% of ``v`` (or eq). A quantity with a UCUM system
  and a convertible code also matches through canonical units; ``number||code``
  matches the code or the unit text; a bare number ignores units.
- **reference**: ``Type/id`` and absolute URLs equal the normalized reference
  (``/_history/n`` dropped, a ``|version`` must match when given); a bare id matches
  relative references with that id (restricted by ``:[type]``); ``:identifier`` matches
  Reference.identifier as a token.
- **uri**: equal; ``:below`` the stored URI starts with the value; ``:above`` the
  value starts with the stored URI.
- **composite**: all components match rows of the same group (repeating element).
- ``:missing=true`` matches resources with no index row for the parameter.

OR values of a test: any matches. Tests, ``_has`` clauses and ``_filter``: all match.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from .._errors import Unsupported
from ._model import (
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
    TextSearchValue,
    TokenValue,
    UriValue,
)
from ._text import text_matches, tokenize

RowsByParam = Mapping[str, Sequence[IndexRow]]
_AP_FRACTION = Decimal("0.1")


def group_rows(rows: Iterable[IndexRow]) -> dict[str, list[IndexRow]]:
    """Index rows grouped by parameter code."""
    grouped: dict[str, list[IndexRow]] = defaultdict(list)
    for row in rows:
        grouped[row.param].append(row)
    return grouped


# -- ranges -----------------------------------------------------------------------


def date_matches(
    prefix: Prefix,
    low: datetime,
    high: datetime,
    row_low: datetime | None,
    row_high: datetime | None,
    *,
    now: datetime | None = None,
) -> bool:
    """Compare a search range with an indexed range under a prefix (module docstring)."""
    contained = row_low is not None and row_high is not None and low <= row_low and row_high <= high
    if prefix is Prefix.EQ:
        return contained
    if prefix is Prefix.NE:
        return not contained
    if prefix is Prefix.GT:
        return row_high is None or row_high > high
    if prefix is Prefix.LT:
        return row_low is None or row_low < low
    if prefix is Prefix.GE:
        return contained or row_high is None or row_high > high
    if prefix is Prefix.LE:
        return contained or row_low is None or row_low < low
    if prefix is Prefix.SA:
        return row_low is not None and row_low >= high
    if prefix is Prefix.EB:
        return row_high is not None and row_high <= low
    moment = now or datetime.now(UTC)
    distance = abs(moment - low)
    widen = max(distance / 10, timedelta(days=1))
    # Widening past the calendar's ends (ap0001, ap9999) leaves that end open.
    wide_low = low - widen if low - _CALENDAR_START > widen else None
    wide_high = high + widen if _CALENDAR_END - high > widen else None
    return (row_high is None or wide_low is None or row_high > wide_low) and (
        row_low is None or wide_high is None or row_low < wide_high
    )


_CALENDAR_START = datetime.min.replace(tzinfo=UTC)
_CALENDAR_END = datetime.max.replace(tzinfo=UTC)


def number_matches(prefix: Prefix, value: Decimal, low: Decimal, high: Decimal, x: Decimal) -> bool:
    """Compare an indexed number ``x`` with a search value and its precision range."""
    if prefix is Prefix.EQ:
        return low <= x < high
    if prefix is Prefix.NE:
        return not low <= x < high
    # With a comparison prefix R4 compares with the exact value: gt100 is "greater
    # than exactly 100" (search.html#number); only eq, ne and ap use the precision range.
    if prefix in (Prefix.GT, Prefix.SA):
        return x > value
    if prefix in (Prefix.LT, Prefix.EB):
        return x < value
    if prefix is Prefix.GE:
        return x >= value
    if prefix is Prefix.LE:
        return x <= value
    return abs(x - value) <= abs(value) * _AP_FRACTION or low <= x < high


# -- single values ------------------------------------------------------------------


def _token_matches(value: TokenValue, row: IndexRow) -> bool:
    if value.type_system is not None or value.type_code is not None:
        return (
            row.type_system == value.type_system
            and row.type_code == value.type_code
            and row.code == value.code
        )
    if value.code is not None and row.code != value.code:
        return False
    if value.system is None:
        return value.code is not None
    if value.system == "":
        return row.system is None
    return row.system == value.system


def _quantity_matches(value: QuantityValue, row: IndexRow) -> bool:
    number = value.number
    if (
        value.canonical_unit is not None
        and row.canonical_unit == value.canonical_unit
        and row.canonical_number is not None
        and value.canonical_low is not None
        and value.canonical_high is not None
        and value.canonical_value is not None
        and number_matches(
            value.prefix,
            value.canonical_value,
            value.canonical_low,
            value.canonical_high,
            row.canonical_number,
        )
    ):
        return True
    if row.number is None:
        return False
    if value.system is not None and row.system != value.system:
        return False
    if value.code is not None and value.code not in (
        row.code,
        row.exact if value.system is None else None,
    ):
        return False
    return number_matches(value.prefix, number.value, number.low, number.high, row.number)


def _reference_matches(value: ReferenceValue, row: IndexRow, target_type: str | None) -> bool:
    if value.identifier is not None:
        return row.code is not None and _token_matches(value.identifier, row)
    if value.exact is not None:
        if row.exact != value.exact:
            return False
        return value.version is None or row.ref_version == value.version
    # A bare id means a resource on this server: relative references only (not
    # contained ``#id`` ones, not absolute URLs that may name another server).
    stored = row.exact or ""
    if value.id is None or row.ref_id != value.id or stored.startswith("#") or ":" in stored:
        return False
    return target_type is None or row.ref_type == target_type


def value_matches(
    value: SearchValue,
    row: IndexRow,
    modifier: str | None,
    *,
    target_type: str | None = None,
    now: datetime | None = None,
) -> bool:
    """Whether one index row matches one search value under ``modifier``."""
    if isinstance(value, StringValue):
        if row.type is ParamType.URI or modifier in ("above", "below"):
            return _uri_matches(UriValue(value.exact), row, modifier)
        if modifier == "exact":
            return row.exact == value.exact
        if row.text is None:
            return False
        if modifier == "contains":
            return value.text in row.text
        return row.text.startswith(value.text)
    if isinstance(value, TokenValue):
        if row.type is ParamType.REFERENCE:
            return row.code is not None and _token_matches(value, row)
        if modifier == "text":
            return (
                row.text is not None and value.text is not None and row.text.startswith(value.text)
            )
        if modifier == "code-text":
            from ._normalize import fold

            return (
                row.code is not None
                and value.text is not None
                and fold(row.code).startswith(value.text)
            )
        return _token_matches(value, row)
    if isinstance(value, DateValue):
        if row.date_low is None and row.date_high is None:
            return False
        return date_matches(
            value.prefix, value.low, value.high, row.date_low, row.date_high, now=now
        )
    if isinstance(value, NumberValue):
        if row.number is None:
            return False
        return number_matches(value.prefix, value.value, value.low, value.high, row.number)
    if isinstance(value, QuantityValue):
        return _quantity_matches(value, row)
    if isinstance(value, ReferenceValue):
        return _reference_matches(value, row, target_type)
    if isinstance(value, UriValue):
        return _uri_matches(value, row, modifier)
    if isinstance(value, TextSearchValue):
        return row.text is not None and text_matches(value.query, tokenize(row.text))
    return False


def _uri_matches(value: UriValue, row: IndexRow, modifier: str | None) -> bool:
    stored = row.exact
    if stored is None:
        return False
    if modifier == "below":
        return stored == value.uri or stored.startswith(value.uri.rstrip("/") + "/")
    if modifier == "above":
        return value.uri == stored or value.uri.startswith(stored.rstrip("/") + "/")
    return stored == value.uri


def _composite_matches(
    value: CompositeValue, rows: Sequence[IndexRow], now: datetime | None
) -> bool:
    groups: dict[int, list[IndexRow]] = defaultdict(list)
    for row in rows:
        groups[row.group].append(row)
    for group_rows_ in groups.values():
        if all(
            any(
                row.component == position and value_matches(component, row, None, now=now)
                for row in group_rows_
            )
            for position, component in enumerate(value.components)
        ):
            return True
    return False


# -- tests ----------------------------------------------------------------------------


def parameter_matches(
    test: ParameterTest, rows: RowsByParam, *, now: datetime | None = None
) -> bool:
    """Whether a resource's rows satisfy one parameter test (any of its values)."""
    if test.chain:
        raise Unsupported(
            f"search parameter {test.name!r}: chained parameters are not supported",
            capability="search.chain",
        )
    own = rows.get(test.code, ())
    if test.modifier == "missing":
        value = test.values[0]
        assert isinstance(value, MissingValue)
        return (len(own) == 0) == value.missing
    if test.modifier == "not":
        return not any(
            value_matches(value, row, None, now=now) for value in test.values for row in own
        )
    for value in test.values:
        if isinstance(value, CompositeValue):
            if _composite_matches(value, own, now):
                return True
            continue
        if any(
            value_matches(value, row, test.modifier, target_type=test.target_type, now=now)
            for row in own
        ):
            return True
    return False


def filter_matches(
    expression: FilterExpression, rows: RowsByParam, *, now: datetime | None = None
) -> bool:
    """Whether a resource's rows satisfy a ``_filter`` expression (see ``_filter.py``)."""
    if isinstance(expression, FilterAnd):
        return all(filter_matches(e, rows, now=now) for e in expression.operands)
    if isinstance(expression, FilterOr):
        return any(filter_matches(e, rows, now=now) for e in expression.operands)
    if isinstance(expression, FilterNot):
        return not filter_matches(expression.operand, rows, now=now)
    return _comparison_matches(expression, rows, now)


def _text_compare(operator: FilterOperator, text: str, needle: str) -> bool:
    if operator is FilterOperator.EQ:
        return text == needle
    if operator is FilterOperator.NE:
        return text != needle
    if operator is FilterOperator.CO:
        return needle in text
    if operator is FilterOperator.SW:
        return text.startswith(needle)
    if operator is FilterOperator.EW:
        return text.endswith(needle)
    raise Unsupported(
        f"_filter: the operator {operator.value} does not apply to text", capability="search.filter"
    )


def _comparison_matches(
    comparison: FilterComparison, rows: RowsByParam, now: datetime | None
) -> bool:
    if comparison.chain:
        raise Unsupported(
            f"_filter: the chained path {comparison.path!r} is not supported",
            capability="search.chain",
        )
    own = rows.get(comparison.parameter.code, ())
    value = comparison.value
    operator = comparison.operator
    if isinstance(value, MissingValue):
        return (len(own) == 0) == value.missing
    if isinstance(value, StringValue):
        if comparison.parameter.type is ParamType.URI:
            stored = [row.exact for row in own if row.exact is not None]
            needle = value.exact
        else:
            stored = [row.text for row in own if row.text is not None]
            needle = value.text
        return any(_text_compare(operator, text, needle) for text in stored)
    if isinstance(value, UriValue):
        stored_uris = [row.exact for row in own if row.exact is not None]
        return any(_text_compare(operator, text, value.uri) for text in stored_uris)
    if isinstance(value, (TokenValue, ReferenceValue)):
        equal = [value_matches(value, row, None, now=now) for row in own]
        if operator is FilterOperator.NE:
            # "an item in the set has an unequal value" (search_filter.html)
            return not all(equal)
        return any(equal)
    if isinstance(value, DateValue) and operator is FilterOperator.PO:
        return any(
            (row.date_high is None or row.date_high > value.low)
            and (row.date_low is None or row.date_low < value.high)
            for row in own
            if row.date_low is not None or row.date_high is not None
        )
    return any(value_matches(value, row, None, now=now) for row in own)


def matches(
    rows: Iterable[IndexRow] | RowsByParam, query: SearchQuery, *, now: datetime | None = None
) -> bool:
    """Whether a resource with these index rows matches ``query``.

    ``_has`` needs other resources and raises Unsupported (``search.has``) here;
    result parameters (``_count``, ``_sort``, ``_include``...) do not affect matching.

    Raises:
        Unsupported: chains or ``_has`` (capability ``search.chain``/``search.has``).
    """
    grouped = rows if isinstance(rows, Mapping) else group_rows(rows)
    if query.has:
        raise Unsupported(
            f"search parameter {query.has[0].name!r}: _has is not supported",
            capability="search.has",
        )
    if not all(parameter_matches(test, grouped, now=now) for test in query.tests):
        return False
    return query.filter is None or filter_matches(query.filter, grouped, now=now)


class Evaluator:
    """Evaluate one query against many resources (the in-memory backend's engine).

    ``now`` pins the instant ``ap`` on dates measures from (default: the clock).
    """

    def __init__(self, query: SearchQuery, *, now: datetime | None = None) -> None:
        self.query = query
        self.now = now
        if query.has:
            raise Unsupported(
                f"search parameter {query.has[0].name!r}: _has is not supported",
                capability="search.has",
            )
        for test in query.tests:
            if test.chain:
                raise Unsupported(
                    f"search parameter {test.name!r}: chained parameters are not supported",
                    capability="search.chain",
                )

    def matches(self, rows: Iterable[IndexRow] | RowsByParam) -> bool:
        """Whether a resource with these rows matches the query."""
        return matches(rows, self.query, now=self.now)
