"""Bulk submit: manifests of NDJSON files written into a tenant, line by line, with a journal.

Each line is read, parsed and validated completely before anything is written, and
then written with one ``create`` (no ``id``) or ``create_or_update`` (with ``id``)
call, so a malformed line is reported with its line number and never half-written.
Every line gets a :class:`SubmissionEntry` in the backend's journal; a successful one
records the version it replaced, which is what abort uses to roll back.

Rollback and history: rollback never erases history. A resource the submission
created is deleted again (a deletion version); a resource it updated gets a *new*
version carrying the content of the version it had before the submission. Both are
written with the submission's last version as the expected version, so a resource
someone else changed after the submission wrote it is left alone and reported as a
conflict.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from .._bulk_contract import BulkJobRecord, BulkJobStore, SubmissionEntry
from .._contract import ResourceStorage, VersionedStorage
from .._errors import Gone, HeliosError, InvalidRequest, NotFound, Unsupported, VersionConflict
from .._resource import check_id, check_resource_type, validate_resource
from .._tenancy import Operation, TenantContext
from ._model import (
    BulkSettings,
    EntryOutcome,
    ManifestStatus,
    RollbackReport,
    Submission,
    SubmissionOptions,
    SubmissionStatus,
    SubmittedManifest,
)
from ._output import FileSourceReader, SourceReader

SUBMISSION_KIND = "submission"


class SubmitService:
    """Runs bulk submissions against one backend.

    The backend must implement :class:`BulkJobStore` and ResourceStorage (and
    VersionedStorage to roll back); otherwise calls raise Unsupported.
    """

    def __init__(
        self,
        backend: object,
        source: SourceReader | None = None,
        settings: BulkSettings | None = None,
    ) -> None:
        self._backend = backend
        self.source = source or FileSourceReader()
        self.settings = settings or BulkSettings()

    def _jobs(self) -> BulkJobStore:
        if not isinstance(self._backend, BulkJobStore):
            raise Unsupported("the backend has no BulkJobStore", capability="bulk.submit")
        return self._backend

    def _storage(self) -> ResourceStorage:
        if not isinstance(self._backend, ResourceStorage):
            raise Unsupported("the backend has no ResourceStorage", capability="bulk.submit")
        return self._backend

    async def _load(
        self, context: TenantContext, submission_id: str
    ) -> tuple[BulkJobRecord, dict[str, Any]]:
        record = await self._jobs().load_bulk_job(context, SUBMISSION_KIND, submission_id)
        return record, json.loads(record.document)

    async def _save(
        self, context: TenantContext, record: BulkJobRecord, document: dict[str, Any], status: str
    ) -> BulkJobRecord:
        updated = BulkJobRecord(
            SUBMISSION_KIND, record.job_id, status, json.dumps(document), record.revision
        )
        return await self._jobs().save_bulk_job(context, updated, expected_revision=record.revision)

    @staticmethod
    def _require_open(record: BulkJobRecord) -> None:
        if record.status != SubmissionStatus.IN_PROGRESS.value:
            raise InvalidRequest(
                f"submission {record.job_id} is {record.status}; it takes no more changes"
            )

    # -- lifecycle ---------------------------------------------------------------------

    async def create(
        self,
        context: TenantContext,
        *,
        submitter: str,
        options: SubmissionOptions | None = None,
        submission_id: str | None = None,
    ) -> Submission:
        """Open a submission (status ``in-progress``).

        Raises:
            InvalidRequest: ``submission_id`` is not a valid id or already used.
        """
        context.require(Operation.BULK_SUBMIT)
        identifier = submission_id or uuid.uuid4().hex
        check_id(identifier, location="submission id")
        if not submitter:
            raise InvalidRequest("submitter must not be empty")
        options = options or SubmissionOptions()
        if options.max_errors is not None and options.max_errors < 1:
            raise InvalidRequest("max_errors must be at least 1")
        document = {
            "submitter": submitter,
            "options": options.to_json(),
            "manifests": [],
            "counts": {},
            "errors": 0,
            "stopped": False,
            "sequence": 0,
            "rollback": None,
        }
        record = await self._jobs().insert_bulk_job(
            context,
            BulkJobRecord(
                SUBMISSION_KIND,
                identifier,
                SubmissionStatus.IN_PROGRESS.value,
                json.dumps(document),
            ),
        )
        return _view(record, document)

    async def add_manifest(
        self,
        context: TenantContext,
        submission_id: str,
        manifest_url: str,
        manifest: Mapping[str, Any],
    ) -> Submission:
        """Queue a manifest (an export-style manifest with ``output`` ``type``/``url``).

        Raises:
            InvalidRequest: the submission is finished, the manifest URL was already
                added, or the manifest has no usable ``output``.
        """
        context.require(Operation.BULK_SUBMIT)
        record, document = await self._load(context, submission_id)
        self._require_open(record)
        self._append_manifest(document, manifest_url, manifest)
        record = await self._save(context, record, document, record.status)
        return _view(record, document)

    async def replace_manifest(
        self,
        context: TenantContext,
        submission_id: str,
        replaces_url: str,
        manifest_url: str,
        manifest: Mapping[str, Any],
    ) -> Submission:
        """Replace a manifest: what it already applied is rolled back, then the new one is queued.

        Raises:
            NotFound: the submission has no manifest ``replaces_url``.
            InvalidRequest: that manifest was already replaced, or the new one is bad.
        """
        context.require(Operation.BULK_SUBMIT)
        record, document = await self._load(context, submission_id)
        self._require_open(record)
        old = next((m for m in document["manifests"] if m["url"] == replaces_url), None)
        if old is None:
            raise NotFound(f"submission {submission_id} has no manifest {replaces_url!r}")
        if old["status"] == ManifestStatus.REPLACED.value:
            raise InvalidRequest(f"manifest {replaces_url!r} was already replaced")
        self._append_manifest(document, manifest_url, manifest)
        if old["status"] != ManifestStatus.PENDING.value:
            old["rollback"] = (await self._rollback(context, submission_id, replaces_url)).to_json()
        old["status"] = ManifestStatus.REPLACED.value
        old["replaced_by"] = manifest_url
        record = await self._save(context, record, document, record.status)
        return _view(record, document)

    @staticmethod
    def _append_manifest(document: dict[str, Any], url: str, manifest: Mapping[str, Any]) -> None:
        if not url:
            raise InvalidRequest("manifest url must not be empty")
        if any(m["url"] == url for m in document["manifests"]):
            raise InvalidRequest(f"manifest {url!r} is already part of this submission")
        output = manifest.get("output")
        if not isinstance(output, list) or not output:
            raise InvalidRequest(f"manifest {url!r}: 'output' must be a non-empty list")
        files: list[list[str | None]] = []
        for position, item in enumerate(output):
            file_url = item.get("url") if isinstance(item, dict) else None
            if not isinstance(file_url, str) or not file_url:
                raise InvalidRequest(f"manifest {url!r}: output[{position}] has no url")
            kind = item.get("type")
            if kind is not None:
                check_resource_type(kind)
            files.append([kind, file_url])
        document["manifests"].append(
            {
                "url": url,
                "status": ManifestStatus.PENDING.value,
                "files": files,
                "file": 0,
                "line": 0,
                "replaced_by": None,
                "rollback": None,
            }
        )

    async def status(self, context: TenantContext, submission_id: str) -> Submission:
        """The submission's status and counts. Raises NotFound."""
        context.require(Operation.BULK_SUBMIT)
        record, document = await self._load(context, submission_id)
        return _view(record, document)

    async def entries(
        self,
        context: TenantContext,
        submission_id: str,
        *,
        outcome: EntryOutcome | str | None = None,
        manifest_url: str | None = None,
    ) -> tuple[SubmissionEntry, ...]:
        """The per-line results, in processing order, optionally of one outcome."""
        context.require(Operation.BULK_SUBMIT)
        await self._load(context, submission_id)
        return await self._jobs().list_submission_entries(
            context,
            submission_id,
            outcome=None if outcome is None else EntryOutcome(outcome).value,
            manifest_url=manifest_url,
        )

    async def complete(self, context: TenantContext, submission_id: str) -> Submission:
        """Process every queued line, then close the submission as ``complete``."""
        await self.process(context, submission_id)
        record, document = await self._load(context, submission_id)
        self._require_open(record)
        record = await self._save(context, record, document, SubmissionStatus.COMPLETE.value)
        return _view(record, document)

    async def abort(self, context: TenantContext, submission_id: str) -> Submission:
        """Roll back what the submission applied and close it as ``aborted``.

        Raises:
            InvalidRequest: the submission is already complete or aborted.
        """
        context.require(Operation.BULK_SUBMIT)
        record, document = await self._load(context, submission_id)
        self._require_open(record)
        report = await self._rollback(context, submission_id, None)
        record, document = await self._load(context, submission_id)
        document["rollback"] = report.to_json()
        record = await self._save(context, record, document, SubmissionStatus.ABORTED.value)
        return _view(record, document)

    # -- processing --------------------------------------------------------------------

    async def process(
        self, context: TenantContext, submission_id: str, *, max_lines: int | None = None
    ) -> Submission:
        """Process queued lines: all of them, or at most ``max_lines`` (blank lines included).

        Progress is checkpointed every ``submit_batch`` lines (journal first, then the
        submission document), so processing continues where it stopped.
        """
        context.require(Operation.BULK_SUBMIT)
        record, document = await self._load(context, submission_id)
        self._require_open(record)
        options = SubmissionOptions.from_json(document["options"])
        budget = -1 if max_lines is None else max_lines
        cache: dict[str, list[bytes]] = {}
        pending: list[SubmissionEntry] = []
        since_checkpoint = 0
        for manifest in document["manifests"]:
            if manifest["status"] in (ManifestStatus.DONE.value, ManifestStatus.REPLACED.value):
                continue
            manifest["status"] = ManifestStatus.PROCESSING.value
            while manifest["file"] < len(manifest["files"]) and budget != 0:
                kind, url = manifest["files"][manifest["file"]]
                if url not in cache:
                    cache[url] = _split_lines(await self.source.read(url))
                lines = cache[url]
                while manifest["line"] < len(lines) and budget != 0:
                    number = manifest["line"] + 1
                    entry = await self._line(
                        context,
                        document,
                        options,
                        manifest["url"],
                        url,
                        kind,
                        number,
                        lines[number - 1],
                    )
                    manifest["line"] = number
                    budget -= 1 if budget > 0 else 0
                    since_checkpoint += 1
                    if entry is not None:
                        pending.append(entry)
                    if since_checkpoint >= self.settings.submit_batch:
                        record = await self._checkpoint(context, record, document, pending)
                        pending, since_checkpoint = [], 0
                if manifest["line"] >= len(lines):
                    manifest["file"] += 1
                    manifest["line"] = 0
            if manifest["file"] >= len(manifest["files"]):
                manifest["status"] = ManifestStatus.DONE.value
            if budget == 0:
                break
        record = await self._checkpoint(context, record, document, pending)
        return _view(record, document)

    async def _checkpoint(
        self,
        context: TenantContext,
        record: BulkJobRecord,
        document: dict[str, Any],
        entries: list[SubmissionEntry],
    ) -> BulkJobRecord:
        if entries:
            await self._jobs().append_submission_entries(context, record.job_id, entries)
        return await self._save(context, record, document, record.status)

    async def _line(
        self,
        context: TenantContext,
        document: dict[str, Any],
        options: SubmissionOptions,
        manifest_url: str,
        source_url: str,
        declared_type: str | None,
        number: int,
        raw: bytes,
    ) -> SubmissionEntry | None:
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            return None
        document["sequence"] += 1

        def entry(outcome: EntryOutcome, **fields: Any) -> SubmissionEntry:
            counts = document["counts"]
            counts[outcome.value] = counts.get(outcome.value, 0) + 1
            if outcome in (EntryOutcome.VALIDATION_ERROR, EntryOutcome.PROCESSING_ERROR):
                document["errors"] += 1
                limit = options.max_errors
                if not options.continue_on_error or (
                    limit is not None and document["errors"] >= limit
                ):
                    document["stopped"] = True
            return SubmissionEntry(
                document["sequence"], manifest_url, source_url, number, outcome.value, **fields
            )

        if document["stopped"]:
            return entry(
                EntryOutcome.SKIPPED,
                message=f"line {number}: not processed; the submission stopped after "
                f"{document['errors']} error(s)",
            )
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            return entry(
                EntryOutcome.VALIDATION_ERROR, message=f"line {number}: not valid JSON: {exc}"
            )
        resource_type = body.get("resourceType") if isinstance(body, dict) else None
        resource_id = body.get("id") if isinstance(body, dict) else None
        names = {
            "resource_type": resource_type if isinstance(resource_type, str) else None,
            "resource_id": resource_id if isinstance(resource_id, str) else None,
        }
        try:
            if declared_type is not None and resource_type != declared_type:
                raise InvalidRequest(
                    f"the file holds {declared_type} resources but the line is a {resource_type!r}"
                )
            if resource_id is not None:
                body = validate_resource(body, expected_id=resource_id, require_id=True)
            else:
                body = validate_resource(body, ignore_id=True)
        except InvalidRequest as exc:
            return entry(
                EntryOutcome.VALIDATION_ERROR, message=f"line {number}: {exc.message}", **names
            )
        storage = self._storage()
        kind = body["resourceType"]
        try:
            if resource_id is None:
                stored = await storage.create(context, body)
                return entry(
                    EntryOutcome.SUCCESS,
                    resource_type=kind,
                    resource_id=stored.id,
                    version=stored.version_id,
                )
            previous: str | None = None
            try:
                previous = (await storage.read(context, kind, resource_id)).version_id
            except (NotFound, Gone):
                previous = None
            if previous is not None and not options.allow_updates:
                return entry(
                    EntryOutcome.SKIPPED,
                    message=f"line {number}: {kind}/{resource_id} exists and updates are not allowed",
                    **names,
                )
            stored, _ = await storage.create_or_update(context, kind, resource_id, body)
            return entry(
                EntryOutcome.SUCCESS,
                resource_type=kind,
                resource_id=resource_id,
                previous_version=previous,
                version=stored.version_id,
            )
        except HeliosError as exc:
            return entry(
                EntryOutcome.PROCESSING_ERROR, message=f"line {number}: {exc.message}", **names
            )

    # -- rollback ----------------------------------------------------------------------

    async def _rollback(
        self, context: TenantContext, submission_id: str, manifest_url: str | None
    ) -> RollbackReport:
        storage = self._storage()
        if not isinstance(self._backend, VersionedStorage):
            raise Unsupported(
                "rollback reads prior versions with vread", capability="bulk.submit.rollback"
            )
        versions = self._backend
        entries = await self._jobs().list_submission_entries(
            context, submission_id, outcome=EntryOutcome.SUCCESS.value, manifest_url=manifest_url
        )
        first: dict[tuple[str, str], str | None] = {}
        last: dict[tuple[str, str], str] = {}
        for item in entries:
            assert item.resource_type is not None
            assert item.resource_id is not None
            key = (item.resource_type, item.resource_id)
            first.setdefault(key, item.previous_version)
            assert item.version is not None
            last[key] = item.version
        deleted: list[str] = []
        restored: list[str] = []
        conflicts: list[str] = []
        for key in reversed(list(last)):
            kind, ident = key
            reference = f"{kind}/{ident}"
            try:
                previous = first[key]
                if previous is None:
                    await storage.delete(context, kind, ident, expected_version=last[key])
                    deleted.append(reference)
                else:
                    old = await versions.vread(context, kind, ident, previous)
                    assert old.resource is not None
                    await storage.update(
                        context, kind, ident, old.resource, expected_version=last[key]
                    )
                    restored.append(reference)
            except VersionConflict:
                conflicts.append(reference)
        return RollbackReport(
            tuple(sorted(deleted)), tuple(sorted(restored)), tuple(sorted(conflicts))
        )


def _split_lines(data: bytes) -> list[bytes]:
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def _view(record: BulkJobRecord, document: dict[str, Any]) -> Submission:
    manifests = tuple(
        SubmittedManifest(
            url=m["url"],
            status=ManifestStatus(m["status"]),
            files=tuple((kind, url) for kind, url in m["files"]),
            replaced_by=m["replaced_by"],
            rollback=None if m["rollback"] is None else RollbackReport.from_json(m["rollback"]),
        )
        for m in document["manifests"]
    )
    return Submission(
        id=record.job_id,
        submitter=document["submitter"],
        status=SubmissionStatus(record.status),
        options=SubmissionOptions.from_json(document["options"]),
        manifests=manifests,
        counts=dict(document["counts"]),
        stopped=document["stopped"],
        rollback=None
        if document["rollback"] is None
        else RollbackReport.from_json(document["rollback"]),
    )
