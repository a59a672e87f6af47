"""JSON Patch (RFC 6902) and FHIRPath Patch (FHIR R4 fhirpatch.html), applied in memory.

Both return a patched copy and never touch the input; the caller validates the result
and writes it as the next version, so a patch that fails or yields an invalid
resource writes nothing.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import fhirpathpy
import jsonpatch
import jsonpointer

from .._contract import Patch
from .._errors import InvalidRequest, PatchFailed
from .._resource import Resource

JSON_PATCH_OPERATIONS = frozenset({"add", "remove", "replace", "move", "copy", "test"})
FHIRPATH_PATCH_OPERATIONS = frozenset({"add", "insert", "delete", "replace", "move"})


def apply_patch(resource: Resource, patch: Patch) -> Resource:
    """Apply a JSON Patch (a list of operations) or a FHIRPath Patch (a Parameters
    resource) to a copy of ``resource`` and return the copy.

    Raises:
        InvalidRequest: the patch document is malformed.
        PatchFailed: a ``test`` failed, or a path is not there.
    """
    if isinstance(patch, Mapping):
        if patch.get("resourceType") != "Parameters":
            raise InvalidRequest(
                "a patch is a JSON Patch (a JSON array of operations) or a FHIRPath Patch "
                f"(a Parameters resource), got a JSON object of type {patch.get('resourceType')!r}"
            )
        return apply_fhirpath_patch(resource, patch)
    if isinstance(patch, str | bytes) or not isinstance(patch, Sequence):
        raise InvalidRequest(
            "a patch is a JSON Patch (a JSON array of operations) or a FHIRPath Patch "
            f"(a Parameters resource), got {type(patch).__name__}"
        )
    return apply_json_patch(resource, patch)


# -- JSON Patch -------------------------------------------------------------------


def apply_json_patch(resource: Resource, operations: Sequence[Mapping[str, Any]]) -> Resource:
    """Apply RFC 6902 operations (add, remove, replace, move, copy, test) to a copy."""
    for position, operation in enumerate(operations):
        if not isinstance(operation, Mapping):
            raise InvalidRequest(
                f"JSON Patch operation {position} must be a JSON object, "
                f"got {type(operation).__name__}"
            )
        op = operation.get("op")
        if op not in JSON_PATCH_OPERATIONS:
            raise InvalidRequest(
                f"JSON Patch operation {position}: op {op!r} is not one of "
                f"{', '.join(sorted(JSON_PATCH_OPERATIONS))}"
            )
        for member in ("path", "from") if op in ("move", "copy") else ("path",):
            if not isinstance(operation.get(member), str):
                raise InvalidRequest(
                    f"JSON Patch operation {position} ({op}) needs a string {member!r}"
                )
        if op in ("add", "replace", "test") and "value" not in operation:
            raise InvalidRequest(f"JSON Patch operation {position} ({op}) needs a 'value'")
    document = copy.deepcopy(resource)
    try:
        patched = jsonpatch.apply_patch(document, [dict(op) for op in operations])
    except jsonpatch.JsonPatchTestFailed as exc:
        raise PatchFailed(f"JSON Patch test failed: {exc}") from exc
    except jsonpatch.JsonPatchConflict as exc:
        raise PatchFailed(f"JSON Patch could not be applied: {exc}") from exc
    except (jsonpatch.InvalidJsonPatch, jsonpointer.JsonPointerException) as exc:
        raise InvalidRequest(f"malformed JSON Patch: {exc}") from exc
    if not isinstance(patched, dict):
        raise PatchFailed(f"JSON Patch replaced the whole resource with a {type(patched).__name__}")
    return patched


# -- FHIRPath Patch ------------------------------------------------------------------

# Elements whose maximum cardinality is * wherever R4 defines them. A FHIRPath Patch
# "add" of an element the resource does not have yet needs the cardinality to know
# whether to write a list or a single value; elements not listed here become single
# values (an existing element's shape always wins).
_REPEATING = frozenset(
    {
        "address",
        "basedOn",
        "category",
        "coding",
        "communication",
        "component",
        "contact",
        "contained",
        "derivedFrom",
        "entry",
        "extension",
        "generalPractitioner",
        "given",
        "hasMember",
        "identifier",
        "instantiatesCanonical",
        "instantiatesUri",
        "interpretation",
        "issue",
        "line",
        "link",
        "modifierExtension",
        "name",
        "note",
        "parameter",
        "part",
        "partOf",
        "performer",
        "photo",
        "prefix",
        "profile",
        "qualification",
        "reasonCode",
        "reasonReference",
        "referenceRange",
        "security",
        "suffix",
        "tag",
        "telecom",
    }
)


@cache
def _choice_paths() -> frozenset[str]:
    """``Type.element`` of every R4 choice element (``Observation.value`` ...)."""
    source = resources.files("fhirpathpy") / "models" / "r4" / "choiceTypePaths.json"
    return frozenset(json.loads(source.read_text(encoding="utf-8")))


@dataclass(frozen=True, slots=True)
class _Slot:
    """Where a node lives: ``container[key]``; the root has no container."""

    container: dict[str, Any] | list[Any] | None
    key: str | int | None
    root: dict[str, Any]

    @property
    def value(self) -> Any:
        if self.container is None:
            return self.root
        return self.container[self.key]  # type: ignore[index]


@dataclass(frozen=True, slots=True)
class _Operation:
    position: int
    type: str
    path: str
    name: str | None
    value: Any
    value_type: str | None
    index: int | None
    source: int | None
    destination: int | None


def apply_fhirpath_patch(resource: Resource, parameters: Mapping[str, Any]) -> Resource:
    """Apply a FHIRPath Patch (add, insert, delete, replace, move) to a copy.

    Paths are the FHIRPath subset patches use: member navigation (choice elements by
    their base name), ``[n]``, ``first()``, ``last()``, ``where(criteria)`` (the
    criteria evaluated by fhirpathpy) and ``extension('url')``.
    """
    operations = _parse_parameters(parameters)
    document = copy.deepcopy(resource)
    for operation in operations:
        _apply_operation(document, operation)
    # FHIR JSON has no empty arrays or objects: deleting the last item removes the element.
    pruned = _prune(document)
    return pruned if isinstance(pruned, dict) else {}


def _prune(value: Any) -> Any:
    if isinstance(value, dict):
        kept = {key: _prune(child) for key, child in value.items()}
        return {key: child for key, child in kept.items() if child != [] and child != {}}
    if isinstance(value, list):
        return [item for item in (_prune(child) for child in value) if item != {}]
    return value


def _parse_parameters(parameters: Mapping[str, Any]) -> list[_Operation]:
    entries = parameters.get("parameter")
    if not isinstance(entries, list) or not entries:
        raise InvalidRequest("a FHIRPath Patch must have at least one 'operation' parameter")
    operations = []
    for position, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or entry.get("name") != "operation":
            raise InvalidRequest(f"FHIRPath Patch parameter {position} must be named 'operation'")
        parts = entry.get("part")
        if not isinstance(parts, list):
            raise InvalidRequest(f"FHIRPath Patch operation {position} has no parts")
        by_name: dict[str, Mapping[str, Any]] = {}
        for part in parts:
            if not isinstance(part, Mapping) or not isinstance(part.get("name"), str):
                raise InvalidRequest(f"FHIRPath Patch operation {position} has an unnamed part")
            by_name[part["name"]] = part
        kind = _primitive(by_name, "type", position)
        if kind not in FHIRPATH_PATCH_OPERATIONS:
            raise InvalidRequest(
                f"FHIRPath Patch operation {position}: type {kind!r} is not one of "
                f"{', '.join(sorted(FHIRPATH_PATCH_OPERATIONS))}"
            )
        path = _primitive(by_name, "path", position)
        if not isinstance(path, str) or not path:
            raise InvalidRequest(f"FHIRPath Patch operation {position} ({kind}) needs a path")
        name = _primitive(by_name, "name", position) if kind == "add" else None
        if kind == "add" and not isinstance(name, str):
            raise InvalidRequest(f"FHIRPath Patch operation {position} (add) needs a name")
        value: Any = None
        value_type: str | None = None
        if kind in ("add", "insert", "replace"):
            if "value" not in by_name:
                raise InvalidRequest(f"FHIRPath Patch operation {position} ({kind}) needs a value")
            value, value_type = _part_value(by_name["value"], position)
        integers = {}
        for member in ("index", "source", "destination"):
            needed = (kind == "insert" and member == "index") or (
                kind == "move" and member != "index"
            )
            if needed:
                number = _primitive(by_name, member, position)
                if not isinstance(number, int) or isinstance(number, bool) or number < 0:
                    raise InvalidRequest(
                        f"FHIRPath Patch operation {position} ({kind}) needs a non-negative "
                        f"integer {member}"
                    )
                integers[member] = number
        operations.append(
            _Operation(
                position,
                kind,
                path,
                name,
                value,
                value_type,
                integers.get("index"),
                integers.get("source"),
                integers.get("destination"),
            )
        )
    return operations


def _primitive(parts: Mapping[str, Mapping[str, Any]], name: str, position: int) -> Any:
    part = parts.get(name)
    if part is None:
        return None
    for key, value in part.items():
        if key.startswith("value"):
            return value
    raise InvalidRequest(f"FHIRPath Patch operation {position}: part {name!r} has no value")


def _part_value(part: Mapping[str, Any], position: int) -> tuple[Any, str | None]:
    """The JSON value of a ``value`` part: a ``value[x]`` or, for an anonymous
    (backbone) type, nested parts."""
    for key, value in part.items():
        if key.startswith("value") and len(key) > len("value"):
            return copy.deepcopy(value), key[len("value") :]
    parts = part.get("part")
    if isinstance(parts, list) and parts:
        built: dict[str, Any] = {}
        for child in parts:
            if not isinstance(child, Mapping) or not isinstance(child.get("name"), str):
                raise InvalidRequest(f"FHIRPath Patch operation {position}: unnamed value part")
            child_value, _ = _part_value(child, position)
            name = child["name"]
            if name in built:
                existing = built[name]
                built[name] = (
                    [*existing, child_value]
                    if isinstance(existing, list)
                    else [
                        existing,
                        child_value,
                    ]
                )
            else:
                built[name] = child_value
        return built, None
    raise InvalidRequest(f"FHIRPath Patch operation {position}: the value part has no value")


def _apply_operation(document: Resource, operation: _Operation) -> None:
    if operation.type in ("insert", "move"):
        container, name = _list_owner(document, operation)
        items = container.get(name)
        if items is None:
            items = []
        if not isinstance(items, list):
            raise PatchFailed(f"{operation.path} is not a list", operation=operation.position)
        if operation.type == "insert":
            assert operation.index is not None
            if operation.index > len(items):
                raise PatchFailed(
                    f"insert index {operation.index} is beyond the {len(items)} items of "
                    f"{operation.path}",
                    operation=operation.position,
                )
            items.insert(operation.index, operation.value)
        else:
            assert operation.source is not None
            assert operation.destination is not None
            if operation.source >= len(items) or operation.destination >= len(items):
                raise PatchFailed(
                    f"move {operation.source} -> {operation.destination} is outside the "
                    f"{len(items)} items of {operation.path}",
                    operation=operation.position,
                )
            items.insert(operation.destination, items.pop(operation.source))
        container[name] = items
        return
    slots = _evaluate_path(document, operation.path, operation.position)
    if operation.type == "delete":
        if len(slots) > 1:
            raise PatchFailed(
                f"delete path {operation.path} matches {len(slots)} elements; it must match "
                "at most one",
                operation=operation.position,
            )
        if slots:
            _remove(slots[0], operation)
        return
    if len(slots) != 1:
        raise PatchFailed(
            f"{operation.type} path {operation.path} matches {len(slots)} elements; it must "
            "match exactly one",
            operation=operation.position,
        )
    slot = slots[0]
    if operation.type == "replace":
        if slot.container is None:
            raise PatchFailed(
                "replace cannot replace the whole resource", operation=operation.position
            )
        slot.container[slot.key] = operation.value  # type: ignore[index]
        return
    target = slot.value
    if not isinstance(target, dict):
        raise PatchFailed(
            f"add path {operation.path} is not an element that can hold {operation.name!r}",
            operation=operation.position,
        )
    assert operation.name is not None
    name = operation.name
    if (
        slot.container is None
        and operation.value_type
        and f"{document.get('resourceType')}.{name}" in _choice_paths()
    ):
        name = name + operation.value_type[0].upper() + operation.value_type[1:]
    existing = target.get(name)
    if isinstance(existing, list):
        existing.append(operation.value)
    elif existing is not None:
        raise PatchFailed(
            f"{operation.path}.{name} already has a value; use replace",
            operation=operation.position,
        )
    elif name in _REPEATING:
        target[name] = [operation.value]
    else:
        target[name] = operation.value


def _remove(slot: _Slot, operation: _Operation) -> None:
    container, key = slot.container, slot.key
    if container is None:
        raise PatchFailed("delete cannot delete the whole resource", operation=operation.position)
    if isinstance(container, list):
        assert isinstance(key, int)
        del container[key]
        return
    assert isinstance(key, str)
    del container[key]


def _list_owner(document: Resource, operation: _Operation) -> tuple[dict[str, Any], str]:
    """The element holding the list ``path`` names, and the list's member name."""
    segments = _split_path(operation.path, operation.position)
    last = segments[-1]
    if not _is_name(last) or len(segments) < 2:
        raise InvalidRequest(
            f"FHIRPath Patch operation {operation.position} ({operation.type}): the path "
            f"{operation.path!r} must end in the name of a list element"
        )
    owners = _walk(document, segments[:-1], operation.path, operation.position)
    if len(owners) != 1 or not isinstance(owners[0].value, dict):
        raise PatchFailed(
            f"{operation.path}: the element holding the list matches {len(owners)} elements; "
            "it must match exactly one",
            operation=operation.position,
        )
    container: dict[str, Any] = owners[0].value
    return container, last


def _split_path(path: str, position: int) -> list[str]:
    """Split at the dots that are outside parentheses and quotes."""
    segments: list[str] = []
    depth = 0
    quote = False
    current = ""
    for char in path:
        if char == "'" and not current.endswith("\\"):
            quote = not quote
        elif not quote and char == "(":
            depth += 1
        elif not quote and char == ")":
            depth -= 1
        if char == "." and depth == 0 and not quote:
            segments.append(current)
            current = ""
        else:
            current += char
    segments.append(current)
    if depth or quote or any(not segment.strip() for segment in segments):
        raise InvalidRequest(f"FHIRPath Patch operation {position}: malformed path {path!r}")
    return [segment.strip() for segment in segments]


def _is_name(segment: str) -> bool:
    return segment.isidentifier()


def _evaluate_path(document: Resource, path: str, position: int) -> list[_Slot]:
    return _walk(document, _split_path(path, position), path, position)


def _walk(document: Resource, segments: list[str], path: str, position: int) -> list[_Slot]:
    slots = [_Slot(None, None, document)]
    if segments and segments[0] == document.get("resourceType"):
        segments = segments[1:]
    for segment in segments:
        slots = _step(slots, segment, path, position)
    return slots


def _step(slots: list[_Slot], segment: str, path: str, position: int) -> list[_Slot]:
    indexer: int | None = None
    if segment.endswith("]") and "[" in segment:
        head, _, tail = segment.rpartition("[")
        try:
            indexer = int(tail[:-1])
        except ValueError:
            raise InvalidRequest(
                f"FHIRPath Patch operation {position}: bad indexer in {path!r}"
            ) from None
        segment = head
    if _is_name(segment):
        result = [child for slot in slots for child in _children(slot, segment)]
    elif segment in ("first()", "last()"):
        result = slots[:1] if segment == "first()" else slots[-1:]
    elif segment.startswith("where(") and segment.endswith(")"):
        criteria = segment[len("where(") : -1]
        result = [slot for slot in slots if _truthy(slot.value, criteria, path, position)]
    elif segment.startswith("extension(") and segment.endswith(")"):
        url = segment[len("extension(") : -1].strip()
        if len(url) < 2 or url[0] != "'" or url[-1] != "'":
            raise InvalidRequest(
                f"FHIRPath Patch operation {position}: extension() takes a quoted url in {path!r}"
            )
        result = [
            child
            for slot in slots
            for child in _children(slot, "extension")
            if isinstance(child.value, dict) and child.value.get("url") == url[1:-1]
        ]
    else:
        raise InvalidRequest(
            f"FHIRPath Patch operation {position}: {segment!r} in path {path!r} is not "
            "supported (member names, [n], first(), last(), where() and extension() are)"
        )
    if indexer is not None:
        result = result[indexer : indexer + 1]
    return result


def _children(slot: _Slot, name: str) -> list[_Slot]:
    value = slot.value
    if not isinstance(value, dict):
        return []
    keys = [name] if name in value else []
    if not keys:
        # A choice element is named by its base name in FHIRPath (Observation.value
        # finds valueQuantity).
        keys = [
            key
            for key in value
            if key.startswith(name) and len(key) > len(name) and key[len(name)].isupper()
        ]
    found: list[_Slot] = []
    for key in keys:
        child = value[key]
        if isinstance(child, list):
            found.extend(_Slot(child, index, slot.root) for index in range(len(child)))
        else:
            found.append(_Slot(value, key, slot.root))
    return found


def _truthy(node: Any, criteria: str, path: str, position: int) -> bool:
    try:
        result = fhirpathpy.evaluate(node, criteria)
    except Exception as exc:  # fhirpathpy raises plain exceptions for bad expressions
        raise InvalidRequest(
            f"FHIRPath Patch operation {position}: cannot evaluate where({criteria}) in "
            f"{path!r}: {exc}"
        ) from exc
    return result == [True]
