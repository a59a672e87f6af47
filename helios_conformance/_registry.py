"""Find and open backend plugins registered under ``helios_conformance.backends``.

Only the selected backend's module is imported. ``--backend`` takes an installed
entry-point name, or ``module:factory`` for an adapter that is not packaged yet.
"""

from __future__ import annotations

import importlib
from importlib.metadata import EntryPoint, entry_points
from typing import cast

from ._contract import Backend, BackendConfig, BackendFactory
from ._errors import BackendUnavailable

ENTRY_POINT_GROUP = "helios_conformance.backends"


class UnknownBackend(LookupError):
    """The requested backend is neither installed nor an importable ``module:factory``."""

    def __init__(self, name: str, installed: list[str], detail: str | None = None) -> None:
        self.name = name
        self.installed = installed
        listing = ", ".join(installed) if installed else "(none)"
        message = f"unknown backend {name!r}; installed backends: {listing}"
        if detail:
            message += f" ({detail})"
        super().__init__(message)


class InvalidBackend(TypeError):
    """A factory returned something that is not a :class:`Backend`."""


def installed_backends() -> dict[str, EntryPoint]:
    """The installed backend plugins by name, sorted."""
    found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return dict(sorted(found.items()))


def check_backend_name(name: str) -> None:
    """Raise :class:`UnknownBackend` unless ``name`` is installed or has ``module:attr`` form.

    Nothing is imported: a plugin whose import is broken fails when it is opened, with
    its own error, instead of breaking every pytest session that has the harness installed.
    """
    installed = installed_backends()
    if name not in installed and ":" not in name:
        raise UnknownBackend(name, list(installed))


def load_factory(name: str) -> BackendFactory:
    """Import and return the factory of the backend ``name``.

    Raises:
        UnknownBackend: no such entry point, and ``name`` is no importable ``module:attr``.
    """
    installed = installed_backends()
    if name in installed:
        factory: BackendFactory = installed[name].load()
        return factory
    if ":" in name:
        module_name, _, attribute = name.partition(":")
        try:
            target: object = importlib.import_module(module_name)
            for part in attribute.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError) as exc:
            raise UnknownBackend(name, list(installed), f"cannot load {name!r}: {exc}") from exc
        if not callable(target):
            raise UnknownBackend(name, list(installed), f"{name!r} is not callable")
        return cast(BackendFactory, target)
    raise UnknownBackend(name, list(installed))


async def open_backend(name: str, config: BackendConfig) -> Backend:
    """Load the factory of ``name`` and open the backend with ``config``.

    Raises:
        UnknownBackend: see :func:`load_factory`.
        BackendUnavailable: the factory cannot run here (no server or driver).
        InvalidBackend: the factory returned something that is not a Backend.
    """
    try:
        factory = load_factory(name)
    except ImportError as exc:
        # An installed plugin whose driver or module cannot be imported here.
        raise BackendUnavailable(f"cannot import backend {name!r}: {exc}") from exc
    backend = await factory(config)
    if not isinstance(backend, Backend):
        raise InvalidBackend(
            f"backend factory {name!r} returned {type(backend).__name__}, which lacks "
            "info, capabilities or close()"
        )
    return backend
