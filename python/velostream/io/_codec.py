"""The codec bindings of ``velostream._core``, as the io layer uses them.

Typed by ``_codec.pyi`` next to this file (the same block belongs in
``velostream/_core.pyi``).
"""

from velostream._core import (  # type: ignore[attr-defined]
    CsvDecoder,
    JsonDecoder,
    csv_header,
    decode_kafka,
    encode_csv,
    encode_json,
    encode_kafka,
    infer_csv,
    infer_csv_schema,
    infer_json,
    infer_json_schema,
)

__all__ = [
    "CsvDecoder",
    "JsonDecoder",
    "csv_header",
    "decode_kafka",
    "encode_csv",
    "encode_json",
    "encode_kafka",
    "infer_csv",
    "infer_csv_schema",
    "infer_json",
    "infer_json_schema",
]
