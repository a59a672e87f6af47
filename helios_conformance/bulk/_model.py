"""Value objects of Bulk Data: export requests, jobs, manifests, submissions."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

from .._errors import InvalidRequest
from .._resource import check_id, check_resource_type, format_instant, parse_instant

NDJSON_FORMATS = frozenset({"application/fhir+ndjson", "application/ndjson", "ndjson"})
"""The ``_outputFormat`` values a server SHALL accept (export.html#query-parameters)."""

SUBSETTED_TAG = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}
"""The tag a resource returned with ``_elements`` carries (R4 search.html#elements)."""


class ExportLevel(enum.StrEnum):
    """The three kick-off endpoints (export.html#endpoint---system-level-export...)."""

    SYSTEM = "system"
    PATIENT = "patient"
    GROUP = "group"


class ExportStatus(enum.StrEnum):
    """The states of an export job."""

    ACCEPTED = "accepted"
    IN_PROGRESS = "in-progress"
    COMPLETE = "complete"
    ERROR = "error"
    CANCELLED = "cancelled"


ACTIVE_EXPORT_STATUSES = frozenset({ExportStatus.ACCEPTED.value, ExportStatus.IN_PROGRESS.value})


@dataclass(frozen=True, slots=True)
class BulkSettings:
    """Server-side knobs of the bulk engine.

    Attributes:
        base_url: the FHIR base the manifest's ``request`` is built on.
        max_active_exports: per tenant, how many accepted or in-progress export jobs
            may exist at once; another kick-off raises TooManyRequests.
        page_size: resources read per backend call (one checkpoint per page).
        max_part_resources / max_part_bytes: a new output part starts when the current
            one holds this many resources or would grow past this many bytes.
        retention: how long outputs of a finished job are kept before expiry.
        requires_access_token: the manifest's ``requiresAccessToken``.
        submit_batch: NDJSON lines journalled per backend call during submission.
    """

    base_url: str = "https://example.org/fhir"
    max_active_exports: int = 4
    page_size: int = 1000
    max_part_resources: int = 50_000
    max_part_bytes: int = 64 * 1024 * 1024
    retention: timedelta = timedelta(hours=24)
    requires_access_token: bool = False
    submit_batch: int = 100


def _split_list(name: str, value: str) -> tuple[str, ...]:
    items = tuple(part.strip() for part in value.split(","))
    if not value or any(not item for item in items):
        raise InvalidRequest(f"{name}: {value!r} is not a comma-separated list")
    return items


def _instant(name: str, value: str) -> datetime:
    try:
        return parse_instant(value)
    except ValueError as exc:
        raise InvalidRequest(f"{name}: {value!r} is not a FHIR instant with a time zone") from exc


@dataclass(frozen=True, slots=True)
class ExportRequest:
    """A kick-off request (export.html#query-parameters), already validated for shape.

    Attributes:
        level: system, patient or group.
        group_id: the Group of a group-level export.
        types: ``_type``; empty means every type the level allows.
        since / until: ``_since`` / ``_until`` instants.
        type_filters: ``_typeFilter`` values, each ``Type?search``.
        elements: ``_elements`` entries, ``name`` or ``Type.name``.
        patients: ``patient`` references (``Patient/<id>``); patient and group level only.
        output_format: ``_outputFormat``.
    """

    level: ExportLevel = ExportLevel.SYSTEM
    group_id: str | None = None
    types: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    type_filters: tuple[str, ...] = ()
    elements: tuple[str, ...] = ()
    patients: tuple[str, ...] = ()
    output_format: str = "application/fhir+ndjson"

    @classmethod
    def from_query(
        cls,
        level: ExportLevel | str,
        query: str | Sequence[tuple[str, str]] = "",
        *,
        group_id: str | None = None,
    ) -> ExportRequest:
        """Parse kick-off parameters as an HTTP server receives them.

        ``query`` is a query string (``"_type=Patient,Observation&_since=..."``) or
        URL-decoded pairs; ``_type``, ``_elements`` and ``patient`` take comma lists and
        may repeat, ``_typeFilter`` may repeat.

        Raises:
            InvalidRequest: an unknown parameter or a malformed value.
        """
        pairs = parse_qsl(query, keep_blank_values=True) if isinstance(query, str) else query
        types: list[str] = []
        filters: list[str] = []
        elements: list[str] = []
        patients: list[str] = []
        values: dict[str, Any] = {}
        for name, value in pairs:
            if name == "_type":
                types.extend(_split_list(name, value))
            elif name == "_typeFilter":
                filters.append(value)
            elif name == "_elements":
                elements.extend(_split_list(name, value))
            elif name == "patient":
                patients.extend(_split_list(name, value))
            elif name in ("_since", "_until"):
                if name in values:
                    raise InvalidRequest(f"{name} may appear only once")
                values[name] = _instant(name, value)
            elif name == "_outputFormat":
                values[name] = value
            else:
                raise InvalidRequest(f"{name!r} is not a Bulk Data export parameter")
        return cls(
            level=ExportLevel(level),
            group_id=group_id,
            types=tuple(types),
            since=values.get("_since"),
            until=values.get("_until"),
            type_filters=tuple(filters),
            elements=tuple(elements),
            patients=tuple(patients),
            output_format=values.get("_outputFormat", "application/fhir+ndjson"),
        )

    def validate(self) -> None:
        """Check the request on its own (types, formats, level rules).

        Raises:
            InvalidRequest: the message names the offending parameter.
        """
        if self.output_format not in NDJSON_FORMATS:
            raise InvalidRequest(
                f"_outputFormat: {self.output_format!r} is not supported; use "
                "application/fhir+ndjson, application/ndjson or ndjson"
            )
        if (self.level is ExportLevel.GROUP) != (self.group_id is not None):
            raise InvalidRequest("a group id is given exactly for a group-level export")
        if self.group_id is not None:
            check_id(self.group_id, location="Group id")
        for resource_type in self.types:
            try:
                check_resource_type(resource_type)
            except InvalidRequest as exc:
                raise InvalidRequest(f"_type: {exc.message}") from exc
        if self.patients and self.level is ExportLevel.SYSTEM:
            raise InvalidRequest("patient: not applicable to a system-level export")
        for reference in self.patients:
            kind, _, ident = reference.partition("/")
            if kind != "Patient" or not ident:
                raise InvalidRequest(f"patient: {reference!r} is not a Patient/<id> reference")
            check_id(ident, location="patient")
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise InvalidRequest("_until must be later than _since")
        for element in self.elements:
            kind, sep, name = element.rpartition(".")
            if sep and (not name or "." in kind):
                raise InvalidRequest(f"_elements: {element!r} is not 'name' or 'Type.name'")
            if sep:
                check_resource_type(kind)

    def path(self) -> str:
        """The kick-off path relative to the base (``$export``, ``Patient/$export``...)."""
        if self.level is ExportLevel.PATIENT:
            return "Patient/$export"
        if self.level is ExportLevel.GROUP:
            return f"Group/{self.group_id}/$export"
        return "$export"

    def parameters(self) -> list[tuple[str, str]]:
        """The request as query pairs in a canonical order (the manifest's ``request``)."""
        pairs: list[tuple[str, str]] = []
        if self.output_format != "application/fhir+ndjson":
            pairs.append(("_outputFormat", self.output_format))
        if self.types:
            pairs.append(("_type", ",".join(self.types)))
        if self.since is not None:
            pairs.append(("_since", format_instant(self.since)))
        if self.until is not None:
            pairs.append(("_until", format_instant(self.until)))
        pairs.extend(("_typeFilter", value) for value in self.type_filters)
        if self.elements:
            pairs.append(("_elements", ",".join(self.elements)))
        if self.patients:
            pairs.append(("patient", ",".join(self.patients)))
        return pairs

    def url(self, base_url: str) -> str:
        """The full kick-off URL the manifest reports as ``request``."""
        query = urlencode(self.parameters(), safe=",:/$")
        return f"{base_url.rstrip('/')}/{self.path()}" + (f"?{query}" if query else "")

    def to_json(self) -> dict[str, Any]:
        return {"level": self.level.value, "group_id": self.group_id, "query": self.parameters()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExportRequest:
        pairs = [(str(name), str(value)) for name, value in data["query"]]
        return cls.from_query(data["level"], pairs, group_id=data["group_id"])


@dataclass(frozen=True, slots=True)
class TypeProgress:
    """How far an export job got with one resource type."""

    resource_type: str
    exported: int
    done: bool
    parts: int


@dataclass(frozen=True, slots=True)
class ExportJob:
    """The status of an export job (what the status endpoint reports).

    ``manifest`` is set once the job is complete (export.html#response---complete-status);
    ``error`` is the OperationOutcome of a failed job.
    """

    id: str
    status: ExportStatus
    request: str
    transaction_time: datetime
    progress: tuple[TypeProgress, ...]
    created: datetime
    finished: datetime | None = None
    expires: datetime | None = None
    manifest: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    @property
    def exported(self) -> int:
        """Resources written so far, over every type."""
        return sum(entry.exported for entry in self.progress)

    @property
    def progress_text(self) -> str:
        """A short ``X-Progress`` value: types done and resources written."""
        done = sum(1 for entry in self.progress if entry.done)
        return f"{done}/{len(self.progress)} types, {self.exported} resources"

    def progress_of(self, resource_type: str) -> TypeProgress:
        """The progress entry of one type. Raises KeyError if the job has no such type."""
        for entry in self.progress:
            if entry.resource_type == resource_type:
                return entry
        raise KeyError(resource_type)


class EntryOutcome(enum.StrEnum):
    """What happened to one NDJSON line of a submission."""

    SUCCESS = "success"
    VALIDATION_ERROR = "validation-error"
    PROCESSING_ERROR = "processing-error"
    SKIPPED = "skipped"


class SubmissionStatus(enum.StrEnum):
    """The states of a bulk submission."""

    IN_PROGRESS = "in-progress"
    COMPLETE = "complete"
    ABORTED = "aborted"


@dataclass(frozen=True, slots=True)
class SubmissionOptions:
    """How a submission treats failing lines and existing resources.

    Attributes:
        continue_on_error: keep processing after a failed line; when false the first
            error stops the submission and every later line is ``skipped``.
        max_errors: stop (later lines ``skipped``) once this many lines failed.
        allow_updates: a line whose id is already live updates it; when false such a
            line is ``skipped`` and the stored resource is left alone.
    """

    continue_on_error: bool = True
    max_errors: int | None = None
    allow_updates: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "continue_on_error": self.continue_on_error,
            "max_errors": self.max_errors,
            "allow_updates": self.allow_updates,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SubmissionOptions:
        return cls(data["continue_on_error"], data["max_errors"], data["allow_updates"])


class ManifestStatus(enum.StrEnum):
    """Where a submission stands with one manifest."""

    PENDING = "pending"
    PROCESSING = "processing"
    DONE = "done"
    REPLACED = "replaced"


@dataclass(frozen=True, slots=True)
class SubmittedManifest:
    """One manifest of a submission and how far its files were processed."""

    url: str
    status: ManifestStatus
    files: tuple[tuple[str | None, str], ...]
    replaced_by: str | None = None
    rollback: RollbackReport | None = None


@dataclass(frozen=True, slots=True)
class RollbackReport:
    """What an abort (or a replaced manifest) undid.

    ``deleted`` resources were created by the submission and are deleted again;
    ``restored`` ones get a new version with their pre-submission content;
    ``conflicts`` changed after the submission wrote them and were left alone.
    """

    deleted: tuple[str, ...] = ()
    restored: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "deleted": list(self.deleted),
            "restored": list(self.restored),
            "conflicts": list(self.conflicts),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RollbackReport:
        return cls(tuple(data["deleted"]), tuple(data["restored"]), tuple(data["conflicts"]))


@dataclass(frozen=True, slots=True)
class Submission:
    """The status of a bulk submission."""

    id: str
    submitter: str
    status: SubmissionStatus
    options: SubmissionOptions
    manifests: tuple[SubmittedManifest, ...]
    counts: dict[str, int] = field(default_factory=dict)
    stopped: bool = False
    rollback: RollbackReport | None = None

    def count(self, outcome: EntryOutcome | str) -> int:
        """How many lines ended with ``outcome``."""
        return self.counts.get(EntryOutcome(outcome).value, 0)
