"""The file source: JSON Lines or CSV files (a path or a glob), read in chunks.

Bytes are read in large blocks, cut at the last newline and handed to the Rust decoder,
which returns a typed batch of the good lines and the bad lines (0-based index in the
chunk, reason, raw bytes); no Python runs per record. Column types are inferred once,
from the first chunk (``schema.inference.rows`` rows), and kept for the whole source, so
every batch has the same schema. Bad lines go to the :class:`BadRecordPolicy` with their
location ``path:line`` (1-based, counting a CSV header).

``watch = true`` keeps reading the last file as it grows (``tail -f``) until the job is
stopped; with ``until_end`` (``velostream run --until-end``) the source ends at the last
line anyway. A record is one line (CSV fields holding newlines are not supported).
"""

from __future__ import annotations

import glob
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from velostream import _core
from velostream.errors import SourceError
from velostream.io.bad_records import BadRecordPolicy

#: Bytes read for the first block of a file, before the line size is known.
_FIRST_BLOCK = 1 << 20
_MIN_BLOCK = 64 << 10
_MAX_BLOCK = 64 << 20
_POLL_SECONDS = 0.1


def _has_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


class FileSource:
    """Reads JSON Lines or CSV files as typed record batches.

    Attributes:
        name: the connector name.
        path: the file path or glob (absolute).
        format: ``json`` or ``csv``.
        batch_size: the largest number of rows per batch.

    """

    def __init__(
        self,
        name: str,
        path: str | Path,
        *,
        format: str = "json",
        batch_size: int = 65536,
        wait_timeout_ms: int | None = None,
        watch: bool = False,
        inference_rows: int | None = None,
        bad_records: BadRecordPolicy | None = None,
    ) -> None:
        """Create the source (no file is opened before :meth:`batches`).

        Args:
            name: the connector name.
            path: a file path or glob.
            format: ``json`` (JSON Lines) or ``csv`` (with a header row).
            batch_size: the largest number of rows per batch.
            wait_timeout_ms: wait this long for the file or glob to appear; None: fail at once.
            watch: keep reading the last file as it grows.
            inference_rows: rows used to infer the column types (default: ``batch_size``).
            bad_records: the bad-record policy (default: ``fail``).

        """
        if format not in ("json", "csv"):
            raise ValueError(f"format must be json or csv, not {format!r}")
        self.name = name
        self.path = str(path)
        self.format = format
        self.batch_size = batch_size
        self.wait_timeout_ms = wait_timeout_ms
        self.watch = watch
        self.inference_rows = inference_rows or batch_size
        self.bad_records = bad_records if bad_records is not None else BadRecordPolicy("fail")
        self.schema: pa.Schema | None = None
        self._decoder: _core.JsonDecoder | _core.CsvDecoder | None = None
        self._records = 0
        self._bad = 0
        self._bytes = 0
        self._files = 0

    def describe(self) -> str:
        """One line for ``explain``."""
        extra = ", watch" if self.watch else ""
        return (
            f"file_source {self.path} (format {self.format}, batch.size {self.batch_size}{extra})"
        )

    def metrics(self) -> dict[str, int]:
        """Counters: records_read, bad_records, bytes_read, files_read."""
        return {
            "records_read": self._records,
            "bad_records": self._bad,
            "bytes_read": self._bytes,
            "files_read": self._files,
        }

    def close(self) -> None:
        """Nothing to release: files are closed as soon as they are read."""

    def resolve_files(self, stop: threading.Event | None = None) -> list[Path]:
        """Return the files to read, waiting for them up to ``file.wait.timeout``.

        Raises:
            SourceError: nothing matches the path (after waiting, when configured).

        """
        deadline = None
        if self.wait_timeout_ms is not None:
            deadline = time.monotonic() + self.wait_timeout_ms / 1000
        while True:
            if _has_glob(self.path):
                files = [Path(p) for p in sorted(glob.glob(self.path)) if Path(p).is_file()]
            else:
                files = [Path(self.path)] if Path(self.path).is_file() else []
            if files:
                return files
            if (
                deadline is None
                or time.monotonic() >= deadline
                or (stop is not None and stop.is_set())
            ):
                break
            time.sleep(_POLL_SECONDS)
        what = "no file matches" if _has_glob(self.path) else "file not found:"
        waited = (
            f" (waited {self.wait_timeout_ms / 1000:g}s, 'file.wait.timeout')"
            if self.wait_timeout_ms is not None
            else f" (set '{self.name}.file.wait.timeout' to wait for it)"
        )
        raise SourceError(
            f"file source {self.name!r}: {what} {self.path}{waited}",
            source=self.name,
            cause=f"{what} {self.path}",
        )

    def batches(
        self, *, until_end: bool = True, stop: threading.Event | None = None
    ) -> Iterator[pa.RecordBatch]:
        """Yield the typed batches of every file, in file order then line order.

        Args:
            until_end: end at the last line even when ``watch`` is set.
            stop: when set, stop at the next chunk boundary.

        Raises:
            SourceError: no file, or a file cannot be read.
            DataError: a bad record under ``'error.strategy' = 'fail'``.

        """
        files = self.resolve_files(stop)
        for i, file in enumerate(files):
            tail = self.watch and not until_end and i == len(files) - 1
            try:
                yield from self._read_file(file, tail=tail, stop=stop)
            except OSError as exc:
                raise SourceError(
                    f"file source {self.name!r}: cannot read {file}: {exc.strerror or exc}",
                    source=self.name,
                    cause=str(exc),
                ) from exc
            if stop is not None and stop.is_set():
                return

    # ----------------------------------------------------------------------- reading

    def _read_file(
        self, file: Path, *, tail: bool, stop: threading.Event | None
    ) -> Iterator[pa.RecordBatch]:
        self._files += 1
        with open(file, "rb") as handle:
            line_no = 0  # lines of the file before the current chunk
            header: bytes | None = None
            if self.format == "csv":
                header = handle.readline()
                self._bytes += len(header)
                if not header:
                    return
                line_no = 1
                self._check_header(file, header)
            pending = b""
            block = _FIRST_BLOCK
            while True:
                if stop is not None and stop.is_set():
                    return
                data = handle.read(block)
                if data:
                    self._bytes += len(data)
                    buffer = pending + data if pending else data
                    cut = buffer.rfind(b"\n")
                    if cut < 0:
                        pending = buffer
                        continue
                    chunk, pending = buffer[: cut + 1], buffer[cut + 1 :]
                elif pending and not tail:
                    chunk, pending = pending, b""  # the last line has no newline
                elif tail and (stop is None or not stop.is_set()):
                    time.sleep(_POLL_SECONDS)
                    continue
                else:
                    return
                lines = chunk.count(b"\n") or 1
                block = min(_MAX_BLOCK, max(_MIN_BLOCK, len(chunk) // lines * self.batch_size))
                batch = self._decode(file, chunk, line_no, header)
                line_no += lines
                for offset in range(0, batch.num_rows, self.batch_size):
                    yield batch.slice(offset, self.batch_size)

    def _check_header(self, file: Path, header: bytes) -> None:
        if self.schema is None or self._decoder is None:
            return
        names = header.decode("utf-8", errors="replace").strip().split(",")
        if names != self.schema.names:
            raise SourceError(
                f"file source {self.name!r}: the header of {file} ({','.join(names)}) differs "
                f"from the first file's ({','.join(self.schema.names)})",
                source=self.name,
            )

    def _decoder_for(
        self, chunk: bytes, header: bytes | None
    ) -> _core.JsonDecoder | _core.CsvDecoder:
        if self._decoder is not None and (self.schema is None or len(self.schema) > 0):
            return self._decoder
        if self.format == "csv":
            assert header is not None
            schema = _core.infer_csv_schema(header + chunk, self.inference_rows)
            self._decoder = _core.CsvDecoder(schema)
        else:
            schema = _core.infer_json_schema(chunk, self.inference_rows)
            self._decoder = _core.JsonDecoder(schema)
        self.schema = schema
        return self._decoder

    def _decode(
        self, file: Path, chunk: bytes, line_no: int, header: bytes | None
    ) -> pa.RecordBatch:
        decoder = self._decoder_for(chunk, header)
        batch, bad_lines = decoder.decode(chunk)
        self._records += batch.num_rows
        if bad_lines:
            self._bad += len(bad_lines)
            self.bad_records.handle(
                self.name,
                [
                    (f"{file}:{line_no + index + 1}", reason, raw)
                    for index, reason, raw in bad_lines
                ],
            )
        return batch
