"""The Kafka sink: output batches as JSON messages on a topic (SPEC section 7).

Each batch is encoded in Rust in one call (``encode_kafka``: the JSON encoder of the
file sinks, nulls written, non-finite doubles as ``NaN``/``Infinity``) into the message
list that confluent-kafka's ``Producer.produce_batch`` takes, and handed to the client in
one call: against the test broker about 1.25x the rate of one ``produce`` call per message
(1.30 M vs 1.04 M msgs/s, medians of 5 rounds of 1 M messages:
benches/kafka_produce_paths.py). The message key is the row's ``PRIMARY KEY``
fields: a single string field as its text, anything else as a JSON object of the fields.

Nothing is lost quietly: when the local queue is full, librdkafka refuses the rest of the
batch (each such message marked ``_QUEUE_FULL`` by the client); exactly those messages are
produced again, in order, after polling the producer (backpressure, not loss). A message
the client refuses for another reason (too large, ...) and every delivery failure (reported
by librdkafka with ``delivery.report.only.error``, so successes cost nothing) raise
:class:`~velostream.errors.SinkError` at the write or at the next write or flush, and
``flush`` waits until every message is acknowledged by the broker.

Keys of ``<name>.``: ``type = 'kafka_sink'``, ``topic`` (default: the connector's name),
``format = 'json'``, and any librdkafka producer setting (``bootstrap.servers``, ...),
which the client validates: its rejection is a :class:`~velostream.errors.ConfigError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from velostream.errors import ConfigError, SinkError
from velostream.io import _codec
from velostream.io._kafka import checked_config

#: Keys of a Kafka sink that are velostream's, not librdkafka's.
OWN_KEYS = ("type", "topic", "format", "config_file")

#: Producer settings for throughput (batching), overridable by the connector's keys.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "linger.ms": 5,
    "batch.num.messages": 10_000,
    "queue.buffering.max.messages": 500_000,
    "queue.buffering.max.kbytes": 512 * 1024,
}

#: How long ``flush`` waits for the broker's acknowledgements, seconds.
FLUSH_TIMEOUT = 60.0

#: How long to poll the producer before producing again what a full queue refused, seconds.
QUEUE_WAIT = 0.01


def producer_config(name: str, properties: Mapping[str, str]) -> dict[str, Any]:
    """The librdkafka settings of sink ``name``, checked by the client.

    Raises:
        ConfigError: the client rejects a key or a value (naming it).
    """
    from confluent_kafka import Producer

    settings = {k: v for k, v in properties.items() if k not in OWN_KEYS}
    config: dict[str, Any] = {**PRODUCER_DEFAULTS, **settings}
    config["delivery.report.only.error"] = True
    return checked_config(name, "kafka_sink", config, settings, Producer)


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

    def write(self, batch: pa.RecordBatch) -> None:
        """Produce one message per row (waiting while the local queue is full)."""
        self._check()
        if batch.num_rows == 0:
            return
        messages = _codec.encode_kafka(batch, self.key_fields)
        self._produce(messages)
        self._producer.poll(0)
        self._records += len(messages)
        self._batches += 1
        self._check()

    def _produce(self, messages: list[dict[str, Any]]) -> None:
        """Queue ``messages`` in order, producing again those a full queue refused."""
        from confluent_kafka import KafkaError, KafkaException

        while messages:
            try:
                queued = self._producer.produce_batch(self.topic, messages)
            except KafkaException as exc:
                detail = str(exc.args[0] if exc.args else exc)
                raise SinkError(
                    f"kafka sink {self.name!r}: the Kafka client refuses messages to topic "
                    f"{self.topic!r}: {detail}",
                    sink=self.name,
                    cause=detail,
                ) from None
            if queued == len(messages):
                return
            # The client marks each refused message with an "_error" (a Python pass over
            # the batch, only when something was refused). Once the queue is full,
            # librdkafka refuses every later message of the batch with _QUEUE_FULL: those
            # are produced again, in order, once the queue has room.
            retry = []
            for message in messages:
                error = message.pop("_error", None)
                if error is None:
                    continue
                if error.code() == KafkaError._QUEUE_FULL:
                    retry.append(message)
                else:
                    self._errors.append(str(error))
            messages = retry
            if messages:
                self._producer.poll(QUEUE_WAIT)

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
