"""FHIRPath extraction of search values: a direct JSON fast path, fhirpathpy for the rest.

Every expression is rewritten once (``X as T`` and ``.as(T)`` become ``ofType(T)``;
FHIR primitive type names are spelled as FHIR spells them) and compiled once per
(resource type, expression), then cached. Most R4 expressions are unions of plain
paths, ``ofType(...)``, ``where(resolve() is X)`` and ``where(field='literal')``;
those are compiled to direct traversal of the JSON, with choice types (``value[x]``)
resolved through the fhirpathpy R4 model. Anything else is evaluated by fhirpathpy
with ``resolve()`` supplied as a custom function. ``tests/search`` proves both paths
give identical values on the vendored official examples.

``resolve()`` does not fetch anything: it answers the *type* of the referenced
resource (from ``Type/id``, an absolute URL ending in ``Type/id``, or a contained
``#id``), which is exactly what ``where(resolve() is Patient)`` needs.
"""

from __future__ import annotations

import contextvars
import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import fhirpathpy
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models as _fhirpath_models

from .._data import r4_resource_types
from ._definitions import split_union

_MODEL: dict[str, Any] = _fhirpath_models["r4"]
_CHOICES: Mapping[str, Sequence[str]] = _MODEL["choiceTypePaths"]
_PATH_TO_TYPE: Mapping[str, str] = _MODEL["path2Type"]
_TYPE_TO_PARENT: Mapping[str, str] = _MODEL["type2Parent"]
_DEFINED_ELSEWHERE: Mapping[str, str] = _MODEL["pathsDefinedElsewhere"]

# FHIRPath spells System types with a capital (``DateTime``); the FHIR primitive of
# the same name is lower-case (``dateTime``). Search expressions mean the FHIR type.
_PRIMITIVES = {
    name.lower(): name
    for name in (
        "base64Binary",
        "boolean",
        "canonical",
        "code",
        "date",
        "dateTime",
        "decimal",
        "id",
        "instant",
        "integer",
        "markdown",
        "oid",
        "positiveInt",
        "string",
        "time",
        "unsignedInt",
        "uri",
        "url",
        "uuid",
    )
}

_ROOT: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "helios_search_root", default=None
)


def reference_target_type(reference: Any, root: Mapping[str, Any] | None = None) -> str | None:
    """The resource type a Reference (or reference string) points at, if it can be told.

    ``Type/id``, ``Type/id/_history/v`` and absolute URLs ending in either answer
    ``Type``; ``#id`` answers the type of the contained resource in ``root``.
    """
    if isinstance(reference, Mapping):
        target = reference.get("reference")
        if not isinstance(target, str):
            declared = reference.get("type")
            return declared if isinstance(declared, str) else None
    elif isinstance(reference, str):
        target = reference
    else:
        return None
    if target.startswith("#"):
        if root is None:
            return None
        for contained in root.get("contained", ()) or ():
            if isinstance(contained, Mapping) and contained.get("id") == target[1:]:
                kind = contained.get("resourceType")
                return kind if isinstance(kind, str) else None
        return None
    parts = target.split("?")[0].rstrip("/").split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) >= 2 and parts[-2] in r4_resource_types():
        return parts[-2]
    return None


def _is_type(type_name: str, wanted: str) -> bool:
    current: str | None = type_name
    seen = 0
    while current and seen < 16:
        if current.lower() == wanted.lower():
            return True
        current = _TYPE_TO_PARENT.get(current)
        seen += 1
    return False


# -- rewriting ------------------------------------------------------------------------

_AS_OPERATOR = re.compile(r"\(\s*([^()]+?)\s+as\s+([A-Za-z]+)\s*\)")
_AS_TRAILING = re.compile(r"^(.*\S)\s+as\s+([A-Za-z]+)$")
_AS_FUNCTION = re.compile(r"\.as\(\s*([A-Za-z]+)\s*\)")
_ABSTRACT_ROOT = re.compile(
    r"(?<=^)(?:Resource|DomainResource)(?=\.)|(?<=^\()(?:Resource|DomainResource)(?=\.)"
)
_OF_TYPE = re.compile(r"\.ofType\(\s*([A-Za-z]+)\s*\)")


def _fhir_type_name(name: str) -> str:
    return _PRIMITIVES.get(name.lower(), name)


def rewrite_expression(expression: str) -> str:
    """Rewrite ``X as T`` and ``X.as(T)`` to ``X.ofType(T)`` and FHIR-spell type names.

    ``as`` is a singleton operator in FHIRPath, which fails on a repeating element;
    search expressions mean the filter ``ofType``.
    """
    members = []
    for member in split_union(expression):
        rewritten = _AS_OPERATOR.sub(lambda m: f"({m.group(1)}.ofType({m.group(2)}))", member)
        trailing = _AS_TRAILING.match(rewritten)
        if trailing and "(" not in trailing.group(1).split(".")[-1]:
            rewritten = f"{trailing.group(1)}.ofType({trailing.group(2)})"
        rewritten = _AS_FUNCTION.sub(lambda m: f".ofType({m.group(1)})", rewritten)
        rewritten = _OF_TYPE.sub(lambda m: f".ofType({_fhir_type_name(m.group(1))})", rewritten)
        members.append(rewritten)
    return " | ".join(members)


# -- the fast path ------------------------------------------------------------------

_NAME = r"[A-Za-z][A-Za-z0-9_]*"
_STEP = re.compile(
    rf"(?P<child>{_NAME})"
    rf"|ofType\((?P<of_type>{_NAME})\)"
    rf"|where\(resolve\(\) is (?P<resolve>{_NAME})\)"
    rf"|where\((?P<field>{_NAME})\s*=\s*'(?P<literal>[^'\\]*)'\)"
)
_RESERVED_NAMES = frozenset(
    {"where", "ofType", "as", "is", "exists", "resolve", "first", "last", "and", "or", "not",
     "extension", "div", "mod", "in", "contains", "empty"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Step:
    kind: str
    name: str
    literal: str = ""


Item = tuple[Any, str]


def _split_dots(member: str) -> list[str] | None:
    parts: list[str] = []
    depth = 0
    start = 0
    quoted = False
    for index, char in enumerate(member):
        if quoted:
            if char == "'":
                quoted = False
        elif char == "'":
            quoted = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "." and depth == 0:
            parts.append(member[start:index])
            start = index + 1
    parts.append(member[start:])
    return parts if all(parts) else None


def _compile_member(member: str) -> tuple[str | None, tuple[_Step, ...]] | None:
    """Compile one union member to (root type or None, steps), or None if not simple."""
    text = member.strip()
    while text.startswith("(") and text.endswith(")") and _balanced(text[1:-1]):
        text = text[1:-1].strip()
    # ``(path.ofType(T)).rest``: flatten the parenthesized head.
    head = re.match(r"^\(([^()]*(?:\([^()]*\))?[^()]*)\)\.(.+)$", text)
    if head and _balanced(head.group(1)):
        text = f"{head.group(1)}.{head.group(2)}"
    parts = _split_dots(text)
    if not parts:
        return None
    steps: list[_Step] = []
    root: str | None = None
    for position, part in enumerate(parts):
        match = _STEP.fullmatch(part.strip())
        if match is None:
            return None
        if match.group("child"):
            name = match.group("child")
            if name in _RESERVED_NAMES:
                return None
            if position == 0 and name[0].isupper():
                root = name
                continue
            steps.append(_Step("child", name))
        elif match.group("of_type"):
            steps.append(_Step("of_type", match.group("of_type")))
        elif match.group("resolve"):
            steps.append(_Step("resolve", match.group("resolve")))
        else:
            steps.append(_Step("where_eq", match.group("field"), match.group("literal")))
    return root, tuple(steps)


def _balanced(text: str) -> bool:
    depth = 0
    for char in text:
        depth += char == "("
        depth -= char == ")"
        if depth < 0:
            return False
    return depth == 0


def _extend(out: list[Item], value: Any, path: str) -> None:
    if isinstance(value, list):
        out.extend((v, path) for v in value if v is not None)
    elif value is not None:
        out.append((value, path))


def _child(items: list[Item], name: str) -> list[Item]:
    out: list[Item] = []
    for value, path in items:
        if not isinstance(value, Mapping):
            continue
        element = f"{path}.{name}"
        element = _DEFINED_ELSEWHERE.get(element, element)
        choices = _CHOICES.get(element)
        if choices is not None:
            for suffix in choices:
                found = value.get(name + suffix)
                if found is not None:
                    _extend(out, found, _fhir_type_name(suffix))
            continue
        found = value.get(name)
        if found is not None:
            _extend(out, found, _PATH_TO_TYPE.get(element) or element)
    return out


def _item_type(value: Any, path: str) -> str:
    if "." in path:
        return "BackboneElement"
    if path in ("Resource", "DomainResource") and isinstance(value, Mapping):
        kind = value.get("resourceType")
        return kind if isinstance(kind, str) else path
    return path


def _run_steps(items: list[Item], steps: Sequence[_Step], root: Mapping[str, Any]) -> list[Item]:
    for step in steps:
        if not items:
            return items
        if step.kind == "child":
            items = _child(items, step.name)
        elif step.kind == "of_type":
            wanted = _fhir_type_name(step.name)
            items = [(v, p) for v, p in items if _is_type(_item_type(v, p), wanted)]
        elif step.kind == "resolve":
            kept: list[Item] = []
            for value, path in items:
                target = reference_target_type(value, root)
                if target is not None and _is_type(target, step.name):
                    kept.append((value, path))
            items = kept
        else:
            items = [
                (v, p)
                for v, p in items
                if isinstance(v, Mapping) and v.get(step.name) == step.literal
            ]
    return items


def _dedupe(values: list[Any]) -> list[Any]:
    seen: set[str] = set()
    out: list[Any] = []
    for value in values:
        key = json.dumps(value, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out.append(value)
    return out


# -- fhirpathpy -----------------------------------------------------------------------


def _type_node(resource_type: str) -> Any:
    """A fhirpathpy node typed as ``resource_type`` (what ``is Patient`` inspects)."""
    return ResourceNode.create_node({"resourceType": resource_type}, resource_type)  # type: ignore[no-untyped-call]


def _resolve(inputs: list[Any]) -> list[Any]:
    root = _ROOT.get()
    out: list[Any] = []
    for item in inputs:
        target = reference_target_type(item, root)
        if target is not None:
            out.append(_type_node(target))
    return out


_INVOCATIONS = {"resolve": {"fn": _resolve, "arity": {0: []}}}


def _compile_fhirpath(expression: str) -> Callable[..., list[Any]]:
    try:
        compiled = fhirpathpy.compile(expression, _MODEL, {"userInvocationTable": _INVOCATIONS})
    except Exception as exc:  # fhirpathpy raises bare Exceptions for syntax errors
        raise ValueError(f"cannot parse the FHIRPath expression {expression!r}: {exc}") from exc
    return cast(Callable[..., list[Any]], compiled)


def check_expression(expression: str) -> None:
    """Raise ValueError unless ``expression`` parses as FHIRPath.

    fhirpathpy's own parser recovers silently from syntax errors, so this runs its
    generated ANTLR grammar with an error listener that refuses any error and checks
    the whole text was consumed.
    """
    from antlr4 import CommonTokenStream, InputStream, Token
    from antlr4.error.ErrorListener import ErrorListener
    from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
    from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

    rewritten = rewrite_expression(expression)

    class _Refuse(ErrorListener):  # type: ignore[misc]
        def syntaxError(  # ANTLR's callback name
            self, recognizer: Any, offending: Any, line: int, column: int, msg: str, e: Any
        ) -> None:
            raise ValueError(
                f"cannot parse the FHIRPath expression {expression!r}: {msg} at column {column}"
            )

    lexer = FHIRPathLexer(InputStream(rewritten))
    lexer.removeErrorListeners()
    lexer.addErrorListener(_Refuse())
    tokens = CommonTokenStream(lexer)
    parser = FHIRPathParser(tokens)
    parser.removeErrorListeners()
    parser.addErrorListener(_Refuse())
    parser.expression()
    if tokens.LA(1) != Token.EOF:
        raise ValueError(
            f"cannot parse the FHIRPath expression {expression!r}: unexpected "
            f"{tokens.LT(1).text!r} at column {tokens.LT(1).column}"
        )
    _compile_fhirpath(rewritten)


# -- compiled expressions -----------------------------------------------------------


class CompiledExpression:
    """One search expression, compiled for direct traversal where possible."""

    __slots__ = ("_members", "_slow", "expression", "resource_type")

    def __init__(self, resource_type: str | None, expression: str) -> None:
        self.resource_type = resource_type
        rewritten = rewrite_expression(expression)
        if resource_type is not None:
            # FHIRPath matches a leading type name against the resource's own type only;
            # ``Resource.id`` is meant for every resource type.
            rewritten = " | ".join(
                _ABSTRACT_ROOT.sub(resource_type, member, count=1)
                for member in split_union(rewritten)
            )
        self.expression = rewritten
        members = [_compile_member(m) for m in split_union(self.expression)]
        self._members: tuple[tuple[str | None, tuple[_Step, ...]], ...] | None = (
            None if any(m is None for m in members) else tuple(m for m in members if m is not None)
        )
        self._slow: Callable[..., list[Any]] | None = None

    @property
    def fast(self) -> bool:
        """True when the expression runs as direct JSON traversal."""
        return self._members is not None

    def evaluate(
        self,
        node: Mapping[str, Any],
        *,
        root: Mapping[str, Any] | None = None,
        base_path: str | None = None,
        force_fhirpath: bool = False,
    ) -> list[Any]:
        """Evaluate on ``node``: a resource, or (with ``base_path``) an element of ``root``.

        Returns the JSON values the expression selects, in FHIRPath order (a union
        drops duplicates).
        """
        root = node if root is None else root
        if self._members is not None and not force_fhirpath:
            return self._evaluate_fast(node, root, base_path)
        return self._evaluate_fhirpath(node, root, base_path)

    def _evaluate_fast(
        self, node: Mapping[str, Any], root: Mapping[str, Any], base_path: str | None
    ) -> list[Any]:
        assert self._members is not None
        values: list[Any] = []
        node_type = node.get("resourceType") if base_path is None else None
        for root_name, steps in self._members:
            if root_name is not None:
                if base_path is not None:
                    continue
                if root_name not in (node_type, "Resource", "DomainResource"):
                    continue
                if root_name == "DomainResource" and node_type in (
                    "Bundle",
                    "Binary",
                    "Parameters",
                ):
                    continue
                path = root_name if root_name in ("Resource", "DomainResource") else str(node_type)
            else:
                path = base_path if base_path is not None else str(node_type)
            values.extend(v for v, _ in _run_steps([(node, path)], steps, root))
        return _dedupe(values) if len(self._members) > 1 else values

    def _evaluate_fhirpath(
        self, node: Mapping[str, Any], root: Mapping[str, Any], base_path: str | None
    ) -> list[Any]:
        if self._slow is None:
            self._slow = _compile_fhirpath(self.expression)
        token = _ROOT.set(root)
        try:
            subject: Any = (
                node if base_path is None else ResourceNode.create_node(node, base_path)  # type: ignore[no-untyped-call]
            )
            return list(self._slow(subject, {"resource": root, "rootResource": root}))
        finally:
            _ROOT.reset(token)


@functools.lru_cache(maxsize=8192)
def compile_expression(expression: str, resource_type: str | None = None) -> CompiledExpression:
    """Compile (once, cached) a search expression for resources of ``resource_type``."""
    return CompiledExpression(resource_type, expression)


def extract(
    resource: Mapping[str, Any], expression: str, *, force_fhirpath: bool = False
) -> list[Any]:
    """Evaluate a search expression on a resource; the JSON values it selects."""
    compiled = compile_expression(expression, str(resource.get("resourceType")))
    return compiled.evaluate(resource, force_fhirpath=force_fhirpath)


@functools.lru_cache(maxsize=4096)
def expression_types(expression: str, resource_type: str) -> frozenset[str] | None:
    """The FHIR types an expression can select on ``resource_type``, if statically known.

    ``Patient.active`` gives ``{"boolean"}``; ``Observation.value.ofType(Quantity)``
    gives ``{"Quantity"}``. ``None`` when the expression is not a simple path.
    """
    compiled = compile_expression(expression, resource_type)
    if compiled._members is None:
        return None
    found: set[str] = set()
    for root_name, steps in compiled._members:
        if root_name not in (None, resource_type, "Resource", "DomainResource"):
            continue
        paths = {resource_type if root_name in (None, resource_type) else str(root_name)}
        for step in steps:
            if step.kind == "child":
                next_paths: set[str] = set()
                for path in paths:
                    element = f"{path}.{step.name}"
                    element = _DEFINED_ELSEWHERE.get(element, element)
                    choices = _CHOICES.get(element)
                    if choices is not None:
                        next_paths.update(_fhir_type_name(s) for s in choices)
                    else:
                        next_paths.add(_PATH_TO_TYPE.get(element) or element)
                paths = next_paths
            elif step.kind == "of_type":
                wanted = _fhir_type_name(step.name)
                paths = {p for p in paths if _is_type(_item_type(None, p), wanted)}
        found.update(paths)
    return frozenset(found)
