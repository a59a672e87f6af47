"""Value normalisation: strings, dates, numbers, quantities, references."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from helios_conformance.search import (
    canonical_unit,
    date_range,
    fold,
    parse_decimal,
    precision_range,
    split_reference,
    to_canonical,
)


def _utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("Chávez", "chavez"),
        ("  ÉLODIE   du  Pont ", "elodie du pont"),
        ("Straße", "strasse"),
        ("Ǆ", "dz"),
    ],
)
def test_fold_removes_case_and_accents(text: str, folded: str) -> None:
    assert fold(text) == folded


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("2013", _utc(2013, 1, 1), _utc(2014, 1, 1)),
        ("2013-02", _utc(2013, 2, 1), _utc(2013, 3, 1)),
        ("2013-12", _utc(2013, 12, 1), _utc(2014, 1, 1)),
        ("2012-02-29", _utc(2012, 2, 29), _utc(2012, 3, 1)),
        ("2013-01-14T10:00", _utc(2013, 1, 14, 10, 0), _utc(2013, 1, 14, 10, 1)),
        ("2013-01-14T10:00:05Z", _utc(2013, 1, 14, 10, 0, 5), _utc(2013, 1, 14, 10, 0, 6)),
        ("2013-01-14T10:00:05.25Z", _utc(2013, 1, 14, 10, 0, 5, 250000), _utc(2013, 1, 14, 10, 0, 5, 260000)),
        ("2013-01-14T10:00:00+10:00", _utc(2013, 1, 14, 0, 0), _utc(2013, 1, 14, 0, 0, 1)),
        ("2013-01-14T23:30:00-05:00", _utc(2013, 1, 15, 4, 30), _utc(2013, 1, 15, 4, 30, 1)),
    ],
)  # fmt: skip
def test_dates_are_ranges_at_their_precision(text: str, low: datetime, high: datetime) -> None:
    assert date_range(text) == (low, high)


@pytest.mark.parametrize(
    "text",
    ["13", "2013-13", "2013-02-30", "2013-01-14T25:00", "yesterday", "2013-01-14T10:00+25:00"],
)
def test_malformed_dates_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="date"):
        date_range(text)


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("100", "99.5", "100.5"),
        ("100.0", "99.95", "100.05"),
        ("100.00", "99.995", "100.005"),
        ("1e2", "50", "150"),
        ("1.00e2", "99.5", "100.5"),
        ("-5", "-5.5", "-4.5"),
        ("0.001", "0.0005", "0.0015"),
    ],
)
def test_numbers_carry_their_implicit_precision(text: str, low: str, high: str) -> None:
    assert precision_range(parse_decimal(text)) == (Decimal(low), Decimal(high))


@pytest.mark.parametrize("text", ["", "abc", "1,5", "1..2", "--1", "NaN", "Infinity"])
def test_malformed_numbers_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a number"):
        parse_decimal(text)


def test_ucum_units_convert_to_canonical_form() -> None:
    assert canonical_unit("mg") == (Decimal("0.000001"), "kilogram")
    assert canonical_unit("g") == (Decimal("0.001"), "kilogram")
    milligram = to_canonical(Decimal("5400"), "http://unitsofmeasure.org", "mg")
    gram = to_canonical(Decimal("5.4"), "http://unitsofmeasure.org", "g")
    assert milligram is not None
    assert gram is not None
    assert milligram[1] == gram[1]
    assert milligram[0] == gram[0]
    decilitre = canonical_unit("mg/dL")
    assert decilitre is not None
    assert decilitre[0] == Decimal("0.01")


def test_units_without_a_canonical_form() -> None:
    assert canonical_unit("Cel") is None  # an offset unit: compared by code only
    assert canonical_unit("not-a-unit!") is None
    assert to_canonical(Decimal(1), "http://example.org/units", "mg") is None


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("Patient/1", ("Patient/1", "Patient", "1", None)),
        ("Patient/1/_history/2", ("Patient/1", "Patient", "1", "2")),
        ("http://x.org/fhir/Patient/1", ("http://x.org/fhir/Patient/1", "Patient", "1", None)),
        ("http://x.org/fhir/ValueSet/vs|4.0.1", ("http://x.org/fhir/ValueSet/vs", "ValueSet", "vs", "4.0.1")),
        ("urn:uuid:abc", ("urn:uuid:abc", None, None, None)),
    ],
)  # fmt: skip
def test_references_split_into_type_id_version(
    reference: str, expected: tuple[str, str | None, str | None, str | None]
) -> None:
    assert split_reference(reference) == expected
