"""The pytest plugin, driven through pytester: selection, gating, results, xdist."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from helios_conformance import suites_dir
from helios_conformance._results import Outcome, load_results

pytest_plugins = ["pytester"]

HERE = Path(__file__).resolve().parent

GATED_TESTS = """
import pytest
from helios_conformance import NotFound

@pytest.mark.requires("crud.create", "crud.read")
def test_declared_passes(client):
    stored = client.create({"resourceType": "Patient"})
    assert client.read("Patient", stored.id).version_id == "1"

@pytest.mark.requires("crud.read")
def test_declared_fails(client):
    assert client.count() == 1

@pytest.mark.requires("tenancy.row_level_security")
def test_undeclared(client):
    raise AssertionError("must not run")

def test_plain():
    pass
"""


@pytest.fixture
def results_path(pytester: pytest.Pytester) -> Path:
    pytester.syspathinsert(HERE)
    return pytester.path / "results.json"


def _results(path: Path) -> dict[str, Any]:
    document = json.loads(path.read_text())
    return {test["node_id"].split("::")[-1]: test for test in document["tests"]}


def test_unknown_backend_is_a_usage_error_listing_installed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--backend=nosuch")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown backend 'nosuch'; installed backends: *memory*sqlite*"])


def test_unknown_capability_in_marker_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        "import pytest\n@pytest.mark.requires('crud.teleport')\ndef test_x(client): pass"
    )
    result = pytester.runpytest("--backend=memory")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown capability id(s) crud.teleport*"])


def test_gating_and_results(pytester: pytest.Pytester, results_path: Path) -> None:
    pytester.makepyfile(test_gated=GATED_TESTS)
    result = pytester.runpytest("--backend=memory", f"--helios-results={results_path}", "-rs")
    result.assert_outcomes(passed=2, failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*not supported: tenancy.row_level_security*"])
    tests = _results(results_path)
    assert set(tests) == {"test_declared_passes", "test_declared_fails", "test_undeclared"}
    assert tests["test_declared_passes"]["outcome"] == "passed"
    assert tests["test_declared_passes"]["capabilities"] == ["crud.create", "crud.read"]
    assert tests["test_declared_fails"]["outcome"] == "failed"
    assert "assert 0 == 1" in tests["test_declared_fails"]["message"]
    assert tests["test_undeclared"]["outcome"] == "not-supported"
    assert tests["test_undeclared"]["message"] == "not supported: tenancy.row_level_security"
    document = json.loads(results_path.read_text())
    assert document["backend"]["name"] == "memory"
    assert "crud.create" in document["backend"]["declared"]


def test_results_are_the_same_under_xdist(pytester: pytest.Pytester, results_path: Path) -> None:
    pytester.makepyfile(test_gated=GATED_TESTS)
    serial = results_path.with_name("serial.json")
    pytester.runpytest("--backend=memory", f"--helios-results={serial}")
    result = pytester.runpytest_subprocess(
        "--backend=memory", "-n", "2", f"--helios-results={results_path}"
    )
    result.assert_outcomes(passed=2, failed=1, skipped=1)
    parallel, alone = load_results(results_path), load_results(serial)
    assert parallel.backend == alone.backend
    assert [(t.node_id, t.outcome, t.capabilities) for t in parallel.tests] == [
        (t.node_id, t.outcome, t.capabilities) for t in alone.tests
    ]


def test_declared_capability_raising_unsupported_fails(
    pytester: pytest.Pytester, results_path: Path
) -> None:
    result = pytester.runpytest(
        str(suites_dir() / "versioning"),
        "--backend=selftest_backends:open_refuses_vread",
        f"--helios-results={results_path}",
        "-p",
        "no:randomly",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    vread = [t for t in load_results(results_path).tests if "versioning.vread" in t.capabilities]
    assert vread
    assert all(t.outcome is Outcome.FAILED for t in vread)
    assert all("Unsupported" in (t.message or "") or "vread" in (t.message or "") for t in vread)


def test_backend_that_ignores_if_match_is_caught(
    pytester: pytest.Pytester, results_path: Path
) -> None:
    result = pytester.runpytest(
        str(suites_dir() / "versioning"),
        "--backend=selftest_backends:open_ignores_if_match",
        f"--helios-results={results_path}",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    if_match = [
        t for t in load_results(results_path).tests if "versioning.if_match" in t.capabilities
    ]
    assert any(t.outcome is Outcome.FAILED for t in if_match)


def test_unavailable_backend_skips_with_reason(
    pytester: pytest.Pytester, results_path: Path
) -> None:
    pytester.makepyfile(test_gated=GATED_TESTS)
    result = pytester.runpytest(
        "--backend=selftest_backends:open_unavailable", f"--helios-results={results_path}", "-rs"
    )
    result.assert_outcomes(passed=1, skipped=3)
    result.stdout.fnmatch_lines(["*unavailable: no server at 127.0.0.1:1 (self-test)*"])
    document = json.loads(results_path.read_text())
    assert document["backend"]["unavailable"] == "no server at 127.0.0.1:1 (self-test)"
    assert {t["outcome"] for t in document["tests"]} == {"unavailable"}


def test_required_backend_that_is_unavailable_fails(
    pytester: pytest.Pytester, results_path: Path
) -> None:
    pytester.makepyfile(test_gated=GATED_TESTS)
    backend = "selftest_backends:open_unavailable"
    result = pytester.runpytest(f"--backend={backend}", f"--helios-require={backend}")
    result.assert_outcomes(passed=1, errors=3)
    result.stdout.fnmatch_lines(["*required by --helios-require*"])


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        ("open_not_a_backend", "*returned object, which lacks info, capabilities or close()*"),
        ("open_unknown_capability", "*unknown capability id(s) crud.teleport*"),
    ],
)
def test_malformed_backend_is_a_usage_error(
    pytester: pytest.Pytester, results_path: Path, factory: str, message: str
) -> None:
    pytester.makepyfile(test_gated=GATED_TESTS)
    result = pytester.runpytest(f"--backend=selftest_backends:{factory}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines([message])


def test_probe_run_finds_under_claimed_capabilities(
    pytester: pytest.Pytester, results_path: Path
) -> None:
    result = pytester.runpytest(
        str(suites_dir() / "history"),
        "--backend=selftest_backends:open_under_claims",
        "--helios-probe",
        f"--helios-results={results_path}",
    )
    assert result.ret == pytest.ExitCode.OK
    results = load_results(results_path)
    assert results.probe
    assert "history.type" not in results.backend.declared
    assert {t.outcome for t in results.tests} == {Outcome.PASSED}


def test_probe_run_finds_unsafe_capabilities(pytester: pytest.Pytester, results_path: Path) -> None:
    pytester.makepyfile(
        test_probe="""
import pytest

@pytest.mark.requires("history.type")
def test_type_history(client):
    assert client.history_type("Patient").entries == ()
"""
    )
    result = pytester.runpytest(
        "--backend=selftest_backends:open_crashes_on_history",
        "--helios-probe",
        f"--helios-results={results_path}",
    )
    result.assert_outcomes(failed=1)
    assert _results(results_path)["test_type_history"]["outcome"] == "failed"


def test_probe_run_records_clean_refusals(pytester: pytest.Pytester, results_path: Path) -> None:
    pytester.makepyfile(
        test_probe="""
import pytest
from helios_conformance import Unsupported

@pytest.mark.requires("tenancy.row_level_security")
def test_refuses(client):
    raise Unsupported("no row-level security here", capability="tenancy.row_level_security")
"""
    )
    result = pytester.runpytest(
        "--backend=memory", "--helios-probe", f"--helios-results={results_path}"
    )
    result.assert_outcomes(skipped=1)
    test = _results(results_path)["test_refuses"]
    assert test["outcome"] == "refused"
    assert test["message"] == "refused: no row-level security here"


def test_node_ids_are_relative_to_the_suites_directory(
    pytester: pytest.Pytester, results_path: Path
) -> None:
    pytester.runpytest(
        str(suites_dir() / "crud"), "--backend=memory", f"--helios-results={results_path}"
    )
    node_ids = [t.node_id for t in load_results(results_path).tests]
    assert node_ids
    assert all(node_id.startswith("suites/crud/test_") for node_id in node_ids)


def test_plugin_is_inert_without_requires_markers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--backend=memory")
    result.assert_outcomes(passed=1)
    assert not (pytester.path / ".helios").exists()


def test_backend_option_must_be_key_value(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gated=GATED_TESTS)
    result = pytester.runpytest("--backend=memory", "--backend-option=novalue")
    result.stdout.fnmatch_lines(["*--backend-option expects KEY=VALUE, got 'novalue'*"])


def test_backend_that_crashes_while_opening_fails_every_test(
    pytester: pytest.Pytester, results_path: Path
) -> None:
    pytester.makepyfile(test_gated=GATED_TESTS)
    result = pytester.runpytest(
        "--backend=selftest_backends:open_crashing", f"--helios-results={results_path}"
    )
    result.assert_outcomes(passed=1, errors=3)
    result.stdout.fnmatch_lines(["*failed to open: RuntimeError: disk on fire*"])


def test_allure_results_carry_area_capability_and_spec_link(
    pytester: pytest.Pytester, results_path: Path
) -> None:
    pytest.importorskip("allure_pytest")
    pytester.makepyfile(test_gated=GATED_TESTS)
    allure_dir = pytester.path / "allure"
    pytester.runpytest("--backend=memory", f"--alluredir={allure_dir}")
    results = [json.loads(p.read_text()) for p in allure_dir.glob("*-result.json")]
    passed = next(r for r in results if r["name"] == "test_declared_passes")
    labels = {(label["name"], label["value"]) for label in passed["labels"]}
    assert {("feature", "CRUD"), ("story", "crud.create"), ("story", "crud.read")} <= labels
    assert {
        "name": "crud.create",
        "type": "link",
        "url": "https://hl7.org/fhir/R4/http.html#create",
    } in passed["links"]
