"""The transaction suite catches a backend that commits Bundle entries one by one."""

from __future__ import annotations

from pathlib import Path

import pytest

from helios_conformance import suites_dir
from helios_conformance._results import Outcome, load_results

pytest_plugins = ["pytester"]

HERE = Path(__file__).resolve().parent


def test_non_atomic_transactions_are_caught(pytester: pytest.Pytester) -> None:
    pytester.syspathinsert(HERE)
    results_path = pytester.path / "results.json"
    result = pytester.runpytest(
        str(suites_dir() / "transactions"),
        "--backend=selftest_backends:open_commits_entries_one_by_one",
        f"--helios-results={results_path}",
        "-p",
        "no:randomly",
    )

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    outcomes = {
        test.node_id.split("::", 1)[1]: test.outcome for test in load_results(results_path).tests
    }
    for caught in (
        "TestAtomicity::test_failure_leaves_no_resource",
        "TestAtomicity::test_failure_leaves_no_history",
        "TestAtomicity::test_failure_leaves_no_search_index_row",
        "TestAtomicity::test_failure_restores_an_updated_resource",
        "TestPlaceholderReferences::test_urn_uuid_reference_is_resolved",
    ):
        assert outcomes[caught] is Outcome.FAILED, caught
    # The explicit transaction API and batches are untouched, so they still pass.
    assert outcomes["TestRollback::test_rollback_discards_a_create"] is Outcome.PASSED
    assert outcomes["TestIndependence::test_failed_entry_does_not_undo_the_others"] is (
        Outcome.PASSED
    )
