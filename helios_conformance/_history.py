"""Validation of history query arguments, shared so every backend refuses alike."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ._errors import InvalidSearch

DEFAULT_HISTORY_COUNT = 50
MAX_HISTORY_COUNT = 1000


@dataclass(frozen=True, slots=True)
class HistoryWindow:
    """Checked history arguments: ``since <= t < before``, ``count`` entries a page."""

    since: datetime | None
    before: datetime | None
    count: int

    def admits(self, moment: datetime) -> bool:
        if self.since is not None and moment < self.since:
            return False
        return self.before is None or moment < self.before

    def scope(self) -> str:
        """A string identifying the window, for binding cursors to their query."""
        since = self.since.isoformat() if self.since else ""
        before = self.before.isoformat() if self.before else ""
        return f"{since}|{before}|{self.count}"


def history_window(
    since: datetime | None, before: datetime | None, count: int | None
) -> HistoryWindow:
    """Check history arguments and fill in the default page size.

    Raises:
        InvalidSearch: a naive datetime, a count outside 1..1000, or before <= since.
    """
    for name, value in (("_since", since), ("before", before)):
        if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
            raise InvalidSearch(
                f"{name} must be a timezone-aware instant, got {value!r}", parameter=name
            )
    if count is None:
        count = DEFAULT_HISTORY_COUNT
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_HISTORY_COUNT:
        raise InvalidSearch(
            f"_count must be a whole number from 1 to {MAX_HISTORY_COUNT}, got {count!r}",
            parameter="_count",
        )
    if since is not None and before is not None and before <= since:
        raise InvalidSearch(
            f"before ({before.isoformat()}) must be later than _since ({since.isoformat()})",
            parameter="before",
        )
    return HistoryWindow(since, before, count)
