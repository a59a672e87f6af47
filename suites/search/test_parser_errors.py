"""Malformed queries are refused with InvalidSearch naming the parameter (FHIR R4 search.html#errors)."""

from __future__ import annotations

import pytest

from helios_conformance import InvalidSearch, SyncClient


def refused_parameter(
    client: SyncClient, resource_type: str, query: list[tuple[str, str]], *, strict: bool = True
) -> str:
    """Run a search that must be refused and return the parameter the error names, without modifier."""
    with pytest.raises(InvalidSearch) as caught:
        client.search(resource_type, query, strict=strict)
    parameter = caught.value.parameter
    assert parameter is not None, f"InvalidSearch names no parameter: {caught.value}"
    return parameter.split(":")[0]


class TestUnknownParameterUnderStrictHandling:
    pytestmark = pytest.mark.requires("search.param.common")

    def test_unknown_parameter_is_refused(self, client: SyncClient) -> None:
        """Patient?nickname=Bo is refused under strict handling, naming nickname (https://hl7.org/fhir/R4/search.html#errors)."""
        assert refused_parameter(client, "Patient", [("nickname", "Bo")]) == "nickname"

    @pytest.mark.requires("search.param.string")
    def test_unknown_parameter_is_refused_beside_known_ones(self, client: SyncClient) -> None:
        """Patient?family=Lee&nickname=Bo is refused under strict handling, naming nickname (https://hl7.org/fhir/R4/search.html#errors)."""
        query = [("family", "Lee"), ("nickname", "Bo")]

        assert refused_parameter(client, "Patient", query) == "nickname"

    def test_parameter_of_another_type_is_refused(self, client: SyncClient) -> None:
        """Observation?family=Lee is refused: family is not an Observation parameter (https://hl7.org/fhir/R4/search.html#errors)."""
        assert refused_parameter(client, "Observation", [("family", "Lee")]) == "family"

    def test_parameter_names_are_case_sensitive(self, client: SyncClient) -> None:
        """Patient?Family=Lee is refused: parameter names are case-sensitive (https://hl7.org/fhir/R4/search.html#errors)."""
        assert refused_parameter(client, "Patient", [("Family", "Lee")]) == "Family"


class TestEmptyValues:
    @pytest.mark.parametrize(
        ("resource_type", "parameter"),
        [
            pytest.param(
                "Patient",
                "family",
                marks=pytest.mark.requires("search.param.string"),
                id="string",
            ),
            pytest.param(
                "Patient",
                "gender",
                marks=pytest.mark.requires("search.param.token"),
                id="token",
            ),
            pytest.param(
                "Patient",
                "birthdate",
                marks=pytest.mark.requires("search.param.date"),
                id="date",
            ),
            pytest.param(
                "Observation",
                "subject",
                marks=pytest.mark.requires("search.param.reference"),
                id="reference",
            ),
        ],
    )
    def test_empty_value_is_refused(
        self, client: SyncClient, resource_type: str, parameter: str
    ) -> None:
        """<param>= with no value is refused naming the parameter (https://hl7.org/fhir/R4/search.html#errors)."""
        assert refused_parameter(client, resource_type, [(parameter, "")]) == parameter

    @pytest.mark.requires("search.param.string")
    def test_empty_alternative_is_refused(self, client: SyncClient) -> None:
        """family=Lee, (an empty value after the comma) is refused naming family (https://hl7.org/fhir/R4/search.html#errors)."""
        assert refused_parameter(client, "Patient", [("family", "Lee,")]) == "family"


class TestMalformedValues:
    @pytest.mark.requires("search.param.date")
    @pytest.mark.parametrize(
        "value",
        [
            pytest.param("2024-13-01", id="month-13"),
            pytest.param("2024-02-30", id="february-30"),
            pytest.param("not-a-date", id="words"),
            pytest.param("24-01-01", id="two-digit-year"),
            pytest.param("2024-01-01T25:00:00Z", id="hour-25"),
            pytest.param("xx2024-01-01", id="unknown-prefix"),
        ],
    )
    def test_bad_date_is_refused(self, client: SyncClient, value: str) -> None:
        """birthdate=<not a FHIR date> is refused naming birthdate (https://hl7.org/fhir/R4/search.html#date)."""
        assert refused_parameter(client, "Patient", [("birthdate", value)]) == "birthdate"

    @pytest.mark.requires("search.param.number")
    @pytest.mark.parametrize(
        "value",
        [
            pytest.param("abc", id="words"),
            pytest.param("1.2.3", id="two-points"),
            pytest.param("zz0.5", id="unknown-prefix"),
            pytest.param("0,5x", id="trailing-garbage-after-comma"),
        ],
    )
    def test_bad_number_is_refused(self, client: SyncClient, value: str) -> None:
        """probability=<not a number> is refused naming probability (https://hl7.org/fhir/R4/search.html#number)."""
        assert refused_parameter(client, "RiskAssessment", [("probability", value)]) == (
            "probability"
        )

    @pytest.mark.requires("search.param.quantity")
    @pytest.mark.parametrize(
        "value",
        [
            pytest.param("abc|http://unitsofmeasure.org|mg", id="bad-number"),
            pytest.param("5.4|http://unitsofmeasure.org|mg|extra", id="too-many-parts"),
        ],
    )
    def test_bad_quantity_is_refused(self, client: SyncClient, value: str) -> None:
        """value-quantity=<malformed> is refused naming value-quantity (https://hl7.org/fhir/R4/search.html#quantity)."""
        assert refused_parameter(client, "Observation", [("value-quantity", value)]) == (
            "value-quantity"
        )

    @pytest.mark.requires("search.param.composite")
    def test_composite_without_a_separator_is_refused(self, client: SyncClient) -> None:
        """code-value-quantity=http://loinc.org|8480-6 (no $value) is refused naming the parameter (https://hl7.org/fhir/R4/search.html#composite)."""
        query = [("code-value-quantity", "http://loinc.org|8480-6")]

        assert refused_parameter(client, "Observation", query) == "code-value-quantity"

    @pytest.mark.requires("search.param.common", "search.prefix.gt")
    def test_bad_last_updated_is_refused(self, client: SyncClient) -> None:
        """_lastUpdated=gtyesterday is refused naming _lastUpdated (https://hl7.org/fhir/R4/search.html#lastUpdated)."""
        assert refused_parameter(client, "Patient", [("_lastUpdated", "gtyesterday")]) == (
            "_lastUpdated"
        )


class TestInvalidModifiers:
    @pytest.mark.parametrize(
        ("resource_type", "parameter", "value"),
        [
            pytest.param(
                "Patient",
                "birthdate:exact",
                "1980",
                marks=pytest.mark.requires("search.param.date"),
                id="date-exact",
            ),
            pytest.param(
                "Patient",
                "birthdate:contains",
                "1980",
                marks=pytest.mark.requires("search.param.date"),
                id="date-contains",
            ),
            pytest.param(
                "Patient",
                "gender:contains",
                "fem",
                marks=pytest.mark.requires("search.param.token"),
                id="token-contains",
            ),
            pytest.param(
                "Patient",
                "family:below",
                "Lee",
                marks=pytest.mark.requires("search.param.string"),
                id="string-below",
            ),
            pytest.param(
                "RiskAssessment",
                "probability:exact",
                "0.5",
                marks=pytest.mark.requires("search.param.number"),
                id="number-exact",
            ),
            pytest.param(
                "Observation",
                "subject:exact",
                "Patient/p1",
                marks=pytest.mark.requires("search.param.reference"),
                id="reference-exact",
            ),
            pytest.param(
                "ValueSet",
                "url:contains",
                "acme",
                marks=pytest.mark.requires("search.param.uri"),
                id="uri-contains",
            ),
            pytest.param(
                "Patient",
                "gender:identifier",
                "female",
                marks=pytest.mark.requires("search.param.token"),
                id="token-identifier",
            ),
            pytest.param(
                "Patient",
                "birthdate:missing:exact",
                "true",
                marks=pytest.mark.requires("search.param.date"),
                id="two-modifiers",
            ),
            pytest.param(
                "Patient",
                "family:sounds-like",
                "Lee",
                marks=pytest.mark.requires("search.param.string"),
                id="unknown-modifier",
            ),
            pytest.param(
                "Observation",
                "subject:NotAType",
                "p1",
                marks=pytest.mark.requires("search.param.reference"),
                id="unknown-resource-type",
            ),
        ],
    )
    def test_modifier_not_valid_for_the_type_is_refused(
        self, client: SyncClient, resource_type: str, parameter: str, value: str
    ) -> None:
        """A modifier the parameter's type does not allow is refused naming the parameter (https://hl7.org/fhir/R4/search.html#modifiers)."""
        expected = parameter.split(":")[0]

        assert refused_parameter(client, resource_type, [(parameter, value)]) == expected

    @pytest.mark.requires("search.param.token", "search.modifier.of_type")
    @pytest.mark.parametrize("value", ["MR|12345", "12345"])
    def test_of_type_needs_system_code_and_value(self, client: SyncClient, value: str) -> None:
        """identifier:of-type=<value without system|code|value> is refused naming identifier (https://hl7.org/fhir/R4/search.html#token)."""
        assert refused_parameter(client, "Patient", [("identifier:of-type", value)]) == (
            "identifier"
        )

    @pytest.mark.requires("search.param.string")
    def test_prefix_is_not_a_modifier(self, client: SyncClient) -> None:
        """family:ge=Lee is refused: ge is a value prefix, not a modifier (https://hl7.org/fhir/R4/search.html#prefix)."""
        assert refused_parameter(client, "Patient", [("family:ge", "Lee")]) == "family"

    @pytest.mark.requires("search.param.date")
    def test_invalid_modifier_is_refused_under_lenient_handling_too(
        self, client: SyncClient
    ) -> None:
        """birthdate:exact=1980 is refused even under lenient handling: the parameter is known, the query is wrong (https://hl7.org/fhir/R4/search.html#errors)."""
        query = [("birthdate:exact", "1980")]

        assert refused_parameter(client, "Patient", query, strict=False) == "birthdate"

    @pytest.mark.requires("search.param.date")
    def test_malformed_value_is_refused_under_lenient_handling_too(
        self, client: SyncClient
    ) -> None:
        """birthdate=not-a-date is refused even under lenient handling (https://hl7.org/fhir/R4/search.html#errors)."""
        query = [("birthdate", "not-a-date")]

        assert refused_parameter(client, "Patient", query, strict=False) == "birthdate"


class TestResultParameterErrors:
    @pytest.mark.requires("search.count")
    @pytest.mark.parametrize("value", ["abc", "-1", "1.5", ""])
    def test_bad_count_is_refused(self, client: SyncClient, value: str) -> None:
        """_count=<not a non-negative integer> is refused naming _count (https://hl7.org/fhir/R4/search.html#count)."""
        assert refused_parameter(client, "Patient", [("_count", value)]) == "_count"

    @pytest.mark.requires("search.total")
    def test_bad_total_is_refused(self, client: SyncClient) -> None:
        """_total=exact is refused naming _total: the values are none, estimate and accurate (https://hl7.org/fhir/R4/search.html#total)."""
        assert refused_parameter(client, "Patient", [("_total", "exact")]) == "_total"

    @pytest.mark.requires("search.summary_count")
    def test_bad_summary_is_refused(self, client: SyncClient) -> None:
        """_summary=counts is refused naming _summary (https://hl7.org/fhir/R4/search.html#summary)."""
        assert refused_parameter(client, "Patient", [("_summary", "counts")]) == "_summary"
