"""The one rooted error hierarchy every backend speaks.

Each error knows the FHIR OperationOutcome issue code and the HTTP status an HTTP
layer would answer with, so a suite can assert the *kind* of failure without caring
which backend produced it. Adapters translate their driver errors into these at
their boundary (``raise NotFound(...) from exc``); no raw driver error reaches a suite.
"""

from __future__ import annotations

from typing import Any, ClassVar


class HeliosError(Exception):
    """Root of every error a backend may raise through the contract."""

    issue_code: ClassVar[str] = "exception"
    http_status: ClassVar[int] = 500
    severity: ClassVar[str] = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_operation_outcome(self) -> dict[str, Any]:
        """Render the error as a FHIR R4 OperationOutcome resource."""
        return {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": self.severity,
                    "code": self.issue_code,
                    "diagnostics": self.message,
                }
            ],
        }


class NotFound(HeliosError):
    """The resource (or the version) does not exist and never did."""

    issue_code = "not-found"
    http_status = 404

    def __init__(
        self,
        message: str,
        *,
        resource_type: str | None = None,
        resource_id: str | None = None,
        version_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.resource_type = resource_type
        self.resource_id = resource_id
        self.version_id = version_id


class Gone(HeliosError):
    """The resource existed but its current version is a deletion."""

    issue_code = "deleted"
    http_status = 410

    def __init__(
        self, message: str, *, resource_type: str, resource_id: str, version_id: str
    ) -> None:
        super().__init__(message)
        self.resource_type = resource_type
        self.resource_id = resource_id
        self.version_id = version_id


class VersionConflict(HeliosError):
    """An expected version (If-Match) was not the current version; nothing was written.

    FHIR R4 http.html#update lists 409 and 412 for version conflicts; this project
    answers 409 for a stale version and keeps 412 for failed conditional criteria.
    """

    issue_code = "conflict"
    http_status = 409

    def __init__(
        self,
        message: str,
        *,
        resource_type: str,
        resource_id: str,
        expected_version: str,
        actual_version: str | None,
    ) -> None:
        super().__init__(message)
        self.resource_type = resource_type
        self.resource_id = resource_id
        self.expected_version = expected_version
        self.actual_version = actual_version


class PreconditionFailed(HeliosError):
    """A precondition of a conditional interaction was not met."""

    issue_code = "conflict"
    http_status = 412


class MultipleMatches(PreconditionFailed):
    """Conditional criteria matched more than one resource where at most one is allowed."""

    issue_code = "multiple-matches"
    http_status = 412


class InvalidRequest(HeliosError):
    """The request itself is malformed (bad id, unknown resource type, bad parameter)."""

    issue_code = "invalid"
    http_status = 400


class InvalidResource(InvalidRequest):
    """The resource body is not acceptable; nothing was stored."""

    issue_code = "structure"
    http_status = 400

    def __init__(self, message: str, *, location: str | None = None) -> None:
        super().__init__(message if location is None else f"{location}: {message}")
        self.location = location


class InvalidSearch(InvalidRequest):
    """A search or history query is malformed; it names the offending parameter."""

    issue_code = "invalid"
    http_status = 400

    def __init__(self, message: str, *, parameter: str | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter


class PatchFailed(InvalidRequest):
    """A well-formed patch could not be applied (a failed ``test``, a path that is not
    there); nothing was written.

    FHIR R4 http.html#patch answers 422 Unprocessable Entity when a patch cannot be
    applied; a malformed patch document is an :class:`InvalidRequest` (400) instead.
    """

    issue_code = "processing"
    http_status = 422

    def __init__(self, message: str, *, operation: int | None = None) -> None:
        super().__init__(message if operation is None else f"operation {operation}: {message}")
        self.operation = operation


class AccessDenied(HeliosError):
    """The tenant's permissions do not allow this operation; nothing happened."""

    issue_code = "forbidden"
    http_status = 403


class Unsupported(HeliosError):
    """The backend does not implement this interaction; it refuses cleanly."""

    issue_code = "not-supported"
    http_status = 501

    def __init__(self, message: str, *, capability: str | None = None) -> None:
        super().__init__(message)
        self.capability = capability


class BackendFailure(HeliosError):
    """The storage engine failed in a way the contract has no better name for."""

    issue_code = "exception"
    http_status = 500


class BackendUnavailable(HeliosError):
    """The backend cannot run here (no server, no driver); tests are skipped with this reason."""

    issue_code = "transient"
    http_status = 503


class TooManyRequests(HeliosError):
    """A per-tenant limit (such as concurrent bulk export jobs) is reached; retry later.

    The Bulk Data IG lets a server answer a kick-off it cannot take now with
    429 Too Many Requests (export.html#response---error-status-1).
    """

    issue_code = "throttled"
    http_status = 429
