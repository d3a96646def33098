"""The embedded partitioned query: state per ``_partition``, run on worker threads (SPEC 9).

``compile_partitioned`` keeps one query per input partition, as a Kafka Streams task per
partition. Checked here, with DuckDB as the oracle where it computes the same thing:

* a GROUP BY ... EMIT CHANGES over co-partitioned data (the partition is a function of
  the key) fed as interleaved batches (many runs: the stable-sort path; few runs: the
  slicing path) and as runs of one partition: every change row, partition by partition
  in input order, is DuckDB's running aggregate, the latest row per key is DuckDB's
  GROUP BY, and 1 and 2 workers give the same rows in the same per-partition order;
* state is per partition: one key in two partitions is two groups, unlike ``vs.compile``;
* a stateless projection keeps each partition's input order in interleaved batches;
* a tumbling window with event time: each partition has its own watermark, so a window
  closes in the call where its own partition's watermark reaches its end, whatever the
  other partitions do, and a partition that lags is not late; after ``flush`` every
  (window, key) is DuckDB's;
* ``snapshot``/``restore``/``assign``/``revoke`` of one partition, ``attach_table``,
  ``metrics``/``partition_metrics``, and the errors.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from vs_compare import assert_same_rows, rows_of

import velostream as vs
from velostream.errors import ConfigError, DataError, SnapshotError
from velostream.partitioned import PartitionedQuery, compile_partitioned

PARTITIONS = 6
SYMBOLS = [f"S{i:02d}" for i in range(14)]


def partition_of(sym: str) -> int:
    """The partition of a symbol, as a keyed producer would choose it (not its order)."""
    return (int(sym[1:]) * 5 + 3) % PARTITIONS


CHANGES = (
    "SELECT sym, MAX(_partition) AS p, COUNT(*) AS n, SUM(qty) AS sq, AVG(price) AS ap, "
    "MIN(price) AS mn, MAX(qty) AS mq FROM trades GROUP BY sym EMIT CHANGES"
)
DUCK_AGGS = "COUNT(*), SUM(qty), AVG(price), MIN(price), MAX(qty)"


@contextmanager
def partitioned(sql: str, **kw: Any) -> Iterator[PartitionedQuery]:
    """A compiled partitioned query, its worker threads stopped afterwards."""
    query = compile_partitioned(sql, **kw)
    try:
        yield query
    finally:
        query.close()


def trades(n: int, seed: int) -> pa.Table:
    """Trades in feed order: an interleaved head (>64 runs in its first 200 rows, fewer
    in the next 30, some partitions in several of them) and a tail grouped into runs of one partition, each partition's
    records in their own order. ``rn`` is the feed position."""
    rng = random.Random(seed)
    syms = [rng.choice(SYMBOLS) for _ in range(n)]
    rows = [
        {
            "_partition": partition_of(s),
            "sym": s,
            "qty": rng.randint(-50, 500),
            "price": rng.randint(1, 40_000) / 8,  # binary fractions: exact sums
            # ids in no particular order, so that sorting by anything but the input
            # order shows
            "id": rng.randint(0, 10**9),
        }
        for s in syms
    ]
    # The head: 200 rows interleaved, then 30 rows in fewer runs, a partition in several.
    head, middle, tail = rows[:200], rows[200:230], rows[230:]
    middle = sorted(middle, key=lambda r: r["_partition"] % 3)
    # The tail: runs of one partition (a stable sort keeps each partition's order).
    tail = sorted(tail, key=lambda r: r["_partition"])
    ordered = [*head, *middle, *tail]
    table = pa.Table.from_pylist(
        ordered,
        schema=pa.schema(
            [
                ("_partition", pa.int32()),
                ("sym", pa.string()),
                ("qty", pa.int64()),
                ("price", pa.float64()),
                ("id", pa.int64()),
            ]
        ),
    )
    return table.append_column("rn", pa.array(range(n), pa.int64()))


def runs(column: pa.Array | pa.ChunkedArray) -> int:
    values = column.to_pylist()
    return sum(1 for i, v in enumerate(values) if i == 0 or v != values[i - 1])


def feed_batches(table: pa.Table) -> list[pa.RecordBatch]:
    """The batches of :func:`trades`: the interleaved head, the fewer-runs middle, then
    each partition's run of the tail in two batches (one may be empty)."""
    batch = table.combine_chunks().to_batches()[0]
    out = [batch.slice(0, 200), batch.slice(200, 30)]
    assert runs(out[0].column("_partition")) > 64  # the stable-sort path
    # the slicing path, with partitions in several runs each
    middle = out[1].column("_partition").to_pylist()
    assert len(set(middle)) < runs(out[1].column("_partition")) <= 64
    rest = batch.slice(230)
    parts = rest.column("_partition").to_pylist()
    start = 0
    for index in range(1, len(parts) + 1):
        if index == len(parts) or parts[index] != parts[start]:
            half = (index - start) // 2
            out.append(rest.slice(start, half))
            out.append(rest.slice(start + half, index - start - half))
            start = index
    assert len(out) >= 2 + 2 * 4
    return out


def run(query: Any, batches: list[pa.RecordBatch]) -> list[pa.RecordBatch]:
    """Every ``process`` output, then the ``flush`` output."""
    outs = [query.process(b) for b in batches]
    outs.append(query.flush())
    return outs


def by_partition(rows: list[tuple[Any, ...]], column: int = 1) -> dict[int, list[tuple[Any, ...]]]:
    """Rows grouped by the partition held in ``column``, each group in its order."""
    out: dict[int, list[tuple[Any, ...]]] = {}
    for row in rows:
        out.setdefault(row[column], []).append(row)
    return out


def all_rows(outs: list[pa.RecordBatch]) -> list[tuple[Any, ...]]:
    return [row for out in outs for row in rows_of(out)]


def duck(sql: str, **tables: pa.Table) -> list[tuple[Any, ...]]:
    con = duckdb.connect()
    for name, table in tables.items():
        con.register(name, table)
    return con.execute(sql).fetchall()


# --------------------------------------------------------------------------- GROUP BY


@pytest.mark.parametrize("workers", [1, 2])
def test_group_by_changes_per_partition_equals_duckdb(workers: int) -> None:
    table = trades(700, seed=1)
    with partitioned(CHANGES, workers=workers) as q:
        outs = run(q, feed_batches(table))
        assert outs[-1].num_rows == 0  # EMIT CHANGES: flush emits nothing
        assert q.partitions == sorted(set(table.column("_partition").to_pylist()))
        assert q.metrics()["records_in"] == table.num_rows
    got = by_partition(all_rows(outs))
    # Every change row: DuckDB's running aggregate of the row's key, in feed order.
    changes = duck(
        f"SELECT sym, _partition, {', '.join(a + ' OVER w' for a in DUCK_AGGS.split(', '))} "
        "FROM trades WINDOW w AS (PARTITION BY sym ORDER BY rn ROWS BETWEEN UNBOUNDED "
        "PRECEDING AND CURRENT ROW) ORDER BY rn",
        trades=table,
    )
    want = by_partition(changes)
    assert sorted(got) == sorted(want)
    for p in want:
        assert_same_rows(got[p], want[p], f"partition {p}, workers={workers}")
    # The latest row per key: DuckDB's GROUP BY.
    latest = {row[0]: row for row in all_rows(outs)}
    final = duck(
        f"SELECT sym, MAX(_partition), {DUCK_AGGS} FROM trades GROUP BY sym ORDER BY sym",
        trades=table,
    )
    assert_same_rows([latest[s] for s in sorted(latest)], final, "latest per key")


def test_one_and_two_workers_give_the_same_rows_in_the_same_partition_order() -> None:
    table = trades(600, seed=2)
    results = []
    for workers in (1, 2):
        with partitioned(CHANGES, workers=workers) as q:
            results.append(run(q, feed_batches(table)))
    one, two = (all_rows(r) for r in results)
    assert sorted(one) == sorted(two)  # the same multiset
    assert by_partition(one) == by_partition(two)  # and each partition in one order
    # Call by call, too: each call's rows are the same multiset.
    for a, b in zip(*results, strict=True):
        assert sorted(rows_of(a)) == sorted(rows_of(b))


def test_state_is_per_partition_one_key_in_two_partitions_is_two_groups() -> None:
    sql = "SELECT sym, MAX(_partition) AS p, COUNT(*) AS n, SUM(qty) AS sq FROM t GROUP BY sym"
    batch = pa.record_batch(
        {
            "_partition": pa.array([0, 1, 0, 1, 1, 2, 0], pa.int64()),
            "sym": ["A", "A", "A", "A", "A", "B", "B"],
            "qty": pa.array([1, 10, 2, 20, 30, 5, 7], pa.int64()),
        }
    )
    with partitioned(sql, workers=2) as q:
        got = by_partition(rows_of(q.process(batch)))
        assert q.metrics()["state_groups"] == 4  # (0, A), (1, A), (2, B), (0, B)
        assert {p: m["state_groups"] for p, m in q.partition_metrics().items()} == {
            0: 2,
            1: 1,
            2: 1,
        }
    assert got == {
        0: [("A", 0, 1, 1), ("A", 0, 2, 3), ("B", 0, 1, 7)],
        1: [("A", 1, 1, 10), ("A", 1, 2, 30), ("A", 1, 3, 60)],
        2: [("B", 2, 1, 5)],
    }
    # A plain query holds one group per key, whatever the partition.
    plain = vs.compile(sql)
    assert [r[2] for r in rows_of(plain.process(batch)) if r[0] == "A"] == [1, 2, 3, 4, 5]
    assert plain.metrics()["state_groups"] == 2
    # DuckDB, grouping by partition and key, agrees with the latest rows.
    latest = {(r[1], r[0]): r for rows in got.values() for r in rows}
    assert [latest[k] for k in sorted(latest)] == duck(
        "SELECT sym, _partition, COUNT(*), SUM(qty) FROM t GROUP BY _partition, sym "
        "ORDER BY _partition, sym",
        t=pa.Table.from_batches([batch]),
    )


# --------------------------------------------------------------------------- order


@pytest.mark.parametrize("workers", [1, 2])
def test_stateless_output_keeps_each_partitions_input_order(workers: int) -> None:
    sql = "SELECT id, _partition AS p, qty * 2 AS q2, sym FROM trades WHERE qty % 3 <> 0"
    table = trades(900, seed=3)
    rng = random.Random(3)
    # A batch that interleaves every partition record by record (hundreds of runs).
    mixed = table.take(pa.array(rng.sample(range(table.num_rows), table.num_rows)))
    mixed = mixed.drop_columns(["rn"]).append_column("rn", pa.array(range(900), pa.int64()))
    batches = [*feed_batches(mixed), mixed.to_batches()[0]]
    with partitioned(sql, workers=workers) as q:
        outs = run(q, batches)
    got = by_partition(all_rows(outs))
    fed = pa.concat_tables([pa.Table.from_batches([b]) for b in batches])
    fed = fed.drop_columns(["rn"]).append_column("rn", pa.array(range(fed.num_rows)))
    want = by_partition(
        duck(
            "SELECT id, _partition, qty * 2, sym FROM fed WHERE qty % 3 <> 0 ORDER BY rn",
            fed=fed,
        )
    )
    assert got == want
    # The big interleaved batch alone: each partition's rows in its input order.
    with partitioned(sql, workers=workers) as q:
        single = by_partition(rows_of(q.process(mixed.to_batches()[0])))
    assert single == by_partition(
        duck(
            "SELECT id, _partition, qty * 2, sym FROM mixed WHERE qty % 3 <> 0 ORDER BY rn",
            mixed=mixed,
        )
    )


# --------------------------------------------------------------------------- windows

WINDOW = (
    "SELECT k, MAX(_partition) AS p, COUNT(*) AS c, SUM(x) AS s, _window_start, _window_end "
    "FROM t GROUP BY k WINDOW TUMBLING(10ms) EMIT FINAL"
)
OFFSETS = {0: 0, 1: 400, 2: 2_000}  # each partition's own time, far apart


def window_stream(seed: int, bound: int) -> tuple[pa.Table, list[tuple[int, int]]]:
    """Three partitions whose times are far apart, each out of order within ``bound``.

    Fed as: partition 2 (the most advanced) alone first, then the three interleaved at
    random, then partition 0 alone; ``rn`` is the feed position. Returns the table and
    the cut points of the ``process`` calls.
    """
    rng = random.Random(seed)
    per: dict[int, list[dict[str, Any]]] = {}
    for p, offset in OFFSETS.items():
        base = offset
        rows = []
        for _ in range(120):
            base += rng.choice([0, 1, 2, 3, 5])
            rows.append(
                {
                    "_partition": p,
                    "ts": base - rng.randint(0, bound),
                    "k": f"k{p}{rng.randint(0, 2)}",
                    "x": rng.randint(-100, 100),
                }
            )
        per[p] = rows
    order = [*per[2][:40]]
    cursors = {0: 0, 1: 0, 2: 40}
    while any(cursors[p] < 80 + 40 * (p == 2) for p in cursors):
        p = rng.choice([p for p in cursors if cursors[p] < 80 + 40 * (p == 2)])
        order.append(per[p][cursors[p]])
        cursors[p] += 1
    order += per[1][80:]
    order += per[0][80:]
    table = pa.Table.from_pylist(
        order,
        schema=pa.schema(
            [("_partition", pa.int16()), ("ts", pa.int64()), ("k", pa.string()), ("x", pa.int64())]
        ),
    ).append_column("rn", pa.array(range(len(order)), pa.int64()))
    cuts = sorted({0, len(order), *rng.sample(range(1, len(order)), 9), 40, 280})
    return table, list(itertools.pairwise(cuts))


def closing_calls(
    table: pa.Table, pieces: list[tuple[int, int]], bound: int
) -> dict[tuple[int, int, str], int]:
    """(partition, window start, key) -> the call in which the partition's own watermark
    (its max time minus ``bound``) first reaches the window's end (``len(pieces)``:
    flush)."""
    rows = table.to_pylist()
    highest: dict[int, int] = {}
    marks: list[dict[int, int]] = []
    for lo, hi in pieces:
        for r in rows[lo:hi]:
            highest[r["_partition"]] = max(highest.get(r["_partition"], r["ts"]), r["ts"])
        marks.append({p: h - bound for p, h in highest.items()})
    out = {}
    for r in rows:
        start = r["ts"] - r["ts"] % 10
        call = next(
            (i for i, m in enumerate(marks) if m.get(r["_partition"], -(10**9)) >= start + 10),
            len(pieces),
        )
        out[(r["_partition"], start, r["k"])] = call
    return out


@pytest.mark.parametrize(("bound", "workers"), [(0, 1), (0, 2), (6, 2)])
def test_tumbling_windows_close_on_their_own_partitions_watermark(bound: int, workers: int) -> None:
    props = {"event.time.field": "ts", "watermark.max_out_of_orderness": f"{bound}ms"}
    table, pieces = window_stream(seed=bound + workers, bound=bound)
    batch = table.combine_chunks().to_batches()[0]
    with partitioned(WINDOW, properties=props, workers=workers) as q:
        outs = [q.process(batch.slice(lo, hi - lo)) for lo, hi in pieces]
        outs.append(q.flush())
        assert q.metrics()["late_dropped"] == 0  # a lagging partition is not late
        assert q.metrics()["state_groups"] == 0
    calls = closing_calls(table, pieces, bound)
    for call, out in enumerate(outs):
        for k, p, _c, _s, start, end in rows_of(out):
            assert end == start + 10
            assert calls[(p, start, k)] == call, (
                f"window {start} of {k} (partition {p}) came from call {call}, "
                f"expected {calls[(p, start, k)]} (calls {pieces})"
            )
        # each call's rows of one partition by window end, then key
        for rows in by_partition(rows_of(out)).values():
            assert rows == sorted(rows, key=lambda r: (r[5], r[0]))
    # Partition 2 ran alone first: its windows closed then, not held back by the others.
    assert {r[1] for r in rows_of(outs[0])} == {2}
    got = sorted(all_rows(outs), key=lambda r: (r[4], r[0]))
    want = duck(
        "SELECT k, MAX(_partition), COUNT(*), SUM(x), ws, ws + 10 FROM "
        "(SELECT *, ts - (ts % 10 + 10) % 10 AS ws FROM t) GROUP BY k, ws ORDER BY ws, k",
        t=table,
    )
    assert_same_rows(got, want, f"bound {bound}")
    # One query over every partition (one watermark, the minimum over the partitions
    # seen) finds the partitions that start behind partition 2 late.
    plain = vs.compile(WINDOW, properties=props)
    for lo, hi in pieces:
        plain.process(batch.slice(lo, hi - lo))
    plain.flush()
    assert plain.metrics()["late_dropped"] > 0


def test_a_lagging_partitions_window_is_not_closed_by_another_partition() -> None:
    props = {"event.time.field": "ts"}

    def batch(p: list[int], ts: list[int]) -> pa.RecordBatch:
        return pa.record_batch(
            {
                "_partition": pa.array(p, pa.int64()),
                "ts": pa.array(ts, pa.int64()),
                "k": [f"k{x}" for x in p],
                "x": pa.array([1] * len(p), pa.int64()),
            }
        )

    with partitioned(WINDOW, properties=props, workers=2) as q:
        assert rows_of(q.process(batch([0, 1], [1, 2]))) == []
        # Partition 1 runs far ahead: its window [0, 10) closes, partition 0's does not.
        assert rows_of(q.process(batch([1], [500]))) == [("k1", 1, 1, 1, 0, 10)]
        # Partition 0 is still at its own time: 5 is not late, its window still open.
        assert rows_of(q.process(batch([0, 0], [5, 9]))) == []
        assert rows_of(q.process(batch([0], [10]))) == [("k0", 0, 3, 3, 0, 10)]
        # A partition first seen after the others went far is not late either.
        assert rows_of(q.process(batch([2, 2], [3, 11]))) == [("k2", 2, 1, 1, 0, 10)]
        assert q.metrics()["late_dropped"] == 0
        assert q.watermark == 10  # the lowest of the partitions' watermarks
        assert rows_of(q.flush()) == [
            ("k0", 0, 1, 1, 10, 20),
            ("k1", 1, 1, 1, 500, 510),
            ("k2", 2, 1, 1, 10, 20),
        ]


# --------------------------------------------------------------------------- partition state


@pytest.mark.parametrize(
    ("sql", "props"),
    [
        (CHANGES, {}),
        (
            "SELECT sym, MAX(_partition) AS p, COUNT(*) AS n, SUM(qty) AS sq, _window_start "
            "FROM trades GROUP BY sym WINDOW TUMBLING(50ms)",
            {"event.time.field": "rn"},
        ),
    ],
    ids=["changes", "window"],
)
def test_a_restored_partition_continues_as_the_original_would(
    sql: str, props: dict[str, str]
) -> None:
    table = trades(700, seed=4)
    batches = feed_batches(table)
    first, second = batches[:5], batches[5:]
    with (
        partitioned(sql, properties=props, workers=2) as original,
        partitioned(sql, properties=props, workers=1) as restored,
        partitioned(sql, properties=props, workers=1) as fresh,
    ):
        for b in first:
            original.process(b)
        held = original.partitions
        assert len(held) == PARTITIONS
        for p in held:
            blob = original.snapshot(p)
            if p % 2:
                assert restored.restore(p, blob) is restored
            else:
                restored.assign(p, blob)
            assert isinstance(blob, bytes)
        assert restored.partitions == held
        assert {p: m["records_in"] for p, m in restored.partition_metrics().items()} == {
            p: m["records_in"] for p, m in original.partition_metrics().items()
        }
        want = run(original, second)
        got = run(restored, second)
        for a, b in zip(got, want, strict=True):
            assert rows_of(a) == rows_of(b)
        assert sum(b.num_rows for b in got) > 30
        # Without the state the continuation differs.
        assert all_rows(run(fresh, second)) != all_rows(want)


def test_one_partition_moves_to_another_query() -> None:
    table = trades(600, seed=5)
    batches = feed_batches(table)
    with partitioned(CHANGES, workers=2) as a, partitioned(CHANGES, workers=2) as b:
        for batch in batches[:4]:
            a.process(batch)
        moved = a.partitions[2]
        b.assign(moved, a.snapshot(moved))
        a.revoke(moved)
        assert moved not in a.partitions and a.worker_of(moved) is None
        assert b.partitions == [moved]
        rest = pa.Table.from_batches(batches[4:])
        mask = pc.equal(rest.column("_partition"), moved)
        out_b = all_rows(run(b, rest.filter(mask).to_batches()))
        out_a = all_rows(run(a, rest.filter(pc.invert(mask)).to_batches()))
    # Together they equal one query that kept everything.
    with partitioned(CHANGES, workers=1) as whole:
        every = by_partition(all_rows(run(whole, batches)))
    moved_rows = by_partition(out_b)
    assert list(moved_rows) == [moved]
    assert every[moved][-len(moved_rows[moved]) :] == moved_rows[moved]
    for p, rows in by_partition(out_a).items():
        assert every[p][-len(rows) :] == rows


def test_revoke_drops_the_state_and_keeps_the_totals() -> None:
    batch = pa.record_batch(
        {
            "_partition": pa.array([0, 1, 0, 1, 0], pa.int64()),
            "sym": ["A", "B", "A", "B", "C"],
            "qty": pa.array([1, 2, 3, 4, 5], pa.int64()),
        }
    )
    sql = "SELECT sym, COUNT(*) AS n, SUM(qty) AS sq FROM t GROUP BY sym"
    with partitioned(sql, workers=2) as q:
        q.process(batch)
        before = q.metrics()
        assert before["records_in"] == 5 and before["state_groups"] == 3
        q.revoke(0)
        q.revoke(7)  # not held: nothing happens
        after = q.metrics()
        assert q.partitions == [1] and list(q.partition_metrics()) == [1]
        assert q.worker_of(0) is None
        # counters do not go backwards; what is held now is partition 1's state only
        for key in ("records_in", "records_out", "batches_in"):
            assert after[key] == before[key], key
        assert after["partitions"] == 1
        assert after["state_groups"] == 1
        assert after["state_bytes"] == q.partition_metrics()[1]["state_bytes"]
        assert after["state_bytes"] < before["state_bytes"]
        with pytest.raises(ConfigError, match="partition 0 is not held"):
            q.snapshot(0)
        # A later record of partition 0 starts a new group.
        out = q.process(
            pa.record_batch(
                {
                    "_partition": pa.array([0, 1], pa.int64()),
                    "sym": ["A", "B"],
                    "qty": pa.array([10, 20], pa.int64()),
                }
            )
        )
        assert rows_of(out) == [("A", 1, 10), ("B", 3, 26)]
        assert q.metrics()["records_in"] == 7
        assert q.metrics()["records_out"] == before["records_out"] + 2


def test_snapshot_of_a_partition_not_held_is_a_config_error() -> None:
    with partitioned(CHANGES, workers=1) as q:
        with pytest.raises(ConfigError, match="partition 3 is not held") as info:
            q.snapshot(3)
        assert info.value.key == "partition"
        q.assign(3)  # held, with no state
        assert q.partitions == [3] and q.worker_of(3) == 0
        assert isinstance(q.snapshot(3), bytes)


def test_restoring_garbage_is_a_snapshot_error_and_changes_nothing() -> None:
    table = trades(300, seed=6)
    batches = feed_batches(table)
    with partitioned(CHANGES, workers=2) as q, partitioned(CHANGES, workers=2) as twin:
        for b in batches[:3]:
            q.process(b)
            twin.process(b)
        held = q.partitions
        states = {p: q.snapshot(p) for p in held}
        workers = {p: q.worker_of(p) for p in held}
        blob = states[held[0]]
        other = vs.compile("SELECT sym, SUM(qty) AS s FROM t GROUP BY sym")
        other.process(batches[0])
        bad_blobs = [
            b"garbage",
            b"",
            blob[: len(blob) // 2],
            blob[:-1],
            blob[:20] + bytes([blob[20] ^ 0x40]) + blob[21:],
            other.snapshot(),  # a snapshot of another query
        ]
        for bad in bad_blobs:
            for p in (held[1], 99):  # a partition held, one not held
                with pytest.raises(SnapshotError):
                    q.restore(p, bad)
                with pytest.raises(SnapshotError):
                    q.assign(p, bad)
            assert q.partitions == held
            assert q.worker_of(99) is None
            assert {p: q.snapshot(p) for p in held} == states
            assert {p: q.worker_of(p) for p in held} == workers
        # and it goes on as an untouched query does
        for b in batches[3:]:
            assert rows_of(q.process(b)) == rows_of(twin.process(b))


# --------------------------------------------------------------------------- tables

REF = pa.table({"sym": SYMBOLS[:-2], "name": [f"name of {s}" for s in SYMBOLS[:-2]]})
JOIN = (
    "SELECT t.id, t._partition AS p, t.sym, r.name, t.qty FROM trades t JOIN ref r ON t.sym = r.sym"
)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_stream_table_join_works_in_every_partition(workers: int) -> None:
    table = trades(500, seed=7)
    batches = feed_batches(table)
    with partitioned(JOIN, workers=workers) as q:
        # attached before any partition exists, and then to partitions made later
        q.attach_table("ref", REF)
        outs = run(q, batches)
        assert len(q.partitions) == PARTITIONS
    want = by_partition(
        duck(
            "SELECT t.id, t._partition, t.sym, r.name, t.qty FROM trades t "
            "JOIN ref r ON t.sym = r.sym ORDER BY t.rn",
            trades=table,
            ref=REF,
        )
    )
    assert by_partition(all_rows(outs)) == want
    assert len(want) == PARTITIONS


def test_a_registry_table_is_shared_by_every_partition() -> None:
    registry = vs.TableRegistry()
    handle = registry.create("ref", key="sym", source="test")
    handle.upsert(pa.record_batch({"sym": ["S00", "S01"], "name": ["zero", "one"]}))
    handle.mark_ready()
    sql = "SELECT t._partition AS p, t.sym, r.name FROM trades t LEFT JOIN ref r ON t.sym = r.sym"

    def batch(parts: list[int], syms: list[str]) -> pa.RecordBatch:
        return pa.record_batch({"_partition": pa.array(parts, pa.int32()), "sym": syms})

    with partitioned(sql, workers=2) as q:
        q.attach_table("ref", handle)
        assert rows_of(q.process(batch([0, 1], ["S00", "S02"]))) == [
            (0, "S00", "zero"),
            (1, "S02", None),
        ]
        handle.upsert(pa.record_batch({"sym": ["S02", "S00"], "name": ["two", "ZERO"]}))
        out = q.process(batch([0, 1, 2, 2], ["S02", "S00", "S01", "S09"]))
        assert sorted(rows_of(out)) == [
            (0, "S02", "two"),
            (1, "S00", "ZERO"),
            (2, "S01", "one"),
            (2, "S09", None),
        ]


# --------------------------------------------------------------------------- metrics


def test_metrics_per_partition_and_workers() -> None:
    table = trades(500, seed=8)
    counts: dict[int, int] = {}
    for p in table.column("_partition").to_pylist():
        counts[p] = counts.get(p, 0) + 1
    with partitioned(CHANGES, workers=2) as q:
        assert q.metrics()["partitions"] == 0
        run(q, feed_batches(table))
        per = q.partition_metrics()
        assert sorted(per) == sorted(counts) == q.partitions
        assert {p: m["records_in"] for p, m in per.items()} == counts
        assert all(m["worker"] in range(2) for m in per.values())
        assert {m["worker"] for m in per.values()} == {0, 1}  # spread over both
        assert all(q.worker_of(p) == m["worker"] for p, m in per.items())
        total = q.metrics()
        assert total["partitions"] == PARTITIONS
        for key in ("records_in", "records_out", "state_groups", "state_bytes"):
            assert total[key] == sum(m[key] for m in per.values()), key
        assert total["records_in"] == table.num_rows
    with partitioned(CHANGES, workers=3) as q:
        q.process(table.slice(0, 50))
        assert {m["worker"] for m in q.partition_metrics().values()} == set(range(3))
    with partitioned(CHANGES, workers=1) as q:
        q.process(table.slice(0, 50))
        assert {m["worker"] for m in q.partition_metrics().values()} == {0}
        assert q.workers == 1


def test_expect_partitions_holds_them_and_take_progress_spans_them() -> None:
    props = {"event.time.field": "ts"}
    with partitioned(WINDOW, properties=props, workers=2) as q:
        q.expect_partitions([4, 5])
        assert q.partitions == [4, 5]
        q.process(
            pa.record_batch(
                {
                    "_partition": pa.array([4, 5, 4], pa.int64()),
                    "ts": pa.array([3, 40, 7], pa.int64()),
                    "k": ["a", "b", "a"],
                    "x": pa.array([1, 2, 3], pa.int64()),
                }
            )
        )
        latest, held = q.take_progress()
        assert latest == 40  # the latest time over the partitions
        # partition 4's window [0, 10) is still open (its own watermark is 7), so what is
        # held starts there; one query over both would have closed it (watermark 40)
        assert held == 0
        assert q.take_progress() == (None, 0)
        q.process(
            pa.record_batch(
                {
                    "_partition": pa.array([4], pa.int64()),
                    "ts": pa.array([45], pa.int64()),
                    "k": ["a"],
                    "x": pa.array([1], pa.int64()),
                }
            )
        )
        assert q.take_progress() == (45, 40)


# --------------------------------------------------------------------------- errors


def test_input_without_the_partition_column_is_a_data_error() -> None:
    sql = "SELECT sym, COUNT(*) AS n FROM trades GROUP BY sym"
    with partitioned(sql, workers=2) as q:
        with pytest.raises(DataError, match="_partition") as info:
            q.process(table_without_partition())
        assert info.value.field == "_partition"
        assert q.partitions == []
    with partitioned(sql, workers=2, partition_column="part") as q:
        with pytest.raises(DataError, match="'part'"):
            q.process(trades(10, seed=0))
        renamed = trades(10, seed=0).rename_columns(["part", "sym", "qty", "price", "id", "rn"])
        assert q.process(renamed).num_rows == 10


def table_without_partition() -> pa.Table:
    return trades(10, seed=0).drop_columns(["_partition"])


@pytest.mark.parametrize(
    ("column", "match"),
    [
        (pa.array([0, None, 1], pa.int32()), "null"),
        (pa.array([None, None, None], pa.null()), "null"),
        (pa.array([0.0, 1.0, 2.0]), "integer"),
        (pa.array(["0", "1", "2"]), "integer"),
        (pa.array([True, False, True]), "integer"),
        (pa.array([0, 1, 1], pa.int64()).dictionary_encode(), "integer"),
    ],
    ids=["null", "all-null", "float", "string", "bool", "dictionary"],
)
def test_a_bad_partition_column_is_a_data_error_and_nothing_is_processed(
    column: pa.Array, match: str
) -> None:
    batch = pa.record_batch(
        {"_partition": column, "sym": ["A", "B", "A"], "qty": pa.array([1, 2, 3], pa.int64())}
    )
    sql = "SELECT sym, COUNT(*) AS n FROM t GROUP BY sym"
    with partitioned(sql, workers=2) as q:
        with pytest.raises(DataError, match=match) as info:
            q.process(batch)
        assert info.value.field == "_partition"
        assert q.partitions == [] and q.metrics()["records_in"] == 0


@pytest.mark.parametrize("workers", [0, -1, 1.5, "2"])
def test_workers_below_one_is_a_config_error(workers: Any) -> None:
    with pytest.raises(ConfigError, match="workers") as info:
        compile_partitioned(CHANGES, workers=workers)
    assert info.value.key == "workers"


def test_union_all_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="UNION ALL"):
        compile_partitioned("SELECT a FROM s1 UNION ALL SELECT a FROM s2")


def test_a_non_batch_input_is_a_data_error() -> None:
    with partitioned(CHANGES, workers=1) as q, pytest.raises(DataError, match="RecordBatch"):
        q.process([{"_partition": 0, "sym": "A", "qty": 1, "price": 1.0}])


def test_a_refused_first_batch_changes_nothing() -> None:
    """A first batch without ``_partition`` is refused; it must not become the schema
    the partitions made later are bound to."""
    sql = "SELECT sym, MAX(_partition) AS p, COUNT(*) AS n FROM trades GROUP BY sym"
    good = trades(20, seed=9)
    with partitioned(sql, workers=2) as q:
        with pytest.raises(DataError, match="_partition"):
            q.process(good.drop_columns(["_partition"]))
        with pytest.raises(DataError, match="null"):
            q.process(good.set_column(0, "_partition", pa.nulls(20, pa.int32())))
        assert q.partitions == [] and q.metrics()["records_in"] == 0
        out = q.process(good)
    with partitioned(sql, workers=2) as untouched:
        assert rows_of(out) == rows_of(untouched.process(good))
