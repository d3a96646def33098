"""Expression semantics that follow DuckDB, found by the hostile-input suite (issue 9).

SUBSTRING from before the first character and with a negative length, CASE and COALESCE
branches evaluated only for the rows that reach them, LIKE without an escape character,
casts of doubles beyond float32 and of decimals to integers. Each is compared with DuckDB
on the same Arrow data (docs/sql-reference.md, "Types and values").
"""

from __future__ import annotations

import itertools
import math
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vs_compare import assert_same_batches, assert_same_rows, duckdb_rows, rows_of

import velostream as vs
from velostream.errors import DataError, VelostreamError


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect(config={"threads": 1})
    yield connection
    connection.close()


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def velostream_both_paths(sql: str, batch: pa.RecordBatch) -> pa.RecordBatch:
    """The query's output on the direct path, checked equal to the legacy path's."""
    direct = vs.compile(sql).process(batch)
    legacy = vs.compile(sql, path="legacy").process(batch)
    assert_same_batches(direct, legacy, sql)
    return direct


def assert_matches_duckdb(
    con: duckdb.DuckDBPyConnection, batch: pa.RecordBatch, select_list: str
) -> None:
    got = rows_of(velostream_both_paths(f"SELECT {select_list} FROM t", batch))
    want = duckdb_rows(con, "t", batch, select_list)
    assert_same_rows(got, want, select_list)


# --------------------------------------------------------------------------- SUBSTRING

SUBSTRING_TEXTS = ["abcdef", "ab", "", "é😀x\u0301y", None]
STARTS = range(-9, 10)
LENGTHS = range(-8, 9)


def test_substring_matches_duckdb_over_a_grid(con: duckdb.DuckDBPyConnection) -> None:
    """Every start in -9..9 and length in -8..8 (and none), per-row arguments."""
    grid = list(itertools.product(SUBSTRING_TEXTS, STARTS, LENGTHS))
    batch = pa.record_batch(
        {
            "s": pa.array([s for s, _, _ in grid], pa.string()),
            "st": pa.array([start for _, start, _ in grid], pa.int64()),
            "ln": pa.array([length for _, _, length in grid], pa.int64()),
        }
    )
    select_list = "SUBSTRING(s, st, ln) AS c, SUBSTRING(s, st) AS d"
    got = rows_of(vs.compile(f"SELECT {select_list} FROM t").process(batch))
    assert_same_rows(got, duckdb_rows(con, "t", batch, select_list), select_list)


@pytest.mark.parametrize(("start", "length"), [(-8, 6), (-6, 3), (0, 2), (4, -1), (4, -3), (7, -2)])
def test_substring_with_literal_positions_matches_duckdb(
    con: duckdb.DuckDBPyConnection, start: int, length: int
) -> None:
    batch = pa.record_batch({"s": pa.array(SUBSTRING_TEXTS, pa.string())})
    assert_matches_duckdb(con, batch, f"SUBSTRING(s, {start}, {length}) AS c")


def test_substring_before_the_start_and_backwards() -> None:
    batch = pa.record_batch({"s": ["abcdef", "ab"]})
    out = vs.compile(
        "SELECT SUBSTRING(s, -8, 6) AS a, SUBSTRING(s, -6, 3) AS b, "
        "SUBSTRING(s, 4, -1) AS c, SUBSTRING(s, 4, -3) AS d FROM t"
    ).process(batch)
    assert out.to_pylist() == [
        {"a": "abcd", "b": "abc", "c": "c", "d": "abc"},
        {"a": "", "b": "", "c": "", "d": "ab"},
    ]


def test_substring_at_the_limits_of_bigint_does_not_overflow() -> None:
    # DuckDB refuses offsets beyond 2^32; velostream clips them to the string.
    batch = pa.record_batch({"s": ["abc"]})
    out = vs.compile(
        f"SELECT SUBSTRING(s, {2**63 - 1}, {-(2**63) + 1}) AS a, "
        f"SUBSTRING(s, 1, {2**63 - 1}) AS b FROM t"
    ).process(batch)
    assert out.to_pylist() == [{"a": "abc", "b": "abc"}]


# --------------------------------------------------------------------------- CASE, COALESCE


def guarded_batch() -> pa.RecordBatch:
    return pa.record_batch(
        {
            "i1": pa.array([7, 2**62, None, -9, 4, 5], pa.int64()),
            "i2": pa.array([0, 3, 0, 2, None, 0], pa.int64()),
            "s": pa.array(["12", "x", None, "-5", "7", "x"], pa.string()),
            "f": pa.array([1.5, 1e300, None, -0.0, 2.0, 3.0], pa.float64()),
        }
    )


GUARDED = [
    "CASE WHEN i2 <> 0 THEN i1 % i2 ELSE -1 END",
    "CASE WHEN i2 = 0 THEN 0 ELSE i1 % i2 END",
    "CASE i2 WHEN 0 THEN NULL ELSE i1 % i2 END",
    "CASE WHEN s = '12' THEN CAST(s AS INT) END",
    "CASE WHEN s IN ('12', '-5', '7') THEN CAST(s AS BIGINT) * 2 ELSE i2 END",
    "CASE WHEN i1 < 1000 THEN i1 * 1000 END",
    "CASE WHEN i1 > 1000 THEN 0 ELSE i1 * 1000 END",
    # a later condition guarded by an earlier one
    "CASE WHEN i2 = 0 OR i2 IS NULL THEN 0 WHEN i1 % i2 > 1 THEN 1 ELSE 2 END",
    # nested
    "CASE WHEN i2 IS NULL THEN 0 ELSE CASE WHEN i2 <> 0 THEN i1 % i2 END END",
    "CASE WHEN i2 <> 0 THEN CASE WHEN i1 > 0 THEN i1 % i2 ELSE -(i1 % i2) END END",
    # the branch reads a column the condition does not
    "CASE WHEN s = '7' THEN i1 * CAST(s AS BIGINT) WHEN f < 2 THEN i2 END",
    "CASE WHEN f < 1e10 THEN CAST(f AS FLOAT) END",
    "COALESCE(i1, i1 * 1000)",
    "COALESCE(i1, CAST(s AS BIGINT))",
    "COALESCE(i2, CAST(s AS BIGINT), i1 * 1000)",
    "COALESCE(CASE WHEN i2 <> 0 THEN i1 % i2 END, CASE WHEN s <> 'x' THEN CAST(s AS BIGINT) - i1 END, -1)",
    # no branch can fail: the whole-batch path
    "CASE WHEN i2 > 0 THEN i1 WHEN s = 'x' THEN i2 ELSE 0 END",
    "COALESCE(i2, i1, 0)",
]


@pytest.mark.parametrize("expr", GUARDED)
def test_a_branch_is_evaluated_only_for_the_rows_that_reach_it(
    con: duckdb.DuckDBPyConnection, expr: str
) -> None:
    assert_matches_duckdb(con, guarded_batch(), f"{expr} AS c")


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("CASE WHEN i1 > 1000 THEN i1 * 1000 END", "(?i)overflow"),
        ("CASE WHEN i2 IS NOT NULL THEN i1 % i2 END", "division by zero"),
        ("COALESCE(CASE WHEN i2 <> 0 THEN i2 END, CAST(s AS BIGINT))", "'x'"),
        ("COALESCE(CAST(CASE WHEN i2 = 0 THEN s END AS BIGINT), 0)", "'x'"),
    ],
)
def test_a_branch_that_a_failing_row_reaches_still_fails(
    con: duckdb.DuckDBPyConnection, expr: str, message: str
) -> None:
    batch = guarded_batch()
    with pytest.raises(duckdb.Error):
        duckdb_rows(con, "t", batch, expr)
    for path in ("direct", "legacy"):
        with pytest.raises(DataError, match=message):
            vs.compile(f"SELECT {expr} AS c FROM t", path=path).process(batch)


def test_case_over_an_empty_batch_and_when_no_row_reaches_a_branch() -> None:
    sql = "SELECT CASE WHEN i2 <> 0 THEN i1 % i2 ELSE CAST(s AS BIGINT) END AS c FROM t"
    query = vs.compile(sql)
    empty = guarded_batch().slice(0, 0)
    assert query.process(empty).num_rows == 0
    # every row takes the first branch: the ELSE (which would fail on 'x') is not used
    batch = pa.record_batch(
        {
            "i1": pa.array([7, 8], pa.int64()),
            "i2": pa.array([2, 3], pa.int64()),
            "s": pa.array(["x", "y"], pa.string()),
            "f": pa.array([1.0, 2.0], pa.float64()),
        }
    )
    out = query.process(batch)
    assert out.to_pylist() == [{"c": 1}, {"c": 2}]
    assert out.schema == query.output_schema


_GUARD_EXPRS = [
    "CASE WHEN i2 <> 0 THEN i1 % i2 WHEN i1 > 0 THEN i1 * 3 ELSE CAST(s AS BIGINT) END",
    "COALESCE(CASE WHEN i2 <> 0 THEN i1 % i2 END, CAST(s AS BIGINT), i1 * i1)",
    "CASE WHEN s = '1' THEN CAST(s AS BIGINT) WHEN i1 IS NULL THEN i2 % i1 ELSE i1 - i2 END",
]


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.one_of(st.none(), st.integers(-3, 3), st.sampled_from([2**62, -(2**63)])),
            st.one_of(st.none(), st.integers(-2, 2)),
            st.sampled_from([None, "1", "-2", "x", ""]),
        ),
        max_size=12,
    ),
    expr=st.sampled_from(_GUARD_EXPRS),
)
def test_guarded_expressions_fail_exactly_when_duckdb_does(
    rows: list[tuple[Any, Any, Any]], expr: str
) -> None:
    """A value where DuckDB has one, a DataError where DuckDB raises (a reached row fails)."""
    batch = pa.record_batch(
        {
            "i1": pa.array([r[0] for r in rows], pa.int64()),
            "i2": pa.array([r[1] for r in rows], pa.int64()),
            "s": pa.array([r[2] for r in rows], pa.string()),
        }
    )
    connection = duckdb.connect(config={"threads": 1})
    try:
        want: list[tuple[Any, ...]] | None = duckdb_rows(connection, "t", batch, f"{expr} AS c")
    except duckdb.Error:
        want = None
    finally:
        connection.close()
    sql = f"SELECT {expr} AS c FROM t"
    if want is None:
        with pytest.raises(DataError):
            vs.compile(sql).process(batch)
    else:
        assert_same_rows(rows_of(velostream_both_paths(sql, batch)), want, expr)


# --------------------------------------------------------------------------- LIKE

LIKE_VALUES = ["a\\b", "ab", "a\\", "\\%", "%", "a\\xb", "\\\\", "a_b", "a\\_b", "a%b", "", "\\"]
LIKE_PATTERNS = [
    "a\\b",
    "a\\",
    "\\%",
    "a\\%",
    "a\\_b",
    "%\\%",
    "\\\\",
    "\\_",
    "a_b",
    "a\\_",
    "%\\",
    "_\\_",
    "\\",
    "%b",
    "a%",
]


@pytest.mark.parametrize("operator", ["LIKE", "NOT LIKE", "ILIKE"])
def test_like_backslash_is_an_ordinary_character(
    con: duckdb.DuckDBPyConnection, operator: str
) -> None:
    """Patterns per row (a column) and as literals, against DuckDB (no ESCAPE clause)."""
    grid = list(itertools.product(LIKE_VALUES, LIKE_PATTERNS))
    batch = pa.record_batch(
        {"s": [v for v, _ in grid], "p": pa.array([p for _, p in grid], pa.string())}
    )
    assert_matches_duckdb(con, batch, f"s {operator} p AS m")
    single = pa.record_batch({"s": LIKE_VALUES})
    for pattern in LIKE_PATTERNS:
        assert_matches_duckdb(con, single, f"s {operator} {sql_literal(pattern)} AS m")


def test_like_examples() -> None:
    batch = pa.record_batch({"s": ["a\\b", "ab"]})
    out = vs.compile("SELECT s LIKE 'a\\b' AS m FROM t").process(batch)
    assert out.column(0).to_pylist() == [True, False]


def test_like_with_a_dictionary_pattern_column(con: duckdb.DuckDBPyConnection) -> None:
    batch = pa.record_batch(
        {
            "s": ["a\\b", "ab", "x%"],
            "p": pa.array(["a\\b", "a\\b", "x\\%"]).dictionary_encode(),
        }
    )
    out = vs.compile("SELECT s LIKE p AS m FROM t").process(batch)
    assert out.column(0).to_pylist() == [True, False, False]


# --------------------------------------------------------------------------- CAST


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1e300, "1e300"),
        (-1e300, "-1e300"),
        (3.5e38, "3.5e38"),
        (3.4028235677973366e38, "3.4028235677973366e38"),
    ],
)
def test_a_double_beyond_float32_is_a_data_error_naming_it(
    con: duckdb.DuckDBPyConnection, value: float, text: str
) -> None:
    with pytest.raises(duckdb.Error, match="out of range"):
        con.sql(f"SELECT CAST({value!r} AS FLOAT)").fetchall()
    batch = pa.record_batch({"f": [1.0, value, None]})
    for path in ("direct", "legacy"):
        with pytest.raises(DataError, match=r"beyond the range of FLOAT") as info:
            vs.compile("SELECT CAST(f AS FLOAT) AS c FROM t", path=path).process(batch)
        assert f"'{text}'" in str(info.value)


def test_a_double_literal_beyond_float32_is_refused() -> None:
    with pytest.raises(VelostreamError, match=r"1e300 is beyond the range of FLOAT"):
        vs.compile("SELECT CAST(1e300 AS FLOAT) AS c FROM t").process(pa.record_batch({"x": [1]}))


def test_doubles_within_float32_convert_as_duckdb(con: duckdb.DuckDBPyConnection) -> None:
    values = [
        float("nan"),
        float("inf"),
        float("-inf"),
        3.4028235677973362e38,  # rounds down to the largest float32
        -3.4028234663852886e38,
        1e-50,  # underflows to zero
        -0.0,
        0.1,
        None,
    ]
    batch = pa.record_batch({"f": pa.array(values, pa.float64())})
    assert_matches_duckdb(con, batch, "CAST(f AS FLOAT) AS c")
    out = vs.compile("SELECT CAST(f AS FLOAT) AS c FROM t").process(batch).column(0)
    assert out.type == pa.float32()
    assert math.isnan(out[0].as_py()) and out[1].as_py() == math.inf


@pytest.mark.parametrize("target", ["BIGINT", "INT", "SMALLINT", "TINYINT"])
@pytest.mark.parametrize(
    ("values", "decimal_type"),
    [
        (["-738.50", "2.50", "-0.50", "0.49", "-0.49", "127.49", "-128.50", None], (10, 2)),
        (["127.50"], (10, 2)),
        (["-129.4"], (4, 1)),
        (["99999999.99", "-99999999.99", "32767.5", "-32768.49"], (10, 2)),
        (["9223372036854775807.4999999999", "-9223372036854775808.5000000000"], (38, 10)),
        (["9223372036854775806.5000000000"], (38, 10)),
        (["12", "-7", None], (5, 0)),
    ],
)
def test_a_decimal_cast_to_an_integer_rounds_as_duckdb(
    con: duckdb.DuckDBPyConnection,
    values: list[str | None],
    decimal_type: tuple[int, int],
    target: str,
) -> None:
    """Half away from zero; a DataError where the rounded value does not fit (as DuckDB)."""
    array = pa.array(
        [None if v is None else Decimal(v) for v in values], pa.decimal128(*decimal_type)
    )
    batch = pa.record_batch({"d": array})
    select_list = f"CAST(d AS {target}) AS c"
    try:
        want = duckdb_rows(con, "t", batch, select_list)
    except duckdb.Error:
        with pytest.raises(DataError, match="rounded half away from zero"):
            vs.compile(f"SELECT {select_list} FROM t").process(batch)
        return
    got = rows_of(velostream_both_paths(f"SELECT {select_list} FROM t", batch))
    assert_same_rows(got, want, select_list)


def test_decimal_literals_round_and_doubles_truncate() -> None:
    out = vs.compile(
        "SELECT CAST(-738.50 AS BIGINT) AS d, CAST(2.5 AS INT) AS e, "
        "CAST(CAST(-738.50 AS DOUBLE) AS BIGINT) AS f, CAST(2.7e0 AS INT) AS g FROM t"
    ).process(pa.record_batch({"x": [1]}))
    assert out.to_pylist() == [{"d": -739, "e": 3, "f": -738, "g": 2}]


# --------------------------------------------------------------------------- decimals


@pytest.mark.parametrize(
    "expr",
    [
        "CAST(u AS DECIMAL(20, 0)) * i",
        "d + d",
        "d - (-d)",
        "(d * CAST(2 AS BIGINT))",
        "ROUND(m, -1)",
    ],
)
def test_decimal_arithmetic_beyond_38_digits_is_a_data_error(
    con: duckdb.DuckDBPyConnection, expr: str
) -> None:
    """Results that fit an i128 but not 38 digits were returned (and broke the legacy
    path with a pyarrow exception); DuckDB reports an overflow. ROUND(m, -1) carries
    99...9 (38 nines) into a 39th digit."""
    batch = pa.record_batch(
        {
            "u": pa.array([5, 2**64 - 1], pa.uint64()),
            "i": pa.array([3, -(2**63)], pa.int64()),
            "d": pa.array([Decimal(1), Decimal(6 * 10**37)], pa.decimal128(38, 0)),
            "m": pa.array([Decimal(1), Decimal("9" * 38)], pa.decimal128(38, 0)),
        }
    )
    with pytest.raises(duckdb.Error, match="Overflow"):
        duckdb_rows(con, "t", batch, expr)
    for path in ("direct", "legacy"):
        with pytest.raises(DataError, match=r"(?i)overflow|too large"):
            vs.compile(f"SELECT {expr} AS c FROM t", path=path).process(batch)
