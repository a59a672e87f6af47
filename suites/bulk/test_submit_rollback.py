"""Aborting a bulk submission rolls back what it applied (catalog row bulk.submit.rollback).

Rollback keeps history: created resources are deleted (a deletion version), updated
ones get a new version with their pre-submission content.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from helios_conformance import InvalidRequest, SyncClient
from helios_conformance.bulk import ManifestStatus, SubmissionStatus, SyncBulk

ROLLBACK = "https://hl7.org/fhir/uv/bulkdata/STU2/index.html"

pytestmark = pytest.mark.requires(
    "bulk.submit", "bulk.submit.rollback", "crud.update_as_create", "crud.read", "versioning.vread"
)


@pytest.fixture
def bulk(client: SyncClient, tmp_path: Any) -> SyncBulk:
    return client.bulk(tmp_path / "exports")


@pytest.fixture
def incoming(tmp_path: Any) -> Any:
    root = tmp_path / "incoming"
    root.mkdir()
    return root


def ndjson(root: Any, name: str, *resources: dict[str, Any]) -> dict[str, Any]:
    path = root / name
    path.write_text("".join(json.dumps(r) + "\n" for r in resources), encoding="utf-8")
    return {"output": [{"type": resources[0]["resourceType"], "url": path.as_uri()}]}


def patient(ident: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": ident, **extra}


def applied(bulk: SyncBulk, root: Any, *resources: dict[str, Any]) -> str:
    """Open a submission and process (not complete) one file of ``resources``."""
    submission = bulk.create_submission()
    bulk.add_manifest(submission.id, "m1", ndjson(root, f"{submission.id}.ndjson", *resources))
    bulk.process_submission(submission.id)
    return submission.id


class TestAbort:
    def test_abort_deletes_created_resources(
        self, client: SyncClient, bulk: SyncBulk, incoming: Any
    ) -> None:
        """Patients a and b created by the submission are gone after abort (ROLLBACK)."""
        submission_id = applied(bulk, incoming, patient("a"), patient("b"))

        aborted = bulk.abort_submission(submission_id)

        assert aborted.status is SubmissionStatus.ABORTED
        assert aborted.rollback is not None
        assert aborted.rollback.deleted == ("Patient/a", "Patient/b")
        assert (client.exists("Patient", "a"), client.exists("Patient", "b")) == (False, False)

    @pytest.mark.requires("history.instance")
    def test_abort_restores_updated_resources_as_a_new_version(
        self, client: SyncClient, bulk: SyncBulk, incoming: Any
    ) -> None:
        """Patient/a (v1 male) updated to female (v2) is restored to male as v3 (ROLLBACK)."""
        client.create_or_update("Patient", "a", patient("a", gender="male"))
        submission_id = applied(bulk, incoming, patient("a", gender="female"))

        bulk.abort_submission(submission_id)

        stored = client.read("Patient", "a")
        assert (stored.version_id, stored.resource["gender"]) == ("3", "male")  # type: ignore[index]
        assert [e.version_id for e in client.history_instance("Patient", "a").entries] == [
            "3",
            "2",
            "1",
        ]

    def test_abort_restores_the_state_before_the_first_change(
        self, client: SyncClient, bulk: SyncBulk, incoming: Any
    ) -> None:
        """Two lines update Patient/a twice; abort brings back the pre-submission content (ROLLBACK)."""
        client.create_or_update("Patient", "a", patient("a", gender="male"))
        submission_id = applied(
            bulk, incoming, patient("a", gender="female"), patient("a", gender="other")
        )

        bulk.abort_submission(submission_id)

        assert client.read("Patient", "a").resource["gender"] == "male"  # type: ignore[index]

    def test_abort_leaves_resources_changed_by_others(
        self, client: SyncClient, bulk: SyncBulk, incoming: Any
    ) -> None:
        """Patient/b created by the submission then updated by someone else is kept and reported (ROLLBACK)."""
        submission_id = applied(bulk, incoming, patient("a"), patient("b"))
        client.create_or_update("Patient", "b", patient("b", active=True))

        aborted = bulk.abort_submission(submission_id)

        assert aborted.rollback is not None
        assert (aborted.rollback.deleted, aborted.rollback.conflicts) == (
            ("Patient/a",),
            ("Patient/b",),
        )
        assert client.read("Patient", "b").resource["active"] is True  # type: ignore[index]

    def test_failed_lines_need_no_rollback(
        self, client: SyncClient, bulk: SyncBulk, incoming: Any
    ) -> None:
        """Only successful lines are undone: a pre-existing Patient/z untouched by the submission stays at v1 (ROLLBACK)."""
        client.create_or_update("Patient", "z", patient("z"))
        path = incoming / "mixed.ndjson"
        path.write_text(json.dumps(patient("a")) + "\n{\n", encoding="utf-8")
        submission = bulk.create_submission()
        bulk.add_manifest(
            submission.id, "m1", {"output": [{"type": "Patient", "url": path.as_uri()}]}
        )
        bulk.process_submission(submission.id)

        aborted = bulk.abort_submission(submission.id)

        assert aborted.rollback is not None
        assert aborted.rollback.deleted == ("Patient/a",)
        assert client.read("Patient", "z").version_id == "1"

    def test_a_complete_submission_cannot_be_aborted(self, bulk: SyncBulk, incoming: Any) -> None:
        """Abort applies to an open submission only (ROLLBACK)."""
        submission_id = applied(bulk, incoming, patient("a"))
        bulk.complete_submission(submission_id)

        with pytest.raises(InvalidRequest, match="complete"):
            bulk.abort_submission(submission_id)

    def test_replacing_a_processed_manifest_rolls_it_back(
        self, client: SyncClient, bulk: SyncBulk, incoming: Any
    ) -> None:
        """m1 created Patient/a; replacing it with m2 (Patient/b) removes a and then writes b (ROLLBACK)."""
        submission_id = applied(bulk, incoming, patient("a"))

        replaced = bulk.replace_manifest(
            submission_id, "m1", "m2", ndjson(incoming, "m2.ndjson", patient("b"))
        )
        bulk.complete_submission(submission_id)

        [old, _] = replaced.manifests
        assert old.status is ManifestStatus.REPLACED
        assert old.rollback is not None
        assert old.rollback.deleted == ("Patient/a",)
        assert (client.exists("Patient", "a"), client.exists("Patient", "b")) == (False, True)


class TestRoundTrip:
    @pytest.mark.requires("bulk.export.system", "bulk.export.type")
    def test_an_export_can_be_submitted_into_another_tenant(
        self, client: SyncClient, new_client: Any, bulk: SyncBulk
    ) -> None:
        """The manifest of an export, submitted to an empty tenant, recreates the same resources (ROLLBACK)."""
        for ident in ("a", "b"):
            client.create_or_update("Patient", ident, patient(ident, gender="female"))
        job = bulk.export("system", "_type=Patient")
        target = new_client()
        receiving = bulk.for_client(target)

        submission = receiving.create_submission()
        receiving.add_manifest(submission.id, "export-1", bulk.manifest(job.id))
        receiving.complete_submission(submission.id)

        assert {target.read("Patient", ident).resource["gender"] for ident in ("a", "b")} == {
            "female"
        }  # type: ignore[index]
