"""The offset tracker: what may be committed once the sinks acknowledged (SPEC section 1)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from velostream.runtime.checkpoint import HOLD_ALL, Checkpoint, OffsetTracker, releases


def test_a_batch_is_released_when_its_latest_row_is_older_than_everything_held() -> None:
    assert releases(latest=999, held=1000)
    assert not releases(latest=1000, held=1000)
    assert releases(latest=5, held=None)
    assert not releases(latest=None, held=HOLD_ALL)
    assert releases(latest=None, held=1000)  # a batch of no timed rows holds nothing


def test_a_partition_commits_up_to_its_oldest_batch_still_held() -> None:
    tracker = OffsetTracker()
    tracker.add("s", [("t", 0, 0, 9), ("t", 1, 0, 4)], latest=100)
    tracker.add("s", [("t", 0, 10, 19)], latest=2000)
    tracker.add("s", [("t", 1, 5, 9)], latest=150)
    tracker.release(held=1000)  # the window from 1000 is open: batch 2 is held
    assert tracker.committable() == {"s": {("t", 0): 10, ("t", 1): 10}}
    # Nothing new: nothing to commit again.
    assert tracker.committable() == {}
    tracker.release(held=None)
    assert tracker.committable() == {"s": {("t", 0): 20}}
    assert tracker.pending == 0


def test_a_released_batch_behind_a_held_one_is_committed_once_that_one_is() -> None:
    tracker = OffsetTracker()
    tracker.add("s", [("t", 0, 0, 9)], latest=5000)  # held
    tracker.add("s", [("t", 0, 10, 19)], latest=100)  # released, but behind the held one
    tracker.release(held=1000)
    assert tracker.committable() == {"s": {("t", 0): 0}}
    tracker.release(held=None)
    assert tracker.committable() == {"s": {("t", 0): 20}}


def test_a_group_by_without_a_window_holds_everything_until_its_end() -> None:
    tracker = OffsetTracker()
    tracker.add("s", [("t", 0, 0, 9)], latest=None)
    tracker.release(held=HOLD_ALL)
    assert tracker.committable() == {"s": {("t", 0): 0}}
    tracker.release(held=None)
    assert tracker.committable() == {"s": {("t", 0): 10}}


def test_the_checkpoint_flushes_every_sink_before_it_commits() -> None:
    events: list[str] = []

    class Source:
        name = "s"

        def commit(self, offsets):
            events.append(f"commit {sorted(offsets.items())}")

    tracker = OffsetTracker()
    tracker.add("s", [("t", 0, 0, 4)], latest=None)
    tracker.release(held=None)
    flushes = [lambda: events.append("flush a"), lambda: events.append("flush b")]
    checkpoint = Checkpoint(tracker, flushes, [Source()])
    checkpoint.run()
    assert events == ["flush a", "flush b", "commit [(('t', 0), 5)]"]
    assert checkpoint.commits == 1


def test_a_failed_flush_commits_nothing() -> None:
    committed: list[object] = []

    class Source:
        name = "s"

        def commit(self, offsets):
            committed.append(offsets)

    def failing() -> None:
        raise OSError("disk full")

    tracker = OffsetTracker()
    tracker.add("s", [("t", 0, 0, 4)], latest=None)
    tracker.release(held=None)
    with pytest.raises(OSError):
        Checkpoint(tracker, [failing], [Source()]).run()
    assert committed == []


@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.integers(1, 5), st.integers(0, 100)),
        min_size=1,
        max_size=40,
    ),
    st.lists(st.integers(0, 120), min_size=1, max_size=10),
)
def test_a_committed_offset_never_passes_a_record_not_released(batches, helds) -> None:
    """Random batches over 3 partitions, random held marks: every record behind a
    committed offset was released, commits only move forward, and at the end of the
    input everything is committed."""
    tracker = OffsetTracker()
    next_offset = [0, 0, 0]
    released: list[tuple[int, int, int, int]] = []  # (partition, first, last, latest)
    pending: list[tuple[int, int, int, int]] = []
    committed = [0, 0, 0]

    def commit() -> None:
        for (_, partition), offset in tracker.committable().get("s", {}).items():
            assert offset >= committed[partition]
            committed[partition] = offset
        for partition, first, last, _ in pending:
            # A batch not released is never behind a committed offset.
            assert committed[partition] <= first or committed[partition] > last
            assert committed[partition] <= first

    for i, (partition, size, latest) in enumerate(batches):
        first = next_offset[partition]
        next_offset[partition] += size
        tracker.add("s", [("t", partition, first, first + size - 1)], latest)
        pending.append((partition, first, first + size - 1, latest))
        held = helds[i % len(helds)]
        tracker.release(held)
        still = [b for b in pending if not releases(b[3], held)]
        released += [b for b in pending if releases(b[3], held)]
        pending = still
        commit()
    tracker.release(None)
    pending = []
    commit()
    assert committed == next_offset


def test_while_everything_is_held_batches_merge_into_one_entry_per_source() -> None:
    tracker = OffsetTracker()
    tracker.add("s", [("t", 0, 0, 9)], latest=None)
    tracker.release(held=HOLD_ALL)
    for i in range(1, 1000):
        tracker.add("s", [("t", i % 2, 10 * i, 10 * i + 9)], latest=None)
        tracker.release(held=HOLD_ALL)
    assert tracker.pending == 1  # not 1000: a long run stays small
    assert tracker.committable() == {"s": {("t", 0): 0, ("t", 1): 10}}
    tracker.release(held=None)  # the end of the input: everything was emitted
    assert tracker.committable() == {"s": {("t", 0): 9990, ("t", 1): 10000}}
