"""Quantity search: number|system|code, unit matching and UCUM canonical comparison (FHIR R4 search.html#quantity)."""

from __future__ import annotations

from typing import Any

import pytest

from helios_conformance import SyncClient

UCUM = "http://unitsofmeasure.org"


def measured(
    resource_id: str,
    value: float,
    code: str | None = None,
    *,
    system: str | None = UCUM,
    unit: str | None = None,
) -> dict[str, Any]:
    quantity: dict[str, Any] = {"value": value}
    if unit is not None or code is not None:
        quantity["unit"] = unit if unit is not None else code
    if code is not None:
        quantity["code"] = code
        if system is not None:
            quantity["system"] = system
    return {
        "resourceType": "Observation",
        "id": resource_id,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
        "valueQuantity": quantity,
    }


def put(client: SyncClient, *resources: dict[str, Any]) -> None:
    for resource in resources:
        client.create_or_update(resource["resourceType"], resource["id"], resource)


def ids(client: SyncClient, value: str) -> set[str]:
    return set(client.search("Observation", [("value-quantity", value)]).ids)


class TestQuantityUnits:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.param.quantity")

    def test_number_alone_matches_any_unit(self, client: SyncClient) -> None:
        """value-quantity=5.4 finds 5.4 mg and 5.4 mmol/L but not 5.6 mg (https://hl7.org/fhir/R4/search.html#quantity)."""
        put(
            client,
            measured("mg", 5.4, "mg"),
            measured("mmol", 5.4, "mmol/L"),
            measured("other-value", 5.6, "mg"),
        )

        assert ids(client, "5.4") == {"mg", "mmol"}

    def test_system_and_code_must_both_match(self, client: SyncClient) -> None:
        """value-quantity=5.4|UCUM|mg finds 5.4 UCUM mg, not 5.4 mg in another system or 5.4 mmol/L (https://hl7.org/fhir/R4/search.html#quantity)."""
        put(
            client,
            measured("ucum-mg", 5.4, "mg"),
            measured("local-mg", 5.4, "mg", system="http://example.org/units"),
            measured("mmol", 5.4, "mmol/L"),
        )

        assert ids(client, f"5.4|{UCUM}|mg") == {"ucum-mg"}

    def test_unit_without_system_matches_code_or_unit(self, client: SyncClient) -> None:
        """value-quantity=5.4||mg finds a quantity with code mg and one with only the unit mg, not g (https://hl7.org/fhir/R4/search.html#quantity)."""
        put(
            client,
            measured("coded", 5.4, "mg", unit="milligram"),
            measured("unit-only", 5.4, unit="mg"),
            measured("grams", 5.4, "g"),
        )

        assert ids(client, "5.4||mg") == {"coded", "unit-only"}

    def test_non_ucum_units_match_by_system_and_code(self, client: SyncClient) -> None:
        """value-quantity=5|<local>|tablets finds 5 local tablets, not 5 UCUM mg (https://hl7.org/fhir/R4/search.html#quantity)."""
        local = "http://example.org/units"
        put(
            client,
            measured("tablets", 5, "tablets", system=local),
            measured("mg", 5, "mg"),
        )

        assert ids(client, f"5|{local}|tablets") == {"tablets"}

    def test_quantity_number_has_implicit_precision(self, client: SyncClient) -> None:
        """value-quantity=5.4|UCUM|mg finds 5.36 and 5.44 mg, not 5.34 or 5.46 mg (https://hl7.org/fhir/R4/search.html#quantity)."""
        put(
            client,
            measured("q5.34", 5.34, "mg"),
            measured("q5.36", 5.36, "mg"),
            measured("q5.44", 5.44, "mg"),
            measured("q5.46", 5.46, "mg"),
        )

        assert ids(client, f"5.4|{UCUM}|mg") == {"q5.36", "q5.44"}


class TestUcumConversion:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.param.quantity")

    def test_concentration_in_other_units_matches(self, client: SyncClient) -> None:
        """value-quantity=5.4|UCUM|mmol/L finds 5400 umol/L, the same amount (https://hl7.org/fhir/R4/search.html#quantity)."""
        put(
            client,
            measured("umol", 5400, "umol/L"),
            measured("other-umol", 6400, "umol/L"),
        )

        assert ids(client, f"5.4|{UCUM}|mmol/L") == {"umol"}

    def test_mass_in_grams_matches_a_search_in_milligrams(self, client: SyncClient) -> None:
        """value-quantity=1000|UCUM|mg finds 1 g and 1000 mg, not 2 g (https://hl7.org/fhir/R4/search.html#quantity)."""
        put(
            client,
            measured("one-gram", 1, "g"),
            measured("thousand-mg", 1000, "mg"),
            measured("two-grams", 2, "g"),
        )

        assert ids(client, f"1000|{UCUM}|mg") == {"one-gram", "thousand-mg"}

    @pytest.mark.requires("search.prefix.lt")
    def test_prefix_compares_converted_values(self, client: SyncClient) -> None:
        """value-quantity=lt1500|UCUM|mg finds 1 g and 1200 mg, not 2 g (https://hl7.org/fhir/R4/search.html#quantity)."""
        put(
            client,
            measured("one-gram", 1, "g"),
            measured("mg1200", 1200, "mg"),
            measured("two-grams", 2, "g"),
        )

        assert ids(client, f"lt1500|{UCUM}|mg") == {"one-gram", "mg1200"}

    def test_incompatible_units_do_not_match(self, client: SyncClient) -> None:
        """value-quantity=5.4|UCUM|mg does not find 5.4 mmol/L (a concentration, not a mass) (https://hl7.org/fhir/R4/search.html#quantity)."""
        put(client, measured("mmol", 5.4, "mmol/L"), measured("mg", 5.4, "mg"))

        assert ids(client, f"5.4|{UCUM}|mg") == {"mg"}

    def test_time_units_convert(self, client: SyncClient) -> None:
        """value-quantity=2|UCUM|h finds 120 min, not 60 min (https://hl7.org/fhir/R4/search.html#quantity)."""
        put(client, measured("m120", 120, "min"), measured("m60", 60, "min"))

        assert ids(client, f"2|{UCUM}|h") == {"m120"}
