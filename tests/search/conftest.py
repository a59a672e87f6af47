"""Shared fixtures of the search unit tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from helios_conformance.search import (
    IndexRow,
    SearchParameterRegistry,
    default_registry,
    index_resource,
    matches,
    parse_query,
    parse_resource_json,
)


@pytest.fixture
def registry() -> SearchParameterRegistry:
    """The shared official registry (never mutate it; use ``fresh_registry``)."""
    return default_registry()


@pytest.fixture
def fresh_registry() -> SearchParameterRegistry:
    """A private registry a test may register custom parameters in."""
    return SearchParameterRegistry()


@pytest.fixture
def rows_of() -> Callable[[dict[str, Any]], tuple[IndexRow, ...]]:
    """Index a resource as a backend would: through JSON with exact decimals."""
    import json

    def index(resource: dict[str, Any]) -> tuple[IndexRow, ...]:
        return index_resource(parse_resource_json(json.dumps(resource)))

    return index


@pytest.fixture
def search() -> Callable[[list[dict[str, Any]], str], set[str]]:
    """Run a query string over resources with the reference evaluator; the matching ids."""
    import json
    from urllib.parse import parse_qsl

    def run(resources: list[dict[str, Any]], query: str) -> set[str]:
        if not resources:
            return set()
        resource_type = resources[0]["resourceType"]
        parsed = parse_query(resource_type, parse_qsl(query, keep_blank_values=True))
        return {
            resource["id"]
            for resource in resources
            if matches(index_resource(parse_resource_json(json.dumps(resource))), parsed)
        }

    return run
