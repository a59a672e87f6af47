"""Parameters for all resources: _id, _lastUpdated, _tag, _profile, _security, _source; and what a search sees (FHIR R4 search.html#all)."""

from __future__ import annotations

from typing import Any

import pytest

from helios_conformance import SyncClient, format_instant

TAGS = "http://example.org/fhir/tags"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"


def patient(resource_id: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": resource_id, **fields}


def put(client: SyncClient, *resources: dict[str, Any]) -> None:
    for resource in resources:
        client.create_or_update(resource["resourceType"], resource["id"], resource)


def ids(client: SyncClient, resource_type: str, query: str | list[tuple[str, str]]) -> set[str]:
    return set(client.search(resource_type, query).ids)


class TestId:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.param.common")

    def test_id_matches_one_resource(self, client: SyncClient) -> None:
        """_id=p2 finds Patient/p2 only (https://hl7.org/fhir/R4/search.html#id)."""
        put(client, patient("p1"), patient("p2"), patient("p3"))

        assert client.search("Patient", "_id=p2").ids == ("p2",)

    def test_comma_separated_ids_are_alternatives(self, client: SyncClient) -> None:
        """_id=p1,p3 finds Patients p1 and p3 (https://hl7.org/fhir/R4/search.html#id)."""
        put(client, patient("p1"), patient("p2"), patient("p3"))

        assert ids(client, "Patient", "_id=p1,p3") == {"p1", "p3"}

    def test_unknown_id_matches_nothing(self, client: SyncClient) -> None:
        """_id=nobody finds nothing (https://hl7.org/fhir/R4/search.html#id)."""
        put(client, patient("p1"))

        assert ids(client, "Patient", "_id=nobody") == set()

    def test_id_is_not_matched_by_prefix(self, client: SyncClient) -> None:
        """_id=p1 does not find p10 (https://hl7.org/fhir/R4/search.html#id)."""
        put(client, patient("p1"), patient("p10"))

        assert ids(client, "Patient", "_id=p1") == {"p1"}

    def test_id_is_scoped_to_the_searched_type(self, client: SyncClient) -> None:
        """Patient?_id=shared does not find Practitioner/shared (https://hl7.org/fhir/R4/search.html#id)."""
        put(client, {"resourceType": "Practitioner", "id": "shared"})

        assert ids(client, "Patient", "_id=shared") == set()


class TestLastUpdated:
    pytestmark = pytest.mark.requires(
        "crud.update_as_create", "search.param.common", "versioning.version_ids"
    )

    def write_three(self, client: SyncClient) -> list[str]:
        """Write p1, p2, p3 in that order and return their lastUpdated instants as FHIR strings."""
        instants = []
        for resource_id in ("p1", "p2", "p3"):
            stored, _ = client.create_or_update("Patient", resource_id, patient(resource_id))
            instants.append(format_instant(stored.last_updated))
        return instants

    @pytest.mark.requires("search.prefix.ge")
    def test_ge_includes_the_boundary(self, client: SyncClient) -> None:
        """_lastUpdated=ge<p2's instant> finds p2 and p3 (https://hl7.org/fhir/R4/search.html#lastUpdated)."""
        _, second, _ = self.write_three(client)

        assert ids(client, "Patient", [("_lastUpdated", f"ge{second}")]) == {"p2", "p3"}

    @pytest.mark.requires("search.prefix.lt")
    def test_lt_excludes_the_boundary(self, client: SyncClient) -> None:
        """_lastUpdated=lt<p2's instant> finds p1 only (https://hl7.org/fhir/R4/search.html#lastUpdated)."""
        _, second, _ = self.write_three(client)

        assert ids(client, "Patient", [("_lastUpdated", f"lt{second}")]) == {"p1"}

    def test_eq_matches_the_exact_instant(self, client: SyncClient) -> None:
        """_lastUpdated=<p2's instant> finds p2 only (https://hl7.org/fhir/R4/search.html#lastUpdated)."""
        _, second, _ = self.write_three(client)

        assert ids(client, "Patient", [("_lastUpdated", second)]) == {"p2"}

    @pytest.mark.requires("crud.update", "search.prefix.gt")
    def test_update_moves_last_updated(self, client: SyncClient) -> None:
        """After updating p1, _lastUpdated=gt<p3's instant> finds p1 (https://hl7.org/fhir/R4/search.html#lastUpdated)."""
        _, _, third = self.write_three(client)
        client.update("Patient", "p1", patient("p1", active=True))

        assert ids(client, "Patient", [("_lastUpdated", f"gt{third}")]) == {"p1"}


class TestMetaParameters:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.param.common")

    def test_tag_with_system_and_code(self, client: SyncClient) -> None:
        """_tag=<tags>|vip finds the Patient tagged vip, not one tagged staff (https://hl7.org/fhir/R4/search.html#tag)."""
        put(
            client,
            patient("vip", meta={"tag": [{"system": TAGS, "code": "vip"}]}),
            patient("staff", meta={"tag": [{"system": TAGS, "code": "staff"}]}),
            patient("untagged"),
        )

        assert ids(client, "Patient", f"_tag={TAGS}|vip") == {"vip"}

    def test_tag_code_alone(self, client: SyncClient) -> None:
        """_tag=vip finds a vip tag whatever its system (https://hl7.org/fhir/R4/search.html#tag)."""
        put(
            client,
            patient("ours", meta={"tag": [{"system": TAGS, "code": "vip"}]}),
            patient("theirs", meta={"tag": [{"system": "urn:other", "code": "vip"}]}),
            patient("untagged"),
        )

        assert ids(client, "Patient", "_tag=vip") == {"ours", "theirs"}

    @pytest.mark.requires("search.modifier.not")
    def test_tag_not(self, client: SyncClient) -> None:
        """_tag:not=<tags>|vip finds the staff-tagged and the untagged Patients (https://hl7.org/fhir/R4/search.html#tag)."""
        put(
            client,
            patient("vip", meta={"tag": [{"system": TAGS, "code": "vip"}]}),
            patient("staff", meta={"tag": [{"system": TAGS, "code": "staff"}]}),
            patient("untagged"),
        )

        assert ids(client, "Patient", f"_tag:not={TAGS}|vip") == {"staff", "untagged"}

    def test_profile(self, client: SyncClient) -> None:
        """_profile=<url> finds the Patient claiming that profile (https://hl7.org/fhir/R4/search.html#profile)."""
        profile = "http://example.org/fhir/StructureDefinition/special-patient"
        put(
            client,
            patient("special", meta={"profile": [profile]}),
            patient("other", meta={"profile": [f"{profile}-2"]}),
            patient("plain"),
        )

        assert ids(client, "Patient", [("_profile", profile)]) == {"special"}

    def test_security_label(self, client: SyncClient) -> None:
        """_security=<v3-Confidentiality>|R finds the restricted Patient only (https://hl7.org/fhir/R4/search.html#security)."""
        put(
            client,
            patient("restricted", meta={"security": [{"system": CONFIDENTIALITY, "code": "R"}]}),
            patient("normal", meta={"security": [{"system": CONFIDENTIALITY, "code": "N"}]}),
        )

        assert ids(client, "Patient", f"_security={CONFIDENTIALITY}|R") == {"restricted"}

    def test_source(self, client: SyncClient) -> None:
        """_source=http://example.org/feeds/lab finds the Patient from that source (https://hl7.org/fhir/R4/search.html#all)."""
        put(
            client,
            patient("lab", meta={"source": "http://example.org/feeds/lab"}),
            patient("ward", meta={"source": "http://example.org/feeds/ward"}),
        )

        assert ids(client, "Patient", [("_source", "http://example.org/feeds/lab")]) == {"lab"}


class TestWhatSearchSees:
    pytestmark = pytest.mark.requires(
        "crud.update_as_create", "search.param.common", "search.param.string"
    )

    def test_no_parameters_finds_every_resource_of_the_type(self, client: SyncClient) -> None:
        """Patient? with no parameters finds every Patient and no Practitioner (https://hl7.org/fhir/R4/search.html#all)."""
        put(
            client,
            patient("p1"),
            patient("p2"),
            {"resourceType": "Practitioner", "id": "dr1"},
        )

        assert set(client.search("Patient").ids) == {"p1", "p2"}

    def test_search_is_scoped_to_the_resource_type(self, client: SyncClient) -> None:
        """Patient?family=Lee does not find a Practitioner named Lee (https://hl7.org/fhir/R4/search.html#all)."""
        put(
            client,
            patient("p1", name=[{"family": "Lee"}]),
            {"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "Lee"}]},
        )

        assert ids(client, "Patient", "family=Lee") == {"p1"}

    @pytest.mark.requires("crud.update")
    def test_search_matches_the_current_version_only(self, client: SyncClient) -> None:
        """After renaming p1 from Lee to Kim, family=Lee finds nothing and family=Kim finds p1 (https://hl7.org/fhir/R4/search.html#all)."""
        put(client, patient("p1", name=[{"family": "Lee"}]))
        client.update("Patient", "p1", patient("p1", name=[{"family": "Kim"}]))

        assert (ids(client, "Patient", "family=Lee"), ids(client, "Patient", "family=Kim")) == (
            set(),
            {"p1"},
        )

    @pytest.mark.requires("crud.delete")
    def test_deleted_resources_are_not_found(self, client: SyncClient) -> None:
        """After deleting p1, family=Lee finds only p2 (https://hl7.org/fhir/R4/search.html#all)."""
        put(
            client, patient("p1", name=[{"family": "Lee"}]), patient("p2", name=[{"family": "Lee"}])
        )
        client.delete("Patient", "p1")

        assert ids(client, "Patient", "family=Lee") == {"p2"}

    def test_entries_carry_the_stored_resource(self, client: SyncClient) -> None:
        """Each search entry is the stored current version with its body (https://hl7.org/fhir/R4/search.html#all)."""
        stored, _ = client.create_or_update(
            "Patient", "p1", patient("p1", name=[{"family": "Lee"}])
        )

        (entry,) = client.search("Patient", "family=Lee").entries

        assert (entry.resource_type, entry.id, entry.version_id, entry.resource) == (
            "Patient",
            "p1",
            stored.version_id,
            stored.resource,
        )
