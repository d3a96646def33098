"""Direct vs legacy path, and velostream vs Polars/DuckDB, per workload (SPEC sections 6, 10).

Same data, same run: 1 M trades (direct, Polars, DuckDB) and the first 20 K of them (legacy).
Polars and DuckDB run the same computation over the whole table on one thread each
(``POLARS_MAX_THREADS=1``, set in conftest.py; DuckDB ``SET threads = 1``), so their rate is
a per-core rate, as SPEC section 10 asks.
"""

from __future__ import annotations

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
    feed,
    fresh_run,
    record_rate,
    trades,
)
from velostream.bench import WORKLOADS, check_same_output


def test_direct(benchmark: Any, workload: str) -> None:
    benchmark.group = f"paths:{workload}"
    data = batches(workload, RECORDS, BATCH_SIZE)
    benchmark.pedantic(
        feed,
        setup=fresh_run(WORKLOADS[workload].sql, data),
        rounds=20,
        warmup_rounds=1,
        iterations=1,
    )
    record_rate(benchmark, ("direct", workload), RECORDS)


def test_legacy(benchmark: Any, workload: str) -> None:
    benchmark.group = f"paths:{workload}"
    # Same rows from both paths, checked before anything is timed.
    check_same_output(WORKLOADS[workload].sql, trades(workload, RECORDS).slice(0, 2_000))
    data = batches(workload, LEGACY_RECORDS, BATCH_SIZE)
    benchmark.pedantic(
        feed,
        setup=fresh_run(WORKLOADS[workload].sql, data, "legacy"),
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
}

POLARS: dict[str, Callable[[pl.DataFrame], pl.DataFrame]] = {
    "select_where": polars_select_where,
    "group_by_continuous": polars_group_by_continuous,
    "tumbling_window": polars_tumbling_window,
}


def _assert_same(ours: pa.Table, theirs: pa.Table) -> None:
    assert ours.num_rows == theirs.num_rows
    assert ours.column_names == theirs.column_names
    for name in ours.column_names:
        a, b = ours[name].to_numpy(), theirs[name].to_numpy()
        if np.issubdtype(a.dtype, np.floating):
            np.testing.assert_allclose(a, b, rtol=1e-9)
        else:
            np.testing.assert_array_equal(a.astype(object), b.astype(object))


def _velostream_output(workload: str, records: int) -> pa.Table:
    """velostream's rows (both paths, checked equal) for the first ``records`` trades."""
    table = trades(workload, RECORDS).slice(0, records)
    return check_same_output(WORKLOADS[workload].sql, table, BATCH_SIZE)


def test_polars(benchmark: Any, workload: str) -> None:
    benchmark.group = f"paths:{workload}"
    if workload not in POLARS:
        pytest.fail(
            f"{workload} has no Polars equivalent: add one to POLARS (every workload is timed beside a peer)"
        )
    compute = POLARS[workload]
    df = pl.from_arrow(trades(workload, RECORDS))
    # Same rows as velostream (checked on a slice, outside the timing).
    _assert_same(_velostream_output(workload, 5_000), compute(df.head(5_000)).to_arrow())
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
    sql = DUCKDB_SQL[workload]

    def run() -> pa.Table:
        return duck.sql(sql).to_arrow_table()

    check = duck.sql(sql.replace("FROM trades", "FROM (FROM trades WHERE seq < 5000)"))
    theirs = check.to_arrow_table()
    _assert_same(_velostream_output(workload, 5_000), theirs)
    benchmark.pedantic(run, rounds=8, warmup_rounds=1, iterations=1)
    record_rate(benchmark, ("duckdb", workload), RECORDS)
    benchmark.extra_info["threads"] = 1
