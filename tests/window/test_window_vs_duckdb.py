"""Event-time windows on random streams against DuckDB and a Python model (SPEC 4, 5, 12).

A random stream (out of order only within the watermark bound, so no row is late, with
an optional ``_partition`` column) is cut at random points and fed one ``process`` call
per piece. Then:

* the concatenation of every ``process`` output and the ``flush`` output equals, row for
  row, DuckDB's ``GROUP BY window, key`` over the whole stream (tumbling and sliding) or a
  brute-force Python model (session), ordered by window end, then by key, NULLs last;
* each window row comes out of the ``process`` call after whose records the watermark
  first reaches the window's end (or from ``flush``), the call computed from a model of
  the per-partition watermark, which ``Query.watermark`` must equal after every call;
* nothing is counted late and no state is left after ``flush``.

One more property lets rows fall further behind: each row is judged against the
watermark the rows before it left (from the model); under ``drop`` and ``dead_letter``
it joins those of its windows that end after that watermark and is late when none does;
under ``include_in_next_window`` a late row counts as if its time were the watermark.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st
from window_support import (
    AGGREGATES,
    SHAPES,
    Agg,
    Run,
    Stream,
    assert_identical,
    assert_rows,
    call_watermarks,
    duckdb_fixed_changes,
    duckdb_fixed_windows,
    expected_call,
    model_sessions,
    run_windowed,
    select_sql,
    streams,
    watermarks_before,
    wsettings,
)

AGG_LISTS = st.lists(st.sampled_from(AGGREGATES), min_size=1, max_size=5)


@st.composite
def time_settings(draw: st.DrawFn, stream: Stream) -> tuple[dict[str, str], bool]:
    """Properties for the stream's bound; True when the WINDOW names the time column."""
    in_window = draw(st.booleans())
    props: dict[str, str] = {} if in_window else {"event.time.field": "ts"}
    if stream.bound or draw(st.booleans()):
        props["watermark.max_out_of_orderness"] = f"{stream.bound}ms"
    elif draw(st.booleans()):
        props["watermark.strategy"] = "ascending"
    if in_window and not props:
        props["watermark.strategy"] = "bounded_out_of_orderness"
    return props, in_window


def _check_run(
    run: Run, stream: Stream, expected: list[tuple[Any, ...]], context: str, final: bool = True
) -> None:
    assert_rows(run.rows(), expected, context)
    marks = call_watermarks(stream)
    assert run.watermarks == marks, f"{context}\nwatermarks {run.watermarks} != model {marks}"
    if final:
        for call, row in run.rows_with_call():
            want = expected_call(row[-1], marks)
            assert call == want, (
                f"{context}\nwindow row {row} came from call {call}, expected call {want} "
                f"(calls {stream.pieces}, watermarks after each call {marks}; "
                f"{len(marks)} = flush)"
            )
    else:
        assert run.flushed.num_rows == 0, f"{context}\nflush() of EMIT CHANGES returned rows"
    metrics = run.query.metrics()
    assert metrics["late_dropped"] == 0, f"{context}\n{metrics}"
    assert metrics["dead_lettered"] == 0, f"{context}\n{metrics}"
    if final:
        assert metrics["state_groups"] == 0, f"{context}\nstate left after flush: {metrics}"


@wsettings(max_examples=40)
@given(
    data=st.data(),
    stream=streams(),
    keys=st.sampled_from(SHAPES),
    aggs=AGG_LISTS,
    size=st.sampled_from([1, 5, 10, 25, 100]),
    ts_type=st.sampled_from([pa.int64(), pa.int64(), pa.timestamp("ms")]),
)
def test_tumbling_final_matches_duckdb(
    data: st.DataObject,
    stream: Stream,
    keys: tuple[str, ...],
    aggs: list[Agg],
    size: int,
    ts_type: pa.DataType,
) -> None:
    props, in_window = data.draw(time_settings(stream))
    window = f"TUMBLING({size}ms, ts)" if in_window else f"TUMBLING({size}ms)"
    sql = select_sql(keys, aggs, window)
    run = run_windowed(sql, props, stream.batch(ts_type), stream.pieces)
    expected = duckdb_fixed_windows(stream.table(), keys, aggs, size, size)
    _check_run(run, stream, expected, f"{sql}\n{props}\nts {stream.ts}\nparts {stream.partitions}")


@st.composite
def sliding_shapes(draw: st.DrawFn) -> tuple[int, int]:
    advance = draw(st.sampled_from([1, 2, 5, 10]))
    size = advance * draw(st.integers(1, 5)) + draw(st.sampled_from([0, 0, advance // 2]))
    return size, advance


@wsettings(max_examples=40)
@given(
    stream=streams(late=True),
    keys=st.sampled_from(SHAPES),
    aggs=AGG_LISTS,
    shape=st.one_of(st.sampled_from([1, 5, 10, 25]).map(lambda s: (s, s)), sliding_shapes()),
    late=st.sampled_from(["drop", "dead_letter", "include_in_next_window"]),
)
def test_fixed_windows_with_late_rows_match_duckdb(
    stream: Stream,
    keys: tuple[str, ...],
    aggs: list[Agg],
    shape: tuple[int, int],
    late: str,
) -> None:
    size, advance = shape
    window = f"TUMBLING({size}ms)" if size == advance else f"SLIDING({size}ms, {advance}ms)"
    sql = select_sql(keys, aggs, window)
    props = {
        "event.time.field": "ts",
        "watermark.max_out_of_orderness": f"{stream.bound}ms",
        "late.data.strategy": late,
    }
    context = f"{sql}\n{props}\nts {stream.ts}\nparts {stream.partitions}"
    run = run_windowed(sql, props, stream.batch(), stream.pieces)

    # the model: each row's watermark, whether it is late (its last window has closed),
    # and the time it counts at
    marks = watermarks_before(stream)
    late_rows = []
    effective = []
    for index, (ts, mark) in enumerate(zip(stream.ts, marks, strict=True)):
        last_end = ts - ts % advance + size
        is_late = mark is not None and last_end <= mark
        if is_late:
            late_rows.append(index)
        effective.append(mark if is_late and late == "include_in_next_window" else ts)
    table = stream.table()
    table = table.append_column("wmb", pa.array(marks, pa.int64()))
    table = table.append_column("et", pa.array(effective, pa.int64()))
    if late != "include_in_next_window":  # late rows are in no window
        keep = [i not in set(late_rows) for i in range(stream.rows)]
        table = table.filter(pa.array(keep, pa.bool_()))
    expected = duckdb_fixed_windows(table, keys, aggs, size, advance, time="et", mark="wmb")
    assert_rows(run.rows(), expected, context)

    call_marks = call_watermarks(stream)
    assert run.watermarks == call_marks, context
    for call, row in run.rows_with_call():
        assert call == expected_call(row[-1], call_marks), f"{context}\nrow {row} from call {call}"
    metrics = run.query.metrics()
    late_ts = [stream.ts[i] for i in late_rows]
    if late == "drop":
        assert metrics["late_dropped"] == len(late_rows), f"{context}\n{metrics}\nlate {late_ts}"
        assert metrics["dead_lettered"] == 0
    elif late == "dead_letter":
        assert metrics["late_dropped"] == 0
        assert metrics["dead_lettered"] == len(late_rows), f"{context}\n{metrics}"
        letters = run.query.dead_letters().column("record").to_pylist()
        assert [json.loads(r)["ts"] for r in letters] == late_ts, context
    else:
        assert metrics["late_dropped"] == 0 and metrics["dead_lettered"] == 0, context
    assert metrics["state_groups"] == 0, context


@wsettings(max_examples=35)
@given(
    data=st.data(),
    stream=streams(),
    keys=st.sampled_from(SHAPES),
    aggs=AGG_LISTS,
    shape=sliding_shapes(),
)
def test_sliding_final_matches_duckdb(
    data: st.DataObject,
    stream: Stream,
    keys: tuple[str, ...],
    aggs: list[Agg],
    shape: tuple[int, int],
) -> None:
    size, advance = shape
    props, in_window = data.draw(time_settings(stream))
    column = ", ts" if in_window else ""
    sql = select_sql(keys, aggs, f"SLIDING({size}ms, {advance}ms{column})")
    run = run_windowed(sql, props, stream.batch(), stream.pieces)
    expected = duckdb_fixed_windows(stream.table(), keys, aggs, size, advance)
    _check_run(run, stream, expected, f"{sql}\n{props}\nts {stream.ts}\nparts {stream.partitions}")


@wsettings(max_examples=40)
@given(
    data=st.data(),
    stream=streams(max_step=12),
    keys=st.sampled_from(SHAPES),
    aggs=AGG_LISTS,
    gap=st.sampled_from([1, 5, 10, 30]),
)
def test_session_final_matches_python_model(
    data: st.DataObject,
    stream: Stream,
    keys: tuple[str, ...],
    aggs: list[Agg],
    gap: int,
) -> None:
    props, in_window = data.draw(time_settings(stream))
    window = f"SESSION({gap}ms, ts)" if in_window else f"SESSION({gap}ms)"
    sql = select_sql(keys, aggs, window)
    run = run_windowed(sql, props, stream.batch(), stream.pieces)
    expected = model_sessions(stream, keys, aggs, gap)
    _check_run(run, stream, expected, f"{sql}\n{props}\nts {stream.ts}\nparts {stream.partitions}")


@wsettings(max_examples=30)
@given(
    stream=streams(max_rows=40),
    keys=st.sampled_from(SHAPES),
    aggs=AGG_LISTS,
    shape=st.one_of(
        st.sampled_from([5, 10, 25]).map(lambda s: (s, s)),  # tumbling
        sliding_shapes(),
    ),
)
def test_fixed_windows_emit_changes_match_duckdb(
    stream: Stream, keys: tuple[str, ...], aggs: list[Agg], shape: tuple[int, int]
) -> None:
    """EMIT CHANGES: per input row, the running aggregate of each window of the row.

    The order of one row's sliding windows is not fixed by the SPEC: within the rows of
    one input row both sides are sorted by window start.
    """
    size, advance = shape
    window = f"TUMBLING({size}ms)" if size == advance else f"SLIDING({size}ms, {advance}ms)"
    sql = select_sql(keys, aggs, window, "EMIT CHANGES")
    props = {"event.time.field": "ts", "watermark.max_out_of_orderness": f"{stream.bound}ms"}
    run = run_windowed(sql, props, stream.batch(), stream.pieces)
    expected = duckdb_fixed_changes(stream.table(), keys, aggs, size, advance)
    got = run.rows()
    # velostream's rows of one input row, sorted by window start as DuckDB's are
    got_sorted: list[tuple[Any, ...]] = []
    position = 0
    for ts in stream.ts:
        count = _windows_of(ts, size, advance)
        got_sorted.extend(sorted(got[position : position + count], key=lambda r: r[-2]))
        position += count
    got_sorted.extend(got[position:])
    _check_run_changes(run, stream, got_sorted, expected, f"{sql}\n{props}\nts {stream.ts}")


def _windows_of(ts: int, size: int, advance: int) -> int:
    """How many windows of ``size`` starting at multiples of ``advance`` contain ts."""
    last = ts - ts % advance  # floor: windows before the epoch too
    first = last - (size // advance + 1) * advance
    return sum(1 for start in range(first, last + 1, advance) if start <= ts < start + size)


def _check_run_changes(
    run: Run,
    stream: Stream,
    got: list[tuple[Any, ...]],
    expected: list[tuple[Any, ...]],
    context: str,
) -> None:
    assert_rows(got, expected, context)
    assert run.flushed.num_rows == 0, f"{context}\nflush() of EMIT CHANGES returned rows"
    assert run.watermarks == call_watermarks(stream), context
    assert run.query.metrics()["late_dropped"] == 0, context


@wsettings(max_examples=25)
@given(
    stream=streams(max_rows=40),
    keys=st.sampled_from(SHAPES),
    aggs=AGG_LISTS,
    window=st.sampled_from(
        ["TUMBLING(10ms)", "SLIDING(20ms, 5ms)", "SESSION(7ms)", "SESSION(7ms) EMIT CHANGES"]
    ),
)
def test_legacy_path_gives_the_same_rows_as_direct(
    stream: Stream, keys: tuple[str, ...], aggs: list[Agg], window: str
) -> None:
    """SPEC 2 and 6: the per-record path returns exactly the rows of the direct path,
    call by call, with the same watermark."""
    sql = select_sql(keys, aggs, window)
    props = {"event.time.field": "ts", "watermark.max_out_of_orderness": f"{stream.bound}ms"}
    direct = run_windowed(sql, props, stream.batch(), stream.pieces, path="direct")
    legacy = run_windowed(sql, props, stream.batch(), stream.pieces, path="legacy")
    for index, (d, g) in enumerate(zip(direct.all_outputs, legacy.all_outputs, strict=True)):
        assert_identical(d, g, f"{sql}\ncall {index} (of {len(stream.pieces)}, last = flush)")
    assert direct.watermarks == legacy.watermarks, sql
