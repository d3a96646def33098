"""Large batches with thousands of groups (growth of the group table inside one batch,
many batches) against DuckDB, compared column-wise with numpy."""

from __future__ import annotations

import itertools
from decimal import Decimal

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import velostream as vs

N = 120_000

AGGS = [
    # (velostream, DuckDB window expression, float?)
    ("COUNT(*)", "COUNT(*) OVER w", False),
    ("COUNT(x)", "COUNT(x) OVER w", False),
    ("SUM(x)", "CAST(SUM(x) OVER w AS BIGINT)", False),
    ("MAX(x)", "MAX(x) OVER w", False),
    ("MIN(s)", "MIN(s) OVER w", False),
    ("COUNT(DISTINCT x)", "COUNT(DISTINCT x) OVER w", False),
    ("LAST_VALUE(s)", "LAST_VALUE(s IGNORE NULLS) OVER w", False),
    ("SUM(d)", "SUM(d) OVER w", False),
    ("AVG(f)", "AVG(f) OVER w", True),
    ("STDDEV(f)", "STDDEV_SAMP(f) OVER w", True),
    ("VAR_POP(x)", "VAR_POP(x) OVER w", True),
]


def make_data(seed: int, groups: int) -> pa.RecordBatch:
    rng = np.random.default_rng(seed)
    key_ids = rng.integers(0, groups, N)
    keys = pa.array([f"key-{i}" for i in key_ids], pa.string())
    keys = pc.if_else(pa.array(rng.random(N) < 0.01), pa.scalar(None, pa.string()), keys)
    x = pa.array(rng.integers(-1000, 1000, N), pa.int64(), mask=rng.random(N) < 0.1)
    f = pa.array(rng.normal(50, 20, N), pa.float64(), mask=rng.random(N) < 0.1)
    s = pa.array([f"v{i}" for i in rng.integers(0, 50, N)], pa.string(), mask=rng.random(N) < 0.2)
    cents = rng.integers(-100_000, 100_000, N)
    d = pa.array([Decimal(int(c)).scaleb(-2) for c in cents], pa.decimal128(12, 2))
    g = pa.array(rng.integers(0, 7, N), pa.int32())
    return pa.record_batch({"k": keys, "g": g, "x": x, "f": f, "s": s, "d": d})


@pytest.mark.parametrize(("seed", "groups"), [(1, 5_000), (2, 40_000)])
@pytest.mark.parametrize("where", [None, "x IS NULL OR x > -500"])
def test_many_groups_many_batches(seed: int, groups: int, where: str | None) -> None:
    batch = make_data(seed, groups)
    rng = np.random.default_rng(seed + 100)
    cuts = sorted(rng.integers(0, N, 6).tolist())
    bounds = [0, *cuts, N]

    select = ", ".join(f"{v} AS a{i}" for i, (v, _, _) in enumerate(AGGS))
    sql = f"SELECT k, g, {select} FROM t"
    if where:
        sql += f" WHERE {where}"
    sql += " GROUP BY g, k"
    query = vs.compile(sql)
    outs = [query.process(batch.slice(lo, hi - lo)) for lo, hi in itertools.pairwise(bounds)]
    outs.append(query.flush())
    got = pa.Table.from_batches(outs)

    table = pa.Table.from_batches([batch]).append_column("rn", pa.array(np.arange(N)))
    duck_select = ", ".join(f"{d} AS a{i}" for i, (_, d, _) in enumerate(AGGS))
    inner = f"SELECT * FROM t WHERE {where}" if where else "SELECT * FROM t"
    con = duckdb.connect()
    con.register("t", table)
    try:
        want = con.sql(
            f"SELECT k, g, {duck_select} FROM ({inner}) AS t WINDOW w AS (PARTITION BY g, k "
            "ORDER BY rn ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) ORDER BY rn"
        ).to_arrow_table()
        distinct_keys = con.sql(
            f"SELECT COUNT(*) FROM (SELECT DISTINCT g, k FROM ({inner}))"
        ).fetchall()[0][0]
    finally:
        con.close()

    assert got.num_rows == want.num_rows, sql
    for name in ("k", "g"):
        assert got.column(name).to_pylist() == want.column(name).to_pylist(), name
    for i, (vs_agg, _, is_float) in enumerate(AGGS):
        g, w = got.column(f"a{i}"), want.column(f"a{i}")
        assert g.null_count == w.null_count, vs_agg
        if is_float:
            gv = g.to_numpy(zero_copy_only=False).astype(float)
            wv = w.to_numpy(zero_copy_only=False).astype(float)
            both = ~np.isnan(wv)
            assert np.array_equal(np.isnan(gv), ~both), vs_agg
            close = np.isclose(gv[both], wv[both], rtol=1e-9, atol=1e-9)
            first_bad = None if close.all() else int(np.flatnonzero(both)[~close][0])
            assert first_bad is None, (vs_agg, first_bad, gv[first_bad], wv[first_bad])
        else:
            gl, wl = g.to_pylist(), w.to_pylist()
            if gl != wl:
                bad = next(j for j, (a, b) in enumerate(zip(gl, wl, strict=True)) if a != b)
                pytest.fail(f"{vs_agg}: row {bad}: velostream {gl[bad]!r}, duckdb {wl[bad]!r}")
    metrics = query.metrics()
    assert metrics["state_groups"] == distinct_keys
    assert metrics["records_in"] == N
    assert metrics["records_out"] == got.num_rows
