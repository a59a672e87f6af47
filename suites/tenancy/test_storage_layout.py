"""Where tenants' data lives, and who keeps them apart: the storage layouts of multitenancy (FHIR R4 security.html).

A backend lays tenants out in one of three ways, each a capability it declares for
the mode it runs in: shared tables whose rows carry the tenant
(``tenancy.shared_schema``), a schema per tenant, or a database per tenant. With
shared tables, ``tenancy.row_level_security`` says the *database* keeps tenants
apart: a query with no tenant condition at all, run as the application runs its
queries, still sees one tenant's rows. The backend reports its layout through
:class:`~helios_conformance.TenancyInspection` (and proves row-level security
through :class:`~helios_conformance.RowLevelSecurityProbe`); isolation itself is tested on every
read path in ``test_isolation.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from helios_conformance import RowLevelSecurityProbe, SyncClient, TenancyInspection, TenantLocation

SECURITY = "https://hl7.org/fhir/R4/security.html"

ClientFactory = Callable[..., SyncClient]


def _inspection(client: SyncClient) -> Any:
    backend = client.backend
    assert isinstance(backend, TenancyInspection), (
        "a backend declaring a tenancy layout implements TenancyInspection"
    )
    return backend


def _probe(client: SyncClient) -> Any:
    backend = client.backend
    assert isinstance(backend, RowLevelSecurityProbe), (
        "a backend declaring tenancy.row_level_security implements RowLevelSecurityProbe"
    )
    return backend


def _location(client: SyncClient) -> TenantLocation:
    location = client.run(_inspection(client).tenant_location(client.context))
    assert isinstance(location, TenantLocation)
    return location


def _two_tenants_with_data(new_client: ClientFactory) -> tuple[SyncClient, SyncClient]:
    first, second = new_client(), new_client()
    first.create({"resourceType": "Patient", "name": [{"family": "First"}]})
    second.create({"resourceType": "Patient", "name": [{"family": "Second"}]})
    return first, second


@pytest.mark.requires("tenancy.shared_schema", "crud.create")
def test_shared_schema_keeps_every_tenant_in_one_store(new_client: ClientFactory) -> None:
    """Two tenants' data live in the same shared store (https://hl7.org/fhir/R4/security.html)."""
    first, second = _two_tenants_with_data(new_client)
    locations = {_location(first), _location(second)}
    assert {location.kind for location in locations} == {"shared"}
    assert len(locations) == 1, locations


@pytest.mark.requires("tenancy.schema_per_tenant", "crud.create")
def test_schema_per_tenant_gives_each_tenant_its_own_schema(new_client: ClientFactory) -> None:
    """Each tenant has a schema of its own, the same one on every call (https://hl7.org/fhir/R4/security.html)."""
    first, second = _two_tenants_with_data(new_client)
    one, other = _location(first), _location(second)
    assert (one.kind, other.kind) == ("schema", "schema")
    assert one.name != other.name
    assert _location(first) == one


@pytest.mark.requires("tenancy.database_per_tenant", "crud.create")
def test_database_per_tenant_gives_each_tenant_its_own_database(
    new_client: ClientFactory,
) -> None:
    """Each tenant has a database of its own, the same one on every call (https://hl7.org/fhir/R4/security.html)."""
    first, second = _two_tenants_with_data(new_client)
    one, other = _location(first), _location(second)
    assert (one.kind, other.kind) == ("database", "database")
    assert one.name != other.name
    assert _location(first) == one


@pytest.mark.requires("tenancy.row_level_security", "crud.create", "crud.read")
def test_a_query_without_tenant_filter_sees_only_the_callers_tenant(
    new_client: ClientFactory,
) -> None:
    """A query with no tenant condition, run as the application runs its queries, sees only the caller's tenant's rows: the database enforces isolation (https://hl7.org/fhir/R4/security.html)."""
    mine, other = new_client(), new_client()
    my_ids = {
        ("Patient", mine.create({"resourceType": "Patient", "name": [{"family": n}]}).id)
        for n in ("One", "Two")
    }
    their = other.create({"resourceType": "Patient", "name": [{"family": "Three"}]})
    other.create_or_update("Patient", "shared-id", {"resourceType": "Patient", "id": "shared-id"})

    seen = set(mine.run(_probe(mine).ids_seen_without_tenant_filter(mine.context)))
    theirs = set(other.run(_probe(other).ids_seen_without_tenant_filter(other.context)))

    assert seen == my_ids
    assert theirs == {("Patient", their.id), ("Patient", "shared-id")}
