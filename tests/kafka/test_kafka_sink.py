"""The Kafka sink, against the test broker: an application's SQL output as JSON messages."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from confluent_kafka import Consumer, TopicPartition
from kafka_support import Broker

import velostream as vs
from velostream.io.kafka_sink import KafkaSink

TRADES = [
    {"symbol": "AAPL", "price": 150.0, "qty": 10, "status": "open"},
    {"symbol": "MSFT", "price": 90.0, "qty": 5, "status": "open"},
    {"symbol": "AAPL", "price": 200.0, "qty": 2, "status": "closed"},
    {"symbol": "GOOG", "price": float("nan"), "qty": 1, "status": "open"},
    {"symbol": "TSLA", "price": 120.0, "qty": None, "status": "open"},
]


def app_sql(sink: str, topic: str, bootstrap: str, extra: str = "") -> str:
    return f"""
CREATE STREAM big AS
SELECT symbol PRIMARY KEY, price, qty, price * qty AS notional
FROM trades
WHERE status = 'open'
WITH (
    'trades.type' = 'file_source', 'trades.path' = 'trades.jsonl',
    '{sink}.type' = 'kafka_sink', '{sink}.topic' = '{topic}',
    '{sink}.bootstrap.servers' = '{bootstrap}'{extra}
);
"""


def messages(broker: Broker, topic: str, count: int) -> list[tuple[bytes | None, bytes]]:
    consumer = Consumer(broker.consumer_config())
    consumer.subscribe([topic])
    out: list[tuple[bytes | None, bytes]] = []
    try:
        for _ in range(60):
            for message in consumer.consume(100, 0.5):
                assert message.error() is None
                out.append((message.key(), message.value()))
            if len(out) >= count:
                break
        out.extend((m.key(), m.value()) for m in consumer.consume(100, 0.5))
    finally:
        consumer.close()
    return out


def write_trades(tmp_path) -> None:
    lines = [json.dumps(t).replace("NaN", "NaN") for t in TRADES]
    (tmp_path / "trades.jsonl").write_text("\n".join(lines) + "\n")


def test_an_application_writes_its_rows_to_a_topic_keyed_by_the_primary_key(
    tmp_path, kafka_broker: Broker
) -> None:
    write_trades(tmp_path)
    topic = kafka_broker.create_topic()
    app = vs.Application.from_sql(app_sql("out", topic, kafka_broker.bootstrap), base_dir=tmp_path)
    report = app.run(until_end=True)
    assert report.statements["big"].records_out == 4
    got = messages(kafka_broker, topic, 4)
    assert [key for key, _ in got] == [b"AAPL", b"MSFT", b"GOOG", b"TSLA"]
    # The same JSON as the file sinks: every field, NULLs written, NaN kept.
    assert [value.decode() for _, value in got] == [
        '{"symbol":"AAPL","price":150.0,"qty":10,"notional":1500.0}',
        '{"symbol":"MSFT","price":90.0,"qty":5,"notional":450.0}',
        '{"symbol":"GOOG","price":NaN,"qty":1,"notional":NaN}',
        '{"symbol":"TSLA","price":120.0,"qty":null,"notional":null}',
    ]
    assert report.statements["big"].sinks["out"]["records"] == 4


def test_a_setting_the_kafka_client_rejects_is_a_config_error(tmp_path, kafka_broker) -> None:
    write_trades(tmp_path)
    sql = app_sql("out", "t", kafka_broker.bootstrap, ", 'out.linger.mss' = '5'")
    with pytest.raises(vs.ConfigError, match=r"linger\.mss") as info:
        vs.Application.from_sql(sql, base_dir=tmp_path).run(until_end=True)
    assert info.value.key == "out.linger.mss"


def test_messages_the_broker_never_acknowledged_are_a_sink_error(tmp_path) -> None:
    """Nothing is lost quietly: with no broker behind the address, every message times
    out, and the run fails with a SinkError naming the sink and the topic."""
    import socket

    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    write_trades(tmp_path)
    sql = app_sql("out", "lost", dead, ", 'out.message.timeout.ms' = '1500'")
    with pytest.raises(vs.SinkError, match="'lost'") as info:
        vs.Application.from_sql(sql, base_dir=tmp_path).run(until_end=True)
    assert info.value.sink == "out"
    assert "not delivered" in str(info.value)


def read_all(broker: Broker, topic: str, count: int) -> list[tuple[bytes | None, bytes]]:
    """The first ``count`` messages of partition 0 of ``topic``, in order."""
    consumer = Consumer(broker.consumer_config())
    consumer.assign([TopicPartition(topic, 0, 0)])
    out: list[tuple[bytes | None, bytes]] = []
    try:
        for _ in range(100):
            for message in consumer.consume(1000, 0.2):
                assert message.error() is None
                out.append((message.key(), message.value()))
            if len(out) >= count:
                break
    finally:
        consumer.close()
    return out


def test_a_batch_larger_than_the_producer_queue_is_delivered_whole_and_in_order(
    kafka_broker: Broker,
) -> None:
    """produce_batch queues what fits and refuses the rest with _QUEUE_FULL: exactly the
    refused messages are produced again once the queue has room, none lost, none twice."""
    topic = kafka_broker.create_topic()
    rows = 5_000
    sink = KafkaSink(
        "out",
        {
            "topic": topic,
            "bootstrap.servers": kafka_broker.bootstrap,
            "queue.buffering.max.messages": "100",
            "batch.num.messages": "100",
        },
        key_fields=("id",),
    )
    batch = pa.record_batch({"id": [f"k{i}" for i in range(rows)], "n": list(range(rows))})
    sink.write(batch)
    sink.flush()
    assert sink.metrics() == {"records": rows, "batches": 1, "delivery_errors": 0}
    got = read_all(kafka_broker, topic, rows)
    assert got == [(f"k{i}".encode(), b'{"id":"k%d","n":%d}' % (i, i)) for i in range(rows)]


def test_a_message_the_client_refuses_is_a_sink_error(kafka_broker: Broker) -> None:
    """A message larger than message.max.bytes is refused by the client when produced: a
    SinkError naming the sink and the topic, not the client's exception."""
    topic = kafka_broker.create_topic()
    sink = KafkaSink(
        "out",
        {"topic": topic, "bootstrap.servers": kafka_broker.bootstrap, "message.max.bytes": "1000"},
    )
    batch = pa.record_batch({"s": ["small", "x" * 5_000, "small too"]})
    with pytest.raises(vs.SinkError, match=f"'{topic}'.*MSG_SIZE_TOO_LARGE") as info:
        sink.write(batch)
    assert info.value.sink == "out"
    # The others were queued: flushing delivers them, and still reports the refused one.
    with pytest.raises(vs.SinkError, match="1 message"):
        sink.flush()
    assert [v for _, v in read_all(kafka_broker, topic, 2)] == [
        b'{"s":"small"}',
        b'{"s":"small too"}',
    ]
