"""Declared schemas: each column read exactly as declared, with no inference; a value that
does not fit is a bad record with file:line, field and value."""

import datetime as dt
import json
from decimal import Decimal

import pyarrow as pa
import pytest

from velostream.errors import ConfigError, DataError, SourceError
from velostream.io import BadRecordPolicy, DeadLetterWriter, FileSink, FileSource, create_source

# CREATE STREAM trades (symbol STRING, qty BIGINT, amount DECIMAL(12, 2), ts TIMESTAMP,
#                       zip STRING, price DOUBLE, ok BOOLEAN, n INT)
TRADES = pa.schema(
    [
        ("symbol", pa.string()),
        ("qty", pa.int64()),
        ("amount", pa.decimal128(12, 2)),
        ("ts", pa.timestamp("ms", tz="UTC")),
        ("zip", pa.string()),
        ("price", pa.float64()),
        ("ok", pa.bool_()),
        ("n", pa.int32()),
    ]
)
UTC = dt.timezone.utc
TS = dt.datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)  # 1700000000123 ms


def read(source):
    batches = list(source.batches())
    return pa.Table.from_batches(batches, schema=source.schema)


def lenient():
    return BadRecordPolicy("log_and_continue")


def test_json_columns_are_read_exactly_as_declared(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(
        '{"symbol": "A", "qty": 3, "amount": 12.5, "ts": 1700000000123, "zip": "02134",'
        ' "price": 2, "ok": true, "n": 7, "extra": [1, 2]}\n'
        '{"symbol": 42, "qty": 9007199254740993, "amount": "0.01",'
        ' "ts": "2023-11-14T22:13:20.123Z", "zip": 2134}\n'
        "{}\n"
    )
    source = FileSource("t", path, schema=TRADES)
    table = read(source)
    assert table.schema == TRADES
    assert table.to_pylist() == [
        {
            "symbol": "A",
            "qty": 3,
            "amount": Decimal("12.50"),
            "ts": TS,
            "zip": "02134",
            "price": 2.0,
            "ok": True,
            "n": 7,
        },
        {
            "symbol": "42",
            "qty": 9007199254740993,
            "amount": Decimal("0.01"),
            "ts": TS,
            "zip": "2134",
            "price": None,
            "ok": None,
            "n": None,
        },
        dict.fromkeys(TRADES.names),
    ]
    assert source.declared and "declared columns" in source.describe()


def test_json_values_that_do_not_fit_are_bad_records_with_field_and_value(tmp_path):
    path = tmp_path / "t.jsonl"
    lines = [
        '{"symbol": "A", "qty": 1}',
        '{"qty": 2.5}',  # 2: not an integer
        '{"amount": 12.345}',  # 3: too many decimal digits
        '{"amount": 12345678901.5}',  # 4: beyond DECIMAL(12, 2)
        '{"ts": "14/11/2023"}',  # 5: not ISO 8601
        '{"n": 3000000000}',  # 6: beyond INT
        '{"qty": 18446744073709551616}',  # 7: beyond BIGINT
        '{"price": 9007199254740993}',  # 8: no exact DOUBLE
        '{"symbol": {"nested": 1}}',  # 9: not a string
        '{"symbol": "B"}',
    ]
    path.write_text("\n".join(lines) + "\n")
    source = FileSource("t", path, schema=TRADES, bad_records=lenient())
    assert read(source).column("symbol").to_pylist() == ["A", "B"]
    assert source.metrics() | {"bytes_read": 0} == {
        "records_read": 2,
        "bad_records": 8,
        "bytes_read": 0,
        "files_read": 1,
    }
    expected = {
        2: ("qty", "2.5", "is not an integer"),
        3: ("amount", "12.345", "more than 2 digits after the decimal point"),
        4: ("amount", "12345678901.5", "out of range for Decimal128(12, 2)"),
        5: ("ts", "14/11/2023", "ISO 8601"),
        6: ("n", "3000000000", "out of range for Int32"),
        7: ("qty", "18446744073709551616", "out of range for Int64"),
        8: ("price", "9007199254740993", "no exact Float64"),
    }
    for line, (field, value, problem) in expected.items():
        with pytest.raises(DataError) as info:
            path.write_text(lines[0] + "\n" + lines[line - 1] + "\n")
            read(FileSource("t", path, schema=TRADES))
        error = info.value
        assert (error.location, error.field, error.value) == (f"{path}:2", field, value)
        assert problem in str(error) and field in str(error) and value in str(error)


def test_csv_columns_are_taken_by_name_in_any_order(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(
        "note,zip,ts,amount,qty,symbol,price,ok,n\n"
        "x,02134,2023-11-14 23:13:20.123+01:00,12.5,3,A,NaN,TRUE,7\n"
        "y,,1700000000123,-0.01,,B,-inf,false,\n"
    )
    table = read(FileSource("t", path, format="csv", schema=TRADES))
    assert table.schema == TRADES
    rows = table.to_pylist()
    assert rows[0]["zip"] == "02134" and rows[0]["ts"] == TS
    assert rows[0]["amount"] == Decimal("12.50") and rows[0]["ok"] is True
    assert rows[0]["price"] != rows[0]["price"]  # NaN
    assert rows[1] == {
        "symbol": "B",
        "qty": None,
        "amount": Decimal("-0.01"),
        "ts": TS,
        "zip": None,
        "price": float("-inf"),
        "ok": False,
        "n": None,
    }


def test_csv_values_that_do_not_fit_are_bad_records(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(
        "symbol,qty,ts\nA,1,2024-01-01\nB,02134,2024-01-01\nC,1,01/02/2024\nD,1\nE,2,0\n"
    )
    schema = pa.schema(
        [("symbol", pa.string()), ("qty", pa.int64()), ("ts", TRADES.field("ts").type)]
    )
    source = FileSource("t", path, format="csv", schema=schema, bad_records=lenient())
    assert read(source).column("symbol").to_pylist() == ["A", "E"]
    assert source.metrics()["bad_records"] == 3
    with pytest.raises(DataError) as info:
        read(FileSource("t", path, format="csv", schema=schema))
    assert (info.value.location, info.value.field, info.value.value) == (
        f"{path}:3",
        "qty",
        "02134",
    )


def test_a_declared_column_missing_from_the_csv_header_is_a_source_error(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("symbol,quantity\nA,1\n")
    schema = pa.schema([("symbol", pa.string()), ("qty", pa.int64())])
    with pytest.raises(SourceError) as info:
        read(FileSource("trades", path, format="csv", schema=schema))
    message = str(info.value)
    assert "'qty'" in message and "'symbol', 'quantity'" in message and str(path) in message
    assert info.value.source == "trades"


def test_declared_columns_are_never_inferred(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps({"zip": z}) + "\n" for z in ["12345", "02134"]))
    schema = pa.schema([("zip", pa.string())])
    # Without a declaration the quoted digits are strings too, but a declared BIGINT takes
    # the canonical ones and rejects the leading zero.
    table = read(FileSource("t", path, schema=schema))
    assert table.column("zip").to_pylist() == ["12345", "02134"]
    source = FileSource("t", path, schema=pa.schema([("zip", pa.int64())]), bad_records=lenient())
    assert read(source).column("zip").to_pylist() == [12345]
    assert source.metrics()["bad_records"] == 1


def test_a_type_the_format_cannot_read_is_a_config_error():
    schema = pa.schema([("tags", pa.list_(pa.string()))])
    with pytest.raises(ConfigError, match="'tags'"):
        FileSource("t", "x.csv", format="csv", schema=schema)
    with pytest.raises(ConfigError, match="declared twice"):
        FileSource("t", "x.jsonl", schema=pa.schema([("a", pa.int64()), ("a", pa.string())]))
    with pytest.raises(ConfigError):
        FileSource(
            "t", "x.jsonl", schema=pa.schema([("d", pa.dictionary(pa.int8(), pa.float64()))])
        )


def test_create_source_takes_a_declared_schema(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"qty": "7"}\n')
    props = {"type": "file_source", "path": str(path)}
    source = create_source("t", props, schema=pa.schema([("qty", pa.int64())]))
    assert source.schema == pa.schema([("qty", pa.int64())])
    assert read(source).to_pylist() == [{"qty": 7}]
    with pytest.raises(ConfigError, match="declared"):
        create_source(
            "t", {**props, "schema.inference.rows": "5"}, schema=pa.schema([("qty", pa.int64())])
        )


def test_declared_bad_records_go_to_the_dead_letter_sink(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"amount": 1.5}\n{"amount": 1.555}\n')
    dead = tmp_path / "dlq.jsonl"
    writer = DeadLetterWriter(FileSink("dlq", dead))
    schema = pa.schema([("amount", pa.decimal128(12, 2))])
    source = FileSource(
        "t", path, schema=schema, bad_records=BadRecordPolicy("dead_letter", writer)
    )
    assert read(source).column("amount").to_pylist() == [Decimal("1.50")]
    writer.close()
    [letter] = [json.loads(line) for line in dead.read_text().splitlines()]
    assert letter["location"] == f"{path}:2" and letter["raw"] == '{"amount": 1.555}'
    assert "amount" in letter["reason"] and "1.555" in letter["reason"]
