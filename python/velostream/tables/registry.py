"""The table registry: named keyed tables, their status, and waiting until one is ready.

A :class:`TableHandle` is one table: its key columns, its rows in a Rust
``velostream._core.KeyedTable`` (latest row per key, looked up by key in O(1) and updated
in place), its status (:class:`TableStatus`: ``LOADING`` → ``READY``, or ``FAILED`` with
the error), its load progress and where it comes from. A :class:`TableRegistry` names the
handles of an application (or of an embedding program) and lets a reader wait until a
table is ready (:meth:`TableRegistry.wait_for_table_ready`): a stream must not join a
half-loaded table.

Every handle has one lock and a condition on it, notified at each status change; the
registry has its own, notified when a table is registered or dropped and when the status
of one of its tables changes. The registry's lock may be held while taking a handle's,
never the other way round.
"""

from __future__ import annotations

import enum
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import pyarrow as pa

from velostream import _core
from velostream.errors import ConfigError, SqlValidationError, TableNotReadyError
from velostream.tables.progress import TableProgress

__all__ = ["TableHandle", "TableRegistry", "TableStatus"]

#: The first and the longest pause of :meth:`TableRegistry.wait_for_table_ready` (seconds)
#: between two looks at a table; a status change or a registration wakes it earlier.
_FIRST_BACKOFF = 0.005
_MAX_BACKOFF = 0.5


class TableStatus(str, enum.Enum):
    """The status of a table."""

    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


def _key_columns(name: str, key: str | Sequence[str]) -> tuple[str, ...]:
    """The key column names of table ``name`` (one name or a sequence of them)."""
    columns = (key,) if isinstance(key, str) else tuple(key)
    if not columns or not all(isinstance(c, str) and c for c in columns):
        raise SqlValidationError(
            f"table {name!r} needs a key: one or more column names (PRIMARY KEY fields or "
            f"GROUP BY keys), not {key!r}"
        )
    return tuple(dict.fromkeys(columns))


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and (
        not isinstance(timeout, (int, float)) or math.isnan(timeout) or timeout < 0
    ):
        raise ConfigError(
            f"timeout must be a number of seconds ≥ 0 (or None: no limit), not {timeout!r}",
            key="timeout",
            value=str(timeout),
        )


class TableHandle:
    """One keyed table: its rows (in Rust), key, status, error, progress and origin.

    Attributes:
        name: the table's name.
        key: its key column names.
        source: a description of where its rows come from (for the health API), if any.
        progress: the counters of its load.

    """

    def __init__(
        self,
        name: str,
        key: str | Sequence[str],
        *,
        source: str | None = None,
        schema: pa.Schema | None = None,
    ) -> None:
        """Create an empty table, ``LOADING``.

        Args:
            name: the table's name.
            key: its key column (or columns).
            source: where its rows come from, in words.
            schema: its columns, when known now (else the first :meth:`upsert` sets them).

        Raises:
            SqlValidationError: no key, or a key column that ``schema`` lacks or that
                cannot be a key.

        """
        if not isinstance(name, str) or not name:
            raise ConfigError(f"a table name is a non-empty string, not {name!r}", key="name")
        self.name = name
        self.key: tuple[str, ...] = _key_columns(name, key)
        self.source = source
        self.progress = TableProgress()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._status = TableStatus.LOADING
        self._error: BaseException | None = None
        self._schema: pa.Schema | None = None
        self._keyed: _core.KeyedTable | None = None
        self._listeners: list[Callable[[], None]] = []
        if schema is not None:
            with self._lock:
                self._ensure_keyed(schema)

    # ------------------------------------------------------------------ state

    @property
    def status(self) -> TableStatus:
        """``LOADING``, ``READY`` or ``FAILED``."""
        with self._lock:
            return self._status

    @property
    def error(self) -> BaseException | None:
        """Why the table failed (None unless ``FAILED``)."""
        with self._lock:
            return self._error

    @property
    def schema(self) -> pa.Schema | None:
        """The table's columns (None until known)."""
        with self._lock:
            return self._schema

    @property
    def keyed(self) -> _core.KeyedTable | None:
        """The Rust table (latest row per key), None until the schema is known.

        Joins look keys up in it directly (``keyed.lookup(keys)``): it is updated in
        place as the table changes.
        """
        with self._lock:
            return self._keyed

    @property
    def row_count(self) -> int:
        """Live keys (one row per key)."""
        keyed = self.keyed
        return len(keyed) if keyed is not None else 0

    @property
    def bytes(self) -> int:
        """Heap bytes held by the table's rows and index."""
        keyed = self.keyed
        return keyed.bytes if keyed is not None else 0

    def _ensure_keyed(self, schema: pa.Schema) -> _core.KeyedTable:
        """The Rust table, made for ``schema`` when there is none yet (lock held)."""
        if self._keyed is not None:
            return self._keyed
        missing = [c for c in self.key if c not in schema.names]
        if missing:
            raise SqlValidationError(
                f"table {self.name!r}: key column {missing[0]!r} is not one of its columns "
                f"({', '.join(schema.names) or 'none'})"
            )
        self._keyed = _core.KeyedTable(schema, list(self.key))
        self._schema = schema
        return self._keyed

    # ------------------------------------------------------------------ data

    def upsert(self, batch: pa.RecordBatch, *, count: bool = True) -> int:
        """Insert or replace the rows of ``batch`` by key (a later row wins).

        The first batch sets the table's columns (an empty batch too).

        Args:
            batch: rows with the table's columns.
            count: add the batch to :attr:`progress` as input (a loader that counts its
                input records instead passes False).

        Returns:
            The number of rows upserted.

        Raises:
            SqlValidationError: a key column is missing from the first batch.
            DataError: a batch whose columns differ from the table's.

        """
        with self._lock:
            keyed = self._ensure_keyed(batch.schema)
        # The Rust table has its own lock; upserting outside ours keeps status readers
        # from waiting on a large batch.
        upserted = keyed.upsert(batch)
        if count:
            self.progress.add(batch.num_rows, batch.nbytes)
        return upserted

    def snapshot(self) -> pa.Table:
        """The live rows, one per key, in first-insertion order of their keys.

        Returns:
            A ``pyarrow.Table`` (no rows with the table's columns when it is empty; with
            no columns while they are unknown).

        """
        keyed = self.keyed
        if keyed is None:
            return pa.table({})
        batch = keyed.snapshot()
        return pa.Table.from_batches([batch], schema=batch.schema)

    def reset(self) -> None:
        """Drop every row and the columns, back to ``LOADING`` (a load starting afresh)."""
        with self._changed:
            self._keyed = None
            self._schema = None
            self._status = TableStatus.LOADING
            self._error = None
            self._changed.notify_all()
        self._notify()

    # ------------------------------------------------------------------ status

    def mark_ready(self) -> bool:
        """``LOADING`` → ``READY`` (a failed table stays failed).

        Returns:
            Whether the table is now ready.

        """
        keyed = self._keyed
        if keyed is not None:
            # The bulk load is in: one batch in key order, so joins gather with `take`.
            keyed.compact()
        with self._changed:
            if self._status is TableStatus.LOADING:
                self._status = TableStatus.READY
                self._changed.notify_all()
                changed = True
            else:
                changed = False
            ready = self._status is TableStatus.READY
        if changed:
            self.progress.finish()
            self._notify()
        return ready

    def mark_failed(self, error: BaseException) -> None:
        """The table failed: ``FAILED``, with ``error`` as the reason.

        Args:
            error: what went wrong.

        """
        with self._changed:
            self._status = TableStatus.FAILED
            self._error = error
            self._changed.notify_all()
        self.progress.finish()
        self._notify()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the table is ready.

        Args:
            timeout: seconds to wait at most (None: no limit).

        Returns:
            True once ready; False when ``timeout`` passed first.

        Raises:
            TableNotReadyError: the table failed (status ``"failed"``; the error is the
                ``__cause__``).
            ConfigError: a negative or NaN timeout.

        """
        _check_timeout(timeout)
        with self._changed:
            self._changed.wait_for(lambda: self._status is not TableStatus.LOADING, timeout)
            status, error = self._status, self._error
        if status is TableStatus.FAILED:
            raise TableNotReadyError(self.name, timeout, TableStatus.FAILED.value) from error
        return status is TableStatus.READY

    def _subscribe(self, listener: Callable[[], None]) -> None:
        with self._lock:
            self._listeners.append(listener)

    def _unsubscribe(self, listener: Callable[[], None]) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _notify(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener()

    def __repr__(self) -> str:
        return (
            f"<TableHandle {self.name} key={list(self.key)} {self.status.value} "
            f"rows={self.row_count}>"
        )


class TableRegistry:
    """Named tables: register, create, drop, get, and wait until one is ready."""

    def __init__(self) -> None:
        """An empty registry."""
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._tables: dict[str, TableHandle] = {}

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def _add(self, name: str, handle: TableHandle) -> TableHandle:
        with self._changed:
            if name in self._tables:
                raise ConfigError(
                    f"table {name!r} is already registered: drop it first",
                    key="name",
                    value=name,
                )
            self._tables[name] = handle
            self._changed.notify_all()
        handle._subscribe(self._notify)
        return handle

    def register(
        self,
        name: str,
        table: pa.Table | pa.RecordBatch | TableHandle,
        *,
        key: str | Sequence[str] | None = None,
    ) -> TableHandle:
        """Register a table under ``name``.

        Args:
            name: the table's name.
            table: rows (``pyarrow.Table`` or ``RecordBatch``: loaded now, the last row of
                each key kept, then ``READY``), or a handle (registered as it is).
            key: the key column(s); required with rows.

        Returns:
            The handle.

        Raises:
            ConfigError: ``name`` is already registered, or a handle of another name.
            SqlValidationError: no key, or a key column the rows lack.

        """
        if isinstance(table, TableHandle):
            if table.name != name:
                raise ConfigError(
                    f"cannot register the table {table.name!r} as {name!r}: the names differ",
                    key="name",
                    value=name,
                )
            return self._add(name, table)
        if not isinstance(table, (pa.Table, pa.RecordBatch)):
            raise ConfigError(
                f"register() takes a pyarrow.Table, a pyarrow.RecordBatch or a TableHandle, "
                f"not {type(table).__name__}",
                key="table",
            )
        if key is None:
            raise SqlValidationError(
                f"table {name!r} needs a key: register(name, table, key='column')"
            )
        handle = TableHandle(name, key, source="registered rows", schema=table.schema)
        handle.progress.start()
        batches = table.to_batches() if isinstance(table, pa.Table) else [table]
        for batch in batches:
            handle.upsert(batch)
        handle.mark_ready()
        return self._add(name, handle)

    def create(
        self, name: str, *, key: str | Sequence[str], source: str | None = None
    ) -> TableHandle:
        """Register a new empty table, ``LOADING`` (a loader fills it, then marks it ready).

        Args:
            name: the table's name.
            key: its key column(s).
            source: where its rows come from, in words.

        Returns:
            The handle.

        Raises:
            ConfigError: ``name`` is already registered.
            SqlValidationError: no key.

        """
        return self._add(name, TableHandle(name, key, source=source))

    def drop(self, name: str) -> TableHandle:
        """Remove a table from the registry.

        Args:
            name: the table's name.

        Returns:
            The handle that was registered (readers holding it keep their rows).

        Raises:
            ConfigError: no table has that name.

        """
        with self._changed:
            handle = self._tables.pop(name, None)
            if handle is None:
                raise ConfigError(
                    f"no table {name!r} to drop", key="name", value=name, allowed=self._names()
                )
            self._changed.notify_all()
        handle._unsubscribe(self._notify)
        return handle

    def get(self, name: str) -> TableHandle | None:
        """The table named ``name``, or None."""
        with self._lock:
            return self._tables.get(name)

    def _names(self) -> list[str]:
        return sorted(self._tables)

    def names(self) -> list[str]:
        """The registered names, sorted."""
        with self._lock:
            return self._names()

    def handles(self) -> list[TableHandle]:
        """The registered tables, sorted by name."""
        with self._lock:
            return [self._tables[n] for n in self._names()]

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._tables

    def __len__(self) -> int:
        with self._lock:
            return len(self._tables)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def wait_for_table_ready(self, name: str, timeout: float | None = 60.0) -> TableHandle:
        """Wait until the table ``name`` is ``READY``.

        A name not registered yet may be registered while waiting (a loader creates its
        tables as it goes), so an unknown name is waited for too. The registry is looked
        at again after each status change and registration, and at least after pauses
        growing exponentially from 5 ms to 0.5 s.

        Args:
            name: the table's name.
            timeout: seconds to wait at most (None: no limit).

        Returns:
            The ready table's handle.

        Raises:
            TableNotReadyError: the table failed (at once, ``status="failed"``, its error
                as ``__cause__``), or ``timeout`` passed (``status`` is its status then:
                ``"loading"``, or ``"unknown"`` when it was never registered).
            ConfigError: a negative or NaN timeout.

        """
        _check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = _FIRST_BACKOFF
        with self._changed:
            while True:
                handle = self._tables.get(name)
                status = handle.status if handle is not None else None
                if handle is not None and status is TableStatus.READY:
                    return handle
                if handle is not None and status is TableStatus.FAILED:
                    raise TableNotReadyError(name, timeout, TableStatus.FAILED.value) from (
                        handle.error
                    )
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TableNotReadyError(
                        name, timeout, status.value if status is not None else "unknown"
                    )
                self._changed.wait(pause if remaining is None else min(pause, remaining))
                pause = min(_MAX_BACKOFF, pause * 2)

    def __repr__(self) -> str:
        return f"<TableRegistry {self.names()}>"
