"""Explicit storage transactions: begin, commit, rollback, isolation (FHIR R4 http.html#transaction)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from helios_conformance import (
    ISOLATION_LEVELS,
    InvalidRequest,
    SyncClient,
    TenantContext,
    TransactionStorage,
    Unsupported,
)

SPEC = "https://hl7.org/fhir/R4/http.html#transaction"


def patient(family: str, identifier: str = "mrn-1", resource_id: str | None = None) -> dict:
    body: dict = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:test", "value": identifier}],
        "name": [{"family": family}],
    }
    if resource_id is not None:
        body["id"] = resource_id
    return body


pytestmark = pytest.mark.requires("transactions.api", "crud.create", "crud.read")


class TestCommit:
    def test_commit_makes_a_create_visible(self, client: SyncClient) -> None:
        """A resource created in a transaction is readable outside it once committed (https://hl7.org/fhir/R4/http.html#transaction)."""
        tx = client.begin()
        created = tx.create(patient("Lee"))
        tx.commit()

        assert client.read("Patient", created.id).resource["name"] == [{"family": "Lee"}]

    def test_block_commits_on_normal_exit(self, client: SyncClient) -> None:
        """Leaving a ``with client.begin()`` block normally commits it (https://hl7.org/fhir/R4/http.html#transaction)."""
        with client.begin() as tx:
            created = tx.create(patient("Lee"))

        assert (tx.active, client.exists("Patient", created.id)) == (False, True)

    def test_transaction_reads_its_own_writes(self, client: SyncClient) -> None:
        """A read inside the transaction sees the transaction's own uncommitted create (https://hl7.org/fhir/R4/http.html#transaction)."""
        with client.begin() as tx:
            created = tx.create(patient("Lee"))
            seen = tx.read("Patient", created.id)

        assert (seen.id, seen.version_id) == (created.id, "1")

    @pytest.mark.requires("search.param.token")
    def test_transaction_searches_its_own_writes(self, client: SyncClient) -> None:
        """A search inside the transaction finds the transaction's own uncommitted create (https://hl7.org/fhir/R4/http.html#transaction)."""
        with client.begin() as tx:
            created = tx.create(patient("Lee", "mrn-7"))
            found = tx.search("Patient", "identifier=urn:test|mrn-7")

        assert found.ids == (created.id,)


class TestRollback:
    def test_rollback_discards_a_create(self, client: SyncClient) -> None:
        """A create rolled back leaves no resource (https://hl7.org/fhir/R4/http.html#transaction)."""
        tx = client.begin()
        created = tx.create(patient("Lee"))
        tx.rollback()

        assert (client.exists("Patient", created.id), client.count()) == (False, 0)

    @pytest.mark.requires("crud.update")
    def test_rollback_restores_the_previous_version(self, client: SyncClient) -> None:
        """An update rolled back leaves version 1 current with its old content (https://hl7.org/fhir/R4/http.html#transaction)."""
        created = client.create(patient("Before"))
        tx = client.begin()
        tx.update("Patient", created.id, patient("After", resource_id=created.id))
        tx.rollback()

        current = client.read("Patient", created.id)
        assert (current.version_id, current.resource["name"]) == ("1", [{"family": "Before"}])

    @pytest.mark.requires("crud.delete")
    def test_rollback_undoes_a_delete(self, client: SyncClient) -> None:
        """A delete rolled back leaves the resource live (https://hl7.org/fhir/R4/http.html#transaction)."""
        created = client.create(patient("Lee"))
        tx = client.begin()
        tx.delete("Patient", created.id)
        tx.rollback()

        assert client.read("Patient", created.id).version_id == "1"

    @pytest.mark.requires("history.system")
    def test_rollback_leaves_no_history_entry(self, client: SyncClient) -> None:
        """A rolled-back create leaves no entry in system history (https://hl7.org/fhir/R4/http.html#transaction)."""
        tx = client.begin()
        tx.create(patient("Lee"))
        tx.rollback()

        assert client.history_system().entries == ()

    @pytest.mark.requires("search.param.token")
    def test_rollback_leaves_no_search_index_row(self, client: SyncClient) -> None:
        """A rolled-back create is not found by a search on its identifier (https://hl7.org/fhir/R4/http.html#transaction)."""
        tx = client.begin()
        tx.create(patient("Lee", "mrn-9"))
        tx.rollback()

        assert client.search("Patient", "identifier=urn:test|mrn-9").ids == ()

    @pytest.mark.requires("crud.update", "versioning.version_ids")
    def test_version_ids_continue_after_a_rollback(self, client: SyncClient) -> None:
        """After a rolled-back update the next update is version 2, not 3 (https://hl7.org/fhir/R4/http.html#versioning)."""
        created = client.create(patient("One"))
        tx = client.begin()
        tx.update("Patient", created.id, patient("Lost", resource_id=created.id))
        tx.rollback()

        updated = client.update("Patient", created.id, patient("Two", resource_id=created.id))

        assert updated.version_id == "2"

    def test_block_rolls_back_when_it_raises(self, client: SyncClient) -> None:
        """An exception inside a ``with client.begin()`` block rolls the transaction back and propagates (https://hl7.org/fhir/R4/http.html#transaction)."""

        def abort() -> None:
            with client.begin() as tx:
                tx.create(patient("Lee"))
                raise RuntimeError("abort")

        with pytest.raises(RuntimeError, match="abort"):
            abort()

        assert client.count() == 0


class TestLifecycle:
    def test_calls_after_commit_are_refused(self, client: SyncClient) -> None:
        """A committed transaction refuses further calls with InvalidRequest (https://hl7.org/fhir/R4/http.html#transaction)."""
        tx = client.begin()
        tx.commit()

        with pytest.raises(InvalidRequest):
            tx.create(patient("Late"))

    def test_second_commit_is_refused(self, client: SyncClient) -> None:
        """Committing twice raises InvalidRequest (https://hl7.org/fhir/R4/http.html#transaction)."""
        tx = client.begin()
        tx.commit()

        with pytest.raises(InvalidRequest):
            tx.commit()

    def test_rollback_after_commit_is_refused(self, client: SyncClient) -> None:
        """Rolling back a committed transaction raises InvalidRequest and keeps its writes (https://hl7.org/fhir/R4/http.html#transaction)."""
        tx = client.begin()
        tx.create(patient("Kept"))
        tx.commit()

        with pytest.raises(InvalidRequest):
            tx.rollback()
        assert client.count() == 1

    def test_nested_transaction_is_refused(self, client: SyncClient) -> None:
        """Beginning a transaction while this task holds one raises InvalidRequest naming nesting (https://hl7.org/fhir/R4/http.html#transaction)."""
        outer = client.begin()
        try:
            with pytest.raises(InvalidRequest, match="nested"):
                client.begin()
        finally:
            outer.rollback()

    def test_nested_async_transaction_is_refused(self, client: SyncClient) -> None:
        """Inside ``async with backend.transaction(...)`` a second ``begin`` raises InvalidRequest (https://hl7.org/fhir/R4/http.html#transaction)."""
        backend = client.backend
        assert isinstance(backend, TransactionStorage)

        async def nest() -> None:
            async with backend.transaction(client.context):
                await backend.begin(client.context)

        with pytest.raises(InvalidRequest, match="nested"):
            client.run(nest())

    def test_transaction_is_bound_to_its_tenant(self, client: SyncClient) -> None:
        """A transaction refuses a call made with another tenant's context (https://hl7.org/fhir/R4/security.html)."""
        other = TenantContext.of(f"{client.context.tenant}-other")
        with client.begin() as tx, pytest.raises(InvalidRequest):
            client.run(tx.transaction.create(other, patient("Elsewhere")))

        assert client.count() == 0


class TestIsolation:
    def test_unknown_isolation_level_is_refused(self, client: SyncClient) -> None:
        """An isolation level that does not exist raises InvalidRequest naming it (https://hl7.org/fhir/R4/http.html#transaction)."""
        with pytest.raises(InvalidRequest, match="chaotic"):
            client.begin(isolation="chaotic")

    def test_serializable_is_available(self, client: SyncClient) -> None:
        """A transaction at the default level runs serializable (https://hl7.org/fhir/R4/http.html#trules)."""
        with client.begin() as tx:
            assert tx.isolation == "serializable"

    @pytest.mark.parametrize("level", ISOLATION_LEVELS)
    def test_known_level_runs_at_least_as_strong(self, client: SyncClient, level: str) -> None:
        """A known isolation level runs at that level or a stronger one, or is refused as Unsupported (https://hl7.org/fhir/R4/http.html#transaction)."""
        outcome: Any
        try:
            outcome = client.begin(isolation=level)
        except Unsupported as refused:
            outcome = refused
        if isinstance(outcome, Unsupported):
            assert outcome.capability == "transactions.api"
        else:
            with outcome as tx:
                assert ISOLATION_LEVELS.index(tx.isolation) >= ISOLATION_LEVELS.index(level)

    def test_outside_reader_waits_for_commit(self, client: SyncClient) -> None:
        """A read outside an open transaction never sees its uncommitted create (https://hl7.org/fhir/R4/http.html#trules)."""
        backend = client.backend
        assert isinstance(backend, TransactionStorage)
        context = client.context
        seen: list[int] = []

        async def writer() -> None:
            async with backend.transaction(context) as tx:
                await tx.create(context, patient("A"))
                await asyncio.sleep(0.01)
                await tx.create(context, patient("B"))

        async def reader() -> None:
            await asyncio.sleep(0)
            seen.append(await backend.count(context))

        client.gather(writer(), reader())

        assert seen in ([0], [2])
