"""Direct vs legacy path, and velostream vs Polars/DuckDB, per workload (SPEC sections 6, 10).

Same data, same run: 1 M trades (direct, Polars, DuckDB) and the first 20 K of them (legacy).
Polars and DuckDB run the same computation over the whole table on one thread each
(``POLARS_MAX_THREADS=1``, set in conftest.py; DuckDB ``SET threads = 1``), so their rate is
a per-core rate, as SPEC section 10 asks. ``stream_table_join`` joins the 100 000-row
``instruments`` table of ``velostream.bench.make_instruments``: attached to each velostream
query before the timing, a native table for DuckDB, a DataFrame argument for Polars.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from conftest import (
    BATCH_SIZE,
    LEGACY_RECORDS,
    RECORDS,
    batches,
    compile_workload,
    feed,
    fresh_run,
    record_rate,
    tables,
    trades,
)
from velostream.bench import WORKLOADS, check_same_output


def test_direct(benchmark: Any, workload: str) -> None:
    benchmark.group = f"paths:{workload}"
    data = batches(workload, RECORDS, BATCH_SIZE)
    benchmark.pedantic(
        feed,
        setup=fresh_run(WORKLOADS[workload].sql, data, joined=tables(workload)),
        rounds=20,
        warmup_rounds=1,
        iterations=1,
    )
    record_rate(benchmark, ("direct", workload), RECORDS)


def test_legacy(benchmark: Any, workload: str) -> None:
    benchmark.group = f"paths:{workload}"
    # Same rows from both paths, checked before anything is timed.
    check_same_output(
        WORKLOADS[workload].sql, trades(workload, RECORDS).slice(0, 2_000), tables=tables(workload)
    )
    data = batches(workload, LEGACY_RECORDS, BATCH_SIZE)
    benchmark.pedantic(
        feed,
        setup=fresh_run(WORKLOADS[workload].sql, data, "legacy", tables(workload)),
        rounds=3,
        iterations=1,
    )
    record_rate(benchmark, ("legacy", workload), LEGACY_RECORDS)


# ---- peers: the same computation, whole table at once --------------------------------------


def polars_select_where(df: pl.DataFrame) -> pl.DataFrame:
    return (
        df.lazy()
        .filter((pl.col("price") > 100) & (pl.col("status") == "open"))
        .select("symbol", (pl.col("price") * pl.col("qty")).alias("notional"))
        .collect()
    )


def polars_group_by_continuous(df: pl.DataFrame) -> pl.DataFrame:
    # EMIT CHANGES: one row per input row, the running aggregates of its symbol so far.
    n = pl.col("symbol").cum_count().over("symbol")
    return df.select(
        "symbol",
        n.cast(pl.Int64).alias("n"),
        pl.col("qty").cum_sum().over("symbol").alias("total"),
        (pl.col("price").cum_sum().over("symbol") / n).alias("avg_price"),
    )


def polars_tumbling_window(df: pl.DataFrame) -> pl.DataFrame:
    # The same grouping as a batch: every (second, symbol), in window then key order.
    return (
        df.lazy()
        .group_by((pl.col("ts") // 1000).alias("w"), "symbol")
        .agg(
            pl.len().cast(pl.Int64).alias("n"),
            pl.col("qty").sum().alias("total"),
            pl.col("price").mean().alias("avg_price"),
        )
        .sort("w", "symbol")
        .select("symbol", "n", "total", "avg_price")
        .collect()
    )


def polars_stream_table_join(df: pl.DataFrame, instruments: pl.DataFrame) -> pl.DataFrame:
    # Every trade with its instrument, in trade order (as the stream emits them).
    return (
        df.lazy()
        .join(instruments.lazy(), on="symbol", how="inner", maintain_order="left")
        .select("symbol", (pl.col("price") * pl.col("qty")).alias("notional"), "sector", "lot")
        .collect()
    )


DUCKDB_SQL = {
    "select_where": WORKLOADS["select_where"].sql,
    "group_by_continuous": (
        "SELECT symbol, COUNT(*) OVER w AS n, CAST(SUM(qty) OVER w AS BIGINT) AS total, "
        "AVG(price) OVER w AS avg_price FROM trades "
        "WINDOW w AS (PARTITION BY symbol ORDER BY seq "
        "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) ORDER BY seq"
    ),
    "tumbling_window": (
        "SELECT symbol, COUNT(*) AS n, CAST(SUM(qty) AS BIGINT) AS total, "
        "AVG(price) AS avg_price FROM trades GROUP BY ts // 1000, symbol "
        "ORDER BY ts // 1000, symbol"
    ),
    # No ORDER BY (a sort would dominate the time): compared sorted, see SORTED_COMPARE.
    "stream_table_join": WORKLOADS["stream_table_join"].sql,
}

#: Each Polars equivalent takes the trades and, as keyword arguments, the tables the
#: workload joins (``{name: pl.DataFrame}``).
POLARS: dict[str, Callable[..., pl.DataFrame]] = {
    "select_where": polars_select_where,
    "group_by_continuous": polars_group_by_continuous,
    "tumbling_window": polars_tumbling_window,
    "stream_table_join": polars_stream_table_join,
}

#: Workloads whose peer output is compared after sorting both sides by these columns
#: (DuckDB's join guarantees no row order). Rows tied on them are equal: one symbol, one
#: instrument.
SORTED_COMPARE = {"stream_table_join": ["symbol", "notional"]}


def _assert_same(ours: pa.Table, theirs: pa.Table, sort_by: list[str] | None = None) -> None:
    assert ours.num_rows == theirs.num_rows
    assert ours.column_names == theirs.column_names
    if sort_by:
        ours, theirs = (
            ours.sort_by([(c, "ascending") for c in sort_by]),
            theirs.sort_by([(c, "ascending") for c in sort_by]),
        )
    for name in ours.column_names:
        a, b = ours[name].to_numpy(), theirs[name].to_numpy()
        if np.issubdtype(a.dtype, np.floating):
            np.testing.assert_allclose(a, b, rtol=1e-9)
        else:
            np.testing.assert_array_equal(a.astype(object), b.astype(object))


def _velostream_output(workload: str, records: int) -> pa.Table:
    """velostream's rows (both paths, checked equal) for the first ``records`` trades."""
    table = trades(workload, RECORDS).slice(0, records)
    return check_same_output(WORKLOADS[workload].sql, table, BATCH_SIZE, tables(workload))


@functools.cache
def _whole_output(workload: str) -> pl.DataFrame:
    """velostream's output over all ``RECORDS`` trades (direct path, 10 K-row batches)."""
    query = compile_workload(workload)
    outputs = [query.process(b) for b in batches(workload, RECORDS, BATCH_SIZE)]
    outputs.append(query.flush())
    df = pl.from_arrow(pa.Table.from_batches(outputs))
    assert isinstance(df, pl.DataFrame)
    return df


def _assert_same_totals(workload: str, theirs: pl.DataFrame) -> None:
    """A peer's whole output against velostream's over all records, in any order: same
    rows, same sum of each numeric column, same multiset of each string column (a join
    that dropped or doubled rows fails)."""
    ours = _whole_output(workload)
    assert ours.columns == theirs.columns
    assert ours.height == theirs.height
    for name, dtype in ours.schema.items():
        if dtype.is_numeric():
            assert ours[name].sum() == pytest.approx(theirs[name].sum(), rel=1e-9)
        else:
            assert ours[name].sort().equals(theirs[name].sort())


def test_polars(benchmark: Any, workload: str) -> None:
    benchmark.group = f"paths:{workload}"
    if workload not in POLARS:
        pytest.fail(
            f"{workload} has no Polars equivalent: add one to POLARS (every workload is timed beside a peer)"
        )
    joined = {name: pl.from_arrow(t) for name, t in tables(workload).items()}
    compute = functools.partial(POLARS[workload], **joined)
    df = pl.from_arrow(trades(workload, RECORDS))
    # Same rows as velostream (checked on a slice, outside the timing; the join in order).
    _assert_same(_velostream_output(workload, 5_000), compute(df.head(5_000)).to_arrow())
    if joined:  # and the whole 1 M-row output, in any order
        _assert_same_totals(workload, compute(df))
    benchmark.pedantic(compute, args=(df,), rounds=20, warmup_rounds=1, iterations=1)
    record_rate(benchmark, ("polars", workload), RECORDS)
    benchmark.extra_info["threads"] = pl.thread_pool_size()


@pytest.fixture(scope="module")
def duck() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET threads = 1")
    return con


def test_duckdb(benchmark: Any, workload: str, duck: duckdb.DuckDBPyConnection) -> None:
    benchmark.group = f"paths:{workload}"
    if workload not in DUCKDB_SQL:
        pytest.fail(
            f"{workload} has no DuckDB equivalent: add one to DUCKDB_SQL (every workload is timed beside a peer)"
        )
    table = trades(workload, RECORDS)
    # seq keeps input order for the running aggregates; loaded once into a native table.
    source = table.append_column("seq", pa.array(np.arange(table.num_rows, dtype=np.int64)))
    duck.register("trades_arrow", source)
    duck.execute("CREATE OR REPLACE TABLE trades AS SELECT * FROM trades_arrow")
    duck.unregister("trades_arrow")
    for name, rows in tables(workload).items():
        duck.register(f"{name}_arrow", rows)
        duck.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM {name}_arrow")
        duck.unregister(f"{name}_arrow")
    sql = DUCKDB_SQL[workload]

    def run() -> pa.Table:
        return duck.sql(sql).to_arrow_table()

    check = duck.sql(sql.replace("FROM trades", "FROM (FROM trades WHERE seq < 5000)"))
    theirs = check.to_arrow_table()
    _assert_same(_velostream_output(workload, 5_000), theirs, SORTED_COMPARE.get(workload))
    if workload in SORTED_COMPARE:
        _assert_same_totals(workload, pl.from_arrow(run()))
    benchmark.pedantic(run, rounds=8, warmup_rounds=1, iterations=1)
    record_rate(benchmark, ("duckdb", workload), RECORDS)
    benchmark.extra_info["threads"] = 1
