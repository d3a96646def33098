"""Windowed statements in applications: event time from a file source's field, windows
written as they close, late records counted or sent to the dead letters."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import velostream as vs

# Clicks per user, with event time in `ts` (epoch millis); the 4th is 70 ms late, the 6th
# has no readable time.
CLICKS = [
    {"user": "a", "ts": 1_000},
    {"user": "b", "ts": 1_020},
    {"user": "a", "ts": 1_130},
    {"user": "a", "ts": 1_060},
    {"user": "b", "ts": 1_250},
    {"user": "c", "ts": "yesterday"},
    {"user": "a", "ts": 1_410},
]

APP = """
CREATE STREAM clicks (user STRING, ts STRING)
WITH ('clicks.type' = 'file_source', 'clicks.path' = 'clicks.jsonl', 'clicks.format' = 'json');

CREATE STREAM per_100ms AS
SELECT user, _window_start AS start, COUNT(*) AS clicks
FROM clicks
GROUP BY user
WINDOW TUMBLING(100ms)
WITH (
    'event.time.field' = 'ts',
    'event.time.error' = 'dead_letter',
    'late.data.strategy' = '{late}',
    'dead_letter.path' = 'dead.jsonl',
    'per_100ms.type' = 'file_sink',
    'per_100ms.path' = 'out.jsonl'
);
"""


def write_app(tmp_path, late: str) -> None:
    (tmp_path / "clicks.jsonl").write_text("".join(json.dumps(c) + "\n" for c in CLICKS))
    (tmp_path / "app.sql").write_text(APP.replace("{late}", late))


def rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_windowed_statement_runs_on_event_time_and_sends_dead_letters(tmp_path) -> None:
    write_app(tmp_path, "dead_letter")
    report = vs.Application.from_file(tmp_path / "app.sql").run(until_end=True)
    # Windows in end order, then user; the late click (ts 1060 after 1130 closed
    # [1000, 1100)) and the unreadable one are not in them.
    assert rows(tmp_path / "out.jsonl") == [
        {"user": "a", "start": 1000, "clicks": 1},
        {"user": "b", "start": 1000, "clicks": 1},
        {"user": "a", "start": 1100, "clicks": 1},
        {"user": "b", "start": 1200, "clicks": 1},
        {"user": "a", "start": 1400, "clicks": 1},
    ]
    dead = rows(tmp_path / "dead.jsonl")
    assert [json.loads(d["raw"]) for d in dead] == [
        {"user": "c", "ts": "yesterday"},
        {"user": "a", "ts": "1060"},
    ]
    assert "event time" in dead[0]["reason"] and "'ts'" in dead[0]["reason"]
    assert "late record" in dead[1]["reason"]
    assert all(d["source"] == "per_100ms" for d in dead)
    statement = report.statements["per_100ms"]
    assert (statement.records_in, statement.dead_lettered, statement.late_dropped) == (7, 2, 0)
    assert "2 records sent to the dead letters by their query" in report.summary()


def test_late_records_dropped_by_an_application_are_counted_in_its_report(tmp_path) -> None:
    write_app(tmp_path, "drop")
    report = vs.Application.from_file(tmp_path / "app.sql").run(until_end=True)
    assert report.statements["per_100ms"].late_dropped == 1
    assert "1 late records dropped" in report.summary()
    assert len(rows(tmp_path / "out.jsonl")) == 5


def test_dead_letters_without_a_destination_are_a_config_error(tmp_path) -> None:
    write_app(tmp_path, "dead_letter")
    text = (tmp_path / "app.sql").read_text().replace("'dead_letter.path' = 'dead.jsonl',", "")
    with pytest.raises(vs.ConfigError, match="needs a destination") as info:
        vs.Application.from_sql(text, base_dir=tmp_path).validate()
    assert info.value.key == "event.time.error"


def test_explain_shows_the_window_and_the_time_settings(tmp_path) -> None:
    write_app(tmp_path, "drop")
    out = subprocess.run(
        [sys.executable, "-m", "velostream", "explain", str(tmp_path / "app.sql")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "window TUMBLING(100ms)" in out
    assert "time: event time from ts (auto-detect), watermark = max event time - 0ms" in out
    assert "late data: drop" in out


def test_an_unreadable_event_time_names_its_file_and_line(tmp_path) -> None:
    write_app(tmp_path, "drop")
    text = (tmp_path / "app.sql").read_text().replace("'dead_letter'", "'fail'")
    # A blank line and a bad record before it: lines are counted as in the file.
    data = (tmp_path / "clicks.jsonl").read_text().splitlines()
    data.insert(1, "")
    data.insert(2, "not json")
    (tmp_path / "clicks.jsonl").write_text("\n".join(data) + "\n")
    text = text.replace(
        "'dead_letter.path'", "'error.strategy' = 'log_and_continue', 'dead_letter.path'"
    )
    with pytest.raises(vs.EventTimeError) as info:
        vs.Application.from_sql(text, base_dir=tmp_path).run(until_end=True)
    assert str(info.value).startswith(f"{tmp_path / 'clicks.jsonl'}:8: ")
    assert (info.value.kind, info.value.field, info.value.value) == (
        "auto_detect_failed",
        "ts",
        "yesterday",
    )
    assert info.value.available_fields == ["user", "ts"]
