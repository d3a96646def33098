"""Helpers shared by the query tests: run SQL in velostream and DuckDB, compare rows.

DuckDB is the reference engine. It reads the same Arrow data with an extra row-id column
so that its result can be put in input order (``ORDER BY __rid``), which velostream
guarantees for stateless queries (SPEC section 12).
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa

import velostream as vs

ROW_ID = "__rid"


def with_row_id(data: pa.RecordBatch | pa.Table) -> pa.Table:
    table = pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data
    return table.append_column(ROW_ID, pa.array(range(table.num_rows), pa.int64()))


def duckdb_rows(
    con: duckdb.DuckDBPyConnection,
    name: str,
    data: pa.RecordBatch | pa.Table,
    select_list: str,
    where: str | None = None,
) -> list[tuple[Any, ...]]:
    """``SELECT select_list FROM name [WHERE where]`` in DuckDB, rows in input order."""
    con.register(name, with_row_id(data))
    try:
        sql = f"SELECT {select_list} FROM {name}"
        if where is not None:
            sql += f" WHERE {where}"
        sql += f" ORDER BY {ROW_ID}"
        return con.execute(sql).fetchall()
    finally:
        con.unregister(name)


def rows_of(batch: pa.RecordBatch) -> list[tuple[Any, ...]]:
    columns = [column.to_pylist() for column in batch.columns]
    return list(zip(*columns, strict=True)) if columns else []


def velostream_rows(sql: str, data: Any, path: str = "direct") -> pa.RecordBatch:
    query = vs.compile(sql, path=path)
    out = query.process(data)
    assert query.output_schema == out.schema
    rest = query.flush()
    assert rest.num_rows == 0
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def same_value(a: Any, b: Any) -> bool:
    """Equality of two SQL values: floats approximately, NaN/inf to themselves."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, float) or isinstance(b, float):
        if not (_is_number(a) and _is_number(b)):
            return False
        fa, fb = float(a), float(b)
        if math.isnan(fa) or math.isnan(fb):
            return math.isnan(fa) and math.isnan(fb)
        if math.isinf(fa) or math.isinf(fb):
            return fa == fb
        return math.isclose(fa, fb, rel_tol=1e-9, abs_tol=1e-9)
    if _is_number(a) and _is_number(b):
        return a == b
    return type(a) is type(b) and a == b


def assert_same_rows(
    actual: list[tuple[Any, ...]], expected: list[tuple[Any, ...]], context: str = ""
) -> None:
    assert len(actual) == len(expected), (
        f"{context}\nrow count: velostream {len(actual)}, duckdb {len(expected)}\n"
        f"velostream: {actual[:10]}\nduckdb:     {expected[:10]}"
    )
    for index, (got, want) in enumerate(zip(actual, expected, strict=True)):
        assert len(got) == len(want), f"{context}\nrow {index}: {got!r} vs {want!r}"
        for column, (g, w) in enumerate(zip(got, want, strict=True)):
            assert same_value(g, w), (
                f"{context}\nrow {index}, column {column}: velostream {g!r}, duckdb {w!r}\n"
                f"velostream row: {got!r}\nduckdb row:     {want!r}"
            )


def assert_same_batches(a: pa.RecordBatch, b: pa.RecordBatch, context: str = "") -> None:
    """Two velostream outputs (direct vs legacy) are identical (NaN equal to NaN)."""
    assert a.schema == b.schema, f"{context}\n{a.schema}\nvs\n{b.schema}"
    assert_same_rows(rows_of(a), rows_of(b), context)
    for g, w in zip(rows_of(a), rows_of(b), strict=True):
        for x, y in zip(g, w, strict=True):
            if isinstance(x, float) and isinstance(y, float) and not math.isnan(x):
                assert x == y, f"{context}\ndirect {x!r} != legacy {y!r}"
