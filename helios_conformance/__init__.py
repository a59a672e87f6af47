"""helios-conformance: the conformance harness for FHIR persistence backends.

The public front door: everything a backend author or a suite needs is re-exported
here; the implementation lives in private modules.
"""

from __future__ import annotations

from ._capabilities import (
    AREAS,
    CATALOG,
    Capability,
    CapabilityDeclaration,
    Level,
    UnknownCapability,
    capability,
    check_capability_ids,
)
from ._client import SyncClient
from ._clock import MonotonicClock
from ._contract import (
    Backend,
    BackendConfig,
    BackendFactory,
    BackendInfo,
    HistoryStorage,
    QueryParameters,
    ResourceStorage,
    SearchStorage,
    VersionedStorage,
)
from ._cursor import CursorCodec
from ._data import fixtures_dir, r4_example, r4_resource_types, suites_dir
from ._errors import (
    AccessDenied,
    BackendFailure,
    BackendUnavailable,
    Gone,
    HeliosError,
    InvalidRequest,
    InvalidResource,
    InvalidSearch,
    MultipleMatches,
    NotFound,
    PreconditionFailed,
    Unsupported,
    VersionConflict,
)
from ._history import DEFAULT_HISTORY_COUNT, MAX_HISTORY_COUNT, HistoryWindow, history_window
from ._resource import (
    ID_PATTERN,
    HistoryPage,
    Resource,
    SearchResult,
    StoredResource,
    check_id,
    check_resource_type,
    check_version_id,
    format_instant,
    parse_instant,
    stamp,
    validate_resource,
)
from ._tenancy import (
    RESERVED_TENANT_SEGMENTS,
    Operation,
    TenantContext,
    TenantId,
    TenantPermissions,
    TenantPermissionsBuilder,
)
from ._version import __version__

__all__ = [
    "AREAS",
    "CATALOG",
    "DEFAULT_HISTORY_COUNT",
    "ID_PATTERN",
    "MAX_HISTORY_COUNT",
    "RESERVED_TENANT_SEGMENTS",
    "AccessDenied",
    "Backend",
    "BackendConfig",
    "BackendFactory",
    "BackendFailure",
    "BackendInfo",
    "BackendUnavailable",
    "Capability",
    "CapabilityDeclaration",
    "CursorCodec",
    "Gone",
    "HeliosError",
    "HistoryPage",
    "HistoryStorage",
    "HistoryWindow",
    "InvalidRequest",
    "InvalidResource",
    "InvalidSearch",
    "Level",
    "MonotonicClock",
    "MultipleMatches",
    "NotFound",
    "Operation",
    "PreconditionFailed",
    "QueryParameters",
    "Resource",
    "ResourceStorage",
    "SearchResult",
    "SearchStorage",
    "StoredResource",
    "SyncClient",
    "TenantContext",
    "TenantId",
    "TenantPermissions",
    "TenantPermissionsBuilder",
    "UnknownCapability",
    "Unsupported",
    "VersionConflict",
    "VersionedStorage",
    "__version__",
    "capability",
    "check_capability_ids",
    "check_id",
    "check_resource_type",
    "check_version_id",
    "fixtures_dir",
    "format_instant",
    "history_window",
    "parse_instant",
    "r4_example",
    "r4_resource_types",
    "stamp",
    "suites_dir",
    "validate_resource",
]
