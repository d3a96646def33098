"""How an application says it scales out (issue 13), checked without a broker.

``'application.id'`` turns scale-out on and names topics, so it must be a valid topic
prefix; ``explain`` says how each statement reading Kafka is spread and which topics it
creates; ``--workers`` must be a positive number. Nothing here connects to Kafka: the
connectors point at a closed port and no test runs a statement that reads.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import velostream as vs
from velostream.errors import ConfigError

SOURCE = (
    "'trades.type' = 'kafka_source', 'trades.topic' = 'trades', "
    "'trades.bootstrap.servers' = '127.0.0.1:9'"
)
SINK = "'out.type' = 'file_sink', 'out.path' = 'out.jsonl'"


def _app(select: str, extra: str = "", name: str = "s") -> str:
    return f"CREATE STREAM {name} AS {select} WITH ({SOURCE}, {SINK}{extra});"


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("my app", "holds ' '"),
        ("", "non-empty"),
        ("shop/eu", "holds '/'"),
        ("café", "holds 'é'"),
        ("a" * 201, "at most 200"),
    ],
)
def test_an_application_id_that_cannot_prefix_a_topic_is_refused_at_load(
    value: str, why: str
) -> None:
    sql = _app("SELECT symbol FROM trades", f", 'application.id' = '{value}'")
    with pytest.raises(ConfigError, match=why) as info:
        vs.Application.from_sql(sql)
    assert info.value.key == "application.id"


def test_a_valid_application_id_is_accepted() -> None:
    sql = _app("SELECT symbol FROM trades", ", 'application.id' = 'shop-eu_1.2'")
    assert vs.Application.from_sql(sql).statements[0].properties["application.id"] == "shop-eu_1.2"


def test_explain_without_an_application_id_reads_every_partition_in_this_process() -> None:
    sql = _app(
        "SELECT symbol, COUNT(*) AS n FROM trades GROUP BY symbol",
        ", 'trades.key.fields' = 'symbol'",
    )
    text = vs.Application.from_sql(sql, workers=3).explain()
    assert "one query per partition (its GROUP BY holds the message key (symbol))" in text
    assert "on 3 worker threads, every partition read by this process" in text
    assert "state: in memory only (no changelog without 'application.id')" in text
    assert "creates topic" not in text


def test_explain_of_a_scaled_out_application_names_its_group_and_topics() -> None:
    sql = "\n".join(
        [
            _app(
                "SELECT symbol, COUNT(*) AS n FROM trades GROUP BY symbol",
                ", 'trades.key.fields' = 'symbol', 'application.id' = 'shop'",
                name="keyed",
            ),
            _app(
                "SELECT account, COUNT(*) AS n FROM trades GROUP BY account",
                ", 'trades.key.fields' = 'symbol', 'application.id' = 'shop'",
                name="rekeyed",
            ).replace("'out.path' = 'out.jsonl'", "'out.path' = 'out2.jsonl'"),
            _app(
                "SELECT symbol FROM trades WHERE qty > 10",
                ", 'application.id' = 'shop'",
                name="filtered",
            ).replace("'out.path' = 'out.jsonl'", "'out.path' = 'out3.jsonl'"),
            _app(
                "SELECT COUNT(*) AS n FROM trades",
                ", 'application.id' = 'shop'",
                name="total",
            ).replace("'out.path' = 'out.jsonl'", "'out.path' = 'out4.jsonl'"),
        ]
    )
    text = vs.Application.from_sql(sql, workers=2).explain()
    assert "consumer group shop-keyed (cooperative rebalancing)" in text
    assert "creates topic shop-keyed-changelog" in text
    assert "creates topic shop-rekeyed-repartition" in text
    assert "reads it as consumer group shop-rekeyed-repartitioned" in text
    assert "creates topic shop-rekeyed-changelog" in text
    assert "one query for all its partitions (stateless" in text
    assert "creates topic shop-filtered" not in text
    assert "one pipeline reads every partition" in text  # the global COUNT(*)
    assert "it has no GROUP BY key" in text


def test_an_eager_assignment_strategy_is_explained_as_eager() -> None:
    sql = _app(
        "SELECT symbol FROM trades",
        ", 'trades.partition.assignment.strategy' = 'range', 'application.id' = 'shop'",
    )
    assert "(eager rebalancing)" in vs.Application.from_sql(sql).explain()


def test_a_statement_whose_name_cannot_name_a_topic_is_refused_before_connecting(
    tmp_path: Path,
) -> None:
    sql = _app(
        "SELECT symbol, COUNT(*) AS n FROM trades GROUP BY symbol",
        ", 'trades.key.fields' = 'symbol', 'application.id' = 'shop'",
        name='"per symbol"',
    )
    app = vs.Application.from_sql(sql, base_dir=tmp_path)
    with pytest.raises(ConfigError, match="'shop-per symbol-changelog' of statement 'per symbol'"):
        app.run(until_end=True)
    rekeyed = _app(
        "SELECT account, COUNT(*) AS n FROM trades GROUP BY account",
        ", 'application.id' = 'shop'",
        name='"per account"',
    )
    app = vs.Application.from_sql(rekeyed, base_dir=tmp_path)
    with pytest.raises(ConfigError, match="'shop-per account-repartition', which holds ' '"):
        app.run(until_end=True)


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_workers_must_be_a_positive_whole_number(tmp_path: Path, value: str) -> None:
    (tmp_path / "app.sql").write_text(_app("SELECT symbol FROM trades"))
    done = subprocess.run(
        [sys.executable, "-m", "velostream", "run", str(tmp_path / "app.sql"), "--workers", value],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--workers" in done.stderr
    with pytest.raises(ConfigError, match="workers"):
        vs.Application.from_sql(_app("SELECT symbol FROM trades"), workers=0)
