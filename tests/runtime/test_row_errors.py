"""A computation that fails for some rows follows the statement's error strategy."""

from __future__ import annotations

import json

import pytest

import velostream as vs
from velostream.errors import DataError

ROWS = [{"a": 6, "s": "2"}, {"a": 1, "s": "x"}, {"a": 9, "s": "3"}, {"a": 5, "s": "y"}]


def app(
    tmp_path,
    strategy: str,
    select: str = "a, CAST(s AS INT) AS r",
    extra: str = "",
    tail: str = "",
):
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    sql = f"""
    CREATE STREAM q AS SELECT {select} FROM t {tail}
    WITH ('t.type' = 'file_source', 't.path' = 'in.jsonl', 'error.strategy' = '{strategy}'{extra},
          'q.type' = 'file_sink', 'q.path' = 'out.jsonl');
    """
    return vs.Application.from_sql(sql, base_dir=tmp_path)


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_under_fail_the_first_failing_row_fails_the_run(tmp_path) -> None:
    with pytest.raises(DataError, match="'x' cannot be converted"):
        app(tmp_path, "fail").run()


def test_log_and_continue_skips_and_counts_the_rows_a_cast_fails_on(tmp_path, caplog) -> None:
    report = app(tmp_path, "log_and_continue").run()
    assert lines(tmp_path / "out.jsonl") == [{"a": 6, "r": 2}, {"a": 9, "r": 3}]
    assert report.statements["q"].errors == 2
    logged = [r.getMessage() for r in caplog.records if "bad record skipped" in r.getMessage()]
    assert [m.split(": bad record")[0] for m in logged] == [
        f"{tmp_path / 'in.jsonl'}:2",
        f"{tmp_path / 'in.jsonl'}:4",
    ]


def test_dead_letter_gets_each_failing_row_with_its_line_and_reason(tmp_path) -> None:
    report = app(tmp_path, "dead_letter", extra=", 'dead_letter.path' = 'dlq.jsonl'").run()
    assert lines(tmp_path / "out.jsonl") == [{"a": 6, "r": 2}, {"a": 9, "r": 3}]
    assert report.statements["q"].errors == 2
    letters = lines(tmp_path / "dlq.jsonl")
    assert [d["location"] for d in letters] == [
        f"{tmp_path / 'in.jsonl'}:2",
        f"{tmp_path / 'in.jsonl'}:4",
    ]
    assert [json.loads(d["raw"]) for d in letters] == [ROWS[1], ROWS[3]]
    assert all("cannot be converted" in d["reason"] for d in letters)


def test_a_stateful_query_cannot_skip_a_failing_row_and_says_why(tmp_path) -> None:
    stateful = app(
        tmp_path, "log_and_continue", select="a, SUM(CAST(s AS INT)) AS total", tail="GROUP BY a"
    )
    with pytest.raises(DataError, match="keeps state") as info:
        stateful.run()
    assert "'x' cannot be converted" in str(info.value)


TIMED = [{"k": "a", "ts": 1000}, {"k": "a", "ts": "yesterday"}, {"k": "b", "ts": 2500}]


def timed_app(tmp_path, strategy: str, extra: str = ""):
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in TIMED))
    sql = f"""
    CREATE STREAM c AS SELECT k, COUNT(*) AS n FROM t GROUP BY k WINDOW TUMBLING(1s)
    WITH ('t.type' = 'file_source', 't.path' = 't.jsonl',
          'event.time.field' = 'ts', 'error.strategy' = '{strategy}'{extra},
          'c.type' = 'file_sink', 'c.path' = 'c.jsonl');
    """
    return vs.Application.from_sql(sql, base_dir=tmp_path)


def test_an_unreadable_event_time_follows_log_and_continue(tmp_path, caplog) -> None:
    report = timed_app(tmp_path, "log_and_continue").run()
    assert sorted((r["k"], r["n"]) for r in lines(tmp_path / "c.jsonl")) == [("a", 1), ("b", 1)]
    assert report.statements["c"].errors == 1
    assert any("yesterday" in r.getMessage() for r in caplog.records)


def test_an_unreadable_event_time_follows_dead_letter(tmp_path) -> None:
    report = timed_app(tmp_path, "dead_letter", ", 'dead_letter.path' = 'dlq.jsonl'").run()
    assert report.statements["c"].dead_letters == 1
    (letter,) = lines(tmp_path / "dlq.jsonl")
    assert json.loads(letter["raw"])["ts"] == "yesterday"
    assert "ts" in letter["reason"]


def test_an_unreadable_event_time_still_fails_under_fail(tmp_path) -> None:
    from velostream.errors import EventTimeError

    with pytest.raises(EventTimeError, match="yesterday"):
        timed_app(tmp_path, "fail").run()
