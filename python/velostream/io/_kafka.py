"""What the Kafka source and sink share: building their client's settings, checked."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from velostream.errors import ConfigError

#: librdkafka's own log lines go to this logger, not to stderr.
CLIENT_LOGGER = logging.getLogger("velostream.kafka")


def checked_config(
    name: str,
    connector_type: str,
    config: dict[str, Any],
    settings: Mapping[str, Any],
    client: Callable[[dict[str, Any]], Any],
) -> dict[str, Any]:
    """``config`` once the client accepted it (it validates every key and value).

    Args:
        name: the connector's name.
        connector_type: ``kafka_source`` or ``kafka_sink``, for messages.
        config: the client's settings (velostream's defaults and the user's keys).
        settings: the user's keys among them, to name the one the client rejects.
        client: the client class (``Consumer``, ``Producer``); one is built and closed.

    Raises:
        ConfigError: the client rejects a key or a value, naming ``<name>.<key>``.
    """
    from confluent_kafka import KafkaException

    config["logger"] = CLIENT_LOGGER
    try:
        made = client(config)
    except (KafkaException, ValueError, TypeError) as exc:
        detail = str(exc.args[0] if exc.args else exc)
        bad = next((k for k in settings if f'"{k}"' in detail or f"'{k}'" in detail), None)
        what = connector_type.replace("_", " ")
        raise ConfigError(
            f"{what} {name!r}: the Kafka client rejects its settings: {detail}",
            key=f"{name}.{bad}" if bad else f"{name}.type",
            value=settings.get(bad) if bad else connector_type,
        ) from None
    close = getattr(made, "close", None)
    if close is not None:
        close()
    return config


def topic_partitions(client_config: Mapping[str, Any], topic: str, timeout: float = 10.0) -> int:
    """The partition count of ``topic`` (0 when it does not exist).

    Raises:
        SourceError: the broker cannot be reached.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    from velostream.errors import SourceError

    admin = AdminClient({**client_config, "logger": CLIENT_LOGGER})  # type: ignore[dict-item]
    try:
        # Every topic: asking for this one by name makes a broker that creates topics
        # on demand create it, with its default partition count.
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise SourceError(
            f"cannot read the metadata of topic {topic!r} from "
            f"{client_config.get('bootstrap.servers')}: {exc}",
            source=topic,
            cause=str(exc),
        ) from None
    info = metadata.topics.get(topic)
    if info is None or info.error is not None:
        return 0
    return len(info.partitions)


def ensure_topic(
    client_config: Mapping[str, Any],
    topic: str,
    partitions: int,
    *,
    configs: Mapping[str, str] | None = None,
    purpose: str = "internal topic",
    timeout: float = 30.0,
) -> bool:
    """Create ``topic`` with ``partitions`` partitions unless it exists; True when created.

    A topic created meanwhile by another process is fine.

    Raises:
        ConfigError: it exists with another partition count (its data is partitioned
            for that count).
        SinkError: the broker refuses to create it.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    from velostream.errors import SinkError

    existing = topic_partitions(client_config, topic)
    if existing == 0:
        admin = AdminClient({**client_config, "logger": CLIENT_LOGGER})  # type: ignore[dict-item]
        futures = admin.create_topics(
            [NewTopic(topic, partitions, -1, config=dict(configs or {}))],
            operation_timeout=timeout,
        )
        try:
            futures[topic].result(timeout)
            CLIENT_LOGGER.info("created %s %s (%d partitions)", purpose, topic, partitions)
            return True
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if getattr(error, "code", lambda: None)() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise SinkError(
                    f"cannot create {purpose} {topic!r}: {exc}", sink=topic, cause=str(exc)
                ) from None
        existing = topic_partitions(client_config, topic)
    if existing != partitions:
        raise ConfigError(
            f"{purpose} {topic!r} has {existing} partitions, but its input has {partitions}: "
            "its data would be spread for another count (delete it, or give the application "
            "another 'application.id')",
            key="application.id",
            value=topic,
        )
    return False
