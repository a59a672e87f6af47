"""JSON Patch (RFC 6902) on FHIR resources (FHIR R4 http.html#patch)."""

from __future__ import annotations

import pytest

from helios_conformance import (
    Gone,
    InvalidRequest,
    InvalidResource,
    NotFound,
    PatchFailed,
    SyncClient,
    VersionConflict,
)


def patient() -> dict:
    return {
        "resourceType": "Patient",
        "active": False,
        "name": [{"family": "Lee", "given": ["Ann"]}, {"family": "Old"}],
        "telecom": [{"system": "phone", "value": "555"}],
    }


pytestmark = pytest.mark.requires("patch.json_patch", "crud.create", "crud.read")


class TestOperations:
    def test_add(self, client: SyncClient) -> None:
        """add sets a new member (https://hl7.org/fhir/R4/http.html#patch)."""
        existing = client.create(patient())

        stored = client.patch(
            "Patient", existing.id, [{"op": "add", "path": "/gender", "value": "female"}]
        )

        assert stored.resource["gender"] == "female"

    def test_add_appends_with_dash(self, client: SyncClient) -> None:
        """add at /name/- appends to the list (https://hl7.org/fhir/R4/http.html#patch)."""
        existing = client.create(patient())

        stored = client.patch(
            "Patient", existing.id, [{"op": "add", "path": "/name/-", "value": {"family": "New"}}]
        )

        assert [n["family"] for n in stored.resource["name"]] == ["Lee", "Old", "New"]

    def test_add_inserts_at_an_index(self, client: SyncClient) -> None:
        """add at /name/0 inserts before the first item (https://hl7.org/fhir/R4/http.html#patch)."""
        existing = client.create(patient())

        stored = client.patch(
            "Patient", existing.id, [{"op": "add", "path": "/name/0", "value": {"family": "New"}}]
        )

        assert [n["family"] for n in stored.resource["name"]] == ["New", "Lee", "Old"]

    def test_remove(self, client: SyncClient) -> None:
        """remove deletes a member (https://hl7.org/fhir/R4/http.html#patch)."""
        existing = client.create(patient())

        stored = client.patch("Patient", existing.id, [{"op": "remove", "path": "/telecom"}])

        assert "telecom" not in stored.resource

    def test_replace(self, client: SyncClient) -> None:
        """replace changes a value (https://hl7.org/fhir/R4/http.html#patch)."""
        existing = client.create(patient())

        stored = client.patch(
            "Patient", existing.id, [{"op": "replace", "path": "/active", "value": True}]
        )

        assert stored.resource["active"] is True

    def test_move(self, client: SyncClient) -> None:
        """move relocates a value (https://hl7.org/fhir/R4/http.html#patch)."""
        existing = client.create(patient())

        stored = client.patch(
            "Patient", existing.id, [{"op": "move", "from": "/name/1", "path": "/name/0"}]
        )

        assert [n["family"] for n in stored.resource["name"]] == ["Old", "Lee"]

    def test_copy(self, client: SyncClient) -> None:
        """copy duplicates a value (https://hl7.org/fhir/R4/http.html#patch)."""
        existing = client.create(patient())

        stored = client.patch(
            "Patient", existing.id, [{"op": "copy", "from": "/name/0", "path": "/name/-"}]
        )

        assert stored.resource["name"][2] == {"family": "Lee", "given": ["Ann"]}

    def test_passing_test_lets_the_patch_apply(self, client: SyncClient) -> None:
        """A test that holds lets the following operations apply (https://hl7.org/fhir/R4/http.html#patch)."""
        existing = client.create(patient())

        stored = client.patch(
            "Patient",
            existing.id,
            [
                {"op": "test", "path": "/name/0/family", "value": "Lee"},
                {"op": "replace", "path": "/active", "value": True},
            ],
        )

        assert stored.resource["active"] is True

    def test_failing_test_refuses_the_patch(self, client: SyncClient) -> None:
        """A test that fails raises PatchFailed (422) and writes nothing (https://hl7.org/fhir/R4/http.html#patch)."""
        existing = client.create(patient())

        with pytest.raises(PatchFailed) as caught:
            client.patch(
                "Patient",
                existing.id,
                [
                    {"op": "replace", "path": "/active", "value": True},
                    {"op": "test", "path": "/name/0/family", "value": "Kim"},
                ],
            )

        assert caught.value.http_status == 422
        assert client.read("Patient", existing.id).version_id == "1"

    def test_operations_apply_in_order(self, client: SyncClient) -> None:
        """Operations apply one after the other: a later one sees an earlier one's result (https://hl7.org/fhir/R4/http.html#patch)."""
        existing = client.create(patient())

        stored = client.patch(
            "Patient",
            existing.id,
            [
                {"op": "add", "path": "/gender", "value": "female"},
                {"op": "test", "path": "/gender", "value": "female"},
                {"op": "replace", "path": "/gender", "value": "other"},
            ],
        )

        assert stored.resource["gender"] == "other"


class TestWrite:
    def test_patch_writes_the_next_version(self, client: SyncClient) -> None:
        """A patch is stored as version 2 and becomes current (https://hl7.org/fhir/R4/http.html#patch)."""
        existing = client.create(patient())

        stored = client.patch("Patient", existing.id, [{"op": "remove", "path": "/active"}])

        current = client.read("Patient", existing.id)
        assert (stored.version_id, current.version_id, "active" in current.resource) == (
            "2",
            "2",
            False,
        )

    @pytest.mark.requires("versioning.if_match")
    def test_expected_current_version_applies(self, client: SyncClient) -> None:
        """A patch expecting the current version applies (https://hl7.org/fhir/R4/http.html#concurrency)."""
        existing = client.create(patient())

        stored = client.patch(
            "Patient", existing.id, [{"op": "remove", "path": "/active"}], expected_version="1"
        )

        assert stored.version_id == "2"

    @pytest.mark.requires("versioning.if_match")
    def test_stale_expected_version_conflicts(self, client: SyncClient) -> None:
        """A patch expecting an old version raises VersionConflict naming both versions (https://hl7.org/fhir/R4/http.html#concurrency)."""
        existing = client.create(patient())
        client.patch("Patient", existing.id, [{"op": "remove", "path": "/active"}])

        with pytest.raises(VersionConflict) as caught:
            client.patch(
                "Patient", existing.id, [{"op": "remove", "path": "/telecom"}], expected_version="1"
            )

        assert (caught.value.expected_version, caught.value.actual_version) == ("1", "2")

    @pytest.mark.requires("search.param.string")
    def test_patched_value_is_searchable(self, client: SyncClient) -> None:
        """The patched family name is found by search; the old one no longer (https://hl7.org/fhir/R4/http.html#patch)."""
        existing = client.create(patient())

        client.patch(
            "Patient", existing.id, [{"op": "replace", "path": "/name/0/family", "value": "Quinn"}]
        )

        assert (
            client.search("Patient", "family=Quinn").ids,
            client.search("Patient", "family=Lee").ids,
        ) == (
            (existing.id,),
            (),
        )

    def test_missing_resource_is_not_found(self, client: SyncClient) -> None:
        """Patching a resource that never existed raises NotFound (https://hl7.org/fhir/R4/http.html#patch)."""
        with pytest.raises(NotFound):
            client.patch("Patient", "missing", [{"op": "remove", "path": "/active"}])

    @pytest.mark.requires("crud.delete")
    def test_deleted_resource_is_gone(self, client: SyncClient) -> None:
        """Patching a deleted resource raises Gone (https://hl7.org/fhir/R4/http.html#patch)."""
        existing = client.create(patient())
        client.delete("Patient", existing.id)

        with pytest.raises(Gone):
            client.patch("Patient", existing.id, [{"op": "remove", "path": "/active"}])


class TestRefusals:
    def test_missing_path_is_refused(self, client: SyncClient) -> None:
        """Removing a member that is not there raises PatchFailed and writes nothing (https://hl7.org/fhir/R4/http.html#patch)."""
        existing = client.create(patient())

        with pytest.raises(PatchFailed):
            client.patch("Patient", existing.id, [{"op": "remove", "path": "/birthDate"}])

        assert client.read("Patient", existing.id).version_id == "1"

    def test_unknown_op_is_malformed(self, client: SyncClient) -> None:
        """An operation named delete (not RFC 6902) is refused with InvalidRequest (https://hl7.org/fhir/R4/http.html#patch)."""
        existing = client.create(patient())

        with pytest.raises(InvalidRequest, match="delete"):
            client.patch("Patient", existing.id, [{"op": "delete", "path": "/active"}])

    def test_add_without_value_is_malformed(self, client: SyncClient) -> None:
        """An add without a value is refused with InvalidRequest (https://hl7.org/fhir/R4/http.html#patch)."""
        existing = client.create(patient())

        with pytest.raises(InvalidRequest):
            client.patch("Patient", existing.id, [{"op": "add", "path": "/gender"}])

    def test_changing_the_id_is_refused(self, client: SyncClient) -> None:
        """A patch that changes the id yields an invalid update and writes nothing (https://hl7.org/fhir/R4/http.html#patch)."""
        existing = client.create(patient())

        with pytest.raises(InvalidResource):
            client.patch(
                "Patient", existing.id, [{"op": "replace", "path": "/id", "value": "other"}]
            )

        assert client.read("Patient", existing.id).version_id == "1"

    def test_removing_the_resource_type_is_refused(self, client: SyncClient) -> None:
        """A patch that removes resourceType is refused with InvalidResource (https://hl7.org/fhir/R4/http.html#patch)."""
        existing = client.create(patient())

        with pytest.raises(InvalidResource):
            client.patch("Patient", existing.id, [{"op": "remove", "path": "/resourceType"}])

        assert client.read("Patient", existing.id).version_id == "1"

    def test_changing_the_resource_type_is_refused(self, client: SyncClient) -> None:
        """A patch that turns the Patient into a Practitioner is refused with InvalidResource (https://hl7.org/fhir/R4/http.html#patch)."""
        existing = client.create(patient())

        with pytest.raises(InvalidResource):
            client.patch(
                "Patient",
                existing.id,
                [{"op": "replace", "path": "/resourceType", "value": "Practitioner"}],
            )

    def test_a_patch_that_is_neither_format_is_malformed(self, client: SyncClient) -> None:
        """A JSON object that is not a Parameters resource is not a patch: InvalidRequest (https://hl7.org/fhir/R4/http.html#patch)."""
        existing = client.create(patient())

        with pytest.raises(InvalidRequest):
            client.patch("Patient", existing.id, {"op": "remove", "path": "/active"})
