"""Scaling from 10 K to 10 M records, direct path in 10 K-row batches (SPEC section 10).

Records/s should stay within ±20 % across sizes: no per-batch cost that grows with the
state, no super-linear state growth.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import velostream as vs
from conftest import (
    BATCH_SIZE,
    RESULTS,
    batches,
    compile_workload,
    feed,
    fresh_run,
    interleaved_best,
    record_rate,
    tables,
)
from velostream.bench import WORKLOADS

SIZES = [10_000, 100_000, 1_000_000, 10_000_000]


@pytest.mark.parametrize("records", SIZES, ids=lambda n: f"{n:_}")
def test_scaling(benchmark: Any, workload: str, records: int) -> None:
    benchmark.group = f"scaling:{workload}"
    data = batches(workload, records, BATCH_SIZE)
    benchmark.pedantic(
        feed,
        setup=fresh_run(WORKLOADS[workload].sql, data, joined=tables(workload)),
        rounds=max(5, min(100, 20_000_000 // records)),
        warmup_rounds=1,
        iterations=1,
    )
    record_rate(benchmark, ("scaling", workload, str(records)), records)


def test_scaling_interleaved(benchmark: Any, workload: str) -> None:
    """All sizes alternating round by round (robust to machine load); the summary's figure.

    Small sizes repeat within a round so each timed slice is long enough to measure, and
    each repeat reads *other* records (consecutive slices of one 10 M-record table), as a
    stream does: repeating the same 10 K records would keep them in the CPU cache and
    measure the cache, not the engine (``test_scaling`` above shows that effect).
    """
    benchmark.group = f"scaling:{workload}"
    stream = batches(workload, max(SIZES), BATCH_SIZE)
    repeats = {n: max(1, 1_000_000 // n) for n in SIZES}

    def slices(n: int) -> list[list[Any]]:
        per_run = n // BATCH_SIZE
        return [stream[k * per_run : (k + 1) * per_run] for k in range(repeats[n])]

    data = {n: slices(n) for n in SIZES}

    def run(n: int) -> Callable[[list[vs.Query]], None]:
        def timed(queries: list[vs.Query]) -> None:
            for q, part in zip(queries, data[n], strict=True):
                feed(q, part)

        return timed

    def setup(n: int) -> Callable[[], list[vs.Query]]:
        return lambda: [compile_workload(workload) for _ in range(repeats[n])]

    best: dict[str, float] = {}
    benchmark.pedantic(
        lambda: best.update(
            interleaved_best({str(n): (setup(n), run(n)) for n in SIZES}, rounds=5)
        ),
        rounds=1,
        iterations=1,
    )
    for n in SIZES:
        rate = n * repeats[n] / best[str(n)]
        benchmark.extra_info[f"records_per_s_{n}"] = rate
        RESULTS[("scaling_interleaved", workload, str(n))] = rate
