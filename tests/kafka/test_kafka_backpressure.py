"""Backpressure: a slow sink makes a Kafka source wait, with bounded memory and no loss."""

from __future__ import annotations

import json
import threading
import time

import pyarrow as pa
from confluent_kafka import Producer
from kafka_support import Broker

import velostream as vs
from velostream.io.kafka_source import KafkaSource
from velostream.runtime.graph import JobGraph
from velostream.runtime.job import StatementRunner


class SlowSink:
    """A sink that takes 100 ms per batch, and records how far the source ran ahead."""

    name = "slow"

    def __init__(self, source: KafkaSource) -> None:
        self.source = source
        self.rows: list[int] = []
        self.ahead: list[int] = []
        self.flushes = 0

    def write(self, batch: pa.RecordBatch) -> None:
        time.sleep(0.1)
        self.rows.extend(batch.column("n").to_pylist())
        # Records decoded by the source but not yet written here: what is buffered.
        self.ahead.append(self.source.metrics()["records_read"] - len(self.rows))

    def flush(self) -> None:
        self.flushes += 1

    def describe(self) -> str:
        return "slow"

    def metrics(self) -> dict[str, int]:
        return {"records": len(self.rows)}

    def close(self) -> None:
        pass


def test_a_slow_sink_makes_the_source_wait_without_loss_and_with_bounded_memory(
    kafka_broker: Broker,
) -> None:
    topic = kafka_broker.create_topic(partitions=2)
    total = 10_000
    producer = Producer(kafka_broker.client_config())
    for i in range(total):
        producer.produce(topic, value=json.dumps({"n": i}).encode(), partition=i % 2)
    producer.flush(30)
    batch_size, queue_size = 200, 2
    source = KafkaSource(
        "src",
        {
            "topic": topic,
            "bootstrap.servers": kafka_broker.bootstrap,
            "batch.size": str(batch_size),
        },
        group_id="g-slow",
    )
    sink = SlowSink(source)
    query = vs.compile("SELECT n FROM src")
    runner = StatementRunner("copy", query, [sink], sources=[source])
    graph = JobGraph({"copy": runner}, [["copy"]], queue_size=queue_size)
    graph.run(until_end=True, stop=threading.Event())
    runner.close()
    # Nothing lost, nothing twice, in partition order.
    assert sorted(sink.rows) == list(range(total))
    # The source never ran further ahead than the queue, the batch being processed and
    # the one waiting to be queued: memory is bounded by the queue, not by the topic.
    assert max(sink.ahead) <= (queue_size + 2) * batch_size
    # It was paused while the queue was full (the consumer stopped fetching).
    assert source.metrics()["pauses"] >= 1
    assert source.metrics()["commits"] >= 1
