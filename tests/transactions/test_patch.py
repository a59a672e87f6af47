"""JSON Patch and FHIRPath Patch applied in memory (helios_conformance.transactions)."""

from __future__ import annotations

from typing import Any

import pytest

from helios_conformance import InvalidRequest, PatchFailed
from helios_conformance.transactions import apply_fhirpath_patch, apply_json_patch, apply_patch

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "name": [{"use": "official", "family": "Lee"}],
    "extension": [{"url": "http://x/a", "valueString": "a"}],
}


def op(kind: str, path: str, *parts: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": kind},
                    {"name": "path", "valueString": path},
                    *parts,
                ],
            }
        ],
    }


def test_apply_patch_dispatches_on_shape() -> None:
    assert apply_patch(PATIENT, [{"op": "add", "path": "/active", "value": True}])["active"]
    patched = apply_patch(PATIENT, op("delete", "Patient.extension('http://x/a')"))
    assert "extension" not in patched


def test_input_is_never_modified() -> None:
    apply_json_patch(PATIENT, [{"op": "remove", "path": "/name"}])
    apply_fhirpath_patch(PATIENT, op("delete", "Patient.name"))
    assert PATIENT["name"] == [{"use": "official", "family": "Lee"}]


@pytest.mark.parametrize("bad", ["text", 3, {"op": "add"}])
def test_non_patches_are_invalid_requests(bad: Any) -> None:
    with pytest.raises(InvalidRequest):
        apply_patch(PATIENT, bad)


def test_json_pointer_without_slash_is_malformed() -> None:
    with pytest.raises(InvalidRequest):
        apply_json_patch(PATIENT, [{"op": "remove", "path": "name"}])


def test_json_patch_replacing_the_document_with_a_list_fails() -> None:
    with pytest.raises(PatchFailed):
        apply_json_patch(PATIENT, [{"op": "replace", "path": "", "value": []}])


def test_add_backbone_value_from_parts() -> None:
    value = {
        "name": "value",
        "part": [
            {"name": "relationship", "valueCodeableConcept": {"text": "friend"}},
            {"name": "name", "valueHumanName": {"family": "Kim"}},
        ],
    }
    patched = apply_fhirpath_patch(
        PATIENT, op("add", "Patient", {"name": "name", "valueString": "contact"}, value)
    )
    assert patched["contact"] == [{"relationship": {"text": "friend"}, "name": {"family": "Kim"}}]


def test_add_choice_element_at_the_root_uses_the_type_suffix() -> None:
    observation = {"resourceType": "Observation", "id": "o", "status": "final"}
    patched = apply_fhirpath_patch(
        observation,
        op(
            "add",
            "Observation",
            {"name": "name", "valueString": "value"},
            {"name": "value", "valueString": "high"},
        ),
    )
    assert patched["valueString"] == "high"


def test_add_to_an_existing_single_value_fails() -> None:
    with pytest.raises(PatchFailed, match="already has a value"):
        apply_fhirpath_patch(
            {**PATIENT, "gender": "male"},
            op(
                "add",
                "Patient",
                {"name": "name", "valueString": "gender"},
                {"name": "value", "valueCode": "female"},
            ),
        )


def test_deleting_the_last_item_removes_the_element() -> None:
    patched = apply_fhirpath_patch(PATIENT, op("delete", "Patient.name[0]"))
    assert "name" not in patched


def test_first_and_last_select_one_item() -> None:
    two = {**PATIENT, "name": [{"family": "A"}, {"family": "B"}]}
    assert apply_fhirpath_patch(two, op("delete", "Patient.name.first()"))["name"] == [
        {"family": "B"}
    ]
    assert apply_fhirpath_patch(two, op("delete", "Patient.name.last()"))["name"] == [
        {"family": "A"}
    ]


def test_delete_of_nothing_changes_nothing() -> None:
    assert apply_fhirpath_patch(PATIENT, op("delete", "Patient.birthDate")) == PATIENT


@pytest.mark.parametrize(
    "path", ["Patient.name.resolve()", "Patient.name.where(use = ", "Patient..name"]
)
def test_unsupported_or_malformed_paths_are_invalid(path: str) -> None:
    with pytest.raises(InvalidRequest):
        apply_fhirpath_patch(PATIENT, op("delete", path))


def test_move_needs_source_and_destination() -> None:
    with pytest.raises(InvalidRequest, match="source"):
        apply_fhirpath_patch(
            PATIENT, op("move", "Patient.name", {"name": "destination", "valueInteger": 0})
        )


def test_operation_index_is_named_in_failures() -> None:
    with pytest.raises(PatchFailed) as caught:
        apply_fhirpath_patch(
            PATIENT, op("replace", "Patient.gender", {"name": "value", "valueCode": "x"})
        )
    assert caught.value.operation == 0
