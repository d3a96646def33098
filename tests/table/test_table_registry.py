"""The table registry: handles, statuses, snapshots, and waiting for a table to be ready."""

from __future__ import annotations

import threading
import time

import pyarrow as pa
import pytest

import velostream as vs
from velostream import _core

SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string()), ("score", pa.float64())])


def rows(ids: list[int], names: list[str], scores: list[float]) -> pa.Table:
    return pa.table([ids, names, scores], schema=SCHEMA)


def test_register_rows_keeps_last_row_per_key_and_is_ready() -> None:
    registry = vs.TableRegistry()
    handle = registry.register(
        "people", rows([1, 2, 1, 3], ["a", "b", "c", "d"], [1.0, 2.0, 3.0, 4.0]), key="id"
    )
    assert handle is registry.get("people")
    assert handle.status is vs.TableStatus.READY
    assert handle.status == "ready"
    assert handle.error is None
    assert handle.key == ("id",)
    assert handle.schema == SCHEMA
    assert isinstance(handle.keyed, _core.KeyedTable)
    assert handle.row_count == 3
    assert handle.bytes > 0
    assert handle.snapshot().to_pydict() == {
        "id": [1, 2, 3],
        "name": ["c", "b", "d"],
        "score": [3.0, 2.0, 4.0],
    }
    found_rows, found = handle.keyed.lookup(pa.record_batch({"k": pa.array([3, 9], pa.int64())}))
    assert found.to_pylist() == [True, False]
    assert found_rows.column("name").to_pylist() == ["d", None]
    assert handle.progress.as_dict()["records"] == 4
    assert handle.progress.as_dict()["percent"] == 100.0


def test_register_record_batch_with_composite_key() -> None:
    registry = vs.TableRegistry()
    batch = pa.record_batch({"region": ["eu", "us", "eu"], "day": [1, 1, 1], "v": [1, 2, 3]})
    handle = registry.register("t", batch, key=["region", "day"])
    assert handle.key == ("region", "day")
    assert handle.snapshot().to_pydict() == {"region": ["eu", "us"], "day": [1, 1], "v": [3, 2]}


def test_register_twice_drop_get_names() -> None:
    registry = vs.TableRegistry()
    registry.register("b", rows([1], ["x"], [1.0]), key="id")
    registry.register("a", rows([], [], []), key="id")
    with pytest.raises(vs.ConfigError) as info:
        registry.register("a", rows([2], ["y"], [2.0]), key="id")
    assert info.value.value == "a"
    assert "already registered" in str(info.value)
    assert registry.names() == ["a", "b"]
    assert "a" in registry and len(registry) == 2
    empty = registry.get("a")
    assert empty is not None
    assert empty.snapshot().num_rows == 0
    assert empty.snapshot().schema == SCHEMA
    dropped = registry.drop("a")
    assert dropped is empty
    assert registry.get("a") is None
    assert registry.names() == ["b"]
    with pytest.raises(vs.ConfigError):
        registry.drop("a")


def test_register_needs_a_key_that_exists() -> None:
    registry = vs.TableRegistry()
    with pytest.raises(vs.SqlValidationError, match="needs a key"):
        registry.register("t", rows([1], ["a"], [1.0]))
    with pytest.raises(vs.SqlValidationError, match="'nope'"):
        registry.register("t", rows([1], ["a"], [1.0]), key="nope")
    assert registry.names() == []


def test_register_a_handle_and_fill_it() -> None:
    registry = vs.TableRegistry()
    handle = vs.TableHandle("t", "id", source="test rows")
    assert handle.status is vs.TableStatus.LOADING
    assert handle.schema is None and handle.keyed is None
    assert handle.snapshot().num_columns == 0
    assert handle.row_count == 0 and handle.bytes == 0
    assert registry.register("t", handle) is handle
    with pytest.raises(vs.ConfigError):
        registry.register("u", vs.TableHandle("t", "id"))
    assert handle.upsert(rows([1, 1], ["a", "b"], [1.0, 2.0]).to_batches()[0]) == 2
    assert handle.schema == SCHEMA
    assert handle.row_count == 1
    with pytest.raises(vs.SqlValidationError, match="'id'"):
        vs.TableHandle("u", "id").upsert(pa.record_batch({"other": [1]}))
    assert handle.mark_ready()
    assert handle.source == "test rows"
    handle.mark_failed(vs.SourceError("gone"))
    assert handle.status is vs.TableStatus.FAILED
    assert not handle.mark_ready()  # a failed table stays failed


def test_create_is_loading_until_marked() -> None:
    registry = vs.TableRegistry()
    handle = registry.create("t", key=("id",), source="file x")
    assert handle.status is vs.TableStatus.LOADING
    assert handle.source == "file x"
    with pytest.raises(vs.ConfigError):
        registry.create("t", key="id")
    with pytest.raises(vs.SqlValidationError):
        registry.create("u", key=())
    assert handle.wait_ready(0.01) is False
    handle.mark_ready()
    assert handle.wait_ready(0.01) is True


def test_wait_for_a_table_registered_later_by_another_thread() -> None:
    registry = vs.TableRegistry()

    def later() -> None:
        time.sleep(0.1)
        handle = registry.create("late", key="id")
        time.sleep(0.1)
        handle.upsert(rows([1], ["a"], [1.0]).to_batches()[0])
        handle.mark_ready()

    thread = threading.Thread(target=later)
    started = time.monotonic()
    thread.start()
    handle = registry.wait_for_table_ready("late", timeout=10.0)
    waited = time.monotonic() - started
    thread.join()
    assert handle.status is vs.TableStatus.READY
    assert handle.row_count == 1
    assert 0.15 <= waited < 5.0


def test_wait_for_a_table_never_registered_times_out_unknown() -> None:
    registry = vs.TableRegistry()
    started = time.monotonic()
    with pytest.raises(vs.TableNotReadyError) as info:
        registry.wait_for_table_ready("ghost", timeout=0.2)
    assert time.monotonic() - started >= 0.2
    assert info.value.table == "ghost"
    assert info.value.status == "unknown"
    assert info.value.timeout == 0.2


def test_wait_for_a_loading_table_times_out_loading() -> None:
    registry = vs.TableRegistry()
    registry.create("slow", key="id")
    with pytest.raises(vs.TableNotReadyError) as info:
        registry.wait_for_table_ready("slow", timeout=0.05)
    assert info.value.status == "loading"


def test_wait_for_a_failed_table_raises_at_once_with_the_cause() -> None:
    registry = vs.TableRegistry()
    handle = registry.create("bad", key="id")
    cause = vs.SourceError("file not found: x.jsonl", source="src")

    def fail_soon() -> None:
        time.sleep(0.05)
        handle.mark_failed(cause)

    thread = threading.Thread(target=fail_soon)
    thread.start()
    started = time.monotonic()
    with pytest.raises(vs.TableNotReadyError) as info:
        registry.wait_for_table_ready("bad", timeout=30.0)
    thread.join()
    assert time.monotonic() - started < 5.0
    assert info.value.status == "failed"
    assert info.value.__cause__ is cause
    assert handle.error is cause
    with pytest.raises(vs.TableNotReadyError) as again:
        handle.wait_ready(1.0)
    assert again.value.status == "failed"


def test_wait_rejects_a_negative_timeout() -> None:
    with pytest.raises(vs.ConfigError):
        vs.TableRegistry().wait_for_table_ready("t", timeout=-1)
