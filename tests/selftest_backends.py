"""Deliberately broken backends: the suites must catch each of them.

Loaded by pytester runs as ``--backend=selftest_backends:<factory>``.
"""

from __future__ import annotations

from typing import Any

from helios_conformance import (
    BackendConfig,
    BackendUnavailable,
    CapabilityDeclaration,
    HistoryPage,
    InvalidRequest,
    StoredResource,
    TenantContext,
    Unsupported,
)
from helios_conformance.testing import MEMORY_CAPABILITIES, MemoryBackend


class IgnoresIfMatch(MemoryBackend):
    """Declares optimistic locking but writes whatever version the caller expected."""

    async def update(
        self,
        context: TenantContext,
        resource_type: str,
        resource_id: str,
        resource: dict[str, Any],
        *,
        expected_version: str | None = None,
    ) -> StoredResource:
        return await super().update(context, resource_type, resource_id, resource)


class RefusesVread(MemoryBackend):
    """Declares vread but refuses it with Unsupported (a false claim)."""

    async def vread(
        self, context: TenantContext, resource_type: str, resource_id: str, version_id: str
    ) -> StoredResource:
        raise Unsupported("vread is not implemented", capability="versioning.vread")


class UnderClaims(MemoryBackend):
    """Implements everything the memory backend does but declares no history."""

    def __init__(self) -> None:
        supported = {c for c in MEMORY_CAPABILITIES.supported if not c.startswith("history.")}
        super().__init__(CapabilityDeclaration.of(supported, planned=["history.system"]))


class CrashesOnHistory(UnderClaims):
    """Declares no history, and instead of refusing cleanly it returns nothing."""

    async def history_type(self, context: TenantContext, resource_type: str, **kwargs: Any) -> Any:
        raise RuntimeError("boom")


async def open_ignores_if_match(config: BackendConfig) -> MemoryBackend:
    return IgnoresIfMatch()


async def open_refuses_vread(config: BackendConfig) -> MemoryBackend:
    return RefusesVread()


async def open_under_claims(config: BackendConfig) -> MemoryBackend:
    return UnderClaims()


async def open_crashes_on_history(config: BackendConfig) -> MemoryBackend:
    return CrashesOnHistory()


async def open_unavailable(config: BackendConfig) -> MemoryBackend:
    raise BackendUnavailable("no server at 127.0.0.1:1 (self-test)")


async def open_not_a_backend(config: BackendConfig) -> object:
    return object()


async def open_unknown_capability(config: BackendConfig) -> MemoryBackend:
    return MemoryBackend(CapabilityDeclaration.of(["crud.teleport"]))


async def open_crashing(config: BackendConfig) -> MemoryBackend:
    raise RuntimeError("disk on fire")


class CommitsEntriesOneByOne(MemoryBackend):
    """Declares transaction Bundles but commits each entry on its own, as a batch does."""

    async def process_bundle(self, context: TenantContext, bundle: dict[str, Any]) -> Any:
        if bundle.get("type") != "transaction":
            return await super().process_bundle(context, bundle)
        response = await super().process_bundle(context, {**bundle, "type": "batch"})
        for item in response["entry"]:
            outcome = item["response"].get("outcome")
            if outcome is not None:
                raise InvalidRequest(outcome["issue"][0]["diagnostics"])
        return {**response, "type": "transaction-response"}


async def open_commits_entries_one_by_one(config: BackendConfig) -> MemoryBackend:
    return CommitsEntriesOneByOne()


class LeaksTypeHistory(MemoryBackend):
    """Forgets the tenant filter on one read path: type-level history lists the versions
    of every tenant (only on a first page; the other paths stay correct)."""

    async def history_type(
        self, context: TenantContext, resource_type: str, **kwargs: Any
    ) -> HistoryPage:
        page = await super().history_type(context, resource_type, **kwargs)
        if kwargs.get("cursor") is not None:
            return page
        tenants = {tenant for tenant, _, _ in self._log if tenant != context.tenant}
        leaked: list[Any] = []
        for tenant in sorted(tenants):
            other = await super().history_type(TenantContext(tenant), resource_type, **kwargs)
            leaked.extend(other.entries)
        entries = sorted((*page.entries, *leaked), key=lambda e: e.last_updated, reverse=True)
        return HistoryPage(tuple(entries), page.next_cursor)


async def open_leaks_type_history(config: BackendConfig) -> MemoryBackend:
    return LeaksTypeHistory()
