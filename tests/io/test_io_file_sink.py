"""The file sink: JSON Lines with explicit nulls, CSV with one header, append mode."""

import json

import pyarrow as pa
import pytest

from velostream.errors import SinkError
from velostream.io import FileSink

BATCH = pa.record_batch({"symbol": ["A", None], "notional": [1.5, None], "qty": [1, 2]})


def test_json_sink_appends_batches_one_object_per_row(tmp_path):
    path = tmp_path / "out" / "o.jsonl"
    sink = FileSink("o", path)
    sink.write(BATCH)
    sink.write(BATCH.slice(0, 0))
    sink.write(BATCH.slice(1))
    sink.close()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows == [
        {"symbol": "A", "notional": 1.5, "qty": 1},
        {"symbol": None, "notional": None, "qty": 2},
        {"symbol": None, "notional": None, "qty": 2},
    ]
    assert sink.metrics()["records_written"] == 3


def test_csv_sink_writes_the_header_once(tmp_path):
    path = tmp_path / "o.csv"
    sink = FileSink("o", path, format="csv")
    sink.write(BATCH)
    sink.write(BATCH)
    sink.close()
    assert path.read_text().splitlines() == [
        "symbol,notional,qty",
        "A,1.5,1",
        ",,2",
        "A,1.5,1",
        ",,2",
    ]


def test_csv_sink_writes_a_header_for_an_empty_output(tmp_path):
    path = tmp_path / "o.csv"
    sink = FileSink("o", path, format="csv")
    sink.write(BATCH.slice(0, 0))
    sink.close()
    assert path.read_text() == "symbol,notional,qty\n"


def test_sink_replaces_the_file_unless_append(tmp_path):
    path = tmp_path / "o.csv"
    path.write_text("old\n")
    sink = FileSink("o", path, format="csv")
    sink.write(BATCH.slice(0, 1))
    sink.close()
    assert path.read_text() == "symbol,notional,qty\nA,1.5,1\n"
    sink = FileSink("o", path, format="csv", append=True)
    sink.write(BATCH.slice(0, 1))
    sink.close()
    assert path.read_text() == "symbol,notional,qty\nA,1.5,1\nA,1.5,1\n"


def test_close_creates_an_empty_file(tmp_path):
    path = tmp_path / "o.jsonl"
    FileSink("o", path).close()
    assert path.read_text() == ""


def test_unwritable_path_is_a_sink_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    sink = FileSink("o", blocker / "o.jsonl")
    with pytest.raises(SinkError) as info:
        sink.write(BATCH)
    assert info.value.sink == "o"
