"""The query parser: URL-decoded ``(name, value)`` pairs -> :class:`SearchQuery`.

Rules (FHIR R4 search.html):

- a parameter repeated is an AND; commas in a value are an OR;
- ``\\,`` ``\\|`` ``\\$`` ``\\\\`` escape the separators (unescaped once, after the
  value is split);
- prefixes (``eq ne gt lt ge le sa eb ap``) are read only for number, date and
  quantity parameters, so ``family=Lee`` is never ``le`` + ``e``;
- modifiers are checked against the parameter type; the terminology modifiers
  (``:in``, ``:not-in``, ``:above``/``:below`` on tokens) raise Unsupported;
- empty and malformed values raise InvalidSearch naming the parameter;
- an unknown parameter raises InvalidSearch (strict) or is ignored and reported
  in :attr:`SearchQuery.ignored` (lenient).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .._data import r4_resource_types
from .._errors import InvalidSearch, Unsupported
from .._resource import ID_PATTERN
from ._definitions import SearchParameterRegistry
from ._extract import expression_types
from ._index import default_registry, split_reference
from ._model import (
    DEFAULT_CHAIN_DEPTH,
    MAX_CHAIN_DEPTH,
    MAX_PAGE_SIZE,
    ChainLink,
    CompositeValue,
    DateValue,
    HasClause,
    IncludeSpec,
    MissingValue,
    NumberValue,
    ParameterTest,
    ParamType,
    Prefix,
    QuantityValue,
    ReferenceValue,
    SearchParameterDefinition,
    SearchQuery,
    SearchValue,
    SortDirection,
    SortKey,
    StringValue,
    SummaryMode,
    TextSearchValue,
    TokenValue,
    TotalMode,
    UriValue,
)
from ._normalize import date_range, fold, parse_decimal, precision_range
from ._text import TextQueryError, parse_text_query
from ._ucum import to_canonical

_PREFIXES = frozenset(p.value for p in Prefix)

MODIFIERS: dict[ParamType, frozenset[str]] = {
    ParamType.STRING: frozenset({"exact", "contains", "missing"}),
    ParamType.TOKEN: frozenset(
        {
            "text",
            "not",
            "above",
            "below",
            "in",
            "not-in",
            "of-type",
            "missing",
            "code-text",
            "text-advanced",
        }
    ),
    ParamType.REFERENCE: frozenset({"identifier", "missing"}),
    ParamType.URI: frozenset({"above", "below", "missing"}),
    ParamType.DATE: frozenset({"missing"}),
    ParamType.NUMBER: frozenset({"missing"}),
    ParamType.QUANTITY: frozenset({"missing"}),
    ParamType.COMPOSITE: frozenset({"missing"}),
    ParamType.SPECIAL: frozenset(),
}
"""The modifiers each parameter type accepts (plus ``:[type]`` on references)."""

_TERMINOLOGY = {
    "in": "search.modifier.in",
    "not-in": "search.modifier.not_in",
    "above": "search.modifier.subsumption",
    "below": "search.modifier.subsumption",
}

# Parameters of the HTTP layer that do not change which resources match.
_TRANSPORT_PARAMETERS = frozenset({"_format", "_pretty"})
_UNSUPPORTED_RESULT_PARAMETERS = {
    "_elements": "search.elements",
    "_contained": None,
    "_containedType": None,
    "_query": None,
    "_list": None,
}


# -- escaping -----------------------------------------------------------------------


def split_escaped(text: str, separator: str) -> list[str]:
    """Split on unescaped ``separator``, keeping escapes in the pieces."""
    pieces: list[str] = []
    current: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            current.append(text[index : index + 2])
            index += 2
            continue
        if char == separator:
            pieces.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    pieces.append("".join(current))
    return pieces


def unescape(text: str) -> str:
    """Remove the search escapes: ``\\,`` ``\\|`` ``\\$`` ``\\\\``.

    A backslash before any other character is kept as written.
    """
    out: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text) and text[index + 1] in ",|$\\":
            out.append(text[index + 1])
            index += 2
            continue
        out.append(char)
        index += 1
    return "".join(out)


# -- values -------------------------------------------------------------------------


def _fail(name: str, message: str) -> InvalidSearch:
    return InvalidSearch(f"search parameter {name!r}: {message}", parameter=name)


def _split_prefix(name: str, text: str) -> tuple[Prefix, str]:
    if len(text) > 2 and text[:2] in _PREFIXES and not text[2].isalpha():
        return Prefix(text[:2]), text[2:]
    if text[:1].isalpha():
        raise _fail(
            name,
            f"{text!r} does not start with a number/date or a known prefix "
            f"({', '.join(p.value for p in Prefix)})",
        )
    return Prefix.EQ, text


def parse_number(name: str, text: str, prefix: Prefix) -> NumberValue:
    try:
        value = parse_decimal(text)
    except ValueError:
        raise _fail(name, f"{text!r} is not a number") from None
    low, high = precision_range(value)
    return NumberValue(prefix=prefix, value=value, low=low, high=high, raw=text)


def _parse_date(name: str, text: str, prefix: Prefix) -> DateValue:
    try:
        low, high = date_range(text)
    except ValueError as exc:
        raise _fail(name, str(exc)) from None
    return DateValue(prefix=prefix, low=low, high=high, raw=text)


def parse_token(name: str, escaped: str) -> TokenValue:
    """Parse ``[system]|[code]``, ``|code``, ``system|`` or ``code`` (escaped form)."""
    parts = split_escaped(escaped, "|")
    if len(parts) == 1:
        code = unescape(parts[0])
        if not code:
            raise _fail(name, "the token is empty")
        return TokenValue(system=None, code=code)
    if len(parts) > 2:
        raise _fail(name, f"{unescape(escaped)!r} has more than one '|' (escape it as '\\|')")
    system, code = unescape(parts[0]), unescape(parts[1])
    if not system and not code:
        raise _fail(name, "'|' alone is not a token (give a system, a code or both)")
    return TokenValue(system=system, code=code or None)


def _parse_quantity(name: str, escaped: str, prefix_allowed: bool = True) -> QuantityValue:
    parts = split_escaped(escaped, "|")
    if len(parts) not in (1, 3):
        raise _fail(
            name,
            f"{unescape(escaped)!r} is not a quantity (write [prefix]number or "
            "[prefix]number|system|code)",
        )
    prefix, number_text = _split_prefix(name, unescape(parts[0]))
    number = parse_number(name, number_text, prefix)
    system = code = None
    if len(parts) == 3:
        system = unescape(parts[1]) or None
        code = unescape(parts[2]) or None
    canonical_unit = canonical_low = canonical_high = canonical_value = None
    converted = to_canonical(number.value, system, code)
    if converted is not None:
        canonical_value, canonical_unit = converted
        low = to_canonical(number.low, system, code)
        high = to_canonical(number.high, system, code)
        if low is not None and high is not None:
            canonical_low, canonical_high = low[0], high[0]
    return QuantityValue(
        prefix=prefix,
        number=number,
        system=system,
        code=code,
        canonical_unit=canonical_unit,
        canonical_low=canonical_low,
        canonical_high=canonical_high,
        canonical_value=canonical_value,
    )


def _parse_reference(
    name: str, escaped: str, definition: SearchParameterDefinition, target_type: str | None
) -> ReferenceValue:
    raw = unescape(escaped)
    if not raw:
        raise _fail(name, "the reference is empty")
    if "://" in raw or raw.startswith(("urn:", "#")):
        exact, ref_type, ref_id, version = split_reference(raw)
        return ReferenceValue(raw=raw, exact=exact, type=ref_type, id=ref_id, version=version)
    if "/" in raw:
        exact, ref_type, ref_id, version = split_reference(raw)
        if ref_type is None or ref_id is None or exact.count("/") != 1:
            raise _fail(name, f"{raw!r} is not a reference (expected Type/id, an id or a URL)")
        if not ID_PATTERN.fullmatch(ref_id):
            raise _fail(name, f"{ref_id!r} is not a valid resource id")
        if target_type is not None and ref_type != target_type:
            raise _fail(name, f"{raw!r} is not a {target_type} reference")
        if definition.target and ref_type not in definition.target:
            raise _fail(
                name,
                f"{ref_type} is not a target of {definition.code} "
                f"(targets: {', '.join(definition.target)})",
            )
        return ReferenceValue(raw=raw, exact=exact, type=ref_type, id=ref_id, version=version)
    if not ID_PATTERN.fullmatch(raw):
        raise _fail(name, f"{raw!r} is not a valid resource id")
    if target_type is not None:
        return ReferenceValue(raw=raw, exact=f"{target_type}/{raw}", type=target_type, id=raw)
    return ReferenceValue(raw=raw, id=raw)


def parse_value(
    name: str,
    definition: SearchParameterDefinition,
    param_type: ParamType,
    modifier: str | None,
    escaped: str,
    registry: SearchParameterRegistry,
    target_type: str | None = None,
) -> SearchValue:
    """Parse one (escaped) OR-value of a parameter of ``param_type``."""
    if escaped == "":
        raise _fail(name, "a value is empty (check for a stray comma)")
    if modifier == "missing":
        text = unescape(escaped)
        if text not in ("true", "false"):
            raise _fail(name, f":missing takes true or false, not {text!r}")
        return MissingValue(text == "true")
    if param_type is ParamType.STRING:
        text = unescape(escaped)
        if not fold(text) and modifier != "exact":
            raise _fail(name, "the string is blank")
        return StringValue(exact=text, text=fold(text))
    if param_type is ParamType.TOKEN:
        if modifier in ("text", "code-text"):
            text = unescape(escaped)
            if not fold(text):
                raise _fail(name, "the text is blank")
            return TokenValue(system=None, code=None, text=fold(text))
        if modifier == "text-advanced":
            return _parse_text(name, unescape(escaped))
        if modifier == "of-type":
            parts = split_escaped(escaped, "|")
            if len(parts) != 3 or not all(parts):
                raise _fail(
                    name,
                    ":of-type takes [type system]|[type code]|[identifier value], "
                    f"not {unescape(escaped)!r}",
                )
            return TokenValue(
                system=None,
                code=unescape(parts[2]),
                type_system=unescape(parts[0]),
                type_code=unescape(parts[1]),
            )
        token = parse_token(name, escaped)
        if _is_boolean(definition) and (
            token.system is not None or token.code not in ("true", "false")
        ):
            raise _fail(name, f"{unescape(escaped)!r} is not a boolean (true or false)")
        return token
    if param_type is ParamType.DATE:
        prefix, text = _split_prefix(name, unescape(escaped))
        return _parse_date(name, text, prefix)
    if param_type is ParamType.NUMBER:
        prefix, text = _split_prefix(name, unescape(escaped))
        return parse_number(name, text, prefix)
    if param_type is ParamType.QUANTITY:
        return _parse_quantity(name, escaped)
    if param_type is ParamType.REFERENCE:
        if modifier == "identifier":
            token = parse_token(name, escaped)
            return ReferenceValue(raw=unescape(escaped), identifier=token)
        return _parse_reference(name, escaped, definition, target_type)
    if param_type is ParamType.URI:
        text = unescape(escaped)
        if not text.strip():
            raise _fail(name, "the uri is blank")
        return UriValue(text)
    if param_type is ParamType.COMPOSITE:
        return _parse_composite(name, definition, escaped, registry)
    if definition.code in ("_text", "_content"):
        return _parse_text(name, unescape(escaped))
    raise Unsupported(
        f"search parameter {name!r} (type {param_type.value}) cannot be evaluated",
        capability=None,
    )


def _is_boolean(definition: SearchParameterDefinition) -> bool:
    """True when every element the parameter indexes is a FHIR boolean."""
    if definition.expression is None or len(definition.base) != 1:
        return False
    types = expression_types(definition.expression, definition.base[0])
    return types == frozenset({"boolean"})


def _parse_text(name: str, text: str) -> TextSearchValue:
    try:
        return TextSearchValue(raw=text, query=parse_text_query(text))
    except TextQueryError as exc:
        raise _fail(name, str(exc)) from None


def _parse_composite(
    name: str,
    definition: SearchParameterDefinition,
    escaped: str,
    registry: SearchParameterRegistry,
) -> CompositeValue:
    parts = split_escaped(escaped, "$")
    if len(parts) != len(definition.component):
        raise _fail(
            name,
            f"a {definition.code} value has {len(definition.component)} '$'-separated parts, "
            f"got {len(parts)} in {unescape(escaped)!r}",
        )
    components = []
    for part, component in zip(parts, definition.component, strict=True):
        component_definition = registry.by_url(component.definition)
        if component_definition is None:
            raise Unsupported(
                f"search parameter {name!r}: component {component.definition} is not defined",
                capability="search.param.composite",
            )
        value = parse_value(
            name, component_definition, component_definition.type, None, part, registry
        )
        if isinstance(value, (MissingValue, TextSearchValue, CompositeValue)):
            raise _fail(name, f"component value {unescape(part)!r} is not allowed here")
        components.append(value)
    return CompositeValue(tuple(components))


# -- names --------------------------------------------------------------------------


def _split_modifier(name: str, raw_name: str) -> tuple[str, str | None]:
    code, sep, modifier = name.partition(":")
    if sep and not modifier:
        raise _fail(raw_name, "the modifier after ':' is empty")
    return code, (modifier if sep else None)


def _check_modifier(
    raw_name: str, definition: SearchParameterDefinition, modifier: str | None
) -> str | None:
    """Validate a modifier; return the ``:[type]`` target type when it is one."""
    if modifier is None:
        return None
    param_type = definition.type
    if param_type is ParamType.REFERENCE and modifier in r4_resource_types():
        if definition.target and modifier not in definition.target:
            raise _fail(
                raw_name,
                f"{modifier} is not a target of {definition.code} "
                f"(targets: {', '.join(definition.target)})",
            )
        return modifier
    if param_type is ParamType.TOKEN and modifier in _TERMINOLOGY:
        raise Unsupported(
            f"search parameter {raw_name!r}: the terminology modifier :{modifier} needs a "
            "terminology service, which this backend does not have",
            capability=_TERMINOLOGY[modifier],
        )
    if modifier not in MODIFIERS[param_type]:
        allowed = sorted(MODIFIERS[param_type])
        if param_type is ParamType.REFERENCE:
            allowed.append("[type]")
        raise _fail(
            raw_name,
            f"the modifier :{modifier} does not apply to a {param_type.value} parameter "
            f"(allowed: {', '.join(':' + m for m in allowed) or 'none'})",
        )
    return None


def check_chain_depth(max_chain_depth: int) -> int:
    """Return ``max_chain_depth`` if it is a valid limit (1 to :data:`MAX_CHAIN_DEPTH`)."""
    if not 1 <= max_chain_depth <= MAX_CHAIN_DEPTH:
        raise ValueError(
            f"the chain depth limit must be between 1 and {MAX_CHAIN_DEPTH}, not {max_chain_depth}"
        )
    return max_chain_depth


def _resolve_chain(
    raw_name: str,
    resource_type: str,
    path: str,
    registry: SearchParameterRegistry,
    max_chain_depth: int = DEFAULT_CHAIN_DEPTH,
) -> tuple[tuple[ChainLink, ...], str, str]:
    """Follow ``subject:Patient.organization.name`` to (links, final type, final name)."""
    segments = path.split(".")
    if any(not segment for segment in segments):
        raise _fail(raw_name, f"the chain {path!r} has an empty link")
    if len(segments) - 1 > max_chain_depth:
        raise _fail(
            raw_name,
            f"the chain follows {len(segments) - 1} references; this server follows at most "
            f"{max_chain_depth} (a configurable limit, at most {MAX_CHAIN_DEPTH}) to keep "
            "searches bounded",
        )
    links: list[ChainLink] = []
    current_type = resource_type
    for segment in segments[:-1]:
        code, modifier = _split_modifier(segment, raw_name)
        definition = registry.get(current_type, code)
        if definition is None:
            raise _fail(raw_name, f"{current_type} has no search parameter {code!r}")
        if definition.type is not ParamType.REFERENCE:
            raise _fail(raw_name, f"cannot chain through {code!r}: it is not a reference")
        next_code = _split_modifier(segments[len(links) + 1], raw_name)[0]
        if modifier is not None:
            if modifier not in r4_resource_types() or (
                definition.target and modifier not in definition.target
            ):
                raise _fail(raw_name, f"{modifier!r} is not a target type of {code!r}")
            target = modifier
        else:
            candidates = [t for t in definition.target if registry.get(t, next_code) is not None]
            if len(candidates) != 1:
                raise _fail(
                    raw_name,
                    f"the chain through {code!r} is ambiguous or impossible: "
                    f"{len(candidates)} of its targets ({', '.join(definition.target)}) have "
                    f"a parameter {next_code!r}; name one with {code}:[type]",
                )
            target = candidates[0]
        links.append(ChainLink(parameter=definition, target_type=target))
        current_type = target
    return tuple(links), current_type, segments[-1]


class _Builder:
    def __init__(
        self,
        resource_type: str,
        registry: SearchParameterRegistry,
        strict: bool,
        max_chain_depth: int = DEFAULT_CHAIN_DEPTH,
    ) -> None:
        self.resource_type = resource_type
        self.registry = registry
        self.strict = strict
        self.max_chain_depth = max_chain_depth
        self.ignored: list[str] = []

    def unknown(self, raw_name: str, message: str) -> None:
        if self.strict:
            raise _fail(raw_name, message)
        self.ignored.append(raw_name)

    def test(
        self, raw_name: str, resource_type: str, name: str, value: str
    ) -> ParameterTest | None:
        chain: tuple[ChainLink, ...] = ()
        if "." in name:
            chain, resource_type, name = _resolve_chain(
                raw_name, resource_type, name, self.registry, self.max_chain_depth
            )
        code, modifier = _split_modifier(name, raw_name)
        definition = self.registry.get(resource_type, code)
        if definition is None:
            self.unknown(raw_name, f"{resource_type} has no search parameter {code!r}")
            return None
        if definition.code == "_filter":
            raise _fail(raw_name, "_filter cannot be chained")
        target_type = _check_modifier(raw_name, definition, modifier)
        if target_type is not None:
            modifier = None
        values = tuple(
            parse_value(
                raw_name, definition, definition.type, modifier, part, self.registry, target_type
            )
            for part in split_escaped(value, ",")
        )
        if modifier == "missing" and len(values) != 1:
            raise _fail(raw_name, ":missing takes a single true or false")
        return ParameterTest(
            name=raw_name,
            parameter=definition,
            modifier=modifier,
            values=values,
            target_type=target_type,
            chain=chain,
        )

    def has(self, raw_name: str, rest: str, value: str, target_type: str) -> HasClause:
        parts = rest.split(":", 2)
        if len(parts) < 3 or not all(parts):
            raise _fail(
                raw_name, "_has takes _has:[type]:[reference parameter]:[parameter]=[value]"
            )
        source_type, reference_code, remainder = parts
        if source_type not in r4_resource_types():
            raise _fail(raw_name, f"{source_type!r} is not a FHIR R4 resource type")
        reference = self.registry.get(source_type, reference_code)
        if reference is None or reference.type is not ParamType.REFERENCE:
            raise _fail(
                raw_name, f"{source_type} has no reference search parameter {reference_code!r}"
            )
        if reference.target and target_type not in reference.target:
            raise _fail(raw_name, f"{source_type}.{reference_code} cannot point at {target_type}")
        inner: ParameterTest | HasClause | None
        if remainder.startswith("_has:"):
            inner = self.has(raw_name, remainder[len("_has:") :], value, source_type)
        else:
            saved = self.strict
            self.strict = True
            try:
                inner = self.test(raw_name, source_type, remainder, value)
            finally:
                self.strict = saved
        assert inner is not None
        return HasClause(name=raw_name, resource_type=source_type, reference=reference, test=inner)


_ELEMENT_NAME = re.compile(r"[a-z][A-Za-z0-9]*")


def _parse_elements(value: str) -> tuple[str, ...]:
    names = []
    for part in value.split(","):
        name = part.strip()
        if not _ELEMENT_NAME.fullmatch(name):
            raise _fail(
                "_elements", f"{part!r} is not a top-level element name (like name or birthDate)"
            )
        names.append(name)
    return tuple(names)


def _parse_count(value: str) -> int:
    if not re.fullmatch(r"\d{1,9}", value):
        raise _fail("_count", f"{value!r} is not a non-negative integer")
    return min(int(value), MAX_PAGE_SIZE)


def _parse_sort(builder: _Builder, value: str) -> tuple[SortKey, ...]:
    keys = []
    for part in value.split(","):
        if not part:
            raise _fail("_sort", "a sort key is empty")
        direction = SortDirection.DESCENDING if part.startswith("-") else SortDirection.ASCENDING
        code = part.lstrip("-")
        definition = builder.registry.get(builder.resource_type, code)
        if definition is None:
            raise _fail("_sort", f"{builder.resource_type} has no search parameter {code!r}")
        if definition.type in (ParamType.COMPOSITE, ParamType.SPECIAL):
            raise _fail(
                "_sort",
                f"{code!r} is a {definition.type.value} parameter, which has no order to sort by",
            )
        keys.append(SortKey(parameter=definition, direction=direction))
    return tuple(keys)


def _parse_include(builder: _Builder, name: str, value: str, reverse: bool) -> IncludeSpec:
    iterate = name.endswith((":iterate", ":recurse"))
    parts = value.split(":")
    if value == "*":
        return IncludeSpec(
            source_type=builder.resource_type if not reverse else "*",
            parameter=None,
            iterate=iterate,
        )
    if len(parts) not in (2, 3) or not all(parts):
        raise _fail(name, f"{value!r} is not [type]:[parameter] or [type]:[parameter]:[target]")
    source_type = parts[0]
    if source_type not in r4_resource_types():
        raise _fail(name, f"{source_type!r} is not a FHIR R4 resource type")
    if parts[1] == "*":
        return IncludeSpec(source_type=source_type, parameter=None, iterate=iterate)
    definition = builder.registry.get(source_type, parts[1])
    if definition is None or definition.type is not ParamType.REFERENCE:
        raise _fail(name, f"{source_type} has no reference search parameter {parts[1]!r}")
    target = parts[2] if len(parts) == 3 else None
    if target is not None and definition.target and target not in definition.target:
        raise _fail(name, f"{target!r} is not a target of {source_type}.{parts[1]}")
    return IncludeSpec(
        source_type=source_type, parameter=definition, target_type=target, iterate=iterate
    )


def parse_query(
    resource_type: str,
    parameters: Sequence[tuple[str, str]],
    *,
    registry: SearchParameterRegistry | None = None,
    strict: bool = True,
    max_chain_depth: int = DEFAULT_CHAIN_DEPTH,
    subsetting: bool = False,
) -> SearchQuery:
    """Parse URL-decoded search parameters for ``resource_type``.

    Args:
        resource_type: the type searched.
        parameters: ``(name, value)`` pairs in request order.
        registry: the tenant's parameters (official R4 ones when ``None``).
        strict: refuse unknown parameters (``True``) or ignore and report them.
        max_chain_depth: the most reference links a chain may follow (1 to
            :data:`MAX_CHAIN_DEPTH`); a longer chain raises InvalidSearch.
        subsetting: parse ``_elements`` and ``_summary=true|text|data`` into
            :attr:`SearchQuery.elements`/``summary`` (a backend that returns subsets);
            when false they raise Unsupported, as before.

    Raises:
        InvalidSearch: a malformed name or value, an unknown parameter (strict); the
            message and ``parameter`` name the parameter.
        Unsupported: a terminology modifier, ``_summary`` other than ``count``,
            ``_elements`` and similar; ``capability`` names the capability id.
    """
    from ._filter import parse_filter

    if resource_type not in r4_resource_types():
        raise InvalidSearch(f"{resource_type!r} is not a FHIR R4 resource type")
    registry = registry or default_registry()
    check_chain_depth(max_chain_depth)
    builder = _Builder(resource_type, registry, strict, max_chain_depth)
    elements: tuple[str, ...] = ()
    offset: int | None = None
    tests: list[ParameterTest] = []
    has: list[HasClause] = []
    filters = []
    count: int | None = None
    summary: SummaryMode | None = None
    total: TotalMode | None = None
    sort: tuple[SortKey, ...] = ()
    include: list[IncludeSpec] = []
    revinclude: list[IncludeSpec] = []
    for raw_name, value in parameters:
        if not raw_name:
            raise InvalidSearch("a search parameter has an empty name", parameter="")
        if raw_name in _TRANSPORT_PARAMETERS:
            continue
        if raw_name == "_elements" and subsetting:
            if value == "":
                raise _fail(raw_name, "the value is empty")
            elements = elements + _parse_elements(value)
            continue
        if raw_name in _UNSUPPORTED_RESULT_PARAMETERS:
            capability = _UNSUPPORTED_RESULT_PARAMETERS[raw_name]
            raise Unsupported(f"{raw_name} is not supported", capability=capability)
        if value == "" and not raw_name.startswith("_has:"):
            raise _fail(raw_name, "the value is empty")
        if raw_name == "_count":
            count = _parse_count(value)
        elif raw_name == "_summary":
            try:
                summary = SummaryMode(value)
            except ValueError:
                raise _fail(
                    "_summary", f"{value!r} is not true, text, data, count or false"
                ) from None
            if not subsetting and summary not in (SummaryMode.COUNT, SummaryMode.FALSE):
                raise Unsupported(f"_summary={value} is not supported", capability="search.summary")
        elif raw_name == "_offset":
            if not re.fullmatch(r"\d{1,9}", value):
                raise _fail("_offset", f"{value!r} is not a non-negative integer")
            offset = int(value)
        elif raw_name == "_total":
            try:
                total = TotalMode(value)
            except ValueError:
                raise _fail("_total", f"{value!r} is not none, estimate or accurate") from None
        elif raw_name == "_sort":
            sort = sort + _parse_sort(builder, value)
        elif raw_name in ("_include", "_include:iterate", "_include:recurse"):
            include.append(_parse_include(builder, raw_name, value, reverse=False))
        elif raw_name in ("_revinclude", "_revinclude:iterate", "_revinclude:recurse"):
            revinclude.append(_parse_include(builder, raw_name, value, reverse=True))
        elif raw_name.startswith("_has:"):
            if value == "":
                raise _fail(raw_name, "the value is empty")
            has.append(builder.has(raw_name, raw_name[len("_has:") :], value, resource_type))
        elif raw_name == "_filter":
            filters.append(parse_filter(value, resource_type, registry))
        elif raw_name == "_type":
            raise _fail("_type", "_type applies to system-level search only")
        else:
            test = builder.test(raw_name, resource_type, raw_name, value)
            if test is not None:
                tests.append(test)
    from ._model import FilterAnd

    filter_expression = None
    if len(filters) == 1:
        filter_expression = filters[0]
    elif filters:
        filter_expression = FilterAnd(tuple(filters))
    return SearchQuery(
        resource_type=resource_type,
        tests=tuple(tests),
        has=tuple(has),
        filter=filter_expression,
        count=count,
        summary=summary,
        total=total,
        sort=sort,
        include=tuple(include),
        revinclude=tuple(revinclude),
        ignored=tuple(builder.ignored),
        elements=elements,
        offset=offset,
    )
