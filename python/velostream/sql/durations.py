"""Duration units and the conversion of durations to integer milliseconds.

Durations appear in two places: in SQL (`WINDOW TUMBLING(5m)`, `INTERVAL '5' MINUTE`),
where the dialect reads the number and the unit as tokens and calls :func:`to_millis`,
and in property values (`'watermark.max_out_of_orderness' = '5s'`), which are plain
strings read by :func:`parse_duration`.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

#: Compact units written right after the number: ``250ms``, ``30s``, ``5m``, ``1h``, ``1d``.
SHORT_UNITS: dict[str, int] = {
    "ms": 1,
    "s": 1_000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
}

#: Unit words, as in ``INTERVAL '5' MINUTE`` or ``INTERVAL 5 MINUTES``.
LONG_UNITS: dict[str, int] = {
    "MILLISECOND": 1,
    "MILLISECONDS": 1,
    "SECOND": 1_000,
    "SECONDS": 1_000,
    "MINUTE": 60_000,
    "MINUTES": 60_000,
    "HOUR": 3_600_000,
    "HOURS": 3_600_000,
    "DAY": 86_400_000,
    "DAYS": 86_400_000,
}

UNIT_HINT = "ms, s, m, h, d or MILLISECOND(S), SECOND(S), MINUTE(S), HOUR(S), DAY(S)"

# A property value is a whole string, not SQL: a regular expression is the simple tool here.
_DURATION_TEXT = re.compile(r"\s*([+-]?\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*")


def unit_millis(unit: str) -> int | None:
    """Return how many milliseconds one `unit` lasts, or None for an unknown unit.

    Args:
        unit: a short unit (``ms``, ``s``, ``m``, ``h``, ``d``; any case) or a unit word
            (``SECOND``, ``MINUTES``, ...; any case).

    Returns:
        The number of milliseconds in one unit, or None.

    """
    short = SHORT_UNITS.get(unit.lower())
    if short is not None:
        return short
    return LONG_UNITS.get(unit.upper())


def to_millis(number: str, unit_ms: int) -> int:
    """Convert a number of units to whole milliseconds.

    Args:
        number: the number as written (``"5"``, ``"1.5"``, ``"-2"``).
        unit_ms: milliseconds per unit (see :func:`unit_millis`).

    Returns:
        The duration in milliseconds (may be zero or negative: callers decide).

    Raises:
        ValueError: the number is not a decimal number, or the duration is not a whole
            number of milliseconds.

    """
    try:
        value = Decimal(number) * unit_ms
    except InvalidOperation:
        raise ValueError(f"{number!r} is not a number") from None
    if not value.is_finite() or value != value.to_integral_value():
        raise ValueError(f"duration {number!r} is not a whole number of milliseconds")
    return int(value)


def parse_duration(text: str) -> int:
    """Parse a duration property value such as ``'5s'``, ``'250ms'`` or ``'5 minutes'``.

    A bare integer is a number of milliseconds (as in Flink). Zero is allowed (a
    ``max_out_of_orderness`` of ``0s`` is common); negative durations are not.

    Args:
        text: the value, e.g. ``"250ms"``, ``"30s"``, ``"5m"``, ``"1h"``, ``"1d"``,
            ``"2 MINUTES"``, ``"1500"``.

    Returns:
        The duration in integer milliseconds.

    Raises:
        ValueError: the text is not a duration, its unit is unknown, or it is negative.

    """
    match = _DURATION_TEXT.fullmatch(text)
    if match is None:
        raise ValueError(
            f"invalid duration {text!r}: expected a number and a unit such as '250ms', "
            "'30s', '5m', '1h' or '1d'"
        )
    number, unit = match.groups()
    if unit:
        unit_ms = unit_millis(unit)
        if unit_ms is None:
            raise ValueError(f"invalid duration {text!r}: unknown unit {unit!r} (use {UNIT_HINT})")
    else:
        unit_ms = 1
    try:
        millis = to_millis(number, unit_ms)
    except ValueError as exc:
        raise ValueError(f"invalid duration {text!r}: {exc}") from None
    if millis < 0:
        raise ValueError(f"invalid duration {text!r}: a duration cannot be negative")
    return millis


def format_duration(millis: int) -> str:
    """Write a duration in the largest compact unit that divides it exactly.

    Args:
        millis: a duration in milliseconds.

    Returns:
        For example ``"5m"`` for 300000, ``"1500ms"`` for 1500.

    """
    for unit in ("d", "h", "m", "s"):
        size = SHORT_UNITS[unit]
        if millis != 0 and millis % size == 0:
            return f"{millis // size}{unit}"
    return f"{millis}ms"
