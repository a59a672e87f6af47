"""Concurrency guarantees, exercised with real concurrent coroutines on the backend
(FHIR R4 http.html#concurrency, http.html#trules)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from helios_conformance import (
    ConditionalStorage,
    PatchStorage,
    ResourceStorage,
    SyncClient,
    TransactionStorage,
    VersionConflict,
)

WRITERS = 8
SYSTEM = "urn:test"


def patient(family: str, mrn: str = "mrn-1", resource_id: str | None = None) -> dict:
    body: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [{"system": SYSTEM, "value": mrn}],
        "name": [{"family": family}],
    }
    if resource_id is not None:
        body["id"] = resource_id
    return body


def storage(client: SyncClient, protocol: type) -> Any:
    backend = client.backend
    assert isinstance(backend, protocol), f"the backend does not implement {protocol.__name__}"
    return backend


@pytest.mark.requires(
    "concurrency.conditional_create", "conditional.create", "crud.read", "search.param.token"
)
class TestConditionalCreate:
    def test_same_criteria_yield_one_resource(self, client: SyncClient) -> None:
        """Eight concurrent conditional creates with one criteria store exactly one resource (https://hl7.org/fhir/R4/http.html#ccreate)."""
        backend = storage(client, ConditionalStorage)
        criteria = [("identifier", f"{SYSTEM}|mrn-1")]

        results = client.gather(
            *(
                backend.conditional_create(client.context, patient(f"W{n}"), criteria)
                for n in range(WRITERS)
            )
        )

        assert all(not isinstance(result, BaseException) for result in results), results
        assert sorted(created for _, created in results) == [False] * (WRITERS - 1) + [True]
        assert len({stored.id for stored, _ in results}) == 1
        assert client.count("Patient") == 1

    def test_different_criteria_yield_one_resource_each(self, client: SyncClient) -> None:
        """Concurrent conditional creates with distinct criteria each create their own resource (https://hl7.org/fhir/R4/http.html#ccreate)."""
        backend = storage(client, ConditionalStorage)

        results = client.gather(
            *(
                backend.conditional_create(
                    client.context, patient("W", f"mrn-{n}"), [("identifier", f"{SYSTEM}|mrn-{n}")]
                )
                for n in range(WRITERS)
            )
        )

        assert [created for _, created in results] == [True] * WRITERS
        assert client.count("Patient") == WRITERS

    @pytest.mark.requires("conditional.update", "crud.update")
    def test_concurrent_conditional_updates_create_once(self, client: SyncClient) -> None:
        """Concurrent conditional updates with no match create one resource and update it in turn (https://hl7.org/fhir/R4/http.html#cond-update)."""
        backend = storage(client, ConditionalStorage)
        criteria = [("identifier", f"{SYSTEM}|mrn-1")]

        results = client.gather(
            *(
                backend.conditional_update(client.context, patient(f"W{n}"), criteria)
                for n in range(WRITERS)
            )
        )

        assert sum(created for _, created in results) == 1
        assert sorted(int(stored.version_id) for stored, _ in results) == list(
            range(1, WRITERS + 1)
        )
        assert client.count("Patient") == 1


@pytest.mark.requires(
    "concurrency.optimistic_locking", "versioning.if_match", "crud.create", "crud.update"
)
class TestOptimisticLocking:
    def test_one_update_wins(self, client: SyncClient) -> None:
        """Of eight concurrent updates expecting version 1, one succeeds and seven conflict (https://hl7.org/fhir/R4/http.html#concurrency)."""
        backend = storage(client, ResourceStorage)
        existing = client.create(patient("Start"))

        results = client.gather(
            *(
                backend.update(
                    client.context,
                    "Patient",
                    existing.id,
                    patient(f"W{n}", resource_id=existing.id),
                    expected_version="1",
                )
                for n in range(WRITERS)
            )
        )

        winners = [r for r in results if not isinstance(r, BaseException)]
        conflicts = [r for r in results if isinstance(r, VersionConflict)]
        assert ([w.version_id for w in winners], len(conflicts)) == (["2"], WRITERS - 1)

    @pytest.mark.requires("crud.read")
    def test_the_winner_is_the_current_version(self, client: SyncClient) -> None:
        """After concurrent updates expecting version 1, the current version is the winner's body (https://hl7.org/fhir/R4/http.html#concurrency)."""
        backend = storage(client, ResourceStorage)
        existing = client.create(patient("Start"))

        results = client.gather(
            *(
                backend.update(
                    client.context,
                    "Patient",
                    existing.id,
                    patient(f"W{n}", resource_id=existing.id),
                    expected_version="1",
                )
                for n in range(WRITERS)
            )
        )

        (winner,) = [r for r in results if not isinstance(r, BaseException)]
        current = client.read("Patient", existing.id)
        assert (current.version_id, current.resource["name"]) == ("2", winner.resource["name"])

    @pytest.mark.requires("patch.json_patch")
    def test_one_patch_wins(self, client: SyncClient) -> None:
        """Of eight concurrent patches expecting version 1, one succeeds and seven conflict (https://hl7.org/fhir/R4/http.html#concurrency)."""
        backend = storage(client, PatchStorage)
        existing = client.create(patient("Start"))

        results = client.gather(
            *(
                backend.patch(
                    client.context,
                    "Patient",
                    existing.id,
                    [{"op": "replace", "path": "/name/0/family", "value": f"W{n}"}],
                    expected_version="1",
                )
                for n in range(WRITERS)
            )
        )

        conflicts = [r for r in results if isinstance(r, VersionConflict)]
        assert (len(conflicts), len(results) - len(conflicts)) == (WRITERS - 1, 1)

    @pytest.mark.requires("crud.delete")
    def test_one_delete_wins(self, client: SyncClient) -> None:
        """Of eight concurrent deletes expecting version 1, one writes the deletion and seven conflict (https://hl7.org/fhir/R4/http.html#concurrency)."""
        backend = storage(client, ResourceStorage)
        existing = client.create(patient("Start"))

        results = client.gather(
            *(
                backend.delete(client.context, "Patient", existing.id, expected_version="1")
                for _ in range(WRITERS)
            )
        )

        conflicts = [r for r in results if isinstance(r, VersionConflict)]
        deletions = [r for r in results if not isinstance(r, BaseException) and r is not None]
        assert ([d.version_id for d in deletions], len(conflicts)) == (["2"], WRITERS - 1)


@pytest.mark.requires(
    "concurrency.transactions", "transactions.api", "crud.create", "crud.read", "crud.update"
)
class TestTransactions:
    def test_read_modify_write_transactions_do_not_lose_updates(self, client: SyncClient) -> None:
        """Eight concurrent transactions that read a counter, yield, and write it plus one end at eight (https://hl7.org/fhir/R4/http.html#trules)."""
        backend = storage(client, TransactionStorage)
        context = client.context
        counter = client.create({**patient("Counter"), "multipleBirthInteger": 0})

        async def increment() -> None:
            async with backend.transaction(context) as tx:
                current = await tx.read(context, "Patient", counter.id)
                await asyncio.sleep(0.001)
                body = {
                    **current.resource,
                    "multipleBirthInteger": current.resource["multipleBirthInteger"] + 1,
                }
                await tx.update(context, "Patient", counter.id, body)

        results = client.gather(*(increment() for _ in range(WRITERS)))

        assert [r for r in results if isinstance(r, BaseException)] == []
        final = client.read("Patient", counter.id)
        assert (final.resource["multipleBirthInteger"], final.version_id) == (
            WRITERS,
            str(WRITERS + 1),
        )

    def test_readers_never_see_half_a_transaction(self, client: SyncClient) -> None:
        """A reader running beside a two-create transaction sees zero or two resources, never one (https://hl7.org/fhir/R4/http.html#trules)."""
        backend = storage(client, TransactionStorage)
        context = client.context
        seen: list[int] = []

        async def writer() -> None:
            async with backend.transaction(context) as tx:
                await tx.create(context, patient("A", "a"))
                await asyncio.sleep(0.005)
                await tx.create(context, patient("B", "b"))

        async def reader() -> None:
            for _ in range(5):
                seen.append(await backend.count(context, "Patient"))
                await asyncio.sleep(0.002)

        client.gather(writer(), reader())

        assert set(seen) <= {0, 2}, seen

    def test_readers_never_see_a_rolled_back_write(self, client: SyncClient) -> None:
        """A reader beside a transaction that fails after a create never sees that create (https://hl7.org/fhir/R4/http.html#trules)."""
        backend = storage(client, TransactionStorage)
        context = client.context
        seen: list[int] = []

        async def writer() -> None:
            async with backend.transaction(context) as tx:
                await tx.create(context, patient("A"))
                await asyncio.sleep(0.005)
                raise RuntimeError("abort")

        async def reader() -> None:
            for _ in range(5):
                seen.append(await backend.count(context, "Patient"))
                await asyncio.sleep(0.002)

        results = client.gather(writer(), reader())

        assert isinstance(results[0], RuntimeError)
        assert seen == [0] * 5

    @pytest.mark.requires("transactions.bundle", "search.param.token", "search.param.reference")
    def test_concurrent_bundles_share_one_conditional_create(self, client: SyncClient) -> None:
        """Concurrent transaction Bundles conditionally creating one Patient make one Patient referenced by every Observation (https://hl7.org/fhir/R4/http.html#trules)."""
        backend = client.backend
        assert hasattr(backend, "process_bundle")
        urn = "urn:uuid:0c5a8a4e-9c5c-4a1b-8a43-8e3f1a1a0030"

        def bundle(n: int) -> dict:
            return {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {
                        "fullUrl": urn,
                        "resource": patient("Shared"),
                        "request": {
                            "method": "POST",
                            "url": "Patient",
                            "ifNoneExist": f"identifier={SYSTEM}|mrn-1",
                        },
                    },
                    {
                        "resource": {
                            "resourceType": "Observation",
                            "status": "final",
                            "code": {"text": f"reading {n}"},
                            "subject": {"reference": urn},
                        },
                        "request": {"method": "POST", "url": "Observation"},
                    },
                ],
            }

        results = client.gather(
            *(backend.process_bundle(client.context, bundle(n)) for n in range(WRITERS))
        )

        assert [r for r in results if isinstance(r, BaseException)] == []
        (shared,) = client.search("Patient", f"identifier={SYSTEM}|mrn-1").ids
        observations = client.search("Observation", f"subject=Patient/{shared}&_count=100")
        assert len(observations.ids) == WRITERS
        assert client.count("Patient") == 1

    @pytest.mark.requires("transactions.bundle")
    def test_concurrent_bundles_do_not_interleave(self, client: SyncClient) -> None:
        """Two transactions each writing both of two resources leave both with the same writer's value (https://hl7.org/fhir/R4/http.html#trules)."""
        backend = client.backend
        assert hasattr(backend, "process_bundle")
        first = client.create(patient("Start", "a"))
        second = client.create(patient("Start", "b"))

        def bundle(writer: str) -> dict:
            return {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {
                        "resource": patient(writer, mrn, stored.id),
                        "request": {"method": "PUT", "url": f"Patient/{stored.id}"},
                    }
                    for stored, mrn in ((first, "a"), (second, "b"))
                ],
            }

        results = client.gather(
            *(backend.process_bundle(client.context, bundle(f"W{n}")) for n in range(WRITERS))
        )

        assert [r for r in results if isinstance(r, BaseException)] == []
        a = client.read("Patient", first.id)
        b = client.read("Patient", second.id)
        assert a.resource["name"] == b.resource["name"]
        assert (a.version_id, b.version_id) == (str(WRITERS + 1), str(WRITERS + 1))


@pytest.mark.requires(
    "concurrency.version_sequence", "crud.create", "crud.update", "versioning.version_ids"
)
class TestVersionSequence:
    def test_concurrent_updates_take_consecutive_versions(self, client: SyncClient) -> None:
        """Eight concurrent updates without expected version get versions 2..9, each once (https://hl7.org/fhir/R4/http.html#versioning)."""
        backend = storage(client, ResourceStorage)
        existing = client.create(patient("Start"))

        results = client.gather(
            *(
                backend.update(
                    client.context,
                    "Patient",
                    existing.id,
                    patient(f"W{n}", resource_id=existing.id),
                )
                for n in range(WRITERS)
            )
        )

        assert sorted(int(r.version_id) for r in results) == list(range(2, WRITERS + 2))

    @pytest.mark.requires("history.instance")
    def test_history_has_no_gap_or_repeat(self, client: SyncClient) -> None:
        """After concurrent updates the instance history lists versions 9..1, newest first, without gaps (https://hl7.org/fhir/R4/http.html#history)."""
        backend = storage(client, ResourceStorage)
        existing = client.create(patient("Start"))

        client.gather(
            *(
                backend.update(
                    client.context,
                    "Patient",
                    existing.id,
                    patient(f"W{n}", resource_id=existing.id),
                )
                for n in range(WRITERS)
            )
        )

        history = client.history_instance("Patient", existing.id, count=100)
        assert [e.version_id for e in history.entries] == [
            str(v) for v in range(WRITERS + 1, 0, -1)
        ]

    @pytest.mark.requires("transactions.api")
    def test_versions_interleaved_with_transactions_stay_consecutive(
        self, client: SyncClient
    ) -> None:
        """Plain updates racing transactional updates of one resource still take versions 2..9 once each (https://hl7.org/fhir/R4/http.html#versioning)."""
        backend = storage(client, TransactionStorage)
        existing = client.create(patient("Start"))
        context = client.context

        async def in_transaction(n: int) -> str:
            async with backend.transaction(context) as tx:
                await asyncio.sleep(0)
                stored = await tx.update(
                    context, "Patient", existing.id, patient(f"T{n}", resource_id=existing.id)
                )
                return stored.version_id

        async def plain(n: int) -> str:
            stored = await backend.update(
                context, "Patient", existing.id, patient(f"P{n}", resource_id=existing.id)
            )
            return stored.version_id

        results = client.gather(*(in_transaction(n) if n % 2 else plain(n) for n in range(WRITERS)))

        assert sorted(int(v) for v in results) == list(range(2, WRITERS + 2))
