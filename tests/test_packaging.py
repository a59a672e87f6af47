"""The wheel carries the suites and fixtures inside the package, and the entry points."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    builders = pytest.importorskip("hatchling.builders.wheel", reason="hatchling builds the wheel")
    out = tmp_path_factory.mktemp("wheel")
    built = next(
        iter(builders.WheelBuilder(str(ROOT)).build(directory=str(out), versions=["standard"]))
    )
    return zipfile.ZipFile(built)


def test_suites_and_fixtures_live_inside_the_package(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    suite_files = sorted(
        p.relative_to(ROOT).as_posix() for p in (ROOT / "suites").rglob("test_*.py")
    )
    assert suite_files
    for suite_file in suite_files:
        assert f"helios_conformance/_bundled/{suite_file}" in names
    assert "helios_conformance/_bundled/fixtures/MANIFEST.json" in names
    assert "helios_conformance/_bundled/fixtures/r4/resource-types.json" in names
    assert "helios_conformance/pytest-suites.ini" in names
    assert "helios_conformance/py.typed" in names
    tops = {name.split("/")[0] for name in names}
    assert "suites" not in tops
    assert "fixtures" not in tops
    assert "tests" not in tops


def test_entry_points(wheel: zipfile.ZipFile) -> None:
    entry_points = next(n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt"))
    text = wheel.read(entry_points).decode()
    assert "[pytest11]\nhelios_conformance = helios_conformance._plugin" in text
    assert "memory = helios_conformance.testing:open_memory_backend" in text
    assert "sqlite = reference_impl.sqlite:open_sqlite_backend" in text
    assert "helios-conformance = helios_conformance._cli:main" in text
