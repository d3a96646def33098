"""No file the application reads is ever opened for writing (issue 9: a sink on a source).

A sink whose file is a source's file (however the path is spelled), matches a source's
glob, or is the SQL file or a config file, is a ConfigError naming the sink, the reader
and the path, from building the application (so from ``validate`` and ``run``), before
any file is opened; the input is byte-identical afterwards.
"""

import json
import os

import pytest

from velostream.app import Application
from velostream.errors import ConfigError

ROWS = 20_000


def write_rows(path, rows=ROWS):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"id": i, "v": i * 0.5}) + "\n" for i in range(rows)))


def app_sql(source_path, sink_path, extra=""):
    return (
        "CREATE STREAM s AS SELECT id FROM t\n"
        f"WITH ('t.type' = 'file_source', 't.path' = '{source_path}',\n"
        f"      's.type' = 'file_sink', 's.path' = '{sink_path}'{extra});\n"
    )


def snapshot(directory):
    return {
        p.relative_to(directory): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


@pytest.fixture
def data_dir(tmp_path):
    write_rows(tmp_path / "data" / "in.jsonl")
    return tmp_path


@pytest.mark.parametrize(
    ("source", "sink"),
    [
        ("data/in.jsonl", "data/in.jsonl"),
        ("data/in.jsonl", "./data/in.jsonl"),
        ("./data/in.jsonl", "data//in.jsonl"),
        ("data/in.jsonl", "data/../data/in.jsonl"),
        ("data/in.jsonl", "{dir}/data/in.jsonl"),
        ("{dir}/data/in.jsonl", "data/in.jsonl"),
        ("data/*.jsonl", "data/in.jsonl"),
        ("data/*.jsonl", "data/not_there_yet.jsonl"),
        ("data/i?.jsonl", "data/in.jsonl"),
        ("data/[a-j]n.jsonl", "data/in.jsonl"),
        ("*/in.jsonl", "data/in.jsonl"),
    ],
)
def test_a_sink_on_a_source_is_refused_before_anything_is_opened(data_dir, source, sink):
    sql = app_sql(source.format(dir=data_dir), sink.format(dir=data_dir))
    (data_dir / "app.sql").write_text(sql)
    before = snapshot(data_dir)
    with pytest.raises(ConfigError) as info:
        Application.from_file(data_dir / "app.sql").run()
    error = info.value
    assert error.key == "s.path"
    assert "sink 's'" in str(error) and "source 't'" in str(error)
    assert str(data_dir / "data") in str(error)
    assert (error.line, error.column) == (3, 31)  # the 's.path' key
    assert snapshot(data_dir) == before


def test_the_run_of_today_would_have_truncated_the_input(data_dir):
    # The sink is refused before any byte is written: the 20 000 rows stay.
    source = data_dir / "data" / "in.jsonl"
    before = source.read_bytes()
    with pytest.raises(ConfigError):
        Application.from_sql(app_sql(source, source), base_dir=data_dir).run()
    assert source.read_bytes() == before
    assert len(before.splitlines()) == ROWS


def test_a_sink_through_a_symbolic_link_is_refused(data_dir):
    os.symlink(data_dir / "data" / "in.jsonl", data_dir / "alias.jsonl")
    before = snapshot(data_dir)
    with pytest.raises(ConfigError) as info:
        Application.from_sql(app_sql("data/in.jsonl", "alias.jsonl"), base_dir=data_dir).run()
    assert "a link to" in str(info.value)
    assert snapshot(data_dir) == before


def test_a_source_through_a_linked_directory_is_refused(data_dir):
    os.symlink(data_dir / "data", data_dir / "linked")
    before = snapshot(data_dir)
    for source in ("linked/in.jsonl", "linked/*.jsonl"):
        with pytest.raises(ConfigError):
            Application.from_sql(app_sql(source, "data/in.jsonl"), base_dir=data_dir)
    assert snapshot(data_dir) == before


def test_a_sink_on_a_hard_link_of_the_source_is_refused(data_dir):
    os.link(data_dir / "data" / "in.jsonl", data_dir / "hard.jsonl")
    before = snapshot(data_dir)
    with pytest.raises(ConfigError):
        Application.from_sql(app_sql("data/in.jsonl", "hard.jsonl"), base_dir=data_dir).run()
    assert snapshot(data_dir) == before


def test_a_sink_of_one_statement_on_the_source_of_another_is_refused(data_dir):
    sql = (
        "CREATE STREAM a AS SELECT id FROM t WITH ('t.type' = 'file_source', "
        "'t.path' = 'data/in.jsonl', 'a.type' = 'file_sink', 'a.path' = 'out/a.jsonl');\n"
        "CREATE STREAM b AS SELECT id FROM u WITH ('u.type' = 'file_source', "
        "'u.path' = 'other.jsonl', 'b.type' = 'file_sink', 'b.path' = 'data/in.jsonl');\n"
    )
    write_rows(data_dir / "other.jsonl", 10)
    before = snapshot(data_dir)
    with pytest.raises(ConfigError) as info:
        Application.from_sql(sql, base_dir=data_dir).run()
    message = str(info.value)
    assert "sink 'b' of 'b'" in message and "source 't' of 'a'" in message
    assert str(data_dir / "data" / "in.jsonl") in message
    assert (info.value.line, info.value.column) == (2, 119)
    assert snapshot(data_dir) == before
    assert not (data_dir / "out").exists()


def test_a_set_override_onto_a_source_is_refused(data_dir):
    (data_dir / "app.sql").write_text(app_sql("data/in.jsonl", "out.jsonl"))
    before = snapshot(data_dir)
    with pytest.raises(ConfigError) as info:
        Application.from_file(
            data_dir / "app.sql", properties={"s.path": str(data_dir / "data" / "in.jsonl")}
        ).run()
    assert info.value.key == "s.path"
    assert snapshot(data_dir) == before


@pytest.mark.parametrize("key", ["dead_letter.path", "dead.path"])
def test_a_dead_letter_file_on_a_source_is_refused(data_dir, key):
    extra = ", 'error.strategy' = 'dead_letter'"
    if key == "dead.path":
        extra += ", 'dead_letter.sink' = 'dead', 'dead.type' = 'file_sink'"
    extra += f", '{key}' = 'data/in.jsonl'"
    before = snapshot(data_dir)
    with pytest.raises(ConfigError) as info:
        Application.from_sql(app_sql("data/in.jsonl", "out.jsonl", extra), base_dir=data_dir)
    assert info.value.key == key
    assert "dead-letter" in str(info.value)
    assert snapshot(data_dir) == before


def test_a_sink_on_the_sql_file_or_a_config_file_is_refused(data_dir):
    (data_dir / "t.yaml").write_text("type: file_source\npath: data/in.jsonl\n")
    (data_dir / "app.sql").write_text(app_sql("data/in.jsonl", "app.sql"))
    before = snapshot(data_dir)
    with pytest.raises(ConfigError) as info:
        Application.from_file(data_dir / "app.sql").run()
    assert "SQL file" in str(info.value)
    sql = (
        "CREATE STREAM s AS SELECT id FROM t WITH ('t.config_file' = 't.yaml', "
        "'s.type' = 'file_sink', 's.path' = 't.yaml');"
    )
    with pytest.raises(ConfigError) as info:
        Application.from_sql(sql, base_dir=data_dir).run()
    assert "config file of 't'" in str(info.value)
    assert snapshot(data_dir) == before


def test_a_glob_that_matches_a_sink_created_after_building_is_refused_by_run(data_dir):
    # Built while the sink's file did not match through another name; the run checks again.
    app = Application.from_sql(app_sql("data/*.jsonl", "out/x.jsonl"), base_dir=data_dir)
    (data_dir / "out").mkdir()
    os.symlink(data_dir / "out" / "x.jsonl", data_dir / "data" / "late.jsonl")
    (data_dir / "out" / "x.jsonl").write_text('{"id": 1, "v": 1.0}\n')
    before = snapshot(data_dir)
    with pytest.raises(ConfigError):
        app.validate()
    # Started in the background: without the check the run would read its own output
    # forever (filling the disk), so it is stopped if it does not fail at once.
    app.start()
    ended = app.wait(5)
    report = app.stop()
    assert ended
    assert report is not None and isinstance(report.error, ConfigError)
    assert snapshot(data_dir) == before


def test_sinks_beside_the_sources_still_run(data_dir):
    app = Application.from_sql(app_sql("data/*.jsonl", "data/out.json"), base_dir=data_dir)
    report = app.run()
    assert report.statements["s"].records_out == ROWS
    hidden = Application.from_sql(app_sql("data/*.jsonl", "data/.out.jsonl"), base_dir=data_dir)
    assert hidden.run().statements["s"].records_out == ROWS


def test_two_sinks_on_one_file_through_a_link_are_refused(data_dir):
    (data_dir / "out").mkdir()
    os.symlink(data_dir / "out", data_dir / "alias")
    sql = app_sql(
        "data/in.jsonl", "out/a.jsonl", ", 'c.type' = 'file_sink', 'c.path' = 'alias/a.jsonl'"
    )
    with pytest.raises(ConfigError, match="already writes"):
        Application.from_sql(sql, base_dir=data_dir)
