"""The Kafka source: JSON messages of one or more topics as record batches (SPEC section 7).

Messages are consumed in batches with ``Consumer.consume(num_messages, timeout)``; the
whole batch of messages goes to Rust in one call (``_core.decode_kafka``), which takes the
payloads, partitions and offsets from the messages and decodes the JSON to Arrow with the
GIL released. No Python runs per message on this path.

Every batch comes with its *positions*: per (topic, partition), the first and last offset
it holds. The runtime commits a position only when every sink acknowledged every row
derived from it (:mod:`velostream.runtime.checkpoint`); the source itself never commits on
its own (``enable.auto.commit`` is off).

Columns: the JSON fields (declared with ``CREATE STREAM s (...)``, or inferred from the
first messages), then ``_partition`` (int32) and ``_offset`` (int64), then, when the query
reads them, ``_topic``, ``_key`` (bytes), ``_kafka_timestamp`` (epoch millis) and
``_headers`` (a JSON object as text). System columns are not part of ``SELECT *``.
Event time from the Kafka timestamp: ``'event.time.field' = '_kafka_timestamp'``.

Keys of ``<name>.`` (others go to librdkafka, which validates them):

- ``type = 'kafka_source'``; ``topic``: the topic, or several separated by commas
  (default: the connector's name); ``format = 'json'``;
- ``group.id`` (default ``velostream-<statement>``), ``auto.offset.reset`` (default
  ``earliest``), ``bootstrap.servers``, any librdkafka consumer key;
- ``topic.wait.timeout``: how long to wait for a topic that does not exist yet (default:
  fail at once), ``topic.retry.interval``: how often to look (default 1 s);
- ``batch.size``: messages per ``consume`` call (default 10000);
- ``schema.inference.rows``: messages whose JSON decides the inferred column types.

Bounded reading (``--until-end``, SPEC section 3): the source ends when each partition
reaches the high watermark it had when the source started; messages beyond it are left
for the next run (not read, not committed).
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from velostream import _core
from velostream.config import EVENT_TIME_KEYS, parse_duration_ms
from velostream.errors import ConfigError, SourceError, TopicNotFoundError, VelostreamError
from velostream.io import _codec
from velostream.io._kafka import checked_config
from velostream.io.bad_records import BadRecordPolicy

logger = logging.getLogger("velostream.io")

#: Keys of a Kafka source that are velostream's, not librdkafka's.
OWN_KEYS = (
    "type",
    "topic",
    "format",
    "config_file",
    "topic.wait.timeout",
    "topic.retry.interval",
    "batch.size",
    "schema.inference.rows",
    "key.fields",
    *EVENT_TIME_KEYS,
)

#: The metadata columns a Kafka source can add besides ``_partition`` and ``_offset``.
METADATA_COLUMNS = ("_topic", "_key", "_kafka_timestamp", "_headers")

#: Consumer settings of velostream, overridable by the connector's keys. Offsets are
#: committed by the runtime only (after the sinks acknowledged); fetching is not held
#: back by a full prefetch queue for a whole second (librdkafka's default backoff). A
#: member of a consumer group (a scaled-out statement, SPEC section 9) that dies gives
#: its partitions up after 10 s, not librdkafka's 45 s (as Kafka Streams' former
#: default); some brokers also hold a join for part of the session timeout.
CONSUMER_DEFAULTS: dict[str, Any] = {
    "auto.offset.reset": "earliest",
    "fetch.queue.backoff.ms": 1,
    "fetch.wait.max.ms": 100,
    "session.timeout.ms": 10_000,
    "heartbeat.interval.ms": 1_000,
}

#: Settings the runtime's commit protocol needs: not overridable.
CONSUMER_FIXED: dict[str, Any] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
}

#: How long one ``consume`` call waits for messages, seconds (also how often ``stop``
#: is looked at).
CONSUME_TIMEOUT = 0.1

#: How long one metadata request may take, seconds (then it is retried).
METADATA_TIMEOUT = 5.0

#: librdkafka's "partition EOF" event code.
_PARTITION_EOF = -191

#: Consumer errors that retrying cannot fix (others are retried by librdkafka).
_FATAL_CODES = (
    3,  # UNKNOWN_TOPIC_OR_PART: the topic was deleted
    29,  # TOPIC_AUTHORIZATION_FAILED
    30,  # GROUP_AUTHORIZATION_FAILED
    -150,  # _FATAL
)


@dataclass(frozen=True)
class PartitionHooks:
    """What a runtime keeping state per partition is told of the partitions it holds.

    Attributes:
        assigned: called with the (topic, partition) pairs given to this consumer,
            before any of their records is read; restores their state and returns the
            offsets to start them at (those it has no state for start at the group's
            committed offset, or per ``auto.offset.reset``).
        revoked: called before pairs are given up (a rebalance): returns once their
            state is checkpointed and their offsets committed.
        lost: called when pairs were taken away without a revocation (the consumer
            was out of the group): their state is dropped, nothing committed.
        group: join the consumer group (``subscribe``; partitions come and go with the
            rebalances), instead of reading every partition (``assign``).
    """

    assigned: Callable[[list[tuple[str, int]]], Mapping[tuple[str, int], int]]
    revoked: Callable[[list[tuple[str, int]]], None]
    lost: Callable[[list[tuple[str, int]]], None]
    group: bool = False


@dataclass(frozen=True)
class Position:
    """Offsets of one partition held by a batch: ``first`` to ``last`` inclusive."""

    topic: str
    partition: int
    first: int
    last: int


def consumer_config(
    name: str, properties: Mapping[str, str], *, group_id: str, until_end: bool = False
) -> dict[str, Any]:
    """The librdkafka settings of source ``name``, checked by the client.

    Raises:
        ConfigError: the client rejects a key or a value (naming it), or a setting the
            commit protocol needs is overridden.
    """
    from confluent_kafka import Consumer

    settings = {k: v for k, v in properties.items() if k not in OWN_KEYS}
    for key, value in CONSUMER_FIXED.items():
        if key in settings and str(settings[key]).lower() != str(value).lower():
            raise ConfigError(
                f"kafka source {name!r}: '{name}.{key}' cannot be changed: velostream commits "
                "offsets itself, once the sinks acknowledged the rows derived from them",
                key=f"{name}.{key}",
                value=settings[key],
            )
    config: dict[str, Any] = {"group.id": group_id, **CONSUMER_DEFAULTS, **settings}
    config.update(CONSUMER_FIXED)
    if until_end:
        config["enable.partition.eof"] = True
    return checked_config(name, "kafka_source", config, settings, Consumer)


#: Commit errors of a consumer outside the group while the group has members.
_MEMBERS_LEFT = (
    22,  # ILLEGAL_GENERATION
    25,  # UNKNOWN_MEMBER_ID
    27,  # REBALANCE_IN_PROGRESS
)


def _session_timeout(config: Mapping[str, Any]) -> float:
    """The group session timeout of a consumer's settings, seconds (librdkafka's 45 s)."""
    try:
        return float(config.get("session.timeout.ms", 45_000)) / 1000
    except (TypeError, ValueError):
        return 45.0


def _shown_keys(keys: Sequence[tuple[str, int]]) -> str:
    """(topic, partition) pairs as ``topic[0,1,2]`` for logs."""
    topics: dict[str, list[int]] = {}
    for topic, partition in keys:
        topics.setdefault(topic, []).append(partition)
    return ", ".join(f"{t}{sorted(ps)}" for t, ps in topics.items()) or "nothing"


def _once(call: Callable[[], Any], name: str) -> Any:
    """Run a call to the client once; its failure is a :class:`SourceError` naming ``name``."""
    try:
        return call()
    except VelostreamError:
        raise
    except Exception as exc:  # KafkaException, RuntimeError of a closed client
        raise SourceError(
            f"kafka source {name!r}: {type(exc).__name__}: {exc}", source=name, cause=str(exc)
        ) from exc


class KafkaSource:
    """Reads JSON messages from Kafka topics as record batches with their positions."""

    def __init__(
        self,
        name: str,
        properties: Mapping[str, str],
        *,
        group_id: str,
        bad_records: BadRecordPolicy | None = None,
        schema: pa.Schema | None = None,
        inference_rows: int = 1000,
        metadata: Sequence[str] = (),
        retry: Callable[[Callable[[], Any], str], Any] | None = None,
    ) -> None:
        """Check the settings of source ``name`` (keys relative to ``<name>.``).

        Nothing connects before :meth:`read`.

        Args:
            name: the connector name.
            properties: its keys without the ``<name>.`` prefix.
            group_id: the consumer group when ``group.id`` is not set.
            bad_records: the statement's bad-record policy (default: ``fail``).
            schema: the declared columns (exact types, no inference); None: inferred.
            inference_rows: messages used to infer the column types.
            metadata: the metadata columns the query reads (of :data:`METADATA_COLUMNS`).
            retry: runs a call to the broker, retrying transient failures (the
                statement's ``retry.*`` keys); default: once.

        Raises:
            ConfigError: a bad setting, a format other than json, an unknown metadata
                column.
        """
        fmt = properties.get("format", "json")
        if fmt != "json":
            raise ConfigError(
                f"kafka source {name!r} reads JSON messages: format {fmt!r} is not supported",
                key=f"{name}.format",
                value=fmt,
                allowed=("json",),
            )
        unknown = [m for m in metadata if m not in METADATA_COLUMNS]
        if unknown:
            raise ConfigError(
                f"kafka source {name!r}: no metadata column {unknown[0]!r}",
                key=f"{name}.type",
                allowed=METADATA_COLUMNS,
            )
        self.name = name
        topics = [t.strip() for t in properties.get("topic", name).split(",")]
        if not all(topics):
            raise ConfigError(
                f"kafka source {name!r}: '{name}.topic' = {properties.get('topic')!r} holds "
                "an empty topic name",
                key=f"{name}.topic",
                value=properties.get("topic"),
            )
        self.topics = list(dict.fromkeys(topics))
        self.properties = dict(properties)
        self.group_id = properties.get("group.id", group_id)
        wait = properties.get("topic.wait.timeout")
        self.wait_timeout_ms = parse_duration_ms(wait) if wait is not None else None
        self.retry_interval_ms = parse_duration_ms(properties.get("topic.retry.interval", "1s"))
        self.batch_size = int(properties.get("batch.size", "10000"))
        self.bad_records = bad_records if bad_records is not None else BadRecordPolicy("fail")
        self.schema = schema
        self.declared = schema is not None
        self.inference_rows = inference_rows
        # Several topics: `_topic` tells their partitions apart (for the watermark).
        wanted = {*metadata, *(["_topic"] if len(self.topics) > 1 else [])}
        self.metadata = tuple(m for m in METADATA_COLUMNS if m in wanted)
        self._config = consumer_config(name, properties, group_id=self.group_id)
        self._retry = retry or _once
        self._consumer: Any = None
        self._decoder: Any = _codec.JsonDecoder(schema) if schema is not None else None
        self._paused = False
        self._lock = threading.Lock()
        #: Commits asked by other threads, made by the reading thread (see commit()).
        self._requests: queue.SimpleQueue[
            tuple[dict[tuple[str, int], int], threading.Event, list[BaseException]]
        ] = queue.SimpleQueue()
        self._service_lock = threading.Lock()
        self._reading = False
        self._records = 0
        self._bad = 0
        self._tombstones = 0
        self._bytes = 0
        self._commits = 0
        self._pauses = 0
        #: (topic, partition) -> the next offset to read (after the last one read).
        self._next: dict[tuple[str, int], int] = {}
        #: (topic, partition) -> the high watermark seen last.
        self._high: dict[tuple[str, int], int] = {}
        #: (topic, partition) -> its high watermark when the source connected, for the
        #: partitions that had messages then (None before connecting).
        self._start_ends: dict[tuple[str, int], int] | None = None
        #: (topic, partition) -> the offset after the last message handed to the reader.
        self._delivered: dict[tuple[str, int], int] = {}
        #: Topic -> its partition count (once connected).
        self.partition_counts: dict[str, int] = {}
        self._hooks: PartitionHooks | None = None
        #: (topic, partition) pairs the consumer group gave this consumer.
        self._owned: set[tuple[str, int]] = set()
        self._cooperative = False
        #: A bounded group read: the partitions held that have not reached their end,
        #: and each one's end offset.
        self._bounded = False
        self._pending: set[tuple[str, int]] = set()
        self._ends: dict[tuple[str, int], int] = {}
        self._assigned_once = False
        #: An error raised in a rebalance callback, raised again by the reading loop.
        self._callback_error: BaseException | None = None
        self._rebalances = 0

    # ------------------------------------------------------------------ connecting

    def _wait_for_topics(self, consumer: Any, stop: threading.Event | None) -> dict[str, int]:
        """Topic -> partition count, once every topic exists (or the wait times out)."""
        deadline = (
            time.monotonic() + self.wait_timeout_ms / 1000
            if self.wait_timeout_ms is not None
            else None
        )
        while True:
            missing: list[str] = []
            found: dict[str, int] = {}
            for topic in self.topics:
                try:
                    metadata = self._retry(
                        functools.partial(consumer.list_topics, topic, timeout=METADATA_TIMEOUT),
                        self.name,
                    )
                except SourceError:
                    raise
                except Exception as exc:  # KafkaException: broker unreachable
                    raise SourceError(
                        f"kafka source {self.name!r}: cannot read the metadata of topic "
                        f"{topic!r} from {self._config.get('bootstrap.servers')}: {exc}",
                        source=self.name,
                        cause=str(exc),
                    ) from None
                info = metadata.topics.get(topic)
                if info is None or info.error is not None or not info.partitions:
                    missing.append(topic)
                else:
                    found[topic] = len(info.partitions)
            if not missing:
                return found
            if deadline is None or time.monotonic() >= deadline:
                if self.wait_timeout_ms is not None:
                    waited = (
                        f" after waiting {self.wait_timeout_ms / 1000:g} s "
                        f"('{self.name}.topic.wait.timeout')"
                    )
                else:
                    waited = f" (set '{self.name}.topic.wait.timeout' to wait for it)"
                raise TopicNotFoundError(
                    f"kafka source {self.name!r}: topic {missing[0]!r} does not exist{waited}",
                    source=self.name,
                    cause=f"unknown topic {missing[0]}",
                )
            logger.info(
                "kafka source %r: waiting for topic %r to be created", self.name, missing[0]
            )
            if stop is not None:
                if stop.wait(self.retry_interval_ms / 1000):
                    return {}
            else:
                time.sleep(self.retry_interval_ms / 1000)

    def _connect(
        self, until_end: bool, stop: threading.Event | None
    ) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        """Create the consumer and assign every partition.

        Returns:
            Every assigned (topic, partition), and those with messages to read now (by
            the high watermarks the broker lists).
        """
        from confluent_kafka import Consumer, TopicPartition

        config = dict(self._config)
        if until_end:
            config["enable.partition.eof"] = True
        consumer = Consumer(config)
        self._consumer = consumer
        partitions = self._wait_for_topics(consumer, stop)
        self.partition_counts = dict(partitions)
        assignment = [
            TopicPartition(topic, p) for topic, count in partitions.items() for p in range(count)
        ]
        waiting: list[tuple[str, int]] = []
        if assignment:
            found = self._retry(
                functools.partial(consumer.committed, assignment, timeout=METADATA_TIMEOUT),
                self.name,
            )
            committed = {(tp.topic, tp.partition): tp.offset for tp in found}
            if self._hooks is not None:
                # State restored from a changelog starts its partitions where it ends.
                restored = self._hooks.assigned([(tp.topic, tp.partition) for tp in assignment])
                committed.update(restored)
                assignment = [
                    TopicPartition(tp.topic, tp.partition, restored[(tp.topic, tp.partition)])
                    if (tp.topic, tp.partition) in restored
                    else tp
                    for tp in assignment
                ]
            reset = str(config.get("auto.offset.reset", "latest")).lower()
            for tp in assignment:
                low, high = self._retry(
                    functools.partial(consumer.get_watermark_offsets, tp, timeout=METADATA_TIMEOUT),
                    self.name,
                )
                key = (tp.topic, tp.partition)
                start = committed.get(key, -1001)
                if start < 0:
                    start = high if reset in ("latest", "largest", "end") else low
                self._next[key] = start
                self._high[key] = high
                if start < high:
                    waiting.append(key)
        self._start_ends = {key: self._high[key] for key in waiting}
        self._retry(functools.partial(consumer.assign, assignment), self.name)
        return [(tp.topic, tp.partition) for tp in assignment], waiting

    def caught_up(self) -> bool:
        """Whether every partition was handed on up to its high watermark at the start.

        The high watermarks are those seen when the source connected: a table's bulk
        load is then done (SPEC section 8).
        """
        ends = self._start_ends
        if ends is None:
            return False
        return all(self._delivered.get(key, 0) >= end for key, end in ends.items())

    # ------------------------------------------------------------------ reading

    def read(
        self,
        *,
        until_end: bool = True,
        stop: threading.Event | None = None,
        on_partitions: Callable[[list[tuple[str, int]]], None] | None = None,
        deferred: bool = False,
        hooks: PartitionHooks | None = None,
    ) -> Iterator[tuple[Any, list[Position]]]:
        """Yield ``(batch, positions)`` until ``stop`` or, bounded, the end offsets.

        A batch may be empty (every message bad, or tombstones): its positions still
        count as read, so they can be committed.

        Args:
            until_end: end at the high watermarks seen at the start (SPEC section 3).
            stop: when set, stop at the next ``consume`` call.
            on_partitions: told, once connected, the (topic, partition) pairs that hold
                messages to read, before the first batch (their watermarks must wait
                for them).
            deferred: yield, instead of each batch, a function that decodes it (with
                the GIL released, bad records handled): a runtime calls it in another
                thread, so that decoding overlaps the next ``consume``.
            hooks: a runtime keeping state per partition: told of the partitions
                assigned (before reading them) and revoked; with ``hooks.group`` the
                consumer joins its group (cooperative rebalancing by default) and
                reads the partitions the group gives it, not every partition;
                bounded, it ends once each partition it holds reached its end.

        Raises:
            SourceError: a topic does not exist (after the wait), the broker fails.
            DataError: a bad message under ``'error.strategy' = 'fail'``.
        """
        self._hooks = hooks
        self._reading = True
        try:
            yield from self._read(until_end, stop, on_partitions, deferred)
        finally:
            self._reading = False
            # Leaving the group at close revokes what is left: the runtime has made
            # its last checkpoint by then, nobody is told.
            self._hooks = None

    def _read(
        self,
        until_end: bool,
        stop: threading.Event | None,
        on_partitions: Callable[[list[tuple[str, int]]], None] | None,
        deferred: bool,
    ) -> Iterator[tuple[Any, list[Position]]]:
        if self._hooks is not None and self._hooks.group:
            yield from self._read_group(stop, deferred, until_end)
            return
        assigned, waiting = self._connect(until_end, stop)
        if on_partitions is not None and waiting:
            on_partitions(waiting)
        # Bounded: each partition's end is the high watermark of the first fetch answer
        # that reaches it (a partition-EOF event says it, or the fetch's cached high
        # watermark): the broker's listed offsets may lag behind the fetched ones.
        ends: dict[tuple[str, int], int] = {}
        pending = set(assigned)
        limits = ends if until_end else None
        if until_end and not pending:
            return
        consumer = self._consumer
        while stop is None or not stop.is_set():
            messages = self._retry(
                functools.partial(consumer.consume, self.batch_size, CONSUME_TIMEOUT),
                self.name,
            )
            self.service()
            if not messages:
                continue
            if self._decoder is None:
                self._infer(messages)
            read, events = _core.read_kafka(self._decoder, messages, self.metadata, limits)
            positions = read.positions
            for topic, partition, offset, code, text in events:
                if code == _PARTITION_EOF:
                    key = (topic or "", partition if partition is not None else -1)
                    if until_end and (offset or 0) >= ends.setdefault(key, offset or 0):
                        pending.discard(key)
                    continue
                self._event(topic, partition, code, text)
            out = []
            for topic, partition, first, last, _count in positions:
                out.append(Position(topic, partition, first, last))
                key = (topic, partition)
                self._next[key] = last + 1
                self._high[key] = self._fetched_high(key)
                if until_end:
                    if key not in ends:
                        ends[key] = max(last + 1, self._high[key])
                    if last + 1 >= ends[key]:
                        pending.discard(key)
            if out:
                decode = functools.partial(self._decode, read)
                yield (decode if deferred else decode()), out
                # Taken by the reader (queued for its statement): delivered.
                for position in out:
                    self._delivered[(position.topic, position.partition)] = position.last + 1
            if until_end and not pending:
                return

    # ------------------------------------------------------------------ consumer group

    def _read_group(
        self, stop: threading.Event | None, deferred: bool, until_end: bool
    ) -> Iterator[tuple[Any, list[Position]]]:
        """Read the partitions the consumer group assigns, as they come and go.

        Bounded (``until_end``): each partition assigned is read to the high watermark
        of the first fetch answer that reaches it (as :meth:`read` without a group), and
        the read ends once every partition held has reached its end. A process alone in
        its group holds every partition; several bounded processes share them.
        """
        from confluent_kafka import Consumer

        config = dict(self._config)
        config.setdefault("partition.assignment.strategy", "cooperative-sticky")
        if until_end:
            config["enable.partition.eof"] = True
        self._bounded = until_end
        self._ends = {}
        self._pending = set()
        self._assigned_once = False
        self._cooperative = "cooperative" in str(config["partition.assignment.strategy"])
        consumer = Consumer(config)
        self._consumer = consumer
        partitions = self._wait_for_topics(consumer, stop)
        if not partitions:
            return  # stopped while waiting for a topic
        self.partition_counts = dict(partitions)
        self._retry(
            functools.partial(
                consumer.subscribe,
                self.topics,
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            ),
            self.name,
        )
        ends = self._ends
        while stop is None or not stop.is_set():
            if until_end and self._assigned_once and not self._pending:
                return
            messages = self._retry(
                functools.partial(consumer.consume, self.batch_size, CONSUME_TIMEOUT),
                self.name,
            )
            self._raise_callback_error()
            self.service()
            if not messages:
                continue
            if self._decoder is None:
                self._infer(messages)
            limits = ends if until_end else None
            read, events = _core.read_kafka(self._decoder, messages, self.metadata, limits)
            for topic, partition, offset, code, text in events:
                if code == _PARTITION_EOF:
                    key = (topic or "", partition if partition is not None else -1)
                    if until_end and key in self._owned:
                        if (offset or 0) >= ends.setdefault(key, offset or 0):
                            self._pending.discard(key)
                    continue
                self._event(topic, partition, code, text)
            out = []
            for topic, partition, first, last, _count in read.positions:
                key = (topic, partition)
                if key not in self._owned:
                    continue  # revoked since it was fetched (not expected: kept safe)
                out.append(Position(topic, partition, first, last))
                self._next[key] = last + 1
                self._high[key] = self._fetched_high(key)
                if until_end:
                    if key not in ends:
                        ends[key] = max(last + 1, self._high[key])
                    if last + 1 >= ends[key]:
                        self._pending.discard(key)
            if out:
                decode = functools.partial(self._decode, read)
                yield (decode if deferred else decode()), out
                for position in out:
                    self._delivered[(position.topic, position.partition)] = position.last + 1

    def _raise_callback_error(self) -> None:
        error, self._callback_error = self._callback_error, None
        if error is not None:
            raise error

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        """Partitions given to this consumer: their state first, then their records."""
        from confluent_kafka import TopicPartition

        try:
            self._rebalances += 1
            keys = [(tp.topic, tp.partition) for tp in partitions]
            logger.info("kafka source %r: assigned %s", self.name, _shown_keys(keys))
            hooks = self._hooks
            restored = dict(hooks.assigned(keys)) if hooks is not None and keys else {}
            starts = [
                TopicPartition(tp.topic, tp.partition, restored[(tp.topic, tp.partition)])
                if (tp.topic, tp.partition) in restored
                else tp
                for tp in partitions
            ]
            for key in keys:
                self._owned.add(key)
                if key in restored:
                    self._next[key] = restored[key]
                if self._bounded:
                    self._pending.add(key)
            self._assigned_once = True
            if self._cooperative:
                consumer.incremental_assign(starts)
            else:
                consumer.assign(starts)
        except BaseException as exc:  # raised again by the reading loop
            self._callback_error = exc

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        """Partitions taken away by a rebalance: checkpointed before they go."""
        try:
            self._rebalances += 1
            keys = [(tp.topic, tp.partition) for tp in partitions]
            logger.info("kafka source %r: revoked %s", self.name, _shown_keys(keys))
            if self._hooks is not None and keys:
                self._hooks.revoked(keys)
            self._forget(keys)
        except BaseException as exc:
            self._callback_error = exc

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        """Partitions lost (this consumer fell out of the group): state dropped."""
        try:
            keys = [(tp.topic, tp.partition) for tp in partitions]
            logger.warning(
                "kafka source %r: lost %s (out of the group): their state is dropped and "
                "their records since the last commit will be read again by their new owner",
                self.name,
                _shown_keys(keys),
            )
            if self._hooks is not None and keys:
                self._hooks.lost(keys)
            self._forget(keys)
        except BaseException as exc:
            self._callback_error = exc

    def _forget(self, keys: list[tuple[str, int]]) -> None:
        for key in keys:
            self._owned.discard(key)
            self._pending.discard(key)
            self._ends.pop(key, None)
            self._next.pop(key, None)
            self._high.pop(key, None)
            self._delivered.pop(key, None)

    def assignment(self) -> list[tuple[str, int]]:
        """The (topic, partition) pairs read now (from values the reading thread keeps)."""
        return sorted(self._owned)

    def _decode(self, read: Any) -> pa.RecordBatch:
        """Decode messages read by :meth:`read` (GIL released), bad records handled."""
        batch, bad, _positions, counts = read.decode()
        self._bytes += counts["bytes"]
        self._tombstones += counts["tombstones"]
        self._records += batch.num_rows
        if bad:
            self._bad += len(bad)
            self.bad_records.handle(
                self.name,
                [
                    (f"topic {t} partition {p} offset {o}", reason, raw, field, value)
                    for t, p, o, reason, raw, field, value in bad
                ],
            )
        return batch

    def _fetched_high(self, key: tuple[str, int]) -> int:
        """The high watermark of a partition in the consumer's last fetch answer."""
        from confluent_kafka import TopicPartition

        try:
            _low, high = self._consumer.get_watermark_offsets(
                TopicPartition(key[0], key[1]), cached=True
            )
        except Exception:  # KafkaException: no fetch answer cached yet
            return -1
        return int(high)

    def _event(self, topic: str | None, partition: int | None, code: int, text: str) -> None:
        """A consumer error: fatal ones end the run, others are logged (librdkafka retries)."""
        if code in _FATAL_CODES:
            raise SourceError(
                f"kafka source {self.name!r}: topic {topic!r} partition {partition}: {text}",
                source=self.name,
                cause=text,
            )
        logger.warning(
            "kafka source %r: topic %r partition %s: %s (retried by the client)",
            self.name,
            topic,
            partition,
            text,
        )

    def _infer(self, messages: list[Any]) -> None:
        """Infer the column types from the JSON of the first messages."""
        sample: list[bytes] = []
        for message in messages:
            if message.error() is not None:
                continue
            value = message.value()
            if value:
                sample.append(value.replace(b"\n", b" ").replace(b"\r", b" "))
            if len(sample) >= self.inference_rows:
                break
        if not sample:
            return self._set_schema(pa.schema([]))
        schema, widenings = _codec.infer_json(b"\n".join(sample), self.inference_rows)
        for column, old, new, index, value in widenings:
            logger.warning(
                "kafka source %r: column %r widened from %s to %s by the value %r of message "
                "%d of the sample (types are inferred from the first %d messages; declare the "
                "column's type to read it exactly)",
                self.name,
                column,
                old,
                new,
                value,
                index + 1,
                self.inference_rows,
            )
        reserved = [f for f in schema.names if f in ("_partition", "_offset", *METADATA_COLUMNS)]
        for field in reserved:
            logger.warning(
                "kafka source %r: the JSON field %r is not read: the column of that name is "
                "the message's own metadata",
                self.name,
                field,
            )
            schema = schema.remove(schema.get_field_index(field))
        return self._set_schema(schema)

    def _set_schema(self, schema: pa.Schema) -> None:
        self.schema = schema
        self._decoder = _codec.JsonDecoder(schema)

    def batches(
        self, *, until_end: bool = True, stop: threading.Event | None = None
    ) -> Iterator[pa.RecordBatch]:
        """Yield the batches of :meth:`read` without their positions."""
        for batch, _positions in self.read(until_end=until_end, stop=stop):
            yield batch

    # ------------------------------------------------------------------ runtime hooks

    def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Commit ``offsets`` ((topic, partition) -> the next offset to read), synchronously.

        Callable from any thread. The client's consumer must not be called from two
        threads at once (a call waits while another thread is in ``consume``, and may
        starve), so while :meth:`read` runs, the commit is handed to the reading thread,
        which makes it between two ``consume`` calls (or while it waits for room in the
        runtime's queue, :meth:`service`), and this call waits for it.

        Raises:
            SourceError: the broker refused the commit.
        """
        if not offsets or self._consumer is None:
            return
        done = threading.Event()
        outcome: list[BaseException] = []
        self._requests.put((dict(offsets), done, outcome))
        while not done.wait(0.05):
            if not self._reading:
                self.service()  # nobody reads any more: the consumer is ours
        if outcome:
            raise outcome[0]

    def service(self) -> None:
        """Make the commits other threads asked for (called by the reading thread)."""
        with self._service_lock:
            while True:
                try:
                    offsets, done, outcome = self._requests.get_nowait()
                except queue.Empty:
                    return
                try:
                    self._commit_now(offsets)
                except BaseException as exc:
                    outcome.append(exc)
                finally:
                    done.set()

    def _commit_now(self, offsets: Mapping[tuple[str, int], int]) -> None:
        if self._consumer is None:
            return
        from confluent_kafka import KafkaException, TopicPartition

        partitions = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        # Reading every partition itself (not a member), the consumer may commit only
        # while the group has no member: one that was killed stays a member until its
        # session times out, so the commit waits that long for it to leave.
        patience = time.monotonic() + _session_timeout(self._config) + 5.0
        warned = False
        while True:
            try:
                self._consumer.commit(offsets=partitions, asynchronous=False)
                break
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                code = getattr(error, "code", lambda: None)()
                member = self._hooks is not None and self._hooks.group
                if member or code not in _MEMBERS_LEFT or time.monotonic() >= patience:
                    raise SourceError(
                        f"kafka source {self.name!r}: committing offsets failed: {exc}"
                        + (
                            f" (group {self.group_id!r} still has members: another process "
                            "of the application runs, or one was killed less than its "
                            "session.timeout.ms ago)"
                            if code in _MEMBERS_LEFT and not member
                            else ""
                        ),
                        source=self.name,
                        cause=str(exc),
                    ) from None
                if not warned:
                    logger.warning(
                        "kafka source %r: group %r still has members (a process killed "
                        "less than session.timeout.ms ago, or one still running): the "
                        "commit waits for them to leave",
                        self.name,
                        self.group_id,
                    )
                    warned = True
                time.sleep(0.5)
        self._commits += 1

    def pause(self) -> None:
        """Stop fetching (the runtime's queue is full): backpressure."""
        with self._lock:
            if self._consumer is not None and not self._paused:
                self._consumer.pause(self._consumer.assignment())
                self._paused = True
                self._pauses += 1

    def resume(self) -> None:
        """Fetch again."""
        with self._lock:
            if self._consumer is not None and self._paused:
                self._consumer.resume(self._consumer.assignment())
                self._paused = False

    def lag(self) -> int | None:
        """Messages behind the high watermarks of the last fetches (None before a read).

        From values the reading thread keeps (the consumer is not called here).
        """
        if not self._next:
            return None
        total = 0
        for key, position in list(self._next.items()):
            high = self._high.get(key, -1)
            if high >= 0:
                total += max(0, high - position)
        return total

    def describe(self) -> str:
        """One line for ``explain``."""
        return f"kafka_source topic {','.join(self.topics)} group {self.group_id} (format json)"

    def metrics(self) -> dict[str, int]:
        """Counters: records_read, bad_records, tombstones, bytes_read, commits, pauses."""
        return {
            "records_read": self._records,
            "bad_records": self._bad,
            "tombstones": self._tombstones,
            "bytes_read": self._bytes,
            "commits": self._commits,
            "pauses": self._pauses,
            "rebalances": self._rebalances,
        }

    def close(self) -> None:
        """Leave the group and close the consumer (idempotent)."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            consumer.close()
