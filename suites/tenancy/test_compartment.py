"""A compartment restriction (Patient/p1) limits every read and write to that patient's compartment (FHIR R4 compartmentdefinition.html)."""

from __future__ import annotations

from typing import Any

import pytest

from helios_conformance import (
    AccessDenied,
    NotFound,
    SyncClient,
    TenantContext,
    TenantPermissions,
)

COMPARTMENT = "https://hl7.org/fhir/R4/compartmentdefinition.html"

pytestmark = pytest.mark.requires(
    "tenancy.compartment", "crud.update_as_create", "crud.update", "crud.read"
)


def patient(ident: str, family: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": ident, "name": [{"family": family}]}


def observation(ident: str, subject: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": ident,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "1234-5"}]},
        "subject": {"reference": subject},
    }


@pytest.fixture
def restricted(client: SyncClient) -> SyncClient:
    """Seed p1 with Observation o1 and p2 with o2, and a caller restricted to Patient/p1."""
    for resource in (
        patient("p1", "One"),
        patient("p2", "Two"),
        observation("o1", "Patient/p1"),
        observation("o2", "Patient/p2"),
        {"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "Doc"}]},
    ):
        client.create_or_update(resource["resourceType"], resource["id"], resource)
    client.update("Observation", "o2", observation("o2", "Patient/p2"))  # o2 has 2 versions
    permissions = TenantPermissions.builder().allow_all_operations().in_compartment("Patient/p1")
    return client.for_tenant(TenantContext(client.context.tenant, permissions.build()))


def ids(entries: Any) -> list[str]:
    return sorted(f"{e.resource_type}/{e.id}" for e in entries)


class TestReads:
    def test_reads_inside_the_compartment(self, restricted: SyncClient) -> None:
        """Patient/p1 and its Observation o1 are readable (https://hl7.org/fhir/R4/compartmentdefinition.html)."""
        assert restricted.read("Patient", "p1").id == "p1"
        assert restricted.read("Observation", "o1").id == "o1"

    def test_outside_the_compartment_is_not_found(self, restricted: SyncClient) -> None:
        """Patient/p2 and its Observation o2 are NotFound and do not exist for the caller (https://hl7.org/fhir/R4/compartmentdefinition.html)."""
        for kind, ident in (("Patient", "p2"), ("Observation", "o2")):
            with pytest.raises(NotFound):
                restricted.read(kind, ident)
            assert restricted.exists(kind, ident) is False

    @pytest.mark.requires("versioning.vread")
    def test_vread_outside_the_compartment_is_not_found(self, restricted: SyncClient) -> None:
        """Observation/o2 version 1 is NotFound for the caller (https://hl7.org/fhir/R4/compartmentdefinition.html)."""
        with pytest.raises(NotFound):
            restricted.vread("Observation", "o2", "1")

    def test_types_outside_the_compartment_are_denied(self, restricted: SyncClient) -> None:
        """Practitioner is not in the Patient compartment: reading one raises AccessDenied (https://hl7.org/fhir/R4/compartmentdefinition.html)."""
        with pytest.raises(AccessDenied):
            restricted.read("Practitioner", "dr1")

    def test_counts_only_the_compartment(self, restricted: SyncClient) -> None:
        """The caller counts one Observation and two resources in all (https://hl7.org/fhir/R4/compartmentdefinition.html)."""
        assert (restricted.count("Observation"), restricted.count()) == (1, 2)


class TestHistory:
    @pytest.mark.requires("history.type", "history.system")
    def test_type_and_system_history_leave_others_out(self, restricted: SyncClient) -> None:
        """Observation history lists o1 only; system history p1 and o1 only (https://hl7.org/fhir/R4/compartmentdefinition.html)."""
        assert ids(restricted.history_type("Observation").entries) == ["Observation/o1"]
        assert ids(restricted.history_system().entries) == ["Observation/o1", "Patient/p1"]

    @pytest.mark.requires("history.instance")
    def test_instance_history_outside_is_not_found(self, restricted: SyncClient) -> None:
        """The history of Observation/o2 is NotFound for the caller (https://hl7.org/fhir/R4/compartmentdefinition.html)."""
        with pytest.raises(NotFound):
            restricted.history_instance("Observation", "o2")


class TestSearch:
    @pytest.mark.requires("search.param.token")
    def test_search_returns_only_the_compartment(self, restricted: SyncClient) -> None:
        """Observation?code=1234-5 matches o1 and o2, the caller gets o1 and a total of 1 (https://hl7.org/fhir/R4/compartmentdefinition.html)."""
        result = restricted.search("Observation", "code=1234-5&_total=accurate")

        assert (ids(result.entries), result.total) == (["Observation/o1"], 1)

    @pytest.mark.requires("search.chain")
    def test_chains_do_not_resolve_outside(self, restricted: SyncClient) -> None:
        """Observation?subject.family=Two finds nothing: Patient/p2 is invisible (https://hl7.org/fhir/R4/compartmentdefinition.html)."""
        assert restricted.search("Observation", "subject.family=Two").entries == ()

    @pytest.mark.requires("search.include", "search.param.common")
    def test_include_leaves_others_out(self, restricted: SyncClient) -> None:
        """Observation?_id=o1,o2&_include=Observation:subject gives o1 and includes p1 only (https://hl7.org/fhir/R4/compartmentdefinition.html)."""
        result = restricted.search("Observation", "_id=o1,o2&_include=Observation:subject")

        assert (ids(result.entries), ids(result.included)) == (["Observation/o1"], ["Patient/p1"])

    @pytest.mark.requires("search.revinclude", "search.param.common")
    def test_revinclude_leaves_others_out(self, restricted: SyncClient) -> None:
        """Patient?_id=p1,p2&_revinclude=Observation:subject gives p1 and o1 only (https://hl7.org/fhir/R4/compartmentdefinition.html)."""
        result = restricted.search("Patient", "_id=p1,p2&_revinclude=Observation:subject")

        assert (ids(result.entries), ids(result.included)) == (["Patient/p1"], ["Observation/o1"])


class TestWrites:
    @pytest.mark.requires("crud.create")
    def test_create_outside_is_denied(self, restricted: SyncClient, client: SyncClient) -> None:
        """Creating an Observation about Patient/p2 raises AccessDenied and stores nothing (https://hl7.org/fhir/R4/compartmentdefinition.html)."""
        with pytest.raises(AccessDenied):
            restricted.create(observation("x", "Patient/p2"))

        assert client.count("Observation") == 2
        assert restricted.create(observation("x", "Patient/p1")).resource_type == "Observation"

    def test_update_of_a_resource_outside_is_denied(
        self, restricted: SyncClient, client: SyncClient
    ) -> None:
        """Updating Observation/o2 (about p2) raises AccessDenied; it stays at version 2 (https://hl7.org/fhir/R4/compartmentdefinition.html)."""
        with pytest.raises(AccessDenied):
            restricted.update("Observation", "o2", observation("o2", "Patient/p1"))

        assert client.read("Observation", "o2").version_id == "2"

    def test_moving_a_resource_out_is_denied(
        self, restricted: SyncClient, client: SyncClient
    ) -> None:
        """Re-pointing Observation/o1 at Patient/p2 raises AccessDenied; o1 stays at version 1 (https://hl7.org/fhir/R4/compartmentdefinition.html)."""
        with pytest.raises(AccessDenied):
            restricted.update("Observation", "o1", observation("o1", "Patient/p2"))

        assert client.read("Observation", "o1").version_id == "1"

    @pytest.mark.requires("crud.delete")
    def test_delete_outside_is_denied(self, restricted: SyncClient, client: SyncClient) -> None:
        """Deleting Observation/o2 raises AccessDenied; it stays live (https://hl7.org/fhir/R4/compartmentdefinition.html)."""
        with pytest.raises(AccessDenied):
            restricted.delete("Observation", "o2")

        assert client.exists("Observation", "o2") is True


class TestExport:
    @pytest.mark.requires("bulk.export.patient")
    def test_patient_export_holds_only_the_compartment(
        self, restricted: SyncClient, tmp_path: Any
    ) -> None:
        """A patient-level export by the caller contains p1 and o1 only (https://hl7.org/fhir/uv/bulkdata/STU2/export.html)."""
        bulk = restricted.bulk(tmp_path / "exports")

        job = bulk.export("patient")

        assert bulk.exported_ids(job.id) == {"Patient": {"p1"}, "Observation": {"o1"}}
