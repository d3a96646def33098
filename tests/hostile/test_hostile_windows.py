"""Hostile windows (issue 10): generated window clauses, disorder beyond the bound, and
corrupted snapshots of windowed state.

* Generated SQL: ``WINDOW`` clauses of every kind (and unknown ones) with durations in
  every unit and form (compact, spaced, quoted, ``INTERVAL``; zero, negative, fractional,
  huge, beyond int64, unknown units), missing and extra arguments, time columns that
  exist or not; ``EMIT FINAL``/``CHANGES``; the window bounds (``_window_start``,
  ``_window_end``, ``TUMBLE_START()``, ``HOP_END()``, ``WINDOWSTART()``, ...) in SELECT,
  WHERE, GROUP BY, HAVING and inside aggregates. Each statement compiles or raises a SQL
  or configuration error; a compiled one processes a small batch into rows or a
  ``VelostreamError``, and the window bounds it emits are those of its window.
* Durations with their exact SPEC outcome (section 12): a whole number of milliseconds,
  a ``SqlValidationError`` for zero, negative, fractional or out-of-range sizes, a
  ``SqlSyntaxError`` for an unknown unit.
* Disorder beyond the bound: random streams whose rows come up to 200ms behind, in random
  ``process`` splits, over one to three ``_partition`` values, under every watermark and
  late-data strategy (allowed lateness too) and idle timeouts. Nothing but a
  ``VelostreamError`` may escape; every row is counted exactly once (emitted in a window,
  ``late_dropped`` or dead-lettered); without an idle timeout (which depends on the wall
  clock) the tumbling and sliding results equal a per-record Python model of SPEC 12.
* Snapshots of windowed state (tumbling, sliding, session, EMIT CHANGES,
  ``update_previous``): every single-bit flip, truncations, garbage, splices and
  snapshots of other windowed queries are refused with ``SnapshotError`` and leave the
  query exactly as it was; pristine snapshots taken at any point restore into a query that
  gives the uninterrupted output; payload corruptions re-framed with a valid checksum
  (sampled bit flips and byte rewrites, cuts, every bit of the leading length fields,
  string bytes made invalid UTF-8) never crash nor raise an ``InternalError``, and are
  refused within 512 MiB of memory (in a child process, so that an abort is reported).
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import random
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hostile_support import describe, hostile_settings, outcome
from hypothesis import given
from hypothesis import strategies as st

import velostream as vs

SQL_ERRORS = (vs.SqlSyntaxError, vs.SqlValidationError, vs.ConfigError)


def rows_of(data: pa.RecordBatch) -> list[tuple[Any, ...]]:
    columns = [column.to_pylist() for column in data.columns]
    return list(zip(*columns, strict=True)) if columns else [()] * data.num_rows


# --------------------------------------------------------------------------- generated SQL

DURATIONS = [
    "5ms", "10ms", "1s", "5s", "1m", "1h", "1d", "5S", "5MS", "1.5s", "0.5ms", "0.0015s",
    "0s", "0ms", "-5s", "- 5s", "-0ms", "99999999999d", "100000000000000ms",
    "100000000000001ms", "9223372036854775807ms", "9223372036854775808ms", "1e400s",
    "1e3s", "1e-3s", "5", "5 s", "5w", "5y", "5us", "5ns", "'5s'", "'0s'", "'-5s'", "''",
    "'5'", "INTERVAL '5' MINUTE", "INTERVAL 5 MINUTES", "INTERVAL '5 MINUTE'",
    "INTERVAL -5 SECOND", "INTERVAL '-5' SECOND", "INTERVAL '1.5' SECOND",
    "INTERVAL 'x' SECOND", "INTERVAL '5' WEEK", "INTERVAL '5' YEAR", "INTERVAL",
    "INTERVAL '99999999999999999999' DAY", "5 SECONDS", "5 minute", "007ms", "0x10s",
    "NaNs", "SIZE 5ms", "GAP 5ms", "ADVANCE BY 5ms", "5s 5s", "ts", "NULL", "(5ms)",
]  # fmt: skip

UNITS = ["ms", "s", "m", "h", "d", "MS", "S", " SECOND", " MILLISECONDS", " DAYS", "w", "", "µs"]
NUMBERS = ["0", "1", "3", "10", "250", "1.5", "0.25", "-1", "2147483648", "9" * 12, "9" * 25]

TIME_COLUMNS = ["ts", "nope", "_event_time", "_timestamp", "_partition", '"ts"', "t.ts", "k"]
TIME_COLUMNS += ["5", "*", "ts + 1", "'ts'", "x.ts", "ts ts"]

BOUNDS = [
    "_window_start", "_window_end", "TUMBLE_START()", "TUMBLE_END()", "HOP_START()",
    "HOP_END()", "SESSION_START()", "SESSION_END()", "WINDOWSTART()", "WINDOWEND()",
    "TUMBLE_START(ts, INTERVAL '1' SECOND)", "TUMBLE_START(ts)", "_WINDOW_START",
    "\"_window_end\"", "t._window_start",
]  # fmt: skip

SELECT_ITEMS = [
    "COUNT(*)", "SUM(x)", "k", "x", "ts", "_event_time", "_timestamp", "_partition",
    "MIN({b})", "MAX({b})", "COUNT({b})", "SUM({b} - x)", "AVG({b})", "{b}", "{b} + 1",
    "{b} - {b2}", "CAST({b} AS DOUBLE)", "CASE WHEN {b} > 0 THEN 'p' ELSE 'n' END",
    "COUNT(DISTINCT {b})", "FIRST_VALUE({b})", "{b} / 0", "{b} % 7", "*",
]  # fmt: skip

PREDICATES = [
    "x > 1", "{b} > 0", "{b} >= {b2}", "{b} IS NULL", "COUNT(*) > 1", "SUM(x) > {b}",
    "{b} BETWEEN 0 AND 100", "k = 'a'", "_event_time > 0", "{b} IN (0, 10)",
]  # fmt: skip

GROUPS = ["k", "x", "{b}", "k, {b}", "ts", "_event_time", "k, x", "1", "COUNT(*)"]

WINDOW_PROPERTIES: list[dict[str, str]] = [
    {},
    {"event.time.field": "ts"},
    {"event.time.field": "ts", "watermark.max_out_of_orderness": "5ms"},
    {"event.time.field": "ts", "watermark.strategy": "ascending"},
    {"event.time.field": "ts", "watermark.strategy": "none"},
    {"event.time.field": "ts", "late.data.strategy": "dead_letter"},
    {"event.time.field": "ts", "late.data.strategy": "include_in_next_window"},
    {
        "event.time.field": "ts",
        "late.data.strategy": "update_previous",
        "late.data.allowed_lateness": "10ms",
    },
    {"event.time.field": "ts", "event.time.error": "dead_letter"},
    {"event.time.field": "nope"},
    {"t.event.time.field": "ts"},
]

DATA = pa.record_batch(
    {
        "k": pa.array(["a", "b", None, "a", "b", "a", "c", None], pa.string()),
        "x": pa.array([1, -2, None, 2**40, 7, 0, 3, 5], pa.int64()),
        "ts": pa.array([1, 5, 12, 3, 40, 25, 7, 400], pa.int64()),
    }
)


@st.composite
def durations(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        return draw(st.sampled_from(DURATIONS))
    return draw(st.sampled_from(NUMBERS)) + draw(st.sampled_from(UNITS))


@st.composite
def window_clauses(draw: st.DrawFn) -> str:
    """``WINDOW KIND(args)`` with a random kind, argument count and time column."""
    kind = draw(
        st.sampled_from(
            ["TUMBLING", "SLIDING", "HOPPING", "SESSION", "tumbling", "Session", "TUMBLE", "HOP"]
        )
    )
    expected = {"SLIDING": 2, "HOPPING": 2, "HOP": 2}.get(kind.upper(), 1)
    count = draw(st.sampled_from([expected, expected, expected, 0, expected - 1, expected + 1]))
    args = [draw(durations()) for _ in range(max(0, count))]
    if draw(st.booleans()):
        args.append(draw(st.sampled_from(TIME_COLUMNS)))
    text = f"WINDOW {kind}({', '.join(args)})"
    return draw(
        st.sampled_from(
            [text, text, text, text, text.replace("(", " ", 1), text[:-1], text + ")", text + ","]
        )
    )


@dataclass
class Generated:
    sql: str
    properties: dict[str, str]
    bounds: bool  # `_window_start AS ws_, _window_end AS we_` selected


VALID_DURATIONS = ["1ms", "5ms", "10ms", "7ms", "1s", "'5ms'", "INTERVAL '10' MILLISECOND"]
VALID_DURATIONS += ["INTERVAL 1 SECOND", "1.5s", "1d", "100000000000000ms", "3 MILLISECONDS"]
# bounds of the kind of each window, and those of every kind
KIND_BOUNDS = {
    "TUMBLING": ["TUMBLE_START()", "TUMBLE_END()"],
    "SLIDING": ["HOP_START()", "HOP_END()"],
    "SESSION": ["SESSION_START()", "SESSION_END()"],
}
ANY_BOUNDS = ["_window_start", "_window_end", "WINDOWSTART()", "WINDOWEND()"]
AGGREGATES = ["COUNT(*)", "SUM(x)", "MIN(k)", "MAX(x)", "AVG(x)", "COUNT(DISTINCT k)"]


@st.composite
def well_formed_statements(draw: st.DrawFn) -> Generated:
    """Mostly valid windowed statements, so that processing is exercised too: a valid
    window, aggregates, the window bounds in SELECT, WHERE, HAVING and aggregates."""
    kind = draw(st.sampled_from(["TUMBLING", "SLIDING", "SESSION"]))
    first = draw(st.sampled_from(VALID_DURATIONS))
    if kind == "SLIDING":
        window = f"SLIDING({first}, {draw(st.sampled_from(['1ms', '5ms', first]))})"
    else:
        window = f"{kind}({first})"
    bounds = [*ANY_BOUNDS, *KIND_BOUNDS[kind]]

    def bound() -> str:
        return draw(st.sampled_from(bounds))

    items = draw(st.lists(st.sampled_from(AGGREGATES), min_size=1, max_size=3, unique=True))
    extra = [
        f"{bound()} AS b{i}"
        if draw(st.booleans())
        else draw(st.sampled_from([f"MAX({bound()}) AS b{i}", f"{bound()} - {bound()} AS b{i}"]))
        for i in range(draw(st.integers(0, 2)))
    ]
    keyed = draw(st.booleans())
    select = (
        (["k"] if keyed else []) + items + extra + ["_window_start AS ws_", "_window_end AS we_"]
    )
    sql = f"SELECT {', '.join(select)} FROM t"
    if draw(st.integers(0, 2)) == 0:
        sql += " WHERE " + draw(st.sampled_from(["x > 0", "k IS NOT NULL", "ts >= 0", "x <> 7"]))
    if keyed:
        sql += " GROUP BY k"
    if draw(st.integers(0, 2)) == 0:
        sql += " HAVING " + draw(
            st.sampled_from(
                ["COUNT(*) > 1", f"{bound()} >= 0", f"SUM(x) > {bound()}", "MAX(x) IS NULL"]
            )
        )
    sql += f" WINDOW {window}" + draw(st.sampled_from(["", " EMIT FINAL", " EMIT CHANGES"]))
    return Generated(sql, draw(st.sampled_from(WINDOW_PROPERTIES)), bounds=True)


@st.composite
def windowed_statements(draw: st.DrawFn) -> Generated:
    if draw(st.booleans()):
        return draw(well_formed_statements())

    def fill(template: str) -> str:
        return template.format(b=draw(st.sampled_from(BOUNDS)), b2=draw(st.sampled_from(BOUNDS)))

    items = [fill(t) for t in draw(st.lists(st.sampled_from(SELECT_ITEMS), min_size=1, max_size=4))]
    bounds = draw(st.booleans())
    if bounds:
        items += ["_window_start AS ws_", "_window_end AS we_"]
    sql = f"SELECT {', '.join(items)} FROM t"
    if draw(st.integers(0, 3)) == 0:
        sql += f" WHERE {fill(draw(st.sampled_from(PREDICATES)))}"
    if draw(st.booleans()):
        sql += f" GROUP BY {fill(draw(st.sampled_from(GROUPS)))}"
    if draw(st.integers(0, 3)) == 0:
        sql += f" HAVING {fill(draw(st.sampled_from(PREDICATES)))}"
    if draw(st.integers(0, 9)):
        sql += " " + draw(window_clauses())
    sql += draw(
        st.sampled_from(["", "", " EMIT FINAL", " EMIT CHANGES", " EMIT", " EMIT FINAL FINAL"])
    )
    return Generated(sql, draw(st.sampled_from(WINDOW_PROPERTIES)), bounds)


def check_bounds(query: vs.Query, out: pa.RecordBatch, context: str) -> None:
    """``ws_``/``we_`` are int64 epoch millis and the bounds of the query's window."""
    window = query.plan.get("window")
    if window is None or "ws_" not in out.schema.names:
        return
    for name in ("ws_", "we_"):
        assert out.schema.field(name).type == pa.int64(), (
            f"{name} is {out.schema.field(name).type}, not int64 (SPEC 12)\n{context}"
        )
    for start, end in zip(
        out.column("ws_").to_pylist(), out.column("we_").to_pylist(), strict=True
    ):
        assert start is not None and end is not None, f"a NULL window bound\n{context}"
        if window["kind"] == "session":
            assert end - start >= window["gap_ms"], f"session [{start}, {end})\n{context}"
            continue
        advance = window.get("advance_ms", window["size_ms"])
        assert end - start == window["size_ms"] and start % advance == 0, (
            f"window [{start}, {end}) is not one of {window}\n{context}"
        )


def run_generated(generated: Generated) -> None:
    context = f"vs.compile({generated.sql!r}, properties={generated.properties!r})"
    compiled = outcome(lambda: vs.compile(generated.sql, properties=generated.properties), context)
    if not compiled.ok:
        assert isinstance(compiled.error, SQL_ERRORS), f"{describe(compiled.error)}\n{context}"
        return
    query = compiled.value
    for piece in (DATA.slice(0, 3), DATA.slice(3)):
        result = outcome(lambda p=piece: query.process(p), "process: " + context)
        if not result.ok:
            return
        assert result.value.schema == query.output_schema, context
        check_bounds(query, result.value, context)
    flushed = outcome(query.flush, "flush: " + context)
    if flushed.ok:
        check_bounds(query, flushed.value, "flush: " + context)
    outcome(query.metrics, "metrics: " + context)
    outcome(query.dead_letters, "dead_letters: " + context)


@hostile_settings(250)
@given(generated=windowed_statements())
def test_generated_window_statements_compile_and_run_or_raise_a_velostream_error(
    generated: Generated,
) -> None:
    run_generated(generated)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT TUMBLE_START(), COUNT(*) FROM t WINDOW SLIDING(10ms, 5ms)",
        "SELECT HOP_END() FROM t WINDOW SESSION(5ms)",
        "SELECT _window_start FROM t",
        "SELECT WINDOWSTART() FROM t",
        "SELECT COUNT(*) FROM t GROUP BY _window_start",
        "SELECT COUNT(*) FROM t WHERE _window_end > 0 WINDOW TUMBLING(5ms)",
        "SELECT SUM(_window_start) FROM t WINDOW TUMBLING(5ms)",
        "SELECT COUNT(*) FROM t EMIT FINAL",
        "SELECT COUNT(*) FROM t WINDOW TUMBLING(5ms) WINDOW TUMBLING(5ms)",
        "SELECT COUNT(*) FROM t WINDOW SLIDING(5ms, 10ms)",
        "SELECT COUNT(*) FROM t WINDOW SLIDING(100000ms, 1ms)",
        "SELECT COUNT(*) FROM t WINDOW TUMBLING(5ms, nope)",
        "SELECT COUNT(*) FROM t WINDOW TUMBLING(5ms, ts, ts)",
        "SELECT COUNT(*) FROM t WINDOW SESSION()",
    ],
)
def test_handmade_window_statements(sql: str) -> None:
    """Misplaced bounds, bounds of another kind, windows of many windows: rows or a
    SQL error, never anything else (and never a crash while processing)."""
    run_generated(Generated(sql, {"event.time.field": "ts"}, bounds=False))
    run_generated(Generated(sql, {}, bounds=False))


# --------------------------------------------------------------------------- durations

# (duration text, milliseconds or the error SPEC 12 asks for)
DURATION_OUTCOMES: list[tuple[str, int | type[vs.VelostreamError]]] = [
    ("250ms", 250),
    ("5S", 5000),
    ("1.5s", 1500),
    ("1m", 60_000),
    ("2h", 7_200_000),
    ("1d", 86_400_000),
    ("'5s'", 5000),
    ("INTERVAL '5' MINUTE", 300_000),
    ("INTERVAL 5 MINUTES", 300_000),
    ("INTERVAL '1.5' SECOND", 1500),
    ("100000000000000ms", 100_000_000_000_000),
    ("0s", vs.SqlValidationError),
    ("0ms", vs.SqlValidationError),
    ("-5s", vs.SqlValidationError),
    ("'-5s'", vs.SqlValidationError),
    ("INTERVAL -5 SECOND", vs.SqlValidationError),
    ("0.5ms", vs.SqlValidationError),
    ("99999999999d", vs.SqlValidationError),
    ("100000000000001ms", vs.SqlValidationError),
    ("9223372036854775807ms", vs.SqlValidationError),
    ("9223372036854775808ms", vs.SqlValidationError),
    ("99999999999999999999999ms", vs.SqlValidationError),
    ("1e400s", vs.SqlValidationError),
    ("INTERVAL '99999999999999999999' DAY", vs.SqlValidationError),
    ("5w", vs.SqlSyntaxError),
    ("5us", vs.SqlSyntaxError),
    ("INTERVAL '5' WEEK", vs.SqlSyntaxError),
]

WINDOW_TEMPLATES = {
    "tumbling": ("TUMBLING({d})", "size_ms"),
    "sliding": ("SLIDING({d}, {d})", "size_ms"),
    "hopping advance": ("HOPPING(100000000000000ms, {d})", "advance_ms"),
    "session": ("SESSION({d})", "gap_ms"),
}


@pytest.mark.parametrize("template", sorted(WINDOW_TEMPLATES))
@pytest.mark.parametrize(("text", "want"), DURATION_OUTCOMES, ids=[d for d, _ in DURATION_OUTCOMES])
def test_window_durations_are_exact_millis_or_the_spec_error(
    template: str, text: str, want: int | type[vs.VelostreamError]
) -> None:
    pattern, key = WINDOW_TEMPLATES[template]
    sql = f"SELECT COUNT(*) AS c FROM t WINDOW {pattern.format(d=text)}"
    result = outcome(lambda: vs.compile(sql), sql)
    if isinstance(want, int):
        if result.ok:
            assert result.value.plan["window"][key] == want, f"{sql}: {result.value.plan['window']}"
            return
        # a valid advance may still give a window the engine refuses as a whole (too
        # many windows per row): a SqlValidationError then
        assert template == "hopping advance" and isinstance(result.error, vs.SqlValidationError), (
            f"{sql}: {describe(result.error)}"
        )
        return
    assert isinstance(result.error, want), (
        f"{sql}: expected {want.__name__} (SPEC 12), got {describe(result.error)}"
    )
    where = (getattr(result.error, "line", None), getattr(result.error, "column", None))
    assert where[0] == 1 and where[1] is not None, f"{sql}: no line and column in {result.error!r}"


# --------------------------------------------------------------------------- disorder

LATE_STRATEGIES = ["drop", "dead_letter", "include_in_next_window", "update_previous"]


@dataclass
class Disorder:
    """A stream with rows behind the watermark, its window and time configuration."""

    ts: list[int]
    keys: list[str | None]
    partitions: list[int] | None
    pieces: list[tuple[int, int]]
    window: tuple[str, int, int]  # (kind, size or gap, advance)
    watermark: str
    bound: int
    late: str
    lateness: int
    idle: str | None

    def batch(self) -> pa.RecordBatch:
        columns: dict[str, pa.Array] = {
            "k": pa.array(self.keys, pa.string()),
            "ts": pa.array(self.ts, pa.int64()),
        }
        if self.partitions is not None:
            columns["_partition"] = pa.array(self.partitions, pa.int32())
        return pa.record_batch(columns)

    def sql(self) -> str:
        kind, size, advance = self.window
        clause = {
            "tumbling": f"TUMBLING({size}ms)",
            "sliding": f"SLIDING({size}ms, {advance}ms)",
            "session": f"SESSION({size}ms)",
        }[kind]
        return (
            f"SELECT k, COUNT(*) AS c, _window_start, _window_end FROM t GROUP BY k WINDOW {clause}"
        )

    def properties(self) -> dict[str, str]:
        props = {
            "event.time.field": "ts",
            "watermark.strategy": self.watermark,
            "late.data.strategy": self.late,
        }
        if self.watermark == "bounded_out_of_orderness":
            # The bound of any other strategy would be ignored: a ConfigError.
            props["watermark.max_out_of_orderness"] = f"{self.bound}ms"
        if self.late == "update_previous":
            props["late.data.allowed_lateness"] = f"{self.lateness}ms"
        if self.idle is not None:
            props["watermark.idle_timeout"] = self.idle
        return props


@st.composite
def disorders(draw: st.DrawFn) -> Disorder:
    n = draw(st.integers(0, 50), label="rows")
    rng = random.Random(draw(st.integers(0, 2**32), label="seed"))
    start = rng.choice([-500, -7, 0, 0, 1_700_000_000_000])
    base, ts = start, []
    for _ in range(n):
        base += rng.choice([0, 0, 1, 2, 3, 5, 8, 13, 40])
        # within the bound, a little beyond it, or far beyond it
        ts.append(base - rng.choice([0, 0, 0, rng.randint(0, 10), rng.randint(0, 60), 200]))
    partitions = None
    if rng.random() < 0.5:
        count = rng.randint(1, 3)
        partitions = [rng.randrange(count) for _ in range(n)]
    keys = [rng.choice(["a", "b", "c", None]) for _ in range(n)]
    cuts = sorted(rng.randint(0, n) for _ in range(rng.randint(0, 8)))
    kind = draw(st.sampled_from(["tumbling", "tumbling", "sliding", "session"]), label="window")
    if kind == "sliding":
        size, advance = rng.choice([(10, 5), (6, 2), (3, 3), (20, 7), (1, 1)])
    else:
        size = rng.choice([1, 3, 10, 25])
        advance = size
    late = draw(st.sampled_from(LATE_STRATEGIES), label="late")
    if kind == "session" and late == "update_previous":
        late = "include_in_next_window"  # refused for sessions (tested in tests/window)
    return Disorder(
        ts=ts,
        keys=keys,
        partitions=partitions,
        pieces=list(itertools.pairwise([0, *cuts, n])),
        window=(kind, size, advance),
        watermark=draw(
            st.sampled_from(
                ["bounded_out_of_orderness", "bounded_out_of_orderness", "ascending", "none"]
            ),
            label="watermark",
        ),
        bound=rng.choice([0, 0, 3, 20]),
        late=late,
        lateness=rng.choice([0, 5, 30, 1000]),
        idle=draw(st.sampled_from([None, None, None, "1ms", "50ms"]), label="idle"),
    )


def model(d: Disorder) -> tuple[dict[tuple[int, str | None], int], int, int]:
    """SPEC 12 record by record (no idle timeout), for tumbling and sliding windows.

    Returns the final count of every (window start, key), the rows dropped and the rows
    dead-lettered. A row is judged against the watermark the rows before it left; it
    counts in each of its windows still open; when none is open it is late: dropped,
    dead-lettered, or counted at the watermark (include_in_next_window). Under
    update_previous a row also corrects each of its closed windows still kept for the
    allowed lateness (as tests/window's hand-made sliding case shows), and is dropped
    when it has no window open or kept.
    """
    _, size, advance = d.window
    bound = 0 if d.watermark == "ascending" else d.bound
    highest: dict[int, int] = {}
    mark: int | None = None
    counts: dict[tuple[int, str | None], int] = {}
    dropped = dead = 0

    def windows(t: int) -> list[int]:
        last = t - t % advance
        return sorted(s for s in range(last, last - size - advance, -advance) if s <= t < s + size)

    for i, (t, key) in enumerate(zip(d.ts, d.keys, strict=True)):
        mine = windows(t)
        open_ = [s for s in mine if mark is None or s + size > mark]
        if d.late == "update_previous":
            # its open windows, and its closed ones still kept (corrected and re-emitted)
            targets = [s for s in mine if mark is None or mark < s + size + d.lateness]
            dropped += not targets
        elif open_:
            targets = open_
        elif d.late == "include_in_next_window":
            assert mark is not None
            targets = windows(mark)
        else:
            targets = []
            dropped += d.late == "drop"
            dead += d.late == "dead_letter"
        for s in targets:
            counts[(s, key)] = counts.get((s, key), 0) + 1
        if d.watermark != "none":
            p = 0 if d.partitions is None else d.partitions[i]
            highest[p] = max(highest.get(p, t), t)
            candidate = min(highest.values()) - bound
            mark = candidate if mark is None else max(mark, candidate)
    return counts, dropped, dead


@hostile_settings(200)
@given(d=disorders())
def test_disorder_beyond_the_bound_counts_every_row_once(d: Disorder) -> None:
    sql, props = d.sql(), d.properties()
    context = (
        f"{sql}\nproperties={props}\nts={d.ts}\nkeys={d.keys}\npartitions={d.partitions}\n"
        f"pieces={d.pieces}"
    )
    compiled = outcome(lambda: vs.compile(sql, properties=props), context)
    assert compiled.ok, f"a valid windowed query was refused: {describe(compiled.error)}\n{context}"
    query: vs.Query = compiled.value
    data = d.batch()
    emitted: list[tuple[int, tuple[Any, ...]]] = []  # (call, row); flush is len(pieces)
    marks: list[int | None] = []
    letters: list[dict[str, Any]] = []
    for index, (lo, hi) in enumerate(d.pieces):
        result = outcome(lambda lo=lo, hi=hi: query.process(data.slice(lo, hi - lo)), context)
        assert result.ok, f"call {index}: {describe(result.error)}\n{context}"
        mark = query.watermark
        for row in rows_of(result.value):
            # an EMIT FINAL row leaves process() only once the watermark reached its end
            assert mark is not None and row[3] <= mark, (
                f"call {index} emitted {row} with the watermark at {mark}\n{context}"
            )
            emitted.append((index, row))
        if marks and marks[-1] is not None:
            assert mark is not None and mark >= marks[-1], (
                f"the watermark went back from {marks[-1]} to {mark} in call {index}\n{context}"
            )
        marks.append(mark)
        for record, reason in rows_of(query.dead_letters()):
            assert "late" in reason.lower(), f"dead letter reason {reason!r}\n{context}"
            letters.append(json.loads(record))
    flushed = outcome(query.flush, "flush: " + context)
    assert flushed.ok, f"flush: {describe(flushed.error)}\n{context}"
    emitted += [(len(d.pieces), row) for row in rows_of(flushed.value)]
    if d.watermark == "none":
        assert all(call == len(d.pieces) for call, _ in emitted), (
            f"watermark.strategy none emitted before flush: {emitted}\n{context}"
        )
    metrics = query.metrics()
    assert metrics["records_in"] == len(d.ts), f"{metrics}\n{context}"
    assert metrics["dead_lettered"] == len(letters), f"{metrics}, {len(letters)} letters\n{context}"
    if d.late != "dead_letter":
        assert not letters, f"dead letters under {d.late}: {letters}\n{context}"

    # The last emission of each (window, key) holds its final count (update_previous
    # re-emits a corrected row; every other strategy emits a window once).
    final: dict[tuple[int, int, str | None], int] = {}
    for _, (key, count, start, end) in emitted:
        if d.late != "update_previous":
            assert (start, end, key) not in final, (
                f"window [{start}, {end}) of key {key!r} emitted twice: {emitted}\n{context}"
            )
        final[(start, end, key)] = count
    kind, size, _ = d.window
    if kind != "sliding":
        total = sum(final.values()) + metrics["late_dropped"] + metrics["dead_lettered"]
        assert total == len(d.ts), (
            f"{len(d.ts)} rows in, but {sum(final.values())} in emitted windows + "
            f"{metrics['late_dropped']} dropped + {metrics['dead_lettered']} dead-lettered\n"
            f"emitted {emitted}\n{context}"
        )
    if kind == "session" or d.idle is not None:
        return  # sessions: the count above; idle timeouts depend on the wall clock
    counts, dropped, dead = model(d)
    want = {(s, s + size, key): c for (s, key), c in counts.items()}
    assert final == want, (
        f"final window counts differ from the model\nvelostream {sorted(final.items(), key=repr)}"
        f"\nmodel      {sorted(want.items(), key=repr)}\n{context}"
    )
    assert (metrics["late_dropped"], metrics["dead_lettered"]) == (dropped, dead), (
        f"late_dropped/dead_lettered {metrics['late_dropped']}/{metrics['dead_lettered']}, "
        f"model {dropped}/{dead}\n{context}"
    )
    for letter in letters:
        assert set(letter) >= {"k", "ts"}, f"dead letter {letter}\n{context}"


# --------------------------------------------------------------------------- snapshots

TS_PROPS = {"event.time.field": "ts", "watermark.max_out_of_orderness": "8ms"}
COUNT_SUM = (
    "SELECT k, COUNT(*) AS c, SUM(x) AS s, MIN(x) AS mn, COUNT(DISTINCT x) AS d, "
    "_window_start, _window_end FROM t GROUP BY k WINDOW {window}"
)
SNAPSHOT_QUERIES: dict[str, tuple[str, dict[str, str]]] = {
    "tumbling": (COUNT_SUM.format(window="TUMBLING(10ms)"), TS_PROPS),
    "sliding": (COUNT_SUM.format(window="SLIDING(15ms, 5ms)"), TS_PROPS),
    "session": (COUNT_SUM.format(window="SESSION(4ms)"), TS_PROPS),
    "changes": (COUNT_SUM.format(window="SLIDING(15ms, 5ms) EMIT CHANGES"), TS_PROPS),
    "update_previous": (
        COUNT_SUM.format(window="TUMBLING(10ms)"),
        {**TS_PROPS, "late.data.strategy": "update_previous", "late.data.allowed_lateness": "20ms"},
    ),
    "dead_letter": (
        COUNT_SUM.format(window="TUMBLING(10ms)"),
        {**TS_PROPS, "late.data.strategy": "dead_letter"},
    ),
}
# Queries whose snapshots the ones above must refuse: other kinds, sizes, emit modes,
# time settings; a processing-time window; no window at all.
FOREIGN_QUERIES: list[tuple[str, dict[str, str]]] = [
    *SNAPSHOT_QUERIES.values(),
    (COUNT_SUM.format(window="TUMBLING(20ms)"), TS_PROPS),
    (COUNT_SUM.format(window="TUMBLING(10ms) EMIT CHANGES"), TS_PROPS),
    (COUNT_SUM.format(window="SESSION(5ms)"), TS_PROPS),
    (
        COUNT_SUM.format(window="TUMBLING(10ms)"),
        {"event.time.field": "ts", "watermark.strategy": "ascending"},
    ),
    (COUNT_SUM.format(window="TUMBLING(10ms)"), {"event.time.field": "ts"}),
    (COUNT_SUM.format(window="TUMBLING(10ms)"), {**TS_PROPS, "event.time.error": "dead_letter"}),
    (COUNT_SUM.format(window="TUMBLING(10ms)"), {}),
    (COUNT_SUM.replace("MIN(x)", "MAX(x)").format(window="TUMBLING(10ms)"), TS_PROPS),
    ("SELECT k, COUNT(*) AS c, SUM(x) AS s FROM t GROUP BY k", {}),
]


def snapshot_stream(seed: int) -> tuple[pa.RecordBatch, list[tuple[int, int]]]:
    """60 rows in 10 calls: two partitions, disorder mostly within the 8ms bound and
    sometimes 30ms beyond it, four keys with NULLs."""
    rng = random.Random(seed)
    base = 0
    ts, parts, keys, xs = [], [], [], []
    for _ in range(60):
        base += rng.randint(0, 6)
        ts.append(base - rng.randint(0, rng.choice([8, 8, 30])))
        parts.append(rng.randint(0, 1))
        keys.append(rng.choice(["a", "b", "c", None]))
        xs.append(rng.choice([rng.randint(-50, 50), None, 2**40]))
    cuts = sorted(rng.sample(range(1, 60), 9))
    pieces = list(itertools.pairwise([0, *cuts, 60]))
    batch = pa.record_batch(
        {
            "k": pa.array(keys, pa.string()),
            "x": pa.array(xs, pa.int64()),
            "ts": pa.array(ts, pa.int64()),
            "_partition": pa.array(parts, pa.int32()),
        }
    )
    return batch, pieces


STREAM, PIECES = snapshot_stream(3)
SPLIT = 5  # the snapshots are taken after this many calls


def feed(query: vs.Query, calls: Sequence[tuple[int, int]]) -> list[Any]:
    """Every call's rows, watermark and counters, then the flush's rows."""
    trace: list[Any] = []
    for lo, hi in calls:
        trace.append((rows_of(query.process(STREAM.slice(lo, hi - lo))), query.watermark))
        trace.append(rows_of(query.dead_letters()))
    trace.append(rows_of(query.flush()))
    metrics = query.metrics()
    trace.append({k: metrics[k] for k in ("late_dropped", "dead_lettered", "state_groups")})
    return trace


def with_state(name: str, calls: int = SPLIT) -> vs.Query:
    sql, props = SNAPSHOT_QUERIES[name]
    query = vs.compile(sql, properties=props)
    for lo, hi in PIECES[:calls]:
        query.process(STREAM.slice(lo, hi - lo))
    query.dead_letters()  # cleared: dead letters are output, not state
    return query


@functools.cache
def untouched_tail(name: str) -> list[Any]:
    """What a query with the state of ``SPLIT`` calls emits for the rest of the stream."""
    return feed(with_state(name), PIECES[SPLIT:])


def test_the_snapshot_stream_has_windowed_state_late_rows_and_early_windows() -> None:
    """Guards the fixture: the snapshots hold open windows, the stream late rows."""
    for name in SNAPSHOT_QUERIES:
        query = with_state(name)
        assert query.metrics()["state_groups"] > 0, name
        sql, props = SNAPSHOT_QUERIES[name]
        whole = feed(vs.compile(sql, properties=props), PIECES)
        assert whole[-1]["late_dropped"] + whole[-1]["dead_lettered"] > 0 or name in (
            "update_previous",
            "changes",
        ), (name, whole[-1])


@pytest.mark.parametrize("name", sorted(SNAPSHOT_QUERIES))
def test_windowed_snapshot_every_bit_flip_is_refused_and_changes_nothing(name: str) -> None:
    blob = with_state(name).snapshot()
    target = with_state(name)
    before = target.snapshot()
    accepted, changed = [], []
    for bit in range(len(blob) * 8):
        corrupted = bytearray(blob)
        corrupted[bit // 8] ^= 1 << (bit % 8)
        result = outcome(lambda c=bytes(corrupted), q=target: q.restore(c), f"{name}: bit {bit}")
        if result.ok or not isinstance(result.error, vs.SnapshotError):
            accepted.append((bit, describe(result.error)))
        if target.snapshot() != before:
            changed.append(bit)
            target = with_state(name)
    assert not accepted, f"{name}: {len(accepted)} bit flips not refused: {accepted[:10]}"
    assert not changed, f"{name}: refused bit flips changed the state: bits {changed[:10]}"
    assert feed(target, PIECES[SPLIT:]) == untouched_tail(name), (
        f"{name}: after the refused flips the query no longer gives the untouched output"
    )


@st.composite
def windowed_corruptions(draw: st.DrawFn) -> tuple[str, str, bytes]:
    """(query, kind of corruption, corrupted snapshot)."""
    name = draw(st.sampled_from(sorted(SNAPSHOT_QUERIES)), label="query")
    blob = _snapshot(name, SPLIT)
    other = _snapshot(draw(st.sampled_from(sorted(SNAPSHOT_QUERIES)), label="other"), 3)
    n = len(blob)
    kind = draw(
        st.sampled_from(
            ["truncate", "append", "overwrite", "garbage", "splice", "duplicate", "drop"]
        )
    )
    if kind == "truncate":
        corrupted = blob[: draw(st.integers(0, n - 1))]
    elif kind == "append":
        corrupted = blob + draw(st.binary(min_size=1, max_size=64))
    elif kind == "overwrite":
        at = draw(st.integers(0, n - 1))
        patch = draw(st.binary(min_size=1, max_size=16))
        corrupted = (blob[:at] + patch + blob[at + len(patch) :])[:n]
    elif kind == "garbage":
        corrupted = draw(st.binary(max_size=2 * n))
    elif kind == "splice":  # the head of one snapshot, the rest of another (maybe itself)
        at = draw(st.integers(1, min(n, len(other)) - 1))
        corrupted = blob[:at] + other[at:]
    elif kind == "duplicate":
        corrupted = blob + blob
    else:
        at = draw(st.integers(0, n - 1))
        corrupted = blob[:at] + blob[at + draw(st.integers(1, 8)) :]
    return name, kind, corrupted


@functools.cache
def _snapshot(name: str, calls: int) -> bytes:
    return with_state(name, calls).snapshot()


@functools.cache
def _target(name: str) -> tuple[vs.Query, bytes]:
    query = with_state(name)
    return query, query.snapshot()


@hostile_settings(200)
@given(case=windowed_corruptions())
def test_corrupted_windowed_snapshots_are_refused_and_change_nothing(
    case: tuple[str, str, bytes],
) -> None:
    name, kind, corrupted = case
    if corrupted in (_snapshot(name, SPLIT), _snapshot(name, 3)):
        return  # a splice that happened to rebuild a whole snapshot of this query
    target, before = _target(name)
    context = f"{name}, {kind}: {len(corrupted)} bytes {corrupted[:48]!r}..."
    result = outcome(lambda: target.restore(corrupted), context)
    assert not result.ok, f"a corrupted snapshot was restored\n{context}"
    assert isinstance(result.error, vs.SnapshotError), f"{describe(result.error)}\n{context}"
    assert target.snapshot() == before, f"a refused snapshot changed the state\n{context}"


def test_snapshots_of_other_windowed_queries_are_refused() -> None:
    """Each snapshot restores only into its own query (SQL and time settings): the others
    refuse it with SnapshotError, keep their state and go on as if untouched."""
    problems = []
    for name in sorted(SNAPSHOT_QUERIES):
        blob = _snapshot(name, SPLIT)
        own = SNAPSHOT_QUERIES[name]
        for sql, props in FOREIGN_QUERIES:
            if (sql, props) == own:
                continue
            target = vs.compile(sql, properties=props)
            target.process(STREAM.slice(0, 10))
            before = target.snapshot()
            result = outcome(lambda t=target, b=blob: t.restore(b), f"{name} into {sql} {props}")
            if result.ok or not isinstance(result.error, vs.SnapshotError):
                problems.append((name, sql, props, describe(result.error)))
            elif target.snapshot() != before:
                problems.append((name, sql, props, "refused, but the state changed"))
    assert not problems, f"{len(problems)} foreign restores not refused cleanly: {problems[:6]}"
    # the refused queries went on as untouched ones
    target = with_state("sliding")
    outcome(lambda: target.restore(_snapshot("tumbling", SPLIT)))
    assert feed(target, PIECES[SPLIT:]) == untouched_tail("sliding")


@st.composite
def snapshot_points(draw: st.DrawFn) -> tuple[str, int, int]:
    """(query, calls before the snapshot, how often the target processes first)."""
    return (
        draw(st.sampled_from(sorted(SNAPSHOT_QUERIES)), label="query"),
        draw(st.integers(0, len(PIECES)), label="calls"),
        draw(st.integers(0, 2), label="restores"),
    )


@hostile_settings(60)
@given(point=snapshot_points())
def test_pristine_windowed_snapshots_restore_to_the_uninterrupted_output(
    point: tuple[str, int, int],
) -> None:
    """A snapshot taken after any call, restored (possibly into a query with state of its
    own, possibly twice), gives exactly what the query it came from goes on to give:
    rows, watermarks, dead letters and counters."""
    name, calls, restores = point
    sql, props = SNAPSHOT_QUERIES[name]
    source = with_state(name, calls)
    blob = source.snapshot()
    target = vs.compile(sql, properties=props)
    for _ in range(restores):  # state of its own first, which the restore replaces
        target.process(STREAM.slice(0, 7))
        target.dead_letters()
    target.restore(blob)
    assert target.watermark == source.watermark
    assert feed(target, PIECES[calls:]) == feed(source, PIECES[calls:]), (
        f"{name}: restored after {calls} calls, the output differs"
    )


# --------------------------------------------------------------------------- re-framed

# Runs in a child process, which imports velostream and pyarrow only: it rebuilds each
# query's state from the stream it is given, corrupts the snapshot's payload, re-frames it
# with a correct length and checksum, restores it and, when that succeeds, goes on with
# the stream. Problems (a foreign exception, an InternalError) are reported as JSON; an
# abort (a panic that unwinds nowhere, an allocation of a corrupted length under the
# memory limit) kills the child, which the test reports.
_CHILD = r"""
import json, random, resource, struct, sys, zlib
import pyarrow as pa
import velostream as vs

spec = json.loads(sys.argv[1])
mode = sys.argv[2]
stream = pa.record_batch(spec["columns"], schema=pa.ipc.read_schema(pa.py_buffer(bytes.fromhex(spec["schema"]))))
pieces = [tuple(p) for p in spec["pieces"]]
split = spec["split"]
HEADER = 4 + 2 + 4 + 8 + 4
LENGTHS = 48  # the payload's leading length fields: varint, IPC continuation, IPC length

if mode != "sampled":  # room for the state, not for an allocation of a corrupted length
    with open("/proc/self/status") as status:
        size = next(int(l.split()[1]) * 1024 for l in status if l.startswith("VmSize"))
    limit = size + 512 * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def corruptions(payload, rng):
    if mode == "lengths":
        for bit in range(min(LENGTHS, len(payload)) * 8):
            b = bytearray(payload)
            b[bit // 8] ^= 1 << (bit % 8)
            yield "flip %d" % bit, bytes(b)
        return
    if mode == "keys":
        for at, byte in enumerate(payload):  # string bytes made invalid UTF-8
            if 0x61 <= byte <= 0x7A:
                for bad in (0xFF, 0xC3, 0x80):
                    b = bytearray(payload)
                    b[at] = bad
                    yield "byte %d %r -> %#x" % (at, chr(byte), bad), bytes(b)
        return
    bits = range(LENGTHS * 8, len(payload) * 8)
    for bit in sorted(rng.sample(bits, min(spec["flips"], len(bits)))):
        b = bytearray(payload)
        b[bit // 8] ^= 1 << (bit % 8)
        yield "flip %d" % bit, bytes(b)
    for i in range(40):
        b = bytearray(payload)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(LENGTHS, len(b))] = rng.choice([0, 0xFF, 0x7F, 0x80, rng.randrange(256)])
        yield "bytes %d" % i, bytes(b)
    for cut in range(LENGTHS, len(payload), max(1, len(payload) // 24)):
        yield "cut %d" % cut, payload[:cut]


def attempt(call):
    try:
        call()
        return "ok"
    except vs.InternalError as exc:
        return "InternalError: " + str(exc)[:240]
    except vs.VelostreamError:
        return "refused"
    except BaseException as exc:
        return type(exc).__name__ + ": " + str(exc)[:240]


problems, cases, restored = [], 0, 0
for name, (sql, props) in spec["queries"].items():
    def fresh():
        return vs.compile(sql, properties=props)

    source = fresh()
    for lo, hi in pieces[:split]:
        source.process(stream.slice(lo, hi - lo))
    blob = source.snapshot()
    assert blob[:4] == b"VSNP", blob[:4]
    head, payload = blob[:HEADER], blob[HEADER:]
    query = fresh().restore(blob)
    for label, body in corruptions(payload, random.Random(11)):
        cases += 1
        label = "%s %s" % (name, label)
        framed = head[:10] + struct.pack("<QI", len(body), zlib.crc32(body)) + body
        sys.stderr.write("case: " + label + "\n")
        sys.stderr.flush()
        result = attempt(lambda: query.restore(framed))
        if result not in ("ok", "refused"):
            problems.append([label, "restore", result])
        if result != "ok":
            if result != "refused":
                query = fresh().restore(blob)
            continue
        restored += 1
        steps = [("process %d" % (split + i), lambda lo=lo, hi=hi: query.process(stream.slice(lo, hi - lo)))
                 for i, (lo, hi) in enumerate(pieces[split:split + 3])]
        steps += [("metrics", query.metrics), ("snapshot", query.snapshot),
                  ("dead_letters", query.dead_letters), ("flush", query.flush)]
        for step, call in steps:
            result = attempt(call)
            if result not in ("ok", "refused"):
                problems.append([label, step, result])
            if result != "ok":
                break
        if attempt(lambda: query.restore(blob)) != "ok":  # the pristine state again
            query = fresh().restore(blob)
print(json.dumps({"cases": cases, "restored": restored, "problems": problems}))
"""


def run_child(mode: str, names: Sequence[str]) -> dict[str, Any]:
    spec = {
        "queries": {name: SNAPSHOT_QUERIES[name] for name in names},
        "columns": STREAM.to_pydict(),
        "schema": STREAM.schema.serialize().to_pybytes().hex(),
        "pieces": PIECES,
        "split": SPLIT,
        "flips": max(1, int(250 * float(os.environ.get("HOSTILE_EXAMPLES", "1")))),
    }
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(spec), mode],
        env={
            **os.environ,
            "PYTHONPATH": str(Path(vs.__file__).resolve().parents[1]),
            "RUST_BACKTRACE": "0",
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = child.stderr.splitlines()
    began = [line for line in lines if line.startswith("case: ")][-1:] or ["(none)"]
    assert child.returncode == 0, (
        f"the child process died (exit {child.returncode}): a corrupted windowed snapshot "
        f"crashed the interpreter in {began[0]!r}\nits other output: "
        f"{[line for line in lines if not line.startswith('case: ')][-12:]}"
    )
    return json.loads(child.stdout.strip().splitlines()[-1])


def test_reframed_windowed_payload_corruptions_never_crash() -> None:
    """Payload corruptions with a valid checksum (a producer bug or a deliberate edit):
    restoring may succeed, but nothing that follows (processing late and on-time rows,
    closing windows, flushing) may crash or raise anything but a VelostreamError."""
    report = run_child("sampled", ["tumbling", "sliding", "session", "update_previous"])
    problems = report["problems"]
    assert not problems, (
        f"{len(problems)} of {report['cases']} re-framed corruptions ({report['restored']} "
        f"restored) gave a foreign exception or an InternalError: {problems[:8]}"
    )


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux)")
@pytest.mark.parametrize(
    "mode",
    [
        # every bit of the payload's leading length fields (the state's length, the Arrow
        # IPC continuation marker and schema length) flipped
        "lengths",
        # every ASCII letter of the payload (the group keys among them) made invalid UTF-8
        "keys",
    ],
)
def test_reframed_lengths_and_key_bytes_are_refused_in_bounded_memory(mode: str) -> None:
    """Targeted re-framed corruptions under a limit of 512 MiB above what the process
    holds: restore refuses each with SnapshotError, or restores a state that processes,
    snapshots and flushes without an InternalError. An allocation sized by a corrupted
    length aborts the child under the limit, which fails the test."""
    report = run_child(mode, ["tumbling", "session"])
    problems = report["problems"]
    assert not problems, (
        f"{len(problems)} of {report['cases']} re-framed corruptions ({report['restored']} "
        f"restored) gave a foreign exception or an InternalError: {problems[:8]}"
    )
