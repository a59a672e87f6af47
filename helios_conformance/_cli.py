"""The ``helios-conformance`` command: certify a backend, render matrices, list things."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from ._capabilities import CATALOG
from ._data import suites_dir
from ._matrix import build_matrix, load_runs, write_matrix
from ._registry import installed_backends
from ._version import __version__

_SUITE_INI = Path(__file__).resolve().parent / "pytest-suites.ini"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="helios-conformance",
        description="Conformance harness and certification suite for FHIR persistence backends.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser(
        "run",
        help="run the bundled suites against a backend and write results and the matrix",
        description="Run the bundled conformance suites against one backend (in parallel), "
        "write REPORTS/<backend>.json (<backend>--<option>.json with --backend-option), "
        "and re-render the capability matrix from every results document in REPORTS (runs "
        "of one backend share its column). Arguments after '--' go to pytest.",
    )
    run.add_argument("--backend", default="sqlite", help="backend name or module:factory")
    run.add_argument("--reports", type=Path, default=Path("reports"), help="output directory")
    run.add_argument(
        "--workers", default="auto", help="pytest-xdist workers: a number, 'auto' or 0"
    )
    run.add_argument("--backend-url", default=None, help="server URL, DSN or database path")
    run.add_argument("--backend-option", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--require", action="store_true", help="fail if the backend is unavailable")
    run.add_argument("--probe", action="store_true", help="also run undeclared capabilities")
    run.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")

    matrix = commands.add_parser(
        "matrix", help="render the capability matrix from stored results documents"
    )
    matrix.add_argument("results", nargs="+", type=Path, help="results JSON documents")
    matrix.add_argument(
        "--out", type=Path, default=None, help="output directory (default: reports)"
    )

    commands.add_parser("backends", help="list the installed backend plugins")
    catalog = commands.add_parser("catalog", help="print the capability catalog")
    catalog.add_argument("--json", action="store_true", help="as JSON")
    return parser


def pytest_command(args: argparse.Namespace, results_path: Path) -> list[str]:
    """The pytest invocation that certifies ``args.backend`` into ``results_path``."""
    suites = suites_dir()
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(suites),
        "-c",
        str(_SUITE_INI),
        "--rootdir",
        str(suites.parent),
        "--backend",
        args.backend,
        "--helios-results",
        str(results_path),
    ]
    if str(args.workers) not in ("0", "1"):
        command += ["-n", str(args.workers)]
    if args.backend_url:
        command += ["--backend-url", args.backend_url]
    for option in args.backend_option:
        command += ["--backend-option", option]
    if args.require:
        command += ["--helios-require", args.backend]
    if args.probe:
        command.append("--helios-probe")
    return command + list(args.pytest_args)


def _run(args: argparse.Namespace) -> int:
    reports: Path = args.reports
    reports.mkdir(parents=True, exist_ok=True)
    # One file per backend and option set: runs of one backend in several modes
    # (say tenancy=schema) sit side by side and the matrix merges them into its column.
    stem = "--".join([args.backend, *sorted(args.backend_option)])
    safe_name = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)
    results_path = reports / f"{safe_name}.json"
    status = subprocess.call(pytest_command(args, results_path))
    if not results_path.is_file():
        print(
            f"helios-conformance: pytest exited with {status} and wrote no results", file=sys.stderr
        )
        return status or 1
    written = _render(sorted(reports.glob("*.json")), reports)
    print(f"helios-conformance: wrote {results_path} and {', '.join(str(p) for p in written)}")
    return status


def _render(paths: Sequence[Path], out: Path) -> list[Path]:
    return write_matrix(build_matrix(load_runs(paths)), out)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run":
        return _run(args)
    if args.command == "matrix":
        out = args.out or Path("reports")
        try:
            written = _render(args.results, out)
        except (ValueError, OSError) as exc:
            print(f"helios-conformance matrix: {exc}", file=sys.stderr)
            return 2
        print("\n".join(str(path) for path in written))
        return 0
    if args.command == "backends":
        for name, entry_point in installed_backends().items():
            print(f"{name}\t{entry_point.value}")
        return 0
    if args.json:
        rows = [
            {
                "id": c.id,
                "title": c.title,
                "area": c.area,
                "level": c.level.value,
                "spec_url": c.spec_url,
            }
            for c in CATALOG
        ]
        print(json.dumps(rows, indent=2))
    else:
        for c in CATALOG:
            print(f"{c.id:40} {c.level.value:6} {c.area}: {c.title}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
