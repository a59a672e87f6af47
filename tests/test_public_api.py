"""The public front door and the layering rules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import helios_conformance
from helios_conformance import (
    AREAS,
    CATALOG,
    CapabilityDeclaration,
    Level,
    UnknownCapability,
    capability,
)

ROOT = Path(__file__).resolve().parent.parent


def test_all_is_sorted_and_complete() -> None:
    exported = helios_conformance.__all__

    # Sorted the way ruff's RUF022 sorts: SCREAMING_CASE, then CamelCase, then the rest.
    def kind(name: str) -> tuple[int, str]:
        if name.isupper():
            return (0, name)
        return (1, name) if name[0].isupper() else (2, name)

    assert list(exported) == sorted(exported, key=kind)
    assert len(set(exported)) == len(exported)
    for name in exported:
        assert hasattr(helios_conformance, name), name
    # "@py_builtins"-style names come from pytest's assertion rewriting of the plugin package.
    public = {name for name in vars(helios_conformance) if not name.startswith(("_", "@"))}
    modules = {"bulk", "search", "testing", "transactions"}
    assert public - modules - {"annotations"} == set(exported) - {"__version__"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


DRIVERS = {
    "aiosqlite",
    "sqlite3",
    "asyncpg",
    "pymongo",
    "elasticsearch",
    "neo4j",
    "cassandra",
    "boto3",
}


@pytest.mark.parametrize("path", sorted((ROOT / "helios_conformance").rglob("*.py")), ids=str)
def test_harness_imports_no_driver_and_no_backend(path: Path) -> None:
    imported = _imports(path)
    assert not imported & DRIVERS
    assert "reference_impl" not in imported


@pytest.mark.parametrize("path", sorted((ROOT / "suites").rglob("*.py")), ids=str)
def test_suites_import_only_the_harness(path: Path) -> None:
    imported = _imports(path)
    assert imported <= {
        "helios_conformance",
        "pytest",
        "hypothesis",
        "__future__",
        "datetime",
        "json",
        "copy",
        "uuid",
        "re",
        "typing",
        "collections",
        "itertools",
        "time",
        "asyncio",
        "base64",
        "dataclasses",
        "functools",
        "string",
        "math",
    }, imported
    source = path.read_text(encoding="utf-8")
    assert "info.name ==" not in source
    assert "backend.name" not in source


class TestCatalog:
    def test_ids_are_unique_dotted_and_known_areas(self) -> None:
        ids = [c.id for c in CATALOG]
        assert len(ids) == len(set(ids))
        for entry in CATALOG:
            assert entry.id.count(".") >= 1
            assert entry.id == entry.id.lower()
            assert entry.area in AREAS
            assert entry.spec_url.startswith("https://hl7.org/fhir/")
            assert isinstance(entry.level, Level)
            assert entry.title

    def test_areas_cover_the_mission(self) -> None:
        ids = {c.id for c in CATALOG}
        for expected in (
            "crud.create",
            "versioning.vread",
            "versioning.if_match",
            "history.instance",
            "history.type",
            "history.system",
            "history.deletes",
            "transactions.bundle",
            "transactions.batch",
            "conditional.create",
            "conditional.update",
            "conditional.delete",
            "conditional.patch",
            "patch.json_patch",
            "tenancy.shared_schema",
            "tenancy.schema_per_tenant",
            "tenancy.permissions",
            "search.param.string",
            "search.param.token",
            "search.param.date",
            "search.param.number",
            "search.param.quantity",
            "search.param.reference",
            "search.param.uri",
            "search.param.composite",
            "search.modifier.not",
            "search.modifier.missing",
            "search.prefix.ap",
            "search.text",
            "search.content",
            "search.filter",
            "search.chain",
            "search.has",
            "search.include",
            "search.revinclude",
            "search.paging.offset",
            "search.paging.cursor",
            "search.sort.single",
            "search.sort.multi",
            "bulk.export.system",
            "bulk.export.patient",
            "bulk.export.group",
            "bulk.submit",
        ):
            assert expected in ids

    def test_lookup(self) -> None:
        assert capability("crud.create").area == "CRUD"
        with pytest.raises(UnknownCapability, match="crud.teleport"):
            capability("crud.teleport")

    def test_declaration_rejects_unknown_and_overlapping_ids(self) -> None:
        with pytest.raises(UnknownCapability, match="declared capabilities: unknown capability id"):
            CapabilityDeclaration.of(["crud.create", "crud.teleport"])
        with pytest.raises(ValueError, match="both supported and planned: crud.create"):
            CapabilityDeclaration.of(["crud.create"], planned=["crud.create"])
        declaration = CapabilityDeclaration.of(["crud.create", "crud.read"])
        assert declaration.supports("crud.create", "crud.read")
        assert declaration.missing(["crud.read", "crud.delete", "history.type"]) == (
            "crud.delete",
            "history.type",
        )
