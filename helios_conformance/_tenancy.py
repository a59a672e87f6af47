"""Tenants, tenant contexts and permissions: the first argument of every backend call."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from ._errors import AccessDenied, InvalidRequest

_SEGMENT = re.compile(r"[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?")
MAX_TENANT_DEPTH = 8
MAX_TENANT_ID_LENGTH = 255

RESERVED_TENANT_SEGMENTS = frozenset({"system", "all", "root", "default"})
"""Root segments callers may not use: ``system`` holds shared definitional resources
(issue: tenancy model), ``all``/``root`` would read as cross-tenant wildcards, and
``default`` is the implicit tenant of single-tenant deployments."""


@dataclass(frozen=True, slots=True, order=True)
class TenantId:
    """A hierarchical tenant identifier such as ``acme/research/oncology``.

    Segments are lower-case letters, digits, ``-`` and ``_`` (1 to 64 characters,
    starting and ending with a letter or digit), at most 8 deep, 255 characters in
    all. Construct with :meth:`parse`; the reserved root segments are refused.
    """

    value: str

    def __post_init__(self) -> None:
        _validate(self.value)

    @classmethod
    def parse(cls, value: str) -> TenantId:
        """Validate ``value`` and return the tenant id.

        Raises:
            InvalidRequest: the id is malformed or uses a reserved segment.
        """
        if not isinstance(value, str):
            raise InvalidRequest(f"tenant id must be a string, got {type(value).__name__}")
        return cls(value)

    @classmethod
    def system(cls) -> TenantId:
        """Return the system tenant that holds shared definitional resources."""
        return _SYSTEM

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(self.value.split("/"))

    @property
    def is_system(self) -> bool:
        return self.value == _SYSTEM_VALUE

    @property
    def parent(self) -> TenantId | None:
        """The enclosing tenant, or ``None`` for a root tenant."""
        head, sep, _ = self.value.rpartition("/")
        return TenantId(head) if sep else None

    @property
    def root(self) -> TenantId:
        return TenantId(self.segments[0])

    @property
    def depth(self) -> int:
        return len(self.segments)

    def child(self, segment: str) -> TenantId:
        return TenantId(f"{self.value}/{segment}")

    def is_descendant_of(self, other: TenantId) -> bool:
        """True when ``self`` lies strictly below ``other`` in the hierarchy."""
        return self.value.startswith(other.value + "/")

    def __str__(self) -> str:
        return self.value


def _validate(value: str) -> None:
    if not value:
        raise InvalidRequest("tenant id must not be empty")
    if len(value) > MAX_TENANT_ID_LENGTH:
        raise InvalidRequest(
            f"tenant id is {len(value)} characters long; at most {MAX_TENANT_ID_LENGTH} are allowed"
        )
    segments = value.split("/")
    if len(segments) > MAX_TENANT_DEPTH:
        raise InvalidRequest(
            f"tenant id {value!r} is {len(segments)} levels deep; at most {MAX_TENANT_DEPTH} are allowed"
        )
    for position, segment in enumerate(segments):
        if not _SEGMENT.fullmatch(segment):
            raise InvalidRequest(
                f"tenant id {value!r}: segment {position + 1} ({segment!r}) must be 1-64 of "
                "[a-z0-9_-], starting and ending with a letter or digit"
            )
    if segments[0] in RESERVED_TENANT_SEGMENTS:
        raise InvalidRequest(f"tenant id {value!r} uses the reserved segment {segments[0]!r}")


_SYSTEM_VALUE = "system"
# The system tenant is the one tenant with a reserved id, so it is built without
# going through validation; callers can only obtain it from TenantId.system().
_SYSTEM = object.__new__(TenantId)
object.__setattr__(_SYSTEM, "value", _SYSTEM_VALUE)


class Operation(enum.StrEnum):
    """The operations a tenant permission can allow."""

    CREATE = "create"
    READ = "read"
    UPDATE = "update"
    DELETE = "delete"
    HISTORY = "history"
    SEARCH = "search"
    TRANSACTION = "transaction"
    BULK_EXPORT = "bulk-export"
    BULK_SUBMIT = "bulk-submit"


WRITE_OPERATIONS = frozenset({Operation.CREATE, Operation.UPDATE, Operation.DELETE})
READ_OPERATIONS = frozenset(
    {Operation.READ, Operation.HISTORY, Operation.SEARCH, Operation.BULK_EXPORT}
)


@dataclass(frozen=True, slots=True)
class TenantPermissions:
    """What a caller may do inside its tenant; enforced by the storage layer.

    ``resource_types`` of ``None`` allows every type. ``compartment`` (for example
    ``"Patient/123"``) restricts access to that compartment. ``child_tenants`` allows
    access to tenants below the context's tenant.
    """

    operations: frozenset[Operation] = field(default_factory=lambda: frozenset(Operation))
    resource_types: frozenset[str] | None = None
    compartment: str | None = None
    child_tenants: bool = False

    @classmethod
    def full(cls) -> TenantPermissions:
        """Every operation on every resource type, children included."""
        return cls(frozenset(Operation), None, None, child_tenants=True)

    @classmethod
    def read_only(cls) -> TenantPermissions:
        """Read, history, search and export; no writes."""
        return cls(READ_OPERATIONS, None, None, child_tenants=False)

    @classmethod
    def builder(cls) -> TenantPermissionsBuilder:
        return TenantPermissionsBuilder()

    def allows(self, operation: Operation, resource_type: str | None = None) -> bool:
        if operation not in self.operations:
            return False
        return (
            resource_type is None
            or self.resource_types is None
            or (resource_type in self.resource_types)
        )


class TenantPermissionsBuilder:
    """Fluent construction of :class:`TenantPermissions`, starting from nothing allowed."""

    def __init__(self) -> None:
        self._operations: set[Operation] = set()
        self._resource_types: set[str] | None = None
        self._compartment: str | None = None
        self._child_tenants = False

    def allow(self, *operations: Operation) -> TenantPermissionsBuilder:
        self._operations.update(operations)
        return self

    def allow_all_operations(self) -> TenantPermissionsBuilder:
        self._operations.update(Operation)
        return self

    def only_types(self, resource_types: Iterable[str]) -> TenantPermissionsBuilder:
        self._resource_types = set(resource_types)
        return self

    def in_compartment(self, compartment: str) -> TenantPermissionsBuilder:
        kind, sep, ident = compartment.partition("/")
        if not sep or not kind or not ident:
            raise InvalidRequest(f"compartment must be 'Type/id', got {compartment!r}")
        self._compartment = compartment
        return self

    def with_child_tenants(self, allowed: bool = True) -> TenantPermissionsBuilder:
        self._child_tenants = allowed
        return self

    def build(self) -> TenantPermissions:
        return TenantPermissions(
            frozenset(self._operations),
            None if self._resource_types is None else frozenset(self._resource_types),
            self._compartment,
            self._child_tenants,
        )


@dataclass(frozen=True, slots=True)
class TenantContext:
    """Who is calling and in which tenant: the first argument of every backend call."""

    tenant: TenantId
    permissions: TenantPermissions = field(default_factory=TenantPermissions.full)

    @classmethod
    def of(cls, tenant: str, permissions: TenantPermissions | None = None) -> TenantContext:
        return cls(TenantId.parse(tenant), permissions or TenantPermissions.full())

    def require(self, operation: Operation, resource_type: str | None = None) -> None:
        """Raise :class:`AccessDenied` unless the permissions allow the operation.

        Backends call this before touching storage, so a denied call has no effect.
        """
        if operation not in self.permissions.operations:
            raise AccessDenied(
                f"tenant {self.tenant}: operation {operation.value!r} is not permitted"
            )
        types = self.permissions.resource_types
        if resource_type is not None and types is not None and resource_type not in types:
            raise AccessDenied(
                f"tenant {self.tenant}: operation {operation.value!r} on {resource_type} is not "
                f"permitted (allowed types: {', '.join(sorted(types))})"
            )
