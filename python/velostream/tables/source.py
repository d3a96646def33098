"""A registered table read as a bounded source: the batches of its snapshot.

A table built from another table (``SELECT ... FROM other_table``) reads the other
table's rows as they are when its load starts: one snapshot, handed out in batches, then
the end. It follows the :class:`velostream.io.base.Source` protocol, so a load treats it
like a file.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pyarrow as pa

from velostream.tables.registry import TableHandle

__all__ = ["TableSource"]


class TableSource:
    """Reads a table's snapshot (the latest row per key) as record batches.

    Attributes:
        name: the table's name (the ``FROM`` name).
        handle: the table.
        batch_size: the largest number of rows per batch.
        schema: the table's columns (None while unknown).

    """

    def __init__(self, handle: TableHandle, *, batch_size: int = 65536) -> None:
        """Read ``handle``'s rows (the snapshot is taken when :meth:`batches` starts).

        Args:
            handle: the table.
            batch_size: the largest number of rows per batch.

        """
        self.name = handle.name
        self.handle = handle
        self.batch_size = batch_size
        self.schema: pa.Schema | None = handle.schema
        self._records = 0
        self._bytes = 0

    def total_rows(self) -> int:
        """Rows the table holds now (what a snapshot taken now would yield)."""
        return self.handle.row_count

    def batches(
        self, *, until_end: bool = True, stop: threading.Event | None = None
    ) -> Iterator[pa.RecordBatch]:
        """Yield the snapshot's rows; a table with columns but no rows yields one empty batch.

        Args:
            until_end: ignored: a snapshot always ends.
            stop: when set, stop before the next batch.

        """
        snapshot = self.handle.snapshot()
        self.schema = snapshot.schema
        batches = snapshot.to_batches(max_chunksize=self.batch_size)
        if not batches and len(snapshot.schema) > 0:
            # The columns still reach the query (an empty table has a schema).
            batches = [pa.RecordBatch.from_pylist([], schema=snapshot.schema)]
        for batch in batches:
            if stop is not None and stop.is_set():
                return
            self._records += batch.num_rows
            self._bytes += batch.nbytes
            yield batch

    def describe(self) -> str:
        """One line for ``explain``."""
        return f"table {self.name} (snapshot of its rows)"

    def metrics(self) -> dict[str, int]:
        """Counters: records_read, bytes_read."""
        return {"records_read": self._records, "bytes_read": self._bytes}

    def close(self) -> None:
        """Nothing to release."""
