"""A file sink must never truncate a file a source reads: sink_overlaps_source and FileSink."""

import os

import pyarrow as pa
import pytest

from velostream.errors import SinkError
from velostream.io import FileSink, create_sink, sink_overlaps_source

BATCH = pa.record_batch({"a": [1]})


@pytest.fixture
def data(tmp_path):
    directory = tmp_path / "data"
    directory.mkdir()
    (directory / "trades.jsonl").write_text('{"a": 1}\n')
    (directory / "b.jsonl").write_text('{"a": 2}\n')
    return directory


def test_the_same_file_written_differently_overlaps(tmp_path, data):
    source = data / "trades.jsonl"
    assert sink_overlaps_source(source, source)
    assert sink_overlaps_source("data/trades.jsonl", "./data/trades.jsonl", tmp_path)
    assert sink_overlaps_source("./data/../data/trades.jsonl", str(source), tmp_path)
    assert sink_overlaps_source(str(source), "trades.jsonl", data)
    assert not sink_overlaps_source("data/out.jsonl", "data/trades.jsonl", tmp_path)
    assert not sink_overlaps_source("other/trades.jsonl", "data/trades.jsonl", tmp_path)


def test_relative_paths_resolve_against_the_working_directory_by_default(data, monkeypatch):
    monkeypatch.chdir(data)
    assert sink_overlaps_source("trades.jsonl", data / "trades.jsonl")
    assert sink_overlaps_source("./trades.jsonl", "trades.jsonl")


def test_symbolic_and_hard_links_to_a_source_overlap(tmp_path, data):
    link = tmp_path / "link.jsonl"
    link.symlink_to(data / "trades.jsonl")
    assert sink_overlaps_source(link, data / "trades.jsonl")
    assert sink_overlaps_source(data / "trades.jsonl", link)
    hard = tmp_path / "hard.jsonl"
    os.link(data / "trades.jsonl", hard)
    assert sink_overlaps_source(hard, data / "trades.jsonl")
    linked_dir = tmp_path / "linked"
    linked_dir.symlink_to(data, target_is_directory=True)
    assert sink_overlaps_source(linked_dir / "trades.jsonl", data / "trades.jsonl")
    # A file the glob will match once written, through a linked directory.
    assert sink_overlaps_source(linked_dir / "new.jsonl", data / "*.jsonl")
    assert sink_overlaps_source(data / "new.jsonl", linked_dir / "*.jsonl")


def test_a_glob_overlaps_the_files_it_matches_and_would_match(tmp_path, data):
    assert sink_overlaps_source(data / "b.jsonl", data / "*.jsonl")
    assert sink_overlaps_source(data / "later.jsonl", data / "*.jsonl")  # does not exist yet
    assert sink_overlaps_source("data/t1.jsonl", "data/t?.jsonl", tmp_path)
    assert sink_overlaps_source("data/x.jsonl", "d*/[wxy].jsonl", tmp_path)
    assert not sink_overlaps_source(data / "out.csv", data / "*.jsonl")
    assert not sink_overlaps_source(data / "sub" / "x.jsonl", data / "*.jsonl")
    assert not sink_overlaps_source(tmp_path / "x.jsonl", data / "*.jsonl")
    # glob's * does not match hidden names.
    assert not sink_overlaps_source(data / ".hidden.jsonl", data / "*.jsonl")


def test_a_file_sink_refuses_to_open_a_file_a_source_reads(tmp_path, data):
    source = data / "trades.jsonl"
    before = source.read_bytes()
    with pytest.raises(SinkError) as info:
        FileSink("out", source, source_paths=[data / "*.jsonl"])
    assert info.value.sink == "out" and str(source) in str(info.value)
    with pytest.raises(SinkError):
        create_sink(
            "out",
            {"type": "file_sink", "path": "data/trades.jsonl"},
            base_dir=tmp_path,
            source_paths=[str(source)],
        )
    assert source.read_bytes() == before
    # Another path is written as before.
    sink = FileSink("out", data / "out.csv", format="csv", source_paths=[data / "*.jsonl"])
    sink.write(BATCH)
    sink.close()
    assert (data / "out.csv").read_text() == "a\n1\n"


def test_the_check_is_repeated_when_the_file_is_opened(tmp_path, data):
    link = tmp_path / "out.jsonl"
    sink = FileSink("out", link, source_paths=[data / "trades.jsonl"])
    # The sink path becomes a link to the source after the sink was created.
    link.symlink_to(data / "trades.jsonl")
    with pytest.raises(SinkError):
        sink.write(BATCH)
    assert (data / "trades.jsonl").read_text() == '{"a": 1}\n'
