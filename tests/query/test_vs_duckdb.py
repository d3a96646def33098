"""Acceptance test of the foundation issue: a filter + projection returns exactly the rows
and values DuckDB returns for the same SQL on the same Arrow data, in input order, on both
processing paths."""

from __future__ import annotations

import random
from decimal import Decimal

import duckdb
import pyarrow as pa
import pytest
from vs_compare import assert_same_batches, assert_same_rows, duckdb_rows, rows_of

import velostream as vs

ACCEPTANCE_SQL = (
    "SELECT symbol, price * qty AS notional FROM trades WHERE price > 100 AND status = 'open'"
)
SELECT_LIST = "symbol, price * qty AS notional"
WHERE = "price > 100 AND status = 'open'"


def make_trades(rows: int, seed: int, price_type: pa.DataType) -> pa.RecordBatch:
    rng = random.Random(seed)
    symbols = ["AAPL", "MSFT", "GOOG", "", "ÆØÅ", None]
    statuses = ["open", "closed", "OPEN", "open ", "", None]
    price: list[object] = []
    for _ in range(rows):
        roll = rng.random()
        if roll < 0.08:
            price.append(None)
        elif roll < 0.15:
            price.append(100.0)  # the boundary: not > 100
        elif roll < 0.2:
            price.append(100.01)
        else:
            price.append(round(rng.uniform(0, 250), 2))
    if pa.types.is_decimal(price_type):
        price = [None if p is None else Decimal(f"{p:.2f}") for p in price]
    qty = [None if rng.random() < 0.08 else rng.randint(-1000, 100_000) for _ in range(rows)]
    return pa.record_batch(
        {
            "symbol": pa.array([rng.choice(symbols) for _ in range(rows)], pa.string()),
            "price": pa.array(price, price_type),
            "qty": pa.array(qty, pa.int64()),
            "status": pa.array([rng.choice(statuses) for _ in range(rows)], pa.string()),
            "venue": pa.array([rng.randint(0, 9) for _ in range(rows)], pa.int32()),
        }
    )


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    yield connection
    connection.close()


@pytest.mark.parametrize("price_type", [pa.float64(), pa.decimal128(10, 2)], ids=str)
def test_acceptance_select_where_matches_duckdb(
    con: duckdb.DuckDBPyConnection, price_type: pa.DataType
) -> None:
    batch = make_trades(5000, seed=7, price_type=price_type)
    expected = duckdb_rows(con, "trades", batch, SELECT_LIST, WHERE)
    # the data exercises both outcomes of every condition, and NULLs in the output
    assert 300 < len(expected) < 2000
    assert any(row[0] is None for row in expected)
    assert any(row[1] is None for row in expected)

    query = vs.compile(ACCEPTANCE_SQL)
    out = query.process(batch)
    assert out.schema.names == ["symbol", "notional"]
    assert query.output_schema == out.schema
    assert_same_rows(rows_of(out), expected, ACCEPTANCE_SQL)
    if pa.types.is_floating(price_type):
        assert out.schema.field("notional").type == pa.float64()
    else:
        assert pa.types.is_decimal(out.schema.field("notional").type)
        assert all(isinstance(v, Decimal) for v in out.column(1).to_pylist() if v is not None)

    legacy = vs.compile(ACCEPTANCE_SQL, path="legacy").process(batch)
    assert_same_batches(out, legacy, "direct vs legacy")
    assert out.equals(legacy)


def test_acceptance_exact_rows_small() -> None:
    """A hand-checked case: NULL in any operand of the predicate drops the row."""
    batch = pa.record_batch(
        {
            "symbol": ["A", "B", None, "D", "E", "F", "G"],
            "price": [101.5, 100.0, 200.0, None, 150.0, 300.0, 120.0],
            "qty": [2, 5, 3, 1, None, 4, 10],
            "status": ["open", "open", "open", "open", "open", None, "closed"],
        }
    )
    for path in ("direct", "legacy"):
        out = vs.compile(ACCEPTANCE_SQL, path=path).process(batch)
        assert out.to_pydict() == {
            "symbol": ["A", None, "E"],
            "notional": [203.0, 600.0, None],
        }


@pytest.mark.parametrize("path", ["direct", "legacy"])
def test_acceptance_over_many_batches_keeps_input_order(
    con: duckdb.DuckDBPyConnection, path: str
) -> None:
    batch = make_trades(3000, seed=11, price_type=pa.float64())
    expected = duckdb_rows(con, "trades", batch, SELECT_LIST, WHERE)
    query = vs.compile(ACCEPTANCE_SQL, path=path)
    outputs = [query.process(batch.slice(start, 700)) for start in range(0, 3000, 700)]
    outputs.append(query.flush())
    for output in outputs:
        assert output.schema == query.output_schema
    actual = [row for output in outputs for row in rows_of(output)]
    assert_same_rows(actual, expected, ACCEPTANCE_SQL)
    metrics = query.metrics()
    assert metrics["records_in"] == 3000
    assert metrics["records_out"] == len(expected)


def test_acceptance_with_table_input_and_extra_columns(con: duckdb.DuckDBPyConnection) -> None:
    batch = make_trades(2000, seed=3, price_type=pa.float64())
    table = pa.Table.from_batches([batch.slice(0, 1), batch.slice(1, 999), batch.slice(1000)])
    assert table.column(0).num_chunks == 3
    sql = (
        "SELECT venue, symbol, price * qty AS notional, qty - 1 AS q1, price / qty AS unit "
        "FROM trades WHERE price > 100 AND status = 'open'"
    )
    expected = duckdb_rows(
        con,
        "trades",
        batch,
        "venue, symbol, price * qty AS notional, qty - 1 AS q1, price / qty AS unit",
        WHERE,
    )
    direct = vs.compile(sql).process(table)
    assert_same_rows(rows_of(direct), expected, sql)
    assert_same_batches(direct, vs.compile(sql, path="legacy").process(table))
