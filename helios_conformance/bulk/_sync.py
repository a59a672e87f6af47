"""Blocking access to the bulk engine for the synchronous suites."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .._bulk_contract import SubmissionEntry
from ._export import Clock, ExportService
from ._model import (
    BulkSettings,
    EntryOutcome,
    ExportJob,
    ExportLevel,
    ExportRequest,
    Submission,
    SubmissionOptions,
)
from ._output import OutputStore, SourceReader
from ._submit import SubmitService

if TYPE_CHECKING:
    from .._client import SyncClient


class SyncBulk:
    """Bulk export and submit for one :class:`SyncClient` (its backend, tenant and loop).

    Build it with :meth:`SyncClient.bulk`. ``restart()`` returns a new instance over
    the same backend and output store with fresh engine objects, which is what a
    server restart looks like to a job: only the job store and the files remain.
    """

    def __init__(
        self,
        client: SyncClient,
        output: OutputStore,
        *,
        source: SourceReader | None = None,
        settings: BulkSettings | None = None,
        clock: Clock | None = None,
        output_factory: Callable[[], OutputStore] | None = None,
    ) -> None:
        self.client = client
        self.settings = settings or BulkSettings()
        self._source = source
        self._clock = clock
        self._output_factory = output_factory
        self.exports = ExportService(client.backend, output, self.settings, clock=clock)
        self.submissions = SubmitService(client.backend, source, self.settings)

    @property
    def output(self) -> OutputStore:
        return self.exports.output

    def restart(self, output: OutputStore | None = None) -> SyncBulk:
        """Fresh engine objects over the same backend and files (a simulated restart)."""
        if output is None:
            output = self._output_factory() if self._output_factory else self.output
        return SyncBulk(
            self.client,
            output,
            source=self._source,
            settings=self.settings,
            clock=self._clock,
            output_factory=self._output_factory,
        )

    def for_client(self, client: SyncClient) -> SyncBulk:
        """The same engine configuration for another client (another tenant)."""
        return SyncBulk(
            client,
            self.output,
            source=self._source,
            settings=self.settings,
            clock=self._clock,
            output_factory=self._output_factory,
        )

    # -- export ------------------------------------------------------------------------

    def start_export(
        self,
        level: ExportLevel | str = ExportLevel.SYSTEM,
        query: str | Sequence[tuple[str, str]] = "",
        *,
        group_id: str | None = None,
    ) -> ExportJob:
        """Kick off an export (``"system"``, ``"patient"`` or ``"group"``); status accepted."""
        request = ExportRequest.from_query(level, query, group_id=group_id)
        return self.client.run(self.exports.kick_off(self.client.context, request))

    def run_export(self, job_id: str, *, max_resources: int | None = None) -> ExportJob:
        """Work on a job until it finishes or ``max_resources`` were written."""
        return self.client.run(
            self.exports.run(self.client.context, job_id, max_resources=max_resources)
        )

    def export(
        self,
        level: ExportLevel | str = ExportLevel.SYSTEM,
        query: str | Sequence[tuple[str, str]] = "",
        *,
        group_id: str | None = None,
    ) -> ExportJob:
        """Kick off and run an export to its end; the finished job."""
        job = self.start_export(level, query, group_id=group_id)
        return self.run_export(job.id)

    def export_status(self, job_id: str) -> ExportJob:
        return self.client.run(self.exports.status(self.client.context, job_id))

    def export_jobs(self) -> tuple[ExportJob, ...]:
        return self.client.run(self.exports.jobs(self.client.context))

    def cancel_export(self, job_id: str) -> ExportJob:
        return self.client.run(self.exports.cancel(self.client.context, job_id))

    def delete_export(self, job_id: str) -> None:
        self.client.run(self.exports.delete(self.client.context, job_id))

    def expire_exports(self, now: datetime | None = None) -> tuple[str, ...]:
        return self.client.run(self.exports.expire(self.client.context, now=now))

    def manifest(self, job_id: str) -> dict[str, Any]:
        """The manifest of a complete job. Raises AssertionError when it is not complete."""
        job = self.export_status(job_id)
        if job.manifest is None:
            raise AssertionError(f"export job {job_id} is {job.status.value}, not complete")
        return job.manifest

    def read_output(self, job_id: str, url: str) -> bytes:
        return self.client.run(self.exports.read_output(self.client.context, job_id, url))

    def output_lines(self, job_id: str, url: str) -> list[str]:
        """The lines of one output file (without their newline)."""
        data = self.read_output(job_id, url).decode("utf-8")
        assert data == "" or data.endswith("\n"), "an NDJSON file must end with a newline"
        return data.splitlines()

    def exported(self, job_id: str, resource_type: str | None = None) -> list[dict[str, Any]]:
        """Every exported resource of a complete job (of one type), in output order."""
        manifest = self.manifest(job_id)
        resources: list[dict[str, Any]] = []
        for entry in manifest["output"]:
            if resource_type is None or entry["type"] == resource_type:
                resources.extend(
                    json.loads(line) for line in self.output_lines(job_id, entry["url"])
                )
        return resources

    def exported_ids(self, job_id: str) -> dict[str, set[str]]:
        """``{type: {ids}}`` of a complete job's output."""
        found: dict[str, set[str]] = {}
        for resource in self.exported(job_id):
            found.setdefault(resource["resourceType"], set()).add(resource["id"])
        return found

    # -- submit ------------------------------------------------------------------------

    def create_submission(
        self,
        *,
        submitter: str = "conformance-suite",
        options: SubmissionOptions | None = None,
        submission_id: str | None = None,
    ) -> Submission:
        return self.client.run(
            self.submissions.create(
                self.client.context,
                submitter=submitter,
                options=options,
                submission_id=submission_id,
            )
        )

    def add_manifest(
        self, submission_id: str, manifest_url: str, manifest: Mapping[str, Any]
    ) -> Submission:
        return self.client.run(
            self.submissions.add_manifest(
                self.client.context, submission_id, manifest_url, manifest
            )
        )

    def replace_manifest(
        self,
        submission_id: str,
        replaces_url: str,
        manifest_url: str,
        manifest: Mapping[str, Any],
    ) -> Submission:
        return self.client.run(
            self.submissions.replace_manifest(
                self.client.context, submission_id, replaces_url, manifest_url, manifest
            )
        )

    def process_submission(self, submission_id: str, *, max_lines: int | None = None) -> Submission:
        return self.client.run(
            self.submissions.process(self.client.context, submission_id, max_lines=max_lines)
        )

    def complete_submission(self, submission_id: str) -> Submission:
        return self.client.run(self.submissions.complete(self.client.context, submission_id))

    def abort_submission(self, submission_id: str) -> Submission:
        return self.client.run(self.submissions.abort(self.client.context, submission_id))

    def submission(self, submission_id: str) -> Submission:
        return self.client.run(self.submissions.status(self.client.context, submission_id))

    def submission_entries(
        self,
        submission_id: str,
        *,
        outcome: EntryOutcome | str | None = None,
        manifest_url: str | None = None,
    ) -> tuple[SubmissionEntry, ...]:
        return self.client.run(
            self.submissions.entries(
                self.client.context, submission_id, outcome=outcome, manifest_url=manifest_url
            )
        )
