"""Lines end at ``\\n``, ``\\r\\n`` or a lone ``\\r`` (old Mac files), in JSON Lines and CSV."""

import io
import logging

import pytest

from velostream.io import BadRecordPolicy, FileSource
from velostream.io import file_source as file_source_module
from velostream.io._lines import count_line_ends, last_line_end, read_line

ENDINGS = [b"\n", b"\r\n", b"\r"]
ROWS = [{"a": i, "s": f"r{i}"} for i in range(40)]


def json_lines(ending: bytes, bad_at: int | None = None) -> bytes:
    lines = [b'{"a": %d, "s": "r%d"}' % (i, i) for i in range(len(ROWS))]
    if bad_at is not None:
        lines.insert(bad_at, b'{"a": oops}')
    return ending.join(lines) + ending


def csv_lines(ending: bytes, bad_at: int | None = None) -> bytes:
    lines = [b"a,s"] + [b"%d,r%d" % (i, i) for i in range(len(ROWS))]
    if bad_at is not None:
        lines.insert(bad_at + 1, b"oops")
    return ending.join(lines) + ending


def read(path, caplog, **kwargs):
    policy = BadRecordPolicy("log_and_continue")
    source = FileSource("t", path, bad_records=policy, **kwargs)
    with caplog.at_level(logging.WARNING, logger="velostream.io"):
        rows = [row for batch in source.batches() for row in batch.to_pylist()]
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("velostream.io")]
    return rows, messages


@pytest.mark.parametrize("ending", ENDINGS, ids=repr)
@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_every_line_end_gives_the_records_and_the_line_numbers(tmp_path, caplog, fmt, ending):
    path = tmp_path / f"t.{fmt}"
    content = (json_lines if fmt == "json" else csv_lines)(ending, bad_at=7)
    path.write_bytes(content)
    rows, messages = read(path, caplog, format=fmt)
    assert rows == ROWS
    assert len(messages) == 1
    # JSON: the bad line is line 8; CSV: the header is line 1, so it is line 9.
    assert messages[0].startswith(f"{path}:{8 if fmt == 'json' else 9}:"), messages


@pytest.mark.parametrize("ending", ENDINGS, ids=repr)
@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_chunks_cut_anywhere_keep_the_lines(tmp_path, caplog, monkeypatch, fmt, ending):
    """Tiny blocks cut the file everywhere, also between the `\\r` and `\\n` of a line end."""
    monkeypatch.setattr(file_source_module, "_FIRST_BLOCK", 7)
    monkeypatch.setattr(file_source_module, "_MIN_BLOCK", 5)
    monkeypatch.setattr(file_source_module, "_MAX_BLOCK", 11)
    path = tmp_path / f"t.{fmt}"
    content = (json_lines if fmt == "json" else csv_lines)(ending, bad_at=30)
    path.write_bytes(content)
    rows, messages = read(path, caplog, format=fmt, inference_rows=5)
    assert rows == ROWS
    assert len(messages) == 1
    assert messages[0].startswith(f"{path}:{31 if fmt == 'json' else 32}:"), messages


def test_two_values_on_one_line_are_one_bad_record(tmp_path, caplog):
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"a":1} {"a":2}\n')
    rows, messages = read(path, caplog)
    assert rows == []
    assert len(messages) == 1 and "2 JSON values on 1 line" in messages[0], messages
    path.write_bytes(b'{"a":1}\n{"a":1} {"a":2}\n{"a":3}\n')
    rows, messages = read(path, caplog)
    assert rows == [{"a": 1}, {"a": 3}]


def test_line_end_helpers():
    assert count_line_ends(b"a\rb\r\nc\nd\r") == 4
    assert count_line_ends(b"abc") == 0
    assert last_line_end(b"a\rb\r", final=False) == 1  # the last `\r` may start a `\r\n`
    assert last_line_end(b"a\rb\r", final=True) == 3
    assert last_line_end(b"a\r\nb", final=False) == 2
    assert last_line_end(b"ab", final=True) == -1
    for data, line in [
        (b"a,b\r\n1,2\r\n", b"a,b\r\n"),
        (b"a,b\r1,2\r", b"a,b\r"),
        (b"a,b\n1,2\n", b"a,b\n"),
        (b"a,b", b"a,b"),
        (b"", b""),
    ]:
        handle = io.BytesIO(data)
        assert read_line(handle) == line
        assert handle.tell() == len(line)
