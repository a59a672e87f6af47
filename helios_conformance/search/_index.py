"""Index a resource: every search parameter of its type -> normalized :class:`IndexRow` s."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from ._definitions import SearchParameterRegistry
from ._extract import compile_expression
from ._model import IndexRow, ParamType, SearchParameterDefinition
from ._normalize import date_range, fold, to_decimal
from ._text import content_text, narrative_text
from ._ucum import to_canonical

_CURRENCY_SYSTEM = "urn:iso:std:iso:4217"


def parse_resource_json(text: str | bytes) -> dict[str, Any]:
    """Parse stored resource JSON keeping decimals exact (``100.0`` stays ``100.0``).

    Index from this form: a float loses the digits that give a number its precision.
    """
    parsed: dict[str, Any] = json.loads(text, parse_float=Decimal)
    return parsed


_DEFAULT_REGISTRY: SearchParameterRegistry | None = None


def default_registry() -> SearchParameterRegistry:
    """The shared registry of the official R4 parameters (no custom ones)."""
    global _DEFAULT_REGISTRY
    if _DEFAULT_REGISTRY is None:
        _DEFAULT_REGISTRY = SearchParameterRegistry()
    return _DEFAULT_REGISTRY


def index_resource(
    resource: Mapping[str, Any], registry: SearchParameterRegistry | None = None
) -> tuple[IndexRow, ...]:
    """Extract and normalize every search parameter of ``resource``.

    Args:
        resource: a resource, preferably parsed with :func:`parse_resource_json`.
        registry: the parameters to index (official R4 ones when ``None``).

    Returns:
        The rows in a deterministic order: by parameter code, then value order.
    """
    registry = registry or default_registry()
    resource_type = str(resource.get("resourceType"))
    rows: list[IndexRow] = []
    for code in sorted(registry.for_type(resource_type)):
        definition = registry.for_type(resource_type)[code]
        rows.extend(index_parameter(resource, definition, registry))
    return tuple(rows)


def index_parameter(
    resource: Mapping[str, Any],
    definition: SearchParameterDefinition,
    registry: SearchParameterRegistry | None = None,
) -> list[IndexRow]:
    """The rows of one parameter of one resource."""
    resource_type = str(resource.get("resourceType"))
    if definition.type is ParamType.SPECIAL:
        if definition.code == "_text":
            text = narrative_text(resource)
            return [IndexRow(definition.code, ParamType.SPECIAL, text=text)] if text.strip() else []
        if definition.code == "_content":
            text = content_text(resource)
            return [IndexRow(definition.code, ParamType.SPECIAL, text=text)] if text.strip() else []
        return []
    if definition.expression is None:
        return []
    compiled = compile_expression(definition.expression, resource_type)
    values = compiled.evaluate(resource)
    if definition.type is ParamType.COMPOSITE:
        return _composite_rows(resource, definition, values, registry or default_registry())
    return normalize_values(definition.code, definition.type, values, resource)


def _composite_rows(
    resource: Mapping[str, Any],
    definition: SearchParameterDefinition,
    items: list[Any],
    registry: SearchParameterRegistry,
) -> list[IndexRow]:
    resource_type = str(resource.get("resourceType"))
    rows: list[IndexRow] = []
    base_path = _composite_base_path(definition, resource_type)
    for group, item in enumerate(items, start=1):
        if not isinstance(item, Mapping):
            continue
        path = resource_type if item is resource else base_path
        for position, component in enumerate(definition.component):
            component_definition = registry.by_url(component.definition)
            if component_definition is None:
                continue
            compiled = compile_expression(component.expression, None)
            values = compiled.evaluate(item, root=resource, base_path=path)
            for row in normalize_values(
                definition.code, component_definition.type, values, resource
            ):
                rows.append(_with_group(row, group, position))
    return rows


def _composite_base_path(definition: SearchParameterDefinition, resource_type: str) -> str:
    """The element path the composite's items sit at (``Observation.component``)."""
    expression = definition.expression or resource_type
    for member in expression.split("|"):
        member = member.strip()
        if member.startswith(resource_type + "."):
            return member
    return resource_type


def _with_group(row: IndexRow, group: int, component: int) -> IndexRow:
    return IndexRow(
        param=row.param,
        type=row.type,
        group=group,
        component=component,
        text=row.text,
        exact=row.exact,
        system=row.system,
        code=row.code,
        type_system=row.type_system,
        type_code=row.type_code,
        number=row.number,
        canonical_number=row.canonical_number,
        canonical_unit=row.canonical_unit,
        date_low=row.date_low,
        date_high=row.date_high,
        ref_type=row.ref_type,
        ref_id=row.ref_id,
        ref_version=row.ref_version,
    )


def normalize_values(
    code: str, param_type: ParamType, values: Iterable[Any], resource: Mapping[str, Any]
) -> list[IndexRow]:
    """Normalize extracted JSON values to rows of parameter ``code`` of ``param_type``."""
    rows: list[IndexRow] = []
    for value in values:
        if param_type is ParamType.STRING:
            rows.extend(_string_rows(code, value))
        elif param_type is ParamType.TOKEN:
            rows.extend(_token_rows(code, value))
        elif param_type is ParamType.DATE:
            rows.extend(_date_rows(code, value))
        elif param_type is ParamType.NUMBER:
            number = to_decimal(value)
            if number is not None:
                rows.append(IndexRow(code, ParamType.NUMBER, number=number))
        elif param_type is ParamType.QUANTITY:
            rows.extend(_quantity_rows(code, value))
        elif param_type is ParamType.REFERENCE:
            rows.extend(_reference_rows(code, value, resource))
        elif param_type is ParamType.URI and isinstance(value, str) and value:
            rows.append(IndexRow(code, ParamType.URI, exact=value))
    return rows


# -- strings ----------------------------------------------------------------------

_NAME_PARTS = ("text", "family", "given", "prefix", "suffix")
_ADDRESS_PARTS = ("text", "line", "city", "district", "state", "postalCode", "country")


def _string_rows(code: str, value: Any) -> list[IndexRow]:
    texts: list[str] = []
    if isinstance(value, str):
        texts.append(value)
    elif isinstance(value, Mapping):
        parts: tuple[str, ...] = (
            _NAME_PARTS if ("family" in value or "given" in value) else _ADDRESS_PARTS
        )
        if not any(part in value for part in parts):
            parts = _NAME_PARTS + _ADDRESS_PARTS
        for part in parts:
            found = value.get(part)
            for text in found if isinstance(found, list) else [found]:
                if isinstance(text, str):
                    texts.append(text)
    return [IndexRow(code, ParamType.STRING, text=fold(text), exact=text) for text in texts if text]


# -- tokens -----------------------------------------------------------------------


def _coding_row(code: str, coding: Mapping[str, Any], text: str | None = None) -> IndexRow | None:
    system = coding.get("system")
    value = coding.get("code")
    display = coding.get("display")
    if not isinstance(value, str) and not isinstance(display, str):
        return None
    return IndexRow(
        code,
        ParamType.TOKEN,
        system=system if isinstance(system, str) else None,
        code=value if isinstance(value, str) else None,
        text=fold(display) if isinstance(display, str) else text,
    )


def _token_rows(code: str, value: Any) -> list[IndexRow]:
    if isinstance(value, bool):
        return [IndexRow(code, ParamType.TOKEN, code="true" if value else "false")]
    if isinstance(value, str):
        return [IndexRow(code, ParamType.TOKEN, code=value)] if value else []
    if isinstance(value, (int, Decimal)):
        return [IndexRow(code, ParamType.TOKEN, code=str(value))]
    if not isinstance(value, Mapping):
        return []
    rows: list[IndexRow] = []
    if "coding" in value or ("text" in value and "value" not in value and "code" not in value):
        for coding in value.get("coding", ()) or ():
            if isinstance(coding, Mapping):
                row = _coding_row(code, coding)
                if row is not None:
                    rows.append(row)
        text = value.get("text")
        if isinstance(text, str) and text:
            rows.append(IndexRow(code, ParamType.TOKEN, text=fold(text)))
        return rows
    if "value" in value and "code" not in value:
        # Identifier or ContactPoint: system|value; Identifier.type for :of-type and :text.
        system = value.get("system")
        identifier_value = value.get("value")
        if not isinstance(identifier_value, str):
            return []
        type_concept = value.get("type")
        type_text: str | None = None
        type_codings: list[tuple[str | None, str | None]] = []
        if isinstance(type_concept, Mapping):
            raw_text = type_concept.get("text")
            type_text = fold(raw_text) if isinstance(raw_text, str) else None
            for coding in type_concept.get("coding", ()) or ():
                if isinstance(coding, Mapping):
                    s, c = coding.get("system"), coding.get("code")
                    type_codings.append(
                        (s if isinstance(s, str) else None, c if isinstance(c, str) else None)
                    )
                    if type_text is None and isinstance(coding.get("display"), str):
                        type_text = fold(coding["display"])
        for type_system, type_code in type_codings or [(None, None)]:
            rows.append(
                IndexRow(
                    code,
                    ParamType.TOKEN,
                    system=system if isinstance(system, str) else None,
                    code=identifier_value,
                    text=type_text,
                    type_system=type_system,
                    type_code=type_code,
                )
            )
        return rows
    row = _coding_row(code, value)
    if row is None and isinstance(value.get("value"), (int, Decimal)):
        # A Quantity used as a token (rare): its code.
        return []
    return [row] if row is not None else []


# -- dates ------------------------------------------------------------------------


def _date_rows(code: str, value: Any) -> list[IndexRow]:
    if isinstance(value, str):
        try:
            instant_low, instant_high = date_range(value)
        except ValueError:
            return []
        return [IndexRow(code, ParamType.DATE, date_low=instant_low, date_high=instant_high)]
    if not isinstance(value, Mapping):
        return []
    if "start" in value or "end" in value:
        start, end = value.get("start"), value.get("end")
        try:
            low = date_range(start)[0] if isinstance(start, str) else None
            high = date_range(end)[1] if isinstance(end, str) else None
        except ValueError:
            return []
        if low is None and high is None:
            return []
        return [IndexRow(code, ParamType.DATE, date_low=low, date_high=high)]
    if "event" in value or "repeat" in value:
        # Timing: the span from the first event to the last, or its bounds.
        lows: list[datetime] = []
        highs: list[datetime] = []
        for event in value.get("event", ()) or ():
            if isinstance(event, str):
                try:
                    event_low, event_high = date_range(event)
                except ValueError:
                    continue
                lows.append(event_low)
                highs.append(event_high)
        repeat = value.get("repeat")
        if isinstance(repeat, Mapping) and isinstance(repeat.get("boundsPeriod"), Mapping):
            rows = _date_rows(code, repeat["boundsPeriod"])
            if rows:
                if rows[0].date_low is not None:
                    lows.append(rows[0].date_low)
                if rows[0].date_high is not None:
                    highs.append(rows[0].date_high)
        if not lows and not highs:
            return []
        return [
            IndexRow(
                code,
                ParamType.DATE,
                date_low=min(lows) if lows else None,
                date_high=max(highs) if highs else None,
            )
        ]
    return []


# -- quantities -------------------------------------------------------------------


def _quantity_rows(code: str, value: Any) -> list[IndexRow]:
    if not isinstance(value, Mapping):
        number = to_decimal(value)
        return [IndexRow(code, ParamType.QUANTITY, number=number)] if number is not None else []
    if "low" in value or "high" in value:
        # Range: index each bound as a quantity so comparisons see both ends.
        return [
            row
            for bound in ("low", "high")
            if isinstance(value.get(bound), Mapping)
            for row in _quantity_rows(code, value[bound])
        ]
    number = to_decimal(value.get("value"))
    if number is None:
        return []
    if "currency" in value:
        currency = value.get("currency")
        return [
            IndexRow(
                code,
                ParamType.QUANTITY,
                number=number,
                system=_CURRENCY_SYSTEM,
                code=currency if isinstance(currency, str) else None,
            )
        ]
    system = value.get("system") if isinstance(value.get("system"), str) else None
    unit_code = value.get("code") if isinstance(value.get("code"), str) else None
    unit = value.get("unit") if isinstance(value.get("unit"), str) else None
    canonical = to_canonical(number, system, unit_code)
    return [
        IndexRow(
            code,
            ParamType.QUANTITY,
            number=number,
            system=system,
            code=unit_code,
            exact=unit,
            canonical_number=canonical[0] if canonical else None,
            canonical_unit=canonical[1] if canonical else None,
        )
    ]


# -- references -------------------------------------------------------------------


def split_reference(reference: str) -> tuple[str, str | None, str | None, str | None]:
    """Split a reference into (normalized form, type, id, version).

    ``Patient/1/_history/2`` -> ``("Patient/1", "Patient", "1", "2")``;
    ``http://x/fhir/Patient/1`` -> ``("http://x/fhir/Patient/1", "Patient", "1", None)``;
    ``http://x/ValueSet/vs|4.0`` -> ``("http://x/ValueSet/vs", "ValueSet", "vs", "4.0")``.
    """
    from .._data import r4_resource_types

    version: str | None = None
    base = reference
    if "|" in base:
        base, version = base.split("|", 1)
    parts = base.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        version = parts[-1]
        parts = parts[:-2]
        base = "/".join(parts)
    if len(parts) >= 2 and parts[-2] in r4_resource_types() and parts[-1]:
        return base, parts[-2], parts[-1], version
    return base, None, None, version


def _reference_rows(code: str, value: Any, resource: Mapping[str, Any]) -> list[IndexRow]:
    if isinstance(value, str):
        # canonical / uri used as a reference target
        exact, ref_type, ref_id, version = split_reference(value)
        return [
            IndexRow(
                code, ParamType.REFERENCE, exact=exact, ref_type=ref_type, ref_id=ref_id,
                ref_version=version,
            )
        ]  # fmt: skip
    if not isinstance(value, Mapping):
        return []
    reference = value.get("reference")
    identifier = value.get("identifier")
    display = value.get("display")
    system = code_value = None
    if isinstance(identifier, Mapping):
        system = identifier.get("system") if isinstance(identifier.get("system"), str) else None
        code_value = identifier.get("value") if isinstance(identifier.get("value"), str) else None
    text = fold(display) if isinstance(display, str) else None
    if isinstance(reference, str) and reference:
        if reference.startswith("#"):
            from ._extract import reference_target_type

            return [
                IndexRow(
                    code, ParamType.REFERENCE, exact=reference,
                    ref_type=reference_target_type(value, resource), ref_id=reference[1:],
                    system=system, code=code_value, text=text,
                )
            ]  # fmt: skip
        exact, ref_type, ref_id, version = split_reference(reference)
        if ref_type is None and isinstance(value.get("type"), str):
            ref_type = value["type"]
        return [
            IndexRow(
                code, ParamType.REFERENCE, exact=exact, ref_type=ref_type, ref_id=ref_id,
                ref_version=version, system=system, code=code_value, text=text,
            )
        ]  # fmt: skip
    if system is not None or code_value is not None:
        declared = value.get("type") if isinstance(value.get("type"), str) else None
        return [
            IndexRow(
                code, ParamType.REFERENCE, ref_type=declared, system=system, code=code_value,
                text=text,
            )
        ]  # fmt: skip
    return []
