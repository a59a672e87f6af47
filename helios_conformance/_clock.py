"""A strictly increasing UTC clock for ``meta.lastUpdated``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_TICK = timedelta(microseconds=1)


class MonotonicClock:
    """Returns UTC instants that never repeat and never go backwards.

    Two writes in the same microsecond, or a wall clock stepped back, would otherwise
    give history entries an order that disagrees with the order of the writes.
    """

    def __init__(self) -> None:
        self._last = datetime.min.replace(tzinfo=UTC)

    def now(self) -> datetime:
        moment = datetime.now(UTC)
        if moment <= self._last:
            moment = self._last + _TICK
        self._last = moment
        return moment

    def observe(self, moment: datetime) -> None:
        """Never return an instant at or before ``moment`` (for stores opened with data)."""
        if moment > self._last:
            self._last = moment
