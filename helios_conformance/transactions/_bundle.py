"""Transaction and batch Bundles (FHIR R4 http.html#transaction), written once against
:class:`TransactionStorage`.

A transaction runs in one storage transaction: every entry is parsed first, then
DELETEs run, then the identities of the POST/PUT/PATCH targets are resolved (so
``urn:uuid`` fullUrls and conditional references can be rewritten before anything is
written), then POST, PUT/PATCH and finally GET/HEAD entries run. The first failing
entry's error propagates (with a note naming the entry) and the transaction rolls back.

A batch runs every entry in its own storage transaction; a failure becomes that
entry's response (status and OperationOutcome) and does not touch the others.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from .._contract import Patch, QueryParameters, Transaction, TransactionStorage
from .._errors import HeliosError, InvalidRequest, InvalidResource, NotFound, PreconditionFailed
from .._resource import (
    Resource,
    StoredResource,
    check_id,
    check_resource_type,
    check_version_id,
    format_instant,
    parse_instant,
    validate_resource,
)
from .._tenancy import Operation, TenantContext
from ._conditional import (
    conditional_delete_in,
    conditional_patch_in,
    find_matches,
    multiple_matches,
    patch_in,
)

METHODS = ("DELETE", "POST", "PUT", "PATCH", "GET", "HEAD")
# FHIR R4 http.html#trules: DELETE, then POST, then PUT/PATCH, then GET/HEAD.
_PHASE = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}

_REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    304: "Not Modified",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    410: "Gone",
    412: "Precondition Failed",
    422: "Unprocessable Entity",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}

_CONDITIONAL_REFERENCE = re.compile(r"([A-Z][A-Za-z]+)\?(.+)")
_ETAG = re.compile(r'(?:W/)?"?([^"]*)"?')


def status_line(code: int) -> str:
    """``"201 Created"``: the status text of a Bundle entry response."""
    reason = _REASONS.get(code)
    return f"{code} {reason}" if reason else str(code)


@dataclass(slots=True)
class _Request:
    index: int
    method: str
    url: str
    resource_type: str
    resource_id: str | None = None
    version_id: str | None = None
    query: list[tuple[str, str]] | None = None
    full_url: str | None = None
    resource: Resource | None = None
    patch: Patch | None = None
    if_match: str | None = None
    if_none_exist: list[tuple[str, str]] | None = None
    if_none_match: str | None = None
    if_modified_since: str | None = None
    # Filled while a transaction resolves identities.
    target_id: str | None = None
    existing: StoredResource | None = None
    body: Resource | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"entry {self.index} ({self.method} {self.url})"


async def process_bundle(
    backend: TransactionStorage, context: TenantContext, bundle: Resource
) -> Resource:
    """Process a ``transaction`` or ``batch`` Bundle; see ``BundleStorage.process_bundle``."""
    if not isinstance(bundle, Mapping) or bundle.get("resourceType") != "Bundle":
        raise InvalidRequest("a transaction or batch must be a Bundle resource")
    kind = bundle.get("type")
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise InvalidRequest("Bundle.entry must be a list")
    if kind == "transaction":
        context.require(Operation.TRANSACTION)
        return await _transaction(backend, context, entries)
    if kind == "batch":
        return await _batch(backend, context, entries)
    raise InvalidRequest(
        f"Bundle.type is {kind!r}; only 'transaction' and 'batch' Bundles can be processed"
    )


# -- parsing ------------------------------------------------------------------------


def _parse_entry(index: int, entry: object) -> _Request:
    if not isinstance(entry, Mapping):
        raise InvalidRequest(f"entry {index} is not a JSON object")
    request = entry.get("request")
    if not isinstance(request, Mapping):
        raise InvalidRequest(f"entry {index} has no request")
    method = request.get("method")
    url = request.get("url")
    if method not in METHODS:
        raise InvalidRequest(
            f"entry {index}: request.method {method!r} is not one of {', '.join(METHODS)}"
        )
    if not isinstance(url, str) or not url:
        raise InvalidRequest(f"entry {index} ({method}): request.url is missing")
    if "://" in url:
        raise InvalidRequest(
            f"entry {index} ({method} {url}): request.url must be relative to the base "
            "(Type, Type/id or Type?criteria)"
        )
    path, question, query_text = url.lstrip("/").partition("?")
    segments = path.split("/")
    parsed = _Request(index, method, url, segments[0])
    try:
        check_resource_type(segments[0])
        if len(segments) == 2:
            check_id(segments[1])
            parsed.resource_id = segments[1]
        elif len(segments) == 4 and segments[2] == "_history" and method in ("GET", "HEAD"):
            check_id(segments[1])
            check_version_id(segments[3])
            parsed.resource_id, parsed.version_id = segments[1], segments[3]
        elif len(segments) != 1:
            raise InvalidRequest(f"the url {url!r} is not Type, Type/id or Type?criteria")
        if question:
            if parsed.resource_id is not None:
                raise InvalidRequest(f"the url {url!r} has both an id and a query")
            parsed.query = parse_qsl(query_text, keep_blank_values=True)
        _check_shape(parsed)
        full_url = entry.get("fullUrl")
        if full_url is not None and not isinstance(full_url, str):
            raise InvalidRequest("fullUrl must be a string")
        parsed.full_url = full_url
        resource = entry.get("resource")
        if method in ("POST", "PUT"):
            if resource is None:
                raise InvalidResource(f"a {method} entry needs a resource")
            body = validate_resource(resource, expected_type=parsed.resource_type)
            if method == "PUT" and parsed.resource_id is not None:
                body = validate_resource(
                    resource,
                    expected_type=parsed.resource_type,
                    expected_id=parsed.resource_id,
                    require_id=True,
                )
            parsed.resource = body
        if method == "PATCH":
            parsed.patch = _patch_document(resource)
        if_match = request.get("ifMatch")
        if if_match is not None:
            parsed.if_match = _etag_version(if_match, "ifMatch")
        if_none_exist = request.get("ifNoneExist")
        if if_none_exist is not None and method == "POST":
            if not isinstance(if_none_exist, str):
                raise InvalidRequest("ifNoneExist must be a string")
            criteria = if_none_exist.partition("?")[2] if "?" in if_none_exist else if_none_exist
            parsed.if_none_exist = parse_qsl(criteria, keep_blank_values=True)
        for member in ("ifNoneMatch", "ifModifiedSince"):
            value = request.get(member)
            if value is not None and not isinstance(value, str):
                raise InvalidRequest(f"{member} must be a string")
        parsed.if_none_match = request.get("ifNoneMatch")
        parsed.if_modified_since = request.get("ifModifiedSince")
    except HeliosError as exc:
        exc.add_note(f"in Bundle {parsed.label}")
        raise
    return parsed


def _check_shape(request: _Request) -> None:
    method = request.method
    if method == "POST" and (request.resource_id is not None or request.query is not None):
        raise InvalidRequest(f"POST creates at the type level (url {request.resource_type!r})")
    if (
        method in ("PUT", "DELETE", "PATCH")
        and request.resource_id is None
        and request.query is None
    ):
        raise InvalidRequest(f"{method} needs Type/id or Type?criteria, got {request.url!r}")


def _etag_version(value: object, member: str) -> str:
    match = _ETAG.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise InvalidRequest(f'{member} {value!r} is not an ETag such as W/"1"')
    check_version_id(match.group(1))
    return match.group(1)


def _patch_document(resource: object) -> Patch:
    """A PATCH entry carries a FHIRPath Patch (Parameters) or a JSON Patch in a Binary."""
    if isinstance(resource, Mapping) and resource.get("resourceType") == "Parameters":
        return resource
    if isinstance(resource, Mapping) and resource.get("resourceType") == "Binary":
        content_type = str(resource.get("contentType", ""))
        if not content_type.startswith("application/json-patch+json"):
            raise InvalidRequest(
                f"a PATCH Binary must have contentType application/json-patch+json, "
                f"got {content_type!r}"
            )
        try:
            document = json.loads(base64.b64decode(str(resource.get("data", "")), validate=True))
        except (binascii.Error, ValueError) as exc:
            raise InvalidRequest(f"the PATCH Binary's data is not base64 JSON: {exc}") from exc
        if not isinstance(document, list):
            raise InvalidRequest("the PATCH Binary's data must be a JSON Patch array")
        return document
    raise InvalidRequest(
        "a PATCH entry's resource must be a Parameters (FHIRPath Patch) or a Binary holding "
        "a JSON Patch"
    )


# -- responses ----------------------------------------------------------------------


def _response(
    code: int, stored: StoredResource | None = None, *, with_resource: bool = True
) -> Resource:
    response: dict[str, Any] = {"status": status_line(code)}
    entry: Resource = {"response": response}
    if stored is not None:
        response["location"] = f"{stored.reference}/_history/{stored.version_id}"
        response["etag"] = stored.etag
        response["lastModified"] = format_instant(stored.last_updated)
        if with_resource and stored.resource is not None:
            entry["resource"] = stored.resource
    return entry


def _error_response(exc: HeliosError) -> Resource:
    return {
        "response": {
            "status": status_line(exc.http_status),
            "outcome": exc.to_operation_outcome(),
        }
    }


# -- transaction ----------------------------------------------------------------------


async def _transaction(
    backend: TransactionStorage, context: TenantContext, entries: list[Any]
) -> Resource:
    requests = [_parse_entry(index, entry) for index, entry in enumerate(entries)]
    _refuse_duplicates(requests)
    responses: dict[int, Resource] = {}
    async with backend.transaction(context) as tx:
        claims: dict[tuple[str, str], int] = {}

        def claim(request: _Request, resource_id: str) -> None:
            key = (request.resource_type, resource_id)
            other = claims.setdefault(key, request.index)
            if other != request.index:
                raise InvalidRequest(
                    f"entries {other} and {request.index} both act on "
                    f"{request.resource_type}/{resource_id}; a transaction may touch a "
                    "resource once"
                )

        ordered = sorted(requests, key=lambda request: (_PHASE[request.method], request.index))
        # Every target identity is resolved against the state before any write, so an
        # overlap between entries (conditional ones included) is caught (R4 #trules).
        for request in ordered:
            if request.method == "DELETE":
                await _guard(request, _resolve_deletion(tx, context, request, claim))
            elif request.method in ("PUT", "PATCH"):
                await _guard(request, _resolve_identity(tx, context, request, claim))
        for request in ordered:
            if request.method == "DELETE":
                responses[request.index] = await _guard(request, _delete(tx, context, request))
        identities: dict[str, str] = {}
        for request in ordered:
            if request.method == "POST":
                # After the DELETEs, as the FHIR processing order has it.
                await _guard(request, _resolve_identity(tx, context, request, claim))
            if request.full_url and request.target_id is not None:
                identities[request.full_url] = f"{request.resource_type}/{request.target_id}"
        references = await _resolve_references(tx, context, requests, identities)
        for request in ordered:
            if request.resource is not None:
                request.body = _rewrite(request.resource, references)
        for request in ordered:
            if request.method in ("POST", "PUT", "PATCH", "GET", "HEAD"):
                responses[request.index] = await _guard(
                    request, _write_or_read(tx, context, request)
                )
    return {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": [responses[request.index] for request in requests],
    }


async def _guard(request: _Request, step: Any) -> Any:
    """Await ``step``, naming the entry on any error it raises."""
    try:
        return await step
    except HeliosError as exc:
        exc.add_note(f"transaction {request.label} failed; nothing was written")
        raise


def _refuse_duplicates(requests: list[_Request]) -> None:
    full_urls: dict[str, int] = {}
    targets: dict[tuple[str, str], int] = {}
    for request in requests:
        if request.full_url is not None:
            other = full_urls.setdefault(request.full_url, request.index)
            if other != request.index:
                raise InvalidRequest(
                    f"entries {other} and {request.index} share the fullUrl {request.full_url!r}"
                )
        if request.method in ("PUT", "DELETE", "PATCH") and request.resource_id is not None:
            key = (request.resource_type, request.resource_id)
            other = targets.setdefault(key, request.index)
            if other != request.index:
                raise InvalidRequest(
                    f"entries {other} and {request.index} both act on "
                    f"{key[0]}/{key[1]}; a transaction may touch a resource once"
                )


async def _resolve_deletion(
    tx: Transaction,
    context: TenantContext,
    request: _Request,
    claim: Callable[[_Request, str], None],
) -> None:
    if request.resource_id is not None:
        request.extra["targets"] = [request.resource_id]
    else:
        assert request.query is not None
        matches = await find_matches(tx, context, request.resource_type, request.query)
        if len(matches) > 1:
            raise multiple_matches(request.resource_type, request.query, "delete")
        request.extra["targets"] = [match.id for match in matches]
    for target in request.extra["targets"]:
        claim(request, target)


async def _delete(tx: Transaction, context: TenantContext, request: _Request) -> Resource:
    marker = None
    for target in request.extra["targets"]:
        marker = await tx.delete(
            context, request.resource_type, target, expected_version=request.if_match
        )
    return _response(204, marker, with_resource=False)


async def _resolve_identity(
    tx: Transaction,
    context: TenantContext,
    request: _Request,
    claim: Callable[[_Request, str], None] | None,
) -> None:
    """Decide which resource a POST/PUT/PATCH entry writes, before anything is written."""
    if request.method == "POST":
        if request.if_none_exist is not None:
            matches = await find_matches(tx, context, request.resource_type, request.if_none_exist)
            if len(matches) > 1:
                raise multiple_matches(request.resource_type, request.if_none_exist, "create")
            if matches:
                request.existing = matches[0]
                request.target_id = matches[0].id
                return
        request.target_id = str(uuid.uuid4())
        return
    if request.resource_id is not None:
        request.target_id = request.resource_id
    else:
        assert request.query is not None
        matches = await find_matches(tx, context, request.resource_type, request.query)
        if len(matches) > 1:
            raise multiple_matches(request.resource_type, request.query, request.method.lower())
        if matches:
            request.existing = matches[0]
            request.target_id = matches[0].id
            body_id = request.resource.get("id") if request.resource else None
            if body_id is not None and body_id != matches[0].id:
                raise InvalidResource(
                    f"the body's id {body_id!r} differs from {matches[0].reference}, the "
                    "resource the criteria match",
                    location="id",
                )
        elif request.method == "PATCH":
            raise NotFound(
                f"conditional patch: no {request.resource_type} matches {request.url}",
                resource_type=request.resource_type,
            )
        else:
            body_id = request.resource.get("id") if request.resource else None
            request.target_id = body_id if isinstance(body_id, str) else str(uuid.uuid4())
    if claim is not None:
        claim(request, request.target_id)


def _collect_references(value: Any, found: set[str]) -> None:
    if isinstance(value, dict):
        for key, child in value.items():
            if key == "reference" and isinstance(child, str):
                found.add(child)
            else:
                _collect_references(child, found)
    elif isinstance(value, list):
        for child in value:
            _collect_references(child, found)


def _rewrite(value: Any, references: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        return {
            key: references.get(child, child)
            if key == "reference" and isinstance(child, str)
            else _rewrite(child, references)
            for key, child in value.items()
        }
    if isinstance(value, list):
        return [_rewrite(child, references) for child in value]
    return value


async def _resolve_references(
    tx: Transaction,
    context: TenantContext,
    requests: list[_Request],
    identities: Mapping[str, str],
) -> dict[str, str]:
    """Map every placeholder (``urn:uuid:`` fullUrl) and conditional reference found in
    a resource, its extensions and its contained resources to ``Type/id``."""
    resolved: dict[str, str] = {}
    for request in requests:
        if request.resource is None:
            continue
        found: set[str] = set()
        _collect_references(request.resource, found)
        for reference in sorted(found):
            if reference in resolved:
                continue
            if reference in identities:
                resolved[reference] = identities[reference]
            elif reference.startswith(("urn:uuid:", "urn:oid:")):
                raise InvalidRequest(
                    f"transaction {request.label}: the reference {reference!r} names no entry's "
                    "fullUrl"
                )
            elif (conditional := _CONDITIONAL_REFERENCE.fullmatch(reference)) is not None:
                resolved[reference] = await _conditional_reference(
                    tx, context, request, reference, conditional.group(1), conditional.group(2)
                )
    return resolved


async def _conditional_reference(
    tx: Transaction,
    context: TenantContext,
    request: _Request,
    reference: str,
    resource_type: str,
    query: str,
) -> str:
    try:
        check_resource_type(resource_type)
        criteria: QueryParameters = parse_qsl(query, keep_blank_values=True)
        matches = await find_matches(tx, context, resource_type, criteria)
        if len(matches) > 1:
            raise multiple_matches(resource_type, criteria, f"reference {reference!r}")
        if not matches:
            raise PreconditionFailed(f"the conditional reference {reference!r} matches no resource")
    except HeliosError as exc:
        exc.add_note(f"transaction {request.label} failed; nothing was written")
        raise
    return matches[0].reference


async def _write_or_read(tx: Transaction, context: TenantContext, request: _Request) -> Resource:
    kind, target = request.resource_type, request.target_id
    if request.method == "POST":
        assert target is not None
        assert request.body is not None
        if request.existing is not None:
            return _response(200, request.existing)
        stored, _ = await tx.create_or_update(context, kind, target, {**request.body, "id": target})
        return _response(201, stored)
    if request.method == "PUT":
        assert target is not None
        assert request.body is not None
        body = {**request.body, "id": target}
        if request.existing is not None or request.if_match is not None:
            stored = await tx.update(context, kind, target, body, expected_version=request.if_match)
            return _response(200, stored)
        stored, created = await tx.create_or_update(context, kind, target, body)
        return _response(201 if created else 200, stored)
    if request.method == "PATCH":
        assert target is not None
        assert request.patch is not None
        stored = await patch_in(
            tx, context, kind, target, request.patch, expected_version=request.if_match
        )
        return _response(200, stored)
    return await _read(tx, context, request)


async def _read(tx: Transaction, context: TenantContext, request: _Request) -> Resource:
    with_resource = request.method == "GET"
    if request.resource_id is None:
        result = await tx.search(context, request.resource_type, request.query or [])
        searchset: Resource = {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [
                {"resource": entry.resource, "search": {"mode": "match"}}
                for entry in result.entries
            ]
            + [
                {"resource": entry.resource, "search": {"mode": "include"}}
                for entry in result.included
            ],
        }
        if result.total is not None:
            searchset["total"] = result.total
        entry: Resource = {"response": {"status": status_line(200)}}
        if with_resource:
            entry["resource"] = searchset
        return entry
    if request.version_id is not None:
        stored = await tx.vread(
            context, request.resource_type, request.resource_id, request.version_id
        )
    else:
        stored = await tx.read(context, request.resource_type, request.resource_id)
    if request.if_none_match is not None and request.if_none_match in (
        stored.etag,
        f'"{stored.version_id}"',
        "*",
    ):
        return _response(304, stored, with_resource=False)
    if request.if_modified_since is not None:
        try:
            since = parse_instant(request.if_modified_since)
        except ValueError as exc:
            raise InvalidRequest(
                f"ifModifiedSince {request.if_modified_since!r} is not an instant"
            ) from exc
        if stored.last_updated <= since:
            return _response(304, stored, with_resource=False)
    return _response(200, stored, with_resource=with_resource)


# -- batch ------------------------------------------------------------------------------


async def _batch(
    backend: TransactionStorage, context: TenantContext, entries: list[Any]
) -> Resource:
    responses: list[Resource] = []
    for index, entry in enumerate(entries):
        try:
            request = _parse_entry(index, entry)
            async with backend.transaction(context) as tx:
                responses.append(await _batch_entry(tx, context, request))
        except HeliosError as exc:
            responses.append(_error_response(exc))
    return {"resourceType": "Bundle", "type": "batch-response", "entry": responses}


async def _batch_entry(tx: Transaction, context: TenantContext, request: _Request) -> Resource:
    """One batch entry: no reference between entries is resolved (R4 http.html#brules)."""
    if request.method == "DELETE":
        if request.resource_id is not None:
            marker = await tx.delete(
                context,
                request.resource_type,
                request.resource_id,
                expected_version=request.if_match,
            )
            return _response(204, marker, with_resource=False)
        assert request.query is not None
        markers = await conditional_delete_in(tx, context, request.resource_type, request.query)
        return _response(204, markers[0] if markers else None, with_resource=False)
    if request.method == "POST" and request.if_none_exist is None:
        assert request.resource is not None
        return _response(201, await tx.create(context, request.resource))
    if request.method == "PATCH" and request.resource_id is None:
        assert request.query is not None
        assert request.patch is not None
        stored = await conditional_patch_in(
            tx,
            context,
            request.resource_type,
            request.query,
            request.patch,
            expected_version=request.if_match,
        )
        return _response(200, stored)
    if request.method in ("POST", "PUT", "PATCH"):
        await _resolve_identity(tx, context, request, None)
        request.body = request.resource
    return await _write_or_read(tx, context, request)
