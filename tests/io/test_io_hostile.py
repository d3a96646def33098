"""Hostile file contents through FileSource under every error strategy (hypothesis).

Truncated lines, ragged CSV, BOMs, CRLF, UTF-16, binary garbage, unicode, huge numbers,
NaN: every outcome is rows or a VelostreamError subclass, the input file is byte-identical
afterwards, and every line is either a row or a bad record.
"""

import json
import re
import tempfile
from pathlib import Path

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from velostream.errors import SourceError, VelostreamError
from velostream.io import BadRecordPolicy, DeadLetterWriter, FileSink, FileSource

SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

numbers = st.one_of(
    st.integers(),
    st.integers(min_value=2**62, max_value=2**140),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=8))
records = st.dictionaries(
    st.sampled_from(["s", "n", "f", "x", "é"]) | st.text(max_size=3), scalars, max_size=4
)

json_lines = st.one_of(
    records.map(json.dumps),  # Python writes NaN, Infinity, 1e+300, 2**140 as they are
    st.fixed_dictionaries({"s": st.text(max_size=6), "n": st.integers(), "f": st.floats()}).map(
        json.dumps
    ),
    st.lists(scalars, max_size=3).map(json.dumps),
    st.text(max_size=20),
    st.just('{"n": ' + "9" * 45 + "}"),
    st.just('{"n": ' + "[" * 100 + "]" * 100 + "}"),
    st.just('{"n": ' + "[" * 200_000 + "]" * 200_000 + "}"),
    st.just('{"n": ' + "[" * 200_000),
)
csv_fields = st.one_of(
    st.text(alphabet=st.characters(blacklist_characters="\n\r"), max_size=6),
    numbers.map(str),
    st.sampled_from(["02134", "+5", "1_000", "NaN", "inf", "-inf", "true", '"q,uoted"', '"']),
    st.just("9" * 45),
)
csv_lines = st.lists(csv_fields, max_size=5).map(",".join)


def lines_of(text_lines):
    """Lines as bytes: text, truncated, or raw binary garbage."""
    line = st.one_of(
        text_lines.map(lambda s: s.encode("utf-8", errors="surrogatepass")),
        st.tuples(text_lines, st.integers(min_value=0, max_value=30)).map(
            lambda t: t[0].encode("utf-8", errors="surrogatepass")[: t[1]]
        ),
        st.binary(max_size=24),
    )
    return st.lists(line, max_size=12)


@st.composite
def files(draw, fmt):
    body = draw(lines_of(json_lines if fmt == "json" else csv_lines))
    if fmt == "csv":
        header = draw(st.sampled_from([b"s,n,f", b"a", b'"x,y",z', b"", b"\xff\xfe", b"s,n,f,g"]))
        body = [header, *body]
    ending = draw(st.sampled_from([b"\n", b"\r\n"]))
    data = ending.join(body)
    if draw(st.booleans()):
        data += ending
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data
    encoding = draw(st.sampled_from([None, None, None, "utf-16", "utf-16-le"]))
    if encoding is not None:
        data = data.decode("utf-8", errors="replace").encode(encoding)
    return data


def expected_lines(data, fmt):
    """The lines a source must account for: not blank, not the CSV header."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    # A line ends at \n, \r\n or a lone \r.
    lines = re.split(rb"\r\n|\r|\n", data)
    if lines and lines[-1] == b"":
        lines.pop()
    if fmt == "csv":
        lines = lines[1:]
        return sum(1 for line in lines if line)
    return sum(1 for line in lines if line.strip(b" \t\r"))


def run(data, fmt, strategy, schema=None):
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / f"input.{fmt}"
        path.write_bytes(data)
        writer = None
        if strategy == "dead_letter":
            writer = DeadLetterWriter(FileSink("dlq", Path(directory) / "dlq.jsonl"))
        source = FileSource(
            "t",
            path,
            format=fmt,
            batch_size=3,
            inference_rows=4,
            bad_records=BadRecordPolicy(strategy, writer),
            schema=schema,
        )
        error = None
        rows = 0
        try:
            for batch in source.batches():
                assert isinstance(batch, pa.RecordBatch)
                rows += batch.num_rows
        except VelostreamError as exc:
            error = exc
            assert str(exc)
        finally:
            if writer is not None:
                writer.close()
        assert path.read_bytes() == data, "the input file changed"
        metrics = source.metrics()
        if error is None:
            assert metrics["records_read"] == rows
            assert rows + metrics["bad_records"] == expected_lines(data, fmt)
            if strategy == "fail":
                assert metrics["bad_records"] == 0
        elif strategy != "fail":
            # Only the file as a whole may fail: an encoding or a header.
            assert isinstance(error, SourceError), error
        return error


strategies = st.sampled_from(["fail", "log_and_continue", "dead_letter"])
DECLARED = pa.schema(
    [("s", pa.string()), ("n", pa.int64()), ("f", pa.float64()), ("d", pa.decimal128(10, 2))]
)


@SETTINGS
@given(data=files("json"), strategy=strategies, declared=st.booleans())
def test_hostile_json_files(data, strategy, declared):
    run(data, "json", strategy, DECLARED if declared else None)


@SETTINGS
@given(data=files("csv"), strategy=strategies, declared=st.booleans())
def test_hostile_csv_files(data, strategy, declared):
    schema = DECLARED.remove(3) if declared else None
    run(data, "csv", strategy, schema)


def test_a_utf16_file_with_a_byte_order_mark_is_a_source_error():
    data = '{"a": 1}\n'.encode("utf-16")
    assert isinstance(run(data, "json", "log_and_continue"), SourceError)
