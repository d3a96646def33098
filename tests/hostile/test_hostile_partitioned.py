"""Partitioned queries on hostile partition layouts (SPEC section 9, issue 13).

Each example draws a ``_partition`` column of a random integer type (int8 to int64 with
negative values and the type's limits, uint8 to uint64 beyond 2^63 where the query
allows it), up to 40 partitions, laid out record by record (interleaved), in runs of one
partition, or both; random keys and values with NULLs; random batch splits (empty
pieces, pieces fed as chunked Tables); 1 to 3 workers; and batches a broken producer
could send between the good ones (no ``_partition``, a NULL one, a float or string one).

The rule: each partition's output rows are, in order, what a plain ``vs.compile`` query
emits when fed only that partition's records in their order, for a GROUP BY ... EMIT
CHANGES and for a stateless filter and projection; each broken batch is a ``DataError``
that changes nothing; nothing but a ``VelostreamError`` ever leaves the package.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pytest
from hostile_support import describe, hostile_settings, outcome
from hypothesis import given
from hypothesis import strategies as st

import velostream as vs
from velostream.partitioned import compile_partitioned

GROUP_BY = (
    "SELECT k, MAX(_partition) AS p, COUNT(*) AS n, COUNT(x) AS cx, SUM(x) AS sx, "
    "MIN(x) AS mn, LAST_VALUE(x) AS lx FROM t GROUP BY k EMIT CHANGES"
)
STATELESS = "SELECT k, _partition AS p, x + 1 AS y, x * 2 AS z FROM t WHERE x IS NULL OR x % 3 <> 0"
P_COLUMN = 1  # where both queries put the partition

TYPES = [pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(), pa.uint32()]
BAD = ["missing", "null", "float", "string"]


def limits(kind: pa.DataType) -> tuple[int, int]:
    bits = kind.bit_width
    if pa.types.is_signed_integer(kind):
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


@dataclass
class Case:
    kind: pa.DataType
    partitions: list[int]
    keys: list[Any]
    x: list[int | None]
    pieces: list[tuple[int, int]]
    as_table: list[bool]
    bad: dict[int, str]  # before piece i, a broken batch
    workers: int

    @property
    def rows(self) -> int:
        return len(self.partitions)

    def table(self) -> pa.Table:
        return pa.table(
            {
                "_partition": pa.array(self.partitions, self.kind),
                "k": pa.array(self.keys, pa.string()),
                "x": pa.array(self.x, pa.int64()),
            }
        )

    def __repr__(self) -> str:
        return (
            f"Case(kind={self.kind}, workers={self.workers}, rows={self.rows}, "
            f"partitions={self.partitions}, keys={self.keys}, x={self.x}, "
            f"pieces={self.pieces}, as_table={self.as_table}, bad={self.bad})"
        )


@st.composite
def cases(draw: st.DrawFn, wide: bool) -> Case:
    """A random partitioned input; ``wide`` lets the partition column be uint64."""
    kind = draw(st.sampled_from([*TYPES, pa.uint64()] if wide else TYPES))
    lo, hi = limits(kind)
    special = [v for v in (lo, hi, 0, -1, 1, lo + 1, hi - 1, 2**63) if lo <= v <= hi]
    count = draw(st.integers(1, 40))
    ids = draw(
        st.lists(
            st.one_of(st.sampled_from(special), st.integers(lo, hi)),
            min_size=count,
            max_size=count,
            unique=True,
        )
    )
    n = draw(st.one_of(st.integers(0, 30), st.integers(100, 300)))
    layout = draw(st.sampled_from(["interleaved", "runs", "both"]))
    interleaved = draw(st.lists(st.sampled_from(ids), min_size=n, max_size=n))
    if layout == "interleaved":
        partitions = interleaved
    else:
        lengths = draw(st.lists(st.integers(1, 40), min_size=1, max_size=30))
        partitions = []
        for length in itertools.cycle(lengths):
            if len(partitions) >= n:
                break
            partitions += [draw(st.sampled_from(ids))] * length
        partitions = partitions[:n]
        if layout == "both":
            cut = draw(st.integers(0, n))
            partitions = interleaved[:cut] + partitions[cut:]
    keys = draw(st.lists(st.sampled_from([None, "a", "b", "c", "", "é"]), min_size=n, max_size=n))
    x = draw(
        st.lists(
            st.one_of(st.none(), st.integers(-(10**6), 10**6), st.sampled_from([0, -1, 3])),
            min_size=n,
            max_size=n,
        )
    )
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=6)))
    pieces = list(itertools.pairwise([0, *cuts, n]))
    return Case(
        kind=kind,
        partitions=partitions,
        keys=keys,
        x=x,
        pieces=pieces,
        as_table=draw(st.lists(st.booleans(), min_size=len(pieces), max_size=len(pieces))),
        bad=draw(st.dictionaries(st.integers(0, len(pieces)), st.sampled_from(BAD), max_size=2)),
        workers=draw(st.integers(1, 3)),
    )


def broken(batch: pa.RecordBatch, how: str) -> pa.RecordBatch:
    """A batch like ``batch`` (at least one row) with its ``_partition`` broken."""
    n = batch.num_rows
    if how == "missing":
        return batch.drop_columns(["_partition"])
    column = {
        "null": pa.array([None] * n, batch.schema.field("_partition").type),
        "float": pa.array([0.5] * n),
        "string": pa.array(["0"] * n),
    }[how]
    return batch.set_column(0, "_partition", column)


def as_input(batch: pa.RecordBatch, table: bool) -> Any:
    """The batch itself, or a Table of it in several chunks (empty ones included)."""
    if not table:
        return batch
    half = batch.num_rows // 2
    return pa.Table.from_batches(
        [batch.slice(0, half), batch.slice(half, 0), batch.slice(half)], schema=batch.schema
    )


def reference(sql: str, table: pa.Table) -> dict[int, list[tuple[Any, ...]]]:
    """Per partition: what one plain query emits for that partition's records alone."""
    out: dict[int, list[tuple[Any, ...]]] = {}
    column = table.column("_partition").to_pylist()
    for p in dict.fromkeys(column):
        rows = table.filter(pa.array([v == p for v in column]))
        query = vs.compile(sql)
        emitted = [query.process(rows), query.flush()]
        out[p] = [tuple(r.values()) for b in emitted for r in b.to_pylist()]
    return out


def check(sql: str, case: Case) -> None:
    context = repr(case)
    table = case.table()
    batch = (
        table.combine_chunks().to_batches()[0]
        if case.rows
        else pa.RecordBatch.from_pylist([], schema=table.schema)
    )
    made = outcome(lambda: compile_partitioned(sql, workers=case.workers), context)
    assert made.ok, f"{describe(made.error)}\n{context}"
    query = made.value
    emitted: list[tuple[Any, ...]] = []
    try:
        for index, (lo, hi) in enumerate([*case.pieces, (case.rows, case.rows)]):
            how = case.bad.get(index)
            if how is not None and batch.num_rows:
                before = (query.partitions, query.metrics())
                bad = broken(batch.slice(0, 3), how)
                result = outcome(lambda bad=bad: query.process(bad), context)
                assert isinstance(result.error, vs.DataError), (
                    f"a batch with a {how} _partition gave {describe(result.error)}\n{context}"
                )
                assert (query.partitions, query.metrics()) == before, context
            if index == len(case.pieces):
                break
            piece = as_input(batch.slice(lo, hi - lo), case.as_table[index])
            result = outcome(
                lambda piece=piece: query.process(piece),
                f"piece {index} ({lo}, {hi})\n{context}",
            )
            assert result.ok, f"piece {index}: {describe(result.error)}\n{context}"
            emitted += [tuple(r.values()) for r in result.value.to_pylist()]
        flushed = outcome(query.flush, context)
        assert flushed.ok, f"flush: {describe(flushed.error)}\n{context}"
        emitted += [tuple(r.values()) for r in flushed.value.to_pylist()]
        metrics = query.metrics()
        per = query.partition_metrics()
        held = query.partitions
    finally:
        query.close()
    got: dict[int, list[tuple[Any, ...]]] = {}
    for row in emitted:
        got.setdefault(row[P_COLUMN], []).append(row)
    want = reference(sql, table)
    want = {p: rows for p, rows in want.items() if rows}
    assert got.keys() == want.keys(), f"partitions {sorted(got)} != {sorted(want)}\n{context}"
    for p, rows in want.items():
        assert got[p] == rows, f"partition {p}:\n{got[p]}\n!=\n{rows}\n{context}"
    seen = sorted(set(case.partitions))
    assert held == seen, context
    assert metrics["records_in"] == case.rows, context
    assert metrics["partitions"] == len(seen), context
    assert {p: m["records_in"] for p, m in per.items()} == {
        p: case.partitions.count(p) for p in seen
    }, context
    assert all(m["worker"] in range(case.workers) for m in per.values()), context


@pytest.mark.parametrize(("sql", "wide"), [(GROUP_BY, False), (STATELESS, True)])
@hostile_settings(100)
@given(data=st.data())
def test_each_partition_gets_what_a_query_of_its_own_records_gives(
    sql: str, wide: bool, data: st.DataObject
) -> None:
    check(sql, data.draw(cases(wide)))
