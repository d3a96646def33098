"""Type stubs of the Rust extension ``velostream._core`` (checked by mypy.stubtest)."""

from collections.abc import Sequence
from typing import Any, final

import pyarrow as pa

__all__ = [
    "CsvDecoder",
    "JsonDecoder",
    "KafkaMessages",
    "KeyedTable",
    "Processor",
    "_panic_at_boundary",
    "build_profile",
    "csv_header",
    "decode_kafka",
    "encode_csv",
    "encode_json",
    "encode_kafka",
    "infer_csv",
    "infer_csv_schema",
    "infer_json",
    "infer_json_schema",
    "parse_timestamps",
    "process_many",
    "read_kafka",
]

build_profile: str

def _panic_at_boundary(message: str) -> None: ...
def process_many(
    jobs: Sequence[tuple[Processor, Sequence[Any], int]], threads: int
) -> list[list[pa.RecordBatch]]: ...

@final
class Processor:
    """The Rust query processor behind :class:`velostream.Query`."""

    def __new__(cls, plan_json: str) -> Processor: ...
    def process(self, batch: Any) -> pa.RecordBatch: ...
    def process_per_record(self, batch: Any) -> pa.RecordBatch: ...
    def process_stream(self, stream: Any) -> pa.RecordBatch: ...
    def flush(self) -> pa.RecordBatch: ...
    def bind(self, schema: Any) -> pa.Schema: ...
    @property
    def output_schema(self) -> pa.Schema | None: ...
    @property
    def watermark(self) -> int | None: ...
    def take_progress(self) -> tuple[int | None, int | None]: ...
    def expect_partitions(self, ids: list[int]) -> None: ...
    def dead_letters(self) -> pa.RecordBatch: ...
    def metrics(self) -> dict[str, int]: ...
    def snapshot(self) -> bytes: ...
    def restore(self, blob: bytes) -> None: ...
    def attach_table(self, name: str, table: KeyedTable) -> None: ...
    def joined_tables(self) -> list[str]: ...

#: A bad input line: (0-based line index in the chunk, reason, raw line without newline,
#: the field whose value does not fit or None, that value or None).
_BadLine = tuple[int, str, bytes, str | None, str | None]

#: A widening of a column's type by a value of the inference sample: (column, old type,
#: new type, 0-based line index in the sample, the value).
_Widening = tuple[str, str, str, int, str]

@final
class JsonDecoder:
    """Decodes JSON Lines chunks into batches of a fixed schema (GIL released)."""

    def __new__(cls, schema: Any) -> JsonDecoder: ...
    @property
    def schema(self) -> pa.Schema: ...
    def decode(self, data: bytes) -> tuple[pa.RecordBatch, list[_BadLine]]: ...

@final
class CsvDecoder:
    """Decodes header-less CSV chunks into batches of a fixed schema (GIL released)."""

    def __new__(
        cls, schema: Any, columns: list[int] | None = None, width: int | None = None
    ) -> CsvDecoder: ...
    @property
    def schema(self) -> pa.Schema: ...
    def decode(self, data: bytes) -> tuple[pa.RecordBatch, list[_BadLine]]: ...

def infer_json(
    data: bytes, max_records: int | None = None
) -> tuple[pa.Schema, list[_Widening]]: ...
def infer_csv(data: bytes, max_records: int | None = None) -> tuple[pa.Schema, list[_Widening]]: ...
def infer_json_schema(data: bytes, max_records: int | None = None) -> pa.Schema: ...
def infer_csv_schema(data: bytes, max_records: int | None = None) -> pa.Schema: ...
def csv_header(line: bytes) -> list[str]: ...
def encode_json(batch: Any) -> bytes: ...
def encode_csv(batch: Any, header: bool = True) -> bytes: ...

#: A Kafka message that could not be decoded: (topic, partition, offset, reason, the value
#: as consumed, the field whose value does not fit or None, that value or None).
_KafkaBadRecord = tuple[str, int, int, str, bytes, str | None, str | None]

#: What was read of one (topic, partition): (topic, partition, lowest offset, highest
#: offset, messages read: good, bad and tombstones).
_KafkaPosition = tuple[str, int, int, int, int]

#: A consumed message carrying an error, e.g. partition EOF (code -191): (topic, partition,
#: offset, error code, error text); topic, partition and offset are None when the client
#: does not say.
_KafkaEvent = tuple[str | None, int | None, int | None, int, str]

def decode_kafka(
    decoder: JsonDecoder,
    messages: list[Any],
    metadata: Sequence[str] = (),
    limits: dict[tuple[str, int], int] | None = None,
) -> tuple[
    pa.RecordBatch,
    list[_KafkaBadRecord],
    list[_KafkaPosition],
    list[_KafkaEvent],
    dict[str, int],
]: ...
def encode_kafka(batch: Any, key_fields: Sequence[str] = ()) -> list[dict[str, bytes]]: ...

@final
class KafkaMessages:
    """Messages of one consume() call, read and not decoded yet (see read_kafka)."""

    @property
    def positions(self) -> list[_KafkaPosition]: ...
    def decode(
        self,
    ) -> tuple[pa.RecordBatch, list[_KafkaBadRecord], list[_KafkaPosition], dict[str, int]]: ...

def read_kafka(
    decoder: JsonDecoder,
    messages: list[Any],
    metadata: Sequence[str] = (),
    limits: dict[tuple[str, int], int] | None = None,
) -> tuple[KafkaMessages, list[_KafkaEvent]]: ...
def parse_timestamps(values: Any, format: str | None = None, field: str = "") -> pa.Int64Array: ...

@final
class KeyedTable:
    """The latest row per key, looked up by key in O(1) (GIL released).

    Key columns: integers, strings, booleans, decimals, dates, timestamps, binary; a NULL
    key is a key (one), which no lookup finds. ``lookup(keys)`` takes one column per key column (in order) and
    returns ``(rows, found)``: the table's columns for each probe row (NULL when absent)
    and a boolean array. Upserts take a write lock, lookups a read lock.
    """

    def __new__(cls, schema: Any, key_columns: list[str]) -> KeyedTable: ...
    def upsert(self, batch: Any) -> int: ...
    def lookup(self, keys: Any) -> tuple[pa.RecordBatch, pa.BooleanArray]: ...
    def snapshot(self) -> pa.RecordBatch: ...
    def compact(self) -> None: ...
    @property
    def bytes(self) -> int: ...
    def __len__(self) -> int: ...
