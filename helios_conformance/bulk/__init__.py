"""Bulk Data: ``$export`` jobs and bulk submit (FHIR Bulk Data Access IG).

The FHIR semantics live here, once for every backend; a backend offers only the
primitives of :class:`~helios_conformance.ExportStorage` and
:class:`~helios_conformance.BulkJobStore`.

- :class:`ExportService`: kick-off (system, patient, group level; ``_type``,
  ``_since``, ``_until``, ``_typeFilter``, ``_elements``, ``patient``), the job
  lifecycle (accepted, in-progress, complete, error, cancelled; cancel, delete,
  expiry, a per-tenant cap, progress, resume after a restart), NDJSON parts in an
  :class:`OutputStore`, and the manifest.
- :class:`SubmitService`: bulk submission of NDJSON manifests with per-line outcomes,
  options, and a change journal that abort rolls back.
- :class:`SyncBulk`: both, blocking, for the suites (``SyncClient.bulk(...)``).
"""

from __future__ import annotations

from ._export import ExportService, compartment_types, subset
from ._model import (
    ACTIVE_EXPORT_STATUSES,
    NDJSON_FORMATS,
    SUBSETTED_TAG,
    BulkSettings,
    EntryOutcome,
    ExportJob,
    ExportLevel,
    ExportRequest,
    ExportStatus,
    ManifestStatus,
    RollbackReport,
    Submission,
    SubmissionOptions,
    SubmissionStatus,
    SubmittedManifest,
    TypeProgress,
)
from ._output import FileSourceReader, FilesystemOutputStore, OutputStore, SourceReader
from ._submit import SubmitService
from ._sync import SyncBulk

__all__ = [
    "ACTIVE_EXPORT_STATUSES",
    "NDJSON_FORMATS",
    "SUBSETTED_TAG",
    "BulkSettings",
    "EntryOutcome",
    "ExportJob",
    "ExportLevel",
    "ExportRequest",
    "ExportService",
    "ExportStatus",
    "FileSourceReader",
    "FilesystemOutputStore",
    "ManifestStatus",
    "OutputStore",
    "RollbackReport",
    "SourceReader",
    "Submission",
    "SubmissionOptions",
    "SubmissionStatus",
    "SubmitService",
    "SubmittedManifest",
    "SyncBulk",
    "TypeProgress",
    "compartment_types",
    "subset",
]
