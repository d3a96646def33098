"""The job graph: sources → bounded queues → statements → sinks, in threads.

Each source runs in a reader thread that puts its batches (with their positions) into the
bounded input queue of its statement; each statement with sources runs in a processor
thread that takes them in turn and pushes them through the statement's query to its
sinks and to the statements reading its output in-process. A full queue blocks the
reader, which first pauses its source (a Kafka consumer stops fetching): a slow sink
slows the sources, memory stays bounded (queue size times batch size), nothing is dropped.

Commits follow :class:`velostream.runtime.checkpoint.Checkpoint`: every
``commit.interval`` (and at the end), each statement flushes the sinks its rows reach,
then commits its sources' released positions.

Stopping (``stop`` set: ``Application.stop``, SIGINT/SIGTERM): readers stop at their
next block, processors drain what is queued, then the end of the run flushes and
commits. A statement that commits (a Kafka source) keeps its open windows open: they are
not emitted half-done, and a restart re-reads their records; a statement reading files
only is flushed (its windows closed), as at the end of its input.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from velostream.io.base import Source
from velostream.io.kafka_source import PartitionHooks
from velostream.runtime.checkpoint import Checkpoint
from velostream.runtime.job import StatementRunner

logger = logging.getLogger("velostream.runtime")

#: Batches a statement's input queue holds before its readers wait.
DEFAULT_QUEUE_SIZE = 4

#: Seconds between checkpoints (flush sinks, commit offsets) of a running statement.
DEFAULT_COMMIT_INTERVAL = 5.0

_END = object()
#: A queue item declaring partitions with records to come (for the watermark).
_EXPECT = object()
#: Queue items of a partitioned statement's rebalances: partitions assigned (with their
#: restored state), revoked (checkpoint, then drop), lost (drop).
_ASSIGN = object()
_REVOKE = object()
_LOST = object()

Positions = list[tuple[str, int, int, int]]


class PartitionNumbers:
    """Numbers the partitions of a statement's inputs for its watermark.

    The watermark is tracked per input partition (SPEC section 5). One Kafka topic's
    partitions are its ``_partition`` values; when a statement reads several sources or
    several topics, the same numbers would name different partitions, so each batch
    gets a ``_source_partition`` column: ``source index << 40 | topic index << 24 |
    partition`` (a source without partitions is one partition). Computed per batch with
    Arrow compute, no Python per row.
    """

    def __init__(self, index: int, source: Source, numbered: bool) -> None:
        """Number the partitions of the ``index``-th source of a statement."""
        self.base = index << 40
        self.topics: list[str] = list(getattr(source, "topics", []) or [])
        self.numbered = numbered

    def ids(self, partitions: Sequence[tuple[str, int]]) -> list[int]:
        """The watermark ids of (topic, partition) pairs."""
        if not self.numbered:
            return [p for _, p in partitions]
        return [self.base | (self._topic(t) << 24) | p for t, p in partitions]

    def _topic(self, topic: str) -> int:
        return self.topics.index(topic) if topic in self.topics else 0

    def number(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """``batch`` with its ``_source_partition`` column, when the statement needs it."""
        if not self.numbered:
            return batch
        import pyarrow.compute as pc

        names = batch.schema.names
        if "_partition" in names:
            ids = pc.add(batch.column("_partition").cast(pa.int64()), self.base)
            if len(self.topics) > 1 and "_topic" in names:
                index = pc.index_in(batch.column("_topic"), value_set=pa.array(self.topics))
                ids = pc.add(ids, pc.shift_left(index.cast(pa.int64()), 24))
        else:
            ids = pa.array(np.full(batch.num_rows, self.base, dtype=np.int64))
        return batch.append_column("_source_partition", ids)


def _read(
    source: Source,
    numbers: PartitionNumbers,
    *,
    until_end: bool,
    stop: threading.Event,
    on_partitions: Callable[[list[int]], None],
    hooks: PartitionHooks | None = None,
) -> Iterator[tuple[pa.RecordBatch, Positions]]:
    """A source's batches with their positions (none for sources without offsets)."""
    read = getattr(source, "read", None)
    if read is None:
        for batch in source.batches(until_end=until_end, stop=stop):
            yield batch, []
        return
    # Deferred: each batch comes as the function that decodes it, called by the
    # statement's thread (decoding then overlaps the source's next read).
    for batch, positions in read(
        until_end=until_end,
        stop=stop,
        on_partitions=lambda parts: on_partitions(numbers.ids(parts)),
        deferred=True,
        **({"hooks": hooks} if hooks is not None else {}),
    ):
        yield batch, [(p.topic, p.partition, p.first, p.last) for p in positions]


def _all_empty(inboxes: Sequence[queue.Queue[Any]]) -> bool:
    """Whether every item put into ``inboxes`` was processed (none queued or in flight)."""
    return all(inbox.unfinished_tasks == 0 for inbox in inboxes)


class JobGraph:
    """Runs an application's statement runners until their inputs end or ``stop``.

    Attributes:
        errors: the exceptions that ended the run (first one first).
        commits: commits made by the statements' checkpoints.
    """

    def __init__(
        self,
        runners: dict[str, StatementRunner],
        waves: Sequence[Sequence[str]],
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        commit_interval: Callable[[StatementRunner], float] | None = None,
        failed: threading.Event | None = None,
    ) -> None:
        """Wire the runners (their ``downstream`` lists already set).

        Args:
            runners: statement name -> runner.
            waves: the dependency waves (statements that read no other statement first).
            queue_size: batches each statement's input queue holds.
            commit_interval: seconds between checkpoints of a statement (default 5 s).
            failed: set when the run fails (the sinks' retries and breakers wait on it).
        """
        self.runners = runners
        self.waves = [list(w) for w in waves]
        self.queue_size = queue_size
        self._interval = commit_interval or (lambda _r: DEFAULT_COMMIT_INTERVAL)
        self.errors: list[BaseException] = []
        self._failed = failed if failed is not None else threading.Event()
        self._pending = {name: len(r.sources) for name, r in runners.items()}
        for runner in runners.values():
            for reader in runner.downstream:
                self._pending[reader.name] += 1
        self._pending_lock = threading.Lock()
        self.checkpoints = {
            name: Checkpoint(
                runner.tracker,
                [r.flush_sinks for r in runner.chain()],
                # A table is loaded from the start of its input on every run (it has no
                # changelog yet): its positions are never committed.
                runner.sources if runner.table is None else [],
                retry=runner.retry_source,
                state=runner.save_state if runner.changelog is not None else None,
            )
            for name, runner in runners.items()
        }
        #: Table statement -> whether nothing is queued for the statements feeding it.
        self._idle: dict[str, Callable[[], bool]] = {}

    @property
    def commits(self) -> int:
        """Commits made so far by every statement."""
        return sum(c.commits for c in self.checkpoints.values())

    def _fail(self, exc: BaseException, stop: threading.Event) -> None:
        self.errors.append(exc)
        self._failed.set()
        stop.set()
        # Tables still loading never will: readers waiting for them wake up.
        for runner in self.runners.values():
            if runner.table is not None:
                runner.table.failed(exc)

    # ------------------------------------------------------------------ threads

    def _reader(
        self,
        source: Source,
        numbers: PartitionNumbers,
        inbox: queue.Queue[Any],
        *,
        until_end: bool,
        stop: threading.Event,
        gate: Callable[[threading.Event], None] | None = None,
        runner: StatementRunner | None = None,
    ) -> None:
        """Put every batch of ``source`` into ``inbox`` (waiting, paused, when it is full).

        ``gate`` (the statement's) is passed first: a statement joining tables reads
        nothing before they are READY.
        """

        def expect(ids: list[int]) -> None:
            self._put(inbox, (source, _EXPECT, ids), source)

        try:
            if gate is not None:
                gate(stop)
                if stop.is_set():
                    return
            locator = getattr(source, "locator", None)
            hooks = self._hooks(runner, source, inbox) if runner is not None else None
            for batch, positions in _read(
                source,
                numbers,
                until_end=until_end,
                stop=stop,
                on_partitions=expect,
                hooks=hooks,
            ):
                # Where its records came from, taken now: the source reads on meanwhile.
                locate = locator() if locator is not None else None
                item = (source, batch, (positions, locate, numbers))
                if not self._put(inbox, item, source):
                    return
        except BaseException as exc:
            self._fail(exc, stop)
        finally:
            self._put(inbox, (source, _END, None), source)

    def _hooks(
        self, runner: StatementRunner, source: Source, inbox: queue.Queue[Any]
    ) -> PartitionHooks | None:
        """What a partitioned statement's Kafka source tells of its partitions.

        Assigned partitions get their state from the changelog (read here, in the
        reading thread, before any of their records is read) and are queued for the
        statement's thread, in order before their records; revoked ones are queued
        too and the reading thread waits until the statement's thread checkpointed
        them (making the commits it asks meanwhile: the consumer is this thread's).
        """
        if not (runner.partitioned or runner.group_member) or not hasattr(
            source, "partition_counts"
        ):
            return None
        ensured: list[bool] = []

        def assigned(keys: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
            parts = sorted({p for _, p in keys})
            states: dict[int, Any] = {}
            changelog = runner.changelog
            if changelog is not None:
                if not ensured:
                    counts = getattr(source, "partition_counts", {}) or {}
                    changelog.ensure(max(counts.values(), default=max(parts) + 1))
                    ensured.append(True)
                began = time.monotonic()
                for partition in parts:
                    stored = changelog.read(partition)
                    if stored is not None:
                        states[partition] = stored
                if states:
                    runner.restored_partitions += len(states)
                    runner.restore_seconds += time.monotonic() - began
                    logger.info(
                        "%s: state of partitions %s restored from %s (%d bytes) in %.3f s",
                        runner.name,
                        sorted(states),
                        changelog.topic,
                        sum(s.size for s in states.values()),
                        time.monotonic() - began,
                    )
            item = {p: (states[p].state if p in states else None) for p in parts}
            self._put(inbox, (source, _ASSIGN, item), source)
            return {
                key: offset
                for stored in states.values()
                for key, offset in stored.offsets.items()
                if key in keys
            }

        def revoked(keys: list[tuple[str, int]]) -> None:
            done = threading.Event()
            parts = sorted({p for _, p in keys})
            if not self._put(inbox, (source, _REVOKE, (parts, done)), source):
                return
            service = getattr(source, "service", None)
            while not done.wait(0.05):
                if service is not None:
                    service()
                if self._failed.is_set():
                    return

        def lost(keys: list[tuple[str, int]]) -> None:
            self._put(inbox, (source, _LOST, sorted({p for _, p in keys})), source)

        return PartitionHooks(assigned, revoked, lost, group=runner.group_member)

    def _put(self, inbox: queue.Queue[Any], item: Any, source: Source) -> bool:
        """Put ``item``, pausing the source while the queue is full; False on failure."""
        paused = False
        service = getattr(source, "service", None)
        try:
            while True:
                try:
                    inbox.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    if self._failed.is_set():
                        return False
                    if service is not None:
                        service()  # commits asked meanwhile (the consumer is this thread's)
                    if not paused:
                        pause = getattr(source, "pause", None)
                        if pause is not None:
                            pause()
                        paused = True
        finally:
            if paused:
                resume = getattr(source, "resume", None)
                if resume is not None:
                    resume()

    def _processor(
        self,
        runner: StatementRunner,
        inbox: queue.Queue[Any],
        *,
        stop: threading.Event,
    ) -> None:
        """Push every queued batch into ``runner``; checkpoint; finish at the end."""
        checkpoint = self.checkpoints[runner.name]
        interval = self._interval(runner)
        live = len(runner.sources)
        next_checkpoint = time.monotonic() + interval
        try:
            runner.mark_started()
            while live:
                try:
                    source, batch, positions = inbox.get(timeout=min(interval, 0.5))
                except queue.Empty:
                    source = None
                if source is not None:
                    if batch is _END:
                        live -= 1
                    elif batch is _EXPECT:
                        runner.expect_partitions(positions, source.name)
                    elif batch is _ASSIGN:
                        runner.assign(positions)
                    elif batch is _REVOKE:
                        parts, done = positions
                        try:
                            if not self._failed.is_set():
                                checkpoint.run(parts)
                                runner.revoke(parts)
                        finally:
                            done.set()
                    elif batch is _LOST:
                        runner.revoke(positions)
                    elif not self._failed.is_set():
                        found, locate, numbers = positions
                        if callable(batch):
                            batch = batch()  # a deferred batch: decoded here
                        runner.push(numbers.number(batch), source, found, locate)
                    inbox.task_done()  # processed: the tables it feeds may be idle
                if self._failed.is_set():
                    return
                if not live:
                    break  # the end: the statement finishes (last rows out) before READY
                for fed in runner.chain():  # a table fed in-process too
                    if fed.table is not None:
                        fed.table.tick(self._idle[fed.name])
                if time.monotonic() >= next_checkpoint:
                    checkpoint.run()
                    next_checkpoint = time.monotonic() + interval
            if not stop.is_set() or not checkpoint.sources:
                self._input_ended(runner)
        except BaseException as exc:
            self._fail(exc, stop)

    def _input_ended(self, runner: StatementRunner) -> None:
        """One input of ``runner`` ended; when all have, finish it and its readers."""
        with self._pending_lock:
            self._pending[runner.name] -= 1
            ready = self._pending[runner.name] == 0
        if ready and not self._failed.is_set():
            runner.finish()
            for reader in runner.downstream:
                self._input_ended(reader)

    # ------------------------------------------------------------------ running

    def run(self, *, until_end: bool, stop: threading.Event) -> None:
        """Run until every input ended (or ``stop``), then flush and commit.

        Raises:
            the first error of any thread (the others are in :attr:`errors`).
        """
        threads: list[threading.Thread] = []
        inboxes: dict[str, queue.Queue[Any]] = {}
        for runner in self.runners.values():
            if not runner.sources:
                continue
            inbox: queue.Queue[Any] = queue.Queue(maxsize=self.queue_size)
            inboxes[runner.name] = inbox
            threads.append(
                threading.Thread(
                    target=self._processor,
                    args=(runner, inbox),
                    kwargs={"stop": stop},
                    name=f"velostream-{runner.name}",
                )
            )
            numbered = len(runner.sources) > 1 or any(
                len(getattr(s, "topics", ())) > 1 for s in runner.sources
            )
            for index, source in enumerate(runner.sources):
                numbers = PartitionNumbers(index, source, numbered)
                threads.append(
                    threading.Thread(
                        target=self._reader,
                        args=(source, numbers, inbox),
                        kwargs={
                            "until_end": until_end,
                            "stop": stop,
                            "gate": runner.gate,
                            "runner": runner,
                        },
                        name=f"velostream-{runner.name}-{source.name}",
                    )
                )
        # A table is idle when every item queued for a statement whose rows reach it
        # (several may feed it in-process) was processed: none queued, none in flight in
        # another statement's thread.
        for table in self.runners.values():
            if table.table is None:
                continue
            feeding = [
                inboxes[name]
                for name, runner in self.runners.items()
                if name in inboxes and table in runner.chain()
            ]
            self._idle[table.name] = functools.partial(_all_empty, feeding)
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.2)  # returns to the interpreter: signals are handled
        except BaseException as exc:  # KeyboardInterrupt included: stop, then drain
            self._fail(exc, stop)
            for thread in threads:
                thread.join()
        if not self.errors:
            try:
                self._finish_all(stop)
            except BaseException as exc:
                self.errors.append(exc)
        if self.errors:
            raise self.errors[0]

    def _finish_all(self, stop: threading.Event) -> None:
        """The end of the run: finish what ended, final checkpoints (flush, commit)."""
        committing = {name for name, c in self.checkpoints.items() if c.sources}
        stopped = stop.is_set()
        for wave in self.waves:
            for name in wave:
                runner = self.runners[name]
                holds_positions = any(
                    name in {r.name for r in self.runners[c].chain()} for c in committing
                )
                if stopped and holds_positions:
                    continue  # open state stays open; a restart re-reads it
                runner.finish()
        for name in self.waves_order():
            runner = self.runners[name]
            runner.tracker.release(runner.holding())
            self.checkpoints[name].run()

    def waves_order(self) -> list[str]:
        """Statement names in dependency order."""
        return [name for wave in self.waves for name in wave]
