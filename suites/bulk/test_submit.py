"""Bulk submit: the submission lifecycle, per-line outcomes and options.

The catalog's bulk.submit row (https://hl7.org/fhir/uv/bulkdata/STU2/index.html);
lines are FHIR NDJSON as the Bulk Data IG defines it (export.html#file-request).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from helios_conformance import InvalidRequest, NotFound, Operation, SyncClient, TenantPermissions
from helios_conformance.bulk import (
    BulkSettings,
    EntryOutcome,
    ManifestStatus,
    SubmissionOptions,
    SubmissionStatus,
    SyncBulk,
)

SUBMIT = "https://hl7.org/fhir/uv/bulkdata/STU2/index.html"

pytestmark = pytest.mark.requires("bulk.submit", "crud.read", "crud.update_as_create")


@pytest.fixture
def bulk(client: SyncClient, tmp_path: Any) -> SyncBulk:
    return client.bulk(tmp_path / "exports")


class Files:
    """Writes NDJSON files and manifests that point at them."""

    def __init__(self, root: Any) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def ndjson(self, name: str, *lines: dict[str, Any] | str) -> str:
        text = "".join(
            (line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines
        )
        path = self.root / name
        path.write_text(text, encoding="utf-8")
        return str(path.as_uri())

    def manifest(self, *files: tuple[str | None, str]) -> dict[str, Any]:
        return {
            "transactionTime": "2024-01-01T00:00:00Z",
            "output": [{"url": url, **({"type": kind} if kind else {})} for kind, url in files],
        }


@pytest.fixture
def files(tmp_path: Any) -> Files:
    return Files(tmp_path / "incoming")


def patient(ident: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": ident, **extra}


def submit(bulk: SyncBulk, files: Files, *lines: dict[str, Any] | str, **options: Any) -> str:
    """Submit one Patient file with ``lines`` and complete it; the submission id."""
    submission = bulk.create_submission(options=SubmissionOptions(**options))
    url = files.ndjson(f"{submission.id}.ndjson", *lines)
    bulk.add_manifest(submission.id, "manifest-1", files.manifest(("Patient", url)))
    bulk.complete_submission(submission.id)
    return submission.id


def outcomes(bulk: SyncBulk, submission_id: str) -> list[tuple[int, str]]:
    return [(entry.line, entry.outcome) for entry in bulk.submission_entries(submission_id)]


class TestLifecycle:
    def test_a_new_submission_is_in_progress(self, bulk: SyncBulk) -> None:
        """Creating a submission opens it with no manifests (SUBMIT)."""
        submission = bulk.create_submission(submitter="lab-42")

        assert (submission.status, submission.submitter, submission.manifests) == (
            SubmissionStatus.IN_PROGRESS,
            "lab-42",
            (),
        )

    def test_complete_writes_every_line(
        self, client: SyncClient, bulk: SyncBulk, files: Files
    ) -> None:
        """Completing a submission with three Patient lines stores all three (SUBMIT)."""
        submission_id = submit(bulk, files, patient("a"), patient("b"), patient("c"))

        assert bulk.submission(submission_id).status is SubmissionStatus.COMPLETE
        assert [client.exists("Patient", ident) for ident in "abc"] == [True, True, True]

    def test_lines_without_an_id_are_created_with_a_new_id(
        self, client: SyncClient, bulk: SyncBulk, files: Files
    ) -> None:
        """A line with no id is a create; its entry names the id the server assigned (SUBMIT)."""
        submission_id = submit(bulk, files, {"resourceType": "Patient", "active": True})

        [entry] = bulk.submission_entries(submission_id)
        assert entry.outcome == EntryOutcome.SUCCESS
        assert entry.resource_id is not None
        assert client.read("Patient", entry.resource_id).resource["active"] is True  # type: ignore[index]

    def test_several_manifests_are_processed_in_order(
        self, client: SyncClient, bulk: SyncBulk, files: Files
    ) -> None:
        """The second manifest's version of Patient/a wins: manifests apply in the order added (SUBMIT)."""
        submission = bulk.create_submission()
        first = files.ndjson("one.ndjson", patient("a", gender="male"))
        second = files.ndjson("two.ndjson", patient("a", gender="female"))
        bulk.add_manifest(submission.id, "m1", files.manifest(("Patient", first)))
        bulk.add_manifest(submission.id, "m2", files.manifest(("Patient", second)))

        bulk.complete_submission(submission.id)

        stored = client.read("Patient", "a")
        assert (stored.version_id, stored.resource["gender"]) == ("2", "female")  # type: ignore[index]

    def test_processing_can_stop_and_continue(
        self, client: SyncClient, files: Files, tmp_path: Any
    ) -> None:
        """max_lines=2 processes lines 1-2; the next call continues with line 3 (SUBMIT)."""
        bulk = client.bulk(tmp_path / "exports", settings=BulkSettings(submit_batch=1))
        submission = bulk.create_submission()
        url = files.ndjson("p.ndjson", patient("a"), patient("b"), patient("c"))
        bulk.add_manifest(submission.id, "m1", files.manifest(("Patient", url)))

        bulk.process_submission(submission.id, max_lines=2)
        midway = [client.exists("Patient", ident) for ident in "abc"]
        bulk.restart().process_submission(submission.id)

        assert midway == [True, True, False]
        assert [entry.line for entry in bulk.submission_entries(submission.id)] == [1, 2, 3]

    def test_a_complete_submission_takes_no_more_manifests(
        self, bulk: SyncBulk, files: Files
    ) -> None:
        """Adding a manifest to a complete submission is refused (SUBMIT)."""
        submission_id = submit(bulk, files, patient("a"))

        with pytest.raises(InvalidRequest, match="complete"):
            bulk.add_manifest(
                submission_id,
                "late",
                files.manifest(("Patient", files.ndjson("x.ndjson", patient("x")))),
            )

    def test_the_same_manifest_url_cannot_be_added_twice(
        self, bulk: SyncBulk, files: Files
    ) -> None:
        """A manifest URL is added once per submission (SUBMIT)."""
        submission = bulk.create_submission()
        manifest = files.manifest(("Patient", files.ndjson("a.ndjson", patient("a"))))
        bulk.add_manifest(submission.id, "m1", manifest)

        with pytest.raises(InvalidRequest, match="already"):
            bulk.add_manifest(submission.id, "m1", manifest)

    def test_a_manifest_without_output_is_refused(self, bulk: SyncBulk) -> None:
        """A manifest must list at least one output file (SUBMIT)."""
        submission = bulk.create_submission()

        with pytest.raises(InvalidRequest, match="output"):
            bulk.add_manifest(submission.id, "m1", {"output": []})

    def test_replacing_a_pending_manifest_applies_only_the_new_one(
        self, client: SyncClient, bulk: SyncBulk, files: Files
    ) -> None:
        """m1 (Patient/a) is replaced by m2 (Patient/b) before processing: only b is stored (SUBMIT)."""
        submission = bulk.create_submission()
        bulk.add_manifest(
            submission.id, "m1", files.manifest(("Patient", files.ndjson("a.ndjson", patient("a"))))
        )
        bulk.replace_manifest(
            submission.id,
            "m1",
            "m2",
            files.manifest(("Patient", files.ndjson("b.ndjson", patient("b")))),
        )

        done = bulk.complete_submission(submission.id)

        assert [(m.url, m.status, m.replaced_by) for m in done.manifests] == [
            ("m1", ManifestStatus.REPLACED, "m2"),
            ("m2", ManifestStatus.DONE, None),
        ]
        assert (client.exists("Patient", "a"), client.exists("Patient", "b")) == (False, True)

    def test_unknown_submissions_are_not_found(self, bulk: SyncBulk) -> None:
        """Asking for a submission id that does not exist is NotFound (SUBMIT)."""
        with pytest.raises(NotFound):
            bulk.submission("nope")

    def test_submissions_are_invisible_to_other_tenants(
        self, bulk: SyncBulk, new_client: Any
    ) -> None:
        """Another tenant cannot see this tenant's submission (SUBMIT)."""
        submission = bulk.create_submission()

        with pytest.raises(NotFound):
            bulk.for_client(new_client()).submission(submission.id)


class TestEntryOutcomes:
    def test_a_malformed_line_is_reported_with_its_line_number(
        self, client: SyncClient, bulk: SyncBulk, files: Files
    ) -> None:
        """Line 2 is not JSON: it is a validation error for line 2, lines 1 and 3 succeed (SUBMIT)."""
        submission_id = submit(
            bulk, files, patient("a"), '{"resourceType": "Patient", "id": "b"', patient("c")
        )

        assert outcomes(bulk, submission_id) == [
            (1, "success"),
            (2, "validation-error"),
            (3, "success"),
        ]
        [bad] = bulk.submission_entries(submission_id, outcome="validation-error")
        assert bad.message is not None
        assert bad.message.startswith("line 2:")

    def test_a_malformed_line_is_never_half_written(
        self, client: SyncClient, bulk: SyncBulk, files: Files
    ) -> None:
        """The truncated line naming Patient/b leaves no trace of b (SUBMIT)."""
        submit(bulk, files, '{"resourceType": "Patient", "id": "b", "name": [{"family": "Half"')

        assert client.exists("Patient", "b") is False

    def test_an_invalid_resource_is_a_validation_error(
        self, client: SyncClient, bulk: SyncBulk, files: Files
    ) -> None:
        """A Patient with an id that is not a FHIR id is refused as a validation error (SUBMIT)."""
        submission_id = submit(bulk, files, patient("not valid!"))

        assert outcomes(bulk, submission_id) == [(1, "validation-error")]
        assert client.count("Patient") == 0

    def test_a_line_of_the_wrong_type_is_a_validation_error(
        self, client: SyncClient, bulk: SyncBulk, files: Files
    ) -> None:
        """An Observation in a file the manifest declares as Patient is refused (SUBMIT)."""
        submission_id = submit(
            bulk,
            files,
            {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"}},
        )

        [entry] = bulk.submission_entries(submission_id)
        assert (entry.outcome, entry.resource_type) == ("validation-error", "Observation")
        assert client.exists("Observation", "o1") is False

    def test_blank_lines_are_skipped_but_counted(self, bulk: SyncBulk, files: Files) -> None:
        """With a blank line 2, the second resource is reported as line 3 (SUBMIT)."""
        submission_id = submit(bulk, files, patient("a"), "", patient("b"))

        assert outcomes(bulk, submission_id) == [(1, "success"), (3, "success")]

    @pytest.mark.requires("tenancy.permissions")
    def test_a_refused_write_is_a_processing_error(
        self, new_client: Any, files: Files, tmp_path: Any
    ) -> None:
        """A caller allowed to write Patients only gets a processing error for its Observation line (SUBMIT)."""
        permissions = (
            TenantPermissions.builder()
            .allow(Operation.BULK_SUBMIT, Operation.CREATE, Operation.UPDATE, Operation.READ)
            .only_types(["Patient"])
            .build()
        )
        bulk = new_client(permissions).bulk(tmp_path / "exports")
        submission = bulk.create_submission()
        url = files.ndjson(
            "mixed.ndjson",
            patient("a"),
            {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"}},
        )
        bulk.add_manifest(submission.id, "m1", files.manifest((None, url)))

        bulk.complete_submission(submission.id)

        assert outcomes(bulk, submission.id) == [(1, "success"), (2, "processing-error")]

    @pytest.mark.requires("crud.update")
    def test_success_entries_record_the_versions(
        self, client: SyncClient, bulk: SyncBulk, files: Files
    ) -> None:
        """Updating existing Patient/a (v1) and creating b: entries record 1->2 and none->1 (SUBMIT)."""
        client.create_or_update("Patient", "a", patient("a"))

        submission_id = submit(bulk, files, patient("a", active=True), patient("b"))

        entries = bulk.submission_entries(submission_id)
        assert [(e.resource_id, e.previous_version, e.version) for e in entries] == [
            ("a", "1", "2"),
            ("b", None, "1"),
        ]

    def test_entries_can_be_queried_by_outcome(self, bulk: SyncBulk, files: Files) -> None:
        """Filtering the results by outcome returns exactly those lines (SUBMIT)."""
        submission_id = submit(bulk, files, patient("a"), "{", patient("b"), "[]")

        errors = bulk.submission_entries(submission_id, outcome=EntryOutcome.VALIDATION_ERROR)
        successes = bulk.submission_entries(submission_id, outcome=EntryOutcome.SUCCESS)

        assert [entry.line for entry in errors] == [2, 4]
        assert [entry.line for entry in successes] == [1, 3]
        assert bulk.submission(submission_id).counts == {"success": 2, "validation-error": 2}


class TestOptions:
    def test_stop_on_first_error_skips_the_rest(
        self, client: SyncClient, bulk: SyncBulk, files: Files
    ) -> None:
        """continue_on_error=False: after the error on line 2, line 3 is skipped and not written (SUBMIT)."""
        submission_id = submit(
            bulk, files, patient("a"), "{", patient("c"), continue_on_error=False
        )

        assert outcomes(bulk, submission_id) == [
            (1, "success"),
            (2, "validation-error"),
            (3, "skipped"),
        ]
        assert client.exists("Patient", "c") is False
        assert bulk.submission(submission_id).stopped is True

    def test_max_errors_stops_after_that_many_errors(
        self, client: SyncClient, bulk: SyncBulk, files: Files
    ) -> None:
        """max_errors=2: lines 1 and 3 fail, line 2 succeeds, lines 4 and 5 are skipped (SUBMIT)."""
        submission_id = submit(
            bulk, files, "{", patient("b"), "{", patient("d"), patient("e"), max_errors=2
        )

        assert outcomes(bulk, submission_id) == [
            (1, "validation-error"),
            (2, "success"),
            (3, "validation-error"),
            (4, "skipped"),
            (5, "skipped"),
        ]
        assert (client.exists("Patient", "d"), client.exists("Patient", "e")) == (False, False)

    def test_continue_on_error_processes_every_line(self, bulk: SyncBulk, files: Files) -> None:
        """By default errors do not stop the submission (SUBMIT)."""
        submission_id = submit(bulk, files, "{", "{", patient("c"))

        assert outcomes(bulk, submission_id) == [
            (1, "validation-error"),
            (2, "validation-error"),
            (3, "success"),
        ]

    def test_without_updates_existing_resources_are_skipped(
        self, client: SyncClient, bulk: SyncBulk, files: Files
    ) -> None:
        """allow_updates=False: existing Patient/a is skipped and stays at version 1; b is created (SUBMIT)."""
        client.create_or_update("Patient", "a", patient("a", gender="male"))

        submission_id = submit(
            bulk, files, patient("a", gender="female"), patient("b"), allow_updates=False
        )

        assert outcomes(bulk, submission_id) == [(1, "skipped"), (2, "success")]
        stored = client.read("Patient", "a")
        assert (stored.version_id, stored.resource["gender"]) == ("1", "male")  # type: ignore[index]

    @pytest.mark.requires("crud.update")
    def test_with_updates_existing_resources_are_updated(
        self, client: SyncClient, bulk: SyncBulk, files: Files
    ) -> None:
        """allow_updates=True (the default): Patient/a gets version 2 with the submitted content (SUBMIT)."""
        client.create_or_update("Patient", "a", patient("a", gender="male"))

        submit(bulk, files, patient("a", gender="female"))

        stored = client.read("Patient", "a")
        assert (stored.version_id, stored.resource["gender"]) == ("2", "female")  # type: ignore[index]

    def test_max_errors_must_be_positive(self, bulk: SyncBulk) -> None:
        """max_errors=0 is not a meaningful limit and is refused (SUBMIT)."""
        with pytest.raises(InvalidRequest, match="max_errors"):
            bulk.create_submission(options=SubmissionOptions(max_errors=0))
