"""UNION ALL: one query per SELECT, each over its own input, outputs together."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

import velostream as vs
from velostream.errors import ConfigError, SnapshotError, SqlValidationError


def test_each_select_reads_its_own_input_and_the_columns_are_the_first_selects() -> None:
    q = vs.compile("SELECT a, b FROM t1 WHERE a > 1 UNION ALL SELECT x, y FROM t2")
    assert q.inputs == ("t1", "t2")
    out = q.process(pa.record_batch({"a": [1, 2, 3], "b": ["p", "q", "r"]}), input="t1")
    assert out.to_pydict() == {"a": [2, 3], "b": ["q", "r"]}
    out = q.process(pa.record_batch({"x": [7], "y": ["z"]}), input="t2")
    assert out.to_pydict() == {"a": [7], "b": ["z"]}


def test_selects_reading_the_same_input_all_get_its_batch_in_select_order() -> None:
    q = vs.compile("SELECT a FROM t WHERE a < 2 UNION ALL SELECT a * 10 AS a FROM t WHERE a > 2")
    out = q.process(pa.record_batch({"a": [1, 2, 3]}))  # one input: no name needed
    assert out.to_pydict() == {"a": [1, 30]}


def test_a_batch_must_name_its_input_when_the_selects_read_several() -> None:
    q = vs.compile("SELECT a FROM t1 UNION ALL SELECT a FROM t2")
    with pytest.raises(ConfigError, match="name the one a batch belongs to") as info:
        q.process(pa.record_batch({"a": [1]}))
    assert list(info.value.allowed) == ["t1", "t2"]
    with pytest.raises(ConfigError, match="reads no input 't3'"):
        q.process(pa.record_batch({"a": [1]}), input="t3")


def test_selects_of_different_types_are_refused_naming_the_select() -> None:
    q = vs.compile("SELECT a FROM t1\nUNION ALL SELECT a FROM t2")
    q.process(pa.record_batch({"a": [1]}), input="t1")
    with pytest.raises(SqlValidationError, match="SELECT 2 of the UNION ALL gives") as info:
        q.process(pa.record_batch({"a": ["x"]}), input="t2")
    assert info.value.line == 2


def test_windowed_selects_each_aggregate_their_input_and_flush_together() -> None:
    q = vs.compile(
        "SELECT k, COUNT(*) AS c FROM t1 GROUP BY k UNION ALL "
        "SELECT k, COUNT(*) AS c FROM t2 GROUP BY k WINDOW TUMBLING(1s)",
        properties={"event.time.field": "ts"},
    )
    q.process(pa.record_batch({"k": ["a"], "ts": [100]}), input="t1")
    q.process(pa.record_batch({"k": ["a", "b"], "ts": [200, 300]}), input="t2")
    assert q.take_progress() == (300, 0)
    assert q.flush().to_pydict() == {"k": ["a", "a", "b"], "c": [1, 1, 1]}


def test_a_snapshot_restores_every_select_and_a_foreign_one_is_refused() -> None:
    sql = "SELECT k, COUNT(*) AS c FROM t1 GROUP BY k UNION ALL SELECT k, COUNT(*) AS c FROM t2 GROUP BY k"
    q = vs.compile(sql)
    q.process(pa.record_batch({"k": ["a", "a"]}), input="t1")
    q.process(pa.record_batch({"k": ["b"]}), input="t2")
    restored = vs.compile(sql).restore(q.snapshot())
    assert restored.process(pa.record_batch({"k": ["a"]}), input="t1").to_pydict() == {
        "k": ["a"],
        "c": [3],
    }
    with pytest.raises(SnapshotError):
        vs.compile(sql).restore(q.snapshot()[:-3])


def test_an_application_reads_a_union_of_two_sources_into_one_sink(tmp_path) -> None:
    (tmp_path / "a.jsonl").write_text('{"id": 1}\n{"id": 2}\n')
    (tmp_path / "b.jsonl").write_text('{"n": 10}\n')
    sql = """
    CREATE STREAM both_ AS SELECT id FROM a UNION ALL SELECT n AS id FROM b
    WITH ('a.type' = 'file_source', 'a.path' = 'a.jsonl',
          'b.type' = 'file_source', 'b.path' = 'b.jsonl',
          'both_.type' = 'file_sink', 'both_.path' = 'out.jsonl');
    """
    app = vs.Application.from_sql(sql, base_dir=tmp_path)
    assert app.validate()["both_"] == pa.schema([("id", pa.int64())])
    report = app.run()
    assert report.statements["both_"].records_in == 3
    got = sorted(
        json.loads(line)["id"] for line in (tmp_path / "out.jsonl").read_text().splitlines()
    )
    assert got == [1, 2, 10]
