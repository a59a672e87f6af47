"""The SearchParameter registry: official R4 definitions and custom registration."""

from __future__ import annotations

import pytest

from helios_conformance import InvalidResource
from helios_conformance.search import (
    ParamType,
    SearchParameterRegistry,
    expression_for_base,
    patient_compartment,
    split_union,
)


def test_official_parameters_are_keyed_by_base(registry: SearchParameterRegistry) -> None:
    family = registry.get("Patient", "family")
    assert family is not None
    assert family.type is ParamType.STRING
    assert family.expression == "Patient.name.family"
    assert registry.get("Observation", "family") is None


@pytest.mark.parametrize(
    "code", ["_id", "_lastUpdated", "_tag", "_profile", "_security", "_source"]
)
def test_resource_level_parameters_apply_to_every_type(
    registry: SearchParameterRegistry, code: str
) -> None:
    for resource_type in ("Patient", "Bundle", "Binary", "Observation"):
        assert registry.get(resource_type, code) is not None, (resource_type, code)


def test_text_and_content_are_full_text_parameters(registry: SearchParameterRegistry) -> None:
    text = registry.get("Patient", "_text")
    content = registry.get("Patient", "_content")
    assert text is not None
    assert text.type is ParamType.SPECIAL
    assert content is not None
    assert content.type is ParamType.SPECIAL
    # Bundle is not a DomainResource: it has no narrative parameter.
    assert registry.get("Bundle", "_text") is None


def test_multi_base_expression_keeps_only_its_own_members(
    registry: SearchParameterRegistry,
) -> None:
    patient = registry.get("Observation", "patient")
    assert patient is not None
    assert patient.expression == "Observation.subject.where(resolve() is Patient)"
    assert patient.target == ("Group", "Patient") or set(patient.target) == {"Patient", "Group"}


def test_split_union_respects_parentheses_and_quotes() -> None:
    assert split_union("(a | b).c | d.where(x='|') | e") == ["(a | b).c", "d.where(x='|')", "e"]
    assert expression_for_base("A.x | B.y | (A.z as Quantity)", "A") == "A.x | (A.z as Quantity)"
    assert expression_for_base("A.x", "B") is None


def test_patient_compartment_is_loaded() -> None:
    compartment = patient_compartment()
    assert compartment["Observation"] == ("performer", "subject")
    assert "Organization" not in compartment


def _custom(**overrides: object) -> dict[str, object]:
    resource: dict[str, object] = {
        "resourceType": "SearchParameter",
        "url": "http://example.org/SearchParameter/patient-nickname",
        "name": "nickname",
        "status": "active",
        "code": "nickname",
        "base": ["Patient"],
        "type": "string",
        "expression": "Patient.name.where(use='nickname').given",
    }
    resource.update(overrides)
    return resource


def test_custom_parameter_registers_and_unregisters(
    fresh_registry: SearchParameterRegistry,
) -> None:
    definition = fresh_registry.register(_custom())
    assert definition is not None
    assert definition.custom
    assert fresh_registry.get("Patient", "nickname") == definition
    fresh_registry.register(_custom(status="retired"))
    assert fresh_registry.get("Patient", "nickname") is None


def test_registrations_stay_in_their_registry(fresh_registry: SearchParameterRegistry) -> None:
    other = SearchParameterRegistry()
    fresh_registry.register(_custom())
    assert other.get("Patient", "nickname") is None


@pytest.mark.parametrize(
    ("overrides", "location", "message"),
    [
        ({"url": None}, "SearchParameter.url", "needs a url"),
        ({"code": "bad code"}, "SearchParameter.code", "not a valid search parameter code"),
        ({"code": "family"}, "SearchParameter.code", "already has the official search parameter"),
        ({"type": "colour"}, "SearchParameter.type", "is not a search parameter type"),
        ({"base": ["Patientt"]}, "SearchParameter.base", "is not a FHIR R4 resource type"),
        ({"base": []}, "SearchParameter.base", "non-empty list"),
        ({"expression": None}, "SearchParameter.expression", "needs a FHIRPath expression"),
        ({"expression": "Patient.name.where("}, "SearchParameter.expression", "cannot parse"),
        ({"type": "composite", "component": []}, "SearchParameter.component", "at least two"),
    ],
)
def test_invalid_custom_parameters_are_refused_with_the_element(
    fresh_registry: SearchParameterRegistry,
    overrides: dict[str, object],
    location: str,
    message: str,
) -> None:
    with pytest.raises(InvalidResource, match=message) as caught:
        fresh_registry.register(_custom(**overrides))
    assert caught.value.location == location
    assert fresh_registry.get("Patient", "nickname") is None
