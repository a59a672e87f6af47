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
from .._contract import BackendConfig, BackendInfo, QueryParameters
from .._cursor import CursorCodec
from .._errors import Gone, NotFound, Unsupported, VersionConflict
from .._history import HistoryWindow, history_window
from .._resource import (
    HistoryPage,
    Resource,
    SearchResult,
    StoredResource,
    check_id,
    check_resource_type,
    check_version_id,
    stamp,
    validate_resource,
)
from .._tenancy import Operation, TenantContext, TenantId
from .._version import __version__
from ..search import (
    DEFAULT_PAGE_SIZE,
    Evaluator,
    IndexRow,
    SearchParameterRegistry,
    SummaryMode,
    TotalMode,
    group_rows,
    index_resource,
    parse_query,
    parse_resource_json,
    validate_search_parameter,
)

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
"""The storage capabilities (CRUD, versioning, history, tenancy) the reference backends share."""

MEMORY_SEARCH_CAPABILITIES = CapabilityDeclaration.of(
    supported=[
        "search.param.common",
        "search.param.string",
        "search.param.token",
        "search.param.date",
        "search.param.number",
        "search.param.quantity",
        "search.param.reference",
        "search.param.uri",
        "search.param.composite",
        "search.param.custom",
        "search.modifier.exact",
        "search.modifier.contains",
        "search.modifier.text",
        "search.modifier.not",
        "search.modifier.missing",
        "search.modifier.above",
        "search.modifier.below",
        "search.modifier.identifier",
        "search.modifier.type",
        "search.modifier.of_type",
        "search.modifier.code_text",
        "search.modifier.text_advanced",
        *(f"search.prefix.{p}" for p in ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")),
        "search.text",
        "search.content",
        "search.filter",
        "search.count",
        "search.summary_count",
        "search.total",
    ],
)
"""The search capabilities the reference evaluator gives the in-memory backend.

Not declared (refused with Unsupported): the terminology modifiers (``:in``,
``:not-in``, ``:above``/``:below`` on tokens), ``_elements``, ``_summary`` other
than ``count``, chains, ``_has``, ``_include``, ``_revinclude``, ``_sort`` and paging.
"""

MEMORY_ALL_CAPABILITIES = CapabilityDeclaration.of(
    supported=MEMORY_CAPABILITIES.supported | MEMORY_SEARCH_CAPABILITIES.supported
)
"""Everything the in-memory backend declares by default."""

_UNSUPPORTED_RESULT_FEATURES = (
    ("sort", "search.sort.single", "_sort"),
    ("include", "search.include", "_include"),
    ("revinclude", "search.revinclude", "_revinclude"),
)


@dataclass(slots=True)
class _Version:
    sequence: int
    version_id: str
    last_updated: datetime
    deleted: bool
    text: str | None
    # The search index of this version, computed once when it is written.
    rows: tuple[IndexRow, ...] = ()


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

    def __init__(self, capabilities: CapabilityDeclaration = MEMORY_ALL_CAPABILITIES) -> None:
        self._capabilities = capabilities
        # One registry per tenant: custom SearchParameters are tenant data.
        self._registries: dict[TenantId, SearchParameterRegistry] = {}
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
        self._registries.clear()

    # -- writes ---------------------------------------------------------------

    def _append(
        self, context: TenantContext, chain: _Chain, body: Resource | None
    ) -> StoredResource:
        version_id = str(int(chain.current.version_id) + 1) if chain.versions else "1"
        registry = self._registry(context)
        if body is not None and chain.resource_type == "SearchParameter":
            # Refuse an unusable SearchParameter before anything is written.
            validate_search_parameter(body, registry)
        moment = self._clock.now()
        text = None
        rows: tuple[IndexRow, ...] = ()
        if body is not None:
            text = json.dumps(
                stamp(body, chain.resource_id, version_id, moment), ensure_ascii=False
            )
        previous = chain.current if chain.versions else None
        if chain.resource_type == "SearchParameter":
            self._update_registry(registry, previous, text)
        if text is not None:
            rows = index_resource(parse_resource_json(text), registry)
        version = _Version(len(self._log) + 1, version_id, moment, body is None, text, rows)
        chain.versions.append(version)
        self._chains[(context.tenant, chain.resource_type, chain.resource_id)] = chain
        self._log.append((context.tenant, chain, version))
        return _stored(chain, version)

    def _registry(self, context: TenantContext) -> SearchParameterRegistry:
        registry = self._registries.get(context.tenant)
        if registry is None:
            registry = self._registries[context.tenant] = SearchParameterRegistry()
        return registry

    @staticmethod
    def _update_registry(
        registry: SearchParameterRegistry, previous: _Version | None, text: str | None
    ) -> None:
        """Keep a tenant's registry in step with its SearchParameter resources."""
        if previous is not None and previous.text is not None:
            old_url = json.loads(previous.text).get("url")
            new_url = json.loads(text).get("url") if text is not None else None
            if isinstance(old_url, str) and old_url != new_url:
                registry.unregister(old_url)
        if text is not None:
            registry.register(json.loads(text))

    async def create(self, context: TenantContext, resource: Resource) -> StoredResource:
        body = validate_resource(resource, ignore_id=True)
        context.require(Operation.CREATE, body["resourceType"])
        chain = _Chain(body["resourceType"], str(uuid.uuid4()))
        return self._append(context, chain, body)

    async def create_or_update(
        self, context: TenantContext, resource_type: str, resource_id: str, resource: Resource
    ) -> tuple[StoredResource, bool]:
        check_resource_type(resource_type)
        check_id(resource_id)
        body = validate_resource(
            resource, expected_type=resource_type, expected_id=resource_id, require_id=True
        )
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

    # -- search ---------------------------------------------------------------

    async def search(
        self,
        context: TenantContext,
        resource_type: str,
        parameters: QueryParameters,
        *,
        strict: bool = True,
    ) -> SearchResult:
        """Search live resources of one type with the reference evaluator.

        Matches are returned in ascending id order (code-point order), the stable
        default order this backend documents; ``_count`` (default
        ``DEFAULT_PAGE_SIZE``) limits the page, ``_summary=count`` returns only the
        total, and ``_total=accurate``/``estimate`` report the exact number of matches.
        """
        context.require(Operation.SEARCH, resource_type)
        check_resource_type(resource_type)
        query = parse_query(
            resource_type, parameters, registry=self._registry(context), strict=strict
        )
        for attribute, capability, name in _UNSUPPORTED_RESULT_FEATURES:
            if getattr(query, attribute):
                raise Unsupported(
                    f"{name} is not supported by the in-memory backend", capability=capability
                )
        evaluator = Evaluator(query)
        matched = sorted(
            (
                chain
                for (tenant, kind, _), chain in self._chains.items()
                if tenant == context.tenant
                and kind == resource_type
                and not chain.current.deleted
                and evaluator.matches(group_rows(chain.current.rows))
            ),
            key=lambda chain: chain.resource_id,
        )
        total = None
        if query.summary is SummaryMode.COUNT or query.total in (
            TotalMode.ACCURATE,
            TotalMode.ESTIMATE,
        ):
            total = len(matched)
        if query.summary is SummaryMode.COUNT:
            return SearchResult(entries=(), total=total, ignored=query.ignored)
        page_size = DEFAULT_PAGE_SIZE if query.count is None else query.count
        entries = tuple(_stored(chain, chain.current) for chain in matched[:page_size])
        return SearchResult(entries=entries, total=total, ignored=query.ignored)

    async def reindex(self, context: TenantContext, resource_type: str | None = None) -> int:
        """Recompute the search index of current versions with the tenant's parameters.

        Run it after registering a custom SearchParameter so resources written before
        it become searchable by it. Returns the number of resources reindexed.
        """
        context.require(Operation.UPDATE, resource_type)
        if resource_type is not None:
            check_resource_type(resource_type)
        registry = self._registry(context)
        done = 0
        for (tenant, kind, _), chain in self._chains.items():
            if tenant != context.tenant or (resource_type is not None and kind != resource_type):
                continue
            current = chain.current
            if current.text is not None:
                current.rows = index_resource(parse_resource_json(current.text), registry)
                done += 1
        return done


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
