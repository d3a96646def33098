"""An application: a SQL script of statements wired to their sources and sinks.

Statements come from :func:`velostream.sql.parse_script`. Each statement's ``WITH``
clause declares its connectors by name prefix (SPEC section 7):

- a ``FROM`` name with ``'<name>.type'`` = ``file_source`` or ``kafka_source`` is read
  from that source;
- a ``FROM`` name that is another stream of the application reads that stream's output
  in-process (the statements then run in dependency waves);
- any other ``FROM`` name is a :class:`~velostream.errors.ConfigError` naming it;
- every connector of type ``*_sink`` receives every output row (fan-out), except the one
  named by ``'dead_letter.sink'``, which receives the dead letters.

Application-level properties (``properties=``, ``velostream run --set``) override the
``WITH`` keys: unprefixed keys apply to every statement, ``<name>.`` keys to the
statements that declare or read ``<name>``. Relative paths resolve against the directory
of the SQL file. ``CREATE TABLE`` is rejected until it lands.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import reprlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from sqlglot import exp

from velostream import config
from velostream.app._paths import has_glob, overlap, same_file
from velostream.app._schema import sample_schema
from velostream.app._text import read_sql_file
from velostream.app.graph import dependency_waves
from velostream.errors import (
    ConfigError,
    InternalError,
    MissingDependencyError,
    SinkError,
    SqlValidationError,
    TableNotReadyError,
    VelostreamError,
)
from velostream.health import HealthServer
from velostream.io._kafka import CLIENT_LOGGER, ensure_topic, topic_partitions
from velostream.io.bad_records import BadRecordPolicy, DeadLetterWriter
from velostream.io.base import Sink
from velostream.io.connectors import create_sink, create_source, resolve_path
from velostream.io.file_sink import FileSink
from velostream.io.file_source import FileSource
from velostream.io.kafka_source import METADATA_COLUMNS
from velostream.partitioned import PartitionedQuery, default_workers
from velostream.query import UnionQuery
from velostream.runtime.graph import JobGraph
from velostream.runtime.guarded import GuardedSink
from velostream.runtime.job import StatementRunner
from velostream.runtime.progress import RunSnapshot, StatementProgress, TableProgressView
from velostream.runtime.report import RunReport
from velostream.runtime.resilience import RetryPolicy, RetryStats, retry_call
from velostream.sql import Statement, declared_schema, parse_script
from velostream.sql.dialect import node_position
from velostream.tables.loader import table_key
from velostream.tables.registry import TableHandle, TableRegistry, TableStatus
from velostream.tables.sink import TableSink

logger = logging.getLogger("velostream.app")


@dataclass(frozen=True)
class StatementInfo:
    """One statement of an application, with its resolved connectors.

    Attributes:
        name: the stream name (``select_<n>`` for the n-th statement when it is a SELECT).
        statement: the parsed statement.
        properties: the resolved properties (``WITH`` merged with the application's).
        sources: external source name -> its properties (keys relative to ``<name>.``).
        upstream: the streams of the application it reads.
        sinks: sink name -> its properties (keys relative to ``<name>.``).
        error_strategy: ``'error.strategy'``.
        dead_letter_sink: the sink name of ``'dead_letter.sink'``, if set.
        dead_letter_path: the file of ``'dead_letter.path'``, if set.
        plan: the physical plan of the compiled query.
        joins: the tables of the application it joins (it starts once they are READY).
        key: a table's key columns (PRIMARY KEY fields or GROUP BY keys).
    """

    name: str
    statement: Statement
    properties: dict[str, str]
    sources: dict[str, dict[str, str]]
    upstream: tuple[str, ...]
    sinks: dict[str, dict[str, str]]
    error_strategy: str = "fail"
    dead_letter_sink: str | None = None
    dead_letter_path: Path | None = None
    plan: dict[str, Any] = field(default_factory=dict)
    joins: tuple[str, ...] = ()
    key: tuple[str, ...] = ()

    @property
    def is_table(self) -> bool:
        """Whether the statement builds a table (``CREATE TABLE ... AS SELECT``)."""
        return self.statement.kind == "table"


@contextmanager
def _located(statement: Statement) -> Iterator[None]:
    """Give a ConfigError about a ``WITH`` key the key's line and column (as attributes)."""
    try:
        yield
    except ConfigError as exc:
        position = statement.property_positions.get(exc.key or "")
        if position is not None and getattr(exc, "line", None) is None:
            exc.line, exc.column = position
        raise


def _from_position(statement: Statement, source: str) -> tuple[int, int]:
    """Return the script position of ``source`` in FROM (the statement's, if not found)."""
    for table in statement.query.find_all(exp.Table):
        if table.name == source:
            position = node_position(table.this) or node_position(table)
            if position is not None:
                return position
    return statement.line, statement.column


def _plan_summary(plan: Mapping[str, Any]) -> str:
    if plan.get("union"):
        return " UNION ALL ".join(f"({_plan_summary(p)})" for p in plan["union"])
    columns = ", ".join(item.get("name", "*") for item in plan.get("select", []))
    parts = [f"read {plan.get('input')}"]
    if plan.get("filter") is not None:
        parts.append("filter")
    if plan.get("group_by") or plan.get("aggregates"):
        parts.append(f"aggregate ({len(plan.get('aggregates', []))} aggregates)")
    window = plan.get("window")
    if window:
        parts.append(f"window {_window_summary(window)}")
    parts.append(f"project [{columns}]")
    if plan.get("group_by") or plan.get("aggregates") or plan.get("window"):
        parts.append(f"emit {plan.get('emit')}")
    return " -> ".join(parts)


def _ms(value: int) -> str:
    from velostream.sql.durations import format_duration

    return format_duration(value)


def _window_summary(window: Mapping[str, Any]) -> str:
    kind = window["kind"]
    if kind == "tumbling":
        text = f"TUMBLING({_ms(window['size_ms'])})"
    elif kind == "sliding":
        text = f"SLIDING({_ms(window['size_ms'])}, {_ms(window['advance_ms'])})"
    else:
        text = f"SESSION({_ms(window['gap_ms'])})"
    if window.get("time_column"):
        text += f" on {window['time_column']}"
    return text


def _time_summary(plan: Mapping[str, Any]) -> str | None:
    """Event time, watermark and late-data settings of a plan, in words."""
    time = plan.get("time")
    if not time and not plan.get("window"):
        return None
    if not time or not time.get("field"):
        return "processing time (no event.time.field): windows close as the clock passes them"
    text = f"event time from {time['field']} ({time.get('format') or 'auto-detect'})"
    watermark = time.get("watermark", "bounded_out_of_orderness")
    if watermark == "bounded_out_of_orderness":
        text += f", watermark = max event time - {_ms(time.get('max_out_of_orderness_ms', 0))}"
    elif watermark == "ascending":
        text += ", watermark = max event time"
    else:
        text += ", no watermark (windows close at the end of input)"
    if time.get("idle_timeout_ms"):
        text += f", idle partitions ignored after {_ms(time['idle_timeout_ms'])}"
    text += f", late data: {time.get('late', 'drop')}"
    if time.get("allowed_lateness_ms"):
        text += f" within {_ms(time['allowed_lateness_ms'])}"
    if time.get("on_error") == "dead_letter":
        text += ", unreadable event time: dead letters"
    return text


def _read_columns(info: StatementInfo) -> set[str]:
    """The column names a statement reads (its SQL's columns and its event-time fields)."""
    names = {column.name for column in info.statement.query.find_all(exp.Column)}
    names |= {v for k, v in info.properties.items() if k.endswith("event.time.field")}
    return names


#: What a repartition stage adds to each record: the source partition it came from (its
#: ``_source_partition`` number) and its offset there.
ORIGIN_COLUMNS = ("_source_partition", "_source_offset")

#: The name of a statement's repartition stage: the statement's name and this.
REPARTITION_SUFFIX = ".repartition"


def repartition_topic(application_id: str, statement: str) -> str:
    """The topic a statement's input is re-keyed through (SPEC section 9)."""
    return f"{application_id}-{statement}-repartition"


def _check_topic_name(statement: str, topic: str, purpose: str) -> None:
    """Refuse an internal topic name Kafka would refuse, naming the statement.

    Raises:
        ConfigError: the statement's name holds a character a topic name cannot.
    """
    bad = sorted({c for c in topic if not (c.isascii() and (c.isalnum() or c in "._-"))})
    if bad or len(topic) > 249:
        why = f"holds {bad[0]!r}" if bad else f"is {len(topic)} characters long (at most 249)"
        raise ConfigError(
            f"statement {statement!r} needs a {purpose} topic {topic!r}, which {why}: "
            "name the statement with letters, digits, '.', '_' and '-' only",
            key="application.id",
            value=topic,
        )


def _quoted(name: str) -> str:
    """``name`` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _client_settings(source: Any) -> dict[str, Any]:
    """The settings of a Kafka source's client that reach its cluster (servers, security)."""
    return {
        k: v
        for k, v in getattr(source, "_config", {}).items()
        if k == "bootstrap.servers" or k.split(".")[0] in ("security", "sasl", "ssl", "client")
    }


def _with_origin(schema: pa.Schema | None) -> pa.Schema | None:
    """A declared schema with the columns a repartition stage adds (origin, offset)."""
    if schema is None:
        return schema
    for column in ORIGIN_COLUMNS:
        if column not in schema.names:
            schema = schema.append(pa.field(column, pa.int64()))
    return schema


def _create_repartition_topic(
    source: Any,
    topic: str,
    client: Mapping[str, Any],
    reader: PartitionedQuery,
    ready: threading.Event,
    stop: threading.Event,
) -> None:
    """A repartition stage's gate: its topic made, the reading statement told its origins.

    Waits for the source's topics as the source itself would
    (``'<source>.topic.wait.timeout'``; without it, the stage's read then says a topic is
    missing), creates the repartition topic with as many partitions as the source's
    topic (the largest, for several), and tells every partition of the statement reading
    it which source partitions its records come from (each holds the watermark back
    until its first record).
    """
    deadline = time.monotonic() + (source.wait_timeout_ms or 0) / 1000
    while True:
        counts = [topic_partitions(client, t) for t in source.topics]
        if all(counts) or time.monotonic() >= deadline or stop.is_set():
            break
        stop.wait(source.retry_interval_ms / 1000)
    if not all(counts):
        return
    ensure_topic(client, topic, max(counts), purpose="repartition topic")
    several = len(source.topics) > 1
    held = _partitions_with_records(client, source.topics, counts)
    reader.expect_everywhere([(index << 24 | p) if several else p for index, p in held])
    ready.set()


def _partitions_with_records(
    client: Mapping[str, Any], topics: list[str], counts: list[int]
) -> list[tuple[int, int]]:
    """(topic index, partition) of the source partitions holding records now.

    Only those hold a re-keyed statement's watermark back, as a source's partitions
    with messages to read do for a statement reading them directly: one that is empty
    now must not hold windows open until ``'watermark.idle_timeout'``.
    """
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer({**client, "group.id": "velostream-watermarks", "logger": CLIENT_LOGGER})
    try:
        held = []
        for index, (topic, count) in enumerate(zip(topics, counts, strict=True)):
            for partition in range(count):
                try:
                    low, high = consumer.get_watermark_offsets(
                        TopicPartition(topic, partition), timeout=10
                    )
                except KafkaException:
                    low, high = 0, 1  # unknown: waited for, as before
                if high > low:
                    held.append((index, partition))
        return held
    finally:
        consumer.close()


def _after(
    done: threading.Event, gate: Callable[[threading.Event], None] | None
) -> Callable[[threading.Event], None]:
    """A reader gate that waits for ``done`` (or the run's stop), then for ``gate``."""

    def wait(stop: threading.Event) -> None:
        while not done.wait(0.1):
            if stop.is_set():
                return
        if gate is not None:
            gate(stop)

    return wait


def _config_error(message: str, key: str, value: str | None = None, **extra: Any) -> ConfigError:
    return ConfigError(message, key=key, value=value, **extra)


def _foreign_error(exc: BaseException, what: str) -> BaseException:
    """Turn an exception from outside the hierarchy into an :class:`InternalError`.

    Nothing but a :class:`VelostreamError` may leave the package (SPEC section 2): any
    other ``Exception`` reaching the application is a defect, reported as such.
    ``KeyboardInterrupt`` and ``SystemExit`` pass through.
    """
    if isinstance(exc, VelostreamError) or not isinstance(exc, Exception):
        return exc
    detail = " ".join(str(exc).split()) or "(no message)"
    error = InternalError(f"{what}: {type(exc).__name__}: {detail}", component="application")
    error.__cause__ = exc
    return error


@contextmanager
def _defects_as_internal_errors(what: str) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        converted = _foreign_error(exc, what)
        if converted is exc:
            raise
        raise converted from exc


def _output_schema(query: Any) -> pa.Schema | None:
    """A query's output schema (None until its input's is known)."""
    schema: pa.Schema | None = query.output_schema
    return schema


def _reject_nul(properties: Mapping[str, str]) -> None:
    # Properties are text, and no path, name or value can hold a NUL character.
    for key, value in properties.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ConfigError(
                f"property {key!r} = {value!r}: keys and values are strings, not "
                f"{type(key if not isinstance(key, str) else value).__name__}",
                key=str(key),
                value=str(value),
            )
        if "\x00" in key or "\x00" in value:
            raise ConfigError(
                f"property {key!r} = {value!r} holds a NUL character",
                key=key,
                value=value,
            )


class Application:
    """A SQL application: statements, their sources and sinks, run as jobs.

    Build it with :meth:`from_file` or :meth:`from_sql`; everything is validated then
    (SQL, properties, connectors, dependencies), nothing is opened before :meth:`run` or
    :meth:`start`.
    """

    def __init__(
        self,
        text: str,
        *,
        properties: Mapping[str, str] | None = None,
        base_dir: str | os.PathLike[str] | None = None,
        source_file: str | os.PathLike[str] | None = None,
        processing_path: str = "direct",
        workers: int | None = None,
    ) -> None:
        """Parse and validate an application (prefer :meth:`from_file` / :meth:`from_sql`).

        Args:
            text: the SQL script.
            properties: application-level properties, overriding the ``WITH`` keys.
            base_dir: what relative paths resolve against (default: working directory).
            source_file: the SQL file, for messages.
            processing_path: ``"direct"`` (default) or ``"legacy"``.
            workers: threads running the partitions of each partitioned statement
                (default: the cores; SPEC section 9).

        Raises:
            SqlSyntaxError: the script does not parse.
            SqlValidationError: a statement cannot run (or is not supported yet).
            ConfigError: a bad, unknown or unsupported property, connector or FROM name.
            CircularDependencyError: streams read each other in a cycle.
        """
        with _defects_as_internal_errors("loading the application"):
            # A byte-order mark left by a reader that did not strip it is not SQL.
            self.text = text[1:] if text.startswith("\ufeff") else text
            self.base_dir = Path(base_dir).resolve() if base_dir is not None else Path.cwd()
            self.source_file = Path(source_file) if source_file is not None else None
            self.processing_path = processing_path
            if workers is not None and (not isinstance(workers, int) or workers < 1):
                raise ConfigError(
                    f"workers must be a whole number of at least 1, not {workers!r}",
                    key="workers",
                    value=str(workers),
                )
            #: Worker threads per partitioned statement (None: the cores).
            self.workers = workers
            if properties is not None and not isinstance(properties, Mapping):
                raise ConfigError(
                    "properties must be a mapping of str keys to str values (a dict), not "
                    f"{type(properties).__name__} {reprlib.repr(properties)}",
                    key="properties",
                )
            _reject_nul(dict(properties or {}))
            self.properties = {
                k: config.expand_env(v, key=k) for k, v in dict(properties or {}).items()
            }
            self._statements = parse_script(self.text)
            if not self._statements:
                raise SqlValidationError("the application holds no statement", line=1, column=1)
            self.statements: list[StatementInfo] = self._resolve()
            self._by_name = {info.name: info for info in self.statements}
            self.waves: list[list[str]] = dependency_waves(
                {info.name: (*info.upstream, *info.joins) for info in self.statements}
            )
            # The tables exist (LOADING) from the start: a health probe never sees an
            # application without them; each run loads them afresh.
            self.registry = TableRegistry()
            for info in self.statements:
                if info.is_table:
                    self.registry.create(
                        info.name, key=info.key, source=self._describe_table_input(info)
                    )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._report: RunReport | None = None
        self._live: dict[str, StatementRunner] = {}

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        properties: Mapping[str, str] | None = None,
        *,
        processing_path: str = "direct",
        workers: int | None = None,
    ) -> Application:
        """Load an application from a SQL file; relative paths resolve against its directory.

        Args:
            path: the SQL file.
            properties: application-level properties (override the ``WITH`` keys).
            processing_path: ``"direct"`` (default) or ``"legacy"``.
            workers: threads per partitioned statement (default: the cores).

        The file is UTF-8 (a byte-order mark is skipped); UTF-16 and UTF-32 files with a
        byte-order mark are decoded too.

        Raises:
            ConfigError: the file cannot be read: missing, a directory, ... (key ``file``).
            SqlSyntaxError: the file is not text (bytes that do not decode, NUL characters),
                naming the byte offset, line and column of the first bad byte.
            SqlValidationError, ConfigError, CircularDependencyError: as for
                :meth:`from_sql`.
        """
        file = Path(path)
        with _defects_as_internal_errors("reading the SQL file"):
            text = read_sql_file(file)
        return cls(
            text,
            properties=properties,
            base_dir=file.resolve().parent,
            source_file=file,
            processing_path=processing_path,
            workers=workers,
        )

    @classmethod
    def from_sql(
        cls,
        text: str,
        properties: Mapping[str, str] | None = None,
        base_dir: str | os.PathLike[str] | None = None,
        *,
        processing_path: str = "direct",
        workers: int | None = None,
    ) -> Application:
        """Build an application from SQL text.

        Args:
            text: the SQL script.
            properties: application-level properties (override the ``WITH`` keys).
            base_dir: what relative paths resolve against (default: working directory).
            processing_path: ``"direct"`` (default) or ``"legacy"``.
            workers: threads per partitioned statement (default: the cores).

        Raises:
            SqlSyntaxError: the script does not parse (with line and column).
            SqlValidationError: a statement cannot run (with line and column).
            ConfigError: a bad, unknown or unsupported property, connector or FROM name.
            CircularDependencyError: streams read each other in a cycle.
        """
        return cls(
            text,
            properties=properties,
            base_dir=base_dir,
            processing_path=processing_path,
            workers=workers,
        )

    # ------------------------------------------------------------------- resolution

    def _statement_names(self) -> list[str]:
        names: list[str] = []
        for index, statement in enumerate(self._statements, start=1):
            name = statement.name or f"select_{index}"
            if name in names:
                raise SqlValidationError(
                    f"stream {name!r} is defined twice",
                    line=statement.line,
                    column=statement.column,
                )
            names.append(name)
        return names

    def _resolve(self) -> list[StatementInfo]:
        all_names = self._statement_names()
        # Every name a prefixed application-level key may refer to.
        known = set(all_names) | set(config.connectors(self.properties))
        for statement in self._statements:
            known |= set(statement.sources) | set(statement.joins)
            known |= set(config.connectors(statement.properties))
        config.validate_statement_properties(self.properties, known)

        # `CREATE STREAM s (col TYPE, ...) WITH (...)` declares a source every statement
        # may read; the other statements run.
        self._declared: dict[str, tuple[Statement, dict[str, str]]] = {}
        runnable: list[tuple[str, Statement]] = []
        for name, statement in zip(all_names, self._statements, strict=True):
            if statement.is_declaration:
                self._declared[name] = (statement, self._declared_source(name, statement, known))
            else:
                runnable.append((name, statement))
        if not runnable:
            first = self._statements[0]
            raise SqlValidationError(
                "the application declares sources but has no statement that reads them",
                line=first.line,
                column=first.column,
            )
        names = [name for name, _ in runnable]
        self._tables = {name for name, statement in runnable if statement.kind == "table"}
        infos = [
            self._resolve_statement(name, statement, names, known) for name, statement in runnable
        ]
        readers = {up for info in infos for up in info.upstream}
        sink_paths: list[tuple[Path, str]] = []
        for info in infos:
            if not info.sinks and info.name not in readers and not info.is_table:
                with _located(info.statement):
                    raise _config_error(
                        f"statement {info.name!r} has no sink: declare one in its WITH, e.g. "
                        f"'{info.name}.type' = 'file_sink', '{info.name}.path' = '...'",
                        key=f"{info.name}.type",
                    )
            for sink_name, props in info.sinks.items():
                if props.get("type") != "file_sink":
                    continue  # a topic is no file (two statements may write one topic)
                path = resolve_path(props.get("path", ""), self.base_dir)
                for other, what in sink_paths:
                    if same_file(path, other):
                        with _located(info.statement):
                            raise _config_error(
                                f"sink {sink_name!r} of {info.name!r} writes {path}, which "
                                f"{what} already writes",
                                key=f"{sink_name}.path",
                                value=props.get("path"),
                            )
                sink_paths.append((path, f"sink {sink_name!r} of {info.name!r}"))
        self._check_writes(infos)
        self._check_join_feeds(infos)
        return infos

    @staticmethod
    def _check_join_feeds(infos: list[StatementInfo]) -> None:
        """Refuse a statement that joins a table loaded from its own in-process input.

        Rows a statement reads in-process wait, in the thread of the statement that
        emits them, until the tables it joins are READY; a table fed by that same thread
        would never be.
        """
        by_name = {info.name: info for info in infos}

        def closure(name: str, through_joins: bool) -> set[str]:
            seen: set[str] = set()
            stack = [name]
            while stack:
                current = by_name.get(stack.pop())
                if current is None:
                    continue
                for nxt in (*current.upstream, *(current.joins if through_joins else ())):
                    if nxt not in seen:
                        seen.add(nxt)
                        stack.append(nxt)
            return seen

        for info in infos:
            if not info.joins or not info.upstream:
                continue
            feeding = closure(info.name, through_joins=False)
            for table in info.joins:
                shared = sorted(({table} | closure(table, through_joins=True)) & feeding)
                if shared:
                    with _located(info.statement):
                        raise _config_error(
                            f"{info.name!r} reads {shared[0]!r} in-process and joins table "
                            f"{table!r}, which is loaded from {shared[0]!r} too: {table!r} "
                            f"could not be READY before {info.name!r} reads; give "
                            f"{table!r} an input of its own (its source in its WITH)",
                            key=f"{table}.type",
                        )

    def _declared_source(self, name: str, statement: Statement, known: set[str]) -> dict[str, str]:
        """The connector properties of a declared source (``CREATE STREAM s (...) WITH``).

        Its ``WITH`` holds the keys of that one connector, which must be a source.
        """
        overrides = {
            key: value
            for key, value in self.properties.items()
            if config.connector_name_of(key, known) == name
        }
        with _located(statement):
            _reject_nul(statement.properties)
            for key in statement.properties:
                if not key.startswith(f"{name}."):
                    line, column = statement.property_positions.get(
                        key, (statement.line, statement.column)
                    )
                    raise ConfigError(
                        f"the WITH of the declared source {name!r} holds {key!r}: it takes the "
                        f"keys of its own connector only ('{name}.type', '{name}.path', ...)",
                        key=key,
                        value=statement.properties[key],
                        line=line,
                        column=column,
                    )
            merged = config.resolve_properties(
                {**statement.properties, **overrides}, base_dir=self.base_dir
            )
            props = config.connectors(merged).get(name)
            if props is None or "type" not in props:
                raise _config_error(
                    f"the declared source {name!r} has no connector: add "
                    f"'{name}.type' = 'file_source' (and its path) to its WITH",
                    key=f"{name}.type",
                )
            ctype = config.validate_connector_properties(name, props)
            if not ctype.endswith("_source"):
                raise _config_error(
                    f"{name!r} declares columns, so it is a source, but "
                    f"'{name}.type' = '{ctype}' is not a source",
                    key=f"{name}.type",
                    value=ctype,
                )
        return props

    def _declared_schema(self, source: str) -> pa.Schema | None:
        """The declared columns of a source as an Arrow schema (None when inferred)."""
        declared = self._declared.get(source)
        return declared_schema(declared[0]) if declared is not None else None

    def _reads(self, infos: list[StatementInfo]) -> list[tuple[str, Path]]:
        """Every file the application reads: (what it is, absolute path or glob)."""
        reads: list[tuple[str, Path]] = []
        if self.source_file is not None:
            reads.append(("the application's SQL file", Path(os.path.abspath(self.source_file))))
        for info in infos:
            for cname, props in config.connectors(info.properties).items():
                if props.get("config_file"):
                    reads.append(
                        (
                            f"the config file of {cname!r} ('{cname}.config_file')",
                            resolve_path(props["config_file"], self.base_dir),
                        )
                    )
            for source, props in info.sources.items():
                if props.get("type") == "file_source" and props.get("path"):
                    reads.append(
                        (
                            f"read by source {source!r} of {info.name!r}",
                            resolve_path(props["path"], self.base_dir),
                        )
                    )
        return reads

    def _writes(self, info: StatementInfo) -> list[tuple[str, str, str, Path]]:
        """Every file a statement writes: (what, key, value as written, absolute path)."""
        writes: list[tuple[str, str, str, Path]] = []
        connectors = config.connectors(info.properties)
        named = dict(info.sinks)
        if info.dead_letter_sink is not None:
            named[info.dead_letter_sink] = connectors[info.dead_letter_sink]
        for name, props in named.items():
            if props.get("type") == "file_sink" and props.get("path"):
                kind = "dead-letter sink" if name == info.dead_letter_sink else "sink"
                writes.append(
                    (
                        f"{kind} {name!r} of {info.name!r}",
                        f"{name}.path",
                        props["path"],
                        resolve_path(props["path"], self.base_dir),
                    )
                )
        if info.dead_letter_path is not None:
            writes.append(
                (
                    f"the dead-letter file of {info.name!r}",
                    "dead_letter.path",
                    info.properties.get("dead_letter.path", str(info.dead_letter_path)),
                    info.dead_letter_path,
                )
            )
        return writes

    def _check_writes(self, infos: list[StatementInfo]) -> None:
        """Refuse a sink that would write a file the application reads (before any is opened).

        Raises:
            ConfigError: naming the sink, the reader (a source, the SQL file, a config
                file) and the path, at the sink's key.
        """
        reads = self._reads(infos)
        for info in infos:
            for what, key, value, path in self._writes(info):
                for reader, pattern in reads:
                    if not overlap(path, pattern):
                        continue
                    via = f" (it matches the glob {pattern})" if has_glob(str(pattern)) else ""
                    real = os.path.realpath(path)
                    link = f" (a link to {real})" if real != str(path) else ""
                    with _located(info.statement):
                        raise _config_error(
                            f"{what} would write {path}{link}, which is {reader}{via}: writing "
                            "it would destroy that input; write the output to another file",
                            key=key,
                            value=value,
                        )

    def _resolve_statement(
        self, name: str, statement: Statement, names: list[str], known: set[str]
    ) -> StatementInfo:
        for joined in dict.fromkeys(statement.joins):
            if joined not in self._tables:
                what = (
                    "a stream, not a table"
                    if joined in names
                    else "neither a table of the application nor a declared source"
                    if joined not in self._declared
                    else "a declared stream, not a table"
                )
                missing = MissingDependencyError(name, joined)
                missing.args = (
                    f"{name!r} joins {joined!r}, which is {what}: a JOIN reads a table "
                    f"(CREATE TABLE {joined} AS SELECT ...)",
                )
                raise missing
        own_names = {name, *statement.sources, *statement.joins} | set(
            config.connectors(statement.properties)
        )
        overrides = {
            key: value
            for key, value in self.properties.items()
            if (owner := config.connector_name_of(key, known)) is None or owner in own_names
        }
        with _located(statement):
            _reject_nul(statement.properties)
            merged = config.resolve_properties(
                {**statement.properties, **overrides}, base_dir=self.base_dir
            )
            connectors = config.connectors(merged)
            config.validate_statement_properties(merged, own_names | set(connectors))
            types = {
                cname: config.validate_connector_properties(cname, cprops)
                for cname, cprops in connectors.items()
            }
            dead_letter_sink = merged.get("dead_letter.sink")
            if dead_letter_sink is not None and not types.get(dead_letter_sink, "").endswith(
                "_sink"
            ):
                raise _config_error(
                    f"'dead_letter.sink' = {dead_letter_sink!r} is not a sink declared in the "
                    f"WITH of {name!r} (declare '{dead_letter_sink}.type' = 'file_sink')",
                    key="dead_letter.sink",
                    value=dead_letter_sink,
                )
            dead_letter_path = merged.get("dead_letter.path")
            strategy = merged.get("error.strategy", "fail")
            if strategy == "dead_letter" and dead_letter_sink is None and dead_letter_path is None:
                raise _config_error(
                    "'error.strategy' = 'dead_letter' needs a destination: set "
                    "'dead_letter.path' (a JSON Lines file) or 'dead_letter.sink' (a declared sink)",
                    key="error.strategy",
                    value=strategy,
                )
            # A record whose event time cannot be read is a bad record too: unless
            # 'event.time.error' says otherwise, it follows 'error.strategy' (routed by
            # the query, then written to the dead letters, or logged and counted).
            timed = any(k.endswith("event.time.field") for k in merged) or (
                statement.window is not None and statement.window.time_column is not None
            )
            inherited = (
                strategy != "fail"
                and timed
                and not any(k.endswith("event.time.error") for k in merged)
            )
            if inherited:
                merged["event.time.error"] = "dead_letter"

            sources: dict[str, dict[str, str]] = {}
            upstream: list[str] = []
            for source in dict.fromkeys(statement.sources):
                if source in connectors:
                    if not types[source].endswith("_source"):
                        raise _config_error(
                            f"{source!r} is read in the FROM of {name!r} but "
                            f"'{source}.type' = '{types[source]}' is not a source",
                            key=f"{source}.type",
                            value=types[source],
                        )
                    if source in self._declared:
                        raise _config_error(
                            f"source {source!r} is declared twice: by CREATE STREAM {source} "
                            f"(...) and in the WITH of {name!r}; keep one",
                            key=f"{source}.type",
                        )
                    sources[source] = connectors[source]
                elif source in self._declared:
                    sources[source] = self._declared[source][1]
                elif source in names:
                    upstream.append(source)
                else:
                    error = _config_error(
                        f"unknown source {source!r} in the FROM of {name!r}: it has no "
                        f"'{source}.type' and is not a stream or table of the application",
                        key=f"{source}.type",
                    )
                    error.line, error.column = _from_position(statement, source)
                    raise error
            for cname, ctype in types.items():
                if ctype.endswith("_source") and cname not in sources:
                    raise _config_error(
                        f"source {cname!r} is declared in the WITH of {name!r} but not read "
                        "in its FROM",
                        key=f"{cname}.type",
                        value=ctype,
                    )
            sinks = {
                cname: connectors[cname]
                for cname, ctype in types.items()
                if ctype.endswith("_sink") and cname != dead_letter_sink
            }
            query = self._compile(statement, merged)
            time = query.plan.get("time") or {}
            for key in ("event.time.error", "late.data.strategy"):
                routed = time.get("on_error" if key == "event.time.error" else "late")
                if (
                    routed == "dead_letter"
                    and dead_letter_sink is None
                    and dead_letter_path is None
                    and not (key == "event.time.error" and inherited)
                ):
                    raise _config_error(
                        f"{key!r} = 'dead_letter' needs a destination: set 'dead_letter.path' "
                        "(a JSON Lines file) or 'dead_letter.sink' (a declared sink)",
                        key=key,
                        value="dead_letter",
                    )
        return StatementInfo(
            name=name,
            statement=statement,
            properties=merged,
            sources=sources,
            upstream=tuple(upstream),
            joins=tuple(dict.fromkeys(statement.joins)),
            key=table_key(name, statement, query.plan) if statement.kind == "table" else (),
            sinks=sinks,
            error_strategy=strategy,
            dead_letter_sink=dead_letter_sink,
            dead_letter_path=(
                resolve_path(dead_letter_path, self.base_dir) if dead_letter_path else None
            ),
            plan=query.plan,
        )

    def partitioning(self, name: str) -> tuple[bool, str]:
        """Whether statement ``name`` keeps its state per input partition, and why (not).

        A statement is partitioned (one query per partition of its input, spread over
        the workers; with ``'application.id'``, the partitions shared with the other
        processes of the application through its consumer group) when it reads one
        Kafka source and builds no table, and, if it keeps state by key, every group's
        records are in one partition: the GROUP BY holds the fields the message key is
        made of (``'<source>.key.fields'``, one topic), or, with ``'application.id'``,
        the input is re-keyed through a repartition topic first. Otherwise it runs as
        one pipeline reading every partition.
        """
        info = self._by_name[name]
        if info.is_table:
            return False, "a table is built whole in every process (from every partition)"
        kafka = [s for s, props in info.sources.items() if props.get("type") == "kafka_source"]
        if len(info.sources) != 1 or len(kafka) != 1:
            return False, "it does not read exactly one Kafka source"
        plan = info.plan
        if "union" in plan:
            return False, "a UNION ALL reads several inputs"
        stateful = bool(
            plan.get("group_by")
            or plan.get("aggregates")
            or plan.get("window")
            or plan.get("distinct")
        )
        if not stateful:
            return True, "stateless"
        source = kafka[0]
        declared = info.sources[source].get("key.fields", "")
        key_fields = {f.strip() for f in declared.split(",") if f.strip()}
        if len(info.sources[source].get("topic", source).split(",")) > 1:
            # Partition p of two topics may go to two processes: keyed state cannot
            # follow both, so it is re-keyed into one topic first.
            key_fields = set()
        grouped = {g["name"] for g in plan.get("group_by") or () if g.get("op") == "column"}
        if key_fields and key_fields <= grouped:
            return True, f"its GROUP BY holds the message key ({', '.join(sorted(key_fields))})"
        if not key_fields:
            why = f"'{source}.key.fields' does not say what the message key is made of"
        else:
            why = (
                f"its GROUP BY does not hold the message key "
                f"({', '.join(sorted(key_fields))}, '{source}.key.fields')"
            )
        cannot = self._no_repartition(name)
        if not cannot and not self.scaled_out(name):
            cannot = "it has no 'application.id' to name the repartition topic after"
        if not cannot:
            columns = ", ".join(self._group_columns(name))
            return True, f"repartitioned by {columns} ({why})"
        return False, f"{why}, and it cannot be repartitioned: {cannot}"

    def scaled_out(self, name: str) -> bool:
        """Whether statement ``name`` runs as part of a scaled-out application.

        With ``'application.id'`` set (SPEC section 9), the processes running the
        application share its partitions through consumer groups, keyed state is
        checkpointed to changelog topics and re-keyed through repartition topics, all
        named after it. Without it, an application runs in one process: its partitioned
        statements read every partition themselves (on their workers) and keep their
        state in memory, as before scale-out.
        """
        return "application.id" in self._by_name[name].properties

    def repartition_key(self, name: str) -> tuple[str, ...]:
        """The columns statement ``name``'s input is re-keyed by, or () when it is not.

        A statement keeping state by a GROUP BY key its input's message key does not
        hold is split in two (SPEC section 9): a stateless stage reads the source and
        writes each record to the repartition topic keyed by the GROUP BY columns, and
        the statement reads that topic, where every group is in one partition.
        """
        partitioned, why = self.partitioning(name)
        if not partitioned or not why.startswith("repartitioned"):
            return ()
        return self._group_columns(name)

    def _group_columns(self, name: str) -> tuple[str, ...]:
        plan = self._by_name[name].plan
        return tuple(g["name"] for g in plan.get("group_by") or () if g.get("op") == "column")

    def _no_repartition(self, name: str) -> str:
        """Why statement ``name`` cannot be repartitioned ('' when it can)."""
        info = self._by_name[name]
        plan = info.plan
        group_by = plan.get("group_by") or ()
        if not group_by:
            return "it has no GROUP BY key (one group over all records)"
        if not all(g.get("op") == "column" for g in group_by):
            return "it groups by an expression, not by columns"
        metadata = sorted(_read_columns(info) & {*METADATA_COLUMNS, "_partition", "_offset"})
        if metadata:
            return f"it reads {metadata[0]}, which would name the repartition topic's message"
        return ""

    def _compile(self, statement: Statement, properties: Mapping[str, str]) -> Any:
        from velostream.query import compile_statement

        # The statement carries the merged properties: application overrides must win over
        # its own WITH keys, which compile_statement would otherwise put on top.
        resolved = dataclasses.replace(statement, properties=dict(properties))
        with _located(statement):
            return compile_statement(resolved, path=self.processing_path)  # type: ignore[arg-type]

    # ------------------------------------------------------------------- validation

    def source_schema(self, statement: str, source: str) -> pa.Schema | None:
        """Return the input schema a source of a statement will have, without running.

        A file source's schema is inferred from a sample of its first lines, as the run
        infers it (:func:`velostream.app._schema.sample_schema`).

        Args:
            statement: the statement's name.
            source: the source's name (its ``FROM`` name).

        Returns:
            The schema; None when it cannot be known before the run (a file that is waited
            for and not there yet, empty files).

        Raises:
            SourceError: the source's file does not exist (and is not waited for) or cannot
                be read.
            ConfigError: the statement has no such source.
        """
        info = self._by_name.get(statement)
        if info is None or source not in info.sources:
            raise ConfigError(
                f"statement {statement!r} has no source {source!r}",
                key=f"{source}.type",
                allowed=sorted(info.sources) if info is not None else sorted(self._by_name),
            )
        props = info.sources[source]
        built = create_source(
            source,
            props,
            base_dir=self.base_dir,
            schema=self._declared_schema(source),
            statement_properties=info.properties,
        )
        if source in self._declared:
            if isinstance(built, FileSource) and built.wait_timeout_ms is None:
                built.resolve_files()  # its files must exist, as for the run
            return declared_schema(self._declared[source][0])
        if isinstance(built, FileSource):
            return sample_schema(built)
        return None

    def _check_sink_targets(self, info: StatementInfo) -> None:
        """Build every sink of a statement (nothing opened) and check its file can be made."""
        connectors = config.connectors(info.properties)
        names = list(info.sinks)
        if info.dead_letter_sink is not None:
            names.append(info.dead_letter_sink)
        targets: list[tuple[str, Path]] = []
        for name in names:
            with _located(info.statement):
                sink = create_sink(name, connectors[name], base_dir=self.base_dir)
            if isinstance(sink, FileSink):
                targets.append((name, sink.path))
        if info.dead_letter_path is not None:
            targets.append((f"{info.name}.dead_letter", info.dead_letter_path))
        for name, path in targets:
            if path.is_dir():
                raise SinkError(
                    f"file sink {name!r}: cannot write {path}: it is a directory", sink=name
                )
            parent = path.parent
            while not parent.exists() and parent != parent.parent:
                parent = parent.parent
            if not parent.is_dir():
                raise SinkError(
                    f"file sink {name!r}: cannot create the directory of {path}: {parent} "
                    "is not a directory",
                    sink=name,
                )

    def validate(self) -> dict[str, pa.Schema | None]:
        """Make every check :meth:`run` makes, short of processing data.

        Building the application already checked the SQL, the properties, the connectors,
        the dependencies and that no sink writes a file the application reads. This also:
        checks the sinks against the files again (a glob may match new files); builds every
        connector (opening nothing); checks that every file source's file exists (unless
        it is waited for with ``file.wait.timeout``); infers each file source's columns
        from a sample of its first lines and binds every statement's query to its input
        (a statement reading another statement's output: to that one's output schema; a
        join: to the joined table's columns and key), so
        an unknown column or a type error is reported with its SQL line and column. No
        file is written and no input is consumed.

        Returns:
            Statement name -> its output schema, in application order (None when its input
            schema cannot be known before the run).

        Raises:
            ConfigError: a sink on an input, a bad connector.
            SourceError: a source file that does not exist or cannot be read.
            SinkError: a sink path that is a directory or under a file.
            SqlValidationError: a statement does not fit its input's columns (unknown
                column, type error), with its SQL line and column.
        """
        with _defects_as_internal_errors("validating the application"):
            self._check_writes(self.statements)
            for info in self.statements:
                self._check_sink_targets(info)
            outputs: dict[str, pa.Schema | None] = {}
            for wave in self.waves:
                for name in wave:
                    info = self._by_name[name]
                    inputs = [(s, self.source_schema(name, s)) for s in info.sources]
                    inputs += [(upstream, outputs[upstream]) for upstream in info.upstream]
                    joined = [(table, outputs[table]) for table in info.joins]
                    if not inputs or any(schema is None for _, schema in [*inputs, *joined]):
                        outputs[name] = None
                        continue
                    query = self._compile(info.statement, info.properties)
                    for table, schema in joined:
                        # An empty table of the joined one's columns and key: the join's
                        # ON and columns are bound against it.
                        handle = TableHandle(table, self._by_name[table].key, schema=schema)
                        handle.mark_ready()
                        query.attach_table(table, handle)
                    for input_name, schema in inputs:
                        if isinstance(query, UnionQuery):
                            outputs[name] = query.bind(schema, input=input_name)
                        else:
                            outputs[name] = query.bind(schema)
            return {info.name: outputs.get(info.name) for info in self.statements}

    # ------------------------------------------------------------------- explain

    def explain(self, verbose: bool = False) -> str:
        """Describe the application: statements, sources, sinks, plans, dependency waves.

        Args:
            verbose: print each statement's full physical plan (JSON) too.

        Returns:
            A multi-line text.
        """
        where = str(self.source_file) if self.source_file is not None else "<sql>"
        lines = [f"application {where}: {len(self.statements)} statement(s)", ""]
        for info in self.statements:
            statement = info.statement
            first_line = " ".join(statement.text.split())
            if len(first_line) > 100:
                first_line = first_line[:97] + "..."
            lines.append(f"statement {info.name} (line {statement.line}): {first_line}")
            for source, props in info.sources.items():
                lines.append(f"  source {source}: {self._describe_connector(props)}")
            for upstream in info.upstream:
                kind = "table" if upstream in self._tables else "stream"
                lines.append(f"  source {upstream}: output of {kind} {upstream} (in-process)")
            for joined in info.joins:
                key = ", ".join(self._by_name[joined].key)
                lines.append(
                    f"  join   {joined}: table (key {key}), looked up per batch; reading "
                    f"starts once {joined} is READY"
                )
            if info.is_table:
                lines.append(
                    f"  table  {info.name}: key {', '.join(info.key)} (latest row per key), "
                    "READY once its input is loaded, then kept up to date"
                )
            for sink, props in info.sinks.items():
                lines.append(f"  sink   {sink}: {self._describe_connector(props)}")
            readers = [i.name for i in self.statements if info.name in i.upstream]
            for reader in readers:
                lines.append(f"  sink   {reader}: input of stream {reader} (in-process)")
            for source, props in info.sources.items():
                if props.get("type") == "kafka_source":
                    app_id = info.properties.get("application.id", "velostream")
                    group = props.get("group.id", f"{app_id}-{info.name}")
                    every = info.properties.get("commit.interval", "5s")
                    lines.append(
                        f"  commits: {source} as group {group}, every {every} once the sinks "
                        "acknowledged (at-least-once)"
                    )
                    lines.extend(self._explain_partitioning(info, group))
            lines.append(f"  error.strategy: {info.error_strategy}")
            if info.dead_letter_sink is not None:
                props = config.connectors(info.properties)[info.dead_letter_sink]
                lines.append(
                    f"  dead letters: {info.dead_letter_sink}: {self._describe_connector(props)}"
                )
            elif info.dead_letter_path is not None:
                lines.append(f"  dead letters: {info.dead_letter_path} (format json)")
            lines.append(f"  plan: {_plan_summary(info.plan)}")
            time_summary = _time_summary(info.plan)
            if time_summary is not None:
                lines.append(f"  time: {time_summary}")
            if verbose:
                lines.append(f"  physical plan: {json.dumps(info.plan, separators=(',', ':'))}")
            lines.append("")
        for name, (statement, props) in self._declared.items():
            columns = ", ".join(f"{c.name} {c.sql_type}" for c in statement.columns)
            lines.append(f"source {name} (line {statement.line}): ({columns})")
            lines.append(f"  {self._describe_connector(props)}")
            lines.append("")
        lines.append("dependency waves:")
        for index, wave in enumerate(self.waves, start=1):
            lines.append(f"  wave {index}: {', '.join(wave)}")
        return "\n".join(lines)

    def _describe_connector(self, props: Mapping[str, str]) -> str:
        if props.get("type") in ("kafka_sink", "kafka_source"):
            topic = props.get("topic") or "named after the connector"
            servers = props.get("bootstrap.servers")
            at = f" at {servers}" if servers else ""
            return f"{props['type']} topic {topic}{at} (format json)"
        path = props.get("path")
        where = f" {resolve_path(path, self.base_dir)}" if path else ""
        return f"{props.get('type')}{where} (format {props.get('format', 'json')})"

    # ------------------------------------------------------------------- running

    def _build_runners(
        self, abort: threading.Event, until_end: bool = True
    ) -> tuple[dict[str, StatementRunner], list[DeadLetterWriter]]:
        runners: dict[str, StatementRunner] = {}
        dead_letters: list[DeadLetterWriter] = []
        # The tables loading their bulk input at once (SPEC section 8: max_parallel).
        loading = threading.BoundedSemaphore(
            max(
                [int(i.properties.get("table.load.max_parallel", "4")) for i in self.statements]
                or [4]
            )
        )
        # Every sink also refuses, on its own, to write a file a source reads.
        reads = [str(path) for _, path in self._reads(self.statements)]
        for info in self.statements:
            stats = RetryStats()

            def guarded(sink: Sink, info: StatementInfo = info, stats: RetryStats = stats) -> Sink:
                return GuardedSink(sink, info.properties, stats=stats, abort=abort)

            writer = None
            if info.dead_letter_sink is not None:
                props = config.connectors(info.properties)[info.dead_letter_sink]
                dl_sink: Sink = create_sink(
                    info.dead_letter_sink, props, base_dir=self.base_dir, source_paths=reads
                )
                writer = DeadLetterWriter(guarded(dl_sink))
            elif info.dead_letter_path is not None:
                writer = DeadLetterWriter(
                    guarded(
                        FileSink(
                            f"{info.name}.dead_letter",
                            info.dead_letter_path,
                            append=True,
                            source_paths=reads,
                        )
                    )
                )
            if writer is not None:
                dead_letters.append(writer)
            policy = BadRecordPolicy(info.error_strategy, writer)
            columns = _read_columns(info)
            policy_retry = RetryPolicy.from_properties(info.properties)

            def retry(
                call: Callable[[], Any],
                name: str,
                policy_retry: RetryPolicy = policy_retry,
                stats: RetryStats = stats,
            ) -> Any:
                return retry_call(
                    call,
                    policy=policy_retry,
                    kind="source",
                    name=name,
                    stop_event=abort,
                    stats=stats,
                )

            sources = [
                create_source(
                    name,
                    (
                        # A table is rebuilt from the start of its topics on every run.
                        {"auto.offset.reset": "earliest", **props}
                        if info.is_table and props.get("type") == "kafka_source"
                        else props
                    ),
                    base_dir=self.base_dir,
                    bad_records=policy,
                    schema=self._declared_schema(name),
                    statement_properties=info.properties,
                    group_id=(
                        f"{info.properties.get('application.id', 'velostream')}-{info.name}"
                        + ("-table" if info.is_table else "")
                    ),
                    columns=columns,
                    retry=retry,
                )
                for name, props in info.sources.items()
            ]
            sinks = [
                guarded(
                    create_sink(
                        name,
                        props,
                        base_dir=self.base_dir,
                        source_paths=reads,
                        key_fields=info.statement.primary_key,
                    )
                )
                for name, props in info.sinks.items()
            ]
            query = self._compile(info.statement, info.properties)
            partitioned, why = self.partitioning(info.name)
            if partitioned and why != "stateless":
                # Keyed state per partition. A stateless statement keeps one query for
                # all its partitions: splitting its batches would only cost.
                query = PartitionedQuery(
                    functools.partial(self._compile, info.statement, info.properties),
                    workers=self.workers,
                    # Re-keyed input is written at least once: counted once.
                    dedup=ORIGIN_COLUMNS if self.repartition_key(info.name) else None,
                )
            elif any(p.get("type") == "kafka_source" for p in info.sources.values()):
                logger.info("%s: one pipeline reads every partition (%s)", info.name, why)
            table = None
            if info.is_table:
                handle = self.registry.get(info.name) or self.registry.create(
                    info.name, key=info.key, source=self._describe_table_input(info)
                )
                handle.reset()
                declared = [self._declared_schema(name) for name in info.sources]
                if len(declared) == 1 and declared[0] is not None and not info.upstream:
                    # Declared columns: the table's are known before any row comes.
                    query.bind(declared[0])
                table = TableSink(handle, sources, schema=functools.partial(_output_schema, query))
                sinks.append(table)
            stage: StatementRunner | None = None
            repartition = self.repartition_key(info.name) if partitioned else ()
            if repartition:
                # The statement reads the repartition topic; a stage of its own reads
                # the source and writes it there, keyed by the GROUP BY columns.
                stage, sources = self._repartition_stage(
                    info, sources[0], repartition, guarded, policy, writer, retry, query
                )
            runner = StatementRunner(
                info.name, query, sinks, sources=sources, bad_records=policy, dead_letters=writer
            )
            runner.table = table
            if info.joins:
                runner.gate = self._join_gate(info, query, abort)
            if table is not None and sources:
                runner.gate = self._load_gate(table, loading, runner.gate, abort)
            if partitioned and self.scaled_out(info.name):
                runner.group_member = True
                if why != "stateless" and not self._stateful_readers(info.name):
                    runner.changelog = self._changelog(info, sources[0])
            runner.retries = stats
            runner.retry_policy = RetryPolicy.from_properties(info.properties)
            runner.abort = abort
            runners[info.name] = runner
            if stage is not None:
                stage.retries = stats
                stage.retry_policy = runner.retry_policy
                stage.abort = abort
                runners[stage.name] = stage
                # It reads once the stage made the topic and told it the partitions
                # its records come from; bounded, once the stage wrote all of its input
                # there (its end is then the topic's end).
                runner.gate = _after(stage.finished if until_end else stage.ready, runner.gate)
        for info in self.statements:
            for upstream in info.upstream:
                runners[upstream].downstream.append(runners[info.name])
        for runner in runners.values():
            if runner.table is not None and not runner.sources:
                # Fed in-process: its load follows the sources of the statements it reads.
                runner.table.feed_from(self._root_sources(runner.name, runners))
        return runners, dead_letters

    def _explain_partitioning(self, info: StatementInfo, group: str) -> list[str]:
        """``explain``'s lines on how a statement reading Kafka is spread (SPEC section 9)."""
        partitioned, why = self.partitioning(info.name)
        if not partitioned:
            return [f"  partitions: one pipeline reads every partition ({why})"]
        workers = self.workers if self.workers is not None else default_workers()
        source = next(iter(info.sources.values()))
        strategy = source.get("partition.assignment.strategy", "cooperative-sticky")
        rebalancing = "cooperative" if "cooperative" in strategy else "eager"
        spread = (
            "one query for all its partitions (stateless: no state to keep per partition)"
            if why == "stateless"
            else f"one query per partition ({why}) on {workers} worker threads"
        )
        if not self.scaled_out(info.name):
            lines = [
                f"  partitions: {spread}, every partition read by this process (set "
                "'application.id' to share them between processes)"
            ]
            if why != "stateless":
                lines.append(
                    "  state: in memory only (no changelog without 'application.id'): "
                    "positions are committed as its rows are released"
                )
            return lines
        lines = [
            f"  partitions: {spread}; the processes of the application share them as "
            f"consumer group {group} ({rebalancing} rebalancing)"
        ]
        app_id = info.properties["application.id"]
        key = self.repartition_key(info.name)
        if key:
            lines.append(
                f"  creates topic {repartition_topic(app_id, info.name)}: the repartition "
                f"topic (as many partitions as the source's); stage {info.name}"
                f"{REPARTITION_SUFFIX} writes every record there keyed by "
                f"{', '.join(key)}, and {info.name} reads it as consumer group "
                f"{app_id}-{info.name}-repartitioned"
            )
        if why != "stateless" and not self._stateful_readers(info.name):
            from velostream.runtime.changelog import changelog_topic

            lines.append(
                f"  creates topic {changelog_topic(app_id, info.name)}: the state changelog "
                "(compacted, one partition per input partition; a snapshot of each "
                "changed partition's state at every commit, restored when a partition is "
                "assigned)"
            )
        elif why != "stateless":
            lines.append(
                "  state: not checkpointed (a statement reading its output keeps state): "
                "positions are committed as its rows are released"
            )
        return lines

    def _repartition_stage(
        self,
        info: StatementInfo,
        source: Any,
        key: tuple[str, ...],
        guarded: Callable[[Sink], Sink],
        policy: BadRecordPolicy,
        writer: DeadLetterWriter | None,
        retry: Callable[[Callable[[], Any], str], Any],
        query: PartitionedQuery,
    ) -> tuple[StatementRunner, list[Any]]:
        """The stage re-keying statement ``info``'s input, and the source it reads then.

        The stage is a stateless statement of its own (``<name>.repartition``, in the
        reports): ``SELECT * FROM <source>`` on the source's consumer group, written to
        ``<application.id>-<name>-repartition`` with the message key made of ``key``
        (the producer's partitioner then puts every group in one partition). The topic
        has as many partitions as the source's topic and is created, before the stage
        reads, when missing. The statement reads it as consumer group
        ``<application.id>-<name>-repartitioned``.

        Each record carries the source partition it came from (``_source_partition``):
        the statement's watermark is tracked per source partition, as in one pipeline
        reading the source, and every source partition holds it back until its first
        record (a partition of the repartition topic interleaves all of them).
        """
        app_id = info.properties.get("application.id", "velostream")
        topic = repartition_topic(app_id, info.name)
        _check_topic_name(info.name, topic, "repartition")
        name = source.name
        original = info.sources[name]
        client = _client_settings(source)
        stage_name = info.name + REPARTITION_SUFFIX
        # Several topics: the source numbers their partitions apart (`_source_partition`).
        origin = "_source_partition" if len(source.topics) > 1 else "CAST(_partition AS BIGINT)"
        statement = parse_script(
            f"SELECT *, {origin} AS _source_partition, _offset AS _source_offset "
            f"FROM {_quoted(name)}"
        )[0]
        stage_query = self._compile(statement, {})
        sink = guarded(
            create_sink(
                f"{info.name}_repartition",
                # Idempotent: a retried batch is never reordered (the statement drops
                # a record whose source offset is not beyond the last one folded in).
                {"type": "kafka_sink", "topic": topic, "enable.idempotence": "true", **client},
                key_fields=key,
            )
        )
        stage = StatementRunner(
            stage_name,
            stage_query,
            [sink],
            sources=[source],
            bad_records=policy,
            dead_letters=writer,
        )
        stage.group_member = True
        stage.ready = threading.Event()
        stage.gate = functools.partial(
            _create_repartition_topic, source, topic, client, query, stage.ready
        )
        own = ("topic", "group.id", "key.fields", "topic.wait.timeout", "topic.retry.interval")
        props = {
            **{k: v for k, v in original.items() if k not in own},
            "topic": topic,
            "group.id": f"{app_id}-{info.name}-repartitioned",
            "key.fields": ",".join(key),
            # The stage creates it once the source's topic exists.
            "topic.wait.timeout": "3650d",
            "topic.retry.interval": "200ms",
        }
        reread = create_source(
            name,
            props,
            base_dir=self.base_dir,
            bad_records=policy,
            schema=_with_origin(self._declared_schema(name)),
            statement_properties=info.properties,
            group_id=props["group.id"],
            columns=_read_columns(info),
            retry=retry,
        )
        return stage, [reread]

    def _stateful_readers(self, name: str) -> bool:
        """Whether a statement reading ``name``'s output in-process (transitively) keeps state.

        Its state would hold rows derived from ``name``'s input that ``name``'s
        changelog does not: ``name``'s positions can then only be committed as they are
        released, and its restarts re-read them (no changelog).
        """
        for info in self.statements:
            if name in info.upstream:
                plan = info.plan
                if info.is_table or any(
                    p.get("group_by") or p.get("aggregates") or p.get("window") or p.get("distinct")
                    for p in plan.get("union") or [plan]
                ):
                    return True
                if self._stateful_readers(info.name):
                    return True
        return False

    def _changelog(self, info: StatementInfo, source: Any) -> Any:
        """The state changelog of partitioned statement ``info`` (on its source's cluster)."""
        from velostream.runtime.changelog import StateChangelog, changelog_topic

        app_id = info.properties.get("application.id", "velostream")
        # changelog_topic refuses a name Kafka would (a ConfigError naming both).
        topic = changelog_topic(app_id, info.name)
        return StateChangelog(topic, _client_settings(source), statement=info.name)

    def _root_sources(self, name: str, runners: Mapping[str, StatementRunner]) -> list[Any]:
        """The external sources whose records reach statement ``name`` (in-process too)."""
        found: list[Any] = []
        stack, seen = [name], set()
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            found.extend(runners[current].sources)
            stack.extend(self._by_name[current].upstream)
        return found

    def _describe_table_input(self, info: StatementInfo) -> str:
        parts = [
            f"{name}: {self._describe_connector(props)}" for name, props in info.sources.items()
        ]
        parts += [f"{name} (in-process)" for name in info.upstream]
        return "; ".join(parts) or "no input"

    def _join_gate(
        self, info: StatementInfo, query: Any, abort: threading.Event
    ) -> Callable[[threading.Event], None]:
        """What the readers of a statement joining tables wait on before reading.

        Every joined table READY (SPEC section 8: a stream never reads a half-loaded
        table), then attached to the statement's query, once.
        """
        lock = threading.Lock()
        attached: list[bool] = []

        def gate(stop: threading.Event) -> None:
            for name in info.joins:
                waited = time.monotonic()
                while not (stop.is_set() or abort.is_set()):
                    try:
                        self.registry.wait_for_table_ready(name, timeout=0.2)
                        break
                    except TableNotReadyError as exc:
                        if exc.status == TableStatus.FAILED.value:
                            raise TableNotReadyError(
                                name, time.monotonic() - waited, exc.status
                            ) from exc.__cause__
                if stop.is_set() or abort.is_set():
                    return
            with lock:
                if not attached:
                    for name in info.joins:
                        handle = self.registry.get(name)
                        assert handle is not None
                        if handle.keyed is None:
                            raise SqlValidationError(
                                f"{info.name!r} joins table {name!r}, which is loaded but "
                                "empty, and its columns are unknown (its input had no row): "
                                "declare its source's columns (CREATE STREAM src (col TYPE, "
                                "...) WITH (...)) so an empty table can be joined"
                            )
                        query.attach_table(name, handle)
                    attached.append(True)
                    logger.info(
                        "%s: tables %s ready, reading starts", info.name, ", ".join(info.joins)
                    )

        return gate

    @staticmethod
    def _load_gate(
        table: TableSink,
        loading: threading.BoundedSemaphore,
        before: Callable[[threading.Event], None] | None,
        abort: threading.Event,
    ) -> Callable[[threading.Event], None]:
        """The gate of a table's readers: its joined tables, then a place to load.

        The tables it joins READY first (``before``), then one of
        ``table.load.max_parallel`` places to load, held until the table is READY or
        failed (its later, incremental updates take no place).
        """
        lock, releasing = threading.Lock(), threading.Lock()
        admitted: list[bool] = []

        def release() -> None:
            with releasing:
                if table.handle.status is TableStatus.LOADING or admitted != [True]:
                    return
                admitted.append(False)  # released once
                loading.release()
            table.handle._unsubscribe(release)

        def gate(stop: threading.Event) -> None:
            if before is not None:
                before(stop)
            with lock:
                if admitted:
                    return
                while not loading.acquire(timeout=0.2):
                    if stop.is_set() or abort.is_set():
                        return
                admitted.append(True)
                table.handle.progress.start()  # the load starts now
                table.handle._subscribe(release)
            release()  # it may have finished already (or failed meanwhile)

        return gate

    def serve_health(self, port: int = 0, host: str = "127.0.0.1") -> HealthServer:
        """Serve the health and metrics API of this application over HTTP (SPEC section 8).

        ``GET /health/tables``, ``/health/table/{name}``, ``/health/progress``,
        ``POST /health/table/{name}/wait?timeout=s`` and ``GET /metrics`` (Prometheus
        text format); see ``docs/health.md``.

        Args:
            port: the TCP port (0: any free one; the server's ``address`` tells).
            host: the address to listen on (loopback by default).

        Returns:
            The started server (``stop()`` ends it).

        Raises:
            ConfigError: the address cannot be listened on (in use, unknown host).
        """

        def progress() -> dict[str, Any]:
            snapshot = self.snapshot()
            return {
                "retries": snapshot.retries,
                "dead_letters": snapshot.dead_letters,
                "commits": snapshot.commits,
            }

        return HealthServer(
            self.registry,
            host=host,
            port=port,
            progress=progress,
            statements=lambda: self.snapshot().statements,
        ).start()

    def _execute(self, *, until_end: bool, stop: threading.Event) -> RunReport:
        started = time.monotonic()
        try:
            with _defects_as_internal_errors("starting the run"):
                # Again: a glob may match files that were not there when it was built.
                self._check_writes(self.statements)
                abort = threading.Event()
                runners, dead_letters = self._build_runners(abort, until_end)
        except BaseException as exc:
            self._report = RunReport(duration=time.monotonic() - started, error=exc)
            raise
        self._live = runners
        errors: list[BaseException] = []
        # A repartition stage runs in its statement's wave, before it.
        waves = [
            [*(n + REPARTITION_SUFFIX for n in wave if n + REPARTITION_SUFFIX in runners), *wave]
            for wave in self.waves
        ]
        graph = JobGraph(
            runners,
            waves,
            failed=abort,
            commit_interval=lambda runner: (
                config.parse_duration_ms(
                    self._by_name[runner.name.removesuffix(REPARTITION_SUFFIX)].properties.get(
                        "commit.interval", "5s"
                    )
                )
                / 1000
            ),
        )
        try:
            graph.run(until_end=until_end, stop=stop)
        except BaseException:  # KeyboardInterrupt included: the graph stopped and drained
            errors.extend(graph.errors or [])
        finally:
            for runner in runners.values():
                try:
                    runner.close()
                except Exception as exc:
                    errors.append(exc)
            for writer in dead_letters:
                try:
                    writer.close()
                except Exception as exc:
                    errors.append(exc)
        error = _foreign_error(errors[0], "running the application") if errors else None
        statements = {name: runner.report(started) for name, runner in runners.items()}
        for name, checkpoint in graph.checkpoints.items():
            statements[name].commits = checkpoint.commits
        report = RunReport(statements=statements, duration=time.monotonic() - started, error=error)
        self._report = report
        if error is not None:
            raise error
        return report

    def run(self, until_end: bool = True) -> RunReport:
        """Run every statement until its sources end, then flush and close the sinks.

        Args:
            until_end: make every source bounded (a file source ends at its last line even
                with ``watch``); with False, watched files are followed until interrupted.

        Returns:
            Per statement: records in/out, bad records, duration.

        Raises:
            ConfigError: a sink would write a file the application reads (nothing is
                opened then).
            SourceError, SinkError: an I/O failure.
            SqlValidationError: a statement does not fit its input's columns.
            DataError: a bad record under ``'error.strategy' = 'fail'`` (with file:line).
            InternalError: a defect of velostream (any other exception is wrapped).
        """
        self._stop = threading.Event()
        return self._execute(until_end=until_end, stop=self._stop)

    def start(self, until_end: bool = False) -> None:
        """Run in the background (long-running mode); :meth:`stop` ends it.

        Args:
            until_end: make every source bounded, as :meth:`run` does (the run then ends
                on its own; :meth:`stop` still stops it early).

        Raises:
            RuntimeError: already running.
        """
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("the application is already running")
        self._stop = threading.Event()
        self._report = None

        def background() -> None:
            try:
                self._execute(until_end=until_end, stop=self._stop)
            except BaseException as exc:
                logger.error("application stopped on error: %s", exc)

        self._thread = threading.Thread(target=background, name="velostream-app", daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a :meth:`start`-ed run to end on its own (all sources exhausted).

        Returns:
            True when the run has ended.
        """
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stop(self, timeout: float | None = None) -> RunReport | None:
        """Stop a :meth:`start`-ed run gracefully (what SIGINT/SIGTERM do to ``velostream run``).

        The sources stop reading; what was read is processed; the sinks are flushed and
        the positions they acknowledged committed; the sinks are closed. A statement
        reading Kafka keeps its open windows open (a restart re-reads their records); a
        statement reading only files is flushed, its windows closed, as at the end of
        its input.

        Args:
            timeout: seconds to wait for the run to end (None: as long as it takes).

        Returns:
            The run's report (its ``error`` is set if the run failed), or None when the
            run did not end within ``timeout``.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return None
        return self._report

    def snapshot(self) -> RunSnapshot:
        """Live counters of the run in progress (for a progress display).

        Returns:
            Per statement records in and out, bad records and consumer lag per source,
            and the job's retries, dead letters written and commits; empty before a run.
        """
        statements: dict[str, StatementProgress] = {}
        retries = dead = commits = 0
        for name, runner in list(self._live.items()):
            lags = {}
            for source in runner.sources:
                lag = getattr(source, "lag", None)
                if lag is not None:  # Kafka: behind the high watermarks; files: no lag
                    lags[source.name] = lag()
                commits += int(source.metrics().get("commits", 0))
            statements[name] = StatementProgress(
                records_in=runner.records_in,
                records_out=runner.records_out,
                bad_records=runner.bad_records.count if runner.bad_records is not None else 0,
                lag=lags,
            )
            retries += runner.retries.retries
            dead += runner.dead_letters.count if runner.dead_letters is not None else 0
        tables = {}
        for handle in self.registry.handles():
            load = handle.progress.as_dict()
            tables[handle.name] = TableProgressView(
                status=handle.status.value,
                rows=handle.row_count,
                records=int(load["records"] or 0),
                bytes=int(load["bytes"] or 0),
                records_per_second=float(load["records_per_second"] or 0.0),
                percent=load["percent"],
                eta_seconds=load["eta_seconds"],
            )
        return RunSnapshot(
            statements=statements,
            retries=retries,
            dead_letters=dead,
            commits=commits,
            tables=tables,
        )

    @property
    def report(self) -> RunReport | None:
        """The report of the last run that ended, if any."""
        return self._report
