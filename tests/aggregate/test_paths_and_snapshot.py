"""Direct and legacy paths give identical outputs; snapshot/restore resumes exactly."""

from __future__ import annotations

import pyarrow as pa
import pytest
from agg_support import (
    aggregate_queries,
    assert_identical,
    feed,
    hsettings,
    run_stream,
    table_and_pieces,
)
from hypothesis import given
from hypothesis import strategies as st

import velostream as vs

# --------------------------------------------------------------------------- direct vs legacy


@hsettings(max_examples=80)
@given(sql=aggregate_queries(), data=table_and_pieces(max_rows=40))
def test_direct_and_legacy_identical(sql: str, data) -> None:
    batch, pieces = data
    direct = run_stream(sql, batch, pieces, path="direct")
    legacy = run_stream(sql, batch, pieces, path="legacy")
    assert direct.query.output_schema == legacy.query.output_schema, sql
    # batch by batch: the same rows come out of the same process() call
    for index, (d, g) in enumerate(zip(direct.outputs, legacy.outputs, strict=True)):
        assert_identical(d, g, f"{sql}\nbatch {index}")
    assert_identical(direct.flushed, legacy.flushed, f"{sql}\nflush")
    dm, lm = direct.query.metrics(), legacy.query.metrics()
    # (state_groups is left out: for a global aggregate the direct path creates its one
    # group on an empty batch, the legacy path never calls the engine for zero rows)
    for key in ("records_in", "records_out"):
        assert dm[key] == lm[key], (sql, key, dm, lm)


# --------------------------------------------------------------------------- snapshot / restore


@hsettings(max_examples=80)
@given(
    sql=aggregate_queries(),
    data=table_and_pieces(max_rows=40),
    at=st.integers(0, 10),
    path=st.sampled_from(["direct", "legacy"]),
)
def test_restore_resumes_exactly(sql: str, data, at: int, path: str) -> None:
    batch, pieces = data
    at = min(at, len(pieces))
    head, tail = pieces[:at], pieces[at:]

    original = vs.compile(sql, path=path)
    head_out = feed(original, batch, head)
    blob = original.snapshot()
    assert isinstance(blob, bytes)
    restored = vs.compile(sql, path=path).restore(blob)
    assert isinstance(restored, vs.Query)
    assert restored.metrics()["state_groups"] == original.metrics()["state_groups"], sql

    tail_original = feed(original, batch, tail)
    tail_restored = feed(restored, batch, tail)
    for index, (a, b) in enumerate(zip(tail_original, tail_restored, strict=True)):
        assert_identical(a, b, f"{sql}\nbatch {at + index} after restore at {at}")
    assert_identical(original.flush(), restored.flush(), f"{sql}\nflush")
    assert restored.metrics()["state_groups"] == original.metrics()["state_groups"], sql

    # and the restored continuation is what an uninterrupted run gives
    uninterrupted = run_stream(sql, batch, pieces, path=path)
    for index, (a, b) in enumerate(
        zip([*head_out, *tail_restored], uninterrupted.outputs, strict=True)
    ):
        assert_identical(a, b, f"{sql}\nbatch {index} vs uninterrupted")


@hsettings(max_examples=40)
@given(sql=aggregate_queries(distinct=False), data=table_and_pieces(max_rows=40))
def test_snapshot_chain(sql: str, data) -> None:
    """Snapshot and restore after every batch, into a fresh query each time."""
    batch, pieces = data
    expected = run_stream(sql, batch, pieces).outputs
    query = vs.compile(sql)
    for index, (lo, hi) in enumerate(pieces):
        query = vs.compile(sql).restore(query.snapshot())
        out = query.process(batch.slice(lo, hi - lo))
        assert_identical(out, expected[index], f"{sql}\nbatch {index}")


def test_snapshot_is_a_copy_not_a_view() -> None:
    sql = "SELECT k, COUNT(*) AS c, SUM(x) AS s FROM t GROUP BY k"
    q = vs.compile(sql)
    q.process(pa.record_batch({"k": ["a", "b", "a"], "x": [1, 2, 3]}))
    blob = q.snapshot()
    q.process(pa.record_batch({"k": ["a"], "x": [100]}))
    r = vs.compile(sql).restore(blob)
    out = r.process(pa.record_batch({"k": ["a", "c"], "x": [10, 1]}))
    assert out.to_pylist() == [{"k": "a", "c": 3, "s": 14}, {"k": "c", "c": 1, "s": 1}]
    assert r.metrics()["state_groups"] == 3


SOURCE_SQL = "SELECT k, COUNT(*) AS c, SUM(x) AS s FROM t GROUP BY k"


@pytest.mark.parametrize(
    "other_sql",
    [
        "SELECT k, COUNT(*) AS c, MAX(x) AS s FROM t GROUP BY k",  # different aggregate
        "SELECT k, SUM(x) AS s, COUNT(*) AS c FROM t GROUP BY k",  # aggregates reordered
        "SELECT g, COUNT(*) AS c, SUM(x) AS s FROM t GROUP BY g",  # different key
        "SELECT k, g, COUNT(*) AS c, SUM(x) AS s FROM t GROUP BY k, g",  # more keys
        "SELECT COUNT(*) AS c, SUM(x) AS s FROM t",  # global
        "SELECT k, COUNT(*) AS c, SUM(x) AS s FROM t WHERE x > 0 GROUP BY k",  # WHERE
        "SELECT DISTINCT k FROM t",
        "SELECT k, x FROM t",  # stateless
    ],
)
def test_restore_into_a_different_query_raises(other_sql: str) -> None:
    q = vs.compile(SOURCE_SQL)
    q.process(pa.record_batch({"k": ["a", "b"], "g": [1, 2], "x": [1, 2]}))
    blob = q.snapshot()
    with pytest.raises(vs.VelostreamError):
        vs.compile(other_sql).restore(blob)


@pytest.mark.parametrize("mangle", ["empty", "garbage", "truncated", "flipped"])
def test_restore_of_a_corrupt_snapshot_raises(mangle: str) -> None:
    q = vs.compile(SOURCE_SQL)
    q.process(pa.record_batch({"k": ["a", "b"], "x": [1, 2]}))
    blob = q.snapshot()
    bad = {
        "empty": b"",
        "garbage": b"not a snapshot at all" * 4,
        "truncated": blob[: len(blob) // 2],
        "flipped": blob[:-8] + bytes(b ^ 0xFF for b in blob[-8:]),
    }[mangle]
    with pytest.raises(vs.VelostreamError):
        vs.compile(SOURCE_SQL).restore(bad)
