"""Event-time parsing (SPEC section 5): timestamps in any ``event.time.format`` as epoch millis.

The same Rust kernels read the event time of every query; this module exposes them for
one column at a time, so a format can be tried on sample data before it is configured::

    from velostream.time import parse_timestamps

    parse_timestamps(["2024-01-31T12:00:00Z"], "iso8601")  # -> [1706702400000]

Formats (``event.time.format``):

- ``epoch_millis``, ``epoch_seconds`` (alias ``epoch``): integers, floats, or numeric
  strings (``-?[0-9]+(.[0-9]+)?``, no whitespace).
- ``iso8601`` (alias ``ISO8601``): RFC 3339 with ``Z`` or an offset (``±HH:MM``, ``±HHMM``,
  ``±HH``), ``T``, ``t`` or a space between date and time, seconds optional, a fraction of
  1 to 9 digits. A time without an offset is rejected: use a pattern to read it as UTC.
- a strftime-style pattern (any text with ``%``, chrono's syntax), read as UTC unless it
  has ``%z``; a date-only pattern gives midnight UTC.
- ``None`` (auto-detect): integers and digit strings are epoch millis, other strings ISO
  8601 (here a missing offset means UTC and a bare date midnight UTC).

Arrow timestamp and date columns are converted under every format. Sub-millisecond parts
are dropped by rounding down to the millisecond that contains the instant.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from velostream import _core
from velostream.errors import ConfigError, EventTimeError, VelostreamError

__all__ = ["check_format", "parse_timestamps"]

#: How a format is named in errors (as the Rust kernels name it).
_FORMAT_NAMES = {None: "auto-detect", "epoch": "epoch_seconds", "ISO8601": "iso8601"}

#: An empty array: parsing it validates a format without parsing anything.
_EMPTY = pa.array([], pa.int64())


def _format_name(format: str | None) -> str:
    return _FORMAT_NAMES.get(format, format or "")


def check_format(format: str, *, key: str = "event.time.format") -> None:
    """Check an ``event.time.format`` value without parsing anything.

    Args:
        format: the value, e.g. ``"iso8601"`` or ``"%Y-%m-%d %H:%M:%S"``.
        key: the property as written (``'<source>.event.time.format'`` when prefixed),
            named by the error.

    Raises:
        ConfigError: not a known format nor a valid strftime-style pattern.
    """
    try:
        _core.parse_timestamps(_EMPTY, format, "")
    except ConfigError as exc:
        raise ConfigError(
            str(exc).replace("'event.time.format'", f"'{key}'"),
            key=key,
            value=format,
            allowed=exc.allowed,
        ) from None


def _cannot_read(values: object, field: str, format: str | None, cause: str) -> EventTimeError:
    """The error for values that do not form one Arrow array (after the format is checked)."""
    _core.parse_timestamps(_EMPTY, format, field)  # raises ConfigError for a bad format
    detail = cause if len(cause) <= 300 else cause[:300] + "…"
    return EventTimeError(
        f"event time field {field!r}: the values ({type(values).__name__}) cannot be read "
        f"as one Arrow array, so their type cannot hold timestamps: {detail}",
        kind="type_mismatch",
        field=field,
        value=detail,
        format=_format_name(format),
    )


def parse_timestamps(
    values: pa.Array | pa.ChunkedArray | Iterable[Any],
    format: str | None = None,
    *,
    field: str = "value",
) -> pa.Int64Array:
    """Parse event-time values into epoch milliseconds, vectorised in Rust.

    Args:
        values: a ``pyarrow.Array`` or ``ChunkedArray`` (or any object exporting
            ``__arrow_c_array__`` / ``__arrow_c_stream__``), or a sequence of Python values
            (converted with ``pyarrow.array``): integers, floats, strings, ``datetime``,
            ``date``, ``None``.
        format: an ``event.time.format`` value: ``"epoch_millis"``, ``"epoch_seconds"``,
            ``"epoch"``, ``"iso8601"``, ``"ISO8601"``, a strftime pattern such as
            ``"%Y-%m-%d %H:%M:%S%.3f"``, or ``None`` to auto-detect.
        field: the name of the field the values come from, shown in errors.

    Returns:
        A ``pyarrow.Int64Array`` of epoch milliseconds, one per value, without nulls.

    Raises:
        ConfigError: ``format`` is not a known format or a valid pattern
            (``key="event.time.format"``).
        EventTimeError: a value has no event time: its ``kind`` is ``null_value``,
            ``type_mismatch``, ``invalid_timestamp``, ``parse_error`` or
            ``auto_detect_failed``, for the first failing value (the message names its
            row); ``value`` and ``format`` are strings.

    Example:
        >>> from velostream.time import parse_timestamps
        >>> parse_timestamps(
        ...     ["2024-01-31T12:00:00Z", "2024-01-31T17:30:00.250+05:30"], "iso8601"
        ... ).to_pylist()
        [1706702400000, 1706702400250]
        >>> parse_timestamps([1706702400, 1706702400.5], "epoch_seconds").to_pylist()
        [1706702400000, 1706702400500]
    """
    if format is not None and not isinstance(format, str):
        raise ConfigError(
            f"event.time.format must be a string, not {type(format).__name__}",
            key="event.time.format",
            value=repr(format),
        )
    if not isinstance(field, str):
        raise VelostreamError(
            f"parse_timestamps(): field must be a str, not {type(field).__name__}"
        )
    if isinstance(values, (str, bytes, bytearray)):
        # pyarrow would read a lone string as a sequence; it is one value, not a column.
        raise _cannot_read(values, field, format, "expected a sequence of values, not one")
    failure: str | None = None
    if not (hasattr(values, "__arrow_c_array__") or hasattr(values, "__arrow_c_stream__")):
        try:
            values = pa.array(values)
        except Exception as exc:  # any conversion failure: the values hold no timestamps
            failure = str(exc) or type(exc).__name__
    if failure is None:
        try:
            return _core.parse_timestamps(values, format, field)
        except VelostreamError:
            raise
        except Exception as exc:  # an exporter that fails or exports something unreadable
            failure = str(exc) or type(exc).__name__
    # Raised outside the handlers: neither pyarrow's exception nor a ConfigError for the
    # format (checked first) is chained to it.
    raise _cannot_read(values, field, format, failure)
