"""The Kafka sink: output batches as JSON messages on a topic (SPEC section 7).

Each batch is encoded to JSON in Rust in one call (the same encoder as the file sinks:
nulls written, non-finite doubles as ``NaN``/``Infinity``), then handed to
confluent-kafka's producer, one ``produce`` per message (the client's API). The message
key is the row's ``PRIMARY KEY`` fields: a single string field as its text, anything
else as a JSON object of the fields.

Nothing is lost quietly: a full local queue is waited out (the producer is polled until
it has room: backpressure, not loss), delivery failures are reported by librdkafka
(``delivery.report.only.error``, so successes cost nothing) and raise
:class:`~velostream.errors.SinkError` at the next write or flush, and ``flush`` waits
until every message is acknowledged by the broker.

Keys of ``<name>.``: ``type = 'kafka_sink'``, ``topic`` (default: the connector's name),
``format = 'json'``, and any librdkafka producer setting (``bootstrap.servers``, ...),
which the client validates: its rejection is a :class:`~velostream.errors.ConfigError`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from velostream.errors import ConfigError, SinkError
from velostream.io import _codec

#: Keys of a Kafka sink that are velostream's, not librdkafka's.
OWN_KEYS = ("type", "topic", "format")

#: Producer settings for throughput (batching), overridable by the connector's keys.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "linger.ms": 5,
    "batch.num.messages": 10_000,
    "queue.buffering.max.messages": 500_000,
    "queue.buffering.max.kbytes": 512 * 1024,
}

#: How long ``flush`` waits for the broker's acknowledgements, seconds.
FLUSH_TIMEOUT = 60.0


def producer_config(name: str, properties: Mapping[str, str]) -> dict[str, Any]:
    """The librdkafka settings of sink ``name``, checked by the client.

    Raises:
        ConfigError: the client rejects a key or a value (naming it).
    """
    from confluent_kafka import KafkaException, Producer

    settings = {k: v for k, v in properties.items() if k not in OWN_KEYS}
    config: dict[str, Any] = {**PRODUCER_DEFAULTS, **settings}
    config["delivery.report.only.error"] = True
    # librdkafka's own log lines go to logging, not to stderr.
    config["logger"] = logging.getLogger("velostream.kafka")
    try:
        Producer(config)  # the client validates every key and value here
    except (KafkaException, ValueError, TypeError) as exc:
        detail = str(exc.args[0] if exc.args else exc)
        bad = next((k for k in settings if f'"{k}"' in detail or f"'{k}'" in detail), None)
        raise ConfigError(
            f"kafka sink {name!r}: the Kafka client rejects its settings: {detail}",
            key=f"{name}.{bad}" if bad else f"{name}.type",
            value=settings.get(bad) if bad else "kafka_sink",
        ) from None
    return config


class KafkaSink:
    """Writes output batches to a Kafka topic as JSON messages."""

    def __init__(
        self,
        name: str,
        properties: Mapping[str, str],
        *,
        key_fields: Sequence[str] = (),
    ) -> None:
        """Create the producer of sink ``name`` (keys relative to ``<name>.``).

        Args:
            name: the connector name.
            properties: its keys without the ``<name>.`` prefix.
            key_fields: the output columns marked ``PRIMARY KEY`` (the message key).

        Raises:
            ConfigError: a bad setting, or a format other than json.
        """
        from confluent_kafka import Producer

        fmt = properties.get("format", "json")
        if fmt != "json":
            raise ConfigError(
                f"kafka sink {name!r} writes JSON messages: format {fmt!r} is not supported",
                key=f"{name}.format",
                value=fmt,
                allowed=("json",),
            )
        self.name = name
        self.topic = properties.get("topic", name)
        self.key_fields = tuple(key_fields)
        self._errors: list[str] = []
        config = producer_config(name, properties)
        config["error_cb"] = self._on_error
        config["on_delivery"] = self._on_delivery
        self._producer = Producer(config)
        self._records = 0
        self._batches = 0

    def _on_delivery(self, error: Any, message: Any) -> None:
        if error is not None:  # only failures are reported (delivery.report.only.error)
            self._errors.append(str(error))

    def _on_error(self, error: Any) -> None:
        if error.fatal():
            self._errors.append(str(error))

    def _check(self) -> None:
        if self._errors:
            first, count = self._errors[0], len(self._errors)
            raise SinkError(
                f"kafka sink {self.name!r}: {count} message(s) to topic {self.topic!r} were "
                f"not delivered: {first}",
                sink=self.name,
                cause=first,
            )

    def _keys(self, batch: pa.RecordBatch) -> list[bytes | None] | None:
        if not self.key_fields:
            return None
        if len(self.key_fields) == 1:
            column = batch.column(self.key_fields[0])
            if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
                # The UTF-8 bytes as they are (bytes objects made by Arrow, no Python loop).
                return column.cast(pa.binary()).to_pylist()
        keys = _codec.encode_json(batch.select(list(self.key_fields)))
        return list(keys.split(b"\n")[:-1])

    def write(self, batch: pa.RecordBatch) -> None:
        """Produce one message per row (waiting while the local queue is full)."""
        self._check()
        if batch.num_rows == 0:
            return
        values = _codec.encode_json(batch).split(b"\n")[:-1]
        keys = self._keys(batch)
        produce, poll = self._producer.produce, self._producer.poll
        for i, value in enumerate(values):
            key = keys[i] if keys is not None else None
            while True:
                try:
                    produce(self.topic, value=value, key=key)
                    break
                except BufferError:
                    poll(0.05)  # the local queue is full: let the broker catch up
        poll(0)
        self._records += len(values)
        self._batches += 1
        self._check()

    def flush(self) -> None:
        """Wait until the broker acknowledged every message."""
        remaining = self._producer.flush(FLUSH_TIMEOUT)
        self._check()
        if remaining:
            raise SinkError(
                f"kafka sink {self.name!r}: {remaining} message(s) to topic {self.topic!r} "
                f"were not acknowledged within {FLUSH_TIMEOUT:.0f} s",
                sink=self.name,
            )

    def close(self) -> None:
        """Flush (idempotent)."""
        self.flush()

    def describe(self) -> str:
        """One line for ``explain``."""
        return f"kafka_sink topic {self.topic} (format json)"

    def metrics(self) -> dict[str, int]:
        """Counters: records and batches written, delivery failures."""
        return {
            "records": self._records,
            "batches": self._batches,
            "delivery_errors": len(self._errors),
        }
