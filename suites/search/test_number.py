"""Number search: implicit precision from the digits as written, exponent form (FHIR R4 search.html#number)."""

from __future__ import annotations

from typing import Any

import pytest

from helios_conformance import SyncClient


def risk(resource_id: str, *probabilities: float) -> dict[str, Any]:
    return {
        "resourceType": "RiskAssessment",
        "id": resource_id,
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "prediction": [{"probabilityDecimal": value} for value in probabilities],
    }


def put(client: SyncClient, *resources: dict[str, Any]) -> None:
    for resource in resources:
        client.create_or_update(resource["resourceType"], resource["id"], resource)


def ids(client: SyncClient, query: str) -> set[str]:
    return set(client.search("RiskAssessment", query).ids)


class TestImplicitPrecision:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.param.number")

    def test_integer_value_matches_half_a_unit_either_side(self, client: SyncClient) -> None:
        """probability=100 finds 99.5, 100 and 100.4 but not 99.4 or 100.5: the range is [99.5, 100.5) (https://hl7.org/fhir/R4/search.html#number)."""
        put(
            client,
            risk("r99.4", 99.4),
            risk("r99.5", 99.5),
            risk("r100", 100),
            risk("r100.4", 100.4),
            risk("r100.5", 100.5),
        )

        assert ids(client, "probability=100") == {"r99.5", "r100", "r100.4"}

    def test_trailing_zero_narrows_the_range(self, client: SyncClient) -> None:
        """probability=100.0 finds 100 and 100.04 but not 99.9 or 100.1: the range is [99.95, 100.05) (https://hl7.org/fhir/R4/search.html#number)."""
        put(
            client,
            risk("r99.9", 99.9),
            risk("r100", 100),
            risk("r100.04", 100.04),
            risk("r100.1", 100.1),
        )

        assert ids(client, "probability=100.0") == {"r100", "r100.04"}

    def test_decimal_places_set_the_precision(self, client: SyncClient) -> None:
        """probability=0.5 finds 0.46 and 0.54 but not 0.44 or 0.56 (https://hl7.org/fhir/R4/search.html#number)."""
        put(
            client,
            risk("r0.44", 0.44),
            risk("r0.46", 0.46),
            risk("r0.54", 0.54),
            risk("r0.56", 0.56),
        )

        assert ids(client, "probability=0.5") == {"r0.46", "r0.54"}

    def test_exponent_form_has_the_precision_of_its_mantissa(self, client: SyncClient) -> None:
        """probability=1e2 (one significant figure) finds 97 and 100, which probability=100 would not both find, and not 200 (https://hl7.org/fhir/R4/search.html#number)."""
        put(client, risk("r97", 97), risk("r100", 100), risk("r200", 200))

        assert ids(client, "probability=1e2") == {"r97", "r100"}

    def test_exponent_with_more_digits_is_narrower(self, client: SyncClient) -> None:
        """probability=1.00e2 finds 100 and 100.4, not 99 or 101 (https://hl7.org/fhir/R4/search.html#number)."""
        put(client, risk("r99", 99), risk("r100", 100), risk("r100.4", 100.4), risk("r101", 101))

        assert ids(client, "probability=1.00e2") == {"r100", "r100.4"}

    def test_any_of_several_values_matches(self, client: SyncClient) -> None:
        """probability=0.8 finds a RiskAssessment whose second prediction is 0.8 (https://hl7.org/fhir/R4/search.html#number)."""
        put(client, risk("two", 0.2, 0.8), risk("one", 0.2))

        assert ids(client, "probability=0.8") == {"two"}

    def test_comma_separated_numbers_are_alternatives(self, client: SyncClient) -> None:
        """probability=0.2,0.9 finds 0.2 and 0.9, not 0.5 (https://hl7.org/fhir/R4/search.html#number)."""
        put(client, risk("r0.2", 0.2), risk("r0.5", 0.5), risk("r0.9", 0.9))

        assert ids(client, "probability=0.2,0.9") == {"r0.2", "r0.9"}

    @pytest.mark.requires("search.prefix.gt")
    def test_gt_compares_with_the_exact_value(self, client: SyncClient) -> None:
        """probability=gt0.5 finds 0.51 and 0.9, not 0.5 or 0.49: with a prefix the implicit precision is ignored (https://hl7.org/fhir/R4/search.html#number)."""
        put(
            client,
            risk("r0.49", 0.49),
            risk("r0.5", 0.5),
            risk("r0.51", 0.51),
            risk("r0.9", 0.9),
        )

        assert ids(client, "probability=gt0.5") == {"r0.51", "r0.9"}

    @pytest.mark.requires("search.prefix.lt")
    def test_lt_compares_with_the_exact_value(self, client: SyncClient) -> None:
        """probability=lt0.5 finds 0.1 and 0.49, not 0.5 or 0.51: with a prefix the implicit precision is ignored (https://hl7.org/fhir/R4/search.html#number)."""
        put(
            client,
            risk("r0.1", 0.1),
            risk("r0.49", 0.49),
            risk("r0.5", 0.5),
            risk("r0.51", 0.51),
        )

        assert ids(client, "probability=lt0.5") == {"r0.1", "r0.49"}

    @pytest.mark.requires("search.prefix.ge")
    def test_ge_compares_with_the_exact_value(self, client: SyncClient) -> None:
        """probability=ge0.5 finds 0.5 and 0.51, not 0.49: with a prefix the implicit precision is ignored (https://hl7.org/fhir/R4/search.html#number)."""
        put(client, risk("r0.49", 0.49), risk("r0.5", 0.5), risk("r0.51", 0.51))

        assert ids(client, "probability=ge0.5") == {"r0.5", "r0.51"}

    @pytest.mark.requires("search.prefix.le")
    def test_le_compares_with_the_exact_value(self, client: SyncClient) -> None:
        """probability=le0.5 finds 0.49 and 0.5, not 0.51: with a prefix the implicit precision is ignored (https://hl7.org/fhir/R4/search.html#number)."""
        put(client, risk("r0.49", 0.49), risk("r0.5", 0.5), risk("r0.51", 0.51))

        assert ids(client, "probability=le0.5") == {"r0.49", "r0.5"}

    @pytest.mark.requires("search.prefix.sa")
    def test_sa_compares_with_the_exact_value(self, client: SyncClient) -> None:
        """probability=sa0.5 finds 0.51, not 0.5: with a prefix the implicit precision is ignored (https://hl7.org/fhir/R4/search.html#number)."""
        put(client, risk("r0.5", 0.5), risk("r0.51", 0.51))

        assert ids(client, "probability=sa0.5") == {"r0.51"}

    @pytest.mark.requires("search.prefix.eb")
    def test_eb_compares_with_the_exact_value(self, client: SyncClient) -> None:
        """probability=eb0.5 finds 0.49, not 0.5: with a prefix the implicit precision is ignored (https://hl7.org/fhir/R4/search.html#number)."""
        put(client, risk("r0.49", 0.49), risk("r0.5", 0.5))

        assert ids(client, "probability=eb0.5") == {"r0.49"}
