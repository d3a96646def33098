"""Every bad line follows 'error.strategy' wherever it is (also inside the first block, which
decides the inferred types), with file:line and a reason naming the field and value; BOMs,
CRLF, UTF-16, invalid UTF-8, binary garbage and truncated lines."""

import json
import logging

import pyarrow as pa
import pytest

from velostream.errors import DataError, SourceError
from velostream.io import BadRecordPolicy, DeadLetterWriter, FileSink, FileSource

STRATEGIES = ("log_and_continue", "dead_letter")


def policy(strategy, tmp_path):
    if strategy == "dead_letter":
        writer = DeadLetterWriter(FileSink("dlq", tmp_path / "dlq.jsonl"))
        return BadRecordPolicy("dead_letter", writer)
    return BadRecordPolicy(strategy)


def read(source):
    batches = list(source.batches())
    return pa.Table.from_batches(batches, schema=None if batches else source.schema)


def dead_letters(tmp_path, bad_records):
    bad_records.dead_letters.close()
    return [json.loads(line) for line in (tmp_path / "dlq.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_ragged_csv_row_in_the_first_block_follows_the_strategy(tmp_path, strategy):
    path = tmp_path / "t.csv"
    path.write_text("symbol,price,qty\nA,1.5,1\nB,2.5\nC,3.5,3,extra\nD,4.5,4\n")
    bad_records = policy(strategy, tmp_path)
    source = FileSource("t", path, format="csv", bad_records=bad_records)
    table = read(source)
    assert table.column("symbol").to_pylist() == ["A", "D"]
    assert table.schema.field("qty").type == pa.int64()
    assert bad_records.count == source.metrics()["bad_records"] == 2
    if strategy == "dead_letter":
        letters = dead_letters(tmp_path, bad_records)
        assert [(d["location"], d["raw"]) for d in letters] == [
            (f"{path}:3", "B,2.5"),
            (f"{path}:4", "C,3.5,3,extra"),
        ]
        assert letters[0]["reason"] == "incorrect number of fields: expected 3 got 2"


def test_a_ragged_csv_row_in_the_first_block_fails_with_file_and_line(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("symbol,price,qty\nA,1.5,1\nB,2.5\n")
    with pytest.raises(DataError) as info:
        read(FileSource("t", path, format="csv"))
    assert info.value.location == f"{path}:3"
    assert "schema error" not in str(info.value)
    assert str(info.value).startswith(f"{path}:3: incorrect number of fields")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_json_type_conflict_in_the_first_block_follows_the_strategy(tmp_path, strategy, caplog):
    path = tmp_path / "t.jsonl"
    rows = [json.dumps({"a": i, "b": {"x": i}}) for i in range(5)]
    rows.insert(2, json.dumps({"a": 7, "b": 3}))  # a scalar where objects are
    path.write_text("\n".join(rows) + "\n")
    bad_records = policy(strategy, tmp_path)
    source = FileSource("t", path, bad_records=bad_records)
    with caplog.at_level(logging.INFO, logger="velostream.io"):
        table = read(source)
    assert table.column("a").to_pylist() == [0, 1, 2, 3, 4]
    assert source.metrics()["bad_records"] == 1
    assert any(r.getMessage().startswith(f"{path}:3:") for r in caplog.records)
    if strategy == "dead_letter":
        [letter] = dead_letters(tmp_path, bad_records)
        assert letter["raw"] == rows[2]


def test_a_json_type_conflict_in_the_first_block_fails_with_file_and_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"b": {"x": 1}}\n{"b": {"x": 2}}\n{"b": 3}\n')
    with pytest.raises(DataError) as info:
        read(FileSource("t", path))
    assert info.value.location == f"{path}:3"
    assert "schema error" not in str(info.value)


def test_the_fail_error_names_file_line_field_and_value(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps({"price": i + 0.5}) + "\n" for i in range(30)))
    with path.open("a") as handle:
        handle.write('{"price": "abc"}\n')
    with pytest.raises(DataError) as info:
        read(FileSource("t", path))
    error = info.value
    assert (error.location, error.field, error.value) == (f"{path}:31", "price", "abc")
    assert str(error).startswith(f"{path}:31: type mismatch for field 'price'")
    assert "'abc'" in str(error)


def test_a_utf8_bom_is_skipped_and_crlf_are_line_ends(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"\xef\xbb\xbfsymbol,qty\r\nA,1\r\nB,2\r\n")
    table = read(FileSource("t", path, format="csv"))
    assert table.schema.names == ["symbol", "qty"]
    assert table.to_pylist() == [{"symbol": "A", "qty": 1}, {"symbol": "B", "qty": 2}]
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\r\n{"a": 2}\r\n')
    source = FileSource("t", path)
    assert read(source).to_pylist() == [{"a": 1}, {"a": 2}]
    assert source.metrics()["bytes_read"] == len(path.read_bytes())


@pytest.mark.parametrize("fmt", ["json", "csv"])
@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
def test_a_utf16_file_is_a_source_error_or_bad_records_never_rows(tmp_path, fmt, encoding):
    path = tmp_path / f"t.{fmt}"
    text = '{"a": 1}\n{"a": 2}\n' if fmt == "json" else "a,b\n1,2\n"
    path.write_bytes(text.encode(encoding))
    source = FileSource("t", path, format=fmt, bad_records=BadRecordPolicy("log_and_continue"))
    try:
        rows = read(source).num_rows
    except SourceError as exc:
        assert str(path) in str(exc) and "UTF-8" in str(exc)
        rows = 0
    assert rows == 0
    if encoding == "utf-16":  # with a byte order mark: a clear error
        with pytest.raises(SourceError, match="UTF-16"):
            read(FileSource("t", path, format=fmt))


def test_invalid_utf8_binary_garbage_and_a_truncated_last_line_are_bad_records(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(
        b'{"s": "a", "n": 1}\n'
        b'{"s": "\xff\xfe", "n": 2}\n'  # 2: invalid UTF-8
        b"\x00\x01\x02\x89PNG\n"  # 3: binary
        b'{"s": "\xc3\xa9\xe2\x82\xac", "n": 4}\n'  # valid unicode
        b'{"s": "b", "n": '  # 5: truncated
    )
    bad_records = BadRecordPolicy("log_and_continue")
    source = FileSource("t", path, bad_records=bad_records)
    assert read(source).to_pylist() == [{"s": "a", "n": 1}, {"s": "é€", "n": 4}]
    assert bad_records.count == 3
    with pytest.raises(DataError) as info:
        read(FileSource("t", path))
    assert info.value.location == f"{path}:2"
    assert "invalid UTF-8" in str(info.value)


def test_a_csv_header_that_is_not_text_is_a_source_error(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"a\x00,b\n1,2\n")
    with pytest.raises(SourceError, match="NUL byte"):
        read(FileSource("t", path, format="csv"))


def test_good_and_bad_lines_add_up_to_every_line(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"a,b\n1,x\n2\n\n3,y,z\n\xff,w\n4,\xe2\x82\xac\n")
    source = FileSource("t", path, format="csv", bad_records=BadRecordPolicy("log_and_continue"))
    read(source)
    metrics = source.metrics()
    assert (metrics["records_read"], metrics["bad_records"]) == (2, 3)
