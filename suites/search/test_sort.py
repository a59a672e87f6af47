"""_sort: ordering matches by one or several parameters (FHIR R4 search.html#sort).

The order under test: the lowest value of a multi-valued parameter orders it
ascending, the highest descending; resources without a value come last in both
directions; ties are broken by ascending id so the order is total.
"""

from __future__ import annotations

from typing import Any

import pytest

from helios_conformance import InvalidSearch, SyncClient


def put(client: SyncClient, *resources: dict[str, Any]) -> None:
    for resource in resources:
        client.create_or_update(resource["resourceType"], resource["id"], resource)


def patient(
    resource_id: str,
    family: str | None = None,
    given: list[str] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Patient", "id": resource_id, **fields}
    name: dict[str, Any] = {}
    if family is not None:
        name["family"] = family
    if given is not None:
        name["given"] = given
    if name:
        resource["name"] = [name]
    return resource


def ids(client: SyncClient, resource_type: str, query: str) -> list[str]:
    return list(client.search(resource_type, query).ids)


def families(client: SyncClient) -> None:
    """Four Patients whose ids run against their family names: d-adams ... a-dunn."""
    put(
        client,
        patient("d-adams", "Adams"),
        patient("c-baker", "Baker"),
        patient("b-clark", "Clark"),
        patient("a-dunn", "Dunn"),
    )


class TestSortSingle:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.sort.single")

    @pytest.mark.requires("search.param.string")
    def test_sort_by_a_string_ascending(self, client: SyncClient) -> None:
        """_sort=family orders Adams, Baker, Clark, Dunn (https://hl7.org/fhir/R4/search.html#sort)."""
        families(client)

        assert ids(client, "Patient", "_sort=family") == ["d-adams", "c-baker", "b-clark", "a-dunn"]

    @pytest.mark.requires("search.param.string")
    def test_sort_by_a_string_descending(self, client: SyncClient) -> None:
        """_sort=-family orders Dunn, Clark, Baker, Adams (https://hl7.org/fhir/R4/search.html#sort)."""
        families(client)

        assert ids(client, "Patient", "_sort=-family") == [
            "a-dunn",
            "b-clark",
            "c-baker",
            "d-adams",
        ]

    @pytest.mark.requires("search.param.date")
    def test_sort_by_a_date_ascending(self, client: SyncClient) -> None:
        """_sort=birthdate orders 1960, 1975-03, 1975-11, 2001 (https://hl7.org/fhir/R4/search.html#sort)."""
        put(
            client,
            patient("p2001", birthDate="2001-01-01"),
            patient("p1975-nov", birthDate="1975-11-20"),
            patient("p1960", birthDate="1960-06-15"),
            patient("p1975-mar", birthDate="1975-03-02"),
        )

        assert ids(client, "Patient", "_sort=birthdate") == [
            "p1960",
            "p1975-mar",
            "p1975-nov",
            "p2001",
        ]

    @pytest.mark.requires("search.param.date")
    def test_sort_by_a_date_descending(self, client: SyncClient) -> None:
        """_sort=-birthdate orders 2001, 1975-11, 1975-03, 1960 (https://hl7.org/fhir/R4/search.html#sort)."""
        put(
            client,
            patient("p2001", birthDate="2001-01-01"),
            patient("p1975-nov", birthDate="1975-11-20"),
            patient("p1960", birthDate="1960-06-15"),
            patient("p1975-mar", birthDate="1975-03-02"),
        )

        assert ids(client, "Patient", "_sort=-birthdate") == [
            "p2001",
            "p1975-nov",
            "p1975-mar",
            "p1960",
        ]

    @pytest.mark.requires("search.param.number")
    def test_sort_by_a_number_is_numeric(self, client: SyncClient) -> None:
        """_sort=probability orders 0.05, 0.5, 0.75 as numbers (https://hl7.org/fhir/R4/search.html#sort)."""

        def risk(resource_id: str, probability: float) -> dict[str, Any]:
            return {
                "resourceType": "RiskAssessment",
                "id": resource_id,
                "status": "final",
                "subject": {"reference": "Patient/p1"},
                "prediction": [{"probabilityDecimal": probability}],
            }

        put(client, risk("r-high", 0.75), risk("r-low", 0.05), risk("r-mid", 0.5))

        assert ids(client, "RiskAssessment", "_sort=probability") == ["r-low", "r-mid", "r-high"]

    @pytest.mark.requires("search.param.quantity")
    def test_sort_by_a_quantity_is_numeric(self, client: SyncClient) -> None:
        """_sort=value-quantity orders 9, 10, 100 kg numerically, not as text (https://hl7.org/fhir/R4/search.html#sort)."""

        def weight(resource_id: str, value: int) -> dict[str, Any]:
            return {
                "resourceType": "Observation",
                "id": resource_id,
                "status": "final",
                "code": {"text": "weight"},
                "valueQuantity": {
                    "value": value,
                    "system": "http://unitsofmeasure.org",
                    "code": "kg",
                },
            }

        put(client, weight("o100", 100), weight("o9", 9), weight("o10", 10))

        assert ids(client, "Observation", "_sort=value-quantity") == ["o9", "o10", "o100"]

    @pytest.mark.requires("search.param.token")
    def test_sort_by_a_token(self, client: SyncClient) -> None:
        """_sort=gender orders female before male before unknown (https://hl7.org/fhir/R4/search.html#sort)."""
        put(
            client,
            patient("p-unknown", gender="unknown"),
            patient("p-male", gender="male"),
            patient("p-female", gender="female"),
        )

        assert ids(client, "Patient", "_sort=gender") == ["p-female", "p-male", "p-unknown"]

    @pytest.mark.requires("search.param.reference")
    def test_sort_by_a_reference(self, client: SyncClient) -> None:
        """_sort=subject orders by the reference: Patient/a, Patient/b, Patient/c (https://hl7.org/fhir/R4/search.html#sort)."""

        def about(resource_id: str, subject: str) -> dict[str, Any]:
            return {
                "resourceType": "Observation",
                "id": resource_id,
                "status": "final",
                "code": {"text": "weight"},
                "subject": {"reference": subject},
            }

        put(client, about("o1", "Patient/c"), about("o2", "Patient/a"), about("o3", "Patient/b"))

        assert ids(client, "Observation", "_sort=subject") == ["o2", "o3", "o1"]

    @pytest.mark.requires("search.param.common")
    def test_sort_by_id(self, client: SyncClient) -> None:
        """_sort=-_id orders the ids descending (https://hl7.org/fhir/R4/search.html#sort)."""
        families(client)

        assert ids(client, "Patient", "_sort=-_id") == ["d-adams", "c-baker", "b-clark", "a-dunn"]

    @pytest.mark.requires("search.param.common")
    def test_sort_by_last_updated(self, client: SyncClient) -> None:
        """_sort=_lastUpdated orders by write time: an update moves a resource last (https://hl7.org/fhir/R4/search.html#sort)."""
        put(client, patient("p-first", "Lee"), patient("p-second", "Kim"), patient("p-third", "Ng"))
        put(client, patient("p-first", "Lee-Updated"))

        assert ids(client, "Patient", "_sort=_lastUpdated") == ["p-second", "p-third", "p-first"]

    @pytest.mark.requires("search.param.common")
    def test_sort_by_last_updated_descending(self, client: SyncClient) -> None:
        """_sort=-_lastUpdated puts the latest write first (https://hl7.org/fhir/R4/search.html#sort)."""
        put(client, patient("p-first", "Lee"), patient("p-second", "Kim"), patient("p-third", "Ng"))

        assert ids(client, "Patient", "_sort=-_lastUpdated") == ["p-third", "p-second", "p-first"]

    @pytest.mark.requires("search.param.string")
    def test_missing_values_sort_last_ascending(self, client: SyncClient) -> None:
        """_sort=family puts a-nameless (no family) after Adams and Baker (https://hl7.org/fhir/R4/search.html#sort)."""
        put(client, patient("a-nameless"), patient("b-baker", "Baker"), patient("c-adams", "Adams"))

        assert ids(client, "Patient", "_sort=family") == ["c-adams", "b-baker", "a-nameless"]

    @pytest.mark.requires("search.param.string")
    def test_missing_values_sort_last_descending(self, client: SyncClient) -> None:
        """_sort=-family also puts a-nameless last, after Baker and Adams (https://hl7.org/fhir/R4/search.html#sort)."""
        put(client, patient("a-nameless"), patient("b-baker", "Baker"), patient("c-adams", "Adams"))

        assert ids(client, "Patient", "_sort=-family") == ["b-baker", "c-adams", "a-nameless"]

    @pytest.mark.requires("search.param.string")
    def test_several_missing_values_are_ordered_by_id(self, client: SyncClient) -> None:
        """Three Patients without a family sort last, among themselves by id (https://hl7.org/fhir/R4/search.html#sort)."""
        put(client, patient("z"), patient("m"), patient("a"), patient("k-lee", "Lee"))

        assert ids(client, "Patient", "_sort=-family") == ["k-lee", "a", "m", "z"]

    @pytest.mark.requires("search.param.string")
    def test_multi_valued_sorts_by_lowest_ascending(self, client: SyncClient) -> None:
        """_sort=given: p-amy-zed (Amy, Zed) sorts before p-bob (Bob) by its lowest value (https://hl7.org/fhir/R4/search.html#sort)."""
        put(client, patient("p-bob", given=["Bob"]), patient("p-amy-zed", given=["Zed", "Amy"]))

        assert ids(client, "Patient", "_sort=given") == ["p-amy-zed", "p-bob"]

    @pytest.mark.requires("search.param.string")
    def test_multi_valued_sorts_by_highest_descending(self, client: SyncClient) -> None:
        """_sort=-given: p-amy-zed (Amy, Zed) sorts before p-bob (Bob) by its highest value (https://hl7.org/fhir/R4/search.html#sort)."""
        put(client, patient("p-bob", given=["Bob"]), patient("p-amy-zed", given=["Zed", "Amy"]))

        assert ids(client, "Patient", "_sort=-given") == ["p-amy-zed", "p-bob"]

    @pytest.mark.requires("search.param.string")
    def test_ties_are_broken_by_id(self, client: SyncClient) -> None:
        """Three Lees sort by id under _sort=family and under _sort=-family (https://hl7.org/fhir/R4/search.html#sort)."""
        put(client, patient("p3", "Lee"), patient("p1", "Lee"), patient("p2", "Lee"))

        assert (
            ids(client, "Patient", "_sort=family"),
            ids(client, "Patient", "_sort=-family"),
        ) == (
            ["p1", "p2", "p3"],
            ["p1", "p2", "p3"],
        )

    @pytest.mark.requires("search.param.string", "search.param.token")
    def test_sort_applies_to_the_matches_only(self, client: SyncClient) -> None:
        """gender=female&_sort=-family orders only the women (https://hl7.org/fhir/R4/search.html#sort)."""
        put(
            client,
            patient("w1", "Adams", gender="female"),
            patient("m1", "Baker", gender="male"),
            patient("w2", "Clark", gender="female"),
        )

        assert ids(client, "Patient", "gender=female&_sort=-family") == ["w2", "w1"]

    @pytest.mark.requires("search.param.string", "search.count")
    def test_sort_with_count_returns_the_first_in_order(self, client: SyncClient) -> None:
        """_sort=family&_count=2 returns Adams and Baker (https://hl7.org/fhir/R4/search.html#sort)."""
        families(client)

        assert ids(client, "Patient", "_sort=family&_count=2") == ["d-adams", "c-baker"]

    def test_sort_by_an_unknown_parameter_is_refused(self, client: SyncClient) -> None:
        """_sort=colour is refused: Patient has no such parameter (https://hl7.org/fhir/R4/search.html#sort)."""
        with pytest.raises(InvalidSearch):
            client.search("Patient", "_sort=colour")

    def test_sort_by_a_composite_is_refused(self, client: SyncClient) -> None:
        """_sort=code-value-quantity is refused: a composite has no single order (https://hl7.org/fhir/R4/search.html#sort)."""
        with pytest.raises(InvalidSearch):
            client.search("Observation", "_sort=code-value-quantity")


class TestSortMulti:
    pytestmark = pytest.mark.requires(
        "crud.update_as_create", "search.sort.single", "search.sort.multi"
    )

    @pytest.mark.requires("search.param.string")
    def test_second_key_orders_ties_of_the_first(self, client: SyncClient) -> None:
        """_sort=family,given orders Lee Ann, Lee Bo, Ng Al (https://hl7.org/fhir/R4/search.html#sort)."""
        put(
            client,
            patient("p1", "Ng", ["Al"]),
            patient("p2", "Lee", ["Bo"]),
            patient("p3", "Lee", ["Ann"]),
        )

        assert ids(client, "Patient", "_sort=family,given") == ["p3", "p2", "p1"]

    @pytest.mark.requires("search.param.string", "search.param.date")
    def test_keys_with_mixed_directions(self, client: SyncClient) -> None:
        """_sort=family,-birthdate orders each family youngest first (https://hl7.org/fhir/R4/search.html#sort)."""
        put(
            client,
            patient("lee-old", "Lee", birthDate="1950-01-01"),
            patient("lee-young", "Lee", birthDate="2000-01-01"),
            patient("kim-old", "Kim", birthDate="1940-01-01"),
            patient("kim-young", "Kim", birthDate="1990-01-01"),
        )

        assert ids(client, "Patient", "_sort=family,-birthdate") == [
            "kim-young",
            "kim-old",
            "lee-young",
            "lee-old",
        ]

    @pytest.mark.requires("search.param.string", "search.param.date")
    def test_first_key_dominates(self, client: SyncClient) -> None:
        """_sort=-birthdate,family orders by birth date first, family only for ties (https://hl7.org/fhir/R4/search.html#sort)."""
        put(
            client,
            patient("a", "Zed", birthDate="2000-01-01"),
            patient("b", "Adams", birthDate="1990-01-01"),
            patient("c", "Adams", birthDate="2000-01-01"),
        )

        assert ids(client, "Patient", "_sort=-birthdate,family") == ["c", "a", "b"]

    @pytest.mark.requires("search.param.string", "search.param.date")
    def test_missing_second_key_sorts_last_within_a_tie(self, client: SyncClient) -> None:
        """_sort=family,birthdate: the Lee without a birth date follows the Lee with one (https://hl7.org/fhir/R4/search.html#sort)."""
        put(
            client,
            patient("a-undated", "Lee"),
            patient("b-dated", "Lee", birthDate="1980-01-01"),
            patient("c-kim", "Kim"),
        )

        assert ids(client, "Patient", "_sort=family,birthdate") == ["c-kim", "b-dated", "a-undated"]

    @pytest.mark.requires("search.param.string")
    def test_repeated_sort_parameters_add_keys(self, client: SyncClient) -> None:
        """_sort=family&_sort=-given equals _sort=family,-given (https://hl7.org/fhir/R4/search.html#sort)."""
        put(
            client,
            patient("p1", "Lee", ["Ann"]),
            patient("p2", "Lee", ["Bo"]),
            patient("p3", "Kim", ["Cy"]),
        )

        assert (
            ids(client, "Patient", "_sort=family&_sort=-given")
            == ids(client, "Patient", "_sort=family,-given")
            == ["p3", "p2", "p1"]
        )
