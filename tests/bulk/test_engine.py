"""Unit tests of the bulk engine and the in-memory bulk primitives."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import helios_conformance.bulk as bulk_package
from helios_conformance import (
    BulkJobRecord,
    BulkJobStore,
    ExportScan,
    ExportStorage,
    InvalidRequest,
    InvalidSearch,
    NotFound,
    PatientCompartment,
    TenantContext,
    TooManyRequests,
    Unsupported,
    VersionConflict,
)
from helios_conformance.bulk import (
    SUBSETTED_TAG,
    ExportLevel,
    ExportRequest,
    ExportService,
    FilesystemOutputStore,
    subset,
)
from helios_conformance.bulk._export import _member_is_current
from helios_conformance.testing import MemoryBackend

CONTEXT = TenantContext.of("acme")
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def run(coroutine):  # type: ignore[no-untyped-def]
    return asyncio.run(coroutine)


def test_public_names_are_sorted() -> None:
    exported = bulk_package.__all__

    def kind(name: str) -> tuple[int, str]:
        if name.isupper():
            return (0, name)
        return (1, name) if name[0].isupper() else (2, name)

    assert list(exported) == sorted(exported, key=kind)
    assert all(hasattr(bulk_package, name) for name in exported)


class TestExportRequest:
    def test_parses_lists_and_repeats(self) -> None:
        request = ExportRequest.from_query(
            "system",
            "_type=Patient,Observation&_type=Group&_typeFilter=Patient%3Fgender%3Dmale"
            "&_since=2024-01-01T00:00:00Z&_elements=id,Patient.name",
        )
        assert request.types == ("Patient", "Observation", "Group")
        assert request.type_filters == ("Patient?gender=male",)
        assert request.since == T0
        assert request.elements == ("id", "Patient.name")

    def test_round_trips_through_json(self) -> None:
        request = ExportRequest.from_query(
            ExportLevel.GROUP, "_type=Patient&patient=Patient/a", group_id="g1"
        )
        assert ExportRequest.from_json(json.loads(json.dumps(request.to_json()))) == request

    def test_url_is_canonical(self) -> None:
        request = ExportRequest.from_query("patient", "_type=Patient&_since=2024-01-01T00:00:00Z")
        assert request.url("https://x/fhir/") == (
            "https://x/fhir/Patient/$export?_type=Patient&_since=2024-01-01T00:00:00.000000%2B00:00"
        )

    @pytest.mark.parametrize(
        ("query", "message"),
        [
            ("_type=", "_type"),
            ("_type=Patient,,Group", "_type"),
            ("_since=a&_since=b", "_since"),
            ("_count=3", "_count"),
        ],
    )
    def test_refuses_malformed_queries(self, query: str, message: str) -> None:
        with pytest.raises(InvalidRequest, match=message):
            ExportRequest.from_query("system", query).validate()

    def test_group_level_needs_a_group_id(self) -> None:
        with pytest.raises(InvalidRequest, match="group id"):
            ExportRequest.from_query("group").validate()


class TestSubset:
    def test_keeps_mandatory_and_listed_elements_and_tags(self) -> None:
        resource = {
            "resourceType": "Patient",
            "id": "a",
            "meta": {"versionId": "1", "tag": [{"code": "x"}]},
            "gender": "male",
            "name": [{"family": "Lee"}],
        }
        kept = subset(resource, frozenset({"gender"}))
        assert kept == {
            "resourceType": "Patient",
            "id": "a",
            "meta": {"versionId": "1", "tag": [{"code": "x"}, SUBSETTED_TAG]},
            "gender": "male",
        }
        assert resource["meta"]["tag"] == [{"code": "x"}]

    def test_does_not_tag_twice(self) -> None:
        once = subset({"resourceType": "Patient", "id": "a"}, frozenset())
        assert subset(once, frozenset())["meta"]["tag"] == [SUBSETTED_TAG]


class TestMembership:
    @pytest.mark.parametrize(
        ("member", "current"),
        [
            ({}, True),
            ({"inactive": True}, False),
            ({"period": {"start": "2023"}}, True),
            ({"period": {"start": "2024-01-01T00:00:01Z"}}, False),
            ({"period": {"end": "2024-01-01"}}, True),  # the end day includes T0
            ({"period": {"end": "2023-12-31"}}, False),
            ({"period": {"start": "garbage"}}, False),
        ],
    )
    def test_member_period_and_inactive(self, member: dict[str, object], current: bool) -> None:
        assert _member_is_current(member, T0) is current


class TestFilesystemOutputStore:
    def test_append_truncate_read(self, tmp_path: Path) -> None:
        store = FilesystemOutputStore(tmp_path)
        assert run(store.append("t/a.ndjson", b"one\n")) == 4
        assert run(store.append("t/a.ndjson", b"two\n")) == 8
        run(store.truncate("t/a.ndjson", 4))
        assert run(store.read("t/a.ndjson")) == b"one\n"
        assert store.key_of(store.url("t/a.ndjson")) == "t/a.ndjson"

    @pytest.mark.parametrize("key", ["../escape", "/abs", "t/../../x"])
    def test_refuses_keys_outside_the_root(self, tmp_path: Path, key: str) -> None:
        with pytest.raises(InvalidRequest):
            run(FilesystemOutputStore(tmp_path).append(key, b""))

    def test_refuses_foreign_urls(self, tmp_path: Path) -> None:
        store = FilesystemOutputStore(tmp_path / "a")
        with pytest.raises(InvalidRequest):
            store.key_of((tmp_path / "b" / "x").as_uri())
        with pytest.raises(InvalidRequest):
            store.key_of("https://example.org/x")

    def test_read_of_a_missing_file_is_not_found(self, tmp_path: Path) -> None:
        with pytest.raises(NotFound):
            run(FilesystemOutputStore(tmp_path).read("nope"))


def _memory_with_patients(*ids: str) -> MemoryBackend:
    backend = MemoryBackend()

    async def seed() -> None:
        for ident in ids:
            await backend.create_or_update(
                CONTEXT, "Patient", ident, {"resourceType": "Patient", "id": ident}
            )

    run(seed())
    return backend


class TestMemoryScan:
    def test_is_a_protocol_implementation(self) -> None:
        backend = MemoryBackend()
        assert isinstance(backend, ExportStorage)
        assert isinstance(backend, BulkJobStore)

    def test_keyset_pages_in_id_order(self) -> None:
        backend = _memory_with_patients("c", "a", "b")
        now = datetime.now(UTC)
        first = run(backend.scan_export(CONTEXT, ExportScan("Patient", now, limit=2)))
        second = run(
            backend.scan_export(
                CONTEXT, ExportScan("Patient", now, cursor=first.next_cursor, limit=2)
            )
        )
        assert [row.resource_id for row in first.rows] == ["a", "b"]
        assert [row.resource_id for row in second.rows] == ["c"]
        assert second.next_cursor is None

    def test_text_is_the_stored_json(self) -> None:
        backend = _memory_with_patients("a")
        [row] = run(backend.scan_export(CONTEXT, ExportScan("Patient", datetime.now(UTC)))).rows
        stored = run(backend.read(CONTEXT, "Patient", "a"))
        assert json.loads(row.text) == stored.resource
        assert "\n" not in row.text

    def test_snapshot_before_the_first_version_is_empty(self) -> None:
        backend = _memory_with_patients("a")
        page = run(backend.scan_export(CONTEXT, ExportScan("Patient", T0)))
        assert page.rows == ()

    def test_limit_zero_validates_filters(self) -> None:
        backend = MemoryBackend()
        scan = ExportScan("Patient", T0, filters=((("nope", "1"),),), limit=0)
        with pytest.raises(InvalidSearch, match="nope"):
            run(backend.scan_export(CONTEXT, scan))

    def test_foreign_cursor_is_refused(self) -> None:
        with pytest.raises(InvalidRequest, match="cursor"):
            run(MemoryBackend().scan_export(CONTEXT, ExportScan("Patient", T0, cursor="a/b")))

    def test_empty_patient_set_matches_nothing(self) -> None:
        backend = _memory_with_patients("a")
        scan = ExportScan(
            "Patient", datetime.now(UTC), compartment=PatientCompartment(("link",), frozenset())
        )
        assert run(backend.scan_export(CONTEXT, scan)).rows == ()


class TestMemoryJobStore:
    def test_revisions_are_optimistic(self) -> None:
        backend = MemoryBackend()
        record = run(
            backend.insert_bulk_job(CONTEXT, BulkJobRecord("export", "j1", "accepted", "{}"))
        )
        saved = run(backend.save_bulk_job(CONTEXT, record, expected_revision=1))
        assert saved.revision == 2
        with pytest.raises(VersionConflict):
            run(backend.save_bulk_job(CONTEXT, record, expected_revision=1))

    def test_cap_counts_active_jobs_of_the_kind_only(self) -> None:
        backend = MemoryBackend()
        active = frozenset({"accepted"})
        run(backend.insert_bulk_job(CONTEXT, BulkJobRecord("export", "j1", "accepted", "{}")))
        run(backend.insert_bulk_job(CONTEXT, BulkJobRecord("export", "j2", "complete", "{}")))
        run(backend.insert_bulk_job(CONTEXT, BulkJobRecord("submission", "s1", "accepted", "{}")))
        with pytest.raises(TooManyRequests):
            run(
                backend.insert_bulk_job(
                    CONTEXT,
                    BulkJobRecord("export", "j3", "accepted", "{}"),
                    max_active=1,
                    active_statuses=active,
                )
            )

    def test_duplicate_ids_are_refused(self) -> None:
        backend = MemoryBackend()
        run(backend.insert_bulk_job(CONTEXT, BulkJobRecord("export", "j1", "accepted", "{}")))
        with pytest.raises(InvalidRequest, match="already exists"):
            run(backend.insert_bulk_job(CONTEXT, BulkJobRecord("export", "j1", "accepted", "{}")))

    def test_jobs_are_per_tenant(self) -> None:
        backend = MemoryBackend()
        run(backend.insert_bulk_job(CONTEXT, BulkJobRecord("export", "j1", "accepted", "{}")))
        with pytest.raises(NotFound):
            run(backend.load_bulk_job(TenantContext.of("other"), "export", "j1"))


class TestExportService:
    def test_refuses_a_backend_without_the_primitives(self, tmp_path: Path) -> None:
        service = ExportService(object(), FilesystemOutputStore(tmp_path))
        with pytest.raises(Unsupported) as raised:
            run(service.kick_off(CONTEXT, ExportRequest.from_query("group", group_id="g")))
        assert raised.value.capability == "bulk.export.group"

    def test_clock_sets_transaction_time_and_expiry(self, tmp_path: Path) -> None:
        backend = _memory_with_patients("a")
        start = datetime.now(UTC)
        moments = iter([start, start + timedelta(seconds=5)])
        service = ExportService(
            backend, FilesystemOutputStore(tmp_path), clock=lambda: next(moments)
        )

        async def scenario() -> tuple[datetime, datetime | None]:
            job = await service.kick_off(CONTEXT, ExportRequest())
            done = await service.run(CONTEXT, job.id)
            return job.transaction_time, done.expires

        transaction_time, expires = run(scenario())
        assert expires == transaction_time + timedelta(seconds=5) + timedelta(hours=24)
