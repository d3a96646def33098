"""A sink behind retries and a circuit breaker, as the runtime writes to it (SPEC section 7).

Every write and flush of a sink goes through the sink's :class:`CircuitBreaker` (in
``"wait"`` mode: a sink that keeps failing is left alone until its trial is due, nothing
spins and nothing is dropped) and :func:`retry_call` (transient errors retried with
exponential backoff, counted). A sink's ``write`` takes the whole batch even when it
fails (a file sink keeps the unwritten rest, a Kafka sink has queued the messages), so
after a transient failure of a write it is the *flush* that is retried: the rows are not
written twice. When the retry budget is spent the run fails with a ``SinkError`` and
nothing more is committed (a restart re-reads: at-least-once).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

import pyarrow as pa

from velostream.io.base import Sink
from velostream.runtime.resilience import (
    CircuitBreaker,
    RetryEvent,
    RetryPolicy,
    RetryStats,
    is_transient_error,
    retry_call,
)

logger = logging.getLogger("velostream.runtime")


class GuardedSink:
    """Wraps a sink: writes and flushes retried and behind a circuit breaker.

    Attributes:
        sink: the wrapped sink.
        breaker: its circuit breaker.
        stats: retries counted (shared by a statement's sinks and sources).
    """

    def __init__(
        self,
        sink: Sink,
        properties: Mapping[str, str],
        *,
        stats: RetryStats,
        abort: threading.Event | None = None,
    ) -> None:
        """Guard ``sink`` with the statement's ``retry.*`` and ``circuit.breaker.*`` keys.

        Args:
            sink: the sink.
            properties: the statement's properties.
            stats: where retries are counted.
            abort: set when the run fails: ends waits for a retry or for the breaker.
        """
        self.sink = sink
        self.name = sink.name
        self.policy = RetryPolicy.from_properties(properties)
        self.breaker = CircuitBreaker.from_properties(
            sink.name, properties, when_open="wait", stop_event=abort
        )
        self.stats = stats
        self._abort = abort

    def _on_retry(self, event: RetryEvent) -> None:
        logger.warning(
            "sink %r: attempt %d failed (%s); retrying in %.2fs",
            self.name,
            event.attempt,
            event.error,
            event.delay,
        )

    def _retry_flush(self) -> None:
        retry_call(
            lambda: self.breaker.call(self.sink.flush),
            policy=self.policy,
            kind="sink",
            name=self.name,
            on_retry=self._on_retry,
            stop_event=self._abort,
            stats=self.stats,
        )

    def write(self, batch: pa.RecordBatch) -> None:
        """Write ``batch``; after a transient failure, retry the flush of its rest."""
        try:
            self.breaker.call(lambda: self.sink.write(batch))
        except Exception as exc:
            if not is_transient_error(exc):
                raise
            logger.warning("sink %r: write failed (%s); retrying", self.name, exc)
            self.stats.add(retries=1)
            self._retry_flush()

    def flush(self) -> None:
        """Make everything written durable, retrying transient failures."""
        self._retry_flush()

    def describe(self) -> str:
        """The sink's description."""
        return self.sink.describe()

    def metrics(self) -> dict[str, int]:
        """The sink's counters, with the breaker's openings."""
        return {**self.sink.metrics(), "circuit_opens": self.breaker.metrics().opens}

    def close(self) -> None:
        """Close the sink."""
        self.sink.close()
