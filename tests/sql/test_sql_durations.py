"""Durations: property values and SQL duration syntax convert to integer milliseconds."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from velostream.errors import SqlSyntaxError, SqlValidationError
from velostream.sql import parse_duration, parse_statement
from velostream.sql.durations import LONG_UNITS, SHORT_UNITS, format_duration

SHORT = sorted(SHORT_UNITS)
LONG = sorted(LONG_UNITS)


@pytest.mark.parametrize(
    ("text", "millis"),
    [
        ("250ms", 250),
        ("30s", 30_000),
        ("5m", 300_000),
        ("1h", 3_600_000),
        ("1d", 86_400_000),
        ("0s", 0),
        ("1500", 1_500),
        (" 2 MINUTES ", 120_000),
        ("1 second", 1_000),
        ("1.5s", 1_500),
        ("10S", 10_000),
    ],
)
def test_parse_duration(text: str, millis: int) -> None:
    assert parse_duration(text) == millis


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "invalid duration"),
        ("fast", "invalid duration"),
        ("5x", "unknown unit 'x'"),
        ("5 weeks", "unknown unit 'weeks'"),
        ("-5s", "negative"),
        ("0.5ms", "whole number of milliseconds"),
        ("5s5", "invalid duration"),
    ],
)
def test_parse_duration_rejects(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_duration(text)


def test_format_duration() -> None:
    assert [format_duration(ms) for ms in (300_000, 1_500, 86_400_000, 7_000)] == [
        "5m",
        "1500ms",
        "1d",
        "7s",
    ]


values = st.integers(min_value=1, max_value=10**6)


@given(values, st.sampled_from(SHORT))
def test_compact_duration_round_trips(value: int, unit: str) -> None:
    millis = value * SHORT_UNITS[unit]
    assert parse_duration(f"{value}{unit}") == millis
    window = parse_statement(f"SELECT a FROM t WINDOW TUMBLING({value}{unit})").window
    assert window is not None
    assert window.size_ms == millis
    assert parse_duration(format_duration(millis)) == millis


@given(values, st.sampled_from(LONG), st.booleans(), st.sampled_from([str.upper, str.lower]))
def test_interval_duration_round_trips(
    value: int, unit: str, quoted: bool, case: Callable[[str], str]
) -> None:
    millis = value * LONG_UNITS[unit]
    number = f"'{value}'" if quoted else str(value)
    window = parse_statement(
        f"SELECT a FROM t WINDOW SESSION(INTERVAL {number} {case(unit)}, ts)"
    ).window
    assert window is not None
    assert (window.gap_ms, window.time_column) == (millis, "ts")
    assert parse_duration(f"{value} {unit}") == millis


@given(values, values, st.sampled_from(SHORT))
def test_sliding_window_durations(size: int, advance: int, unit: str) -> None:
    sql = f"SELECT a FROM t WINDOW SLIDING({size}{unit}, {advance}{unit})"
    if advance > size:
        with pytest.raises(SqlValidationError):
            parse_statement(sql)
        return
    window = parse_statement(sql).window
    assert window is not None
    assert (window.size_ms, window.advance_ms) == (
        size * SHORT_UNITS[unit],
        advance * SHORT_UNITS[unit],
    )


@given(st.text(alphabet="abcfgijklnopqrtuvwxyz", min_size=1, max_size=4))
def test_unknown_compact_units_are_syntax_errors_at_the_unit(unit: str) -> None:
    sql = f"SELECT a FROM t WINDOW TUMBLING(5{unit})"
    with pytest.raises(SqlSyntaxError) as info:
        parse_statement(sql)
    assert info.value.column == sql.index(f"5{unit}") + 2
    assert info.value.token == unit
