"""NaN and infinities (SPEC section 12): JSON sinks write NaN, Infinity, -Infinity (as
Python's json and DuckDB's to_json), CSV sinks NaN, inf, -inf; sources read them back."""

import json
import math

import pyarrow as pa

from velostream.io import BadRecordPolicy, FileSink, FileSource

VALUES = [float("nan"), float("inf"), float("-inf"), 1.5, None]
BATCH = pa.record_batch({"x": pa.array(VALUES, pa.float64()), "f": pa.array(VALUES, pa.float32())})


def same(a, b):
    return len(a) == len(b) and all(
        (x is None and y is None) or (x == y) or (math.isnan(x) and math.isnan(y))
        for x, y in zip(a, b, strict=True)
    )


def test_json_sink_writes_nan_and_infinities_as_python_json_does(tmp_path):
    path = tmp_path / "o.jsonl"
    sink = FileSink("o", path)
    sink.write(BATCH)
    sink.close()
    lines = path.read_text().splitlines()
    assert lines == [
        '{"x":NaN,"f":NaN}',
        '{"x":Infinity,"f":Infinity}',
        '{"x":-Infinity,"f":-Infinity}',
        '{"x":1.5,"f":1.5}',
        '{"x":null,"f":null}',
    ]
    assert same([json.loads(line)["x"] for line in lines], VALUES)
    assert lines[:3] == [json.dumps({"x": v, "f": v}, separators=(",", ":")) for v in VALUES[:3]]


def test_csv_sink_writes_nan_inf_and_minus_inf(tmp_path):
    path = tmp_path / "o.csv"
    sink = FileSink("o", path, format="csv")
    sink.write(BATCH)
    sink.close()
    assert path.read_text().splitlines() == [
        "x,f",
        "NaN,NaN",
        "inf,inf",
        "-inf,-inf",
        "1.5,1.5",
        ",",
    ]


def test_json_source_reads_the_tokens_back_as_doubles(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(
        "".join(json.dumps({"x": v, "s": "NaN"}) + "\n" for v in VALUES)
        + '{"x": [NaN], "s": "Infinity"}\n'
    )
    source = FileSource(
        "t", path, inference_rows=5, bad_records=BadRecordPolicy("log_and_continue")
    )
    table = pa.Table.from_batches(list(source.batches()))
    assert table.schema == pa.schema([("x", pa.float64()), ("s", pa.string())])
    assert same(table.column("x").to_pylist(), VALUES)
    assert table.column("s").to_pylist() == ["NaN"] * 5
    assert source.metrics()["bad_records"] == 1


def test_a_round_trip_through_files_keeps_every_value(tmp_path):
    for fmt in ("json", "csv"):
        path = tmp_path / f"o.{fmt}"
        sink = FileSink("o", path, format=fmt)
        sink.write(BATCH.select(["x"]))
        sink.close()
        table = pa.Table.from_batches(list(FileSource("t", path, format=fmt).batches()))
        assert table.schema.field("x").type == pa.float64(), fmt
        assert same(table.column("x").to_pylist(), VALUES), fmt
