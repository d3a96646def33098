"""The per-partition state changelog (issue 13), against the test broker.

Snapshots are written, read back and checked on a real compacted topic. Compaction
itself is something the test broker does not do on its own schedule, so where a test
shows that the format survives it, :func:`compacted` applies Kafka's rule to a copy of
the partition: of each key only its latest record is kept, in offset order, and a key
whose latest record is a tombstone disappears (after ``delete.retention.ms``). The copy
is a real topic, read by the changelog like any other.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import time
import uuid
import zlib
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka_support import Broker

from velostream.errors import ConfigError, InternalError, SinkError, SourceError
from velostream.runtime.changelog import StateChangelog, StoredState, changelog_topic

Record = tuple[bytes | None, bytes | None]  # (key, value)


# ---------------------------------------------------------------------------- helpers


def fresh_topic() -> str:
    return f"app-{uuid.uuid4().hex[:10]}-stmt-changelog"


@pytest.fixture
def open_logs() -> Iterator[list[StateChangelog]]:
    made: list[StateChangelog] = []
    yield made
    for log in made:
        log.close()


@pytest.fixture
def changelog(kafka_broker: Broker, open_logs: list[StateChangelog]):
    """Make a StateChangelog on the test broker (closed at the end of the test)."""

    def make(topic: str | None = None, partitions: int | None = 3, **kwargs) -> StateChangelog:
        log = StateChangelog(
            topic or fresh_topic(), kafka_broker.client_config(), statement="stmt", **kwargs
        )
        open_logs.append(log)
        if partitions is not None:
            log.ensure(partitions)
        return log

    return make


def records(broker: Broker, topic: str, partition: int) -> list[Record]:
    """Every record of one partition, in offset order (to its partition EOF)."""
    consumer = Consumer(broker.consumer_config(**{"enable.partition.eof": True}))
    consumer.assign([TopicPartition(topic, partition, 0)])
    out: list[Record] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for message in consumer.consume(500, 0.1):
                if message.error() is not None:
                    assert message.error().code() == -191, message.error()
                    return out
                out.append((message.key(), message.value()))
        raise AssertionError(f"no end of partition {partition} of {topic} within 30 s")
    finally:
        consumer.close()


def produce(broker: Broker, topic: str, partition: int, messages: list[Record]) -> None:
    """Produce raw messages to one partition, in order, and wait for them."""
    producer = Producer(broker.client_config(**{"enable.idempotence": True}))
    failures: list[object] = []
    for key, value in messages:
        producer.produce(
            topic,
            value=value,
            key=key,
            partition=partition,
            on_delivery=lambda err, _msg: failures.append(err) if err else None,
        )
    assert producer.flush(30) == 0
    assert not failures


def compacted(broker: Broker, topic: str, partition: int) -> tuple[str, list[Record]]:
    """A new topic holding ``topic``'s partition as Kafka's compaction leaves it.

    The same partition number (a changelog partition must be read as itself): the new
    topic has ``partition + 1`` partitions, the others empty.
    """
    log = records(broker, topic, partition)
    latest = {key: index for index, (key, _value) in enumerate(log)}
    kept = [
        (key, value)
        for index, (key, value) in enumerate(log)
        if latest[key] == index and value is not None
    ]
    target = broker.create_topic(partitions=partition + 1)
    produce(broker, target, partition, kept)
    return target, kept


def snapshot_messages(
    partition: int,
    state: bytes,
    *,
    chunk: int,
    offsets: dict[tuple[str, int], int] | None = None,
    crc: int | None = None,
    chunks: int | None = None,
    header: bool = True,
    snapshot: str | None = None,
) -> list[Record]:
    """A snapshot in the changelog's message format, written by hand (see the module doc)."""
    snapshot = snapshot or uuid.uuid4().hex
    pieces = [state[i : i + chunk] for i in range(0, len(state), chunk)]
    out: list[Record] = [
        (f"chunk/{snapshot}/{i}".encode(), piece) for i, piece in enumerate(pieces)
    ]
    if header:
        head = {
            "format": "velostream.state",
            "version": 1,
            "id": snapshot,
            "partition": partition,
            "chunks": len(pieces) if chunks is None else chunks,
            "size": len(state),
            "crc32": zlib.crc32(state) if crc is None else crc,
            "offsets": [[t, p, o] for (t, p), o in (offsets or {}).items()],
            "writer": "by-hand/1",
            "written_at": 1.0,
            "statement": "stmt",
        }
        out.append((f"head/{snapshot}".encode(), json.dumps(head).encode()))
    return out


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------- naming


def test_the_changelog_topic_is_named_after_the_application_and_the_statement() -> None:
    assert changelog_topic("shop", "totals") == "shop-totals-changelog"
    with pytest.raises(ConfigError) as caught:
        changelog_topic("my shop", "totals")
    assert caught.value.key == "application.id"
    assert "'my shop-totals-changelog'" in str(caught.value)


def test_describe_names_the_topic(changelog) -> None:
    log = changelog("shop-totals-changelog", partitions=None)
    assert log.describe().startswith("state changelog topic shop-totals-changelog (compacted")


# ---------------------------------------------------------------------------- round trips


def test_a_snapshot_round_trips_with_its_offsets_and_writer(changelog) -> None:
    log = changelog()
    state = os.urandom(3000)
    offsets = {("orders", 0): 120, ("payments", 0): 7}
    before = time.time()
    log.write(0, offsets, state)
    log.flush()
    found = log.read(0)
    assert isinstance(found, StoredState)
    assert found.partition == 0
    assert found.state == state
    assert found.size == 3000
    assert found.offsets == offsets
    assert found.writer == f"{socket.gethostname()}/{os.getpid()}"
    assert before <= found.written_at <= time.time()
    assert found.messages == 2  # one chunk (of at most 512 KiB) and its header
    metrics = log.metrics()
    assert metrics["snapshots_written"] == 1
    assert metrics["bytes_written"] == 3000
    assert metrics["snapshots_read"] == 1
    assert metrics["bytes_read"] > 3000


def test_of_two_snapshots_the_later_smaller_one_is_read_not_stale_chunks(
    changelog, kafka_broker: Broker
) -> None:
    log = changelog(chunk_bytes=1000)
    first, second = os.urandom(5500), os.urandom(1500)
    log.write(1, {("in", 1): 10}, first)
    log.write(1, {("in", 1): 20}, second)
    log.flush()
    found = log.read(1)
    assert found is not None
    assert (found.state, found.offsets) == (second, {("in", 1): 20})
    # The same on the partition as compaction leaves it.
    target, kept = compacted(kafka_broker, log.topic, 1)
    assert len(kept) == 3  # the second snapshot's 2 chunks and header: the first was deleted
    again = changelog(target, partitions=None, chunk_bytes=1000).read(1)
    assert again is not None and again.state == second


def test_a_state_bigger_than_a_chunk_is_split_into_messages_of_at_most_chunk_bytes(
    changelog, kafka_broker: Broker
) -> None:
    log = changelog(chunk_bytes=1000)
    state = os.urandom(10_500)
    log.write(2, {("in", 2): 99}, state)
    log.flush()
    written = records(kafka_broker, log.topic, 2)
    chunks = [value for key, value in written if key.startswith(b"chunk/")]
    assert len(chunks) == 11
    assert all(value is not None and len(value) <= 1000 for value in chunks)
    assert written[-1][0].startswith(b"head/")  # the header comes last
    found = log.read(2)
    assert found is not None and found.state == state


def test_a_3_mb_state_round_trips_at_the_default_chunk_size(
    changelog, kafka_broker: Broker
) -> None:
    log = changelog()
    state = os.urandom(3 * 1024 * 1024 + 17)
    log.write(0, {("in", 0): 1}, state)
    log.flush()
    assert len(records(kafka_broker, log.topic, 0)) == 7 + 1  # 7 chunks of 512 KiB, header
    found = log.read(0)
    assert found is not None
    assert found.state == state
    assert found.messages == 8


def test_an_empty_state_is_a_snapshot(changelog) -> None:
    log = changelog()
    log.write(0, {("in", 0): 5}, b"big" * 1000)
    log.write(0, {("in", 0): 6}, b"")
    log.flush()
    found = log.read(0)
    assert found is not None
    assert (found.state, found.offsets) == (b"", {("in", 0): 6})


def test_partitions_are_independent(changelog) -> None:
    log = changelog(partitions=3)
    log.write(2, {("in", 2): 3}, b"state of partition two")
    log.flush()
    assert log.read(1) is None
    assert log.read(0) is None
    found = log.read(2)
    assert found is not None and found.state == b"state of partition two"
    log.write(1, {("in", 1): 4}, b"state of partition one")
    log.flush()
    assert log.read(1).state == b"state of partition one"  # type: ignore[union-attr]
    assert log.read(2).state == b"state of partition two"  # type: ignore[union-attr]


def test_another_process_restores_what_one_wrote(changelog) -> None:
    writer = changelog(chunk_bytes=100)
    state = os.urandom(1234)
    writer.write(0, {("in", 0): 77}, state)
    writer.flush()
    writer.close()
    reader = changelog(writer.topic, partitions=3, chunk_bytes=100)
    found = reader.read(0)
    assert found is not None and (found.state, found.offsets) == (state, {("in", 0): 77})


# ---------------------------------------------------------------------------- torn and corrupt


def test_a_torn_snapshot_at_the_tail_is_ignored_for_the_previous_complete_one(
    changelog, kafka_broker: Broker
) -> None:
    log = changelog(chunk_bytes=1000)
    good = os.urandom(2500)
    log.write(0, {("in", 0): 50}, good)
    log.flush()
    # A writer SIGKILLed between its chunks and its header: chunks 0 and 1, no header.
    torn = snapshot_messages(0, os.urandom(4000), chunk=1000, header=False)[:2]
    produce(kafka_broker, log.topic, 0, torn)
    found = log.read(0)
    assert found is not None
    assert (found.state, found.offsets) == (good, {("in", 0): 50})
    # Compaction does not lose it either: the torn chunks have keys of their own.
    target, _kept = compacted(kafka_broker, log.topic, 0)
    again = changelog(target, partitions=None).read(0)
    assert again is not None and again.state == good


def test_a_reader_that_writes_again_deletes_torn_and_replaced_snapshots(
    changelog, kafka_broker: Broker
) -> None:
    first = changelog(chunk_bytes=1000)
    first.write(0, {("in", 0): 1}, os.urandom(2500))
    first.flush()
    produce(
        kafka_broker,
        first.topic,
        0,
        snapshot_messages(0, os.urandom(3000), chunk=1000, header=False),
    )
    # The partition's next owner: restores, then checkpoints its own state.
    owner = changelog(first.topic, chunk_bytes=1000)
    assert owner.read(0) is not None
    latest = os.urandom(1500)
    owner.write(0, {("in", 0): 2}, latest)
    owner.flush()
    assert owner.metrics()["tombstones_written"] == 3 + 1 + 3  # old chunks, its head, torn
    _target, kept = compacted(kafka_broker, first.topic, 0)
    assert [key.split(b"/")[0] for key, _ in kept] == [b"chunk", b"chunk", b"head"]
    assert b"".join(value for key, value in kept[:2]) == latest  # type: ignore[misc]


def test_a_snapshot_with_a_bad_checksum_is_skipped_with_a_warning(
    changelog, kafka_broker: Broker, caplog
) -> None:
    log = changelog(chunk_bytes=1000)
    good = os.urandom(1800)
    log.write(1, {("in", 1): 9}, good)
    log.flush()
    bad = os.urandom(2200)
    produce(
        kafka_broker,
        log.topic,
        1,
        snapshot_messages(1, bad, chunk=1000, crc=zlib.crc32(bad) ^ 1, offsets={("in", 1): 10}),
    )
    header_offset = len(records(kafka_broker, log.topic, 1)) - 1
    with caplog.at_level(logging.WARNING, logger="velostream.runtime"):
        found = log.read(1)
    assert found is not None
    assert (found.state, found.offsets) == (good, {("in", 1): 9})
    warnings = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(warnings) == 1
    assert f"topic {log.topic!r} partition 1 offset {header_offset}" in warnings[0]
    assert "checksum mismatch" in warnings[0]
    assert log.metrics()["snapshots_skipped"] == 1


def test_a_snapshot_missing_a_chunk_is_skipped_with_a_warning(
    changelog, kafka_broker: Broker, caplog
) -> None:
    log = changelog(chunk_bytes=1000)
    good = os.urandom(900)
    log.write(0, {("in", 0): 3}, good)
    log.flush()
    messages = snapshot_messages(0, os.urandom(2500), chunk=1000)
    del messages[1]  # chunk 1 of 3 never arrived
    produce(kafka_broker, log.topic, 0, messages)
    with caplog.at_level(logging.WARNING, logger="velostream.runtime"):
        found = log.read(0)
    assert found is not None and found.state == good
    warnings = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(warnings) == 1
    assert "1 of its 3 chunks are missing (first: chunk 1)" in warnings[0]
    assert f"topic {log.topic!r} partition 0 offset 4" in warnings[0]  # 2 + chunks 0, 2


def test_an_unreadable_header_and_foreign_messages_are_skipped(
    changelog, kafka_broker: Broker, caplog
) -> None:
    log = changelog()
    log.write(0, {("in", 0): 3}, b"good")
    log.flush()
    produce(
        kafka_broker,
        log.topic,
        0,
        [(b"head/abc", b"{not json"), (b"someone else's", b"x"), (None, b"y")],
    )
    with caplog.at_level(logging.WARNING, logger="velostream.runtime"):
        found = log.read(0)
    assert found is not None and found.state == b"good"
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "unreadable header" in text
    assert "is not part of a state snapshot" in text


def test_a_failed_snapshot_leaves_the_previous_one_until_a_later_one_is_acknowledged(
    changelog, kafka_broker: Broker
) -> None:
    log = changelog(chunk_bytes=1000)
    good = os.urandom(1500)
    log.write(0, {("in", 0): 1}, good)
    log.flush()
    # A header the client refuses (larger than message.max.bytes): its chunks went out.
    huge = {(f"topic-{i:06d}", 0): i for i in range(40_000)}
    with pytest.raises(SinkError) as caught:
        log.write(0, huge, os.urandom(2500))
    assert "MSG_SIZE_TOO_LARGE" in str(caught.value.cause)
    log.flush()
    target, _kept = compacted(kafka_broker, log.topic, 0)
    restored = changelog(target, partitions=None).read(0)
    assert restored is not None and restored.state == good
    # The next good snapshot deletes both the good old one and the failed one's chunks.
    log.write(0, {("in", 0): 3}, b"latest")
    log.flush()
    _target, kept = compacted(kafka_broker, log.topic, 0)
    assert [key.split(b"/")[0] for key, _ in kept] == [b"chunk", b"head"]
    assert kept[0][1] == b"latest"


# ---------------------------------------------------------------------------- the topic


def test_ensure_creates_a_compacted_topic_and_is_idempotent(
    changelog, kafka_broker: Broker
) -> None:
    log = changelog(partitions=None)
    log.ensure(4)
    assert kafka_broker.partitions_of(log.topic) == 4
    admin = AdminClient(kafka_broker.client_config())
    configs = admin.describe_configs([ConfigResource("topic", log.topic)])
    config = next(iter(configs.values())).result(10)
    assert config["cleanup.policy"].value == "compact"
    log.ensure(4)
    log.ensure(2)  # more partitions than needed are fine
    assert kafka_broker.partitions_of(log.topic) == 4


def test_ensure_refuses_a_topic_with_fewer_partitions(changelog, kafka_broker: Broker) -> None:
    log = changelog(partitions=2)
    with pytest.raises(ConfigError) as caught:
        log.ensure(6)
    message = str(caught.value)
    assert log.topic in message
    assert "has 2 partitions, but 6 are needed" in message


def test_ensure_refuses_an_existing_topic_that_is_not_compacted(
    changelog, kafka_broker: Broker
) -> None:
    topic = fresh_topic()
    admin = AdminClient(kafka_broker.client_config())
    new = NewTopic(
        topic, num_partitions=3, replication_factor=1, config={"cleanup.policy": "delete"}
    )
    for future in admin.create_topics([new]).values():
        future.result(10)
    log = changelog(topic, partitions=None)
    with pytest.raises(ConfigError) as caught:
        log.ensure(3)
    assert caught.value.key == "cleanup.policy"
    assert "cleanup.policy=delete" in str(caught.value)


def test_reading_a_missing_topic_finds_nothing_and_creates_nothing(
    changelog, kafka_broker: Broker
) -> None:
    log = changelog(partitions=None)
    assert log.read(0) is None
    admin = AdminClient(kafka_broker.client_config())
    assert log.topic not in admin.list_topics(timeout=10).topics
    assert log.read(5) is None


def test_a_setting_the_client_rejects_is_a_config_error(kafka_broker: Broker) -> None:
    with pytest.raises(ConfigError) as caught:
        StateChangelog(
            fresh_topic(),
            {**kafka_broker.client_config(), "no.such.setting": "1"},
            statement="stmt",
        )
    assert caught.value.key == "stmt.no.such.setting"
    with pytest.raises(ConfigError) as caught:
        StateChangelog(fresh_topic(), kafka_broker.client_config(), statement="s", chunk_bytes=0)
    assert caught.value.key == "chunk_bytes"


# ---------------------------------------------------------------------------- failures


def test_a_write_to_an_unreachable_broker_fails_at_flush(open_logs) -> None:
    topic = fresh_topic()
    config = {"bootstrap.servers": f"127.0.0.1:{closed_port()}", "message.timeout.ms": 500}
    log = StateChangelog(topic, config, statement="stmt", timeout=1.0)
    open_logs.append(log)
    log.write(0, {("in", 0): 1}, b"state")
    with pytest.raises(SinkError) as caught:
        log.flush(timeout=20)
    assert caught.value.sink == topic
    assert "Message timed out" in str(caught.value.cause)
    log.flush(timeout=1)  # reported once; nothing is left
    with pytest.raises(SourceError) as read_error:
        log.read(0)
    assert read_error.value.source == topic
    assert topic in str(read_error.value)
    with pytest.raises(SinkError):
        log.ensure(1)


def test_close_does_not_wait_for_undelivered_snapshots(open_logs) -> None:
    config = {"bootstrap.servers": f"127.0.0.1:{closed_port()}", "message.timeout.ms": 60_000}
    log = StateChangelog(fresh_topic(), config, statement="stmt")
    log.write(0, {}, b"never delivered")
    started = time.monotonic()
    log.close()
    log.close()
    assert time.monotonic() - started < 5


# ---------------------------------------------------------------------------- property


@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_random_states_round_trip_at_random_chunk_sizes(changelog, data) -> None:
    # Random bytes of any size up to 20 KB (hypothesis' own binaries stay small).
    sized = st.builds(
        lambda size, seed: random.Random(seed).randbytes(size),
        st.integers(0, 20_000),
        st.integers(0, 2**32),
    )
    states = data.draw(
        st.lists(st.one_of(st.just(b""), st.binary(max_size=50), sized), min_size=1, max_size=3),
        label="states",
    )
    largest = max(len(s) for s in states)
    chunk = data.draw(st.integers(max(1, largest // 200), 5000), label="chunk_bytes")
    log = changelog(partitions=1, chunk_bytes=chunk)
    for number, state in enumerate(states):
        log.write(0, {("in", 0): number}, state)
    log.flush()
    found = log.read(0)
    assert found is not None
    assert found.state == states[-1]
    assert found.offsets == {("in", 0): len(states) - 1}


def test_processes_ensuring_the_same_topic_at_once_all_succeed(changelog) -> None:
    topic = fresh_topic()
    logs = [changelog(topic, partitions=None) for _ in range(3)]
    start = threading.Barrier(len(logs))
    failures: list[BaseException] = []

    def ensure(log: StateChangelog) -> None:
        start.wait()
        try:
            log.ensure(3)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=ensure, args=(log,)) for log in logs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert logs[0].read(0) is None


def test_a_snapshot_to_a_partition_the_topic_lacks_is_a_sink_error(changelog) -> None:
    log = changelog(partitions=2)
    log.write(0, {}, b"ok")
    log.flush()
    with pytest.raises(SinkError) as caught:
        log.write(5, {}, b"nowhere")
        log.flush(timeout=20)
    assert caught.value.sink == log.topic
    assert log.read(0).state == b"ok"  # type: ignore[union-attr]


def test_ensure_of_no_partitions_is_a_defect_of_the_caller(changelog) -> None:
    log = changelog(partitions=None)
    with pytest.raises(InternalError):
        log.ensure(0)
    with pytest.raises(InternalError):
        log.read(-1)
