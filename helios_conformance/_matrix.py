"""The capability matrix: results documents in, Markdown/HTML/JSON pages out.

Every cell is computed from the results documents alone (see :func:`capability_status`),
and the renderers are pure functions of a :class:`Matrix`: the same documents give the
same bytes, whatever order the files or the tests inside them came in.
"""

from __future__ import annotations

import enum
import html
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ._capabilities import CATALOG, Capability, UnknownCapability
from ._results import (
    RESULTS_SCHEMA_ID,
    InvalidResultsDocument,
    Outcome,
    RunResults,
    is_results_document,
    results_from_json,
)

MATRIX_SCHEMA_ID = "helios-conformance/matrix/1"
MATRIX_BASENAME = "capability-matrix"


class Status(enum.StrEnum):
    """The verdict for one backend and one capability; the value is its stable name."""

    IMPLEMENTED = "implemented"
    PARTIAL = "partial"
    FAILING = "failing"
    NOT_RUN = "not-run"
    NOT_SUPPORTED = "not-supported"
    PLANNED = "planned"
    UNDER_CLAIMED = "under-claimed"
    UNSAFE = "unsafe"
    NO_TESTS = "no-tests"

    @property
    def mark(self) -> str:
        """The one-character symbol shown in a matrix cell."""
        return _MARKS[self]

    @property
    def label(self) -> str:
        """A short human name ("not supported")."""
        return _LABELS[self]

    @property
    def meaning(self) -> str:
        """The legend's explanation of the status."""
        return _MEANINGS[self]


_MARKS: Mapping[Status, str] = {
    Status.IMPLEMENTED: "✓",
    Status.PARTIAL: "◐",
    Status.FAILING: "!",
    Status.NOT_RUN: "?",
    Status.NOT_SUPPORTED: "✗",
    Status.PLANNED: "○",
    Status.UNDER_CLAIMED: "⇡",
    Status.UNSAFE: "⚠",
    Status.NO_TESTS: "—",
}
_LABELS: Mapping[Status, str] = {
    Status.IMPLEMENTED: "implemented",
    Status.PARTIAL: "partial",
    Status.FAILING: "failing",
    Status.NOT_RUN: "not run",
    Status.NOT_SUPPORTED: "not supported",
    Status.PLANNED: "planned",
    Status.UNDER_CLAIMED: "under-claimed",
    Status.UNSAFE: "unsafe",
    Status.NO_TESTS: "no tests yet",
}
_MEANINGS: Mapping[Status, str] = {
    Status.IMPLEMENTED: "declared; every test that ran passed",
    Status.PARTIAL: "declared; some tests pass, some fail",
    Status.FAILING: "declared, but every test that ran failed: the claim is false",
    Status.NOT_RUN: "declared, but none of its tests ran (skipped, or the backend was unavailable)",
    Status.NOT_SUPPORTED: "not declared",
    Status.PLANNED: "declared as planned",
    Status.UNDER_CLAIMED: "probe run: not declared, yet every test of it that ran passed",
    Status.UNSAFE: (
        "probe run: not declared, and a test failed instead of refusing cleanly with Unsupported"
    ),
    Status.NO_TESTS: "no test in the suite exercises this capability yet",
}


@dataclass(frozen=True, slots=True)
class CellResult:
    """One cell: the status of one capability for one backend, and the test counts behind it.

    ``ran`` counts the tests that executed (passed, failed or errored); ``failed``
    includes errors. Refused, skipped and xfailed tests are in none of the counts.
    """

    status: Status
    passed: int = 0
    failed: int = 0
    ran: int = 0


@dataclass(frozen=True, slots=True)
class BackendColumn:
    """One backend column of the matrix, as its results document described the run."""

    name: str
    version: str | None
    server_version: str | None
    suite_version: str
    unavailable: str | None
    probe: bool
    totals: tuple[tuple[Status, int], ...]
    """How many capabilities got each status, for every status in :class:`Status` order."""

    def total(self, status: Status) -> int:
        """Return how many capabilities have ``status`` in this column."""
        return dict(self.totals)[status]


@dataclass(frozen=True, slots=True)
class MatrixRow:
    """One capability and its cells, one per backend column (in column order)."""

    capability: Capability
    cells: tuple[CellResult, ...]


@dataclass(frozen=True, slots=True)
class AreaGroup:
    """The rows of one area (a table of the rendered matrix), in catalog order."""

    area: str
    rows: tuple[MatrixRow, ...]


@dataclass(frozen=True, slots=True)
class Matrix:
    """The whole matrix: backend columns in the order given, rows grouped by area."""

    backends: tuple[BackendColumn, ...]
    areas: tuple[AreaGroup, ...]

    @property
    def rows(self) -> tuple[MatrixRow, ...]:
        """Every row, in catalog order."""
        return tuple(row for group in self.areas for row in group.rows)


@dataclass(slots=True)
class _Tally:
    carried: int = 0
    passed: int = 0
    failed: int = 0


def _tally(results: RunResults) -> dict[str, _Tally]:
    """Count, per capability id, the tests that carry it and how they went (one pass)."""
    declared = frozenset(results.backend.declared)
    tallies: dict[str, _Tally] = {}
    for test in results.tests:
        # A test that names an id twice still counts once for it.
        capabilities = set(test.capabilities)
        fully_declared = capabilities <= declared
        for capability_id in capabilities:
            tally = tallies.setdefault(capability_id, _Tally())
            tally.carried += 1
            # A declared capability is judged only by the tests an ordinary run would
            # execute: in a probe run, a test that also needs an undeclared capability
            # says something about that one, and must not turn "implemented" into "partial".
            if capability_id in declared and not fully_declared:
                continue
            if test.outcome is Outcome.PASSED:
                tally.passed += 1
            elif test.outcome.bad:
                tally.failed += 1
    return tallies


def _decide(results: RunResults, capability_id: str, tally: _Tally | None) -> CellResult:
    if tally is None or tally.carried == 0:
        return CellResult(Status.NO_TESTS)
    passed, failed = tally.passed, tally.failed
    ran = passed + failed

    def cell(status: Status) -> CellResult:
        return CellResult(status, passed=passed, failed=failed, ran=ran)

    backend = results.backend
    declared = capability_id in backend.declared
    planned = capability_id in backend.planned
    if backend.unavailable is not None:
        # The backend never opened, so its declaration is unknown: nothing was run.
        return cell(Status.NOT_RUN)
    if declared:
        if ran == 0:
            return cell(Status.NOT_RUN)
        if failed == 0:
            return cell(Status.IMPLEMENTED)
        return cell(Status.FAILING if passed == 0 else Status.PARTIAL)
    # A planned capability is a promise, not a claim; but once a probe run has actually
    # exercised it, what the tests showed is more informative than the promise.
    if planned and not (results.probe and ran > 0):
        return cell(Status.PLANNED)
    if results.probe:
        if failed > 0:
            return cell(Status.UNSAFE)
        if ran > 0:
            return cell(Status.UNDER_CLAIMED)
    return cell(Status.NOT_SUPPORTED)


def capability_status(
    results: RunResults, capability_id: str, *, catalog: Sequence[Capability] = CATALOG
) -> CellResult:
    """Compute the status of one capability in one run.

    Precedence: no test carries the capability -> ``NO_TESTS``; an unavailable backend ->
    ``NOT_RUN`` if declared, else ``PLANNED`` or ``NOT_SUPPORTED``; declared ->
    ``IMPLEMENTED``, ``PARTIAL``, ``FAILING`` or ``NOT_RUN`` by the tests that ran;
    planned -> ``PLANNED`` (in a probe run where its tests ran, judged as undeclared);
    undeclared -> in a probe run ``UNSAFE`` (a test failed or errored rather than being
    refused), ``UNDER_CLAIMED`` (tests ran and all passed) or ``NOT_SUPPORTED``; outside
    probe runs ``NOT_SUPPORTED``. A test carrying several ids counts for each of them,
    except that a declared id is judged only by tests whose ids are all declared (the
    tests an ordinary run executes), so a probe run never changes a declared verdict.

    Args:
        results: one run of one backend.
        capability_id: a catalog id.
        catalog: the capabilities the id must belong to.

    Returns:
        The cell: status and passed/failed/ran counts.

    Raises:
        UnknownCapability: ``capability_id`` is not in ``catalog``.
    """
    if capability_id not in {capability.id for capability in catalog}:
        raise UnknownCapability([capability_id], where="capability_status")
    return _decide(results, capability_id, _tally(results).get(capability_id))


def _check_ids(results: RunResults, known: frozenset[str]) -> None:
    backend = results.backend
    mentioned = set(backend.declared) | set(backend.planned)
    for test in results.tests:
        mentioned.update(test.capabilities)
    unknown = mentioned - known
    if unknown:
        raise UnknownCapability(unknown, where=f"results document of backend {backend.name!r}")
    both = set(backend.declared) & set(backend.planned)
    if both:
        raise ValueError(
            f"results document of backend {backend.name!r}: capabilities both declared and "
            f"planned: {', '.join(sorted(both))}"
        )


def merge_runs(runs: Sequence[RunResults]) -> list[RunResults]:
    """One run per backend name, in order of first appearance: several runs of one
    backend (say, one per tenancy mode it can be opened in) become one.

    The merged run declares what any of them declared (and plans what any planned
    and none declared); its tests are all their tests, so a capability declared in one
    mode is judged by the tests that ran in that mode, and one declared in several by
    all of theirs. Version, server version, suite version and platform are the first
    run's; it is unavailable only when every run was.

    Raises:
        ValueError: runs of one backend from different suite versions (their tests
            are not comparable).
    """
    groups: dict[str, list[RunResults]] = {}
    for run in runs:
        groups.setdefault(run.backend.name, []).append(run)
    merged = []
    for name, group in groups.items():
        first = group[0]
        if len(group) == 1:
            merged.append(first)
            continue
        versions = sorted({run.suite_version for run in group})
        if len(versions) > 1:
            raise ValueError(
                f"results of backend {name!r} come from suite versions {', '.join(versions)}; "
                "runs merged into one column must come from one suite version"
            )
        available = [run for run in group if run.backend.unavailable is None]
        declared = sorted({c for run in group for c in run.backend.declared})
        planned = sorted({c for run in group for c in run.backend.planned} - set(declared))
        merged.append(
            replace(
                first,
                backend=replace(
                    first.backend,
                    declared=tuple(declared),
                    planned=tuple(planned),
                    unavailable=None if available else first.backend.unavailable,
                ),
                tests=tuple(test for run in group for test in run.tests),
                probe=any(run.probe for run in group),
            )
        )
    return merged


def build_matrix(runs: Sequence[RunResults], *, catalog: Sequence[Capability] = CATALOG) -> Matrix:
    """Build the matrix of ``runs`` over ``catalog``: one column per backend, in the
    order the backends first appear; several runs of one backend are merged
    (:func:`merge_runs`).

    Args:
        runs: results documents, one or more per backend.
        catalog: the rows, in order; areas appear in the order of their first row.

    Returns:
        The matrix.

    Raises:
        ValueError: no runs, runs of one backend from different suite versions, or a
            run declaring an id both supported and planned.
        UnknownCapability: a run mentions an id not in ``catalog`` (a ``ValueError`` naming
            the id and the backend).
    """
    if not runs:
        raise ValueError("no results documents to build a capability matrix from")
    known = frozenset(capability.id for capability in catalog)
    for run in runs:
        _check_ids(run, known)
    runs = merge_runs(runs)

    tallies = [_tally(run) for run in runs]
    rows = tuple(
        MatrixRow(
            capability=capability,
            cells=tuple(
                _decide(run, capability.id, tally.get(capability.id))
                for run, tally in zip(runs, tallies, strict=True)
            ),
        )
        for capability in catalog
    )
    areas: dict[str, list[MatrixRow]] = {}
    for row in rows:
        areas.setdefault(row.capability.area, []).append(row)

    columns = []
    for index, run in enumerate(runs):
        counts = dict.fromkeys(Status, 0)
        for row in rows:
            counts[row.cells[index].status] += 1
        backend = run.backend
        columns.append(
            BackendColumn(
                name=backend.name,
                version=backend.version,
                server_version=backend.server_version,
                suite_version=run.suite_version,
                unavailable=backend.unavailable,
                probe=run.probe,
                totals=tuple((status, counts[status]) for status in Status),
            )
        )
    return Matrix(
        backends=tuple(columns),
        areas=tuple(AreaGroup(area, tuple(area_rows)) for area, area_rows in areas.items()),
    )


# --- rendering -------------------------------------------------------------------------

_GENERATED = (
    "Generated by `helios-conformance matrix` from the results documents; do not edit by hand."
)
_COUNTED = (Status.PARTIAL, Status.FAILING)


def _plain(value: str | None) -> str:
    return "n/a" if value is None else value


def _summary(column: BackendColumn) -> str:
    return " · ".join(f"{status.mark} {count}" for status, count in column.totals if count)


def _md(text: str) -> str:
    """Escape free text for a Markdown table cell (pipes, emphasis, links, inline HTML)."""
    text = " ".join(text.split())  # a newline would end the table row
    for char in "\\`*_[]<>|":
        text = text.replace(char, "\\" + char)
    return text


def _md_url(url: str) -> str:
    for char, code in (
        (" ", "%20"),
        ("(", "%28"),
        (")", "%29"),
        ("|", "%7C"),
        ("<", "%3C"),
        (">", "%3E"),
    ):
        url = url.replace(char, code)
    return url


def _md_row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _md_cell(cell: CellResult) -> str:
    if cell.status in _COUNTED:
        return f"{cell.status.mark} {cell.passed}/{cell.ran}"
    return cell.status.mark


def render_markdown(matrix: Matrix) -> str:
    """Render the matrix as GitHub-flavoured Markdown (deterministic bytes).

    Args:
        matrix: from :func:`build_matrix`.

    Returns:
        The page, ending in a newline.
    """
    lines = ["# Capability matrix", "", _GENERATED, "", "## Backends", ""]
    any_unavailable = any(column.unavailable is not None for column in matrix.backends)
    header = ["Backend", "Version", "Server version", "Suite version", "Probe", "Summary"]
    if any_unavailable:
        header.append("Unavailable")
    lines += [_md_row(header), _md_row("---" for _ in header)]
    for column in matrix.backends:
        row = [
            _md(column.name),
            _md(_plain(column.version)),
            _md(_plain(column.server_version)),
            _md(column.suite_version),
            "yes" if column.probe else "no",
            _summary(column),
        ]
        if any_unavailable:
            row.append(_md(column.unavailable or ""))
        lines.append(_md_row(row))

    lines += ["", "## Legend", "", _md_row(["Mark", "Status", "Meaning"]), _md_row(["---"] * 3)]
    lines += [_md_row([status.mark, status.label, _md(status.meaning)]) for status in Status]

    names = [_md(column.name) for column in matrix.backends]
    for group in matrix.areas:
        lines += ["", f"## {_md(group.area)}", ""]
        lines.append(_md_row(["Capability", "Id", "Level", *names]))
        lines.append(_md_row(["---", "---", "---", *(":-:" for _ in names)]))
        for matrix_row in group.rows:
            capability = matrix_row.capability
            lines.append(
                _md_row(
                    [
                        f"[{_md(capability.title)}]({_md_url(capability.spec_url)})",
                        f"`{capability.id}`",
                        capability.level.value,
                        *(_md_cell(cell) for cell in matrix_row.cells),
                    ]
                )
            )
    return "\n".join(lines) + "\n"


_CSS = """\
body { font-family: system-ui, sans-serif; margin: 2rem; color: #1f2328; }
table { border-collapse: collapse; margin: 0 0 1.5rem; }
th, td { border: 1px solid #d0d7de; padding: 0.25rem 0.6rem; text-align: left; }
th { background: #f6f8fa; }
td.status { text-align: center; white-space: nowrap; }
code { font-size: 0.9em; }
.status-implemented { background: #dafbe1; color: #116329; }
.status-partial { background: #fff8c5; color: #7d4e00; }
.status-failing { background: #ffebe9; color: #a40e26; font-weight: bold; }
.status-not-run { background: #eaeef2; color: #57606a; }
.status-not-supported { background: #f6f8fa; color: #57606a; }
.status-planned { background: #ddf4ff; color: #0969da; }
.status-under-claimed { background: #fbefff; color: #8250df; }
.status-unsafe { background: #ff8182; color: #4c0000; font-weight: bold; }
.status-no-tests { background: #ffffff; color: #8c959f; }
"""


def _h(text: str) -> str:
    return html.escape(text, quote=True)


def _slug(text: str) -> str:
    slug = "".join(char if char.isalnum() else "-" for char in text.lower())
    return "area-" + "-".join(part for part in slug.split("-") if part)


def _html_cell(cell: CellResult) -> str:
    text = _h(_md_cell(cell))
    title = _h(f"{cell.status.label}: {cell.passed}/{cell.ran} passed")
    return f'<td class="status status-{cell.status.value}" title="{title}">{text}</td>'


def render_html(matrix: Matrix) -> str:
    """Render the matrix as one self-contained HTML page (inline CSS, deterministic bytes).

    Args:
        matrix: from :func:`build_matrix`.

    Returns:
        The page, ending in a newline.
    """
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>Capability matrix</title>",
        "<style>",
        _CSS.rstrip("\n"),
        "</style>",
        "</head>",
        "<body>",
        "<h1>Capability matrix</h1>",
        "<p>Generated by <code>helios-conformance matrix</code> from the results documents; "
        "do not edit by hand.</p>",
        "<h2>Backends</h2>",
        "<table>",
        "<thead><tr><th>Backend</th><th>Version</th><th>Server version</th>"
        "<th>Suite version</th><th>Probe</th><th>Summary</th><th>Unavailable</th></tr></thead>",
        "<tbody>",
    ]
    for column in matrix.backends:
        cells = [
            column.name,
            _plain(column.version),
            _plain(column.server_version),
            column.suite_version,
            "yes" if column.probe else "no",
            _summary(column),
            column.unavailable or "",
        ]
        out.append("<tr>" + "".join(f"<td>{_h(cell)}</td>" for cell in cells) + "</tr>")
    out += ["</tbody>", "</table>", "<h2>Legend</h2>", "<table>"]
    out.append("<thead><tr><th>Mark</th><th>Status</th><th>Meaning</th></tr></thead>")
    out.append("<tbody>")
    for status in Status:
        out.append(
            f'<tr><td class="status status-{status.value}">{_h(status.mark)}</td>'
            f"<td>{_h(status.label)}</td><td>{_h(status.meaning)}</td></tr>"
        )
    out += ["</tbody>", "</table>"]
    header = "".join(f"<th>{_h(column.name)}</th>" for column in matrix.backends)
    for group in matrix.areas:
        out.append(f'<h2 id="{_h(_slug(group.area))}">{_h(group.area)}</h2>')
        out.append("<table>")
        out.append(f"<thead><tr><th>Capability</th><th>Id</th><th>Level</th>{header}</tr></thead>")
        out.append("<tbody>")
        for row in group.rows:
            capability = row.capability
            out.append(
                f'<tr><td><a href="{_h(capability.spec_url)}">{_h(capability.title)}</a></td>'
                f"<td><code>{_h(capability.id)}</code></td>"
                f"<td>{_h(capability.level.value)}</td>"
                + "".join(_html_cell(cell) for cell in row.cells)
                + "</tr>"
            )
        out += ["</tbody>", "</table>"]
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


def matrix_to_json(matrix: Matrix) -> dict[str, Any]:
    """Return the matrix as a JSON-ready document (schema :data:`MATRIX_SCHEMA_ID`)."""
    return {
        "schema": MATRIX_SCHEMA_ID,
        "backends": [
            {
                "name": column.name,
                "version": column.version,
                "server_version": column.server_version,
                "suite_version": column.suite_version,
                "probe": column.probe,
                "unavailable": column.unavailable,
                "totals": {status.value: count for status, count in column.totals},
            }
            for column in matrix.backends
        ],
        "legend": [
            {
                "status": status.value,
                "mark": status.mark,
                "label": status.label,
                "meaning": status.meaning,
            }
            for status in Status
        ],
        "areas": [group.area for group in matrix.areas],
        "capabilities": [
            {
                "id": row.capability.id,
                "title": row.capability.title,
                "area": row.capability.area,
                "level": row.capability.level.value,
                "spec_url": row.capability.spec_url,
                "backends": {
                    column.name: {
                        "status": cell.status.value,
                        "mark": cell.status.mark,
                        "passed": cell.passed,
                        "failed": cell.failed,
                        "ran": cell.ran,
                    }
                    for column, cell in zip(matrix.backends, row.cells, strict=True)
                },
            }
            for row in matrix.rows
        ],
    }


def render_json(matrix: Matrix) -> str:
    """Render the matrix as JSON: sorted keys, indent 2, trailing newline.

    Args:
        matrix: from :func:`build_matrix`.

    Returns:
        The document text; capabilities in catalog order, backends keyed by name.
    """
    document = matrix_to_json(matrix)
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# --- files -----------------------------------------------------------------------------


def load_runs(paths: Iterable[Path]) -> list[RunResults]:
    """Load results documents, sorted by backend name.

    Files that are this module's own JSON matrix are skipped silently, so a glob such as
    ``reports/*.json`` may include ``reports/capability-matrix.json``.

    Args:
        paths: results documents (and possibly matrix documents).

    Returns:
        One :class:`RunResults` per results document, sorted by backend name (runs of
        one backend in the order their paths were given; :func:`build_matrix` merges
        them into one column).

    Raises:
        InvalidResultsDocument: a file is not JSON, not a results document, or invalid;
            the message names the path and the reason.
        OSError: a file cannot be read.
    """
    loaded: list[RunResults] = []
    for path in paths:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InvalidResultsDocument(f"{path}: not JSON: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise InvalidResultsDocument(f"{path}: not UTF-8 text: {exc}") from exc
        if isinstance(document, dict) and document.get("schema") == MATRIX_SCHEMA_ID:
            continue
        if not is_results_document(document):
            found = document.get("schema") if isinstance(document, dict) else None
            what = f"its schema is {found!r}" if found is not None else "it has no schema field"
            raise InvalidResultsDocument(
                f"{path}: not a helios-conformance results document ({what}; "
                f"expected {RESULTS_SCHEMA_ID!r})"
            )
        loaded.append(results_from_json(document, source=str(path)))
    return sorted(loaded, key=lambda run: run.backend.name)


def _write_atomically(path: Path, text: str) -> None:
    # Not tempfile.mkstemp: its 0600 mode would stick to the published page.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(text.encode("utf-8"))
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_matrix(matrix: Matrix, directory: Path) -> list[Path]:
    """Write ``capability-matrix.md``, ``.html`` and ``.json`` into ``directory`` atomically.

    Each file is written to a temporary file beside it, then renamed over the old one,
    so a reader never sees half a page.

    Args:
        matrix: from :func:`build_matrix`.
        directory: created if missing.

    Returns:
        The paths written, in the order Markdown, HTML, JSON.
    """
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix, render in (
        (".md", render_markdown),
        (".html", render_html),
        (".json", render_json),
    ):
        path = directory / f"{MATRIX_BASENAME}{suffix}"
        _write_atomically(path, render(matrix))
        written.append(path)
    return written
