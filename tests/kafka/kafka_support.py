"""The test broker of the Kafka tests and benchmarks: :mod:`velostream.testing`."""

from velostream.testing import Broker, start_broker

__all__ = ["Broker", "start_broker"]
