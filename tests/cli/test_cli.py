"""The ``velostream`` command through ``python -m velostream`` in a subprocess."""

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo" / "app.sql"


def velostream(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "velostream", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def demo_outputs(tmp_path):
    return {
        "big_trades.path": tmp_path / "big_trades.jsonl",
        "cancelled_trades.path": tmp_path / "cancelled_trades.csv",
        "whale_alerts.path": tmp_path / "whale_alerts.csv",
        "symbol_stats.path": tmp_path / "symbol_stats.jsonl",
        "enriched_trades.path": tmp_path / "enriched_trades.jsonl",
    }


def test_run_demo_from_another_directory(tmp_path):
    outputs = demo_outputs(tmp_path)
    sets = [arg for key, path in outputs.items() for arg in ("--set", f"{key}={path}")]
    result = velostream("run", DEMO, "--until-end", *sets, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "big_trades" in result.stdout and "finished" in result.stdout

    trades = [
        json.loads(line)
        for line in (DEMO.parent / "data" / "trades.jsonl").read_text().splitlines()
    ]
    expected = [
        {
            "symbol": t["symbol"],
            "price": t["price"],
            "qty": t["qty"],
            "notional": t["price"] * t["qty"],
            "ts": t["ts"],
        }
        for t in trades
        if t["status"] == "FILLED" and t["price"] * t["qty"] >= 10000
    ]
    got = [json.loads(line) for line in outputs["big_trades.path"].read_text().splitlines()]
    assert got == expected and expected
    cancelled = outputs["cancelled_trades.path"].read_text().splitlines()
    assert cancelled[0] == "symbol,qty,status,ts"
    assert len(cancelled) - 1 == sum(t["status"] == "CANCELLED" for t in trades)
    whales = outputs["whale_alerts.path"].read_text().splitlines()
    assert len(whales) - 1 == sum(r["notional"] >= 50000 for r in expected)

    # The GROUP BY statement emits each filled trade's running per-symbol aggregate.
    running: dict[str, list] = {}
    expected_stats = []
    for t in trades:
        if t["status"] != "FILLED":
            continue
        count, volume, total = running.get(t["symbol"], (0, 0, 0.0))
        running[t["symbol"]] = (count + 1, volume + t["qty"], total + t["price"])
        count, volume, total = running[t["symbol"]]
        expected_stats.append((t["symbol"], count, volume, round(total / count, 2)))
    stats = [json.loads(line) for line in outputs["symbol_stats.path"].read_text().splitlines()]
    got_stats = [(r["symbol"], r["trades"], r["volume"], r["avg_price"]) for r in stats]
    assert len(got_stats) == len(expected_stats) > 0
    for got_row, want in zip(got_stats, expected_stats, strict=True):
        assert got_row[:3] == want[:3]
        assert got_row[3] == pytest.approx(want[3], abs=0.011)

    # The stream-table join: filled trades LEFT JOIN the instruments table, whose rows are
    # the last line of each symbol in the file (AMZN's second line replaces its first).
    latest = {}
    for line in (DEMO.parent / "data" / "instruments.jsonl").read_text().splitlines():
        row = json.loads(line)
        latest[row["symbol"]] = row
    assert latest["AMZN"]["sector"] == "Consumer Discretionary" and "TSLA" not in latest
    con = duckdb.connect()
    con.register("trades", pa.Table.from_pylist(trades))
    con.register("instruments", pa.Table.from_pylist(list(latest.values())))
    expected_enriched = con.sql(
        "SELECT t.symbol, i.name, i.sector, t.price, t.qty, t.price * t.qty AS notional, t.ts "
        "FROM trades t LEFT JOIN instruments i ON t.symbol = i.symbol "
        "WHERE t.status = 'FILLED' ORDER BY t.ts"
    ).fetchall()
    enriched = [
        tuple(json.loads(line).values())
        for line in outputs["enriched_trades.path"].read_text().splitlines()
    ]
    assert enriched == expected_enriched
    assert any(row[2] is None for row in enriched)  # TSLA: no instrument, NULL columns
    assert {row[2] for row in enriched if row[0] == "AMZN"} == {"Consumer Discretionary"}


def test_validate_and_explain_demo(tmp_path):
    result = velostream("validate", DEMO, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    result = velostream("explain", DEMO, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (
        "wave 1: big_trades, cancelled_trades, instruments, minute_bars, symbol_stats"
        in result.stdout
    )
    assert "window TUMBLING(1m)" in result.stdout
    assert "wave 2: enriched_trades, whale_alerts" in result.stdout
    assert "table  instruments: key symbol" in result.stdout
    assert "join   instruments: table (key symbol)" in result.stdout
    assert "file_source" in result.stdout and "file_sink" in result.stdout


def write_app(tmp_path, body):
    (tmp_path / "t.jsonl").write_text('{"symbol": "A", "price": 1.5}\n')
    path = tmp_path / "app.sql"
    path.write_text(body)
    return path


GOOD_WITH = "'t.type'='file_source', 't.path'='t.jsonl', 's.type'='file_sink', 's.path'='o.jsonl'"


@pytest.mark.parametrize("command", ["run", "validate", "explain"])
def test_syntax_error_exits_2_with_line_and_column(tmp_path, command):
    app = write_app(tmp_path, f"CREATE STREAM s AS\nSELECT symbol,, FROM t WITH ({GOOD_WITH});\n")
    result = velostream(command, app, cwd=tmp_path)
    assert result.returncode == 2
    assert f"{app}:2:15:" in result.stderr
    assert "SqlSyntaxError" in result.stderr


def test_unknown_with_key_exits_2_naming_the_key(tmp_path):
    app = write_app(
        tmp_path,
        f"CREATE STREAM s AS SELECT symbol FROM t\nWITH ({GOOD_WITH},\n 'error.stratgy'='fail');\n",
    )
    result = velostream("run", app, "--until-end", cwd=tmp_path)
    assert result.returncode == 2
    assert "'error.stratgy'" in result.stderr
    assert "error.strategy" in result.stderr
    assert f"{app}:3:2:" in result.stderr


def test_bad_value_exits_2(tmp_path):
    app = write_app(
        tmp_path, f"CREATE STREAM s AS SELECT symbol FROM t WITH ({GOOD_WITH}, 't.format'='xml');\n"
    )
    result = velostream("run", app, "--until-end", cwd=tmp_path)
    assert result.returncode == 2
    assert "'t.format'" in result.stderr and "'xml'" in result.stderr and "json" in result.stderr


def test_bad_set_value_exits_2(tmp_path):
    app = write_app(tmp_path, f"CREATE STREAM s AS SELECT symbol FROM t WITH ({GOOD_WITH});\n")
    result = velostream("run", app, "--set", "error.strategy=sometimes", cwd=tmp_path)
    assert result.returncode == 2
    assert "error.strategy" in result.stderr and "sometimes" in result.stderr


def test_missing_source_file_exits_1_naming_the_path(tmp_path):
    app = write_app(tmp_path, f"CREATE STREAM s AS SELECT symbol FROM t WITH ({GOOD_WITH});\n")
    (tmp_path / "t.jsonl").unlink()
    result = velostream("run", app, "--until-end", cwd=tmp_path)
    assert result.returncode == 1
    assert str(tmp_path / "t.jsonl") in result.stderr


def test_bad_record_exits_1_with_file_and_line(tmp_path):
    app = write_app(tmp_path, f"CREATE STREAM s AS SELECT symbol FROM t WITH ({GOOD_WITH});\n")
    with (tmp_path / "t.jsonl").open("a") as handle:
        handle.write("{oops\n")
    result = velostream("run", app, "--until-end", cwd=tmp_path)
    assert result.returncode == 1
    assert f"{tmp_path / 't.jsonl'}:2: invalid JSON" in result.stderr


def test_run_without_until_end_ends_with_bounded_files(tmp_path):
    app = write_app(tmp_path, f"CREATE STREAM s AS SELECT symbol FROM t WITH ({GOOD_WITH});\n")
    result = velostream("run", app, "--path", "legacy", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "o.jsonl").read_text() == '{"symbol":"A"}\n'


def test_missing_sql_file_exits_2(tmp_path):
    result = velostream("validate", tmp_path / "nope.sql", cwd=tmp_path)
    assert result.returncode == 2
    assert "nope.sql" in result.stderr


def test_unknown_source_is_reported_at_its_from_position(tmp_path):
    path = tmp_path / "app.sql"
    path.write_text(
        "CREATE STREAM s AS\nSELECT a\n  FROM nope\nWITH ('s.type'='file_sink', 's.path'='o.jsonl');"
    )
    result = velostream("validate", path, cwd=tmp_path)
    assert result.returncode == 2
    assert f"{path}:3:8:" in result.stderr and "nope" in result.stderr
