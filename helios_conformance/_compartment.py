"""Compartment membership (R4 compartmentdefinition.html), shared by every backend.

A tenant permission may restrict a caller to one compartment, for example
``Patient/123``. A resource is *in* that compartment when it is ``Patient/123``
itself, or when one of the parameters the R4 Patient CompartmentDefinition lists for
its type (``subject`` and ``performer`` for Observation, ``link`` for Patient, ...)
holds the relative reference ``Patient/123``. Membership is decided on the index rows
the backend already stores for search, so an SQL backend can enforce it with one
``EXISTS`` over its reference rows (see :meth:`Compartment.parameters` and
:attr:`Compartment.reference`).

Only the Patient CompartmentDefinition is vendored; a restriction to another
compartment (Encounter, Practitioner, RelatedPerson, Device) raises Unsupported.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ._errors import InvalidRequest, Unsupported

if TYPE_CHECKING:
    from ._bulk_contract import ExportScan
    from ._tenancy import TenantContext
    from .search import IndexRow

COMPARTMENT_TYPES = frozenset({"Patient", "Encounter", "RelatedPerson", "Practitioner", "Device"})
"""The compartment types of FHIR R4 (compartmentdefinition.html)."""


@dataclass(frozen=True, slots=True)
class Compartment:
    """One compartment instance, such as ``Patient/123``."""

    kind: str
    id: str

    @classmethod
    def parse(cls, value: str) -> Compartment:
        """Parse ``"Patient/123"``.

        Raises:
            InvalidRequest: not ``Type/id`` with an R4 compartment type.
            Unsupported: a compartment whose CompartmentDefinition is not vendored
                (only Patient is), capability ``tenancy.compartment``.
        """
        return _parse(value)

    @property
    def reference(self) -> str:
        """The relative reference (``Patient/123``) a member's index row holds."""
        return f"{self.kind}/{self.id}"

    @property
    def resource_types(self) -> frozenset[str]:
        """The resource types that can be members (the definition's types with parameters)."""
        return frozenset(_definition(self.kind))

    def parameters(self, resource_type: str) -> tuple[str, ...]:
        """The search parameters linking ``resource_type`` to the compartment (may be empty)."""
        return _definition(self.kind).get(resource_type, ())

    def contains(
        self,
        resource_type: str,
        resource_id: str,
        rows: Mapping[str, Sequence[IndexRow]] | Iterable[IndexRow],
    ) -> bool:
        """Whether a resource is in this compartment.

        Args:
            resource_type: the resource's type.
            resource_id: its id (the compartment's own resource is a member of it).
            rows: its index rows, flat or grouped by parameter code.

        Returns:
            True for the compartment resource itself, or when one of the definition's
            parameters for the type holds the relative reference :attr:`reference`.
        """
        if resource_type == self.kind and resource_id == self.id:
            return True
        parameters = self.parameters(resource_type)
        if not parameters:
            return False
        if isinstance(rows, Mapping):
            candidates: Iterable[IndexRow] = (
                row for code in parameters for row in rows.get(code, ())
            )
        else:
            wanted = frozenset(parameters)
            candidates = (row for row in rows if row.param in wanted)
        return any(self._links(row) for row in candidates)

    def _links(self, row: IndexRow) -> bool:
        # Only relative references name this server's resources; a composite's
        # component rows are not references of the resource itself.
        return (
            row.type == "reference"
            and row.component is None
            and row.ref_type == self.kind
            and row.ref_id == self.id
            and row.exact == self.reference
        )


@functools.cache
def _parse(value: str) -> Compartment:
    kind, sep, ident = value.partition("/")
    if not sep or not kind or not ident or "/" in ident:
        raise InvalidRequest(f"compartment must be 'Type/id', got {value!r}")
    if kind not in COMPARTMENT_TYPES:
        raise InvalidRequest(
            f"compartment {value!r}: {kind} is not a compartment type "
            f"(one of {', '.join(sorted(COMPARTMENT_TYPES))})"
        )
    if kind != "Patient":
        raise Unsupported(
            f"compartment {value!r}: only the Patient CompartmentDefinition is available",
            capability="tenancy.compartment",
        )
    return Compartment(kind, ident)


def _definition(kind: str) -> Mapping[str, tuple[str, ...]]:
    from .search import patient_compartment

    if kind != "Patient":
        raise Unsupported(
            f"only the Patient CompartmentDefinition is available, not {kind}",
            capability="tenancy.compartment",
        )
    return patient_compartment()


def context_compartment(context: TenantContext) -> Compartment | None:
    """The compartment a context is restricted to, or ``None`` when it is not."""
    value = context.permissions.compartment
    return None if value is None else Compartment.parse(value)


def restrict_export_scan(context: TenantContext, scan: ExportScan) -> ExportScan:
    """Narrow a Bulk Data export scan to the context's compartment restriction.

    A backend's ``scan_export`` calls it first; a backend that already filters scans
    by ``scan.compartment`` then enforces the restriction with no other change. The
    result keeps only the restricted patient (or no patient at all when the scan was
    limited to others), with the definition's parameters for the scanned type.
    """
    from ._bulk_contract import PatientCompartment

    compartment = context_compartment(context)
    if compartment is None:
        return scan
    patients = frozenset({compartment.id})
    if scan.compartment is not None and scan.compartment.patient_ids is not None:
        patients &= scan.compartment.patient_ids
    return replace(
        scan,
        compartment=PatientCompartment(compartment.parameters(scan.resource_type), patients),
    )
