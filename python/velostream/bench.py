"""The old-vs-direct benchmark behind ``velostream bench`` (SPEC sections 3, 6 and 10).

Everything here is deterministic: the data generators draw from a seeded numpy generator,
so two runs on two machines process the same records. Each workload is one entry of
:data:`WORKLOADS`, ``{name: (sql, data-generator kwargs, tables)}``; a new workload is a
new entry, plus generator options if it needs new columns. ``tables`` maps the name of each
table the SQL joins to a generator of its rows (:func:`make_instruments`): the table is
attached to every query before anything is timed, like compiling it.

:func:`run_bench` runs every workload twice over the same data: on the ``"direct"`` path in
batches of ``batch_size`` rows, and on the ``"legacy"`` per-record path on a smaller slice
(it is thousands of times slower). Before timing, it checks on a small slice that both paths
return identical rows, and raises :class:`BenchmarkMismatchError` if they do not.
The pytest-benchmark suite in ``benches/`` reuses these generators and workloads.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import velostream as vs

__all__ = [
    "SPEC_RATIO_TARGET",
    "SPEC_TARGETS",
    "WORKLOADS",
    "BenchmarkMismatchError",
    "Workload",
    "check_same_output",
    "format_table",
    "make_instruments",
    "make_trades",
    "measure_direct",
    "measure_legacy",
    "run_bench",
    "workload_data",
    "workload_tables",
]

#: Seed of every generator: same records on every run.
DEFAULT_SEED = 20240611

#: Records fed to the legacy path at most (it runs at tens of thousands of records/s).
DEFAULT_LEGACY_RECORDS = 20_000

#: Records compared row by row between the two paths before anything is timed.
CHECK_RECORDS = 2_000


class BenchmarkMismatchError(vs.VelostreamError):
    """The direct and legacy paths returned different rows for the same input."""


class Workload(NamedTuple):
    """One benchmark workload.

    Attributes:
        sql: the query over the stream ``trades``.
        data: keyword arguments of :func:`make_trades` for the stream's rows.
        tables: ``{name: generator}`` of the tables the query joins; each generator
            returns the table's rows (the same ones on every call).
    """

    sql: str
    data: Mapping[str, Any]
    tables: Mapping[str, Callable[[], pa.Table]] = MappingProxyType({})


#: Sectors of :func:`make_instruments` (the eleven GICS sectors).
SECTORS = (
    "communication",
    "consumer_discretionary",
    "consumer_staples",
    "energy",
    "financials",
    "health_care",
    "industrials",
    "information_technology",
    "materials",
    "real_estate",
    "utilities",
)


def make_instruments(rows: int = 100_000, *, seed: int = DEFAULT_SEED) -> pa.Table:
    """Generate the reference table ``instruments``, the same one for the same arguments.

    Columns: ``symbol`` (utf8, the ``rows`` keys of ``make_trades(..., symbols=rows)``,
    each once, in a seeded random order, so every trade of that generator finds its
    instrument), ``sector`` (utf8, one of :data:`SECTORS`) and ``lot`` (int64: 1, 10, 100
    or 1000).

    Args:
        rows: number of instruments (distinct symbols).
        seed: numpy generator seed.

    Returns:
        A ``pyarrow.Table`` with one contiguous chunk per column.
    """
    rng = np.random.default_rng(seed)
    symbol = pc.take(_symbol_names(rows), pa.array(rng.permutation(rows).astype(np.int32)))
    sector = pc.take(
        pa.array(SECTORS, type=pa.string()),
        pa.array(rng.integers(0, len(SECTORS), rows, dtype=np.int8)),
    )
    lot = np.array([1, 10, 100, 1000], dtype=np.int64)[rng.integers(0, 4, rows)]
    return pa.table({"symbol": symbol, "sector": sector, "lot": lot})


#: The workloads of SPEC section 6 that the engine runs today.
WORKLOADS: dict[str, Workload] = {
    "select_where": Workload(
        sql=(
            "SELECT symbol, price * qty AS notional FROM trades "
            "WHERE price > 100 AND status = 'open'"
        ),
        data={"symbols": 100},
    ),
    "group_by_continuous": Workload(
        sql=(
            "SELECT symbol, COUNT(*) AS n, SUM(qty) AS total, AVG(price) AS avg_price "
            "FROM trades GROUP BY symbol"
        ),
        data={"symbols": 10_000},
    ),
    # One-second windows on event time over 1 000 symbols: 10 trades per millisecond,
    # up to 50 ms out of order, so each window closes with about 1 000 rows.
    "tumbling_window": Workload(
        sql=(
            "SELECT symbol, COUNT(*) AS n, SUM(qty) AS total, AVG(price) AS avg_price "
            "FROM trades GROUP BY symbol WINDOW TUMBLING(1s) EMIT FINAL "
            "WITH ('event.time.field' = 'ts', 'watermark.max_out_of_orderness' = '100ms')"
        ),
        data={"symbols": 1_000, "event_times": True},
    ),
    # Every trade (100 000 symbols) finds its instrument in a 100 000-row table.
    "stream_table_join": Workload(
        sql=(
            "SELECT t.symbol, t.price * t.qty AS notional, i.sector, i.lot "
            "FROM trades t JOIN instruments i ON t.symbol = i.symbol"
        ),
        data={"symbols": 100_000},
        tables={"instruments": functools.partial(make_instruments, 100_000)},
    ),
}

#: SPEC section 10 targets for the direct path, records/s per core, by workload.
SPEC_TARGETS: dict[str, float] = {
    "select_where": 100e6,
    "group_by_continuous": 20e6,
    "tumbling_window": 50e6,
    "stream_table_join": 40e6,
}

#: SPEC section 10: the direct path is at least this many times faster than the legacy one.
SPEC_RATIO_TARGET = 50.0


def _symbol_names(count: int) -> pa.Array:
    """``count`` distinct short string keys: ``S00``..``S99`` for 100, ``K0000``.. beyond."""
    if count <= 0:
        raise ValueError(f"symbols must be positive, got {count}")
    if count <= 100:
        return pa.array([f"S{i:02d}" for i in range(count)], type=pa.string())
    width = len(str(count - 1))
    return pa.array([f"K{i:0{width}d}" for i in range(count)], type=pa.string())


#: Event time of the first generated trade (2023-11-14T22:13:20Z), epoch millis.
FIRST_EVENT_TIME = 1_700_000_000_000


def make_trades(
    records: int, *, symbols: int = 100, seed: int = DEFAULT_SEED, event_times: bool = False
) -> pa.Table:
    """Generate ``records`` trades, the same ones for the same arguments.

    Columns: ``symbol`` (utf8, ``symbols`` distinct short keys drawn uniformly), ``price``
    (float64, uniform in [1, 200), so ``price > 100`` keeps about half), ``qty`` (int64,
    1..1000) and ``status`` (utf8, ``'open'`` or ``'closed'`` with equal odds).

    Args:
        records: number of rows.
        symbols: number of distinct ``symbol`` values (100 for select/where, 10 000 for
            the group-by workload).
        seed: numpy generator seed.
        event_times: add ``ts`` (int64 epoch millis): 10 trades per millisecond from
            :data:`FIRST_EVENT_TIME`, each up to 50 ms late.

    Returns:
        A ``pyarrow.Table`` with one contiguous chunk per column.
    """
    if records < 0:
        raise ValueError(f"records must be >= 0, got {records}")
    rng = np.random.default_rng(seed)
    names = _symbol_names(symbols)
    symbol = pc.take(names, pa.array(rng.integers(0, symbols, records, dtype=np.int32)))
    price = rng.uniform(1.0, 200.0, records)
    qty = rng.integers(1, 1001, records, dtype=np.int64)
    status = pc.take(
        pa.array(["open", "closed"], type=pa.string()),
        pa.array(rng.integers(0, 2, records, dtype=np.int8)),
    )
    columns = {"symbol": symbol, "price": price, "qty": qty, "status": status}
    if event_times:
        order = np.arange(records, dtype=np.int64) // 10
        columns["ts"] = FIRST_EVENT_TIME + order - rng.integers(0, 51, records, dtype=np.int64)
    return pa.table(columns)


def workload_data(name: str, records: int, *, seed: int = DEFAULT_SEED) -> pa.Table:
    """The input table of workload ``name`` with ``records`` rows."""
    return make_trades(records, seed=seed, **_workload(name).data)


def workload_tables(name: str) -> dict[str, pa.Table]:
    """The tables workload ``name`` joins, ``{name: rows}`` (empty if it joins none)."""
    return {table: generate() for table, generate in _workload(name).tables.items()}


def _workload(name: str) -> Workload:
    try:
        return WORKLOADS[name]
    except KeyError:
        raise ValueError(f"unknown workload {name!r}; available: {', '.join(WORKLOADS)}") from None


def _batches(table: pa.Table, batch_size: int) -> list[pa.RecordBatch]:
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    return table.combine_chunks().to_batches(max_chunksize=batch_size)


def _compile(
    sql: str, path: Literal["direct", "legacy"], tables: Mapping[str, pa.Table] | None
) -> vs.Query:
    """A fresh query on ``path`` with ``tables`` attached (setup: never timed)."""
    query = vs.compile(sql, path=path)
    for name, table in (tables or {}).items():
        query.attach_table(name, table)
    return query


def _run(query: vs.Query, batches: Sequence[pa.RecordBatch]) -> pa.Table:
    outputs = [query.process(b) for b in batches]
    outputs.append(query.flush())
    return pa.Table.from_batches(outputs, schema=outputs[-1].schema if outputs else None)


def check_same_output(
    sql: str,
    table: pa.Table,
    batch_size: int = 500,
    tables: Mapping[str, pa.Table] | None = None,
) -> pa.Table:
    """Run ``table`` through both paths and raise if their rows differ.

    Args:
        sql: the query.
        table: a small input (the legacy path is slow).
        batch_size: rows per ``process`` call on both paths.
        tables: ``{name: rows}`` attached to both queries (the tables ``sql`` joins).

    Returns:
        The (identical) output of both paths, as a table.

    Raises:
        BenchmarkMismatchError: the paths returned different schemas or rows.
    """
    batches = _batches(table, batch_size)
    direct = _run(_compile(sql, "direct", tables), batches)
    legacy = _run(_compile(sql, "legacy", tables), batches)
    if not direct.schema.equals(legacy.schema):
        raise BenchmarkMismatchError(
            f"direct and legacy schemas differ for {sql!r}:\n"
            f"direct: {direct.schema}\nlegacy: {legacy.schema}"
        )
    if not direct.equals(legacy):
        first = _first_difference(direct, legacy)
        raise BenchmarkMismatchError(
            f"direct and legacy outputs differ for {sql!r}: {direct.num_rows} vs "
            f"{legacy.num_rows} rows; {first}"
        )
    return direct


def _first_difference(a: pa.Table, b: pa.Table) -> str:
    rows_a, rows_b = a.to_pylist(), b.to_pylist()
    for i, (x, y) in enumerate(zip(rows_a, rows_b, strict=False)):
        if x != y:
            return f"first difference at row {i}: direct {x} vs legacy {y}"
    return "one output is a prefix of the other"


def measure_direct(
    sql: str,
    table: pa.Table,
    batch_size: int = 10_000,
    repeats: int = 3,
    tables: Mapping[str, pa.Table] | None = None,
) -> float:
    """Records/s of the direct path: a fresh query fed ``table`` in ``batch_size`` batches.

    The best of ``repeats`` timed runs, after one untimed warm-up run on a fresh query.
    Only ``process``/``flush`` are timed; batches are sliced, the query compiled and
    ``tables`` (``{name: rows}`` the query joins) attached beforehand.
    """
    batches = _batches(table, batch_size)
    best = float("inf")
    for attempt in range(max(1, repeats) + 1):  # attempt 0 is the warm-up
        query = _compile(sql, "direct", tables)  # fresh state, not timed
        start = time.perf_counter()
        for batch in batches:
            query.process(batch)
        query.flush()
        if attempt:
            best = min(best, time.perf_counter() - start)
    return table.num_rows / best


def measure_legacy(
    sql: str,
    table: pa.Table,
    batch_size: int = 10_000,
    tables: Mapping[str, pa.Table] | None = None,
) -> float:
    """Records/s of the legacy per-record path over ``table`` (one timed run).

    ``tables`` (``{name: rows}`` the query joins) are attached before the timing starts.
    """
    batches = _batches(table, batch_size)
    query = _compile(sql, "legacy", tables)
    start = time.perf_counter()
    for batch in batches:
        query.process(batch)
    query.flush()
    return table.num_rows / (time.perf_counter() - start)


def run_bench(
    records: int = 1_000_000,
    workloads: Sequence[str] | None = None,
    batch_size: int = 10_000,
    legacy_records: int | None = None,
) -> dict[str, dict[str, float]]:
    """Compare the direct and the legacy path on each workload.

    Args:
        records: records fed to the direct path, in batches of ``batch_size``.
        workloads: names from :data:`WORKLOADS`; all of them when ``None``.
        batch_size: rows per ``process`` call.
        legacy_records: records fed to the legacy path (the first ones of the same data);
            ``min(records, 20_000)`` when ``None``.

    Returns:
        ``{workload: {"direct_rps": float, "legacy_rps": float, "ratio": float}}``, the
        JSON shape of ``velostream bench --format json``; ``ratio`` is direct / legacy.

    Raises:
        ValueError: an unknown workload name or a non-positive size.
        BenchmarkMismatchError: the two paths disagree on a small slice of the data.
    """
    if records <= 0:
        raise ValueError(f"records must be positive, got {records}")
    names = list(WORKLOADS) if workloads is None else list(workloads)
    for name in names:
        _workload(name)
    legacy_n = min(records, DEFAULT_LEGACY_RECORDS) if legacy_records is None else legacy_records
    if legacy_n <= 0:
        raise ValueError(f"legacy_records must be positive, got {legacy_n}")

    results: dict[str, dict[str, float]] = {}
    for name in names:
        sql = WORKLOADS[name].sql
        table = workload_data(name, max(records, legacy_n))
        tables = workload_tables(name)
        check_same_output(sql, table.slice(0, min(CHECK_RECORDS, table.num_rows)), tables=tables)
        direct_rps = measure_direct(sql, table.slice(0, records), batch_size, tables=tables)
        legacy_rps = measure_legacy(sql, table.slice(0, legacy_n), batch_size, tables=tables)
        results[name] = {
            "direct_rps": float(direct_rps),
            "legacy_rps": float(legacy_rps),
            "ratio": float(direct_rps / legacy_rps),
        }
    return results


def _rate(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:.0f}"


def format_table(results: Mapping[str, Mapping[str, float]]) -> str:
    """Render :func:`run_bench` results as a plain-text table, one workload per line."""
    header = ("workload", "direct rec/s", "legacy rec/s", "ratio")
    rows = [
        (
            name,
            _rate(r["direct_rps"]),
            _rate(r["legacy_rps"]),
            f"{r['ratio']:,.0f}x",
        )
        for name, r in results.items()
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
