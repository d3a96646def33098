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
