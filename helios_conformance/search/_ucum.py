"""UCUM canonical units for quantity search, through the ``ucumvert`` library.

``ucumvert`` parses UCUM codes into ``pint`` units. A unit that converts is reduced
to SI base units: the canonical unit is pint's text of the base units
(``"kilogram / meter ** 3"`` for ``mg/dL``) and the factor is rounded to 12
significant digits (pint computes in binary floating point, so ``mg/dL`` gives
``0.009999999999999998`` before rounding). Units with an offset (``Cel``,
``[degF]``), arbitrary units and anything ucumvert cannot parse have no canonical
form: such quantities compare only by their code as written.
"""

from __future__ import annotations

import functools
import threading
from decimal import Decimal
from typing import Any

UCUM_SYSTEM = "http://unitsofmeasure.org"
_SIGNIFICANT_DIGITS = 12
_lock = threading.Lock()


@functools.cache
def _registry() -> Any:
    from ucumvert import PintUcumRegistry

    return PintUcumRegistry()


@functools.lru_cache(maxsize=4096)
def canonical_unit(code: str) -> tuple[Decimal, str] | None:
    """The factor to SI base units and the canonical unit text, or ``None``.

    ``canonical_unit("mg")`` is ``(Decimal("0.000001"), "kilogram")``.
    """
    if not code or not code.isprintable():
        return None
    try:
        with _lock:
            registry = _registry()
            quantity = (1 * registry.from_ucum(code)).to_base_units()
            magnitude = float(quantity.magnitude)
            unit = str(quantity.units)
    except Exception:  # ucumvert/pint raise a variety of errors for non-convertible units
        return None
    if magnitude == 0 or magnitude != magnitude:
        return None
    factor = Decimal(f"{magnitude:.{_SIGNIFICANT_DIGITS}g}")
    return factor, unit or "dimensionless"


def to_canonical(
    value: Decimal, system: str | None, code: str | None
) -> tuple[Decimal, str] | None:
    """``value`` in canonical units, when ``system`` is UCUM and ``code`` converts."""
    if system != UCUM_SYSTEM or not code:
        return None
    converted = canonical_unit(code)
    if converted is None:
        return None
    factor, unit = converted
    return value * factor, unit
