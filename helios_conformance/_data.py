"""Locate the bundled suites and the vendored FHIR data, and load the data verified.

In a wheel the suites and fixtures live inside the package (``_bundled/``); in a
checkout they stay at the repository's top level. The manifest's sha256 for every
file is checked before the file is used.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from ._errors import BackendFailure

_PACKAGE_DIR = Path(__file__).resolve().parent


def _locate(name: str) -> Path:
    bundled = _PACKAGE_DIR / "_bundled" / name
    if bundled.is_dir():
        return bundled
    checkout = _PACKAGE_DIR.parent / name
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(
        f"cannot find the {name!r} directory: looked in {bundled} (installed wheel) and "
        f"{checkout} (source checkout)"
    )


def suites_dir() -> Path:
    """The directory holding the conformance suites."""
    return _locate("suites")


def fixtures_dir() -> Path:
    """The directory holding the vendored FHIR fixture data and its MANIFEST.json."""
    return _locate("fixtures")


class FixtureIntegrityError(BackendFailure):
    """A vendored fixture file is missing or its sha256 differs from the manifest."""


@functools.cache
def _manifest_hashes() -> dict[str, str]:
    manifest = json.loads((fixtures_dir() / "MANIFEST.json").read_text(encoding="utf-8"))
    return {
        entry["path"]: entry["sha256"]
        for package in manifest["packages"]
        for entry in package["files"]
    }


@functools.cache
def load_fixture_json(relative_path: str) -> Any:
    """Load a vendored JSON file after checking its sha256 against the manifest.

    Raises:
        FixtureIntegrityError: the file is not in the manifest, or its bytes changed.
    """
    expected = _manifest_hashes().get(relative_path)
    if expected is None:
        raise FixtureIntegrityError(
            f"fixtures/{relative_path} is not listed in fixtures/MANIFEST.json"
        )
    data = (fixtures_dir() / relative_path).read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise FixtureIntegrityError(
            f"fixtures/{relative_path}: sha256 is {actual}, the manifest records {expected}"
        )
    return json.loads(data)


@functools.cache
def r4_resource_types() -> frozenset[str]:
    """The 146 concrete FHIR R4 resource type names."""
    return frozenset(load_fixture_json("r4/resource-types.json")["resourceTypes"])


def r4_example(name: str) -> dict[str, Any]:
    """Return a fresh copy of an official R4 example, e.g. ``"Patient-example"``."""
    copy: dict[str, Any] = json.loads(json.dumps(load_fixture_json(f"r4/examples/{name}.json")))
    return copy
