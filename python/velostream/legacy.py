"""The legacy per-record path: a faithful model of the old engine (SPEC section 6).

The old Rust engine ran every record on its own: take the engine lock, run the record
through the engine as a one-row dict-like record (``execute_with_record``), send the
result through the engine's output channel, and collect it on the other side. This module
does exactly that, on purpose, so that benchmarks can show what the direct batch path
buys. It is the one deliberate exception to "no per-row Python on data paths".

It runs the same Rust processor as the direct path, one record at a time, so both paths
give the same rows by construction of the SQL semantics; tests check it.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

import pyarrow as pa

from velostream import _core


class LegacyEngine:
    """One engine behind a lock, fed one record at a time, emitting into a queue."""

    def __init__(self, plan_json: str) -> None:
        self._engine = _core.Processor(plan_json)
        self._lock = threading.Lock()
        self._output: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()

    def execute_with_record(self, record: dict[str, Any], schema: pa.Schema) -> None:
        """Run one record through the engine under the engine lock; results go to the queue."""
        with self._lock:
            one_row = pa.RecordBatch.from_pylist([record], schema=schema)
            result = self._engine.process(one_row)
            for row in result.to_pylist():
                self._output.put(row)

    def _collect(self) -> pa.RecordBatch:
        rows: list[dict[str, Any]] = []
        while True:
            try:
                rows.append(self._output.get_nowait())
            except queue.Empty:
                break
        return pa.RecordBatch.from_pylist(rows, schema=self.output_schema)

    def process(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Process a batch the old way: record by record."""
        self._engine.bind(batch.schema)
        schema = batch.schema
        for record in batch.to_pylist():  # the old engine's per-record loop, kept on purpose
            self.execute_with_record(record, schema)
        return self._collect()

    def flush(self) -> pa.RecordBatch:
        """End of input: whatever the engine still holds, through the output queue."""
        with self._lock:
            for row in self._engine.flush().to_pylist():
                self._output.put(row)
        return self._collect()

    def bind(self, schema: pa.Schema) -> pa.Schema:
        """Bind the engine to the input schema."""
        return self._engine.bind(schema)

    @property
    def output_schema(self) -> pa.Schema:
        """The engine's output schema (empty before the input schema is known)."""
        return self._engine.output_schema or pa.schema([])

    def snapshot(self) -> bytes:
        """The engine's state as bytes."""
        with self._lock:
            return self._engine.snapshot()

    def restore(self, blob: bytes) -> None:
        """Replace the engine's state."""
        with self._lock:
            self._engine.restore(blob)

    @property
    def watermark(self) -> int | None:
        """The engine's watermark."""
        return self._engine.watermark

    def dead_letters(self) -> pa.RecordBatch:
        """The engine's dead letters, emptied."""
        with self._lock:
            return self._engine.dead_letters()

    def metrics(self) -> dict[str, int]:
        """The engine's counters."""
        return dict(self._engine.metrics())
