# Signatures of the codec bindings on `velostream._core` (rust/python/codec.rs).
# Kept here by the io layer; the same block belongs in `velostream/_core.pyi`.
from collections.abc import Sequence
from typing import Any, final

import pyarrow as pa

#: A bad input line: (0-based line index in the chunk, reason, raw line without newline,
#: the field whose value does not fit or None, that value or None).
BadLine = tuple[int, str, bytes, str | None, str | None]

#: A widening of a column's type by a value of the inference sample: (column, old type,
#: new type, 0-based line index in the sample, the value).
Widening = tuple[str, str, str, int, str]

@final
class JsonDecoder:
    """Decodes JSON Lines chunks into batches of a fixed schema (GIL released)."""

    def __new__(cls, schema: Any) -> JsonDecoder: ...
    @property
    def schema(self) -> pa.Schema: ...
    def decode(self, data: bytes) -> tuple[pa.RecordBatch, list[BadLine]]: ...

@final
class CsvDecoder:
    """Decodes header-less CSV chunks into batches of a fixed schema (GIL released)."""

    def __new__(
        cls, schema: Any, columns: list[int] | None = None, width: int | None = None
    ) -> CsvDecoder: ...
    @property
    def schema(self) -> pa.Schema: ...
    def decode(self, data: bytes) -> tuple[pa.RecordBatch, list[BadLine]]: ...

def infer_json(data: bytes, max_records: int | None = None) -> tuple[pa.Schema, list[Widening]]: ...
def infer_csv(data: bytes, max_records: int | None = None) -> tuple[pa.Schema, list[Widening]]: ...
def infer_json_schema(data: bytes, max_records: int | None = None) -> pa.Schema: ...
def infer_csv_schema(data: bytes, max_records: int | None = None) -> pa.Schema: ...
def csv_header(line: bytes) -> list[str]: ...
def encode_json(batch: Any) -> bytes: ...
def encode_csv(batch: Any, header: bool = True) -> bytes: ...

#: A Kafka message that could not be decoded: (topic, partition, offset, reason, the value
#: as consumed, the field whose value does not fit or None, that value or None).
KafkaBadRecord = tuple[str, int, int, str, bytes, str | None, str | None]

#: What was read of one (topic, partition): (topic, partition, lowest offset, highest
#: offset, messages read: good, bad and tombstones).
KafkaPosition = tuple[str, int, int, int, int]

#: A consumed message carrying an error, e.g. partition EOF (code -191): (topic, partition,
#: offset, error code, error text); topic, partition and offset are None when the client
#: does not say.
KafkaEvent = tuple[str | None, int | None, int | None, int, str]

def decode_kafka(
    decoder: JsonDecoder,
    messages: list[Any],
    metadata: Sequence[str] = (),
    limits: dict[tuple[str, int], int] | None = None,
) -> tuple[
    pa.RecordBatch,
    list[KafkaBadRecord],
    list[KafkaPosition],
    list[KafkaEvent],
    dict[str, int],
]: ...
def encode_kafka(batch: Any, key_fields: Sequence[str] = ()) -> list[dict[str, bytes]]: ...
