"""The public value objects of search: parameter definitions, index rows and queries.

These are the stable shapes every backend builds on. A backend stores the
:class:`IndexRow` values :func:`index_resource` returns (one table with typed
columns fits them), parses a query with :func:`parse_query` into a
:class:`SearchQuery`, and answers it with the semantics :mod:`._evaluate` defines.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal


class ParamType(enum.StrEnum):
    """The FHIR R4 search parameter types (search.html#ptypes)."""

    NUMBER = "number"
    DATE = "date"
    STRING = "string"
    TOKEN = "token"
    REFERENCE = "reference"
    COMPOSITE = "composite"
    QUANTITY = "quantity"
    URI = "uri"
    SPECIAL = "special"


ORDERED_TYPES = frozenset({ParamType.NUMBER, ParamType.DATE, ParamType.QUANTITY})
"""The types whose values may carry a comparison prefix (search.html#prefix)."""


class Prefix(enum.StrEnum):
    """The comparison prefixes of ordered parameter types (search.html#prefix)."""

    EQ = "eq"
    NE = "ne"
    GT = "gt"
    LT = "lt"
    GE = "ge"
    LE = "le"
    SA = "sa"
    EB = "eb"
    AP = "ap"


@dataclass(frozen=True, slots=True)
class CompositeComponent:
    """One component of a composite parameter: a parameter and its relative expression."""

    definition: str
    expression: str


@dataclass(frozen=True, slots=True)
class SearchParameterDefinition:
    """One search parameter, as the registry knows it for one base type.

    ``expression`` is the FHIRPath for this base only (the union members of a
    multi-base official expression that start with another type are dropped);
    ``None`` for parameters evaluated specially (``_text``, ``_content``, ``_filter``...).
    """

    url: str
    code: str
    type: ParamType
    base: tuple[str, ...]
    expression: str | None
    target: tuple[str, ...] = ()
    comparator: tuple[str, ...] = ()
    modifier: tuple[str, ...] = ()
    component: tuple[CompositeComponent, ...] = ()
    multiple_or: bool = True
    multiple_and: bool = True
    custom: bool = False


@dataclass(frozen=True, slots=True)
class IndexRow:
    """One normalized value of one search parameter of one resource.

    Every row has ``param`` (the parameter code) and ``type``; the other columns are
    filled according to the type (``None`` elsewhere), so one table with typed columns
    holds every row:

    ========== ===========================================================================
    type       columns
    ========== ===========================================================================
    string     ``text`` (folded: lower case, accents removed, spaces collapsed),
               ``exact`` (as written)
    token      ``system``, ``code`` (``code`` is ``"true"``/``"false"`` for booleans),
               ``text`` (folded Coding.display / CodeableConcept.text /
               Identifier.type.text), ``type_system``/``type_code`` (Identifier.type
               coding, for ``:of-type``)
    date       ``date_low`` inclusive, ``date_high`` exclusive (UTC); ``None`` is an open
               end (a Period without start or end)
    number     ``number`` (the value, exact)
    quantity   ``number``, ``system``, ``code``, ``exact`` (the human ``unit``),
               ``canonical_number``/``canonical_unit`` (UCUM canonical form, when the
               unit converts)
    reference  ``exact`` (``Type/id`` for relative references, the URL without
               ``/_history`` for absolute ones, the canonical URL for canonicals),
               ``ref_type``, ``ref_id``, ``ref_version`` (``_history`` version or the
               canonical ``|version``), ``system``/``code`` (Reference.identifier, for
               ``:identifier``), ``text`` (folded Reference.display)
    uri        ``exact`` (the URI as written)
    special    ``_text``/``_content``: ``text`` holds the searchable text
    ========== ===========================================================================

    Composite parameters are indexed as their components: rows with the composite's
    ``param``, ``component`` = the component's position and the type of that
    component; rows from the same repeating element share ``group``. Rows of
    non-composite parameters have ``component`` = ``None`` and ``group`` = 0.
    """

    param: str
    type: ParamType
    group: int = 0
    component: int | None = None
    text: str | None = None
    exact: str | None = None
    system: str | None = None
    code: str | None = None
    type_system: str | None = None
    type_code: str | None = None
    number: Decimal | None = None
    canonical_number: Decimal | None = None
    canonical_unit: str | None = None
    date_low: datetime | None = None
    date_high: datetime | None = None
    ref_type: str | None = None
    ref_id: str | None = None
    ref_version: str | None = None


# -- query values --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StringValue:
    """A string search value: ``exact`` as written, ``text`` folded."""

    exact: str
    text: str


@dataclass(frozen=True, slots=True)
class TokenValue:
    """A token search value.

    ``system`` is ``None`` when the value had no ``|`` (any system), ``""`` for
    ``|code`` (no system); ``code`` is ``None`` for ``system|`` (any code in the
    system). For ``:text``-like modifiers ``text`` holds the folded search text. For
    ``:of-type`` ``type_system``/``type_code`` are the identifier type and ``code``
    the identifier value.
    """

    system: str | None
    code: str | None
    text: str | None = None
    type_system: str | None = None
    type_code: str | None = None


@dataclass(frozen=True, slots=True)
class DateValue:
    """A date search value: ``[low, high)`` in UTC at the precision written."""

    prefix: Prefix
    low: datetime
    high: datetime
    raw: str


@dataclass(frozen=True, slots=True)
class NumberValue:
    """A number search value with its implicit-precision range ``[low, high)``."""

    prefix: Prefix
    value: Decimal
    low: Decimal
    high: Decimal
    raw: str


@dataclass(frozen=True, slots=True)
class QuantityValue:
    """A quantity search value ``[prefix]number|system|code``.

    ``system``/``code`` are ``None`` when not given. When the unit is a UCUM unit
    that converts, ``canonical_*`` hold the value range in canonical units.
    """

    prefix: Prefix
    number: NumberValue
    system: str | None
    code: str | None
    canonical_unit: str | None = None
    canonical_low: Decimal | None = None
    canonical_high: Decimal | None = None
    canonical_value: Decimal | None = None


@dataclass(frozen=True, slots=True)
class ReferenceValue:
    """A reference search value.

    ``exact`` is ``Type/id`` or an absolute URL (without ``|version``); for a bare id
    it is ``None`` and ``id`` is set. ``version`` is the canonical ``|version`` or the
    ``/_history/`` version. With ``:identifier``, ``identifier`` holds the token.
    """

    raw: str
    exact: str | None = None
    type: str | None = None
    id: str | None = None
    version: str | None = None
    identifier: TokenValue | None = None


@dataclass(frozen=True, slots=True)
class UriValue:
    """A uri search value."""

    uri: str


@dataclass(frozen=True, slots=True)
class MissingValue:
    """The value of ``:missing``: ``true`` finds resources without the parameter."""

    missing: bool


@dataclass(frozen=True, slots=True)
class TextSearchValue:
    """A ``_text``/``_content`` (or ``:text-advanced``) full-text query; see ``_text.py``."""

    raw: str
    query: TextQuery


@dataclass(frozen=True, slots=True)
class CompositeValue:
    """A composite search value: one value per component, ``$``-separated."""

    components: tuple[ComponentValue, ...]


ComponentValue = (
    StringValue | TokenValue | DateValue | NumberValue | QuantityValue | ReferenceValue | UriValue
)
SearchValue = ComponentValue | MissingValue | TextSearchValue | CompositeValue


# -- full-text query language --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextTerm:
    """One stemmed term; ``prefix`` for ``term*``."""

    term: str
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class TextPhrase:
    """A quoted phrase: its terms must appear consecutively."""

    terms: tuple[TextTerm, ...]


@dataclass(frozen=True, slots=True)
class TextNot:
    """``NOT x``: ``x`` does not match."""

    operand: TextQuery


@dataclass(frozen=True, slots=True)
class TextAnd:
    """Every operand matches."""

    operands: tuple[TextQuery, ...]


@dataclass(frozen=True, slots=True)
class TextOr:
    """At least one operand matches."""

    operands: tuple[TextQuery, ...]


TextQuery = TextTerm | TextPhrase | TextNot | TextAnd | TextOr


# -- parameters and the query ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChainLink:
    """One link of a chain: the reference parameter followed and the target type."""

    parameter: SearchParameterDefinition
    target_type: str


@dataclass(frozen=True, slots=True)
class ParameterTest:
    """One ``name=value`` pair: the resource matches when any value matches (OR).

    ``chain`` is empty for a plain parameter; for ``subject:Patient.name=x`` it holds
    the reference links followed, and ``parameter`` is the parameter on the last
    target type. ``target_type`` is the ``:[type]`` modifier of a reference.
    """

    name: str
    parameter: SearchParameterDefinition
    modifier: str | None
    values: tuple[SearchValue, ...]
    target_type: str | None = None
    chain: tuple[ChainLink, ...] = ()

    @property
    def code(self) -> str:
        """The parameter code without modifier."""
        return self.parameter.code


@dataclass(frozen=True, slots=True)
class HasClause:
    """``_has:Type:reference:parameter=value`` (reverse chaining, search.html#has).

    The resource matches when some ``resource_type`` resource whose ``reference``
    parameter points at it satisfies ``test`` (which may itself be a ``_has``).
    """

    name: str
    resource_type: str
    reference: SearchParameterDefinition
    test: ParameterTest | HasClause


class SortDirection(enum.StrEnum):
    ASCENDING = "asc"
    DESCENDING = "desc"


@dataclass(frozen=True, slots=True)
class SortKey:
    """One ``_sort`` key (search.html#sort)."""

    parameter: SearchParameterDefinition
    direction: SortDirection


@dataclass(frozen=True, slots=True)
class IncludeSpec:
    """One ``_include``/``_revinclude``: ``source_type:parameter[:target_type]``.

    ``parameter`` is ``None`` for the wildcard ``*``.
    """

    source_type: str
    parameter: SearchParameterDefinition | None
    target_type: str | None = None
    iterate: bool = False


class TotalMode(enum.StrEnum):
    """``_total`` (search.html#total)."""

    NONE = "none"
    ESTIMATE = "estimate"
    ACCURATE = "accurate"


class SummaryMode(enum.StrEnum):
    """``_summary`` (search.html#summary); only ``count`` is executed in this issue."""

    TRUE = "true"
    TEXT = "text"
    DATA = "data"
    COUNT = "count"
    FALSE = "false"


DEFAULT_CHAIN_DEPTH = 4
"""How many reference links a chain may follow unless the backend configures another limit."""

MAX_CHAIN_DEPTH = 8
"""The largest chain depth limit a backend may configure."""

DEFAULT_PAGE_SIZE = 50
"""The page size when ``_count`` is absent."""

MAX_PAGE_SIZE = 1000
"""The largest ``_count`` accepted; larger values are clamped (search.html#count)."""


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """A parsed FHIR search on one resource type.

    ``tests`` are ANDed (one per repetition of a parameter; each is an OR over its
    values). ``filter`` is the parsed ``_filter`` expression, ANDed with the tests.
    ``count`` is ``None`` when ``_count`` was absent (backends then use
    :data:`DEFAULT_PAGE_SIZE`). ``ignored`` names parameters skipped under lenient
    handling. ``elements`` are the ``_elements`` names (empty when absent; parsed only
    with ``parse_query(..., subsetting=True)``); ``offset`` is ``_offset`` (offset
    pagination), ``None`` when absent.
    """

    resource_type: str
    tests: tuple[ParameterTest, ...] = ()
    has: tuple[HasClause, ...] = ()
    filter: FilterExpression | None = None
    count: int | None = None
    summary: SummaryMode | None = None
    total: TotalMode | None = None
    sort: tuple[SortKey, ...] = ()
    include: tuple[IncludeSpec, ...] = ()
    revinclude: tuple[IncludeSpec, ...] = ()
    ignored: tuple[str, ...] = ()
    elements: tuple[str, ...] = ()
    offset: int | None = None

    @property
    def page_size(self) -> int:
        """``_count`` or the default page size."""
        return DEFAULT_PAGE_SIZE if self.count is None else self.count


# -- _filter ----------------------------------------------------------------------


class FilterOperator(enum.StrEnum):
    """The comparison operators of the ``_filter`` grammar (search_filter.html)."""

    EQ = "eq"
    NE = "ne"
    CO = "co"
    SW = "sw"
    EW = "ew"
    GT = "gt"
    LT = "lt"
    GE = "ge"
    LE = "le"
    AP = "ap"
    SA = "sa"
    EB = "eb"
    PR = "pr"
    PO = "po"
    SS = "ss"
    SB = "sb"
    IN = "in"
    NI = "ni"
    RE = "re"


@dataclass(frozen=True, slots=True)
class FilterComparison:
    """``path op value`` with the path resolved to a parameter (and chain).

    ``value`` is the comparison value parsed as the parameter's type (for ``pr``, a
    :class:`MissingValue`); ``raw`` is the value as written.
    """

    path: str
    operator: FilterOperator
    parameter: SearchParameterDefinition
    value: SearchValue
    raw: str
    chain: tuple[ChainLink, ...] = ()


@dataclass(frozen=True, slots=True)
class FilterNot:
    operand: FilterExpression


@dataclass(frozen=True, slots=True)
class FilterAnd:
    operands: tuple[FilterExpression, ...]


@dataclass(frozen=True, slots=True)
class FilterOr:
    operands: tuple[FilterExpression, ...]


FilterExpression = FilterComparison | FilterNot | FilterAnd | FilterOr


@dataclass(frozen=True, slots=True)
class IndexedResource:
    """What the evaluator needs of a resource: identity, last update and index rows."""

    resource_type: str
    id: str
    rows: tuple[IndexRow, ...] = field(default_factory=tuple)
