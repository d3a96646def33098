"""An application: a SQL script of statements wired to their sources and sinks.

Statements come from :func:`velostream.sql.parse_script`. Each statement's ``WITH``
clause declares its connectors by name prefix (SPEC section 7):

- a ``FROM`` name with ``'<name>.type'`` = ``file_source`` is read from that source;
- a ``FROM`` name that is another stream of the application reads that stream's output
  in-process (the statements then run in dependency waves);
- any other ``FROM`` name is a :class:`~velostream.errors.ConfigError` naming it;
- every connector of type ``*_sink`` receives every output row (fan-out), except the one
  named by ``'dead_letter.sink'``, which receives the dead letters.

Application-level properties (``properties=``, ``velostream run --set``) override the
``WITH`` keys: unprefixed keys apply to every statement, ``<name>.`` keys to the
statements that declare or read ``<name>``. Relative paths resolve against the directory
of the SQL file. Kafka connectors and ``CREATE TABLE`` are rejected until they land.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlglot import exp

from velostream import config
from velostream.app.graph import dependency_waves
from velostream.errors import ConfigError, SqlValidationError, VelostreamError
from velostream.io.bad_records import BadRecordPolicy, DeadLetterWriter
from velostream.io.base import Sink
from velostream.io.connectors import create_sink, create_source, resolve_path
from velostream.io.file_sink import FileSink
from velostream.runtime.job import StatementRunner, run_source
from velostream.runtime.report import RunReport
from velostream.sql import Statement, parse_script
from velostream.sql.dialect import node_position

logger = logging.getLogger("velostream.app")

_UNSUPPORTED_CONNECTORS = ("kafka_source", "kafka_sink")


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
    columns = ", ".join(item.get("name", "*") for item in plan.get("select", []))
    parts = [f"read {plan.get('input')}"]
    if plan.get("filter") is not None:
        parts.append("filter")
    if plan.get("group_by") or plan.get("aggregates"):
        parts.append(f"aggregate ({len(plan.get('aggregates', []))} aggregates)")
    if plan.get("window"):
        parts.append("window")
    parts.append(f"project [{columns}]")
    if plan.get("group_by") or plan.get("aggregates") or plan.get("window"):
        parts.append(f"emit {plan.get('emit')}")
    return " -> ".join(parts)


def _config_error(message: str, key: str, value: str | None = None, **extra: Any) -> ConfigError:
    return ConfigError(message, key=key, value=value, **extra)


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
    ) -> None:
        """Parse and validate an application (prefer :meth:`from_file` / :meth:`from_sql`).

        Args:
            text: the SQL script.
            properties: application-level properties, overriding the ``WITH`` keys.
            base_dir: what relative paths resolve against (default: working directory).
            source_file: the SQL file, for messages.
            processing_path: ``"direct"`` (default) or ``"legacy"``.

        Raises:
            SqlSyntaxError: the script does not parse.
            SqlValidationError: a statement cannot run (or is not supported yet).
            ConfigError: a bad, unknown or unsupported property, connector or FROM name.
            CircularDependencyError: streams read each other in a cycle.
        """
        self.text = text
        self.base_dir = Path(base_dir).resolve() if base_dir is not None else Path.cwd()
        self.source_file = Path(source_file) if source_file is not None else None
        self.processing_path = processing_path
        self.properties = {
            k: config.expand_env(v, key=k) for k, v in dict(properties or {}).items()
        }
        self._statements = parse_script(text)
        if not self._statements:
            raise SqlValidationError("the application holds no statement", line=1, column=1)
        self.statements: list[StatementInfo] = self._resolve()
        self._by_name = {info.name: info for info in self.statements}
        self.waves: list[list[str]] = dependency_waves(
            {info.name: info.upstream for info in self.statements}
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._report: RunReport | None = None

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        properties: Mapping[str, str] | None = None,
        *,
        processing_path: str = "direct",
    ) -> Application:
        """Load an application from a SQL file; relative paths resolve against its directory.

        Args:
            path: the SQL file.
            properties: application-level properties (override the ``WITH`` keys).
            processing_path: ``"direct"`` (default) or ``"legacy"``.

        Raises:
            ConfigError: the file cannot be read (key ``file``).
            SqlSyntaxError, SqlValidationError, ConfigError, CircularDependencyError: as
                for :meth:`from_sql`.
        """
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"cannot read {str(file)!r}: {exc.strerror or exc}", key="file", value=str(file)
            ) from None
        return cls(
            text,
            properties=properties,
            base_dir=file.resolve().parent,
            source_file=file,
            processing_path=processing_path,
        )

    @classmethod
    def from_sql(
        cls,
        text: str,
        properties: Mapping[str, str] | None = None,
        base_dir: str | os.PathLike[str] | None = None,
        *,
        processing_path: str = "direct",
    ) -> Application:
        """Build an application from SQL text.

        Args:
            text: the SQL script.
            properties: application-level properties (override the ``WITH`` keys).
            base_dir: what relative paths resolve against (default: working directory).
            processing_path: ``"direct"`` (default) or ``"legacy"``.

        Raises:
            SqlSyntaxError: the script does not parse (with line and column).
            SqlValidationError: a statement cannot run (with line and column).
            ConfigError: a bad, unknown or unsupported property, connector or FROM name.
            CircularDependencyError: streams read each other in a cycle.
        """
        return cls(text, properties=properties, base_dir=base_dir, processing_path=processing_path)

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
        names = self._statement_names()
        # Every name a prefixed application-level key may refer to.
        known = set(names) | set(config.connectors(self.properties))
        for statement in self._statements:
            known |= set(statement.sources) | set(statement.joins)
            known |= set(config.connectors(statement.properties))
        config.validate_statement_properties(self.properties, known)

        infos = [
            self._resolve_statement(name, statement, names, known)
            for name, statement in zip(names, self._statements, strict=True)
        ]
        readers = {up for info in infos for up in info.upstream}
        sink_paths: dict[Path, str] = {}
        for info in infos:
            if not info.sinks and info.name not in readers:
                with _located(info.statement):
                    raise _config_error(
                        f"statement {info.name!r} has no sink: declare one in its WITH, e.g. "
                        f"'{info.name}.type' = 'file_sink', '{info.name}.path' = '...'",
                        key=f"{info.name}.type",
                    )
            for sink_name, props in info.sinks.items():
                path = resolve_path(props.get("path", ""), self.base_dir)
                if path in sink_paths:
                    with _located(info.statement):
                        raise _config_error(
                            f"sink {sink_name!r} of {info.name!r} writes {path}, which "
                            f"{sink_paths[path]} already writes",
                            key=f"{sink_name}.path",
                            value=props.get("path"),
                        )
                sink_paths[path] = f"sink {sink_name!r} of {info.name!r}"
        return infos

    def _resolve_statement(
        self, name: str, statement: Statement, names: list[str], known: set[str]
    ) -> StatementInfo:
        if statement.kind == "table":
            raise SqlValidationError(
                f"CREATE TABLE is not supported by applications yet (table {name!r}); "
                "use CREATE STREAM",
                line=statement.line,
                column=statement.column,
            )
        own_names = {name, *statement.sources, *statement.joins} | set(
            config.connectors(statement.properties)
        )
        overrides = {
            key: value
            for key, value in self.properties.items()
            if (owner := config.connector_name_of(key, known)) is None or owner in own_names
        }
        with _located(statement):
            merged = config.resolve_properties(
                {**statement.properties, **overrides}, base_dir=self.base_dir
            )
            connectors = config.connectors(merged)
            config.validate_statement_properties(merged, own_names | set(connectors))
            types = {
                cname: config.validate_connector_properties(cname, cprops)
                for cname, cprops in connectors.items()
            }
            for cname, ctype in types.items():
                if ctype in _UNSUPPORTED_CONNECTORS:
                    raise _config_error(
                        f"{ctype} is not supported yet (connector {cname!r} of {name!r}); "
                        "use file_source / file_sink for now",
                        key=f"{cname}.type",
                        value=ctype,
                    )
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
                    sources[source] = connectors[source]
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
        return StatementInfo(
            name=name,
            statement=statement,
            properties=merged,
            sources=sources,
            upstream=tuple(upstream),
            sinks=sinks,
            error_strategy=strategy,
            dead_letter_sink=dead_letter_sink,
            dead_letter_path=(
                resolve_path(dead_letter_path, self.base_dir) if dead_letter_path else None
            ),
            plan=query.plan,
        )

    def _compile(self, statement: Statement, properties: Mapping[str, str]) -> Any:
        from velostream.query import compile_statement

        # The statement carries the merged properties: application overrides must win over
        # its own WITH keys, which compile_statement would otherwise put on top.
        resolved = dataclasses.replace(statement, properties=dict(properties))
        with _located(statement):
            return compile_statement(resolved, path=self.processing_path)  # type: ignore[arg-type]

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
                lines.append(f"  source {upstream}: output of stream {upstream} (in-process)")
            for sink, props in info.sinks.items():
                lines.append(f"  sink   {sink}: {self._describe_connector(props)}")
            readers = [i.name for i in self.statements if info.name in i.upstream]
            for reader in readers:
                lines.append(f"  sink   {reader}: input of stream {reader} (in-process)")
            lines.append(f"  error.strategy: {info.error_strategy}")
            if info.dead_letter_sink is not None:
                props = config.connectors(info.properties)[info.dead_letter_sink]
                lines.append(
                    f"  dead letters: {info.dead_letter_sink}: {self._describe_connector(props)}"
                )
            elif info.dead_letter_path is not None:
                lines.append(f"  dead letters: {info.dead_letter_path} (format json)")
            lines.append(f"  plan: {_plan_summary(info.plan)}")
            if verbose:
                lines.append(f"  physical plan: {json.dumps(info.plan, separators=(',', ':'))}")
            lines.append("")
        lines.append("dependency waves:")
        for index, wave in enumerate(self.waves, start=1):
            lines.append(f"  wave {index}: {', '.join(wave)}")
        return "\n".join(lines)

    def _describe_connector(self, props: Mapping[str, str]) -> str:
        path = props.get("path")
        where = f" {resolve_path(path, self.base_dir)}" if path else ""
        return f"{props.get('type')}{where} (format {props.get('format', 'json')})"

    # ------------------------------------------------------------------- running

    def _build_runners(self) -> tuple[dict[str, StatementRunner], list[DeadLetterWriter]]:
        runners: dict[str, StatementRunner] = {}
        dead_letters: list[DeadLetterWriter] = []
        for info in self.statements:
            writer = None
            if info.dead_letter_sink is not None:
                props = config.connectors(info.properties)[info.dead_letter_sink]
                dl_sink: Sink = create_sink(info.dead_letter_sink, props, base_dir=self.base_dir)
                writer = DeadLetterWriter(dl_sink)
            elif info.dead_letter_path is not None:
                writer = DeadLetterWriter(
                    FileSink(f"{info.name}.dead_letter", info.dead_letter_path, append=True)
                )
            if writer is not None:
                dead_letters.append(writer)
            policy = BadRecordPolicy(info.error_strategy, writer)
            sources = [
                create_source(name, props, base_dir=self.base_dir, bad_records=policy)
                for name, props in info.sources.items()
            ]
            sinks = [
                create_sink(name, props, base_dir=self.base_dir)
                for name, props in info.sinks.items()
            ]
            query = self._compile(info.statement, info.properties)
            runners[info.name] = StatementRunner(
                info.name, query, sinks, sources=sources, bad_records=policy
            )
        for info in self.statements:
            for upstream in info.upstream:
                runners[upstream].downstream.append(runners[info.name])
        return runners, dead_letters

    def _execute(self, *, until_end: bool, stop: threading.Event) -> RunReport:
        started = time.monotonic()
        runners, dead_letters = self._build_runners()
        errors: list[BaseException] = []

        def work(source: Any, runner: StatementRunner) -> None:
            try:
                run_source(source, runner, until_end=until_end, stop=stop)
            except BaseException as exc:
                errors.append(exc)
                stop.set()

        jobs = [(source, runner) for runner in runners.values() for source in runner.sources]
        try:
            if len(jobs) == 1:
                work(*jobs[0])
            else:
                threads = [
                    threading.Thread(target=work, args=job, name=f"velostream-{job[0].name}")
                    for job in jobs
                ]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
            if not errors:
                for wave in self.waves:
                    for name in wave:
                        runners[name].finish()
        except BaseException as exc:  # KeyboardInterrupt included: close what is open
            stop.set()
            errors.append(exc)
        finally:
            for runner in runners.values():
                try:
                    runner.close()
                except VelostreamError as exc:
                    errors.append(exc)
            for writer in dead_letters:
                try:
                    writer.close()
                except VelostreamError as exc:
                    errors.append(exc)
        report = RunReport(
            statements={name: runner.report(started) for name, runner in runners.items()},
            duration=time.monotonic() - started,
            error=errors[0] if errors else None,
        )
        self._report = report
        if errors:
            raise errors[0]
        return report

    def run(self, until_end: bool = True) -> RunReport:
        """Run every statement until its sources end, then flush and close the sinks.

        Args:
            until_end: make every source bounded (a file source ends at its last line even
                with ``watch``); with False, watched files are followed until interrupted.

        Returns:
            Per statement: records in/out, bad records, duration.

        Raises:
            SourceError, SinkError: an I/O failure.
            DataError: a bad record under ``'error.strategy' = 'fail'`` (with file:line).
        """
        self._stop = threading.Event()
        return self._execute(until_end=until_end, stop=self._stop)

    def start(self) -> None:
        """Run in the background (long-running mode); :meth:`stop` ends it.

        Raises:
            RuntimeError: already running.
        """
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("the application is already running")
        self._stop = threading.Event()
        self._report = None

        def background() -> None:
            try:
                self._execute(until_end=False, stop=self._stop)
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
        """Stop a :meth:`start`-ed run: stop reading, flush the queries, close the sinks.

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

    @property
    def report(self) -> RunReport | None:
        """The report of the last run that ended, if any."""
        return self._report
