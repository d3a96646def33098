"""Sinks behind retries and a circuit breaker: transient failures retried, nothing twice."""

from __future__ import annotations

import errno
import json
import threading

import pyarrow as pa
import pytest

from velostream.errors import SinkError
from velostream.io.file_sink import FileSink
from velostream.runtime.guarded import GuardedSink
from velostream.runtime.resilience import CircuitState, RetryStats

FAST = {"retry.backoff.initial": "1ms", "retry.backoff.max": "5ms"}


def batch(start: int, n: int) -> pa.RecordBatch:
    return pa.record_batch({"n": list(range(start, start + n))})


def test_a_file_sink_keeps_what_a_failed_write_left_and_a_flush_writes_it_once(tmp_path) -> None:
    sink = FileSink("out", tmp_path / "out.jsonl")
    sink.write(batch(0, 3))
    real = sink._file
    sink._file = open("/dev/full", "wb", buffering=0)  # every write: ENOSPC
    with pytest.raises(SinkError) as info:
        sink.write(batch(3, 3))
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.ENOSPC
    sink._file.close()
    sink._file = real  # space is back
    sink.flush()
    sink.close()
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert [json.loads(line)["n"] for line in lines] == list(range(6))


class FlakySink:
    """A sink whose device is full for its first ``failures`` calls (it keeps the rows)."""

    name = "flaky"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.pending: list[int] = []
        self.rows: list[int] = []

    def _fail_maybe(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise SinkError("disk full", sink=self.name) from OSError(errno.ENOSPC, "full")
        self.rows += self.pending
        self.pending = []

    def write(self, b: pa.RecordBatch) -> None:
        self.pending += b.column("n").to_pylist()
        self._fail_maybe()

    def flush(self) -> None:
        self._fail_maybe()

    def describe(self) -> str:
        return "flaky"

    def metrics(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        pass


def test_a_transient_sink_failure_is_retried_and_counted_without_writing_twice() -> None:
    flaky = FlakySink(failures=3)
    stats = RetryStats()
    sink = GuardedSink(flaky, FAST, stats=stats)
    sink.write(batch(0, 4))
    assert flaky.rows == [0, 1, 2, 3]
    assert stats.retries == 3


def test_a_sink_that_keeps_failing_opens_the_breaker_and_the_run_fails_with_a_sink_error() -> None:
    flaky = FlakySink(failures=1000)
    props = {
        **FAST,
        "retry.max.attempts": "4",
        "circuit.breaker.failure.threshold": "2",
        "circuit.breaker.reset.timeout": "10ms",
    }
    sink = GuardedSink(flaky, props, stats=RetryStats(), abort=threading.Event())
    with pytest.raises(SinkError, match="gave up after 4 attempt"):
        sink.flush()
    assert sink.breaker.metrics().opens >= 1
    assert sink.breaker.state is not CircuitState.CLOSED


def test_a_permanent_sink_error_is_not_retried() -> None:
    class Broken(FlakySink):
        def flush(self) -> None:
            self.calls += 1
            raise SinkError("the topic is not authorised", sink=self.name)

    broken = Broken(failures=0)
    stats = RetryStats()
    with pytest.raises(SinkError, match="not authorised"):
        GuardedSink(broken, FAST, stats=stats).flush()
    assert broken.calls == 1 and stats.retries == 0
