"""Scale-out: several processes of one application share a topic's partitions (issue 13).

Three ``velostream run`` processes of the same application read a 6-partition topic as
one consumer group. Each statement keeps its state per partition and checkpoints it to
its changelog topic; when a process is killed (SIGKILL: no drain, no commit), the others
take its partitions over, restore their state from the changelog, and the union of all
outputs is still DuckDB's result: complete, with duplicates only where at-least-once
allows them, each with the same values.
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from confluent_kafka import Consumer, Producer
from kafka_support import Broker

PARTITIONS = 6
SYMBOLS = [f"S{i:02d}" for i in range(24)]
START = 1_700_000_000_000


def partition_of(symbol: str) -> int:
    """The partition of a symbol's records: the message key decides it, as a keyed producer."""
    return SYMBOLS.index(symbol) % PARTITIONS


def make_trades(count: int, first_id: int, seed: int) -> list[dict]:
    """Trades with event times rising by 5 ms (in order within each partition)."""
    rng = random.Random(seed)
    return [
        {
            "id": first_id + i,
            "symbol": rng.choice(SYMBOLS),
            "qty": rng.randint(1, 100),
            "ts": START + (first_id + i) * 5,
        }
        for i in range(count)
    ]


def write(broker: Broker, topic: str, records: list[dict]) -> None:
    """Produce records keyed by symbol into their symbol's partition."""
    producer = Producer(broker.client_config(**{"linger.ms": 5}))
    for i, record in enumerate(records):
        producer.produce(
            topic,
            key=record["symbol"].encode(),
            value=json.dumps(record).encode(),
            partition=partition_of(record["symbol"]),
        )
        if i % 5000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0


class TopicReader:
    """Reads every message of a topic as it comes (one consumer, from the beginning)."""

    def __init__(self, broker: Broker, topic: str) -> None:
        self.consumer = Consumer(broker.consumer_config())
        self.consumer.subscribe([topic])
        self.rows: list[dict] = []

    def poll(self, seconds: float = 0.5) -> list[dict]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for message in self.consumer.consume(1000, 0.2):
                assert message.error() is None, message.error()
                self.rows.append(json.loads(message.value()))
        return self.rows

    def close(self) -> None:
        self.consumer.close()


def duckdb_totals(data: list[dict]) -> dict[str, tuple[int, int]]:
    con = duckdb.connect()
    con.register("data", pa.Table.from_pylist(data))
    result = con.sql("SELECT symbol, COUNT(*), SUM(qty)::BIGINT FROM data GROUP BY symbol")
    return {s: (n, v) for s, n, v in result.fetchall()}


def duckdb_bars(data: list[dict]) -> dict[tuple[str, int], tuple[int, int]]:
    con = duckdb.connect()
    con.register("data", pa.Table.from_pylist(data))
    result = con.sql(
        "SELECT symbol, (ts // 1000) * 1000, COUNT(*), SUM(qty)::BIGINT FROM data GROUP BY ALL"
    )
    return {(s, ws): (n, v) for s, ws, n, v in result.fetchall()}


def latest_totals(rows: list[dict]) -> dict[str, tuple[int, int]]:
    """Per symbol, the running total with the highest count (the latest one)."""
    best: dict[str, tuple[int, int]] = {}
    for row in rows:
        if row["symbol"] not in best or row["n"] > best[row["symbol"]][0]:
            best[row["symbol"]] = (row["n"], row["volume"])
    return best


def app_sql(topic: str, totals: str, bars: str, broker: Broker, app_id: str) -> str:
    source = (
        f"'trades.type' = 'kafka_source', 'trades.topic' = '{topic}', "
        f"'trades.bootstrap.servers' = '{broker.bootstrap}', "
        "'trades.fetch.wait.max.ms' = '10', 'trades.batch.size' = '500', "
        "'trades.key.fields' = 'symbol', "
        "'trades.session.timeout.ms' = '6000', 'trades.heartbeat.interval.ms' = '500'"
    )

    def sink(name: str, out: str) -> str:
        return (
            f"'{name}.type' = 'kafka_sink', '{name}.topic' = '{out}', "
            f"'{name}.bootstrap.servers' = '{broker.bootstrap}'"
        )

    return f"""
    CREATE STREAM trades (id BIGINT, symbol STRING, qty BIGINT, ts BIGINT) WITH ({source});

    CREATE STREAM totals AS
    SELECT symbol PRIMARY KEY, COUNT(*) AS n, SUM(qty) AS volume
    FROM trades GROUP BY symbol
    WITH ('application.id' = '{app_id}', 'commit.interval' = '300ms',
          {sink("totals_out", totals)});

    CREATE STREAM bars AS
    SELECT symbol PRIMARY KEY, _window_start AS ws, COUNT(*) AS n, SUM(qty) AS volume
    FROM trades GROUP BY symbol WINDOW TUMBLING(1s) EMIT FINAL
    WITH ('application.id' = '{app_id}', 'commit.interval' = '300ms',
          'event.time.field' = 'ts', {sink("bars_out", bars)});
    """


class Worker:
    """One ``velostream run`` process of the application, its log in a file."""

    def __init__(self, folder: Path, index: int) -> None:
        self.log = folder / f"worker{index}.log"
        self.out = folder / f"worker{index}.out"
        command = [sys.executable, "-m", "velostream", "--log-level", "INFO", "run"]
        command += [str(folder / "app.sql"), "--workers", "2"]
        with self.out.open("wb") as stdout, self.log.open("wb") as stderr:
            self.process = subprocess.Popen(command, cwd=folder, stdout=stdout, stderr=stderr)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def assignments(self, statement: str = "totals") -> list[str]:
        """What its consumer of a statement was assigned, in order (``nothing`` too)."""
        del statement  # both statements read `trades`; their lines are alike
        return re.findall(r"kafka source 'trades': assigned (.*)", self.text())

    def alive(self) -> bool:
        return self.process.poll() is None


def _wait(condition, timeout: float, what: str, workers: list[Worker]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        for worker in workers:
            if worker.process.poll() is not None and worker.process.returncode not in (
                0,
                -signal.SIGKILL,
            ):
                raise AssertionError(f"worker exited {worker.process.returncode}: {worker.text()}")
        if time.monotonic() > deadline:
            logs = "\n".join(w.text()[-3000:] for w in workers)
            raise AssertionError(f"timed out waiting for {what}\n{logs}")
        time.sleep(0.5)


def _wait_for_assignments(workers: list[Worker]) -> None:
    """Until the group settled with partitions on every process."""
    _wait(
        lambda: all(any(a != "nothing" for a in w.assignments()) for w in workers),
        90,
        "every process to be assigned partitions",
        workers,
    )


def _stop(workers: list[Worker]) -> None:
    """SIGTERM every live process (they drain, flush and commit), then wait for them."""
    for worker in workers:
        if worker.alive():
            worker.process.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.process.wait(60)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()


def test_three_processes_share_six_partitions_and_survive_a_sigkill(
    tmp_path: Path, kafka_broker: Broker
) -> None:
    topic = kafka_broker.create_topic(partitions=PARTITIONS)
    totals_topic = kafka_broker.create_topic()
    bars_topic = kafka_broker.create_topic()
    app_id = f"scale-{uuid.uuid4().hex[:8]}"
    (tmp_path / "app.sql").write_text(
        app_sql(topic, totals_topic, bars_topic, kafka_broker, app_id)
    )
    first = make_trades(6000, 0, seed=1)
    second = make_trades(6000, 6000, seed=2)
    workers = [Worker(tmp_path, i) for i in range(3)]
    totals = TopicReader(kafka_broker, totals_topic)
    bars = TopicReader(kafka_broker, bars_topic)
    try:
        # The group settles with partitions on every process.
        _wait_for_assignments(workers)
        write(kafka_broker, topic, first)
        expected_first = duckdb_totals(first)
        _wait(
            lambda: latest_totals(totals.poll()) == expected_first,
            90,
            "the totals of the first half",
            workers,
        )
        # Kill one process that holds partitions: no drain, no flush, no commit.
        victim = workers[1]
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(30)
        write(kafka_broker, topic, second)
        # Each partition ends with a record an hour later: every window before it closes.
        closers = [
            {
                "id": -1 - p,
                "symbol": next(s for s in SYMBOLS if partition_of(s) == p),
                "qty": 0,
                "ts": START + 3_600_000,
            }
            for p in range(PARTITIONS)
        ]
        write(kafka_broker, topic, closers)
        data = first + second
        expected_totals = duckdb_totals(data + closers)
        _wait(
            lambda: latest_totals(totals.poll()) == expected_totals,
            120,
            "the totals of all records after the kill",
            workers,
        )
        expected_bars = duckdb_bars(data)
        _wait(
            lambda: expected_bars.keys() <= {(r["symbol"], r["ws"]) for r in bars.poll()},
            120,
            "every window of the data",
            workers,
        )
        totals.poll(1.0)
        bars.poll(1.0)
    finally:
        _stop(workers)
        totals.close()
        bars.close()
    survivors = [w for w in workers if w is not victim]
    for worker in survivors:
        assert worker.process.returncode == 0, worker.text()[-3000:]
    # The survivors took the victim's partitions over and restored their state.
    logs = "".join(w.text() for w in survivors)
    assert "restored from" in logs, logs[-3000:]
    # Every window is there, with DuckDB's values; a window emitted twice (read again
    # after the kill: at-least-once) has the same values each time.
    got_bars: dict[tuple[str, int], set[tuple[int, int]]] = defaultdict(set)
    for row in bars.rows:
        got_bars[(row["symbol"], row["ws"])].add((row["n"], row["volume"]))
    for window, values in expected_bars.items():
        assert got_bars[window] == {values}, (window, got_bars[window], values)
    extra = set(got_bars) - set(expected_bars)
    assert all(ws >= START + 3_600_000 for _s, ws in extra), sorted(extra)[:5]
    # Running totals: the latest per symbol is DuckDB's; a count emitted twice has the
    # same volume each time (the same records folded into restored state).
    seen: dict[tuple[str, int], set[int]] = defaultdict(set)
    for row in totals.rows:
        seen[(row["symbol"], row["n"])].add(row["volume"])
    assert all(len(v) == 1 for v in seen.values()), [k for k, v in seen.items() if len(v) > 1][:5]
    assert latest_totals(totals.rows) == expected_totals
    # Every count of every symbol was emitted: nothing lost in the takeover.
    for symbol, (n, _volume) in expected_totals.items():
        assert {c for s, c in seen if s == symbol} == set(range(1, n + 1)), symbol


def write_round_robin(broker: Broker, topic: str, records: list[dict]) -> None:
    """Produce records without a key, round-robin: a symbol's records in every partition."""
    producer = Producer(broker.client_config(**{"linger.ms": 5}))
    for i, record in enumerate(records):
        producer.produce(topic, value=json.dumps(record).encode(), partition=i % PARTITIONS)
    assert producer.flush(30) == 0


def test_a_group_by_on_another_key_than_the_message_key_is_repartitioned_across_processes(
    tmp_path: Path, kafka_broker: Broker
) -> None:
    topic = kafka_broker.create_topic(partitions=PARTITIONS)
    out = kafka_broker.create_topic()
    app_id = f"rekey-{uuid.uuid4().hex[:8]}"
    (tmp_path / "app.sql").write_text(
        f"""
        CREATE STREAM totals AS
        SELECT symbol PRIMARY KEY, COUNT(*) AS n, SUM(qty) AS volume
        FROM trades GROUP BY symbol
        WITH ('trades.type' = 'kafka_source', 'trades.topic' = '{topic}',
              'trades.bootstrap.servers' = '{kafka_broker.bootstrap}',
              'trades.fetch.wait.max.ms' = '10', 'trades.batch.size' = '500',
              'trades.session.timeout.ms' = '6000', 'trades.heartbeat.interval.ms' = '500',
              'application.id' = '{app_id}', 'commit.interval' = '300ms',
              'out.type' = 'kafka_sink', 'out.topic' = '{out}',
              'out.bootstrap.servers' = '{kafka_broker.bootstrap}');
        """
    )
    explained = subprocess.run(
        [sys.executable, "-m", "velostream", "explain", str(tmp_path / "app.sql")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"creates topic {app_id}-totals-repartition" in explained, explained
    assert "repartitioned by symbol" in explained, explained
    data = make_trades(9000, 0, seed=3)
    workers = [Worker(tmp_path, i) for i in range(3)]
    totals = TopicReader(kafka_broker, out)
    try:
        _wait_for_assignments(workers)
        # Every symbol's records are spread over all six partitions of the input.
        write_round_robin(kafka_broker, topic, data)
        expected = duckdb_totals(data)
        _wait(
            lambda: latest_totals(totals.poll()) == expected,
            120,
            "the totals of every record",
            workers,
        )
        totals.poll(1.0)
    finally:
        _stop(workers)
        totals.close()
    for worker in workers:
        assert worker.process.returncode == 0, worker.text()[-3000:]
    # Each symbol is counted in one place: its counts run 1..n once each, never a
    # second count from another process's share of the input.
    seen: dict[str, list[int]] = defaultdict(list)
    for row in totals.rows:
        seen[row["symbol"]].append(row["n"])
    for symbol, (n, _volume) in expected.items():
        assert sorted(set(seen[symbol])) == list(range(1, n + 1)), symbol
    assert latest_totals(totals.rows) == expected
    # The run summaries report the stage that re-keys the input, per partition (one
    # query for all of them: it keeps no state), and the statement per worker.
    summaries = "".join(w.out.read_text() for w in workers)
    assert re.search(r"totals\.repartition: \d+ partitions? on 1 worker,", summaries), summaries
    assert re.search(r"totals: \d+ partitions? on 2 workers,", summaries), summaries
    assert re.search(r"worker 1: [\d,]+ records in \(partition \d", summaries), summaries


def _totals_app(topic: str, out: str, broker: Broker, app_id: str, aggregate: str) -> str:
    return f"""
    CREATE STREAM totals AS
    SELECT symbol PRIMARY KEY, COUNT(*) AS n, {aggregate} AS volume
    FROM trades GROUP BY symbol
    WITH ('trades.type' = 'kafka_source', 'trades.topic' = '{topic}',
          'trades.bootstrap.servers' = '{broker.bootstrap}', 'trades.key.fields' = 'symbol',
          'trades.fetch.wait.max.ms' = '10',
          'application.id' = '{app_id}', 'commit.interval' = '200ms',
          'out.type' = 'kafka_sink', 'out.topic' = '{out}',
          'out.bootstrap.servers' = '{broker.bootstrap}');
    """


def test_a_restarted_application_restores_its_state_and_a_changed_query_is_refused(
    tmp_path: Path, kafka_broker: Broker
) -> None:
    import velostream as vs
    from velostream.errors import SnapshotError

    topic = kafka_broker.create_topic(partitions=PARTITIONS)
    out = kafka_broker.create_topic()
    app_id = f"restart-{uuid.uuid4().hex[:8]}"
    sql = _totals_app(topic, out, kafka_broker, app_id, "SUM(qty)")
    first = make_trades(3000, 0, seed=4)
    second = make_trades(3000, 3000, seed=5)
    write(kafka_broker, topic, first)
    report = vs.Application.from_sql(sql, workers=2).run(until_end=True)
    assert report.statements["totals"].restored == 0
    write(kafka_broker, topic, second)
    report = vs.Application.from_sql(sql, workers=2).run(until_end=True)
    # The second run read only the second half, on top of the first half's state.
    assert report.statements["totals"].records_in == len(second)
    assert report.statements["totals"].restored == PARTITIONS
    reader = TopicReader(kafka_broker, out)
    try:
        deadline = time.monotonic() + 30
        expected = duckdb_totals(first + second)
        while latest_totals(reader.poll()) != expected and time.monotonic() < deadline:
            pass
        assert latest_totals(reader.rows) == expected
    finally:
        reader.close()
    # Another query under the same application id cannot take that state over.
    changed = _totals_app(topic, out, kafka_broker, app_id, "MAX(qty)")
    write(kafka_broker, topic, make_trades(10, 6000, seed=6))
    with pytest.raises(SnapshotError, match=f"{app_id}-totals-changelog") as info:
        vs.Application.from_sql(changed).run(until_end=True)
    assert "application.id" in str(info.value)
