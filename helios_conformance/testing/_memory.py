"""The in-memory backend: the executable specification of the contract.

It keeps every version as serialized JSON (so callers never share mutable state with
the store) and runs each call without an ``await`` in the middle, which makes every
call atomic on the event loop. The harness's own tests and differential tests use it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from .._capabilities import CapabilityDeclaration
from .._clock import MonotonicClock
from .._contract import BackendConfig, BackendInfo
from .._cursor import CursorCodec
from .._errors import Gone, NotFound, VersionConflict
from .._history import HistoryWindow, history_window
from .._resource import (
    HistoryPage,
    Resource,
    StoredResource,
    check_id,
    check_resource_type,
    check_version_id,
    stamp,
    validate_resource,
)
from .._tenancy import Operation, TenantContext, TenantId
from .._version import __version__

MEMORY_CAPABILITIES = CapabilityDeclaration.of(
    supported=[
        "crud.create",
        "crud.read",
        "crud.update",
        "crud.update_as_create",
        "crud.delete",
        "crud.validation",
        "versioning.version_ids",
        "versioning.vread",
        "versioning.if_match",
        "history.instance",
        "history.type",
        "history.system",
        "history.deletes",
        "history.filters",
        "history.paging",
        "tenancy.shared_schema",
        "tenancy.permissions",
    ],
)


@dataclass(slots=True)
class _Version:
    sequence: int
    version_id: str
    last_updated: datetime
    deleted: bool
    text: str | None


@dataclass(slots=True)
class _Chain:
    resource_type: str
    resource_id: str
    versions: list[_Version] = field(default_factory=list)

    @property
    def current(self) -> _Version:
        return self.versions[-1]


class MemoryBackend:
    """Every capability of the contract so far, held in process memory."""

    def __init__(self, capabilities: CapabilityDeclaration = MEMORY_CAPABILITIES) -> None:
        self._capabilities = capabilities
        self._chains: dict[tuple[TenantId, str, str], _Chain] = {}
        # One append-only log of (tenant, chain, version) gives history its order.
        self._log: list[tuple[TenantId, _Chain, _Version]] = []
        self._clock = MonotonicClock()
        self._cursors = CursorCodec()

    @property
    def info(self) -> BackendInfo:
        return BackendInfo(name="memory", version=__version__, server_version=None)

    @property
    def capabilities(self) -> CapabilityDeclaration:
        return self._capabilities

    async def close(self) -> None:
        self._chains.clear()
        self._log.clear()

    # -- writes ---------------------------------------------------------------

    def _append(
        self, context: TenantContext, chain: _Chain, body: Resource | None
    ) -> StoredResource:
        version_id = str(int(chain.current.version_id) + 1) if chain.versions else "1"
        moment = self._clock.now()
        text = None
        if body is not None:
            text = json.dumps(
                stamp(body, chain.resource_id, version_id, moment), ensure_ascii=False
            )
        version = _Version(len(self._log) + 1, version_id, moment, body is None, text)
        chain.versions.append(version)
        self._chains[(context.tenant, chain.resource_type, chain.resource_id)] = chain
        self._log.append((context.tenant, chain, version))
        return _stored(chain, version)

    async def create(self, context: TenantContext, resource: Resource) -> StoredResource:
        body = validate_resource(resource)
        context.require(Operation.CREATE, body["resourceType"])
        chain = _Chain(body["resourceType"], str(uuid.uuid4()))
        return self._append(context, chain, body)

    async def create_or_update(
        self, context: TenantContext, resource_type: str, resource_id: str, resource: Resource
    ) -> tuple[StoredResource, bool]:
        check_resource_type(resource_type)
        check_id(resource_id)
        body = validate_resource(resource, expected_type=resource_type, expected_id=resource_id)
        chain = self._chains.get((context.tenant, resource_type, resource_id))
        created = chain is None or chain.current.deleted
        context.require(Operation.CREATE if created else Operation.UPDATE, resource_type)
        chain = chain or _Chain(resource_type, resource_id)
        return self._append(context, chain, body), created

    async def update(
        self,
        context: TenantContext,
        resource_type: str,
        resource_id: str,
        resource: Resource,
        *,
        expected_version: str | None = None,
    ) -> StoredResource:
        check_resource_type(resource_type)
        check_id(resource_id)
        body = validate_resource(
            resource, expected_type=resource_type, expected_id=resource_id, require_id=True
        )
        context.require(Operation.UPDATE, resource_type)
        chain = self._live_chain(context, resource_type, resource_id)
        _check_expected(chain, expected_version)
        return self._append(context, chain, body)

    async def delete(
        self,
        context: TenantContext,
        resource_type: str,
        resource_id: str,
        *,
        expected_version: str | None = None,
    ) -> StoredResource | None:
        check_resource_type(resource_type)
        check_id(resource_id)
        context.require(Operation.DELETE, resource_type)
        chain = self._chains.get((context.tenant, resource_type, resource_id))
        if chain is None or chain.current.deleted:
            if expected_version is not None:
                raise VersionConflict(
                    f"{resource_type}/{resource_id} has no current version to match "
                    f"expected version {expected_version!r}",
                    resource_type=resource_type,
                    resource_id=resource_id,
                    expected_version=expected_version,
                    actual_version=None,
                )
            return None
        _check_expected(chain, expected_version)
        return self._append(context, chain, None)

    # -- reads ----------------------------------------------------------------

    def _chain(self, context: TenantContext, resource_type: str, resource_id: str) -> _Chain:
        check_resource_type(resource_type)
        check_id(resource_id)
        chain = self._chains.get((context.tenant, resource_type, resource_id))
        if chain is None:
            raise NotFound(
                f"{resource_type}/{resource_id} does not exist",
                resource_type=resource_type,
                resource_id=resource_id,
            )
        return chain

    def _live_chain(self, context: TenantContext, resource_type: str, resource_id: str) -> _Chain:
        chain = self._chain(context, resource_type, resource_id)
        if chain.current.deleted:
            raise Gone(
                f"{resource_type}/{resource_id} was deleted (version {chain.current.version_id})",
                resource_type=resource_type,
                resource_id=resource_id,
                version_id=chain.current.version_id,
            )
        return chain

    async def read(
        self, context: TenantContext, resource_type: str, resource_id: str
    ) -> StoredResource:
        context.require(Operation.READ, resource_type)
        chain = self._live_chain(context, resource_type, resource_id)
        return _stored(chain, chain.current)

    async def vread(
        self, context: TenantContext, resource_type: str, resource_id: str, version_id: str
    ) -> StoredResource:
        context.require(Operation.READ, resource_type)
        check_version_id(version_id)
        chain = self._chain(context, resource_type, resource_id)
        index = int(version_id) - 1
        if index >= len(chain.versions):
            raise NotFound(
                f"{resource_type}/{resource_id} has no version {version_id} "
                f"(current is {chain.current.version_id})",
                resource_type=resource_type,
                resource_id=resource_id,
                version_id=version_id,
            )
        return _stored(chain, chain.versions[index])

    async def exists(self, context: TenantContext, resource_type: str, resource_id: str) -> bool:
        context.require(Operation.READ, resource_type)
        check_resource_type(resource_type)
        check_id(resource_id)
        chain = self._chains.get((context.tenant, resource_type, resource_id))
        return chain is not None and not chain.current.deleted

    async def count(self, context: TenantContext, resource_type: str | None = None) -> int:
        context.require(Operation.READ, resource_type)
        if resource_type is not None:
            check_resource_type(resource_type)
        return sum(
            1
            for (tenant, kind, _), chain in self._chains.items()
            if tenant == context.tenant
            and (resource_type is None or kind == resource_type)
            and not chain.current.deleted
        )

    # -- history --------------------------------------------------------------

    def _history(
        self,
        context: TenantContext,
        scope: str,
        window: HistoryWindow,
        cursor: str | None,
        keep: tuple[str | None, str | None],
    ) -> HistoryPage:
        scope = f"{context.tenant}|{scope}|{window.scope()}"
        start = len(self._log) + 1
        if cursor is not None:
            start = int(self._cursors.decode(scope, cursor)["before_sequence"])
        kind, ident = keep
        entries: list[tuple[_Chain, _Version]] = []
        more = False
        for tenant, chain, version in reversed(self._log[: start - 1]):
            if tenant != context.tenant:
                continue
            if kind is not None and chain.resource_type != kind:
                continue
            if ident is not None and chain.resource_id != ident:
                continue
            if not window.admits(version.last_updated):
                continue
            if len(entries) == window.count:
                more = True
                break
            entries.append((chain, version))
        next_cursor = None
        if more:
            next_cursor = self._cursors.encode(scope, {"before_sequence": entries[-1][1].sequence})
        return HistoryPage(
            tuple(_stored(chain, version) for chain, version in entries), next_cursor
        )

    async def history_instance(
        self,
        context: TenantContext,
        resource_type: str,
        resource_id: str,
        *,
        since: datetime | None = None,
        before: datetime | None = None,
        count: int | None = None,
        cursor: str | None = None,
    ) -> HistoryPage:
        context.require(Operation.HISTORY, resource_type)
        window = history_window(since, before, count)
        self._chain(context, resource_type, resource_id)
        return self._history(
            context, f"{resource_type}/{resource_id}", window, cursor, (resource_type, resource_id)
        )

    async def history_type(
        self,
        context: TenantContext,
        resource_type: str,
        *,
        since: datetime | None = None,
        before: datetime | None = None,
        count: int | None = None,
        cursor: str | None = None,
    ) -> HistoryPage:
        context.require(Operation.HISTORY, resource_type)
        check_resource_type(resource_type)
        window = history_window(since, before, count)
        return self._history(context, resource_type, window, cursor, (resource_type, None))

    async def history_system(
        self,
        context: TenantContext,
        *,
        since: datetime | None = None,
        before: datetime | None = None,
        count: int | None = None,
        cursor: str | None = None,
    ) -> HistoryPage:
        context.require(Operation.HISTORY)
        window = history_window(since, before, count)
        return self._history(context, "", window, cursor, (None, None))


def _stored(chain: _Chain, version: _Version) -> StoredResource:
    return StoredResource(
        resource_type=chain.resource_type,
        id=chain.resource_id,
        version_id=version.version_id,
        last_updated=version.last_updated,
        deleted=version.deleted,
        resource=None if version.text is None else json.loads(version.text),
    )


def _check_expected(chain: _Chain, expected_version: str | None) -> None:
    if expected_version is not None and expected_version != chain.current.version_id:
        raise VersionConflict(
            f"{chain.resource_type}/{chain.resource_id}: expected version {expected_version!r} "
            f"but the current version is {chain.current.version_id!r}; nothing was written",
            resource_type=chain.resource_type,
            resource_id=chain.resource_id,
            expected_version=expected_version,
            actual_version=chain.current.version_id,
        )


async def open_memory_backend(config: BackendConfig) -> MemoryBackend:
    """Entry point of the ``memory`` backend; it needs no configuration."""
    del config
    return MemoryBackend()
