"""The test broker and the pinned Kafka client behave as the Kafka code relies on."""

from __future__ import annotations

import json
import time

from confluent_kafka import Consumer, Producer
from kafka_support import Broker


def consume_all(consumer: Consumer, count: int, deadline_s: float = 30.0) -> list[bytes]:
    """Batch consumption (``consume(num_messages, timeout)``, SPEC section 11)."""
    values: list[bytes] = []
    deadline = time.monotonic() + deadline_s
    while len(values) < count and time.monotonic() < deadline:
        for message in consumer.consume(500, 0.5):
            assert message.error() is None, message.error()
            values.append(message.value())
    return values


def test_records_go_through_the_broker_in_order(kafka_broker: Broker) -> None:
    topic = kafka_broker.create_topic()
    producer = Producer(kafka_broker.client_config())
    sent = [json.dumps({"i": i, "symbol": f"S{i % 7}"}).encode() for i in range(2_000)]
    for value in sent:
        producer.produce(topic, value=value)
    assert producer.flush(10) == 0
    consumer = Consumer(kafka_broker.consumer_config())
    consumer.subscribe([topic])
    try:
        assert consume_all(consumer, len(sent)) == sent
    finally:
        consumer.close()


def test_partitions_are_created_as_asked(kafka_broker: Broker) -> None:
    topic = kafka_broker.create_topic(partitions=6)
    consumer = Consumer(kafka_broker.consumer_config())
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        assert sorted(metadata.topics[topic].partitions) == [0, 1, 2, 3, 4, 5]
    finally:
        consumer.close()


def test_consume_returns_at_its_timeout_on_an_empty_topic(kafka_broker: Broker) -> None:
    """confluent-kafka 2.13.0 broke ``consume()``'s timeout (SPEC section 11): the pinned
    version must return an empty list once the timeout has passed, not block."""
    topic = kafka_broker.create_topic()
    consumer = Consumer(kafka_broker.consumer_config())
    consumer.subscribe([topic])
    try:
        consumer.consume(10, 2.0)  # joins the group
        start = time.monotonic()
        assert consumer.consume(100, 0.5) == []
        elapsed = time.monotonic() - start
        # Generous bounds: this checks that the call returns (2.13.0 blocked), not speed.
        assert 0.25 <= elapsed < 15.0, elapsed
    finally:
        consumer.close()
