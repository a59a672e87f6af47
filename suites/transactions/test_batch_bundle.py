"""Batch Bundles: independent entries, each with its own outcome (FHIR R4 http.html#transaction)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from helios_conformance import SyncClient

SYSTEM = "urn:test"


def patient(family: str, mrn: str | None = None, resource_id: str | None = None) -> dict:
    body: dict[str, Any] = {"resourceType": "Patient", "name": [{"family": family}]}
    if mrn is not None:
        body["identifier"] = [{"system": SYSTEM, "value": mrn}]
    if resource_id is not None:
        body["id"] = resource_id
    return body


def entry(method: str, url: str, resource: dict | None = None, **request: Any) -> dict:
    built: dict[str, Any] = {"request": {"method": method, "url": url, **request}}
    if resource is not None:
        built["resource"] = resource
    return built


def batch(*entries: dict) -> dict:
    return {"resourceType": "Bundle", "type": "batch", "entry": list(entries)}


def statuses(response: dict) -> list[str]:
    return [item["response"]["status"] for item in response["entry"]]


pytestmark = pytest.mark.requires("transactions.batch", "crud.create", "crud.read")


class TestIndependence:
    def test_response_is_a_batch_response_in_request_order(self, client: SyncClient) -> None:
        """A batch answers a batch-response with one entry per request, in order (https://hl7.org/fhir/R4/http.html#transaction-response)."""
        existing = client.create(patient("A"))

        response = client.batch(
            batch(entry("POST", "Patient", patient("B")), entry("GET", f"Patient/{existing.id}"))
        )

        assert (response["type"], statuses(response)) == (
            "batch-response",
            ["201 Created", "200 OK"],
        )

    @pytest.mark.requires("crud.update", "versioning.if_match")
    def test_failed_entry_does_not_undo_the_others(self, client: SyncClient) -> None:
        """In a batch a version conflict fails only its entry; the creates around it are kept (https://hl7.org/fhir/R4/http.html#brules)."""
        existing = client.create(patient("A"))
        client.update("Patient", existing.id, patient("B", resource_id=existing.id))
        stale = entry(
            "PUT", f"Patient/{existing.id}", patient("C", resource_id=existing.id), ifMatch='W/"1"'
        )

        response = client.batch(
            batch(
                entry("POST", "Patient", patient("D")),
                stale,
                entry("POST", "Patient", patient("E")),
            )
        )

        assert statuses(response) == ["201 Created", "409 Conflict", "201 Created"]
        assert client.count("Patient") == 3

    def test_failed_entry_carries_an_operation_outcome(self, client: SyncClient) -> None:
        """A failed batch entry's response holds an OperationOutcome with the issue code (https://hl7.org/fhir/R4/http.html#transaction-response)."""
        response = client.batch(batch(entry("GET", "Patient/missing")))

        result = response["entry"][0]["response"]
        assert result["status"] == "404 Not Found"
        assert result["outcome"]["resourceType"] == "OperationOutcome"
        assert result["outcome"]["issue"][0]["code"] == "not-found"

    @pytest.mark.requires("crud.delete")
    def test_read_of_a_deleted_resource_is_410(self, client: SyncClient) -> None:
        """A batch GET of a deleted resource answers 410 Gone (https://hl7.org/fhir/R4/http.html#read)."""
        existing = client.create(patient("A"))
        client.delete("Patient", existing.id)

        response = client.batch(batch(entry("GET", f"Patient/{existing.id}")))

        assert statuses(response) == ["410 Gone"]

    def test_malformed_entry_fails_alone(self, client: SyncClient) -> None:
        """An entry with an unknown method answers 400 while the other entries run (https://hl7.org/fhir/R4/http.html#brules)."""
        response = client.batch(
            batch(entry("FROB", "Patient"), entry("POST", "Patient", patient("A")))
        )

        assert statuses(response) == ["400 Bad Request", "201 Created"]
        assert client.count("Patient") == 1

    def test_invalid_resource_fails_alone(self, client: SyncClient) -> None:
        """An entry with an invalid resource answers 400 while the valid create is kept (https://hl7.org/fhir/R4/http.html#brules)."""
        response = client.batch(
            batch(
                entry("POST", "Patient", {"resourceType": "Patient", "id": 5}),
                entry("POST", "Patient", patient("A")),
            )
        )

        assert statuses(response) == ["400 Bad Request", "201 Created"]

    def test_placeholders_are_not_resolved_across_entries(self, client: SyncClient) -> None:
        """A batch does not rewrite a reference to another entry's fullUrl (https://hl7.org/fhir/R4/http.html#brules)."""
        urn = "urn:uuid:0c5a8a4e-9c5c-4a1b-8a43-8e3f1a1a0020"
        observation = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": urn},
        }
        first = entry("POST", "Patient", patient("A"))
        first["fullUrl"] = urn

        response = client.batch(batch(first, entry("POST", "Observation", observation)))

        created = response["entry"][1]["resource"]
        assert client.read("Observation", created["id"]).resource["subject"] == {"reference": urn}


class TestEntryKinds:
    @pytest.mark.requires("conditional.create", "search.param.token")
    def test_conditional_create_with_a_match_is_200(self, client: SyncClient) -> None:
        """A batch POST with ifNoneExist matching one resource answers 200 and creates nothing (https://hl7.org/fhir/R4/http.html#ccreate)."""
        existing = client.create(patient("A", "mrn-1"))

        response = client.batch(
            batch(
                entry(
                    "POST",
                    "Patient",
                    patient("A", "mrn-1"),
                    ifNoneExist=f"identifier={SYSTEM}|mrn-1",
                )
            )
        )

        assert statuses(response) == ["200 OK"]
        assert response["entry"][0]["resource"]["id"] == existing.id
        assert client.count("Patient") == 1

    @pytest.mark.requires("crud.delete")
    def test_delete_entry(self, client: SyncClient) -> None:
        """A batch DELETE removes the resource and answers a success (https://hl7.org/fhir/R4/http.html#delete)."""
        existing = client.create(patient("A"))

        response = client.batch(batch(entry("DELETE", f"Patient/{existing.id}")))

        assert statuses(response)[0].split()[0] in ("200", "204")
        assert client.exists("Patient", existing.id) is False

    @pytest.mark.requires("crud.update_as_create")
    def test_put_to_a_new_id_creates(self, client: SyncClient) -> None:
        """A batch PUT to an unused id answers 201 Created (https://hl7.org/fhir/R4/http.html#upsert)."""
        response = client.batch(batch(entry("PUT", "Patient/b-1", patient("A", resource_id="b-1"))))

        assert statuses(response) == ["201 Created"]

    @pytest.mark.requires("conditional.delete", "search.param.token")
    def test_conditional_delete_with_several_matches_is_412(self, client: SyncClient) -> None:
        """A batch conditional DELETE matching two resources answers 412 and deletes neither (https://hl7.org/fhir/R4/http.html#cdelete)."""
        client.create(patient("A", "twin"))
        client.create(patient("B", "twin"))

        response = client.batch(batch(entry("DELETE", f"Patient?identifier={SYSTEM}|twin")))

        assert statuses(response) == ["412 Precondition Failed"]
        assert client.count("Patient") == 2

    @pytest.mark.requires("patch.json_patch")
    def test_json_patch_entry(self, client: SyncClient) -> None:
        """A batch PATCH with a JSON Patch Binary answers 200 with version 2 (https://hl7.org/fhir/R4/http.html#patch)."""
        existing = client.create(patient("A"))
        operations = [{"op": "add", "path": "/active", "value": True}]
        binary = {
            "resourceType": "Binary",
            "contentType": "application/json-patch+json",
            "data": base64.b64encode(json.dumps(operations).encode()).decode(),
        }

        response = client.batch(batch(entry("PATCH", f"Patient/{existing.id}", binary)))

        assert response["entry"][0]["response"]["etag"] == 'W/"2"'
        assert client.read("Patient", existing.id).resource["active"] is True

    @pytest.mark.requires("search.param.string")
    def test_search_entry_returns_a_searchset(self, client: SyncClient) -> None:
        """A batch GET with a query answers a searchset Bundle of the matches (https://hl7.org/fhir/R4/http.html#transaction)."""
        lee = client.create(patient("Lee"))
        client.create(patient("Kim"))

        response = client.batch(batch(entry("GET", "Patient?family=Lee")))

        searchset = response["entry"][0]["resource"]
        assert searchset["type"] == "searchset"
        assert [item["resource"]["id"] for item in searchset["entry"]] == [lee.id]
