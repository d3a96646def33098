"""The input schema of a file source for ``validate``, from a sample of its first lines.

The file source infers its column types from the first lines of its first non-empty file
(its inference window, ``schema.inference.rows`` records). :func:`sample_schema` reads those
same first lines with the same inference functions, and returns the schema the run will
bind its query to. It reads 64 KiB at a time and stops as soon as it holds the window, so a
typical file costs one or two reads; :data:`SAMPLE_LIMIT` only bounds files of huge lines.
Nothing is consumed: files are only read, and closed at once.
"""

from __future__ import annotations

import glob
import logging
from pathlib import Path

import pyarrow as pa

from velostream import _core
from velostream.app._paths import has_glob
from velostream.errors import SourceError, VelostreamError
from velostream.io._lines import count_line_ends, last_line_end, read_line
from velostream.io.file_source import FileSource

logger = logging.getLogger("velostream.app")

#: The most bytes read from a file for its sample (the file source's own bound on the
#: block that holds its inference window).
SAMPLE_LIMIT = 64 << 20
#: Bytes read first; each further read doubles, until the sample holds the window.
_STEP = 64 << 10
_UTF8_BOM = b"\xef\xbb\xbf"


def _existing_files(pattern: str) -> list[Path]:
    if has_glob(pattern):
        return [Path(p) for p in sorted(glob.glob(pattern)) if Path(p).is_file()]
    return [Path(pattern)] if Path(pattern).is_file() else []


def _read_sample(file: Path, rows: int, csv: bool) -> bytes:
    """The header (CSV) and the first ``rows`` complete lines, within the sample limit."""
    with open(file, "rb") as handle:
        if handle.read(len(_UTF8_BOM)) != _UTF8_BOM:
            handle.seek(0)
        header = read_line(handle, SAMPLE_LIMIT) if csv else b""
        if csv and not header.endswith((b"\n", b"\r")):
            return b""  # no data line: the run binds nothing either
        data = bytearray()
        step = _STEP
        while len(data) < SAMPLE_LIMIT:
            piece = handle.read(min(step, SAMPLE_LIMIT - len(data)))
            if not piece:
                return header + bytes(data)  # the whole file, its last line included
            data += piece
            if count_line_ends(data) > rows:
                break
            step *= 2
        cut = last_line_end(bytes(data), final=False)
        return header + bytes(data[: cut + 1]) if cut >= 0 else b""


def sample_schema(source: FileSource) -> pa.Schema | None:
    """Return the schema the file source will infer, from a sample of its first lines.

    Args:
        source: the source, as built from its properties (nothing opened yet).

    Returns:
        The inferred schema; None when it cannot be known before the run: the file is
        waited for (``file.wait.timeout``) and not there yet, every file is empty, or the
        sample holds no decodable record.

    Raises:
        SourceError: no file matches the source's path (and it is not waited for), or a
            file cannot be read.

    """
    if source.wait_timeout_ms is None:
        files = source.resolve_files()
    else:
        files = _existing_files(source.path)
        if not files:
            logger.info(
                "source %r: %s is not there yet (it is waited for): its statements are not "
                "checked against its columns",
                source.name,
                source.path,
            )
            return None
    csv = source.format == "csv"
    for file in files:
        try:
            sample = _read_sample(file, source.inference_rows, csv)
        except OSError as exc:
            raise SourceError(
                f"file source {source.name!r}: cannot read {file}: {exc.strerror or exc}",
                source=source.name,
                cause=str(exc),
            ) from None
        if not sample.strip():
            continue
        try:
            if csv:
                schema = _core.infer_csv(sample, source.inference_rows)[0]
            else:
                schema = _core.infer_json(sample, source.inference_rows)[0]
        except VelostreamError as exc:
            # Undecodable data is the run's business (its error strategy decides); the
            # statements simply cannot be checked against columns nobody can infer.
            logger.warning(
                "source %r: cannot infer the columns of %s from its first lines (%s): its "
                "statements are not checked against them",
                source.name,
                file,
                exc,
            )
            return None
        return schema if len(schema) > 0 else None
    return None
