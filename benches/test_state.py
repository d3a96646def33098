"""The cost of keeping state between batches, and state bytes per group (SPEC section 10).

1 M records through the direct path as one batch vs as 10 K-row batches: a processor that
keeps its state in place between calls costs (almost) nothing per batch.
"""

from __future__ import annotations

from typing import Any

import pytest

from conftest import (
    BATCH_SIZE,
    RECORDS,
    RESULTS,
    batches,
    compile_workload,
    feed,
    fresh_run,
    interleaved_best,
    record_rate,
    record_value,
    tables,
)
from velostream.bench import WORKLOADS


@pytest.mark.parametrize("mode", ["one_batch", "batched"])
def test_state_between_batches(benchmark: Any, workload: str, mode: str) -> None:
    benchmark.group = f"state:{workload}"
    size = RECORDS if mode == "one_batch" else BATCH_SIZE
    data = batches(workload, RECORDS, size)
    assert len(data) == (1 if mode == "one_batch" else RECORDS // BATCH_SIZE)
    benchmark.pedantic(
        feed,
        setup=fresh_run(WORKLOADS[workload].sql, data, joined=tables(workload)),
        rounds=20,
        warmup_rounds=2,
        iterations=1,
    )
    record_rate(benchmark, ("state", workload, mode), RECORDS)


def test_state_cost_interleaved(benchmark: Any, workload: str) -> None:
    """Same comparison, the two modes alternating round by round (robust to machine load).

    The summary reports this figure as the cost; the timed pedantic call is the whole
    interleaved measurement, its time is not a rate.
    """
    benchmark.group = f"state:{workload}"
    one = batches(workload, RECORDS, RECORDS)
    many = batches(workload, RECORDS, BATCH_SIZE)
    best: dict[str, float] = {}

    def measure() -> None:
        best.update(
            interleaved_best(
                {
                    "one_batch": (lambda: compile_workload(workload), lambda q: feed(q, one)),
                    "batched": (lambda: compile_workload(workload), lambda q: feed(q, many)),
                },
                rounds=15,
            )
        )

    benchmark.pedantic(measure, rounds=1, iterations=1)
    one_rps, many_rps = RECORDS / best["one_batch"], RECORDS / best["batched"]
    cost = (one_rps / many_rps - 1) * 100
    benchmark.extra_info.update(
        one_batch_records_per_s=one_rps, batched_records_per_s=many_rps, cost_percent=cost
    )
    RESULTS[("state_interleaved", workload, "one_batch")] = one_rps
    RESULTS[("state_interleaved", workload, "batched")] = many_rps


def test_group_by_state_bytes(benchmark: Any) -> None:
    workload = "group_by_continuous"  # 10 K distinct short string keys, count/sum/avg
    benchmark.group = "state:bytes_per_group"
    data = batches(workload, RECORDS, BATCH_SIZE)
    query = benchmark.pedantic(
        feed,
        setup=fresh_run(WORKLOADS[workload].sql, data),
        rounds=1,
        iterations=1,
    )
    metrics = query.metrics()
    groups, state_bytes = metrics["state_groups"], metrics["state_bytes"]
    assert groups == 10_000
    benchmark.extra_info["state_groups"] = groups
    benchmark.extra_info["state_bytes"] = state_bytes
    record_value(
        benchmark, ("state_bytes_per_group", workload), "bytes_per_group", state_bytes / groups
    )
    record_rate(benchmark, ("state_bytes_run", workload), RECORDS)
