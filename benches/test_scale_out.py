"""Scale-out in memory: records/s on 1 and 2 workers, and restore time vs state size (issue 13).

Records/s of a :class:`~velostream.partitioned.PartitionedQuery`
(``compile_partitioned(sql, workers=W)``) for W = 1, 2 on ``group_by_continuous``,
``tumbling_window`` and ``select_where``. The input gets a ``_partition`` column (int32): a
hash of ``symbol`` (the GROUP BY key, so every group lives in one partition) modulo
:data:`PARTITIONS`, computed with numpy over the string buffers (:func:`partition_of`).
Each 10 K-row batch is presented as a Kafka consumer hands it over, in runs of one
partition: stably sorted by ``_partition`` (setup, not timed). The six partitions are
assigned before the timing (as the runtime does on assignment), so they are spread three
and three over two workers. Timed: every batch through ``process_parts`` (what the runtime
calls: the output stays per partition, not concatenated), then ``flush``.

Beside them, a plain ``vs.compile`` Query over the same records in the same 10 K-row
batches, in their generated order: the cost of partitioning on one worker. (In partition
order a plain query's single watermark runs ahead of the partitions that come later in a
batch, and ``tumbling_window`` would drop rows as late: it would not compute the same
thing.) Every mode's output is checked to be the same rows before anything is timed.

``test_scale_out`` times each mode in its own benchmark; ``test_scale_out_interleaved``
alternates the three modes round by round (robust to other load on the machine) and also
measures CPU seconds per wall second of each, which tells what bounds the 2-worker rate:
~2 with a poor speed-up means the work itself grew (memory bandwidth, caches shared by the
two cores); well below 2 means the serial part (the split of each batch in Python, the
GIL between the Rust calls) bounds it.

Restore (``test_restore``): one partition of a PartitionedQuery holding a GROUP BY state
of 1 K .. 1 M groups is snapshotted and written with
:class:`~velostream.runtime.changelog.StateChangelog` to a fresh compacted topic on the
test broker (one broker per module), then read back (``read`` by another changelog client,
as a process taking the partition over has) and restored into a fresh PartitionedQuery
(``assign(p, state)``). The restored partition must give the same next output as the
original.

Environment: ``VELOSTREAM_SCALE_OUT_RECORDS`` (default 1 M) records per throughput run;
``VELOSTREAM_RESTORE_MAX`` caps the restore sizes (default: all, up to 1 M groups).
"""

from __future__ import annotations

import functools
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import velostream as vs
from conftest import BATCH_SIZE, RESULTS, record_rate, record_value, trades
from velostream.bench import WORKLOADS
from velostream.partitioned import PartitionedQuery, compile_partitioned

RECORDS = int(os.environ.get("VELOSTREAM_SCALE_OUT_RECORDS", "1000000"))
#: Partitions of the input (the issue's tests use a 6-partition topic).
PARTITIONS = 6
SCALE_OUT_WORKLOADS = ["group_by_continuous", "tumbling_window", "select_where"]
#: Modes: a plain Query, and a PartitionedQuery on 1 and 2 workers.
MODES = {"plain": None, "w1": 1, "w2": 2}
#: Batch sizes and workloads of ``test_scale_out_batch_size`` (what limits the factor).
BATCH_SIZES = [10_000, 100_000, 1_000_000]
BATCH_WORKLOADS = ["group_by_continuous", "select_where"]
#: Records of the output check (before the timing).
CHECK_RECORDS = 200_000

RESTORE_SIZES = [1_000, 10_000, 100_000, 1_000_000]
RESTORE_MAX = int(os.environ.get("VELOSTREAM_RESTORE_MAX", str(max(RESTORE_SIZES))))
#: The state restored: a GROUP BY over string keys (count, sum, avg), one partition.
RESTORE_SQL = WORKLOADS["group_by_continuous"].sql
RESTORE_PARTITION = 3
#: The changelog partition a 1 KiB snapshot warms the clients on (before the timing).
WARM_PARTITION = 0


# ---------------------------------------------------------------------------- input


def partition_of(keys: pa.Array | pa.ChunkedArray, partitions: int) -> pa.Array:
    """``hash(key) % partitions`` of every string key, as int32 (numpy; no Python per row).

    The hash is a polynomial hash of the key's bytes (base 31, modulo 2**64, summed per
    key with ``np.add.reduceat`` over the string buffer), finished by splitmix64's mixer.
    Keys must be non-empty (``reduceat`` of an empty range is not 0); the benchmark's are.
    """
    arr = keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys
    if arr.null_count or not pa.types.is_string(arr.type):
        raise ValueError(f"keys must be non-null utf8, not {arr.type} with nulls")
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[
        arr.offset : arr.offset + len(arr) + 1
    ]
    lengths = np.diff(offsets)
    if len(arr) == 0:
        return pa.array([], type=pa.int32())
    if (lengths <= 0).any():
        raise ValueError("keys must be non-empty")
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    starts = (offsets[:-1] - offsets[0]).astype(np.int64)
    position = np.arange(len(data), dtype=np.int64) - np.repeat(starts, lengths)
    with np.errstate(over="ignore"):
        weights = np.uint64(31) ** position.astype(np.uint64)
        h = np.add.reduceat(data.astype(np.uint64) * weights, starts)
        h ^= h >> np.uint64(30)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
    return pa.array((h % np.uint64(partitions)).astype(np.int32))


def with_partition(table: pa.Table, partitions: int = PARTITIONS) -> pa.Table:
    """``table`` with ``_partition`` = :func:`partition_of` its ``symbol``."""
    return table.append_column("_partition", partition_of(table["symbol"], partitions))


def consumer_batches(table: pa.Table, batch_size: int = BATCH_SIZE) -> list[pa.RecordBatch]:
    """``table`` in ``batch_size``-row batches, each stably sorted by ``_partition``.

    The runs of one partition a Kafka consumer hands over (Arrow's sort is stable: each
    partition keeps its records' order).
    """
    out = []
    for batch in table.combine_chunks().to_batches(max_chunksize=batch_size):
        order = pc.sort_indices(batch, sort_keys=[("_partition", "ascending")])
        out.append(batch.take(order))
    return out


_INPUTS: dict[tuple[str, int], tuple[list[pa.RecordBatch], list[pa.RecordBatch]]] = {}


def inputs(workload: str, records: int) -> tuple[list[pa.RecordBatch], list[pa.RecordBatch]]:
    """(batches in generated order, the same batches in runs of one partition); cached."""
    key = (workload, records)
    if key not in _INPUTS:
        table = with_partition(trades(workload, records))
        in_order = table.combine_chunks().to_batches(max_chunksize=BATCH_SIZE)
        _INPUTS[key] = (in_order, consumer_batches(table))
    return _INPUTS[key]


# ---------------------------------------------------------------------------- queries


def make_query(workload: str, workers: int | None) -> vs.Query | PartitionedQuery:
    """A fresh query of ``workload``: plain (``workers`` None) or partitioned on ``workers``.

    The partitioned one holds every partition already (assigned, as the runtime does
    when the consumer is given them), spread over its workers.
    """
    sql = WORKLOADS[workload].sql
    if workers is None:
        return vs.compile(sql)
    query = compile_partitioned(sql, workers=workers)
    for p in range(PARTITIONS):
        query.assign(p)
    return query


def run_query(
    query: vs.Query | PartitionedQuery, data: list[pa.RecordBatch]
) -> list[pa.RecordBatch]:
    """Every batch through the query, then ``flush``; the output batches."""
    out: list[pa.RecordBatch] = []
    if isinstance(query, PartitionedQuery):
        for batch in data:
            out.extend(query.process_parts(batch))
    else:
        out.extend(query.process(batch) for batch in data)
    out.append(query.flush())
    return out


def timed_feed(query: vs.Query | PartitionedQuery, data: list[pa.RecordBatch]) -> None:
    """What the throughput benchmarks time (outputs dropped as they come)."""
    if isinstance(query, PartitionedQuery):
        for batch in data:
            query.process_parts(batch)
    else:
        for batch in data:
            query.process(batch)
    query.flush()


def close(query: Any) -> None:
    """Stop a PartitionedQuery's worker threads (a plain Query has none)."""
    if isinstance(query, PartitionedQuery):
        query.close()


def data_of(workload: str, mode: str, records: int) -> list[pa.RecordBatch]:
    """The batches mode ``mode`` reads (the plain query: generated order, see docstring)."""
    in_order, by_partition = inputs(workload, records)
    return in_order if MODES[mode] is None else by_partition


def _rows(batches: list[pa.RecordBatch]) -> pa.Table:
    """The output rows, sorted by every column (a multiset, order-free)."""
    kept = [b for b in batches if b.num_rows]
    table = pa.Table.from_batches(kept).combine_chunks()
    return table.sort_by([(name, "ascending") for name in table.column_names])


_CHECKED: set[str] = set()


def check_modes(workload: str) -> None:
    """Every mode gives the same output rows over the first records (once per workload)."""
    if workload in _CHECKED:
        return
    n = min(RECORDS, CHECK_RECORDS)
    results = {}
    for mode, workers in MODES.items():
        query = make_query(workload, workers)
        try:
            results[mode] = _rows(run_query(query, data_of(workload, mode, n)))
            dropped = query.metrics()["late_dropped"]
        finally:
            close(query)
        assert dropped == 0, f"{workload} {mode}: {dropped} records dropped as late"
    plain = results["plain"]
    assert plain.num_rows > 0
    for mode, rows in results.items():
        assert rows.num_rows == plain.num_rows, f"{workload} {mode}: {rows.num_rows} rows"
        assert rows.equals(plain), f"{workload} {mode}: output differs from the plain query"
    _CHECKED.add(workload)


class FreshQueries:
    """A pedantic ``setup`` giving a fresh query per round, closing the previous one."""

    def __init__(self, workload: str, mode: str, data: list[pa.RecordBatch]) -> None:
        self.workload, self.mode, self.data = workload, mode, data
        self.current: Any = None

    def __call__(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        self.close()
        self.current = make_query(self.workload, MODES[self.mode])
        return (self.current, self.data), {}

    def close(self) -> None:
        close(self.current)
        self.current = None


# ---------------------------------------------------------------------------- throughput


@pytest.fixture(params=SCALE_OUT_WORKLOADS)
def scale_workload(request: pytest.FixtureRequest) -> str:
    """A workload of the scale-out comparison."""
    return str(request.param)


@pytest.mark.parametrize("mode", list(MODES))
def test_scale_out(benchmark: Any, scale_workload: str, mode: str) -> None:
    workload = scale_workload
    benchmark.group = f"scale_out:{workload}"
    check_modes(workload)
    setup = FreshQueries(workload, mode, data_of(workload, mode, RECORDS))
    try:
        benchmark.pedantic(timed_feed, setup=setup, rounds=10, warmup_rounds=1, iterations=1)
    finally:
        setup.close()
    rate = record_rate(benchmark, ("scale_out", workload, mode), RECORDS)
    one = RESULTS.get(("scale_out", workload, "w1"))
    if mode == "w2" and rate is not None and one:
        record_value(benchmark, ("scale_out_factor", workload), "w2_over_w1", rate / one)


def interleaved_cpu(
    runs: dict[str, tuple[Callable[[], Any], Callable[[Any], Any], Callable[[Any], Any]]],
    rounds: int,
) -> dict[str, tuple[float, float]]:
    """Best wall seconds of each run and the CPU seconds of that round, runs alternating.

    ``runs`` maps a label to ``(setup, timed, teardown)``. CPU seconds are the process's
    (every thread: the workers included).
    """
    best = {label: (float("inf"), 0.0) for label in runs}
    for _ in range(rounds):
        for label, (setup, timed, teardown) in runs.items():
            arg = setup()
            try:
                cpu = time.process_time()
                start = time.perf_counter()
                timed(arg)
                wall = time.perf_counter() - start
                cpu = time.process_time() - cpu
            finally:
                teardown(arg)
            if wall < best[label][0]:
                best[label] = (wall, cpu)
    return best


def test_scale_out_interleaved(benchmark: Any, scale_workload: str) -> None:
    """The three modes alternating round by round; the summary's factor, and CPU per wall."""
    workload = scale_workload
    benchmark.group = f"scale_out:{workload}"
    check_modes(workload)

    def run(mode: str) -> tuple[Callable[[], Any], Callable[[Any], Any], Callable[[Any], Any]]:
        data = data_of(workload, mode, RECORDS)
        return (
            lambda: make_query(workload, MODES[mode]),
            lambda query: timed_feed(query, data),
            close,
        )

    best: dict[str, tuple[float, float]] = {}
    benchmark.pedantic(
        lambda: best.update(interleaved_cpu({m: run(m) for m in MODES}, rounds=10)),
        rounds=1,
        iterations=1,
    )
    for mode, (wall, cpu) in best.items():
        rate = RECORDS / wall
        benchmark.extra_info[f"records_per_s_{mode}"] = rate
        benchmark.extra_info[f"cpu_per_wall_{mode}"] = cpu / wall
        RESULTS[("scale_out_interleaved", workload, mode)] = rate
        RESULTS[("scale_out_cpu", workload, mode)] = cpu / wall
    factor = best["w1"][0] / best["w2"][0]
    record_value(benchmark, ("scale_out_factor_interleaved", workload), "w2_over_w1", factor)


def _threads(work: list[Callable[[], None]]) -> None:
    """Run each callable on a thread of its own; wait for all."""
    threads = [threading.Thread(target=call) for call in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@pytest.mark.parametrize("workload", BATCH_WORKLOADS)
def test_scale_out_batch_size(benchmark: Any, workload: str) -> None:
    """What limits the factor: 1 vs 2 workers with 10 K, 100 K, 1 M-row batches, interleaved.

    Beside them a plain Query (``plain``, generated order) and the machine's own ceiling,
    ``raw2``: two plain Queries on two threads, each over the records of half the
    partitions (the same batches, filtered before the timing), no PartitionedQuery in
    between. ``raw2`` / ``plain`` is what two cores give here; ``w2`` / ``w1`` well below
    it at small batches is the per-batch cost of handing a batch's partitions to the
    worker threads and waiting for them.
    (``tumbling_window`` is left out: one plain query over half the partitions in
    partition order would drop rows as late, see the module docstring.)
    """
    benchmark.group = f"scale_out_batch:{workload}"
    check_modes(workload)
    table = with_partition(trades(workload, RECORDS))
    sql = WORKLOADS[workload].sql
    runs: dict[str, tuple[Callable[[], Any], Callable[[Any], Any], Callable[[Any], Any]]] = {}
    sizes = [n for n in BATCH_SIZES if n <= RECORDS]
    for size in sizes:
        data = consumer_batches(table, size)
        halves = [
            [b.filter(pc.equal(pc.bit_wise_and(b["_partition"], 1), k)) for b in data]
            for k in (0, 1)
        ]
        in_order = table.combine_chunks().to_batches(max_chunksize=size)
        runs[f"{size}/plain"] = (
            functools.partial(make_query, workload, None),
            functools.partial(lambda d, q: timed_feed(q, d), in_order),
            close,
        )
        for workers in (1, 2):
            runs[f"{size}/w{workers}"] = (
                functools.partial(make_query, workload, workers),
                functools.partial(lambda d, q: timed_feed(q, d), data),
                close,
            )
        runs[f"{size}/raw2"] = (
            lambda: [vs.compile(sql) for _ in range(2)],
            functools.partial(
                lambda hs, qs: _threads(
                    [functools.partial(timed_feed, q, h) for q, h in zip(qs, hs, strict=True)]
                ),
                halves,
            ),
            lambda _qs: None,
        )
    best: dict[str, tuple[float, float]] = {}
    benchmark.pedantic(lambda: best.update(interleaved_cpu(runs, rounds=5)), rounds=1, iterations=1)
    for label, (wall, cpu) in best.items():
        rows, mode = label.split("/")
        benchmark.extra_info[f"records_per_s_{label}"] = RECORDS / wall
        benchmark.extra_info[f"cpu_per_wall_{label}"] = cpu / wall
        RESULTS[("scale_out_batch", workload, rows, mode)] = RECORDS / wall
        RESULTS[("scale_out_batch_cpu", workload, rows, mode)] = cpu / wall


# ---------------------------------------------------------------------------- restore


@pytest.fixture(scope="module")
def broker() -> Iterator[Any]:
    """One test broker for the restore benchmarks of this module."""
    from velostream.testing import start_broker

    with start_broker() as running:
        yield running


def distinct_keys(groups: int, partition: int) -> pa.Table:
    """``groups`` trades, one per distinct symbol, all in ``partition`` (Arrow, no Python per row)."""
    index = pa.array(np.arange(groups, dtype=np.int64))
    digits = pc.utf8_lpad(pc.cast(index, pa.string()), width=7, padding="0")
    symbol = pc.binary_join_element_wise("K", digits, "")
    rng = np.random.default_rng(7)
    return pa.table(
        {
            "symbol": symbol,
            "price": rng.uniform(1.0, 200.0, groups),
            "qty": rng.integers(1, 1001, groups, dtype=np.int64),
            "_partition": pa.array(np.full(groups, partition, dtype=np.int32)),
        }
    )


def probe_batch(groups: int, partition: int) -> pa.Table:
    """The next records after the restore: 1 000 known keys (spread) and one new key."""
    known = distinct_keys(groups, partition).take(
        pa.array(np.linspace(0, groups - 1, min(groups, 1_000)).astype(np.int64))
    )
    new = pa.table(
        {
            "symbol": pa.array(["NEW"]),
            "price": pa.array([1.5]),
            "qty": pa.array([2], type=pa.int64()),
            "_partition": pa.array([partition], type=pa.int32()),
        }
    )
    return pa.concat_tables([known, new])


def build_state(groups: int) -> PartitionedQuery:
    """A PartitionedQuery holding partition :data:`RESTORE_PARTITION` with ``groups`` groups."""
    query = compile_partitioned(RESTORE_SQL, workers=1)
    query.assign(RESTORE_PARTITION)
    table = distinct_keys(groups, RESTORE_PARTITION)
    for batch in table.to_batches(max_chunksize=100_000):
        query.process_parts(batch)
    assert query.metrics()["state_groups"] == groups
    return query


@pytest.mark.parametrize(
    "groups",
    [n for n in RESTORE_SIZES if n <= RESTORE_MAX] or [min(RESTORE_SIZES)],
    ids=lambda n: f"{n:_}",
)
def test_restore(benchmark: Any, broker: Any, groups: int) -> None:
    """Checkpoint (write + flush), read and restore one partition's state of ``groups`` groups.

    Timed: ``write`` + ``flush`` of the snapshot, ``read`` by another changelog client,
    ``assign(p, state)`` into a fresh PartitionedQuery; each phase is recorded (from the
    best round). ``Query.snapshot`` is timed once, outside (the checkpoint pays it too).
    Each round writes to a fresh topic with clients warmed by a 1 KiB snapshot of another
    partition: the first flush of a new producer (its connection and idempotent-producer
    set-up, ~0.5 s on the test broker) and a new consumer's first read are recorded apart
    (``first_write_s``, ``first_read_s``): a process pays them once, not per restore.
    """
    from velostream.runtime.changelog import StateChangelog

    benchmark.group = "scale_out:restore"
    original = build_state(groups)
    start = time.perf_counter()
    state = original.snapshot(RESTORE_PARTITION)
    snapshot_s = time.perf_counter() - start
    offsets = {("trades", RESTORE_PARTITION): groups}
    clients: list[StateChangelog] = []
    restored: list[PartitionedQuery] = []
    phases: list[dict[str, float]] = []

    cold: list[dict[str, float]] = []

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        # A fresh topic per round (a read scans the partition's whole history), and warm
        # clients: a running process's producer has written before, its changelog
        # consumer has read before. Their first use is timed here, apart.
        topic = f"bench-restore-{groups}-{uuid.uuid4().hex[:8]}"
        config = broker.client_config()
        writer = StateChangelog(topic, config, statement="bench")
        reader = StateChangelog(topic, config, statement="bench")  # a process taking over
        clients.extend((writer, reader))
        writer.ensure(RESTORE_PARTITION + 1)
        t0 = time.perf_counter()
        writer.write(WARM_PARTITION, {("trades", WARM_PARTITION): 1}, b"x" * 1024)
        writer.flush()
        t1 = time.perf_counter()
        warm = reader.read(WARM_PARTITION)
        t2 = time.perf_counter()
        assert warm is not None and warm.size == 1024
        cold.append({"first_write_s": t1 - t0, "first_read_s": t2 - t1})
        target = compile_partitioned(RESTORE_SQL, workers=1)
        restored.append(target)
        return (writer, reader, target), {}

    def checkpoint_and_restore(
        writer: StateChangelog, reader: StateChangelog, target: PartitionedQuery
    ) -> None:
        t0 = time.perf_counter()
        writer.write(RESTORE_PARTITION, offsets, state)
        writer.flush()
        t1 = time.perf_counter()
        stored = reader.read(RESTORE_PARTITION)
        t2 = time.perf_counter()
        assert stored is not None, "no snapshot read back"
        target.assign(RESTORE_PARTITION, stored.state)
        t3 = time.perf_counter()
        assert stored.size == len(state) and stored.offsets == offsets
        phases.append(
            {"write_s": t1 - t0, "read_s": t2 - t1, "restore_s": t3 - t2, "total_s": t3 - t0}
        )

    rounds = 3 if groups <= 100_000 else 1
    try:
        benchmark.pedantic(checkpoint_and_restore, setup=setup, rounds=rounds, iterations=1)
        # The restored partitions answer the next records as the original does.
        probe = probe_batch(groups, RESTORE_PARTITION)
        expected = original.process(probe)
        assert expected.num_rows == probe.num_rows
        for target in restored:
            assert target.metrics()["state_groups"] == groups
            got = target.process(probe)
            assert got.equals(expected), f"restored state of {groups:,} groups answers otherwise"
    finally:
        for client in clients:
            client.close()
        for query in [original, *restored]:
            query.close()
    best = min(phases, key=lambda p: p["total_s"])
    size = str(groups)
    for phase in ("first_write_s", "first_read_s"):
        seconds = min(c[phase] for c in cold)
        record_value(benchmark, ("restore_cold", size, phase), phase, seconds)
    record_value(benchmark, ("restore", size, "bytes"), "snapshot_bytes", len(state))
    record_value(benchmark, ("restore", size, "snapshot_s"), "snapshot_s", snapshot_s)
    for phase, seconds in best.items():
        record_value(benchmark, ("restore", size, phase), phase, seconds)
