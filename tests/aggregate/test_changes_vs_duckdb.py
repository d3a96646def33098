"""EMIT CHANGES (GROUP BY without a window) against DuckDB window aggregates.

One random table is split at random cut points and fed batch by batch; the concatenation
of every ``process`` output and the ``flush`` output must equal, row for row and in input
order, the running aggregate of each surviving row's group (SPEC 4 and 12).
"""

from __future__ import annotations

import pyarrow as pa
import pytest
from agg_support import (
    AGGREGATES,
    SHAPES,
    WHERES,
    Agg,
    Shape,
    assert_rows,
    duckdb_changes,
    hsettings,
    rows_of,
    run_stream,
    table_and_pieces,
    vs_sql,
)
from hypothesis import given
from hypothesis import strategies as st

import velostream as vs


def _check(sql: str, result, expected) -> None:
    assert result.flushed.num_rows == 0, f"{sql}\nflush() of EMIT CHANGES returned rows"
    assert_rows(result.rows(), expected, sql)


@pytest.mark.parametrize("shape", list(SHAPES), ids=str)
@hsettings(max_examples=20)
@given(data=table_and_pieces(), where=st.sampled_from(WHERES))
def test_every_aggregate_matches_duckdb(shape: str, data, where: str | None) -> None:
    batch, pieces = data
    sql = vs_sql(SHAPES[shape], AGGREGATES, where)
    result = run_stream(sql, batch, pieces)
    expected = duckdb_changes(batch, SHAPES[shape], AGGREGATES, where)
    _check(sql, result, expected)


@hsettings(max_examples=60)
@given(
    data=table_and_pieces(),
    shape=st.sampled_from(list(SHAPES.values())),
    aggs=st.lists(st.sampled_from(AGGREGATES), min_size=1, max_size=5),
    where=st.sampled_from(WHERES),
)
def test_random_aggregate_subsets_match_duckdb(data, shape, aggs: list[Agg], where) -> None:
    """Random subsets in random order, duplicates included (the plan dedups calls)."""
    batch, pieces = data
    sql = vs_sql(shape, aggs, where)
    result = run_stream(sql, batch, pieces)
    _check(sql, result, duckdb_changes(batch, shape, aggs, where))


def test_one_row_per_input_row_in_input_order() -> None:
    """A fixed example, readable on failure."""
    batch = pa.record_batch(
        {"k": ["a", "b", "a", None, "b", None, "a"], "x": [1, 10, None, 5, 20, 7, 3]}
    )
    sql = "SELECT k, COUNT(*) AS c, COUNT(x) AS cx, SUM(x) AS s FROM t GROUP BY k"
    result = run_stream(sql, batch, [(0, 2), (2, 2), (2, 7)])
    assert result.rows() == [
        ("a", 1, 1, 1),
        ("b", 1, 1, 10),
        ("a", 2, 1, 1),
        (None, 1, 1, 5),
        ("b", 2, 2, 30),
        (None, 2, 2, 12),
        ("a", 3, 2, 4),
    ]


# --------------------------------------------------------------------------- HAVING

# (id, velostream HAVING, DuckDB outer WHERE, hidden columns, key columns required)
HAVINGS = [
    ("agg_cmp", "COUNT(*) >= 2", "h0 >= 2", {"h0": "COUNT(*) OVER w"}, ()),
    ("agg_not_selected", "MAX(f) > 10", "h0 > 10", {"h0": "MAX(f) OVER w"}, ()),
    (
        "arith",
        "SUM(x) - MIN(x) > 100 OR MAX(x) * 2 < -50",
        "h0 - h1 > 100 OR h2 * 2 < -50",
        {"h0": "SUM(x) OVER w", "h1": "MIN(x) OVER w", "h2": "MAX(x) OVER w"},
        (),
    ),
    (
        "arith_div",
        "SUM(x) / COUNT(*) > 10",
        "h0 / h1 > 10",
        {"h0": "SUM(x) OVER w", "h1": "COUNT(*) OVER w"},
        (),
    ),
    ("alias", "total > 0 AND cnt < 5", "total > 0 AND cnt < 5", {}, ()),
    ("alias_arith", "total / cnt > 10 OR cnt = 3", "total / cnt > 10 OR cnt = 3", {}, ()),
    (
        "alias_and_agg",
        "cnt >= 2 AND MIN(x) < 0",
        "cnt >= 2 AND h0 < 0",
        {"h0": "MIN(x) OVER w"},
        (),
    ),
    (
        "case_bool",
        "CASE WHEN COUNT(x) > 2 THEN MAX(f) > 0 ELSE MIN(x) < 0 END",
        "CASE WHEN h0 > 2 THEN h1 > 0 ELSE h2 < 0 END",
        {"h0": "COUNT(x) OVER w", "h1": "MAX(f) OVER w", "h2": "MIN(x) OVER w"},
        (),
    ),
    (
        "case_value",
        "CASE WHEN SUM(x) IS NULL THEN 0 WHEN SUM(x) > 0 THEN 1 ELSE -1 END = 1",
        "CASE WHEN h0 IS NULL THEN 0 WHEN h0 > 0 THEN 1 ELSE -1 END = 1",
        {"h0": "SUM(x) OVER w"},
        (),
    ),
    (
        "case_simple_alias",
        "CASE cnt WHEN 1 THEN 'one' WHEN 2 THEN 'two' ELSE 'many' END <> 'two'",
        "CASE cnt WHEN 1 THEN 'one' WHEN 2 THEN 'two' ELSE 'many' END <> 'two'",
        {},
        (),
    ),
    (
        "count_distinct",
        "COUNT(DISTINCT s) >= 2 AND AVG(x) > 0",
        "h0 >= 2 AND h1 > 0",
        {"h0": "COUNT(DISTINCT s) OVER w", "h1": "AVG(x) OVER w"},
        (),
    ),
    (
        "between_not",
        "NOT (COUNT(*) BETWEEN 2 AND 3)",
        "NOT (h0 BETWEEN 2 AND 3)",
        {"h0": "COUNT(*) OVER w"},
        (),
    ),
    (
        "first_last",
        "FIRST_VALUE(s) = 'apple' OR LAST_VALUE(x) > 500",
        "h0 = 'apple' OR h1 > 500",
        {"h0": "FIRST_VALUE(s IGNORE NULLS) OVER w", "h1": "LAST_VALUE(x IGNORE NULLS) OVER w"},
        (),
    ),
    (
        "decimal_nulls",
        "MIN(d) IS NULL OR SUM(d) > 1000",
        "h0 IS NULL OR h1 > 1000",
        {"h0": "MIN(d) OVER w", "h1": "SUM(d) OVER w"},
        (),
    ),
    (
        "stddev",
        "STDDEV(x) IS NOT NULL AND VARIANCE(x) < 1000000",
        "h0 IS NOT NULL AND h1 < 1000000",
        {"h0": "STDDEV_SAMP(x) OVER w", "h1": "VAR_SAMP(x) OVER w"},
        (),
    ),
    (
        "group_key",
        "k IS NULL OR COUNT(*) % 2 = 1",
        "h0 IS NULL OR h1 % 2 = 1",
        {"h0": "k", "h1": "COUNT(*) OVER w"},
        ("k",),
    ),
]


@pytest.mark.parametrize(
    ("vs_having", "duck_where", "hidden", "requires"),
    [h[1:] for h in HAVINGS],
    ids=[h[0] for h in HAVINGS],
)
@hsettings(max_examples=15)
@given(
    data=table_and_pieces(),
    shape_name=st.sampled_from(list(SHAPES)),
    aggs=st.lists(st.sampled_from(AGGREGATES), max_size=3),
    where=st.sampled_from([None, "x > 0", "g <> 3"]),
)
def test_having_matches_duckdb(
    vs_having, duck_where, hidden, requires, data, shape_name, aggs, where
) -> None:
    shape = SHAPES[shape_name]
    if not set(requires) <= set(shape.key_columns):
        shape = SHAPES["multi"]
    batch, pieces = data
    sql = vs_sql(
        shape, aggs, where, having=vs_having, extra_select=("COUNT(*) AS cnt", "SUM(x) AS total")
    )
    result = run_stream(sql, batch, pieces)
    expected = duckdb_changes(
        batch,
        shape,
        aggs,
        where,
        having=duck_where,
        hidden=hidden,
        extra_select=[("COUNT(*) OVER w", "cnt"), ("SUM(x) OVER w", "total")],
    )
    _check(sql, result, expected)


def test_having_emits_only_rows_whose_group_passes() -> None:
    batch = pa.record_batch({"k": ["a", "b", "a", "a", "b"], "x": [5, 1, 5, 5, 100]})
    sql = "SELECT k, SUM(x) AS total FROM t GROUP BY k HAVING SUM(x) > 5"
    result = run_stream(sql, batch, [(0, 1), (1, 3), (3, 5)])
    assert result.rows() == [("a", 10), ("a", 15), ("b", 101)]


@hsettings(max_examples=30)
@given(
    data=table_and_pieces(),
    shape=st.sampled_from(list(SHAPES.values())),
    aggs=st.lists(st.sampled_from(AGGREGATES), min_size=1, max_size=4),
)
def test_one_call_with_a_chunked_table(data, shape, aggs) -> None:
    """process(pa.Table of many chunks) returns what the chunks fed one by one return."""
    batch, pieces = data
    sql = vs_sql(shape, aggs)
    table = pa.Table.from_batches([batch.slice(lo, hi - lo) for lo, hi in pieces], batch.schema)
    query = vs.compile(sql)
    out = query.process(table)
    assert out.schema == query.output_schema
    assert query.flush().num_rows == 0
    assert_rows(rows_of(out), duckdb_changes(batch, shape, aggs), sql)


# (velostream select items, DuckDB select items over the window, HAVING, DuckDB WHERE)
ALIAS_CASES = [
    (
        "k AS key, COUNT(*) AS c",
        [("k", "key"), ("COUNT(*) OVER w", "c")],
        "key <> 'a' AND c >= 2",
        "key <> 'a' AND c >= 2",
    ),
    (
        "k, SUM(x) * 2 AS dbl, COUNT(*) + 1 AS c1",
        [("k", "k"), ("SUM(x) OVER w * 2", "dbl"), ("COUNT(*) OVER w + 1", "c1")],
        "dbl > 10 OR c1 = 3",
        "dbl > 10 OR c1 = 3",
    ),
    (
        "k, CASE WHEN COUNT(*) > 2 THEN 'many' ELSE 'few' END AS size, MAX(x) AS m",
        [
            ("k", "k"),
            ("CASE WHEN COUNT(*) OVER w > 2 THEN 'many' ELSE 'few' END", "size"),
            ("MAX(x) OVER w", "m"),
        ],
        "size = 'many' OR m IS NULL",
        "size = 'many' OR m IS NULL",
    ),
    (
        "UPPER(k) AS uk, AVG(x) AS a",
        [("UPPER(k)", "uk"), ("AVG(x) OVER w", "a")],
        "uk IS NULL OR a > 0",
        "uk IS NULL OR a > 0",
    ),
]


@pytest.mark.parametrize(
    ("select", "duck_select", "having", "duck_where"),
    ALIAS_CASES,
    ids=[c[2] for c in ALIAS_CASES],
)
@hsettings(max_examples=20)
@given(data=table_and_pieces())
def test_having_on_select_aliases(select, duck_select, having, duck_where, data) -> None:
    batch, pieces = data
    sql = f"SELECT {select} FROM t GROUP BY k HAVING {having}"
    result = run_stream(sql, batch, pieces)
    expected = duckdb_changes(
        batch,
        Shape("k_hidden", ("k",), ()),
        [],
        having=duck_where,
        extra_select=duck_select,
    )
    _check(sql, result, expected)


# --------------------------------------------------------------------------- float keys, -0.0

FLOAT_KEY = Shape("float", ("f",), ("f",), ("f",))


@hsettings(max_examples=40)
@given(
    data=table_and_pieces(),
    aggs=st.lists(st.sampled_from(AGGREGATES), min_size=1, max_size=4),
    where=st.sampled_from([None, "f < 0", "f >= 0 AND x > 0"]),
)
def test_float_group_key_matches_duckdb(data, aggs, where) -> None:
    """GROUP BY a float column, WHERE on floats; -0.0 = 0.0 in SQL (one group)."""
    batch, pieces = data
    sql = vs_sql(FLOAT_KEY, aggs, where)
    result = run_stream(sql, batch, pieces)
    _check(sql, result, duckdb_changes(batch, FLOAT_KEY, aggs, where))


def test_negative_zero_equals_zero_in_where_and_group_by() -> None:
    batch = pa.record_batch({"f": pa.array([0.0, -0.0, 1.0, -0.0], pa.float64())})
    # -0.0 < 0 is false and -0.0 = 0 is true (IEEE 754, DuckDB, PostgreSQL)
    where = run_stream("SELECT COUNT(*) AS c FROM t WHERE f < 0", batch, [(0, 4)])
    assert where.rows() == []
    eq = run_stream("SELECT COUNT(*) AS c FROM t WHERE f = 0", batch, [(0, 4)])
    assert eq.rows() == [(1,), (2,), (3,)]
    # and so 0.0 and -0.0 are one group
    grouped = run_stream("SELECT COUNT(*) AS c FROM t GROUP BY f", batch, [(0, 2), (2, 4)])
    assert grouped.rows() == [(1,), (2,), (1,), (3,)]
    assert grouped.query.metrics()["state_groups"] == 2
    having = run_stream(
        "SELECT COUNT(*) AS c FROM t GROUP BY f HAVING MIN(f) >= 0", batch, [(0, 4)]
    )
    assert having.rows() == [(1,), (2,), (1,), (3,)]
