"""The run report: each statement's own time (issue 9: the summary showed the total time as
every statement's time), and statements flushed as soon as their inputs end."""

import os
import threading

import pytest

from velostream.app import Application
from velostream.errors import DataError, InternalError

SQL = """
CREATE STREAM quick AS SELECT id FROM a
    WITH ('a.type' = 'file_source', 'a.path' = 'a.jsonl',
          'quick.type' = 'file_sink', 'quick.path' = 'quick.jsonl');
CREATE STREAM slow AS SELECT id FROM b
    WITH ('b.type' = 'file_source', 'b.path' = 'b.jsonl', 'b.file.wait.timeout' = '30s',
          'slow.type' = 'file_sink', 'slow.path' = 'slow.jsonl');
CREATE STREAM after_slow AS SELECT id FROM slow
    WITH ('after_slow.type' = 'file_sink', 'after_slow.path' = 'after_slow.jsonl');
"""

DELAY = 2.0


def write_later(path, text, delay):
    def write():
        temporary = path.with_suffix(".tmp")
        temporary.write_text(text)
        os.replace(temporary, path)

    timer = threading.Timer(delay, write)
    timer.start()
    return timer


def test_each_statement_has_its_own_time(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"id": 1}\n{"id": 2}\n')
    app = Application.from_sql(SQL, base_dir=tmp_path)
    timer = write_later(tmp_path / "b.jsonl", '{"id": 3}\n', DELAY)
    try:
        report = app.run()
    finally:
        timer.cancel()
    quick, slow, after = (report.statements[n] for n in ("quick", "slow", "after_slow"))
    # quick's input ended at once: it is timed to its own end, before slow's file even
    # exists (run-wide timing gave both the same figure). No bound on the machine's speed.
    assert quick.duration < slow.duration
    assert slow.duration >= DELAY * 0.9
    assert after.duration >= DELAY * 0.9  # it reads slow: it ends after slow
    assert report.duration >= slow.duration
    lines = report.summary().splitlines()
    quick_line = next(line for line in lines if line.startswith("quick"))
    slow_line = next(line for line in lines if line.startswith("slow"))
    assert quick_line.split()[-1] != slow_line.split()[-1]
    assert (tmp_path / "after_slow.jsonl").read_text() == '{"id":3}\n'


def test_a_statement_is_flushed_when_its_own_input_ends(tmp_path):
    # quick's output is complete on disk while slow still waits for its file.
    (tmp_path / "a.jsonl").write_text('{"id": 1}\n{"id": 2}\n')
    app = Application.from_sql(SQL, base_dir=tmp_path)
    seen: list[str] = []

    def write_b():
        seen.append((tmp_path / "quick.jsonl").read_text())
        (tmp_path / "b.jsonl").write_text('{"id": 3}\n')

    timer = threading.Timer(DELAY, write_b)
    timer.start()
    try:
        app.run()
    finally:
        timer.cancel()
    assert seen == ['{"id":1}\n{"id":2}\n']


def test_a_failing_statement_does_not_flush_what_reads_it(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"id": 1}\n')
    (tmp_path / "b.jsonl").write_text('{"id": 3}\n{oops\n')
    app = Application.from_sql(SQL, base_dir=tmp_path)
    with pytest.raises(DataError, match=r"b\.jsonl:2"):
        app.run()
    assert app.report is not None and isinstance(app.report.error, DataError)
    assert (tmp_path / "after_slow.jsonl").read_text() == ""


def test_an_exception_from_outside_the_hierarchy_becomes_an_internal_error(tmp_path, monkeypatch):
    (tmp_path / "a.jsonl").write_text('{"id": 1}\n')
    (tmp_path / "b.jsonl").write_text('{"id": 3}\n')
    from velostream.runtime import job

    def broken(self, batch, *args):
        raise ValueError("a defect")

    monkeypatch.setattr(job.StatementRunner, "push", broken)
    app = Application.from_sql(SQL, base_dir=tmp_path)
    with pytest.raises(InternalError, match="ValueError: a defect") as info:
        app.run()
    assert isinstance(info.value.__cause__, ValueError)
    assert app.report is not None and app.report.error is info.value
