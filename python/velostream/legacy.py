"""The legacy per-record path: a faithful model of the old engine (SPEC section 6).

The old engine was Rust, and ran every record on its own: take the engine lock, run the
record through the engine as a one-row record, send the result through the engine's
output channel, and collect it on the other side. The Rust extension does exactly that
(``velostream._core.Processor.process_per_record``): the per-record loop, the lock and the
channel are Rust, and no Python runs per record, so the direct path's ratio to this one
measures the architecture (one call per batch against one engine call per record), not
interpreter overhead.

It runs the same Rust processor as the direct path, one record at a time, so both paths
give the same rows by construction of the SQL semantics; tests check it.
"""

from __future__ import annotations

import pyarrow as pa

from velostream import _core


class LegacyEngine:
    """One engine fed one record at a time, behind its lock, emitting into a channel."""

    def __init__(self, plan_json: str) -> None:
        self._engine = _core.Processor(plan_json)

    def process(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Process a batch the old way: record by record (in Rust)."""
        return self._engine.process_per_record(batch)

    def attach_table(self, name: str, table: _core.KeyedTable) -> None:
        """Attach a joined table to the engine."""
        self._engine.attach_table(name, table)

    def flush(self) -> pa.RecordBatch:
        """End of input: whatever the engine still holds."""
        return self._engine.flush()

    def bind(self, schema: pa.Schema) -> pa.Schema:
        """Bind the engine to the input schema."""
        return self._engine.bind(schema)

    @property
    def output_schema(self) -> pa.Schema:
        """The engine's output schema (empty before the input schema is known)."""
        return self._engine.output_schema or pa.schema([])

    def snapshot(self) -> bytes:
        """The engine's state as bytes."""
        return self._engine.snapshot()

    def restore(self, blob: bytes) -> None:
        """Replace the engine's state."""
        self._engine.restore(blob)

    @property
    def watermark(self) -> int | None:
        """The engine's watermark."""
        return self._engine.watermark

    def dead_letters(self) -> pa.RecordBatch:
        """The engine's dead letters, emptied."""
        return self._engine.dead_letters()

    def expect_partitions(self, ids: list[int]) -> None:
        """Declare partitions with records to come to the engine's watermark."""
        self._engine.expect_partitions(ids)

    def take_progress(self) -> tuple[int | None, int | None]:
        """The engine's (latest row time since the last call, earliest held row time)."""
        return self._engine.take_progress()

    def metrics(self) -> dict[str, int]:
        """The engine's counters."""
        return dict(self._engine.metrics())
