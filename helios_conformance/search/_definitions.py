"""The SearchParameter registry: the official R4 definitions plus runtime-registered ones.

The official definitions come from ``fixtures/r4/search-parameters.json`` (vendored
from ``hl7.fhir.r4.examples@4.0.1``, sha256-checked by the loader). Definitions are
keyed by base type; ``Resource`` and ``DomainResource`` parameters apply to every
type that specializes them. A multi-base official expression such as
``AllergyIntolerance.patient | CarePlan.subject.where(resolve() is Patient)`` is split
per base so each base keeps only its own union members.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from .._data import load_fixture_json, r4_resource_types
from .._errors import InvalidResource
from ._model import CompositeComponent, ParamType, SearchParameterDefinition

ABSTRACT_BASES = ("Resource", "DomainResource")
# The three R4 resource types that specialize Resource directly, not DomainResource.
_NOT_DOMAIN_RESOURCES = frozenset({"Bundle", "Binary", "Parameters"})
_CODE_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_\-.]{0,63}")
_SPECIAL_CODES = frozenset({"_text", "_content", "_filter", "_query", "_has", "_list", "_type"})


def split_union(expression: str) -> list[str]:
    """Split a FHIRPath expression on its top-level ``|`` operators.

    Parentheses and quoted strings are respected: ``(a | b).c | d`` has two members.
    """
    members: list[str] = []
    depth = 0
    quoted = False
    start = 0
    index = 0
    while index < len(expression):
        char = expression[index]
        if quoted:
            if char == "\\":
                index += 1
            elif char == "'":
                quoted = False
        elif char == "'":
            quoted = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            members.append(expression[start:index].strip())
            start = index + 1
        index += 1
    members.append(expression[start:].strip())
    return [member for member in members if member]


def _root_of(member: str) -> str:
    match = re.match(r"\(*\s*([A-Za-z]+)", member)
    return match.group(1) if match else ""


def expression_for_base(expression: str | None, base: str) -> str | None:
    """Keep the union members of ``expression`` that apply to ``base``.

    A member applies when it starts at ``base`` (or at ``Resource``/``DomainResource``);
    members that start at another type are dropped. Returns ``None`` when nothing is
    left.
    """
    if expression is None:
        return None
    members = split_union(expression)
    kept = [m for m in members if _root_of(m) in (base, *ABSTRACT_BASES)]
    if not kept:
        # A relative expression (a custom parameter may use one) applies as written.
        kept = [m for m in members if not _root_of(m)[:1].isupper()]
    return " | ".join(kept) if kept else None


def applicable_bases(resource_type: str) -> tuple[str, ...]:
    """The bases whose parameters apply to ``resource_type``, most general first."""
    if resource_type in _NOT_DOMAIN_RESOURCES:
        return ("Resource", resource_type)
    return ("Resource", "DomainResource", resource_type)


# R4 declares _text and _content as string parameters without an expression; they are
# full-text searches (search.html#text), so the registry types them as special.
_FULL_TEXT_CODES = frozenset({"_text", "_content"})


def _definition_from_json(entry: Mapping[str, Any], *, custom: bool) -> SearchParameterDefinition:
    code = str(entry["code"])
    param_type = ParamType(entry["type"])
    if code in _FULL_TEXT_CODES and not custom:
        param_type = ParamType.SPECIAL
    return SearchParameterDefinition(
        url=str(entry["url"]),
        code=code,
        type=param_type,
        base=tuple(entry.get("base", ())),
        expression=entry.get("expression"),
        target=tuple(entry.get("target", ())),
        comparator=tuple(entry.get("comparator", ())),
        modifier=tuple(entry.get("modifier", ())),
        component=tuple(
            CompositeComponent(definition=str(c["definition"]), expression=str(c["expression"]))
            for c in entry.get("component", ())
        ),
        multiple_or=bool(entry.get("multipleOr", True)),
        multiple_and=bool(entry.get("multipleAnd", True)),
        custom=custom,
    )


def _specialize(definition: SearchParameterDefinition, base: str) -> SearchParameterDefinition:
    expression = expression_for_base(definition.expression, base)
    if expression == definition.expression and definition.base == (base,):
        return definition
    return SearchParameterDefinition(
        url=definition.url,
        code=definition.code,
        type=definition.type,
        base=(base,),
        expression=expression,
        target=definition.target,
        comparator=definition.comparator,
        modifier=definition.modifier,
        component=definition.component,
        multiple_or=definition.multiple_or,
        multiple_and=definition.multiple_and,
        custom=definition.custom,
    )


@functools.cache
def _official() -> tuple[
    dict[str, dict[str, SearchParameterDefinition]], dict[str, SearchParameterDefinition]
]:
    document = load_fixture_json("r4/search-parameters.json")
    by_base: dict[str, dict[str, SearchParameterDefinition]] = {}
    by_url: dict[str, SearchParameterDefinition] = {}
    for entry in document["searchParameters"]:
        definition = _definition_from_json(entry, custom=False)
        by_url[definition.url] = definition
        for base in definition.base:
            by_base.setdefault(base, {})[definition.code] = _specialize(definition, base)
    return by_base, by_url


@functools.cache
def patient_compartment() -> Mapping[str, tuple[str, ...]]:
    """The R4 Patient compartment: resource type -> the parameters linking it to a patient.

    Types listed without parameters are not in the compartment and are omitted.
    """
    document = load_fixture_json("r4/compartment-patient.json")
    return {
        resource_type: tuple(params)
        for resource_type, params in sorted(document["resources"].items())
        if params
    }


class SearchParameterRegistry:
    """Search parameters by base type: the official R4 set plus custom registrations.

    The official definitions are shared and immutable; each registry instance keeps
    its own custom registrations (a backend holds one registry per tenant).
    """

    def __init__(self, definitions: Iterable[SearchParameterDefinition] | None = None) -> None:
        """Create a registry of the official R4 parameters, or of ``definitions`` only."""
        self._by_base: dict[str, dict[str, SearchParameterDefinition]]
        self._by_url: dict[str, SearchParameterDefinition]
        self._custom: dict[str, SearchParameterDefinition] = {}
        self._cache: dict[str, Mapping[str, SearchParameterDefinition]] = {}
        if definitions is None:
            official_by_base, official_by_url = _official()
            self._by_base = {base: dict(codes) for base, codes in official_by_base.items()}
            self._by_url = dict(official_by_url)
        else:
            self._by_base = {}
            self._by_url = {}
            for definition in definitions:
                self._add(definition)

    def _add(self, definition: SearchParameterDefinition) -> None:
        self._by_url[definition.url] = definition
        for base in definition.base:
            self._by_base.setdefault(base, {})[definition.code] = _specialize(definition, base)
        self._cache.clear()

    def copy(self) -> SearchParameterRegistry:
        """Return an independent registry with the same definitions."""
        clone = SearchParameterRegistry.__new__(SearchParameterRegistry)
        clone._by_base = {base: dict(codes) for base, codes in self._by_base.items()}
        clone._by_url = dict(self._by_url)
        clone._custom = dict(self._custom)
        clone._cache = {}
        return clone

    def for_type(self, resource_type: str) -> Mapping[str, SearchParameterDefinition]:
        """Every parameter that applies to ``resource_type``, by code."""
        cached = self._cache.get(resource_type)
        if cached is not None:
            return cached
        merged: dict[str, SearchParameterDefinition] = {}
        for base in applicable_bases(resource_type):
            for code, definition in self._by_base.get(base, {}).items():
                merged[code] = definition
        self._cache[resource_type] = merged
        return merged

    def get(self, resource_type: str, code: str) -> SearchParameterDefinition | None:
        """The parameter ``code`` of ``resource_type``, or ``None``."""
        return self.for_type(resource_type).get(code)

    def by_url(self, url: str) -> SearchParameterDefinition | None:
        """The definition with this canonical URL (as registered, not specialized)."""
        return self._by_url.get(url)

    def custom(self) -> tuple[SearchParameterDefinition, ...]:
        """The custom definitions registered at runtime, by URL."""
        return tuple(self._custom[url] for url in sorted(self._custom))

    def __iter__(self) -> Iterator[SearchParameterDefinition]:
        return iter(self._by_url.values())

    def __len__(self) -> int:
        return len(self._by_url)

    def register(self, resource: Mapping[str, Any]) -> SearchParameterDefinition | None:
        """Register a ``SearchParameter`` resource; return its definition.

        A resource with ``status`` ``retired`` removes an earlier registration of its
        URL and returns ``None``. Registering a URL again replaces the earlier
        definition.

        Raises:
            InvalidResource: the SearchParameter is malformed (the message says which
                element and why): no url/code/base/type, an unknown base type, a code
                that an official parameter of that base already uses, a missing
                expression, an expression that does not parse, or a composite whose
                components are unknown.
        """
        definition = validate_search_parameter(resource, self)
        if resource.get("status") == "retired":
            self.unregister(definition.url)
            return None
        self.unregister(definition.url)
        self._custom[definition.url] = definition
        self._add(definition)
        return definition

    def unregister(self, url: str) -> None:
        """Remove a custom definition; official ones cannot be removed."""
        old = self._custom.pop(url, None)
        if old is None:
            return
        self._by_url.pop(url, None)
        for base in old.base:
            codes = self._by_base.get(base, {})
            if codes.get(old.code, None) is not None and codes[old.code].url == url:
                del codes[old.code]
        self._cache.clear()


def validate_search_parameter(
    resource: Mapping[str, Any], registry: SearchParameterRegistry
) -> SearchParameterDefinition:
    """Check a SearchParameter resource and return its definition (not registered).

    Raises:
        InvalidResource: what is wrong, with the element as location.
    """
    if resource.get("resourceType") != "SearchParameter":
        raise InvalidResource(
            f"expected a SearchParameter, got {resource.get('resourceType')!r}",
            location="resourceType",
        )
    url = resource.get("url")
    if not isinstance(url, str) or not url:
        raise InvalidResource("a SearchParameter needs a url", location="SearchParameter.url")
    code = resource.get("code")
    if not isinstance(code, str) or not _CODE_PATTERN.fullmatch(code):
        raise InvalidResource(
            f"{code!r} is not a valid search parameter code (letters, digits, '-', '_', '.')",
            location="SearchParameter.code",
        )
    if code in _SPECIAL_CODES:
        raise InvalidResource(
            f"{code!r} is a reserved search parameter name", location="SearchParameter.code"
        )
    raw_type = resource.get("type")
    try:
        param_type = ParamType(str(raw_type))
    except ValueError:
        raise InvalidResource(
            f"{raw_type!r} is not a search parameter type (expected one of "
            f"{', '.join(t.value for t in ParamType)})",
            location="SearchParameter.type",
        ) from None
    if param_type is ParamType.SPECIAL:
        raise InvalidResource(
            "custom parameters of type 'special' cannot be evaluated (they have no expression "
            "semantics)",
            location="SearchParameter.type",
        )
    base = resource.get("base")
    if not isinstance(base, list) or not base or not all(isinstance(b, str) for b in base):
        raise InvalidResource(
            "a SearchParameter needs a non-empty list of base resource types",
            location="SearchParameter.base",
        )
    known = r4_resource_types() | set(ABSTRACT_BASES)
    for name in base:
        if name not in known:
            raise InvalidResource(
                f"{name!r} is not a FHIR R4 resource type", location="SearchParameter.base"
            )
        existing = registry.get(name, code) if name not in ABSTRACT_BASES else None
        if existing is not None and not existing.custom:
            raise InvalidResource(
                f"{name} already has the official search parameter {code!r} ({existing.url})",
                location="SearchParameter.code",
            )
        if existing is not None and existing.custom and existing.url != url:
            raise InvalidResource(
                f"{name} already has the custom search parameter {code!r} ({existing.url})",
                location="SearchParameter.code",
            )
    expression = resource.get("expression")
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidResource(
            "a custom SearchParameter needs a FHIRPath expression",
            location="SearchParameter.expression",
        )
    from ._extract import check_expression  # late import: _extract imports this module

    try:
        check_expression(expression)
    except ValueError as exc:
        raise InvalidResource(str(exc), location="SearchParameter.expression") from exc
    components = resource.get("component", [])
    if param_type is ParamType.COMPOSITE:
        if not isinstance(components, list) or len(components) < 2:
            raise InvalidResource(
                "a composite SearchParameter needs at least two components",
                location="SearchParameter.component",
            )
        for position, component in enumerate(components):
            where = f"SearchParameter.component[{position}]"
            if not isinstance(component, Mapping):
                raise InvalidResource("a component must be an object", location=where)
            target = component.get("definition")
            if not isinstance(target, str) or registry.by_url(target) is None:
                raise InvalidResource(
                    f"component definition {target!r} is not a known SearchParameter url",
                    location=f"{where}.definition",
                )
            component_expression = component.get("expression")
            if not isinstance(component_expression, str) or not component_expression:
                raise InvalidResource(
                    "a component needs an expression", location=f"{where}.expression"
                )
            try:
                check_expression(component_expression)
            except ValueError as exc:
                raise InvalidResource(str(exc), location=f"{where}.expression") from exc
    target_types = resource.get("target", [])
    for name in target_types:
        if name not in known:
            raise InvalidResource(
                f"{name!r} is not a FHIR R4 resource type", location="SearchParameter.target"
            )
    entry = dict(resource)
    entry["base"] = base
    return _definition_from_json(entry, custom=True)
