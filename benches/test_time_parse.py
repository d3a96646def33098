"""Event-time parsing (issue 10): velostream's Rust kernels beside pyarrow's own parsing.

Part of ``pytest benches --benchmark-only``; alone::

    pytest benches/test_time_parse.py --benchmark-only

1 M values per case, the same array for both sides, results checked equal before timing:

- ISO 8601 strings ``YYYY-MM-DDTHH:MM:SS.fffZ`` and ``...+05:30``: ``parse_timestamps(a,
  "iso8601")`` vs ``pyarrow.compute.cast(a, pa.timestamp("ms", tz="UTC"))``;
- epoch millis ``Int64``: ``parse_timestamps(a, "epoch_millis")`` vs ``a.cast(timestamp[ms])``;
- epoch seconds ``Int64``: ``parse_timestamps(a, "epoch_seconds")`` vs
  ``a.cast(timestamp[s]).cast(timestamp[ms])`` (a checked multiply);
- epoch millis as numeric strings: ``parse_timestamps(a, "epoch_millis")`` vs
  ``pyarrow.compute.cast(a, pa.int64())``.

Both sides run one thread per call (pyarrow's casts are single-threaded kernels), so the
rates are per core. Each benchmark stores ``values_per_s`` in ``extra_info``; a summary of
values/s is printed at the end of the module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from conftest import RESULTS, record_rate
from velostream.time import parse_timestamps

VALUES = 1_000_000
#: 2023-01-01T00:00:00Z, and a spread of three years.
START_MS = 1_672_531_200_000
SPAN_MS = 3 * 365 * 86_400_000
OFFSET_MS = (5 * 60 + 30) * 60_000


def _millis() -> np.ndarray:
    rng = np.random.default_rng(10)
    return START_MS + rng.integers(0, SPAN_MS, VALUES, dtype=np.int64)


def _iso(millis: np.ndarray, *, offset_ms: int, suffix: str) -> pa.Array:
    local = (millis + offset_ms).astype("datetime64[ms]")
    return pa.array(np.char.add(np.datetime_as_string(local, unit="ms"), suffix).tolist())


def _cases() -> dict[str, tuple[pa.Array, str, Callable[[pa.Array], pa.Array]]]:
    millis = _millis()
    to_utc_ms = pa.timestamp("ms", tz="UTC")
    return {
        "iso8601 Z": (
            _iso(millis, offset_ms=0, suffix="Z"),
            "iso8601",
            lambda a: pc.cast(a, to_utc_ms),
        ),
        "iso8601 +05:30": (
            _iso(millis, offset_ms=OFFSET_MS, suffix="+05:30"),
            "iso8601",
            lambda a: pc.cast(a, to_utc_ms),
        ),
        "epoch_millis int64": (
            pa.array(millis),
            "epoch_millis",
            lambda a: a.cast(pa.timestamp("ms")),
        ),
        "epoch_seconds int64": (
            pa.array(millis // 1000),
            "epoch_seconds",
            lambda a: a.cast(pa.timestamp("s")).cast(pa.timestamp("ms")),
        ),
        "epoch_millis strings": (
            pa.array(millis.astype(str).tolist()),
            "epoch_millis",
            lambda a: pc.cast(a, pa.int64()),
        ),
    }


CASES = _cases()


@pytest.fixture(scope="module", autouse=True)
def _summary(pytestconfig: pytest.Config) -> Iterator[None]:
    """Print values/s of both sides per case once the module's benchmarks have run."""
    yield
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
    rows = [key for key in RESULTS if key[0] == "time_parse"]
    if reporter is None or capture is None or not rows:
        return
    lines = ["", "event-time parsing, best round, values/s (1 M values, one thread):"]
    for case in CASES:
        ours = RESULTS.get(("time_parse", case, "velostream"))
        theirs = RESULTS.get(("time_parse", case, "pyarrow"))
        ratio = f"  velostream / pyarrow = {ours / theirs:.2f}" if ours and theirs else ""
        lines.append(f"  {case:<22} velostream {_fmt(ours)}  pyarrow {_fmt(theirs)}{ratio}")
    with capture.global_and_fixture_disabled():  # teardown output is captured otherwise
        for line in lines:
            reporter.write_line(line)


def _fmt(rate: float | None) -> str:
    return "-" if rate is None else f"{rate / 1e6:8.1f} M/s"


def _record(benchmark: Any, case: str, side: str) -> None:
    rate = record_rate(benchmark, ("time_parse", case, side), VALUES)
    if rate is not None:
        benchmark.extra_info["values_per_s"] = rate


@pytest.mark.parametrize("case", list(CASES))
def test_velostream(benchmark: Any, case: str) -> None:
    values, format, peer = CASES[case]
    expected = peer(values).cast(pa.int64()).to_pylist()
    assert parse_timestamps(values, format).to_pylist() == expected
    benchmark.group = f"time_parse:{case}"
    benchmark.pedantic(parse_timestamps, args=(values, format), rounds=50, warmup_rounds=2)
    _record(benchmark, case, "velostream")


@pytest.mark.parametrize("case", list(CASES))
def test_pyarrow(benchmark: Any, case: str) -> None:
    values, _, peer = CASES[case]
    benchmark.group = f"time_parse:{case}"
    benchmark.pedantic(peer, args=(values,), rounds=50, warmup_rounds=2)
    _record(benchmark, case, "pyarrow")
