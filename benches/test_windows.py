"""Event-time windows beyond the ``velostream bench`` workload (SPEC section 10).

- SLIDING EMIT FINAL with size = 10 x advance over 1 000 symbols (each record updates 10
  windows), SESSION EMIT FINAL over 10 000 keys, windowed EMIT CHANGES over 1 000 symbols:
  records/s of the direct path on 1 M trades in 10 K-row batches.
- Memory over a long run: 10 M and 50 M records through one-second tumbling windows, each
  run in its own process; peak RSS must be flat (closed windows are freed).

The tumbling EMIT FINAL workload, with DuckDB and Polars timed beside it, is in
test_paths.py (it is a ``velostream bench`` workload).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from conftest import BATCH_SIZE, RECORDS, RESULTS, feed, fresh_run, record_rate, record_value
from velostream.bench import make_trades

TIME = "WITH ('event.time.field' = 'ts', 'watermark.max_out_of_orderness' = '100ms')"

#: name -> (SQL, distinct keys, SPEC section 10 target records/s).
WINDOWS: dict[str, tuple[str, int, float]] = {
    "sliding_final": (
        "SELECT symbol, COUNT(*) AS n, SUM(qty) AS total, AVG(price) AS avg_price "
        f"FROM trades GROUP BY symbol WINDOW SLIDING(10s, 1s) EMIT FINAL {TIME}",
        1_000,
        10e6,
    ),
    "session_final": (
        "SELECT symbol, COUNT(*) AS n, SUM(qty) AS total, AVG(price) AS avg_price "
        f"FROM trades GROUP BY symbol WINDOW SESSION(2s) EMIT FINAL {TIME}",
        10_000,
        15e6,
    ),
    "tumbling_changes": (
        "SELECT symbol, COUNT(*) AS n, SUM(qty) AS total, AVG(price) AS avg_price "
        f"FROM trades GROUP BY symbol WINDOW TUMBLING(1s) EMIT CHANGES {TIME}",
        1_000,
        20e6,
    ),
}


@pytest.mark.parametrize("name", list(WINDOWS))
def test_window(benchmark: Any, name: str) -> None:
    sql, keys, _ = WINDOWS[name]
    benchmark.group = f"windows:{name}"
    table = make_trades(RECORDS, symbols=keys, event_times=True)
    data = table.combine_chunks().to_batches(max_chunksize=BATCH_SIZE)
    query = benchmark.pedantic(
        feed, setup=fresh_run(sql, data), rounds=10, warmup_rounds=1, iterations=1
    )
    assert query.metrics()["late_dropped"] == 0
    assert query.metrics()["state_groups"] == 0  # flush closed every window
    RESULTS[("window_target", name)] = WINDOWS[name][2]
    record_rate(benchmark, ("window", name), RECORDS)


# One run of `records` trades through one-second windows, printing its peak RSS (bytes).
_LONG_RUN = textwrap.dedent(
    """
    import json, sys
    import numpy as np, pyarrow as pa
    import velostream as vs
    from velostream.bench import make_trades

    records, batch = int(sys.argv[1]), 100_000
    sql = (
        "SELECT symbol, COUNT(*) AS n, SUM(qty) AS total, AVG(price) AS avg_price "
        "FROM trades GROUP BY symbol WINDOW TUMBLING(1s) EMIT FINAL "
        "WITH ('event.time.field' = 'ts', 'watermark.max_out_of_orderness' = '100ms')"
    )
    template = make_trades(batch, symbols=1_000, event_times=True).combine_chunks()
    first = template.column("ts").to_numpy()
    query, rows, max_groups = vs.compile(sql), 0, 0
    for start in range(0, records, batch):
        # The same trades, later: every batch moves event time 10 s on (10 per ms).
        shifted = pa.array(first + start // 10)
        data = template.set_column(template.schema.get_field_index("ts"), "ts", shifted)
        rows += query.process(data.to_batches()[0]).num_rows
        max_groups = max(max_groups, query.metrics()["state_groups"])
    rows += query.flush().num_rows
    # VmHWM: this process's own peak (ru_maxrss would carry the forking parent's over
    # the exec, and the benchmark suite holds gigabytes of data).
    with open("/proc/self/status") as status:
        peak = next(int(l.split()[1]) * 1024 for l in status if l.startswith("VmHWM:"))
    print(json.dumps({"records": records, "rows": rows, "peak_rss": peak, "max_groups": max_groups}))
    """
)


def _long_run(records: int) -> dict[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", _LONG_RUN, str(records)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def test_window_memory_is_flat(benchmark: Any) -> None:
    """Peak RSS after 10 M and after 50 M records through 1-second windows."""
    benchmark.group = "windows:memory"
    runs: dict[int, dict[str, int]] = {}

    def measure() -> None:
        for records in (10_000_000, 50_000_000):
            runs[records] = _long_run(records)

    benchmark.pedantic(measure, rounds=1, iterations=1)
    small, large = runs[10_000_000], runs[50_000_000]
    for records, run in runs.items():
        record_value(
            benchmark, ("window_rss", str(records)), f"peak_rss_{records}", run["peak_rss"]
        )
    RESULTS[("window_rss_groups",)] = max(small["max_groups"], large["max_groups"])
    # Closed windows are freed: five times the records, (almost) the same memory.
    assert large["peak_rss"] <= small["peak_rss"] * 1.1, runs
