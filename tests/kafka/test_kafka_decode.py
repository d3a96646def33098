"""Consumed Kafka messages decoded to Arrow in one call (``_core.decode_kafka``).

Every test produces real messages to the test broker with confluent-kafka, consumes them
with ``Consumer.consume(n, timeout)`` and decodes the returned lists.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka_support import Broker

from velostream import _core
from velostream.errors import ConfigError, DataError

SCHEMA = pa.schema([("symbol", pa.string()), ("price", pa.float64()), ("qty", pa.int64())])
EOF_CODE = -191  # KafkaError._PARTITION_EOF


def decoder(schema: pa.Schema = SCHEMA) -> Any:
    return _core.JsonDecoder(schema)


def produce(broker: Broker, topic: str, messages: list[dict[str, Any]]) -> None:
    """Produce ``messages`` (keyword arguments of ``Producer.produce``) in order."""
    producer = Producer(broker.client_config())
    for message in messages:
        producer.produce(topic, **message)
    assert producer.flush(10) == 0


def consume(
    broker: Broker,
    topic: str,
    count: int,
    partitions: int = 1,
    *,
    events: int = 0,
    start: int = 0,
    **extra: Any,
) -> list[Message]:
    """Every message ``consume()`` returns until ``count`` data messages and ``events``
    error messages (partition EOFs) were seen, in the order the client returned them."""
    consumer = Consumer(broker.consumer_config(**extra))
    consumer.assign([TopicPartition(topic, p, start) for p in range(partitions)])
    out: list[Message] = []
    try:
        for _ in range(100):
            out.extend(consumer.consume(1000, 0.2))
            errors = sum(m.error() is not None for m in out)
            if len(out) - errors >= count and errors >= events:
                break
    finally:
        consumer.close()
    assert len(out) - sum(m.error() is not None for m in out) == count
    return out


def rows(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    return batch.to_pylist()


def test_values_partitions_and_offsets_are_exact(kafka_broker: Broker) -> None:
    topic = kafka_broker.create_topic()
    trades = [{"symbol": f"S{i}", "price": i + 0.5, "qty": i} for i in range(10)]
    produce(kafka_broker, topic, [{"value": json.dumps(t).encode()} for t in trades])
    messages = consume(kafka_broker, topic, 10)
    batch, bad, positions, events, counts = _core.decode_kafka(decoder(), messages)
    assert batch.schema.names == ["symbol", "price", "qty", "_partition", "_offset"]
    assert batch.schema.field("_partition").type == pa.int32()
    assert batch.schema.field("_offset").type == pa.int64()
    assert rows(batch) == [{**t, "_partition": 0, "_offset": i} for i, t in enumerate(trades)]
    assert (bad, events) == ([], [])
    assert positions == [(topic, 0, 0, 9, 10)]
    total = sum(len(m.value()) for m in messages)
    assert counts == {"messages": 10, "tombstones": 0, "beyond_limit": 0, "bytes": total}


def test_each_metadata_column(kafka_broker: Broker) -> None:
    topic = kafka_broker.create_topic()
    produce(
        kafka_broker,
        topic,
        [
            {
                "value": b'{"symbol": "A"}',
                "key": b"k\xff",
                "timestamp": 1_700_000_000_123,
                "headers": [("h", b"v"), ("bin", b"\xff\xfe"), ("h", b"w"), ("none", None)],
            },
            {"value": b'{"symbol": "B"}', "timestamp": 1_700_000_000_456},
        ],
    )
    messages = consume(kafka_broker, topic, 2)
    # Asked for in any order, appended in one order.
    names = ["_headers", "_kafka_timestamp", "_topic", "_key"]
    batch, bad, *_ = _core.decode_kafka(decoder(), messages, metadata=names)
    assert bad == []
    assert batch.schema.names[3:] == [
        "_partition",
        "_offset",
        "_topic",
        "_key",
        "_kafka_timestamp",
        "_headers",
    ]
    types = {f.name: (f.type, f.nullable) for f in batch.schema}
    assert types["_topic"] == (pa.string(), False)
    assert types["_key"] == (pa.binary(), True)
    assert types["_kafka_timestamp"] == (pa.int64(), True)
    assert types["_headers"] == (pa.string(), True)
    got = rows(batch)
    assert [r["_topic"] for r in got] == [topic, topic]
    assert [r["_key"] for r in got] == [b"k\xff", None]
    assert [r["_kafka_timestamp"] for r in got] == [1_700_000_000_123, 1_700_000_000_456]
    # Every header in order (a repeated name twice), non-UTF-8 bytes as U+FFFD.
    assert got[0]["_headers"] == '{"h":"v","bin":"\ufffd\ufffd","h":"w","none":null}'
    assert json.loads(got[0]["_headers"]) == {"h": "w", "bin": "\ufffd\ufffd", "none": None}
    assert got[1]["_headers"] is None
    # Only what is asked for.
    batch, *_ = _core.decode_kafka(decoder(), messages, metadata=("_key",))
    assert batch.schema.names[3:] == ["_partition", "_offset", "_key"]


def test_unknown_metadata_and_clashing_field_names_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"_partition_id.*_topic, _key, _kafka_timestamp") as info:
        _core.decode_kafka(decoder(), [], metadata=["_topic", "_partition_id"])
    assert info.value.value == "_partition_id"
    assert info.value.allowed == ["_topic", "_key", "_kafka_timestamp", "_headers"]
    clash = decoder(pa.schema([("_offset", pa.int64())]))
    with pytest.raises(DataError, match='"_offset"'):
        _core.decode_kafka(clash, [])
    clash = decoder(pa.schema([("_key", pa.string())]))
    _core.decode_kafka(clash, [])  # not asked for: no clash
    with pytest.raises(DataError, match='"_key"'):
        _core.decode_kafka(clash, [], metadata=["_key"])


def test_objects_that_are_not_messages_are_named(kafka_broker: Broker) -> None:
    topic = kafka_broker.create_topic()
    produce(kafka_broker, topic, [{"value": b'{"qty": 1}'}])
    messages = consume(kafka_broker, topic, 1)
    with pytest.raises(
        DataError, match=r"messages\[1\] is not a confluent_kafka.Message: its type is bytes"
    ):
        _core.decode_kafka(decoder(), [messages[0], b'{"qty": 2}'])
    with pytest.raises(DataError, match="JsonDecoder"):
        _core.decode_kafka(SCHEMA, messages)
    with pytest.raises(DataError, match="list"):
        _core.decode_kafka(decoder(), tuple(messages))


def test_limits_tombstones_and_empty_values(kafka_broker: Broker) -> None:
    topic = kafka_broker.create_topic()
    values: list[bytes | None] = [b'{"qty": 0}', None, b"", b" \t ", b'{"qty": 4}']
    values += [b'{"qty": %d}' % i for i in range(5, 10)]
    produce(kafka_broker, topic, [{"value": v} for v in values])
    messages = consume(kafka_broker, topic, 10)
    batch, bad, positions, _, counts = _core.decode_kafka(
        decoder(), messages, limits={(topic, 0): 7, ("other", 0): 0}
    )
    assert batch.column("_offset").to_pylist() == [0, 4, 5, 6]
    assert batch.column("qty").to_pylist() == [0, 4, 5, 6]
    assert [(b[2], b[3], b[4]) for b in bad] == [
        (2, "empty message", b""),
        (3, "empty message", b" \t "),
    ]
    assert positions == [(topic, 0, 0, 6, 7)]
    assert counts["messages"] == 7
    assert counts["tombstones"] == 1
    assert counts["beyond_limit"] == 3


def test_newlines_are_whitespace_outside_strings_and_bad_inside(kafka_broker: Broker) -> None:
    topic = kafka_broker.create_topic()
    values = [
        b'{"symbol":\n"A",\r\n"qty":\r1}\n',
        b'{"symbol": "B\nC", "qty": 2}',
        b'{"symbol": "D\rE"}',
        b'{"symbol": "F", "qty": 3}',
    ]
    produce(kafka_broker, topic, [{"value": v} for v in values])
    messages = consume(kafka_broker, topic, 4)
    batch, bad, *_ = _core.decode_kafka(decoder(), messages)
    assert [(r["symbol"], r["qty"], r["_offset"]) for r in rows(batch)] == [
        ("A", 1, 0),
        ("F", 3, 3),
    ]
    reason = "invalid JSON: raw control character in a string"
    assert [(b[2], b[3], b[4]) for b in bad] == [(1, reason, values[1]), (2, reason, values[2])]


def test_text_and_json_errors_and_wrong_types_are_bad_records(kafka_broker: Broker) -> None:
    topic = kafka_broker.create_topic()
    values = [
        b'{"symbol": "\xff"}',
        b'{"symbol": "a\x00b"}',
        b'{"symbol": ',
        b"not json",
        b"[1, 2]",
        b'{"qty": "abc"}',
        b'{"price": true}',
        b'{"qty": 1} {"qty": 2}',
        b'{"symbol": "ok", "qty": 9}',
    ]
    produce(kafka_broker, topic, [{"value": v} for v in values])
    messages = consume(kafka_broker, topic, len(values))
    batch, bad, *_ = _core.decode_kafka(decoder(), messages)
    assert rows(batch) == [{"symbol": "ok", "price": None, "qty": 9, "_partition": 0, "_offset": 8}]
    assert [b[2] for b in bad] == list(range(8))
    assert all(b[:2] == (topic, 0) for b in bad)
    assert [b[4] for b in bad] == values[:8]
    reasons = [b[3] for b in bad]
    assert "invalid UTF-8" in reasons[0]
    assert "NUL byte" in reasons[1]
    assert all(r.startswith("invalid JSON") for r in reasons[2:4])
    assert reasons[4] == "not a JSON object: [1, 2]"
    assert "2 JSON values on 1 line" in reasons[7]
    # A value that does not fit its column names the field and the value.
    assert bad[5][5:] == ("qty", "abc")
    assert bad[6][5:] == ("price", "true")
    assert "qty" in reasons[5]
    assert all(b[5:] == (None, None) for b in bad[:5])


def test_partition_eof_is_an_event(kafka_broker: Broker) -> None:
    topic = kafka_broker.create_topic()
    produce(kafka_broker, topic, [{"value": b'{"qty": %d}' % i} for i in range(3)])
    messages = consume(kafka_broker, topic, 3, events=1, **{"enable.partition.eof": True})
    batch, bad, positions, events, counts = _core.decode_kafka(decoder(), messages)
    assert batch.column("qty").to_pylist() == [0, 1, 2]
    assert bad == []
    assert len(events) >= 1
    topic_, partition, offset, code, text = events[-1]
    assert (topic_, partition, offset, code) == (topic, 0, 3, EOF_CODE)
    assert "end of partition" in text.lower()
    assert positions == [(topic, 0, 0, 2, 3)]
    assert counts["messages"] == 3


def test_positions_per_partition_in_first_seen_order(kafka_broker: Broker) -> None:
    topic = kafka_broker.create_topic(partitions=3)
    sizes = {0: 3, 1: 5, 2: 2}
    produce(
        kafka_broker,
        topic,
        [
            {"value": b'{"symbol": "p%d", "qty": %d}' % (p, i), "partition": p}
            for p, n in sizes.items()
            for i in range(n)
        ],
    )
    messages = consume(kafka_broker, topic, 10, partitions=3)
    batch, bad, positions, _, counts = _core.decode_kafka(decoder(), messages)
    assert bad == []
    seen: list[int] = []
    for m in messages:
        if m.partition() not in seen:
            seen.append(m.partition())
    assert positions == [(topic, p, 0, sizes[p] - 1, sizes[p]) for p in seen]
    # Each row carries its message's partition and offset.
    assert [(r["_partition"], r["_offset"]) for r in rows(batch)] == [
        (m.partition(), m.offset()) for m in messages
    ]
    assert all(r["symbol"] == f"p{r['_partition']}" for r in rows(batch))
    assert all(r["qty"] == r["_offset"] for r in rows(batch))
    assert counts["messages"] == 10


#: Characters of generated strings. Up to U+1FFFF: arrow-json 59.3.2 decodes the escaped
#: surrogate pairs of code points from U+20000 wrongly (``"\\ud840\\udc00"`` reads as
#: U+10000, not U+20000: ``char_from_surrogate_pair`` in its tape.rs), a bug of the JSON
#: decoder reported apart, not of the message-to-line mapping tested here.
TEXT = st.characters(max_codepoint=0x1FFFF)

#: Payloads: arbitrary bytes, JSON objects (some with raw newlines between tokens), and
#: near-misses of JSON, or a tombstone.
JSON_OBJECTS = st.fixed_dictionaries(
    {},
    optional={
        "a": st.one_of(st.integers(-(2**63), 2**63 - 1), st.floats(), st.text(TEXT, max_size=5)),
        "s": st.one_of(st.none(), st.text(TEXT, max_size=8), st.integers()),
    },
).map(lambda d: json.dumps(d).encode())
PAYLOADS = st.one_of(
    st.none(),
    st.binary(max_size=24),
    JSON_OBJECTS,
    JSON_OBJECTS.map(lambda b: b.replace(b", ", b",\n").replace(b": ", b":\r\n")),
    st.tuples(JSON_OBJECTS, st.binary(max_size=4)).map(lambda t: t[0] + t[1]),
    st.tuples(JSON_OBJECTS, st.integers(0, 30)).map(lambda t: t[0][: t[1]]),
)


def test_arbitrary_payloads_map_to_their_messages(kafka_broker: Broker) -> None:
    """Whatever the values, every message is exactly one of: a good row, a bad record, a
    tombstone; each row and each bad record carries its own message's offset, key and
    bytes, and a good row holds what the payload says."""
    topic = kafka_broker.create_topic()
    producer = Producer(kafka_broker.client_config(**{"linger.ms": 0}))
    consumer = Consumer(kafka_broker.consumer_config())
    schema = pa.schema([("a", pa.int64()), ("s", pa.string())])
    next_offset = [0]

    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(st.lists(PAYLOADS, min_size=1, max_size=12))
    def check(payloads: list[bytes | None]) -> None:
        first = next_offset[0]
        for i, value in enumerate(payloads):
            producer.produce(topic, value=value, key=b"%d" % (first + i))
        assert producer.flush(10) == 0
        next_offset[0] = first + len(payloads)
        consumer.assign([TopicPartition(topic, 0, first)])
        messages: list[Message] = []
        for _ in range(100):
            messages.extend(consumer.consume(len(payloads) - len(messages), 0.2))
            if len(messages) == len(payloads):
                break
        assert [m.offset() for m in messages] == list(range(first, first + len(payloads)))
        by_offset = dict(zip(range(first, first + len(payloads)), payloads, strict=True))

        batch, bad, positions, events, counts = _core.decode_kafka(
            _core.JsonDecoder(schema), messages, metadata=["_key"]
        )
        good = rows(batch)
        tombstones = [o for o, v in by_offset.items() if v is None]
        assert len(good) + len(bad) + counts["tombstones"] == counts["messages"] == len(payloads)
        assert counts["tombstones"] == len(tombstones)
        assert counts["bytes"] == sum(len(v) for v in payloads if v is not None)
        assert events == []
        assert positions == [(topic, 0, first, first + len(payloads) - 1, len(payloads))]
        offsets = [r["_offset"] for r in good] + [b[2] for b in bad] + tombstones
        assert sorted(offsets) == list(range(first, first + len(payloads)))
        assert [r["_offset"] for r in good] == sorted(r["_offset"] for r in good)
        for record in bad:
            assert record[4] == by_offset[record[2]]
        for row in good:
            assert row["_key"] == b"%d" % row["_offset"]
            value = by_offset[row["_offset"]]
            assert value is not None
            # Python's json reads NaN and Infinity too; like Arrow's reader (strict=False),
            # control characters other than NUL, \n and \r inside strings.
            parsed = json.loads(value, strict=False)
            assert isinstance(parsed, dict)
            if isinstance(parsed.get("a"), int):
                assert row["a"] == parsed["a"]
            if isinstance(parsed.get("s"), str):
                assert row["s"] == parsed["s"]

    try:
        check()
    finally:
        consumer.close()
