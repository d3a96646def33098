"""The Kafka demo (examples/kafka) gives the file demo's rows, through real topics."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from kafka_support import Broker

import velostream as vs

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_kafka_demo_gives_the_rows_of_the_file_demo(
    tmp_path, kafka_broker: Broker, monkeypatch
) -> None:
    sys.path.insert(0, str(EXAMPLES / "kafka"))
    try:
        import run_demo
    finally:
        sys.path.pop(0)
    # The demo's own topics, on the session's broker (this test is their only user).
    for topic, partitions in (("demo-trades", 3), *((t, 1) for t in run_demo.OUTPUTS)):
        kafka_broker.create_topic(partitions=partitions, name=topic)
    assert run_demo.load_trades(kafka_broker) == 400
    monkeypatch.setenv("KAFKA_BOOTSTRAP", kafka_broker.bootstrap)
    kafka = vs.Application.from_file(
        EXAMPLES / "kafka" / "app.sql",
        properties={"bars_file.path": str(tmp_path / "kafka_bars.jsonl")},
    )
    kafka.run(until_end=True)
    files = vs.Application.from_file(
        EXAMPLES / "demo" / "app.sql",
        properties={
            f"{name}.path": str(tmp_path / f"{name}.out")
            for name in (
                "big_trades",
                "cancelled_trades",
                "whale_alerts",
                "symbol_stats",
                "minute_bars",
                "enriched_trades",
            )
        },
    )
    files.run(until_end=True)
    expected_bars = sorted(
        json.dumps(json.loads(line), sort_keys=True)
        for line in (tmp_path / "minute_bars.out").read_text().splitlines()
    )
    got_bars = sorted(
        json.dumps(json.loads(line), sort_keys=True)
        for line in (tmp_path / "kafka_bars.jsonl").read_text().splitlines()
    )
    assert got_bars == expected_bars
    topic_bars = sorted(
        json.dumps(v, sort_keys=True)
        for _, v in run_demo.read_topic(kafka_broker, "demo-minute-bars")
    )
    assert topic_bars == expected_bars
    big = [v for _, v in run_demo.read_topic(kafka_broker, "demo-big-trades")]
    expected_big = [
        json.loads(line) for line in (tmp_path / "big_trades.out").read_text().splitlines()
    ]
    assert sorted(json.dumps(v, sort_keys=True) for v in big) == sorted(
        json.dumps(v, sort_keys=True) for v in expected_big
    )
    # The stream-table join: trades from Kafka LEFT JOIN the instruments table (loaded from
    # the file demo's instruments.jsonl), keyed by symbol: the file demo's rows.
    enriched = run_demo.read_topic(kafka_broker, "demo-enriched-trades")
    expected_enriched = [
        json.loads(line) for line in (tmp_path / "enriched_trades.out").read_text().splitlines()
    ]
    assert len(expected_enriched) > 0
    assert sorted(json.dumps(v, sort_keys=True) for _, v in enriched) == sorted(
        json.dumps(v, sort_keys=True) for v in expected_enriched
    )
    assert all(key == v["symbol"].encode() for key, v in enriched)
    assert any(v["sector"] is None for _, v in enriched)  # TSLA is not in the table
