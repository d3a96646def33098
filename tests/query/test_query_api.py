"""The query API (SPEC section 2): compile/process/flush/output_schema/metrics, its error
surface, and regressions for differences with DuckDB found by the property tests."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from vs_compare import assert_same_batches, assert_same_rows, duckdb_rows, rows_of

import velostream as vs

PATHS = ["direct", "legacy"]


def run(sql: str, data: Any, path: str = "direct") -> pa.RecordBatch:
    return vs.compile(sql, path=path).process(data)


def error_of(kind: type[Exception], sql: str, data: Any = None, path: str = "direct") -> Exception:
    """The error ``kind`` raised by compiling ``sql`` or by its first ``process``.

    Column names are resolved against the input schema, so some errors can only appear
    when the first batch arrives (docs/plan-format.md); both moments are accepted.
    """
    with pytest.raises(kind) as info:
        query = vs.compile(sql, path=path)
        query.process(data)
    return info.value


TRADES = pa.record_batch(
    {
        "symbol": ["A", "B", None, "D"],
        "price": [101.5, 99.0, 150.0, 200.0],
        "qty": pa.array([2, 3, None, 4], pa.int64()),
        "status": ["open", "open", "open", "closed"],
    }
)


# ---------------------------------------------------------------- error surface


@pytest.mark.parametrize("path", PATHS)
def test_unknown_column_in_select_points_at_the_reference(path: str) -> None:
    sql = "SELECT symbol,\n       price * qtty AS notional\nFROM trades\nWHERE price > 100"
    error = error_of(vs.SqlValidationError, sql, TRADES, path)
    assert isinstance(error, vs.VelostreamError)
    assert (error.line, error.column) == (2, 16)
    assert "qtty" in str(error)
    assert "line 2, column 16" in str(error)


@pytest.mark.parametrize("path", PATHS)
def test_unknown_column_in_where_points_at_the_reference(path: str) -> None:
    sql = "SELECT symbol\nFROM trades\nWHERE price > 100\n  AND  stat = 'open'"
    error = error_of(vs.SqlValidationError, sql, TRADES, path)
    assert (error.line, error.column) == (4, 8)
    assert "stat" in str(error)


def test_unknown_column_lists_the_available_columns() -> None:
    error = error_of(vs.SqlValidationError, "SELECT nope FROM trades", TRADES)
    assert (error.line, error.column) == (1, 8)
    for name in TRADES.schema.names:
        assert name in str(error)


def test_unknown_column_inside_a_function_and_case() -> None:
    sql = "SELECT UPPER(symbol),\n  CASE WHEN qty > 1 THEN volume ELSE 0 END AS v\nFROM trades"
    error = error_of(vs.SqlValidationError, sql, TRADES)
    assert (error.line, error.column) == (2, 26)
    assert "volume" in str(error)


@pytest.mark.parametrize("path", PATHS)
def test_string_plus_int_is_a_validation_error(path: str) -> None:
    error = error_of(vs.SqlValidationError, "SELECT 'a' + 1 AS x FROM trades", TRADES, path)
    assert (error.line, error.column) == (1, 8)
    assert "+" in str(error)


def test_string_column_arithmetic_is_a_validation_error_on_its_line() -> None:
    sql = "SELECT price,\n  qty * 2 AS q2,\n  symbol - 1 AS bad\nFROM trades"
    error = error_of(vs.SqlValidationError, sql, TRADES)
    assert (error.line, error.column) == (3, 3)


def test_non_boolean_where_is_a_validation_error() -> None:
    error_of(vs.SqlValidationError, "SELECT symbol FROM trades WHERE qty + 1", TRADES)


@pytest.mark.parametrize("path", PATHS)
def test_failed_cast_of_a_bad_string_is_a_data_error(path: str) -> None:
    batch = pa.record_batch({"a": [1, 2, 3], "s": ["12", "x1", "7"]})
    error = error_of(vs.DataError, "SELECT a,\n  CAST(s AS BIGINT) AS c FROM t", batch, path)
    assert isinstance(error, vs.VelostreamError)
    assert not isinstance(error, (vs.SqlValidationError, vs.SqlSyntaxError))
    message = str(error)
    assert "'x1'" in message
    assert "CAST" in message.upper()
    assert "int64" in message.lower() or "bigint" in message.lower()


def test_failed_cast_data_error_carries_the_value() -> None:
    """DataError documents ``value``: "the offending value as a string, if known"."""
    batch = pa.record_batch({"s": ["12", "x1"]})
    error = error_of(vs.DataError, "SELECT CAST(s AS DOUBLE) AS c FROM t", batch)
    assert error.value == "x1"


def test_successful_cast_of_numeric_strings() -> None:
    batch = pa.record_batch({"s": ["12", "-7", None]})
    for path in PATHS:
        out = run("SELECT CAST(s AS BIGINT) AS c, CAST(s AS DOUBLE) AS d FROM t", batch, path)
        assert out.to_pydict() == {"c": [12, -7, None], "d": [12.0, -7.0, None]}


@pytest.mark.parametrize("path", PATHS)
def test_integer_modulo_by_zero_is_a_data_error_like_duckdb(path: str) -> None:
    batch = pa.record_batch({"a": pa.array([7, 8], pa.int64()), "b": pa.array([2, 0], pa.int64())})
    with pytest.raises(duckdb.Error):
        duckdb.connect().execute("SELECT a % b FROM batch").fetchall()
    error = error_of(vs.DataError, "SELECT a % b AS m FROM t", batch, path)
    assert "zero" in str(error)


def test_bad_path_is_a_config_error() -> None:
    with pytest.raises(vs.ConfigError):
        vs.compile("SELECT a FROM t", path="fast")  # type: ignore[arg-type]


def test_syntax_error_is_not_a_validation_error() -> None:
    with pytest.raises(vs.SqlSyntaxError) as info:
        vs.compile("SELECT a,\nFROM t WHERE")
    assert info.value.line is not None


# ---------------------------------------------------------------- inputs and outputs


@pytest.mark.parametrize("path", PATHS)
def test_process_accepts_batch_table_and_list_of_dicts(path: str) -> None:
    sql = "SELECT symbol, price * qty AS notional FROM trades WHERE price > 100"
    expected = {"symbol": ["A", None, "D"], "notional": [203.0, None, 800.0]}
    assert run(sql, TRADES, path).to_pydict() == expected

    table = pa.Table.from_batches([TRADES.slice(0, 1), TRADES.slice(1, 2), TRADES.slice(3)])
    assert table.column("price").num_chunks == 3
    out = run(sql, table, path)
    assert isinstance(out, pa.RecordBatch)
    assert out.to_pydict() == expected

    out = run(sql, TRADES.to_pylist(), path)
    assert isinstance(out, pa.RecordBatch)
    assert out.to_pydict() == expected


def test_process_returns_zero_rows_with_the_output_schema() -> None:
    query = vs.compile("SELECT symbol, qty + 1 AS q FROM trades WHERE price > 1000")
    out = query.process(TRADES)
    assert out.num_rows == 0
    assert out.schema == query.output_schema
    assert out.schema.names == ["symbol", "q"]
    again = query.process([])
    assert again.num_rows == 0
    assert again.schema == query.output_schema


def test_process_empty_table() -> None:
    """An empty Table still has a schema: the result has the output columns."""
    empty = pa.Table.from_batches([], schema=TRADES.schema)
    query = vs.compile("SELECT symbol, qty + 1 AS q FROM trades")
    out = query.process(empty)
    assert out.num_rows == 0
    assert out.schema.names == ["symbol", "q"]
    assert query.output_schema == out.schema


def test_process_empty_batch_binds_the_schema() -> None:
    query = vs.compile("SELECT symbol, qty + 1 AS q FROM trades")
    out = query.process(TRADES.slice(0, 0))
    assert out.num_rows == 0
    assert out.schema == pa.schema([("symbol", pa.string()), ("q", pa.int64())])
    assert query.output_schema == out.schema


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM trades",
        "SELECT symbol, price * qty AS notional FROM trades WHERE price > 100",
        "SELECT UPPER(symbol) AS u, qty / 2 AS half, qty % 2 AS odd, price > 100 AS hi FROM t",
        "SELECT CAST(qty AS VARCHAR) AS s, COALESCE(symbol, 'none') AS c FROM t",
        "SELECT price * qty, UPPER(symbol), qty FROM trades",
    ],
)
def test_output_schema_is_the_schema_of_the_returned_batch(path: str, sql: str) -> None:
    query = vs.compile(sql, path=path)
    out = query.process(TRADES)
    assert query.output_schema == out.schema
    assert query.flush().schema == out.schema


def test_output_types() -> None:
    out = run(
        "SELECT qty / 2 AS d, qty * 2 AS m, price * qty AS n, CAST(qty AS DOUBLE) AS c, "
        "qty > 1 AS b, symbol || 'x' AS s FROM trades",
        TRADES,
    )
    assert out.schema == pa.schema(
        [
            ("d", pa.float64()),
            ("m", pa.int64()),
            ("n", pa.float64()),
            ("c", pa.float64()),
            ("b", pa.bool_()),
            ("s", pa.string()),
        ]
    )


def test_unaliased_columns_are_named_by_their_sql_text() -> None:
    out = run("SELECT price * qty, UPPER(symbol), qty FROM trades", TRADES)
    assert out.schema.names == ["price * qty", "UPPER(symbol)", "qty"]


@pytest.mark.parametrize("path", PATHS)
def test_metrics_count_records_in_and_out(path: str) -> None:
    query = vs.compile("SELECT symbol FROM trades WHERE price > 100", path=path)
    before = query.metrics()
    assert before["records_in"] == 0
    assert before["records_out"] == 0
    query.process(TRADES)
    assert (query.metrics()["records_in"], query.metrics()["records_out"]) == (4, 3)
    query.process(pa.Table.from_batches([TRADES, TRADES.slice(1, 1)]))
    assert (query.metrics()["records_in"], query.metrics()["records_out"]) == (9, 6)
    query.process(TRADES.to_pylist()[1:2])
    query.flush()
    metrics = query.metrics()
    assert (metrics["records_in"], metrics["records_out"]) == (10, 6)
    for key in ("late_dropped", "state_groups"):
        assert key in metrics


def test_flush_of_a_stateless_query_is_empty() -> None:
    query = vs.compile("SELECT symbol FROM trades")
    query.process(TRADES)
    out = query.flush()
    assert out.num_rows == 0
    assert out.schema == query.output_schema


# ---------------------------------------------------------------- SELECT *

MANY_TYPES = pa.record_batch(
    {
        "i8": pa.array([1, None, -3], pa.int8()),
        "i16": pa.array([300, -2, None], pa.int16()),
        "i32": pa.array([None, 70000, -1], pa.int32()),
        "i64": pa.array([2**40, None, -(2**62)], pa.int64()),
        "u8": pa.array([255, 0, None], pa.uint8()),
        "u64": pa.array([2**63 + 5, None, 1], pa.uint64()),
        "f32": pa.array([1.5, None, float("inf")], pa.float32()),
        "f64": pa.array([float("nan"), -0.0, None], pa.float64()),
        "flag": pa.array([True, None, False], pa.bool_()),
        "name": pa.array(["ü", "", None], pa.string()),
        "big": pa.array(["x", None, "yy"], pa.large_string()),
        "raw": pa.array([b"\x00\x01", None, b""], pa.binary()),
        "amount": pa.array([Decimal("1.25"), None, Decimal("-99999999.99")], pa.decimal128(10, 2)),
        "day": pa.array([dt.date(2024, 2, 29), None, dt.date(1970, 1, 1)], pa.date32()),
        "ts": pa.array([0, 1_700_000_000_123, None], pa.timestamp("ms")),
        "tsz": pa.array([1, None, 2], pa.timestamp("us", tz="UTC")),
    }
)


def identical(a: pa.RecordBatch, b: pa.RecordBatch) -> bool:
    """Same schema and values; NaN equal to NaN, -0.0 different from 0.0."""
    return a.schema == b.schema and all(
        repr(x.to_pylist()) == repr(y.to_pylist())
        for x, y in zip(a.columns, b.columns, strict=True)
    )


@pytest.mark.parametrize("path", PATHS)
def test_select_star_passes_every_column_through_unchanged(path: str) -> None:
    query = vs.compile("SELECT * FROM s", path=path)
    out = query.process(MANY_TYPES)
    assert out.schema == MANY_TYPES.schema
    assert query.output_schema == MANY_TYPES.schema
    assert identical(out, MANY_TYPES)
    f64 = out.column("f64").to_pylist()
    assert math.isnan(f64[0])
    assert math.copysign(1.0, f64[1]) == -1.0


@pytest.mark.parametrize("path", PATHS)
def test_select_star_with_where_keeps_the_matching_rows_unchanged(path: str) -> None:
    out = run("SELECT * FROM s WHERE flag IS NOT NULL", MANY_TYPES, path)
    expected = MANY_TYPES.filter(pa.array([True, False, True]))
    assert identical(out, expected)


def test_select_star_over_a_table_and_list_of_dicts() -> None:
    table = pa.Table.from_batches([MANY_TYPES.slice(0, 2), MANY_TYPES.slice(2)])
    assert identical(run("SELECT * FROM s", table), MANY_TYPES)
    rows = [{"a": 1, "b": "x"}, {"a": None, "b": "y"}]
    assert run("SELECT * FROM s", rows).to_pylist() == rows


# ---------------------------------------------------------------- keyword-named columns

EVENTS = pa.record_batch(
    {
        "status": ["open", "closed", "open", None],
        "timestamp": pa.array([1000, 2000, 3000, 4000], pa.int64()),
        "properties": ['{"a":1}', "{}", "x", "y"],
        "metrics": [1.5, 2.5, 3.5, 4.5],
    }
)


@pytest.mark.parametrize("path", PATHS)
def test_keyword_named_columns_work_unquoted(path: str) -> None:
    sql = (
        "SELECT status, timestamp, properties, metrics, metrics * 2 AS m2, "
        "timestamp + 1 AS t1, UPPER(status) AS s\n"
        "FROM events\n"
        "WHERE status = 'open' AND timestamp > 1000 AND metrics > 0 AND properties IS NOT NULL"
    )
    out = run(sql, EVENTS, path)
    assert out.to_pydict() == {
        "status": ["open"],
        "timestamp": [3000],
        "properties": ["x"],
        "metrics": [3.5],
        "m2": [7.0],
        "t1": [3001],
        "s": ["OPEN"],
    }


@pytest.mark.parametrize("path", PATHS)
def test_keyword_named_columns_qualified_and_in_expressions(path: str) -> None:
    sql = (
        "SELECT e.status AS st, CASE WHEN metrics > 2 THEN timestamp ELSE 0 END AS t "
        "FROM events e WHERE e.timestamp BETWEEN 2000 AND 4000 AND status IS NOT NULL"
    )
    out = run(sql, EVENTS, path)
    assert out.to_pydict() == {"st": ["closed", "open"], "t": [2000, 3000]}


# ------------------------------------------- regressions found by the property tests


def duck(sql_select: str, batch: pa.RecordBatch, where: str | None = None) -> list[tuple]:
    return duckdb_rows(duckdb.connect(), "t", batch, sql_select, where)


SIGNED_ZEROS = pa.record_batch(
    {
        "f": pa.array([-0.0, 0.0, 1.0], pa.float64()),
        "g": pa.array([0.0, -0.0, 1.0], pa.float64()),
        "i": pa.array([0, 0, 1], pa.int64()),
    }
)


ZERO_EXPRS = [
    "f = 0",
    "f = g",
    "f = i",
    "f <> g",
    "f < g",
    "f >= g",
    "f IN (0.0e0, 5.0e0)",
    "f BETWEEN 0.0e0 AND 0.0e0",
    "CASE f WHEN 0.0e0 THEN 'zero' ELSE 'other' END",
]


def compare_exprs(exprs: list[str], batch: pa.RecordBatch, path: str) -> None:
    """Each expression alone (so that one error does not hide the others) vs DuckDB."""
    failures = []
    for expr in exprs:
        sql_select = f"{expr} AS x"
        expected = duck(sql_select, batch)
        try:
            actual = rows_of(run(f"SELECT {sql_select} FROM t", batch, path))
            assert_same_rows(actual, expected, expr)
        except (AssertionError, vs.VelostreamError) as error:
            failures.append(f"{expr}: {type(error).__name__}: {error}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("path", PATHS)
def test_negative_zero_equals_zero(path: str) -> None:
    """IEEE 754 and SQL: -0.0 = 0.0 (velostream compared with a total order)."""
    compare_exprs(ZERO_EXPRS, SIGNED_ZEROS, path)


@pytest.mark.parametrize("path", PATHS)
def test_negative_zero_in_where(path: str) -> None:
    out = run("SELECT i FROM t WHERE f = 0", SIGNED_ZEROS, path)
    assert out.column(0).to_pylist() == [0, 0]


NANS = pa.record_batch(
    {
        "f": pa.array([0.0, 1.0], pa.float64()),
        "n": pa.array([float("nan"), float("nan")], pa.float64()),
    }
)


NAN_EXPRS = [
    "f >= f / f",  # 0/0 is NaN: NaN sorts above every number in DuckDB
    "f < f / f",
    "f / f = n",  # a computed NaN equals a stored NaN
    "f % f = n",
    "(f / f) BETWEEN n AND n",
    "n > f",
    "n = n",
]


@pytest.mark.parametrize("path", PATHS)
def test_computed_nan_compares_like_any_nan(path: str) -> None:
    compare_exprs(NAN_EXPRS, NANS, path)


DECIMALS = pa.record_batch(
    {
        "d": pa.array(
            [Decimal("1.50"), Decimal("-1.55"), Decimal("10.00"), None], pa.decimal128(10, 2)
        ),
        "e": pa.array(
            [Decimal("0.70"), Decimal("2.00"), Decimal("-3.00"), Decimal("1.00")],
            pa.decimal128(10, 2),
        ),
        "i": pa.array([7, -7, 3, None], pa.int64()),
    }
)


@pytest.mark.parametrize("path", PATHS)
def test_decimal_modulo_matches_duckdb(path: str) -> None:
    compare_exprs(["d % 0.7", "d % e", "i % 2.5", "d % 2", "-d % 3", "e % d"], DECIMALS, path)


@pytest.mark.parametrize("path", PATHS)
def test_decimal_division(path: str) -> None:
    """Decimal division may return a DECIMAL (Flink) where DuckDB returns a DOUBLE; it must
    run, and agree with the exact quotient to the precision of its scale (at least 6)."""
    failures = []
    for expr in ["d / 2", "d / e", "i / e", "d / 0.7", "e / 3", "d / i"]:
        expected = duck(f"{expr} AS x", DECIMALS)
        try:
            out = run(f"SELECT {expr} AS x FROM t", DECIMALS, path)
        except vs.VelostreamError as error:
            failures.append(f"{expr}: {type(error).__name__}: {error}")
            continue
        for (got,), (want,) in zip(rows_of(out), expected, strict=True):
            if want is None or got is None:
                ok = want is None and got is None
            else:
                ok = math.isclose(float(got), want, rel_tol=0, abs_tol=1e-6)
            if not ok:
                failures.append(f"{expr}: velostream {got!r}, duckdb {want!r}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("path", PATHS)
def test_round_with_negative_digits(path: str) -> None:
    batch = pa.record_batch({"i": pa.array([15, -25, 4], pa.int64()), "f": [1234.5, -15.0, 4.4]})
    sql_select = "ROUND(i, -1) AS a, ROUND(f, -2) AS b"
    expected = duck(sql_select, batch)
    assert expected == [(20, 1200.0), (-30, -0.0), (0, 0.0)]
    actual = rows_of(run(f"SELECT {sql_select} FROM t", batch, path))
    assert_same_rows(actual, expected, sql_select)


@pytest.mark.parametrize("path", PATHS)
def test_direct_and_legacy_agree_on_float_specials(path: str) -> None:
    batch = pa.record_batch({"f": [0.0, -0.0, 1.0, -1.0, None], "g": [0.0, 0.0, 0.0, 0.0, 1.0]})
    sql = "SELECT f / g AS q, f % g AS m, -f AS n, ROUND(-f * 0.4e0) AS r FROM t"
    expected = duck("f / g AS q, f % g AS m, -f AS n, ROUND(-f * 0.4e0) AS r", batch)
    direct = run(sql, batch)
    assert_same_rows(rows_of(direct), expected, sql)
    assert_same_batches(direct, run(sql, batch, path))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("expr", ["i + 1", "i * 2", "-j", "ABS(j)", "j - 1", "CAST(i AS INT)"])
def test_integer_overflow_is_a_data_error_not_a_wrap(path: str, expr: str) -> None:
    batch = pa.record_batch(
        {"i": pa.array([1, 2**63 - 1], pa.int64()), "j": pa.array([0, -(2**63)], pa.int64())}
    )
    with pytest.raises(duckdb.OutOfRangeException if "CAST" not in expr else duckdb.Error):
        duck(f"{expr} AS x", batch)
    error = error_of(vs.DataError, f"SELECT {expr} AS x FROM t", batch, path)
    assert "overflow" in str(error).lower() or "cast" in str(error).lower()


@pytest.mark.parametrize("key", ["join.missing.strategy", "trades.join.missing.strategy"])
def test_join_properties_on_a_query_without_join_are_rejected_not_ignored(key: str) -> None:
    value = "skip_record"
    with pytest.raises(vs.ConfigError) as info:
        vs.compile(
            "SELECT symbol FROM trades",
            properties={"trades.type": "file_source", key: value},
        )
    assert info.value.key == key
    assert "has no JOIN" in str(info.value)
