"""`velostream bench`: the old-vs-direct comparison from the command line (SPEC section 3)."""

import json
import subprocess
import sys

import pyarrow.compute as pc

from velostream.bench import (
    SECTORS,
    WORKLOADS,
    check_same_output,
    make_instruments,
    workload_data,
    workload_tables,
)


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "velostream", "bench", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_bench_json_has_the_specified_shape_for_every_workload_so_far() -> None:
    done = _bench("--records", "20000", "--legacy-records", "500", "--format", "json")
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert set(results) == {
        "select_where",
        "group_by_continuous",
        "tumbling_window",
        "stream_table_join",
    }
    for figures in results.values():
        assert set(figures) == {"direct_rps", "legacy_rps", "ratio"}
        assert all(isinstance(v, float) and v > 0 for v in figures.values())
        assert (
            abs(figures["ratio"] - figures["direct_rps"] / figures["legacy_rps"])
            < 1e-6 * figures["ratio"]
        )


def test_bench_table_names_each_workload() -> None:
    done = _bench(
        "--records", "5000", "--legacy-records", "200", "--workload", "group_by_continuous"
    )
    assert done.returncode == 0, done.stderr
    assert "group_by_continuous" in done.stdout
    assert "select_where" not in done.stdout
    assert "legacy rec/s" in done.stdout


def test_bench_rejects_an_unknown_workload() -> None:
    done = _bench("--records", "1000", "--workload", "nope")
    assert done.returncode == 2
    assert "nope" in done.stderr


def test_bench_stream_table_join_alone() -> None:
    done = _bench("--records", "5000", "--legacy-records", "500", "--workload", "stream_table_join")
    assert done.returncode == 0, done.stderr
    assert "stream_table_join" in done.stdout
    assert "select_where" not in done.stdout


def test_join_workload_joins_every_trade_to_its_instrument_on_both_paths() -> None:
    instruments = workload_tables("stream_table_join")["instruments"]
    assert instruments.num_rows == 100_000
    assert pc.count_distinct(instruments["symbol"]).as_py() == 100_000
    assert instruments.equals(make_instruments(100_000))  # seeded: the same every time
    trades = workload_data("stream_table_join", 3_000)
    out = check_same_output(
        WORKLOADS["stream_table_join"].sql, trades, tables={"instruments": instruments}
    )
    assert out.column_names == ["symbol", "notional", "sector", "lot"]
    assert out.num_rows == trades.num_rows  # every symbol has its instrument
    assert out["symbol"].equals(trades["symbol"])
    by_symbol = dict(
        zip(
            instruments["symbol"].to_pylist(),
            zip(instruments["sector"].to_pylist(), instruments["lot"].to_pylist(), strict=True),
            strict=True,
        )
    )
    expected = [by_symbol[s] for s in trades["symbol"].to_pylist()]
    assert list(zip(out["sector"].to_pylist(), out["lot"].to_pylist(), strict=True)) == expected
    assert set(out["sector"].to_pylist()) <= set(SECTORS)
