"""Helpers of the Kafka tests: the running test broker and its client settings.

The broker itself is started by the ``kafka_broker`` fixture (conftest.py).

Client settings that matter against it (SPEC section 11), in :meth:`Broker.consumer_config`:
``fetch.queue.backoff.ms=1`` (the 1 s default stalls fetching whenever the prefetch queue
fills), ``fetch.wait.max.ms=10`` and a short ``session.timeout.ms`` (Tansu holds a group
join for half of it). Tansu 0.6 is IPv4-only and does not create topics on metadata
requests: topics are created explicitly, with ``retention.ms``.
"""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import dataclass
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic


@dataclass
class Broker:
    """A running test broker."""

    bootstrap: str
    process: subprocess.Popen[bytes]

    def client_config(self, **extra: Any) -> dict[str, Any]:
        """Settings every client of the test broker takes (librdkafka logs quiet)."""
        return {"bootstrap.servers": self.bootstrap, "log_level": 3, **extra}

    def consumer_config(self, **extra: Any) -> dict[str, Any]:
        """A consumer in its own group, reading from the start, tuned for the broker."""
        return self.client_config(
            **{
                "group.id": f"test-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "fetch.queue.backoff.ms": 1,
                "fetch.wait.max.ms": 10,
                "session.timeout.ms": 6000,
                **extra,
            }
        )

    def create_topic(self, partitions: int = 1, name: str | None = None) -> str:
        """Create a topic (a fresh name unless given) and return its name."""
        name = name or f"t-{uuid.uuid4().hex[:10]}"
        admin = AdminClient(self.client_config())
        topic = NewTopic(
            name, num_partitions=partitions, replication_factor=1, config={"retention.ms": "-1"}
        )
        for future in admin.create_topics([topic], operation_timeout=10).values():
            future.result(timeout=10)
        return name
