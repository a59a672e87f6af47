"""The in-memory backend: the executable specification of the contract.

It keeps every version as serialized JSON (so callers never share mutable state with
the store) and runs each call without an ``await`` in the middle, which makes every
call atomic on the event loop. The harness's own tests and differential tests use it.
"""

from __future__ import annotations

import bisect
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .._bulk_contract import ExportPage, ExportScan
from .._capabilities import CapabilityDeclaration
from .._clock import MonotonicClock
from .._compartment import Compartment, context_compartment, restrict_export_scan
from .._contract import BackendConfig, BackendInfo, QueryParameters, TenantLocation
from .._cursor import CursorCodec
from .._errors import AccessDenied, Gone, NotFound, VersionConflict
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
    DEFAULT_CHAIN_DEPTH,
    ComposedEvaluator,
    IndexRow,
    RowsByParam,
    SearchCursor,
    SearchParameterRegistry,
    SummaryMode,
    TotalMode,
    check_chain_depth,
    check_result_parameters,
    decode_sort_values,
    encode_sort_values,
    group_rows,
    index_resource,
    parse_query,
    parse_resource_json,
    read_search_cursor,
    resolve_includes,
    search_cursor_scope,
    sort_key,
    sort_values,
    subset_match,
    validate_search_parameter,
)
from ._memory_bulk import MEMORY_BULK_CAPABILITIES, MemoryBulkStorage
from ._memory_transactions import MEMORY_TRANSACTION_CAPABILITIES, MemoryTransactions

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
        "search.elements",
        "search.summary",
        "search.chain",
        "search.has",
        "search.include",
        "search.include.iterate",
        "search.revinclude",
        "search.sort.single",
        "search.sort.multi",
        "search.paging.offset",
        "search.paging.cursor",
    ],
)
"""The search capabilities the reference evaluator gives the in-memory backend.

Not declared (refused with Unsupported): the terminology modifiers (``:in``,
``:not-in``, ``:above``/``:below`` on tokens). ``_summary=true``/``text`` know the
summary elements of Patient, Practitioner, Organization and Observation only.
"""

MEMORY_TENANCY_CAPABILITIES = CapabilityDeclaration.of(
    supported=[
        "tenancy.shared_schema",
        "tenancy.permissions",
        "tenancy.isolation",
        "tenancy.hierarchy",
        "tenancy.compartment",
    ],
)
"""The tenancy model in full: isolation on every read path, hierarchy, permissions and
compartment restrictions (``helios_conformance._tenancy``)."""

MEMORY_ALL_CAPABILITIES = CapabilityDeclaration.of(
    supported=MEMORY_CAPABILITIES.supported
    | MEMORY_TENANCY_CAPABILITIES.supported
    | MEMORY_SEARCH_CAPABILITIES.supported
    | MEMORY_TRANSACTION_CAPABILITIES.supported
    | MEMORY_BULK_CAPABILITIES.supported
)
"""Everything the in-memory backend declares by default."""


@dataclass(slots=True)
class _Version:
    sequence: int
    version_id: str
    last_updated: datetime
    deleted: bool
    text: str | None
    # The search index of this version, computed once when it is written.
    rows: tuple[IndexRow, ...] = ()
    _grouped: dict[str, list[IndexRow]] | None = None

    def grouped(self) -> dict[str, list[IndexRow]]:
        """The rows grouped by parameter code (computed once)."""
        if self._grouped is None:
            self._grouped = group_rows(self.rows)
        return self._grouped


@dataclass(slots=True)
class _Chain:
    resource_type: str
    resource_id: str
    versions: list[_Version] = field(default_factory=list)

    @property
    def current(self) -> _Version:
        return self.versions[-1]


class MemoryBackend(MemoryTransactions, MemoryBulkStorage):
    """Every capability of the contract so far, held in process memory."""

    def __init__(
        self,
        capabilities: CapabilityDeclaration = MEMORY_ALL_CAPABILITIES,
        *,
        max_chain_depth: int = DEFAULT_CHAIN_DEPTH,
    ) -> None:
        self._capabilities = capabilities
        self._max_chain_depth = check_chain_depth(max_chain_depth)
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

    async def tenant_location(self, context: TenantContext) -> TenantLocation:
        """Every tenant's data in the one in-process store (``TenancyInspection``)."""
        del context
        return TenantLocation("shared", f"memory:{id(self):x}")

    async def close(self) -> None:
        self._chains.clear()
        self._log.clear()
        self._registries.clear()
        self._close_bulk()

    # -- writes ---------------------------------------------------------------

    def _append(
        self, context: TenantContext, chain: _Chain, body: Resource | None
    ) -> StoredResource:
        self._check_compartment_write(context, chain, body)
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

    def _check_compartment_write(
        self, context: TenantContext, chain: _Chain, body: Resource | None
    ) -> None:
        """Refuse a write that would touch a resource outside the context's compartment.

        Both the current live version and the new body must be in the compartment; the
        check runs before anything is written.
        """
        compartment = context_compartment(context)
        if compartment is None:
            return
        kind, rid = chain.resource_type, chain.resource_id
        live = bool(chain.versions) and not chain.current.deleted
        if live and not compartment.contains(kind, rid, chain.current.grouped()):
            raise AccessDenied(
                f"{kind}/{rid} is outside compartment {compartment.reference}; nothing was written"
            )
        if body is not None and not compartment.contains(kind, rid, index_resource(body)):
            raise AccessDenied(
                f"the new version of {kind}/{rid} would lie outside compartment "
                f"{compartment.reference}; nothing was written"
            )

    def _visible(self, context: TenantContext, chain: _Chain, position: int) -> bool:
        """Whether version ``position`` of ``chain`` is visible under the compartment.

        A deletion marker is visible when the version it deleted was.
        """
        compartment = context_compartment(context)
        if compartment is None:
            return True
        return _version_in(compartment, chain, position)

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
        if not self._visible(context, chain, len(chain.versions) - 1):
            raise _hidden(resource_type, resource_id)
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
        if not self._visible(context, chain, index):
            raise _hidden(resource_type, resource_id)
        return _stored(chain, chain.versions[index])

    async def exists(self, context: TenantContext, resource_type: str, resource_id: str) -> bool:
        context.require(Operation.READ, resource_type)
        check_resource_type(resource_type)
        check_id(resource_id)
        chain = self._chains.get((context.tenant, resource_type, resource_id))
        return (
            chain is not None
            and not chain.current.deleted
            and self._visible(context, chain, len(chain.versions) - 1)
        )

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
            and self._visible(context, chain, len(chain.versions) - 1)
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
            if not self._visible(context, chain, int(version.version_id) - 1):
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
        chain = self._chain(context, resource_type, resource_id)
        if not any(self._visible(context, chain, i) for i in range(len(chain.versions))):
            raise _hidden(resource_type, resource_id)
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
        cursor: str | None = None,
    ) -> SearchResult:
        """Search live resources of one type with the reference evaluator.

        Order: the ``_sort`` keys, then ascending id (code-point order); without
        ``_sort`` ascending id. ``_count`` (default ``DEFAULT_PAGE_SIZE``) limits the
        page, ``_offset`` skips matches (offset paging), ``cursor`` continues after
        the page that returned it (keyset paging on the sort values and id, bounded to
        the resources that existed when the first page was served).
        ``_summary=count`` returns only the total; ``_total=accurate``/``estimate``
        report the exact number of matches, ``none`` no number.
        """
        context.require(Operation.SEARCH, resource_type)
        check_resource_type(resource_type)
        query = parse_query(
            resource_type,
            parameters,
            registry=self._registry(context),
            strict=strict,
            max_chain_depth=self._max_chain_depth,
            subsetting=True,
        )
        check_result_parameters(query)
        scope = search_cursor_scope(context.tenant.value, resource_type, parameters)
        snapshot = len(self._log)
        after: tuple[Any, ...] | None = None
        if cursor is not None:
            resume = read_search_cursor(self._cursors, scope, cursor, query)
            snapshot = resume.snapshot
            after = sort_key(query.sort, decode_sort_values(resume.after_values), resume.after_id)
        source = _TenantSource(self, context.tenant, snapshot, context_compartment(context))
        evaluator = ComposedEvaluator(query, source)
        ordered = sorted(
            (
                (sort_key(query.sort, values, rid), values, rid)
                for rid, rows in source.live(resource_type)
                if evaluator.matches(rid, rows)
                for values in (sort_values(query.sort, rows),)
            ),
            key=lambda item: item[0],
        )
        total = None
        if query.summary is SummaryMode.COUNT or query.total in (
            TotalMode.ACCURATE,
            TotalMode.ESTIMATE,
        ):
            total = len(ordered)
        if query.summary is SummaryMode.COUNT:
            return SearchResult(entries=(), total=total, ignored=query.ignored)
        start = query.offset or 0
        if after is not None:
            start = bisect.bisect_right([item[0] for item in ordered], after)
        page = ordered[start : start + query.page_size]
        more = query.page_size > 0 and start + len(page) < len(ordered)
        next_cursor = next_offset = None
        if more:
            _, last_values, last_id = page[-1]
            next_cursor = self._cursors.encode(
                scope,
                SearchCursor(tuple(encode_sort_values(last_values)), last_id, snapshot).payload(),
            )
            if cursor is None:
                next_offset = start + len(page)
        entries = tuple(
            subset_match(self._current(context, resource_type, rid), query) for _, _, rid in page
        )
        included: tuple[StoredResource, ...] = ()
        if query.include or query.revinclude:
            keyed = [((resource_type, rid), source.rows(resource_type, rid)) for _, _, rid in page]
            included = tuple(
                self._current(context, kind, rid)
                for kind, rid in resolve_includes(query, keyed, source)
            )
        return SearchResult(
            entries=entries,
            included=included,
            total=total,
            next_cursor=next_cursor,
            ignored=query.ignored,
            next_offset=next_offset,
        )

    def _current(
        self, context: TenantContext, resource_type: str, resource_id: str
    ) -> StoredResource:
        chain = self._chains[(context.tenant, resource_type, resource_id)]
        return _stored(chain, chain.current)

    async def scan_export(self, context: TenantContext, scan: ExportScan) -> ExportPage:
        """Bulk export's scan, narrowed to the context's compartment restriction."""
        context.require(Operation.BULK_EXPORT, scan.resource_type)
        return await super().scan_export(context, restrict_export_scan(context, scan))

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
                current._grouped = None
                done += 1
        return done


class _TenantSource:
    """The live resources of one tenant as grouped index rows (an ``IndexSource``).

    ``snapshot`` bounds the resources to those first written at or before that log
    sequence, so a cursor keeps paging over the resources that existed when its first
    page was served.
    """

    def __init__(
        self,
        backend: MemoryBackend,
        tenant: TenantId,
        snapshot: int,
        compartment: Compartment | None = None,
    ) -> None:
        self._by_type: dict[str, dict[str, RowsByParam]] = {}
        for (owner, kind, rid), chain in backend._chains.items():
            if owner != tenant or chain.current.deleted or chain.versions[0].sequence > snapshot:
                continue
            # Resources outside the compartment do not exist for a restricted caller:
            # they neither match, nor resolve chains/_has, nor get included.
            if compartment is not None and not compartment.contains(
                kind, rid, chain.current.grouped()
            ):
                continue
            self._by_type.setdefault(kind, {})[rid] = chain.current.grouped()

    def live(self, resource_type: str) -> Iterable[tuple[str, RowsByParam]]:
        return self._by_type.get(resource_type, {}).items()

    def live_types(self) -> Iterable[str]:
        return sorted(self._by_type)

    def get(self, resource_type: str, resource_id: str) -> RowsByParam | None:
        return self._by_type.get(resource_type, {}).get(resource_id)

    def rows(self, resource_type: str, resource_id: str) -> RowsByParam:
        return self._by_type[resource_type][resource_id]


def _version_in(compartment: Compartment, chain: _Chain, position: int) -> bool:
    version = chain.versions[position]
    if version.deleted and position > 0:
        version = chain.versions[position - 1]
    return compartment.contains(chain.resource_type, chain.resource_id, version.grouped())


def _hidden(resource_type: str, resource_id: str) -> NotFound:
    """What a compartment-restricted caller gets for a resource outside its compartment:
    the same NotFound as for a resource that does not exist."""
    return NotFound(
        f"{resource_type}/{resource_id} does not exist",
        resource_type=resource_type,
        resource_id=resource_id,
    )


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
