"""Compartment restrictions on the PostgreSQL backend's reads, writes and history.

A caller restricted to a compartment (``Patient/p1``) sees and writes only resources
in it, exactly as the in-memory backend decides (``Compartment.contains``): the
compartment's own resource, or a resource whose index rows of a parameter the
CompartmentDefinition lists for its type hold the relative reference ``Patient/p1``.
A resource outside is the same NotFound as a missing one; a write that touches one
(its current version, or the new body) is AccessDenied and writes nothing.

Each restricted call runs as a short transaction of its own on one connection
(:func:`._transactions.run_in_session`), or inside the caller's open transaction:

- current versions are decided in SQL on ``search_index`` (one ``EXISTS``), the same
  rows search uses;
- older versions (vread, history) have no index rows: their stored text is indexed
  here with the tenant's current SearchParameter registry and decided in Python, as
  SQLite does. A deletion marker is in the compartment when the version it deleted
  was;
- a write first takes the tenant's lock (the session is a writer), so the check and
  the write see the same state.

Unrestricted callers never come here: they keep their one statement per call.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from helios_conformance import (
    AccessDenied,
    Compartment,
    HistoryWindow,
    NotFound,
    TenantContext,
    history_window,
)
from helios_conformance.search import (
    IndexRow,
    SearchParameterRegistry,
    index_resource,
    parse_resource_json,
)

if TYPE_CHECKING:
    import asyncpg

    from ._backend import PostgresBackend

_HISTORY_BATCH = 64
_ALL_VERSIONS = 2**31 - 1

# Whether resource ($2, $3) of tenant $1 is in the compartment on its current index rows.
_MEMBER_NOW = """
SELECT EXISTS (
    SELECT 1 FROM search_index cm
     WHERE cm.tenant = $1 AND cm.resource_type = $2 AND cm.resource_id = $3
       AND cm.param = ANY($4::text[]) AND cm.type = 'reference' AND cm.component IS NULL
       AND cm.ref_type = $5 AND cm.ref_id = $6 AND cm.exact = $7)
"""

# The live resources of tenant $1 (of type $2, or all) in the compartment.
_COUNT_MEMBERS = """
SELECT count(*) FROM resources r
 WHERE r.tenant = $1 AND ($2::text IS NULL OR r.resource_type = $2) AND NOT r.deleted
   AND ((r.resource_type = $3 AND r.id = $4)
        OR EXISTS (
            SELECT 1 FROM search_index cm
             WHERE cm.tenant = r.tenant AND cm.resource_type = r.resource_type
               AND cm.resource_id = r.id
               AND cm.param IN (SELECT jsonb_array_elements_text($5::jsonb -> r.resource_type))
               AND cm.type = 'reference' AND cm.component IS NULL
               AND cm.ref_type = $3 AND cm.ref_id = $4 AND cm.exact = $6))
"""


def hidden(resource_type: str, resource_id: str) -> NotFound:
    """What a restricted caller gets for a resource outside its compartment: the same
    NotFound as for a resource that does not exist."""
    return NotFound(
        f"{resource_type}/{resource_id} does not exist",
        resource_type=resource_type,
        resource_id=resource_id,
    )


def _connection(view: PostgresBackend) -> asyncpg.Connection:
    binding = view._binding
    assert binding is not None, "compartment checks run on a bound view"
    return binding.connection


async def member_now(
    view: PostgresBackend,
    context: TenantContext,
    compartment: Compartment,
    resource_type: str,
    resource_id: str,
) -> bool:
    """Whether the current version of a resource is in ``compartment`` (its index rows)."""
    if resource_type == compartment.kind and resource_id == compartment.id:
        return True
    parameters = list(compartment.parameters(resource_type))
    if not parameters:
        return False
    return bool(
        await _connection(view).fetchval(
            _MEMBER_NOW,
            context.tenant.value,
            resource_type,
            resource_id,
            parameters,
            compartment.kind,
            compartment.id,
            compartment.reference,
        )
    )


def text_in(
    compartment: Compartment,
    registry: SearchParameterRegistry,
    resource_type: str,
    resource_id: str,
    text: str | None,
) -> bool:
    """Whether a stored version (its JSON text; ``None`` for a deletion) is in ``compartment``."""
    if resource_type == compartment.kind and resource_id == compartment.id:
        return True
    if text is None or not compartment.parameters(resource_type):
        return False
    rows = index_resource(parse_resource_json(text), registry)
    return compartment.contains(resource_type, resource_id, rows)


async def count_members(
    view: PostgresBackend,
    context: TenantContext,
    compartment: Compartment,
    resource_type: str | None,
) -> int:
    """The live resources (of one type, or all) in ``compartment``."""
    definition = {
        kind: list(compartment.parameters(kind)) for kind in sorted(compartment.resource_types)
    }
    return int(
        await _connection(view).fetchval(
            _COUNT_MEMBERS,
            context.tenant.value,
            resource_type,
            compartment.kind,
            compartment.id,
            json.dumps(definition),
            compartment.reference,
        )
    )


async def check_write(
    view: PostgresBackend,
    context: TenantContext,
    compartment: Compartment,
    resource_type: str,
    resource_id: str,
    current_live: bool,
    body_rows: Sequence[IndexRow] | None,
) -> None:
    """Refuse a write touching a resource outside ``compartment`` (as the memory backend).

    Both the current live version and the new body (``body_rows``; ``None`` for a
    delete) must be in the compartment.

    Raises:
        AccessDenied: naming the resource and the compartment; nothing was written.
    """
    if current_live and not await member_now(
        view, context, compartment, resource_type, resource_id
    ):
        raise AccessDenied(
            f"{resource_type}/{resource_id} is outside compartment {compartment.reference}; "
            "nothing was written"
        )
    if body_rows is not None and not compartment.contains(resource_type, resource_id, body_rows):
        raise AccessDenied(
            f"the new version of {resource_type}/{resource_id} would lie outside compartment "
            f"{compartment.reference}; nothing was written"
        )


class VersionJudge:
    """Decides which history versions are in a compartment, each version once.

    A deletion marker is in the compartment when the version it deleted was; that
    version's text is taken from the rows already read when it is among them (a
    resource's history, or the same batch), and read with one statement otherwise.
    """

    def __init__(
        self,
        view: PostgresBackend,
        context: TenantContext,
        compartment: Compartment,
        registry: SearchParameterRegistry,
    ) -> None:
        self._view = view
        self._context = context
        self._compartment = compartment
        self._registry = registry
        self._texts: dict[tuple[str, str, int], str | None] = {}
        self._verdicts: dict[tuple[str, str, int], bool] = {}

    def saw(self, rows: Sequence[asyncpg.Record]) -> None:
        """Remember the texts of history rows read, for the deletion markers after them."""
        for row in rows:
            if row[0] is not None:
                self._texts[(row[1], row[2], int(row[3]))] = row[6]

    async def _text_of(self, resource_type: str, resource_id: str, version_id: int) -> str | None:
        key = (resource_type, resource_id, version_id)
        if key not in self._texts:
            found = await self._view._fetch(
                self._context,
                "SELECT o_current, o_found, o_last_updated, o_deleted, o_text"
                " FROM helios.read_version($1, $2, $3, $4, $5)",
                resource_type,
                resource_id,
                version_id,
                compartment_enforced=True,
            )
            self._texts[key] = found[0][4] if found and found[0][1] else None
        return self._texts[key]

    async def contains(self, row: asyncpg.Record | tuple[Any, ...]) -> bool:
        """Whether the history row (sequence, type, id, version, instant, deleted, text) is in."""
        resource_type, resource_id, version_id = row[1], row[2], int(row[3])
        key = (resource_type, resource_id, version_id)
        verdict = self._verdicts.get(key)
        if verdict is None:
            text = row[6]
            if row[5] and version_id > 1:
                text = await self._text_of(resource_type, resource_id, version_id - 1)
            verdict = text_in(self._compartment, self._registry, resource_type, resource_id, text)
            self._verdicts[key] = verdict
        return verdict


async def restricted_history(
    view: PostgresBackend,
    context: TenantContext,
    compartment: Compartment,
    scope: str,
    window: HistoryWindow,
    cursor: str | None,
    resource_type: str | None,
    resource_id: str | None,
) -> tuple[list[asyncpg.Record], str | None]:
    """The rows of a history page holding only the versions in ``compartment``.

    Pages are read in batches, newest first, and filtered here; an instance outside the
    compartment in every version is NotFound, checked before the cursor is decoded (as
    the memory backend does).
    """
    judge = VersionJudge(view, context, compartment, (await view._registry_state(context)).registry)
    if resource_id is not None:
        assert resource_type is not None
        every = history_window(None, None, None)
        versions = await view._history_rows(
            context,
            every,
            resource_type,
            resource_id,
            None,
            _ALL_VERSIONS,
            compartment_enforced=True,
        )
        if not versions:
            raise hidden(resource_type, resource_id)
        versions = [row for row in versions if row[0] is not None]
        judge.saw(versions)
        for row in versions:
            if await judge.contains(row):
                break
        else:
            raise hidden(resource_type, resource_id)
    before_sequence = None
    if cursor is not None:
        before_sequence = int(view._cursors.decode(scope, cursor)["before_sequence"])
    kept: list[asyncpg.Record] = []
    batch_size = max(window.count + 1, _HISTORY_BATCH)
    while len(kept) <= window.count:
        batch = await view._history_rows(
            context,
            window,
            resource_type,
            resource_id,
            before_sequence,
            batch_size,
            compartment_enforced=True,
        )
        batch = [row for row in batch if row[0] is not None]
        judge.saw(batch)
        for row in batch:
            if await judge.contains(row):
                kept.append(row)
                if len(kept) > window.count:
                    break
        if len(batch) < batch_size:
            break
        before_sequence = batch[-1][0]
    more = len(kept) > window.count
    kept = kept[: window.count]
    next_cursor = None
    if more:
        next_cursor = view._cursors.encode(scope, {"before_sequence": kept[-1][0]})
    return kept, next_cursor
