"""A table over a Kafka topic is rebuilt from the start of its topic on every run: its
offsets are never committed (a run that resumed from them would hold only new rows)."""

from __future__ import annotations

import json
from pathlib import Path

from confluent_kafka import Producer
from kafka_support import Broker

import velostream as vs


def test_a_kafka_table_is_complete_on_every_run(tmp_path: Path, kafka_broker: Broker) -> None:
    topic = kafka_broker.create_topic(partitions=2)
    producer = Producer(kafka_broker.client_config())
    for i, name in enumerate(["ann", "bob", "cat", "ann-2"]):
        record = {"id": i % 3 + 1, "name": name}
        # One key, one partition (as a keyed producer does): its order is kept.
        producer.produce(topic, value=json.dumps(record).encode(), partition=record["id"] % 2)
    assert producer.flush(30) == 0
    (tmp_path / "orders.jsonl").write_text(
        "".join(json.dumps({"oid": i, "cid": i % 3 + 1}) + "\n" for i in range(6))
    )
    sql = f"""
    CREATE TABLE customers AS SELECT id PRIMARY KEY, name FROM people
      WITH ('people.type' = 'kafka_source', 'people.topic' = '{topic}',
            'people.bootstrap.servers' = '{kafka_broker.bootstrap}');
    CREATE STREAM named AS SELECT o.oid, c.name FROM orders o LEFT JOIN customers c ON o.cid = c.id
      WITH ('orders.type' = 'file_source', 'orders.path' = 'orders.jsonl',
            'out.type' = 'file_sink', 'out.path' = 'out.jsonl');
    """
    names = {1: "ann-2", 2: "bob", 3: "cat"}
    for run in range(2):
        app = vs.Application.from_sql(sql, base_dir=tmp_path, properties={"application.id": "r"})
        app.run(until_end=True)
        handle = app.registry.get("customers")
        assert handle is not None and handle.row_count == 3, run
        out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
        assert sorted((r["oid"], r["name"]) for r in out) == [
            (i, names[i % 3 + 1]) for i in range(6)
        ], run
