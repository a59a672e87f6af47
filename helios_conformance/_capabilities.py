"""The capability catalog: one stable dotted id per feature row of the matrix.

Ids and their areas are public API (renaming one is a breaking change). A backend
declares the ids it supports and may mark others as planned; unknown ids are refused
when the backend loads, and suites gate every test on them with
``@pytest.mark.requires("<id>", ...)``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

R4 = "https://hl7.org/fhir/R4/"
BULK = "https://hl7.org/fhir/uv/bulkdata/STU2/"


class Level(enum.StrEnum):
    """How strongly the project expects a backend to support a capability."""

    SHALL = "SHALL"
    SHOULD = "SHOULD"
    MAY = "MAY"


@dataclass(frozen=True, slots=True)
class Capability:
    """One row of the capability matrix."""

    id: str
    title: str
    area: str
    level: Level
    spec_url: str


class UnknownCapability(ValueError):
    """A capability id that is not in the catalog."""

    def __init__(self, unknown: Iterable[str], *, where: str) -> None:
        self.unknown = tuple(sorted(unknown))
        super().__init__(
            f"{where}: unknown capability id(s) {', '.join(self.unknown)}; "
            "see helios_conformance.CATALOG for the valid ids"
        )


# (id, title, level, spec page) grouped by area; the order here is the matrix order.
_ROWS: tuple[tuple[str, tuple[tuple[str, str, Level, str], ...]], ...] = (
    (
        "CRUD",
        (
            (
                "crud.create",
                "create with a server-assigned id",
                Level.SHALL,
                R4 + "http.html#create",
            ),
            (
                "crud.read",
                "read the current version (read, exists, count)",
                Level.SHALL,
                R4 + "http.html#read",
            ),
            ("crud.update", "update an existing resource", Level.SHALL, R4 + "http.html#update"),
            (
                "crud.update_as_create",
                "update as create (client-assigned id)",
                Level.MAY,
                R4 + "http.html#upsert",
            ),
            ("crud.delete", "delete", Level.SHALL, R4 + "http.html#delete"),
            (
                "crud.validation",
                "refuse malformed bodies and ids, storing nothing",
                Level.SHALL,
                R4 + "http.html#create",
            ),
        ),
    ),
    (
        "Versioning",
        (
            (
                "versioning.version_ids",
                "store-assigned versionId and lastUpdated",
                Level.SHALL,
                R4 + "resource.html#Meta",
            ),
            ("versioning.vread", "vread a specific version", Level.SHOULD, R4 + "http.html#vread"),
            (
                "versioning.if_match",
                "optimistic locking (expected version / If-Match)",
                Level.SHOULD,
                R4 + "http.html#concurrency",
            ),
        ),
    ),
    (
        "History",
        (
            ("history.instance", "instance history", Level.SHOULD, R4 + "http.html#history"),
            ("history.type", "type history", Level.SHOULD, R4 + "http.html#history"),
            ("history.system", "system history", Level.MAY, R4 + "http.html#history"),
            (
                "history.deletes",
                "deletions kept as versions (history, vread, re-create)",
                Level.SHOULD,
                R4 + "http.html#delete",
            ),
            (
                "history.filters",
                "history _since and before",
                Level.SHOULD,
                R4 + "http.html#history",
            ),
            (
                "history.paging",
                "history _count and paging, newest first",
                Level.SHOULD,
                R4 + "http.html#history",
            ),
        ),
    ),
    (
        "Search: parameter types",
        (
            (
                "search.param.common",
                "Resource parameters (_id, _lastUpdated, _tag, _profile, _security, _source)",
                Level.SHALL,
                R4 + "search.html#all",
            ),
            ("search.param.string", "string parameters", Level.SHALL, R4 + "search.html#string"),
            ("search.param.token", "token parameters", Level.SHALL, R4 + "search.html#token"),
            ("search.param.date", "date parameters", Level.SHALL, R4 + "search.html#date"),
            ("search.param.number", "number parameters", Level.SHOULD, R4 + "search.html#number"),
            (
                "search.param.quantity",
                "quantity parameters",
                Level.SHOULD,
                R4 + "search.html#quantity",
            ),
            (
                "search.param.reference",
                "reference parameters",
                Level.SHALL,
                R4 + "search.html#reference",
            ),
            ("search.param.uri", "uri parameters", Level.SHOULD, R4 + "search.html#uri"),
            (
                "search.param.composite",
                "composite parameters",
                Level.MAY,
                R4 + "search.html#composite",
            ),
            (
                "search.param.custom",
                "custom SearchParameter registered at runtime",
                Level.MAY,
                R4 + "searchparameter.html",
            ),
        ),
    ),
    (
        "Search: modifiers",
        (
            ("search.modifier.exact", ":exact", Level.SHOULD, R4 + "search.html#string"),
            ("search.modifier.contains", ":contains", Level.SHOULD, R4 + "search.html#string"),
            ("search.modifier.text", ":text", Level.SHOULD, R4 + "search.html#token"),
            ("search.modifier.not", ":not", Level.SHOULD, R4 + "search.html#token"),
            ("search.modifier.missing", ":missing", Level.SHOULD, R4 + "search.html#modifiers"),
            ("search.modifier.above", ":above (uri)", Level.MAY, R4 + "search.html#uri"),
            ("search.modifier.below", ":below (uri)", Level.MAY, R4 + "search.html#uri"),
            ("search.modifier.identifier", ":identifier", Level.MAY, R4 + "search.html#reference"),
            (
                "search.modifier.type",
                ":[type] on references",
                Level.SHOULD,
                R4 + "search.html#reference",
            ),
            ("search.modifier.of_type", ":of-type", Level.MAY, R4 + "search.html#token"),
            ("search.modifier.code_text", ":code-text", Level.MAY, R4 + "search.html#token"),
            (
                "search.modifier.text_advanced",
                ":text-advanced",
                Level.MAY,
                R4 + "search.html#token",
            ),
            ("search.modifier.in", ":in (terminology)", Level.MAY, R4 + "search.html#token"),
            (
                "search.modifier.not_in",
                ":not-in (terminology)",
                Level.MAY,
                R4 + "search.html#token",
            ),
            (
                "search.modifier.subsumption",
                ":above/:below on tokens (terminology)",
                Level.MAY,
                R4 + "search.html#token",
            ),
        ),
    ),
    (
        "Search: prefixes",
        tuple(
            (f"search.prefix.{prefix}", f"prefix {prefix}", level, R4 + "search.html#prefix")
            for prefix, level in (
                ("eq", Level.SHALL),
                ("ne", Level.SHOULD),
                ("gt", Level.SHALL),
                ("lt", Level.SHALL),
                ("ge", Level.SHALL),
                ("le", Level.SHALL),
                ("sa", Level.MAY),
                ("eb", Level.MAY),
                ("ap", Level.MAY),
            )
        ),
    ),
    (
        "Search: special parameters and result control",
        (
            ("search.text", "_text (narrative full text)", Level.MAY, R4 + "search.html#text"),
            (
                "search.content",
                "_content (whole-resource full text)",
                Level.MAY,
                R4 + "search.html#content",
            ),
            ("search.filter", "_filter", Level.MAY, R4 + "search_filter.html"),
            ("search.count", "_count page size", Level.SHALL, R4 + "search.html#count"),
            ("search.summary_count", "_summary=count", Level.SHOULD, R4 + "search.html#summary"),
            ("search.total", "_total", Level.SHOULD, R4 + "search.html#total"),
            ("search.elements", "_elements", Level.MAY, R4 + "search.html#elements"),
            (
                "search.summary",
                "_summary (true, text, data)",
                Level.MAY,
                R4 + "search.html#summary",
            ),
        ),
    ),
    (
        "Search: composition",
        (
            ("search.chain", "chained parameters", Level.SHOULD, R4 + "search.html#chaining"),
            ("search.has", "reverse chaining (_has)", Level.MAY, R4 + "search.html#has"),
            ("search.include", "_include", Level.SHOULD, R4 + "search.html#include"),
            ("search.include.iterate", "_include:iterate", Level.MAY, R4 + "search.html#include"),
            ("search.revinclude", "_revinclude", Level.SHOULD, R4 + "search.html#revinclude"),
            ("search.sort.single", "_sort on one key", Level.SHOULD, R4 + "search.html#sort"),
            ("search.sort.multi", "_sort on several keys", Level.MAY, R4 + "search.html#sort"),
            ("search.paging.offset", "offset pagination", Level.SHOULD, R4 + "http.html#paging"),
            (
                "search.paging.cursor",
                "cursor (keyset) pagination",
                Level.MAY,
                R4 + "http.html#paging",
            ),
        ),
    ),
    (
        "Transactions and batches",
        (
            (
                "transactions.api",
                "begin / commit / rollback",
                Level.SHOULD,
                R4 + "http.html#transaction",
            ),
            (
                "transactions.bundle",
                "transaction Bundles (atomic)",
                Level.SHOULD,
                R4 + "http.html#transaction",
            ),
            ("transactions.batch", "batch Bundles", Level.SHOULD, R4 + "http.html#transaction"),
        ),
    ),
    (
        "Conditional operations",
        (
            (
                "conditional.create",
                "conditional create (If-None-Exist)",
                Level.SHOULD,
                R4 + "http.html#ccreate",
            ),
            (
                "conditional.update",
                "conditional update",
                Level.SHOULD,
                R4 + "http.html#cond-update",
            ),
            ("conditional.delete", "conditional delete", Level.MAY, R4 + "http.html#delete"),
            ("conditional.patch", "conditional patch", Level.MAY, R4 + "http.html#patch"),
        ),
    ),
    (
        "Patch",
        (
            ("patch.json_patch", "JSON Patch (RFC 6902)", Level.SHOULD, R4 + "http.html#patch"),
            ("patch.fhirpath_patch", "FHIRPath Patch", Level.MAY, R4 + "fhirpatch.html"),
        ),
    ),
    (
        "Concurrency",
        (
            (
                "concurrency.conditional_create",
                "concurrent conditional creates yield one resource",
                Level.SHOULD,
                R4 + "http.html#ccreate",
            ),
            (
                "concurrency.optimistic_locking",
                "concurrent If-Match updates: one wins",
                Level.SHOULD,
                R4 + "http.html#concurrency",
            ),
            (
                "concurrency.transactions",
                "concurrent transactions never interleave",
                Level.SHOULD,
                R4 + "http.html#trules",
            ),
            (
                "concurrency.version_sequence",
                "version ids never repeat or skip under concurrency",
                Level.SHOULD,
                R4 + "http.html#versioning",
            ),
        ),
    ),
    (
        "Multitenancy",
        (
            (
                "tenancy.shared_schema",
                "shared schema (tenant column)",
                Level.MAY,
                R4 + "security.html",
            ),
            ("tenancy.database_per_tenant", "database per tenant", Level.MAY, R4 + "security.html"),
            ("tenancy.schema_per_tenant", "schema per tenant", Level.MAY, R4 + "security.html"),
            (
                "tenancy.row_level_security",
                "row-level security enforced by the database",
                Level.MAY,
                R4 + "security.html",
            ),
            ("tenancy.hierarchy", "hierarchical tenants", Level.MAY, R4 + "security.html"),
            (
                "tenancy.permissions",
                "operation and type permissions enforced",
                Level.SHOULD,
                R4 + "security.html",
            ),
            (
                "tenancy.compartment",
                "compartment restriction enforced",
                Level.MAY,
                R4 + "compartmentdefinition.html",
            ),
            (
                "tenancy.isolation",
                "no read path crosses tenants",
                Level.SHALL,
                R4 + "security.html",
            ),
        ),
    ),
    (
        "Bulk data",
        (
            ("bulk.export.system", "system-level $export", Level.SHOULD, BULK + "export.html"),
            ("bulk.export.patient", "patient-level $export", Level.SHOULD, BULK + "export.html"),
            ("bulk.export.group", "group-level $export", Level.SHOULD, BULK + "export.html"),
            (
                "bulk.export.type",
                "$export _type",
                Level.SHOULD,
                BULK + "export.html#query-parameters",
            ),
            (
                "bulk.export.since",
                "$export _since / _until",
                Level.SHOULD,
                BULK + "export.html#query-parameters",
            ),
            (
                "bulk.export.type_filter",
                "$export _typeFilter",
                Level.MAY,
                BULK + "export.html#query-parameters",
            ),
            (
                "bulk.export.elements",
                "$export _elements",
                Level.MAY,
                BULK + "export.html#query-parameters",
            ),
            (
                "bulk.export.jobs",
                "export job lifecycle (status, cancel, resume)",
                Level.SHOULD,
                BULK + "export.html#bulk-data-status-request",
            ),
            ("bulk.submit", "bulk submit", Level.MAY, BULK + "index.html"),
            (
                "bulk.submit.rollback",
                "bulk submit abort rolls back",
                Level.MAY,
                BULK + "index.html",
            ),
        ),
    ),
)

CATALOG: tuple[Capability, ...] = tuple(
    Capability(cap_id, title, area, level, url)
    for area, rows in _ROWS
    for cap_id, title, level, url in rows
)
"""Every capability, in matrix order."""

AREAS: tuple[str, ...] = tuple(area for area, _ in _ROWS)

_BY_ID = {capability.id: capability for capability in CATALOG}


def capability(capability_id: str) -> Capability:
    """Look up one capability by id.

    Raises:
        UnknownCapability: the id is not in the catalog.
    """
    try:
        return _BY_ID[capability_id]
    except KeyError:
        raise UnknownCapability([capability_id], where="capability lookup") from None


def check_capability_ids(ids: Iterable[str], *, where: str) -> frozenset[str]:
    """Return the ids as a frozenset, or raise :class:`UnknownCapability` naming the strangers."""
    given = frozenset(ids)
    unknown = given - _BY_ID.keys()
    if unknown:
        raise UnknownCapability(unknown, where=where)
    return given


@dataclass(frozen=True, slots=True)
class CapabilityDeclaration:
    """What a backend claims: ``supported`` ids, and ``planned`` ids it does not yet support."""

    supported: frozenset[str]
    planned: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        check_capability_ids(self.supported, where="declared capabilities")
        check_capability_ids(self.planned, where="planned capabilities")
        both = self.supported & self.planned
        if both:
            raise ValueError(f"capabilities both supported and planned: {', '.join(sorted(both))}")

    @classmethod
    def of(cls, supported: Iterable[str], planned: Iterable[str] = ()) -> CapabilityDeclaration:
        return cls(frozenset(supported), frozenset(planned))

    def supports(self, *ids: str) -> bool:
        return all(cap_id in self.supported for cap_id in ids)

    def missing(self, ids: Iterable[str]) -> tuple[str, ...]:
        """The ids of ``ids`` not declared as supported, in the order given."""
        return tuple(cap_id for cap_id in ids if cap_id not in self.supported)
