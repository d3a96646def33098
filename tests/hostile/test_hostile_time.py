"""Hostile time (issue 10): time properties, and event-time values of every Arrow type.

* Generated time properties: ``event.time.field`` (existing, missing, empty, weird
  names), ``event.time.format`` (the named formats, strftime patterns, garbage),
  ``event.time.error``, ``watermark.strategy``, the watermark and late-data durations
  (garbage, negative, zero, huge, beyond int64), ``late.data.strategy``, each also
  prefixed by the source's name (which wins) or by another name. A windowed query
  compiles or raises a ``ConfigError`` (or ``SqlValidationError`` where the SQL cannot
  take the setting); a compiled one processes a batch into rows or a ``VelostreamError``.
  Hand-picked bad values must be a ``ConfigError`` naming the key as written and the
  value (SPEC 2); the named formats and valid patterns must compile.
* Event-time values: columns of every Arrow type (integers of every width at their
  limits, floats with NaN and infinities, decimals, strings of every flavour holding
  ISO 8601 timestamps valid and invalid, numeric strings, garbage, empty and huge ones,
  timestamps of every unit and zone at their limits, dates, booleans, binary, lists,
  structs, NULLs) as the event-time field of a windowed query, under auto-detection and
  every named format, with ``event.time.error`` ``fail`` and ``dead_letter``, in random
  ``process`` splits. Each row must be read as the instant it holds (its window is the
  one a Python model computes), or refused: with ``fail`` an ``EventTimeError`` with its
  fields, with ``dead_letter`` a dead letter per refused row, and every row counted once
  (``records_in`` = rows in windows + late + dead-lettered).
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from hostile_support import describe, hostile_settings, outcome
from hypothesis import given
from hypothesis import strategies as st

import velostream as vs

CONFIG_ERRORS = (vs.ConfigError, vs.SqlValidationError)
EVENT_TIME_KINDS = {
    "missing_field",
    "null_value",
    "type_mismatch",
    "invalid_timestamp",
    "parse_error",
    "auto_detect_failed",
}

# --------------------------------------------------------------------------- properties

TIME_KEYS = [
    "event.time.field",
    "event.time.format",
    "event.time.error",
    "watermark.strategy",
    "watermark.max_out_of_orderness",
    "watermark.idle_timeout",
    "late.data.strategy",
    "late.data.allowed_lateness",
]

FIELDS = ["ts", "ts", "iso", "sec", "nope", "", " ", "TS", "k", "_event_time", "_timestamp"]
FIELDS += ["_partition", "ts ", "t.ts", "\x00", "é", "a b", "a" * 300, "x"]

FORMATS = [
    "epoch_millis", "epoch_seconds", "epoch", "iso8601", "ISO8601", "auto",
    "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S%.3f", "%Y-%m-%d %H:%M:%S%.3f", "%Y-%m-%d",
    "%d/%m/%Y %H:%M", "%s", "%Y-%m-%dT%H:%M:%S%z", "%Y%m%d%H%M%S", "%H:%M", "%Y",
    "%Q", "%", "%Y-%m-%d %H:%M:%S%", "%E", "%-", "%%", "", " ", "garbage", "EPOCH_MILLIS",
    "epoch_micros", "iso", "\x00", "%Y\x00", "%" * 100, "%Y" * 200,
]  # fmt: skip

DURATIONS = [
    "5ms", "0s", "0", "1", "1500", "-1s", "-0s", "1e400s", "99999999999999999999d",
    "9223372036854775807", "9223372036854775808", "100000000000000ms", "100000000000001ms",
    "5 s", "1.5s", "0.5ms", "NaN", "inf", "", " ", "5w", "5us", "${UNSET_HOSTILE}", "5m30s",
    "1h", "\uff11s",
]  # fmt: skip

VALUES: dict[str, list[str]] = {
    "event.time.field": FIELDS,
    "event.time.format": FORMATS,
    "event.time.error": ["fail", "dead_letter", "FAIL", "log_and_continue", "drop", ""],
    "watermark.strategy": [
        "bounded_out_of_orderness",
        "ascending",
        "none",
        "NONE",
        "",
        "periodic",
        "None",
    ],
    "watermark.max_out_of_orderness": DURATIONS,
    "watermark.idle_timeout": DURATIONS,
    "late.data.strategy": [
        "drop",
        "dead_letter",
        "include_in_next_window",
        "update_previous",
        "DROP",
        "",
        "retract",
    ],
    "late.data.allowed_lateness": DURATIONS,
}

PREFIXES = ["", "", "", "t.", "t.", "T.", "u.", "t.t."]

WINDOWS = [
    "TUMBLING(10ms)",
    "SLIDING(10ms, 5ms)",
    "SESSION(5ms)",
    "TUMBLING(10ms, ts)",
    "SESSION(5ms, nope)",
    "TUMBLING(1d) EMIT CHANGES",
]

TIME_DATA = pa.record_batch(
    {
        "k": pa.array(["a", "b", None, "a", "b", "c"], pa.string()),
        "ts": pa.array([5, 1, 30, None, 12, 2**40], pa.int64()),
        "iso": pa.array(
            ["2024-01-01T00:00:00Z", "2024-01-01T00:00:00.005+00:00", "garbage", None, "", "x"],
            pa.string(),
        ),
        "sec": pa.array([1, 2, 3, 4, -5, 1_700_000_000], pa.int64()),
        "é": pa.array([1, 2, 3, 4, 5, 6], pa.int64()),
        "a b": pa.array(["1", "2", "3", "4", "5", "6"], pa.string()),
    }
)


@st.composite
def time_properties(draw: st.DrawFn) -> dict[str, str]:
    props: dict[str, str] = {}
    if draw(st.integers(0, 3)):
        props["event.time.field"] = draw(st.sampled_from(FIELDS))
    for _ in range(draw(st.integers(0, 4))):
        key = draw(st.sampled_from(TIME_KEYS))
        pool = (
            VALUES[key] if draw(st.integers(0, 3)) else [v for vs_ in VALUES.values() for v in vs_]
        )
        props[draw(st.sampled_from(PREFIXES)) + key] = draw(st.sampled_from(pool))
    return props


def compile_and_run(sql: str, props: dict[str, str], *, with_clause: bool = False) -> None:
    if with_clause and props:
        quoted = ", ".join(
            "'{}' = '{}'".format(k.replace("'", "''"), v.replace("'", "''"))
            for k, v in props.items()
        )
        sql, props = f"{sql} WITH ({quoted})", {}
    context = f"vs.compile({sql!r}, properties={props!r})"
    compiled = outcome(lambda: vs.compile(sql, properties=props), context)
    if not compiled.ok:
        assert isinstance(compiled.error, CONFIG_ERRORS), f"{describe(compiled.error)}\n{context}"
        return
    query = compiled.value
    for piece in (TIME_DATA.slice(0, 2), TIME_DATA.slice(2)):
        if not outcome(lambda p=piece: query.process(p), "process: " + context).ok:
            return
    outcome(query.flush, "flush: " + context)
    outcome(query.dead_letters, "dead_letters: " + context)


@hostile_settings(250)
@given(props=time_properties(), window=st.sampled_from(WINDOWS), with_clause=st.booleans())
def test_generated_time_properties_give_a_query_or_a_config_error(
    props: dict[str, str], window: str, with_clause: bool
) -> None:
    sql = f"SELECT k, COUNT(*) AS c, _window_start, _window_end FROM t GROUP BY k WINDOW {window}"
    compile_and_run(sql, props, with_clause=with_clause)


SQL_10MS = (
    "SELECT k, COUNT(*) AS c, _window_start, _window_end FROM t GROUP BY k WINDOW TUMBLING(10ms)"
)

# (key, value) pairs that SPEC 2 and 5 make a ConfigError, whatever else is set
BAD_VALUES = [
    ("watermark.strategy", "bogus"),
    ("watermark.strategy", "ASCENDING"),
    ("late.data.strategy", "retract"),
    ("event.time.error", "log_and_continue"),
    ("event.time.field", ""),
    ("watermark.max_out_of_orderness", "-1s"),
    ("watermark.max_out_of_orderness", "1e400s"),
    ("watermark.max_out_of_orderness", "99999999999999999999d"),
    ("watermark.max_out_of_orderness", "9223372036854775808"),
    ("watermark.max_out_of_orderness", "5w"),
    ("watermark.max_out_of_orderness", "NaN"),
    ("watermark.max_out_of_orderness", ""),
    ("watermark.idle_timeout", "0s"),
    ("watermark.idle_timeout", "-5ms"),
    ("watermark.idle_timeout", "99999999999999999999d"),
    ("late.data.allowed_lateness", "-1s"),
    ("late.data.allowed_lateness", "99999999999999999999d"),
    ("event.time.format", "%Q"),
    ("event.time.format", "%"),
    ("event.time.format", ""),
    ("event.time.format", "%Y-%m-%d %H:%M:%S%"),
]


@pytest.mark.parametrize("prefix", ["", "t."], ids=["plain", "prefixed"])
@pytest.mark.parametrize(("key", "value"), BAD_VALUES, ids=[f"{k}={v!r}" for k, v in BAD_VALUES])
def test_bad_time_values_are_config_errors_naming_the_key(
    prefix: str, key: str, value: str
) -> None:
    props = {"event.time.field": "ts", prefix + key: value}
    if key == "late.data.allowed_lateness":
        props["late.data.strategy"] = "update_previous"
    written = prefix + key
    for sql, properties in ((SQL_10MS, props), (_with(SQL_10MS, props), {})):
        context = f"vs.compile({sql!r}, properties={properties!r})"
        result = outcome(lambda s=sql, p=properties: vs.compile(s, properties=p), context)
        assert isinstance(result.error, vs.ConfigError), (
            f"{written} = {value!r}: expected a ConfigError (SPEC 2), got "
            f"{describe(result.error)}\n{context}"
        )
        assert result.error.key == written, f"{result.error!r} names {result.error.key!r}"
        assert result.error.value == value, f"{result.error!r} holds {result.error.value!r}"


def _with(sql: str, props: dict[str, str]) -> str:
    return sql + " WITH (" + ", ".join(f"'{k}' = '{v}'" for k, v in props.items()) + ")"


GOOD_FORMATS = [
    "epoch_millis",
    "epoch_seconds",
    "epoch",
    "iso8601",
    "ISO8601",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M:%S%.3f",
    "%d/%m/%Y %H:%M",
]


@pytest.mark.parametrize("prefix", ["", "t."], ids=["plain", "prefixed"])
@pytest.mark.parametrize("fmt", GOOD_FORMATS)
def test_named_formats_and_valid_patterns_compile(prefix: str, fmt: str) -> None:
    props = {"event.time.field": "ts", prefix + "event.time.format": fmt}
    context = f"vs.compile({SQL_10MS!r}, properties={props!r})"
    result = outcome(lambda: vs.compile(SQL_10MS, properties=props), context)
    assert result.ok, f"a valid event.time.format was refused: {describe(result.error)}\n{context}"


def test_source_prefixed_time_keys_win_over_plain_ones() -> None:
    """SPEC 5: '<source>.event.time.field' wins; a bad plain value it overrides is still
    checked (or ignored), never an InternalError."""
    props = {"event.time.field": "nope", "t.event.time.field": "ts"}
    query = vs.compile(SQL_10MS, properties=props)
    out = query.process(pa.record_batch({"k": ["a"], "ts": pa.array([5], pa.int64())}))
    assert out.num_rows == 0 and query.watermark == 5
    for key, value in (
        ("watermark.strategy", "bogus"),
        ("late.data.strategy", "bogus"),
        ("event.time.error", "bogus"),
    ):
        both = {"event.time.field": "ts", key: "ascending" if "watermark" in key else "drop"}
        both = {**both, "t." + key: value}
        context = f"properties={both!r}"
        result = outcome(lambda b=both: vs.compile(SQL_10MS, properties=b), context)
        assert isinstance(result.error, vs.ConfigError), f"{describe(result.error)}\n{context}"


# --------------------------------------------------------------------------- values

MIN_MS = -62_135_596_800_000  # 0001-01-01T00:00:00Z
MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
NAN, INF = float("nan"), float("inf")


@dataclass(frozen=True)
class Exp:
    """What reading one value must give.

    ``accept``: True (must be read), False (must be refused), None (either).
    ``millis``: the instants it may be read as, None when not checked.
    """

    accept: bool | None
    millis: frozenset[int] | None = None


REFUSE = Exp(False)
EITHER = Exp(None)


def exactly(ms: int) -> Exp:
    """Read as ``ms`` when it lies in years 1-9999; beyond them read as ``ms`` or refused."""
    return Exp(True if MIN_MS <= ms <= MAX_MS else None, frozenset([ms]))


def one_of(*ms: int) -> Exp:
    return Exp(None, frozenset(ms))


def fraction(numerator: int, denominator: int) -> Exp:
    """An instant of ``numerator / denominator`` ms: truncated (SPEC 12) or floored."""
    floor = numerator // denominator
    trunc = -((-numerator) // denominator) if numerator < 0 else floor
    accept = True if MIN_MS <= floor <= MAX_MS else None
    return Exp(accept, frozenset([floor, trunc]))


ISO_VALID = {
    "2024-01-01T00:00:00Z": 1_704_067_200_000,
    "2024-01-01T00:00:00.123Z": 1_704_067_200_123,
    "2024-01-01T00:00:00.1Z": 1_704_067_200_100,
    "2024-01-01T00:00:00.123456789Z": 1_704_067_200_123,
    "2024-01-01T05:30:00+05:30": 1_704_067_200_000,
    "2023-12-31T19:00:00-05:00": 1_704_067_200_000,
    "2024-01-01T00:00:00+00:00": 1_704_067_200_000,
    "2024-01-01T00:00:00-00:00": 1_704_067_200_000,
    "1970-01-01T00:00:00Z": 0,
    "1969-12-31T23:59:59.999Z": -1,
    "0001-01-01T00:00:00Z": MIN_MS,
    "9999-12-31T23:59:59.999Z": MAX_MS,
    "2000-02-29T12:00:00Z": 951_825_600_000,
    "2024-01-01T23:59:59.999+14:00": 1_704_067_199_999 - 50_400_000 + 86_400_000,
}
ISO_NEAR = {  # readable or not (RFC 3339 leaves some to the reader); if read, as this
    "2024-01-01t00:00:00z": one_of(1_704_067_200_000),
    "2024-01-01 00:00:00Z": one_of(1_704_067_200_000),
    "2024-01-01T00:00:00": one_of(1_704_067_200_000),
    "1969-12-31T23:59:59.9999Z": one_of(-1, 0),
    "2016-12-31T23:59:60Z": one_of(1_483_228_800_000, 1_483_228_799_999, 1_483_228_799_000),
    "2024-01-01": one_of(1_704_067_200_000),
    "2024-01-01T00:00Z": one_of(1_704_067_200_000),
    "2024-01-01T00:00:00,5Z": one_of(1_704_067_200_500),
    "+002024-01-01T00:00:00Z": one_of(1_704_067_200_000),
    "2024-01-01T00:00:00+0000": one_of(1_704_067_200_000),
}
NUMERIC = {"0": 0, "-0": 0, "1": 1, "-1": -1, "1700000000000": 1_700_000_000_000}
NUMERIC |= {str(MAX_MS): MAX_MS, str(MIN_MS): MIN_MS, "007": 7}
NUMERIC_BIG = ["9223372036854775807", "-9223372036854775808", str(MAX_MS + 1)]
NUMERIC_NEAR = ["+12", " 12", "12 ", "1.5", "1e3", "-1.25"]
GARBAGE = [
    "", " ", "garbage", "2024-13-01T00:00:00Z", "2024-02-30T00:00:00Z", "2023-02-29T00:00:00Z",
    "2024-01-01T25:00:00Z", "2024-01-01T00:60:00Z", "2024-01-01T00:00:00+25:00", "\x00", "Z",
    "T", "nan", "NaN", "inf", "-inf", "null", "true", "9" * 1000, "99999999999999999999",
    "99999-01-01T00:00:00Z", "0x10", "--1", "1-", "\u0661\u0662\u0663", "\uff11\uff12\uff13", "2024-01-01T00:00:00Z\x00",
    "2024-01-01T00:00:00Zjunk", "\U0001f600", "2024-01-01T00:00:00Z" * 50, "'1'", "[1]",
]  # fmt: skip
STRINGS = [*ISO_VALID, *ISO_NEAR, *NUMERIC, *NUMERIC_BIG, *NUMERIC_NEAR, *GARBAGE]
PATTERN_STRINGS = {  # for '%Y-%m-%d %H:%M:%S' and '%d/%m/%Y %H:%M'
    "2024-01-01 00:00:00": 1_704_067_200_000,
    "1969-12-31 23:59:59": -1000,
    "0001-01-01 00:00:00": MIN_MS,
    "31/12/1999 23:59": 946_684_740_000,
    "01/01/1970 00:00": 0,
}
STRINGS += list(PATTERN_STRINGS)


def _int_pool(bits: int, signed: bool) -> tuple[int, ...]:
    if signed:
        top = 2 ** (bits - 1) - 1
        pool = [top, -top - 1, 0, 1, -1, 5, 99]
    else:
        top = 2**bits - 1
        pool = [top, top - 1, 0, 1, 5, 99, 2 ** (bits - 1)]
    pool += [v for v in (1_700_000_000_000, MAX_MS, MIN_MS, MAX_MS + 1) if -top - 1 <= v <= top]
    return tuple(v for v in pool if signed or v >= 0)


def _timestamp_pool(unit: str) -> tuple[int, ...]:
    per_second = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[unit]
    top = 2**63 - 1
    return (0, 1, -1, 1_700_000_000 * per_second + 1, 999, -999, top, -top - 1, 2**40)


@dataclass(frozen=True)
class Kind:
    """An Arrow type with a pool of values."""

    type: pa.DataType
    pool: tuple[Any, ...]
    family: str  # int, float, decimal, string, timestamp, date32, date64, other
    build: Callable[[list[Any]], pa.Array] | None = None

    def array(self, values: list[Any]) -> pa.Array:
        if self.build is not None:
            return self.build(values)
        return pa.array(values, self.type)


KINDS: dict[str, Kind] = {
    **{
        f"int{b}": Kind(getattr(pa, f"int{b}")(), _int_pool(b, True), "int")
        for b in (8, 16, 32, 64)
    },
    **{
        f"uint{b}": Kind(getattr(pa, f"uint{b}")(), _int_pool(b, False), "int")
        for b in (8, 16, 32, 64)
    },
    "float64": Kind(
        pa.float64(), (NAN, INF, -INF, -0.0, 1.5, -1.5, 1e300, 1.7e12, 2.0**53, 5e-324), "float"
    ),
    "float32": Kind(pa.float32(), (NAN, INF, 1.5, -2.5, 16777216.0, 0.0), "float"),
    "float16": Kind(pa.float16(), (1.5, -0.0, INF, NAN), "float"),
    "decimal": Kind(
        pa.decimal128(20, 3),
        (Decimal("1.500"), Decimal("-1.500"), Decimal("1700000000000.999"), Decimal("0")),
        "decimal",
    ),
    "string": Kind(pa.string(), tuple(STRINGS), "string"),
    "large_string": Kind(pa.large_string(), tuple(STRINGS), "string"),
    "string_view": Kind(pa.string_view(), tuple(STRINGS), "string"),
    "dictionary": Kind(
        pa.dictionary(pa.int32(), pa.string()),
        tuple(STRINGS),
        "string",
        build=lambda values: pa.array(values, pa.string()).dictionary_encode(),
    ),
    **{
        f"timestamp({unit}, {tz})": Kind(
            pa.timestamp(unit, tz=tz), _timestamp_pool(unit), "timestamp"
        )
        for unit in ("s", "ms", "us", "ns")
        for tz in (None, "Asia/Kolkata")
    },
    "date32": Kind(
        pa.date32(), (0, 1, -1, 19_723, -719_162, 2_932_896, 2**31 - 1, -(2**31)), "date32"
    ),
    "date64": Kind(pa.date64(), (0, 86_400_000, -86_400_000, 1, MAX_MS, 2**62), "date64"),
    "bool": Kind(pa.bool_(), (True, False), "other"),
    "binary": Kind(pa.binary(), (b"", b"12", b"2024-01-01T00:00:00Z", b"\xff"), "binary"),
    "large_binary": Kind(pa.large_binary(), (b"12", b"\x00"), "binary"),
    "list": Kind(pa.list_(pa.int64()), ((), (1,), (1, None)), "other"),
    "struct": Kind(pa.struct([("x", pa.int64())]), ({"x": 1}, {"x": None}), "other"),
    "time32": Kind(pa.time32("ms"), (0, 1, 86_399_999), "other"),
    "duration": Kind(pa.duration("ms"), (0, 1, -1), "other"),
    "null": Kind(pa.null(), (None,), "other"),
}

FORMAT_NAMES = [None, "epoch_millis", "epoch_seconds", "epoch", "iso8601", "ISO8601"]
FORMAT_NAMES += ["%Y-%m-%d %H:%M:%S", "%d/%m/%Y %H:%M"]


def _numeric_text(text: str, per_unit: int) -> Exp:
    if text in NUMERIC:
        return exactly(NUMERIC[text] * per_unit)
    if text in NUMERIC_BIG:
        return one_of(int(text) * per_unit)
    if text in ("+12", " 12", "12 "):
        return one_of(12 * per_unit)
    if text == "1e3":
        return one_of(1000 * per_unit)
    if text in ("1.5", "-1.25") and per_unit == 1000:
        return one_of(int(Decimal(text) * 1000))
    return EITHER if text in NUMERIC_NEAR else REFUSE


def expect(fmt: str | None, kind: Kind, value: Any) -> Exp:
    """What reading ``value`` of ``kind`` under ``fmt`` (None: auto-detect) must give."""
    if value is None:
        return REFUSE  # null_value
    family = kind.family
    if family == "timestamp":
        per_second = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[kind.type.unit]
        exp = fraction(value * 1000, per_second)
        return exp if fmt is None else Exp(None, exp.millis)  # a typed time: any format
    if family in ("date32", "date64"):
        exp = exactly(value * 86_400_000 if family == "date32" else value)
        return exp if fmt is None else Exp(None, exp.millis)
    if family == "binary":
        return EITHER
    if family == "other":
        return REFUSE  # type_mismatch
    epoch = {None: 1, "epoch_millis": 1, "epoch_seconds": 1000, "epoch": 1000}.get(fmt)
    if family == "int":
        if epoch is None:
            return EITHER  # an integer under a text format
        return exactly(value * epoch)
    if family in ("float", "decimal"):
        if isinstance(value, float) and not math.isfinite(value):
            return REFUSE
        if epoch is None:
            return EITHER
        exact = Decimal(value) * epoch
        floor = int(exact.to_integral_value(rounding="ROUND_FLOOR"))
        trunc = int(exact.to_integral_value(rounding="ROUND_DOWN"))
        return Exp(None, frozenset([floor, trunc]))
    # strings
    if fmt is None:  # auto-detect: integers are epoch millis, the rest ISO 8601
        if value in ISO_VALID:
            return exactly(ISO_VALID[value])
        if value in ISO_NEAR:
            return ISO_NEAR[value]
        if value in PATTERN_STRINGS:
            return EITHER
        return _numeric_text(value, 1)
    if epoch is not None:
        return _numeric_text(value, epoch)
    if fmt.lower() == "iso8601":
        if value in ISO_VALID:
            return exactly(ISO_VALID[value])
        if value in ISO_NEAR:
            return ISO_NEAR[value]
        return EITHER if value in PATTERN_STRINGS else REFUSE
    # a strftime pattern: only what it matches
    matches = {
        "%Y-%m-%d %H:%M:%S": ("2024-01-01 00:00:00", "1969-12-31 23:59:59", "0001-01-01 00:00:00"),
        "%d/%m/%Y %H:%M": ("31/12/1999 23:59", "01/01/1970 00:00"),
    }[fmt]
    if value in matches:
        return exactly(PATTERN_STRINGS[value])
    return REFUSE if value in GARBAGE or value in NUMERIC else EITHER


@dataclass
class TimeCase:
    kind: str
    fmt: str | None
    values: list[Any]
    size: int
    watermark: str
    pieces: list[tuple[int, int]]
    as_table: bool
    sql_column: bool  # the time column named in WINDOW instead of event.time.field

    def batch(self) -> pa.RecordBatch:
        return pa.RecordBatch.from_arrays(
            [pa.array(range(len(self.values)), pa.int64()), KINDS[self.kind].array(self.values)],
            names=["k", "ts"],
        )

    def sql(self) -> str:
        time_column = ", ts" if self.sql_column else ""
        return (
            "SELECT k, COUNT(*) AS c, _window_start, _window_end FROM t GROUP BY k "
            f"WINDOW TUMBLING({self.size}ms{time_column})"
        )

    def properties(self, on_error: str) -> dict[str, str]:
        props = {"event.time.error": on_error, "watermark.strategy": self.watermark}
        if not self.sql_column:
            props["event.time.field"] = "ts"
        if self.fmt is not None:
            props["event.time.format"] = self.fmt
        return props

    def describe(self) -> str:
        shown = [repr(v)[:60] for v in self.values]
        return (
            f"{self.kind} under format {self.fmt!r}, TUMBLING({self.size}ms), watermark "
            f"{self.watermark}, pieces {self.pieces}, table {self.as_table}\nvalues {shown}"
        )


def time_cases(formats: list[str | None]) -> st.SearchStrategy[TimeCase]:
    @st.composite
    def build(draw: st.DrawFn) -> TimeCase:
        kind = draw(st.sampled_from(sorted(KINDS)), label="kind")
        fmt = draw(st.sampled_from(formats), label="format")
        n = draw(st.integers(0, 16), label="rows")
        rng = random.Random(draw(st.integers(0, 2**32), label="seed"))
        pool = KINDS[kind].pool
        values = [None if rng.random() < 0.1 else rng.choice(pool) for _ in range(n)]
        cuts = sorted(rng.randint(0, n) for _ in range(rng.randint(0, 4)))
        return TimeCase(
            kind=kind,
            fmt=fmt,
            values=values,
            size=rng.choice([1, 10, 86_400_000, 100_000_000_000_000]),
            watermark=rng.choice(["none", "none", "bounded_out_of_orderness", "ascending"]),
            pieces=list(itertools.pairwise([0, *cuts, n])),
            as_table=rng.random() < 0.2,
            sql_column=rng.random() < 0.2,
        )

    return build()


def _feed(query: vs.Query, case: TimeCase, context: str) -> list[pa.RecordBatch] | None:
    data = case.batch()
    slices = [data.slice(lo, hi - lo) for lo, hi in case.pieces]
    outputs = []
    if case.as_table:
        calls = [lambda: query.process(pa.Table.from_batches(slices, schema=data.schema))]
    else:
        calls = [lambda s=s: query.process(s) for s in slices]
    for call in calls:
        result = outcome(call, context)
        if not result.ok:
            return None
        outputs.append(result.value)
    result = outcome(query.flush, "flush: " + context)
    return None if not result.ok else [*outputs, result.value]


def check_fail(case: TimeCase, expectations: list[Exp]) -> None:
    """event.time.error = fail: an EventTimeError with its fields when a row must be
    refused, none when every row must be read."""
    sql, props = case.sql(), case.properties("fail")
    context = f"{sql}\nproperties={props}\n{case.describe()}"
    compiled = outcome(lambda: vs.compile(sql, properties=props), context)
    assert compiled.ok, f"{describe(compiled.error)}\n{context}"
    query = compiled.value
    data = case.batch()
    error = None
    for lo, hi in case.pieces:
        result = outcome(lambda lo=lo, hi=hi: query.process(data.slice(lo, hi - lo)), context)
        if not result.ok:
            error = result.error
            break
    if error is None:
        flushed = outcome(query.flush, "flush: " + context)
        error = flushed.error
    if any(e.accept is False for e in expectations):
        assert isinstance(error, vs.EventTimeError), (
            f"a row that cannot be read did not raise EventTimeError: {describe(error)}\n{context}"
        )
    elif all(e.accept for e in expectations):
        assert error is None, f"every row is readable, but: {describe(error)}\n{context}"
    if isinstance(error, vs.EventTimeError):
        assert error.kind in EVENT_TIME_KINDS, f"kind {error.kind!r}\n{context}"
        assert error.field == "ts", f"field {error.field!r}\n{context}"
        assert isinstance(error.value, str) and isinstance(error.format, str), (
            f"value {error.value!r}, format {error.format!r}\n{context}"
        )
        assert list(error.available_fields) == ["k", "ts"], f"{error.available_fields}\n{context}"
        if case.fmt is not None:
            # The format by its canonical name (the aliases epoch and ISO8601 resolved).
            expected = {"epoch": "epoch_seconds", "ISO8601": "iso8601"}.get(case.fmt, case.fmt)
            assert error.format == expected, f"format {error.format!r}\n{context}"
    elif error is not None:
        assert isinstance(error, vs.VelostreamError), describe(error)


def check_dead_letter(case: TimeCase, expectations: list[Exp]) -> None:
    """event.time.error = dead_letter: each row read as its instant, or dead-lettered."""
    sql, props = case.sql(), case.properties("dead_letter")
    context = f"{sql}\nproperties={props}\n{case.describe()}"
    compiled = outcome(lambda: vs.compile(sql, properties=props), context)
    assert compiled.ok, f"{describe(compiled.error)}\n{context}"
    query = compiled.value
    outputs = _feed(query, case, context)
    assert outputs is not None, f"dead_letter: a call raised\n{context}"
    windows: dict[int, tuple[int, int]] = {}
    for out in outputs:
        for key, count, start, end in zip(*(c.to_pylist() for c in out.columns), strict=True):
            assert count == 1 and key not in windows, f"row {key} counted twice\n{context}"
            windows[key] = (start, end)
    letters: dict[int, tuple[Any, str]] = {}  # row -> (its value in the letter, reason)
    broken = []
    for record, reason in zip(*(c.to_pylist() for c in query.dead_letters().columns), strict=True):
        try:
            fields = json.loads(record)
        except ValueError as exc:
            broken.append(f"{record!r} ({exc})")
            continue
        assert set(fields) == {"k", "ts"}, f"dead letter {record}\n{context}"
        assert "ts" in reason, f"reason {reason!r}\n{context}"
        letters[fields["k"]] = (fields["ts"], reason)
    metrics = query.metrics()
    n = len(case.values)
    assert metrics["records_in"] == n, f"{metrics}\n{context}"
    assert metrics["dead_lettered"] == len(letters) + len(broken), f"{metrics}\n{context}"
    assert len(windows) + metrics["dead_lettered"] + metrics["late_dropped"] == n, (
        f"{n} rows: {len(windows)} in windows, {metrics['dead_lettered']} dead-lettered, "
        f"{metrics['late_dropped']} late\n{context}"
    )
    assert not broken, f"dead letters whose record is not JSON text (SPEC 2): {broken}\n{context}"
    assert not set(windows) & set(letters), f"rows both read and dead-lettered\n{context}"
    for row, exp in enumerate(expectations):
        shown = f"row {row} = {case.values[row]!r}"
        if exp.accept is False:
            assert row in letters, f"{shown} must be refused, but was read\n{context}"
        if exp.accept is True:
            assert row not in letters, (
                f"{shown} must be read, but was dead-lettered: {letters[row][1]}\n{context}"
            )
        if row in windows and exp.millis is not None:
            allowed = {(ms - ms % case.size, ms - ms % case.size + case.size) for ms in exp.millis}
            assert windows[row] in allowed, (
                f"{shown} went to the window {windows[row]}, not one of {sorted(allowed)} "
                f"(as the instants {sorted(exp.millis)})\n{context}"
            )
    # The record's fields as JSON text: its value, not an error text nor a NULL.
    for row, (value, _) in sorted(letters.items()):
        given_value = case.values[row]
        assert not (isinstance(value, str) and value.startswith("ERROR")), (
            f"the dead letter of row {row} holds {value!r}, not the record's value "
            f"{given_value!r}\n{context}"
        )
        assert (value is None) == (given_value is None), (
            f"the dead letter of row {row} holds {value!r}, not the record's value "
            f"{given_value!r} (SPEC 12 writes NaN and infinities to JSON as NaN, Infinity, "
            f"-Infinity)\n{context}"
        )


@hostile_settings(300)
@given(case=time_cases([None]))
def test_event_time_values_of_every_type_under_auto_detect(case: TimeCase) -> None:
    expectations = [expect(case.fmt, KINDS[case.kind], v) for v in case.values]
    check_dead_letter(case, expectations)
    check_fail(case, expectations)


@hostile_settings(200)
@given(case=time_cases(FORMAT_NAMES[1:]))
def test_event_time_values_of_every_type_under_each_format(case: TimeCase) -> None:
    expectations = [expect(case.fmt, KINDS[case.kind], v) for v in case.values]
    check_dead_letter(case, expectations)
    check_fail(case, expectations)


REFUSED_VALUES: dict[str, list[Any]] = {
    "timestamp(s, None)": [0, 2**63 - 1, -(2**63)],
    "timestamp(ms, None)": [0, 2**63 - 1, -(2**63)],
    "timestamp(us, None)": [0, 2**63 - 1, -(2**63)],
    "timestamp(ns, None)": [0, 2**63 - 1, -(2**63)],
    "timestamp(s, Asia/Kolkata)": [0, 2**63 - 1, 2**40],
    "date32": [0, 2**31 - 1, -(2**31)],
    "date64": [0, 2**62],
    "float64": [1.5, NAN, INF, -INF],
    "float32": [NAN, INF],
}


@pytest.mark.parametrize("kind", sorted(REFUSED_VALUES))
def test_refused_values_are_dead_lettered_with_their_value(kind: str) -> None:
    """Values beyond what the engine reads (timestamps and dates at their type's limits,
    NaN and infinities) are refused, and each dead letter holds the record's fields as
    JSON text (SPEC 2): the value itself, not an error text, not NULL, and valid JSON."""
    values = REFUSED_VALUES[kind]
    case = TimeCase(kind, None, values, 10, "none", [(0, len(values))], False, False)
    check_dead_letter(case, [expect(None, KINDS[kind], v) for v in values])
