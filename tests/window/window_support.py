"""Shared helpers of the window tests (SPEC sections 4, 5 and 12).

* Hypothesis strategies for a random event-time stream: a nondecreasing base time with
  each row pulled back by at most the watermark bound, so that no row is ever late
  (a row's time is never behind the watermark the rows before it left, in any partition),
  random keys (strings and ints with NULLs), values with NULLs, an optional ``_partition``
  column and random cut points into ``process`` calls (empty calls included).
* A model of the watermark (SPEC 12: max event time seen minus the bound, per partition,
  the minimum over the partitions seen, never backwards, advancing per record).
* ``run_windowed``: feed the pieces one ``process`` call each and keep every call's
  output and watermark, then ``flush``.
* Oracles: DuckDB ``GROUP BY window, key`` for tumbling and sliding windows (the window
  assignment written in SQL with ``generate_series``), a brute-force Python model for
  session windows.
* Value comparison: floats with a tolerance, everything else exact.
"""

from __future__ import annotations

import atexit
import itertools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

import velostream as vs

# Shrinking a failing 60-row stream takes minutes and CI must stay fast even while a
# property fails, so examples are derandomised (a failure is reproducible from its printed
# example) and shrinking is opt-in: WINDOW_SHRINK=1 pytest tests/window ...
# WINDOW_EXAMPLES=<factor> multiplies every example count, to explore more locally.
_PHASES = [Phase.explicit, Phase.generate]
if os.environ.get("WINDOW_SHRINK") == "1":
    _PHASES.append(Phase.shrink)
_FACTOR = float(os.environ.get("WINDOW_EXAMPLES", "1"))


def wsettings(max_examples: int) -> settings:
    """Settings of the window properties: deterministic, no deadline, no database."""
    return settings(
        max_examples=max(1, int(max_examples * _FACTOR)),
        deadline=None,
        derandomize=True,
        database=None,
        phases=_PHASES,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# --------------------------------------------------------------------------- data

KEY_STRINGS = ["a", "b", "", "ÆØÅ", "ab", "a long key of more than twelve bytes"]


@dataclass
class Stream:
    """A random event-time stream, as Python lists, and how it is cut into calls."""

    ts: list[int]
    partitions: list[int] | None
    k: list[str | None]
    g: list[int | None]
    x: list[int | None]
    f: list[float | None]
    bound: int
    pieces: list[tuple[int, int]]

    @property
    def rows(self) -> int:
        return len(self.ts)

    def batch(self, ts_type: pa.DataType | None = None) -> pa.RecordBatch:
        """The stream as one batch; ``ts`` as int64 epoch millis or ``ts_type``
        (timestamp('ms'))."""
        ts = pa.array(self.ts, pa.int64())
        columns: dict[str, pa.Array] = {
            "ts": ts if ts_type is None else ts.cast(ts_type),
            "k": pa.array(self.k, pa.string()),
            "g": pa.array(self.g, pa.int32()),
            "x": pa.array(self.x, pa.int64()),
            "f": pa.array(self.f, pa.float64()),
        }
        if self.partitions is not None:
            columns["_partition"] = pa.array(self.partitions, pa.int32())
        return pa.record_batch(columns)

    def table(self) -> pa.Table:
        """The stream for DuckDB: ``ts`` always int64, plus the arrival order ``rn``."""
        return pa.Table.from_batches([self.batch()]).append_column(
            "rn", pa.array(range(self.rows), pa.int64())
        )


def _nullable(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy, strategy, strategy)


@st.composite
def cut_points(draw: st.DrawFn, n: int, max_cuts: int = 8) -> list[tuple[int, int]]:
    """Random [lo, hi) pieces covering range(n) in order (empty pieces allowed)."""
    count = draw(st.integers(0, max_cuts))  # hypothesis' own lists would be mostly short
    cuts = sorted(draw(st.lists(st.integers(0, n), min_size=count, max_size=count)))
    return list(itertools.pairwise([0, *cuts, n]))


@st.composite
def streams(draw: st.DrawFn, max_rows: int = 60, max_step: int = 15, late: bool = False) -> Stream:
    """A stream whose rows are out of order only within the watermark bound.

    Row i has the time ``base[i] - jitter[i]`` with ``base`` nondecreasing and
    ``0 <= jitter[i] <= bound``. Every earlier row's time is at most ``base[i]``, so the
    watermark before row i is at most ``base[i] - bound`` and the row is never late.
    With ``late``, about one row in five is pulled back further (up to 60ms more), so
    that some rows are behind the watermark and some of those are late.
    """
    n = draw(st.integers(0, max_rows))
    bound = draw(st.sampled_from([0, 0, 3, 10, 40]))
    start = draw(st.integers(-120, 120))  # windows before the epoch too
    steps = draw(st.lists(st.one_of(st.just(0), st.integers(0, max_step)), min_size=n, max_size=n))
    base = list(itertools.accumulate(steps, initial=start))[1:]
    jitter = draw(st.lists(st.integers(0, bound), min_size=n, max_size=n))
    if late:
        extra = st.one_of(st.just(0), st.just(0), st.just(0), st.just(0), st.integers(1, 60))
        jitter = [j + draw(extra) for j in jitter]
    ts = [b - j for b, j in zip(base, jitter, strict=True)]
    partitions = None
    if draw(st.booleans()):
        count = draw(st.integers(1, 3))
        partitions = draw(st.lists(st.integers(0, count - 1), min_size=n, max_size=n))

    def col(strategy: st.SearchStrategy[Any]) -> list[Any]:
        return draw(st.lists(strategy, min_size=n, max_size=n))

    return Stream(
        ts=ts,
        partitions=partitions,
        k=col(_nullable(st.sampled_from(KEY_STRINGS))),
        g=col(_nullable(st.integers(0, 3))),
        x=col(_nullable(st.integers(-1000, 1000))),
        # exact binary fractions: sums do not depend on the order of addition
        f=col(_nullable(st.integers(-8000, 8000).map(lambda i: i / 8))),
        bound=bound,
        pieces=draw(cut_points(n)),
    )


# --------------------------------------------------------------------------- watermark model


def model_watermarks(
    ts: Sequence[int], partitions: Sequence[int] | None, bound: int
) -> list[int | None]:
    """The watermark after each row (SPEC 5 and 12, no idle timeout).

    Each partition's watermark is its max event time minus the bound; the query's is the
    minimum over the partitions seen so far, and never goes backwards.
    """
    highest: dict[int, int] = {}
    mark: int | None = None
    out: list[int | None] = []
    for i, t in enumerate(ts):
        p = 0 if partitions is None else partitions[i]
        highest[p] = max(highest.get(p, t), t)
        candidate = min(highest.values()) - bound
        mark = candidate if mark is None else max(mark, candidate)
        out.append(mark)
    return out


def watermarks_before(stream: Stream) -> list[int | None]:
    """The watermark each row is judged against: the one the rows before it left."""
    after = model_watermarks(stream.ts, stream.partitions, stream.bound)
    return [None, *after[:-1]] if after else []


def call_watermarks(
    stream: Stream, pieces: Sequence[tuple[int, int]] | None = None
) -> list[int | None]:
    """The watermark the model gives after each process call."""
    per_row = model_watermarks(stream.ts, stream.partitions, stream.bound)
    marks: list[int | None] = []
    current: int | None = None
    for lo, hi in stream.pieces if pieces is None else pieces:
        if hi > lo:
            current = per_row[hi - 1]
        marks.append(current)
    return marks


def expected_call(end: int, marks: Sequence[int | None]) -> int:
    """Index of the process call in which a window ending at ``end`` closes.

    ``len(marks)`` stands for ``flush()``.
    """
    for index, mark in enumerate(marks):
        if mark is not None and mark >= end:
            return index
    return len(marks)


# --------------------------------------------------------------------------- running


@dataclass
class Run:
    """Every process call's output and watermark, then the flush output."""

    query: vs.Query
    outputs: list[pa.RecordBatch]
    watermarks: list[int | None]
    flushed: pa.RecordBatch

    @property
    def all_outputs(self) -> list[pa.RecordBatch]:
        return [*self.outputs, self.flushed]

    def rows(self) -> list[tuple[Any, ...]]:
        return [row for out in self.all_outputs for row in rows_of(out)]

    def rows_with_call(self) -> list[tuple[int, tuple[Any, ...]]]:
        """(index of the call that emitted it, row) for every row; flush is the last."""
        return [(index, row) for index, out in enumerate(self.all_outputs) for row in rows_of(out)]


def feed(query: vs.Query, batch: pa.RecordBatch, pieces: Sequence[tuple[int, int]]) -> Run:
    outputs, marks = [], []
    for lo, hi in pieces:
        out = query.process(batch.slice(lo, hi - lo))
        assert isinstance(out, pa.RecordBatch)
        assert out.schema == query.output_schema, (out.schema, query.output_schema)
        outputs.append(out)
        marks.append(query.watermark)
    return Run(query, outputs, marks, pa.record_batch([]))


def run_windowed(
    sql: str,
    properties: dict[str, str],
    batch: pa.RecordBatch,
    pieces: Sequence[tuple[int, int]],
    path: str = "direct",
) -> Run:
    query = vs.compile(sql, properties=properties, path=path)  # type: ignore[arg-type]
    run = feed(query, batch, pieces)
    run.flushed = query.flush()
    assert run.flushed.schema == query.output_schema
    return run


def rows_of(data: pa.RecordBatch | pa.Table) -> list[tuple[Any, ...]]:
    columns = [column.to_pylist() for column in data.columns]
    return list(zip(*columns, strict=True)) if columns else [()] * data.num_rows


def batch(**columns: Any) -> pa.RecordBatch:
    """A batch from lists; ``ts`` and ``x`` are int64, ``_partition`` int32."""
    types = {"ts": pa.int64(), "x": pa.int64(), "_partition": pa.int32(), "k": pa.string()}
    return pa.record_batch(
        {name: pa.array(values, types.get(name)) for name, values in columns.items()}
    )


# --------------------------------------------------------------------------- oracles

_CONNECTION: list[duckdb.DuckDBPyConnection] = []


def _close_connection() -> None:
    while _CONNECTION:
        _CONNECTION.pop().close()


def duck_connection() -> duckdb.DuckDBPyConnection:
    """One in-memory single-threaded DuckDB per process (connecting costs ~30 ms)."""
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


@dataclass(frozen=True)
class Agg:
    """An aggregate: its SQL (the same text in velostream and DuckDB) and a Python model."""

    sql: str
    column: str | None  # None: COUNT(*)
    fn: str  # count, sum, min, max, avg

    def model(self, rows: Sequence[dict[str, Any]]) -> Any:
        if self.column is None:
            return len(rows)
        values = [r[self.column] for r in rows if r[self.column] is not None]
        if self.fn == "count":
            return len(values)
        if not values:
            return None
        if self.fn == "sum":
            return sum(values)
        if self.fn == "min":
            return min(values)
        if self.fn == "max":
            return max(values)
        return sum(values) / len(values)


AGGREGATES = [
    Agg("COUNT(*)", None, "count"),
    Agg("COUNT(x)", "x", "count"),
    Agg("SUM(x)", "x", "sum"),
    Agg("MIN(x)", "x", "min"),
    Agg("MAX(x)", "x", "max"),
    Agg("AVG(x)", "x", "avg"),
    Agg("COUNT(k)", "k", "count"),
    Agg("MIN(k)", "k", "min"),
    Agg("SUM(f)", "f", "sum"),
    Agg("MIN(f)", "f", "min"),
    Agg("MAX(f)", "f", "max"),
    Agg("AVG(f)", "f", "avg"),
]

# GROUP BY keys of the random queries: strings with NULLs, ints with NULLs, both, none.
SHAPES: list[tuple[str, ...]] = [("k",), ("g",), ("k", "g"), ("g", "k"), ()]


def select_sql(keys: Sequence[str], aggs: Sequence[Agg], window: str, emit: str = "") -> str:
    """``SELECT keys, aggs, _window_start, _window_end FROM t GROUP BY keys WINDOW ...``."""
    items = [*keys, *(f"{a.sql} AS a{i}" for i, a in enumerate(aggs))]
    items += ["_window_start", "_window_end"]
    sql = f"SELECT {', '.join(items)} FROM t"
    if keys:
        sql += f" GROUP BY {', '.join(keys)}"
    sql += f" WINDOW {window}"
    if emit:
        sql += f" {emit}"
    return sql


def _windows_cte(size: int, advance: int, time: str = "ts", mark: str | None = None) -> str:
    """Every (row, window) pair: windows start at multiples of ``advance`` and last
    ``size``; a row belongs to each one containing its ``time`` column (half open) and,
    given a ``mark`` column (the watermark before the row, NULL for none), ending after
    that watermark."""
    still_open = f" AND ({mark} IS NULL OR ws + {size} > {mark})" if mark else ""
    return (
        f"WITH a AS (SELECT *, {time} - ((({time} % {advance}) + {advance}) % {advance}) "
        "AS last_start FROM t), "
        f"w AS (SELECT *, UNNEST(generate_series(last_start - {(size // advance + 1) * advance}, "
        f"last_start, {advance})) AS ws FROM a), "
        f"x AS (SELECT * FROM w WHERE ws <= {time} AND {time} < ws + {size}{still_open})"
    )


def duckdb_fixed_windows(
    table: pa.Table,
    keys: Sequence[str],
    aggs: Sequence[Agg],
    size: int,
    advance: int,
    time: str = "ts",
    mark: str | None = None,
) -> list[tuple[Any, ...]]:
    """EMIT FINAL oracle: ``GROUP BY window, keys`` ordered by window end, then the keys
    (NULLs last), as SPEC section 12 orders them (see :func:`_windows_cte` for ``time``
    and ``mark``)."""
    items = [*keys, *(a.sql for a in aggs), "ws", f"ws + {size}"]
    order = ", ".join([f"ws + {size}", *(f"{k} NULLS LAST" for k in keys)])
    sql = (
        f"{_windows_cte(size, advance, time, mark)} SELECT {', '.join(items)} FROM x "
        f"GROUP BY {', '.join(['ws', *keys])} ORDER BY {order}"
    )
    return duck_query(table, sql)


def duckdb_fixed_changes(
    table: pa.Table, keys: Sequence[str], aggs: Sequence[Agg], size: int, advance: int
) -> list[tuple[Any, ...]]:
    """EMIT CHANGES oracle: per input row and window of the row, the running aggregate of
    that (window, key), rows in input order, a row's windows by start."""
    partition = ", ".join(["ws", *keys])
    items = [*keys, *(f"{a.sql} OVER run" for a in aggs), "ws", f"ws + {size}"]
    sql = (
        f"{_windows_cte(size, advance)} SELECT {', '.join(items)} FROM x "
        f"WINDOW run AS (PARTITION BY {partition} ORDER BY rn "
        "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) ORDER BY rn, ws"
    )
    return duck_query(table, sql)


def _key_order(key: tuple[Any, ...]) -> tuple[Any, ...]:
    """Sort key of a group key: each part ascending, NULLs last."""
    return tuple((v is None, v if v is not None else 0) for v in key)


def model_sessions(
    stream: Stream, keys: Sequence[str], aggs: Sequence[Agg], gap: int
) -> list[tuple[Any, ...]]:
    """Session windows by brute force: per key, rows sorted by time split wherever the
    next row is ``gap`` or more after the previous one; a session is
    ``[first ts, last ts + gap)``. Rows ordered by window end, then key (NULLs last)."""
    columns: dict[str, list[Any]] = {
        "ts": stream.ts,
        "k": stream.k,
        "g": stream.g,
        "x": stream.x,
        "f": stream.f,
    }
    records = [{name: values[i] for name, values in columns.items()} for i in range(stream.rows)]
    by_key: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for record in records:
        by_key.setdefault(tuple(record[k] for k in keys), []).append(record)
    out: list[tuple[tuple[Any, ...], tuple[Any, ...]]] = []
    for key, rows in by_key.items():
        rows = sorted(rows, key=lambda r: r["ts"])
        sessions: list[list[dict[str, Any]]] = [[rows[0]]]
        for previous, row in itertools.pairwise(rows):
            if row["ts"] - previous["ts"] >= gap:
                sessions.append([])
            sessions[-1].append(row)
        for members in sessions:
            start, end = members[0]["ts"], members[-1]["ts"] + gap
            values = (*key, *(a.model(members) for a in aggs), start, end)
            out.append(((end, *_key_order(key)), values))
    return [values for _, values in sorted(out, key=lambda item: item[0])]


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
    return type(got) is type(want) and got == want


def assert_rows(got: list[tuple[Any, ...]], want: list[tuple[Any, ...]], context: str = "") -> None:
    assert len(got) == len(want), (
        f"{context}\nrow count: velostream {len(got)}, oracle {len(want)}\n"
        f"velostream: {got[:12]}\noracle:     {want[:12]}"
    )
    for index, (g, w) in enumerate(zip(got, want, strict=True)):
        assert len(g) == len(w), f"{context}\nrow {index}: {g!r} vs {w!r}"
        for column, (gv, wv) in enumerate(zip(g, w, strict=True)):
            assert same_value(gv, wv), (
                f"{context}\nrow {index}, column {column}: velostream {gv!r}, oracle {wv!r}\n"
                f"velostream row: {g!r}\noracle row:     {w!r}"
            )


def assert_identical(a: pa.RecordBatch, b: pa.RecordBatch, context: str = "") -> None:
    """Identical batches: schema, rows, order, float bits."""
    assert a.schema == b.schema, f"{context}\n{a.schema}\n!=\n{b.schema}"
    ra, rb = rows_of(a), rows_of(b)
    assert ra == rb, f"{context}\n{ra}\n!=\n{rb}"
