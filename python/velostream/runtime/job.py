"""Running statements: a source feeds a query, whose output goes to every sink.

A :class:`StatementRunner` owns one compiled query, its sinks (fan-out: every sink gets
every output row) and the statements that read its output in-process (a stream of the
application used in another statement's ``FROM``). Batches are pushed: a source thread
calls :meth:`StatementRunner.push`, which runs the query on the whole batch (one call into
Rust) and writes the output to the sinks, then pushes it on downstream. Each runner has a
lock, taken in dependency order, so several source threads can feed one graph.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import pyarrow as pa

from velostream.errors import DataError, EventTimeError, InternalError, SnapshotError
from velostream.io.bad_records import BadRecordPolicy, DeadLetterWriter
from velostream.io.base import Sink, Source
from velostream.partitioned import PartitionedQuery
from velostream.query import UnionQuery
from velostream.runtime.checkpoint import HOLD_ALL, OffsetTracker
from velostream.runtime.report import StatementReport
from velostream.runtime.resilience import RetryPolicy, RetryStats, retry_call

#: Where record ``row`` of a batch came from (``path:line``), when a source can tell.
Locate = Callable[[int], "str | None"]

logger = logging.getLogger("velostream.runtime")


def _located(error: EventTimeError, locate: Locate | None) -> EventTimeError:
    """``error`` with the file and line of its record, when the source knows them."""
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


def _row_location(
    row: pa.RecordBatch, source: Source | None, index: int, locate: Locate | None
) -> str:
    """Where a one-row batch's record came from: topic/partition/offset, file:line."""
    names = row.schema.names
    if "_partition" in names and "_offset" in names:
        topic = row.column("_topic")[0].as_py() if "_topic" in names else None
        topic_text = f"topic {topic} " if topic is not None else ""
        partition, offset = row.column("_partition")[0].as_py(), row.column("_offset")[0].as_py()
        return f"{topic_text}partition {partition} offset {offset}"
    where = locate(index) if locate is not None else None
    name = source.name if source is not None else "input"
    return where or f"{name} record {index + 1} of its batch"


def _row_json(row: pa.RecordBatch) -> bytes:
    """A one-row batch as its JSON line (the record as the query saw it)."""
    from velostream.io import _codec

    return _codec.encode_json(row).rstrip(b"\n")


def _lag(sources: Sequence[Source]) -> int | None:
    """The consumer lag of the sources that know theirs (None: none does)."""
    lags = [lag() for s in sources if (lag := getattr(s, "lag", None)) is not None]
    known = [x for x in lags if x is not None]
    return sum(known) if known else None


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
        #: The earliest row time its query still holds open (see ``Query.take_progress``).
        self.held: int | None = None
        #: The positions of its input batches until they are committed.
        self.tracker = OffsetTracker()
        #: Retries of its sources' and sinks' calls.
        self.retries = RetryStats()
        self.retry_policy = RetryPolicy()
        self.abort: threading.Event | None = None
        #: Called by each reader before it reads (with the run's stop event): a
        #: statement joining tables waits there until they are READY.
        self.gate: Callable[[threading.Event], None] | None = None
        self._gated = False
        #: The table this statement builds (``CREATE TABLE ... AS SELECT``), if any.
        self.table: Any = None
        #: Where the state of each partition is checkpointed (a
        #: :class:`~velostream.runtime.changelog.StateChangelog`), for a statement whose
        #: query keeps its state per partition; None: no changelog.
        self.changelog: Any = None
        #: Whether its source joins the consumer group in a continuous run (partitions
        #: then come and go with rebalances) instead of reading every partition.
        self.group_member = False
        #: (topic, partition) -> the offset after the last record processed.
        self.processed: dict[tuple[str, int], int] = {}
        #: Partitions whose state changed since it was last written to the changelog.
        self._dirty: set[int] = set()
        #: Their state before the end of the input was flushed (see :meth:`finish`).
        self._final: dict[int, bytes] = {}
        #: A stateless group member: records read per partition (for the report).
        self._read: dict[int, int] = {}
        self.restored_partitions = 0
        self.restore_seconds = 0.0
        #: Set once the statement finished (its input ended, its query flushed).
        self.finished = threading.Event()
        #: A repartition stage: set once its topic exists and its reader knows the
        #: source partitions (see ``Application._repartition_stage``).
        self.ready = threading.Event()

    @property
    def partitioned(self) -> bool:
        """Whether its query keeps its state per input partition."""
        return isinstance(self.query, PartitionedQuery)

    def assign(self, states: Mapping[int, bytes | None]) -> None:
        """Partitions given to this process: hold them, with their restored state.

        Raises:
            SnapshotError: a stored state is not one of this query (the statement's
                SQL changed since it was written), naming the changelog topic.
        """
        if not self.partitioned:
            return  # one query for every partition: nothing per partition to hold
        with self._lock:
            for partition, state in states.items():
                try:
                    self.query.assign(partition, state)
                except SnapshotError as exc:
                    topic = getattr(self.changelog, "topic", "its changelog")
                    raise SnapshotError(
                        f"statement {self.name!r}: the state of partition {partition} in "
                        f"{topic} cannot be restored: {exc} (if the statement's SQL changed, "
                        "run it under a new 'application.id' to start from empty state, or "
                        "delete the topic and the consumer group's offsets)"
                    ) from exc

    def revoke(self, partitions: Collection[int]) -> None:
        """Partitions given up: their state and uncommitted positions are dropped."""
        gone = set(partitions)
        with self._lock:
            if self.partitioned:
                for partition in gone:
                    self.query.revoke(partition)
            self._dirty -= gone
            for key in [k for k in self.processed if k[1] in gone]:
                del self.processed[key]
            self.tracker.forget(gone)

    def save_state(self, partitions: Collection[int] | None = None) -> None:
        """Write the state of the partitions changed since last time to the changelog.

        Waits until the broker has it; then every record processed so far is in
        durable state or in flushed output (the caller flushed the sinks first), so
        its positions may be committed.

        Every changed partition is written, not only ``partitions``: the positions of
        the input are committed together, so all of them must be covered.

        Args:
            partitions: the partitions about to be given up (None: none), logged.
        """
        if self.changelog is None:
            return
        with self._lock:
            held = set(self.query.partitions)
            chosen = self._dirty & held
            for partition in sorted(chosen):
                offsets = {k: v for k, v in self.processed.items() if k[1] == partition}
                state = self._final.get(partition)
                if state is None:
                    state = self.query.snapshot(partition)
                self.changelog.write(partition, offsets, state)
            self._dirty -= chosen
        self.changelog.flush()
        if partitions:
            logger.info(
                "%s: state of partitions %s checkpointed before they are given up",
                self.name,
                sorted(partitions),
            )
        with self._lock:
            downstream = any(r.holding() is not None for r in self.downstream)
            self.tracker.release(HOLD_ALL if downstream else None)

    def retry_source(self, call: Callable[[], None], name: str) -> None:
        """Run a call of source ``name`` (a commit), retrying transient failures."""
        retry_call(
            call,
            policy=self.retry_policy,
            kind="source",
            name=name,
            stop_event=self.abort,
            stats=self.retries,
        )

    def holding(self) -> int | None:
        """The earliest row time held open by its query or by a statement it feeds.

        A statement reading this one's output in-process holds rows derived from this
        one's input; their times are not comparable, so any state held there holds all.
        """
        held = self.held
        for runner in self.downstream:
            if runner.holding() is not None:
                return HOLD_ALL
        return held

    def expect_partitions(self, ids: list[int], input: str) -> None:
        """Partitions of input ``input`` with records to come hold its watermark back."""
        with self._lock:
            if isinstance(self.query, UnionQuery):
                self.query.expect_partitions(ids, input=input)
            else:
                self.query.expect_partitions(ids)

    def chain(self) -> list[StatementRunner]:
        """The runner and every runner reading its output, transitively (each once)."""
        seen: dict[int, StatementRunner] = {id(self): self}
        stack = list(self.downstream)
        while stack:
            runner = stack.pop()
            if id(runner) not in seen:
                seen[id(runner)] = runner
                stack.extend(runner.downstream)
        return list(seen.values())

    def flush_sinks(self) -> None:
        """Make every row written so far durable (sinks, then dead letters)."""
        with self._lock:
            for sink in self.sinks:
                sink.flush()
            if self.dead_letters is not None:
                self.dead_letters.flush()

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

    def push(
        self,
        batch: pa.RecordBatch,
        source: Source | None = None,
        positions: Sequence[tuple[str, int, int, int]] = (),
        locate: Locate | None = None,
        input: str | None = None,
    ) -> None:
        """Process one input batch and emit its output to the sinks and downstream.

        Args:
            batch: the records.
            source: the source that read them, which can tell where a record came from
                (an event-time error then names the file and line).
            positions: (topic, partition, first offset, last offset) of what the batch
                holds (bad records and tombstones included), for commits.
            locate: where a record of the batch came from (default: the source's
                ``locate``, which knows the batch it yielded last).
            input: the input the batch belongs to (default: the source's name): a
                ``UNION ALL`` runs the SELECTs that read it.
        """
        if input is None and source is not None:
            input = source.name
        if locate is None:
            locate = getattr(source, "locate", None)
        if self.gate is not None and batch.num_rows > 0 and not self._gated:
            # Rows from a statement upstream: the joined tables READY first.
            self.gate(self.abort if self.abort is not None else threading.Event())
            self._gated = True
        with self._lock:
            if batch.num_rows > 0:
                first = self.records_in
                self.records_in += batch.num_rows
                try:
                    output = self._process(batch, input)
                except EventTimeError as error:
                    raise _located(error, locate) from None
                except DataError as error:
                    output = self._isolate(batch, source, error, locate, input)
                latest, self.held = self.query.take_progress()
                self._emit(output)
                self._route_dead_letters(first)
            else:
                latest = None
            if positions and source is not None:
                self.tracker.add(source.name, positions, latest)
                if self.changelog is not None:
                    for topic, partition, _first, last in positions:
                        self.processed[(topic, partition)] = last + 1
                        self._dirty.add(partition)
                if self.group_member and not self.partitioned:
                    # One query for every partition: what each partition brought, for
                    # the report (offsets read, bad records and tombstones included).
                    for _topic, partition, first, last in positions:
                        self._read[partition] = self._read.get(partition, 0) + last - first + 1
            self.tracker.release(self.holding())

    def _process(
        self, batch: pa.RecordBatch, input: str | None
    ) -> pa.RecordBatch | list[pa.RecordBatch]:
        if isinstance(self.query, UnionQuery):
            return self.query.process(batch, input=input)
        if isinstance(self.query, PartitionedQuery):
            return self.query.process_parts(batch)  # per partition: no concatenation
        return self.query.process(batch)

    def _stateless(self) -> bool:
        plans = self.query.plan.get("union") or [self.query.plan]
        return not any(
            p.get("group_by") or p.get("aggregates") or p.get("window") or p.get("distinct")
            for p in plans
        )

    def _isolate(
        self,
        batch: pa.RecordBatch,
        source: Source | None,
        error: DataError,
        locate: Locate | None,
        input: str | None,
    ) -> list[pa.RecordBatch]:
        """Process ``batch`` without the rows the query fails on, under the error strategy.

        A computation that fails for some rows (a failed CAST, an overflow, a division by
        zero) fails the whole call. Under ``log_and_continue`` or ``dead_letter`` the
        batch is split in halves until the failing rows are single rows, which follow the
        strategy (counted, logged or sent to the dead letters with the reason); the
        other rows are processed in their order. Only a query without state can be
        called again on part of a batch: a stateful query's state may hold part of the
        failed call, so there the error fails the run, saying so.
        """
        policy = self.bad_records
        if policy is None or policy.strategy == "fail":
            raise error
        if not self._stateless():
            raise DataError(
                f"{error.message} (statement {self.name!r}: its query keeps state, so a "
                f"record it fails on cannot be skipped under 'error.strategy' = "
                f"'{policy.strategy}': the state may already hold part of the batch)",
                location=error.location,
                field=error.field,
                value=error.value,
                line=error.line,
                column=error.column,
            ) from error
        outputs: list[pa.RecordBatch] = []
        bad: list[tuple[str, str, bytes]] = []
        pending = [(0, batch.num_rows)]
        while pending:
            start, length = pending.pop()
            part = batch.slice(start, length)
            try:
                done = self._process(part, input)
                outputs.extend(done if isinstance(done, list) else [done])
            except DataError as exc:
                if length == 1:
                    where = _row_location(part, source, start, locate)
                    bad.append((where, exc.message, _row_json(part)))
                else:
                    half = length // 2
                    pending.append((start + half, length - half))
                    pending.append((start, half))
        policy.handle(source.name if source is not None else self.name, bad)
        return [o for o in outputs if o.num_rows]

    def _route_dead_letters(self, first: int) -> None:
        """Write what the query routed to its dead letters (records after ``first``)."""
        routed = self.query.dead_letters()
        if routed.num_rows == 0:
            return
        policy = self.bad_records
        if self.dead_letters is None and policy is not None and policy.strategy != "fail":
            # 'log_and_continue': what the query set aside (unreadable event time) is
            # logged and counted as bad records.
            where = f"statement {self.name}, after input record {first:,}"
            policy.handle(
                self.name,
                [
                    (where, reason, record.encode())
                    for record, reason in zip(
                        routed.column("record").to_pylist(),
                        routed.column("reason").to_pylist(),
                        strict=True,
                    )
                ],
            )
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

    def _emit(self, output: pa.RecordBatch | list[pa.RecordBatch]) -> None:
        if isinstance(output, list):
            for part in output:
                self._emit(part)
            return
        if output.num_rows == 0:
            return
        self.records_out += output.num_rows
        for sink in self.sinks:
            sink.write(output)
        for runner in self.downstream:
            runner.push(output, input=self.name)

    def finish(self) -> None:
        """End of input: flush the query, emit what is left, flush the sinks."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
            if self.changelog is not None:
                # The changelog keeps the state as it was before the end of the input
                # closed its windows: a later run that goes on closes them when its
                # watermark passes them (emitting them again, with what came since).
                self._final = {p: self.query.snapshot(p) for p in self.query.partitions}
            output = self.query.flush()
            self.query.take_progress()
            self.held = None
            self._emit(output)
            self._route_dead_letters(self.records_in)
            self.tracker.release(self.holding())
            if output.num_columns > 0:
                # An empty batch still gives a CSV sink its header row.
                for sink in self.sinks:
                    sink.write(output.slice(0, 0))
            for sink in self.sinks:
                sink.flush()
            if self.table is not None:
                self.table.finished()
            self.finished_at = time.monotonic()
            self.finished.set()

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
        metrics = self.query.metrics()
        misses = int(metrics.get("join_misses", 0))
        if misses:
            # Rows a LEFT JOIN was told to drop are data lost on purpose: a warning.
            skipped = any(
                j.get("missing") == "skip_record" for j in self.query.plan.get("joins") or ()
            )
            logger.log(
                logging.WARNING if skipped else logging.INFO,
                "%s: %d input rows had no match in a joined table (see "
                "'join.missing.strategy' for what became of them)",
                self.name,
                misses,
            )
        return StatementReport(
            name=self.name,
            records_in=self.records_in,
            records_out=self.records_out,
            errors=self.bad_records.count if self.bad_records is not None else 0,
            late_dropped=int(metrics.get("late_dropped", 0)),
            dead_lettered=int(metrics.get("dead_lettered", 0)),
            join_misses=misses,
            dead_letters=self.dead_letters.count if self.dead_letters is not None else 0,
            retries=self.retries.retries,
            lag=_lag(self.sources),
            duration=max(0.0, end - start),
            sources={s.name: s.metrics() for s in self.sources},
            sinks={s.name: s.metrics() for s in self.sinks},
            workers=self.query.workers if self.partitioned else 1 if self._read else 0,
            partitions=(
                self.query.partition_metrics()
                if self.partitioned
                else {p: {"records_in": n, "worker": 0} for p, n in sorted(self._read.items())}
            ),
            restored=self.restored_partitions,
            restore_seconds=self.restore_seconds,
            rebalances=sum(int(s.metrics().get("rebalances", 0)) for s in self.sources),
            duplicates_dropped=int(metrics.get("duplicates_dropped", 0)),
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
