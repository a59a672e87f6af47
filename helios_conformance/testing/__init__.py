"""Testing aids: the in-memory backend (the executable specification of the contract)."""

from __future__ import annotations

from ._memory import (
    MEMORY_ALL_CAPABILITIES,
    MEMORY_CAPABILITIES,
    MEMORY_SEARCH_CAPABILITIES,
    MemoryBackend,
    open_memory_backend,
)

__all__ = [
    "MEMORY_ALL_CAPABILITIES",
    "MEMORY_CAPABILITIES",
    "MEMORY_SEARCH_CAPABILITIES",
    "MemoryBackend",
    "open_memory_backend",
]
