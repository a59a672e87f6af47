"""Stored resources, history pages, and the validation every write goes through."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ._data import r4_resource_types
from ._errors import InvalidRequest, InvalidResource

Resource = dict[str, Any]
"""A FHIR resource as parsed JSON."""

ID_PATTERN = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_VERSION_PATTERN = re.compile(r"[1-9][0-9]{0,18}")


@dataclass(frozen=True, slots=True)
class StoredResource:
    """One version of a resource as the store holds it.

    ``resource`` is the JSON body with ``id``, ``meta.versionId`` and
    ``meta.lastUpdated`` set by the store; for a deletion marker it is ``None``.
    """

    resource_type: str
    id: str
    version_id: str
    last_updated: datetime
    deleted: bool
    resource: Resource | None

    @property
    def etag(self) -> str:
        """The weak ETag of this version, ``W/"<versionId>"``."""
        return f'W/"{self.version_id}"'

    @property
    def reference(self) -> str:
        """The relative reference ``Type/id``."""
        return f"{self.resource_type}/{self.id}"

    @property
    def method(self) -> str:
        """The HTTP method that produced this version, as a history Bundle entry shows it."""
        if self.deleted:
            return "DELETE"
        return "POST" if self.version_id == "1" else "PUT"


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """A page of history, newest first. ``next_cursor`` is ``None`` on the last page."""

    entries: tuple[StoredResource, ...]
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class SearchResult:
    """One page of search results.

    ``entries`` are the matches in result order (``_sort`` or the backend's stable
    default); ``included`` holds ``_include``/``_revinclude`` resources, each once and
    never counted in the page size. ``total`` is set when ``_total=accurate`` or
    ``_summary=count`` asks for it (``_summary=count`` returns no entries).
    ``ignored`` names the parameters skipped under lenient handling.

    When more matches follow the page, a backend with cursor paging sets
    ``next_cursor`` (pass it back with the same query to get the next page) and a
    backend with offset paging sets ``next_offset`` (repeat the query with
    ``_offset=<next_offset>``); both are ``None`` on the last page.
    """

    entries: tuple[StoredResource, ...]
    included: tuple[StoredResource, ...] = ()
    total: int | None = None
    next_cursor: str | None = None
    ignored: tuple[str, ...] = ()
    next_offset: int | None = None

    @property
    def ids(self) -> tuple[str, ...]:
        """The ids of the matches, in result order."""
        return tuple(entry.id for entry in self.entries)

    @property
    def included_references(self) -> tuple[str, ...]:
        """``Type/id`` of every included resource, in result order."""
        return tuple(entry.reference for entry in self.included)


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_instant(moment: datetime) -> str:
    """Format a timezone-aware datetime as a FHIR instant in UTC with microseconds."""
    if moment.tzinfo is None:
        raise ValueError("instants must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def parse_instant(text: str) -> datetime:
    """Parse a FHIR instant; the inverse of :func:`format_instant`."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"instant {text!r} has no time zone")
    return moment.astimezone(UTC)


def check_resource_type(resource_type: str) -> None:
    """Raise :class:`InvalidRequest` unless ``resource_type`` is a concrete R4 type."""
    if not isinstance(resource_type, str) or resource_type not in r4_resource_types():
        raise InvalidRequest(f"{resource_type!r} is not a FHIR R4 resource type")


def check_id(resource_id: str, *, location: str = "id") -> None:
    """Raise :class:`InvalidRequest` unless the id matches ``[A-Za-z0-9\\-.]{1,64}``."""
    if not isinstance(resource_id, str) or not ID_PATTERN.fullmatch(resource_id):
        raise InvalidRequest(
            f"{location}: {resource_id!r} is not a valid FHIR id "
            "(1-64 characters of A-Z, a-z, 0-9, '-' and '.')"
        )


def check_version_id(version_id: str) -> None:
    """Raise :class:`InvalidRequest` unless the version id is a positive decimal integer."""
    if not isinstance(version_id, str) or not _VERSION_PATTERN.fullmatch(version_id):
        raise InvalidRequest(f"{version_id!r} is not a version id (expected '1', '2', ...)")


def validate_resource(
    body: object,
    *,
    expected_type: str | None = None,
    expected_id: str | None = None,
    require_id: bool = False,
    ignore_id: bool = False,
) -> Resource:
    """Check a resource body before anything is stored, and return a deep copy of it.

    Args:
        body: the candidate resource.
        expected_type: the target type; the body's ``resourceType`` must equal it.
        expected_id: the target id; a body ``id`` must equal it.
        require_id: the body must carry an ``id`` (update, per R4 http.html#update).
        ignore_id: drop any body ``id`` unchecked (create, per R4 http.html#create).

    Raises:
        InvalidResource: what is wrong, and where.
    """
    if not isinstance(body, Mapping):
        raise InvalidResource(f"a resource must be a JSON object, got {type(body).__name__}")
    resource_type = body.get("resourceType")
    if resource_type is None:
        raise InvalidResource("the resource has no resourceType", location="resourceType")
    if not isinstance(resource_type, str) or resource_type not in r4_resource_types():
        raise InvalidResource(
            f"{resource_type!r} is not a FHIR R4 resource type", location="resourceType"
        )
    if expected_type is not None and resource_type != expected_type:
        raise InvalidResource(
            f"the body is a {resource_type} but the target type is {expected_type}",
            location="resourceType",
        )
    body_id = None if ignore_id else body.get("id")
    if body_id is not None:
        if not isinstance(body_id, str) or not ID_PATTERN.fullmatch(body_id):
            raise InvalidResource(
                f"{body_id!r} is not a valid FHIR id (1-64 characters of A-Z, a-z, 0-9, '-' and '.')",
                location="id",
            )
        if expected_id is not None and body_id != expected_id:
            raise InvalidResource(
                f"the body's id {body_id!r} differs from the target id {expected_id!r}",
                location="id",
            )
    elif require_id:
        raise InvalidResource(
            f"an update must carry the id {expected_id!r} in the body", location="id"
        )
    meta = body.get("meta")
    if meta is not None and not isinstance(meta, Mapping):
        raise InvalidResource(
            f"meta must be a JSON object, got {type(meta).__name__}", location="meta"
        )
    _check_keys(body, "")
    try:
        # Round-tripping through JSON both deep-copies and proves the body is JSON:
        # no NaN/Infinity, no sets or other non-JSON values.
        text = json.dumps(body, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InvalidResource(f"the resource is not valid JSON: {exc}") from exc
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        # A lone surrogate ("\ud800") is not a Unicode character; UTF-8 stores refuse it.
        raise InvalidResource(
            f"the resource holds a lone surrogate {text[exc.start : exc.end]!r}, "
            "which is not valid Unicode"
        ) from exc
    copy: Resource = json.loads(text)
    if ignore_id:
        copy.pop("id", None)
    return copy


_FORBIDDEN_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _check_keys(value: object, path: str) -> None:
    """Refuse non-string object keys (``json.dumps`` would silently stringify them) and
    control characters, which R4 strings may not hold (datatypes.html#string)."""
    if isinstance(value, str):
        found = _FORBIDDEN_CONTROL.search(value)
        if found:
            raise InvalidResource(
                f"strings may not contain the control character U+{ord(found.group()):04X}",
                location=path or "(root)",
            )
    elif isinstance(value, Mapping):
        for key, child in value.items():
            if not isinstance(key, str):
                raise InvalidResource(
                    f"object keys must be strings, found {type(key).__name__} key {key!r}",
                    location=path or "(root)",
                )
            _check_keys(child, f"{path}.{key}" if path else key)
    elif isinstance(value, list | tuple):
        for index, child in enumerate(value):
            _check_keys(child, f"{path}[{index}]")


def stamp(
    resource: Resource, resource_id: str, version_id: str, last_updated: datetime
) -> Resource:
    """Set ``id``, ``meta.versionId`` and ``meta.lastUpdated`` on a validated copy, in place."""
    resource["id"] = resource_id
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = version_id
    meta["lastUpdated"] = format_instant(last_updated)
    # Keep resourceType and id first, as FHIR JSON conventionally does.
    ordered: Resource = {"resourceType": resource["resourceType"], "id": resource_id, "meta": meta}
    for key, value in resource.items():
        if key not in ordered:
            ordered[key] = value
    resource.clear()
    resource.update(ordered)
    return resource
