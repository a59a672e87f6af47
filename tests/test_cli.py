"""The helios-conformance command, end to end on the in-memory backend."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from helios_conformance._cli import main


@pytest.fixture(scope="module")
def certified(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reports = tmp_path_factory.mktemp("reports")
    status = main(
        [
            "run",
            "--backend",
            "memory",
            "--reports",
            str(reports),
            "--workers",
            "0",
            "--",
            "-q",
            "-k",
            "crud or versioning",
        ]
    )
    assert status == 0
    return reports


def test_run_writes_results_and_the_four_reports(certified: Path) -> None:
    names = sorted(path.name for path in certified.iterdir())
    assert names == [
        "capability-matrix.html",
        "capability-matrix.json",
        "capability-matrix.md",
        "memory.json",
    ]
    results = json.loads((certified / "memory.json").read_text())
    assert results["backend"]["name"] == "memory"
    assert all(test["node_id"].startswith("suites/") for test in results["tests"])
    assert {test["outcome"] for test in results["tests"]} <= {"passed", "not-supported"}


def test_matrix_marks_tested_rows_and_untested_rows(certified: Path) -> None:
    matrix = json.loads((certified / "capability-matrix.json").read_text())
    by_id = {row["id"]: row for row in matrix["capabilities"]}
    assert by_id["crud.create"]["backends"]["memory"]["status"] == "implemented"
    assert by_id["versioning.vread"]["backends"]["memory"]["status"] == "implemented"
    assert by_id["bulk.submit"]["backends"]["memory"]["status"] == "no-tests"
    markdown = (certified / "capability-matrix.md").read_text()
    assert "| `crud.create` | SHALL | ✓ |" in markdown


def test_matrix_command_renders_side_by_side(certified: Path, tmp_path: Path) -> None:
    other = json.loads((certified / "memory.json").read_text())
    other["backend"]["name"] = "memory-copy"
    (tmp_path / "memory-copy.json").write_text(json.dumps(other))
    shutil.copy(certified / "memory.json", tmp_path / "memory.json")
    shutil.copy(certified / "capability-matrix.json", tmp_path / "capability-matrix.json")
    out = tmp_path / "out"
    assert main(["matrix", *map(str, sorted(tmp_path.glob("*.json"))), "--out", str(out)]) == 0
    markdown = (out / "capability-matrix.md").read_text()
    assert "| memory | memory-copy |" in markdown


def test_matrix_command_refuses_foreign_documents(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    foreign = tmp_path / "foreign.json"
    foreign.write_text('{"hello": "world"}')
    assert main(["matrix", str(foreign), "--out", str(tmp_path)]) == 2
    assert "foreign.json" in capsys.readouterr().err


def test_backends_lists_installed_plugins(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backends"]) == 0
    listing = capsys.readouterr().out
    assert "memory\thelios_conformance.testing:open_memory_backend" in listing
    assert "sqlite\treference_impl.sqlite:open_sqlite_backend" in listing


def test_catalog_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["catalog", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["id"] == "crud.create"
