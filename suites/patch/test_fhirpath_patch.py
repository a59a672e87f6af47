"""FHIRPath Patch (FHIR R4 fhirpatch.html)."""

from __future__ import annotations

from typing import Any

import pytest

from helios_conformance import (
    InvalidRequest,
    InvalidResource,
    PatchFailed,
    SyncClient,
    VersionConflict,
)


def operation(kind: str, path: str, **parts: Any) -> dict:
    built: list[dict[str, Any]] = [
        {"name": "type", "valueCode": kind},
        {"name": "path", "valueString": path},
    ]
    for name, value in parts.items():
        if name == "name":
            built.append({"name": "name", "valueString": value})
        elif name in ("index", "source", "destination"):
            built.append({"name": name, "valueInteger": value})
        else:
            # value_string -> value with valueString, value_human_name -> valueHumanName ...
            suffix = "".join(word.capitalize() for word in name.split("_")[1:])
            built.append({"name": "value", f"value{suffix}": value})
    return {"name": "operation", "part": built}


def fhirpath_patch(*operations: dict) -> dict:
    return {"resourceType": "Parameters", "parameter": list(operations)}


def patient() -> dict:
    return {
        "resourceType": "Patient",
        "active": False,
        "identifier": [{"system": "urn:a", "value": "1"}, {"system": "urn:b", "value": "2"}],
        "name": [{"use": "official", "family": "Lee"}, {"use": "nickname", "family": "Lee-Lee"}],
    }


pytestmark = pytest.mark.requires("patch.fhirpath_patch", "crud.create", "crud.read")


class TestOperations:
    def test_add_a_single_element(self, client: SyncClient) -> None:
        """add sets birthDate on the Patient (https://hl7.org/fhir/R4/fhirpatch.html)."""
        existing = client.create(patient())

        stored = client.patch(
            "Patient",
            existing.id,
            fhirpath_patch(operation("add", "Patient", name="birthDate", value_date="1970-01-01")),
        )

        assert stored.resource["birthDate"] == "1970-01-01"

    def test_add_to_a_list(self, client: SyncClient) -> None:
        """add with a HumanName appends to Patient.name (https://hl7.org/fhir/R4/fhirpatch.html)."""
        existing = client.create(patient())

        stored = client.patch(
            "Patient",
            existing.id,
            fhirpath_patch(
                operation("add", "Patient", name="name", value_human_name={"family": "Kim"})
            ),
        )

        assert [n["family"] for n in stored.resource["name"]] == ["Lee", "Lee-Lee", "Kim"]

    def test_add_inside_a_selected_element(self, client: SyncClient) -> None:
        """add with path Patient.name.where(use='official') adds a given name to that name only (https://hl7.org/fhir/R4/fhirpatch.html)."""
        existing = client.create(patient())

        stored = client.patch(
            "Patient",
            existing.id,
            fhirpath_patch(
                operation(
                    "add", "Patient.name.where(use='official')", name="given", value_string="Ann"
                )
            ),
        )

        assert stored.resource["name"] == [
            {"use": "official", "family": "Lee", "given": ["Ann"]},
            {"use": "nickname", "family": "Lee-Lee"},
        ]

    def test_insert_at_an_index(self, client: SyncClient) -> None:
        """insert puts a new identifier at index 0 (https://hl7.org/fhir/R4/fhirpatch.html)."""
        existing = client.create(patient())

        stored = client.patch(
            "Patient",
            existing.id,
            fhirpath_patch(
                operation(
                    "insert",
                    "Patient.identifier",
                    index=0,
                    value_identifier={"system": "urn:z", "value": "0"},
                )
            ),
        )

        assert [i["system"] for i in stored.resource["identifier"]] == ["urn:z", "urn:a", "urn:b"]

    def test_insert_beyond_the_end_fails(self, client: SyncClient) -> None:
        """insert at index 5 of a two-item list raises PatchFailed and writes nothing (https://hl7.org/fhir/R4/fhirpatch.html)."""
        existing = client.create(patient())

        with pytest.raises(PatchFailed):
            client.patch(
                "Patient",
                existing.id,
                fhirpath_patch(
                    operation(
                        "insert", "Patient.identifier", index=5, value_identifier={"value": "x"}
                    )
                ),
            )

        assert client.read("Patient", existing.id).version_id == "1"

    def test_delete_an_element(self, client: SyncClient) -> None:
        """delete removes Patient.active (https://hl7.org/fhir/R4/fhirpatch.html)."""
        existing = client.create(patient())

        stored = client.patch(
            "Patient", existing.id, fhirpath_patch(operation("delete", "Patient.active"))
        )

        assert "active" not in stored.resource

    def test_delete_a_selected_list_item(self, client: SyncClient) -> None:
        """delete with where() removes only the matching identifier (https://hl7.org/fhir/R4/fhirpatch.html)."""
        existing = client.create(patient())

        stored = client.patch(
            "Patient",
            existing.id,
            fhirpath_patch(operation("delete", "Patient.identifier.where(system='urn:a')")),
        )

        assert stored.resource["identifier"] == [{"system": "urn:b", "value": "2"}]

    def test_delete_of_several_elements_fails(self, client: SyncClient) -> None:
        """delete whose path matches two elements raises PatchFailed (https://hl7.org/fhir/R4/fhirpatch.html)."""
        existing = client.create(patient())

        with pytest.raises(PatchFailed):
            client.patch(
                "Patient", existing.id, fhirpath_patch(operation("delete", "Patient.identifier"))
            )

    def test_replace_a_primitive(self, client: SyncClient) -> None:
        """replace sets Patient.active to true (https://hl7.org/fhir/R4/fhirpatch.html)."""
        existing = client.create(patient())

        stored = client.patch(
            "Patient",
            existing.id,
            fhirpath_patch(operation("replace", "Patient.active", value_boolean=True)),
        )

        assert stored.resource["active"] is True

    def test_replace_inside_an_indexed_item(self, client: SyncClient) -> None:
        """replace at Patient.name[1].family changes only the second name (https://hl7.org/fhir/R4/fhirpatch.html)."""
        existing = client.create(patient())

        stored = client.patch(
            "Patient",
            existing.id,
            fhirpath_patch(operation("replace", "Patient.name[1].family", value_string="Park")),
        )

        assert [n["family"] for n in stored.resource["name"]] == ["Lee", "Park"]

    def test_replace_of_a_missing_element_fails(self, client: SyncClient) -> None:
        """replace of an element the resource lacks raises PatchFailed and writes nothing (https://hl7.org/fhir/R4/fhirpatch.html)."""
        existing = client.create(patient())

        with pytest.raises(PatchFailed):
            client.patch(
                "Patient",
                existing.id,
                fhirpath_patch(operation("replace", "Patient.birthDate", value_date="2000-01-01")),
            )

        assert client.read("Patient", existing.id).version_id == "1"

    def test_move_within_a_list(self, client: SyncClient) -> None:
        """move takes the name at index 1 to index 0 (https://hl7.org/fhir/R4/fhirpatch.html)."""
        existing = client.create(patient())

        stored = client.patch(
            "Patient",
            existing.id,
            fhirpath_patch(operation("move", "Patient.name", source=1, destination=0)),
        )

        assert [n["use"] for n in stored.resource["name"]] == ["nickname", "official"]

    def test_replace_a_choice_element(self, client: SyncClient) -> None:
        """replace at Observation.value replaces valueQuantity (https://hl7.org/fhir/R4/fhirpatch.html)."""
        existing = client.create(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "weight"},
                "valueQuantity": {"value": 70, "unit": "kg"},
            }
        )

        stored = client.patch(
            "Observation",
            existing.id,
            fhirpath_patch(
                operation(
                    "replace", "Observation.value", value_quantity={"value": 72, "unit": "kg"}
                )
            ),
        )

        assert stored.resource["valueQuantity"] == {"value": 72, "unit": "kg"}

    def test_operations_apply_in_order(self, client: SyncClient) -> None:
        """Two operations apply one after the other (https://hl7.org/fhir/R4/fhirpatch.html)."""
        existing = client.create(patient())

        stored = client.patch(
            "Patient",
            existing.id,
            fhirpath_patch(
                operation("add", "Patient", name="gender", value_code="female"),
                operation("replace", "Patient.gender", value_code="other"),
            ),
        )

        assert stored.resource["gender"] == "other"


class TestRefusals:
    def test_unknown_operation_type_is_malformed(self, client: SyncClient) -> None:
        """An operation of type upsert is refused with InvalidRequest (https://hl7.org/fhir/R4/fhirpatch.html)."""
        existing = client.create(patient())

        with pytest.raises(InvalidRequest, match="upsert"):
            client.patch(
                "Patient", existing.id, fhirpath_patch(operation("upsert", "Patient.active"))
            )

    def test_parameters_without_operations_are_malformed(self, client: SyncClient) -> None:
        """A Parameters resource without operations is refused with InvalidRequest (https://hl7.org/fhir/R4/fhirpatch.html)."""
        existing = client.create(patient())

        with pytest.raises(InvalidRequest):
            client.patch("Patient", existing.id, {"resourceType": "Parameters"})

    def test_deleting_the_id_yields_an_invalid_resource(self, client: SyncClient) -> None:
        """A patch deleting Patient.id is refused with InvalidResource and writes nothing (https://hl7.org/fhir/R4/fhirpatch.html)."""
        existing = client.create(patient())

        with pytest.raises(InvalidResource):
            client.patch("Patient", existing.id, fhirpath_patch(operation("delete", "Patient.id")))

        assert client.read("Patient", existing.id).version_id == "1"

    @pytest.mark.requires("versioning.if_match")
    def test_stale_expected_version_conflicts(self, client: SyncClient) -> None:
        """A FHIRPath Patch expecting an old version raises VersionConflict (https://hl7.org/fhir/R4/http.html#concurrency)."""
        existing = client.create(patient())
        client.patch("Patient", existing.id, fhirpath_patch(operation("delete", "Patient.active")))

        with pytest.raises(VersionConflict):
            client.patch(
                "Patient",
                existing.id,
                fhirpath_patch(operation("replace", "Patient.name[0].family", value_string="X")),
                expected_version="1",
            )
