"""One query per input partition, spread over worker threads (SPEC section 9).

Kafka-native processors scale by partition: each input partition is a *task* with its own
state, so a partition's state can move to another worker or another process (restored
from its changelog) without touching the others. :class:`PartitionedQuery` is that unit
for the embedded API and for the runtime: it holds one :class:`~velostream.query.Query`
per ``_partition`` value, created on the first record (or :meth:`assign`) of the
partition, and runs the partitions of a batch in parallel on ``workers`` threads. The
Rust work of each call runs with the GIL released, so N workers use N cores.

A batch is split without Python per row: ``_partition`` is read as a numpy array, the
runs of equal values (a Kafka consumer hands batches as runs of one partition) are
sliced zero-copy, and a batch that interleaves partitions is first put in partition
order by a stable sort (Arrow's ``sort_indices`` and ``take``), which keeps each
partition's records in their order.

Each partition has its own watermark, as a Kafka Streams task has its own stream time:
a window of partition 3 closes when partition 3's watermark passes its end. Every record
of a key must therefore be in one partition (the message key is the GROUP BY key, or the
runtime repartitions first); a key spread over partitions gives one group per partition.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from velostream import _core
from velostream.errors import ConfigError, DataError, SnapshotError, VelostreamError
from velostream.query import Query, compile

#: ``held`` when every record read so far is held (see ``Query.take_progress``).
HOLD_ALL = -(2**63)

#: Rows a batch needs for its partitions to run on several threads (below, the cost of
#: starting them exceeds what they save: measured on 2 cores, ``benches/test_scale_out.py``).
PARALLEL_MIN_ROWS = 32_768

#: Runs of one partition a batch may hold before it is sorted by partition instead.
_MAX_RUNS = 64

#: The bits of a ``_source_partition`` id that hold the partition number.
_PARTITION_BITS = (1 << 24) - 1


def default_workers() -> int:
    """The number of cores this process may run on (``--workers``' default)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class PartitionedQuery:
    """A query whose state is kept per input partition, run on worker threads.

    Built by :func:`compile_partitioned` (or by the runtime for a statement reading
    Kafka). It answers like a :class:`~velostream.query.Query` (:meth:`process`,
    :meth:`flush`, :meth:`metrics`, ...) and adds what partitions need: per-partition
    :meth:`snapshot` and :meth:`restore`, :meth:`assign` and :meth:`revoke`.

    Attributes:
        workers: the number of worker threads.
        partition_column: the column whose value names a record's partition.
    """

    def __init__(
        self,
        factory: Callable[[], Query],
        *,
        workers: int | None = None,
        partition_column: str = "_partition",
        dedup: tuple[str, str] | None = None,
    ) -> None:
        """Create the query; partitions are added as their records come.

        Args:
            factory: makes one fresh query (one per partition).
            workers: threads running partitions in parallel (default: the cores).
            partition_column: the integer column naming each record's partition.
            dedup: ``(origin column, offset column)`` for input re-keyed through a
                repartition topic, which is written at least once: each partition
                keeps the last offset of every origin it folded in (with its state, in
                its snapshot) and drops a record whose offset is not beyond it, so a
                record written twice is counted once.

        Raises:
            ConfigError: ``workers`` is below 1.
        """
        count = default_workers() if workers is None else workers
        if not isinstance(count, int) or count < 1:
            raise ConfigError(
                f"workers must be a whole number of at least 1, not {workers!r}",
                key="workers",
                value=str(workers),
            )
        self.workers = count
        self.partition_column = partition_column
        self._factory = factory
        self._template = factory()
        self._tasks: dict[int, Query] = {}
        #: partition -> the worker thread (index) running it.
        self._worker_of: dict[int, int] = {}
        self._tables: dict[str, Any] = {}
        #: Source partitions every partition's query waits for (see expect_everywhere).
        self._expected: list[int] = []
        self._schema: pa.Schema | None = None
        self._pool = (
            ThreadPoolExecutor(count, thread_name_prefix="velostream-worker") if count > 1 else None
        )
        self._lock = threading.Lock()
        self._dedup = dedup
        #: partition -> origin -> the last origin offset folded into its state.
        self._seen: dict[int, dict[int, int]] = {}
        self._duplicates = 0
        #: Counters of partitions given up (revoked), so totals do not go backwards.
        self._retired: dict[str, int] = {}

    # ------------------------------------------------------------------ description

    @property
    def plan(self) -> dict[str, Any]:
        """The physical plan of each partition's query."""
        return self._template.plan

    @property
    def statement(self) -> Any:
        """The parsed SQL statement."""
        return self._template.statement

    @property
    def properties(self) -> dict[str, str]:
        """Statement properties."""
        return self._template.properties

    @property
    def input_name(self) -> str:
        """The ``FROM`` name."""
        return self._template.input_name

    @property
    def partitions(self) -> list[int]:
        """The partitions held now, in order."""
        return sorted(self._tasks)

    def worker_of(self, partition: int) -> int | None:
        """The worker thread (0-based) running ``partition``, None when not held."""
        return self._worker_of.get(partition)

    @property
    def output_schema(self) -> pa.Schema | None:
        """The schema of what :meth:`process` returns (None until the input is known)."""
        for task in self._tasks.values():
            schema = task.output_schema
            if schema is not None:
                return schema
        return self._template.output_schema

    @property
    def watermark(self) -> int | None:
        """The lowest watermark of the partitions held (None when none has one)."""
        marks = [m for t in self._tasks.values() if (m := t.watermark) is not None]
        return min(marks) if marks else None

    # ------------------------------------------------------------------ partitions

    def _task(self, partition: int) -> Query:
        task = self._tasks.get(partition)
        if task is None:
            task = self._factory()
            # Tables first: binding a query that joins a table not attached yet fails.
            for name, data in self._tables.items():
                task.attach_table(name, data)
            if self._expected:
                task.expect_partitions(self._expected)
            if self._schema is not None:
                task.bind(self._schema)
            self._tasks[partition] = task
            load = [0] * self.workers
            for worker in self._worker_of.values():
                load[worker] += 1
            self._worker_of[partition] = load.index(min(load))
        return task

    def assign(self, partition: int, state: bytes | None = None) -> None:
        """Hold ``partition`` from now on, with the state of a :meth:`snapshot` if given.

        Raises:
            SnapshotError: ``state`` is not a snapshot of this query (nothing changes).
        """
        fresh = partition not in self._tasks
        seen: dict[int, int] = {}
        if state is not None and self._dedup is not None:
            seen, state = _split_positions(state)
        task = self._task(partition)
        if state is not None:
            try:
                task.restore(state)
            except VelostreamError:
                if fresh:
                    self._forget(partition)
                raise
            if self._dedup is not None:
                self._seen[partition] = seen

    def revoke(self, partition: int) -> None:
        """Give ``partition`` up: its state is dropped (snapshot it first to keep it)."""
        task = self._tasks.get(partition)
        if task is None:
            return
        for key, value in task.metrics().items():
            self._retired[key] = self._retired.get(key, 0) + value
        self._forget(partition)

    def _forget(self, partition: int) -> None:
        self._tasks.pop(partition, None)
        self._worker_of.pop(partition, None)
        self._seen.pop(partition, None)

    def snapshot(self, partition: int) -> bytes:
        """The state of ``partition`` (see ``Query.snapshot``).

        Raises:
            ConfigError: the partition is not held.
        """
        task = self._tasks.get(partition)
        if task is None:
            raise ConfigError(
                f"partition {partition} is not held by this query (held: {self.partitions})",
                key="partition",
                value=str(partition),
            )
        if self._dedup is not None:
            return _join_positions(self._seen.get(partition, {}), task.snapshot())
        return task.snapshot()

    def restore(self, partition: int, blob: bytes) -> PartitionedQuery:
        """Hold ``partition`` with the state of a :meth:`snapshot`; returns the query."""
        self.assign(partition, blob)
        return self

    # ------------------------------------------------------------------ processing

    def _split(self, batch: pa.RecordBatch) -> list[tuple[int, list[pa.RecordBatch]]]:
        """The batch's records per partition (in order of first appearance)."""
        if batch.num_rows == 0:
            return []
        names = batch.schema.names
        if self.partition_column not in names:
            raise DataError(
                f"a partitioned query needs the column {self.partition_column!r} naming each "
                f"record's partition; the input has {names}",
                field=self.partition_column,
            )
        column = batch.column(self.partition_column)
        if column.null_count:
            raise DataError(
                f"column {self.partition_column!r} holds a null: every record needs a partition",
                field=self.partition_column,
            )
        if not pa.types.is_integer(column.type):
            raise DataError(
                f"column {self.partition_column!r} must be an integer, not {column.type}",
                field=self.partition_column,
                value=str(column.type),
            )
        values = column.to_numpy(zero_copy_only=False)
        starts = np.flatnonzero(values[1:] != values[:-1]) + 1
        if len(starts) > _MAX_RUNS:
            # Interleaved: a stable sort puts each partition's records together, in order.
            order = pc.sort_indices(column)
            batch = batch.take(order)
            values = values[order.to_numpy()]
            starts = np.flatnonzero(values[1:] != values[:-1]) + 1
        bounds = [0, *starts.tolist(), len(values)]
        parts: dict[int, list[pa.RecordBatch]] = {}
        for begin, end in itertools.pairwise(bounds):
            parts.setdefault(int(values[begin]), []).append(batch.slice(begin, end - begin))
        return list(parts.items())

    def _run(self, work: Iterable[tuple[int, Callable[[Query], Any]]]) -> list[Any]:
        """Run ``call(task)`` per partition on its worker; results in the given order."""
        jobs = [(p, self._task(p), call) for p, call in work]
        if self._pool is None or len(jobs) < 2:
            return [call(task) for _p, task, call in jobs]
        per_worker: dict[int, list[int]] = {}
        for index, (p, _task, _call) in enumerate(jobs):
            per_worker.setdefault(self._worker_of[p], []).append(index)
        if len(per_worker) < 2:
            return [call(task) for _p, task, call in jobs]
        results: list[Any] = [None] * len(jobs)

        def run(indices: list[int]) -> None:
            for index in indices:
                _p, task, call = jobs[index]
                results[index] = call(task)

        futures: list[Future[None]] = [self._pool.submit(run, ix) for ix in per_worker.values()]
        errors = [e for f in futures if (e := f.exception()) is not None]
        if errors:
            raise errors[0]
        return results

    def process(self, data: Any) -> pa.RecordBatch:
        """Process a batch: each partition's records by that partition's query.

        Args:
            data: a ``pyarrow.RecordBatch`` (or ``Table``) with :attr:`partition_column`.

        Returns:
            The rows emitted, partition after partition (in order of first appearance).

        Raises:
            DataError: a record has no partition; errors of the partitions' queries.
        """
        return self._combine(self.process_parts(data))

    def process_parts(self, data: Any) -> list[pa.RecordBatch]:
        """:meth:`process`, its output as the batches of each partition (not concatenated).

        Saves a copy of every output row where the caller takes several batches (a
        runtime writing them to its sinks).
        """
        if isinstance(data, pa.Table):
            batches = data.combine_chunks().to_batches()
            if not batches:
                return []
            data = batches[0] if len(batches) == 1 else pa.concat_batches(batches)
        if not isinstance(data, pa.RecordBatch):
            raise DataError(
                f"a partitioned query takes a pyarrow RecordBatch or Table, not "
                f"{type(data).__name__}"
            )
        parts = self._split(data)
        if not parts:
            return []
        if self._schema is None:
            # Only a batch that was split: a refused one (no partition column) must not
            # become the schema the partitions made later are bound to.
            self._schema = data.schema

        if self._dedup is not None:
            parts = [(p, [self._fresh(p, s) for s in slices]) for p, slices in parts]
        tasks = [(self._task(p), slices) for p, slices in parts]
        if all(task._legacy is None for task, _ in tasks):
            # The direct path: one call into Rust runs every partition, in parallel on
            # the workers' threads, with the GIL released once.
            for task, _slices in tasks:
                if task._tables:
                    task._check_tables()
            jobs = [
                (task._processor, slices, self._worker_of[p])
                for (task, slices), (p, _s) in zip(tasks, parts, strict=True)
            ]
            # Starting a thread costs tens of microseconds: a small batch runs on one.
            threads = self.workers if data.num_rows >= PARALLEL_MIN_ROWS else 1
            outputs = _core.process_many(jobs, threads)
            return [o for out in outputs for o in out if o.num_rows]

        def make(slices: list[pa.RecordBatch]) -> Callable[[Query], list[pa.RecordBatch]]:
            return lambda task: [task.process(s) for s in slices]

        results = self._run((p, make(slices)) for p, slices in parts)
        return [o for out in results for o in out if o.num_rows]

    def _fresh(self, partition: int, batch: pa.RecordBatch) -> pa.RecordBatch:
        """``batch`` without the records this partition folded in already (dedup).

        A record is kept when its offset is beyond every earlier offset of its origin
        (in the state, and earlier in the batch): numpy per origin, no Python per row.
        """
        assert self._dedup is not None
        origin_column, offset_column = self._dedup
        names = batch.schema.names
        for column in (origin_column, offset_column):
            if column not in names or batch.column(column).null_count:
                raise DataError(
                    f"re-keyed input needs a non-null {column!r} on every record (the "
                    f"repartition stage writes it); the input has {names}",
                    field=column,
                )
        origins = batch.column(origin_column).to_numpy(zero_copy_only=False)
        offsets = batch.column(offset_column).to_numpy(zero_copy_only=False).astype(np.int64)
        seen = self._seen.setdefault(partition, {})
        keep = np.ones(len(offsets), dtype=bool)
        for origin in np.unique(origins).tolist():
            where = np.flatnonzero(origins == origin)
            mine = offsets[where]
            before = np.maximum.accumulate(np.concatenate(([seen.get(origin, -1)], mine[:-1])))
            keep[where] = mine > before
            seen[origin] = max(seen.get(origin, -1), int(mine.max()))
        dropped = len(keep) - int(keep.sum())
        if not dropped:
            return batch
        with self._lock:
            self._duplicates += dropped
        return batch.filter(pa.array(keep))

    def flush(self) -> pa.RecordBatch:
        """End of input: every partition closes what it holds open."""
        outputs = self._run((p, lambda task: task.flush()) for p in self.partitions)
        return self._combine(outputs)

    def _empty(self) -> pa.RecordBatch:
        schema = self.output_schema
        return pa.RecordBatch.from_pylist([], schema=schema or pa.schema([]))

    def _combine(self, outputs: list[pa.RecordBatch]) -> pa.RecordBatch:
        kept = [o for o in outputs if o.num_rows] or outputs[:1]
        if not kept:
            return self._empty()
        return kept[0] if len(kept) == 1 else pa.concat_batches(kept)

    def bind(self, schema: pa.Schema) -> pa.Schema:
        """Declare the input schema ahead of the first batch; returns the output schema."""
        self._schema = schema
        for task in self._tasks.values():
            task.bind(schema)
        return self._template.bind(schema)

    def attach_table(self, name: str, data: Any) -> None:
        """Attach a joined table to every partition's query.

        A registry table is shared by every partition (rows it gains are seen by all);
        a ``pyarrow.Table`` is indexed by each partition's query for itself.
        """
        self._template.attach_table(name, data)
        self._tables[name] = data
        for task in self._tasks.values():
            task.attach_table(name, data)

    def expect_partitions(self, ids: list[int]) -> None:
        """Declare partitions with records to come (each holds its own watermark back)."""
        for wanted in ids:
            self._task(wanted & _PARTITION_BITS).expect_partitions([wanted])

    def expect_everywhere(self, ids: list[int]) -> None:
        """Declare input partitions whose records may come to any partition's query.

        A query reading a repartition topic: each of its partitions interleaves the
        records of every source partition (``_source_partition``); each source
        partition holds every query's watermark back until its first record there.
        """
        self._expected = list(dict.fromkeys([*self._expected, *ids]))
        for task in self._tasks.values():
            task.expect_partitions(list(ids))

    def take_progress(self) -> tuple[int | None, int | None]:
        """``(latest, held)`` over every partition (see ``Query.take_progress``)."""
        latest: int | None = None
        held: int | None = None
        for task in self._tasks.values():
            last, hold = task.take_progress()
            if last is not None:
                latest = last if latest is None else max(latest, last)
            if hold is not None:
                held = hold if held is None else min(held, hold)
        return latest, held

    def dead_letters(self) -> pa.RecordBatch:
        """The records every partition routed to the dead letters, then cleared."""
        routed = [t.dead_letters() for t in self._tasks.values()]
        routed = [r for r in routed if r.num_rows]
        if not routed:
            return self._template.dead_letters()
        return routed[0] if len(routed) == 1 else pa.concat_batches(routed)

    def metrics(self) -> dict[str, int]:
        """Counters summed over the partitions (given-up ones included), and ``partitions``.

        ``state_groups`` and ``state_bytes`` tell what is held now: the partitions held.
        """
        out = dict(self._retired)
        for task in self._tasks.values():
            for key, value in task.metrics().items():
                out[key] = out.get(key, 0) + value
        for key in ("records_in", "records_out", "late_dropped", "state_groups"):
            out.setdefault(key, 0)
        # What is held now (not counters): the partitions held, not the ones given up.
        for key in ("state_groups", "state_bytes"):
            out[key] = sum(t.metrics().get(key, 0) for t in self._tasks.values())
        out["partitions"] = len(self._tasks)
        if self._dedup is not None:
            out["duplicates_dropped"] = self._duplicates
        return out

    def partition_metrics(self) -> dict[int, dict[str, int]]:
        """Partition -> its query's counters and its ``worker``."""
        return {
            p: {**self._tasks[p].metrics(), "worker": self._worker_of[p]} for p in self.partitions
        }

    def close(self) -> None:
        """Stop the worker threads (idempotent)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def __repr__(self) -> str:
        return (
            f"<velostream.PartitionedQuery {self._template.statement.text!r} "
            f"partitions={self.partitions} workers={self.workers}>"
        )


#: The header of a partition's snapshot that carries its last origin offsets (dedup).
_POSITIONS_MAGIC = b"VSRP"


def _join_positions(seen: Mapping[int, int], state: bytes) -> bytes:
    """A snapshot with the last offset folded in of every origin in front of it."""
    head = json.dumps({str(k): v for k, v in seen.items()}).encode()
    return _POSITIONS_MAGIC + len(head).to_bytes(4, "little") + head + state


def _split_positions(blob: bytes) -> tuple[dict[int, int], bytes]:
    """The origin offsets and the query's snapshot of :func:`_join_positions`.

    Raises:
        SnapshotError: the blob has no such header, or a broken one.
    """
    if not blob.startswith(_POSITIONS_MAGIC) or len(blob) < 8:
        raise SnapshotError(
            "not a snapshot of a re-keyed partition (it lacks the offsets of the source "
            "partitions folded in)"
        )
    size = int.from_bytes(blob[4:8], "little")
    try:
        seen = {int(k): int(v) for k, v in json.loads(blob[8 : 8 + size]).items()}
    except (ValueError, AttributeError, TypeError) as exc:
        raise SnapshotError(f"a re-keyed partition's snapshot has a broken header: {exc}") from None
    return seen, bytes(blob[8 + size :])


def compile_partitioned(
    sql: str,
    *,
    properties: Mapping[str, str] | None = None,
    workers: int | None = None,
    partition_column: str = "_partition",
) -> PartitionedQuery:
    """Compile a query that keeps its state per input partition (SPEC section 9).

    Args:
        sql: one ``SELECT`` or ``CREATE STREAM|TABLE ... AS SELECT`` over one input.
        properties: statement properties, as in a ``WITH`` clause (which wins).
        workers: threads running partitions in parallel (default: the cores).
        partition_column: the integer column naming each record's partition.

    Returns:
        The query; feed it batches carrying ``partition_column``.

    Raises:
        SqlSyntaxError, SqlValidationError, ConfigError: as :func:`velostream.compile`;
            a ``UNION ALL`` (several inputs) is refused with a ConfigError.
    """
    first = compile(sql, properties=dict(properties) if properties is not None else None)
    if not isinstance(first, Query):
        raise ConfigError(
            "a partitioned query reads one input: UNION ALL is not supported here",
            key="sql",
        )
    statement, merged, path = first.statement, first.properties, first.path
    made = [first]

    def factory() -> Query:
        if made:
            return made.pop()
        return Query._create(statement, merged, path)

    return PartitionedQuery(factory, workers=workers, partition_column=partition_column)
