"""The sink of an application's ``CREATE TABLE ... AS SELECT``: rows into its table.

The statement's output rows are upserted into its registry table, and the table's load
is followed. A table statement runs in the job graph like any other; its rows go into its
:class:`~velostream.tables.registry.TableHandle` (latest row per key, in Rust). The table
is ``READY`` (SPEC section 8) once its bulk load is in:

- when its input ends (a file read to its last line, a bounded run), after the query's
  last rows; or
- while the run goes on, once every source has handed on what it held when the run
  started (:meth:`caught_up`: a Kafka source up to the high watermarks seen when it
  connected, a watched file up to its end) and the statement has processed it.

Afterwards the table keeps being updated (incremental loading) for as long as the
statement runs; joins see each update from their next batch on. A failed statement marks
the table ``FAILED`` with its error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import pyarrow as pa

from velostream.io.base import Source
from velostream.io.file_source import FileSource
from velostream.tables.registry import TableHandle, TableStatus

__all__ = ["TableSink"]


class TableSink:
    """Upserts a statement's output into a table and tells when the table is ready."""

    def __init__(
        self,
        handle: TableHandle,
        sources: Sequence[Source] = (),
        schema: Callable[[], pa.Schema | None] | None = None,
    ) -> None:
        """Feed ``handle`` from a statement reading ``sources``.

        Args:
            handle: the table (``LOADING``).
            sources: the external sources whose records reach the statement (its own,
                or those of the statements it reads in-process): their positions and
                sizes give the load's progress and tell when the bulk load is done.
            schema: the statement's output schema once known, so that a table whose
                input had no rows still has its columns (and can be joined).
        """
        self.handle = handle
        self.name = handle.name
        self._schema = schema
        self._written = 0
        self._measured = False
        self._lock = threading.Lock()
        self.feed_from(sources)
        handle.progress.start()

    def feed_from(self, sources: Sequence[Source]) -> None:
        """Follow the load through ``sources`` (see ``__init__``)."""
        self.sources = list(sources)
        self._read = {id(s): (0, 0) for s in self.sources}

    def write(self, batch: pa.RecordBatch) -> None:
        """Upsert the rows of ``batch`` (a later row of a key wins)."""
        if batch.num_rows or self.handle.keyed is None:
            self.handle.upsert(batch, count=False)
            self._written += batch.num_rows

    def flush(self) -> None:
        """Nothing is buffered: each write is in the table when it returns."""

    def describe(self) -> str:
        """The table, in words."""
        return f"table {self.name} (key {', '.join(self.handle.key)})"

    def metrics(self) -> dict[str, int]:
        """Counters: records_written, rows (the table's keys)."""
        return {"records_written": self._written, "rows": self.handle.row_count}

    def close(self) -> None:
        """The table outlives the run (it stays in the registry)."""

    # ------------------------------------------------------------------ the load

    def tick(self, idle: Callable[[], bool]) -> None:
        """After a batch of the statement (or a wait): progress, and READY once loaded.

        Args:
            idle: whether nothing is queued for the statement. Asked after the sources
                said they caught up: what they handed on before is then queued, so an
                empty queue means the statement processed it all.
        """
        self._progress()
        if self.handle.status is TableStatus.LOADING and self.caught_up() and idle():
            self.handle.mark_ready()

    def caught_up(self) -> bool:
        """Whether every source has handed on everything it held at the start."""
        checks = [getattr(source, "caught_up", None) for source in self.sources]
        return bool(checks) and all(check is not None and check() for check in checks)

    def finished(self) -> None:
        """The statement's input ended and its last rows are in: the table is ready."""
        self._progress()
        schema = self._schema() if self._schema is not None else None
        if self.handle.keyed is None and schema is not None:
            # No row came: the table is empty, with the statement's columns.
            self.handle.upsert(pa.RecordBatch.from_pylist([], schema=schema), count=False)
        self.handle.mark_ready()

    def failed(self, error: BaseException) -> None:
        """The statement failed: so did the table, unless it was ready already."""
        if self.handle.status is TableStatus.LOADING:
            self.handle.mark_failed(error)

    def _progress(self) -> None:
        """Add what the sources read since the last call to the table's progress."""
        with self._lock:
            records = nbytes = 0
            for source in self.sources:
                metrics = source.metrics()
                now = (int(metrics.get("records_read", 0)), int(metrics.get("bytes_read", 0)))
                before = self._read[id(source)]
                self._read[id(source)] = now
                records += now[0] - before[0]
                nbytes += now[1] - before[1]
            if records or nbytes:
                self.handle.progress.add(records, nbytes)
            started = any(self._read[id(s)] != (0, 0) for s in self.sources)
            if not self._measured and started:
                self._measured = self._measure()

    def _measure(self) -> bool:
        """The load's total when it is known: file sizes, or Kafka's records behind."""
        totals: list[tuple[str, int]] = []
        for source in self.sources:
            if isinstance(source, FileSource):
                try:
                    totals.append(("bytes", sum(f.stat().st_size for f in source.resolve_files())))
                except OSError:
                    return True  # a file gone: the percent stays unknown
                continue
            lag = getattr(source, "lag", None)
            behind = lag() if lag is not None else None
            if behind is None:
                return False  # not connected yet: try again later
            read = int(source.metrics().get("records_read", 0))
            totals.append(("records", read + int(behind)))
        units = {unit for unit, _ in totals}
        if len(units) == 1:
            self.handle.progress.set_total(sum(t for _, t in totals), units.pop())  # type: ignore[arg-type]
        return True
