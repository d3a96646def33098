"""SELECT DISTINCT, state metrics, validation errors, output names and types."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from agg_support import (
    SHAPES,
    WHERES,
    assert_rows,
    duck_query,
    hsettings,
    run_stream,
    table_and_pieces,
    vs_sql,
)
from hypothesis import given
from hypothesis import strategies as st

import velostream as vs

# --------------------------------------------------------------------------- DISTINCT

Row = dict[str, Any]
DISTINCT_CASES: list[tuple[str, Callable[[Row], bool], Callable[[Row], tuple[Any, ...]]]] = [
    ("SELECT DISTINCT k FROM t", lambda r: True, lambda r: (r["k"],)),
    (
        "SELECT DISTINCT k, g FROM t WHERE x > 0",
        lambda r: r["x"] is not None and r["x"] > 0,
        lambda r: (r["k"], r["g"]),
    ),
    (
        "SELECT DISTINCT b, UPPER(k) AS uk, g % 2 AS m FROM t",
        lambda r: True,
        lambda r: (
            r["b"],
            None if r["k"] is None else r["k"].upper(),
            None if r["g"] is None else r["g"] % 2,
        ),
    ),
    (
        "SELECT DISTINCT s, d FROM t WHERE f < 0 OR f IS NULL",
        lambda r: r["f"] is None or r["f"] < 0,
        lambda r: (r["s"], r["d"]),
    ),
    ("SELECT DISTINCT g, b, k FROM t", lambda r: True, lambda r: (r["g"], r["b"], r["k"])),
]


@pytest.mark.parametrize(
    ("sql", "keep", "project"), DISTINCT_CASES, ids=[c[0] for c in DISTINCT_CASES]
)
@hsettings(max_examples=30)
@given(data=table_and_pieces())
def test_select_distinct_first_occurrence(sql, keep, project, data) -> None:
    batch, pieces = data
    seen: set[tuple[Any, ...]] = set()
    expected = []
    for row in batch.to_pylist():
        if not keep(row):
            continue
        value = project(row)
        if value not in seen:  # NULL equals NULL for DISTINCT
            seen.add(value)
            expected.append(value)
    result = run_stream(sql, batch, pieces)
    assert_rows(result.rows(), expected, sql)
    assert result.flushed.num_rows == 0
    assert result.query.metrics()["records_out"] == len(expected)


def test_distinct_across_batches() -> None:
    q = vs.compile("SELECT DISTINCT k, g FROM t")
    first = q.process(pa.record_batch({"k": ["a", "a", None, None], "g": [1, 1, None, None]}))
    second = q.process(pa.record_batch({"k": ["a", None, "a", "b"], "g": [1, None, 2, None]}))
    assert first.to_pylist() == [{"k": "a", "g": 1}, {"k": None, "g": None}]
    assert second.to_pylist() == [{"k": "a", "g": 2}, {"k": "b", "g": None}]


# --------------------------------------------------------------------------- metrics


@pytest.mark.parametrize("shape", [s for s in SHAPES if s != "global"])
@hsettings(max_examples=25)
@given(data=table_and_pieces(), where=st.sampled_from(WHERES))
def test_state_groups_counts_distinct_keys_seen(shape: str, data, where) -> None:
    batch, pieces = data
    sh = SHAPES[shape]
    sql = vs_sql(sh, [], where, extra_select=("COUNT(*) AS c",))
    result = run_stream(sql, batch, pieces)
    table = pa.Table.from_batches([batch])
    filtered = f"SELECT * FROM t WHERE {where}" if where else "SELECT * FROM t"
    keys = duck_query(
        table, f"SELECT COUNT(*) FROM (SELECT DISTINCT {', '.join(sh.group_by)} FROM ({filtered}))"
    )[0][0]
    passing = duck_query(table, f"SELECT COUNT(*) FROM ({filtered})")[0][0]
    metrics = result.query.metrics()
    assert metrics["state_groups"] == keys, (sql, metrics)
    assert metrics["records_in"] == batch.num_rows, (sql, metrics)
    assert metrics["records_out"] == passing == result.table.num_rows, (sql, metrics)
    assert isinstance(metrics["state_bytes"], int)
    assert metrics["state_bytes"] >= 0


def test_state_groups_global_and_growth() -> None:
    q = vs.compile("SELECT COUNT(*) AS c, COUNT(DISTINCT x) AS dx FROM t")
    q.process(pa.record_batch({"x": [1, 2, 3]}))
    assert q.metrics()["state_groups"] == 1

    q = vs.compile("SELECT k, COUNT(DISTINCT x) AS dx FROM t GROUP BY k")
    q.process(pa.record_batch({"k": ["a", "b", None, "a"], "x": [1, 2, 3, 4]}))
    assert q.metrics()["state_groups"] == 3
    small = q.metrics()["state_bytes"]
    assert small > 0
    n = 5000
    q.process(pa.record_batch({"k": [f"key{i}" for i in range(n)], "x": list(range(n))}))
    assert q.metrics()["state_groups"] == 3 + n
    assert q.metrics()["state_bytes"] > small + n  # at least a byte per new group
    q.process(pa.record_batch({"k": ["a"] * 10, "x": [1] * 10}))  # known key: no new group
    assert q.metrics()["state_groups"] == 3 + n
    assert q.metrics()["records_in"] == 4 + n + 10
    assert q.metrics()["records_out"] == 4 + n + 10


def test_records_out_counts_having_output() -> None:
    q = vs.compile("SELECT k, COUNT(*) AS c FROM t GROUP BY k HAVING COUNT(*) > 1")
    out = q.process(pa.record_batch({"k": ["a", "b", "a", "a", "c", "b"]}))
    assert out.to_pylist() == [
        {"k": "a", "c": 2},
        {"k": "a", "c": 3},
        {"k": "b", "c": 2},
    ]
    m = q.metrics()
    assert (m["records_in"], m["records_out"], m["state_groups"]) == (6, 3, 3)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("path", ["direct", "legacy"])
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT k, COUNT(*) FROM t GROUP BY k EMIT FINAL",
        "SELECT COUNT(*) AS c FROM t EMIT FINAL",
        "SELECT k, SUM(x) AS s FROM t WHERE x > 0 GROUP BY k HAVING SUM(x) > 1 EMIT FINAL",
        "CREATE STREAM out AS SELECT k, COUNT(*) AS c FROM t GROUP BY k EMIT FINAL",
    ],
)
def test_emit_final_without_window_is_rejected(sql: str, path: str) -> None:
    with pytest.raises(vs.SqlValidationError) as info:
        vs.compile(sql, path=path)
    assert (info.value.line, info.value.column) == (1, sql.index("EMIT FINAL") + 1), info.value


@pytest.mark.parametrize(
    ("sql", "column"),
    [
        ("SELECT k, x, COUNT(*) FROM t GROUP BY k", 11),  # x not grouped
        ("SELECT x, COUNT(*) FROM t", 8),  # global aggregate
        ("SELECT k, g, SUM(x) FROM t GROUP BY k", 11),
        ("SELECT k, x + 1 AS y, SUM(x) FROM t GROUP BY k", 11),  # inside an expression
        ("SELECT k, COUNT(*) FROM t GROUP BY UPPER(k)", 8),  # k itself is not a key
        ("SELECT k, COUNT(*) FROM t GROUP BY k HAVING x > 1", 45),  # in HAVING
        ("SELECT k, COUNT(*) AS c FROM t GROUP BY k HAVING c > 1 AND s = 'a'", 60),
        ("SELECT DISTINCT k, SUM(x) AS s, f FROM t GROUP BY k", 33),
    ],
)
def test_non_grouped_column_is_rejected(sql: str, column: int) -> None:
    with pytest.raises(vs.SqlValidationError) as info:
        vs.compile(sql)
    assert (info.value.line, info.value.column) == (1, column), (str(info.value), sql)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT *, COUNT(*) FROM t GROUP BY k",
        "SELECT k FROM t WHERE COUNT(*) > 1 GROUP BY k",
        "SELECT k, SUM(COUNT(*)) FROM t GROUP BY k",
        "SELECT k FROM t HAVING k > 1",
    ],
)
def test_aggregate_misuse_is_rejected(sql: str) -> None:
    with pytest.raises(vs.SqlValidationError):
        vs.compile(sql)


def test_grouped_expressions_are_accepted() -> None:
    q = vs.compile("SELECT UPPER(k) AS u, COUNT(*) AS c FROM t GROUP BY k")
    out = q.process(pa.record_batch({"k": ["a", "b", "a", None]}))
    assert rows(out) == [("A", 1), ("B", 1), ("A", 2), (None, 1)]
    q = vs.compile("SELECT g % 2 AS m, SUM(x) AS s FROM t GROUP BY g % 2 EMIT CHANGES")
    out = q.process(pa.record_batch({"g": [1, 2, 3, None], "x": [10, 20, 30, 40]}))
    assert rows(out) == [(1, 10), (0, 20), (1, 40), (None, 40)]


def rows(batch: pa.RecordBatch) -> list[tuple[Any, ...]]:
    return [tuple(r.values()) for r in batch.to_pylist()]


# --------------------------------------------------------------------------- names and types


def test_output_names_and_types() -> None:
    batch = pa.record_batch(
        {
            "k": pa.array(["a", "a"], pa.string()),
            "i": pa.array([1, 2], pa.int32()),
            "x": pa.array([1, 2], pa.int64()),
            "f": pa.array([1.5, 2.0], pa.float64()),
            "h": pa.array([1.5, 2.0], pa.float32()),
            "d": pa.array([Decimal("1.25"), Decimal("2.00")], pa.decimal128(12, 2)),
        }
    )
    sql = (
        "SELECT k, COUNT(*), COUNT(x), COUNT(DISTINCT x), SUM(i), SUM(x), SUM(f), SUM(h), "
        "SUM(d), AVG(i), AVG(f), AVG(d), STDDEV(x), VARIANCE(f), STDDEV_POP(i), VAR_POP(d) "
        "FROM t GROUP BY k"
    )
    result = run_stream(sql, batch, [(0, 2)])
    schema = result.query.output_schema
    expected = [
        ("k", pa.string()),
        ("COUNT(*)", pa.int64()),
        ("COUNT(x)", pa.int64()),
        ("COUNT(DISTINCT x)", pa.int64()),
        ("SUM(i)", pa.int64()),
        ("SUM(x)", pa.int64()),
        ("SUM(f)", pa.float64()),
        ("SUM(h)", pa.float64()),
        ("SUM(d)", pa.decimal128(38, 2)),
        ("AVG(i)", pa.float64()),
        ("AVG(f)", pa.float64()),
        ("AVG(d)", pa.decimal128(38, 6)),
        ("STDDEV(x)", pa.float64()),
        ("VARIANCE(f)", pa.float64()),
        ("STDDEV_POP(i)", pa.float64()),
        ("VAR_POP(d)", pa.float64()),
    ]
    assert [(f.name, f.type) for f in schema] == expected
    last = result.rows()[-1]
    assert last[:12] == (
        "a",
        2,
        2,
        2,
        3,
        3,
        3.5,
        3.5,
        Decimal("3.25"),
        1.5,
        1.75,
        Decimal("1.625000"),
    )
    assert last[12] == pytest.approx(0.5**0.5, rel=1e-12)
    assert last[13] == pytest.approx(0.125, rel=1e-12)
    assert last[14] == pytest.approx(0.5, rel=1e-12)
    assert last[15] == pytest.approx(0.140625, rel=1e-12)
