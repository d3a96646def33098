"""Running statements: a source feeds a query, whose output goes to every sink.

A :class:`StatementRunner` owns one compiled query, its sinks (fan-out: every sink gets
every output row) and the statements that read its output in-process (a stream of the
application used in another statement's ``FROM``). Batches are pushed: a source thread
calls :meth:`StatementRunner.push`, which runs the query on the whole batch (one call into
Rust) and writes the output to the sinks, then pushes it on downstream. Each runner has a
lock, taken in dependency order, so several source threads can feed one graph.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from velostream.errors import EventTimeError, InternalError
from velostream.io.bad_records import BadRecordPolicy, DeadLetterWriter
from velostream.io.base import Sink, Source
from velostream.runtime.report import StatementReport


def _located(error: EventTimeError, source: Source | None) -> EventTimeError:
    """``error`` with the file and line of its record, when the source knows them."""
    locate = getattr(source, "locate", None)
    where = locate(error.row) if locate is not None and error.row is not None else None
    if where is None:
        return error
    return EventTimeError(
        f"{where}: {error.message}",
        kind=error.kind,
        field=error.field,
        value=error.value,
        format=error.format,
        available_fields=error.available_fields,
        row=error.row,
    )


class StatementRunner:
    """Runs one compiled query and fans its output out.

    Attributes:
        name: the statement name.
        query: the compiled :class:`velostream.query.Query`.
        sinks: where every output batch is written.
        downstream: runners reading this statement's output.
        sources: the external sources feeding it (for counters).
        bad_records: the statement's bad-record policy (its count is the error count).
        dead_letters: where the records its query routes to the dead letters go (late
            records, unreadable event time), with their reason.

    """

    def __init__(
        self,
        name: str,
        query: Any,
        sinks: Sequence[Sink],
        *,
        sources: Sequence[Source] = (),
        bad_records: BadRecordPolicy | None = None,
        dead_letters: DeadLetterWriter | None = None,
    ) -> None:
        """Create the runner; downstream runners are added to :attr:`downstream`."""
        self.dead_letters = dead_letters
        self.name = name
        self.query = query
        self.sinks = list(sinks)
        self.sources = list(sources)
        self.bad_records = bad_records
        self.downstream: list[StatementRunner] = []
        self.records_in = 0
        self.records_out = 0
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self._lock = threading.Lock()
        self._finished = False

    def mark_started(self, at: float | None = None) -> None:
        """Record when this statement's input began (its first source starting to read).

        The statements reading its output start then too, unless they started earlier.

        Args:
            at: a :func:`time.monotonic` time (default: now).
        """
        at = time.monotonic() if at is None else at
        if self.started_at is None or at < self.started_at:
            self.started_at = at
            for runner in self.downstream:
                runner.mark_started(at)

    def push(self, batch: pa.RecordBatch, source: Source | None = None) -> None:
        """Process one input batch and emit its output to the sinks and downstream.

        Args:
            batch: the records.
            source: the source that read them, which can tell where a record came from
                (an event-time error then names the file and line).
        """
        if batch.num_rows == 0:
            return
        with self._lock:
            first = self.records_in
            self.records_in += batch.num_rows
            try:
                output = self.query.process(batch)
            except EventTimeError as error:
                raise _located(error, source) from None
            self._emit(output)
            self._route_dead_letters(first)

    def _route_dead_letters(self, first: int) -> None:
        """Write what the query routed to its dead letters (records after ``first``)."""
        routed = self.query.dead_letters()
        if routed.num_rows == 0:
            return
        if self.dead_letters is None:  # the application checks this before running
            raise InternalError(
                f"statement {self.name!r} routes records to dead letters it has no destination for",
                component="runtime",
            )
        records = routed.column("record").to_pylist()
        self.dead_letters.write(
            self.name,
            [f"statement {self.name}, after input record {first:,}"] * len(records),
            routed.column("reason").to_pylist(),
            [record.encode() for record in records],
        )

    def _emit(self, output: pa.RecordBatch) -> None:
        if output.num_rows == 0:
            return
        self.records_out += output.num_rows
        for sink in self.sinks:
            sink.write(output)
        for runner in self.downstream:
            runner.push(output)

    def finish(self) -> None:
        """End of input: flush the query, emit what is left, flush the sinks."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
            output = self.query.flush()
            self._emit(output)
            self._route_dead_letters(self.records_in)
            if output.num_columns > 0:
                # An empty batch still gives a CSV sink its header row.
                for sink in self.sinks:
                    sink.write(output.slice(0, 0))
            for sink in self.sinks:
                sink.flush()
            self.finished_at = time.monotonic()

    def close(self) -> None:
        """Close the sinks and sources (idempotent for file connectors)."""
        for sink in self.sinks:
            sink.close()
        for source in self.sources:
            source.close()

    def report(self, started_at: float) -> StatementReport:
        """Counters of this statement, timed from its start to its flush.

        Args:
            started_at: the run's start (a :func:`time.monotonic` time), used when the
                statement never started; its end is now when it never finished.
        """
        start = self.started_at if self.started_at is not None else started_at
        end = self.finished_at if self.finished_at is not None else time.monotonic()
        return StatementReport(
            name=self.name,
            records_in=self.records_in,
            records_out=self.records_out,
            errors=self.bad_records.count if self.bad_records is not None else 0,
            late_dropped=int(self.query.metrics().get("late_dropped", 0)),
            dead_lettered=int(self.query.metrics().get("dead_lettered", 0)),
            duration=max(0.0, end - start),
            sources={s.name: s.metrics() for s in self.sources},
            sinks={s.name: s.metrics() for s in self.sinks},
        )


def run_source(
    source: Source,
    runner: StatementRunner,
    *,
    until_end: bool,
    stop: threading.Event,
) -> None:
    """Read ``source`` to its end (or until ``stop``), pushing every batch into ``runner``."""
    for batch in source.batches(until_end=until_end, stop=stop):
        runner.push(batch, source)
        if stop.is_set():
            return
