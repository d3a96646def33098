"""The command never prints a Python traceback, and never changes an input (issue 9).

SQL files in other encodings, with byte-order marks, binary, empty, a directory; a closed
standard output; Ctrl-C; a defect inside velostream; ``validate`` making the checks
``run`` makes. Most tests call :func:`velostream.cli.main` in-process; a closed pipe and
Ctrl-C need a real process.
"""

import codecs
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from velostream.cli import main

APP = (
    "CREATE STREAM s AS\n"
    "SELECT symbol, price * 2 AS p2 -- café\n"
    "FROM t\n"
    "WITH ('t.type' = 'file_source', 't.path' = 't.jsonl',\n"
    "      's.type' = 'file_sink', 's.path' = 'out.jsonl');\n"
)
DATA = '{"symbol": "A", "price": 1.5}\n{"symbol": "B", "price": 2.0}\n'


def snapshot(directory):
    return {
        p.relative_to(directory): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "t.jsonl").write_text(DATA)
    return tmp_path


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


@pytest.mark.parametrize(
    "encoding", ["utf-8-sig", "utf-16", "utf-16-le-bom", "utf-16-be-bom", "utf-32", "utf-32-be-bom"]
)
def test_a_sql_file_with_a_byte_order_mark_runs(folder, capsys, encoding):
    if encoding.endswith("-bom"):
        name = encoding.removesuffix("-bom")
        bom = codecs.BOM_UTF16_LE if name == "utf-16-le" else codecs.BOM_UTF16_BE
        bom = codecs.BOM_UTF32_BE if name == "utf-32-be" else bom
        data = bom + APP.encode(name)
    else:
        data = APP.encode(encoding)
    (folder / "app.sql").write_bytes(data)
    for command in ("validate", "explain"):
        code, _, err = cli(capsys, command, folder / "app.sql")
        assert code == 0, err
    code, _, err = cli(capsys, "run", folder / "app.sql", "--until-end")
    assert code == 0, err
    assert (
        folder / "out.jsonl"
    ).read_text() == '{"symbol":"A","p2":3.0}\n{"symbol":"B","p2":4.0}\n'
    assert (folder / "app.sql").read_bytes() == data


@pytest.mark.parametrize("command", ["validate", "explain", "run"])
def test_utf16_without_a_byte_order_mark_names_the_first_nul(folder, capsys, command):
    app = folder / "app.sql"
    app.write_bytes(APP.encode("utf-16-le"))
    code, _, err = cli(capsys, command, app)
    assert code == 2
    assert f"{app}:1:2:" in err
    assert "byte offset 1" in err and "UTF-16 without a byte-order mark" in err
    assert len(err.strip().splitlines()) == 1


def test_latin1_names_the_byte_its_offset_line_and_column(folder, capsys):
    app = folder / "app.sql"
    data = APP.encode("latin-1")
    app.write_bytes(data)
    code, _, err = cli(capsys, "validate", app)
    assert code == 2
    offset = data.index(b"\xe9")
    assert f"{app}:2:38:" in err
    assert f"byte 0xe9 at byte offset {offset}" in err and "UTF-8" in err


def test_binary_garbage_is_reported_not_raised(folder, capsys):
    app = folder / "app.sql"
    app.write_bytes(bytes(range(256)) * 4)
    code, _, err = cli(capsys, "run", app, "--until-end")
    assert code == 2
    assert "NUL character at byte offset 0" in err


def test_a_truncated_utf16_file_is_reported(folder, capsys):
    app = folder / "app.sql"
    app.write_bytes(APP.encode("utf-16")[:-1])
    code, _, err = cli(capsys, "validate", app)
    assert code == 2
    assert "not valid UTF-16" in err and "byte offset" in err


@pytest.mark.parametrize("content", [b"", b"   \n-- nothing\n", b"\xef\xbb\xbf"])
def test_an_empty_file_is_reported(folder, capsys, content):
    app = folder / "app.sql"
    app.write_bytes(content)
    code, _, err = cli(capsys, "validate", app)
    assert code == 2
    assert "no statement" in err


def test_a_directory_is_reported(folder, capsys):
    code, _, err = cli(capsys, "validate", folder)
    assert code == 2
    assert "directory" in err and str(folder) in err


def test_bad_arguments_return_2_instead_of_raising(capsys):
    code, _, err = cli(capsys, "validate")
    assert code == 2 and "usage" in err
    code, out, _ = cli(capsys, "--help")
    assert code == 0 and "usage" in out


# ---------------------------------------------------------------- validate = run's checks


def test_validate_reports_an_unknown_column_as_run_does(folder, capsys):
    app = folder / "app.sql"
    app.write_text(APP.replace("price * 2", "prise * 2"))
    code, _, err = cli(capsys, "validate", app)
    assert code == 2
    assert f"{app}:2:16: SqlValidationError: unknown column 'prise'" in err
    code, _, run_err = cli(capsys, "run", app, "--until-end")
    assert code == 2 and run_err == err


def test_validate_reports_a_missing_input_file_as_run_does(folder, capsys):
    app = folder / "app.sql"
    app.write_text(APP)
    (folder / "t.jsonl").unlink()
    code, _, err = cli(capsys, "validate", app)
    assert code == 1
    assert str(folder / "t.jsonl") in err and "SourceError" in err
    code, _, run_err = cli(capsys, "run", app, "--until-end")
    assert code == 1 and run_err == err


def test_validate_reports_a_sink_on_a_source(folder, capsys):
    app = folder / "app.sql"
    app.write_text(APP.replace("'out.jsonl'", "'./t.jsonl'"))
    before = snapshot(folder)
    for command in ("validate", "run"):
        code, _, err = (
            cli(capsys, command, app, "--until-end")
            if command == "run"
            else cli(capsys, command, app)
        )
        assert code == 2
        assert f"{app}:5:31: ConfigError: sink 's' of 's' would write {folder / 't.jsonl'}" in err
        assert "source 't'" in err
    assert snapshot(folder) == before


# ---------------------------------------------------------------- signals, pipes, defects


def test_a_defect_is_one_line_naming_it(folder, capsys, monkeypatch):
    from velostream.app import Application

    def broken(self, verbose=False):
        raise KeyError("plan")

    monkeypatch.setattr(Application, "explain", broken)
    (folder / "app.sql").write_text(APP)
    monkeypatch.delenv("VELOSTREAM_DEBUG", raising=False)
    code, _, err = cli(capsys, "explain", folder / "app.sql")
    assert code == 1
    assert err.startswith("velostream: internal error: KeyError: 'plan'")
    assert len(err.strip().splitlines()) == 1
    monkeypatch.setenv("VELOSTREAM_DEBUG", "1")
    code = main(["explain", str(folder / "app.sql")])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" in err and "KeyError" in err


def test_ctrl_c_in_process_exits_130(folder, capsys, monkeypatch):
    from velostream.app import Application

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(Application, "validate", interrupted)
    (folder / "app.sql").write_text(APP)
    code, _, err = cli(capsys, "validate", folder / "app.sql")
    assert code == 130 and err == "velostream: interrupted\n"


def test_a_closed_stdout_in_process_is_quiet(folder, capsys, monkeypatch):
    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

    (folder / "app.sql").write_text(APP)
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    code = main(["explain", str(folder / "app.sql")])
    assert code == 1
    assert capsys.readouterr().err == ""


def velostream_process(*args, cwd, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "velostream", *map(str, args)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,
    )


def test_explain_into_a_closed_pipe_prints_no_traceback(folder):
    (folder / "app.sql").write_text(APP)
    process = velostream_process("explain", "--verbose", folder / "app.sql", cwd=folder)
    process.stdout.close()  # the reader is gone before anything is written (`| head -0`)
    _, err = process.communicate(timeout=120)
    assert err.decode() == ""
    assert process.returncode == 1


def test_ctrl_c_stops_a_run_quietly_and_leaves_the_inputs(folder):
    (folder / "a.jsonl").write_text('{"id": 1}\n')
    sql = (
        "CREATE STREAM quick AS SELECT id FROM a WITH ('a.type' = 'file_source', "
        "'a.path' = 'a.jsonl', 'quick.type' = 'file_sink', 'quick.path' = 'quick.jsonl');\n"
        "CREATE STREAM waits AS SELECT id FROM b WITH ('b.type' = 'file_source', "
        "'b.path' = 'b.jsonl', 'b.file.wait.timeout' = '1h', 'waits.type' = 'file_sink', "
        "'waits.path' = 'waits.jsonl');\n"
    )
    (folder / "app.sql").write_text(sql)
    before = snapshot(folder)
    process = velostream_process("run", folder / "app.sql", "--until-end", cwd=folder)
    try:
        deadline = time.monotonic() + 30
        quick = folder / "quick.jsonl"
        # quick is flushed as soon as its input ends, while waits still waits for b.jsonl.
        while not (quick.exists() and quick.read_text()) and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()
            time.sleep(0.05)
        assert quick.read_text(), "quick was not flushed while the other statement waits"
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
    err = err.decode()
    assert process.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    after = snapshot(folder)
    assert {k: v for k, v in after.items() if k in before} == before
    assert json.loads(quick.read_text()) == {"id": 1}


def test_python_dash_m_velostream_exits_with_mains_code(folder):
    (folder / "app.sql").write_text(APP.replace("price * 2", "prise * 2"))
    process = velostream_process("validate", folder / "app.sql", cwd=folder)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2 and b"prise" in err
    assert os.fspath(folder / "app.sql").encode() in err
