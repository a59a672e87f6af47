"""The in-memory backend's search: tenancy, liveness, result control, custom parameters."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

import helios_conformance.search as search_api
from helios_conformance import (
    AccessDenied,
    InvalidResource,
    InvalidSearch,
    Operation,
    SearchStorage,
    TenantContext,
    TenantPermissions,
    Unsupported,
)
from helios_conformance.testing import (
    MEMORY_ALL_CAPABILITIES,
    MEMORY_SEARCH_CAPABILITIES,
    MemoryBackend,
)

T = TypeVar("T")
A = TenantContext.of("acme")
B = TenantContext.of("globex")


@pytest.fixture
def run() -> Callable[[Coroutine[Any, Any, T]], T]:
    return asyncio.run


@pytest.fixture
def backend() -> MemoryBackend:
    return MemoryBackend()


def put(
    run: Any, backend: MemoryBackend, context: TenantContext, *resources: dict[str, Any]
) -> None:
    for resource in resources:
        run(backend.create_or_update(context, resource["resourceType"], resource["id"], resource))


def patient(resource_id: str, family: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": resource_id, "name": [{"family": family}]}


def test_public_names_are_sorted() -> None:
    def kind(name: str) -> tuple[int, str]:
        if name.isupper():
            return (0, name)
        return (1, name) if name[0].isupper() else (2, name)

    assert search_api.__all__ == sorted(search_api.__all__, key=kind)
    assert all(hasattr(search_api, name) for name in search_api.__all__)


def test_memory_backend_is_a_search_storage(backend: MemoryBackend) -> None:
    assert isinstance(backend, SearchStorage)
    assert backend.capabilities == MEMORY_ALL_CAPABILITIES
    assert MEMORY_SEARCH_CAPABILITIES.supported <= backend.capabilities.supported


def test_search_is_scoped_to_tenant_type_and_live_resources(
    run: Any, backend: MemoryBackend
) -> None:
    put(run, backend, A, patient("b", "Lee"), patient("a", "Lee"), patient("gone", "Lee"))
    put(run, backend, B, patient("other", "Lee"))
    run(backend.delete(A, "Patient", "gone"))
    result = run(backend.search(A, "Patient", [("family", "lee")]))
    assert result.ids == ("a", "b")  # documented default order: ascending id
    assert run(backend.search(A, "Practitioner", [])).ids == ()


def test_updates_reindex_the_current_version(run: Any, backend: MemoryBackend) -> None:
    put(run, backend, A, patient("p", "Lee"))
    put(run, backend, A, patient("p", "Kim"))
    assert run(backend.search(A, "Patient", [("family", "lee")])).ids == ()
    assert run(backend.search(A, "Patient", [("family", "kim")])).ids == ("p",)


def test_result_control(run: Any, backend: MemoryBackend) -> None:
    put(run, backend, A, *(patient(f"p{i}", "Lee") for i in range(5)))
    page = run(backend.search(A, "Patient", [("family", "lee"), ("_count", "2")]))
    assert page.ids == ("p0", "p1")
    assert page.total is None
    accurate = run(backend.search(A, "Patient", [("_count", "2"), ("_total", "accurate")]))
    assert accurate.total == 5
    assert len(accurate.entries) == 2
    counted = run(backend.search(A, "Patient", [("_summary", "count")]))
    assert counted.total == 5
    assert counted.entries == ()


def test_strict_and_lenient_handling(run: Any, backend: MemoryBackend) -> None:
    put(run, backend, A, patient("p", "Lee"))
    with pytest.raises(InvalidSearch) as caught:
        run(backend.search(A, "Patient", [("colour", "red")]))
    assert caught.value.parameter == "colour"
    lenient = run(backend.search(A, "Patient", [("colour", "red")], strict=False))
    assert lenient.ids == ("p",)
    assert lenient.ignored == ("colour",)


def test_unsupported_features_are_refused(run: Any, backend: MemoryBackend) -> None:
    for resource_type, pairs, capability in (
        ("Observation", [("code:in", "http://example.org/vs")], "search.modifier.in"),
        ("Account", [("_summary", "true")], "search.summary"),
    ):
        put(run, backend, A, {"resourceType": "Account", "id": "a", "status": "active"})
        with pytest.raises(Unsupported) as caught:
            run(backend.search(A, resource_type, pairs))
        assert caught.value.capability == capability


def test_composition_is_answered(run: Any, backend: MemoryBackend) -> None:
    put(run, backend, A, patient("p", "Lee"))
    for pairs in (
        [("_sort", "family")],
        [("_include", "Patient:organization")],
        [("general-practitioner:Practitioner.name", "x")],
    ):
        run(backend.search(A, "Patient", pairs))


def test_search_needs_the_search_permission(run: Any, backend: MemoryBackend) -> None:
    read_only_without_search = TenantContext.of(
        "acme", TenantPermissions.builder().allow(Operation.READ).build()
    )
    with pytest.raises(AccessDenied):
        run(backend.search(read_only_without_search, "Patient", []))


NICKNAME = {
    "resourceType": "SearchParameter",
    "id": "nickname",
    "url": "http://example.org/SearchParameter/patient-nickname",
    "name": "nickname",
    "status": "active",
    "description": "A patient's nickname",
    "code": "nickname",
    "base": ["Patient"],
    "type": "string",
    "expression": "Patient.name.where(use='nickname').given",
}


def nicknamed(resource_id: str, nickname: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": resource_id,
        "name": [{"family": "Lee"}, {"use": "nickname", "given": [nickname]}],
    }


def test_custom_parameter_applies_to_later_writes_and_reindex(
    run: Any, backend: MemoryBackend
) -> None:
    put(run, backend, A, nicknamed("before", "Bud"))
    put(run, backend, A, NICKNAME)
    put(run, backend, A, nicknamed("after", "Buddy"))
    assert run(backend.search(A, "Patient", [("nickname", "bud")])).ids == ("after",)
    assert run(backend.reindex(A, "Patient")) == 2
    assert run(backend.search(A, "Patient", [("nickname", "bud")])).ids == ("after", "before")
    # Another tenant does not see the parameter.
    with pytest.raises(InvalidSearch):
        run(backend.search(B, "Patient", [("nickname", "bud")]))
    run(backend.delete(A, "SearchParameter", "nickname"))
    with pytest.raises(InvalidSearch):
        run(backend.search(A, "Patient", [("nickname", "bud")]))


def test_invalid_custom_parameter_is_not_stored(run: Any, backend: MemoryBackend) -> None:
    broken = {**NICKNAME, "expression": "Patient.name.where("}
    with pytest.raises(InvalidResource, match="cannot parse"):
        put(run, backend, A, broken)
    assert not run(backend.exists(A, "SearchParameter", "nickname"))


def test_ap_near_the_ends_of_the_calendar_does_not_overflow() -> None:
    """ap0001 / ap9999 widen past the calendar: that end is open, not an OverflowError."""
    from helios_conformance.search import index_resource, matches, parse_query

    rows = index_resource({"resourceType": "Patient", "id": "p", "birthDate": "0001-06-01"})
    assert matches(rows, parse_query("Patient", [("birthdate", "ap0001")]))
    late = index_resource({"resourceType": "Patient", "id": "q", "birthDate": "9999-06-01"})
    assert matches(late, parse_query("Patient", [("birthdate", "ap9999")]))
