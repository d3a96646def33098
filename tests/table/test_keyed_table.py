"""The keyed table (`velostream._core.KeyedTable`): latest row per key, lookups, errors."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from decimal import Decimal

import pyarrow as pa
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import velostream as vs
from velostream import _core

SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string()), ("score", pa.float64())])


def rows(
    ids: Sequence[int], names: Sequence[str | None], scores: Sequence[float]
) -> pa.RecordBatch:
    return pa.record_batch([ids, names, scores], schema=SCHEMA)


def test_upsert_replaces_latest_row_and_snapshot_keeps_key_order() -> None:
    t = _core.KeyedTable(SCHEMA, ["id"])
    assert t.upsert(rows([1, 2, 1], ["a", "b", "c"], [1.0, 2.0, 3.0])) == 3
    assert len(t) == 2
    assert t.upsert(rows([3, 2], ["x", "B"], [30.0, 20.0])) == 2
    snap = t.snapshot()
    assert snap.schema == SCHEMA
    assert snap.to_pydict() == {
        "id": [1, 2, 3],
        "name": ["c", "B", "x"],
        "score": [3.0, 20.0, 30.0],
    }
    assert t.bytes > 0


def test_lookup_returns_rows_and_found_mask() -> None:
    t = _core.KeyedTable(SCHEMA, ["id"])
    t.upsert(rows([1, 2], ["a", "b"], [1.0, 2.0]))
    probe = pa.record_batch([pa.array([2, 7, None, 1], pa.int32())], names=["k"])
    batch, found = t.lookup(probe)
    assert found.to_pylist() == [True, False, False, True]
    assert batch.to_pydict() == {
        "id": [2, None, None, 1],
        "name": ["b", None, None, "a"],
        "score": [2.0, None, None, 1.0],
    }


def test_multi_column_keys() -> None:
    schema = pa.schema([("region", pa.string()), ("day", pa.date32()), ("v", pa.int64())])
    t = _core.KeyedTable(schema, ["region", "day"])
    day = pa.array([0, 0, 1], pa.date32())
    t.upsert(pa.record_batch([["eu", "us", "eu"], day, [1, 2, 3]], schema=schema))
    t.upsert(pa.record_batch([["us"], pa.array([0], pa.date32()), [20]], schema=schema))
    probe = pa.record_batch(
        [pa.array(["us", "eu", "us"]), pa.array([0, 1, 1], pa.date32())], names=["r", "d"]
    )
    batch, found = t.lookup(probe)
    assert batch.column("v").to_pylist() == [20, 3, None]
    assert found.to_pylist() == [True, True, False]


def test_decimal_and_bool_keys() -> None:
    schema = pa.schema([("k", pa.decimal128(10, 2)), ("b", pa.bool_()), ("v", pa.int64())])
    t = _core.KeyedTable(schema, ["k", "b"])
    keys = pa.array([Decimal("1.50"), Decimal("1.50")], pa.decimal128(10, 2))
    t.upsert(pa.record_batch([keys, [True, False], [1, 2]], schema=schema))
    assert len(t) == 2
    probe = pa.record_batch([keys, pa.array([False, False])], names=["k", "b"])
    batch, _ = t.lookup(probe)
    assert batch.column("v").to_pylist() == [2, 2]


def test_null_key_is_kept_and_never_found() -> None:
    t = _core.KeyedTable(SCHEMA, ["id"])
    t.upsert(pa.record_batch([[5, None, None], ["a", "b", "c"], [1.0, 2.0, 3.0]], schema=SCHEMA))
    assert len(t) == 2  # the NULL key is one key (a GROUP BY's NULL group); last row wins
    assert t.snapshot().column(1).to_pylist() == ["a", "c"]
    _, found = t.lookup(pa.record_batch({"id": pa.array([None, 5], pa.int64())}))
    assert found.to_pylist() == [False, True]  # a NULL probe equals nothing


def test_validation_errors_name_the_column() -> None:
    with pytest.raises(vs.SqlValidationError, match="`nope`"):
        _core.KeyedTable(SCHEMA, ["nope"])
    with pytest.raises(vs.SqlValidationError, match="`score`"):
        _core.KeyedTable(SCHEMA, ["score"])
    with pytest.raises(vs.SqlValidationError, match="needs a key"):
        _core.KeyedTable(SCHEMA, [])
    t = _core.KeyedTable(SCHEMA, ["id"])
    with pytest.raises(vs.SqlValidationError, match="`id`"):
        t.lookup(pa.record_batch([pa.array(["1"])], names=["k"]))
    with pytest.raises(vs.SqlValidationError, match="1 key column"):
        t.lookup(pa.record_batch([pa.array([1]), pa.array([2])], names=["a", "b"]))
    other = pa.record_batch([pa.array([1], pa.int32())], names=["id"])
    with pytest.raises(vs.SqlValidationError, match="cannot go into a table"):
        t.upsert(other)


def test_repeated_updates_keep_memory_bounded() -> None:
    t = _core.KeyedTable(SCHEMA, ["id"])
    ids = list(range(2000))
    names = [f"name-{i}" for i in ids]
    t.upsert(rows(ids, names, [0.0] * 2000))
    one_copy = t.bytes
    for round_ in range(1, 100):
        t.upsert(rows(ids, names, [float(round_)] * 2000))
        assert t.bytes < 4 * one_copy
    assert set(t.snapshot().column("score").to_pylist()) == {99.0}


def test_concurrent_lookups_while_upserting() -> None:
    t = _core.KeyedTable(SCHEMA, ["id"])
    t.upsert(rows(list(range(1000)), ["v"] * 1000, [0.0] * 1000))
    probe = pa.record_batch([pa.array(list(range(1000)))], names=["k"])
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(50):
                _, found = t.lookup(probe)
                assert all(found.to_pylist())
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for th in threads:
        th.start()
    for i in range(50):
        t.upsert(rows([i % 1000, 1000 + i], ["w", "n"], [1.0, 2.0]))
    for th in threads:
        th.join()
    assert errors == []
    assert len(t) == 1050


@settings(max_examples=60, deadline=None)
@example(batches=[[(-3, 0), (16, 0), (0, 0)]], probes=[16])  # new keys not in id order
@given(
    batches=st.lists(
        st.lists(st.tuples(st.integers(-20, 20), st.integers(-1000, 1000)), max_size=40),
        max_size=12,
    ),
    probes=st.lists(st.integers(-25, 25), max_size=30),
)
def test_matches_a_dict_oracle(batches: list[list[tuple[int, int]]], probes: list[int]) -> None:
    schema = pa.schema([("k", pa.int64()), ("v", pa.int64())])
    t = _core.KeyedTable(schema, ["k"])
    oracle: dict[int, int] = {}
    for batch in batches:
        keys = [k for k, _ in batch]
        values = [v for _, v in batch]
        assert t.upsert(pa.record_batch([keys, values], schema=schema)) == len(batch)
        oracle.update(batch)
    snap = t.snapshot().to_pydict()
    assert dict(zip(snap["k"], snap["v"], strict=True)) == oracle
    assert snap["k"] == list(oracle), "snapshot in first-insertion order of keys"
    assert len(t) == len(oracle)
    found_rows, found = t.lookup(pa.record_batch([pa.array(probes, pa.int64())], names=["p"]))
    assert found_rows.column("v").to_pylist() == [oracle.get(p) for p in probes]
    assert found.to_pylist() == [p in oracle for p in probes]
