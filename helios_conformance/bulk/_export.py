"""The export engine: kick-off, the job lifecycle, NDJSON parts and the manifest.

FHIR Bulk Data Access IG, export.html. The engine is stateless between calls: every
fact about a job lives in its job document in the backend's :class:`BulkJobStore` and
in the output store, so a job resumes from its persisted cursor after a restart (or
in another process). Each page read is followed by one checkpoint: output lines are
appended first, then the document records the new cursor and part sizes; on resume a
part is cut back to its checkpointed size, so a crash between the two never duplicates
or loses a line.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import parse_qsl

from .._bulk_contract import (
    BulkJobRecord,
    BulkJobStore,
    ExportRow,
    ExportScan,
    ExportStorage,
    PatientCompartment,
    QueryPairs,
)
from .._contract import ResourceStorage
from .._errors import (
    AccessDenied,
    Gone,
    HeliosError,
    InvalidRequest,
    NotFound,
    Unsupported,
    VersionConflict,
)
from .._resource import Resource, format_instant, parse_instant
from .._tenancy import Operation, TenantContext
from ..search import date_range, patient_compartment, split_reference
from ._model import (
    ACTIVE_EXPORT_STATUSES,
    SUBSETTED_TAG,
    BulkSettings,
    ExportJob,
    ExportLevel,
    ExportRequest,
    ExportStatus,
    TypeProgress,
)
from ._output import OutputStore

EXPORT_KIND = "export"
_TICK = timedelta(microseconds=1)
_TERMINAL = frozenset({ExportStatus.COMPLETE, ExportStatus.ERROR, ExportStatus.CANCELLED})
# Result-shaping parameters make no sense inside a _typeFilter (it only selects).
_NOT_IN_TYPE_FILTER = frozenset(
    {
        "_count",
        "_sort",
        "_include",
        "_revinclude",
        "_elements",
        "_summary",
        "_total",
        "_offset",
        "_contained",
        "_containedType",
    }
)
_MANDATORY_ELEMENTS = frozenset({"resourceType", "id", "meta"})
_LEVEL_CAPABILITY = {
    ExportLevel.SYSTEM: "bulk.export.system",
    ExportLevel.PATIENT: "bulk.export.patient",
    ExportLevel.GROUP: "bulk.export.group",
}

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def compartment_types() -> Mapping[str, tuple[str, ...]]:
    """The types of the R4 Patient compartment and the parameters linking each to a patient."""
    return patient_compartment()


class ExportService:
    """Runs Bulk Data exports against one backend, writing files to one output store.

    The backend must implement :class:`ExportStorage` and :class:`BulkJobStore`
    (and ResourceStorage for group-level export); otherwise every call raises
    Unsupported naming the export level's capability.
    """

    def __init__(
        self,
        backend: object,
        output: OutputStore,
        settings: BulkSettings | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        self._backend = backend
        self.output = output
        self.settings = settings or BulkSettings()
        self._clock = clock or _utc_now

    # -- plumbing ----------------------------------------------------------------

    def _stores(self, capability: str = "bulk.export.jobs") -> tuple[ExportStorage, BulkJobStore]:
        if not isinstance(self._backend, ExportStorage) or not isinstance(
            self._backend, BulkJobStore
        ):
            raise Unsupported(
                "the backend implements neither ExportStorage nor BulkJobStore "
                "(both are needed for $export)",
                capability=capability,
            )
        return cast(ExportStorage, self._backend), cast(BulkJobStore, self._backend)

    def _prefix(self, context: TenantContext, job_id: str) -> str:
        return f"{context.tenant}/{EXPORT_KIND}/{job_id}/"

    def _part_key(self, context: TenantContext, job_id: str, resource_type: str, n: int) -> str:
        return f"{self._prefix(context, job_id)}{resource_type}.{n}.ndjson"

    def _error_key(self, context: TenantContext, job_id: str) -> str:
        return f"{self._prefix(context, job_id)}_errors/OperationOutcome.1.ndjson"

    async def _load(
        self, context: TenantContext, job_id: str
    ) -> tuple[BulkJobRecord, dict[str, Any]]:
        _, jobs = self._stores()
        record = await jobs.load_bulk_job(context, EXPORT_KIND, job_id)
        return record, json.loads(record.document)

    async def _save(
        self, context: TenantContext, record: BulkJobRecord, document: dict[str, Any], status: str
    ) -> BulkJobRecord:
        _, jobs = self._stores()
        updated = BulkJobRecord(
            EXPORT_KIND, record.job_id, status, json.dumps(document), record.revision
        )
        return await jobs.save_bulk_job(context, updated, expected_revision=record.revision)

    # -- kick-off --------------------------------------------------------------------

    async def kick_off(self, context: TenantContext, request: ExportRequest) -> ExportJob:
        """Validate an export request and create its job (status ``accepted``).

        Nothing is read or written yet except the job document; :meth:`run` does the
        work. The patient set of a group-level export is fixed here, at the job's
        ``transactionTime``.

        Raises:
            InvalidRequest: a malformed request (the message names the parameter),
                a ``_type`` outside the Patient compartment at patient/group level,
                a bad ``_typeFilter``.
            NotFound / Gone: the Group of a group-level export.
            AccessDenied: the context may not export (or not these types).
            TooManyRequests: the tenant already runs ``max_active_exports`` jobs.
            Unsupported: the backend has no export primitives.
        """
        context.require(Operation.BULK_EXPORT)
        scans, jobs = self._stores(_LEVEL_CAPABILITY[request.level])
        request.validate()
        transaction_time = self._clock()
        as_of = transaction_time
        if request.until is not None and request.until <= transaction_time:
            # _until keeps resources last changed strictly before it: the snapshot
            # is the state just before that instant.
            as_of = request.until - _TICK
        compartment = compartment_types() if request.level is not ExportLevel.SYSTEM else None
        types = await self._types(context, scans, request, compartment)
        filters = self._type_filters(request, types, compartment)
        for resource_type, searches in filters.items():
            if resource_type in types:
                await scans.scan_export(
                    context, ExportScan(resource_type, as_of, filters=searches, limit=0)
                )
        issues: list[str] = []
        patients = await self._patients(context, request, transaction_time, issues)
        patients = _within_permitted_compartment(context, request, patients)
        document: dict[str, Any] = {
            "request": request.to_json(),
            "request_url": request.url(self.settings.base_url),
            "transaction_time": format_instant(transaction_time),
            "as_of": format_instant(as_of),
            "created": format_instant(transaction_time),
            "finished": None,
            "expires": None,
            "error": None,
            "patients": None if patients is None else sorted(patients),
            "issues": issues,
            "error_count": 0,
            "types": [
                {
                    "type": resource_type,
                    "parameters": list(compartment[resource_type]) if compartment else None,
                    "filters": [
                        list(map(list, search)) for search in filters.get(resource_type, ())
                    ],
                    "cursor": None,
                    "done": False,
                    "count": 0,
                    "parts": [],
                }
                for resource_type in types
            ],
        }
        record = await jobs.insert_bulk_job(
            context,
            BulkJobRecord(
                EXPORT_KIND, uuid.uuid4().hex, ExportStatus.ACCEPTED.value, json.dumps(document)
            ),
            max_active=self.settings.max_active_exports,
            active_statuses=ACTIVE_EXPORT_STATUSES,
        )
        return self._view(context, record, document)

    async def _types(
        self,
        context: TenantContext,
        scans: ExportStorage,
        request: ExportRequest,
        compartment: Mapping[str, tuple[str, ...]] | None,
    ) -> list[str]:
        if request.types:
            types = list(dict.fromkeys(request.types))
            for resource_type in types:
                if compartment is not None and resource_type not in compartment:
                    raise InvalidRequest(
                        f"_type: {resource_type} is not in the Patient compartment, so a "
                        f"{request.level.value}-level export cannot return it"
                    )
                context.require(Operation.BULK_EXPORT, resource_type)
            return types
        stored = await scans.stored_resource_types(context)
        return sorted(
            resource_type
            for resource_type in stored
            if (compartment is None or resource_type in compartment)
            and context.permissions.allows(Operation.BULK_EXPORT, resource_type)
        )

    @staticmethod
    def _type_filters(
        request: ExportRequest,
        types: list[str],
        compartment: Mapping[str, tuple[str, ...]] | None,
    ) -> dict[str, tuple[QueryPairs, ...]]:
        filters: dict[str, list[QueryPairs]] = {}
        for value in request.type_filters:
            resource_type, sep, query = value.partition("?")
            if not sep or not query:
                raise InvalidRequest(f"_typeFilter: {value!r} is not 'Type?search'")
            if request.types and resource_type not in request.types:
                raise InvalidRequest(
                    f"_typeFilter: {resource_type} is not among the _type values "
                    f"({', '.join(request.types)})"
                )
            if compartment is not None and resource_type not in compartment:
                raise InvalidRequest(
                    f"_typeFilter: {resource_type} is not in the Patient compartment"
                )
            pairs = tuple(parse_qsl(query, keep_blank_values=True))
            for name, _ in pairs:
                if name in _NOT_IN_TYPE_FILTER:
                    raise InvalidRequest(f"_typeFilter: {name} is not allowed in {value!r}")
            filters.setdefault(resource_type, []).append(pairs)
        del types
        return {kind: tuple(searches) for kind, searches in filters.items()}

    async def _patients(
        self,
        context: TenantContext,
        request: ExportRequest,
        moment: datetime,
        issues: list[str],
    ) -> set[str] | None:
        requested = [reference.partition("/")[2] for reference in request.patients]
        if request.level is ExportLevel.SYSTEM:
            return None
        storage = self._backend
        if not isinstance(storage, ResourceStorage):
            raise Unsupported(
                "patient and group export read resources with ResourceStorage",
                capability=_LEVEL_CAPABILITY[request.level],
            )
        if request.level is ExportLevel.PATIENT:
            if not requested:
                return None
            chosen: set[str] = set()
            for patient_id in dict.fromkeys(requested):
                if await storage.exists(context, "Patient", patient_id):
                    chosen.add(patient_id)
                else:
                    issues.append(f"patient: Patient/{patient_id} does not exist; it was skipped")
            return chosen
        assert request.group_id is not None
        group = await storage.read(context, "Group", request.group_id)
        assert group.resource is not None
        members = await self._members(
            context, storage, group.resource, moment, {request.group_id}, issues
        )
        if not requested:
            return members
        chosen = set()
        for patient_id in dict.fromkeys(requested):
            if patient_id in members:
                chosen.add(patient_id)
            else:
                issues.append(
                    f"patient: Patient/{patient_id} is not a member of Group/{request.group_id}; "
                    "it was skipped"
                )
        return chosen

    async def _members(
        self,
        context: TenantContext,
        storage: ResourceStorage,
        group: Resource,
        moment: datetime,
        visited: set[str],
        issues: list[str],
    ) -> set[str]:
        """Patients of a Group at ``moment``: active members, nested groups followed."""
        patients: set[str] = set()
        for member in group.get("member", []) or []:
            if not isinstance(member, dict) or not _member_is_current(member, moment):
                continue
            reference = (member.get("entity") or {}).get("reference")
            if not isinstance(reference, str):
                continue
            _, kind, ident, _ = split_reference(reference)
            if kind == "Patient" and ident:
                patients.add(ident)
            elif kind == "Group" and ident and ident not in visited:
                visited.add(ident)
                try:
                    nested = await storage.read(context, "Group", ident)
                except (NotFound, Gone):
                    issues.append(f"Group/{ident}: a nested group does not exist; it was skipped")
                    continue
                assert nested.resource is not None
                patients |= await self._members(
                    context, storage, nested.resource, moment, visited, issues
                )
        return patients

    # -- running -----------------------------------------------------------------------

    async def run(
        self, context: TenantContext, job_id: str, *, max_resources: int | None = None
    ) -> ExportJob:
        """Do the work of a job: all of it, or until ``max_resources`` were written.

        Safe to call again after a crash: it resumes from the job's checkpoint. A job
        that is already finished is returned unchanged. A backend error ends the job
        in status ``error`` with the error's OperationOutcome (it is not raised).
        """
        context.require(Operation.BULK_EXPORT)
        scans, _ = self._stores()
        record, document = await self._load(context, job_id)
        if ExportStatus(record.status) in _TERMINAL:
            return self._view(context, record, document)
        budget = max_resources if max_resources is not None else -1
        record = await self._save(context, record, document, ExportStatus.IN_PROGRESS.value)
        as_of = parse_instant(document["as_of"])
        request = ExportRequest.from_json(document["request"])
        patients = document["patients"]
        try:
            for entry in document["types"]:
                if entry["done"]:
                    continue
                await self._reopen(context, job_id, entry)
                while not entry["done"] and budget != 0:
                    limit = (
                        self.settings.page_size
                        if budget < 0
                        else min(budget, self.settings.page_size)
                    )
                    compartment = None
                    if entry["parameters"] is not None:
                        compartment = PatientCompartment(
                            tuple(entry["parameters"]),
                            None if patients is None else frozenset(patients),
                        )
                    scan = ExportScan(
                        entry["type"],
                        as_of,
                        since=request.since,
                        filters=tuple(
                            tuple((n, v) for n, v in search) for search in entry["filters"]
                        ),
                        compartment=compartment,
                        cursor=entry["cursor"],
                        limit=limit,
                    )
                    page = await scans.scan_export(context, scan)
                    lines = self._render(entry["type"], page.rows, request.elements)
                    await self._write(context, job_id, entry, lines)
                    entry["cursor"] = page.next_cursor
                    entry["count"] += len(page.rows)
                    entry["done"] = page.next_cursor is None
                    if budget > 0:
                        budget = max(budget - len(page.rows), 0)
                    saved = await self._checkpoint(context, record, document)
                    if saved is None:
                        return await self.status(context, job_id)
                    record = saved
            if all(entry["done"] for entry in document["types"]):
                await self._write_errors(context, job_id, document)
                now = self._clock()
                document["finished"] = format_instant(now)
                document["expires"] = format_instant(now + self.settings.retention)
                record = await self._save(context, record, document, ExportStatus.COMPLETE.value)
        except HeliosError as exc:
            return await self._fail(context, job_id, exc)
        return self._view(context, record, document)

    async def _checkpoint(
        self, context: TenantContext, record: BulkJobRecord, document: dict[str, Any]
    ) -> BulkJobRecord | None:
        """Save progress; ``None`` when the job was cancelled or deleted meanwhile."""
        try:
            return await self._save(context, record, document, ExportStatus.IN_PROGRESS.value)
        except (VersionConflict, NotFound):
            return None

    async def _fail(self, context: TenantContext, job_id: str, error: HeliosError) -> ExportJob:
        record, document = await self._load(context, job_id)
        now = self._clock()
        document["error"] = error.to_operation_outcome()
        document["finished"] = format_instant(now)
        document["expires"] = format_instant(now + self.settings.retention)
        await self.output.delete_prefix(self._prefix(context, job_id))
        record = await self._save(context, record, document, ExportStatus.ERROR.value)
        return self._view(context, record, document)

    async def _reopen(self, context: TenantContext, job_id: str, entry: dict[str, Any]) -> None:
        """Cut the open part back to its checkpoint: a crash may have left extra lines."""
        if entry["parts"]:
            part = entry["parts"][-1]
            key = self._part_key(context, job_id, entry["type"], len(entry["parts"]))
            await self.output.truncate(key, part["size"])

    @staticmethod
    def _render(
        resource_type: str, rows: Iterable[ExportRow], elements: tuple[str, ...]
    ) -> list[bytes]:
        keep = _elements_for(resource_type, elements)
        if not keep:
            # The stored JSON goes out as stored: no parse, no re-serialisation.
            return [row.text.encode() + b"\n" for row in rows]
        return [
            json.dumps(subset(json.loads(row.text), keep), ensure_ascii=False).encode() + b"\n"
            for row in rows
        ]

    async def _write(
        self, context: TenantContext, job_id: str, entry: dict[str, Any], lines: list[bytes]
    ) -> None:
        parts: list[dict[str, int]] = entry["parts"]
        chunks: dict[int, list[bytes]] = {}
        fresh: set[int] = set()
        for line in lines:
            part = parts[-1] if parts else None
            if (
                part is None
                or part["count"] >= self.settings.max_part_resources
                or (part["count"] > 0 and part["size"] + len(line) > self.settings.max_part_bytes)
            ):
                part = {"count": 0, "size": 0}
                parts.append(part)
                fresh.add(len(parts))
            part["count"] += 1
            part["size"] += len(line)
            chunks.setdefault(len(parts), []).append(line)
        for number, chunk in chunks.items():
            key = self._part_key(context, job_id, entry["type"], number)
            if number in fresh:
                # A crash after this part was started but before its checkpoint left
                # a file the document does not know about.
                await self.output.truncate(key, 0)
            await self.output.append(key, b"".join(chunk))

    async def _write_errors(
        self, context: TenantContext, job_id: str, document: dict[str, Any]
    ) -> None:
        issues: list[str] = document["issues"]
        if not issues:
            return
        key = self._error_key(context, job_id)
        lines = [
            json.dumps(
                {
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "warning", "code": "not-found", "diagnostics": text}],
                }
            ).encode()
            + b"\n"
            for text in issues
        ]
        await self.output.truncate(key, 0)
        await self.output.append(key, b"".join(lines))
        document["error_count"] = len(lines)

    # -- status, cancel, delete, expiry ---------------------------------------------------

    async def status(self, context: TenantContext, job_id: str) -> ExportJob:
        """The job's status, progress and (when complete) manifest. Raises NotFound."""
        context.require(Operation.BULK_EXPORT)
        record, document = await self._load(context, job_id)
        return self._view(context, record, document)

    async def jobs(self, context: TenantContext) -> tuple[ExportJob, ...]:
        """Every export job of the tenant, by id."""
        context.require(Operation.BULK_EXPORT)
        _, jobs = self._stores()
        records = await jobs.list_bulk_jobs(context, EXPORT_KIND)
        return tuple(self._view(context, r, json.loads(r.document)) for r in records)

    async def cancel(self, context: TenantContext, job_id: str) -> ExportJob:
        """Cancel an accepted or in-progress job and delete what it wrote.

        Raises:
            NotFound: no such job. InvalidRequest: the job already finished (delete it).
        """
        context.require(Operation.BULK_EXPORT)
        for _ in range(8):
            record, document = await self._load(context, job_id)
            status = ExportStatus(record.status)
            if status in _TERMINAL:
                raise InvalidRequest(
                    f"export job {job_id} is {status.value}; only an accepted or in-progress "
                    "job can be cancelled (delete a finished one)"
                )
            now = self._clock()
            document["finished"] = format_instant(now)
            document["expires"] = format_instant(now + self.settings.retention)
            try:
                record = await self._save(context, record, document, ExportStatus.CANCELLED.value)
            except VersionConflict:
                continue
            await self.output.delete_prefix(self._prefix(context, job_id))
            return self._view(context, record, document)
        raise VersionConflict(
            f"export job {job_id} kept changing while being cancelled",
            resource_type="ExportJob",
            resource_id=job_id,
            expected_version=str(record.revision),
            actual_version=None,
        )

    async def delete(self, context: TenantContext, job_id: str) -> None:
        """Delete a job in any state with its files; its status is then NotFound."""
        context.require(Operation.BULK_EXPORT)
        _, jobs = self._stores()
        await jobs.load_bulk_job(context, EXPORT_KIND, job_id)
        await self.output.delete_prefix(self._prefix(context, job_id))
        await jobs.delete_bulk_job(context, EXPORT_KIND, job_id)

    async def expire(
        self, context: TenantContext, *, now: datetime | None = None
    ) -> tuple[str, ...]:
        """Delete finished jobs whose outputs expired at or before ``now``; their ids."""
        context.require(Operation.BULK_EXPORT)
        _, jobs = self._stores()
        moment = now or self._clock()
        expired: list[str] = []
        for record in await jobs.list_bulk_jobs(context, EXPORT_KIND):
            document = json.loads(record.document)
            expires = document["expires"]
            if (
                ExportStatus(record.status) in _TERMINAL
                and expires is not None
                and parse_instant(expires) <= moment
            ):
                await self.output.delete_prefix(self._prefix(context, record.job_id))
                await jobs.delete_bulk_job(context, EXPORT_KIND, record.job_id)
                expired.append(record.job_id)
        return tuple(sorted(expired))

    async def read_output(self, context: TenantContext, job_id: str, url: str) -> bytes:
        """The bytes of one output or error file listed in a complete job's manifest.

        Raises:
            NotFound: no such job. InvalidRequest: the job is not complete or the URL
            is not one of its files.
        """
        job = await self.status(context, job_id)
        if job.manifest is None:
            raise InvalidRequest(f"export job {job_id} is {job.status.value}, not complete")
        urls = {entry["url"] for entry in job.manifest["output"]}
        urls |= {entry["url"] for entry in job.manifest.get("error", [])}
        if url not in urls:
            raise InvalidRequest(f"{url!r} is not a file of export job {job_id}")
        return await self.output.read(self.output.key_of(url))

    # -- views -------------------------------------------------------------------------------

    def _view(
        self, context: TenantContext, record: BulkJobRecord, document: dict[str, Any]
    ) -> ExportJob:
        status = ExportStatus(record.status)
        progress = tuple(
            TypeProgress(entry["type"], entry["count"], entry["done"], len(entry["parts"]))
            for entry in document["types"]
        )
        manifest = None
        if status is ExportStatus.COMPLETE:
            manifest = self._manifest(context, record.job_id, document)
        return ExportJob(
            id=record.job_id,
            status=status,
            request=document["request_url"],
            transaction_time=parse_instant(document["transaction_time"]),
            progress=progress,
            created=parse_instant(document["created"]),
            finished=_instant_or_none(document["finished"]),
            expires=_instant_or_none(document["expires"]),
            manifest=manifest,
            error=document["error"],
        )

    def _manifest(
        self, context: TenantContext, job_id: str, document: dict[str, Any]
    ) -> dict[str, Any]:
        output = [
            {
                "type": entry["type"],
                "url": self.output.url(self._part_key(context, job_id, entry["type"], number)),
                "count": part["count"],
            }
            for entry in document["types"]
            for number, part in enumerate(entry["parts"], start=1)
        ]
        errors = []
        if document["error_count"]:
            errors.append(
                {
                    "type": "OperationOutcome",
                    "url": self.output.url(self._error_key(context, job_id)),
                    "count": document["error_count"],
                }
            )
        return {
            "transactionTime": document["transaction_time"],
            "request": document["request_url"],
            "requiresAccessToken": self.settings.requires_access_token,
            "output": output,
            "error": errors,
        }


def _within_permitted_compartment(
    context: TenantContext, request: ExportRequest, patients: set[str] | None
) -> set[str] | None:
    """Narrow the patient set to the caller's compartment permission, if it has one.

    A caller restricted to ``Patient/x`` may export x's compartment only: a system-level
    export (or a compartment of another type) would leak the rest of the tenant.
    """
    compartment = context.permissions.compartment
    if compartment is None:
        return patients
    kind, _, ident = compartment.partition("/")
    if kind != "Patient" or request.level is ExportLevel.SYSTEM:
        raise AccessDenied(
            f"tenant {context.tenant}: a caller restricted to the compartment {compartment} "
            "may only run a patient- or group-level export of a Patient compartment"
        )
    return {ident} if patients is None else patients & {ident}


def _instant_or_none(text: str | None) -> datetime | None:
    return None if text is None else parse_instant(text)


def _member_is_current(member: Mapping[str, Any], moment: datetime) -> bool:
    """An active member whose ``period`` (when given) contains ``moment``."""
    if member.get("inactive") is True:
        return False
    period = member.get("period") or {}
    start, end = period.get("start"), period.get("end")
    try:
        if isinstance(start, str) and date_range(start)[0] > moment:
            return False
        if isinstance(end, str) and date_range(end)[1] <= moment:
            return False
    except ValueError:
        return False
    return True


def _elements_for(resource_type: str, elements: tuple[str, ...]) -> frozenset[str]:
    """The ``_elements`` names that apply to one type (bare names apply to every type)."""
    names = set()
    for element in elements:
        kind, sep, name = element.rpartition(".")
        if not sep:
            names.add(element)
        elif kind == resource_type:
            names.add(name)
    return frozenset(names)


def subset(resource: Resource, elements: frozenset[str]) -> Resource:
    """Keep the listed top-level elements plus the mandatory ones, tagged SUBSETTED.

    ``resourceType``, ``id`` and ``meta`` are always kept (R4 search.html#elements:
    mandatory elements are returned; the harness has no StructureDefinitions to know
    other mandatory elements).
    """
    kept = {
        key: value
        for key, value in resource.items()
        if key in elements or key in _MANDATORY_ELEMENTS
    }
    meta = dict(kept.get("meta") or {})
    tags = list(meta.get("tag") or [])
    if not any(
        tag.get("system") == SUBSETTED_TAG["system"] and tag.get("code") == SUBSETTED_TAG["code"]
        for tag in tags
        if isinstance(tag, dict)
    ):
        tags.append(dict(SUBSETTED_TAG))
    meta["tag"] = tags
    kept["meta"] = meta
    return kept
