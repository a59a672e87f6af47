"""Transaction Bundles: all or nothing, processing order, references, per-entry conditions
(FHIR R4 http.html#transaction)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from helios_conformance import (
    AccessDenied,
    InvalidRequest,
    InvalidResource,
    MultipleMatches,
    NotFound,
    Operation,
    PreconditionFailed,
    SyncClient,
    TenantPermissions,
    VersionConflict,
    format_instant,
)

SYSTEM = "urn:test"


def patient(family: str, mrn: str | None = None, resource_id: str | None = None) -> dict:
    body: dict[str, Any] = {"resourceType": "Patient", "name": [{"family": family}]}
    if mrn is not None:
        body["identifier"] = [{"system": SYSTEM, "value": mrn}]
    if resource_id is not None:
        body["id"] = resource_id
    return body


def observation(subject: str, **extra: Any) -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "weight"},
        "subject": {"reference": subject},
        **extra,
    }


def entry(method: str, url: str, resource: dict | None = None, **request: Any) -> dict:
    built: dict[str, Any] = {"request": {"method": method, "url": url, **request}}
    if resource is not None:
        built["resource"] = resource
    return built


def post(resource: dict, full_url: str | None = None, **request: Any) -> dict:
    built = entry("POST", resource["resourceType"], resource, **request)
    if full_url is not None:
        built["fullUrl"] = full_url
    return built


def transaction(*entries: dict) -> dict:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def statuses(response: dict) -> list[str]:
    return [item["response"]["status"] for item in response["entry"]]


def created_id(response: dict, index: int) -> str:
    return response["entry"][index]["resource"]["id"]


def failing_entry() -> dict:
    """A DELETE expecting a version of a resource that does not exist: always a 409."""
    return entry("DELETE", "Patient/does-not-exist", ifMatch='W/"1"')


pytestmark = pytest.mark.requires("transactions.bundle", "crud.create", "crud.read")


class TestAtomicity:
    def test_every_entry_is_written(self, client: SyncClient) -> None:
        """A transaction of two creates stores both (https://hl7.org/fhir/R4/http.html#transaction)."""
        response = client.transaction(transaction(post(patient("A")), post(patient("B"))))

        assert (statuses(response), client.count("Patient")) == (
            ["201 Created", "201 Created"],
            2,
        )

    def test_failing_entry_raises_its_error(self, client: SyncClient) -> None:
        """A transaction whose entry hits a version conflict raises VersionConflict (https://hl7.org/fhir/R4/http.html#trules)."""
        with pytest.raises(VersionConflict):
            client.transaction(transaction(post(patient("A")), failing_entry()))

    def test_failure_leaves_no_resource(self, client: SyncClient) -> None:
        """When one entry fails, the creates of the other entries are not stored (https://hl7.org/fhir/R4/http.html#trules)."""
        with pytest.raises(VersionConflict):
            client.transaction(transaction(post(patient("A")), post(patient("B")), failing_entry()))

        assert client.count() == 0

    @pytest.mark.requires("history.system")
    def test_failure_leaves_no_history(self, client: SyncClient) -> None:
        """A failed transaction leaves no version in system history (https://hl7.org/fhir/R4/http.html#trules)."""
        with pytest.raises(VersionConflict):
            client.transaction(transaction(post(patient("A")), failing_entry()))

        assert client.history_system().entries == ()

    @pytest.mark.requires("search.param.token")
    def test_failure_leaves_no_search_index_row(self, client: SyncClient) -> None:
        """A failed transaction's create is not found by searching its identifier (https://hl7.org/fhir/R4/http.html#trules)."""
        with pytest.raises(VersionConflict):
            client.transaction(transaction(post(patient("A", "mrn-1")), failing_entry()))

        assert client.search("Patient", f"identifier={SYSTEM}|mrn-1").ids == ()

    @pytest.mark.requires("search.param.string")
    def test_failure_leaves_no_full_text_row(self, client: SyncClient) -> None:
        """A failed transaction's create is not found by a string search on its name (https://hl7.org/fhir/R4/http.html#trules)."""
        with pytest.raises(VersionConflict):
            client.transaction(transaction(post(patient("Zyxwv")), failing_entry()))

        assert client.search("Patient", "name=Zyxwv").ids == ()

    @pytest.mark.requires("crud.update")
    def test_failure_restores_an_updated_resource(self, client: SyncClient) -> None:
        """A failed transaction that updated a resource leaves its version 1 current (https://hl7.org/fhir/R4/http.html#trules)."""
        existing = client.create(patient("Before"))
        update = entry("PUT", f"Patient/{existing.id}", patient("After", resource_id=existing.id))

        with pytest.raises(VersionConflict):
            client.transaction(transaction(update, failing_entry()))

        current = client.read("Patient", existing.id)
        assert (current.version_id, current.resource["name"]) == ("1", [{"family": "Before"}])

    @pytest.mark.requires("crud.delete")
    def test_failure_restores_a_deleted_resource(self, client: SyncClient) -> None:
        """A failed transaction that deleted a resource leaves it live (https://hl7.org/fhir/R4/http.html#trules)."""
        existing = client.create(patient("Kept"))

        with pytest.raises(VersionConflict):
            client.transaction(
                transaction(entry("DELETE", f"Patient/{existing.id}"), failing_entry())
            )

        assert client.read("Patient", existing.id).version_id == "1"

    @pytest.mark.requires("crud.update", "versioning.version_ids")
    def test_failure_does_not_consume_a_version(self, client: SyncClient) -> None:
        """After a failed transaction updated a resource, its next update is version 2 (https://hl7.org/fhir/R4/http.html#versioning)."""
        existing = client.create(patient("One"))
        update = entry("PUT", f"Patient/{existing.id}", patient("Lost", resource_id=existing.id))
        with pytest.raises(VersionConflict):
            client.transaction(transaction(update, failing_entry()))

        second = client.update("Patient", existing.id, patient("Two", resource_id=existing.id))

        assert second.version_id == "2"

    def test_invalid_resource_refuses_the_whole_bundle(self, client: SyncClient) -> None:
        """An entry whose resource is not a FHIR resource refuses the transaction; nothing is stored (https://hl7.org/fhir/R4/http.html#trules)."""
        bad = entry("POST", "Patient", {"resourceType": "Patient", "id": 7})
        with pytest.raises(InvalidResource):
            client.transaction(transaction(post(patient("A")), bad))

        assert client.count() == 0


class TestProcessingOrder:
    @pytest.mark.requires("crud.delete", "search.param.token")
    def test_delete_runs_before_post(self, client: SyncClient) -> None:
        """A DELETE listed after a conditional POST runs first, so the POST finds no match and creates (https://hl7.org/fhir/R4/http.html#trules)."""
        existing = client.create(patient("Old", "mrn-1"))
        conditional_post = post(patient("New", "mrn-1"), ifNoneExist=f"identifier={SYSTEM}|mrn-1")

        response = client.transaction(
            transaction(conditional_post, entry("DELETE", f"Patient/{existing.id}"))
        )

        assert statuses(response)[0] == "201 Created"
        assert created_id(response, 0) != existing.id
        assert client.exists("Patient", existing.id) is False

    @pytest.mark.requires("search.param.token")
    def test_get_runs_after_the_writes(self, client: SyncClient) -> None:
        """A GET search listed before a POST sees the POSTed resource (https://hl7.org/fhir/R4/http.html#trules)."""
        search = entry("GET", f"Patient?identifier={SYSTEM}|mrn-5")

        response = client.transaction(transaction(search, post(patient("A", "mrn-5"))))

        searchset = response["entry"][0]["resource"]
        assert [item["resource"]["id"] for item in searchset["entry"]] == [created_id(response, 1)]

    @pytest.mark.requires("crud.update", "crud.delete")
    def test_responses_are_in_request_order(self, client: SyncClient) -> None:
        """The response has one entry per request entry, in request order, whatever the processing order (https://hl7.org/fhir/R4/http.html#transaction-response)."""
        doomed = client.create(patient("Doomed"))
        kept = client.create(patient("Kept"))

        response = client.transaction(
            transaction(
                entry("GET", f"Patient/{kept.id}"),
                entry("PUT", f"Patient/{kept.id}", patient("Kept2", resource_id=kept.id)),
                post(patient("New")),
                entry("DELETE", f"Patient/{doomed.id}"),
            )
        )

        codes = [status.split()[0] for status in statuses(response)]
        assert codes[:3] == ["200", "200", "201"]
        assert codes[3] in ("200", "204")
        assert response["entry"][0]["resource"]["name"] == [{"family": "Kept2"}]


class TestPlaceholderReferences:
    def test_urn_uuid_reference_is_resolved(self, client: SyncClient) -> None:
        """A reference to another entry's urn:uuid fullUrl becomes Type/id of the created resource (https://hl7.org/fhir/R4/http.html#trules)."""
        response = client.transaction(
            transaction(
                post(patient("A"), "urn:uuid:0c5a8a4e-9c5c-4a1b-8a43-8e3f1a1a0001"),
                post(observation("urn:uuid:0c5a8a4e-9c5c-4a1b-8a43-8e3f1a1a0001")),
            )
        )

        stored = client.read("Observation", created_id(response, 1))
        assert stored.resource["subject"] == {"reference": f"Patient/{created_id(response, 0)}"}

    def test_forward_reference_is_resolved(self, client: SyncClient) -> None:
        """A reference to an entry listed later in the Bundle is resolved too (https://hl7.org/fhir/R4/http.html#trules)."""
        response = client.transaction(
            transaction(
                post(observation("urn:uuid:0c5a8a4e-9c5c-4a1b-8a43-8e3f1a1a0002")),
                post(patient("A"), "urn:uuid:0c5a8a4e-9c5c-4a1b-8a43-8e3f1a1a0002"),
            )
        )

        stored = client.read("Observation", created_id(response, 0))
        assert stored.resource["subject"] == {"reference": f"Patient/{created_id(response, 1)}"}

    def test_reference_in_an_extension_is_resolved(self, client: SyncClient) -> None:
        """A urn:uuid inside an extension's valueReference is resolved (https://hl7.org/fhir/R4/http.html#trules)."""
        urn = "urn:uuid:0c5a8a4e-9c5c-4a1b-8a43-8e3f1a1a0003"
        extension = [{"url": "http://example.org/ext", "valueReference": {"reference": urn}}]
        response = client.transaction(
            transaction(post(patient("A"), urn), post(observation(urn, extension=extension)))
        )

        stored = client.read("Observation", created_id(response, 1))
        assert stored.resource["extension"][0]["valueReference"] == {
            "reference": f"Patient/{created_id(response, 0)}"
        }

    def test_reference_in_a_contained_resource_is_resolved(self, client: SyncClient) -> None:
        """A urn:uuid inside a contained resource is resolved (https://hl7.org/fhir/R4/http.html#trules)."""
        urn = "urn:uuid:0c5a8a4e-9c5c-4a1b-8a43-8e3f1a1a0004"
        contained = {
            "resourceType": "RelatedPerson",
            "id": "rp",
            "patient": {"reference": urn},
        }
        response = client.transaction(
            transaction(post(patient("A"), urn), post(observation(urn, contained=[contained])))
        )

        stored = client.read("Observation", created_id(response, 1))
        assert stored.resource["contained"][0]["patient"] == {
            "reference": f"Patient/{created_id(response, 0)}"
        }

    def test_every_reference_in_a_list_is_resolved(self, client: SyncClient) -> None:
        """urn:uuid references in a repeating element are each resolved to their own entry (https://hl7.org/fhir/R4/http.html#trules)."""
        first, second = (
            "urn:uuid:0c5a8a4e-9c5c-4a1b-8a43-8e3f1a1a0005",
            "urn:uuid:0c5a8a4e-9c5c-4a1b-8a43-8e3f1a1a0006",
        )
        members = [{"reference": first}, {"reference": second}]
        response = client.transaction(
            transaction(
                post(observation("Patient/anyone", hasMember=members)),
                post(observation("Patient/anyone"), first),
                post(observation("Patient/anyone"), second),
            )
        )

        stored = client.read("Observation", created_id(response, 0))
        assert stored.resource["hasMember"] == [
            {"reference": f"Observation/{created_id(response, 1)}"},
            {"reference": f"Observation/{created_id(response, 2)}"},
        ]

    @pytest.mark.requires("crud.update_as_create")
    def test_reference_from_a_put_to_a_post_is_resolved(self, client: SyncClient) -> None:
        """A PUT entry's reference to a POST entry's urn:uuid is resolved (https://hl7.org/fhir/R4/http.html#trules)."""
        urn = "urn:uuid:0c5a8a4e-9c5c-4a1b-8a43-8e3f1a1a0007"
        body = {**observation(urn), "id": "obs-1"}
        response = client.transaction(
            transaction(entry("PUT", "Observation/obs-1", body), post(patient("A"), urn))
        )

        stored = client.read("Observation", "obs-1")
        assert stored.resource["subject"] == {"reference": f"Patient/{created_id(response, 1)}"}

    @pytest.mark.requires("crud.update_as_create")
    def test_reference_to_a_put_entry_resolves_to_its_id(self, client: SyncClient) -> None:
        """A reference to a PUT entry's urn:uuid fullUrl becomes that entry's Type/id (https://hl7.org/fhir/R4/http.html#trules)."""
        urn = "urn:uuid:0c5a8a4e-9c5c-4a1b-8a43-8e3f1a1a0008"
        put = entry("PUT", "Patient/pat-1", patient("A", resource_id="pat-1"))
        put["fullUrl"] = urn
        response = client.transaction(transaction(put, post(observation(urn))))

        stored = client.read("Observation", created_id(response, 1))
        assert stored.resource["subject"] == {"reference": "Patient/pat-1"}

    def test_unresolvable_placeholder_is_refused(self, client: SyncClient) -> None:
        """A urn:uuid reference that names no entry refuses the transaction; nothing is stored (https://hl7.org/fhir/R4/http.html#trules)."""
        with pytest.raises(InvalidRequest, match="urn:uuid"):
            client.transaction(
                transaction(
                    post(patient("A")),
                    post(observation("urn:uuid:0c5a8a4e-9c5c-4a1b-8a43-8e3f1a1a0999")),
                )
            )

        assert client.count() == 0

    def test_literal_references_are_left_alone(self, client: SyncClient) -> None:
        """A plain Type/id reference that is no placeholder is stored as written (https://hl7.org/fhir/R4/http.html#trules)."""
        response = client.transaction(transaction(post(observation("Patient/elsewhere"))))

        stored = client.read("Observation", created_id(response, 0))
        assert stored.resource["subject"] == {"reference": "Patient/elsewhere"}


@pytest.mark.requires("search.param.token")
class TestConditionalReferences:
    def test_single_match_is_resolved(self, client: SyncClient) -> None:
        """A conditional reference Patient?identifier=... with one match becomes Patient/id (https://hl7.org/fhir/R4/http.html#trules)."""
        target = client.create(patient("A", "mrn-1"))

        response = client.transaction(
            transaction(post(observation(f"Patient?identifier={SYSTEM}|mrn-1")))
        )

        stored = client.read("Observation", created_id(response, 0))
        assert stored.resource["subject"] == {"reference": f"Patient/{target.id}"}

    def test_no_match_fails_the_transaction(self, client: SyncClient) -> None:
        """A conditional reference with no match fails the transaction with 412; nothing is stored (https://hl7.org/fhir/R4/http.html#trules)."""
        with pytest.raises(PreconditionFailed):
            client.transaction(
                transaction(
                    post(patient("B")), post(observation(f"Patient?identifier={SYSTEM}|none"))
                )
            )

        assert client.count() == 0

    def test_several_matches_fail_the_transaction(self, client: SyncClient) -> None:
        """A conditional reference with two matches fails with MultipleMatches; nothing is stored (https://hl7.org/fhir/R4/http.html#trules)."""
        client.create(patient("A", "twin"))
        client.create(patient("B", "twin"))

        with pytest.raises(MultipleMatches):
            client.transaction(transaction(post(observation(f"Patient?identifier={SYSTEM}|twin"))))

        assert client.count("Observation") == 0


@pytest.mark.requires("search.param.token", "conditional.create")
class TestIfNoneExist:
    def test_match_returns_the_existing_resource(self, client: SyncClient) -> None:
        """A POST with ifNoneExist matching one resource answers 200 with it and creates nothing (https://hl7.org/fhir/R4/http.html#ccreate)."""
        existing = client.create(patient("A", "mrn-1"))

        response = client.transaction(
            transaction(post(patient("A", "mrn-1"), ifNoneExist=f"identifier={SYSTEM}|mrn-1"))
        )

        assert (statuses(response), created_id(response, 0)) == (["200 OK"], existing.id)
        assert client.count("Patient") == 1

    def test_no_match_creates(self, client: SyncClient) -> None:
        """A POST with ifNoneExist matching nothing creates the resource (https://hl7.org/fhir/R4/http.html#ccreate)."""
        response = client.transaction(
            transaction(post(patient("A", "mrn-1"), ifNoneExist=f"identifier={SYSTEM}|mrn-1"))
        )

        assert (statuses(response), client.count("Patient")) == (["201 Created"], 1)

    def test_type_prefixed_criteria_are_accepted(self, client: SyncClient) -> None:
        """ifNoneExist written as Patient?identifier=... matches like the bare query (https://hl7.org/fhir/R4/http.html#ccreate)."""
        existing = client.create(patient("A", "mrn-1"))

        response = client.transaction(
            transaction(
                post(patient("A", "mrn-1"), ifNoneExist=f"Patient?identifier={SYSTEM}|mrn-1")
            )
        )

        assert created_id(response, 0) == existing.id

    def test_several_matches_fail(self, client: SyncClient) -> None:
        """A POST with ifNoneExist matching two resources fails with MultipleMatches (https://hl7.org/fhir/R4/http.html#ccreate)."""
        client.create(patient("A", "twin"))
        client.create(patient("B", "twin"))

        with pytest.raises(MultipleMatches):
            client.transaction(
                transaction(post(patient("C", "twin"), ifNoneExist=f"identifier={SYSTEM}|twin"))
            )

        assert client.count("Patient") == 2

    def test_references_to_a_matched_entry_point_at_the_existing_resource(
        self, client: SyncClient
    ) -> None:
        """References to a conditional create's fullUrl resolve to the matched resource (https://hl7.org/fhir/R4/http.html#trules)."""
        existing = client.create(patient("A", "mrn-1"))
        urn = "urn:uuid:0c5a8a4e-9c5c-4a1b-8a43-8e3f1a1a0010"

        response = client.transaction(
            transaction(
                post(patient("A", "mrn-1"), urn, ifNoneExist=f"identifier={SYSTEM}|mrn-1"),
                post(observation(urn)),
            )
        )

        stored = client.read("Observation", created_id(response, 1))
        assert stored.resource["subject"] == {"reference": f"Patient/{existing.id}"}


@pytest.mark.requires("crud.update", "versioning.if_match")
class TestIfMatch:
    def test_current_version_updates(self, client: SyncClient) -> None:
        """A PUT with ifMatch naming the current version writes version 2 (https://hl7.org/fhir/R4/http.html#concurrency)."""
        existing = client.create(patient("A"))

        response = client.transaction(
            transaction(
                entry(
                    "PUT",
                    f"Patient/{existing.id}",
                    patient("B", resource_id=existing.id),
                    ifMatch='W/"1"',
                )
            )
        )

        assert response["entry"][0]["response"]["etag"] == 'W/"2"'

    def test_stale_version_fails_the_transaction(self, client: SyncClient) -> None:
        """A PUT with a stale ifMatch fails the whole transaction with VersionConflict (https://hl7.org/fhir/R4/http.html#concurrency)."""
        existing = client.create(patient("A"))
        client.update("Patient", existing.id, patient("B", resource_id=existing.id))

        with pytest.raises(VersionConflict):
            client.transaction(
                transaction(
                    post(patient("New")),
                    entry(
                        "PUT",
                        f"Patient/{existing.id}",
                        patient("C", resource_id=existing.id),
                        ifMatch='W/"1"',
                    ),
                )
            )

        assert client.count("Patient") == 1

    @pytest.mark.requires("crud.delete")
    def test_stale_version_on_delete_fails(self, client: SyncClient) -> None:
        """A DELETE with a stale ifMatch fails with VersionConflict and deletes nothing (https://hl7.org/fhir/R4/http.html#concurrency)."""
        existing = client.create(patient("A"))
        client.update("Patient", existing.id, patient("B", resource_id=existing.id))

        with pytest.raises(VersionConflict):
            client.transaction(
                transaction(entry("DELETE", f"Patient/{existing.id}", ifMatch='W/"1"'))
            )

        assert client.exists("Patient", existing.id) is True


class TestConditionalRead:
    def test_if_none_match_current_etag_is_not_modified(self, client: SyncClient) -> None:
        """A GET with ifNoneMatch equal to the current ETag answers 304 without the resource (https://hl7.org/fhir/R4/http.html#cread)."""
        existing = client.create(patient("A"))

        response = client.transaction(
            transaction(entry("GET", f"Patient/{existing.id}", ifNoneMatch='W/"1"'))
        )

        assert statuses(response) == ["304 Not Modified"]
        assert "resource" not in response["entry"][0]

    @pytest.mark.requires("crud.update")
    def test_if_none_match_old_etag_returns_the_resource(self, client: SyncClient) -> None:
        """A GET with ifNoneMatch naming an older version answers 200 with the current one (https://hl7.org/fhir/R4/http.html#cread)."""
        existing = client.create(patient("A"))
        client.update("Patient", existing.id, patient("B", resource_id=existing.id))

        response = client.transaction(
            transaction(entry("GET", f"Patient/{existing.id}", ifNoneMatch='W/"1"'))
        )

        assert statuses(response) == ["200 OK"]
        assert response["entry"][0]["resource"]["meta"]["versionId"] == "2"

    def test_read_of_a_missing_resource_fails(self, client: SyncClient) -> None:
        """A GET of a resource that does not exist fails the transaction with NotFound (https://hl7.org/fhir/R4/http.html#trules)."""
        with pytest.raises(NotFound):
            client.transaction(transaction(post(patient("A")), entry("GET", "Patient/missing")))

        assert client.count() == 0


class TestResponse:
    def test_response_bundle_type(self, client: SyncClient) -> None:
        """The response is a Bundle of type transaction-response (https://hl7.org/fhir/R4/http.html#transaction-response)."""
        response = client.transaction(transaction(post(patient("A"))))

        assert (response["resourceType"], response["type"]) == (
            "Bundle",
            "transaction-response",
        )

    def test_create_response_carries_location_etag_and_last_modified(
        self, client: SyncClient
    ) -> None:
        """A created entry's response has 201, location Type/id/_history/1, ETag W/"1" and lastModified (https://hl7.org/fhir/R4/http.html#transaction-response)."""
        response = client.transaction(transaction(post(patient("A"))))

        new_id = created_id(response, 0)
        stored = client.read("Patient", new_id)
        assert response["entry"][0]["response"] == {
            "status": "201 Created",
            "location": f"Patient/{new_id}/_history/1",
            "etag": 'W/"1"',
            "lastModified": format_instant(stored.last_updated),
        }

    @pytest.mark.requires("crud.update")
    def test_update_response_is_200_with_the_new_version(self, client: SyncClient) -> None:
        """An updated entry's response has 200 OK and location .../_history/2 (https://hl7.org/fhir/R4/http.html#transaction-response)."""
        existing = client.create(patient("A"))

        response = client.transaction(
            transaction(
                entry("PUT", f"Patient/{existing.id}", patient("B", resource_id=existing.id))
            )
        )

        result = response["entry"][0]["response"]
        assert (result["status"], result["location"]) == (
            "200 OK",
            f"Patient/{existing.id}/_history/2",
        )

    @pytest.mark.requires("crud.update_as_create")
    def test_put_to_a_new_id_is_201(self, client: SyncClient) -> None:
        """A PUT creating a resource at a client id answers 201 Created (https://hl7.org/fhir/R4/http.html#upsert)."""
        response = client.transaction(
            transaction(entry("PUT", "Patient/new-1", patient("A", resource_id="new-1")))
        )

        assert statuses(response) == ["201 Created"]
        assert client.read("Patient", "new-1").version_id == "1"

    @pytest.mark.requires("crud.delete")
    def test_delete_response_is_a_success_without_a_resource(self, client: SyncClient) -> None:
        """A DELETE entry answers 200 or 204 and carries no resource (https://hl7.org/fhir/R4/http.html#transaction-response)."""
        existing = client.create(patient("A"))

        response = client.transaction(transaction(entry("DELETE", f"Patient/{existing.id}")))

        assert statuses(response)[0].split()[0] in ("200", "204")
        assert "resource" not in response["entry"][0]

    def test_empty_transaction_answers_an_empty_response(self, client: SyncClient) -> None:
        """A transaction without entries answers a transaction-response without entries (https://hl7.org/fhir/R4/http.html#transaction)."""
        response = client.transaction(transaction())

        assert (response["type"], response["entry"]) == ("transaction-response", [])


class TestPatchEntries:
    @pytest.mark.requires("patch.json_patch")
    def test_json_patch_in_a_binary(self, client: SyncClient) -> None:
        """A PATCH entry holding a JSON Patch in a Binary patches the resource (https://hl7.org/fhir/R4/http.html#transaction)."""
        existing = client.create(patient("A"))
        operations = [{"op": "replace", "path": "/name/0/family", "value": "B"}]
        binary = {
            "resourceType": "Binary",
            "contentType": "application/json-patch+json",
            "data": base64.b64encode(json.dumps(operations).encode()).decode(),
        }

        response = client.transaction(transaction(entry("PATCH", f"Patient/{existing.id}", binary)))

        assert statuses(response) == ["200 OK"]
        assert client.read("Patient", existing.id).resource["name"] == [{"family": "B"}]

    @pytest.mark.requires("patch.fhirpath_patch")
    def test_fhirpath_patch_in_parameters(self, client: SyncClient) -> None:
        """A PATCH entry holding a FHIRPath Patch Parameters resource patches the resource (https://hl7.org/fhir/R4/fhirpatch.html)."""
        existing = client.create(patient("A"))
        parameters = {
            "resourceType": "Parameters",
            "parameter": [
                {
                    "name": "operation",
                    "part": [
                        {"name": "type", "valueCode": "add"},
                        {"name": "path", "valueString": "Patient"},
                        {"name": "name", "valueString": "birthDate"},
                        {"name": "value", "valueDate": "1970-01-01"},
                    ],
                }
            ],
        }

        client.transaction(transaction(entry("PATCH", f"Patient/{existing.id}", parameters)))

        assert client.read("Patient", existing.id).resource["birthDate"] == "1970-01-01"


class TestRefusals:
    @pytest.mark.requires("crud.update", "crud.delete")
    def test_two_entries_for_one_resource_are_refused(self, client: SyncClient) -> None:
        """A PUT and a DELETE of the same resource in one transaction are refused; nothing changes (https://hl7.org/fhir/R4/http.html#trules)."""
        existing = client.create(patient("A"))

        with pytest.raises(InvalidRequest, match=existing.id):
            client.transaction(
                transaction(
                    entry("PUT", f"Patient/{existing.id}", patient("B", resource_id=existing.id)),
                    entry("DELETE", f"Patient/{existing.id}"),
                )
            )

        assert client.read("Patient", existing.id).version_id == "1"

    @pytest.mark.requires("crud.update", "crud.delete", "search.param.token")
    def test_conditional_target_overlapping_another_entry_is_refused(
        self, client: SyncClient
    ) -> None:
        """A conditional PUT resolving to the resource a DELETE removes is refused (https://hl7.org/fhir/R4/http.html#trules)."""
        existing = client.create(patient("A", "mrn-1"))

        with pytest.raises(InvalidRequest):
            client.transaction(
                transaction(
                    entry("DELETE", f"Patient/{existing.id}"),
                    entry("PUT", f"Patient?identifier={SYSTEM}|mrn-1", patient("B", "mrn-1")),
                )
            )

        assert client.read("Patient", existing.id).version_id == "1"

    def test_duplicate_full_urls_are_refused(self, client: SyncClient) -> None:
        """Two entries with the same fullUrl are refused; nothing is stored (https://hl7.org/fhir/R4/bundle.html#bundle-unique)."""
        urn = "urn:uuid:0c5a8a4e-9c5c-4a1b-8a43-8e3f1a1a0011"

        with pytest.raises(InvalidRequest, match="fullUrl"):
            client.transaction(transaction(post(patient("A"), urn), post(patient("B"), urn)))

        assert client.count() == 0

    def test_other_bundle_types_are_refused(self, client: SyncClient) -> None:
        """A Bundle of type document is not processed as a transaction (https://hl7.org/fhir/R4/http.html#transaction)."""
        with pytest.raises(InvalidRequest, match="document"):
            client.process_bundle({"resourceType": "Bundle", "type": "document", "entry": []})

    def test_entry_without_request_is_refused(self, client: SyncClient) -> None:
        """A transaction entry without a request is refused (https://hl7.org/fhir/R4/bundle.html#bundle-3)."""
        with pytest.raises(InvalidRequest):
            client.transaction(transaction({"resource": patient("A")}))

        assert client.count() == 0

    def test_body_of_another_type_is_refused(self, client: SyncClient) -> None:
        """A POST to Patient carrying an Observation is refused with InvalidResource (https://hl7.org/fhir/R4/http.html#create)."""
        with pytest.raises(InvalidResource):
            client.transaction(transaction(entry("POST", "Patient", observation("Patient/x"))))

    def test_put_with_a_different_body_id_is_refused(self, client: SyncClient) -> None:
        """A PUT to Patient/a carrying id b is refused with InvalidResource (https://hl7.org/fhir/R4/http.html#update)."""
        with pytest.raises(InvalidResource):
            client.transaction(
                transaction(entry("PUT", "Patient/a", patient("A", resource_id="b")))
            )

        assert client.count() == 0

    @pytest.mark.requires("tenancy.permissions")
    def test_transaction_permission_is_required(self, new_client: Any) -> None:
        """A tenant without the transaction permission is refused with AccessDenied; nothing is stored (https://hl7.org/fhir/R4/security.html)."""
        limited = new_client(
            TenantPermissions(operations=frozenset(Operation) - {Operation.TRANSACTION})
        )

        with pytest.raises(AccessDenied):
            limited.transaction(transaction(post(patient("A"))))

        assert limited.count() == 0
