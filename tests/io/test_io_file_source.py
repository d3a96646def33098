"""The file source: typed batches, globs, waiting, tailing and every error strategy."""

import json
import logging
import os
import threading
import time

import pyarrow as pa
import pytest

from velostream.errors import ConfigError, DataError, SourceError
from velostream.io import BadRecordPolicy, DeadLetterWriter, FileSink, FileSource


def write_jsonl(path, rows, extra_lines=()):
    lines = [json.dumps(r) for r in rows] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n")


ROWS = [{"symbol": f"S{i % 3}", "price": i + 0.5, "qty": i} for i in range(10)]


def read_all(source, **kwargs):
    return list(source.batches(**kwargs))


def test_json_file_gives_typed_batches_of_at_most_batch_size(tmp_path):
    path = tmp_path / "t.jsonl"
    write_jsonl(path, ROWS)
    batches = read_all(FileSource("t", path, batch_size=4))
    assert [b.num_rows for b in batches] == [4, 4, 2]
    table = pa.Table.from_batches(batches)
    assert table.schema == pa.schema(
        [("symbol", pa.string()), ("price", pa.float64()), ("qty", pa.int64())]
    )
    assert table.to_pylist() == ROWS


def test_csv_file_with_header_and_inferred_types(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("symbol,price,qty\nA,1.5,1\nB,2.5,2\n")
    table = pa.Table.from_batches(read_all(FileSource("t", path, format="csv")))
    assert table.schema.field("price").type == pa.float64()
    assert table.schema.field("qty").type == pa.int64()
    assert table.to_pylist() == [
        {"symbol": "A", "price": 1.5, "qty": 1},
        {"symbol": "B", "price": 2.5, "qty": 2},
    ]


def test_glob_reads_every_matching_file_in_order(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", ROWS[:3])
    write_jsonl(tmp_path / "b.jsonl", ROWS[3:])
    source = FileSource("t", tmp_path / "*.jsonl")
    assert pa.Table.from_batches(read_all(source)).to_pylist() == ROWS
    assert source.metrics()["files_read"] == 2


def test_last_line_without_newline_is_read(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n" + json.dumps(ROWS[1]))
    assert pa.Table.from_batches(read_all(FileSource("t", path))).to_pylist() == ROWS[:2]


def test_missing_file_is_a_source_error_naming_the_path(tmp_path):
    path = tmp_path / "nope.jsonl"
    with pytest.raises(SourceError) as info:
        read_all(FileSource("trades", path))
    assert str(path) in str(info.value)
    assert info.value.source == "trades"


def test_wait_timeout_waits_for_the_file(tmp_path):
    path = tmp_path / "late.jsonl"

    def appear() -> None:
        # The whole file at once (written aside, then renamed): a source that finds the
        # file must find its lines too, or the test races the writer.
        aside = tmp_path / "late.jsonl.part"
        write_jsonl(aside, ROWS[:2])
        os.replace(aside, path)

    timer = threading.Timer(0.3, appear)
    timer.start()
    try:
        batches = read_all(FileSource("t", path, wait_timeout_ms=5000))
    finally:
        timer.join()
    assert pa.Table.from_batches(batches).to_pylist() == ROWS[:2]


def test_wait_timeout_expires_with_a_source_error(tmp_path):
    started = time.monotonic()
    with pytest.raises(SourceError, match="waited"):
        read_all(FileSource("t", tmp_path / "never.jsonl", wait_timeout_ms=200))
    assert time.monotonic() - started >= 0.2


def test_watch_tails_the_file_until_stopped(tmp_path):
    path = tmp_path / "t.jsonl"
    write_jsonl(path, ROWS[:2])
    source = FileSource("t", path, watch=True)
    stop = threading.Event()
    seen = []

    def consume():
        for batch in source.batches(until_end=False, stop=stop):
            seen.extend(batch.to_pylist())

    thread = threading.Thread(target=consume)
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while len(seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        with path.open("a") as handle:
            handle.write(json.dumps(ROWS[2]) + "\n")
        while len(seen) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        thread.join(5)
    assert seen == ROWS[:3]
    # until_end makes a watched file bounded.
    assert pa.Table.from_batches(read_all(source, until_end=True)).num_rows == 3


BAD_LINES = ['{"symbol": "X", "price": "abc", "qty": 1}', "{broken"]


def test_one_bad_value_does_not_change_the_inferred_column_type(tmp_path):
    path = tmp_path / "t.jsonl"
    write_jsonl(path, ROWS, BAD_LINES[:1])
    source = FileSource("t", path, bad_records=BadRecordPolicy("log_and_continue"))
    table = pa.Table.from_batches(read_all(source))
    assert table.schema.field("price").type == pa.float64()
    assert source.metrics()["bad_records"] == 1


def test_fail_strategy_raises_with_file_and_line(tmp_path):
    path = tmp_path / "t.jsonl"
    write_jsonl(path, ROWS, BAD_LINES)
    with pytest.raises(DataError) as info:
        read_all(FileSource("t", path))
    message = str(info.value)
    assert f"{path}:11:" in message
    assert "price" in message and "abc" in message
    assert info.value.location == f"{path}:11"


def test_fail_strategy_line_numbers_count_the_csv_header(tmp_path):
    path = tmp_path / "t.csv"
    good = "".join(f"A,{i}.5,{i}\n" for i in range(20))
    path.write_text("symbol,price,qty\n" + good + "B,oops,2\n")
    with pytest.raises(DataError, match=rf"{path}:22: type mismatch for field 'price'"):
        read_all(FileSource("t", path, format="csv"))


def test_line_numbers_are_exact_across_chunks(tmp_path):
    path = tmp_path / "t.jsonl"
    rows = [{"symbol": "S", "price": 1.0, "qty": i, "pad": "x" * 200} for i in range(20_000)]
    write_jsonl(path, rows, ["{broken"])
    with pytest.raises(DataError, match=rf"{path}:20001: invalid JSON"):
        read_all(FileSource("t", path, batch_size=1000))


def test_log_and_continue_logs_one_line_per_bad_record_and_counts(tmp_path, caplog):
    path = tmp_path / "t.jsonl"
    write_jsonl(path, ROWS, BAD_LINES)
    policy = BadRecordPolicy("log_and_continue")
    source = FileSource("t", path, bad_records=policy)
    with caplog.at_level(logging.WARNING, logger="velostream.io"):
        rows = pa.Table.from_batches(read_all(source)).to_pylist()
    assert rows == ROWS
    assert policy.count == 2
    assert source.metrics()["bad_records"] == 2
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert messages[0].startswith(f"{path}:11:") and "price" in messages[0]
    assert messages[1].startswith(f"{path}:12:") and "invalid JSON" in messages[1]


def test_dead_letter_writes_raw_line_and_reason(tmp_path):
    path = tmp_path / "t.jsonl"
    write_jsonl(path, ROWS, BAD_LINES)
    dead = tmp_path / "dlq.jsonl"
    writer = DeadLetterWriter(FileSink("dlq", dead))
    policy = BadRecordPolicy("dead_letter", writer)
    rows = pa.Table.from_batches(read_all(FileSource("t", path, bad_records=policy))).to_pylist()
    writer.close()
    assert rows == ROWS
    letters = [json.loads(line) for line in dead.read_text().splitlines()]
    assert [(d["source"], d["location"], d["raw"]) for d in letters] == [
        ("t", f"{path}:11", BAD_LINES[0]),
        ("t", f"{path}:12", BAD_LINES[1]),
    ]
    assert "price" in letters[0]["reason"]
    assert policy.count == 2 and writer.count == 2


def test_dead_letter_strategy_needs_a_destination():
    with pytest.raises(ConfigError, match=r"dead_letter\.path"):
        BadRecordPolicy("dead_letter")


def test_a_fraction_in_an_integer_column_is_reported_not_truncated(tmp_path):
    path = tmp_path / "t.jsonl"
    write_jsonl(path, ROWS, ['{"symbol": "S9", "price": 1.0, "qty": 2.5}'])
    # The types are inferred from the first 5 rows: qty is an integer column.
    with pytest.raises(DataError) as info:
        read_all(FileSource("t", path, inference_rows=5))
    assert f"{path}:11:" in str(info.value)
    assert "qty" in str(info.value) and "2.5 is not an integer" in str(info.value)
