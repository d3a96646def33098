"""End to end on Kafka under pytest-benchmark: velostream and its peers on one broker.

The harness of ``benches/kafka_e2e.py`` (its docstring says what each contender does and
how it is checked), one test per contender, one round each: the input topic (1 M trades
by default, ``VELOSTREAM_KAFKA_RECORDS`` to change) is written once per module, each
contender gets a fresh output topic and consumer group, and the timed part is the
contender's process from start to exit. ``extra_info`` keeps the wall, span and inner
rates and the ratios to the bare confluent-kafka loop; a contender that cannot run here
(velostream without its Kafka source, Quix Streams without its venv) is skipped with the
reason, and a wrong output fails the test.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("orjson", reason="the bare loops decode with orjson: pip install -e '.[bench]'")

from conftest import record_rate, record_value
from kafka_e2e import BASELINE, CONTENDERS, DEFAULT_QUIX_PYTHON, KafkaE2E, Run

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "kafka"))
from kafka_support import start_broker

RECORDS = int(os.environ.get("VELOSTREAM_KAFKA_RECORDS", "1000000"))
#: The baseline first: every ratio is taken against it.
ORDER = [BASELINE, *(name for name in CONTENDERS if name != BASELINE)]


@pytest.fixture(scope="module")
def e2e() -> Iterator[KafkaE2E]:
    with start_broker() as broker:
        bench = KafkaE2E(
            broker,
            RECORDS,
            quix_python=os.environ.get("VELOSTREAM_QUIX_PYTHON", str(DEFAULT_QUIX_PYTHON)),
        )
        try:
            yield bench
        finally:
            bench.close()


@pytest.mark.parametrize("contender", ORDER)
def test_kafka_e2e(benchmark: Any, e2e: KafkaE2E, contender: str) -> None:
    benchmark.group = "kafka_e2e"
    runs: list[Run] = []

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        runs.append(e2e.prepare(contender))
        return (runs[-1],), {}

    benchmark.pedantic(e2e.execute, setup=setup, rounds=1, iterations=1)
    result = e2e.finish(runs[-1])
    benchmark.extra_info.update(
        status=result.status,
        records_out=result.records_out,
        expected_out=result.expected_out,
        wall_records_per_s=result.wall_rps,
        span_records_per_s=result.span_rps,
        inner_records_per_s=result.inner_rps,
        steady_records_per_s=result.steady_rps,
        steady_from=result.steady_from,
        ratio_to_bare_wall=result.ratio_wall,
        ratio_to_bare_steady=result.ratio_steady,
    )
    if result.status.startswith("not available"):
        # Only Quix Streams can be unavailable: it runs from its own venv
        # (VELOSTREAM_QUIX_PYTHON; `make bench-quix` creates it, which unskips this).
        pytest.skip(f"{contender}: {result.status} (run `make bench-quix` to install it)")
    assert result.ok, result.status
    record_rate(benchmark, ("kafka_e2e", contender), RECORDS)
    if result.steady_rps is not None:
        record_value(benchmark, ("kafka_e2e_steady", contender), "steady", result.steady_rps)
