"""Value normalisation shared by indexing and query parsing (FHIR R4 search.html).

- strings fold to lower case without accents (NFKD, combining marks dropped),
  whitespace collapsed;
- dates become ``[low, high)`` UTC ranges at their precision; a date or time without
  a zone is taken as UTC;
- numbers carry their implicit precision: ``100`` is ``[99.5, 100.5)``, ``1e2`` is
  ``[50, 150)`` (one significant digit);
- quantities convert to UCUM canonical units (``_ucum.py``) when they can.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation

_SPACES = re.compile(r"\s+")


def fold(text: str) -> str:
    """Fold a string for case- and accent-insensitive comparison.

    ``"Ch\u00e1vez  Jr"`` becomes ``"chavez jr"``. SQL backends store this form.
    """
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _SPACES.sub(" ", stripped.casefold()).strip()


# -- dates --------------------------------------------------------------------------

_DATE = re.compile(
    r"(?P<year>\d{4})"
    r"(?:-(?P<month>\d{2})"
    r"(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2})"
    r"(?::(?P<second>\d{2})(?:\.(?P<fraction>\d+))?)?"
    r"(?P<zone>Z|[+-]\d{2}:\d{2})?"
    r")?)?)?"
)


def _add_months(moment: datetime, months: int) -> datetime:
    total = moment.year * 12 + (moment.month - 1) + months
    return moment.replace(year=total // 12, month=total % 12 + 1)


def date_range(text: str) -> tuple[datetime, datetime]:
    """The ``[low, high)`` UTC range a FHIR date, dateTime or instant denotes.

    ``2013`` is the whole year, ``2013-01-14T10:00`` the whole minute,
    ``2013-01-14T10:00:00.25`` the 10 ms... of its fraction digits. A value without
    a zone is taken as UTC.

    Raises:
        ValueError: ``text`` is not a FHIR date/dateTime/instant.
    """
    match = _DATE.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"{text!r} is not a FHIR date (YYYY, YYYY-MM, YYYY-MM-DD or "
            "YYYY-MM-DDThh:mm[:ss[.fff]][Z|+hh:mm])"
        )
    parts = match.groupdict()
    zone: timezone = UTC
    if parts["zone"] and parts["zone"] != "Z":
        sign = 1 if parts["zone"][0] == "+" else -1
        hours, minutes = int(parts["zone"][1:3]), int(parts["zone"][4:6])
        if hours > 23 or minutes > 59:
            raise ValueError(f"{text!r} is not a valid date: the time zone offset is out of range")
        zone = timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        year = int(parts["year"])
        if parts["month"] is None:
            low = datetime(year, 1, 1, tzinfo=zone)
            high = low.replace(year=year + 1) if year < 9999 else datetime.max.replace(tzinfo=zone)
        elif parts["day"] is None:
            low = datetime(year, int(parts["month"]), 1, tzinfo=zone)
            high = (
                _add_months(low, 1)
                if (year, low.month) != (9999, 12)
                else datetime.max.replace(tzinfo=zone)
            )
        elif parts["hour"] is None:
            low = datetime(year, int(parts["month"]), int(parts["day"]), tzinfo=zone)
            high = low + timedelta(days=1)
        else:
            hour, minute = int(parts["hour"]), int(parts["minute"])
            if parts["second"] is None:
                low = datetime(
                    year, int(parts["month"]), int(parts["day"]), hour, minute, tzinfo=zone
                )
                high = low + timedelta(minutes=1)
            else:
                fraction = parts["fraction"] or ""
                micro = int((fraction + "000000")[:6]) if fraction else 0
                low = datetime(
                    year, int(parts["month"]), int(parts["day"]), hour, minute,
                    int(parts["second"]), micro, tzinfo=zone,
                )  # fmt: skip
                step = timedelta(seconds=1) / (10 ** min(len(fraction), 6))
                high = low + step
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"{text!r} is not a valid date: {exc}") from exc
    return low.astimezone(UTC), high.astimezone(UTC)


def format_utc(moment: datetime) -> str:
    """A sortable text form (``2013-01-14T10:00:00.000000Z``) for SQL columns."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- numbers ----------------------------------------------------------------------

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def parse_decimal(text: str) -> Decimal:
    """Parse a FHIR decimal as written (keeping its digits).

    Raises:
        ValueError: not a number.
    """
    candidate = text.strip()
    if not _NUMBER.fullmatch(candidate):
        raise ValueError(f"{text!r} is not a number")
    try:
        return Decimal(candidate)
    except InvalidOperation as exc:  # pragma: no cover - the pattern already checked
        raise ValueError(f"{text!r} is not a number") from exc


def precision_range(value: Decimal) -> tuple[Decimal, Decimal]:
    """The implicit-precision range ``[low, high)`` of a decimal as written.

    Half a unit of the last significant digit either side: ``100`` -> [99.5, 100.5),
    ``100.00`` -> [99.995, 100.005), ``1e2`` -> [50, 150), ``1.0e2`` -> [95, 105).
    """
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int):
        raise ValueError(f"{value} is not a finite number")
    half = Decimal(5).scaleb(exponent - 1)
    return value - half, value + half


def to_decimal(value: object) -> Decimal | None:
    """A JSON number as a Decimal (``None`` for anything else, booleans included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    return None


def canonical_decimal(value: Decimal) -> str:
    """A normalized text form of a decimal (no exponent, no trailing zeros)."""
    normalized = value.normalize()
    text = format(normalized, "f")
    return "0" if text in ("-0", "") else text
