"""The capability matrix: status rules, matrix building, loading and rendering.

The renderers are checked against golden files in ``tests/golden/``
(``capability-matrix.md``, ``.html``, ``.json``), compared byte for byte. After an
intended change to the rendering, regenerate them and review the diff::

    HELIOS_UPDATE_GOLDEN=1 python -m pytest tests/test_matrix.py

With ``HELIOS_UPDATE_GOLDEN=1`` set, the golden tests rewrite the files instead of
comparing (and pass).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from helios_conformance._capabilities import AREAS, CATALOG, Capability, Level, UnknownCapability
from helios_conformance._matrix import (
    MATRIX_SCHEMA_ID,
    CellResult,
    Matrix,
    Status,
    build_matrix,
    capability_status,
    load_runs,
    render_html,
    render_json,
    render_markdown,
    write_matrix,
)
from helios_conformance._results import (
    BackendRecord,
    InvalidResultsDocument,
    Outcome,
    RunResults,
    TestResult,
    write_results,
)

GOLDEN = Path(__file__).resolve().parent / "golden"
PLATFORM = {"implementation": "CPython", "machine": "x86_64", "python": "3.11.9", "system": "Linux"}

P, F, E = Outcome.PASSED, Outcome.FAILED, Outcome.ERROR
NS, R, U, S, XF = (
    Outcome.NOT_SUPPORTED,
    Outcome.REFUSED,
    Outcome.UNAVAILABLE,
    Outcome.SKIPPED,
    Outcome.XFAILED,
)


def t(outcome: Outcome, *capabilities: str, node: str | None = None) -> TestResult:
    """Return a test result; the node id is made up from the outcome unless given."""
    node_id = node or f"suites/test_x.py::test_{'_'.join(capabilities)}_{outcome.value}"
    return TestResult(node_id=node_id, capabilities=capabilities, outcome=outcome)


def numbered(*tests: TestResult) -> tuple[TestResult, ...]:
    """Give the tests distinct node ids (several may share capability and outcome)."""
    return tuple(
        TestResult(f"suites/test_x.py::test_{index}", test.capabilities, test.outcome)
        for index, test in enumerate(tests)
    )


def run(
    *tests: TestResult,
    name: str = "memory",
    declared: tuple[str, ...] = (),
    planned: tuple[str, ...] = (),
    probe: bool = False,
    unavailable: str | None = None,
) -> RunResults:
    return RunResults(
        backend=BackendRecord(
            name=name,
            version="1.0",
            declared=declared,
            planned=planned,
            unavailable=unavailable,
        ),
        tests=numbered(*tests),
        suite_version="0.1.0",
        probe=probe,
        platform=PLATFORM,
    )


def status_of(results: RunResults, capability_id: str = "crud.create") -> Status:
    return capability_status(results, capability_id).status


CREATE = ("crud.create",)


# --- Status ----------------------------------------------------------------------------


def test_every_status_has_a_distinct_mark_and_label() -> None:
    assert [status.mark for status in Status] == ["✓", "◐", "!", "?", "✗", "○", "⇡", "⚠", "—"]
    assert len({status.label for status in Status}) == len(Status)
    assert all(status.meaning for status in Status)
    assert Status.NOT_SUPPORTED.value == "not-supported"


# --- declared capabilities -------------------------------------------------------------


def test_declared_and_every_test_passed_is_implemented() -> None:
    results = run(t(P, "crud.create"), t(P, "crud.create"), declared=CREATE)
    assert capability_status(results, "crud.create") == CellResult(
        Status.IMPLEMENTED, passed=2, failed=0, ran=2
    )


def test_declared_with_passes_and_failures_is_partial() -> None:
    results = run(t(P, "crud.create"), t(F, "crud.create"), t(E, "crud.create"), declared=CREATE)
    assert capability_status(results, "crud.create") == CellResult(
        Status.PARTIAL, passed=1, failed=2, ran=3
    )


@pytest.mark.parametrize("outcomes", [(F,), (E,), (F, E, S)])
def test_declared_and_every_test_that_ran_failed_is_failing(outcomes: tuple[Outcome, ...]) -> None:
    results = run(*(t(outcome, "crud.create") for outcome in outcomes), declared=CREATE)
    cell = capability_status(results, "crud.create")
    assert cell.status is Status.FAILING
    assert (cell.passed, cell.ran) == (0, cell.failed)


def test_skipped_tests_do_not_count_against_a_declared_capability() -> None:
    results = run(t(P, "crud.create"), t(S, "crud.create"), t(XF, "crud.create"), declared=CREATE)
    assert capability_status(results, "crud.create") == CellResult(
        Status.IMPLEMENTED, passed=1, failed=0, ran=1
    )


@pytest.mark.parametrize("outcomes", [(S,), (S, XF), (R,), (NS, S)])
def test_declared_with_no_test_that_ran_is_not_run(outcomes: tuple[Outcome, ...]) -> None:
    results = run(*(t(outcome, "crud.create") for outcome in outcomes), declared=CREATE)
    assert capability_status(results, "crud.create") == CellResult(Status.NOT_RUN)


# --- undeclared and planned --------------------------------------------------------------


def test_undeclared_is_not_supported() -> None:
    assert status_of(run(t(NS, "crud.create"))) is Status.NOT_SUPPORTED


def test_undeclared_outside_a_probe_run_is_not_supported_whatever_ran() -> None:
    # Only probe runs judge undeclared capabilities by their tests.
    assert status_of(run(t(P, "crud.create"), t(F, "crud.create"))) is Status.NOT_SUPPORTED


def test_planned_is_planned() -> None:
    assert status_of(run(t(NS, "crud.create"), planned=CREATE)) is Status.PLANNED


def test_probe_undeclared_every_test_passed_is_under_claimed() -> None:
    results = run(t(P, "crud.create"), t(P, "crud.create"), probe=True)
    assert capability_status(results, "crud.create") == CellResult(
        Status.UNDER_CLAIMED, passed=2, failed=0, ran=2
    )


def test_probe_undeclared_passes_and_clean_refusals_is_under_claimed() -> None:
    results = run(t(P, "crud.create"), t(R, "crud.create"), probe=True)
    assert status_of(results) is Status.UNDER_CLAIMED


@pytest.mark.parametrize("bad", [F, E])
def test_probe_undeclared_with_a_failure_is_unsafe(bad: Outcome) -> None:
    results = run(t(P, "crud.create"), t(R, "crud.create"), t(bad, "crud.create"), probe=True)
    assert capability_status(results, "crud.create") == CellResult(
        Status.UNSAFE, passed=1, failed=1, ran=2
    )


def test_probe_undeclared_refused_cleanly_is_not_supported() -> None:
    results = run(t(R, "crud.create"), t(R, "crud.create"), probe=True)
    assert status_of(results) is Status.NOT_SUPPORTED


def test_probe_planned_whose_tests_ran_is_judged_as_undeclared() -> None:
    assert status_of(run(t(P, "crud.create"), planned=CREATE, probe=True)) is Status.UNDER_CLAIMED
    assert status_of(run(t(F, "crud.create"), planned=CREATE, probe=True)) is Status.UNSAFE


def test_probe_planned_whose_tests_were_all_refused_stays_planned() -> None:
    assert status_of(run(t(R, "crud.create"), planned=CREATE, probe=True)) is Status.PLANNED


def test_probe_does_not_change_declared_rules() -> None:
    results = run(t(P, "crud.create"), t(F, "crud.create"), declared=CREATE, probe=True)
    assert status_of(results) is Status.PARTIAL


# --- precedence --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("declared", "planned", "probe", "unavailable"),
    [
        (CREATE, (), False, None),
        ((), CREATE, False, None),
        ((), (), True, None),
        (CREATE, (), False, "no server"),
    ],
)
def test_no_tests_takes_precedence_over_everything(
    declared: tuple[str, ...], planned: tuple[str, ...], probe: bool, unavailable: str | None
) -> None:
    results = run(
        t(P, "crud.read"),
        declared=declared,
        planned=planned,
        probe=probe,
        unavailable=unavailable,
    )
    assert capability_status(results, "crud.create") == CellResult(Status.NO_TESTS)


@pytest.mark.parametrize(
    ("declared", "planned"),
    [(CREATE, ()), ((), CREATE), ((), ())],
)
def test_unavailable_backend_runs_nothing(
    declared: tuple[str, ...], planned: tuple[str, ...]
) -> None:
    """An unavailable backend never opened: its declaration is unknown, so every row is '?'."""
    expected = Status.NOT_RUN
    for probe in (False, True):
        results = run(
            t(U, "crud.create"),
            declared=declared,
            planned=planned,
            probe=probe,
            unavailable="no server at localhost:5432",
        )
        assert status_of(results) is expected


def test_unavailable_overrides_whatever_the_tests_recorded() -> None:
    # Defensive: a document that is unavailable yet lists outcomes is still "not run".
    results = run(t(P, "crud.create"), declared=CREATE, unavailable="gone")
    assert status_of(results) is Status.NOT_RUN


def test_a_test_with_several_capabilities_counts_for_each() -> None:
    results = run(
        t(P, "crud.create", "crud.read"),
        t(F, "crud.read"),
        declared=("crud.create", "crud.read"),
    )
    assert capability_status(results, "crud.create") == CellResult(Status.IMPLEMENTED, 1, 0, 1)
    assert capability_status(results, "crud.read") == CellResult(Status.PARTIAL, 1, 1, 2)


def test_probe_tests_needing_an_undeclared_capability_do_not_judge_declared_ones() -> None:
    # An ordinary run would have skipped these tests; in a probe run they tell about
    # crud.update (undeclared), not about crud.create (declared).
    results = run(
        t(P, "crud.create"),
        t(F, "crud.create", "crud.update"),
        t(P, "crud.create", "crud.update"),
        declared=CREATE,
        probe=True,
    )
    assert capability_status(results, "crud.create") == CellResult(Status.IMPLEMENTED, 1, 0, 1)
    assert capability_status(results, "crud.update") == CellResult(Status.UNSAFE, 1, 1, 2)


def test_a_declared_capability_whose_tests_all_need_undeclared_ones_is_not_run() -> None:
    results = run(t(P, "crud.create", "crud.update"), declared=CREATE, probe=True)
    assert status_of(results) is Status.NOT_RUN
    assert status_of(results, "crud.update") is Status.UNDER_CLAIMED


def test_a_capability_named_twice_by_one_test_counts_once() -> None:
    results = run(t(P, "crud.create", "crud.create"), declared=CREATE)
    assert capability_status(results, "crud.create") == CellResult(Status.IMPLEMENTED, 1, 0, 1)


def test_capability_status_refuses_an_unknown_id() -> None:
    with pytest.raises(UnknownCapability, match=r"crud\.teleport"):
        capability_status(run(t(P, "crud.create")), "crud.teleport")


# --- build_matrix ------------------------------------------------------------------------


def test_matrix_rows_follow_the_catalog_grouped_by_area() -> None:
    matrix = build_matrix([run(t(P, "crud.create"), declared=CREATE)])
    assert [row.capability for row in matrix.rows] == list(CATALOG)
    assert tuple(group.area for group in matrix.areas) == AREAS
    for group in matrix.areas:
        assert {row.capability.area for row in group.rows} == {group.area}


def test_matrix_columns_keep_the_order_given_and_describe_the_run() -> None:
    beta = run(t(P, "crud.create"), name="beta", probe=True)
    alpha = run(t(P, "crud.create"), name="alpha", declared=CREATE, unavailable="no driver")
    matrix = build_matrix([beta, alpha])
    assert [column.name for column in matrix.backends] == ["beta", "alpha"]
    assert matrix.backends[0].probe
    assert matrix.backends[1].unavailable == "no driver"
    assert (matrix.backends[1].version, matrix.backends[1].suite_version) == ("1.0", "0.1.0")
    first = matrix.rows[0]
    assert first.capability.id == "crud.create"
    assert [cell.status for cell in first.cells] == [Status.UNDER_CLAIMED, Status.NOT_RUN]


def test_matrix_totals_count_every_capability_once() -> None:
    results = run(
        t(P, "crud.create"),
        t(F, "crud.read"),
        t(NS, "crud.update"),
        declared=("crud.create", "crud.read"),
    )
    column = build_matrix([results]).backends[0]
    assert sum(count for _, count in column.totals) == len(CATALOG)
    assert [status for status, _ in column.totals] == list(Status)
    assert column.total(Status.IMPLEMENTED) == 1
    assert column.total(Status.FAILING) == 1
    assert column.total(Status.NOT_SUPPORTED) == 1
    assert column.total(Status.NO_TESTS) == len(CATALOG) - 3


def test_runs_of_one_backend_are_merged_into_one_column() -> None:
    """Runs of one backend in two modes: each mode's capability is judged by the tests
    of the run that declared it, a capability both declared by all their tests."""
    shared = run(
        t(P, "tenancy.shared_schema"),
        t(NS, "tenancy.schema_per_tenant"),
        t(P, "crud.create"),
        declared=("tenancy.shared_schema", "crud.create"),
    )
    schema = run(
        t(NS, "tenancy.shared_schema"),
        t(P, "tenancy.schema_per_tenant"),
        t(F, "crud.create"),
        declared=("tenancy.schema_per_tenant", "crud.create"),
    )
    matrix = build_matrix([shared, schema])
    assert [column.name for column in matrix.backends] == ["memory"]
    cells = {row.capability.id: row.cells[0] for row in matrix.rows}
    assert cells["tenancy.shared_schema"].status is Status.IMPLEMENTED
    assert cells["tenancy.schema_per_tenant"].status is Status.IMPLEMENTED
    assert (cells["crud.create"].status, cells["crud.create"].ran) == (Status.PARTIAL, 2)


def test_runs_of_one_backend_from_different_suite_versions_are_refused() -> None:
    older = replace(run(t(P, "crud.create")), suite_version="0.0.1")
    with pytest.raises(ValueError, match="suite versions 0.0.1, "):
        build_matrix([older, run(t(P, "crud.create"))])


def test_no_runs_are_refused() -> None:
    with pytest.raises(ValueError, match="no results documents"):
        build_matrix([])


@pytest.mark.parametrize(
    "results",
    [
        run(t(P, "crud.create", "crud.teleport"), name="warp"),
        run(t(P, "crud.create"), name="warp", declared=("crud.teleport",)),
        run(t(P, "crud.create"), name="warp", planned=("crud.teleport",)),
    ],
    ids=["in-a-test", "declared", "planned"],
)
def test_an_id_outside_the_catalog_is_refused_naming_it_and_the_backend(
    results: RunResults,
) -> None:
    with pytest.raises(ValueError, match=r"backend 'warp'.*crud\.teleport") as caught:
        build_matrix([run(t(P, "crud.create"), name="ok"), results])
    assert isinstance(caught.value, UnknownCapability)
    assert caught.value.unknown == ("crud.teleport",)


def test_an_id_both_declared_and_planned_is_refused() -> None:
    results = run(t(P, "crud.create"), declared=CREATE, planned=CREATE)
    with pytest.raises(ValueError, match=r"both declared and planned: crud\.create"):
        build_matrix([results])


# --- rendering details -------------------------------------------------------------------


def test_markdown_cells_show_counts_for_partial_and_failing_only() -> None:
    results = run(
        t(P, "crud.create"),
        t(F, "crud.create"),
        t(F, "crud.read"),
        t(P, "crud.update"),
        declared=("crud.create", "crud.read", "crud.update"),
    )
    text = render_markdown(build_matrix([results]))
    assert "| `crud.create` | SHALL | ◐ 1/2 |" in text
    assert "| `crud.read` | SHALL | ! 0/1 |" in text
    assert "| `crud.update` | SHALL | ✓ |" in text
    assert "| `crud.delete` | SHALL | — |" in text


def test_markdown_escapes_pipes_and_shows_the_unavailable_reason() -> None:
    results = RunResults(
        backend=BackendRecord(
            name="pg", version="1|2", declared=CREATE, unavailable="no server\nat <host>"
        ),
        tests=(t(U, "crud.create"),),
        suite_version="0.1.0",
        platform=PLATFORM,
    )
    text = render_markdown(build_matrix([results]))
    assert "| pg | 1\\|2 | n/a | 0.1.0 | no | ? 1 · — " in text
    assert text.splitlines()[6].endswith("| Unavailable |")
    assert "| no server at \\<host\\> |" in text


def test_markdown_omits_the_unavailable_column_when_every_backend_ran() -> None:
    text = render_markdown(build_matrix([run(t(P, "crud.create"))]))
    assert "Unavailable" not in text.split("## Legend")[0]


def test_html_escapes_text_and_titles_cells_with_passed_over_ran() -> None:
    results = RunResults(
        backend=BackendRecord(name="<script>", declared=CREATE),
        tests=numbered(t(P, "crud.create"), t(E, "crud.create")),
        suite_version="0.1.0",
        platform=PLATFORM,
    )
    page = render_html(build_matrix([results]))
    assert "<script>" not in page
    assert "<th>&lt;script&gt;</th>" in page
    assert '<td class="status status-partial" title="partial: 1/2 passed">◐ 1/2</td>' in page
    assert page.startswith("<!DOCTYPE html>\n")
    assert "<style>" in page
    assert "<link" not in page
    assert "<script" not in page


def test_json_lists_every_capability_with_a_cell_per_backend() -> None:
    matrix = build_matrix(
        [run(t(P, "crud.create"), name="a", declared=CREATE), run(t(F, "crud.create"), name="b")]
    )
    text = render_json(matrix)
    assert text.endswith("}\n")
    document = json.loads(text)
    assert document["schema"] == MATRIX_SCHEMA_ID
    assert [entry["id"] for entry in document["capabilities"]] == [c.id for c in CATALOG]
    create = document["capabilities"][0]
    assert create == {
        "id": "crud.create",
        "title": CATALOG[0].title,
        "area": "CRUD",
        "level": "SHALL",
        "spec_url": CATALOG[0].spec_url,
        "backends": {
            "a": {"status": "implemented", "mark": "✓", "passed": 1, "failed": 0, "ran": 1},
            "b": {"status": "not-supported", "mark": "✗", "passed": 0, "failed": 1, "ran": 1},
        },
    }
    assert [backend["name"] for backend in document["backends"]] == ["a", "b"]


# --- golden files ------------------------------------------------------------------------

GOLDEN_CATALOG = (
    Capability("core.ok", "create with a server-assigned id", "Core", Level.SHALL,
               "https://hl7.org/fhir/R4/http.html#create"),
    Capability("core.partial", "update | upsert", "Core", Level.SHOULD,
               "https://hl7.org/fhir/R4/http.html#update"),
    Capability("core.failing", "delete", "Core", Level.SHALL,
               "https://hl7.org/fhir/R4/http.html#delete"),
    Capability("core.none", "vread", "Core", Level.SHOULD,
               "https://hl7.org/fhir/R4/http.html#vread"),
    Capability("search.type", ":[type] on references", "Search & <friends>", Level.SHOULD,
               "https://hl7.org/fhir/R4/search.html#reference"),
    Capability("search.count", "_count page size", "Search & <friends>", Level.SHALL,
               "https://hl7.org/fhir/R4/search.html#count"),
    Capability("search.refused", "*refused* cleanly", "Search & <friends>", Level.MAY,
               "https://hl7.org/fhir/R4/search.html"),
)  # fmt: skip


def golden_runs() -> list[RunResults]:
    """Return two fixed runs covering every status (alpha plain, beta a probe run)."""
    alpha = RunResults(
        backend=BackendRecord(
            name="alpha",
            version="2.3.1",
            server_version=None,
            declared=("core.ok", "core.partial", "core.failing", "core.none"),
            planned=("search.count",),
        ),
        tests=numbered(
            t(P, "core.ok"),
            t(P, "core.ok", "core.partial"),
            t(F, "core.partial"),
            t(F, "core.failing"),
            t(E, "core.failing"),
            t(NS, "search.type"),
            t(NS, "search.count"),
            t(NS, "search.refused", "search.type"),
        ),
        suite_version="0.1.0",
        platform=PLATFORM,
    )
    beta = RunResults(
        backend=BackendRecord(
            name="beta",
            version="0.9.0",
            server_version="7.0 <rc|1>",
            declared=("core.ok", "core.partial", "core.failing"),
            planned=("search.count",),
        ),
        tests=numbered(
            t(P, "core.ok"),
            t(P, "core.ok", "core.partial"),
            t(S, "core.failing"),
            t(F, "core.partial"),
            t(P, "search.type"),
            t(R, "search.type", "search.refused"),
            t(P, "search.count"),
            t(F, "search.count"),
            t(R, "search.refused"),
        ),
        suite_version="0.1.0",
        probe=True,
        platform=PLATFORM,
    )
    return [alpha, beta]


def golden_matrix() -> Matrix:
    return build_matrix(golden_runs(), catalog=GOLDEN_CATALOG)


def test_golden_runs_cover_every_status() -> None:
    seen = {cell.status for row in golden_matrix().rows for cell in row.cells}
    assert seen == set(Status)


RENDERERS: dict[str, Callable[[Matrix], str]] = {
    "md": render_markdown,
    "html": render_html,
    "json": render_json,
}


@pytest.mark.parametrize("suffix", sorted(RENDERERS))
def test_golden_file(suffix: str) -> None:
    rendered = RENDERERS[suffix](golden_matrix()).encode("utf-8")
    path = GOLDEN / f"capability-matrix.{suffix}"
    if os.environ.get("HELIOS_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rendered)
    assert path.read_bytes() == rendered, (
        f"{path.name} differs from the rendering; if the change is intended, "
        "rerun with HELIOS_UPDATE_GOLDEN=1 and review the diff"
    )


@pytest.mark.parametrize("suffix", sorted(RENDERERS))
def test_rendering_is_byte_stable_and_ignores_test_order(suffix: str) -> None:
    render = RENDERERS[suffix]
    first = render(golden_matrix())
    assert render(golden_matrix()) == first
    shuffled = [
        RunResults(
            backend=results.backend,
            tests=tuple(reversed(results.tests)),
            suite_version=results.suite_version,
            probe=results.probe,
            platform=dict(reversed(list(results.platform.items()))),
        )
        for results in golden_runs()
    ]
    assert render(build_matrix(shuffled, catalog=GOLDEN_CATALOG)) == first


# --- files -------------------------------------------------------------------------------


def test_load_runs_sorts_by_backend_and_skips_the_matrix_json(tmp_path: Path) -> None:
    alpha, beta = golden_runs()
    write_results(beta, tmp_path / "a-beta.json")
    write_results(alpha, tmp_path / "z-alpha.json")
    write_matrix(golden_matrix(), tmp_path)
    paths = sorted(tmp_path.glob("*.json"))
    assert tmp_path / "capability-matrix.json" in paths
    loaded = load_runs(paths)
    assert [results.backend.name for results in loaded] == ["alpha", "beta"]
    assert loaded[0].backend.declared == tuple(sorted(alpha.backend.declared))
    assert {test.node_id for test in loaded[1].tests} == {test.node_id for test in beta.tests}


def test_load_runs_roundtrips_into_the_same_matrix(tmp_path: Path) -> None:
    for results in golden_runs():
        write_results(results, tmp_path / f"{results.backend.name}.json")
    loaded = load_runs(reversed(sorted(tmp_path.glob("*.json"))))
    assert render_json(build_matrix(loaded, catalog=GOLDEN_CATALOG)) == render_json(golden_matrix())


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ('{"schema": "someone-else/report/3"}', "not a helios-conformance results document"),
        ('{"tests": []}', "it has no schema field"),
        ("[1, 2]", "it has no schema field"),
        ("not json {", "not JSON"),
        ('{"schema": "helios-conformance/results/1"}', "at \\(top level\\)"),
    ],
)
def test_load_runs_refuses_foreign_files_naming_path_and_reason(
    tmp_path: Path, content: str, reason: str
) -> None:
    good = tmp_path / "memory.json"
    write_results(run(t(P, "crud.create")), good)
    foreign = tmp_path / "foreign.json"
    foreign.write_text(content, encoding="utf-8")
    with pytest.raises(InvalidResultsDocument, match=reason) as caught:
        load_runs([good, foreign])
    assert str(caught.value).startswith(str(foreign))


def test_load_runs_keeps_every_file_of_one_backend(tmp_path: Path) -> None:
    first, second = tmp_path / "one.json", tmp_path / "two.json"
    write_results(run(t(P, "crud.create"), declared=("crud.create",)), first)
    write_results(run(t(F, "crud.create"), declared=("crud.create",)), second)
    loaded = load_runs([first, second])
    assert [len(one.tests) for one in loaded] == [1, 1]
    cell = build_matrix(loaded).rows[0].cells[0]
    assert (cell.status, cell.ran) == (Status.PARTIAL, 2)


def test_write_matrix_writes_three_pages_atomically(tmp_path: Path) -> None:
    out = tmp_path / "reports" / "nested"
    matrix = golden_matrix()
    (tmp_path / "reports").mkdir()
    written = write_matrix(matrix, out)
    assert [path.name for path in written] == [
        "capability-matrix.md",
        "capability-matrix.html",
        "capability-matrix.json",
    ]
    assert written[0].read_bytes() == render_markdown(matrix).encode("utf-8")
    assert written[1].read_bytes() == render_html(matrix).encode("utf-8")
    assert written[2].read_bytes() == render_json(matrix).encode("utf-8")
    # Rewriting replaces the files and leaves no temporary files behind.
    assert write_matrix(matrix, out) == written
    assert sorted(path.name for path in out.iterdir()) == sorted(path.name for path in written)
