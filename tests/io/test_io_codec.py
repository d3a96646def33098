"""The Rust codecs through their Python bindings: JSON Lines and CSV, bad-line isolation."""

import json

import pyarrow as pa
import pytest

from velostream import _core
from velostream.errors import DataError

TRADES = b"".join(
    json.dumps({"symbol": s, "price": p, "qty": q}).encode() + b"\n"
    for s, p, q in [("AAPL", 10.5, 3), ("MSFT", 20.25, 1), ("GOOG", 7.0, 9)]
)
SCHEMA = pa.schema([("symbol", pa.string()), ("price", pa.float64()), ("qty", pa.int64())])


def test_infer_json_schema_keeps_field_order_and_types():
    schema = _core.infer_json_schema(TRADES)
    assert schema.names == ["symbol", "price", "qty"]
    assert schema.field("price").type == pa.float64()
    assert schema.field("qty").type == pa.int64()


def test_infer_json_schema_skips_bad_lines_and_limits_records():
    data = b'not json\n{"a": 1}\n{"a": "x", "b": true}\n'
    assert _core.infer_json_schema(data).names == ["a", "b"]
    assert _core.infer_json_schema(data, 1).names == ["a"]


def test_json_decode_returns_typed_batch():
    batch, bad = _core.JsonDecoder(SCHEMA).decode(TRADES)
    assert bad == []
    assert batch.schema == SCHEMA
    assert batch.to_pydict() == {
        "symbol": ["AAPL", "MSFT", "GOOG"],
        "price": [10.5, 20.25, 7.0],
        "qty": [3, 1, 9],
    }


def test_json_round_trip_writes_nulls_explicitly():
    batch = pa.record_batch(
        {"symbol": ["A", None], "price": [1.5, None], "qty": [None, 2]}, schema=SCHEMA
    )
    encoded = _core.encode_json(batch)
    assert encoded.splitlines() == [
        b'{"symbol":"A","price":1.5,"qty":null}',
        b'{"symbol":null,"price":null,"qty":2}',
    ]
    again, bad = _core.JsonDecoder(SCHEMA).decode(encoded)
    assert bad == []
    assert again.equals(batch)


def test_json_bad_lines_are_isolated_with_index_reason_and_raw():
    data = (
        b'{"symbol":"A","price":1,"qty":1}\n'
        b'{"symbol":"B","price":\n'
        b'{"symbol":"C","price":3,"qty":3}\n'
        b'{"symbol":"D","price":"abc","qty":4}\n'
        b"42\n"
        b'{"symbol":"E","price":5,"qty":5}\n'
    )
    batch, bad = _core.JsonDecoder(SCHEMA).decode(data)
    assert batch.column("symbol").to_pylist() == ["A", "C", "E"]
    assert [index for index, *_ in bad] == [1, 3, 4]
    assert bad[0][1].startswith("invalid JSON")
    assert "type mismatch" in bad[1][1] and "price" in bad[1][1] and "abc" in bad[1][1]
    assert bad[2][1] == "not a JSON object: 42"
    assert bad[1][2] == b'{"symbol":"D","price":"abc","qty":4}'
    # The value that does not fit, and its field; a line that is not a record has neither.
    assert bad[1][3:] == ("price", "abc")
    assert bad[0][3:] == bad[2][3:] == (None, None)


def test_json_all_lines_bad_gives_empty_batch_with_schema():
    batch, bad = _core.JsonDecoder(SCHEMA).decode(b"x\ny\n")
    assert batch.num_rows == 0
    assert batch.schema == SCHEMA
    assert len(bad) == 2


def test_decoder_exposes_schema():
    assert _core.JsonDecoder(SCHEMA).schema == SCHEMA
    assert _core.CsvDecoder(SCHEMA).schema == SCHEMA


def test_csv_infer_decode_encode_round_trip():
    data = b"symbol,price,qty\nAAPL,10.5,3\nMSFT,20,1\n"
    schema = _core.infer_csv_schema(data)
    assert schema == SCHEMA
    body = data.split(b"\n", 1)[1]
    batch, bad = _core.CsvDecoder(schema).decode(body)
    assert bad == []
    assert batch.to_pydict() == {"symbol": ["AAPL", "MSFT"], "price": [10.5, 20.0], "qty": [3, 1]}
    encoded = _core.encode_csv(batch)
    assert encoded == b"symbol,price,qty\nAAPL,10.5,3\nMSFT,20.0,1\n"
    assert _core.encode_csv(batch, header=False) == b"AAPL,10.5,3\nMSFT,20.0,1\n"
    assert _core.encode_csv(batch.slice(0, 0)) == b"symbol,price,qty\n"


def test_csv_bad_rows_name_the_field_and_the_problem():
    batch, bad = _core.CsvDecoder(SCHEMA).decode(b"A,1,1\nB,oops,2\nC,3\nD,4,4\n")
    assert batch.column("qty").to_pylist() == [1, 4]
    assert bad == [
        (
            1,
            "type mismatch for field 'price': cannot parse value 'oops' as type 'Float64'",
            b"B,oops,2",
            "price",
            "oops",
        ),
        (2, "incorrect number of fields: expected 3 got 2", b"C,3", None, None),
    ]


def test_encode_rejects_non_arrow_input():
    with pytest.raises((TypeError, ValueError)):
        _core.encode_json(42)


def test_schema_errors_raise_data_error():
    # A decoder cannot be built for a schema arrow-json does not support.
    schema = pa.schema([("d", pa.dictionary(pa.int8(), pa.float64()))])
    with pytest.raises(DataError):
        _core.JsonDecoder(schema).decode(b'{"d": 1.0}\n')
