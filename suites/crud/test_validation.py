"""Malformed bodies, ids and types are refused and nothing is stored (FHIR R4 http.html#create)."""

from __future__ import annotations

import pytest

from helios_conformance import InvalidRequest, InvalidResource, SyncClient

# Each body is wrong in exactly one way; "location" is the element an error must name
# (None where the whole body is at fault).
INVALID_BODIES = [
    pytest.param([{"resourceType": "Patient"}], None, id="list"),
    pytest.param("Patient", None, id="string"),
    pytest.param(None, None, id="none"),
    pytest.param(42, None, id="integer"),
    pytest.param({"name": [{"family": "Typeless"}]}, "resourceType", id="missing-resourceType"),
    pytest.param({"resourceType": 7}, "resourceType", id="resourceType-not-a-string"),
    pytest.param({"resourceType": "Patiant"}, "resourceType", id="unknown-resourceType"),
    pytest.param({"resourceType": "DomainResource"}, "resourceType", id="abstract-resourceType"),
    pytest.param({"resourceType": "Patient", "meta": "v1"}, "meta", id="meta-not-an-object"),
    pytest.param({"resourceType": "Patient", "meta": ["v1"]}, "meta", id="meta-a-list"),
]

# Values JSON cannot represent: storing them would change the data or fail on read.
NON_JSON_BODIES = [
    pytest.param(
        {
            "resourceType": "Observation",
            "status": "final",
            "valueQuantity": {"value": float("nan")},
        },
        id="nan",
    ),
    pytest.param(
        {
            "resourceType": "Observation",
            "status": "final",
            "valueQuantity": {"value": float("inf")},
        },
        id="infinity",
    ),
    pytest.param({"resourceType": "Patient", "name": [{"given": {"Ann"}}]}, id="set"),
    pytest.param(
        {"resourceType": "Patient", "extension": [{"url": "urn:x", 1: "one"}]}, id="int-key"
    ),
]

MALFORMED_IDS = [
    pytest.param("", id="empty"),
    pytest.param("x" * 65, id="65-characters"),
    pytest.param("has space", id="space"),
    pytest.param("a/b", id="slash"),
    pytest.param("a_b", id="underscore"),
    pytest.param("caf\u00e9", id="non-ascii"),
    pytest.param("trailing-newline\n", id="trailing-newline"),
]


class TestCreateValidation:
    pytestmark = pytest.mark.requires("crud.create", "crud.validation", "crud.read")

    @pytest.mark.parametrize(("body", "location"), INVALID_BODIES)
    def test_invalid_body_is_refused(
        self, client: SyncClient, body: object, location: str | None
    ) -> None:
        """A body that is not a well-formed resource raises InvalidResource naming the element (https://hl7.org/fhir/R4/http.html#create)."""
        with pytest.raises(InvalidResource) as caught:
            client.create(body)  # type: ignore[arg-type]

        assert caught.value.location == location
        assert client.count() == 0

    @pytest.mark.parametrize("body", NON_JSON_BODIES)
    def test_value_json_cannot_hold_is_refused(
        self, client: SyncClient, body: dict[str, object]
    ) -> None:
        """A body holding NaN, Infinity, a set or a non-string key is not JSON and is refused (https://hl7.org/fhir/R4/json.html)."""
        with pytest.raises(InvalidResource):
            client.create(body)

        assert client.count() == 0

    def test_error_maps_to_400_structure(self, client: SyncClient) -> None:
        """A refused body is an HTTP 400 with issue code "structure" (https://hl7.org/fhir/R4/http.html#create)."""
        with pytest.raises(InvalidResource) as caught:
            client.create({"resourceType": "Patiant"})

        assert caught.value.http_status == 400
        assert caught.value.issue_code == "structure"
        assert "Patiant" in caught.value.message

    def test_error_renders_as_operation_outcome(self, client: SyncClient) -> None:
        """A refused body renders as an OperationOutcome with one error issue carrying the message (https://hl7.org/fhir/R4/operationoutcome.html)."""
        with pytest.raises(InvalidResource) as caught:
            client.create({"resourceType": "Patient", "meta": "v1"})

        outcome = caught.value.to_operation_outcome()

        assert outcome["resourceType"] == "OperationOutcome"
        assert len(outcome["issue"]) == 1
        issue = outcome["issue"][0]
        assert (issue["severity"], issue["code"]) == ("error", "structure")
        assert "meta" in issue["diagnostics"]


class TestUpdateValidation:
    pytestmark = pytest.mark.requires("crud.create", "crud.update", "crud.validation", "crud.read")

    @pytest.mark.parametrize(("body", "location"), INVALID_BODIES)
    def test_invalid_body_leaves_the_resource_unchanged(
        self, client: SyncClient, body: object, location: str | None
    ) -> None:
        """An update with a malformed body is refused and the current version stays (https://hl7.org/fhir/R4/http.html#update)."""
        created = client.create({"resourceType": "Patient", "gender": "female"})
        if isinstance(body, dict):
            body = {**body, "id": created.id}

        with pytest.raises(InvalidResource) as caught:
            client.update("Patient", created.id, body)  # type: ignore[arg-type]

        assert caught.value.location == location
        current = client.read("Patient", created.id)
        assert (current.version_id, current.resource) == (created.version_id, created.resource)

    @pytest.mark.parametrize("resource_id", MALFORMED_IDS)
    def test_malformed_target_id_is_refused(self, client: SyncClient, resource_id: str) -> None:
        """An update addressed to a malformed id is a bad request (https://hl7.org/fhir/R4/datatypes.html#id)."""
        with pytest.raises(InvalidRequest):
            client.update("Patient", resource_id, {"resourceType": "Patient", "id": resource_id})

        assert client.count() == 0

    def test_unknown_target_type_is_refused(self, client: SyncClient) -> None:
        """An update addressed to a type that is not an R4 resource type is a bad request (https://hl7.org/fhir/R4/http.html#update)."""
        with pytest.raises(InvalidRequest):
            client.update("Patiant", "p1", {"resourceType": "Patiant", "id": "p1"})

        assert client.count() == 0


class TestUpdateAsCreateValidation:
    pytestmark = pytest.mark.requires("crud.update_as_create", "crud.validation", "crud.read")

    @pytest.mark.parametrize("resource_id", MALFORMED_IDS)
    def test_malformed_target_id_is_refused(self, client: SyncClient, resource_id: str) -> None:
        """Update as create refuses a malformed client id and stores nothing (https://hl7.org/fhir/R4/datatypes.html#id)."""
        with pytest.raises(InvalidRequest):
            client.create_or_update(
                "Patient", resource_id, {"resourceType": "Patient", "id": resource_id}
            )

        assert client.count() == 0

    @pytest.mark.parametrize(
        "body_id", [pytest.param("has space", id="space"), pytest.param("", id="empty")]
    )
    def test_malformed_body_id_is_refused(self, client: SyncClient, body_id: str) -> None:
        """A malformed id inside the body is refused with InvalidResource at "id" (https://hl7.org/fhir/R4/datatypes.html#id)."""
        with pytest.raises(InvalidResource) as caught:
            client.create_or_update("Patient", "p1", {"resourceType": "Patient", "id": body_id})

        assert caught.value.location == "id"
        assert client.count() == 0

    @pytest.mark.parametrize(
        "resource_id",
        [
            pytest.param("x" * 64, id="64-characters"),
            pytest.param("Ab-9.z", id="every-allowed-class"),
        ],
    )
    def test_boundary_ids_are_accepted(self, client: SyncClient, resource_id: str) -> None:
        """Ids of 64 characters and of letters, digits, "-" and "." are valid (https://hl7.org/fhir/R4/datatypes.html#id)."""
        stored, created = client.create_or_update(
            "Patient", resource_id, {"resourceType": "Patient", "id": resource_id}
        )

        assert (stored.id, created) == (resource_id, True)
        assert client.read("Patient", resource_id).id == resource_id

    def test_unknown_target_type_is_refused(self, client: SyncClient) -> None:
        """Update as create refuses a type that is not an R4 resource type (https://hl7.org/fhir/R4/http.html#upsert)."""
        with pytest.raises(InvalidRequest):
            client.create_or_update("Patiant", "p1", {"resourceType": "Patiant", "id": "p1"})

        assert client.count() == 0


class TestDeleteValidation:
    pytestmark = pytest.mark.requires("crud.delete", "crud.validation")

    @pytest.mark.parametrize("resource_id", MALFORMED_IDS)
    def test_malformed_id_is_refused(self, client: SyncClient, resource_id: str) -> None:
        """A delete addressed to a malformed id is a bad request, not a no-op (https://hl7.org/fhir/R4/datatypes.html#id)."""
        with pytest.raises(InvalidRequest):
            client.delete("Patient", resource_id)

    def test_unknown_type_is_refused(self, client: SyncClient) -> None:
        """A delete addressed to a type that is not an R4 resource type is a bad request (https://hl7.org/fhir/R4/http.html#delete)."""
        with pytest.raises(InvalidRequest):
            client.delete("Patiant", "p1")
