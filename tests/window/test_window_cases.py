"""Hand-made window cases with their exact output rows (SPEC sections 4, 5 and 12).

Each case feeds a few small ``process`` calls and checks what every call returns, the
watermark and the counters: session merging, each late-data strategy, allowed lateness,
idle partitions, windows emitted before ``flush``, EMIT CHANGES and HAVING with windows,
the window-bound functions, processing time, snapshots of windowed state, the legacy path,
event-time errors and configuration errors.
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

import pyarrow as pa
import pytest
from window_support import assert_identical, batch, feed, rows_of

import velostream as vs

TS = {"event.time.field": "ts"}
COUNT_SUM = (
    "SELECT k, COUNT(*) AS c, SUM(x) AS s, _window_start, _window_end FROM t GROUP BY k "
    "WINDOW {window}"
)


def calls(
    query: vs.Query, batches: list[pa.RecordBatch]
) -> tuple[list[list[tuple[Any, ...]]], list[tuple[Any, ...]]]:
    """Rows of every process call, and of the flush."""
    outputs = [rows_of(query.process(b)) for b in batches]
    return outputs, rows_of(query.flush())


# --------------------------------------------------------------------------- sessions


def test_session_merged_by_a_row_behind_the_watermark_that_bridges_two_sessions() -> None:
    """A row behind the watermark (6 < 7) whose own window [6, 16) is open, overlapping
    the sessions [0, 10) and [15, 25): the three become one session [0, 25)."""
    q = vs.compile(
        COUNT_SUM.format(window="SESSION(10ms)"),
        properties={**TS, "watermark.max_out_of_orderness": "8ms"},
    )
    assert rows_of(q.process(batch(k=["a", "a"], x=[1, 2], ts=[0, 15]))) == []
    assert q.watermark == 7
    assert rows_of(q.process(batch(k=["a", "b"], x=[4, 100], ts=[6, 30]))) == []
    assert q.watermark == 22
    assert rows_of(q.process(batch(k=["b"], x=[1000], ts=[45]))) == [("a", 3, 7, 0, 25)]
    assert q.watermark == 37
    assert rows_of(q.flush()) == [("b", 1, 100, 30, 40), ("b", 1, 1000, 45, 55)]
    assert q.metrics()["late_dropped"] == 0


def test_session_bridges_chain_into_one_session() -> None:
    """Rows exactly ``gap`` apart are separate sessions; rows between them merge them,
    each merge folding the accumulator states of both sessions."""
    q = vs.compile(
        COUNT_SUM.format(window="SESSION(10ms)"),
        properties={**TS, "watermark.max_out_of_orderness": "100ms"},
    )
    out, flushed = calls(
        q,
        [
            batch(k=["a", "a", "a", "a"], x=[1, 2, 4, 8], ts=[0, 10, 20, 30]),
            batch(k=["a"], x=[16], ts=[5]),  # merges [0, 10) and [10, 20)
            batch(k=["a", "b"], x=[32, 1], ts=[25, 3]),  # merges [20, 30) and [30, 40)
            batch(k=["a"], x=[64], ts=[15]),  # merges [0, 20) and [20, 40)
            batch(k=["b"], x=[2], ts=[13]),  # exactly gap after b's row: a new session
        ],
    )
    assert out == [[], [], [], [], []]
    assert flushed == [
        ("b", 1, 1, 3, 13),
        ("b", 1, 2, 13, 23),
        ("a", 7, 127, 0, 40),
    ]
    assert q.metrics()["state_groups"] == 0


def test_session_rows_exactly_gap_apart_are_different_sessions() -> None:
    q = vs.compile(COUNT_SUM.format(window="SESSION(10ms)"), properties=TS)
    out, flushed = calls(q, [batch(k=["a", "a", "a"], x=[1, 2, 3], ts=[0, 10, 19])])
    # the watermark (19) passes the first session's end (10) within the call
    assert out == [[("a", 1, 1, 0, 10)]]
    assert flushed == [("a", 2, 5, 10, 29)]


def test_session_end_is_the_last_row_plus_gap_whatever_the_arrival_order() -> None:
    q = vs.compile(
        COUNT_SUM.format(window="SESSION(10ms)"),
        properties={**TS, "watermark.max_out_of_orderness": "10ms"},
    )
    out, flushed = calls(q, [batch(k=["a", "a", "a"], x=[1, 2, 3], ts=[0, 7, 3])])
    assert out == [[]]
    assert flushed == [("a", 3, 6, 0, 17)]


def test_session_row_behind_the_watermark_inside_an_open_session_is_not_late() -> None:
    """SPEC 12: "A record behind the watermark whose window is still open counts
    normally". Key a's session is [50, 115) (gap 20, last row 95) and the watermark is 110:
    the session is open, and a row at 85 lies inside it, so it joins it (as Flink merges
    a session row first and then asks whether the merged window is late)."""
    q = vs.compile(
        "SELECT k, COUNT(*) AS c, _window_start, _window_end FROM t GROUP BY k "
        "WINDOW SESSION(20ms)",
        properties={**TS, "watermark.strategy": "ascending"},
    )
    first = q.process(batch(k=["a", "a", "a", "a", "a", "b"], ts=[50, 60, 70, 80, 95, 110]))
    assert rows_of(first) == []
    assert q.watermark == 110
    assert rows_of(q.process(batch(k=["a"], ts=[85]))) == []
    assert q.metrics()["late_dropped"] == 0, "a row inside an open session was counted late"
    assert rows_of(q.flush()) == [("a", 6, 50, 115), ("b", 1, 110, 130)]


def test_session_late_row_is_dropped_and_counted() -> None:
    q = vs.compile(COUNT_SUM.format(window="SESSION(10ms)"), properties=TS)
    out, flushed = calls(
        q,
        [
            batch(k=["a", "b"], x=[1, 2], ts=[0, 30]),
            batch(k=["a"], x=[4], ts=[5]),  # [5, 15) ends before the watermark 30
        ],
    )
    assert out == [[("a", 1, 1, 0, 10)], []]
    assert flushed == [("b", 1, 2, 30, 40)]
    assert q.metrics()["late_dropped"] == 1


# --------------------------------------------------------------------------- late data

# Tumbling 10ms windows, watermark = max event time (bound 0):
# call 1: a@1, a@5, b@12        watermark 12: [0, 10) closes
# call 2: a@3 (late), b@25      watermark 25: [10, 20) closes
# call 3: a@8 (late)
# call 4: a@41                  watermark 41: [20, 30) closes
# call 5: a@9 (late)
LATE_STREAM = [
    batch(k=["a", "a", "b"], x=[1, 2, 3], ts=[1, 5, 12]),
    batch(k=["a", "b"], x=[10, 20], ts=[3, 25]),
    batch(k=["a"], x=[100], ts=[8]),
    batch(k=["a"], x=[1000], ts=[41]),
    batch(k=["a"], x=[7], ts=[9]),
]
TUMBLING_10 = COUNT_SUM.format(window="TUMBLING(10ms)")


def test_late_drop_is_counted() -> None:
    q = vs.compile(TUMBLING_10, properties={**TS, "late.data.strategy": "drop"})
    outputs, dropped = [], []
    for b in LATE_STREAM:
        outputs.append(rows_of(q.process(b)))
        dropped.append(q.metrics()["late_dropped"])
    assert outputs == [
        [("a", 2, 3, 0, 10)],
        [("b", 1, 3, 10, 20)],
        [],
        [("b", 1, 20, 20, 30)],
        [],
    ]
    assert dropped == [0, 1, 2, 2, 3]
    assert rows_of(q.flush()) == [("a", 1, 1000, 40, 50)]
    assert q.dead_letters().num_rows == 0
    assert q.metrics()["dead_lettered"] == 0


def test_late_drop_is_the_default() -> None:
    q = vs.compile(TUMBLING_10, properties=TS)
    for b in LATE_STREAM:
        q.process(b)
    assert q.metrics()["late_dropped"] == 3


def test_late_dead_letter_routes_the_record_with_its_reason() -> None:
    q = vs.compile(TUMBLING_10, properties={**TS, "late.data.strategy": "dead_letter"})
    outputs, letters = [], []
    for b in LATE_STREAM:
        outputs.append(rows_of(q.process(b)))
        dead = q.dead_letters()
        assert dead.schema.names == ["record", "reason"]
        assert dead.schema.field("record").type == pa.string()
        assert dead.schema.field("reason").type == pa.string()
        letters.append(rows_of(dead))
    assert outputs == [
        [("a", 2, 3, 0, 10)],
        [("b", 1, 3, 10, 20)],
        [],
        [("b", 1, 20, 20, 30)],
        [],
    ]
    assert rows_of(q.flush()) == [("a", 1, 1000, 40, 50)]
    records = [[json.loads(record) for record, _ in call] for call in letters]
    assert records == [
        [],
        [{"k": "a", "x": 10, "ts": 3}],
        [{"k": "a", "x": 100, "ts": 8}],
        [],
        [{"k": "a", "x": 7, "ts": 9}],
    ]
    # the reason says the record is late and names its time and the watermark
    for call, (ts, mark) in ((1, (3, 12)), (2, (8, 25)), (4, (9, 41))):
        reason = letters[call][0][1]
        assert "late" in reason.lower(), reason
        assert str(ts) in reason and str(mark) in reason, reason
    metrics = q.metrics()
    assert metrics["dead_lettered"] == 3
    assert metrics["late_dropped"] == 0
    assert q.dead_letters().num_rows == 0  # cleared on read


def test_late_include_in_next_window_places_the_row_at_the_watermark() -> None:
    q = vs.compile(TUMBLING_10, properties={**TS, "late.data.strategy": "include_in_next_window"})
    out, flushed = calls(q, LATE_STREAM)
    assert out == [
        [("a", 2, 3, 0, 10)],
        # a@3 behind the watermark 12 counts as a@12: window [10, 20)
        [("a", 1, 10, 10, 20), ("b", 1, 3, 10, 20)],
        [],  # a@8 behind 25 counts as a@25: window [20, 30)
        [("a", 1, 100, 20, 30), ("b", 1, 20, 20, 30)],
        [],  # a@9 behind 41 counts as a@41
    ]
    assert flushed == [("a", 2, 1007, 40, 50)]
    assert q.metrics()["late_dropped"] == 0


def test_late_include_in_next_window_sliding_and_session() -> None:
    sliding = vs.compile(
        "SELECT k, COUNT(*) AS c, _window_start, _window_end FROM t GROUP BY k "
        "WINDOW SLIDING(20ms, 10ms)",
        properties={**TS, "late.data.strategy": "include_in_next_window"},
    )
    out, flushed = calls(sliding, [batch(k=["a", "a"], ts=[5, 25]), batch(k=["a"], ts=[3])])
    assert out == [[("a", 1, -10, 10), ("a", 1, 0, 20)], []]
    # a@3 behind the watermark 25 counts as a@25: windows [10, 30) and [20, 40)
    assert flushed == [("a", 2, 10, 30), ("a", 2, 20, 40)]

    session = vs.compile(
        "SELECT k, COUNT(*) AS c, _window_start, _window_end FROM t GROUP BY k "
        "WINDOW SESSION(10ms)",
        properties={**TS, "late.data.strategy": "include_in_next_window"},
    )
    out, flushed = calls(session, [batch(k=["a", "b"], ts=[5, 25]), batch(k=["a"], ts=[3])])
    assert out == [[("a", 1, 5, 15)], []]
    assert flushed == [("a", 1, 25, 35), ("b", 1, 25, 35)]


def test_late_update_previous_re_emits_within_the_allowed_lateness() -> None:
    q = vs.compile(
        TUMBLING_10,
        properties={
            **TS,
            "late.data.strategy": "update_previous",
            "late.data.allowed_lateness": "20ms",
        },
    )
    out, flushed = calls(q, LATE_STREAM)
    assert out == [
        [("a", 2, 3, 0, 10)],
        # a@3 corrects [0, 10) (kept until the watermark reaches 10 + 20), then b@25
        # closes [10, 20)
        [("a", 3, 13, 0, 10), ("b", 1, 3, 10, 20)],
        [("a", 4, 113, 0, 10)],
        [("b", 1, 20, 20, 30)],
        [],  # watermark 41 >= 30: [0, 10) is gone, a@9 is dropped
    ]
    assert flushed == [("a", 1, 1000, 40, 50)]
    assert q.metrics()["late_dropped"] == 1


def test_allowed_lateness_boundary() -> None:
    """A closed window [0, 10) with 5ms allowed lateness is corrected while the watermark
    is below 15, and gone at 15."""
    q = vs.compile(
        "SELECT k, COUNT(*) AS c, _window_start, _window_end FROM t GROUP BY k "
        "WINDOW TUMBLING(10ms)",
        properties={
            **TS,
            "late.data.strategy": "update_previous",
            "late.data.allowed_lateness": "5ms",
        },
    )
    assert rows_of(q.process(batch(k=["a", "b"], ts=[2, 14]))) == [("a", 1, 0, 10)]
    assert rows_of(q.process(batch(k=["a"], ts=[3]))) == [("a", 2, 0, 10)]  # watermark 14
    assert q.metrics()["state_groups"] == 2  # [0, 10) kept for the lateness, [10, 20)
    assert rows_of(q.process(batch(k=["b"], ts=[15]))) == []  # watermark 15 = 10 + 5
    assert q.metrics()["state_groups"] == 1
    assert rows_of(q.process(batch(k=["a"], ts=[4]))) == []
    assert q.metrics()["late_dropped"] == 1
    assert rows_of(q.flush()) == [("b", 2, 10, 20)]


def test_update_previous_sliding_corrects_each_closed_window_of_the_row() -> None:
    q = vs.compile(
        "SELECT k, COUNT(*) AS c, _window_start, _window_end FROM t GROUP BY k "
        "WINDOW SLIDING(20ms, 10ms)",
        properties={
            **TS,
            "late.data.strategy": "update_previous",
            "late.data.allowed_lateness": "10ms",
        },
    )
    out, flushed = calls(
        q,
        [
            batch(k=["a", "a"], ts=[5, 25]),
            # in [0, 20) (closed, corrected) and [10, 30) (open)
            batch(k=["a"], ts=[15]),
            # in [-10, 10) (gone: 10 + 10 <= 25) and [0, 20) (corrected)
            batch(k=["a"], ts=[7]),
        ],
    )
    assert out == [
        [("a", 1, -10, 10), ("a", 1, 0, 20)],
        [("a", 2, 0, 20)],
        [("a", 3, 0, 20)],
    ]
    assert flushed == [("a", 2, 10, 30), ("a", 1, 20, 40)]
    assert q.metrics()["late_dropped"] == 0


def test_sliding_row_counts_in_its_open_windows_and_is_late_when_its_last_closed() -> None:
    q = vs.compile(
        "SELECT k, COUNT(*) AS c, _window_start, _window_end FROM t GROUP BY k "
        "WINDOW SLIDING(20ms, 10ms)",
        properties=TS,
    )
    out, flushed = calls(
        q,
        [
            batch(k=["a", "b"], ts=[5, 12]),
            batch(k=["a"], ts=[8]),  # [-10, 10) closed, [0, 20) open: not late
            batch(k=["b"], ts=[21]),
            batch(k=["a"], ts=[9]),  # [-10, 10) and [0, 20) closed: late
        ],
    )
    assert out == [
        [("a", 1, -10, 10)],
        [],
        [("a", 2, 0, 20), ("b", 1, 0, 20)],
        [],
    ]
    assert flushed == [("b", 2, 10, 30), ("b", 1, 20, 40)]
    assert q.metrics()["late_dropped"] == 1


# --------------------------------------------------------------------------- watermarks


def test_idle_partition_stops_holding_the_watermark_back() -> None:
    sql = "SELECT k, COUNT(*) AS c, _window_start, _window_end FROM t GROUP BY k WINDOW TUMBLING(10ms)"
    first = batch(k=["a", "b", "a"], ts=[1, 2, 30], _partition=[0, 1, 0])
    later = batch(k=["a"], ts=[31], _partition=[0])

    held = vs.compile(sql, properties=TS)
    assert rows_of(held.process(first)) == []
    assert held.watermark == 2  # partition 1 holds it at its max
    time.sleep(0.25)
    assert rows_of(held.process(later)) == []
    assert held.watermark == 2

    idle = vs.compile(sql, properties={**TS, "watermark.idle_timeout": "100ms"})
    assert rows_of(idle.process(first)) == []
    assert idle.watermark == 2
    time.sleep(0.25)
    # partition 1 sent nothing for 250ms > 100ms: partition 0 alone moves the watermark
    assert rows_of(idle.process(later)) == [("a", 1, 0, 10), ("b", 1, 0, 10)]
    assert idle.watermark == 31
    # partition 1 comes back behind the watermark: its row is late
    assert rows_of(idle.process(batch(k=["b"], ts=[5], _partition=[1]))) == []
    assert idle.metrics()["late_dropped"] == 1
    assert rows_of(idle.flush()) == [("a", 2, 30, 40)]


def test_window_is_emitted_by_the_call_whose_watermark_reaches_its_end() -> None:
    q = vs.compile(
        "SELECT k, COUNT(*) AS c, _window_start, _window_end FROM t GROUP BY k "
        "WINDOW TUMBLING(10ms)",
        properties={**TS, "watermark.max_out_of_orderness": "5ms"},
    )
    assert rows_of(q.process(batch(k=["a", "b", "a"], ts=[1, 4, 9]))) == []
    assert q.watermark == 4
    assert rows_of(q.process(batch(k=["a"], ts=[14]))) == []
    assert q.watermark == 9  # one below the end: still open
    assert rows_of(q.process(batch(k=["c"], ts=[15]))) == [("a", 2, 0, 10), ("b", 1, 0, 10)]
    assert q.watermark == 10
    assert rows_of(q.flush()) == [("a", 1, 10, 20), ("c", 1, 10, 20)]


def test_watermark_values() -> None:
    bounded = vs.compile(TUMBLING_10, properties={**TS, "watermark.max_out_of_orderness": "5ms"})
    assert bounded.watermark is None
    bounded.process(batch(k=[], x=[], ts=[]))
    assert bounded.watermark is None  # before the first record
    marks: list[int | None] = []
    for ts in ([10], [8], [20, 12], [14]):
        bounded.process(batch(k=["a"] * len(ts), x=[1] * len(ts), ts=ts))
        marks.append(bounded.watermark)
    assert marks == [5, 5, 15, 15]  # max - 5, never backwards

    ascending = vs.compile(TUMBLING_10, properties={**TS, "watermark.strategy": "ascending"})
    marks = []
    for ts in ([10], [8], [20, 12]):
        ascending.process(batch(k=["a"] * len(ts), x=[1] * len(ts), ts=ts))
        marks.append(ascending.watermark)
    assert marks == [10, 10, 20]

    partitioned = vs.compile(TUMBLING_10, properties=TS)
    marks = []
    for ts, parts in (([100], [0]), ([50], [1]), ([120], [1]), ([90], [0]), ([10], [2])):
        partitioned.process(batch(k=["a"], x=[1], ts=ts, _partition=parts))
        marks.append(partitioned.watermark)
    # the minimum over the partitions seen; a partition seen late does not move it back
    assert marks == [100, 100, 100, 100, 100]
    # 50, 90 and 10: each one's window ends at or before the watermark 100
    assert partitioned.metrics()["late_dropped"] == 3


def test_watermark_strategy_none_emits_nothing_until_flush() -> None:
    q = vs.compile(
        "SELECT k, COUNT(*) AS c, _window_start, _window_end FROM t GROUP BY k "
        "WINDOW TUMBLING(10ms)",
        properties={**TS, "watermark.strategy": "none"},
    )
    out, flushed = calls(q, [batch(k=["a", "b", "a"], ts=[1, 25, 3]), batch(k=["a"], ts=[100])])
    assert out == [[], []]
    assert q.watermark is None
    assert flushed == [("a", 2, 0, 10), ("b", 1, 20, 30), ("a", 1, 100, 110)]
    assert q.metrics()["late_dropped"] == 0


def test_state_groups_go_down_when_windows_close() -> None:
    tumbling = vs.compile(TUMBLING_10, properties=TS)
    tumbling.process(batch(k=["a", "b", "c"], x=[1, 2, 3], ts=[1, 2, 3]))
    assert tumbling.metrics()["state_groups"] == 3
    tumbling.process(batch(k=["d"], x=[4], ts=[12]))
    assert tumbling.metrics()["state_groups"] == 1
    tumbling.flush()
    assert tumbling.metrics()["state_groups"] == 0

    sliding = vs.compile(COUNT_SUM.format(window="SLIDING(20ms, 10ms)"), properties=TS)
    sliding.process(batch(k=["a", "b"], x=[1, 2], ts=[5, 6]))
    assert sliding.metrics()["state_groups"] == 4  # [-10, 10) and [0, 20), two keys each
    sliding.process(batch(k=["a"], x=[3], ts=[25]))
    assert sliding.metrics()["state_groups"] == 2  # a in [10, 30) and [20, 40)
    sliding.flush()
    assert sliding.metrics()["state_groups"] == 0

    session = vs.compile(COUNT_SUM.format(window="SESSION(10ms)"), properties=TS)
    session.process(batch(k=["a", "b"], x=[1, 2], ts=[0, 1]))
    assert session.metrics()["state_groups"] == 2
    session.process(batch(k=["c"], x=[3], ts=[50]))
    assert session.metrics()["state_groups"] == 1
    session.flush()
    assert session.metrics()["state_groups"] == 0


def test_final_rows_are_ordered_by_window_end_then_group_key() -> None:
    """SPEC 12: EMIT FINAL rows of one call by window end, then by the GROUP BY key
    (in GROUP BY order, NULLs last), whatever the SELECT order and arrival order."""
    q = vs.compile(
        "SELECT g, k, COUNT(*) AS c, _window_end FROM t GROUP BY k, g WINDOW TUMBLING(10ms)",
        properties={**TS, "watermark.max_out_of_orderness": "12ms"},
    )
    data = pa.record_batch(
        {
            "k": pa.array(["b", None, "a", "b", "a", "b", None], pa.string()),
            "g": pa.array([1, 2, 2, None, 1, 1, 1], pa.int32()),
            "ts": pa.array([11, 5, 3, 1, 12, 2, 4], pa.int64()),
        }
    )
    assert rows_of(q.process(data)) == []  # watermark 12 - 12 = 0
    assert rows_of(q.process(batch(ts=[32], k=["z"], g=pa.array([0], pa.int32())))) == [
        (2, "a", 1, 10),
        (1, "b", 1, 10),
        (None, "b", 1, 10),
        (1, None, 1, 10),
        (2, None, 1, 10),
        (1, "a", 1, 20),
        (1, "b", 1, 20),
    ]


# --------------------------------------------------------------------------- EMIT CHANGES


def test_emit_changes_tumbling() -> None:
    q = vs.compile(f"{TUMBLING_10} EMIT CHANGES", properties=TS)
    out, flushed = calls(
        q,
        [
            batch(k=["a", "a", "b", "a"], x=[1, 2, 3, 4], ts=[1, 5, 12, 14]),
            batch(k=["a"], x=[9], ts=[2]),  # late: [0, 10) closed at watermark 14
            batch(k=["b"], x=[5], ts=[19]),
        ],
    )
    assert out == [
        [("a", 1, 1, 0, 10), ("a", 2, 3, 0, 10), ("b", 1, 3, 10, 20), ("a", 1, 4, 10, 20)],
        [],
        [("b", 2, 8, 10, 20)],
    ]
    assert flushed == []
    assert q.metrics()["late_dropped"] == 1


def test_emit_changes_sliding_one_row_per_window_of_the_row() -> None:
    q = vs.compile(COUNT_SUM.format(window="SLIDING(20ms, 10ms)") + " EMIT CHANGES", properties=TS)
    out = rows_of(q.process(batch(k=["a", "b", "a", "a"], x=[1, 2, 3, 4], ts=[5, 12, 15, 25])))
    assert rows_of(q.flush()) == []
    # the order of one row's windows is not fixed: compare each input row's rows by start
    per_row = [sorted(out[i : i + 2], key=lambda r: r[3]) for i in range(0, len(out), 2)]
    assert per_row == [
        [("a", 1, 1, -10, 10), ("a", 1, 1, 0, 20)],
        [("b", 1, 2, 0, 20), ("b", 1, 2, 10, 30)],
        [("a", 2, 4, 0, 20), ("a", 1, 3, 10, 30)],
        [("a", 2, 7, 10, 30), ("a", 1, 4, 20, 40)],
    ]


def test_emit_changes_session_shows_merges() -> None:
    q = vs.compile(
        COUNT_SUM.format(window="SESSION(10ms)") + " EMIT CHANGES",
        properties={**TS, "watermark.max_out_of_orderness": "50ms"},
    )
    out, flushed = calls(
        q,
        [
            batch(k=["a", "a"], x=[1, 2], ts=[0, 15]),
            batch(k=["a", "b", "a"], x=[4, 5, 8], ts=[8, 3, 30]),
        ],
    )
    assert out == [
        [("a", 1, 1, 0, 10), ("a", 1, 2, 15, 25)],
        [("a", 3, 7, 0, 25), ("b", 1, 5, 3, 13), ("a", 1, 8, 30, 40)],
    ]
    assert flushed == []


# --------------------------------------------------------------------------- HAVING


def test_having_on_emit_final() -> None:
    q = vs.compile(
        "SELECT k, COUNT(*) AS c, SUM(x) AS s FROM t GROUP BY k "
        "HAVING COUNT(*) >= 2 OR SUM(x) > 100 WINDOW TUMBLING(10ms)",
        properties=TS,
    )
    out, flushed = calls(
        q,
        [
            batch(k=["a", "a", "b", "c", "d"], x=[1, 2, 3, 4, 500], ts=[1, 5, 6, 7, 8]),
            batch(k=["c", "b"], x=[1, 1], ts=[9, 15]),
        ],
    )
    assert out == [[], [("a", 2, 3), ("c", 2, 5), ("d", 1, 500)]]
    assert flushed == []  # b alone in [10, 20)


def test_having_on_emit_changes() -> None:
    q = vs.compile(
        "SELECT k, COUNT(*) AS c, _window_start FROM t GROUP BY k HAVING COUNT(*) >= 2 "
        "WINDOW TUMBLING(10ms) EMIT CHANGES",
        properties=TS,
    )
    out, flushed = calls(q, [batch(k=["a", "a", "b", "b", "a", "a"], ts=[1, 5, 6, 8, 11, 12])])
    assert out == [[("a", 2, 0), ("b", 2, 0), ("a", 2, 10)]]
    assert flushed == []


@pytest.mark.parametrize(
    "having",
    [
        "_window_start >= 10",
        "COUNT(*) >= 1 AND _window_end > 10",
        "TUMBLE_START() >= 10",
        "ws >= 10",
    ],
)
def test_having_on_the_window_bounds(having: str) -> None:
    """SPEC 4: the window columns exist in windowed queries; HAVING sees them."""
    q = vs.compile(
        "SELECT k, COUNT(*) AS c, _window_start AS ws FROM t GROUP BY k "
        f"HAVING {having} WINDOW TUMBLING(10ms)",
        properties=TS,
    )
    out, flushed = calls(q, [batch(k=["a", "b", "b"], ts=[1, 5, 16])])
    assert out == [[]]
    assert flushed == [("b", 1, 10)]


def test_expressions_over_the_window_bounds_in_select() -> None:
    q = vs.compile(
        "SELECT k, _window_end - _window_start AS length, _window_start / 10 AS n, "
        "COUNT(*) AS c FROM t GROUP BY k WINDOW TUMBLING(10ms)",
        properties=TS,
    )
    out, flushed = calls(q, [batch(k=["a", "a"], ts=[1, 25])])
    assert out == [[("a", 10, 0.0, 1)]]
    assert flushed == [("a", 10, 2.0, 1)]


# --------------------------------------------------------------------------- window bounds


@pytest.mark.parametrize(
    ("window", "start", "end"),
    [
        ("TUMBLING(10ms)", "TUMBLE_START()", "TUMBLE_END()"),
        ("SLIDING(20ms, 10ms)", "HOP_START()", "HOP_END()"),
        ("SESSION(5ms)", "SESSION_START()", "SESSION_END()"),
        ("TUMBLING(10ms)", "WINDOWSTART()", "WINDOWEND()"),
        ("SESSION(5ms)", "WINDOWSTART()", "WINDOWEND()"),
    ],
)
def test_window_bound_functions_equal_the_window_columns(window: str, start: str, end: str) -> None:
    q = vs.compile(
        f"SELECT k, {start} AS s, {end} AS e, _window_start, _window_end, COUNT(*) AS c "
        f"FROM t GROUP BY k WINDOW {window}",
        properties=TS,
    )
    first = q.process(batch(k=["a", "a", "b"], ts=[1, 3, 16]))
    out = pa.Table.from_batches([first, q.process(batch(k=["a"], ts=[40])), q.flush()])
    assert out.schema.field("s").type == pa.int64()
    assert out.schema.field("e").type == pa.int64()
    rows = rows_of(out)
    assert rows
    for _, s, e, ws, we, _ in rows:
        assert (s, e) == (ws, we)


def test_tumble_start_values() -> None:
    q = vs.compile(
        "SELECT k, TUMBLE_START() AS s, TUMBLE_END() AS e, COUNT(*) AS c FROM t GROUP BY k "
        "WINDOW TUMBLING(1m)",
        properties=TS,
    )
    minute = 60_000
    out, flushed = calls(q, [batch(k=["a", "a", "a"], ts=[-1, 5 * minute + 7, 5 * minute])])
    assert out == [[("a", -minute, 0, 1)]]
    assert flushed == [("a", 5 * minute, 6 * minute, 2)]


# --------------------------------------------------------------------------- time columns


def test_timestamp_ms_column_as_event_time() -> None:
    q = vs.compile(TUMBLING_10, properties=TS)
    data = pa.record_batch(
        {
            "k": pa.array(["a", "a", "b"]),
            "x": pa.array([1, 2, 3], pa.int64()),
            "ts": pa.array([1, 12, 25], pa.timestamp("ms")),
        }
    )
    out, flushed = calls(q, [data])
    assert out == [[("a", 1, 1, 0, 10), ("a", 1, 2, 10, 20)]]
    assert flushed == [("b", 1, 3, 20, 30)]
    assert q.watermark == 25


def test_source_prefixed_event_time_field_wins() -> None:
    q = vs.compile(
        TUMBLING_10, properties={"event.time.field": "other", "t.event.time.field": "ts"}
    )
    out, _ = calls(q, [batch(k=["a", "a"], x=[1, 2], ts=[1, 12], other=[100, 100])])
    assert out == [[("a", 1, 1, 0, 10)]]


def test_processing_time_window_holds_the_rows_of_a_call() -> None:
    """No event.time.field: rows are timestamped when processed (SPEC 5)."""
    hour = 3_600_000
    q = vs.compile(
        "SELECT k, COUNT(*) AS c, _window_start, _window_end FROM t GROUP BY k WINDOW TUMBLING(1h)"
    )
    before = time.time_ns() // 1_000_000
    out = q.process(pa.record_batch({"k": ["a"] * 5}))
    after = time.time_ns() // 1_000_000
    mark = q.watermark
    assert mark is not None and before <= mark <= after
    assert out.num_rows == 0  # the window containing "now" is still open
    flushed = rows_of(q.flush())
    start = mark - mark % hour
    assert flushed == [("a", 5, start, start + hour)]


# --------------------------------------------------------------------------- snapshots


def _stream(seed: int) -> tuple[pa.RecordBatch, list[tuple[int, int]]]:
    """A fixed stream of 60 rows in 10 calls: two partitions, disorder mostly within the
    8ms bound and sometimes up to 30ms (late rows), four keys with NULLs."""
    rng = random.Random(seed)
    base = 0
    ts, parts, keys, xs = [], [], [], []
    for _ in range(60):
        base += rng.randint(0, 6)
        ts.append(base - rng.randint(0, rng.choice([8, 8, 30])))
        parts.append(rng.randint(0, 1))
        keys.append(rng.choice(["a", "b", "c", None]))
        xs.append(rng.randint(-50, 50))
    cuts = sorted(rng.sample(range(1, 60), 9))
    pieces = list(zip([0, *cuts], [*cuts, 60], strict=True))
    return batch(k=keys, x=xs, ts=ts, _partition=parts), pieces


SNAPSHOT_WINDOWS = [
    "TUMBLING(10ms)",
    "SLIDING(15ms, 5ms)",
    "SESSION(4ms)",
    "SLIDING(15ms, 5ms) EMIT CHANGES",
]


@pytest.mark.parametrize("window", SNAPSHOT_WINDOWS)
def test_snapshot_restore_mid_stream_gives_the_uninterrupted_output(window: str) -> None:
    sql = COUNT_SUM.format(window=window)
    props = {**TS, "watermark.max_out_of_orderness": "8ms"}
    data, pieces = _stream(12)
    whole = feed(vs.compile(sql, properties=props), data, pieces)
    whole_flush = whole.query.flush()
    assert whole.query.metrics()["late_dropped"] > 0  # the stream has late rows
    assert sum(o.num_rows for o in whole.outputs) > 0  # and windows closed before flush

    for at in range(len(pieces) + 1):
        head = vs.compile(sql, properties=props)
        head_run = feed(head, data, pieces[:at])
        blob = head.snapshot()
        restored = vs.compile(sql, properties=props).restore(blob)
        assert restored.watermark == head.watermark
        tail_run = feed(restored, data, pieces[at:])
        outputs = [*head_run.outputs, *tail_run.outputs, restored.flush()]
        expected = [*whole.outputs, whole_flush]
        for index, (got, want) in enumerate(zip(outputs, expected, strict=True)):
            assert_identical(got, want, f"{sql}\nsnapshot after call {at}, call {index}")
        assert tail_run.watermarks == whole.watermarks[at:]


def test_snapshot_keeps_update_previous_windows() -> None:
    props = {
        **TS,
        "late.data.strategy": "update_previous",
        "late.data.allowed_lateness": "20ms",
    }
    first = vs.compile(TUMBLING_10, properties=props)
    for b in LATE_STREAM[:2]:
        first.process(b)
    restored = vs.compile(TUMBLING_10, properties=props).restore(first.snapshot())
    out, flushed = calls(restored, LATE_STREAM[2:])
    assert out == [[("a", 4, 113, 0, 10)], [("b", 1, 20, 20, 30)], []]
    assert flushed == [("a", 1, 1000, 40, 50)]


# --------------------------------------------------------------------------- paths and inputs


@pytest.mark.parametrize("window", [*SNAPSHOT_WINDOWS, "SESSION(4ms) EMIT CHANGES"])
@pytest.mark.parametrize("late", ["drop", "dead_letter", "include_in_next_window"])
def test_legacy_path_gives_the_same_rows_as_direct(window: str, late: str) -> None:
    sql = COUNT_SUM.format(window=window)
    props = {**TS, "watermark.max_out_of_orderness": "8ms", "late.data.strategy": late}
    data, pieces = _stream(14)
    direct = feed(vs.compile(sql, properties=props), data, pieces)
    legacy = feed(vs.compile(sql, properties=props, path="legacy"), data, pieces)
    for index, (d, g) in enumerate(zip(direct.outputs, legacy.outputs, strict=True)):
        assert_identical(d, g, f"{sql} {late}\ncall {index}")
    assert_identical(direct.query.flush(), legacy.query.flush(), f"{sql} {late}\nflush")
    assert direct.watermarks == legacy.watermarks
    assert_identical(direct.query.dead_letters(), legacy.query.dead_letters(), "dead letters")
    dm, lm = direct.query.metrics(), legacy.query.metrics()
    for key in ("records_in", "records_out", "late_dropped", "dead_lettered"):
        assert dm[key] == lm[key], (key, dm, lm)
    if late == "drop":
        assert dm["late_dropped"] > 0


def test_table_of_several_batches_is_processed_record_by_record() -> None:
    data, pieces = _stream(3)
    sql = COUNT_SUM.format(window="TUMBLING(10ms)")
    props = {**TS, "watermark.max_out_of_orderness": "8ms"}
    one_by_one = feed(vs.compile(sql, properties=props), data, pieces)
    table = pa.Table.from_batches([data.slice(lo, hi - lo) for lo, hi in pieces])
    at_once = vs.compile(sql, properties=props)
    got = at_once.process(table)
    assert rows_of(got) == [row for out in one_by_one.outputs for row in rows_of(out)]
    assert at_once.watermark == one_by_one.watermarks[-1]
    assert rows_of(at_once.flush()) == rows_of(one_by_one.query.flush())


# --------------------------------------------------------------------------- event-time errors


@pytest.mark.parametrize(
    ("sql", "props"),
    [
        (TUMBLING_10, TS),
        (COUNT_SUM.format(window="TUMBLING(10ms, ts)"), {}),
    ],
)
def test_missing_event_time_field(sql: str, props: dict[str, str]) -> None:
    q = vs.compile(sql, properties=props)
    with pytest.raises(vs.EventTimeError) as info:
        q.process(pa.record_batch({"k": ["a"], "x": pa.array([1], pa.int64())}))
    error = info.value
    assert error.kind == "missing_field"
    assert error.field == "ts"
    assert error.available_fields == ["k", "x"]
    assert isinstance(error.value, str) and isinstance(error.format, str)
    assert "ts" in str(error)


@pytest.mark.parametrize("ts_type", [pa.int64(), pa.timestamp("ms")])
def test_null_event_time_fails(ts_type: pa.DataType) -> None:
    q = vs.compile(TUMBLING_10, properties=TS)
    data = pa.record_batch(
        {
            "k": ["a", "b"],
            "x": pa.array([1, 2], pa.int64()),
            "ts": pa.array([1, None], pa.int64()).cast(ts_type),
        }
    )
    with pytest.raises(vs.EventTimeError) as info:
        q.process(data)
    error = info.value
    assert error.kind == "null_value"
    assert error.field == "ts"
    assert isinstance(error.value, str) and isinstance(error.format, str)
    assert "k" in error.available_fields and "ts" in error.available_fields


@pytest.mark.parametrize("ts_type", [pa.int64(), pa.timestamp("ms")])
def test_null_event_time_goes_to_the_dead_letters(ts_type: pa.DataType) -> None:
    q = vs.compile(TUMBLING_10, properties={**TS, "event.time.error": "dead_letter"})
    data = pa.record_batch(
        {
            "k": ["a", "b", "c"],
            "x": pa.array([1, 2, 3], pa.int64()),
            "ts": pa.array([1, None, 25], pa.int64()).cast(ts_type),
        }
    )
    assert rows_of(q.process(data)) == [("a", 1, 1, 0, 10)]
    assert q.watermark == 25
    dead = rows_of(q.dead_letters())
    assert len(dead) == 1
    record, reason = dead[0]
    # the record's fields as JSON text (SPEC 2): every field, the NULL one included
    assert json.loads(record) == {"k": "b", "x": 2, "ts": None}
    assert "ts" in reason and "null" in reason.lower(), reason
    assert q.dead_letters().num_rows == 0
    metrics = q.metrics()
    assert metrics["dead_lettered"] == 1
    assert metrics["late_dropped"] == 0
    assert rows_of(q.flush()) == [("c", 1, 3, 20, 30)]


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "props",
    [
        {"late.data.allowed_lateness": "5ms"},
        {"late.data.strategy": "drop", "late.data.allowed_lateness": "5ms"},
        {"late.data.strategy": "include_in_next_window", "late.data.allowed_lateness": "1s"},
        {"late.data.strategy": "dead_letter", "t.late.data.allowed_lateness": "5ms"},
    ],
    ids=["default", "drop", "include", "prefixed"],
)
def test_allowed_lateness_needs_update_previous(props: dict[str, str]) -> None:
    key = next(k for k in props if k.endswith("allowed_lateness"))
    with pytest.raises(vs.ConfigError) as info:
        vs.compile(TUMBLING_10, properties={**TS, **props})
    assert info.value.key == key
    assert info.value.value == props[key]
    assert "update_previous" in str(info.value)


def test_allowed_lateness_in_the_with_clause_names_the_key() -> None:
    sql = f"{TUMBLING_10} WITH ('event.time.field' = 'ts', 'late.data.allowed_lateness' = '5ms')"
    with pytest.raises(vs.ConfigError) as info:
        vs.compile(sql)
    assert info.value.key == "late.data.allowed_lateness"


def test_session_with_update_previous_is_rejected() -> None:
    sql = COUNT_SUM.format(window="SESSION(10ms)")
    # A ConfigError naming the key (the engine refuses the plan too, at the WINDOW).
    with pytest.raises(vs.ConfigError) as info:
        vs.compile(
            sql,
            properties={
                **TS,
                "late.data.strategy": "update_previous",
                "late.data.allowed_lateness": "5ms",
            },
        )
    assert "update_previous" in str(info.value)
    assert "SESSION" in str(info.value)
    assert info.value.key == "late.data.strategy"
