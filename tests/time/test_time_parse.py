"""Event-time parsing (velostream.time.parse_timestamps): every format and every error kind.

Expected values are computed with Python's datetime (exact timedelta arithmetic), not
copied from the implementation.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from velostream import _core
from velostream.errors import ConfigError, EventTimeError, VelostreamError
from velostream.time import parse_timestamps

UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)


def millis(dt: datetime) -> int:
    """Epoch millis of an aware datetime, exactly (floor to the millisecond)."""
    return (dt - EPOCH) // MS


def utc(*args: int) -> int:
    return millis(datetime(*args, tzinfo=UTC))  # type: ignore[misc]


def parse(values: Any, format: str | None = None, **kw: Any) -> list[int]:
    result = parse_timestamps(values, format, **kw)
    assert result.type == pa.int64()
    assert result.null_count == 0
    return result.to_pylist()


def failure(values: Any, format: str | None = None, **kw: Any) -> EventTimeError:
    with pytest.raises(EventTimeError) as info:
        parse_timestamps(values, format, **kw)
    return info.value


NOON = utc(2024, 1, 31, 12)


# ---- formats ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("format", "text", "expected"),
    [
        ("epoch_millis", "1706702400000", NOON),
        ("epoch_seconds", "1706702400", NOON),
        ("epoch", "1706702400", NOON),
        ("iso8601", "2024-01-31T12:00:00Z", NOON),
        ("ISO8601", "2024-01-31T12:00:00Z", NOON),
        ("%Y-%m-%d %H:%M:%S", "2024-01-31 12:00:00", NOON),
        (None, "2024-01-31T12:00:00Z", NOON),
        (None, "1706702400000", NOON),
    ],
)
def test_every_format_name(format: str | None, text: str, expected: int) -> None:
    assert parse([text], format) == [expected]


@pytest.mark.parametrize(
    "bad", ["", "iso", "Iso8601", "epoch_ms", "millis", " epoch", "%Q", "%H:%M:%S", "%Y-%m", "%Z"]
)
def test_a_bad_format_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_timestamps(["1"], bad)
    err = info.value
    assert err.key == "event.time.format"
    assert err.value == bad
    assert {"epoch_millis", "epoch_seconds", "epoch", "iso8601", "ISO8601"} <= set(err.allowed)
    assert repr(bad) in str(err) or bad in str(err)


def test_a_bad_format_wins_over_unconvertible_values() -> None:
    with pytest.raises(ConfigError) as info:
        parse_timestamps([1, "x"], "nope")
    assert info.value.__context__ is None  # pyarrow's exception is not chained to it


def test_a_non_string_format_or_field_is_a_velostream_error() -> None:
    with pytest.raises(ConfigError) as info:
        parse_timestamps([1], 5)  # type: ignore[arg-type]
    assert info.value.key == "event.time.format"
    with pytest.raises(VelostreamError):
        parse_timestamps([1], field=3)  # type: ignore[arg-type]


# ---- ISO 8601 -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "offset"),
    [
        ("2024-01-31T12:00:00Z", timedelta(0)),
        ("2024-01-31T12:00:00z", timedelta(0)),
        ("2024-01-31T12:00:00+00:00", timedelta(0)),
        ("2024-01-31T12:00:00+0000", timedelta(0)),
        ("2024-01-31T12:00:00-00:00", timedelta(0)),
        ("2024-01-31T12:00:00+05:30", timedelta(hours=5, minutes=30)),
        ("2024-01-31T12:00:00+0530", timedelta(hours=5, minutes=30)),
        ("2024-01-31T12:00:00+05", timedelta(hours=5)),
        ("2024-01-31T12:00:00-08:00", timedelta(hours=-8)),
        ("2024-01-31T12:00:00-0800", timedelta(hours=-8)),
        ("2024-01-31T12:00:00+23:59", timedelta(hours=23, minutes=59)),
        ("2024-01-31T12:00:00-23:59", -timedelta(hours=23, minutes=59)),
    ],
)
def test_iso_offsets(text: str, offset: timedelta) -> None:
    expected = millis(datetime(2024, 1, 31, 12, tzinfo=timezone(offset)))
    assert parse([text], "iso8601") == [expected]
    assert parse([text]) == [expected]  # auto-detect reads the same


@pytest.mark.parametrize("separator", ["T", "t", " "])
def test_iso_separators_and_optional_seconds(separator: str) -> None:
    assert parse([f"2024-01-31{separator}12:00:00Z"], "iso8601") == [NOON]
    assert parse([f"2024-01-31{separator}12:00Z"], "iso8601") == [NOON]


@pytest.mark.parametrize("digits", range(1, 10))
def test_iso_fractions_are_truncated_not_rounded(digits: int) -> None:
    fraction = "9" * digits
    expected_ms = int(fraction[:3].ljust(3, "0"))
    assert parse([f"2024-01-31T12:00:00.{fraction}Z"], "iso8601") == [NOON + expected_ms]
    assert parse([f"2024-01-31T12:00:00,{fraction}Z"], "iso8601") == [NOON + expected_ms]
    # Before 1970 truncating the digits is still rounding down toward the past.
    before = utc(1969, 12, 31, 23, 59, 59) + expected_ms
    assert parse([f"1969-12-31T23:59:59.{fraction}Z"], "iso8601") == [before]


def test_iso_fraction_of_ten_digits_is_rejected() -> None:
    err = failure(["2024-01-31T12:00:00.1234567890Z"], "iso8601")
    assert err.kind == "parse_error"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0001-01-01T00:00:00Z", utc(1, 1, 1)),
        ("0001-01-01T00:00:00+01:00", utc(1, 1, 1) - 3_600_000),
        ("1000-06-15T08:30:00Z", utc(1000, 6, 15, 8, 30)),
        ("1969-07-20T20:17:40Z", utc(1969, 7, 20, 20, 17, 40)),
        ("9999-12-31T23:59:59.999Z", utc(9999, 12, 31, 23, 59, 59) + 999),
        ("9999-12-31T23:59:59-23:59", utc(9999, 12, 31, 23, 59, 59) + (23 * 60 + 59) * 60_000),
        ("2024-02-29T12:00:00Z", utc(2024, 2, 29, 12)),
        ("2000-02-29T00:00:00Z", utc(2000, 2, 29)),
    ],
)
def test_iso_far_dates_and_leap_days(text: str, expected: int) -> None:
    assert parse([text], "iso8601") == [expected]


def test_year_zero_is_the_year_before_one() -> None:
    year_one = utc(1, 1, 1)
    assert parse(["0000-12-31T00:00:00Z"], "iso8601") == [year_one - 86_400_000]
    # Year 0 is a leap year in the proleptic Gregorian calendar.
    assert (
        parse(["0000-03-01T00:00:00Z"], "iso8601")[0]
        - parse(["0000-02-28T00:00:00Z"], "iso8601")[0]
        == 2 * 86_400_000
    )


@pytest.mark.parametrize(
    "text",
    [
        "2023-02-29T00:00:00Z",
        "1900-02-29T00:00:00Z",
        "2024-04-31T00:00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-00-10T00:00:00Z",
        "2024-01-00T00:00:00Z",
        "2024-01-01T24:00:00Z",
        "2024-01-01T12:60:00Z",
        "2024-01-01T23:59:60Z",
        "2024-01-01T12:00:00+24:00",
        "2024-01-01T12:00:00-05:60",
    ],
)
def test_iso_invalid_instants(text: str) -> None:
    err = failure([text], "iso8601", field="ts")
    assert err.kind == "invalid_timestamp"
    assert err.value == text
    assert err.format == "iso8601"
    assert err.field == "ts"
    assert "'ts'" in str(err) and text in str(err)
    assert failure([text]).kind == "invalid_timestamp"  # auto-detect: ISO-shaped, not real


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "2024-01-31",
        "2024-01-31T12:00:00",
        "2024-01-31 12:00",
        "2024-01-31T12:00:00.Z",
        "2024-01-31T12:00:00ZZ",
        "2024-01-31T12:00:00 Z",
        "2024-01-31T12:00:00+5:30",
        "2024-01-31T12:00:00+05:30:00",
        " 2024-01-31T12:00:00Z",
        "2024-01-31T12:00:00Z\n",
        "2024/01/31T12:00:00Z",
        "24-01-31T12:00:00Z",
        "+002024-01-31T12:00:00Z",
        "2024-W05-3T12:00:00Z",
        "1706702400000",
    ],
)
def test_iso_shape_errors(text: str) -> None:
    err = failure([text], "iso8601")
    assert err.kind == "parse_error"
    assert err.value == text
    assert "iso8601" in str(err)


def test_iso_without_offset_names_the_remedy() -> None:
    err = failure(["2024-01-31T12:00:00"], "iso8601")
    assert err.kind == "parse_error"
    assert "offset" in str(err) and "%Y-%m-%d %H:%M:%S" in str(err)


def test_auto_detect_reads_offsetless_times_and_dates_as_utc() -> None:
    assert parse(["2024-01-31T12:00:00", "2024-01-31 12:00", "2024-01-31"]) == [
        NOON,
        NOON,
        utc(2024, 1, 31),
    ]


# ---- epoch formats ------------------------------------------------------------------------

INT_TYPES = [
    pa.int8(),
    pa.int16(),
    pa.int32(),
    pa.int64(),
    pa.uint8(),
    pa.uint16(),
    pa.uint32(),
    pa.uint64(),
]


@pytest.mark.parametrize("type_", INT_TYPES, ids=str)
def test_every_integer_width(type_: pa.DataType) -> None:
    top = 2 ** (type_.bit_width - (1 if pa.types.is_signed_integer(type_) else 0)) - 1
    top = min(top, 2**63 - 1)
    values = [0, 1, 100, top] + ([-1, -(top + 1)] if pa.types.is_signed_integer(type_) else [])
    array = pa.array(values, type_)
    assert parse(array, "epoch_millis") == values
    assert parse(array) == values  # auto-detect: integers are epoch millis
    if type_.bit_width < 64:
        assert parse(array, "epoch_seconds") == [v * 1000 for v in values]
        assert parse(array, "epoch") == [v * 1000 for v in values]


@pytest.mark.parametrize("type_", INT_TYPES, ids=str)
def test_integers_under_text_formats_are_a_type_mismatch(type_: pa.DataType) -> None:
    for format in ("iso8601", "%Y-%m-%d"):
        err = failure(pa.array([7], type_), format, field="ts")
        assert err.kind == "type_mismatch"
        assert err.value == "7"
        assert err.field == "ts"
        assert err.format == format


def test_negative_epochs() -> None:
    assert parse([-1, -1000, -86_400_000], "epoch_millis") == [-1, -1000, -86_400_000]
    assert parse([-1, -86_400], "epoch_seconds") == [-1000, -86_400_000]
    assert parse(["-1", "-1.5", "-0.0001"], "epoch_seconds") == [-1000, -1500, -1]
    assert parse(["-1", "-1.5"], "epoch_millis") == [-1, -2]
    assert parse(["-1"]) == [-1]


def test_epoch_seconds_overflow_is_an_invalid_timestamp() -> None:
    limit = (2**63 - 1) // 1000
    assert parse([limit, -limit], "epoch_seconds") == [limit * 1000, -limit * 1000]
    for value in (limit + 1, -limit - 1, 10**18, -(2**63)):
        err = failure(pa.array([0, value], pa.int64()), "epoch_seconds")
        assert err.kind == "invalid_timestamp"
        assert err.value == str(value)
        assert "row 1" in str(err)
    err = failure(pa.array([2**63], pa.uint64()), "epoch_millis")
    assert err.kind == "invalid_timestamp"
    assert err.value == str(2**63)
    err = failure(["1000000000000000000"], "epoch_seconds")
    assert err.kind == "invalid_timestamp"


def test_epoch_floats_round_to_the_microsecond_then_down() -> None:
    assert parse([1706702400.123, 1.5, -1.0005, 0.0], "epoch_seconds") == [
        NOON + 123,
        1500,
        -1001,
        0,
    ]
    assert parse(pa.array([1.5, -1.5], pa.float32()), "epoch_millis") == [1, -2]
    for bad in (float("nan"), float("inf"), float("-inf"), 1e300):
        err = failure([1.0, bad], "epoch_seconds")
        assert err.kind == "invalid_timestamp"
        assert err.value == {"nan": "NaN", "1e+300": "1e300"}.get(repr(bad), repr(bad))


def test_floats_are_not_guessed_by_auto_detection() -> None:
    err = failure([1706702400.5])
    assert err.kind == "auto_detect_failed"
    assert err.format == "auto-detect"
    assert failure([1.5], "iso8601").kind == "type_mismatch"


@pytest.mark.parametrize(
    ("text", "seconds", "millis_"),
    [
        ("0", 0, 0),
        ("1706702400", NOON, 1706702400),
        ("0001706702400", NOON, 1706702400),
        ("1706702400.25", NOON + 250, 1706702400),
        ("1706702400.2509999", NOON + 250, 1706702400),
        ("9223372036854775", 9223372036854775000, 9223372036854775),
    ],
)
def test_numeric_strings(text: str, seconds: int, millis_: int) -> None:
    assert parse([text], "epoch_seconds") == [seconds]
    assert parse([text], "epoch_millis") == [millis_]


@pytest.mark.parametrize(
    "text", ["", "-", "+1", " 1", "1 ", "1e3", "1.", ".5", "0x1F", "1_000", "1,5", "NaN", "١٢"]
)
def test_numeric_string_shape_errors(text: str) -> None:
    for format in ("epoch_millis", "epoch_seconds"):
        err = failure([text], format)
        assert err.kind == "parse_error"
        assert err.value == text


def test_auto_detect_digit_strings_are_epoch_millis() -> None:
    assert parse(["1706702400000", "0", "-5"]) == [NOON, 0, -5]
    assert failure(["99999999999999999999"]).kind == "invalid_timestamp"
    for text in ("1706702400.5", "yesterday", "", "12:00", "1e12"):
        err = failure([text], field="when")
        assert err.kind == "auto_detect_failed"
        assert err.value == text
        assert "'when'" in str(err) and "event.time.format" in str(err)


# ---- patterns -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("%Y-%m-%d %H:%M:%S%.3f", "2024-01-31 12:00:00.250", NOON + 250),
        ("%Y-%m-%d %H:%M:%S%.f", "2024-01-31 12:00:00.999999999", NOON + 999),
        ("%Y-%m-%d", "2024-01-31", utc(2024, 1, 31)),
        ("%d/%m/%Y %H:%M", "31/01/2024 12:00", NOON),
        ("%Y%m%d%H%M%S", "20240131120000", NOON),
        ("%Y-%m-%dT%H:%M:%S%z", "2024-01-31T17:30:00+0530", NOON),
        ("%Y-%m-%dT%H:%M:%S%z", "2024-01-31T04:00:00-08:00", NOON),
        ("%Y-%m-%dT%H:%M:%S%:z", "2024-01-31T12:00:00+00:00", NOON),
        ("%a, %d %b %Y %H:%M:%S", "Wed, 31 Jan 2024 12:00:00", NOON),
        ("%s", "1706702400", NOON),
        ("%Y-%j", "2024-060", utc(2024, 2, 29)),
        ("%Y-%m-%d %I:%M %p", "2024-01-31 12:00 PM", NOON),
        ("%Y-%m-%d", "0001-01-01", utc(1, 1, 1)),
    ],
)
def test_patterns(pattern: str, text: str, expected: int) -> None:
    assert parse([text], pattern) == [expected]


@pytest.mark.parametrize(
    ("pattern", "text", "kind"),
    [
        ("%Y-%m-%d", "2023-02-29", "invalid_timestamp"),
        ("%Y-%m-%d", "2024-13-01", "invalid_timestamp"),
        ("%Y-%m-%d %H:%M:%S", "2024-01-31 24:00:00", "invalid_timestamp"),
        ("%Y-%m-%d %H:%M:%S", "2024-01-31 23:59:60", "invalid_timestamp"),
        ("%a %Y-%m-%d", "Thu 2024-01-31", "invalid_timestamp"),
        ("%Y-%m-%d", "31/01/2024", "parse_error"),
        ("%Y-%m-%d", "2024-01-31 12:00", "parse_error"),
        ("%Y-%m-%d %H:%M:%S", "2024-01-31T12:00:00", "parse_error"),
        ("%Y-%m-%d", "", "parse_error"),
    ],
)
def test_pattern_errors(pattern: str, text: str, kind: str) -> None:
    err = failure([text], pattern, field="d")
    assert err.kind == kind
    assert err.value == text
    assert err.format == pattern
    assert pattern in str(err)


# ---- Arrow timestamps and dates -----------------------------------------------------------


@pytest.mark.parametrize(
    ("unit", "per_ms"),
    [("s", None), ("ms", 1), ("us", 1_000), ("ns", 1_000_000)],
)
@pytest.mark.parametrize("tz", [None, "UTC", "Asia/Kolkata", "-08:00"])
def test_timestamp_columns_under_every_format(
    unit: str, per_ms: int | None, tz: str | None
) -> None:
    if per_ms is None:
        raw = [1706702400, -1, 0]
        expected = [NOON, -1000, 0]
    else:
        raw = [NOON * per_ms + per_ms - 1, -1, 0]
        expected = [NOON, -1, 0]  # sub-millisecond parts round down, also before 1970
    array = pa.array([*raw, None], pa.timestamp(unit, tz=tz))
    for format in (None, "epoch_millis", "epoch_seconds", "iso8601", "%Y-%m-%d"):
        assert parse(array.slice(0, 3), format) == expected
        err = failure(array, format)
        assert err.kind == "null_value" and "row 3" in str(err)


def test_python_datetimes_and_dates() -> None:
    aware = datetime(
        2024, 1, 31, 17, 30, 0, 250_999, tzinfo=timezone(timedelta(hours=5, minutes=30))
    )
    assert parse([aware]) == [NOON + 250]
    assert parse([date(2024, 1, 31), date(1969, 12, 31)]) == [utc(2024, 1, 31), -86_400_000]
    assert parse(pa.array([19753, -1], pa.date32())) == [utc(2024, 1, 31), -86_400_000]
    assert parse(pa.array([NOON, -1], pa.date64())) == [NOON, -1]


def test_timestamp_seconds_overflow() -> None:
    err = failure(pa.array([2**62], pa.timestamp("s")))
    assert err.kind == "invalid_timestamp"


# ---- nulls, garbage, other types ----------------------------------------------------------


@pytest.mark.parametrize("format", [None, "epoch_millis", "epoch_seconds", "iso8601", "%Y-%m-%d"])
@pytest.mark.parametrize(
    "array",
    [
        pa.array([None], pa.string()),
        pa.array([None], pa.int64()),
        pa.array([None], pa.float64()),
        pa.array([None], pa.timestamp("ms")),
        pa.array([None], pa.bool_()),
        pa.array([None]),
        pa.array([None], pa.large_string()),
        pa.array([None], pa.string_view()),
    ],
    ids=lambda a: str(a.type),
)
def test_nulls_are_null_value_in_every_format(array: pa.Array, format: str | None) -> None:
    err = failure(array, format, field="ts")
    assert err.kind == "null_value"
    assert err.value == "NULL"
    assert err.field == "ts"
    assert err.format == {None: "auto-detect"}.get(format, format)
    assert "'ts'" in str(err) and "NULL" in str(err) and "row 0" in str(err)


def test_first_failing_row_is_reported() -> None:
    err = failure(
        ["2024-01-31T12:00:00Z", "2024-01-31T12:00:00Z", "bad", None], "iso8601", field="ts"
    )
    assert err.kind == "parse_error"
    assert err.value == "bad"
    assert "row 2" in str(err)
    assert err.available_fields == []


def test_chunked_arrays_count_rows_over_chunks() -> None:
    chunked = pa.chunked_array([["1", "2"], ["3"], [], ["4", "x"]])
    err = failure(chunked, "epoch_millis")
    assert "row 4" in str(err) and err.value == "x"
    assert parse(pa.chunked_array([["1", "2"], [], ["3"]]), "epoch_seconds") == [1000, 2000, 3000]
    assert parse(pa.chunked_array([], pa.int64())) == []


def test_string_layouts_and_dictionaries() -> None:
    texts = ["2024-01-31T12:00:00Z", "1970-01-01T00:00:00.001Z", "2024-01-31T12:00:00Z"]
    expected = [NOON, 1, NOON]
    for type_ in (pa.string(), pa.large_string(), pa.string_view()):
        assert parse(pa.array(texts, type_), "iso8601") == expected
    dictionary = pa.array(texts).dictionary_encode()
    assert parse(dictionary, "iso8601") == expected
    bad = pa.array(["1", "x", "1", None]).dictionary_encode()
    err = failure(bad, "epoch_millis")
    assert (err.kind, err.value) == ("parse_error", "x") and "row 1" in str(err)
    assert parse(pa.array(["5", "5"]).dictionary_encode().slice(1)) == [5]


def test_sliced_arrays_keep_their_offsets() -> None:
    array = pa.array(["bad", "1", "2"])
    assert parse(array.slice(1), "epoch_millis") == [1, 2]


@pytest.mark.parametrize(
    ("array", "value"),
    [
        (pa.array([True]), "true"),
        (pa.array([b"\x00\xff"]), "00ff"),
        (pa.array([[1, 2]]), "[1, 2]"),
        (pa.array([{"a": 1}]), "{a: 1}"),
        (pa.array([Decimal("1.5")], pa.decimal128(5, 2)), "1.50"),
    ],
    ids=lambda x: str(getattr(x, "type", x)),
)
def test_other_types_are_a_type_mismatch(array: pa.Array, value: str) -> None:
    for format in (None, "epoch_millis", "iso8601"):
        err = failure(array, format, field="ts")
        assert err.kind == "type_mismatch"
        assert err.value == value
        assert "'ts'" in str(err)


def test_unconvertible_python_values_are_a_type_mismatch() -> None:
    for values in ([1, "x"], ["\ud800"], [object()], "not a list", 5, [2**70]):
        err = failure(values, "epoch_millis", field="ts")
        assert err.kind == "type_mismatch"
        assert err.field == "ts"
        assert err.format == "epoch_millis"
        assert isinstance(err.value, str) and err.value


def test_a_failing_arrow_exporter_is_a_type_mismatch() -> None:
    class Broken:
        def __arrow_c_array__(self, requested_schema: object = None) -> object:
            raise RuntimeError("export failed")

    err = failure(Broken())
    assert err.kind == "type_mismatch"
    assert "export failed" in str(err)


def test_huge_values_are_cut_in_errors() -> None:
    err = failure(["x" * 100_000], "iso8601")
    assert err.value == "x" * 256 + "…"
    assert len(str(err)) < 2_000


def test_the_core_function_directly() -> None:
    result = _core.parse_timestamps(pa.array(["1"]), "epoch_seconds", "f")
    assert result.to_pylist() == [1000]
    with pytest.raises(EventTimeError) as info:
        _core.parse_timestamps(pa.array(["x"]), None)
    assert info.value.field == ""
