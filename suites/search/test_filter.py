"""The _filter parameter: comparison operators, and/or/not, parentheses, scoped to type and tenant (FHIR R4 search_filter.html)."""

from __future__ import annotations

from typing import Any

import pytest

from helios_conformance import InvalidSearch, SyncClient

LOINC = "http://loinc.org"


def patient(
    resource_id: str,
    family: str | None = None,
    gender: str | None = None,
    birth_date: str | None = None,
) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Patient", "id": resource_id}
    if family is not None:
        resource["name"] = [{"family": family}]
    if gender is not None:
        resource["gender"] = gender
    if birth_date is not None:
        resource["birthDate"] = birth_date
    return resource


def put(client: SyncClient, *resources: dict[str, Any]) -> None:
    for resource in resources:
        client.create_or_update(resource["resourceType"], resource["id"], resource)


def filtered(client: SyncClient, resource_type: str, expression: str) -> set[str]:
    return set(client.search(resource_type, [("_filter", expression)]).ids)


def put_people(client: SyncClient) -> None:
    """lee-f: Lee, female, 1975; leeds-m: Leeds, male, 1985; kim-f: Kim, female, 1990; anon: nothing."""
    put(
        client,
        patient("lee-f", "Lee", "female", "1975-03-01"),
        patient("leeds-m", "Leeds", "male", "1985-07-20"),
        patient("kim-f", "Kim", "female", "1990-11-11"),
        patient("anon"),
    )


class TestFilterComparisons:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.filter")

    @pytest.mark.parametrize(
        ("expression", "expected"),
        [
            pytest.param('family eq "Lee"', {"lee-f"}, id="eq"),
            pytest.param('family co "ee"', {"lee-f", "leeds-m"}, id="co"),
            pytest.param('family sw "Le"', {"lee-f", "leeds-m"}, id="sw"),
            pytest.param('family ew "ds"', {"leeds-m"}, id="ew"),
            pytest.param("gender ne male", {"lee-f", "kim-f"}, id="ne"),
            pytest.param("birthdate gt 1985-07-20", {"kim-f"}, id="gt"),
            pytest.param("birthdate lt 1985-07-20", {"lee-f"}, id="lt"),
            pytest.param("birthdate ge 1985-07-20", {"leeds-m", "kim-f"}, id="ge"),
            pytest.param("birthdate le 1985-07-20", {"lee-f", "leeds-m"}, id="le"),
            pytest.param("birthdate sa 1985", {"kim-f"}, id="sa"),
            pytest.param("birthdate eb 1985", {"lee-f"}, id="eb"),
            pytest.param("birthdate eq 1985", {"leeds-m"}, id="eq-date-precision"),
            pytest.param("birthdate pr true", {"lee-f", "leeds-m", "kim-f"}, id="pr-true"),
            pytest.param("birthdate pr false", {"anon"}, id="pr-false"),
            pytest.param("gender eq female", {"lee-f", "kim-f"}, id="eq-token"),
            pytest.param("_id eq kim-f", {"kim-f"}, id="eq-id"),
        ],
    )
    def test_operator(self, client: SyncClient, expression: str, expected: set[str]) -> None:
        """Each _filter comparison operator selects the Patients it describes (https://hl7.org/fhir/R4/search_filter.html)."""
        put_people(client)

        assert filtered(client, "Patient", expression) == expected

    def test_token_with_system(self, client: SyncClient) -> None:
        """_filter=code eq http://loinc.org|8480-6 finds the systolic Observation only (https://hl7.org/fhir/R4/search_filter.html)."""

        def coded(resource_id: str, code: str) -> dict[str, Any]:
            return {
                "resourceType": "Observation",
                "id": resource_id,
                "status": "final",
                "code": {"coding": [{"system": LOINC, "code": code}]},
            }

        put(client, coded("sys", "8480-6"), coded("dia", "8462-4"))

        assert filtered(client, "Observation", f"code eq {LOINC}|8480-6") == {"sys"}

    def test_number_comparison(self, client: SyncClient) -> None:
        """_filter=probability gt 0.5 finds the RiskAssessment at 0.8, not 0.2 (https://hl7.org/fhir/R4/search_filter.html)."""

        def risk(resource_id: str, probability: float) -> dict[str, Any]:
            return {
                "resourceType": "RiskAssessment",
                "id": resource_id,
                "status": "final",
                "subject": {"reference": "Patient/p1"},
                "prediction": [{"probabilityDecimal": probability}],
            }

        put(client, risk("high", 0.8), risk("low", 0.2))

        assert filtered(client, "RiskAssessment", "probability gt 0.5") == {"high"}

    def test_reference_comparison(self, client: SyncClient) -> None:
        """_filter=subject re Patient/p1 finds the Observation about p1 (https://hl7.org/fhir/R4/search_filter.html)."""

        def about(resource_id: str, subject: str) -> dict[str, Any]:
            return {
                "resourceType": "Observation",
                "id": resource_id,
                "status": "final",
                "code": {"text": "weight"},
                "subject": {"reference": subject},
            }

        put(client, about("o1", "Patient/p1"), about("o2", "Patient/p2"))

        assert filtered(client, "Observation", "subject re Patient/p1") == {"o1"}


class TestFilterLogic:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.filter")

    def test_and(self, client: SyncClient) -> None:
        """family sw "Le" and gender eq female finds Lee only (https://hl7.org/fhir/R4/search_filter.html)."""
        put_people(client)

        assert filtered(client, "Patient", 'family sw "Le" and gender eq female') == {"lee-f"}

    def test_or(self, client: SyncClient) -> None:
        """family eq "Lee" or family eq "Kim" finds Lee and Kim (https://hl7.org/fhir/R4/search_filter.html)."""
        put_people(client)

        assert filtered(client, "Patient", 'family eq "Lee" or family eq "Kim"') == {
            "lee-f",
            "kim-f",
        }

    def test_not(self, client: SyncClient) -> None:
        """not (gender eq female) finds the male Patient and the Patient with no gender (https://hl7.org/fhir/R4/search_filter.html)."""
        put_people(client)

        assert filtered(client, "Patient", "not (gender eq female)") == {"leeds-m", "anon"}

    def test_parentheses_override_precedence(self, client: SyncClient) -> None:
        """(family eq "Lee" or family eq "Leeds") and gender eq male finds Leeds only (https://hl7.org/fhir/R4/search_filter.html)."""
        put_people(client)

        expression = '(family eq "Lee" or family eq "Leeds") and gender eq male'

        assert filtered(client, "Patient", expression) == {"leeds-m"}

    def test_nested_logic(self, client: SyncClient) -> None:
        """gender eq female and not (birthdate lt 1980-01-01) finds Kim only (https://hl7.org/fhir/R4/search_filter.html)."""
        put_people(client)

        expression = "gender eq female and not (birthdate lt 1980-01-01)"

        assert filtered(client, "Patient", expression) == {"kim-f"}

    @pytest.mark.requires("search.param.string")
    def test_filter_combines_with_ordinary_parameters(self, client: SyncClient) -> None:
        """_filter=gender eq female&family=Lee finds the female Lee only (https://hl7.org/fhir/R4/search_filter.html)."""
        put_people(client)

        result = client.search("Patient", [("_filter", "gender eq female"), ("family", "Lee")])

        assert set(result.ids) == {"lee-f"}

    def test_filter_is_scoped_to_the_resource_type(self, client: SyncClient) -> None:
        """Patient?_filter=family eq "Lee" does not find a Practitioner named Lee (https://hl7.org/fhir/R4/search_filter.html)."""
        put(
            client,
            patient("p1", "Lee"),
            {"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "Lee"}]},
        )

        assert filtered(client, "Patient", 'family eq "Lee"') == {"p1"}

    def test_quoted_value_with_spaces(self, client: SyncClient) -> None:
        """family eq "van der Berg" matches the family with spaces (https://hl7.org/fhir/R4/search_filter.html)."""
        put(client, patient("p1", "van der Berg"), patient("p2", "van Dyke"))

        assert filtered(client, "Patient", 'family eq "van der Berg"') == {"p1"}

    @pytest.mark.requires("search.chain")
    def test_chain_inside_a_filter(self, client: SyncClient) -> None:
        """Observation?_filter=patient.family eq "Lee" finds Observations about a Patient named Lee (https://hl7.org/fhir/R4/search_filter.html)."""

        def about(resource_id: str, subject: str) -> dict[str, Any]:
            return {
                "resourceType": "Observation",
                "id": resource_id,
                "status": "final",
                "code": {"text": "weight"},
                "subject": {"reference": subject},
            }

        put(
            client,
            patient("p-lee", "Lee"),
            patient("p-kim", "Kim"),
            about("o-lee", "Patient/p-lee"),
            about("o-kim", "Patient/p-kim"),
        )

        assert filtered(client, "Observation", 'patient.family eq "Lee"') == {"o-lee"}


class TestFilterErrors:
    pytestmark = pytest.mark.requires("search.filter")

    @pytest.mark.parametrize(
        "expression",
        [
            pytest.param("family eq", id="missing-value"),
            pytest.param('(family eq "Lee"', id="unclosed-parenthesis"),
            pytest.param('family zz "Lee"', id="unknown-operator"),
            pytest.param('family eq "Lee" and', id="dangling-and"),
            pytest.param('nickname eq "Bo"', id="unknown-parameter"),
            pytest.param("birthdate gt not-a-date", id="bad-date"),
        ],
    )
    def test_malformed_filter_is_refused(self, client: SyncClient, expression: str) -> None:
        """A malformed _filter expression is refused naming _filter (https://hl7.org/fhir/R4/search_filter.html)."""
        with pytest.raises(InvalidSearch) as caught:
            client.search("Patient", [("_filter", expression)])

        assert caught.value.parameter == "_filter"
