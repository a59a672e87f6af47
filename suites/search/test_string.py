"""String search: case- and accent-insensitive starts-with, HumanName and Address parts (FHIR R4 search.html#string)."""

from __future__ import annotations

from typing import Any

import pytest

from helios_conformance import SyncClient


def patient(resource_id: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": resource_id, **fields}


def named(resource_id: str, family: str | None = None, *given: str) -> dict[str, Any]:
    name: dict[str, Any] = {}
    if family is not None:
        name["family"] = family
    if given:
        name["given"] = list(given)
    return patient(resource_id, name=[name])


def put(client: SyncClient, *resources: dict[str, Any]) -> None:
    for resource in resources:
        client.create_or_update(resource["resourceType"], resource["id"], resource)


def ids(client: SyncClient, resource_type: str, query: str | list[tuple[str, str]]) -> set[str]:
    return set(client.search(resource_type, query).ids)


ADDRESS = {
    "line": ["742 Evergreen Terrace"],
    "city": "Springfield",
    "district": "Sangamon",
    "state": "Illinois",
    "postalCode": "62704",
    "country": "USA",
}

OTHER = {
    "line": ["10 Downing Street"],
    "city": "London",
    "postalCode": "SW1A 2AA",
    "country": "UK",
}


class TestStringDefaultMatching:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.param.string")

    def test_value_matches_the_start_of_the_field(self, client: SyncClient) -> None:
        """family=Lee finds Lee and Leeds but not Kim (https://hl7.org/fhir/R4/search.html#string)."""
        put(client, named("p1", "Lee"), named("p2", "Leeds"), named("p3", "Kim"))

        assert ids(client, "Patient", "family=Lee") == {"p1", "p2"}

    def test_matching_is_case_insensitive(self, client: SyncClient) -> None:
        """family=lEE finds the Patient whose family is Lee (https://hl7.org/fhir/R4/search.html#string)."""
        put(client, named("p1", "Lee"), named("p2", "Kim"))

        assert ids(client, "Patient", "family=lEE") == {"p1"}

    def test_value_in_the_middle_of_the_field_does_not_match(self, client: SyncClient) -> None:
        """family=ee does not find Lee: the default match is starts-with, not contains (https://hl7.org/fhir/R4/search.html#string)."""
        put(client, named("p1", "Lee"))

        assert ids(client, "Patient", "family=ee") == set()

    def test_longer_value_than_the_field_does_not_match(self, client: SyncClient) -> None:
        """family=Leeds does not find Lee (https://hl7.org/fhir/R4/search.html#string)."""
        put(client, named("p1", "Lee"), named("p2", "Leeds"))

        assert ids(client, "Patient", "family=Leeds") == {"p2"}

    @pytest.mark.parametrize(
        ("stored", "query"),
        [
            pytest.param("Zoë", "zoe", id="diaeresis-stored"),
            pytest.param("Zoe", "Zoë", id="diaeresis-queried"),
            pytest.param("Müller", "muller", id="umlaut"),
            pytest.param("Renée", "RENEE", id="acute-and-case"),
            pytest.param("Ångström", "angstrom", id="ring"),
            pytest.param("Núñez", "nunez", id="tilde"),
        ],
    )
    def test_matching_is_accent_insensitive(
        self, client: SyncClient, stored: str, query: str
    ) -> None:
        """A family with accents is found without them and the other way round (https://hl7.org/fhir/R4/search.html#string)."""
        put(client, named("p1", stored), named("p2", "Other"))

        assert ids(client, "Patient", [("family", query)]) == {"p1"}

    def test_any_given_name_matches(self, client: SyncClient) -> None:
        """given=ann finds a Patient whose second given name is Ann (https://hl7.org/fhir/R4/search.html#string)."""
        put(client, named("p1", "Lee", "Mary", "Ann"), named("p2", "Lee", "Mary"))

        assert ids(client, "Patient", "given=ann") == {"p1"}

    def test_any_of_several_names_matches(self, client: SyncClient) -> None:
        """family=kim finds a Patient whose second (maiden) name has family Kim (https://hl7.org/fhir/R4/search.html#string)."""
        two_names = patient(
            "p1",
            name=[{"use": "official", "family": "Lee"}, {"use": "maiden", "family": "Kim"}],
        )
        put(client, two_names, named("p2", "Lee"))

        assert ids(client, "Patient", "family=kim") == {"p1"}

    def test_family_does_not_search_given_names(self, client: SyncClient) -> None:
        """family=Ann does not find a Patient whose given name is Ann (https://hl7.org/fhir/R4/search.html#string)."""
        put(client, named("p1", "Lee", "Ann"), named("p2", "Annis"))

        assert ids(client, "Patient", "family=Ann") == {"p2"}

    def test_value_with_a_space_matches_a_multi_word_field(self, client: SyncClient) -> None:
        """family=van der finds the family "van der Berg" (https://hl7.org/fhir/R4/search.html#string)."""
        put(client, named("p1", "van der Berg"), named("p2", "van Dyke"))

        assert ids(client, "Patient", [("family", "van der")]) == {"p1"}

    def test_plus_in_a_query_string_is_a_space(self, client: SyncClient) -> None:
        """family=van+der in a URL query is "van der" and finds "van der Berg" (https://hl7.org/fhir/R4/search.html#string)."""
        put(client, named("p1", "van der Berg"), named("p2", "Vanderbilt"))

        assert ids(client, "Patient", "family=van+der") == {"p1"}


class TestHumanNameParts:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.param.string")

    @pytest.mark.parametrize(
        ("name", "query"),
        [
            pytest.param({"family": "Okafor"}, "okafor", id="family"),
            pytest.param({"given": ["Chidi", "Emeka"]}, "emeka", id="second-given"),
            pytest.param({"prefix": ["Dr."]}, "dr", id="prefix"),
            pytest.param({"suffix": ["Jr."]}, "jr", id="suffix"),
            pytest.param({"text": "Chidi Okafor"}, "chidi oka", id="text"),
        ],
    )
    def test_name_matches_every_part_of_a_human_name(
        self, client: SyncClient, name: dict[str, Any], query: str
    ) -> None:
        """name= searches family, given, prefix, suffix and text of HumanName (https://hl7.org/fhir/R4/search.html#string)."""
        put(
            client,
            patient("p1", name=[name]),
            patient("p2", name=[{"family": "Smith", "given": ["John"], "text": "John Smith"}]),
        )

        assert ids(client, "Patient", [("name", query)]) == {"p1"}

    def test_given_does_not_search_the_family(self, client: SyncClient) -> None:
        """given=Lee does not find a Patient whose family is Lee (https://hl7.org/fhir/R4/search.html#string)."""
        put(client, named("p1", "Lee", "Ann"), named("p2", "Kim", "Leena"))

        assert ids(client, "Patient", "given=Lee") == {"p2"}


class TestAddressParts:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.param.string")

    @pytest.mark.parametrize(
        "query",
        [
            pytest.param(("address", "742 Ever"), id="address-line"),
            pytest.param(("address", "springfield"), id="address-city"),
            pytest.param(("address", "sangamon"), id="address-district"),
            pytest.param(("address", "illinois"), id="address-state"),
            pytest.param(("address", "627"), id="address-postalcode"),
            pytest.param(("address", "usa"), id="address-country"),
            pytest.param(("address-city", "Spring"), id="address-city-param"),
            pytest.param(("address-state", "ill"), id="address-state-param"),
            pytest.param(("address-postalcode", "62704"), id="address-postalcode-param"),
            pytest.param(("address-country", "US"), id="address-country-param"),
        ],
    )
    def test_address_parameters_match_their_parts(
        self, client: SyncClient, query: tuple[str, str]
    ) -> None:
        """address= searches every part of an Address; address-city etc. search one part (https://hl7.org/fhir/R4/search.html#string)."""
        put(client, patient("p1", address=[ADDRESS]), patient("p2", address=[OTHER]))

        assert ids(client, "Patient", [query]) == {"p1"}

    def test_address_city_does_not_search_other_parts(self, client: SyncClient) -> None:
        """address-city=Illinois does not find an address whose state is Illinois (https://hl7.org/fhir/R4/search.html#string)."""
        put(client, patient("p1", address=[ADDRESS]))

        assert ids(client, "Patient", "address-city=Illinois") == set()


class TestStringOnOtherElements:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.param.string")

    def test_value_string_matches_observation_value_string(self, client: SyncClient) -> None:
        """value-string=neg finds an Observation whose valueString is Negative (https://hl7.org/fhir/R4/search.html#string)."""

        def observation(resource_id: str, value: str) -> dict[str, Any]:
            return {
                "resourceType": "Observation",
                "id": resource_id,
                "status": "final",
                "code": {"text": "HIV screen"},
                "valueString": value,
            }

        put(client, observation("o1", "Negative"), observation("o2", "Positive"))

        assert ids(client, "Observation", "value-string=neg") == {"o1"}

    def test_organization_name_matches_alias(self, client: SyncClient) -> None:
        """Organization name= searches name and alias: name=gen finds the alias "General Hospital" (https://hl7.org/fhir/R4/search.html#string)."""
        put(
            client,
            {
                "resourceType": "Organization",
                "id": "o1",
                "name": "St. Mary's",
                "alias": ["General Hospital"],
            },
            {"resourceType": "Organization", "id": "o2", "name": "City Clinic"},
        )

        assert ids(client, "Organization", "name=gen") == {"o1"}
