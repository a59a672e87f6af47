"""$export kick-off parameters _type, _since, _until, _typeFilter and _elements (Bulk Data IG export.html#query-parameters)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from helios_conformance import InvalidRequest, InvalidSearch, SyncClient, format_instant
from helios_conformance.bulk import SUBSETTED_TAG, SyncBulk

PARAMETERS = "https://hl7.org/fhir/uv/bulkdata/STU2/export.html#query-parameters"

pytestmark = pytest.mark.requires("bulk.export.system", "crud.create", "crud.update_as_create")


@pytest.fixture
def bulk(client: SyncClient, tmp_path: Any) -> SyncBulk:
    return client.bulk(tmp_path / "exports")


def put(client: SyncClient, resource: dict[str, Any]) -> Any:
    return client.create_or_update(resource["resourceType"], resource["id"], resource)[0]


def observation(ident: str, code: str, status: str = "final") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": ident,
        "status": status,
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
    }


def seed(client: SyncClient) -> None:
    """Two patients, two observations (weight 29463-7, height 8302-2), one organization."""
    put(
        client,
        {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1970-01-01"},
    )
    put(
        client, {"resourceType": "Patient", "id": "p2", "gender": "male", "birthDate": "1980-01-01"}
    )
    put(client, observation("weight", "29463-7"))
    put(client, observation("height", "8302-2", status="preliminary"))
    put(client, {"resourceType": "Organization", "id": "org1", "name": "Acme"})


def pause() -> None:
    # Instants have microsecond precision; a short pause keeps two writes apart on
    # platforms with a coarse clock.
    time.sleep(0.002)


class TestType:
    pytestmark = pytest.mark.requires("bulk.export.type")

    def test_type_limits_the_export_to_the_listed_types(
        self, client: SyncClient, bulk: SyncBulk
    ) -> None:
        """_type=Patient,Organization exports those two types only (PARAMETERS)."""
        seed(client)

        job = bulk.export("system", "_type=Patient,Organization")

        assert bulk.exported_ids(job.id) == {"Patient": {"p1", "p2"}, "Organization": {"org1"}}

    def test_repeated_type_parameters_are_merged(self, client: SyncClient, bulk: SyncBulk) -> None:
        """_type may repeat; the lists are combined (PARAMETERS)."""
        seed(client)

        job = bulk.export("system", "_type=Patient&_type=Observation")

        assert bulk.exported_ids(job.id) == {
            "Patient": {"p1", "p2"},
            "Observation": {"weight", "height"},
        }

    def test_output_follows_the_order_of_type(self, client: SyncClient, bulk: SyncBulk) -> None:
        """The manifest lists the output files in the order the types were requested (PARAMETERS)."""
        seed(client)

        job = bulk.export("system", "_type=Organization,Patient,Observation")

        types = [entry["type"] for entry in bulk.manifest(job.id)["output"]]
        assert types == ["Organization", "Patient", "Observation"]

    def test_a_requested_type_without_resources_has_no_output(
        self, client: SyncClient, bulk: SyncBulk
    ) -> None:
        """A type with nothing to export gets no output entry (PARAMETERS)."""
        seed(client)

        job = bulk.export("system", "_type=Patient,Encounter")

        assert [entry["type"] for entry in bulk.manifest(job.id)["output"]] == ["Patient"]

    def test_unknown_types_are_refused(self, bulk: SyncBulk) -> None:
        """A _type value that is not an R4 resource type is refused at kick-off (PARAMETERS)."""
        with pytest.raises(InvalidRequest, match="_type"):
            bulk.start_export("system", "_type=Patient,Spaceship")


class TestSinceUntil:
    pytestmark = pytest.mark.requires("bulk.export.since", "crud.update")

    def test_since_keeps_resources_changed_after_it(
        self, client: SyncClient, bulk: SyncBulk
    ) -> None:
        """_since keeps resources whose lastUpdated is later than it: p2, not p1 (PARAMETERS)."""
        put(client, {"resourceType": "Patient", "id": "p1"})
        pause()
        boundary = put(client, {"resourceType": "Patient", "id": "p2"}).last_updated
        pause()
        put(client, {"resourceType": "Patient", "id": "p3"})

        job = bulk.export("system", [("_since", format_instant(boundary))])

        # p2 was written exactly at _since: "later than" excludes it.
        assert bulk.exported_ids(job.id) == {"Patient": {"p3"}}

    def test_since_includes_resources_updated_after_it(
        self, client: SyncClient, bulk: SyncBulk
    ) -> None:
        """p1 created before _since but updated after it is exported, at its new version (PARAMETERS)."""
        put(client, {"resourceType": "Patient", "id": "p1"})
        put(client, {"resourceType": "Patient", "id": "p2"})
        pause()
        since = put(client, {"resourceType": "Organization", "id": "marker"}).last_updated
        pause()
        client.update("Patient", "p1", {"resourceType": "Patient", "id": "p1", "active": True})

        job = bulk.export("system", [("_type", "Patient"), ("_since", format_instant(since))])

        [exported] = bulk.exported(job.id)
        assert (exported["id"], exported["meta"]["versionId"]) == ("p1", "2")

    def test_until_keeps_resources_changed_before_it(
        self, client: SyncClient, bulk: SyncBulk
    ) -> None:
        """_until keeps resources last changed strictly before it: p1 only (PARAMETERS)."""
        put(client, {"resourceType": "Patient", "id": "p1"})
        pause()
        until = put(client, {"resourceType": "Patient", "id": "p2"}).last_updated

        job = bulk.export("system", [("_until", format_instant(until))])

        assert bulk.exported_ids(job.id) == {"Patient": {"p1"}}

    def test_until_exports_the_state_before_it(self, client: SyncClient, bulk: SyncBulk) -> None:
        """p1 updated after _until is exported as it was before _until, version 1 (PARAMETERS)."""
        put(client, {"resourceType": "Patient", "id": "p1", "active": False})
        pause()
        until = put(client, {"resourceType": "Organization", "id": "marker"}).last_updated
        pause()
        client.update("Patient", "p1", {"resourceType": "Patient", "id": "p1", "active": True})

        job = bulk.export("system", [("_type", "Patient"), ("_until", format_instant(until))])

        [exported] = bulk.exported(job.id)
        assert (exported["meta"]["versionId"], exported["active"]) == ("1", False)

    def test_since_and_until_select_a_window(self, client: SyncClient, bulk: SyncBulk) -> None:
        """_since=t1 and _until=t3 keep the resource written at t2 only (PARAMETERS)."""
        t1 = put(client, {"resourceType": "Patient", "id": "p1"}).last_updated
        pause()
        put(client, {"resourceType": "Patient", "id": "p2"})
        pause()
        t3 = put(client, {"resourceType": "Patient", "id": "p3"}).last_updated

        job = bulk.export(
            "system", [("_since", format_instant(t1)), ("_until", format_instant(t3))]
        )

        assert bulk.exported_ids(job.id) == {"Patient": {"p2"}}

    def test_until_not_after_since_is_refused(self, bulk: SyncBulk) -> None:
        """An empty window (_until at or before _since) is refused at kick-off (PARAMETERS)."""
        with pytest.raises(InvalidRequest, match="_until"):
            bulk.start_export(
                "system",
                [("_since", "2024-01-02T00:00:00Z"), ("_until", "2024-01-01T00:00:00Z")],
            )

    @pytest.mark.parametrize("value", ["yesterday", "2024-01-01T00:00:00"])
    def test_since_must_be_an_instant_with_a_zone(self, bulk: SyncBulk, value: str) -> None:
        """_since is a FHIR instant; text or a time without a zone is refused (PARAMETERS)."""
        with pytest.raises(InvalidRequest, match="_since"):
            bulk.start_export("system", [("_since", value)])


class TestTypeFilter:
    pytestmark = pytest.mark.requires("bulk.export.type_filter", "bulk.export.type")

    def test_type_filter_selects_matching_resources(
        self, client: SyncClient, bulk: SyncBulk
    ) -> None:
        """_typeFilter=Observation?code=...|29463-7 keeps the weight, not the height (PARAMETERS)."""
        seed(client)

        job = bulk.export(
            "system",
            [
                ("_type", "Observation"),
                ("_typeFilter", "Observation?code=http://loinc.org|29463-7"),
            ],
        )

        assert bulk.exported_ids(job.id) == {"Observation": {"weight"}}

    def test_type_filters_of_one_type_are_ored(self, client: SyncClient, bulk: SyncBulk) -> None:
        """Two _typeFilters for Patient keep resources matching either (PARAMETERS)."""
        seed(client)

        job = bulk.export(
            "system",
            [
                ("_type", "Patient"),
                ("_typeFilter", "Patient?gender=female&birthdate=lt1960"),
                ("_typeFilter", "Patient?gender=male"),
            ],
        )

        # p1 is female but born 1970, so only the second filter (p2) matches.
        assert bulk.exported_ids(job.id) == {"Patient": {"p2"}}

    def test_types_without_a_filter_are_exported_whole(
        self, client: SyncClient, bulk: SyncBulk
    ) -> None:
        """A filter on Observation does not restrict Patient (PARAMETERS)."""
        seed(client)

        job = bulk.export(
            "system",
            [("_type", "Patient,Observation"), ("_typeFilter", "Observation?status=preliminary")],
        )

        assert bulk.exported_ids(job.id) == {"Patient": {"p1", "p2"}, "Observation": {"height"}}

    def test_a_filter_for_a_type_outside_type_is_refused(self, bulk: SyncBulk) -> None:
        """A _typeFilter on a type not listed in _type is refused at kick-off (PARAMETERS)."""
        with pytest.raises(InvalidRequest, match="_typeFilter"):
            bulk.start_export(
                "system", [("_type", "Patient"), ("_typeFilter", "Observation?status=final")]
            )

    def test_an_unknown_search_parameter_is_refused_at_kick_off(self, bulk: SyncBulk) -> None:
        """A _typeFilter with an unknown search parameter is refused before a job exists (PARAMETERS)."""
        with pytest.raises(InvalidSearch, match="colour"):
            bulk.start_export(
                "system", [("_type", "Patient"), ("_typeFilter", "Patient?colour=blue")]
            )
        assert bulk.export_jobs() == ()

    def test_result_parameters_are_refused_in_a_filter(self, bulk: SyncBulk) -> None:
        """_count and the like shape results; inside a _typeFilter they are refused (PARAMETERS)."""
        with pytest.raises(InvalidRequest, match="_count"):
            bulk.start_export("system", [("_type", "Patient"), ("_typeFilter", "Patient?_count=1")])

    def test_a_filter_without_a_query_is_refused(self, bulk: SyncBulk) -> None:
        """A _typeFilter value must be Type?search (PARAMETERS)."""
        with pytest.raises(InvalidRequest, match="Type\\?search"):
            bulk.start_export("system", [("_typeFilter", "Patient")])


class TestElements:
    pytestmark = pytest.mark.requires("bulk.export.elements", "bulk.export.type")

    def test_elements_keep_listed_and_mandatory_elements(
        self, client: SyncClient, bulk: SyncBulk
    ) -> None:
        """_elements=gender keeps resourceType, id, meta and gender; birthDate is dropped (PARAMETERS)."""
        seed(client)

        job = bulk.export("system", "_type=Patient&_elements=gender")

        for exported in bulk.exported(job.id):
            assert set(exported) == {"resourceType", "id", "meta", "gender"}

    def test_subsetted_resources_are_tagged(self, client: SyncClient, bulk: SyncBulk) -> None:
        """Every subsetted resource carries the SUBSETTED tag (R4 search.html#elements)."""
        seed(client)

        job = bulk.export("system", "_type=Patient&_elements=gender")

        for exported in bulk.exported(job.id):
            assert SUBSETTED_TAG in exported["meta"]["tag"]

    def test_typed_elements_apply_to_their_type_only(
        self, client: SyncClient, bulk: SyncBulk
    ) -> None:
        """_elements=Patient.gender subsets Patients; Observations are exported whole and untagged (PARAMETERS)."""
        seed(client)

        job = bulk.export("system", "_type=Patient,Observation&_elements=Patient.gender")

        patients = bulk.exported(job.id, "Patient")
        observations = bulk.exported(job.id, "Observation")
        assert {frozenset(p) for p in patients} == {
            frozenset({"resourceType", "id", "meta", "gender"})
        }
        assert all("code" in o and "tag" not in o["meta"] for o in observations)
        assert {o["id"] for o in observations} == {"weight", "height"}

    def test_malformed_elements_are_refused(self, bulk: SyncBulk) -> None:
        """An _elements entry deeper than Type.name is refused (PARAMETERS)."""
        with pytest.raises(InvalidRequest, match="_elements"):
            bulk.start_export("system", "_elements=Patient.name.family")
