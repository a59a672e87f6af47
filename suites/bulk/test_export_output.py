"""Export output: NDJSON parts, splitting, and the manifest (Bulk Data IG export.html#response---complete-status)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from helios_conformance import InvalidRequest, SyncClient, parse_instant
from helios_conformance.bulk import BulkSettings, SyncBulk

MANIFEST = "https://hl7.org/fhir/uv/bulkdata/STU2/export.html#response---complete-status"
FILES = "https://hl7.org/fhir/uv/bulkdata/STU2/export.html#file-request"

pytestmark = pytest.mark.requires("bulk.export.system", "bulk.export.type", "crud.update_as_create")


def seed_patients(client: SyncClient, count: int) -> list[str]:
    ids = [f"p{n:02d}" for n in range(1, count + 1)]
    for ident in ids:
        client.create_or_update("Patient", ident, {"resourceType": "Patient", "id": ident})
    return ids


@pytest.fixture
def bulk(client: SyncClient, tmp_path: Any) -> SyncBulk:
    return client.bulk(tmp_path / "exports")


class TestParts:
    def test_parts_are_split_by_resource_count(self, client: SyncClient, tmp_path: Any) -> None:
        """5 patients with at most 2 per file give three parts of 2, 2 and 1 (MANIFEST)."""
        seed_patients(client, 5)
        bulk = client.bulk(tmp_path / "exports", settings=BulkSettings(max_part_resources=2))

        job = bulk.export("system")

        output = bulk.manifest(job.id)["output"]
        assert [(entry["type"], entry["count"]) for entry in output] == [
            ("Patient", 2),
            ("Patient", 2),
            ("Patient", 1),
        ]
        assert len({entry["url"] for entry in output}) == 3

    def test_parts_are_split_by_size(self, client: SyncClient, tmp_path: Any) -> None:
        """A byte limit smaller than two resources puts every resource in its own part (MANIFEST)."""
        seed_patients(client, 3)
        bulk = client.bulk(tmp_path / "exports", settings=BulkSettings(max_part_bytes=150))

        job = bulk.export("system")

        assert [entry["count"] for entry in bulk.manifest(job.id)["output"]] == [1, 1, 1]

    def test_split_parts_hold_every_resource_once_in_id_order(
        self, client: SyncClient, tmp_path: Any
    ) -> None:
        """Reading the parts in manifest order gives p01..p05 once each (FILES)."""
        ids = seed_patients(client, 5)
        bulk = client.bulk(
            tmp_path / "exports", settings=BulkSettings(max_part_resources=2, page_size=3)
        )

        job = bulk.export("system")

        assert [resource["id"] for resource in bulk.exported(job.id)] == ids

    def test_counts_match_the_lines_of_each_file(self, client: SyncClient, tmp_path: Any) -> None:
        """Each output entry's count is the number of lines in its file (MANIFEST)."""
        seed_patients(client, 4)
        bulk = client.bulk(tmp_path / "exports", settings=BulkSettings(max_part_resources=3))

        job = bulk.export("system")

        for entry in bulk.manifest(job.id)["output"]:
            assert len(bulk.output_lines(job.id, entry["url"])) == entry["count"]

    def test_each_line_is_one_resource_and_ends_with_a_newline(
        self, client: SyncClient, bulk: SyncBulk
    ) -> None:
        """NDJSON: one JSON object per line, newline-terminated, no blank lines (FILES)."""
        seed_patients(client, 3)

        job = bulk.export("system")

        [entry] = bulk.manifest(job.id)["output"]
        data = bulk.read_output(job.id, entry["url"]).decode()
        assert data.endswith("\n")
        lines = data.split("\n")[:-1]
        assert [json.loads(line)["resourceType"] for line in lines] == ["Patient"] * 3


class TestManifest:
    def test_manifest_has_exactly_the_required_fields(
        self, client: SyncClient, bulk: SyncBulk
    ) -> None:
        """transactionTime, request, requiresAccessToken, output and error, nothing else (MANIFEST)."""
        seed_patients(client, 1)

        job = bulk.export("system")

        manifest = bulk.manifest(job.id)
        assert set(manifest) == {
            "transactionTime",
            "request",
            "requiresAccessToken",
            "output",
            "error",
        }
        assert set(manifest["output"][0]) == {"type", "url", "count"}
        assert manifest["error"] == []

    def test_transaction_time_is_the_kick_off_instant(
        self, client: SyncClient, bulk: SyncBulk
    ) -> None:
        """transactionTime is the job's instant and not before any exported resource's lastUpdated (MANIFEST)."""
        seed_patients(client, 2)

        job = bulk.export("system")

        moment = parse_instant(bulk.manifest(job.id)["transactionTime"])
        assert moment == job.transaction_time
        assert all(
            parse_instant(resource["meta"]["lastUpdated"]) <= moment
            for resource in bulk.exported(job.id)
        )

    def test_request_is_the_kick_off_url(self, client: SyncClient, tmp_path: Any) -> None:
        """request echoes the kick-off URL with its parameters (MANIFEST)."""
        bulk = client.bulk(
            tmp_path / "exports", settings=BulkSettings(base_url="https://fhir.example/r4")
        )

        job = bulk.export("system", "_type=Patient,Observation")

        assert (
            bulk.manifest(job.id)["request"]
            == "https://fhir.example/r4/$export?_type=Patient,Observation"
        )

    @pytest.mark.requires("bulk.export.patient")
    def test_request_names_the_level(self, client: SyncClient, bulk: SyncBulk) -> None:
        """A patient-level request is reported as [base]/Patient/$export (MANIFEST)."""
        job = bulk.export("patient")

        assert bulk.manifest(job.id)["request"] == "https://example.org/fhir/Patient/$export"

    @pytest.mark.parametrize("required", [True, False])
    def test_requires_access_token_reflects_the_server(
        self, client: SyncClient, tmp_path: Any, required: bool
    ) -> None:
        """requiresAccessToken says whether the files need the bearer token (MANIFEST)."""
        bulk = client.bulk(
            tmp_path / "exports", settings=BulkSettings(requires_access_token=required)
        )

        job = bulk.export("system")

        assert bulk.manifest(job.id)["requiresAccessToken"] is required

    def test_files_of_another_job_cannot_be_read_through_this_one(
        self, client: SyncClient, bulk: SyncBulk
    ) -> None:
        """A file URL is served only for the job whose manifest lists it (FILES)."""
        seed_patients(client, 1)
        first = bulk.export("system")
        second = bulk.export("system")
        [entry] = bulk.manifest(first.id)["output"]

        with pytest.raises(InvalidRequest):
            bulk.read_output(second.id, entry["url"])
