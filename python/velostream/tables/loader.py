"""Loading tables: each table's bulk load, and loading many in dependency waves, in parallel.

A :class:`TableDefinition` names a table and gives its ``SELECT`` (SPEC section 12); its
sources are declared by its ``properties`` (the ``WITH`` keys of SPEC section 7,
``'src.type' = 'file_source'``, ``'src.path' = ...``) or by a ``WITH`` clause in its SQL,
and a ``FROM`` name that is another table reads that table's rows (a snapshot taken when
the load starts). The key is the ``PRIMARY KEY`` fields, else the ``GROUP BY`` keys: a
table built by ``GROUP BY`` holds the latest aggregate per key.

- :func:`plan_table` checks a definition and compiles it once (SQL, properties, key,
  inputs) into a :class:`TablePlan`;
- :class:`TableLoad` runs one: :meth:`TableLoad.bulk` compiles a fresh query, opens the
  inputs, reads them to their end (``until_end``) through the query, a whole batch per
  call into Rust, and upserts the output into the table's handle. It takes a stop event
  and a progress callback and leaves the query (with its GROUP BY state) and
  :meth:`TableLoad.apply` for whoever keeps the table up to date afterwards;
- :class:`ParallelLoader` loads a list of definitions: dependency waves (Kahn's
  algorithm), at most ``max_parallel`` tables loading at once within a wave, a timeout per
  table, transient failures retried with exponential backoff (each attempt starts the
  table afresh), and a failed table's dependents skipped, not started. It returns a
  :class:`LoadResult`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
from sqlglot import exp

from velostream import config
from velostream.app.graph import dependency_waves
from velostream.errors import (
    ConfigError,
    MissingDependencyError,
    SourceError,
    SqlValidationError,
    TableNotReadyError,
    VelostreamError,
)
from velostream.io.bad_records import BadRecordPolicy, DeadLetterWriter
from velostream.io.base import Source
from velostream.io.connectors import create_source, resolve_path
from velostream.io.file_sink import FileSink
from velostream.io.file_source import FileSource
from velostream.query import UnionQuery, compile_statement
from velostream.runtime.resilience import RetryEvent, RetryPolicy, is_transient_error, retry_call
from velostream.sql import Statement, parse_statement
from velostream.sql.statements import query_selects
from velostream.tables.dependencies import declared_sources_of, table_dependencies
from velostream.tables.progress import ProgressUnit, TableProgress
from velostream.tables.registry import TableHandle, TableRegistry, TableStatus
from velostream.tables.source import TableSource

__all__ = [
    "DEFAULT_RETRY",
    "LoadResult",
    "ParallelLoader",
    "TableDefinition",
    "TableLoad",
    "TablePlan",
    "is_transient_load_error",
    "plan_table",
    "table_key",
]

logger = logging.getLogger("velostream.tables")

#: The retries of :class:`ParallelLoader` unless it is given others (SPEC section 12).
DEFAULT_RETRY = RetryPolicy(max_attempts=3, initial_backoff=0.1, max_backoff=5.0, multiplier=2.0)

#: How long a load waits for a table it reads that another loader is still loading.
_INPUT_WAIT = 60.0


# --------------------------------------------------------------------------- definitions


@dataclass(frozen=True)
class TableDefinition:
    """A table to load.

    Attributes:
        name: the table's name.
        sql: its ``SELECT`` (``CREATE TABLE name AS SELECT ...`` is accepted too); mark
            fields ``PRIMARY KEY`` or use ``GROUP BY`` to give it a key.
        dependencies: names it depends on besides those its SQL reads.
        properties: ``WITH`` keys: its sources (``'src.type'``, ``'src.path'``, ...) and
            statement keys (``'error.strategy'``, ...); a ``WITH`` in ``sql`` wins.

    """

    name: str
    sql: str
    dependencies: Sequence[str] = ()
    properties: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"a table name is a non-empty string, not {self.name!r}", key="name")
        if not isinstance(self.sql, str):
            raise ConfigError(
                f"table {self.name!r}: sql is SQL text (a str), not {type(self.sql).__name__}",
                key="sql",
            )
        dependencies = (
            (self.dependencies,) if isinstance(self.dependencies, str) else self.dependencies
        )
        dependencies = tuple(dependencies)
        if not all(isinstance(d, str) and d for d in dependencies):
            raise ConfigError(
                f"table {self.name!r}: dependencies are table or source names, not "
                f"{dependencies!r}",
                key="dependencies",
            )
        properties = dict(self.properties)
        for key, value in properties.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise ConfigError(
                    f"table {self.name!r}: property {key!r} = {value!r}: keys and values are "
                    "strings (as in a WITH clause)",
                    key=str(key),
                    value=str(value),
                )
        object.__setattr__(self, "dependencies", dependencies)
        object.__setattr__(self, "properties", properties)


@dataclass
class LoadResult:
    """What :meth:`ParallelLoader.load` did.

    Attributes:
        successful: the tables loaded, in completion order.
        failed: table -> why it failed (after its retries, or its timeout).
        skipped: table -> why it was not started (naming the failed dependency).
        waves: the load waves, names sorted within a wave.
        total_duration: seconds the whole load took.
        attempts: table -> load attempts made (more than 1 when retried).

    """

    successful: list[str] = field(default_factory=list)
    failed: dict[str, Exception] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    waves: list[list[str]] = field(default_factory=list)
    total_duration: float = 0.0
    attempts: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class TablePlan:
    """A checked, compiled table definition: what :class:`TableLoad` runs.

    Attributes:
        name: the table's name.
        statement: its statement (a ``CREATE TABLE``, with the resolved properties).
        key: its key columns.
        sources: ``FROM`` name -> connector properties (keys relative to ``<name>.``),
            for the inputs that are sources.
        tables: the ``FROM`` names that are tables (read as snapshots).
        dependencies: every name it depends on (tables and sources).
        base_dir: what relative paths resolve against.
        processing_path: ``"direct"`` or ``"legacy"``.

    """

    name: str
    statement: Statement
    key: tuple[str, ...]
    sources: dict[str, dict[str, str]]
    tables: tuple[str, ...]
    dependencies: frozenset[str]
    base_dir: Path
    processing_path: Literal["direct", "legacy"] = "direct"

    @property
    def properties(self) -> dict[str, str]:
        """The resolved ``WITH`` keys (definition properties, then the SQL's ``WITH``)."""
        return self.statement.properties

    def compile(self) -> Any:
        """A fresh compiled query (a ``Query`` or a ``UnionQuery``) of the table's SQL."""
        return compile_statement(self.statement, path=self.processing_path)

    def describe(self) -> str:
        """Where the table's rows come from, in words (the handle's ``source``)."""
        parts = []
        for name, props in self.sources.items():
            kind = props.get("type", "?")
            if kind == "file_source" and props.get("path"):
                parts.append(f"{name}: {kind} {resolve_path(props['path'], self.base_dir)}")
            elif kind == "kafka_source":
                parts.append(f"{name}: {kind} topic {props.get('topic', name)}")
            else:
                parts.append(f"{name}: {kind}")
        parts += [f"{name}: table" for name in self.tables]
        return "; ".join(parts)


def _table_statement(definition: TableDefinition) -> Statement:
    statement = parse_statement(definition.sql)
    if statement.is_declaration or statement.kind == "stream":
        raise SqlValidationError(
            f"table {definition.name!r}: its sql must be a SELECT (or CREATE TABLE ... AS "
            "SELECT), not CREATE STREAM",
            line=statement.line,
            column=statement.column,
        )
    if statement.name is not None and statement.name != definition.name:
        raise SqlValidationError(
            f"table {definition.name!r}: its sql creates table {statement.name!r}; use the "
            "same name or a plain SELECT",
            line=statement.line,
            column=statement.column,
        )
    return statement


def _group_key_names(name: str, statement: Statement, plan: Mapping[str, Any]) -> tuple[str, ...]:
    """The output columns holding the GROUP BY keys, in GROUP BY order."""
    names: list[str] = []
    for index in range(len(plan.get("group_by") or ())):
        found = [
            item["name"]
            for item in plan.get("select", [])
            if isinstance(item.get("expr"), dict)
            and item["expr"].get("op") == "group_key"
            and item["expr"].get("index") == index
        ]
        if not found:
            select = query_selects(statement.query)[0]
            group = select.args.get("group")
            expression = group.expressions[index] if group is not None else None
            text = expression.sql() if expression is not None else f"key {index + 1}"
            raise SqlValidationError(
                f"table {name!r}: its GROUP BY key {text} is not a select field; select it "
                "(as it is, not inside an expression): the GROUP BY keys are the table's key",
                line=statement.line,
                column=statement.column,
            )
        names.append(found[0])
    return tuple(names)


def table_key(name: str, statement: Statement, plan: Mapping[str, Any]) -> tuple[str, ...]:
    """A table's key columns: its ``PRIMARY KEY`` fields, else its GROUP BY keys.

    Raises:
        SqlValidationError: neither (a keyless table), or a GROUP BY key not selected.
    """
    if statement.primary_key:
        key = tuple(dict.fromkeys(statement.primary_key))
    else:
        key = _group_key_names(name, statement, plan)
    if not key:  # the planner refuses this first; kept for a plan without GROUP BY keys
        raise SqlValidationError(
            f"CREATE TABLE {name} needs a key: mark a select field PRIMARY KEY or use GROUP BY",
            line=statement.line,
            column=statement.column,
        )
    return key


def plan_table(
    definition: TableDefinition,
    *,
    dependencies: Collection[str] | None = None,
    tables: Collection[str] = (),
    base_dir: str | os.PathLike[str] | None = None,
    processing_path: Literal["direct", "legacy"] = "direct",
) -> TablePlan:
    """Check and compile a definition (nothing is opened).

    Args:
        definition: the table.
        dependencies: its dependencies (from :func:`table_dependencies`); None: its
            explicit ones only.
        tables: the names of the tables it may read (defined or registered).
        base_dir: what relative paths resolve against (default: the working directory).
        processing_path: ``"direct"`` (default) or ``"legacy"``.

    Returns:
        The plan.

    Raises:
        SqlSyntaxError: the SQL does not parse.
        SqlValidationError: the SQL cannot run, or the table has no key.
        ConfigError: a bad property or connector.
        MissingDependencyError: a ``FROM`` name is neither a source it declares nor a
            table.

    """
    base = Path(base_dir).resolve() if base_dir is not None else Path.cwd()
    parsed = _table_statement(definition)
    merged = config.resolve_properties(
        {**definition.properties, **parsed.properties}, base_dir=base
    )
    # Planned as CREATE TABLE <name>: the planner then requires a key.
    statement = dataclasses.replace(parsed, kind="table", name=definition.name, properties=merged)
    query = compile_statement(statement, path=processing_path)
    connectors = config.connectors(merged)
    types = {
        cname: config.validate_connector_properties(cname, cprops)
        for cname, cprops in connectors.items()
    }
    declared = declared_sources_of(definition, parsed)
    sources: dict[str, dict[str, str]] = {}
    table_inputs: list[str] = []
    for source in dict.fromkeys(statement.sources):
        if source in declared:
            if not types[source].endswith("_source"):
                raise ConfigError(
                    f"{source!r} is read in the FROM of table {definition.name!r} but "
                    f"'{source}.type' = '{types[source]}' is not a source",
                    key=f"{source}.type",
                    value=types[source],
                )
            sources[source] = connectors[source]
        elif source in tables:
            table_inputs.append(source)
        else:
            raise MissingDependencyError(definition.name, source)
    key = table_key(definition.name, statement, query.plan)
    deps = set(dependencies) if dependencies is not None else set(definition.dependencies)
    return TablePlan(
        name=definition.name,
        statement=statement,
        key=key,
        sources=sources,
        tables=tuple(table_inputs),
        dependencies=frozenset(deps | set(statement.sources) | set(statement.joins)),
        base_dir=base,
        processing_path=processing_path,
    )


# --------------------------------------------------------------------------- one table


def is_transient_load_error(error: BaseException) -> bool:
    """Whether a failed load attempt is worth another attempt.

    A :class:`~velostream.errors.SourceError` (a missing file, a topic not there yet, a
    read that failed) and any transient Kafka or OS error are; bad SQL, bad
    configuration and bad data (``DataError`` under ``'error.strategy' = 'fail'``) are not.
    """
    return isinstance(error, SourceError) or is_transient_error(error)


class _InputMeter:
    """The progress of one input: its bytes read, and its total when known."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.bytes_read = 0
        self.total: int | None = None
        self.unit: ProgressUnit | None = None
        self.started = False

    def bytes_delta(self) -> int:
        now = int(self.source.metrics().get("bytes_read", 0))
        delta, self.bytes_read = now - self.bytes_read, now
        return delta

    def measure(self) -> None:
        """The input's total, once it has started (its files exist, its partitions known)."""
        self.started = True
        source = self.source
        try:
            if isinstance(source, FileSource):
                self.total = sum(f.stat().st_size for f in source.resolve_files())
                self.unit = "bytes"
            elif isinstance(source, TableSource):
                self.total = source.total_rows()
                self.unit = "records"
            elif (lag := getattr(source, "lag", None)) is not None:
                behind = lag()
                if behind is not None:
                    read = int(source.metrics().get("records_read", 0))
                    self.total = read + int(behind)
                    self.unit = "records"
        except (OSError, VelostreamError):
            self.total = None  # a file gone since: the percent stays unknown


#: Batches a table load reads ahead of its query and upserts.
_READ_AHEAD = 4

_DONE = object()


def _read_ahead(source: Source, stop: threading.Event | None) -> Iterator[pa.RecordBatch]:
    """``source``'s batches to its end, read and decoded by a thread of their own.

    Reading and decoding (Rust, GIL released) then overlap the query and the upserts
    (Rust too) on a second core. The reader waits while ``_READ_AHEAD`` batches are
    queued; its error is raised here; closing the iterator early stops it.
    """
    inbox: queue.Queue[Any] = queue.Queue(maxsize=_READ_AHEAD)
    halt = threading.Event()

    def put(item: Any) -> bool:
        while not halt.is_set():
            try:
                inbox.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for batch in source.batches(until_end=True, stop=stop):
                if not put(batch):
                    return
        except BaseException as exc:
            put(exc)
            return
        put(_DONE)

    reader = threading.Thread(target=read, name=f"velostream-load-{source.name}", daemon=True)
    reader.start()
    try:
        while True:
            item = inbox.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        halt.set()
        reader.join()


class TableLoad:
    """Loads one table: its inputs through its query into its handle.

    Reusable after the bulk load: :attr:`query` keeps the query's state (a GROUP BY
    table's aggregates) and :meth:`apply` runs one more batch of an input through it into
    the table, so a runtime can keep the table up to date (file tail, Kafka).

    Attributes:
        plan: the table's plan.
        registry: where the tables it reads are.
        query: the query of the last :meth:`bulk` (None before).

    """

    def __init__(
        self,
        plan: TablePlan,
        registry: TableRegistry,
        *,
        retry: RetryPolicy = DEFAULT_RETRY,
        input_wait: float = _INPUT_WAIT,
    ) -> None:
        """Prepare the load (nothing is opened).

        Args:
            plan: the table's plan (:func:`plan_table`).
            registry: where the tables it reads are.
            retry: the retries of a Kafka source's broker calls.
            input_wait: seconds to wait for a table it reads that is still loading.

        """
        self.plan = plan
        self.registry = registry
        self.retry = retry
        self.input_wait = input_wait
        self.query: Any = None
        self.bad_records: BadRecordPolicy | None = None

    def _bad_record_policy(self) -> tuple[BadRecordPolicy, DeadLetterWriter | None]:
        properties = self.plan.properties
        strategy = properties.get("error.strategy", "fail")
        writer = None
        path = properties.get("dead_letter.path")
        if strategy == "dead_letter" and path is not None:
            sink = FileSink(
                f"{self.plan.name}.dead_letter",
                resolve_path(path, self.plan.base_dir),
                append=True,
            )
            writer = DeadLetterWriter(sink)
        return BadRecordPolicy(strategy, writer), writer

    def _table_input(self, name: str, stop: threading.Event | None) -> TableSource:
        handle = self.registry.get(name)
        if handle is None:
            raise TableNotReadyError(name, None, "unknown")
        deadline = time.monotonic() + self.input_wait
        while not handle.wait_ready(0.1):  # a failed table raises TableNotReadyError
            if stop is not None and stop.is_set():
                break
            if time.monotonic() >= deadline:
                raise TableNotReadyError(name, self.input_wait, handle.status.value)
        return TableSource(handle)

    def open_inputs(
        self, stop: threading.Event | None = None, bad_records: BadRecordPolicy | None = None
    ) -> list[Source]:
        """Create the table's inputs: its sources, then the tables it reads.

        Args:
            stop: ends waits (a Kafka source's retries, a table still loading).
            bad_records: the bad-record policy of the sources.

        Raises:
            ConfigError: a bad connector.
            TableNotReadyError: a table it reads failed, or is not ready in time.

        """
        plan = self.plan
        columns = {c.name for c in plan.statement.query.find_all(exp.Column)}
        app_id = plan.properties.get("application.id", "velostream")

        def retry(call: Callable[[], Any], name: str) -> Any:
            return retry_call(call, policy=self.retry, kind="source", name=name, stop_event=stop)

        inputs: list[Source] = [
            create_source(
                name,
                props,
                base_dir=plan.base_dir,
                bad_records=bad_records,
                statement_properties=plan.properties,
                group_id=f"{app_id}-{plan.name}",
                columns=columns,
                retry=retry,
            )
            for name, props in plan.sources.items()
        ]
        inputs += [self._table_input(name, stop) for name in plan.tables]
        return inputs

    def apply(
        self, batch: pa.RecordBatch, handle: TableHandle, *, input: str | None = None
    ) -> pa.RecordBatch:
        """Run one batch of an input through the query and upsert its output.

        Args:
            batch: input records.
            handle: the table.
            input: the input's name (needed when a UNION ALL reads several).

        Returns:
            The query's output (the rows upserted).

        """
        if self.query is None:
            self.query = self.plan.compile()
        if isinstance(self.query, UnionQuery):
            out = self.query.process(batch, input=input)
        else:
            out = self.query.process(batch)
        handle.upsert(out, count=False)
        return out

    def bulk(
        self,
        handle: TableHandle,
        *,
        stop: threading.Event | None = None,
        on_progress: Callable[[TableProgress], None] | None = None,
        flush: bool = True,
    ) -> bool:
        """Load the table from scratch: every input read to its end, then the query flushed.

        The handle's status is left as it is (the caller marks it ready); its progress
        is restarted and counts the input records and bytes.

        Args:
            handle: the table (empty: see :meth:`TableHandle.reset`).
            stop: when set, the load ends early (at the next batch, or a source's wait).
            on_progress: called after each batch with the table's progress.
            flush: end the query's input when the inputs end (closing every window). A
                table kept up to date afterwards passes False: its query then goes on
                with :meth:`apply` (a flushed query takes no more input).

        Returns:
            True when every input was read to its end; False when ``stop`` ended it.

        Raises:
            SourceError: an input cannot be read.
            DataError: a bad record under ``'error.strategy' = 'fail'``.
            SqlValidationError: the query does not fit its input's columns.
            TableNotReadyError: a table it reads failed or is not ready in time.

        """
        self.query = self.plan.compile()
        progress = handle.progress
        progress.start()
        policy, writer = self._bad_record_policy()
        self.bad_records = policy
        inputs: list[Source] = []
        try:
            inputs = self.open_inputs(stop, policy)
            meters = [_InputMeter(source) for source in inputs]
            for meter in meters:
                for batch in _read_ahead(meter.source, stop):
                    if not meter.started:
                        meter.measure()
                        self._set_total(progress, meters)
                    self.apply(batch, handle, input=meter.source.name)
                    progress.add(batch.num_rows, meter.bytes_delta())
                    if on_progress is not None:
                        on_progress(progress)
                    if stop is not None and stop.is_set():
                        return False
                if stop is not None and stop.is_set():
                    return False
            if flush:
                handle.upsert(self.query.flush(), count=False)
            if on_progress is not None:
                on_progress(progress)
            return True
        finally:
            for source in inputs:
                source.close()
            if writer is not None:
                writer.close()

    @staticmethod
    def _set_total(progress: TableProgress, meters: list[_InputMeter]) -> None:
        units = {m.unit for m in meters}
        if all(m.started for m in meters) and len(units) == 1 and None not in units:
            if all(m.total is not None for m in meters):
                unit = next(iter(units))
                assert unit is not None
                progress.set_total(sum(m.total or 0 for m in meters), unit)


# --------------------------------------------------------------------------- many tables


@dataclass(eq=False)
class _Run:
    """One table being loaded by :class:`ParallelLoader` (state of the main thread)."""

    name: str
    load: TableLoad
    handle: TableHandle
    outcomes: queue.Queue[tuple[_Run, bool | BaseException]]
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    deadline: float | None = None
    attempts: int = 0
    timed_out: bool = False


def _check_options(max_parallel: int, table_timeout: float | None, retry: RetryPolicy) -> None:
    if isinstance(max_parallel, bool) or not isinstance(max_parallel, int) or max_parallel < 1:
        raise ConfigError(
            f"max_parallel must be a positive integer, not {max_parallel!r}",
            key="max_parallel",
            value=str(max_parallel),
        )
    if table_timeout is not None and (
        isinstance(table_timeout, bool)
        or not isinstance(table_timeout, (int, float))
        or not math.isfinite(table_timeout)
        or table_timeout <= 0
    ):
        raise ConfigError(
            f"table_timeout must be a positive number of seconds or None, not {table_timeout!r}",
            key="table_timeout",
            value=str(table_timeout),
        )
    if not isinstance(retry, RetryPolicy):
        raise ConfigError(
            f"retry must be a velostream.RetryPolicy, not {type(retry).__name__}", key="retry"
        )


class ParallelLoader:
    """Loads tables in dependency waves, several at once.

    Tables load in waves (each wave reads only tables of earlier waves); within a wave at
    most ``max_parallel`` load at once, each on its own thread, and the next wave starts
    when every table of the wave has finished, failed or been skipped. A load attempt that
    fails with a transient error (:func:`is_transient_load_error`) is retried with
    ``retry``'s exponential backoff, starting the table afresh. A table that takes longer
    than ``table_timeout`` is told to stop (its sources' waits and reads end at the next
    step) and fails with a :class:`~velostream.errors.TableNotReadyError`. The tables that
    depend on a failed one, directly or not, are skipped.

    Attributes:
        registry: where the tables are created (``LOADING`` when the load starts).
        max_parallel: tables loading at once at most.
        table_timeout: seconds one table may take (None: no limit).
        retry: the retries of transient failures.

    """

    def __init__(
        self,
        registry: TableRegistry,
        max_parallel: int = 4,
        table_timeout: float | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        *,
        base_dir: str | os.PathLike[str] | None = None,
        processing_path: Literal["direct", "legacy"] = "direct",
        on_retry: Callable[[str, RetryEvent], None] | None = None,
    ) -> None:
        """Create a loader.

        Args:
            registry: where the tables are created.
            max_parallel: tables loading at once at most (default 4).
            table_timeout: seconds one table may take, retries included (None: no limit).
            retry: the retries of transient failures (default: 3 attempts, backoff from
                0.1 s doubling up to 5 s).
            base_dir: what relative paths resolve against (default: working directory).
            processing_path: ``"direct"`` (default) or ``"legacy"``.
            on_retry: told ``(table, event)`` before each retry's wait.

        Raises:
            ConfigError: a bad option.

        """
        _check_options(max_parallel, table_timeout, retry)
        self.registry = registry
        self.max_parallel = max_parallel
        self.table_timeout = float(table_timeout) if table_timeout is not None else None
        self.retry = retry
        self.base_dir = base_dir
        self.processing_path = processing_path
        self.on_retry = on_retry
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ planning

    def plan(
        self, definitions: Iterable[TableDefinition]
    ) -> tuple[list[list[str]], list[TablePlan]]:
        """Check and compile definitions, and order them in waves (nothing is opened).

        Args:
            definitions: the tables.

        Returns:
            The waves (names sorted within a wave) and each table's plan, in definition
            order.

        Raises:
            SqlSyntaxError, SqlValidationError, ConfigError: a definition is wrong
                (including a name already registered).
            MissingDependencyError: a table depends on a name that is neither a table nor
                a declared source.
            CircularDependencyError: the tables depend on each other in a cycle.

        """
        items = list(definitions)
        for definition in items:
            if not isinstance(definition, TableDefinition):
                raise ConfigError(
                    f"load() takes TableDefinition objects, not {type(definition).__name__}",
                    key="definitions",
                )
            if definition.name in self.registry:
                raise ConfigError(
                    f"table {definition.name!r} is already registered: drop it first",
                    key="name",
                    value=definition.name,
                )
        existing = set(self.registry.names())
        dependencies = table_dependencies(items, tables=existing)
        waves = dependency_waves({name: sorted(deps) for name, deps in dependencies.items()})
        tables = existing | set(dependencies)
        plans = [
            plan_table(
                definition,
                dependencies=dependencies[definition.name],
                tables=tables,
                base_dir=self.base_dir,
                processing_path=self.processing_path,
            )
            for definition in items
        ]
        return waves, plans

    # ------------------------------------------------------------------ loading

    def load(self, definitions: Iterable[TableDefinition]) -> LoadResult:
        """Load tables: every one checked first, then loaded wave by wave.

        Every table is created in the registry (``LOADING``) before the first wave
        starts; each becomes ``READY`` when loaded, or ``FAILED`` (a failure, its
        timeout, or a failed dependency: then its error is a
        :class:`~velostream.errors.TableNotReadyError` naming that dependency).

        Args:
            definitions: the tables.

        Returns:
            What loaded, what failed and why, what was skipped and why, the waves and
            the duration.

        Raises:
            SqlSyntaxError, SqlValidationError, ConfigError, MissingDependencyError,
                CircularDependencyError: as :meth:`plan` (before anything is loaded).

        """
        started = time.monotonic()
        waves, plans = self.plan(definitions)
        result = LoadResult(waves=waves)
        by_name = {p.name: p for p in plans}
        outcomes: queue.Queue[tuple[_Run, bool | BaseException]] = queue.Queue()
        runs: dict[str, _Run] = {}
        try:
            for plan in plans:
                handle = self.registry.create(plan.name, key=plan.key, source=plan.describe())
                load = TableLoad(plan, self.registry, retry=self.retry)
                runs[plan.name] = _Run(plan.name, load, handle, outcomes)
        except BaseException:
            # Registered meanwhile by someone else: leave no half-made load behind.
            for name in runs:
                self.registry.drop(name)
            raise
        zombies: list[_Run] = []
        try:
            for wave in waves:
                pending: list[_Run] = []
                for name in wave:
                    reason = self._skip_reason(by_name[name], result)
                    if reason is None:
                        pending.append(runs[name])
                        continue
                    dependency, text = reason
                    result.skipped[name] = text
                    error = TableNotReadyError(dependency, None, TableStatus.FAILED.value)
                    error.__cause__ = result.failed.get(dependency)
                    runs[name].handle.mark_failed(error)
                    logger.warning("table %r skipped: %s", name, text)
                self._run_wave(pending, result, zombies, outcomes)
        except BaseException:
            # Interrupted (Ctrl-C): no table may stay LOADING for its readers to wait on.
            for run in runs.values():
                if run.handle.status is TableStatus.LOADING:
                    run.handle.mark_failed(
                        TableNotReadyError(run.name, None, TableStatus.LOADING.value)
                    )
            raise
        finally:
            for run in runs.values():
                if run.thread is not None and run.thread.is_alive():
                    run.stop.set()
            for run in zombies:
                if run.thread is not None:
                    run.thread.join(1.0)
        result.attempts = {name: run.attempts for name, run in runs.items() if run.attempts}
        result.total_duration = time.monotonic() - started
        return result

    @staticmethod
    def _skip_reason(plan: TablePlan, result: LoadResult) -> tuple[str, str] | None:
        """(the dependency, why the table is skipped), when a dependency failed or was skipped."""
        for dependency in sorted(plan.dependencies):
            if dependency in result.failed:
                error = result.failed[dependency]
                return dependency, (
                    f"dependency {dependency!r} failed: {type(error).__name__}: {error}"
                )
            if dependency in result.skipped:
                return dependency, (
                    f"dependency {dependency!r} was skipped: {result.skipped[dependency]}"
                )
        return None

    def _run_wave(
        self,
        pending: list[_Run],
        result: LoadResult,
        zombies: list[_Run],
        outcomes: queue.Queue[tuple[_Run, bool | BaseException]],
    ) -> None:
        active: dict[str, _Run] = {}
        queue_ = list(pending)
        while queue_ or active:
            # A timed-out table whose thread has not ended yet still holds its slot.
            zombies[:] = [z for z in zombies if z.thread is not None and z.thread.is_alive()]
            while queue_ and len(active) + len(zombies) < self.max_parallel:
                run = queue_.pop(0)
                self._start(run)
                active[run.name] = run
            now = time.monotonic()
            deadlines = [r.deadline for r in active.values() if r.deadline is not None]
            wait = min(deadlines) - now if deadlines else None
            if zombies and queue_:
                wait = 0.05 if wait is None else min(wait, 0.05)
            try:
                run, outcome = outcomes.get(timeout=max(0.0, wait) if wait is not None else None)
            except queue.Empty:
                pass
            else:
                if active.get(run.name) is run:
                    del active[run.name]
                    self._finish(run, outcome, result)
            now = time.monotonic()
            for run in list(active.values()):
                if run.deadline is not None and now >= run.deadline:
                    del active[run.name]
                    self._time_out(run, result)
                    zombies.append(run)

    def _start(self, run: _Run) -> None:
        if self.table_timeout is not None:
            run.deadline = time.monotonic() + self.table_timeout
        run.thread = threading.Thread(
            target=self._worker, args=(run,), name=f"velostream-table-{run.name}", daemon=True
        )
        run.thread.start()

    def _finish(self, run: _Run, outcome: bool | BaseException, result: LoadResult) -> None:
        if outcome is True:
            run.handle.mark_ready()
            result.successful.append(run.name)
            return
        error = (
            outcome
            if isinstance(outcome, Exception)
            else SourceError(f"table {run.name!r}: the load stopped early", source=run.name)
        )
        run.handle.mark_failed(error)
        result.failed[run.name] = error
        logger.error("table %r failed to load: %s", run.name, error)

    def _time_out(self, run: _Run, result: LoadResult) -> None:
        with self._lock:
            run.timed_out = True
            run.stop.set()
            error = TableNotReadyError(run.name, self.table_timeout, TableStatus.LOADING.value)
            run.handle.mark_failed(error)
        result.failed[run.name] = error
        logger.error(
            "table %r did not load within its timeout of %gs: stopped", run.name, self.table_timeout
        )

    def _attempt(self, run: _Run) -> bool:
        with self._lock:
            if run.timed_out:
                return False
            run.attempts += 1
            run.handle.reset()
        return run.load.bulk(run.handle, stop=run.stop)

    def _worker(self, run: _Run) -> None:
        outcome: bool | BaseException
        on_retry = None
        if self.on_retry is not None:
            callback = self.on_retry

            def on_retry(event: RetryEvent) -> None:
                callback(run.name, event)

        try:
            outcome = retry_call(
                lambda: self._attempt(run),
                policy=self.retry,
                kind="source",
                name=run.name,
                is_transient=is_transient_load_error,
                on_retry=on_retry,
                stop_event=run.stop,
            )
        except Exception as exc:
            outcome = exc
        except BaseException as exc:  # pragma: no cover - SystemExit in a thread
            outcome = exc
        run.outcomes.put((run, outcome))
