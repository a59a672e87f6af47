"""Query parsing: AND by repetition, OR by comma, escaping, prefixes only on ordered types, strict and lenient handling (FHIR R4 search.html)."""

from __future__ import annotations

from typing import Any

import pytest

from helios_conformance import SyncClient


def named(resource_id: str, family: str, *given: str) -> dict[str, Any]:
    name: dict[str, Any] = {"family": family}
    if given:
        name["given"] = list(given)
    return {"resourceType": "Patient", "id": resource_id, "name": [name]}


def put(client: SyncClient, *resources: dict[str, Any]) -> None:
    for resource in resources:
        client.create_or_update(resource["resourceType"], resource["id"], resource)


def ids(client: SyncClient, resource_type: str, query: str | list[tuple[str, str]]) -> set[str]:
    return set(client.search(resource_type, query).ids)


class TestAndOr:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.param.string")

    def put_given_names(self, client: SyncClient) -> None:
        """p-both has given names Mary and Ann; p-mary only Mary; p-ann only Ann; p-neither Beth."""
        put(
            client,
            named("p-both", "Lee", "Mary", "Ann"),
            named("p-mary", "Lee", "Mary"),
            named("p-ann", "Lee", "Ann"),
            named("p-neither", "Lee", "Beth"),
        )

    def test_repeated_parameter_is_an_and(self, client: SyncClient) -> None:
        """given=Mary&given=Ann finds only the Patient with both given names (https://hl7.org/fhir/R4/search.html#combining)."""
        self.put_given_names(client)

        assert ids(client, "Patient", "given=Mary&given=Ann") == {"p-both"}

    def test_comma_is_an_or(self, client: SyncClient) -> None:
        """given=Mary,Ann finds every Patient with either given name (https://hl7.org/fhir/R4/search.html#combining)."""
        self.put_given_names(client)

        assert ids(client, "Patient", "given=Mary,Ann") == {"p-both", "p-mary", "p-ann"}

    def test_and_of_ors(self, client: SyncClient) -> None:
        """given=Mary,Beth&given=Ann,Beth finds p-both and p-neither (https://hl7.org/fhir/R4/search.html#combining)."""
        self.put_given_names(client)

        assert ids(client, "Patient", "given=Mary,Beth&given=Ann,Beth") == {"p-both", "p-neither"}

    @pytest.mark.requires("search.param.token")
    def test_different_parameters_are_anded(self, client: SyncClient) -> None:
        """family=Lee&gender=female finds the female Lee only (https://hl7.org/fhir/R4/search.html#combining)."""
        put(
            client,
            {
                "resourceType": "Patient",
                "id": "p1",
                "name": [{"family": "Lee"}],
                "gender": "female",
            },
            {"resourceType": "Patient", "id": "p2", "name": [{"family": "Lee"}], "gender": "male"},
            {
                "resourceType": "Patient",
                "id": "p3",
                "name": [{"family": "Kim"}],
                "gender": "female",
            },
        )

        assert ids(client, "Patient", "family=Lee&gender=female") == {"p1"}

    def test_and_across_values_of_different_names(self, client: SyncClient) -> None:
        """family=Lee&family=Kim finds a Patient with two names, one Lee and one Kim (https://hl7.org/fhir/R4/search.html#combining)."""
        put(
            client,
            {
                "resourceType": "Patient",
                "id": "two-names",
                "name": [{"family": "Lee"}, {"family": "Kim"}],
            },
            named("lee-only", "Lee"),
        )

        assert ids(client, "Patient", "family=Lee&family=Kim") == {"two-names"}


class TestEscaping:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.param.string")

    def put_commas(self, client: SyncClient) -> None:
        put(
            client,
            named("comma", "Smith,Jones"),
            named("smith", "Smith"),
            named("jones", "Jones"),
        )

    def test_escaped_comma_is_a_literal_comma(self, client: SyncClient) -> None:
        """family=Smith\\,Jones finds the family "Smith,Jones" and nothing else (https://hl7.org/fhir/R4/search.html#escaping)."""
        self.put_commas(client)

        assert ids(client, "Patient", [("family", "Smith\\,Jones")]) == {"comma"}

    def test_unescaped_comma_separates_alternatives(self, client: SyncClient) -> None:
        """family=Smith,Jones finds Smith, Jones and "Smith,Jones" (which starts with Smith) (https://hl7.org/fhir/R4/search.html#escaping)."""
        self.put_commas(client)

        assert ids(client, "Patient", [("family", "Smith,Jones")]) == {"comma", "smith", "jones"}

    def test_escaped_backslash_is_a_literal_backslash(self, client: SyncClient) -> None:
        """family=back\\\\slash finds the family "back\\slash" (https://hl7.org/fhir/R4/search.html#escaping)."""
        put(client, named("backslash", "back\\slash"), named("plain", "backslash"))

        assert ids(client, "Patient", [("family", "back\\\\slash")]) == {"backslash"}

    @pytest.mark.requires("search.param.token")
    def test_escaped_pipe_is_part_of_a_token_value(self, client: SyncClient) -> None:
        """identifier=<sys>|A\\|B finds the identifier value "A|B" in that system (https://hl7.org/fhir/R4/search.html#escaping)."""
        system = "http://example.org/ids"
        put(
            client,
            {
                "resourceType": "Patient",
                "id": "pipe",
                "identifier": [{"system": system, "value": "A|B"}],
            },
            {
                "resourceType": "Patient",
                "id": "a",
                "identifier": [{"system": system, "value": "A"}],
            },
        )

        assert ids(client, "Patient", [("identifier", f"{system}|A\\|B")]) == {"pipe"}

    @pytest.mark.requires("search.param.token")
    def test_escaped_comma_is_part_of_a_token_value(self, client: SyncClient) -> None:
        """identifier=A\\,B finds the identifier value "A,B", not A or B (https://hl7.org/fhir/R4/search.html#escaping)."""
        put(
            client,
            {"resourceType": "Patient", "id": "comma", "identifier": [{"value": "A,B"}]},
            {"resourceType": "Patient", "id": "a", "identifier": [{"value": "A"}]},
            {"resourceType": "Patient", "id": "b", "identifier": [{"value": "B"}]},
        )

        assert ids(client, "Patient", [("identifier", "A\\,B")]) == {"comma"}

    def test_escaped_dollar_in_a_plain_string(self, client: SyncClient) -> None:
        """value-string=cost \\$5 finds "cost $5": \\$ is an escaped dollar in any value (https://hl7.org/fhir/R4/search.html#escaping)."""

        def priced(resource_id: str, value: str) -> dict[str, Any]:
            return {
                "resourceType": "Observation",
                "id": resource_id,
                "status": "final",
                "code": {"text": "price"},
                "valueString": value,
            }

        put(client, priced("dollar", "cost $5"), priced("plain", "cost 5"))

        assert ids(client, "Observation", [("value-string", "cost \\$5")]) == {"dollar"}

    @pytest.mark.requires("search.modifier.exact")
    def test_escaped_comma_with_exact(self, client: SyncClient) -> None:
        """family:exact=Smith\\,Jones finds exactly "Smith,Jones" (https://hl7.org/fhir/R4/search.html#escaping)."""
        self.put_commas(client)

        assert ids(client, "Patient", [("family:exact", "Smith\\,Jones")]) == {"comma"}


class TestPrefixesOnlyOnOrderedTypes:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.param.string")

    @pytest.mark.parametrize(
        "family",
        [
            pytest.param("Lee", id="le"),
            pytest.param("Gerard", id="ge"),
            pytest.param("Gtari", id="gt"),
            pytest.param("Ltaief", id="lt"),
            pytest.param("Nelson", id="ne"),
            pytest.param("Eqbal", id="eq"),
            pytest.param("Saunders", id="sa"),
            pytest.param("Ebert", id="eb"),
            pytest.param("Appleby", id="ap"),
        ],
    )
    def test_string_value_starting_with_a_prefix_is_literal(
        self, client: SyncClient, family: str
    ) -> None:
        """family=<name starting with a prefix> searches the whole name, not the rest after a prefix (https://hl7.org/fhir/R4/search.html#prefix)."""
        rest = family[2:].capitalize()
        put(client, named("whole", family), named("rest", rest))

        assert ids(client, "Patient", [("family", family)]) == {"whole"}

    @pytest.mark.requires("search.param.reference")
    def test_reference_id_starting_with_a_prefix_is_literal(self, client: SyncClient) -> None:
        """subject=Patient/gt5 finds the reference to Patient/gt5 (https://hl7.org/fhir/R4/search.html#prefix)."""

        def about(resource_id: str, subject: str) -> dict[str, Any]:
            return {
                "resourceType": "Observation",
                "id": resource_id,
                "status": "final",
                "code": {"text": "weight"},
                "subject": {"reference": subject},
            }

        put(client, about("o1", "Patient/gt5"), about("o2", "Patient/5"))

        assert ids(client, "Observation", "subject=Patient/gt5") == {"o1"}


class TestUnknownParameters:
    pytestmark = pytest.mark.requires("crud.update_as_create", "search.param.string")

    def test_lenient_ignores_and_reports_an_unknown_parameter(self, client: SyncClient) -> None:
        """Under lenient handling, family=Lee&nickname=Bo finds the Lees and reports nickname as ignored (https://hl7.org/fhir/R4/search.html#errors)."""
        put(client, named("p1", "Lee"), named("p2", "Kim"))

        result = client.search("Patient", "family=Lee&nickname=Bo", strict=False)

        assert (set(result.ids), result.ignored) == ({"p1"}, ("nickname",))

    def test_lenient_with_only_unknown_parameters_finds_everything(
        self, client: SyncClient
    ) -> None:
        """Under lenient handling, nickname=Bo alone is ignored, so every Patient matches (https://hl7.org/fhir/R4/search.html#errors)."""
        put(client, named("p1", "Lee"), named("p2", "Kim"))

        result = client.search("Patient", "nickname=Bo", strict=False)

        assert (set(result.ids), result.ignored) == ({"p1", "p2"}, ("nickname",))

    def test_lenient_reports_every_unknown_parameter(self, client: SyncClient) -> None:
        """Under lenient handling, zeta=1&family=Lee&alpha=2 reports both zeta and alpha as ignored (https://hl7.org/fhir/R4/search.html#errors)."""
        put(client, named("p1", "Lee"), named("p2", "Kim"))

        result = client.search("Patient", "zeta=1&family=Lee&alpha=2", strict=False)

        assert (set(result.ids), sorted(result.ignored)) == ({"p1"}, ["alpha", "zeta"])

    def test_lenient_reports_nothing_when_every_parameter_is_known(
        self, client: SyncClient
    ) -> None:
        """Under lenient handling, family=Lee ignores nothing (https://hl7.org/fhir/R4/search.html#errors)."""
        put(client, named("p1", "Lee"))

        assert client.search("Patient", "family=Lee", strict=False).ignored == ()

    def test_parameter_of_another_type_is_unknown_here(self, client: SyncClient) -> None:
        """Under lenient handling, Observation?family=Lee ignores family, which Observation does not define (https://hl7.org/fhir/R4/search.html#errors)."""
        result = client.search("Observation", "family=Lee", strict=False)

        assert result.ignored == ("family",)
