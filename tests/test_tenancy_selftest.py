"""The tenancy isolation suite catches a backend that forgets the tenant filter on one path."""

from __future__ import annotations

from pathlib import Path

import pytest

from helios_conformance import suites_dir
from helios_conformance._results import Outcome, load_results

pytest_plugins = ["pytester"]

HERE = Path(__file__).resolve().parent
ISOLATION = "test_isolation.py::TestIsolation::test_path_sees_only_its_own_tenant"


def test_a_leaking_type_history_is_caught(pytester: pytest.Pytester) -> None:
    pytester.syspathinsert(HERE)
    results_path = pytester.path / "results.json"
    result = pytester.runpytest(
        str(suites_dir() / "tenancy" / "test_isolation.py"),
        "--backend=selftest_backends:open_leaks_type_history",
        f"--helios-results={results_path}",
        "-p",
        "no:randomly",
    )

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    outcomes = {
        test.node_id.rsplit("/", 1)[-1]: test.outcome for test in load_results(results_path).tests
    }
    failed = sorted(node for node, outcome in outcomes.items() if outcome is Outcome.FAILED)
    # Exactly the type-history paths that show a first page leak; the rest still pass.
    assert failed == [f"{ISOLATION}[history-type-pages]", f"{ISOLATION}[history-type]"]
    assert outcomes[f"{ISOLATION}[history-system]"] is Outcome.PASSED
    assert outcomes[f"{ISOLATION}[search-string]"] is Outcome.PASSED
