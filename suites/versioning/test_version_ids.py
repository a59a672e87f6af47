"""Store-assigned meta.versionId and meta.lastUpdated (FHIR R4 resource.html#Meta)."""

from __future__ import annotations

from itertools import pairwise

import pytest

from helios_conformance import InvalidResource, StoredResource, SyncClient, parse_instant


def patient(resource_id: str, family: str) -> dict[str, object]:
    return {"resourceType": "Patient", "id": resource_id, "name": [{"family": family}]}


def write_four_versions(client: SyncClient) -> list[StoredResource]:
    """Create a Patient and update it three times; return the four stored versions in order."""
    versions = [client.create({"resourceType": "Patient", "name": [{"family": "V1"}]})]
    for family in ("V2", "V3", "V4"):
        versions.append(client.update("Patient", versions[0].id, patient(versions[0].id, family)))
    return versions


class TestVersionIds:
    pytestmark = pytest.mark.requires("crud.create", "versioning.version_ids")

    def test_create_stores_version_1(self, client: SyncClient) -> None:
        """A created resource is version "1" in both the result and meta.versionId (https://hl7.org/fhir/R4/resource.html#Meta)."""
        stored = client.create({"resourceType": "Patient"})

        assert stored.version_id == "1"
        assert stored.resource is not None
        assert stored.resource["meta"]["versionId"] == "1"

    @pytest.mark.requires("crud.update")
    def test_each_update_adds_one(self, client: SyncClient) -> None:
        """Create then three updates give versions 1, 2, 3 and 4 (https://hl7.org/fhir/R4/http.html#update)."""
        versions = write_four_versions(client)

        assert [v.version_id for v in versions] == ["1", "2", "3", "4"]

    @pytest.mark.requires("crud.update")
    def test_meta_version_id_matches_the_version(self, client: SyncClient) -> None:
        """meta.versionId inside each stored body equals that version's id (https://hl7.org/fhir/R4/resource.html#Meta)."""
        versions = write_four_versions(client)

        assert [v.resource["meta"]["versionId"] for v in versions if v.resource] == [
            "1",
            "2",
            "3",
            "4",
        ]

    @pytest.mark.requires("crud.update", "crud.read")
    def test_etag_is_the_weak_current_version(self, client: SyncClient) -> None:
        """Read after three updates carries the ETag W/"4" (https://hl7.org/fhir/R4/http.html#versioning)."""
        versions = write_four_versions(client)

        assert client.read("Patient", versions[0].id).etag == 'W/"4"'

    @pytest.mark.requires("crud.update")
    def test_last_updated_strictly_increases(self, client: SyncClient) -> None:
        """Each new version's lastUpdated is later than the previous version's (https://hl7.org/fhir/R4/resource.html#Meta)."""
        versions = write_four_versions(client)

        moments = [v.last_updated for v in versions]
        assert all(earlier < later for earlier, later in pairwise(moments))

    @pytest.mark.requires("crud.update")
    def test_meta_last_updated_matches_the_version(self, client: SyncClient) -> None:
        """meta.lastUpdated inside each stored body is that version's lastUpdated instant (https://hl7.org/fhir/R4/resource.html#Meta)."""
        versions = write_four_versions(client)

        for version in versions:
            assert version.resource is not None
            assert parse_instant(version.resource["meta"]["lastUpdated"]) == version.last_updated

    def test_client_supplied_version_id_is_replaced(self, client: SyncClient) -> None:
        """A meta.versionId in a create body is ignored and replaced by "1" (https://hl7.org/fhir/R4/http.html#create)."""
        stored = client.create({"resourceType": "Patient", "meta": {"versionId": "42"}})

        assert stored.version_id == "1"
        assert stored.resource is not None
        assert stored.resource["meta"]["versionId"] == "1"

    def test_client_supplied_last_updated_is_replaced(self, client: SyncClient) -> None:
        """A meta.lastUpdated in a create body is ignored and replaced by the time of the write (https://hl7.org/fhir/R4/http.html#create)."""
        stale = "2001-01-01T00:00:00+00:00"

        stored = client.create({"resourceType": "Patient", "meta": {"lastUpdated": stale}})

        assert stored.last_updated > parse_instant(stale)
        assert stored.resource is not None
        assert parse_instant(stored.resource["meta"]["lastUpdated"]) == stored.last_updated

    @pytest.mark.requires("crud.update")
    def test_version_id_in_an_update_body_is_ignored(self, client: SyncClient) -> None:
        """An update body claiming meta.versionId "42" is stored as version "2" (https://hl7.org/fhir/R4/http.html#update)."""
        created = client.create({"resourceType": "Patient"})

        updated = client.update(
            "Patient",
            created.id,
            {"resourceType": "Patient", "id": created.id, "meta": {"versionId": "42"}},
        )

        assert updated.version_id == "2"
        assert updated.resource is not None
        assert updated.resource["meta"]["versionId"] == "2"

    @pytest.mark.requires("crud.update")
    def test_versions_are_counted_per_resource(self, client: SyncClient) -> None:
        """Updating p1 twice does not advance p2: p2's first update is version 2 (https://hl7.org/fhir/R4/http.html#versioning)."""
        p1 = client.create({"resourceType": "Patient", "name": [{"family": "Busy"}]})
        p2 = client.create({"resourceType": "Patient", "name": [{"family": "Quiet"}]})
        client.update("Patient", p1.id, patient(p1.id, "Busy-2"))
        client.update("Patient", p1.id, patient(p1.id, "Busy-3"))

        assert client.update("Patient", p2.id, patient(p2.id, "Quiet-2")).version_id == "2"

    @pytest.mark.requires("crud.update", "crud.delete")
    def test_delete_takes_the_next_version(self, client: SyncClient) -> None:
        """A delete after create and update is version 3, later than version 2 (https://hl7.org/fhir/R4/http.html#delete)."""
        created = client.create({"resourceType": "Patient"})
        updated = client.update("Patient", created.id, patient(created.id, "Second"))

        deletion = client.delete("Patient", created.id)

        assert deletion is not None
        assert deletion.version_id == "3"
        assert deletion.last_updated > updated.last_updated

    @pytest.mark.requires("crud.update", "crud.validation")
    def test_refused_update_does_not_use_up_a_version(self, client: SyncClient) -> None:
        """An update refused as invalid leaves no gap: the next good update is version 2 (https://hl7.org/fhir/R4/http.html#update)."""
        created = client.create({"resourceType": "Patient"})
        with pytest.raises(InvalidResource):
            client.update("Patient", created.id, {"resourceType": "Patient", "id": "wrong-id"})

        assert client.update("Patient", created.id, patient(created.id, "Second")).version_id == "2"
