"""The results document: one JSON document per conformance run, data first.

Everything the capability matrix and certificates show is computed from these
documents. They are written deterministically (sorted keys, tests sorted by node id)
and validated against :data:`RESULTS_SCHEMA` (JSON Schema) when read.
"""

from __future__ import annotations

import enum
import json
import platform
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from ._version import __version__

RESULTS_SCHEMA_ID = "helios-conformance/results/1"


class Outcome(enum.StrEnum):
    """What happened to one test."""

    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    """The test could not run properly (a setup or teardown failure)."""
    NOT_SUPPORTED = "not-supported"
    """Skipped: the backend does not declare a capability the test requires."""
    REFUSED = "refused"
    """Probe runs: undeclared, and the backend refused cleanly with Unsupported."""
    UNAVAILABLE = "unavailable"
    """Skipped: the backend could not be opened here (no server, no driver)."""
    SKIPPED = "skipped"
    XFAILED = "xfailed"

    @property
    def ran(self) -> bool:
        return self in (Outcome.PASSED, Outcome.FAILED, Outcome.ERROR)

    @property
    def bad(self) -> bool:
        return self in (Outcome.FAILED, Outcome.ERROR)


@dataclass(frozen=True, slots=True)
class TestResult:
    """The outcome of one test in one run."""

    __test__ = False  # not a pytest test class

    node_id: str
    capabilities: tuple[str, ...]
    outcome: Outcome
    duration: float = 0.0
    message: str | None = None


@dataclass(frozen=True, slots=True)
class BackendRecord:
    """The backend as the run saw it."""

    name: str
    version: str | None = None
    server_version: str | None = None
    declared: tuple[str, ...] = ()
    planned: tuple[str, ...] = ()
    unavailable: str | None = None


@dataclass(frozen=True, slots=True)
class RunResults:
    """One conformance run of one backend."""

    backend: BackendRecord
    tests: tuple[TestResult, ...]
    suite_version: str = __version__
    probe: bool = False
    platform: dict[str, str] = field(default_factory=lambda: current_platform())


def current_platform() -> dict[str, str]:
    return {
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "system": platform.system(),
    }


_STRING_LIST = {"type": "array", "items": {"type": "string"}}
RESULTS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["schema", "suite_version", "backend", "platform", "probe", "tests"],
    "additionalProperties": False,
    "properties": {
        "schema": {"const": RESULTS_SCHEMA_ID},
        "suite_version": {"type": "string"},
        "probe": {"type": "boolean"},
        "platform": {"type": "object", "additionalProperties": {"type": "string"}},
        "backend": {
            "type": "object",
            "required": ["name", "version", "server_version", "declared", "planned", "unavailable"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "version": {"type": ["string", "null"]},
                "server_version": {"type": ["string", "null"]},
                "declared": _STRING_LIST,
                "planned": _STRING_LIST,
                "unavailable": {"type": ["string", "null"]},
            },
        },
        "tests": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["node_id", "capabilities", "outcome", "duration", "message"],
                "additionalProperties": False,
                "properties": {
                    "node_id": {"type": "string", "minLength": 1},
                    "capabilities": _STRING_LIST,
                    "outcome": {"enum": [outcome.value for outcome in Outcome]},
                    "duration": {"type": "number", "minimum": 0},
                    "message": {"type": ["string", "null"]},
                },
            },
        },
    },
}


class InvalidResultsDocument(ValueError):
    """A file that is not a valid results document; the message says where and why."""


def results_to_json(results: RunResults) -> dict[str, Any]:
    backend = results.backend
    return {
        "schema": RESULTS_SCHEMA_ID,
        "suite_version": results.suite_version,
        "probe": results.probe,
        "platform": dict(sorted(results.platform.items())),
        "backend": {
            "name": backend.name,
            "version": backend.version,
            "server_version": backend.server_version,
            "declared": sorted(backend.declared),
            "planned": sorted(backend.planned),
            "unavailable": backend.unavailable,
        },
        "tests": [
            {
                "node_id": test.node_id,
                "capabilities": sorted(test.capabilities),
                "outcome": test.outcome.value,
                "duration": round(test.duration, 6),
                "message": test.message,
            }
            for test in sorted(results.tests, key=lambda test: test.node_id)
        ],
    }


def dump_results(results: RunResults) -> str:
    """Serialize deterministically: the same results give the same bytes."""
    return json.dumps(results_to_json(results), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_results(results: RunResults, path: Path) -> None:
    """Write atomically (temporary file, then rename), so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(dump_results(results), encoding="utf-8")
    temporary.replace(path)


def results_from_json(document: Any, *, source: str = "<document>") -> RunResults:
    """Validate a parsed document and build :class:`RunResults`.

    Raises:
        InvalidResultsDocument: names the source and the first schema violation.
    """
    try:
        jsonschema.validate(document, RESULTS_SCHEMA)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(part) for part in exc.absolute_path) or "(top level)"
        raise InvalidResultsDocument(f"{source}: at {where}: {exc.message}") from exc
    backend = document["backend"]
    return RunResults(
        backend=BackendRecord(
            name=backend["name"],
            version=backend["version"],
            server_version=backend["server_version"],
            declared=tuple(backend["declared"]),
            planned=tuple(backend["planned"]),
            unavailable=backend["unavailable"],
        ),
        tests=tuple(
            TestResult(
                node_id=test["node_id"],
                capabilities=tuple(test["capabilities"]),
                outcome=Outcome(test["outcome"]),
                duration=float(test["duration"]),
                message=test["message"],
            )
            for test in document["tests"]
        ),
        suite_version=document["suite_version"],
        probe=document["probe"],
        platform=dict(document["platform"]),
    )


def load_results(path: Path) -> RunResults:
    """Read and validate a results document from ``path``."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InvalidResultsDocument(f"{path}: not JSON: {exc}") from exc
    return results_from_json(document, source=str(path))


def is_results_document(document: Any) -> bool:
    """True when ``document`` claims to be a results document (by its schema field)."""
    return isinstance(document, dict) and document.get("schema") == RESULTS_SCHEMA_ID


def merge_tests(*groups: Iterable[TestResult]) -> tuple[TestResult, ...]:
    """Combine test results; a node id seen twice is an error (it ran in two places)."""
    seen: dict[str, TestResult] = {}
    for group in groups:
        for test in group:
            if test.node_id in seen:
                raise ValueError(f"test {test.node_id!r} reported twice")
            seen[test.node_id] = test
    return tuple(seen[node_id] for node_id in sorted(seen))
