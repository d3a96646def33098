"""The source and sink interfaces the runtime drives."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import pyarrow as pa


@runtime_checkable
class Source(Protocol):
    """A source of record batches.

    Attributes:
        name: the connector name (the ``FROM`` name).

    """

    name: str

    def batches(
        self, *, until_end: bool = True, stop: threading.Event | None = None
    ) -> Iterator[pa.RecordBatch]:
        """Yield batches until the input ends (``until_end``) or ``stop`` is set."""
        ...

    def describe(self) -> str:
        """One line for ``explain``."""
        ...

    def metrics(self) -> dict[str, int]:
        """Counters: records_read, bad_records, ..."""
        ...

    def close(self) -> None:
        """Release files and clients."""
        ...


@runtime_checkable
class Sink(Protocol):
    """A sink of record batches.

    Attributes:
        name: the connector name.

    """

    name: str

    def write(self, batch: pa.RecordBatch) -> None:
        """Write every row of ``batch`` (an empty batch may still write a CSV header)."""
        ...

    def flush(self) -> None:
        """Make what was written durable."""
        ...

    def describe(self) -> str:
        """One line for ``explain``."""
        ...

    def metrics(self) -> dict[str, int]:
        """Counters: records_written, ..."""
        ...

    def close(self) -> None:
        """Flush and release the file or client."""
        ...
