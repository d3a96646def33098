"""Applications of tables over Kafka topics on the test broker (issue 12).

The application of tests/app/test_app_tables.py (a reference table of customers, some of
them updated later in their topic; orders enriched by ``LEFT JOIN customers``; a table of
totals per tier built from the enriched stream) reads and writes topics here, run by
``velostream run --until-end``; the output topics are read back with confluent-kafka and
compared with DuckDB. Then a long-running run: the customers table turns READY once the
messages present at the start are loaded, and a customer updated while the stream runs is
seen by the orders that come after the update, not by those before.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from kafka_support import Broker

import velostream as vs

TIERS = ["gold", "silver", "bronze"]


def customers_data() -> list[dict[str, Any]]:
    """Customers 1..30 then updates of three of them (customer 7 twice), ``seq`` = order."""
    rng = random.Random(3)
    rows = [{"id": i, "name": f"c{i}", "tier": rng.choice(TIERS)} for i in range(1, 31)]
    rows += [
        {"id": 3, "name": "c3-renamed", "tier": "gold"},
        {"id": 7, "name": "c7-first-move", "tier": "silver"},
        {"id": 12, "name": "c12-renamed", "tier": "bronze"},
        {"id": 7, "name": "c7-second-move", "tier": "bronze"},
    ]
    return [{**row, "seq": seq} for seq, row in enumerate(rows)]


def orders_data(count: int = 400) -> list[dict[str, Any]]:
    """Orders of customers 1..36 (31..36 unknown) and a few with no customer."""
    rng = random.Random(5)
    return [
        {
            "oid": oid,
            "cid": None if oid % 97 == 13 else rng.randint(1, 36),
            "amount": rng.randint(1, 500),
        }
        for oid in range(count)
    ]


def produce(
    broker: Broker, topic: str, records: list[dict[str, Any]], partition: Callable[[dict], int]
) -> None:
    producer = Producer(broker.client_config(**{"linger.ms": 5}))
    for record in records:
        producer.produce(topic, value=json.dumps(record).encode(), partition=partition(record))
    assert producer.flush(30) == 0


def read_all(broker: Broker, topic: str) -> list[dict[str, Any]]:
    """Every message of ``topic`` up to its current end, partition by partition, in order."""
    consumer = Consumer(broker.consumer_config())
    try:
        out: list[dict[str, Any]] = []
        for partition in range(broker.partitions_of(topic)):
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
            read = 0
            deadline = time.monotonic() + 30
            while read < high:
                assert time.monotonic() < deadline, f"{topic}[{partition}]: {read} of {high}"
                for message in consumer.consume(1000, 0.5):
                    assert message.error() is None, message.error()
                    out.append(json.loads(message.value()))
                    read = message.offset() + 1
        return out
    finally:
        consumer.close()


def kafka_source(name: str, topic: str, broker: Broker, group: str) -> str:
    return (
        f"'{name}.type' = 'kafka_source', '{name}.topic' = '{topic}', "
        f"'{name}.bootstrap.servers' = '{broker.bootstrap}', '{name}.group.id' = '{group}', "
        f"'{name}.fetch.wait.max.ms' = '10'"
    )


def kafka_sink(name: str, topic: str, broker: Broker) -> str:
    return (
        f"'{name}.type' = 'kafka_sink', '{name}.topic' = '{topic}', "
        f"'{name}.bootstrap.servers' = '{broker.bootstrap}'"
    )


def duckdb_results(
    customers: list[dict[str, Any]], orders: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], dict[str | None, dict[str, Any]]]:
    """DuckDB's enriched rows (ordered by oid) and totals per tier."""
    con = duckdb.connect()
    con.register("customers", pa.Table.from_pylist(customers))
    con.register("orders", pa.Table.from_pylist(orders))
    con.execute(
        """
        CREATE TABLE enriched AS
        WITH c AS (
            SELECT id, name, tier FROM customers
            QUALIFY row_number() OVER (PARTITION BY id ORDER BY seq DESC) = 1
        )
        SELECT o.oid, o.cid, o.amount, c.name, c.tier FROM orders o LEFT JOIN c ON o.cid = c.id
        """
    )

    def rows(sql: str) -> list[dict[str, Any]]:
        result = con.sql(sql)
        return [dict(zip(result.columns, row, strict=True)) for row in result.fetchall()]

    enriched = rows("SELECT * FROM enriched ORDER BY oid")
    totals = rows(
        "SELECT tier, COUNT(*) AS orders, SUM(amount)::BIGINT AS total FROM enriched GROUP BY tier"
    )
    return enriched, {r["tier"]: r for r in totals}


def test_cli_run_until_end_over_topics_gives_duckdbs_join_and_aggregate(
    tmp_path: Path, kafka_broker: Broker
) -> None:
    customers, orders = customers_data(), orders_data()
    customers_topic = kafka_broker.create_topic(partitions=2)
    orders_topic = kafka_broker.create_topic(partitions=3)
    enriched_topic = kafka_broker.create_topic()
    totals_topic = kafka_broker.create_topic()
    # A customer's updates stay in order: keyed by id, as a keyed producer would.
    produce(kafka_broker, customers_topic, customers, lambda r: r["id"] % 2)
    produce(kafka_broker, orders_topic, orders, lambda r: r["oid"] % 3)
    (tmp_path / "app.sql").write_text(
        f"""
        CREATE TABLE customers AS
          SELECT id PRIMARY KEY, name, tier FROM customers_src
          WITH ({kafka_source("customers_src", customers_topic, kafka_broker, "g-tables-c")});

        CREATE STREAM enriched AS
          SELECT o.oid, o.cid, o.amount, c.name, c.tier
          FROM orders o LEFT JOIN customers c ON o.cid = c.id
          WITH ({kafka_source("orders", orders_topic, kafka_broker, "g-tables-o")},
                {kafka_sink("enriched_out", enriched_topic, kafka_broker)});

        CREATE TABLE totals AS
          SELECT tier, COUNT(*) AS orders, SUM(amount) AS total
          FROM enriched GROUP BY tier
          WITH ({kafka_sink("totals_out", totals_topic, kafka_broker)});
        """
    )
    done = subprocess.run(
        [sys.executable, "-m", "velostream", "run", str(tmp_path / "app.sql"), "--until-end"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr

    expected_enriched, expected_totals = duckdb_results(customers, orders)
    got = sorted(read_all(kafka_broker, enriched_topic), key=lambda r: r["oid"])
    assert got == expected_enriched
    assert {"c3-renamed", "c7-second-move", "c12-renamed"} <= {r["name"] for r in got}
    assert None in expected_totals
    # One partition: the totals' updates in order; the last of each tier is its total.
    last: dict[str | None, dict[str, Any]] = {}
    for row in read_all(kafka_broker, totals_topic):
        last[row["tier"]] = row
    assert last == expected_totals


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def test_a_table_over_a_topic_is_ready_after_its_start_and_later_updates_reach_later_lookups(
    tmp_path: Path, kafka_broker: Broker
) -> None:
    customers_topic = kafka_broker.create_topic()
    orders_topic = kafka_broker.create_topic()
    start = [{"id": i, "name": name} for i, name in enumerate(["ann", "bob", "cy", "di"], 1)]
    produce(kafka_broker, customers_topic, start, lambda _r: 0)
    app = vs.Application.from_sql(
        f"""
        CREATE TABLE customers AS SELECT id PRIMARY KEY, name FROM customers_src
          WITH ({kafka_source("customers_src", customers_topic, kafka_broker, "g-live-c")});
        CREATE STREAM enriched AS
          SELECT o.oid, o.cid, c.name FROM orders o LEFT JOIN customers c ON o.cid = c.id
          WITH ({kafka_source("orders", orders_topic, kafka_broker, "g-live-o")},
                'enriched.type' = 'file_sink', 'enriched.path' = 'enriched.jsonl');
        """,
        base_dir=tmp_path,
    )
    out = tmp_path / "enriched.jsonl"
    app.start()
    try:
        handle = app.registry.wait_for_table_ready("customers", timeout=30)
        # READY with what the topic held at the start, loaded.
        assert handle.status is vs.TableStatus.READY
        assert handle.progress.records == len(start)
        assert sorted(handle.snapshot().to_pylist(), key=lambda r: r["id"]) == start

        produce(
            kafka_broker, orders_topic, [{"oid": 1, "cid": 1}, {"oid": 2, "cid": 2}], lambda _r: 0
        )
        _wait(lambda: len(_rows(out)) >= 2, 30, "the first orders")

        # A customer changes while the stream runs: the table takes it in place.
        produce(kafka_broker, customers_topic, [{"id": 1, "name": "ann-married"}], lambda _r: 0)

        def renamed() -> bool:
            names = {r["id"]: r["name"] for r in handle.snapshot().to_pylist()}
            return names[1] == "ann-married"

        _wait(renamed, 30, "the update of customer 1 in the table")
        assert handle.row_count == len(start)
        produce(
            kafka_broker,
            orders_topic,
            [{"oid": 3, "cid": 1}, {"oid": 4, "cid": 2}, {"oid": 5, "cid": 9}],
            lambda _r: 0,
        )
        _wait(lambda: len(_rows(out)) >= 5, 30, "the later orders")
    finally:
        report = app.stop(timeout=60)
    assert report is not None and report.error is None, report
    assert _rows(out) == [
        {"oid": 1, "cid": 1, "name": "ann"},  # before the update: the old name
        {"oid": 2, "cid": 2, "name": "bob"},
        {"oid": 3, "cid": 1, "name": "ann-married"},  # after it: the new one
        {"oid": 4, "cid": 2, "name": "bob"},
        {"oid": 5, "cid": 9, "name": None},
    ]
