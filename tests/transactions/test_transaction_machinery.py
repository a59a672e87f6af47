"""The transaction gate, criteria checks, Bundle parsing and in-memory rollback."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from helios_conformance import (
    InvalidRequest,
    InvalidSearch,
    SearchStorage,
    TenantContext,
    Transaction,
    TransactionStorage,
)
from helios_conformance.testing import MemoryBackend
from helios_conformance.transactions import (
    TransactionGate,
    check_criteria,
    check_isolation,
    process_bundle,
    status_line,
)

CONTEXT = TenantContext.of("unit")


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_memory_backend_implements_the_protocols() -> None:
    backend = MemoryBackend()
    assert isinstance(backend, TransactionStorage)

    async def check() -> None:
        async with backend.transaction(CONTEXT) as tx:
            assert isinstance(tx, Transaction)
            assert isinstance(tx, SearchStorage)

    run(check())


def test_check_isolation() -> None:
    assert check_isolation("read_committed") == "read_committed"
    with pytest.raises(InvalidRequest, match="snapshot"):
        check_isolation("snapshot")


def test_check_criteria() -> None:
    assert check_criteria("Patient", [("name", "x")]) == [("name", "x")]
    with pytest.raises(InvalidRequest):
        check_criteria("Patient", [])
    with pytest.raises(InvalidSearch) as caught:
        check_criteria("Patient", [("_sort", "name")])
    assert caught.value.parameter == "_sort"


def test_status_line() -> None:
    assert (status_line(201), status_line(299)) == ("201 Created", "299")


def test_gate_serialises_and_refuses_nesting() -> None:
    gate = TransactionGate()
    order: list[str] = []

    async def holder(name: str) -> None:
        await gate.enter()
        try:
            order.append(f"{name}+")
            await asyncio.sleep(0.001)
            order.append(f"{name}-")
        finally:
            gate.leave()

    async def nested() -> None:
        await gate.enter()
        try:
            with pytest.raises(InvalidRequest, match="nested"):
                await gate.enter()
            async with gate.exclusive():  # the holder passes straight through
                order.append("inner")
        finally:
            gate.leave()

    async def main() -> None:
        await asyncio.gather(holder("a"), holder("b"))
        await nested()

    run(main())
    assert order == ["a+", "a-", "b+", "b-", "inner"]
    assert not gate.locked


@pytest.mark.parametrize(
    ("bundle", "message"),
    [
        ({"resourceType": "Patient"}, "Bundle"),
        ({"resourceType": "Bundle", "type": "collection"}, "collection"),
        ({"resourceType": "Bundle", "type": "transaction", "entry": {}}, "list"),
    ],
)
def test_malformed_bundles(bundle: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        run(process_bundle(MemoryBackend(), CONTEXT, bundle))


@pytest.mark.parametrize(
    "request_",
    [
        {"method": "POST", "url": "Patient/1"},
        {"method": "PUT", "url": "Patient"},
        {"method": "GET", "url": "http://example.org/fhir/Patient/1"},
        {"method": "GET", "url": "Nonsense/1"},
        {"method": "GET", "url": "Patient/1/_history/x"},
        {"method": "DELETE", "url": "Patient/1", "ifMatch": 'W/"one"'},
    ],
)
def test_malformed_entries_fail_the_transaction(request_: dict[str, Any]) -> None:
    entry = {"request": request_, "resource": {"resourceType": "Patient"}}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
    with pytest.raises(InvalidRequest) as caught:
        run(process_bundle(MemoryBackend(), CONTEXT, bundle))
    described = " ".join([str(caught.value), *getattr(caught.value, "__notes__", [])])
    assert "entry 0" in described


def test_rollback_restores_custom_search_parameters() -> None:
    backend = MemoryBackend()
    parameter = {
        "resourceType": "SearchParameter",
        "url": "http://example.org/sp/nickname",
        "name": "nickname",
        "status": "active",
        "code": "nickname",
        "base": ["Patient"],
        "type": "string",
        "expression": "Patient.name.where(use='nickname').given",
        "description": "nickname",
    }

    async def main() -> None:
        tx = await backend.begin(CONTEXT)
        await tx.create(CONTEXT, parameter)
        await tx.create(
            CONTEXT,
            {"resourceType": "Patient", "name": [{"use": "nickname", "given": ["Bo"]}]},
        )
        found = await tx.search(CONTEXT, "Patient", [("nickname", "Bo")])
        assert len(found.entries) == 1
        await tx.rollback()
        with pytest.raises(InvalidSearch):
            await backend.search(CONTEXT, "Patient", [("nickname", "Bo")])

    run(main())


def test_rollback_of_a_recreate_keeps_the_deleted_chain() -> None:
    backend = MemoryBackend()

    async def main() -> None:
        created = await backend.create(CONTEXT, {"resourceType": "Patient"})
        await backend.delete(CONTEXT, "Patient", created.id)
        async with backend.transaction(CONTEXT) as tx:
            await tx.create_or_update(
                CONTEXT, "Patient", created.id, {"resourceType": "Patient", "id": created.id}
            )
            await tx.rollback()
        latest = await backend.vread(CONTEXT, "Patient", created.id, "2")
        assert latest.deleted
        assert not await backend.exists(CONTEXT, "Patient", created.id)

    run(main())
