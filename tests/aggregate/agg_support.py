"""Shared helpers for the streaming-aggregation tests.

* Hypothesis strategies for a random input table (string / int / bool keys with NULLs,
  int64, float64, string and decimal128(12,2) values with NULLs) and random cut points
  that split it into batches (empty batches included).
* ``run_stream``: feed the pieces to a compiled query one ``process`` call each and
  return every output batch plus the ``flush`` output.
* A DuckDB oracle for ``EMIT CHANGES``: the running aggregate of each row's group is a
  window aggregate ``OVER (PARTITION BY keys ORDER BY rn ROWS BETWEEN UNBOUNDED PRECEDING
  AND CURRENT ROW)``; HAVING becomes an outer ``WHERE`` over the windowed columns.
* Value comparison: floats with ``math.isclose(rel_tol=1e-9)``, everything else exact
  (Decimal compared as Decimal, ints as ints, no bool/int confusion).
"""

from __future__ import annotations

import atexit
import itertools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

import velostream as vs

RN = "__rn"
DEC_TYPE = pa.decimal128(12, 2)

# Shrinking a failing 50-row, 7-column example takes minutes; the suite must stay fast even
# while a known engine bug keeps a property failing, so shrinking is opt-in:
# AGG_SHRINK=1 pytest tests/aggregate ...
_PHASES = [Phase.explicit, Phase.reuse, Phase.generate]
if os.environ.get("AGG_SHRINK") == "1":
    _PHASES.append(Phase.shrink)

SETTINGS = {
    "deadline": None,
    "phases": _PHASES,
    "database": None,  # never write .hypothesis/ outside tests/aggregate
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}


def hsettings(max_examples: int) -> settings:
    return settings(max_examples=max_examples, **SETTINGS)


# --------------------------------------------------------------------------- data

# prefixes of each other across the two string columns, so that a key encoding that
# concatenates without lengths would merge ("a", " b") with ("a ", "b") or ("ab", "c")
KEY_STRINGS = ["a", "b", "", "ÆØÅ", "a ", "ab", "a long key of more than twelve bytes"]
STRINGS = ["apple", "Apple", "b", "", "ß", "zz", "a b", "ÆØÅ", " b", "c", "bc"]

SCHEMA = pa.schema(
    [
        ("k", pa.string()),
        ("g", pa.int32()),
        ("b", pa.bool_()),
        ("x", pa.int64()),
        ("f", pa.float64()),
        ("s", pa.string()),
        ("d", DEC_TYPE),
    ]
)


def _nullable(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    # one_of picks uniformly among branches: about one value in four is NULL
    return st.one_of(st.none(), strategy, strategy, strategy)


def _ints() -> st.SearchStrategy[int]:
    return st.one_of(
        st.integers(-5, 5),
        st.integers(-1000, 1000),
        st.integers(-(2**40), 2**40),
    )


def _floats() -> st.SearchStrategy[float]:
    return st.one_of(
        st.integers(-80_000, 80_000).map(lambda i: i / 8),  # exact binary fractions
        st.sampled_from([0.0, -0.0, 0.5, -0.5]),
        st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False, allow_subnormal=False),
    )


def _decimals() -> st.SearchStrategy[Decimal]:
    cents = st.one_of(
        st.integers(-3, 3),
        st.integers(-100_000, 100_000),
        st.integers(-(10**12) + 1, 10**12 - 1),  # the full decimal(12,2) range
    )
    return cents.map(lambda c: Decimal(c).scaleb(-2))


@st.composite
def tables(draw: st.DrawFn, max_rows: int = 50) -> pa.RecordBatch:
    """A random batch with SCHEMA; few distinct keys so groups collide."""
    n = draw(st.integers(0, max_rows))

    def col(strategy: st.SearchStrategy[Any]) -> list[Any]:
        return draw(st.lists(strategy, min_size=n, max_size=n))

    return pa.record_batch(
        {
            "k": pa.array(col(_nullable(st.sampled_from(KEY_STRINGS))), pa.string()),
            "g": pa.array(col(_nullable(st.integers(0, 4))), pa.int32()),
            "b": pa.array(col(_nullable(st.booleans())), pa.bool_()),
            "x": pa.array(col(_nullable(_ints())), pa.int64()),
            "f": pa.array(col(_nullable(_floats())), pa.float64()),
            "s": pa.array(col(_nullable(st.sampled_from(STRINGS))), pa.string()),
            "d": pa.array(col(_nullable(_decimals())), DEC_TYPE),
        },
        schema=SCHEMA,
    )


@st.composite
def cut_points(draw: st.DrawFn, n: int) -> list[tuple[int, int]]:
    """Random [lo, hi) pieces covering range(n) in order (empty pieces allowed)."""
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=6)))
    bounds = [0, *cuts, n]
    return list(itertools.pairwise(bounds))


@st.composite
def table_and_pieces(
    draw: st.DrawFn, max_rows: int = 50
) -> tuple[pa.RecordBatch, list[tuple[int, int]]]:
    batch = draw(tables(max_rows=max_rows))
    return batch, draw(cut_points(batch.num_rows))


# --------------------------------------------------------------------------- running


@dataclass
class StreamResult:
    outputs: list[pa.RecordBatch]
    flushed: pa.RecordBatch
    query: Any

    @property
    def table(self) -> pa.Table:
        return pa.Table.from_batches([*self.outputs, self.flushed])

    def rows(self) -> list[tuple[Any, ...]]:
        return rows_of(self.table)


def feed(query: Any, batch: pa.RecordBatch, pieces: Sequence[tuple[int, int]]) -> list:
    outputs = []
    for lo, hi in pieces:
        out = query.process(batch.slice(lo, hi - lo))
        assert isinstance(out, pa.RecordBatch)
        assert out.schema == query.output_schema, (out.schema, query.output_schema)
        outputs.append(out)
    return outputs


def run_stream(
    sql: str,
    batch: pa.RecordBatch,
    pieces: Sequence[tuple[int, int]],
    path: str = "direct",
) -> StreamResult:
    query = vs.compile(sql, path=path)
    outputs = feed(query, batch, pieces)
    flushed = query.flush()
    assert flushed.schema == query.output_schema
    return StreamResult(outputs, flushed, query)


def rows_of(data: pa.RecordBatch | pa.Table) -> list[tuple[Any, ...]]:
    columns = [column.to_pylist() for column in data.columns]
    return list(zip(*columns, strict=True)) if columns else [()] * data.num_rows


# --------------------------------------------------------------------------- oracle


@dataclass(frozen=True)
class Agg:
    """One aggregate: velostream SQL and the DuckDB window-aggregate equivalent."""

    vs_sql: str
    duck: str  # a DuckDB aggregate call, OVER w is appended

    @property
    def duck_window(self) -> str:
        return f"{self.duck} OVER w"


AGGREGATES: list[Agg] = [
    Agg("COUNT(*)", "COUNT(*)"),
    Agg("COUNT(x)", "COUNT(x)"),
    Agg("COUNT(s)", "COUNT(s)"),
    Agg("COUNT(d)", "COUNT(d)"),
    Agg("COUNT(DISTINCT x)", "COUNT(DISTINCT x)"),
    Agg("COUNT(DISTINCT s)", "COUNT(DISTINCT s)"),
    Agg("COUNT(DISTINCT d)", "COUNT(DISTINCT d)"),
    Agg("SUM(x)", "SUM(x)"),
    Agg("SUM(g)", "SUM(g)"),
    Agg("SUM(f)", "SUM(f)"),
    Agg("SUM(d)", "SUM(d)"),
    Agg("AVG(x)", "AVG(x)"),
    Agg("AVG(f)", "AVG(f)"),
    Agg("MIN(x)", "MIN(x)"),
    Agg("MAX(x)", "MAX(x)"),
    Agg("MIN(f)", "MIN(f)"),
    Agg("MAX(f)", "MAX(f)"),
    Agg("MIN(s)", "MIN(s)"),
    Agg("MAX(s)", "MAX(s)"),
    Agg("MIN(d)", "MIN(d)"),
    Agg("MAX(d)", "MAX(d)"),
    Agg("FIRST_VALUE(x)", "FIRST_VALUE(x IGNORE NULLS)"),
    Agg("LAST_VALUE(x)", "LAST_VALUE(x IGNORE NULLS)"),
    Agg("FIRST_VALUE(s)", "FIRST_VALUE(s IGNORE NULLS)"),
    Agg("LAST_VALUE(s)", "LAST_VALUE(s IGNORE NULLS)"),
    Agg("FIRST_VALUE(f)", "FIRST_VALUE(f IGNORE NULLS)"),
    Agg("LAST_VALUE(d)", "LAST_VALUE(d IGNORE NULLS)"),
    Agg("STDDEV(x)", "STDDEV_SAMP(x)"),
    Agg("VARIANCE(x)", "VAR_SAMP(x)"),
    Agg("STDDEV_POP(x)", "STDDEV_POP(x)"),
    Agg("VAR_POP(x)", "VAR_POP(x)"),
    Agg("STDDEV(f)", "STDDEV_SAMP(f)"),
    Agg("VARIANCE(f)", "VAR_SAMP(f)"),
    Agg("STDDEV_SAMP(f)", "STDDEV_SAMP(f)"),
    Agg("VAR_SAMP(f)", "VAR_SAMP(f)"),
    Agg("STDDEV_POP(f)", "STDDEV_POP(f)"),
    Agg("VAR_POP(f)", "VAR_POP(f)"),
    # aggregates over expressions
    Agg("SUM(x * 2 + g)", "SUM(x * 2 + g)"),
    Agg("AVG(f + x)", "AVG(f + x)"),
    Agg("MAX(LENGTH(s))", "MAX(LENGTH(s))"),
    Agg("COUNT(DISTINCT LOWER(s))", "COUNT(DISTINCT LOWER(s))"),
    Agg("MIN(CASE WHEN x > 0 THEN s END)", "MIN(CASE WHEN x > 0 THEN s END)"),
]


@dataclass(frozen=True)
class Shape:
    """The grouping of a query: GROUP BY text and the selected key columns."""

    name: str
    group_by: tuple[str, ...]  # GROUP BY expressions (same text in both engines)
    select_keys: tuple[str, ...]  # select items for the keys (with aliases)
    key_columns: tuple[str, ...] = field(default=())  # input columns the key reads


SHAPES = {
    "global": Shape("global", (), ()),
    "string": Shape("string", ("k",), ("k",), ("k",)),
    "int": Shape("int", ("g",), ("g",), ("g",)),
    "bool": Shape("bool", ("b",), ("b",), ("b",)),
    "multi": Shape("multi", ("k", "g"), ("g", "k"), ("k", "g")),
    "multi3": Shape("multi3", ("b", "k", "g"), ("k", "b", "g"), ("b", "k", "g")),
    "expr": Shape("expr", ("g % 3",), ("g % 3 AS gm",), ("g",)),
    "two_strings": Shape("two_strings", ("k", "s"), ("s", "k"), ("k", "s")),
    "unselected_key": Shape("unselected_key", ("k", "b"), (), ("k", "b")),
}

WHERES: list[str | None] = [
    None,
    "x > 0",
    "k IS NOT NULL AND f < 100",
    "g IN (1, 2) OR s LIKE 'a%'",
    "NOT (b) OR d >= 0",
]


def vs_sql(
    shape: Shape,
    aggs: Sequence[Agg],
    where: str | None = None,
    having: str | None = None,
    extra_select: Sequence[str] = (),
) -> str:
    items = [*shape.select_keys, *extra_select]
    items += [f"{agg.vs_sql} AS a{i}" for i, agg in enumerate(aggs)]
    sql = f"SELECT {', '.join(items)} FROM t"
    if where:
        sql += f" WHERE {where}"
    if shape.group_by:
        sql += f" GROUP BY {', '.join(shape.group_by)}"
    if having:
        sql += f" HAVING {having}"
    return sql


_CONNECTION: list[duckdb.DuckDBPyConnection] = []


def _close_connection() -> None:
    while _CONNECTION:
        _CONNECTION.pop().close()


def duck_connection() -> duckdb.DuckDBPyConnection:
    """One in-memory DuckDB per process (connecting costs ~30 ms), single-threaded."""
    if not _CONNECTION:
        con = duckdb.connect()
        con.execute("SET threads = 1")
        _CONNECTION.append(con)
        atexit.register(_close_connection)
    return _CONNECTION[0]


def duck_query(table: pa.Table, sql: str) -> list[tuple[Any, ...]]:
    """Run ``sql`` in DuckDB with ``table`` registered as ``t``."""
    con = duck_connection()
    con.register("t", table)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.unregister("t")


def duckdb_changes(
    batch: pa.RecordBatch,
    shape: Shape,
    aggs: Sequence[Agg],
    where: str | None = None,
    having: str | None = None,
    hidden: dict[str, str] | None = None,
    extra_select: Sequence[tuple[str, str]] = (),
) -> list[tuple[Any, ...]]:
    """EMIT CHANGES oracle: per surviving input row, its group's running aggregates.

    ``hidden`` maps alias -> DuckDB window expression computed only for ``having`` (an
    outer WHERE over the aliases); ``extra_select`` is (DuckDB window expr, alias) pairs
    placed after the keys, as velostream's ``extra_select`` items.
    """
    table = pa.Table.from_batches([batch]).append_column(
        RN, pa.array(range(batch.num_rows), pa.int64())
    )
    keys = [f"{k.split(' AS ')[0]} AS key{i}" for i, k in enumerate(shape.select_keys)]
    visible = [f"key{i}" for i in range(len(keys))]
    cols = list(keys)
    for expr, alias in extra_select:
        cols.append(f"{expr} AS {alias}")
        visible.append(alias)
    for i, agg in enumerate(aggs):
        cols.append(f"{agg.duck_window} AS a{i}")
        visible.append(f"a{i}")
    for alias, expr in (hidden or {}).items():
        cols.append(f"{expr} AS {alias}")
    partition = f"PARTITION BY {', '.join(shape.group_by)} " if shape.group_by else ""
    inner = f"SELECT * FROM t WHERE {where}" if where else "SELECT * FROM t"
    sql = (
        f"SELECT {RN}, {', '.join(cols)} FROM ({inner}) AS t "
        f"WINDOW w AS ({partition}ORDER BY {RN} "
        "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
    )
    outer = f"SELECT {', '.join(visible)} FROM ({sql}) AS r"
    if having:
        outer += f" WHERE {having}"
    outer += f" ORDER BY {RN}"
    return duck_query(table, outer)


# --------------------------------------------------------------------------- comparison


def same_value(got: Any, want: Any) -> bool:
    if got is None or want is None:
        return got is None and want is None
    if isinstance(got, bool) or isinstance(want, bool):
        return type(got) is type(want) and got == want
    if isinstance(want, float) or isinstance(got, float):
        if not isinstance(got, float):
            return False
        return math.isclose(got, float(want), rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(want, Decimal) or isinstance(got, Decimal):
        return isinstance(got, Decimal) and isinstance(want, Decimal) and got == want
    return type(got) is type(want) and got == want


def assert_rows(got: list[tuple[Any, ...]], want: list[tuple[Any, ...]], context: str = "") -> None:
    assert len(got) == len(want), (
        f"{context}\nrow count: velostream {len(got)}, oracle {len(want)}\n"
        f"velostream: {got[:8]}\noracle:     {want[:8]}"
    )
    for index, (g, w) in enumerate(zip(got, want, strict=True)):
        assert len(g) == len(w), f"{context}\nrow {index}: {g!r} vs {w!r}"
        for column, (gv, wv) in enumerate(zip(g, w, strict=True)):
            assert same_value(gv, wv), (
                f"{context}\nrow {index}, column {column}: velostream {gv!r}, oracle {wv!r}\n"
                f"velostream row: {g!r}\noracle row:     {w!r}"
            )


def assert_identical(a: pa.RecordBatch, b: pa.RecordBatch, context: str = "") -> None:
    """Bit-for-bit identical batches (schema, rows, order, float bits)."""
    assert a.schema == b.schema, f"{context}\n{a.schema}\n!=\n{b.schema}"
    assert a.num_rows == b.num_rows, f"{context}\n{a.num_rows} rows != {b.num_rows} rows"
    ra, rb = rows_of(a), rows_of(b)
    for index, (x, y) in enumerate(zip(ra, rb, strict=True)):
        assert len(x) == len(y)
        for u, v in zip(x, y, strict=True):
            same = u == v and type(u) is type(v)
            if isinstance(u, float) and isinstance(v, float) and math.isnan(u):
                same = math.isnan(v)
            assert same, f"{context}\nrow {index}: {x!r}\n!=\n{y!r}"


# --------------------------------------------------------------------------- random queries

VS_HAVINGS: list[str | None] = [
    None,
    "COUNT(*) >= 2",
    "SUM(x) - MIN(x) > 100 OR MAX(f) > 10",
    "CASE WHEN COUNT(x) > 2 THEN AVG(f) > 0 ELSE MIN(x) < 0 END",
    "COUNT(DISTINCT s) >= 2",
    "SUM(d) > 0 OR STDDEV(f) > 1",
]

DISTINCT_QUERIES = [
    "SELECT DISTINCT k FROM t",
    "SELECT DISTINCT k, g FROM t WHERE x > 0",
    "SELECT DISTINCT b, UPPER(k) AS uk, g % 2 AS m FROM t",
    "SELECT DISTINCT s, d FROM t WHERE f < 0 OR f IS NULL",
]


@st.composite
def aggregate_queries(draw: st.DrawFn, distinct: bool = True) -> str:
    """A random valid aggregation (or DISTINCT) query over SCHEMA."""
    if distinct and draw(st.integers(0, 5)) == 0:
        return draw(st.sampled_from(DISTINCT_QUERIES))
    shape = draw(st.sampled_from(list(SHAPES.values())))
    aggs = draw(st.lists(st.sampled_from(AGGREGATES), min_size=1, max_size=6))
    where = draw(st.sampled_from(WHERES))
    having = draw(st.sampled_from(VS_HAVINGS))
    return vs_sql(shape, aggs, where, having)
