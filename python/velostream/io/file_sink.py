"""The file sink: JSON Lines (one object per row, nulls as ``null``) or CSV with a header.

Batches are encoded in Rust and appended to the file. The file is replaced when the sink
first writes (``append = true`` keeps what is there), and its parent directories are
created. A CSV header is written once, with the first batch (even an empty one).
NaN and infinities are written ``NaN``, ``Infinity``, ``-Infinity`` in JSON (as Python's
``json`` and DuckDB's ``to_json``) and ``NaN``, ``inf``, ``-inf`` in CSV.

A sink told the paths its application's sources read (``source_paths``) refuses to open a
file one of them designates (see :func:`~velostream.io.paths.sink_overlaps_source`):
replacing it would destroy the input.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa

from velostream.errors import SinkError
from velostream.io import _codec
from velostream.io.paths import sink_overlaps_source


class FileSink:
    """Writes record batches to a JSON Lines or CSV file.

    Attributes:
        name: the connector name.
        path: the output file.
        format: ``json`` or ``csv``.

    """

    def __init__(
        self,
        name: str,
        path: str | Path,
        *,
        format: str = "json",
        append: bool = False,
        source_paths: Sequence[str | os.PathLike[str]] = (),
    ) -> None:
        """Create the sink (the file is opened at the first write).

        Args:
            name: the connector name.
            path: the output file.
            format: ``json`` (JSON Lines) or ``csv`` (with a header row).
            append: append to an existing file instead of replacing it.
            source_paths: the paths and globs (absolute, or relative to the working
                directory) that sources read: the sink never opens a file they designate.

        Raises:
            SinkError: ``path`` designates a file one of ``source_paths`` reads.

        """
        if format not in ("json", "csv"):
            raise ValueError(f"format must be json or csv, not {format!r}")
        self.name = name
        self.path = Path(path)
        self.format = format
        self.append = append
        self.source_paths = tuple(source_paths)
        self._check_not_a_source()
        self._file: BinaryIO | None = None
        #: Encoded bytes not written yet (after a failed write).
        self._pending: list[memoryview] = []
        self._header_written = False
        self._records = 0
        self._bytes = 0
        self._lock = threading.Lock()

    def describe(self) -> str:
        """One line for ``explain``."""
        return f"file_sink {self.path} (format {self.format})"

    def metrics(self) -> dict[str, int]:
        """Counters: records_written, bytes_written."""
        return {"records_written": self._records, "bytes_written": self._bytes}

    def _check_not_a_source(self) -> None:
        for source in self.source_paths:
            if sink_overlaps_source(self.path, source):
                raise SinkError(
                    f"file sink {self.name!r}: refusing to write {self.path}: a source reads "
                    f"it ({source}), and writing would destroy the input; choose another path",
                    sink=self.name,
                    cause=f"{self.path} is read by a source ({source})",
                )

    def _open(self) -> BinaryIO:
        if self._file is None:
            # Checked again here: a file matching a source's glob may have appeared since.
            self._check_not_a_source()
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                existing = self.append and self.path.exists() and self.path.stat().st_size > 0
                # Unbuffered: each batch is one large write, and what a failed write
                # left unwritten is known exactly (kept in `_pending`).
                self._file = open(self.path, "ab" if self.append else "wb", buffering=0)
            except OSError as exc:
                raise self._error("cannot open", exc) from exc
            # Appending CSV to a non-empty file: its header is already there.
            self._header_written = bool(existing)
        return self._file

    def _error(self, what: str, exc: OSError) -> SinkError:
        return SinkError(
            f"file sink {self.name!r}: {what} {self.path}: {exc.strerror or exc}",
            sink=self.name,
            cause=str(exc),
        )

    def write(self, batch: pa.RecordBatch) -> None:
        """Append every row of ``batch``.

        Raises:
            SinkError: the file cannot be written.

        """
        with self._lock:
            handle = self._open()
            if self.format == "csv":
                if batch.num_rows == 0 and self._header_written:
                    return
                data = _codec.encode_csv(batch, not self._header_written)
                self._header_written = True
            else:
                if batch.num_rows == 0:
                    return
                data = _codec.encode_json(batch)
            self._records += batch.num_rows
            self._pending.append(memoryview(data))
            self._drain(handle, "cannot write")

    def _drain(self, handle: BinaryIO, what: str) -> None:
        """Write what is pending; on a failure the unwritten rest stays pending.

        So a write either takes the whole batch or fails having taken it all the same:
        :meth:`flush` (retried by the runtime after a transient error such as a full
        disk) writes the rest, and no line is ever written twice or cut.
        """
        while self._pending:
            view = self._pending[0]
            try:
                written = handle.write(view)
            except OSError as exc:
                raise self._error(what, exc) from exc
            written = written or 0
            self._bytes += written
            if written >= len(view):
                self._pending.pop(0)
            else:
                self._pending[0] = view[written:]

    def flush(self) -> None:
        """Write what a failed write left pending, and hand everything to the OS."""
        with self._lock:
            if self._file is not None:
                self._drain(self._file, "cannot write")
                try:
                    self._file.flush()
                except OSError as exc:
                    raise self._error("cannot flush", exc) from exc

    def close(self) -> None:
        """Flush and close; creates the (empty) file if nothing was written."""
        with self._lock:
            handle = self._open()
            self._file = None
            try:
                try:
                    self._drain(handle, "cannot write")
                finally:
                    handle.close()
            except OSError as exc:
                raise self._error("cannot close", exc) from exc
