"""No read path crosses tenants: an adversarial two-tenant world (FHIR R4 security.html).

Tenant A ("mine", the caller) and tenant B ("other") hold resources with the *same ids*
and overlapping search values; B also holds extra versions and resources that would
change A's answers if any of B's data leaked. Every body carries its tenant in
``implicitRules`` (an element no search parameter indexes), so a leaked resource is
visible in the answer even when its id exists in both tenants.

Each read path is one :class:`ReadPath` in :data:`PATHS`: a probe that asks the
question as A, A's exact answer, and B's answer to the same question (which proves
the world really tells the tenants apart, so the test can fail). After each probe
B's state (every id's current version, and its count) must be unchanged, which
covers the paths that write (conditional interactions, transactions).
A new read path is one more entry in :data:`PATHS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from helios_conformance import (
    HeliosError,
    HistoryPage,
    SearchResult,
    StoredResource,
    SyncClient,
    Unsupported,
)

SECURITY = "https://hl7.org/fhir/R4/security.html"
MARKER = "urn:helios:tenant:"
MINE, OTHER = "A", "B"

ClientFactory = Callable[..., SyncClient]

# -- the two-tenant world ---------------------------------------------------------------


def _tagged(marker: str, resource: dict[str, Any]) -> dict[str, Any]:
    return {**resource, "implicitRules": MARKER + marker}


def _patient(ident: str, family: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": ident, "name": [{"family": family}], **extra}


P1 = {
    "gender": "female",
    "birthDate": "1980-01-01",
    "identifier": [{"system": "urn:mrn", "value": "123"}],
    "generalPractitioner": [{"reference": "Practitioner/dr1"}],
    "managingOrganization": {"reference": "Organization/org1"},
}


def _observation(ident: str, subject: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": ident,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "1234-5"}]},
        "subject": {"reference": subject},
        "performer": [{"reference": "Practitioner/dr1"}],
        "effectiveDateTime": "2020-01-01",
        "valueQuantity": {
            "value": 5,
            "unit": "mg",
            "system": "http://unitsofmeasure.org",
            "code": "mg",
        },
    }


def _risk(ident: str, subject: str) -> dict[str, Any]:
    return {
        "resourceType": "RiskAssessment",
        "id": ident,
        "status": "final",
        "subject": {"reference": subject},
        "prediction": [{"probabilityDecimal": 0.5}],
    }


def _value_set(ident: str) -> dict[str, Any]:
    return {
        "resourceType": "ValueSet",
        "id": ident,
        "url": "http://example.org/vs/shared",
        "status": "active",
    }


def _common() -> list[dict[str, Any]]:
    """What both tenants hold, with the same ids and values."""
    return [
        _patient("p1", "Shared", **P1),
        {"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "Doc"}]},
        {"resourceType": "Organization", "id": "org1", "name": "Clinic"},
        _observation("o1", "Patient/p1"),
        _risk("ra1", "Patient/p1"),
        _value_set("vs1"),
    ]


def _seed(client: SyncClient, marker: str) -> None:
    for resource in _common():
        client.create_or_update(resource["resourceType"], resource["id"], _tagged(marker, resource))
    if marker == MINE:
        # p3 has no Observation in A; B's o2 points at "Patient/p3" (dangling in B).
        lonely = _patient("p3", "Lonely", gender="male", birthDate="1990-01-01")
        client.create_or_update("Patient", "p3", _tagged(marker, lonely))
        return
    renamed = _tagged(marker, _patient("p1", "Bfam", **P1))
    client.update("Patient", "p1", renamed)  # B's p1 has versions 1, 2 and 3
    client.update("Patient", "p1", renamed)
    for resource in (
        _patient("p2", "Shared", **P1),
        _observation("o2", "Patient/p3"),
        _risk("ra2", "Patient/p2"),
        _value_set("vs2"),
    ):
        client.create_or_update(resource["resourceType"], resource["id"], _tagged(marker, resource))


KNOWN = (
    ("Patient", "p1"),
    ("Patient", "p2"),
    ("Patient", "p3"),
    ("Practitioner", "dr1"),
    ("Organization", "org1"),
    ("Observation", "o1"),
    ("Observation", "o2"),
    ("RiskAssessment", "ra1"),
    ("RiskAssessment", "ra2"),
    ("ValueSet", "vs1"),
    ("ValueSet", "vs2"),
)


def _fingerprint(client: SyncClient) -> tuple[int, list[tuple[str, str, str | None]]]:
    """Every known id's current version in a tenant, and how many resources it holds."""
    versions = [
        (kind, ident, client.read(kind, ident).version_id if client.exists(kind, ident) else None)
        for kind, ident in KNOWN
    ]
    return client.count(), versions


# -- normalised answers -----------------------------------------------------------------


def label(stored: StoredResource) -> str:
    """``Type/id/version@tenant``: which tenant's version a path returned."""
    marker = "-"
    if stored.resource is not None:
        marker = str(stored.resource.get("implicitRules", "?")).removeprefix(MARKER)
    return f"{stored.resource_type}/{stored.id}/{stored.version_id}@{marker}"


def labels(entries: Any) -> list[str]:
    return sorted(label(entry) for entry in entries)


def page(result: SearchResult) -> tuple[list[str], list[str]]:
    return labels(result.entries), labels(result.included)


def outcome(call: Callable[[], Any]) -> Any:
    """The answer of a call, or the name of the FHIR error it raised.

    Unsupported propagates: a refused feature is the plugin's business, not an answer.
    """
    try:
        return call()
    except Unsupported:
        raise
    except HeliosError as exc:
        return type(exc).__name__


@dataclass(frozen=True)
class World:
    """The caller (``me``), the other tenant (``peer``) and a scratch directory."""

    me: SyncClient
    peer: SyncClient
    scratch: Any


@dataclass(frozen=True)
class ReadPath:
    """One way of reading (or matching) data, asked as A of a world where B differs."""

    name: str
    requires: tuple[str, ...]
    probe: Callable[[World], Any]
    mine: Any
    other: Any


def search(query: str, resource_type: str) -> Callable[[World], Any]:
    return lambda w: page(w.me.search(resource_type, query))


def every_history_page(first: Callable[[str | None], HistoryPage]) -> list[str]:
    entries: list[StoredResource] = []
    cursor: str | None = None
    for _ in range(100):
        result = first(cursor)
        entries.extend(result.entries)
        cursor = result.next_cursor
        if cursor is None:
            return sorted(label(entry) for entry in entries)
    raise AssertionError("history paging did not end after 100 pages")


def peer_history_cursor(w: World) -> Any:
    """A's presentation of the cursor B got for its own type history."""
    cursor = w.peer.history_type("Patient", count=1).next_cursor
    assert cursor is not None
    return outcome(lambda: labels(w.me.history_type("Patient", count=1, cursor=cursor).entries))


def peer_search_cursor(w: World) -> Any:
    """A's presentation of the cursor B got for ``Patient?_count=1``."""
    cursor = w.peer.search("Patient", "_count=1").next_cursor
    assert cursor is not None
    return outcome(lambda: page(w.me.search("Patient", "_count=1", cursor=cursor)))


def every_search_page(w: World) -> list[str]:
    return sorted(label(e) for p in w.me.search_pages("Patient", "_count=1") for e in p.entries)


def conditional_create(w: World) -> Any:
    stored, created = w.me.conditional_create(
        {"resourceType": "Patient", "name": [{"family": "New"}]}, "family=Bfam"
    )
    return "created" if created else label(stored)


def conditional_update(w: World) -> Any:
    stored, created = w.me.conditional_update(
        {"resourceType": "Patient", "name": [{"family": "Upd"}]}, "family=Bfam"
    )
    return "created" if created else f"updated {stored.resource_type}/{stored.id}"


def conditional_delete(w: World) -> Any:
    return [f"{s.resource_type}/{s.id}" for s in w.me.conditional_delete("Patient", "family=Bfam")]


def conditional_patch(w: World) -> Any:
    patch = [{"op": "replace", "path": "/gender", "value": "other"}]
    return outcome(lambda: label(w.me.conditional_patch("Patient", "family=Bfam", patch)))


def _bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def batch_reads(w: World) -> Any:
    response = w.me.batch(
        _bundle(
            "batch",
            {"request": {"method": "GET", "url": "Patient/p2"}},
            {"request": {"method": "GET", "url": "Patient/p1"}},
        )
    )
    return [
        (
            entry["response"]["status"][:3],
            str(entry.get("resource", {}).get("implicitRules", "-")).removeprefix(MARKER),
        )
        for entry in response["entry"]
    ]


def transaction_conditional_reference(w: World) -> Any:
    """A transaction whose Observation refers to ``Patient?family=Bfam`` (only B has one)."""
    observation = {**_observation("x", "Patient?family=Bfam")}
    del observation["id"]
    bundle = _bundle(
        "transaction",
        {"request": {"method": "POST", "url": "Observation"}, "resource": observation},
    )
    return outcome(lambda: [e["response"]["status"][:3] for e in w.me.transaction(bundle)["entry"]])


def transaction_if_match(w: World) -> Any:
    """A transaction that updates Patient/p2 (only B has one) at If-Match version 1."""
    body = _tagged(MINE, _patient("p2", "Hijack"))
    bundle = _bundle(
        "transaction",
        {"request": {"method": "PUT", "url": "Patient/p2", "ifMatch": 'W/"1"'}, "resource": body},
    )
    return outcome(lambda: [e["response"]["status"][:3] for e in w.me.transaction(bundle)["entry"]])


def transaction_delete(w: World) -> Any:
    """A transaction that deletes Observation/o2 (only B has one)."""
    bundle = _bundle("transaction", {"request": {"method": "DELETE", "url": "Observation/o2"}})
    return outcome(lambda: [e["response"]["status"][:3] for e in w.me.transaction(bundle)["entry"]])


def export(level: str) -> Callable[[World], Any]:
    def probe(w: World) -> Any:
        bulk = w.me.bulk(w.scratch / f"exports-{w.me.context.tenant.value}")
        job = bulk.export(level)
        return sorted(
            f"{r['resourceType']}/{r['id']}@{str(r.get('implicitRules')).removeprefix(MARKER)}"
            for r in bulk.exported(job.id)
        )

    return probe


A_ALL = [
    "Observation/o1/1@A",
    "Organization/org1/1@A",
    "Patient/p1/1@A",
    "Patient/p3/1@A",
    "Practitioner/dr1/1@A",
    "RiskAssessment/ra1/1@A",
    "ValueSet/vs1/1@A",
]
B_ALL = [
    "Observation/o1/1@B",
    "Observation/o2/1@B",
    "Organization/org1/1@B",
    "Patient/p1/1@B",
    "Patient/p1/2@B",
    "Patient/p1/3@B",
    "Patient/p2/1@B",
    "Practitioner/dr1/1@B",
    "RiskAssessment/ra1/1@B",
    "RiskAssessment/ra2/1@B",
    "ValueSet/vs1/1@B",
    "ValueSet/vs2/1@B",
]


def _unversioned(values: list[str]) -> list[str]:
    return sorted({f"{v.split('/')[0]}/{v.split('/')[1]}@{v.split('@')[1]}" for v in values})


P1_A, P3_A, P1_B, P2_B = "Patient/p1/1@A", "Patient/p3/1@A", "Patient/p1/3@B", "Patient/p2/1@B"
O1_A, O1_B, O2_B = "Observation/o1/1@A", "Observation/o1/1@B", "Observation/o2/1@B"

PATHS = [
    # -- CRUD and versions ------------------------------------------------------------
    ReadPath(
        "read-same-id",
        ("crud.read",),
        lambda w: label(w.me.read("Patient", "p1")),
        P1_A,
        P1_B,
    ),
    ReadPath(
        "read-other-only-id",
        ("crud.read",),
        lambda w: outcome(lambda: label(w.me.read("Patient", "p2"))),
        "NotFound",
        P2_B,
    ),
    ReadPath(
        "vread-other-only-version",
        ("versioning.vread",),
        lambda w: outcome(lambda: label(w.me.vread("Patient", "p1", "3"))),
        "NotFound",
        P1_B,
    ),
    ReadPath(
        "vread-same-version",
        ("versioning.vread",),
        lambda w: label(w.me.vread("Patient", "p1", "1")),
        P1_A,
        "Patient/p1/1@B",
    ),
    ReadPath(
        "exists",
        ("crud.read",),
        lambda w: [w.me.exists("Patient", "p2"), w.me.exists("Observation", "o2")],
        [False, False],
        [True, True],
    ),
    ReadPath("count-type", ("crud.read",), lambda w: w.me.count("Observation"), 1, 2),
    ReadPath("count-all", ("crud.read",), lambda w: w.me.count(), 7, 10),
    # -- history ----------------------------------------------------------------------
    ReadPath(
        "history-instance",
        ("history.instance",),
        lambda w: labels(w.me.history_instance("Patient", "p1").entries),
        [P1_A],
        ["Patient/p1/1@B", "Patient/p1/2@B", "Patient/p1/3@B"],
    ),
    ReadPath(
        "history-type",
        ("history.type",),
        lambda w: labels(w.me.history_type("Patient").entries),
        [P1_A, P3_A],
        ["Patient/p1/1@B", "Patient/p1/2@B", "Patient/p1/3@B", P2_B],
    ),
    ReadPath(
        "history-system",
        ("history.system",),
        lambda w: labels(w.me.history_system().entries),
        A_ALL,
        B_ALL,
    ),
    ReadPath(
        "history-instance-pages",
        ("history.instance", "history.paging"),
        lambda w: every_history_page(
            lambda c: w.me.history_instance("Patient", "p1", count=1, cursor=c)
        ),
        [P1_A],
        ["Patient/p1/1@B", "Patient/p1/2@B", "Patient/p1/3@B"],
    ),
    ReadPath(
        "history-type-pages",
        ("history.type", "history.paging"),
        lambda w: every_history_page(lambda c: w.me.history_type("Patient", count=1, cursor=c)),
        [P1_A, P3_A],
        ["Patient/p1/1@B", "Patient/p1/2@B", "Patient/p1/3@B", P2_B],
    ),
    ReadPath(
        "history-system-pages",
        ("history.system", "history.paging"),
        lambda w: every_history_page(lambda c: w.me.history_system(count=2, cursor=c)),
        A_ALL,
        B_ALL,
    ),
    ReadPath(
        "history-cursor-of-other-tenant",
        ("history.type", "history.paging"),
        peer_history_cursor,
        "InvalidSearch",
        ["Patient/p1/3@B"],
    ),
    # -- search, one path per parameter type ------------------------------------------
    ReadPath(
        "search-string",
        ("search.param.string",),
        search("family=Shared", "Patient"),
        ([P1_A], []),
        ([P2_B], []),
    ),
    ReadPath(
        "search-token",
        ("search.param.token",),
        search("identifier=urn:mrn|123", "Patient"),
        ([P1_A], []),
        ([P1_B, P2_B], []),
    ),
    ReadPath(
        "search-date",
        ("search.param.date",),
        search("birthdate=1980-01-01", "Patient"),
        ([P1_A], []),
        ([P1_B, P2_B], []),
    ),
    ReadPath(
        "search-number",
        ("search.param.number",),
        search("probability=0.5", "RiskAssessment"),
        (["RiskAssessment/ra1/1@A"], []),
        (["RiskAssessment/ra1/1@B", "RiskAssessment/ra2/1@B"], []),
    ),
    ReadPath(
        "search-quantity",
        ("search.param.quantity",),
        search("value-quantity=5||mg", "Observation"),
        ([O1_A], []),
        ([O1_B, O2_B], []),
    ),
    ReadPath(
        "search-reference",
        ("search.param.reference",),
        search("subject=Patient/p3", "Observation"),
        ([], []),
        ([O2_B], []),
    ),
    ReadPath(
        "search-uri",
        ("search.param.uri",),
        search("url=http://example.org/vs/shared", "ValueSet"),
        (["ValueSet/vs1/1@A"], []),
        (["ValueSet/vs1/1@B", "ValueSet/vs2/1@B"], []),
    ),
    ReadPath(
        "search-composite",
        ("search.param.composite",),
        search("code-value-quantity=http://loinc.org|1234-5$5||mg", "Observation"),
        ([O1_A], []),
        ([O1_B, O2_B], []),
    ),
    ReadPath(
        "search-id",
        ("search.param.common",),
        search("_id=p2", "Patient"),
        ([], []),
        ([P2_B], []),
    ),
    ReadPath(
        "search-last-updated",
        ("search.param.common",),
        search("_lastUpdated=gt1900-01-01", "Patient"),
        ([P1_A, P3_A], []),
        ([P1_B, P2_B], []),
    ),
    ReadPath(
        "search-total",
        ("search.total", "search.param.token"),
        lambda w: w.me.search("Observation", "code=1234-5&_total=accurate").total,
        1,
        2,
    ),
    ReadPath(
        "search-summary-count",
        ("search.summary_count", "search.param.token"),
        lambda w: w.me.search("Observation", "code=1234-5&_summary=count").total,
        1,
        2,
    ),
    ReadPath(
        "search-chain-other-value",
        ("search.chain",),
        search("subject.family=Bfam", "Observation"),
        ([], []),
        ([O1_B], []),
    ),
    ReadPath(
        "search-chain-own-value",
        ("search.chain",),
        search("subject:Patient.family=Shared", "Observation"),
        ([O1_A], []),
        ([], []),
    ),
    ReadPath(
        "search-has",
        ("search.has",),
        search("_has:Observation:subject:code=1234-5", "Patient"),
        ([P1_A], []),
        ([P1_B], []),
    ),
    ReadPath(
        "search-include",
        ("search.include",),
        search("_id=o1&_include=Observation:subject&_include=Observation:performer", "Observation"),
        ([O1_A], [P1_A, "Practitioner/dr1/1@A"]),
        ([O1_B], [P1_B, "Practitioner/dr1/1@B"]),
    ),
    ReadPath(
        "search-revinclude",
        ("search.revinclude",),
        search("_id=p1,p3&_revinclude=Observation:subject", "Patient"),
        ([P1_A, P3_A], [O1_A]),
        ([P1_B], [O1_B]),
    ),
    ReadPath(
        "search-filter",
        ("search.filter",),
        search('_filter=family eq "Shared" or gender eq "male"', "Patient"),
        ([P1_A, P3_A], []),
        ([P2_B], []),
    ),
    ReadPath(
        "search-offset",
        ("search.paging.offset",),
        search("_count=1&_offset=1", "Patient"),
        ([P3_A], []),
        ([P2_B], []),
    ),
    ReadPath(
        "search-cursor-pages",
        ("search.paging.cursor",),
        every_search_page,
        [P1_A, P3_A],
        [P1_B, P2_B],
    ),
    ReadPath(
        "search-cursor-of-other-tenant",
        ("search.paging.cursor",),
        peer_search_cursor,
        "InvalidSearch",
        ([P2_B], []),
    ),
    # -- conditional interactions: criteria that match only B's data ------------------
    ReadPath(
        "conditional-create",
        ("conditional.create", "search.param.string"),
        conditional_create,
        "created",
        P1_B,
    ),
    ReadPath(
        "conditional-update",
        ("conditional.update", "search.param.string"),
        conditional_update,
        "created",
        "updated Patient/p1",
    ),
    ReadPath(
        "conditional-delete",
        ("conditional.delete", "search.param.string"),
        conditional_delete,
        [],
        ["Patient/p1"],
    ),
    ReadPath(
        "conditional-patch",
        ("conditional.patch", "patch.json_patch", "search.param.string"),
        conditional_patch,
        "NotFound",
        "Patient/p1/4@B",
    ),
    # -- transactions and batches that name B's resources -----------------------------
    ReadPath(
        "batch-read",
        ("transactions.batch",),
        batch_reads,
        [("404", "-"), ("200", MINE)],
        [("200", OTHER), ("200", OTHER)],
    ),
    ReadPath(
        "transaction-conditional-reference",
        ("transactions.bundle", "search.param.string"),
        transaction_conditional_reference,
        "PreconditionFailed",
        ["201"],
    ),
    ReadPath(
        "transaction-if-match",
        ("transactions.bundle", "versioning.if_match"),
        transaction_if_match,
        "NotFound",
        ["200"],
    ),
    ReadPath(
        "transaction-delete",
        ("transactions.bundle", "crud.delete"),
        transaction_delete,
        ["204"],
        ["204"],
    ),
    # -- bulk export -------------------------------------------------------------------
    ReadPath(
        "export-system",
        ("bulk.export.system",),
        export("system"),
        _unversioned(A_ALL),
        _unversioned(B_ALL),
    ),
    ReadPath(
        "export-patient",
        ("bulk.export.patient",),
        export("patient"),
        ["Observation/o1@A", "Patient/p1@A", "Patient/p3@A", "RiskAssessment/ra1@A"],
        [
            "Observation/o1@B",
            "Patient/p1@B",
            "Patient/p2@B",
            "RiskAssessment/ra1@B",
            "RiskAssessment/ra2@B",
        ],
    ),
]


@pytest.fixture
def world(new_client: ClientFactory, tmp_path: Any) -> World:
    me, peer = new_client(), new_client()
    _seed(peer, OTHER)
    _seed(me, MINE)
    return World(me, peer, tmp_path)


class TestIsolation:
    @pytest.mark.parametrize(
        "path",
        [
            pytest.param(
                path,
                id=path.name,
                marks=pytest.mark.requires(
                    "tenancy.isolation",
                    "crud.update_as_create",
                    "crud.update",
                    "crud.read",
                    *path.requires,
                ),
            )
            for path in PATHS
        ],
    )
    def test_path_sees_only_its_own_tenant(self, world: World, path: ReadPath) -> None:
        """Asked by tenant A, the path answers from A's data only, and B's data stays unchanged, though B holds the same ids and values (https://hl7.org/fhir/R4/security.html)."""
        before = _fingerprint(world.peer)

        answer = path.probe(world)

        assert answer == path.mine
        assert _fingerprint(world.peer) == before
        # The same question asked by B gets B's answer: the world tells them apart.
        assert path.probe(World(world.peer, world.peer, world.scratch)) == path.other
