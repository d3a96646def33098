"""Inference that never loses information: the documented window, exact wide integers,
logged widenings, lossless CSV text, and bad records (not type changes) after the window."""

import json
import logging
from decimal import Decimal

import pyarrow as pa
import pytest

from velostream import config
from velostream.errors import ConfigError, DataError
from velostream.io import (
    DEFAULT_INFERENCE_ROWS,
    BadRecordPolicy,
    FileSource,
    create_source,
)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def read(source):
    return pa.Table.from_batches(list(source.batches()))


def widenings(caplog):
    return [r.getMessage() for r in caplog.records if "widened" in r.getMessage()]


# --------------------------------------------------------------------------- the window


def test_the_default_window_is_1000_rows_not_the_batch_size(tmp_path, caplog):
    path = tmp_path / "t.jsonl"
    rows = [{"qty": i} for i in range(1500)]
    rows[1199] = {"qty": 2.5}  # line 1200: after the window
    write_jsonl(path, rows)
    source = FileSource("t", path, bad_records=BadRecordPolicy("log_and_continue"))
    assert source.inference_rows == DEFAULT_INFERENCE_ROWS == 1000
    with caplog.at_level(logging.WARNING, logger="velostream.io"):
        table = read(source)
    # The column keeps the type of the window; the late value is a bad record, not a change.
    assert table.schema.field("qty").type == pa.int64()
    assert table.num_rows == 1499
    assert source.metrics()["bad_records"] == 1
    assert widenings(caplog) == []
    skipped = [r.getMessage() for r in caplog.records]
    assert skipped[0].startswith(f"{path}:1200:")
    assert "qty" in skipped[0] and "2.5 is not an integer" in skipped[0]


def test_after_the_window_a_value_that_does_not_fit_fails_with_file_line_field_value(tmp_path):
    path = tmp_path / "t.jsonl"
    rows = [{"qty": i} for i in range(1100)]
    rows[1049] = {"qty": 2.5}
    write_jsonl(path, rows)
    with pytest.raises(DataError) as info:
        read(FileSource("t", path))
    error = info.value
    assert error.location == f"{path}:1050"
    assert (error.field, error.value) == ("qty", "2.5")
    assert str(error).startswith(f"{path}:1050: type mismatch for field 'qty'")


def test_a_widening_within_the_window_is_logged_with_file_line_column_and_types(tmp_path, caplog):
    path = tmp_path / "t.jsonl"
    rows = [{"qty": i, "code": i} for i in range(100)]
    rows[29] = {"qty": 2.5, "code": 29}  # line 30
    rows[59] = {"qty": 59, "code": "59"}  # line 60: a quoted value
    write_jsonl(path, rows)
    with caplog.at_level(logging.WARNING, logger="velostream.io"):
        table = read(FileSource("t", path))
    assert table.schema.field("qty").type == pa.float64()
    assert table.schema.field("code").type == pa.string()
    assert table.column("qty").to_pylist()[29] == 2.5
    assert table.column("code").to_pylist()[58:60] == ["58", "59"]
    messages = widenings(caplog)
    assert len(messages) == 2
    assert messages[0].startswith(f"{path}:30: column 'qty' of source 't' widened from Int64 to")
    assert "Float64" in messages[0] and "'2.5'" in messages[0]
    assert messages[1].startswith(f"{path}:60: column 'code'")
    assert "from Int64 to Utf8" in messages[1] and "'59'" in messages[1]
    assert all(r.levelno == logging.WARNING for r in caplog.records)


def test_the_window_is_read_even_when_lines_are_long(tmp_path, caplog):
    # 1000 lines of ~2 KB do not fit the first 1 MiB block: the window must still be whole.
    path = tmp_path / "t.jsonl"
    rows = [{"pad": "x" * 2000, "qty": i} for i in range(1200)]
    rows[899] = {"pad": "x", "qty": 0.5}
    write_jsonl(path, rows)
    with caplog.at_level(logging.WARNING, logger="velostream.io"):
        table = read(FileSource("t", path))
    assert table.schema.field("qty").type == pa.float64()
    assert table.num_rows == 1200
    assert widenings(caplog)[0].startswith(f"{path}:900:")


def test_the_window_is_the_schema_inference_rows_property(tmp_path):
    path = tmp_path / "t.jsonl"
    write_jsonl(path, [{"qty": 1}, {"qty": 2}, {"qty": 3.5}])
    policy = BadRecordPolicy("log_and_continue")
    props = {"type": "file_source", "path": str(path)}
    # Connector key.
    source = create_source("t", {**props, "schema.inference.rows": "2"}, bad_records=policy)
    assert read(source).schema.field("qty").type == pa.int64()
    assert source.metrics()["bad_records"] == 1
    # Statement key, when the connector sets none.
    source = create_source(
        "t", props, bad_records=policy, statement_properties={"schema.inference.rows": "2"}
    )
    assert source.inference_rows == 2
    assert read(source).schema.field("qty").type == pa.int64()
    # Default: 1000 rows, so 3.5 widens the column.
    source = create_source("t", props, bad_records=policy)
    assert source.inference_rows == 1000
    assert read(source).schema.field("qty").type == pa.float64()


def test_schema_inference_rows_is_a_validated_statement_key():
    config.validate_statement_properties({"schema.inference.rows": "500"})
    for bad in ("0", "-3", "many"):
        with pytest.raises(ConfigError) as info:
            config.validate_statement_properties({"schema.inference.rows": bad})
        assert info.value.key == "schema.inference.rows"
    with pytest.raises(ConfigError):
        config.validate_connector_properties(
            "t", {"type": "file_source", "path": "x", "schema.inference.rows": "0"}
        )
    with pytest.raises(ConfigError, match=r"schema\.inference\.rows"):
        create_source(
            "t",
            {"type": "file_source", "path": "x"},
            statement_properties={"schema.inference.rows": "0"},
        )


# --------------------------------------------------------------------------- integers


def test_integers_beyond_int64_are_exact_decimals_never_doubles(tmp_path, caplog):
    path = tmp_path / "t.jsonl"
    path.write_text(
        '{"n": 9007199254740993}\n{"n": 18446744073709551616}\n'
        '{"n": 123456789012345678901234567890}\n{"n": null}\n'
    )
    with caplog.at_level(logging.WARNING, logger="velostream.io"):
        table = read(FileSource("t", path))
    assert table.schema.field("n").type == pa.decimal128(38, 0)
    assert table.column("n").to_pylist() == [
        Decimal(9007199254740993),
        Decimal(18446744073709551616),
        Decimal(123456789012345678901234567890),
        None,
    ]
    assert widenings(caplog)[0].startswith(f"{path}:2: column 'n'")
    assert "Int64 to Decimal128(38, 0)" in widenings(caplog)[0]


def test_an_integer_beyond_38_digits_is_a_bad_record(tmp_path):
    path = tmp_path / "t.jsonl"
    huge = "1" * 40
    path.write_text(f'{{"n": 1}}\n{{"n": {huge}}}\n{{"n": 9007199254740993}}\n')
    source = FileSource("t", path, bad_records=BadRecordPolicy("log_and_continue"))
    table = read(source)
    assert table.schema.field("n").type == pa.int64()
    assert table.column("n").to_pylist() == [1, 9007199254740993]
    assert source.metrics()["bad_records"] == 1
    with pytest.raises(DataError) as info:
        read(FileSource("t", path))
    assert info.value.location == f"{path}:2"
    assert (info.value.field, info.value.value) == ("n", huge)
    assert "out of range for Int64" in str(info.value)


def test_a_fraction_with_wide_integers_makes_a_string_column_not_a_lossy_double(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"n": 9007199254740993}\n{"n": 2.5}\n')
    table = read(FileSource("t", path))
    assert table.schema.field("n").type == pa.string()
    assert table.column("n").to_pylist() == ["9007199254740993", "2.5"]


# --------------------------------------------------------------------------- CSV


def test_csv_values_a_number_would_change_stay_text(tmp_path, caplog):
    path = tmp_path / "t.csv"
    path.write_text(
        "zip,plus,sep,long,exp,n\n"
        "12345,5,7,1,1,1\n"
        "02134,+5,1_000,1234567890123456789012345678901234567890,1e5,2\n"
    )
    with caplog.at_level(logging.WARNING, logger="velostream.io"):
        table = read(FileSource("t", path, format="csv"))
    types = {f.name: f.type for f in table.schema}
    assert types == {
        "zip": pa.string(),
        "plus": pa.string(),
        "sep": pa.string(),
        "long": pa.string(),
        "exp": pa.float64(),
        "n": pa.int64(),
    }
    assert table.to_pylist()[1] == {
        "zip": "02134",
        "plus": "+5",
        "sep": "1_000",
        "long": "1234567890123456789012345678901234567890",
        "exp": 100000.0,
        "n": 2,
    }
    logged = widenings(caplog)
    assert len(logged) == 5
    assert logged[0].startswith(f"{path}:3: column 'zip'") and "'02134'" in logged[0]


def test_csv_after_the_window_leading_zeros_are_a_bad_record_not_a_number(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("zip\n" + "".join(f"{10000 + i}\n" for i in range(20)) + "02134\n")
    with pytest.raises(DataError) as info:
        read(FileSource("t", path, format="csv", inference_rows=10))
    assert info.value.location == f"{path}:22"
    assert (info.value.field, info.value.value) == ("zip", "02134")


def test_csv_wide_integers_are_exact(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("n\n1\n18446744073709551617\n")
    table = read(FileSource("t", path, format="csv"))
    assert table.schema.field("n").type == pa.decimal128(38, 0)
    assert table.column("n").to_pylist() == [Decimal(1), Decimal(18446744073709551617)]
