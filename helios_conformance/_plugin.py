"""The pytest plugin: backend selection, capability gating, fixtures and results.

Registered once through the ``pytest11`` entry point. It is inert for tests that do
not carry the ``requires`` marker, so it is harmless in any other pytest session.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from ._capabilities import UnknownCapability, capability, check_capability_ids
from ._client import SyncClient
from ._contract import Backend, BackendConfig
from ._data import suites_dir
from ._errors import BackendUnavailable, Unsupported
from ._registry import InvalidBackend, UnknownBackend, check_backend_name, open_backend
from ._results import BackendRecord, Outcome, RunResults, TestResult, write_results
from ._tenancy import TenantContext, TenantPermissions

DEFAULT_BACKEND = "sqlite"
_CAPABILITIES_PROPERTY = "helios_capabilities"
_NODE_ID_PROPERTY = "helios_node_id"
_SKIP_KIND_PROPERTY = "helios_skip_kind"
_WORKER_OUTPUT_KEY = "helios_backend"

_SESSION_KEY = pytest.StashKey["HeliosSession"]()
_PROBE_UNDECLARED_KEY = pytest.StashKey[bool]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("helios-conformance", "FHIR persistence conformance")
    group.addoption(
        "--backend",
        default=None,
        metavar="NAME",
        help="backend to certify: an installed plugin name or module:factory "
        f"(env HELIOS_BACKEND; default {DEFAULT_BACKEND})",
    )
    group.addoption(
        "--backend-url",
        default=None,
        metavar="URL",
        help="server URL, DSN or database path (env HELIOS_<NAME>_URL, then HELIOS_BACKEND_URL)",
    )
    group.addoption(
        "--backend-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="backend-specific option; repeat for several",
    )
    group.addoption(
        "--helios-require",
        action="append",
        default=[],
        metavar="NAME",
        help="fail instead of skipping when this backend cannot be opened (env HELIOS_REQUIRE, "
        "comma separated; 'all' for any)",
    )
    group.addoption(
        "--helios-results",
        default=None,
        metavar="PATH",
        help="where to write the results JSON (env HELIOS_RESULTS; default "
        ".helios/results/<backend>.json under the rootdir)",
    )
    group.addoption(
        "--helios-probe",
        action="store_true",
        default=False,
        help="also run tests of undeclared capabilities, to find under-claimed and unsafe ones",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "requires(*capability_ids): the capabilities a conformance test exercises; the test is "
        "skipped as 'not supported' when the backend does not declare them all",
    )
    name = config.getoption("backend") or os.environ.get("HELIOS_BACKEND") or DEFAULT_BACKEND
    try:
        check_backend_name(name)
    except UnknownBackend as exc:
        raise pytest.UsageError(str(exc)) from None
    session = HeliosSession(config, name)
    config.stash[_SESSION_KEY] = session
    if not _is_worker(config):
        # Reports from this process, or from every xdist worker, are folded here.
        config.pluginmanager.register(_ResultsHooks(session), "helios-results")
        if config.pluginmanager.hasplugin("xdist"):
            config.pluginmanager.register(_XdistControllerHooks(session), "helios-xdist-controller")


def pytest_report_header(config: pytest.Config) -> str:
    session = config.stash[_SESSION_KEY]
    probe = " (probe run)" if session.probe else ""
    return f"helios-conformance: backend {session.name}{probe}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = _suites_root()
    for item in items:
        capabilities = _required_capabilities(item)
        if capabilities is None:
            continue
        item.user_properties.append((_CAPABILITIES_PROPERTY, sorted(capabilities)))
        item.user_properties.append((_NODE_ID_PROPERTY, _public_node_id(item, root)))
        _label_for_allure(item, capabilities)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    capabilities = _capabilities_of(item)
    if capabilities is None:
        return
    session = item.config.stash[_SESSION_KEY]
    backend = session.backend_or_skip(item)
    missing = backend.capabilities.missing(capabilities)
    if not missing:
        return
    if session.probe:
        item.stash[_PROBE_UNDECLARED_KEY] = True
        return
    item.user_properties.append((_SKIP_KIND_PROPERTY, Outcome.NOT_SUPPORTED.value))
    pytest.skip(f"not supported: {', '.join(missing)}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    # In a probe run an undeclared capability that refuses with Unsupported is
    # behaving correctly: record a clean refusal rather than a failure.
    if (
        call.when == "call"
        and item.stash.get(_PROBE_UNDECLARED_KEY, False)
        and call.excinfo is not None
        and call.excinfo.errisinstance(Unsupported)
    ):
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0, f"refused: {call.excinfo.value}")
        report.user_properties.append((_SKIP_KIND_PROPERTY, Outcome.REFUSED.value))
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    helios = session.config.stash.get(_SESSION_KEY, None)
    if helios is None:
        return
    record = helios.close()
    if _is_worker(session.config):
        if record is not None:
            session.config.workeroutput[_WORKER_OUTPUT_KEY] = json.dumps(_record_to_json(record))  # type: ignore[attr-defined]
        return
    if record is not None:
        helios.collector.backend = record
    helios.write_results()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    helios = config.stash.get(_SESSION_KEY, None)
    if helios is None or helios.written_to is None:
        return
    counts = helios.collector.counts()
    summary = ", ".join(f"{count} {outcome}" for outcome, count in sorted(counts.items()))
    terminalreporter.write_line(
        f"helios-conformance: {helios.collector.backend_name} results ({summary}) "
        f"written to {helios.written_to}"
    )


# -- fixtures -------------------------------------------------------------------


@pytest.fixture(scope="session")
def helios_backend(request: pytest.FixtureRequest) -> Backend:
    """The backend under test, opened once per worker (skips when unavailable)."""
    session: HeliosSession = request.config.stash[_SESSION_KEY]
    return session.backend_or_skip(request.node)


@pytest.fixture
def new_client(
    request: pytest.FixtureRequest, helios_backend: Backend
) -> Callable[..., SyncClient]:
    """A factory of clients, each bound to a fresh, empty tenant of the backend."""
    session: HeliosSession = request.config.stash[_SESSION_KEY]

    def make(permissions: TenantPermissions | None = None) -> SyncClient:
        context = TenantContext.of(f"t{uuid.uuid4().hex}", permissions)
        return SyncClient(helios_backend, session.runner, context)

    return make


@pytest.fixture
def client(new_client: Callable[..., SyncClient]) -> SyncClient:
    """A client bound to a fresh, empty tenant: tests are isolated without schema rebuilds."""
    return new_client()


# -- session state --------------------------------------------------------------


class HeliosSession:
    """Per-process state: the selected backend, its event loop, and the results."""

    def __init__(self, config: pytest.Config, name: str) -> None:
        self.config = config
        self.name = name
        self.probe: bool = config.getoption("helios_probe")
        self.collector = _Collector(name, self.probe)
        self.written_to: Path | None = None
        self._runner: asyncio.Runner | None = None
        self._backend: Backend | None = None
        self._unavailable: str | None = None
        self._open_error: str | None = None
        self._opened = False
        self._scratch: Path | None = None

    @property
    def required(self) -> bool:
        requested = list(self.config.getoption("helios_require"))
        requested += [part for part in os.environ.get("HELIOS_REQUIRE", "").split(",") if part]
        return self.name in requested or "all" in requested

    @property
    def runner(self) -> asyncio.Runner:
        if self._runner is None:
            self._runner = asyncio.Runner()
        return self._runner

    def _backend_config(self) -> BackendConfig:
        env_name = re.sub(r"[^A-Z0-9]", "_", self.name.upper())
        url = (
            self.config.getoption("backend_url")
            or os.environ.get(f"HELIOS_{env_name}_URL")
            or os.environ.get("HELIOS_BACKEND_URL")
        )
        options: dict[str, str] = {}
        for option in self.config.getoption("backend_option"):
            key, sep, value = option.partition("=")
            if not sep or not key:
                raise pytest.UsageError(f"--backend-option expects KEY=VALUE, got {option!r}")
            options[key] = value
        worker = getattr(self.config, "workerinput", {}).get("workerid", "main")
        self._scratch = Path(tempfile.mkdtemp(prefix=f"helios-{worker}-"))
        return BackendConfig(
            url=url,
            options=options,
            worker_id=worker,
            scratch_dir=self._scratch,
            required=self.required,
        )

    def _open(self) -> None:
        self._opened = True
        try:
            self._backend = self.runner.run(open_backend(self.name, self._backend_config()))
        except BackendUnavailable as exc:
            self._unavailable = exc.message
        except (UnknownBackend, InvalidBackend, UnknownCapability) as exc:
            # A broken plugin is a usage problem of the whole session, not of one test.
            pytest.exit(
                f"backend {self.name!r} cannot be used: {exc}",
                returncode=pytest.ExitCode.USAGE_ERROR,
            )
        except Exception as exc:
            # Not a clean "unavailable": every test that needs the backend fails with it.
            self._open_error = f"{type(exc).__name__}: {exc}"

    def backend_or_skip(self, node: pytest.Item | pytest.Collector | Any) -> Backend:
        """Open the backend on first use; skip (or fail, when required) if it is unavailable."""
        if not self._opened:
            self._open()
        if self._backend is not None:
            return self._backend
        if self._open_error is not None:
            pytest.fail(f"backend {self.name!r} failed to open: {self._open_error}", pytrace=False)
        reason = f"backend {self.name!r} unavailable: {self._unavailable}"
        if self.required:
            pytest.fail(f"{reason} (required by --helios-require)", pytrace=False)
        if isinstance(node, pytest.Item):
            node.user_properties.append((_SKIP_KIND_PROPERTY, Outcome.UNAVAILABLE.value))
        pytest.skip(reason)

    def close(self) -> BackendRecord | None:
        """Close the backend and the loop; return what the results need to know of it."""
        record: BackendRecord | None = None
        if self._backend is not None:
            info = self._backend.info
            declaration = self._backend.capabilities
            record = BackendRecord(
                name=info.name,
                version=info.version,
                server_version=info.server_version,
                declared=tuple(sorted(declaration.supported)),
                planned=tuple(sorted(declaration.planned)),
            )
            self.runner.run(self._backend.close())
            self._backend = None
        elif self._unavailable is not None:
            record = BackendRecord(name=self.name, unavailable=self._unavailable)
        if self._runner is not None:
            self._runner.close()
            self._runner = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
        return record

    def write_results(self) -> None:
        if not self.collector.has_tests:
            return
        results = self.collector.results()
        path = self.config.getoption("helios_results") or os.environ.get("HELIOS_RESULTS")
        if path:
            target = Path(path)
        else:
            safe_name = re.sub(r"[^A-Za-z0-9_.-]", "_", results.backend.name)
            target = self.config.rootpath / ".helios" / "results" / f"{safe_name}.json"
        write_results(results, target)
        self.written_to = target


@dataclass
class _Partial:
    node_id: str
    capabilities: tuple[str, ...]
    outcome: Outcome | None = None
    duration: float = 0.0
    message: str | None = None


class _Collector:
    """Folds setup/call/teardown reports (from this process or xdist workers) into results."""

    def __init__(self, name: str, probe: bool) -> None:
        self.backend_name = name
        self.probe = probe
        self.backend: BackendRecord | None = None
        self._tests: dict[str, _Partial] = {}

    @property
    def has_tests(self) -> bool:
        return bool(self._tests)

    def add(self, report: pytest.TestReport) -> None:
        properties: dict[str, Any] = dict(report.user_properties)
        capabilities = properties.get(_CAPABILITIES_PROPERTY)
        if capabilities is None:
            return
        partial = self._tests.setdefault(
            report.nodeid,
            _Partial(str(properties.get(_NODE_ID_PROPERTY, report.nodeid)), tuple(capabilities)),
        )
        partial.duration += report.duration
        if report.when == "setup":
            if report.skipped:
                kind = properties.get(_SKIP_KIND_PROPERTY, Outcome.SKIPPED.value)
                partial.outcome, partial.message = Outcome(kind), _skip_reason(report)
            elif report.failed:
                partial.outcome, partial.message = Outcome.ERROR, _failure_message(report)
        elif report.when == "call":
            if hasattr(report, "wasxfail"):
                partial.outcome = Outcome.XFAILED if report.skipped else Outcome.PASSED
            elif report.passed:
                partial.outcome = Outcome.PASSED
            elif report.failed:
                partial.outcome, partial.message = Outcome.FAILED, _failure_message(report)
            else:
                kind = properties.get(_SKIP_KIND_PROPERTY, Outcome.SKIPPED.value)
                partial.outcome, partial.message = Outcome(kind), _skip_reason(report)
        elif report.failed and partial.outcome not in (Outcome.FAILED, Outcome.ERROR):
            partial.outcome, partial.message = Outcome.ERROR, _failure_message(report)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for partial in self._tests.values():
            outcome = (partial.outcome or Outcome.ERROR).value
            counts[outcome] = counts.get(outcome, 0) + 1
        return counts

    def results(self) -> RunResults:
        backend = self.backend or BackendRecord(name=self.backend_name)
        tests = tuple(
            TestResult(
                node_id=partial.node_id,
                capabilities=partial.capabilities,
                outcome=partial.outcome or Outcome.ERROR,
                duration=partial.duration,
                message=partial.message
                if partial.outcome is not None
                else "the test produced no outcome (interrupted?)",
            )
            for partial in self._tests.values()
        )
        return RunResults(backend=backend, tests=tests, probe=self.probe)


class _ResultsHooks:
    """Collects every test report into the session's results."""

    def __init__(self, session: HeliosSession) -> None:
        self._session = session

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._session.collector.add(report)


class _XdistControllerHooks:
    """Receives each worker's backend record (xdist ``workeroutput``)."""

    def __init__(self, session: HeliosSession) -> None:
        self._session = session

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        payload = getattr(node, "workeroutput", {}).get(_WORKER_OUTPUT_KEY)
        if payload and self._session.collector.backend is None:
            self._session.collector.backend = _record_from_json(json.loads(payload))


# -- helpers ----------------------------------------------------------------------


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _required_capabilities(item: pytest.Item) -> frozenset[str] | None:
    markers = list(item.iter_markers("requires"))
    if not markers:
        return None
    ids = [cap_id for marker in markers for cap_id in marker.args]
    if not ids or not all(isinstance(cap_id, str) for cap_id in ids):
        raise pytest.UsageError(
            f"{item.nodeid}: @pytest.mark.requires needs one or more capability id strings"
        )
    try:
        return check_capability_ids(ids, where=item.nodeid)
    except UnknownCapability as exc:
        raise pytest.UsageError(str(exc)) from None


def _label_for_allure(item: pytest.Item, capabilities: frozenset[str]) -> None:
    """Label the test for allure-pytest (feature = matrix area, story = capability id).

    Uses allure-pytest's own marker names, so nothing is imported from allure; only
    when allure-pytest is writing results (``--alluredir``), whose markers it registers.
    """
    if not getattr(item.config.option, "allure_report_dir", None):
        return
    for capability_id in sorted(capabilities):
        entry = capability(capability_id)
        item.add_marker(pytest.mark.allure_label(entry.area, label_type="feature"))
        item.add_marker(pytest.mark.allure_label(capability_id, label_type="story"))
        item.add_marker(pytest.mark.allure_link(entry.spec_url, link_type="link", name=entry.id))


def _capabilities_of(item: pytest.Item) -> tuple[str, ...] | None:
    for key, value in item.user_properties:
        if key == _CAPABILITIES_PROPERTY:
            return tuple(cast(list[str], value))
    return None


def _suites_root() -> Path | None:
    try:
        return suites_dir().resolve()
    except FileNotFoundError:
        return None


def _public_node_id(item: pytest.Item, root: Path | None) -> str:
    """The node id relative to the suites directory, the same from a checkout or a wheel."""
    if root is None:
        return item.nodeid
    try:
        relative = item.path.resolve().relative_to(root)
    except ValueError:
        return item.nodeid
    _, sep, rest = item.nodeid.partition("::")
    return f"suites/{relative.as_posix()}{sep}{rest}"


def _skip_reason(report: pytest.TestReport) -> str | None:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return None


def _failure_message(report: pytest.TestReport, limit: int = 2000) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else report.longreprtext
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _record_to_json(record: BackendRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "version": record.version,
        "server_version": record.server_version,
        "declared": list(record.declared),
        "planned": list(record.planned),
        "unavailable": record.unavailable,
    }


def _record_from_json(data: dict[str, Any]) -> BackendRecord:
    return BackendRecord(
        name=data["name"],
        version=data["version"],
        server_version=data["server_version"],
        declared=tuple(data["declared"]),
        planned=tuple(data["planned"]),
        unavailable=data["unavailable"],
    )
