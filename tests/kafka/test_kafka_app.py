"""Applications reading Kafka, end to end against the test broker (issue: Kafka runtime).

Every test writes JSON messages to real topics, runs an application that reads them with
a ``kafka_source``, and checks what reached its sinks (topics and files), the committed
offsets, and the counters.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from kafka_support import Broker

import velostream as vs
from velostream.errors import DataError, SourceError, TopicNotFoundError

SYMBOLS = ["AAPL", "MSFT", "GOOG", "TSLA", "AMZN"]


def trades(count: int, seed: int = 7, start: int = 1_700_000_000_000) -> list[dict]:
    """Trades with event times rising by ~10 ms, out of order by up to 150 ms."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        out.append(
            {
                "id": i,
                "symbol": rng.choice(SYMBOLS),
                "price": round(rng.uniform(10, 500), 2),
                "qty": rng.randint(1, 100),
                "ts": start + i * 10 - rng.randint(0, 150),
            }
        )
    return out


def produce(broker: Broker, topic: str, records: list, *, partitions: int = 1) -> None:
    """Write records (dicts as JSON, or raw bytes) round-robin over the partitions."""
    producer = Producer(broker.client_config(**{"linger.ms": 5}))
    for i, record in enumerate(records):
        value = record if isinstance(record, bytes) else json.dumps(record).encode()
        producer.produce(topic, value=value, partition=i % partitions)
        if i % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0


def read_topic(broker: Broker, topic: str, count: int, timeout: float = 30) -> list[dict]:
    """The JSON messages of a topic (at least ``count`` of them, waiting up to ``timeout``)."""
    consumer = Consumer(broker.consumer_config())
    consumer.subscribe([topic])
    out: list[dict] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                assert message.error() is None, message.error()
                out.append(json.loads(message.value()))
            if len(out) >= count:
                out.extend(json.loads(m.value()) for m in consumer.consume(1000, 1.0))
                break
    finally:
        consumer.close()
    return out


def committed(broker: Broker, group: str, topic: str, partitions: int) -> list[int]:
    consumer = Consumer(broker.consumer_config(**{"group.id": group}))
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return [tp.offset for tp in tps]
    finally:
        consumer.close()


def kafka_source(name: str, topic: str, broker: Broker, group: str) -> str:
    return (
        f"'{name}.type' = 'kafka_source', '{name}.topic' = '{topic}', "
        f"'{name}.bootstrap.servers' = '{broker.bootstrap}', '{name}.group.id' = '{group}', "
        f"'{name}.fetch.wait.max.ms' = '10'"
    )


def kafka_sink(name: str, topic: str, broker: Broker) -> str:
    return (
        f"'{name}.type' = 'kafka_sink', '{name}.topic' = '{topic}', "
        f"'{name}.bootstrap.servers' = '{broker.bootstrap}'"
    )


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def key(row: dict) -> tuple:
    return tuple(sorted(row.items()))


def duckdb_bars(data: list[dict]) -> list[dict]:
    """DuckDB's result of the 1 s tumbling window of the tests, as rows."""
    con = duckdb.connect()
    con.register("data", pa.Table.from_pylist(data))
    result = con.sql(
        "SELECT symbol, COUNT(*) AS trades, SUM(qty)::BIGINT AS volume, MAX(price) AS high, "
        "(ts // 1000) * 1000 AS ws FROM data GROUP BY ALL"
    )
    names = result.columns
    return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


# --------------------------------------------------------------------------- results


def test_a_windowed_group_by_over_two_topics_into_a_topic_and_a_file_equals_duckdb(
    tmp_path, kafka_broker: Broker
) -> None:
    data = trades(6000)
    first, second = data[::2], data[1::2]
    t1 = kafka_broker.create_topic(partitions=3)
    t2 = kafka_broker.create_topic(partitions=2)
    produce(kafka_broker, t1, first, partitions=3)
    produce(kafka_broker, t2, second, partitions=2)
    out_topic = kafka_broker.create_topic()
    sql = f"""
    CREATE STREAM bars AS
    SELECT symbol, COUNT(*) AS trades, SUM(qty) AS volume, MAX(price) AS high,
           _window_start AS ws
    FROM trades
    GROUP BY symbol
    WINDOW TUMBLING(1s)
    EMIT FINAL
    WITH (
        {kafka_source("trades", f"{t1},{t2}", kafka_broker, "g-bars")},
        'event.time.field' = 'ts', 'watermark.max_out_of_orderness' = '200ms',
        {kafka_sink("out", out_topic, kafka_broker)},
        'file.type' = 'file_sink', 'file.path' = 'bars.jsonl'
    );
    """
    report = vs.Application.from_sql(sql, base_dir=tmp_path).run(until_end=True)
    assert report.statements["bars"].records_in == len(data)
    assert report.statements["bars"].late_dropped == 0
    expected = sorted(key(r) for r in duckdb_bars(data))
    from_file = sorted(key(r) for r in rows(tmp_path / "bars.jsonl"))
    from_topic = sorted(key(r) for r in read_topic(kafka_broker, out_topic, len(expected)))
    assert from_file == expected
    assert from_topic == expected
    # Everything was read and acknowledged: the offsets are committed at the ends.
    assert committed(kafka_broker, "g-bars", t1, 3) == [1000, 1000, 1000]
    assert committed(kafka_broker, "g-bars", t2, 2) == [1500, 1500]
    assert report.commits >= 1


def test_until_end_stops_at_the_high_watermarks_of_the_start_and_a_rerun_goes_on(
    tmp_path, kafka_broker: Broker
) -> None:
    topic = kafka_broker.create_topic(partitions=2)
    produce(kafka_broker, topic, [{"n": i} for i in range(100)], partitions=2)
    sql = f"""
    CREATE STREAM copy AS SELECT n, _partition AS p, _offset AS o FROM src
    WITH ({kafka_source("src", topic, kafka_broker, "g-rerun")},
          'copy.type' = 'file_sink', 'copy.path' = 'copy.jsonl', 'copy.append' = 'true');
    """
    app = vs.Application.from_sql(sql, base_dir=tmp_path)
    assert app.run(until_end=True).statements["copy"].records_out == 100
    produce(kafka_broker, topic, [{"n": i} for i in range(100, 130)], partitions=2)
    assert app.run(until_end=True).statements["copy"].records_out == 30
    got = rows(tmp_path / "copy.jsonl")
    assert sorted(r["n"] for r in got) == list(range(130))
    # _partition and _offset say where each message was.
    assert {(r["p"], r["o"]) for r in got} == {(i % 2, i // 2) for i in range(130)}


def test_kafka_metadata_columns_and_event_time_from_the_kafka_timestamp(
    tmp_path, kafka_broker: Broker
) -> None:
    topic = kafka_broker.create_topic()
    producer = Producer(kafka_broker.client_config())
    for i in range(3):
        producer.produce(
            topic,
            key=f"k{i}".encode(),
            value=json.dumps({"n": i}).encode(),
            timestamp=1_700_000_000_000 + i * 1000,
            headers=[("trace", f"t{i}".encode())],
        )
    producer.flush(10)
    sql = f"""
    CREATE STREAM meta AS
    SELECT n, _topic AS topic, _key AS raw_key, CAST(_key AS STRING) AS k,
           _kafka_timestamp AS kts, _headers AS h
    FROM src
    WITH ({kafka_source("src", topic, kafka_broker, "g-meta")},
          'meta.type' = 'file_sink', 'meta.path' = 'meta.jsonl');
    CREATE STREAM per_second AS
    SELECT COUNT(*) AS c, _window_start AS ws FROM src2 WINDOW TUMBLING(1s)
    WITH ({kafka_source("src2", topic, kafka_broker, "g-meta2")},
          'event.time.field' = '_kafka_timestamp',
          'per_second.type' = 'file_sink', 'per_second.path' = 'per_second.jsonl');
    """
    vs.Application.from_sql(sql, base_dir=tmp_path).run(until_end=True)
    got = sorted(rows(tmp_path / "meta.jsonl"), key=lambda r: r["n"])
    assert [r["n"] for r in got] == [0, 1, 2]
    assert all(r["topic"] == topic for r in got)
    assert [r["kts"] for r in got] == [1_700_000_000_000 + i * 1000 for i in range(3)]
    assert [json.loads(r["h"]) for r in got] == [{"trace": f"t{i}"} for i in range(3)]
    assert [r["k"] for r in got] == ["k0", "k1", "k2"]
    assert [r["raw_key"] for r in got] == ["6b30", "6b31", "6b32"]  # bytes: hex in JSON
    windows = sorted(rows(tmp_path / "per_second.jsonl"), key=lambda r: r["ws"])
    assert windows == [{"c": 1, "ws": 1_700_000_000_000 + i * 1000} for i in range(3)]


# --------------------------------------------------------------------------- bad input


BAD = [
    {"id": 0, "qty": 1},
    b"{not json",
    {"id": 2, "qty": 3},
    {"id": 3, "qty": "three"},
    b"",
    {"id": 5, "qty": 5},
]


def _bad_app(topic: str, broker: Broker, group: str, strategy: str, extra: str = "") -> str:
    return f"""
    CREATE STREAM ok AS SELECT id, qty FROM src
    WITH ({kafka_source("src", topic, broker, group)},
          'src.schema.inference.rows' = '1',
          'error.strategy' = '{strategy}'{extra},
          'ok.type' = 'file_sink', 'ok.path' = 'ok.jsonl');
    """


def test_malformed_messages_fail_the_run_naming_topic_partition_and_offset(
    tmp_path, kafka_broker: Broker
) -> None:
    topic = kafka_broker.create_topic()
    produce(kafka_broker, topic, BAD)
    app = vs.Application.from_sql(
        _bad_app(topic, kafka_broker, "g-fail", "fail"), base_dir=tmp_path
    )
    with pytest.raises(DataError) as info:
        app.run(until_end=True)
    assert f"topic {topic} partition 0 offset 1" in str(info.value)
    # Nothing was acknowledged past the bad record: nothing is committed.
    assert committed(kafka_broker, "g-fail", topic, 1) == [-1001]


def test_malformed_messages_are_skipped_and_counted_with_log_and_continue(
    tmp_path, kafka_broker: Broker, caplog
) -> None:
    topic = kafka_broker.create_topic()
    produce(kafka_broker, topic, BAD)
    sql = _bad_app(topic, kafka_broker, "g-log", "log_and_continue")
    report = vs.Application.from_sql(sql, base_dir=tmp_path).run(until_end=True)
    assert [r["id"] for r in rows(tmp_path / "ok.jsonl")] == [0, 2, 5]
    assert report.statements["ok"].errors == 3
    warned = [r.getMessage() for r in caplog.records if "bad record skipped" in r.getMessage()]
    assert len(warned) == 3
    assert committed(kafka_broker, "g-log", topic, 1) == [6]


def test_malformed_messages_go_to_a_dead_letter_topic_with_the_reason(
    tmp_path, kafka_broker: Broker
) -> None:
    topic = kafka_broker.create_topic()
    dlq = kafka_broker.create_topic()
    produce(kafka_broker, topic, BAD)
    extra = f", 'dead_letter.sink' = 'dlq', {kafka_sink('dlq', dlq, kafka_broker)}"
    sql = _bad_app(topic, kafka_broker, "g-dlq", "dead_letter", extra)
    report = vs.Application.from_sql(sql, base_dir=tmp_path).run(until_end=True)
    assert [r["id"] for r in rows(tmp_path / "ok.jsonl")] == [0, 2, 5]
    assert report.statements["ok"].errors == 3
    letters = read_topic(kafka_broker, dlq, 3)
    assert [d["location"] for d in letters] == [
        f"topic {topic} partition 0 offset {o}" for o in (1, 3, 4)
    ]
    assert [d["raw"] for d in letters] == ["{not json", '{"id": 3, "qty": "three"}', ""]
    assert "invalid JSON" in letters[0]["reason"]
    assert "qty" in letters[1]["reason"] and "three" in letters[1]["reason"]
    assert "empty" in letters[2]["reason"]
    assert committed(kafka_broker, "g-dlq", topic, 1) == [6]


# --------------------------------------------------------------------------- lifecycle


def test_a_topic_created_after_the_job_started_is_picked_up(tmp_path, kafka_broker: Broker) -> None:
    topic = f"late-{random.randrange(1 << 30)}"
    sql = f"""
    CREATE STREAM copy AS SELECT n FROM src
    WITH ({kafka_source("src", topic, kafka_broker, "g-late")},
          'src.topic.wait.timeout' = '30s', 'src.topic.retry.interval' = '200ms',
          'commit.interval' = '200ms',
          'copy.type' = 'file_sink', 'copy.path' = 'copy.jsonl');
    """
    app = vs.Application.from_sql(sql, base_dir=tmp_path)
    app.start()
    try:
        time.sleep(2)
        assert app.report is None  # still waiting for the topic
        kafka_broker.create_topic(name=topic)
        produce(kafka_broker, topic, [{"n": i} for i in range(10)])
        out = tmp_path / "copy.jsonl"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if out.exists() and len(out.read_text().splitlines()) == 10:
                break
            time.sleep(0.2)
    finally:
        report = app.stop(timeout=60)
    assert report is not None and report.error is None
    assert sorted(r["n"] for r in rows(tmp_path / "copy.jsonl")) == list(range(10))


def test_a_missing_topic_without_a_wait_is_a_source_error_naming_it(
    tmp_path, kafka_broker: Broker
) -> None:
    sql = f"""
    CREATE STREAM copy AS SELECT n FROM src
    WITH ({kafka_source("src", "no-such-topic", kafka_broker, "g-missing")},
          'copy.type' = 'file_sink', 'copy.path' = 'copy.jsonl');
    """
    with pytest.raises(TopicNotFoundError, match="topic 'no-such-topic' does not exist") as info:
        vs.Application.from_sql(sql, base_dir=tmp_path).run(until_end=True)
    assert info.value.source == "src"


def _run_process(folder: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "velostream", "run", str(folder / "app.sql"), *args],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_for(condition, timeout: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_sigterm_drains_what_was_read_flushes_and_commits(tmp_path, kafka_broker: Broker) -> None:
    topic = kafka_broker.create_topic(partitions=2)
    out_topic = kafka_broker.create_topic()
    total = 40_000
    produce(kafka_broker, topic, [{"n": i} for i in range(total // 2)], partitions=2)
    (tmp_path / "app.sql").write_text(
        f"""
        CREATE STREAM copy AS SELECT n, _partition AS p, _offset AS o FROM src
        WITH ({kafka_source("src", topic, kafka_broker, "g-term")},
              'src.batch.size' = '500', 'commit.interval' = '100ms',
              {kafka_sink("out", out_topic, kafka_broker)});
        """
    )
    process = _run_process(tmp_path)
    try:
        _wait_for(lambda: sum(committed(kafka_broker, "g-term", topic, 2)) > 0, 60, process)
        # More input arrives while it runs; stop it in the middle of reading it.
        produce(kafka_broker, topic, [{"n": i} for i in range(total // 2, total)], partitions=2)
        process.send_signal(15)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 0, err.decode()
    assert b"finished" in out
    offsets = committed(kafka_broker, "g-term", topic, 2)
    got = read_topic(kafka_broker, out_topic, sum(offsets))
    # Every record read before the stop was processed, written, acknowledged and
    # committed: the output is exactly the committed prefix of each partition.
    assert sorted((r["p"], r["o"]) for r in got) == sorted(
        (p, o) for p in range(2) for o in range(offsets[p])
    )


def test_a_job_killed_halfway_and_restarted_misses_no_window(
    tmp_path, kafka_broker: Broker
) -> None:
    topic = kafka_broker.create_topic(partitions=3)
    out_topic = kafka_broker.create_topic()
    data = trades(30_000, seed=11)
    chunks = [data[i : i + 3000] for i in range(0, len(data), 3000)]
    (tmp_path / "app.sql").write_text(
        f"""
        CREATE STREAM bars AS
        SELECT symbol, COUNT(*) AS trades, SUM(qty) AS volume, MAX(price) AS high,
               _window_start AS ws
        FROM trades GROUP BY symbol WINDOW TUMBLING(1s) EMIT FINAL
        WITH ({kafka_source("trades", topic, kafka_broker, "g-kill")},
              'trades.batch.size' = '1000', 'commit.interval' = '100ms',
              'trades.session.timeout.ms' = '6000',
              'event.time.field' = 'ts', 'watermark.max_out_of_orderness' = '200ms',
              {kafka_sink("out", out_topic, kafka_broker)});
        """
    )

    # Records are partitioned by symbol, as a keyed producer would.
    def write(chunk: list[dict]) -> None:
        producer = Producer(kafka_broker.client_config())
        for record in chunk:
            partition = SYMBOLS.index(record["symbol"]) % 3
            producer.produce(topic, value=json.dumps(record).encode(), partition=partition)
        producer.flush(30)

    process = _run_process(tmp_path)
    try:
        for chunk in chunks[:5]:
            write(chunk)
            time.sleep(0.3)
        _wait_for(lambda: sum(committed(kafka_broker, "g-kill", topic, 3)) > 0, 60, process)
        process.kill()  # SIGKILL: no drain, no flush, no commit
    finally:
        process.kill()
        process.communicate(timeout=30)
    before = committed(kafka_broker, "g-kill", topic, 3)
    assert 0 < sum(before) < 15_000
    for chunk in chunks[5:]:
        write(chunk)
    restarted = _run_process(tmp_path, "--until-end")
    _, err = restarted.communicate(timeout=120)
    assert restarted.returncode == 0, err.decode()
    expected = {key(r) for r in duckdb_bars(data)}
    got = [key(r) for r in read_topic(kafka_broker, out_topic, len(expected), timeout=30)]
    missing = expected - set(got)
    assert not missing, f"{len(missing)} windows missing, e.g. {sorted(missing)[:3]}"


def test_statements_may_write_kafka_sinks_side_by_side(tmp_path, kafka_broker: Broker) -> None:
    # Kafka sinks have no path: they do not collide as files do.
    topic = kafka_broker.create_topic()
    produce(kafka_broker, topic, [{"n": 1}])
    first, second = kafka_broker.create_topic(), kafka_broker.create_topic()
    sql = f"""
    CREATE STREAM a AS SELECT n FROM src WITH ({kafka_source("src", topic, kafka_broker, "g-a")},
        {kafka_sink("a", first, kafka_broker)});
    CREATE STREAM b AS SELECT n FROM src WITH ({kafka_source("src", topic, kafka_broker, "g-b")},
        {kafka_sink("b", second, kafka_broker)});
    """
    report = vs.Application.from_sql(sql, base_dir=tmp_path).run(until_end=True)
    assert report.records_out == 2
    assert read_topic(kafka_broker, first, 1) == [{"n": 1}]
    assert read_topic(kafka_broker, second, 1) == [{"n": 1}]


def test_kafka_connectors_take_their_keys_from_a_config_file(
    tmp_path, kafka_broker: Broker
) -> None:
    topic, out = kafka_broker.create_topic(), kafka_broker.create_topic()
    produce(kafka_broker, topic, [{"n": 7}])
    (tmp_path / "kafka.yaml").write_text(f"bootstrap.servers: '{kafka_broker.bootstrap}'\n")
    sql = f"""
    CREATE STREAM c AS SELECT n FROM src
    WITH ('src.type' = 'kafka_source', 'src.topic' = '{topic}', 'src.group.id' = 'g-yaml',
          'src.config_file' = 'kafka.yaml',
          'out.type' = 'kafka_sink', 'out.topic' = '{out}', 'out.config_file' = 'kafka.yaml');
    """
    vs.Application.from_sql(sql, base_dir=tmp_path).run(until_end=True)
    assert read_topic(kafka_broker, out, 1) == [{"n": 7}]


def test_an_unreachable_broker_is_retried_with_backoff_then_a_source_error(tmp_path) -> None:
    sql = """
    CREATE STREAM c AS SELECT n FROM src
    WITH ('src.type' = 'kafka_source', 'src.bootstrap.servers' = '127.0.0.1:1',
          'retry.max.attempts' = '2', 'retry.backoff.initial' = '10ms',
          'retry.backoff.max' = '20ms', 'c.type' = 'file_sink', 'c.path' = 'c.jsonl');
    """
    app = vs.Application.from_sql(sql, base_dir=tmp_path)
    with pytest.raises(SourceError, match="gave up after 2 attempt") as info:
        app.run(until_end=True)
    assert info.value.source == "src"
    assert "_TRANSPORT" in str(info.value)
    assert app.report is not None and app.report.retries == 1


def test_the_legacy_path_runs_on_the_same_runtime_with_the_same_rows(
    tmp_path, kafka_broker: Broker
) -> None:
    data = trades(2000, seed=3)
    topic = kafka_broker.create_topic(partitions=2)
    produce(kafka_broker, topic, data, partitions=2)
    outputs = {}
    for path in ("direct", "legacy"):
        sql = f"""
        CREATE STREAM bars AS
        SELECT symbol, COUNT(*) AS trades, SUM(qty) AS volume, MAX(price) AS high,
               _window_start AS ws
        FROM trades GROUP BY symbol WINDOW TUMBLING(1s) EMIT FINAL
        WITH ({kafka_source("trades", topic, kafka_broker, f"g-path-{path}")},
              'event.time.field' = 'ts', 'watermark.max_out_of_orderness' = '200ms',
              'bars.type' = 'file_sink', 'bars.path' = '{path}.jsonl');
        """
        app = vs.Application.from_sql(sql, base_dir=tmp_path, processing_path=path)
        app.run(until_end=True)
        outputs[path] = sorted(key(r) for r in rows(tmp_path / f"{path}.jsonl"))
    assert outputs["legacy"] == outputs["direct"] == sorted(key(r) for r in duckdb_bars(data))
    assert committed(kafka_broker, "g-path-legacy", topic, 2) == [1000, 1000]
