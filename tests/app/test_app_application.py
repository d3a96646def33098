"""Applications end to end on temporary files."""

import json
import logging

import pytest

from velostream.app import Application
from velostream.errors import (
    CircularDependencyError,
    ConfigError,
    DataError,
    SqlSyntaxError,
    SqlValidationError,
)

TRADES = [
    {"symbol": s, "price": p, "qty": q, "status": st}
    for s, p, q, st in [
        ("AAPL", 190.5, 100, "FILLED"),
        ("MSFT", 410.25, 5, "FILLED"),
        ("GOOG", 140.0, 300, "CANCELLED"),
        ("AAPL", 191.0, 80, "FILLED"),
        ("TSLA", 240.75, 10, "PENDING"),
        ("AMZN", 180.0, 200, "FILLED"),
    ]
]


def write_trades(path, rows=TRADES, extra=()):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "".join(x + "\n" for x in extra))


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def read_csv(path):
    return path.read_text().splitlines()


BIG = [
    {"symbol": t["symbol"], "notional": t["price"] * t["qty"]}
    for t in TRADES
    if t["status"] == "FILLED" and t["price"] * t["qty"] > 10000
]

APP = """
-- big filled trades, fanned out to JSON and CSV
CREATE STREAM big AS
SELECT symbol, price * qty AS notional
FROM trades
WHERE status = 'FILLED' AND price * qty > 10000
WITH (
    'trades.type' = 'file_source',
    'trades.path' = 'data/trades.jsonl',
    'big.type' = 'file_sink',
    'big.path' = 'out/big.jsonl',
    'big_csv.type' = 'file_sink',
    'big_csv.path' = 'out/big.csv',
    'big_csv.format' = 'csv'
);
"""


@pytest.fixture
def app_dir(tmp_path):
    write_trades(tmp_path / "data" / "trades.jsonl")
    (tmp_path / "app.sql").write_text(APP)
    return tmp_path


def test_run_writes_the_sql_output_to_every_sink(app_dir, tmp_path_factory, monkeypatch):
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))  # paths resolve against app.sql
    report = Application.from_file(app_dir / "app.sql").run(until_end=True)
    assert read_jsonl(app_dir / "out" / "big.jsonl") == BIG
    assert read_csv(app_dir / "out" / "big.csv") == ["symbol,notional"] + [
        f"{r['symbol']},{r['notional']}" for r in BIG
    ]
    stats = report.statements["big"]
    assert (stats.records_in, stats.records_out, stats.errors) == (len(TRADES), len(BIG), 0)
    assert stats.sinks["big"]["records_written"] == len(BIG)
    assert stats.sinks["big_csv"]["records_written"] == len(BIG)
    assert "big" in report.summary()


def test_properties_override_with_keys(app_dir, tmp_path):
    other = tmp_path / "other" / "t.jsonl"
    write_trades(other, TRADES[:1])
    app = Application.from_file(app_dir / "app.sql", properties={"trades.path": str(other)})
    app.run()
    assert read_jsonl(app_dir / "out" / "big.jsonl") == BIG[:1]


def test_streams_read_each_other_in_waves(tmp_path):
    write_trades(tmp_path / "trades.jsonl")
    sql = """
    CREATE STREAM huge AS SELECT symbol, notional FROM big WHERE notional > 30000
        WITH ('huge.type' = 'file_sink', 'huge.path' = 'huge.jsonl');
    CREATE STREAM big AS SELECT symbol, price * qty AS notional FROM trades
        WHERE status = 'FILLED' AND price * qty > 10000
        WITH ('trades.type' = 'file_source', 'trades.path' = 'trades.jsonl');
    """
    app = Application.from_sql(sql, base_dir=tmp_path)
    assert app.waves == [["big"], ["huge"]]
    explained = app.explain()
    for text in ("statement big", "statement huge", "wave 1: big", "wave 2: huge", "trades.jsonl"):
        assert text in explained
    report = app.run()
    assert read_jsonl(tmp_path / "huge.jsonl") == [r for r in BIG if r["notional"] > 30000]
    assert report.statements["huge"].records_in == len(BIG)


def test_cycle_is_rejected():
    sql = """
    CREATE STREAM a AS SELECT x FROM b WITH ('a.type'='file_sink', 'a.path'='a.jsonl');
    CREATE STREAM b AS SELECT x FROM a WITH ('b.type'='file_sink', 'b.path'='b.jsonl');
    """
    with pytest.raises(CircularDependencyError) as info:
        Application.from_sql(sql)
    assert info.value.cycle[0] == info.value.cycle[-1]
    assert set(info.value.cycle) == {"a", "b"}


def test_from_name_without_type_is_a_config_error_naming_it():
    sql = "CREATE STREAM s AS SELECT x FROM nowhere WITH ('s.type'='file_sink', 's.path'='o.jsonl')"
    with pytest.raises(ConfigError, match="nowhere") as info:
        Application.from_sql(sql)
    assert info.value.key == "nowhere.type"


def test_unknown_with_key_is_rejected_with_its_position(app_dir):
    sql = APP.replace("'big.type'", "'error.stratgy' = 'fail',\n    'big.type'")
    with pytest.raises(ConfigError, match=r"did you mean 'error\.strategy'") as info:
        Application.from_sql(sql, base_dir=app_dir)
    assert info.value.key == "error.stratgy"
    assert (info.value.line, info.value.column) == (10, 5)


def test_unknown_application_property_is_rejected(app_dir):
    with pytest.raises(ConfigError) as info:
        Application.from_file(app_dir / "app.sql", properties={"trades.pth": "x"})
    assert info.value.key == "trades.pth"


def test_kafka_source_keys_of_velostream_are_checked_when_the_application_loads():
    # Its librdkafka keys are checked by the client when the source is built
    # (tests/kafka/test_kafka_source.py); velostream's own keys at once.
    with_clause = (
        "'t.type'='kafka_source', 't.batch.size'='0', 's.type'='file_sink', 's.path'='o.jsonl'"
    )
    with pytest.raises(ConfigError) as info:
        Application.from_sql(f"CREATE STREAM s AS SELECT x FROM t WITH ({with_clause})")
    assert info.value.key == "t.batch.size"
    assert info.value.value == "0"


def test_a_table_needs_no_sink_and_gets_its_key_from_group_by():
    sql = (
        "CREATE TABLE t AS SELECT symbol, COUNT(*) AS n FROM trades GROUP BY symbol "
        "WITH ('trades.type'='file_source', 'trades.path'='t.jsonl')"
    )
    app = Application.from_sql(sql)
    (info,) = app.statements
    assert info.is_table and info.key == ("symbol",) and not info.sinks


def test_a_table_group_by_key_must_be_selected():
    sql = (
        "CREATE TABLE t AS SELECT COUNT(*) AS n FROM trades GROUP BY symbol "
        "WITH ('trades.type'='file_source', 'trades.path'='t.jsonl')"
    )
    with pytest.raises(SqlValidationError, match="GROUP BY key symbol is not a select field"):
        Application.from_sql(sql)


def test_statement_without_sink_is_rejected():
    sql = "CREATE STREAM s AS SELECT x FROM t WITH ('t.type'='file_source', 't.path'='t.jsonl')"
    with pytest.raises(ConfigError, match="no sink"):
        Application.from_sql(sql)


def test_syntax_errors_carry_line_and_column():
    with pytest.raises(SqlSyntaxError) as info:
        Application.from_sql("CREATE STREAM s AS\nSELECT x,, FROM t")
    assert info.value.line == 2


def test_fail_strategy_stops_the_run_with_file_and_line(app_dir):
    write_trades(app_dir / "data" / "trades.jsonl", TRADES * 5, ["{not json"])
    with pytest.raises(DataError, match=r"trades\.jsonl:31: invalid JSON"):
        Application.from_file(app_dir / "app.sql").run()


def test_log_and_continue_counts_bad_records(app_dir, caplog):
    write_trades(app_dir / "data" / "trades.jsonl", TRADES, ["{not json"])
    app = Application.from_file(
        app_dir / "app.sql", properties={"error.strategy": "log_and_continue"}
    )
    with caplog.at_level(logging.WARNING, logger="velostream.io"):
        report = app.run()
    assert report.statements["big"].errors == 1
    assert read_jsonl(app_dir / "out" / "big.jsonl") == BIG
    assert any("trades.jsonl:7" in r.getMessage() for r in caplog.records)


def test_dead_letter_path_receives_bad_records(app_dir):
    write_trades(app_dir / "data" / "trades.jsonl", TRADES, ["{not json"])
    app = Application.from_file(
        app_dir / "app.sql",
        properties={"error.strategy": "dead_letter", "dead_letter.path": "dlq/bad.jsonl"},
    )
    report = app.run()
    letters = read_jsonl(app_dir / "dlq" / "bad.jsonl")
    assert [(d["raw"], d["location"].endswith("trades.jsonl:7")) for d in letters] == [
        ("{not json", True)
    ]
    assert report.statements["big"].errors == 1


def test_dead_letter_sink_is_not_an_output(app_dir):
    write_trades(app_dir / "data" / "trades.jsonl", TRADES, ["{not json"])
    sql = APP.replace(
        "'big.type'",
        "'error.strategy' = 'dead_letter', 'dead_letter.sink' = 'bad',\n"
        "    'bad.type' = 'file_sink', 'bad.path' = 'out/bad.csv', 'bad.format' = 'csv',\n"
        "    'big.type'",
    )
    Application.from_sql(sql, base_dir=app_dir).run()
    assert read_jsonl(app_dir / "out" / "big.jsonl") == BIG
    lines = read_csv(app_dir / "out" / "bad.csv")
    assert lines[0] == "source,location,reason,raw"
    assert len(lines) == 2 and lines[1].startswith("trades,")


def test_dead_letter_strategy_without_destination_is_rejected(app_dir):
    with pytest.raises(ConfigError, match=r"dead_letter\.path"):
        Application.from_file(app_dir / "app.sql", properties={"error.strategy": "dead_letter"})


def test_two_sinks_writing_one_file_are_rejected(app_dir):
    sql = APP.replace("'out/big.csv'", "'out/big.jsonl'")
    with pytest.raises(ConfigError, match="already writes"):
        Application.from_sql(sql, base_dir=app_dir)


def test_start_and_stop_follow_a_watched_file(app_dir):
    app = Application.from_file(app_dir / "app.sql", properties={"trades.watch": "true"})
    app.start()
    try:
        with (app_dir / "data" / "trades.jsonl").open("a") as handle:
            handle.write(json.dumps(TRADES[0]) + "\n")
        assert not app.wait(0.5)  # still following the file
    finally:
        report = app.stop(timeout=10)
    assert report is not None and report.error is None
    assert report.statements["big"].records_in == len(TRADES) + 1
    assert read_jsonl(app_dir / "out" / "big.jsonl") == [*BIG, BIG[0]]


def test_start_ends_on_its_own_with_bounded_files(app_dir):
    app = Application.from_file(app_dir / "app.sql")
    app.start()
    assert app.wait(10)
    assert app.report is not None and app.report.records_out == len(BIG)


def test_explain_names_a_kafka_sources_group_and_commit_interval():
    sql = (
        "CREATE STREAM s AS SELECT x FROM t WITH ('t.type'='kafka_source', 't.topic'='in', "
        "'t.bootstrap.servers'='127.0.0.1:9092', 'commit.interval'='2s', 'application.id'='shop', "
        "'s.type'='kafka_sink', 's.topic'='out')"
    )
    text = Application.from_sql(sql).explain()
    assert "source t: kafka_source topic in at 127.0.0.1:9092 (format json)" in text
    assert "commits: t as group shop-s, every 2s once the sinks acknowledged" in text
    assert "sink   s: kafka_sink topic out (format json)" in text
