"""Declared sources: ``CREATE STREAM s (col TYPE, ...) WITH (...)`` in an application."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.json
import pytest

import velostream as vs

CSV = (
    "symbol,zip,qty,amount,ts\nA,02134,2,10.25,2026-01-01T00:00:00Z\nB,00501,x,1.5,1767225600000\n"
)

DECLARE = """
CREATE STREAM trades (symbol STRING, zip STRING, qty BIGINT, amount DECIMAL(12, 2), ts TIMESTAMP)
WITH ('trades.type' = 'file_source', 'trades.path' = 'trades.csv', 'trades.format' = 'csv');
"""


def app(tmp_path, body: str, **properties: str) -> vs.Application:
    (tmp_path / "trades.csv").write_text(CSV)
    return vs.Application.from_sql(DECLARE + body, properties, base_dir=tmp_path)


QUERY = """
CREATE STREAM out AS SELECT symbol, zip, qty * 2 AS qty2, amount, ts FROM trades
WITH ('out.type' = 'file_sink', 'out.path' = 'out.jsonl', 'error.strategy' = 'log_and_continue');
"""


def test_validate_binds_against_the_declared_columns(tmp_path) -> None:
    schemas = app(tmp_path, QUERY).validate()
    assert schemas["out"] == pa.schema(
        [
            ("symbol", pa.string()),
            ("zip", pa.string()),
            ("qty2", pa.int64()),
            ("amount", pa.decimal128(12, 2)),
            ("ts", pa.timestamp("ms", tz="UTC")),
        ]
    )
    with pytest.raises(vs.SqlValidationError, match="did you mean 'amount'") as info:
        app(tmp_path, QUERY.replace("amount, ts", "amout, ts")).validate()
    assert info.value.line == 5


def test_declared_types_are_read_exactly_and_a_misfit_is_a_bad_record(tmp_path) -> None:
    application = app(tmp_path, QUERY)
    report = application.run(until_end=True)
    rows = pa.json.read_json(tmp_path / "out.jsonl").to_pylist()
    # The leading zero stays (a declared STRING is never inferred as a number), the
    # decimal is exact, and 'x' in a BIGINT column is a bad record, not a NULL.
    assert rows == [
        {"symbol": "A", "zip": "02134", "qty2": 4, "amount": 10.25, "ts": rows[0]["ts"]}
    ]
    assert report.errors == 1
    assert (tmp_path / "trades.csv").read_text() == CSV


def test_every_statement_may_read_a_declared_source(tmp_path) -> None:
    body = QUERY + QUERY.replace("out", "other").replace("qty * 2", "qty * 3")
    application = app(tmp_path, body)
    assert set(application.validate()) == {"out", "other"}
    assert "source trades (line 2): (symbol STRING" in application.explain()


@pytest.mark.parametrize(
    ("declaration", "message"),
    [
        ("WITH ('trades.type' = 'file_sink', 'trades.path' = 'x.jsonl')", "is not a source"),
        (
            "WITH ('error.strategy' = 'fail', 'trades.type' = 'file_source', 'trades.path' = 'trades.csv')",
            "its own connector",
        ),
        ("", "has no connector"),
    ],
)
def test_a_declared_source_needs_its_own_source_connector(tmp_path, declaration, message) -> None:
    sql = f"CREATE STREAM trades (symbol STRING) {declaration};" + QUERY.replace(
        ", zip, qty * 2 AS qty2, amount, ts", ""
    )
    (tmp_path / "trades.csv").write_text(CSV)
    with pytest.raises(vs.ConfigError, match=message):
        vs.Application.from_sql(sql, base_dir=tmp_path)


def test_a_source_declared_twice_is_refused(tmp_path) -> None:
    twice = QUERY.replace(
        "WITH (", "WITH ('trades.type' = 'file_source', 'trades.path' = 'trades.csv', "
    )
    with pytest.raises(vs.ConfigError, match="declared twice"):
        app(tmp_path, twice)


def test_validate_checks_a_declared_source_file_exists(tmp_path) -> None:
    application = app(tmp_path, QUERY)
    (tmp_path / "trades.csv").unlink()
    with pytest.raises(vs.SourceError, match="file not found"):
        application.validate()
