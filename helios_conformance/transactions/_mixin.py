"""Default FHIR interactions for a backend that provides :meth:`begin`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from .._contract import IsolationLevel, Patch, QueryParameters, Transaction
from .._resource import Resource, StoredResource
from .._tenancy import TenantContext
from ._bundle import process_bundle
from ._conditional import (
    conditional_create_in,
    conditional_delete_in,
    conditional_patch_in,
    conditional_update_in,
    patch_in,
)
from ._gate import TransactionGate

UNGATED_METHODS = frozenset(
    {
        "begin",
        "close",
        "transaction",
        "process_bundle",
        "conditional_create",
        "conditional_update",
        "conditional_delete",
        "conditional_patch",
        "patch",
    }
)
"""Public methods a backend must not run under its :class:`TransactionGate`: they open
their own transaction (or manage the gate), so gating them would deadlock."""


class FhirTransactionsMixin:
    """Supply ``transaction()``, the conditional interactions, ``patch`` and
    ``process_bundle`` on top of a backend's own :meth:`begin`.

    Each interaction opens one transaction, so its search and its write are atomic
    and concurrent calls cannot both see "no match". Nothing requires using this
    class; a backend may implement any of these calls natively (for example a single
    SQL statement for conditional create) as long as the suites pass.
    """

    @property
    def transaction_gate(self) -> TransactionGate:
        """The gate every call and transaction of this backend runs under (one per backend)."""
        gate: TransactionGate | None = self.__dict__.get("_transaction_gate")
        if gate is None:
            gate = self.__dict__["_transaction_gate"] = TransactionGate()
        return gate

    async def begin(
        self, context: TenantContext, *, isolation: IsolationLevel = "serializable"
    ) -> Transaction:
        """Open a transaction; see ``TransactionStorage.begin``. Backends override this."""
        raise NotImplementedError(f"{type(self).__name__} must implement begin()")

    @asynccontextmanager
    async def transaction(
        self, context: TenantContext, *, isolation: IsolationLevel = "serializable"
    ) -> AsyncIterator[Transaction]:
        """Begin, yield the transaction, commit on normal exit, roll back on error."""
        tx = await self.begin(context, isolation=isolation)
        try:
            yield tx
        except BaseException:
            if tx.active:
                await tx.rollback()
            raise
        if tx.active:
            await tx.commit()

    async def conditional_create(
        self, context: TenantContext, resource: Resource, criteria: QueryParameters
    ) -> tuple[StoredResource, bool]:
        async with self.transaction(context) as tx:
            return await conditional_create_in(tx, context, resource, criteria)

    async def conditional_update(
        self,
        context: TenantContext,
        resource: Resource,
        criteria: QueryParameters,
        *,
        allow_create: bool = True,
        expected_version: str | None = None,
    ) -> tuple[StoredResource, bool]:
        async with self.transaction(context) as tx:
            return await conditional_update_in(
                tx,
                context,
                resource,
                criteria,
                allow_create=allow_create,
                expected_version=expected_version,
            )

    async def conditional_delete(
        self,
        context: TenantContext,
        resource_type: str,
        criteria: QueryParameters,
        *,
        multiple: bool = False,
    ) -> tuple[StoredResource, ...]:
        async with self.transaction(context) as tx:
            return await conditional_delete_in(
                tx, context, resource_type, criteria, multiple=multiple
            )

    async def conditional_patch(
        self,
        context: TenantContext,
        resource_type: str,
        criteria: QueryParameters,
        patch: Patch,
        *,
        expected_version: str | None = None,
    ) -> StoredResource:
        async with self.transaction(context) as tx:
            return await conditional_patch_in(
                tx, context, resource_type, criteria, patch, expected_version=expected_version
            )

    async def patch(
        self,
        context: TenantContext,
        resource_type: str,
        resource_id: str,
        patch: Patch,
        *,
        expected_version: str | None = None,
    ) -> StoredResource:
        async with self.transaction(context) as tx:
            return await patch_in(
                tx, context, resource_type, resource_id, patch, expected_version=expected_version
            )

    async def process_bundle(self, context: TenantContext, bundle: Resource) -> Resource:
        return await process_bundle(self, context, bundle)
