"""Composite search: components joined by $, matched on the same repeating element (FHIR R4 search.html#composite)."""

from __future__ import annotations

from typing import Any

import pytest

from helios_conformance import SyncClient

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
SYSTOLIC = "8480-6"
DIASTOLIC = "8462-4"


def loinc(code: str) -> dict[str, Any]:
    return {"coding": [{"system": LOINC, "code": code}]}


def mmhg(value: float) -> dict[str, Any]:
    return {"value": value, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}


def vital(resource_id: str, code: str, value: float) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": resource_id,
        "status": "final",
        "code": loinc(code),
        "valueQuantity": mmhg(value),
    }


def blood_pressure(resource_id: str, systolic: float, diastolic: float) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": resource_id,
        "status": "final",
        "code": loinc("85354-9"),
        "component": [
            {"code": loinc(SYSTOLIC), "valueQuantity": mmhg(systolic)},
            {"code": loinc(DIASTOLIC), "valueQuantity": mmhg(diastolic)},
        ],
    }


def put(client: SyncClient, *resources: dict[str, Any]) -> None:
    for resource in resources:
        client.create_or_update(resource["resourceType"], resource["id"], resource)


def ids(client: SyncClient, parameter: str, value: str) -> set[str]:
    return set(client.search("Observation", [(parameter, value)]).ids)


class TestCodeValueComposites:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.param.composite")

    def put_vitals(self, client: SyncClient) -> None:
        """sys120 matches both parts, sys90 only the code, dia120 only the value."""
        put(
            client,
            vital("sys120", SYSTOLIC, 120),
            vital("sys90", SYSTOLIC, 90),
            vital("dia120", DIASTOLIC, 120),
        )

    def test_both_components_must_match(self, client: SyncClient) -> None:
        """code-value-quantity=<loinc>|8480-6$120 finds the systolic 120, not systolic 90 or diastolic 120 (https://hl7.org/fhir/R4/search.html#composite)."""
        self.put_vitals(client)

        assert ids(client, "code-value-quantity", f"{LOINC}|{SYSTOLIC}$120") == {"sys120"}

    @pytest.mark.requires("search.prefix.gt")
    def test_prefix_applies_to_the_quantity_component(self, client: SyncClient) -> None:
        """code-value-quantity=<loinc>|8480-6$gt100 finds systolic 120 only (https://hl7.org/fhir/R4/search.html#composite)."""
        self.put_vitals(client)

        assert ids(client, "code-value-quantity", f"{LOINC}|{SYSTOLIC}$gt100") == {"sys120"}

    def test_quantity_component_with_units(self, client: SyncClient) -> None:
        """code-value-quantity=8480-6$120|UCUM|mm[Hg] finds systolic 120 mmHg (https://hl7.org/fhir/R4/search.html#composite)."""
        self.put_vitals(client)

        assert ids(client, "code-value-quantity", f"{SYSTOLIC}$120|{UCUM}|mm[Hg]") == {"sys120"}

    def test_comma_separated_composites_are_alternatives(self, client: SyncClient) -> None:
        """code-value-quantity=8480-6$90,8462-4$120 finds systolic 90 and diastolic 120 (https://hl7.org/fhir/R4/search.html#composite)."""
        self.put_vitals(client)

        assert ids(client, "code-value-quantity", f"{SYSTOLIC}$90,{DIASTOLIC}$120") == {
            "sys90",
            "dia120",
        }

    def test_code_value_concept(self, client: SyncClient) -> None:
        """code-value-concept=<loinc>|883-9$<snomed>|112144000 finds blood group A, not group B (https://hl7.org/fhir/R4/search.html#composite)."""
        snomed = "http://snomed.info/sct"

        def blood_group(resource_id: str, value_code: str) -> dict[str, Any]:
            return {
                "resourceType": "Observation",
                "id": resource_id,
                "status": "final",
                "code": loinc("883-9"),
                "valueCodeableConcept": {"coding": [{"system": snomed, "code": value_code}]},
            }

        put(client, blood_group("group-a", "112144000"), blood_group("group-b", "112149005"))

        assert ids(client, "code-value-concept", f"{LOINC}|883-9${snomed}|112144000") == {"group-a"}

    def test_escaped_dollar_is_part_of_a_component(self, client: SyncClient) -> None:
        """code-value-string=X-1$cost \\$5 finds the value "cost $5", not "cost 5" (https://hl7.org/fhir/R4/search.html#escaping)."""

        def priced(resource_id: str, value: str) -> dict[str, Any]:
            return {
                "resourceType": "Observation",
                "id": resource_id,
                "status": "final",
                "code": {"coding": [{"system": "urn:example", "code": "X-1"}]},
                "valueString": value,
            }

        put(client, priced("dollar", "cost $5"), priced("plain", "cost 5"))

        assert ids(client, "code-value-string", "X-1$cost \\$5") == {"dollar"}


class TestComponentComposites:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.param.composite")

    @pytest.mark.requires("search.prefix.lt")
    def test_components_match_on_the_same_element(self, client: SyncClient) -> None:
        """component-code-value-quantity=8480-6$lt90 does not find BP 120/80: the 80 belongs to the diastolic component (https://hl7.org/fhir/R4/search.html#composite)."""
        put(client, blood_pressure("bp-high", 120, 80), blood_pressure("bp-low", 85, 55))

        assert ids(client, "component-code-value-quantity", f"{LOINC}|{SYSTOLIC}$lt90") == {
            "bp-low"
        }

    @pytest.mark.requires("search.prefix.lt")
    def test_other_component_matches(self, client: SyncClient) -> None:
        """component-code-value-quantity=8462-4$lt90 finds both BPs, whose diastolic values are 80 and 55 (https://hl7.org/fhir/R4/search.html#composite)."""
        put(client, blood_pressure("bp-high", 120, 80), blood_pressure("bp-low", 85, 55))

        assert ids(client, "component-code-value-quantity", f"{LOINC}|{DIASTOLIC}$lt90") == {
            "bp-high",
            "bp-low",
        }

    @pytest.mark.requires("search.prefix.gt")
    def test_combo_matches_the_observation_or_its_components(self, client: SyncClient) -> None:
        """combo-code-value-quantity=8480-6$gt100 finds a systolic Observation and a BP with a systolic component (https://hl7.org/fhir/R4/search.html#composite)."""
        put(
            client,
            vital("sys120", SYSTOLIC, 120),
            blood_pressure("bp-high", 130, 80),
            blood_pressure("bp-low", 95, 60),
        )

        assert ids(client, "combo-code-value-quantity", f"{SYSTOLIC}$gt100") == {
            "sys120",
            "bp-high",
        }
