"""Conditional create, update, delete and patch, and patch itself, written once against
an open :class:`Transaction` (FHIR R4 http.html#ccreate, #cond-update, #cdelete, #patch).

A backend's own ``conditional_*`` and ``patch`` calls open a transaction and call these,
so the search and the write are atomic.
"""

from __future__ import annotations

from .._contract import Patch, QueryParameters, SearchStorage, Transaction
from .._errors import (
    InvalidRequest,
    InvalidResource,
    InvalidSearch,
    MultipleMatches,
    NotFound,
    VersionConflict,
)
from .._resource import StoredResource, validate_resource
from .._tenancy import TenantContext
from ..search import MAX_PAGE_SIZE
from ._patch import apply_patch

RESULT_PARAMETERS = frozenset(
    {
        "_count",
        "_offset",
        "_sort",
        "_include",
        "_revinclude",
        "_summary",
        "_total",
        "_elements",
        "_contained",
        "_containedType",
    }
)
"""Parameters that shape a result page rather than filter: refused in criteria."""


def check_criteria(resource_type: str, criteria: QueryParameters) -> list[tuple[str, str]]:
    """Return the criteria as a list, refusing empty criteria and result parameters.

    Raises:
        InvalidRequest: no criteria at all.
        InvalidSearch: a result parameter such as ``_count``, naming it.
    """
    pairs = [(name, value) for name, value in criteria]
    if not pairs:
        raise InvalidRequest(
            f"conditional {resource_type} interaction without criteria: at least one search "
            "parameter is required"
        )
    for name, _ in pairs:
        if name.split(":", 1)[0] in RESULT_PARAMETERS:
            raise InvalidSearch(
                f"{name} controls the result page and is not allowed in conditional criteria",
                parameter=name,
            )
    return pairs


async def find_matches(
    storage: SearchStorage,
    context: TenantContext,
    resource_type: str,
    criteria: QueryParameters,
    *,
    limit: int = 2,
) -> tuple[StoredResource, ...]:
    """Search live resources matching ``criteria``, at most ``limit`` of them (strict
    handling: an unknown parameter raises InvalidSearch)."""
    pairs = check_criteria(resource_type, criteria)
    result = await storage.search(
        context, resource_type, [*pairs, ("_count", str(limit))], strict=True
    )
    return result.entries


def _describe(resource_type: str, criteria: QueryParameters) -> str:
    return f"{resource_type}?" + "&".join(f"{name}={value}" for name, value in criteria)


def multiple_matches(
    resource_type: str, criteria: QueryParameters, interaction: str
) -> MultipleMatches:
    return MultipleMatches(
        f"conditional {interaction}: {_describe(resource_type, criteria)} matches more than one "
        "resource; the criteria are not selective enough and nothing was written"
    )


async def conditional_create_in(
    tx: Transaction, context: TenantContext, resource: object, criteria: QueryParameters
) -> tuple[StoredResource, bool]:
    """Conditional create inside ``tx``; see ``ConditionalStorage.conditional_create``."""
    body = validate_resource(resource, ignore_id=True)
    resource_type = body["resourceType"]
    matches = await find_matches(tx, context, resource_type, criteria)
    if len(matches) > 1:
        raise multiple_matches(resource_type, criteria, "create")
    if matches:
        return matches[0], False
    return await tx.create(context, body), True


async def conditional_update_in(
    tx: Transaction,
    context: TenantContext,
    resource: object,
    criteria: QueryParameters,
    *,
    allow_create: bool = True,
    expected_version: str | None = None,
) -> tuple[StoredResource, bool]:
    """Conditional update inside ``tx``; see ``ConditionalStorage.conditional_update``."""
    body = validate_resource(resource)
    resource_type = body["resourceType"]
    body_id = body.get("id")
    matches = await find_matches(tx, context, resource_type, criteria)
    if len(matches) > 1:
        raise multiple_matches(resource_type, criteria, "update")
    if matches:
        match = matches[0]
        if body_id is not None and body_id != match.id:
            raise InvalidResource(
                f"the body's id {body_id!r} differs from {match.reference}, the resource "
                f"{_describe(resource_type, criteria)} matches",
                location="id",
            )
        body["id"] = match.id
        stored = await tx.update(
            context, resource_type, match.id, body, expected_version=expected_version
        )
        return stored, False
    if not allow_create:
        raise NotFound(
            f"conditional update: no {resource_type} matches {_describe(resource_type, criteria)} "
            "and creating one was not allowed",
            resource_type=resource_type,
        )
    if expected_version is not None:
        raise VersionConflict(
            f"conditional update: no {resource_type} matches {_describe(resource_type, criteria)}, "
            f"so there is no current version to match expected version {expected_version!r}",
            resource_type=resource_type,
            resource_id=body_id or "",
            expected_version=expected_version,
            actual_version=None,
        )
    if body_id is not None:
        return await tx.create_or_update(context, resource_type, body_id, body)
    return await tx.create(context, body), True


async def conditional_delete_in(
    tx: Transaction,
    context: TenantContext,
    resource_type: str,
    criteria: QueryParameters,
    *,
    multiple: bool = False,
) -> tuple[StoredResource, ...]:
    """Conditional delete inside ``tx``; see ``ConditionalStorage.conditional_delete``."""
    deleted: list[StoredResource] = []
    if not multiple:
        matches = await find_matches(tx, context, resource_type, criteria)
        if len(matches) > 1:
            raise multiple_matches(resource_type, criteria, "delete (single mode)")
    else:
        matches = await find_matches(tx, context, resource_type, criteria, limit=MAX_PAGE_SIZE)
    while matches:
        for match in matches:
            marker = await tx.delete(context, resource_type, match.id)
            if marker is not None:
                deleted.append(marker)
        if not multiple:
            break
        # Deleted resources no longer match: search again until nothing is left.
        matches = await find_matches(tx, context, resource_type, criteria, limit=MAX_PAGE_SIZE)
    return tuple(sorted(deleted, key=lambda marker: marker.id))


async def patch_in(
    tx: Transaction,
    context: TenantContext,
    resource_type: str,
    resource_id: str,
    patch: Patch,
    *,
    expected_version: str | None = None,
) -> StoredResource:
    """Patch inside ``tx``; see ``PatchStorage.patch``."""
    current = await tx.read(context, resource_type, resource_id)
    if expected_version is not None and expected_version != current.version_id:
        raise VersionConflict(
            f"{resource_type}/{resource_id}: expected version {expected_version!r} but the "
            f"current version is {current.version_id!r}; nothing was written",
            resource_type=resource_type,
            resource_id=resource_id,
            expected_version=expected_version,
            actual_version=current.version_id,
        )
    assert current.resource is not None
    patched = apply_patch(current.resource, patch)
    body = validate_resource(
        patched, expected_type=resource_type, expected_id=resource_id, require_id=True
    )
    return await tx.update(
        context, resource_type, resource_id, body, expected_version=current.version_id
    )


async def conditional_patch_in(
    tx: Transaction,
    context: TenantContext,
    resource_type: str,
    criteria: QueryParameters,
    patch: Patch,
    *,
    expected_version: str | None = None,
) -> StoredResource:
    """Conditional patch inside ``tx``; see ``ConditionalStorage.conditional_patch``."""
    matches = await find_matches(tx, context, resource_type, criteria)
    if len(matches) > 1:
        raise multiple_matches(resource_type, criteria, "patch")
    if not matches:
        raise NotFound(
            f"conditional patch: no {resource_type} matches {_describe(resource_type, criteria)}",
            resource_type=resource_type,
        )
    return await patch_in(
        tx, context, resource_type, matches[0].id, patch, expected_version=expected_version
    )
