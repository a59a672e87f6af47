"""FHIRPath extraction: the direct-JSON fast path agrees with fhirpathpy."""

from __future__ import annotations

import json

import pytest

from helios_conformance._data import fixtures_dir, load_fixture_json
from helios_conformance.search import (
    SearchParameterRegistry,
    compile_expression,
    extract,
    parse_resource_json,
    reference_target_type,
    rewrite_expression,
)


def _examples() -> list[str]:
    manifest = json.loads((fixtures_dir() / "MANIFEST.json").read_text())
    return sorted(
        entry["path"]
        for package in manifest["packages"]
        for entry in package["files"]
        if entry["path"].startswith("r4/examples/")
    )


def test_the_vendored_examples_cover_many_types() -> None:
    types = {load_fixture_json(path)["resourceType"] for path in _examples()}
    assert len(types) >= 120


@pytest.mark.parametrize("path", _examples())
def test_fast_path_equals_fhirpathpy_on_official_examples(
    path: str, registry: SearchParameterRegistry
) -> None:
    """Every expression of the example's type gives identical values both ways."""
    text = (fixtures_dir() / path).read_text(encoding="utf-8")
    resource = parse_resource_json(text)
    compared = 0
    for code, definition in sorted(registry.for_type(resource["resourceType"]).items()):
        if definition.expression is None:
            continue
        compiled = compile_expression(definition.expression, resource["resourceType"])
        fast = compiled.evaluate(resource)
        slow = compiled.evaluate(resource, force_fhirpath=True)
        assert json.dumps(fast, default=str) == json.dumps(slow, default=str), (
            code,
            compiled.expression,
        )
        compared += 1
    assert compared > 0


def test_most_official_expressions_take_the_fast_path(registry: SearchParameterRegistry) -> None:
    expressions = [
        (base, d.expression)
        for d in registry
        for base in d.base
        if d.expression is not None and base not in ("Resource", "DomainResource")
    ]
    fast = sum(compile_expression(e, base).fast for base, e in expressions)
    assert fast / len(expressions) > 0.97


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("Observation.value as Quantity", "Observation.value.ofType(Quantity)"),
        ("(Observation.value as Quantity) | (Observation.value as Range)",
         "(Observation.value.ofType(Quantity)) | (Observation.value.ofType(Range))"),
        ("value.as(DateTime) | value.as(Period)", "value.ofType(dateTime) | value.ofType(Period)"),
        ("(Observation.value as CodeableConcept).text", "(Observation.value.ofType(CodeableConcept)).text"),
    ],
)  # fmt: skip
def test_as_is_rewritten_to_of_type(expression: str, expected: str) -> None:
    assert rewrite_expression(expression) == expected


def test_choice_types_and_of_type() -> None:
    observation = {
        "resourceType": "Observation",
        "valueQuantity": {"value": 5, "code": "mg"},
        "effectivePeriod": {"start": "2020"},
    }
    assert extract(observation, "Observation.value") == [{"value": 5, "code": "mg"}]
    assert extract(observation, "Observation.value.ofType(Quantity)") == [
        {"value": 5, "code": "mg"}
    ]
    assert extract(observation, "(Observation.value as CodeableConcept)") == []
    assert extract(observation, "Observation.effective.ofType(dateTime)") == []
    assert extract(observation, "Observation.effective") == [{"start": "2020"}]


def test_resolve_answers_the_target_type() -> None:
    observation = {
        "resourceType": "Observation",
        "contained": [{"resourceType": "Group", "id": "g"}],
        "subject": {"reference": "#g"},
        "performer": [
            {"reference": "Patient/p1"},
            {"reference": "http://x.org/fhir/Practitioner/d1/_history/2"},
            {"display": "no reference"},
        ],
    }
    expression = "Observation.performer.where(resolve() is Patient)"
    assert extract(observation, expression) == [{"reference": "Patient/p1"}]
    assert extract(observation, expression, force_fhirpath=True) == [{"reference": "Patient/p1"}]
    assert extract(observation, "Observation.subject.where(resolve() is Group)") == [
        {"reference": "#g"}
    ]
    assert (
        reference_target_type({"reference": "http://x.org/fhir/Practitioner/d1/_history/2"})
        == "Practitioner"
    )
    assert reference_target_type({"reference": "urn:uuid:1234"}) is None


def test_union_drops_duplicates() -> None:
    patient = {"resourceType": "Patient", "name": [{"family": "Lee"}, {"family": "Lee"}]}
    assert extract(patient, "Patient.name.family") == ["Lee", "Lee"]
    assert extract(patient, "Patient.name.family | Patient.name.family") == ["Lee"]


def test_expressions_are_compiled_once() -> None:
    first = compile_expression("Patient.name.family", "Patient")
    assert compile_expression("Patient.name.family", "Patient") is first
