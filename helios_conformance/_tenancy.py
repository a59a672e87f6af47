"""Tenants, tenant contexts and permissions: the first argument of every backend call.

The tenancy model
=================

**Tenants own their data.** Every resource, version, index row, cursor, job and
custom SearchParameter belongs to exactly one tenant. A context for tenant ``T``
reads and writes ``T``'s data only: the same id in two tenants is two resources, and
no read path (read, vread, exists, count, history, search with chains, ``_has``,
``_include``/``_revinclude``, ``_filter``, cursors, conditional interactions,
transactions, bulk export) returns, counts, matches or modifies another tenant's data.

**Hierarchy.** Tenant ids are paths: ``acme``, ``acme/research``,
``acme/research/oncology``. A tenant's data never includes its children's: reading in
``acme`` does not roll up ``acme/research``. A caller reaches a descendant only by
*addressing* it, with a context derived from its own by
:meth:`TenantContext.for_child` (``ctx.for_child("research")``), which requires
``permissions.child_tenants``. The derived context remembers the tenant it came from
(:attr:`TenantContext.origin`), and :meth:`TenantContext.require` (which every backend
calls before touching storage) refuses it unless its tenant lies below the origin and
the permissions allow child tenants, so a hand-built context cannot climb to a
parent or cross to a sibling. Permissions pass down unchanged.

**The system tenant** (:meth:`TenantId.system`) holds the definitional resources
every tenant shares (:data:`SHARED_DEFINITIONAL_TYPES`: CodeSystem, ValueSet,
SearchParameter, StructureDefinition, ...), and only those. Every tenant may *read*
them (read, vread, history, search) through :meth:`TenantContext.for_system`; no
tenant may write them. Writes need :meth:`TenantContext.system`, which operators
(deployment tooling, not request handlers) construct. Shared definitions are
documents, not configuration: a SearchParameter in the system tenant does not change
how any tenant's data is indexed until that tenant installs it.

**Reserved ids.** ``system``, ``all``, ``root`` and ``default`` cannot start a
caller's tenant id (:meth:`TenantId.parse` refuses them); the system tenant exists
only through :meth:`TenantId.system`.

**Permissions are enforced by storage**, not advised: :meth:`TenantContext.require`
raises :class:`AccessDenied` for an operation, resource type or tenant the
permissions do not allow, and backends call it before any side effect. A caller
restricted to some resource types must name the type to read: ``count()`` of every
type and system-level history are refused (outside the system tenant). A compartment
restriction (``Patient/123``, see :mod:`helios_conformance._compartment`) refuses
types that cannot be in the compartment; within the allowed types the backend hides
resources outside the compartment from every read path (read/vread/history_instance
raise NotFound, exists is false, count/search/history/includes/export leave them
out) and refuses with AccessDenied, writing nothing, a write whose current or new
version lies outside it.
"""

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

SYSTEM_READ_OPERATIONS = frozenset({Operation.READ, Operation.HISTORY, Operation.SEARCH})
"""What a tenant may do in the system tenant through :meth:`TenantContext.for_system`."""

SHARED_DEFINITIONAL_TYPES = frozenset(
    {
        "CapabilityStatement",
        "CodeSystem",
        "CompartmentDefinition",
        "ConceptMap",
        "GraphDefinition",
        "ImplementationGuide",
        "MessageDefinition",
        "NamingSystem",
        "OperationDefinition",
        "SearchParameter",
        "StructureDefinition",
        "StructureMap",
        "TerminologyCapabilities",
        "ValueSet",
    }
)
"""The resource types the system tenant holds: the R4 conformance and terminology
definitions every tenant shares. The system tenant refuses every other type."""


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
    """Who is calling and in which tenant: the first argument of every backend call.

    Attributes:
        tenant: the tenant whose data the call reads and writes.
        permissions: what the caller may do there (enforced by :meth:`require`).
        origin: the tenant the caller was authenticated in, when this context was
            derived from that tenant's by :meth:`for_child` or :meth:`for_system`;
            ``None`` for a context built for its own tenant.
    """

    tenant: TenantId
    permissions: TenantPermissions = field(default_factory=TenantPermissions.full)
    origin: TenantId | None = None

    @classmethod
    def of(cls, tenant: str, permissions: TenantPermissions | None = None) -> TenantContext:
        return cls(TenantId.parse(tenant), permissions or TenantPermissions.full())

    @classmethod
    def system(cls, permissions: TenantPermissions | None = None) -> TenantContext:
        """A context that administers the system tenant (writes shared definitions).

        For operator tooling only: request handlers derive read access with
        :meth:`for_system` instead. Only :data:`SHARED_DEFINITIONAL_TYPES` are accepted.
        """
        return cls(TenantId.system(), permissions or TenantPermissions.full())

    def for_child(self, path: str) -> TenantContext:
        """A context for a tenant below this one, ``path`` relative to it.

        ``TenantContext.of("acme").for_child("research/oncology")`` addresses
        ``acme/research/oncology`` with the same permissions.

        Raises:
            AccessDenied: the permissions do not allow child tenants, or this is the
                system tenant (it has no children).
            InvalidRequest: ``path`` is not one or more valid segments.
        """
        if self.tenant.is_system:
            raise AccessDenied("the system tenant has no child tenants")
        if not self.permissions.child_tenants:
            raise AccessDenied(
                f"tenant {self.tenant}: access to child tenants is not permitted "
                f"(asked for {self.tenant}/{path})"
            )
        if not isinstance(path, str) or not path:
            raise InvalidRequest(f"child tenant path must be a non-empty string, got {path!r}")
        child = TenantId.parse(f"{self.tenant.value}/{path}")
        return TenantContext(child, self.permissions, self.origin or self.tenant)

    def for_system(self) -> TenantContext:
        """A read-only context on the system tenant, for the shared definitions.

        It allows what this context allows of :data:`SYSTEM_READ_OPERATIONS` on
        :data:`SHARED_DEFINITIONAL_TYPES`; no compartment restriction applies there
        (definitions are not patient data).
        """
        if self.tenant.is_system:
            return self
        types = SHARED_DEFINITIONAL_TYPES
        if self.permissions.resource_types is not None:
            types = types & self.permissions.resource_types
        permissions = TenantPermissions(
            self.permissions.operations & SYSTEM_READ_OPERATIONS, types, None, False
        )
        return TenantContext(TenantId.system(), permissions, self.origin or self.tenant)

    def require(self, operation: Operation, resource_type: str | None = None) -> None:
        """Raise :class:`AccessDenied` unless the permissions allow the operation.

        Backends call this before touching storage, so a denied call has no effect.
        Besides the operation and type permissions it enforces the tenancy model: a
        derived context only reaches a descendant of its origin (with child tenants
        allowed) or reads the system tenant; the system tenant holds only shared
        definitional types; a compartment restriction refuses types that cannot be in
        the compartment.

        Raises:
            AccessDenied: the call is not permitted.
            Unsupported: the compartment restriction names a compartment whose
                definition is not available.
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
        if (
            resource_type is None
            and types is not None
            and operation in SYSTEM_READ_OPERATIONS
            and not self.tenant.is_system
        ):
            # count() of every type and system history cannot honour a type list
            # without every backend filtering them; refusing them is the safe reading.
            raise AccessDenied(
                f"tenant {self.tenant}: restricted to {', '.join(sorted(types))}; "
                f"operation {operation.value!r} across every resource type is not permitted"
            )
        self._require_scope(operation, resource_type)

    def require_scope(self, resource_type: str | None = None, *, writing: bool) -> None:
        """Check the tenancy model alone, for a backend that checks operations itself.

        A backend whose database decides the operation (an upsert that is a create or
        an update depending on the stored state) calls this before the write: it
        enforces the reach of a derived context, the system tenant's types and
        read-only rule, and the compartment's types; :meth:`require` does all of it.

        Raises:
            AccessDenied: as :meth:`require`.
        """
        self._require_scope(Operation.UPDATE if writing else Operation.READ, resource_type)

    def _require_scope(self, operation: Operation, resource_type: str | None) -> None:
        if self.origin is not None and self.origin != self.tenant:
            self._require_reach(operation)
        if (
            self.tenant.is_system
            and resource_type is not None
            and resource_type not in SHARED_DEFINITIONAL_TYPES
        ):
            raise AccessDenied(
                f"the system tenant holds shared definitional resources only, not {resource_type}"
            )
        if self.permissions.compartment is not None and resource_type is not None:
            from ._compartment import Compartment

            compartment = Compartment.parse(self.permissions.compartment)
            if resource_type not in compartment.resource_types:
                raise AccessDenied(
                    f"tenant {self.tenant}: restricted to compartment {compartment.reference}, "
                    f"which holds no {resource_type}"
                )

    def _require_reach(self, operation: Operation) -> None:
        origin = self.origin
        assert origin is not None
        if self.tenant.is_system:
            if operation not in SYSTEM_READ_OPERATIONS:
                raise AccessDenied(
                    f"tenant {origin}: the system tenant is read-only for tenants "
                    f"(operation {operation.value!r})"
                )
            return
        if not self.tenant.is_descendant_of(origin):
            raise AccessDenied(
                f"tenant {origin} cannot reach tenant {self.tenant}: only its own child "
                "tenants can be addressed"
            )
        if not self.permissions.child_tenants:
            raise AccessDenied(
                f"tenant {origin}: access to child tenant {self.tenant} is not permitted"
            )
