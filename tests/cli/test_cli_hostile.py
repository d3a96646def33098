"""Generated inputs through the command, in-process: never a traceback, only exit codes 0,
1 and 2, and every input file byte-identical afterwards (issue 9).

SQL files of random bytes, of random SQL-ish text (a valid application with tokens
inserted, deleted and replaced), random ``--set`` keys and values, and random data files.
"""

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from velostream.cli import main

APP = (
    "CREATE STREAM big AS SELECT symbol, price * qty AS notional FROM trades "
    "WHERE status = 'FILLED' AND price * qty > 100 "
    "WITH ('trades.type' = 'file_source', 'trades.path' = 'trades.jsonl', "
    "'big.type' = 'file_sink', 'big.path' = 'big.jsonl');\n"
    "CREATE STREAM stats AS SELECT symbol, COUNT(*) AS n, SUM(notional) AS volume FROM big "
    "GROUP BY symbol WITH ('stats.type' = 'file_sink', 'stats.path' = 'stats.csv', "
    "'stats.format' = 'csv');\n"
)
TRADES = "".join(
    json.dumps({"symbol": s, "price": p, "qty": q, "status": st}) + "\n"
    for s, p, q, st in [
        ("A", 10.5, 20, "FILLED"),
        ("B", 3.0, 100, "FILLED"),
        ("A", 99.0, 1, "CANCELLED"),
        ("C", 1e300, 2, "FILLED"),
    ]
)
COMMANDS = ("validate", "explain", "run")
HOSTILE = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def snapshot(directory):
    return {
        p.relative_to(directory): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def inputs_of(folder):
    return {
        name: data
        for name, data in snapshot(folder).items()
        if name.suffix in (".sql", ".jsonl", ".csv") and name.stem in ("app", "trades")
    }


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "trades.jsonl").write_text(TRADES)
    return tmp_path


def check(capsys, folder, command, *extra, read=None):
    """Run the CLI; ``read`` names the files the application reads (default: all inputs)."""
    before = {k: v for k, v in inputs_of(folder).items() if read is None or k in read}
    args = [command, str(folder / "app.sql"), *extra]
    if command == "run":
        args.append("--until-end")
    code = main(args)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, err
    assert code in (0, 1, 2), (code, err)
    if code != 0:
        assert err.strip(), "a failure says why"
    assert {k: v for k, v in inputs_of(folder).items() if k in before} == before
    return code, err


@HOSTILE
@given(data=st.binary(max_size=400), command=st.sampled_from(COMMANDS))
def test_random_bytes_as_the_sql_file(folder, capsys, data, command):
    (folder / "app.sql").write_bytes(data)
    check(capsys, folder, command)


@HOSTILE
@given(
    data=st.binary(max_size=60),
    position=st.integers(0, len(APP)),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-32", "utf-16-le", "latin-1"]),
    command=st.sampled_from(COMMANDS),
)
def test_random_bytes_inside_an_application_in_any_encoding(
    folder, capsys, data, position, encoding, command
):
    text = APP[:position] + "é" + APP[position:]
    (folder / "app.sql").write_bytes(text.encode(encoding) + data)
    check(capsys, folder, command)


TOKENS = [
    "SELECT", "FROM", "WHERE", "GROUP", "BY", "HAVING", "AS", "AND", "OR", "NOT", "NULL",
    "CREATE", "STREAM", "TABLE", "WITH", "EMIT", "CHANGES", "FINAL", "WINDOW", "TUMBLING",
    "SESSION", "SLIDING", "JOIN", "LEFT", "ON", "UNION", "ALL", "ORDER", "LIMIT", "CASE",
    "WHEN", "THEN", "ELSE", "END", "CAST", "INTERVAL", "DISTINCT", "PRIMARY", "KEY", "IN",
    "BETWEEN", "LIKE", "IS", "(", ")", ",", ";", "*", "+", "-", "/", "%", "=", "<>", "<",
    ">=", "||", ".", "'", "\"", "--", "/*", "*/", "1", "0", "-1", "1e400", "2.5",
    "9223372036854775808", "'x'", "''", "'5m'", "5m", "30s", "symbol", "price", "qty",
    "status", "notional", "big", "trades", "stats", "nope", "COUNT(*)", "SUM(qty)",
    "ROUND(price, -19)", "CONCAT_WS(',', symbol)", "UPPER(symbol)", "${VAR}", "`x`",
    "'trades.path' = 'trades.jsonl'", "'big.path' = 'trades.jsonl'", "'x.type' = 'file_sink'",
    "'big.format' = 'xml'", "'error.strategy' = 'dead_letter'", "\ufeff", "\x00", "é", "\n",
]  # fmt: skip


@st.composite
def sqlish(draw):
    words = APP.split(" ")
    for _ in range(draw(st.integers(1, 6))):
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        index = draw(st.integers(0, len(words) - 1))
        token = draw(st.sampled_from(TOKENS) | st.text(max_size=6))
        if action == "insert":
            words.insert(index, token)
        elif action == "delete" and len(words) > 1:
            del words[index]
        else:
            words[index] = token
    return " ".join(words)


@HOSTILE
@given(text=sqlish(), command=st.sampled_from(COMMANDS))
def test_random_sqlish_text(folder, capsys, text, command):
    (folder / "app.sql").write_text(text, encoding="utf-8", errors="surrogatepass")
    check(capsys, folder, command)


def test_the_unmutated_application_runs(folder, capsys):
    (folder / "app.sql").write_text(APP)
    for command in COMMANDS:
        code, err = check(capsys, folder, command)
        assert code == 0, err
    assert (folder / "big.jsonl").read_text().count("\n") == 3


# Paths stay inside the test's folder; the application's own inputs are among them.
SAFE_NAME = st.from_regex(r"\A[a-z_]{1,6}(\.(jsonl|csv|sql|json))?\Z") | st.sampled_from(
    ["trades.jsonl", "./trades.jsonl", "app.sql", "sub/../trades.jsonl"]
)
KEYS = [
    "error.strategy", "trades.format", "big.format", "stats.format", "trades.batch.size",
    "trades.schema.inference.rows", "big.append", "trades.watch", "dead_letter.sink",
    "event.time.field", "watermark.strategy", "late.data.strategy", "big.type", "trades.type",
    "stats.type", "trades.config_file", "nope.type", "x",
]  # fmt: skip
PATH_KEYS = ["trades.path", "big.path", "stats.path", "dead_letter.path", "x.path"]


@st.composite
def setting(draw):
    if draw(st.booleans()):
        return f"{draw(st.sampled_from(PATH_KEYS))}={draw(SAFE_NAME)}"
    key = draw(st.sampled_from(KEYS) | st.text(max_size=12))
    return f"{key}={draw(st.text(max_size=12))}"


@HOSTILE
@given(settings_=st.lists(setting(), max_size=4), command=st.sampled_from(COMMANDS))
def test_random_set_values(folder, capsys, settings_, command):
    (folder / "app.sql").write_text(APP)
    (folder / "trades.jsonl").write_text(TRADES)  # each example starts from the same inputs
    # What the application reads: its SQL file and the source's (last) path. A file the
    # overrides stopped reading (`--set trades.path=app.sql`) may be a sink's target.
    source = "trades.jsonl"
    for item in settings_:
        key, _, value = item.partition("=")
        if key == "trades.path":
            source = value
    read = {Path("app.sql"), Path(os.path.normpath(source))}
    check(capsys, folder, command, *(f"--set={item}" for item in settings_), read=read)


@HOSTILE
@given(
    data=st.binary(max_size=300)
    | st.lists(
        st.sampled_from(
            [
                b'{"symbol": "A", "price": 1.5, "qty": 2, "status": "FILLED"}',
                b'{"symbol": "A", "price": "x", "qty": 2, "status": "FILLED"}',
                b'{"symbol": null, "price": 1e999, "qty": 99999999999999999999}',
                b'{"symbol": "\\ud800", "qty": -1}',
                b"\xef\xbb\xbf{}",
                b"[1, 2]",
                b'{"symbol": "A"',
                b"",
                b"\x00\xff",
                b"symbol,price\r",
            ]
        ),
        max_size=8,
    ).map(b"\n".join),
    command=st.sampled_from(COMMANDS),
    strategy=st.sampled_from(["fail", "log_and_continue", "dead_letter"]),
)
def test_random_data_files(folder, capsys, data, command, strategy):
    (folder / "app.sql").write_text(APP)
    (folder / "trades.jsonl").write_bytes(data)
    check(
        capsys,
        folder,
        command,
        f"--set=error.strategy={strategy}",
        "--set=dead_letter.path=dead.jsonl",
    )
