"""Batches crossing the Python/Rust boundary: cached schemas must never serve a stale one."""

import pyarrow as pa
import pytest

import velostream as vs


def test_sliced_batches_keep_their_offsets() -> None:
    batch = pa.record_batch({"a": list(range(10)), "s": [f"v{i}" for i in range(10)]})
    q = vs.compile("SELECT a, s FROM t WHERE a >= 0")
    q.process(batch)  # caches the schema
    out = q.process(batch.slice(3, 4))
    assert out.to_pydict() == {"a": [3, 4, 5, 6], "s": ["v3", "v4", "v5", "v6"]}


def test_a_changed_input_schema_is_imported_again() -> None:
    q = vs.compile("SELECT a + 1 AS b FROM t")
    assert q.process(pa.record_batch({"a": [1]})).to_pydict() == {"b": [2]}
    # Same column name, another type and an extra column: the new schema must be used.
    changed = pa.record_batch({"x": ["ignored"], "a": pa.array([41], pa.int32())})
    assert q.process(changed).to_pydict() == {"b": [42]}


def test_a_changed_output_type_is_an_error_not_a_silent_cast() -> None:
    q = vs.compile("SELECT a FROM t")
    q.process(pa.record_batch({"a": [1]}))
    with pytest.raises(vs.SqlValidationError):
        q.process(pa.record_batch({"a": ["text"]}))


def test_any_arrow_exporter_is_accepted() -> None:
    class Exporter:
        def __init__(self, batch: pa.RecordBatch) -> None:
            self.batch = batch

        def __arrow_c_array__(self, requested_schema=None):
            return self.batch.__arrow_c_array__(requested_schema)

    q = vs.compile("SELECT a * 2 AS b FROM t")
    assert q.process(Exporter(pa.record_batch({"a": [1, 2]}))).to_pydict() == {"b": [2, 4]}


def test_schemas_shared_between_queries_are_never_confused() -> None:
    """New queries reuse schemas other queries converted (a process-wide cache of 16).

    Same column names with other types, and more schemas than the cache holds, must each
    get their own types, on both sides of the boundary, whatever order they come in.
    """
    types = [pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.float32(), pa.float64()]
    schemas = [(t, width) for t in types for width in (1, 2, 3)]  # 18 > 16 cached
    for _ in range(2):
        for t, width in schemas:
            columns = {f"c{i}": pa.array([i + 1], t) for i in range(width)}
            q = vs.compile(f"SELECT c0 * 2 AS d, c{width - 1} AS last FROM t")
            out = q.process(pa.record_batch(columns))
            assert out.schema.field("last").type == t
            assert out.column("last").to_pylist() == [width]
            assert out.column("d").to_pylist() == [2]
            assert q.flush().schema == out.schema


def test_calls_that_emit_nothing_return_empty_batches_of_the_output_schema() -> None:
    """An empty result is made once per output schema and returned again (it is immutable)."""
    q = vs.compile("SELECT a, s FROM t WHERE a > 100")
    batch = pa.record_batch({"a": [1, 2], "s": ["x", "y"]})
    expected = pa.schema([("a", pa.int64()), ("s", pa.string())])
    first = q.process(batch)
    assert (first.num_rows, first.schema) == (0, expected)
    assert q.process(batch).equals(first)
    # A new query with this output schema returns the empty batch made before; one
    # with another output schema does not.
    assert vs.compile("SELECT a, s FROM t WHERE a > 100").process(batch) is first
    swapped = vs.compile("SELECT s, a FROM t WHERE a > 100").process(batch)
    assert (swapped.num_rows, swapped.schema.names) == (0, ["s", "a"])
    assert q.process(pa.record_batch({"a": [101], "s": ["z"]})).to_pydict() == {
        "a": [101],
        "s": ["z"],
    }
    assert (q.process(batch).num_rows, q.flush().schema, q.flush().num_rows) == (0, expected, 0)
    # A query over other input types has another output schema, and its own empty batch.
    other = vs.compile("SELECT a, s FROM t WHERE a > 100")
    narrow = pa.record_batch({"a": pa.array([1], pa.int16()), "s": ["x"]})
    assert other.process(narrow).schema.field("a").type == pa.int16()
    assert other.flush().schema.field("a").type == pa.int16()
    assert q.flush().schema == expected
