"""Declared source columns: CREATE STREAM name (col TYPE, ...) WITH (...) (SPEC section 4)."""

from __future__ import annotations

import pyarrow as pa
import pytest
from sqlglot import exp

import velostream as vs
from velostream.errors import SqlSyntaxError, SqlValidationError
from velostream.sql import ColumnDef, declared_schema, parse_script, parse_statement, plan

TRADES = """\
CREATE STREAM trades (
    symbol STRING,
    price DOUBLE,
    qty BIGINT,
    zip STRING,
    amount DECIMAL(12, 2),
    ts TIMESTAMP
) WITH ('trades.type' = 'file_source', 'trades.path' = 'trades.jsonl')"""


def test_declaration_parses_into_a_stream_with_columns() -> None:
    statement = parse_statement(TRADES)
    assert (statement.kind, statement.name) == ("stream", "trades")
    assert statement.is_declaration
    assert isinstance(statement.query, exp.Schema)
    assert statement.properties == {"trades.type": "file_source", "trades.path": "trades.jsonl"}
    assert statement.property_positions["trades.type"] == (8, 9)
    assert statement.sources == ()
    assert statement.text == TRADES
    assert statement.columns == (
        ColumnDef("symbol", "STRING", pa.string(), 2, 5),
        ColumnDef("price", "DOUBLE", pa.float64(), 3, 5),
        ColumnDef("qty", "BIGINT", pa.int64(), 4, 5),
        ColumnDef("zip", "STRING", pa.string(), 5, 5),
        ColumnDef("amount", "DECIMAL(12, 2)", pa.decimal128(12, 2), 6, 5),
        ColumnDef("ts", "TIMESTAMP", pa.timestamp("ms", tz="UTC"), 7, 5),
    )
    assert [column.name for column in statement.query.expressions] == [
        "symbol",
        "price",
        "qty",
        "zip",
        "amount",
        "ts",
    ]


def test_declared_schema_is_the_exact_arrow_schema() -> None:
    schema = declared_schema(parse_statement(TRADES))
    assert schema == pa.schema(
        [
            pa.field("symbol", pa.string()),
            pa.field("price", pa.float64()),
            pa.field("qty", pa.int64()),
            pa.field("zip", pa.string()),
            pa.field("amount", pa.decimal128(12, 2)),
            pa.field("ts", pa.timestamp("ms", tz="UTC")),
        ]
    )
    assert all(field.nullable for field in schema)


@pytest.mark.parametrize(
    ("written", "sql_type", "arrow"),
    [
        ("STRING", "STRING", pa.string()),
        ("string", "STRING", pa.string()),
        ("VARCHAR", "VARCHAR", pa.string()),
        ("BOOLEAN", "BOOLEAN", pa.bool_()),
        ("INT", "INT", pa.int32()),
        ("INTEGER", "INTEGER", pa.int32()),
        ("BIGINT", "BIGINT", pa.int64()),
        ("DOUBLE", "DOUBLE", pa.float64()),
        ("DECIMAL(38, 0)", "DECIMAL(38, 0)", pa.decimal128(38, 0)),
        ("decimal(1,1)", "DECIMAL(1, 1)", pa.decimal128(1, 1)),
        ("DECIMAL(10)", "DECIMAL(10, 0)", pa.decimal128(10, 0)),
        ("TIMESTAMP", "TIMESTAMP", pa.timestamp("ms", tz="UTC")),
    ],
)
def test_every_declared_type(written: str, sql_type: str, arrow: pa.DataType) -> None:
    (column,) = parse_statement(f"CREATE STREAM s (c {written})").columns
    assert (column.sql_type, column.arrow_type) == (sql_type, arrow)


def test_names_keep_their_case_and_may_be_keywords_or_quoted() -> None:
    statement = parse_statement(
        'CREATE STREAM s (Symbol STRING, "odd name" INT, `tick` BIGINT, '
        "key STRING, timestamp TIMESTAMP, status STRING, check BOOLEAN)"
    )
    assert [column.name for column in statement.columns] == [
        "Symbol",
        "odd name",
        "tick",
        "key",
        "timestamp",
        "status",
        "check",
    ]


def test_declarations_sit_in_a_script_with_queries() -> None:
    declared, query = parse_script(
        TRADES + ";\nCREATE STREAM big AS SELECT symbol FROM trades WHERE qty > 10;"
    )
    assert declared.is_declaration and not query.is_declaration
    assert query.sources == ("trades",)
    assert query.columns == ()


def test_with_is_optional_and_the_generator_prints_the_declaration() -> None:
    statement = parse_statement("CREATE STREAM s (a INT, b STRING)")
    assert statement.properties == {}
    assert statement.query.sql() == "s (a INT, b TEXT)"


def test_plan_of_a_declaration_says_it_has_no_query() -> None:
    statement = parse_statement(TRADES)
    with pytest.raises(SqlValidationError) as info:
        plan(statement)
    assert info.value.message == (
        "CREATE STREAM trades (...) declares a source; it has no query to run"
    )
    assert (info.value.line, info.value.column) == (1, 1)
    with pytest.raises(SqlValidationError, match="declares a source"):
        vs.compile(TRADES)


def test_declared_schema_of_a_query_is_an_error() -> None:
    with pytest.raises(SqlValidationError, match="declares no columns"):
        declared_schema(parse_statement("CREATE STREAM s AS SELECT a FROM t"))


@pytest.mark.parametrize(
    ("sql", "words", "line", "column"),
    [
        (
            "CREATE STREAM s (a FLOAT)",
            "type FLOAT is not supported for a declared column (supported: STRING, VARCHAR, "
            "BOOLEAN, INT, INTEGER, BIGINT, DOUBLE, DECIMAL(p, s), TIMESTAMP)",
            1,
            20,
        ),
        ("CREATE STREAM s (a STRNG)", "did you mean STRING?", 1, 20),
        ("CREATE STREAM s (a BIGNT)", "did you mean BIGINT?", 1, 20),
        ("CREATE STREAM s (a DOUBLE PRECISION)", "type DOUBLE PRECISION is not supported", 1, 20),
        ("CREATE STREAM s (a TIMESTAMP WITH TIME ZONE)", "TIMESTAMP WITH TIME ZONE", 1, 20),
        ("CREATE STREAM s (a ARRAY<INT>)", "type ARRAY<INT> is not supported", 1, 20),
        ("CREATE STREAM s (a DATE)", "type DATE is not supported", 1, 20),
        ("CREATE STREAM s (a VARCHAR(10))", "VARCHAR takes no parameters", 1, 20),
        ("CREATE STREAM s (a TIMESTAMP(3))", "TIMESTAMP takes no parameters", 1, 20),
        ("CREATE STREAM s (a DECIMAL)", "needs a precision and a scale", 1, 20),
        (
            "CREATE STREAM s (a DECIMAL(0, 0))",
            "precision in DECIMAL(0, 0): it must be 1 to 38",
            1,
            20,
        ),
        ("CREATE STREAM s (a DECIMAL(39, 2))", "it must be 1 to 38, got 39", 1, 20),
        ("CREATE STREAM s (a DECIMAL(5, 6))", "scale in DECIMAL(5, 6)", 1, 20),
        ("CREATE STREAM s (a DECIMAL(5, -1))", "invalid DECIMAL parameters", 1, 20),
        ("CREATE STREAM s (a DECIMAL(5, 2, 1))", "invalid DECIMAL parameters", 1, 20),
        ("CREATE STREAM s (a 'text')", "type 'text' is not supported", 1, 20),
        ("CREATE STREAM s (a INT NOT NULL)", "column constraint NOT NULL is not supported", 1, 24),
        ("CREATE STREAM s (a INT PRIMARY KEY)", "column constraint PRIMARY KEY", 1, 24),
        ("CREATE STREAM s (a INT DEFAULT 0)", "column constraint DEFAULT 0", 1, 24),
        ("CREATE STREAM s (a INT, PRIMARY KEY (a))", "PRIMARY KEY is not supported", 1, 25),
        (
            "CREATE STREAM s (a TIMESTAMP,\n  WATERMARK FOR a AS a)",
            "WATERMARK is not supported",
            2,
            3,
        ),
        ("CREATE STREAM s (a INT,\n  b STRING, a BIGINT)", "column a is declared twice", 2, 13),
        ("CREATE STREAM s (a INT) AS SELECT a FROM t", "cannot also be defined AS SELECT", 1, 25),
        (
            "CREATE STREAM s (a INT) WITH ('k' = 'v') AS SELECT a FROM t",
            "cannot also be defined AS SELECT",
            1,
            42,
        ),
        ("CREATE TABLE s (a INT) WITH ('k' = 'v')", "CREATE TABLE s (...) is not supported", 1, 16),
    ],
)
def test_declaration_errors_name_what_is_wrong(
    sql: str, words: str, line: int, column: int
) -> None:
    with pytest.raises(SqlValidationError) as info:
        parse_statement(sql)
    assert words in info.value.message
    assert (info.value.line, info.value.column) == (line, column)


def test_column_names_differing_in_case_are_different_columns() -> None:
    statement = parse_statement("CREATE STREAM s (a INT, A BIGINT)")
    assert [column.name for column in statement.columns] == ["a", "A"]


@pytest.mark.parametrize(
    ("sql", "column"),
    [
        ("CREATE STREAM s ()", 18),
        ("CREATE STREAM s (a)", 19),
        ("CREATE STREAM s (a INT,)", 24),
        ("CREATE STREAM s (a INT) EMIT CHANGES", 25),
        ("CREATE STREAM s ('a' INT)", 18),
    ],
)
def test_declaration_syntax_errors(sql: str, column: int) -> None:
    with pytest.raises(SqlSyntaxError) as info:
        parse_statement(sql)
    assert (info.value.line, info.value.column) == (1, column)
