"""The file source: JSON Lines or CSV files (a path or a glob), read in chunks.

Bytes are read in large blocks, cut at the last newline and handed to the Rust decoder,
which returns a typed batch of the good lines and the bad lines (0-based index in the
chunk, reason, raw bytes, field, value); no Python runs per record. Bad lines go to the
:class:`BadRecordPolicy` with their location ``path:line`` (1-based, counting a CSV
header), whatever the problem: invalid JSON, a ragged CSV row, a value that does not fit
its column, a line that is not UTF-8 text.

Column types are either declared (``schema``: each column read exactly as declared, CSV
columns taken by name from the header) or inferred once, from the first
``schema.inference.rows`` rows (default 1000) of the first file, and kept for the whole
source, so every batch has the same schema. Inference never loses a value (see
docs/configuration.md, "Inference"); a column widened by a value of the window is logged
(logger ``velostream.io``, WARNING) with the file, line, column, old and new type; after the
window a value that does not fit is a bad record.

A UTF-8 byte order mark is skipped and CRLF line ends are read as line ends; a file with a
UTF-16 or UTF-32 byte order mark is a :class:`~velostream.errors.SourceError`.

``watch = true`` keeps reading the last file as it grows (``tail -f``) until the job is
stopped; with ``until_end`` (``velostream run --until-end``) the source ends at the last
line anyway. A record is one line (CSV fields holding newlines are not supported).
"""

from __future__ import annotations

import functools
import glob
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa

from velostream.errors import ConfigError, DataError, SourceError
from velostream.io import _codec
from velostream.io._lines import count_line_ends, last_line_end, read_line
from velostream.io.bad_records import BadRecordPolicy
from velostream.io.paths import has_glob

logger = logging.getLogger("velostream.io")

#: Rows read to infer column types, unless ``schema.inference.rows`` says otherwise.
DEFAULT_INFERENCE_ROWS = 1000

#: Line ends as the decoders count them: LF, CRLF, and a lone CR.
_LINE_ENDS = re.compile(rb"\r\n|\n|\r")

#: Bytes read for the first block of a file, before the line size is known.
_FIRST_BLOCK = 1 << 20
_MIN_BLOCK = 64 << 10
_MAX_BLOCK = 64 << 20
#: The inference sample stops growing here even when it holds fewer rows than the window.
_MAX_SAMPLE = 64 << 20
_POLL_SECONDS = 0.1

_UTF8_BOM = b"\xef\xbb\xbf"
#: Byte order marks of encodings velostream does not read (longest first).
_FOREIGN_BOMS = (
    (b"\x00\x00\xfe\xff", "UTF-32 (big endian)"),
    (b"\xff\xfe\x00\x00", "UTF-32 (little endian)"),
    (b"\xfe\xff", "UTF-16 (big endian)"),
    (b"\xff\xfe", "UTF-16 (little endian)"),
)


def _csv_type_supported(data_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(data_type)
        or pa.types.is_large_string(data_type)
        or pa.types.is_boolean(data_type)
        or pa.types.is_integer(data_type)
        or pa.types.is_floating(data_type)
        or pa.types.is_decimal128(data_type)
        or pa.types.is_timestamp(data_type)
        or pa.types.is_date(data_type)
        or pa.types.is_time(data_type)
    )


class FileSource:
    """Reads JSON Lines or CSV files as typed record batches.

    Attributes:
        name: the connector name.
        path: the file path or glob (absolute).
        format: ``json`` or ``csv``.
        batch_size: the largest number of rows per batch.
        schema: the declared schema, else the inferred one once the first chunk is read
            (None before).
        declared: whether ``schema`` was declared.

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
        schema: pa.Schema | None = None,
    ) -> None:
        """Create the source (no file is opened before :meth:`batches`).

        Args:
            name: the connector name.
            path: a file path or glob.
            format: ``json`` (JSON Lines) or ``csv`` (with a header row).
            batch_size: the largest number of rows per batch.
            wait_timeout_ms: wait this long for the file or glob to appear; None: fail at once.
            watch: keep reading the last file as it grows.
            inference_rows: rows used to infer the column types (default 1000); not used
                with a declared ``schema``.
            bad_records: the bad-record policy (default: ``fail``).
            schema: the exact column types (no inference). JSON fields absent from a line
                are NULL and other fields are ignored; CSV columns are taken by name from
                each file's header, which must hold every declared column.

        Raises:
            ConfigError: a declared column type this format cannot read, or a column
                declared twice.

        """
        if format not in ("json", "csv"):
            raise ValueError(f"format must be json or csv, not {format!r}")
        self.name = name
        self.path = str(path)
        self.format = format
        self.batch_size = batch_size
        self.wait_timeout_ms = wait_timeout_ms
        self.watch = watch
        self._caught_up = False
        self.inference_rows = inference_rows or DEFAULT_INFERENCE_ROWS
        self.bad_records = bad_records if bad_records is not None else BadRecordPolicy("fail")
        self.schema: pa.Schema | None = schema
        self.declared = schema is not None
        self._decoder: _codec.JsonDecoder | _codec.CsvDecoder | None = None
        self._csv_names: list[str] | None = None
        self._records = 0
        self._bad = 0
        self._bytes = 0
        self._files = 0
        if schema is not None:
            self._check_declared(schema)

    def _check_declared(self, schema: pa.Schema) -> None:
        seen: set[str] = set()
        for field in schema:
            if field.name in seen:
                raise ConfigError(
                    f"file source {self.name!r}: column {field.name!r} is declared twice",
                    key=f"{self.name}.schema",
                    value=field.name,
                )
            seen.add(field.name)
            if self.format == "csv" and not _csv_type_supported(field.type):
                raise ConfigError(
                    f"file source {self.name!r}: column {field.name!r} is declared "
                    f"{field.type}, which a CSV file source cannot read",
                    key=f"{self.name}.schema",
                    value=str(field.type),
                )
        if self.format == "json":
            try:
                self._decoder = _codec.JsonDecoder(schema)
            except DataError as exc:
                raise ConfigError(
                    f"file source {self.name!r}: the declared columns cannot be read from "
                    f"JSON: {exc}",
                    key=f"{self.name}.schema",
                ) from None

    def describe(self) -> str:
        """One line for ``explain``."""
        extra = ", watch" if self.watch else ""
        if self.declared:
            extra += ", declared columns"
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

        A ``stop`` set while waiting ends the wait with no file.

        Raises:
            SourceError: nothing matches the path (after waiting, when configured).

        """
        deadline = None
        if self.wait_timeout_ms is not None:
            deadline = time.monotonic() + self.wait_timeout_ms / 1000
        while True:
            if has_glob(self.path):
                files = [Path(p) for p in sorted(glob.glob(self.path)) if Path(p).is_file()]
            else:
                files = [Path(self.path)] if Path(self.path).is_file() else []
            if files:
                return files
            if stop is not None and stop.is_set() and deadline is not None:
                return []  # stopped while waiting: nothing was there to read
            if deadline is None or time.monotonic() >= deadline:
                break
            time.sleep(_POLL_SECONDS)
        what = "no file matches" if has_glob(self.path) else "file not found:"
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

    def caught_up(self) -> bool:
        """Whether every line there was at the start was read (a watched file: then followed)."""
        return self._caught_up

    def batches(
        self, *, until_end: bool = True, stop: threading.Event | None = None
    ) -> Iterator[pa.RecordBatch]:
        """Yield the typed batches of every file, in file order then line order.

        Args:
            until_end: end at the last line even when ``watch`` is set.
            stop: when set, stop at the next chunk boundary.

        Raises:
            SourceError: no file, a file cannot be read, is not UTF-8 text (a UTF-16 byte
                order mark, a CSV header that is not text), or lacks a declared CSV column.
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
        if not until_end:
            # Long-running: a file not followed ends here, having handed on all it held.
            self._caught_up = True

    # ----------------------------------------------------------------------- reading

    def _skip_byte_order_mark(self, file: Path, handle: BinaryIO) -> None:
        start = handle.read(4)
        for mark, encoding in _FOREIGN_BOMS:
            if start.startswith(mark):
                raise SourceError(
                    f"file source {self.name!r}: {file} is {encoding} text (it starts with a "
                    f"byte order mark); velostream reads UTF-8: convert it, e.g. "
                    f"iconv -f {encoding.split()[0]} -t UTF-8",
                    source=self.name,
                    cause=f"{file} is {encoding}",
                )
        skip = len(_UTF8_BOM) if start.startswith(_UTF8_BOM) else 0
        handle.seek(skip)
        self._bytes += skip

    def _sampling(self) -> bool:
        """Whether the next chunk decides the inferred types (so it should hold the window)."""
        if self.declared:
            return False
        return self._decoder is None or (self.schema is not None and len(self.schema) == 0)

    def _read_file(
        self, file: Path, *, tail: bool, stop: threading.Event | None
    ) -> Iterator[pa.RecordBatch]:
        self._files += 1
        with open(file, "rb") as handle:
            self._skip_byte_order_mark(file, handle)
            line_no = 0  # lines of the file before the current chunk
            header: bytes | None = None
            csv_decoder: _codec.CsvDecoder | None = None
            if self.format == "csv":
                header = read_line(handle)
                self._bytes += len(header)
                if not header:
                    return
                line_no = 1
                csv_decoder = self._csv_decoder_for(file, header)
            pending = b""
            block = _FIRST_BLOCK
            while True:
                if stop is not None and stop.is_set():
                    return
                data = handle.read(block)
                if data:
                    self._bytes += len(data)
                    buffer = pending + data if pending else data
                    if (
                        self._sampling()
                        and count_line_ends(buffer) <= self.inference_rows
                        and len(buffer) < _MAX_SAMPLE
                    ):
                        pending = buffer  # the inference window needs more lines
                        block = min(_MAX_BLOCK, block * 2)
                        continue
                    cut = last_line_end(buffer, final=False)
                    if cut < 0:
                        pending = buffer
                        continue
                    chunk, pending = buffer[: cut + 1], buffer[cut + 1 :]
                elif pending and not tail:
                    chunk, pending = pending, b""  # the last line has no newline
                elif pending and (cut := last_line_end(pending, final=False)) >= 0:
                    # Tailing a file shorter than the inference window: use what is there.
                    chunk, pending = pending[: cut + 1], pending[cut + 1 :]
                elif tail and (stop is None or not stop.is_set()):
                    self._caught_up = True  # every line there was at the start is read
                    time.sleep(_POLL_SECONDS)
                    continue
                else:
                    return
                lines = count_line_ends(chunk) or 1
                block = min(_MAX_BLOCK, max(_MIN_BLOCK, len(chunk) // lines * self.batch_size))
                bad: set[int] = set()
                batch = self._decode(file, chunk, line_no, header, csv_decoder, bad)
                first_line = line_no
                line_no += lines
                for offset in range(0, batch.num_rows, self.batch_size):
                    # Where the batch's records come from, for errors about one of them.
                    self._origin = (file, first_line, chunk, bad, offset)
                    yield batch.slice(offset, self.batch_size)

    def locator(self) -> Callable[[int], str | None]:
        """:meth:`locate` for the batch this source yielded last, kept for later.

        A runtime that queues batches takes it with the batch: by the time a record of
        the batch turns out bad, the source may have read further.
        """
        return functools.partial(self._locate, getattr(self, "_origin", None))

    def locate(self, row: int) -> str | None:
        """``path:line`` of record ``row`` of the batch this source yielded last.

        Only for messages about one record (it walks the batch's lines in Python): the
        rows are the chunk's lines without the blank and the bad ones.
        """
        return self._locate(getattr(self, "_origin", None), row)

    def _locate(self, origin: Any, row: int) -> str | None:
        if origin is None or row < 0:
            return None
        file, first_line, chunk, bad, offset = origin
        wanted = offset + row
        seen = 0
        for index, line in enumerate(_LINE_ENDS.split(chunk)):
            if index in bad or not line.strip(b" \t\r\n"):
                continue
            if seen == wanted:
                return f"{file}:{first_line + index + 1}"
            seen += 1
        return None

    def _header_names(self, file: Path, header: bytes) -> list[str]:
        try:
            names = _codec.csv_header(header.rstrip(b"\r\n"))
        except DataError as exc:
            raise SourceError(
                f"file source {self.name!r}: cannot read the header of {file}: {exc}",
                source=self.name,
                cause=str(exc),
            ) from None
        if not names:
            raise SourceError(
                f"file source {self.name!r}: the first line of {file} is empty; a CSV file "
                "starts with a header line naming its columns",
                source=self.name,
                cause=f"{file} has no CSV header",
            )
        return names

    def _csv_decoder_for(self, file: Path, header: bytes) -> _codec.CsvDecoder | None:
        """The decoder of one CSV file (None: the inferred decoder).

        Declared columns are taken by name from the file's header; without declared
        columns, the header must be the first file's.
        """
        names = self._header_names(file, header)
        if not self.declared:
            if self._csv_names is not None and names != self._csv_names:
                raise SourceError(
                    f"file source {self.name!r}: the header of {file} ({','.join(names)}) "
                    f"differs from the first file's ({','.join(self._csv_names)})",
                    source=self.name,
                )
            self._csv_names = names
            return None
        assert self.schema is not None
        positions: dict[str, int] = {}
        ambiguous: list[str] = []
        for position, column in enumerate(names):
            if column in positions:
                ambiguous.append(column)
            positions.setdefault(column, position)
        missing = [f.name for f in self.schema if f.name not in positions]
        if missing:
            raise SourceError(
                f"file source {self.name!r}: declared column(s) {', '.join(map(repr, missing))} "
                f"not in the header of {file} (its columns: {', '.join(map(repr, names))})",
                source=self.name,
                cause=f"missing column(s) {', '.join(missing)} in {file}",
            )
        twice = [f.name for f in self.schema if f.name in ambiguous]
        if twice:
            raise SourceError(
                f"file source {self.name!r}: declared column(s) {', '.join(map(repr, twice))} "
                f"appear more than once in the header of {file}",
                source=self.name,
            )
        return _codec.CsvDecoder(self.schema, [positions[f.name] for f in self.schema], len(names))

    def _infer(
        self, file: Path, chunk: bytes, line_no: int, header: bytes | None
    ) -> _codec.JsonDecoder | _codec.CsvDecoder:
        decoder: _codec.JsonDecoder | _codec.CsvDecoder
        if self.format == "csv":
            assert header is not None
            schema, widenings = _codec.infer_csv(header + chunk, self.inference_rows)
            decoder = _codec.CsvDecoder(schema)
            first_line = 1  # the sample starts with the header, line 1
        else:
            schema, widenings = _codec.infer_json(chunk, self.inference_rows)
            decoder = _codec.JsonDecoder(schema)
            first_line = line_no + 1
        for column, old, new, line, value in widenings:
            logger.warning(
                "%s:%d: column %r of source %r widened from %s to %s by the value %r "
                "(types are inferred from the first %d rows; declare the column's type to "
                "read it exactly)",
                file,
                first_line + line,
                column,
                self.name,
                old,
                new,
                value,
                self.inference_rows,
            )
        self.schema = schema
        self._decoder = decoder
        return decoder

    def _decode(
        self,
        file: Path,
        chunk: bytes,
        line_no: int,
        header: bytes | None,
        csv_decoder: _codec.CsvDecoder | None,
        bad: set[int] | None = None,
    ) -> pa.RecordBatch:
        decoder: _codec.JsonDecoder | _codec.CsvDecoder
        if csv_decoder is not None:
            decoder = csv_decoder
        elif self._sampling() or self._decoder is None:
            decoder = self._infer(file, chunk, line_no, header)
        else:
            decoder = self._decoder
        batch, bad_lines = decoder.decode(chunk)
        self._records += batch.num_rows
        if bad_lines:
            if bad is not None:
                bad.update(index for index, *_ in bad_lines)
            self._bad += len(bad_lines)
            self.bad_records.handle(
                self.name,
                [
                    (f"{file}:{line_no + index + 1}", reason, raw, field, value)
                    for index, reason, raw, field, value in bad_lines
                ],
            )
        return batch
