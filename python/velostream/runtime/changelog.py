"""The state changelog: snapshots of each partition's state on a compacted Kafka topic.

Scale-out (SPEC section 9) keeps a statement's state per input partition. Each partition's
state is checkpointed as a *snapshot* (the bytes of the operators' snapshot) to partition
``p`` of a compacted topic ``<application.id>-<statement>-changelog``
(:func:`changelog_topic`), together with the input offsets it covers; a process that is
assigned input partition ``p`` restores the latest complete snapshot of changelog
partition ``p`` before processing anything (:meth:`StateChangelog.read`).

Message format
--------------
A snapshot of state ``S`` gets a fresh id (``uuid4().hex``) and is written to changelog
partition ``p`` as, in this order:

- chunk messages: key ``chunk/<id>/<i>`` (``i`` = 0, 1, ...), value the ``i``-th slice of
  ``S`` of at most ``chunk_bytes`` bytes (Kafka's default message limit is 1 MB, a state
  can be hundreds of MB); no chunk for an empty state;
- one header message, last: key ``head/<id>``, value a JSON object ``{"format":
  "velostream.state", "version": 1, "id", "partition", "chunks", "size", "crc32",
  "offsets": [[topic, partition, next offset], ...], "writer": "host/pid",
  "written_at": epoch seconds, "statement"}``. ``crc32`` is ``zlib.crc32`` of all of ``S``.

Messages of one partition reach the broker in the order they were produced (idempotent
producer, or one request in flight when idempotence is turned off), so a header is in the
log after every chunk of its snapshot. The header makes the snapshot complete: chunks
without their header (the writer died between them) are never restored.

Once *every* message of snapshot ``N`` is acknowledged, the keys of the snapshots ``N``
replaces (the previous snapshot of this writer, and every live key a :meth:`read` of the
partition found, including stale chunks of snapshots that never got a header) are deleted
with tombstones (key, null value), produced after ``N``'s header.

Why it is safe under compaction
-------------------------------
Compaction keeps the latest record of each *key*, in offset order. Every key holds a
snapshot id, so no record of one snapshot ever replaces a record of another: compaction
only removes what a tombstone deleted, and a tombstone is written only for a snapshot
older than one whose every message is already acknowledged. Hence, at any moment and
whatever compaction has removed, the partition still holds the latest fully acknowledged
snapshot, whole, and its header after its chunks. In particular:

- a later, smaller snapshot cannot pick up stale chunks of a larger earlier one (other
  keys: ``chunk/<N>/3`` is not ``chunk/<S>/3``); the header says how many chunks it has;
- a torn snapshot (the writer SIGKILLed between chunks and header, or a header acknowledged
  while a chunk failed) never deletes the previous one, whose header and chunks keep their
  own keys; its orphaned chunks are deleted after the next good snapshot of a writer that
  read the partition.

Chunk keys ``chunk-<i>`` with one ``head`` key would not be: a torn snapshot's chunk 0
would replace the previous snapshot's chunk 0 under compaction, and the only complete
snapshot would be lost.

Read algorithm
--------------
:meth:`StateChangelog.read` reads partition ``p`` forward from its beginning to its end,
the end being the partition-EOF event of a fetch (``enable.partition.eof``): listed
offsets alone are not trusted (the test broker, Tansu, returns stale ones). It keeps the
chunks of one snapshot being assembled (a chunk of another id starts a new one: the
previous was torn) and the latest complete snapshot. At a header whose id is the one
being assembled, with every chunk ``0..chunks-1`` present, the chunks are joined and
checked (``size``, ``crc32``); a good one becomes the latest complete snapshot. A header
with chunks missing, of a bad checksum, or unreadable is skipped with a warning naming the
topic, partition and offset: the previous complete snapshot wins. Memory is O(one
snapshot) (the one being assembled plus the latest complete one), not O(history); besides
that only the keys still live in the partition are kept, for the tombstones above.

Writers: one at a time per partition (the consumer-group assignment). A zombie writer
whose chunks interleave with the owner's makes snapshots incomplete (skipped), never
wrong; fencing it is the runtime's job.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from velostream.errors import ConfigError, InternalError, SinkError, SourceError
from velostream.io._kafka import CLIENT_LOGGER, checked_config

logger = logging.getLogger("velostream.runtime")

#: librdkafka's log lines of the changelog's clients. Their configuration is shared by a
#: producer, a consumer and an admin client, so librdkafka's "is a consumer property and
#: will be ignored by this producer instance" warnings are expected and dropped here.
_CLIENT_LOGGER = CLIENT_LOGGER.getChild("changelog")


class _SharedConfigNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "property and will be ignored by this" not in record.getMessage()


_CLIENT_LOGGER.addFilter(_SharedConfigNoise())

#: The header's ``format`` and ``version``.
FORMAT = "velostream.state"
VERSION = 1

#: Message keys: ``chunk/<id>/<i>`` and ``head/<id>``.
CHUNK_PREFIX = b"chunk/"
HEAD_PREFIX = b"head/"

#: Default size of a chunk message, bytes (Kafka's default message limit is 1 MB).
CHUNK_BYTES = 512 * 1024

#: librdkafka's default ``message.max.bytes`` (a chunk plus its key and framing must fit).
_MESSAGE_MAX_BYTES = 1_000_000
_MESSAGE_OVERHEAD = 1024

#: librdkafka's "partition EOF" event and "unknown topic or partition" error codes.
_PARTITION_EOF = -191
_UNKNOWN_TOPIC = 3

#: create_topics errors that are the settings' fault, not the broker's.
_CONFIG_CODES = (37, 38, 39, 40)  # INVALID_PARTITIONS, _REPLICATION_FACTOR, _ASSIGNMENT, _CONFIG
_TOPIC_ALREADY_EXISTS = 36

#: How long one ``consume`` call of :meth:`StateChangelog.read` waits, seconds.
_CONSUME_WAIT = 0.05
#: Messages asked of one ``consume`` call.
_CONSUME_BATCH = 256
#: How long ``write`` polls the producer when its local queue is full, seconds.
_QUEUE_WAIT = 0.05

#: Kafka topic names: at most 249 of these characters.
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")


def changelog_topic(application_id: str, statement: str) -> str:
    """The changelog topic of ``statement`` in application ``application_id``.

    Returns:
        ``<application.id>-<statement>-changelog``.

    Raises:
        ConfigError: the name is not a legal Kafka topic name (letters, digits, ``.``,
            ``_``, ``-``; at most 249 characters).
    """
    topic = f"{application_id}-{statement}-changelog"
    if not _TOPIC_NAME.fullmatch(topic):
        raise ConfigError(
            f"the state changelog topic {topic!r} of statement {statement!r} is not a legal "
            "Kafka topic name (letters, digits, '.', '_', '-'; at most 249 characters): "
            "choose an 'application.id' and statement names made of those",
            key="application.id",
            value=application_id,
        )
    return topic


@dataclass(frozen=True)
class StoredState:
    """The latest complete snapshot of one partition's state, as read from the changelog.

    Attributes:
        partition: the partition (of the input and of the changelog).
        offsets: (input topic, input partition) -> the next input offset after
            everything folded into ``state``.
        state: the state's bytes, as given to :meth:`StateChangelog.write`.
        written_at: when it was written, epoch seconds.
        writer: who wrote it (``host/pid``).
        size: ``len(state)``.
        messages: how many messages were read from the changelog partition to find it
            (the whole partition: the latest complete snapshot is known at its end).
    """

    partition: int
    offsets: dict[tuple[str, int], int]
    state: bytes = field(repr=False)
    written_at: float
    writer: str
    size: int
    messages: int


@dataclass
class _Pending:
    """A snapshot whose messages are not all acknowledged yet."""

    partition: int
    keys: list[bytes]
    #: Keys to delete once every message of this snapshot is acknowledged.
    retire: set[bytes]
    outstanding: int
    failed: bool = False


class _Corrupt(Exception):
    """A header that does not make a snapshot (internal to :meth:`StateChangelog.read`)."""


class StateChangelog:
    """Snapshots of each partition's state on a compacted changelog topic.

    Nothing connects before the first call. The producer, consumer and admin client share
    ``client_config``; each is created on first use. Methods may be called from several
    threads (reads are serialised; writes only share the producer).
    """

    def __init__(
        self,
        topic: str,
        client_config: Mapping[str, Any],
        *,
        statement: str,
        chunk_bytes: int = CHUNK_BYTES,
        replication_factor: int = -1,
        topic_config: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> None:
        """Check the settings; nothing connects.

        Args:
            topic: the changelog topic (:func:`changelog_topic`).
            client_config: librdkafka settings shared by the producer, the consumer and the
                admin client (at least ``bootstrap.servers``; security keys, ...).
            statement: the statement whose state this is (for messages and errors).
            chunk_bytes: the largest chunk message, bytes.
            replication_factor: of the topic :meth:`ensure` creates; -1: the broker's
                default.
            topic_config: more settings of the topic :meth:`ensure` creates
                (``cleanup.policy`` is always ``compact``).
            timeout: how long a request to the broker (metadata, topic creation) may take,
                and how long :meth:`read` waits for the broker to answer, seconds.

        Raises:
            ConfigError: the consumer rejects a setting (named ``<statement>.<key>``; the
                producer's are checked on the first write), or ``chunk_bytes`` is not
                positive or does not fit in ``message.max.bytes``.
        """
        from confluent_kafka import Consumer

        self.topic = topic
        self.statement = statement
        self.chunk_bytes = int(chunk_bytes)
        self.replication_factor = int(replication_factor)
        self.topic_config = {**(topic_config or {}), "cleanup.policy": "compact"}
        self.timeout = float(timeout)
        settings = dict(client_config)
        limit = int(settings.get("message.max.bytes", _MESSAGE_MAX_BYTES)) - _MESSAGE_OVERHEAD
        if not 0 < self.chunk_bytes <= limit:
            raise ConfigError(
                f"state changelog {topic!r}: chunk size {self.chunk_bytes} must be between 1 "
                f"and {limit} bytes (message.max.bytes less {_MESSAGE_OVERHEAD} of framing)",
                key="chunk_bytes",
                value=str(chunk_bytes),
            )
        # Never create the topic as a side effect (Tansu and many brokers create missing
        # topics on a producer's or admin client's metadata request, with the broker's
        # defaults: not compacted, any partition count). ensure() creates it.
        base = {**settings, "allow.auto.create.topics": False}
        producer: dict[str, Any] = {"linger.ms": 5, **base, "acks": "all"}
        if str(producer.get("enable.idempotence", "true")).lower() in ("false", "0"):
            # In order without idempotence: one request in flight.
            producer["max.in.flight.requests.per.connection"] = 1
        else:
            producer["enable.idempotence"] = True
        consumer: dict[str, Any] = {
            "fetch.wait.max.ms": 10,
            "fetch.queue.backoff.ms": 1,
            **base,
            "group.id": f"velostream-changelog-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
        # The consumer's settings are checked now (building one does not connect); the
        # producer's when it is built, on the first write (building one connects).
        self._settings = settings
        self._consumer_config = checked_config(
            statement,
            "state_changelog",
            consumer,
            settings,
            lambda config: Consumer({**config, "logger": _CLIENT_LOGGER}),
        )
        self._producer_config = producer
        self._admin_config = {**base}
        for config in (self._producer_config, self._consumer_config, self._admin_config):
            config["logger"] = _CLIENT_LOGGER
        self._producer_config["error_cb"] = self._on_error
        self._writer = f"{socket.gethostname()}/{os.getpid()}"
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._producer: Any = None
        self._consumer: Any = None
        self._admin: Any = None
        self._closed = False
        self._errors: list[str] = []
        #: partition -> keys to delete once the partition's next snapshot is acknowledged.
        self._retire: dict[int, set[bytes]] = {}
        #: (partition, key) tombstones to produce (their snapshot was replaced).
        self._tombstones: list[tuple[int, bytes]] = []
        self._snapshots_written = 0
        self._bytes_written = 0
        self._snapshots_acknowledged = 0
        self._tombstones_written = 0
        self._snapshots_read = 0
        self._bytes_read = 0
        self._messages_read = 0
        self._skipped = 0

    # ------------------------------------------------------------------ clients

    def _check_open(self) -> None:
        if self._closed:
            raise InternalError(
                f"state changelog {self.topic!r} used after close()",
                component="state changelog",
                usable=False,
            )

    def _build(self, client: Any, config: dict[str, Any]) -> Any:
        """A client of ``config``; a setting it refuses is a ConfigError naming the key."""
        built: list[Any] = []
        # checked_config maps a refused setting to a ConfigError; the client it builds is
        # kept (the callable returns None, so checked_config does not close it).
        checked_config(
            self.statement,
            "state_changelog",
            dict(config),
            self._settings,
            lambda checked: built.append(client({**checked, "logger": _CLIENT_LOGGER})),
        )
        return built[0]

    def _get_producer(self) -> Any:
        from confluent_kafka import Producer

        self._check_open()
        with self._lock:
            if self._producer is None:
                self._producer = self._build(Producer, self._producer_config)
            return self._producer

    def _get_admin(self) -> Any:
        from confluent_kafka.admin import AdminClient

        self._check_open()
        with self._lock:
            if self._admin is None:
                self._admin = self._build(AdminClient, self._admin_config)
            return self._admin

    def _get_consumer(self) -> Any:
        from confluent_kafka import Consumer

        self._check_open()
        if self._consumer is None:  # under _read_lock
            self._consumer = Consumer(self._consumer_config)
        return self._consumer

    def _partition_count(self, client: Any, error: type[SinkError | SourceError]) -> int | None:
        """The topic's partition count, None when it does not exist."""
        try:
            metadata = client.list_topics(self.topic, timeout=self.timeout)
        except Exception as exc:  # KafkaException: broker unreachable
            raise self._error(
                error,
                f"cannot read the metadata of topic {self.topic!r} from "
                f"{self._admin_config.get('bootstrap.servers')}: {exc}",
                str(exc),
            ) from None
        info = metadata.topics.get(self.topic)
        if info is None:
            return None
        if info.error is not None:
            if info.error.code() == _UNKNOWN_TOPIC:
                return None
            if not info.partitions:  # not authorised, ...: not "missing"
                raise self._error(
                    error, f"metadata of topic {self.topic!r}: {info.error}", str(info.error)
                )
            # Partitions listed with a transient error (a leader being elected): it exists.
        return len(info.partitions) or None

    def _error(
        self, kind: type[SinkError | SourceError], text: str, cause: str | None = None
    ) -> SinkError | SourceError:
        message = f"state changelog of statement {self.statement!r}: {text}"
        if kind is SourceError:
            return SourceError(message, source=self.topic, cause=cause)
        return SinkError(message, sink=self.topic, cause=cause)

    # ------------------------------------------------------------------ topic

    def ensure(self, partitions: int) -> None:
        """Create the topic if it is missing: compacted, ``partitions`` partitions.

        The state of input partition ``p`` lives in changelog partition ``p``: an existing
        topic needs at least ``partitions`` partitions (more are fine). A topic created by
        another process at the same time is fine.

        Raises:
            ConfigError: the topic exists with fewer partitions, or is not compacted, or
                the broker refuses the topic's settings (partition count, replication
                factor, ``topic_config``), or the admin client a setting.
            SinkError: the broker is unreachable or refuses to create the topic.
        """
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import NewTopic

        if not isinstance(partitions, int) or partitions < 1:
            raise InternalError(
                f"state changelog {self.topic!r}: {partitions!r} is not a partition count",
                component="state changelog",
                usable=True,
            )
        admin = self._get_admin()
        existing = self._partition_count(admin, SinkError)
        if existing is None:
            new = NewTopic(
                self.topic,
                num_partitions=partitions,
                replication_factor=self.replication_factor,
                config=dict(self.topic_config),
            )
            try:
                for future in admin.create_topics(
                    [new], operation_timeout=self.timeout, request_timeout=self.timeout
                ).values():
                    future.result(timeout=self.timeout + 5)
            except KafkaException as exc:
                error: Any = exc.args[0] if exc.args else None
                code = error.code() if hasattr(error, "code") else None
                if code in _CONFIG_CODES:
                    key, value = {
                        37: ("partitions", partitions),
                        40: ("topic_config", self.topic_config),
                    }.get(code or 0, ("replication_factor", self.replication_factor))
                    raise ConfigError(
                        f"state changelog of statement {self.statement!r}: the broker refuses "
                        f"to create topic {self.topic!r} with {partitions} partitions, "
                        f"replication factor {self.replication_factor} and settings "
                        f"{self.topic_config}: {exc}",
                        key=key,
                        value=str(value),
                    ) from None
                if code != _TOPIC_ALREADY_EXISTS:
                    raise self._error(
                        SinkError, f"cannot create topic {self.topic!r}: {exc}", str(exc)
                    ) from None
                existing = self._partition_count(admin, SinkError)  # a racing process made it
            except Exception as exc:  # a timeout of the future
                raise self._error(
                    SinkError, f"cannot create topic {self.topic!r}: {exc!r}", repr(exc)
                ) from None
            else:
                logger.info(
                    "state changelog: created topic %r (compacted, %d partitions)",
                    self.topic,
                    partitions,
                )
                return
        if existing is not None and existing < partitions:
            raise ConfigError(
                f"state changelog topic {self.topic!r} has {existing} partitions, but "
                f"{partitions} are needed: the state of input partition p lives in changelog "
                f"partition p (delete the topic, or add partitions to it)",
                key="partitions",
                value=str(existing),
            )
        self._check_compacted(admin)

    def _check_compacted(self, admin: Any) -> None:
        """An existing topic must be compacted (a deleting one loses old snapshots)."""
        from confluent_kafka.admin import ConfigResource

        try:
            futures = admin.describe_configs(
                [ConfigResource("topic", self.topic)], request_timeout=self.timeout
            )
            configs = next(iter(futures.values())).result(timeout=self.timeout + 5)
        except Exception as exc:  # a broker without DescribeConfigs: not checked
            logger.debug("state changelog: cannot describe topic %r: %s", self.topic, exc)
            return
        entry = configs.get("cleanup.policy")
        if entry is None or entry.value is None:  # not reported by this broker
            logger.debug("state changelog: topic %r reports no cleanup.policy", self.topic)
            return
        policy = str(entry.value)
        policies = {p.strip() for p in policy.split(",")}
        if "compact" not in policies:
            raise ConfigError(
                f"state changelog topic {self.topic!r} exists with cleanup.policy="
                f"{policy}: it must be compact, or retention deletes the "
                "snapshots (delete the topic, or set cleanup.policy=compact on it)",
                key="cleanup.policy",
                value=policy,
                allowed=("compact",),
            )
        if "delete" in policies:
            logger.warning(
                "state changelog topic %r has cleanup.policy=%s: a partition whose state is "
                "not written again within retention.ms loses it",
                self.topic,
                policy,
            )

    # ------------------------------------------------------------------ writing

    def write(self, partition: int, offsets: Mapping[tuple[str, int], int], state: bytes) -> None:
        """Queue one snapshot of partition ``partition``'s state (asynchronous).

        Args:
            partition: the input partition, and the changelog partition written.
            offsets: (input topic, input partition) -> the next input offset after
                everything folded into ``state``.
            state: the state's bytes.

        Raises:
            ConfigError: the producer rejects a setting (on the first write).
            SinkError: the client refuses a message, or an earlier message was not
                delivered (each failure is raised once).
        """
        self._check_partition(partition)
        producer = self._get_producer()
        self._raise_errors()
        self._produce_tombstones(producer)
        data = bytes(state)
        snapshot = uuid.uuid4().hex
        size = len(data)
        chunks = (size + self.chunk_bytes - 1) // self.chunk_bytes
        header = {
            "format": FORMAT,
            "version": VERSION,
            "id": snapshot,
            "partition": partition,
            "chunks": chunks,
            "size": size,
            "crc32": zlib.crc32(data),
            "offsets": sorted([str(t), int(p), int(o)] for (t, p), o in offsets.items()),
            "writer": self._writer,
            "written_at": time.time(),
            "statement": self.statement,
        }
        keys = [b"%s%s/%d" % (CHUNK_PREFIX, snapshot.encode(), i) for i in range(chunks)]
        keys.append(HEAD_PREFIX + snapshot.encode())
        with self._lock:
            retire = self._retire.pop(partition, set())
            self._retire[partition] = set(keys)
            pending = _Pending(partition, keys, retire, outstanding=len(keys))
        done = functools.partial(self._on_snapshot_delivery, pending)
        produced = 0
        try:
            for i, key in enumerate(keys[:-1]):
                start = i * self.chunk_bytes
                chunk = data[start : start + self.chunk_bytes]
                self._produce(producer, partition, key, chunk, done)
                produced += 1
            self._produce(producer, partition, keys[-1], json.dumps(header).encode(), done)
            produced += 1
        except SinkError:
            with self._lock:  # the messages not produced will never be reported
                pending.failed = True
                pending.outstanding -= len(keys) - produced
                if not pending.outstanding:
                    self._settle(pending)
            raise
        producer.poll(0)
        with self._lock:
            self._snapshots_written += 1
            self._bytes_written += size

    def _check_partition(self, partition: int) -> None:
        if not isinstance(partition, int) or partition < 0:
            raise InternalError(
                f"state changelog {self.topic!r}: partition {partition!r} is not a partition "
                "number",
                component="state changelog",
                usable=True,
            )

    def _produce(
        self, producer: Any, partition: int, key: bytes, value: bytes | None, done: Any
    ) -> None:
        """Queue one message, waiting while the client's local queue is full."""
        from confluent_kafka import KafkaException

        while True:
            try:
                producer.produce(
                    self.topic, value=value, key=key, partition=partition, on_delivery=done
                )
                return
            except BufferError:  # the local queue is full: wait for deliveries
                producer.poll(_QUEUE_WAIT)
            except KafkaException as exc:
                detail = str(exc.args[0] if exc.args else exc)
                raise self._error(
                    SinkError,
                    f"the Kafka client refuses a message to topic {self.topic!r} "
                    f"partition {partition}: {detail}",
                    detail,
                ) from None

    def _on_snapshot_delivery(self, pending: _Pending, error: Any, message: Any) -> None:
        with self._lock:
            pending.outstanding -= 1
            if error is not None:
                if not pending.failed:
                    self._errors.append(
                        f"partition {pending.partition}: message {message.key()!r} not "
                        f"delivered: {error}"
                    )
                pending.failed = True
            if not pending.outstanding:
                self._settle(pending)

    def _settle(self, pending: _Pending) -> None:
        """A snapshot whose every message was reported (under ``_lock``)."""
        if pending.failed:
            # Its older snapshots stay (the latest complete one among them is what a read
            # finds); they and its own messages go after the next good snapshot.
            self._retire.setdefault(pending.partition, set()).update(pending.retire, pending.keys)
        else:
            self._snapshots_acknowledged += 1
            self._tombstones.extend((pending.partition, key) for key in pending.retire)

    def _on_tombstone_delivery(self, partition: int, error: Any, message: Any) -> None:
        if error is None:
            return
        with self._lock:
            self._errors.append(
                f"partition {partition}: tombstone {message.key()!r} not delivered: {error}"
            )
            self._retire.setdefault(partition, set()).add(message.key())

    def _on_error(self, error: Any) -> None:
        if error.fatal():
            with self._lock:
                self._errors.append(str(error))

    def _produce_tombstones(self, producer: Any) -> int:
        with self._lock:
            tombstones, self._tombstones = self._tombstones, []
        for partition, key in tombstones:
            done = functools.partial(self._on_tombstone_delivery, partition)
            self._produce(producer, partition, key, None, done)
        with self._lock:
            self._tombstones_written += len(tombstones)
        return len(tombstones)

    def _raise_errors(self) -> None:
        with self._lock:
            errors, self._errors = self._errors, []
        if errors:
            raise self._error(
                SinkError,
                f"{len(errors)} failure(s) writing topic {self.topic!r}: {errors[0]}",
                errors[0],
            )

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until every queued snapshot is acknowledged by the broker.

        Also produces, and waits for, the tombstones of the snapshots they replace.

        Raises:
            SinkError: a message was not delivered, or not acknowledged within
                ``timeout`` seconds.
        """
        producer = self._producer
        if producer is None:
            self._raise_errors()
            return
        deadline = time.monotonic() + timeout
        while True:
            self._produce_tombstones(producer)
            remaining = producer.flush(max(0.0, deadline - time.monotonic()))
            self._raise_errors()
            if remaining:
                raise self._error(
                    SinkError,
                    f"{remaining} message(s) to topic {self.topic!r} were not acknowledged "
                    f"within {timeout:g} s",
                    "timeout",
                )
            with self._lock:
                if not self._tombstones:
                    return

    # ------------------------------------------------------------------ reading

    def read(self, partition: int) -> StoredState | None:
        """The latest complete snapshot of changelog partition ``partition``.

        Reads the partition from its beginning to its end (its partition-EOF event).

        Returns:
            The snapshot, or None when the partition holds none (or the topic, or that
            partition, does not exist).

        Raises:
            SourceError: the broker is unreachable, or stops answering for ``timeout``
                seconds.
        """
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        self._check_partition(partition)
        with self._read_lock:
            consumer = self._get_consumer()
            count = self._partition_count(consumer, SourceError)
            if count is None or partition >= count:
                return None
            consumer.assign([TopicPartition(self.topic, partition, OFFSET_BEGINNING)])
            try:
                found, live, messages, size = self._scan(consumer, partition)
            finally:
                consumer.unassign()
        if found is not None:
            found = dataclasses.replace(found, messages=messages)
        with self._lock:
            self._retire.setdefault(partition, set()).update(live)
            self._messages_read += messages
            self._bytes_read += size
            if found is not None:
                self._snapshots_read += 1
        return found

    def _scan(
        self, consumer: Any, partition: int
    ) -> tuple[StoredState | None, set[bytes], int, int]:
        """Read the assigned partition to its end: (latest complete, live keys, messages, bytes)."""
        best: StoredState | None = None
        live: set[bytes] = set()
        building_id: bytes | None = None
        building: dict[int, bytes] = {}
        messages = 0
        size = 0
        last_progress = time.monotonic()
        while True:
            batch = consumer.consume(_CONSUME_BATCH, _CONSUME_WAIT)
            if not batch:
                if time.monotonic() - last_progress > self.timeout:
                    raise self._error(
                        SourceError,
                        f"topic {self.topic!r} partition {partition}: no answer from the "
                        f"broker within {self.timeout:g} s while reading the state",
                        "timeout",
                    )
                continue
            last_progress = time.monotonic()
            for message in batch:
                error = message.error()
                if error is not None:
                    if error.code() == _PARTITION_EOF:
                        return best, live, messages, size
                    if error.code() == _UNKNOWN_TOPIC:
                        raise self._error(
                            SourceError,
                            f"topic {self.topic!r} partition {partition}: {error}",
                            str(error),
                        )
                    logger.warning(
                        "state changelog topic %r partition %d: %s (retried by the client)",
                        self.topic,
                        partition,
                        error,
                    )
                    continue
                messages += 1
                key = message.key() or b""
                value = message.value()
                if value is None:  # a tombstone
                    live.discard(key)
                    continue
                size += len(value)
                if key.startswith(CHUNK_PREFIX):
                    snapshot, _, index = key[len(CHUNK_PREFIX) :].partition(b"/")
                    if not index.isdigit():
                        self._foreign(partition, message)
                        continue
                    live.add(key)
                    if snapshot != building_id:
                        # The snapshot being assembled got no header: it was torn.
                        building_id, building = snapshot, {}
                    building[int(index)] = value
                elif key.startswith(HEAD_PREFIX):
                    live.add(key)
                    snapshot = key[len(HEAD_PREFIX) :]
                    parts = building if snapshot == building_id else {}
                    try:
                        best = self._assemble(partition, value, parts)
                    except _Corrupt as exc:
                        self._skipped += 1
                        logger.warning(
                            "state changelog topic %r partition %d offset %d: snapshot %s "
                            "skipped: %s (the previous complete snapshot is used)",
                            self.topic,
                            partition,
                            message.offset(),
                            snapshot.decode(errors="replace"),
                            exc,
                        )
                    if snapshot == building_id:
                        building_id, building = None, {}
                else:
                    self._foreign(partition, message)

    def _foreign(self, partition: int, message: Any) -> None:
        logger.warning(
            "state changelog topic %r partition %d offset %d: message with key %r is not "
            "part of a state snapshot (ignored)",
            self.topic,
            partition,
            message.offset(),
            message.key(),
        )

    def _assemble(self, partition: int, value: bytes, chunks: dict[int, bytes]) -> StoredState:
        """The snapshot a header completes, checked.

        Raises:
            _Corrupt: the header is unreadable, or chunks are missing, or the checksum or
                the size does not match.
        """
        try:
            header = json.loads(value)
            if header.get("format") != FORMAT or header.get("version") != VERSION:
                raise _Corrupt(
                    f"format {header.get('format')!r} version {header.get('version')!r} is "
                    f"not {FORMAT!r} version {VERSION}"
                )
            count = int(header["chunks"])
            expected = int(header["size"])
            crc = int(header["crc32"])
            written_partition = int(header["partition"])
            offsets = {(str(t), int(p)): int(o) for t, p, o in header["offsets"]}
            written_at = float(header["written_at"])
            writer = str(header["writer"])
        except _Corrupt:
            raise
        except Exception as exc:  # bad JSON, missing or mistyped fields
            raise _Corrupt(f"unreadable header ({type(exc).__name__}: {exc})") from None
        if written_partition != partition:
            raise _Corrupt(f"its header is of partition {written_partition}")
        missing = [i for i in range(count) if i not in chunks]
        if missing:
            raise _Corrupt(
                f"{len(missing)} of its {count} chunks are missing (first: chunk {missing[0]})"
            )
        state = b"".join(chunks[i] for i in range(count))
        if len(state) != expected:
            raise _Corrupt(f"its chunks hold {len(state)} bytes, its header says {expected}")
        actual = zlib.crc32(state)
        if actual != crc:
            raise _Corrupt(f"checksum mismatch (crc32 {actual}, its header says {crc})")
        return StoredState(
            partition=partition,
            offsets=offsets,
            state=state,
            written_at=written_at,
            writer=writer,
            size=len(state),
            messages=0,  # set by read()
        )

    # ------------------------------------------------------------------ reporting

    def metrics(self) -> dict[str, int]:
        """Counters.

        ``snapshots_written`` and ``bytes_written`` (state bytes) count queued snapshots,
        ``snapshots_acknowledged`` those the broker acknowledged whole;
        ``snapshots_read`` counts reads that found a snapshot, ``bytes_read`` the message
        bytes they read, ``messages_read`` the messages; ``snapshots_skipped`` the
        corrupt snapshots skipped; ``tombstones_written`` the keys of replaced snapshots
        deleted.
        """
        with self._lock:
            return {
                "snapshots_written": self._snapshots_written,
                "bytes_written": self._bytes_written,
                "snapshots_acknowledged": self._snapshots_acknowledged,
                "snapshots_read": self._snapshots_read,
                "bytes_read": self._bytes_read,
                "messages_read": self._messages_read,
                "snapshots_skipped": self._skipped,
                "tombstones_written": self._tombstones_written,
            }

    def describe(self) -> str:
        """One line for ``explain``."""
        return (
            f"state changelog topic {self.topic} (compacted, one partition per input "
            f"partition, snapshots in chunks of {self.chunk_bytes} bytes)"
        )

    def close(self) -> None:
        """Close the producer, consumer and admin client (idempotent).

        Does not flush: messages not yet acknowledged are dropped (call :meth:`flush`
        first to keep them). A snapshot cut short this way is never read: its header
        comes last.
        """
        self._closed = True
        with self._lock:
            producer, self._producer = self._producer, None
            self._admin = None
        with self._read_lock:
            consumer, self._consumer = self._consumer, None
        if producer is not None:
            producer.purge()  # else closing waits for every queued message to time out
            producer.close()
        if consumer is not None:
            consumer.close()
