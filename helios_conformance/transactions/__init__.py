"""FHIR transactions, batches, conditional interactions and patch, written once.

Backends provide the storage primitive (:class:`~helios_conformance.TransactionStorage`:
``begin`` returning a :class:`~helios_conformance.Transaction`); this package supplies
the FHIR semantics on top of it, so every backend shares them:

- :func:`process_bundle`: transaction Bundles (all or nothing, FHIR processing order,
  ``urn:uuid`` and conditional references) and batch Bundles (R4 http.html#transaction);
- ``conditional_*_in`` and :func:`patch_in`: the conditional interactions and patch
  inside an open transaction;
- :func:`apply_patch`: JSON Patch (RFC 6902) and FHIRPath Patch (R4 fhirpatch.html);
- :class:`FhirTransactionsMixin`: all of the above as backend methods, given ``begin``;
- :class:`ForwardingTransaction`: a transaction's storage calls, each forwarded to
  storage that runs it inside the transaction;
- :class:`TransactionGate`: one transaction at a time per backend, nesting refused.
"""

from __future__ import annotations

from ._bundle import METHODS, process_bundle, status_line
from ._conditional import (
    RESULT_PARAMETERS,
    check_criteria,
    conditional_create_in,
    conditional_delete_in,
    conditional_patch_in,
    conditional_update_in,
    find_matches,
    patch_in,
)
from ._forwarding import ForwardedStorage, ForwardingTransaction
from ._gate import TransactionGate, check_isolation
from ._mixin import UNGATED_METHODS, FhirTransactionsMixin
from ._patch import (
    FHIRPATH_PATCH_OPERATIONS,
    JSON_PATCH_OPERATIONS,
    apply_fhirpath_patch,
    apply_json_patch,
    apply_patch,
)

__all__ = [
    "FHIRPATH_PATCH_OPERATIONS",
    "JSON_PATCH_OPERATIONS",
    "METHODS",
    "RESULT_PARAMETERS",
    "UNGATED_METHODS",
    "FhirTransactionsMixin",
    "ForwardedStorage",
    "ForwardingTransaction",
    "TransactionGate",
    "apply_fhirpath_patch",
    "apply_json_patch",
    "apply_patch",
    "check_criteria",
    "check_isolation",
    "conditional_create_in",
    "conditional_delete_in",
    "conditional_patch_in",
    "conditional_update_in",
    "find_matches",
    "patch_in",
    "process_bundle",
    "status_line",
]
