"""Load progress of one table: records, bytes, rate, and percent and ETA when the total is known.

A loading thread calls :meth:`TableProgress.add` once per batch (two integer additions
under a lock); anything else reads :meth:`TableProgress.as_dict` (the health API, a
progress display) from any thread. The total is known for file sources (the files' sizes
in bytes: percent is bytes read over bytes to read), Kafka sources (the sum over the
partitions of the high watermark seen at the start minus the start offset: percent is
records read over records to read) and tables read as inputs (their row count); it is
unknown for a mix of them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal

__all__ = ["ProgressUnit", "TableProgress"]

#: What a known total counts: bytes of input (files) or records (Kafka, tables).
ProgressUnit = Literal["bytes", "records"]


class TableProgress:
    """The counters of one table's load (thread-safe).

    Attributes:
        records: input records read so far (this load attempt).
        bytes: input bytes read so far.
        total: the amount of input to read, in :attr:`unit`, when known.
        unit: what :attr:`total` counts (``"bytes"`` or ``"records"``).
        started_at: ``time.monotonic()`` when the load (attempt) started, None before.
        finished_at: ``time.monotonic()`` when it ended, None while loading.

    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        """Create counters at zero, not started.

        Args:
            clock: monotonic seconds (``time.monotonic``).

        """
        self._clock = clock
        self._lock = threading.Lock()
        self.records = 0
        self.bytes = 0
        self.total: int | None = None
        self.unit: ProgressUnit = "bytes"
        self.started_at: float | None = None
        self.finished_at: float | None = None

    def start(self) -> None:
        """Start (or restart, for a new attempt): counters to zero, the clock running."""
        with self._lock:
            self.records = 0
            self.bytes = 0
            self.total = None
            self.unit = "bytes"
            self.started_at = self._clock()
            self.finished_at = None

    def add(self, records: int, nbytes: int) -> None:
        """Count one batch of input.

        Args:
            records: its records.
            nbytes: its bytes (as read from the source).

        """
        with self._lock:
            self.records += records
            self.bytes += nbytes

    def set_total(self, total: int | None, unit: ProgressUnit = "bytes") -> None:
        """Say how much input there is to read (None: unknown).

        Args:
            total: the amount, in ``unit``.
            unit: ``"bytes"`` (compared with :attr:`bytes`) or ``"records"`` (with
                :attr:`records`).

        """
        with self._lock:
            self.total = total
            self.unit = unit

    def finish(self) -> None:
        """The load ended (the clock stops; percent reads 100 from now on).

        A load that never started (a table skipped because a dependency failed) keeps
        ``started_at`` None.
        """
        with self._lock:
            self.finished_at = self._clock()

    def as_dict(self) -> dict[str, float | int | None]:
        """The counters for the health API.

        Returns:
            ``records``, ``bytes``, ``records_per_second``, ``percent`` (0 to 100, None
            when the total is unknown), ``eta_seconds`` (None when the total or the rate
            is unknown) and ``elapsed_seconds``.

        """
        with self._lock:
            records, nbytes, total = self.records, self.bytes, self.total
            done = nbytes if self.unit == "bytes" else records
            started, finished = self.started_at, self.finished_at
        if started is None:
            elapsed = 0.0
        else:
            elapsed = max(0.0, (finished if finished is not None else self._clock()) - started)
        rate = records / elapsed if elapsed > 0 else 0.0
        percent: float | None = None
        eta: float | None = None
        if finished is not None:
            percent, eta = 100.0, 0.0
        elif total is not None:
            if total <= 0:
                percent, eta = 100.0, 0.0
            else:
                percent = min(100.0, 100.0 * done / total)
                unit_rate = done / elapsed if elapsed > 0 else 0.0
                if unit_rate > 0:
                    eta = max(0.0, (total - done) / unit_rate)
        return {
            "records": records,
            "bytes": nbytes,
            "records_per_second": rate,
            "percent": percent,
            "eta_seconds": eta,
            "elapsed_seconds": elapsed,
        }

    def __repr__(self) -> str:
        return f"<TableProgress {self.as_dict()}>"
