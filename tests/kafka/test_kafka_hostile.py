"""Generated hostile messages through a whole application on the test broker.

Whatever the mix of good records, garbage bytes, empty messages, values of the wrong type
and tombstones, every message is accounted for: the good ones reach the sink exactly once,
each bad one is counted (and logged), tombstones are counted, and everything is committed.
"""

from __future__ import annotations

import json
import re

from confluent_kafka import Consumer, Producer, TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka_support import Broker

import velostream as vs

GOOD = st.integers(-(2**63), 2**63 - 1).map(lambda n: ("good", n))
GARBAGE = st.binary(max_size=40).map(lambda b: ("bad", b"\x00" + b))  # a NUL: never text
EMPTY = st.sampled_from([b"", b"   ", b"\n"]).map(lambda b: ("bad", b))
# Text in JSON number syntax ("5") is read as the number it spells (rust/codec/src/values.rs),
# so a wrong type is any other text.
NUMBER_SYNTAX = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
WRONG_TYPE = (
    st.text(max_size=10)
    .filter(lambda t: not NUMBER_SYNTAX.fullmatch(t))
    .map(lambda t: ("bad", json.dumps({"n": t}).encode()))
)
TRUNCATED = st.integers().map(lambda n: ("bad", json.dumps({"n": n}).encode()[:-1]))
TOMBSTONE = st.just(("tombstone", None))

MESSAGES = st.lists(
    st.one_of(GOOD, GOOD, GARBAGE, EMPTY, WRONG_TYPE, TRUNCATED, TOMBSTONE), max_size=60
)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(messages=MESSAGES)
def test_every_message_is_written_counted_or_skipped_and_committed(
    tmp_path_factory, kafka_broker: Broker, messages
) -> None:
    tmp_path = tmp_path_factory.mktemp("hostile")
    topic = kafka_broker.create_topic(partitions=2)
    producer = Producer(kafka_broker.client_config())
    for i, (kind, payload) in enumerate(messages):
        value = json.dumps({"n": payload}).encode() if kind == "good" else payload
        producer.produce(topic, value=value, partition=i % 2)
    producer.flush(30)
    sql = f"""
    CREATE STREAM src (n BIGINT) WITH ('src.type' = 'kafka_source', 'src.topic' = '{topic}',
        'src.bootstrap.servers' = '{kafka_broker.bootstrap}', 'src.group.id' = 'g-{topic}');
    CREATE STREAM out AS SELECT n FROM src
    WITH ('error.strategy' = 'log_and_continue', 'out.type' = 'file_sink', 'out.path' = 'o.jsonl');
    """
    report = vs.Application.from_sql(sql, base_dir=tmp_path).run(until_end=True)
    written = [json.loads(line)["n"] for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert sorted(written) == sorted(p for kind, p in messages if kind == "good")
    out = report.statements["out"]
    assert out.errors == sum(kind == "bad" for kind, _ in messages)
    assert out.sources["src"]["tombstones"] == sum(kind == "tombstone" for kind, _ in messages)
    consumer = Consumer(kafka_broker.consumer_config(**{"group.id": f"g-{topic}"}))
    try:
        offsets = [
            tp.offset
            for tp in consumer.committed([TopicPartition(topic, p) for p in (0, 1)], timeout=10)
        ]
    finally:
        consumer.close()
    sizes = [len(messages[0::2]), len(messages[1::2])]
    assert offsets == [size if size else -1001 for size in sizes]
