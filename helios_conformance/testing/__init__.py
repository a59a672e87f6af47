"""Testing aids: the in-memory backend (the executable specification of the contract)."""

from __future__ import annotations

from ._memory import (
    MEMORY_ALL_CAPABILITIES,
    MEMORY_CAPABILITIES,
    MEMORY_SEARCH_CAPABILITIES,
    MEMORY_TENANCY_CAPABILITIES,
    MemoryBackend,
    open_memory_backend,
)
from ._memory_bulk import MEMORY_BULK_CAPABILITIES

__all__ = [
    "MEMORY_ALL_CAPABILITIES",
    "MEMORY_BULK_CAPABILITIES",
    "MEMORY_CAPABILITIES",
    "MEMORY_SEARCH_CAPABILITIES",
    "MEMORY_TENANCY_CAPABILITIES",
    "MemoryBackend",
    "open_memory_backend",
]
