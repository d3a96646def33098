"""Compiled continuous queries: :func:`compile` and :class:`Query` (SPEC section 2).

A :class:`Query` is a thin wrapper over the Rust processor ``velostream._core.Processor``:
it checks and converts arguments, and hands Arrow batches to Rust, which runs the whole
batch in one call with the GIL released. The ``"legacy"`` path models the old per-record
engine on purpose, to be measured against (see :mod:`velostream.legacy`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import pyarrow as pa
from sqlglot import exp

from velostream import _core
from velostream.config import parse_duration_ms
from velostream.errors import (
    ConfigError,
    DataError,
    SnapshotError,
    SqlSyntaxError,
    SqlValidationError,
    TableNotReadyError,
)
from velostream.legacy import LegacyEngine
from velostream.sql import Statement, parse_statement, plan
from velostream.sql.dialect import node_position
from velostream.sql.statements import query_selects, relation_name

Path = Literal["direct", "legacy"]

# The time keys of SPEC section 5 -> their key in the plan's "time" section.
_TIME_KEYS = (
    "event.time.field",
    "event.time.format",
    "event.time.error",
    "watermark.strategy",
    "watermark.max_out_of_orderness",
    "watermark.idle_timeout",
    "late.data.strategy",
    "late.data.allowed_lateness",
)


# The engine's longest duration (rust/engine/src/processor.rs MAX_DURATION_MS).
_MAX_DURATION_MS = 100_000_000_000_000


def _time_plan(statement: Statement, properties: Mapping[str, str]) -> dict[str, Any] | None:
    """The plan's ``time`` section from the statement keys of SPEC section 5.

    A key prefixed by the source's name (``'<source>.event.time.field'``) wins over the
    unprefixed one. Returns None when no time key is set (processing time).

    Raises:
        ConfigError: a value that does not fit (bad format, allowed lateness without
            ``update_previous``, watermark keys without an event-time field).
    """
    from velostream.sql.durations import parse_duration

    source = statement.sources[0] if statement.sources else ""
    values: dict[str, tuple[str, str]] = {}
    for key in _TIME_KEYS:
        for written in (key, f"{source}.{key}"):
            if written in properties:
                values[key] = (written, properties[written])
    if not values:
        return None
    from velostream import config

    for key, (written, value) in values.items():
        # Prefixed keys are the source's: checked here, as the unprefixed ones are.
        config.STATEMENT_PROPERTIES[key].check(written, value)

    def millis(key: str) -> int | None:
        if key not in values:
            return None
        written, value = values[key]
        try:
            millis = parse_duration(value)
        except ValueError as exc:
            raise ConfigError(str(exc), key=written, value=value) from None
        if millis > _MAX_DURATION_MS:
            raise ConfigError(
                f"property '{written}' = {value!r} is longer than the longest duration "
                f"velostream computes with ({_MAX_DURATION_MS} ms, about 3 000 years)",
                key=written,
                value=value,
            )
        return millis

    field = values.get("event.time.field", ("", None))[1]
    if field is None and statement.window is not None:
        field = statement.window.time_column
    # Every key must change something: none is accepted and then ignored.
    for key, (written, value) in values.items():
        if key != "event.time.field" and field is None:
            raise ConfigError(
                f"property '{written}' needs 'event.time.field' (or a time column in WINDOW): "
                "without it the query runs on processing time",
                key=written,
                value=value,
            )
        if key.startswith("late.data.") and statement.window is None:
            raise ConfigError(
                f"property '{written}' applies to windowed queries only (without a WINDOW "
                "no record is late)",
                key=written,
                value=value,
            )
    strategy = values.get("watermark.strategy", ("", "bounded_out_of_orderness"))[1]
    if "watermark.max_out_of_orderness" in values and strategy != "bounded_out_of_orderness":
        written, value = values["watermark.max_out_of_orderness"]
        raise ConfigError(
            f"property '{written}' applies to watermark.strategy 'bounded_out_of_orderness' "
            f"only (the strategy is {strategy!r})",
            key=written,
            value=value,
        )
    if "event.time.format" in values:
        from velostream.time import check_format

        check_format(values["event.time.format"][1], key=values["event.time.format"][0])
    late = values.get("late.data.strategy", ("", "drop"))[1]
    lateness = millis("late.data.allowed_lateness") or 0
    if lateness and late != "update_previous":
        written, value = values["late.data.allowed_lateness"]
        raise ConfigError(
            f"property '{written}' applies to late.data.strategy 'update_previous' only "
            f"(the strategy is {late!r})",
            key=written,
            value=value,
        )
    if late == "update_previous" and statement.window and statement.window.kind == "session":
        written, value = values["late.data.strategy"]
        raise ConfigError(
            f"property '{written}' = 'update_previous' is not supported for SESSION windows "
            "yet (use drop, dead_letter or include_in_next_window)",
            key=written,
            value=value,
        )
    idle = millis("watermark.idle_timeout")
    if idle is not None and idle <= 0:
        written, value = values["watermark.idle_timeout"]
        raise ConfigError(
            f"property '{written}' must be a positive duration",
            key=written,
            value=value,
        )
    return {
        "field": field,
        "format": values.get("event.time.format", ("", None))[1],
        "on_error": values.get("event.time.error", ("", "fail"))[1],
        "watermark": strategy,
        "max_out_of_orderness_ms": millis("watermark.max_out_of_orderness") or 0,
        "idle_timeout_ms": millis("watermark.idle_timeout"),
        "late": late,
        "allowed_lateness_ms": lateness,
    }


def _join_settings(table: str, properties: Mapping[str, str]) -> dict[str, Any]:
    """A join's ``join.*`` keys (SPEC section 8); ``'<table>.join...'`` wins."""

    def value(key: str) -> str | None:
        return properties.get(f"{table}.{key}", properties.get(key))

    settings: dict[str, Any] = {}
    strategy = value("join.missing.strategy")
    if strategy is not None:
        settings["missing"] = strategy
    settings["wait_timeout_ms"] = parse_duration_ms(value("join.wait.timeout") or "5s")
    defaults: dict[str, str] = {}
    for key, text in properties.items():
        for prefix in ("join.defaults.", f"{table}.join.defaults."):
            if key.startswith(prefix) and key[len(prefix) :]:
                defaults[key[len(prefix) :]] = text
    settings["defaults"] = sorted(defaults.items())
    return settings


def _column_named(names: Sequence[str], wanted: str, table: str) -> str:
    """The table column ``wanted`` names (exact, else the one case-insensitive match)."""
    if wanted in names:
        return wanted
    matches = [n for n in names if n.lower() == wanted.lower()]
    if len(matches) == 1:
        return matches[0]
    raise SqlValidationError(
        f"JOIN {table} ON names the column {wanted!r}, which the attached table does not "
        f"have (its columns: {', '.join(names)})"
    )


def _status(handle: Any) -> str:
    status = handle.status
    return str(getattr(status, "value", status))


def _connector_names(statement: Statement, properties: Mapping[str, str]) -> list[str]:
    names = {*statement.sources, *statement.joins}
    if statement.name:
        names.add(statement.name)
    for key in properties:
        if key.endswith(".type"):
            names.add(key[: -len(".type")])
    return sorted(names)


def _validate_properties(statement: Statement, properties: Mapping[str, str]) -> None:
    from velostream import config

    connectors = _connector_names(statement, properties)
    config.validate_statement_properties(properties, connectors)
    if not statement.joins:
        _reject_join_keys(properties, connectors)


def _reject_join_keys(properties: Mapping[str, str], connectors: Sequence[str]) -> None:
    """``join.*`` keys on a statement without a JOIN would be ignored: refused."""
    for key, value in properties.items():
        local = key
        for name in connectors:
            if key.startswith(f"{name}."):
                local = key[len(name) + 1 :]
                break
        if local.startswith("join."):
            raise ConfigError(
                f"property '{key}' configures a stream-table join, and the statement has no JOIN",
                key=key,
                value=value,
            )


def _to_batches(data: Any) -> list[pa.RecordBatch]:
    """Accept a RecordBatch, a Table, a list of dicts or any Arrow PyCapsule exporter."""
    if isinstance(data, pa.RecordBatch):
        return [data]
    if isinstance(data, pa.Table):
        return data.to_batches()
    if isinstance(data, list):
        return [_from_rows(data)] if data else []
    try:
        if hasattr(data, "__arrow_c_stream__"):
            return pa.table(data).to_batches()
        if hasattr(data, "__arrow_c_array__"):
            return [pa.record_batch(data)]
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise DataError(f"process(): the Arrow data cannot be imported: {exc}") from None
    raise DataError(
        "process() takes a pyarrow.RecordBatch, a pyarrow.Table, a list of dicts or an "
        f"object exporting the Arrow PyCapsule interface, not {type(data).__name__}"
    )


def _from_rows(rows: list[Any]) -> pa.RecordBatch:
    """A batch from a list of dicts, under the same rules as decoded records.

    A value that does not fit its column is a :class:`DataError` naming the field, the
    value and the row, never a pyarrow exception.
    """
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise DataError(
                f"process(): row {index} is a {type(row).__name__}, not a dict",
                location=f"row {index}",
            )
        for key in row:
            if not isinstance(key, str):
                raise DataError(
                    f"process(): row {index} has a field name that is not a string: {key!r}",
                    location=f"row {index}",
                    field=repr(key),
                )
    # Every field of every row (pyarrow's from_pylist reads the first row's keys only).
    names = list(dict.fromkeys(key for row in rows for key in row))
    if not names:  # rows without fields are still rows (COUNT(*) counts them)
        return pa.RecordBatch.from_struct_array(pa.array(rows, pa.struct([])))
    columns = {name: [row.get(name) for row in rows] for name in names}
    for name, values in columns.items():
        _check_kinds(name, values)
    try:
        return pa.RecordBatch.from_pydict(columns)
    except (pa.ArrowException, OverflowError, TypeError, ValueError) as exc:
        raise _row_error(rows, exc) from None


_EXACT_IN_DOUBLE = 2**53


def _kind(value: Any) -> Any:
    """What Arrow type a Python value asks for, recursively (None for a NULL)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, Mapping):
        return ("struct", tuple(sorted((str(k), _kind(v)) for k, v in value.items())))
    if isinstance(value, (list, tuple)):
        kinds = {_kind(v) for v in value} - {None}
        return ("list", tuple(sorted(kinds, key=repr)))
    return type(value).__name__


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _uniform(kind: Any) -> bool:
    """Whether a nested kind holds one type per list and per struct field."""
    if isinstance(kind, tuple) and kind[0] == "list":
        inner = set(kind[1])
        return (len(inner) <= 1 or inner == {"int", "float"}) and all(map(_uniform, inner))
    if isinstance(kind, tuple) and kind[0] == "struct":
        return all(_uniform(k) for _, k in kind[1])
    return True


def _check_kinds(name: str, values: list[Any]) -> None:
    """Refuse a field whose values pyarrow would coerce to another type without a word.

    Ints and floats mix (as a float column) only while every int is exact as a double;
    anything else (str beside bytes, bool beside float in a list, ...) is a DataError.
    """
    first_index, first_kind = None, None
    for index, value in enumerate(values):
        kind = _kind(value)
        if kind is None:
            continue
        if not _uniform(kind):
            raise DataError(
                f"process(): field {name!r} of row {index} holds a list of mixed types "
                f"({_shown(value)}): Arrow would convert some of them silently",
                location=f"row {index}",
                field=name,
                value=_shown(value),
            )
        if first_kind is None:
            first_index, first_kind = index, kind
            continue
        if kind == first_kind:
            continue
        numbers = {kind, first_kind} == {"int", "float"}
        ints = [v for v in values if type(v) is int]
        if numbers and all(abs(v) <= _EXACT_IN_DOUBLE for v in ints):
            continue
        text = _shown(value)
        raise DataError(
            f"process(): field {name!r} of row {index} has the value {text}, whose type does "
            f"not match the field's value in row {first_index}: Arrow would convert one of "
            "them silently",
            location=f"row {index}",
            field=name,
            value=text,
        )


def _first_bad_value(values: list[Any], exc: Exception) -> tuple[int, Any, str]:
    """The row, value and reason of the first value that spoils a column."""
    first = next((v for v in values if v is not None), None)
    for index, value in enumerate(values):
        try:
            pa.array([value])
        except (pa.ArrowException, OverflowError, TypeError, ValueError) as cause:
            return index, value, f"it cannot be stored in an Arrow column ({cause})"
        if value is not None and type(value) is not type(first):
            return (
                index,
                value,
                (
                    f"the field's first value is a {type(first).__name__} and this one "
                    f"is a {type(value).__name__}"
                ),
            )
    return 0, values[0], str(exc)


def _row_error(rows: list[Mapping[str, Any]], exc: Exception) -> DataError:
    """Name the field, row and value that made a list of dicts unconvertible."""
    for name in dict.fromkeys(key for row in rows for key in row):
        values = [row.get(name) for row in rows]
        try:
            pa.array(values)
            continue
        except (pa.ArrowException, OverflowError, TypeError, ValueError):
            pass
        index, value, reason = _first_bad_value(values, exc)
        text = repr(value)
        if len(text) > 80:
            text = text[:77] + "..."
        return DataError(
            f"process(): field {name!r} of row {index} has the value {text}: {reason}",
            location=f"row {index}",
            field=name,
            value=text,
        )
    return DataError(f"process(): the rows cannot be converted to Arrow: {exc}")


class Query:
    """A compiled continuous query over one input stream.

    Build it with :func:`compile`. Feed it batches with :meth:`process`; each call returns
    exactly the rows the SQL emits because of that input. :meth:`flush` ends the input
    and returns whatever is left.
    """

    __slots__ = ("_legacy", "_path", "_plan", "_processor", "_properties", "_statement", "_tables")

    _legacy: LegacyEngine | None
    _path: Path
    _plan: dict[str, Any]
    _processor: _core.Processor
    _properties: dict[str, str]
    _statement: Statement
    _tables: dict[str, Any]

    def __init__(self) -> None:
        raise TypeError("use velostream.compile() to build a Query")

    @classmethod
    def _create(
        cls,
        statement: Statement,
        properties: Mapping[str, str],
        path: Path,
    ) -> Query:
        physical = plan(statement)
        physical["time"] = _time_plan(statement, properties)
        for join in physical.get("joins") or ():
            join.update(_join_settings(join["table"], properties))
        plan_json = json.dumps(physical)
        query = object.__new__(cls)
        query._tables = {}
        query._statement = statement
        query._properties = dict(properties)
        query._plan = physical
        query._path = path
        query._processor = _core.Processor(plan_json)
        query._legacy = LegacyEngine(plan_json) if path == "legacy" else None
        return query

    @property
    def statement(self) -> Statement:
        """The parsed SQL statement."""
        return self._statement

    @property
    def plan(self) -> dict[str, Any]:
        """The physical plan handed to the Rust core (plain data)."""
        return self._plan

    @property
    def path(self) -> Path:
        """``"direct"`` or ``"legacy"``."""
        return self._path

    @property
    def properties(self) -> dict[str, str]:
        """Statement properties: the ``WITH`` clause merged over ``compile(properties=)``."""
        return dict(self._properties)

    @property
    def input_name(self) -> str:
        """The ``FROM`` name: the stream :meth:`process` reads."""
        return self._plan["input"]

    def process(self, data: Any) -> pa.RecordBatch:
        """Process input records and return the rows the query emits because of them.

        Args:
            data: a ``pyarrow.RecordBatch``, a ``pyarrow.Table``, a list of dicts, or any
                object exporting the Arrow PyCapsule interface.

        Returns:
            A ``pyarrow.RecordBatch`` with :attr:`output_schema` (possibly zero rows).
        """
        if self._tables:
            self._check_tables()
        if self._legacy is None and type(data) is pa.RecordBatch:
            return self._processor.process(data)  # the hot path: one call into Rust
        if self._legacy is not None:
            return self._combine([self._legacy.process(b) for b in _to_batches(data)])
        if isinstance(data, pa.RecordBatch):
            return self._processor.process(data)
        if isinstance(data, pa.Table) and "\x00" in str(data.schema):
            raise DataError(
                "a column name of the input holds a NUL character, which Arrow's C data "
                "interface cannot carry: rename the column"
            )
        if isinstance(data, pa.Table) or (
            hasattr(data, "__arrow_c_stream__") and not hasattr(data, "__arrow_c_array__")
        ):
            # Every batch of the stream in one call into Rust, state carried between them.
            return self._processor.process_stream(data)
        return self._combine([self._processor.process(b) for b in _to_batches(data)])

    def attach_table(self, name: str, data: Any) -> None:
        """Attach the table a ``JOIN name`` of the query reads (SPEC sections 2 and 8).

        Args:
            name: the table's name as the SQL's ``JOIN`` writes it.
            data: a ``pyarrow.Table`` (or ``RecordBatch``): its rows are indexed by the
                columns ``ON`` equates, the last row of a key winning; or a table of a
                :class:`velostream.TableRegistry`, joined by its key and shared: rows it
                gains later are seen by the batches processed after.

        Raises:
            SqlValidationError: the query joins no table of that name, or the table
                lacks a column ``ON`` names.
            TableNotReadyError: a registry table whose rows are not known yet (no
                schema), unless ``'join.missing.strategy'`` is ``wait_and_retry``, which
                waits up to ``join.wait.timeout`` for it.
        """
        join = self._join_named(name)
        keyed = self._keyed_table(join, data)
        self._processor.attach_table(join["table"], keyed)
        if self._legacy is not None:
            self._legacy.attach_table(join["table"], keyed)
        if isinstance(data, (pa.Table, pa.RecordBatch)):
            self._tables.pop(join["table"], None)
        else:
            self._tables[join["table"]] = data

    def _join_named(self, name: str) -> dict[str, Any]:
        joins = self._plan.get("joins") or []
        for join in joins:
            if join["table"] == name:
                return join
        for join in joins:
            if join["table"].lower() == str(name).lower():
                return join
        tables = ", ".join(j["table"] for j in joins) or "none"
        raise SqlValidationError(
            f"attach_table({name!r}): the query joins no table of that name (it joins: {tables})"
        )

    def _keyed_table(self, join: dict[str, Any], data: Any) -> _core.KeyedTable:
        """The Rust keyed table to attach for ``join``."""
        if isinstance(data, (pa.Table, pa.RecordBatch)):
            names = data.schema.names
            key = [_column_named(names, k["table"], join["table"]) for k in join["on"]]
            if isinstance(data, pa.RecordBatch):
                data = pa.Table.from_batches([data])
            data = data.combine_chunks()
            keyed = _core.KeyedTable(data.schema, key)
            for batch in data.to_batches():
                keyed.upsert(batch)
            keyed.compact()
            return keyed
        if not hasattr(data, "keyed") or not hasattr(data, "status"):
            raise SqlValidationError(
                f"attach_table({join['table']!r}): the table must be a pyarrow.Table or a "
                f"table of a velostream.TableRegistry, not {type(data).__name__}"
            )
        keyed = data.keyed
        if keyed is None and join.get("missing") == "wait_and_retry":
            timeout = join.get("wait_timeout_ms", 0) / 1000
            with contextlib.suppress(TableNotReadyError):
                data.wait_ready(timeout)
            keyed = data.keyed
        if keyed is None:
            raise TableNotReadyError(join["table"], None, str(_status(data)))
        return keyed

    def _check_tables(self) -> None:
        """Before a batch: registry tables that are not READY, per the join's strategy."""
        for join in self._plan.get("joins") or ():
            handle = self._tables.get(join["table"])
            if handle is None or _status(handle) == "ready":
                continue
            strategy = join.get("missing")
            if strategy == "wait_and_retry":
                with contextlib.suppress(TableNotReadyError):
                    handle.wait_ready(join.get("wait_timeout_ms", 0) / 1000)
            elif strategy == "fail":
                raise TableNotReadyError(join["table"], None, str(_status(handle)))

    def flush(self) -> pa.RecordBatch:
        """End of input: close what is open and return the rows still held."""
        if self._legacy is not None:
            return self._legacy.flush()
        return self._processor.flush()

    def bind(self, schema: pa.Schema) -> pa.Schema:
        """Declare the input schema ahead of the first batch; returns the output schema."""
        if self._legacy is not None:
            self._legacy.bind(schema)
        return self._processor.bind(schema)

    @property
    def output_schema(self) -> pa.Schema | None:
        """The schema of what :meth:`process` and :meth:`flush` return.

        It depends on the input's types, so it is known once the first batch was
        processed or :meth:`bind` was called; before that it is ``None``.
        """
        if self._legacy is not None:
            return self._legacy.output_schema
        return self._processor.output_schema

    @property
    def watermark(self) -> int | None:
        """The current watermark in epoch millis (SPEC section 5).

        Tracked for every query with ``event.time.field`` (or a window, which without
        it runs on processing time). ``None`` before the first record, under
        ``'watermark.strategy' = 'none'``, and for queries that do not use time.
        """
        if self._legacy is not None:
            return self._legacy.watermark
        return self._processor.watermark

    def dead_letters(self) -> pa.RecordBatch:
        """The records routed to the dead-letter output since the last call, then cleared.

        A record goes there when its event time cannot be read under
        ``'event.time.error' = 'dead_letter'``, or when it is late under
        ``'late.data.strategy' = 'dead_letter'``.

        Returns:
            A batch with two string columns: ``record`` (the record's fields as JSON
            text) and ``reason``.
        """
        if self._legacy is not None:
            return self._legacy.dead_letters()
        return self._processor.dead_letters()

    def expect_partitions(self, ids: list[int]) -> None:
        """Declare input partitions that have records to come (a runtime's sources).

        Each holds the watermark back until its first record arrives (or until it is
        idle, ``watermark.idle_timeout``), so a partition read later than the others
        does not find its windows already closed by them. Without event time, nothing.

        Args:
            ids: the partitions' ``_partition`` values (or ``_source_partition`` when the
                input carries that column).
        """
        if self._legacy is not None:
            self._legacy.expect_partitions(ids)
        else:
            self._processor.expect_partitions(ids)

    def take_progress(self) -> tuple[int | None, int | None]:
        """What the input processed so far still holds open, for a runtime's commits.

        Returns:
            ``(latest, held)``: ``latest`` is the latest row time (event time, or
            processing time for windows on it) of the records processed since the last
            call (None: none, or the query reads no time), and is reset by the call;
            ``held`` is the earliest row time of a record still held in open state (a
            window not closed yet, a session), None when no record is held, and
            ``-2**63`` when every record is (a GROUP BY without a window keeps its
            running aggregates to the end of the input). Input whose ``latest`` is
            below ``held`` (or with ``held`` None) has given every output row it ever
            will (SPEC section 1).
        """
        if self._legacy is not None:
            return self._legacy.take_progress()
        return self._processor.take_progress()

    def metrics(self) -> dict[str, int]:
        """Counters: records_in, records_out, late_dropped, state_groups, ...

        ``late_dropped`` counts late records dropped, ``dead_lettered`` the records
        routed to :meth:`dead_letters`, ``state_groups`` the live groups (for windows,
        the live (window, key) states: closed windows are gone).
        """
        source = self._legacy.metrics() if self._legacy is not None else self._processor.metrics()
        out = {"records_in": 0, "records_out": 0, "late_dropped": 0, "state_groups": 0}
        out.update(source)
        return out

    def snapshot(self) -> bytes:
        """Serialise the query's state (group table, accumulators, ...) to bytes.

        Restore it with :meth:`restore` into a freshly compiled identical query: the
        restored query then gives the same output as this one would.
        """
        if self._legacy is not None:
            return self._legacy.snapshot()
        return self._processor.snapshot()

    def restore(self, blob: bytes) -> Query:
        """Replace this query's state with a :meth:`snapshot` of an identical query.

        Returns:
            The query itself, so ``vs.compile(sql).restore(blob)`` reads naturally.

        Raises:
            SnapshotError: the snapshot is corrupt, truncated, of another format version
                or of a different query; the state is then left as it was.
        """
        if not isinstance(blob, (bytes, bytearray, memoryview)):
            raise SnapshotError(
                f"restore() takes the bytes of a snapshot, not {type(blob).__name__}"
            )
        blob = bytes(blob)
        if self._legacy is not None:
            self._legacy.restore(blob)
        else:
            self._processor.restore(blob)
        return self

    def _combine(self, outputs: list[pa.RecordBatch]) -> pa.RecordBatch:
        if len(outputs) == 1:
            return outputs[0]
        schema = self.output_schema
        if not outputs:
            return pa.RecordBatch.from_pylist([], schema=schema or pa.schema([]))
        return pa.concat_batches(outputs)

    def __repr__(self) -> str:
        return f"<velostream.Query {self._path} {self._statement.text!r}>"


def compile_statement(
    statement: Statement,
    *,
    properties: Mapping[str, str] | None = None,
    path: Path = "direct",
) -> Query:
    """Compile an already parsed statement (used by applications).

    Args:
        statement: from :func:`velostream.sql.parse_statement` / ``parse_script``.
        properties: statement properties; the statement's own ``WITH`` keys win.
        path: ``"direct"`` (batch at a time, default) or ``"legacy"`` (per record).

    Raises:
        SqlValidationError: the statement cannot run.
        ConfigError: a property is unknown, has a bad value or is not supported yet.
    """
    if path not in ("direct", "legacy"):
        raise ConfigError(
            f"unknown path {path!r}", key="path", value=str(path), allowed=("direct", "legacy")
        )
    if properties is not None and not isinstance(properties, Mapping):
        raise ConfigError(
            f"properties must be a dict of str keys and values, not {type(properties).__name__}",
            key="properties",
        )
    for key, value in (properties or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ConfigError(
                f"property {key!r} = {value!r}: keys and values are strings (as in a WITH clause)",
                key=str(key),
                value=str(value),
            )
    merged = {**(properties or {}), **statement.properties}
    _validate_properties(statement, merged)
    if isinstance(statement.query, exp.Union):
        return UnionQuery._create(statement, merged, path)  # type: ignore[return-value]
    return Query._create(statement, merged, path)


def _branches(statement: Statement) -> list[Statement]:
    """One statement per SELECT of a top-level UNION ALL (sharing WINDOW, EMIT, WITH)."""
    out = []
    for select in query_selects(statement.query):
        source = select.args.get("from_")
        name = relation_name(source.this) if source is not None else ""
        out.append(dataclasses.replace(statement, query=select, sources=(name,)))
    return out


class UnionQuery:
    """``SELECT ... UNION ALL SELECT ...``: one query per SELECT, their outputs together.

    Each SELECT runs as its own :class:`Query` over its own input (its ``FROM`` name), with
    the statement's ``WINDOW``, ``EMIT`` and properties; a batch goes to the SELECTs that
    read its input (:meth:`process`'s ``input``), and their outputs are concatenated in
    SELECT order. The output columns are the first SELECT's names; every SELECT must give
    the same number of columns with the same types, or the query is refused when their
    types are known (a :class:`~velostream.errors.SqlValidationError` naming the SELECT).
    """

    def __init__(self) -> None:
        raise TypeError("use velostream.compile() to build a query")

    @classmethod
    def _create(cls, statement: Statement, properties: Mapping[str, str], path: Path) -> UnionQuery:
        query = object.__new__(cls)
        query._statement = statement
        query.branches = [Query._create(b, properties, path) for b in _branches(statement)]
        query._schema = None
        return query

    _statement: Statement
    branches: list[Query]
    _schema: pa.Schema | None

    @property
    def statement(self) -> Statement:
        """The parsed SQL statement."""
        return self._statement

    @property
    def inputs(self) -> tuple[str, ...]:
        """The ``FROM`` names, one per SELECT."""
        return tuple(b.input_name for b in self.branches)

    @property
    def input_name(self) -> str:
        """The first SELECT's input (see :attr:`inputs`)."""
        return self.branches[0].input_name

    @property
    def plan(self) -> dict[str, Any]:
        """The first SELECT's plan, with every SELECT's plan under ``"union"``."""
        return {**self.branches[0].plan, "union": [b.plan for b in self.branches]}

    @property
    def path(self) -> Path:
        """``"direct"`` or ``"legacy"``."""
        return self.branches[0].path

    @property
    def properties(self) -> dict[str, str]:
        """Statement properties."""
        return self.branches[0].properties

    def attach_table(self, name: str, data: Any) -> None:
        """Attach a joined table to every branch that joins it (see :meth:`Query.attach_table`).

        Raises:
            SqlValidationError: no branch joins a table of that name.
        """
        joining = [
            b
            for b in self.branches
            if any(j["table"].lower() == str(name).lower() for j in b.plan.get("joins") or ())
        ]
        if not joining:
            raise SqlValidationError(
                f"attach_table({name!r}): no SELECT of the UNION ALL joins a table of that name"
            )
        for branch in joining:
            branch.attach_table(name, data)

    def _readers(self, input: str | None) -> list[tuple[int, Query]]:
        if input is None:
            if len(set(self.inputs)) > 1:
                raise ConfigError(
                    "this UNION ALL reads several inputs "
                    f"({', '.join(dict.fromkeys(self.inputs))}): name the one a batch "
                    "belongs to, e.g. process(batch, input='...')",
                    key="input",
                    allowed=tuple(dict.fromkeys(self.inputs)),
                )
            input = self.inputs[0]
        readers = [(i, b) for i, b in enumerate(self.branches) if b.input_name == input]
        if not readers:
            raise ConfigError(
                f"this UNION ALL reads no input {input!r}",
                key="input",
                value=input,
                allowed=tuple(dict.fromkeys(self.inputs)),
            )
        return readers

    def _conform(self, index: int, batch: pa.RecordBatch) -> pa.RecordBatch:
        """A SELECT's output under the union's column names, its types checked."""
        schema = batch.schema
        if self._schema is None:
            self._schema = schema
            return batch
        first = self._schema
        if len(schema) != len(first) or any(
            a.type != b.type for a, b in zip(schema, first, strict=True)
        ):
            select = query_selects(self._statement.query)[index]
            position = node_position(select) or (self._statement.line, self._statement.column)
            raise SqlValidationError(
                f"SELECT {index + 1} of the UNION ALL gives ({_columns(schema)}) where the "
                f"first gives ({_columns(first)}): every SELECT must give the same number "
                "of columns with the same types (CAST them)",
                line=position[0],
                column=position[1],
            )
        if schema.names != first.names:
            batch = pa.RecordBatch.from_arrays(batch.columns, schema=first)
        return batch

    def _gather(self, outputs: list[tuple[int, pa.RecordBatch]]) -> pa.RecordBatch:
        batches = [self._conform(i, b) for i, b in outputs]
        kept = [b for b in batches if b.num_rows] or batches[:1]
        if not kept:
            return pa.RecordBatch.from_pylist([], schema=self._schema or pa.schema([]))
        return kept[0] if len(kept) == 1 else pa.concat_batches(kept)

    def process(self, data: Any, input: str | None = None) -> pa.RecordBatch:
        """Process records of one input; returns the rows every SELECT reading it emits.

        Args:
            data: as for :meth:`Query.process`.
            input: the input the records belong to (needed when the SELECTs read
                different inputs).
        """
        return self._gather([(i, b.process(data)) for i, b in self._readers(input)])

    def flush(self) -> pa.RecordBatch:
        """End of every input: what each SELECT still holds."""
        return self._gather([(i, b.flush()) for i, b in enumerate(self.branches)])

    def bind(self, schema: pa.Schema, input: str | None = None) -> pa.Schema:
        """Declare an input's schema; returns the union's output schema (checked)."""
        out = None
        for i, branch in self._readers(input):
            out = self._conform(i, pa.RecordBatch.from_pylist([], schema=branch.bind(schema)))
        assert out is not None
        return self._schema or out.schema

    @property
    def output_schema(self) -> pa.Schema | None:
        """The output schema, once a SELECT's is known."""
        return self._schema

    @property
    def watermark(self) -> int | None:
        """The lowest watermark of the SELECTs (None when none has one)."""
        marks = [b.watermark for b in self.branches if b.watermark is not None]
        return min(marks) if marks else None

    def dead_letters(self) -> pa.RecordBatch:
        """Every SELECT's dead letters since the last call."""
        return pa.concat_batches([b.dead_letters() for b in self.branches])

    def expect_partitions(self, ids: list[int], input: str | None = None) -> None:
        """Declare partitions of ``input`` with records to come (see :class:`Query`)."""
        for _, branch in self._readers(input):
            branch.expect_partitions(ids)

    def take_progress(self) -> tuple[int | None, int | None]:
        """(latest row time since the last call, earliest held) over every SELECT."""
        latest: int | None = None
        held: int | None = None
        for branch in self.branches:
            b_latest, b_held = branch.take_progress()
            if b_latest is not None:
                latest = b_latest if latest is None else max(latest, b_latest)
            if b_held is not None:
                held = b_held if held is None else min(held, b_held)
        return latest, held

    def metrics(self) -> dict[str, int]:
        """Every SELECT's counters, summed."""
        out: dict[str, int] = {}
        for branch in self.branches:
            for key, value in branch.metrics().items():
                out[key] = out.get(key, 0) + int(value)
        return out

    def snapshot(self) -> bytes:
        """Every SELECT's state, length-prefixed in SELECT order."""
        parts = [b.snapshot() for b in self.branches]
        return b"".join(len(p).to_bytes(8, "little") + p for p in parts)

    def restore(self, blob: bytes) -> UnionQuery:
        """Restore a :meth:`snapshot` of an identical UNION ALL.

        Raises:
            SnapshotError: the blob is not one (truncated, another query).
        """
        if not isinstance(blob, (bytes, bytearray, memoryview)):
            raise SnapshotError(
                f"restore() takes the bytes of a snapshot, not {type(blob).__name__}"
            )
        data = bytes(blob)
        parts: list[bytes] = []
        offset = 0
        while offset < len(data) and len(parts) < len(self.branches):
            size = int.from_bytes(data[offset : offset + 8], "little")
            parts.append(data[offset + 8 : offset + 8 + size])
            offset += 8 + size
        if (
            len(parts) != len(self.branches)
            or offset != len(data)
            or any(len(p) == 0 for p in parts)
        ):
            raise SnapshotError(f"not a snapshot of this UNION ALL of {len(self.branches)} SELECTs")
        backups = [b.snapshot() for b in self.branches]
        try:
            for branch, part in zip(self.branches, parts, strict=True):
                branch.restore(part)
        except SnapshotError:
            for branch, backup in zip(self.branches, backups, strict=True):
                branch.restore(backup)  # all or nothing
            raise
        return self

    def __repr__(self) -> str:
        return f"<velostream.UnionQuery {self.path} {self._statement.text!r}>"


def _columns(schema: pa.Schema) -> str:
    return ", ".join(f"{f.name} {f.type}" for f in schema)


def compile(
    sql: str,
    *,
    properties: dict[str, str] | None = None,
    path: Path = "direct",
) -> Query:
    """Compile one ``SELECT`` or ``CREATE STREAM|TABLE ... AS SELECT`` into a :class:`Query`.

    Args:
        sql: the SQL text (one statement).
        properties: statement properties, as in a ``WITH`` clause (which wins).
        path: ``"direct"`` (default) or ``"legacy"``.

    Returns:
        The compiled query.

    Raises:
        SqlSyntaxError: the text does not parse (with line and column).
        SqlValidationError: the statement cannot run (with line and column where known).
        ConfigError: a property is unknown or has a bad value.

    Example:
        >>> import pyarrow as pa, velostream as vs
        >>> q = vs.compile("SELECT a * 2 AS b FROM s WHERE a > 1")
        >>> q.process(pa.record_batch({"a": [1, 2, 3]})).to_pydict()
        {'b': [4, 6]}
    """
    if not isinstance(sql, str):
        raise SqlSyntaxError(f"compile() takes SQL text (a str), not {type(sql).__name__}")
    return compile_statement(parse_statement(sql), properties=properties, path=path)
