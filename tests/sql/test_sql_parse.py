"""Parsing: every form of the grammar of SPEC section 4 becomes a Statement."""

from __future__ import annotations

import pytest
from sqlglot import exp

from velostream.sql import Statement, WindowSpec, parse_script, parse_statement

SCRIPT = """\
-- trades application
CREATE STREAM enriched AS
SELECT id PRIMARY KEY, price * qty AS notional /* value */, status
FROM trades t
WHERE t.price > 10
EMIT CHANGES
WITH ('trades.type' = 'kafka_source', 'enriched.type' = 'file_sink');

/* a table
   over two lines */
CREATE TABLE totals AS
  SELECT sym, COUNT(*) AS n FROM trades GROUP BY sym;

SELECT * FROM trades -- ad hoc
"""


def test_script_splits_into_statements_with_positions() -> None:
    stream, table, select = parse_script(SCRIPT)

    assert (stream.kind, stream.name) == ("stream", "enriched")
    assert (stream.line, stream.column) == (2, 1)
    assert stream.text.startswith("CREATE STREAM enriched AS\nSELECT id PRIMARY KEY")
    assert stream.text.endswith("'enriched.type' = 'file_sink')")
    assert stream.sources == ("trades",)
    assert stream.joins == ()
    assert stream.emit == "changes"
    assert stream.window is None
    assert stream.primary_key == ("id",)
    assert stream.properties == {"trades.type": "kafka_source", "enriched.type": "file_sink"}
    assert list(stream.properties) == ["trades.type", "enriched.type"]
    assert stream.property_positions == {"trades.type": (7, 7), "enriched.type": (7, 39)}

    assert (table.kind, table.name) == ("table", "totals")
    assert (table.line, table.column) == (11, 1)
    assert table.text == (
        "CREATE TABLE totals AS\n  SELECT sym, COUNT(*) AS n FROM trades GROUP BY sym"
    )
    assert table.emit is None
    assert table.properties == {}

    assert (select.kind, select.name) == ("select", None)
    assert (select.line, select.column) == (14, 1)
    assert select.text == "SELECT * FROM trades"
    assert isinstance(select.query, exp.Select)


def test_query_has_streaming_clauses_and_key_markers_removed() -> None:
    statement = parse_statement(
        "CREATE STREAM s AS SELECT id AS k PRIMARY KEY, v FROM src "
        "WINDOW TUMBLING(1m) EMIT FINAL WITH ('a' = 'b')"
    )
    assert statement.primary_key == ("k",)
    assert statement.query.sql() == "SELECT id AS k, v FROM src"
    assert not list(statement.query.find_all(exp.Window))


def test_statement_is_a_frozen_record() -> None:
    statement = parse_statement("SELECT a FROM t")
    assert isinstance(statement, Statement)
    with pytest.raises(AttributeError):
        statement.name = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    "script",
    [
        "",
        "   \n  ",
        "-- only a comment",
        "/* only\n a comment */;",
        ";;",
    ],
)
def test_scripts_without_statements(script: str) -> None:
    assert parse_script(script) == []


def test_semicolons_and_comments_between_statements() -> None:
    statements = parse_script(
        "SELECT a FROM t; -- after\n;\n/* before */ SELECT b FROM u;; SELECT c FROM v"
    )
    assert [s.text for s in statements] == [
        "SELECT a FROM t",
        "SELECT b FROM u",
        "SELECT c FROM v",
    ]
    assert [(s.line, s.column) for s in statements] == [(1, 1), (3, 14), (3, 32)]


def test_parse_statement_allows_trailing_semicolon() -> None:
    assert parse_statement("SELECT a FROM t;").text == "SELECT a FROM t"


KEYWORD_FIELDS = [
    "status",
    "metrics",
    "properties",
    "timestamp",
    "key",
    "value",
    "window",
    "session",
    "format",
    "type",
    "date",
    "time",
    "year",
]


def test_keyword_named_fields_work_unquoted() -> None:
    fields = ", ".join(KEYWORD_FIELDS)
    statement = parse_statement(
        f"SELECT {fields} FROM events WHERE status = 'ok' AND timestamp > 5 AND key IS NOT NULL "
        "WINDOW TUMBLING(5s, timestamp)"
    )
    names = [projection.name for projection in statement.query.expressions]
    assert names == KEYWORD_FIELDS
    assert statement.window is not None
    assert statement.window.time_column == "timestamp"


@pytest.mark.parametrize("column", ["window", "key", "value", "status", "event_ts", "t.ts"])
def test_keyword_time_column_in_window(column: str) -> None:
    statement = parse_statement(f"SELECT a FROM t WINDOW SESSION(30s, {column})")
    assert statement.window is not None
    assert statement.window.time_column == column.split(".")[-1]


@pytest.mark.parametrize(
    ("clause", "expected"),
    [
        ("TUMBLING(250ms)", WindowSpec("tumbling", size_ms=250)),
        ("TUMBLING(30s)", WindowSpec("tumbling", size_ms=30_000)),
        ("TUMBLING(5m, ts)", WindowSpec("tumbling", size_ms=300_000, time_column="ts")),
        ("TUMBLING(1h)", WindowSpec("tumbling", size_ms=3_600_000)),
        ("TUMBLING(1d)", WindowSpec("tumbling", size_ms=86_400_000)),
        ("TUMBLING(INTERVAL '5' MINUTE)", WindowSpec("tumbling", size_ms=300_000)),
        ("TUMBLING(INTERVAL 5 MINUTES)", WindowSpec("tumbling", size_ms=300_000)),
        ("TUMBLING(INTERVAL '2 hours')", WindowSpec("tumbling", size_ms=7_200_000)),
        ("TUMBLING(INTERVAL 10 MILLISECONDS)", WindowSpec("tumbling", size_ms=10)),
        ("TUMBLING(INTERVAL '1' DAY)", WindowSpec("tumbling", size_ms=86_400_000)),
        ("TUMBLING(1.5s)", WindowSpec("tumbling", size_ms=1_500)),
        (
            "SLIDING(1m, 10s)",
            WindowSpec("sliding", size_ms=60_000, advance_ms=10_000),
        ),
        (
            "SLIDING(INTERVAL '1' HOUR, INTERVAL '5' MINUTE, event_time)",
            WindowSpec("sliding", size_ms=3_600_000, advance_ms=300_000, time_column="event_time"),
        ),
        ("SESSION(30s)", WindowSpec("session", gap_ms=30_000)),
        ("SESSION(INTERVAL 2 SECONDS, ts)", WindowSpec("session", gap_ms=2_000, time_column="ts")),
    ],
)
def test_window_clauses(clause: str, expected: WindowSpec) -> None:
    statement = parse_statement(f"SELECT COUNT(*) FROM t GROUP BY k\nWINDOW {clause}")
    window = statement.window
    assert window is not None
    assert (window.line, window.column) == (2, 1)
    assert window == WindowSpec(
        expected.kind,
        size_ms=expected.size_ms,
        advance_ms=expected.advance_ms,
        gap_ms=expected.gap_ms,
        time_column=expected.time_column,
        line=2,
        column=1,
    )


@pytest.mark.parametrize(
    ("clause", "emit"), [("", None), ("EMIT CHANGES", "changes"), ("emit final", "final")]
)
def test_emit(clause: str, emit: str | None) -> None:
    statement = parse_statement(f"SELECT a FROM t WINDOW TUMBLING(1s) {clause}")
    assert statement.emit == emit


def test_emit_after_from_is_not_a_table_alias() -> None:
    statement = parse_statement("SELECT a FROM t EMIT CHANGES")
    assert statement.emit == "changes"
    assert statement.query.sql() == "SELECT a FROM t"


def test_emit_position_is_recorded() -> None:
    statement = parse_statement("SELECT a\nFROM t\n  EMIT FINAL")
    assert statement.emit_position == (3, 3)


def test_with_properties_values() -> None:
    statement = parse_statement(
        "SELECT a FROM t WITH (\n  'a.b' = 'x',\n  'n' = 5,\n  'neg' = -2,\n"
        "  'ratio' = 0.5,\n  'on' = TRUE,\n  'off' = false\n)"
    )
    assert statement.properties == {
        "a.b": "x",
        "n": "5",
        "neg": "-2",
        "ratio": "0.5",
        "on": "true",
        "off": "false",
    }
    assert statement.property_positions["a.b"] == (2, 3)
    assert statement.property_positions["off"] == (7, 3)


def test_with_properties_after_group_by_and_before_as() -> None:
    grouped = parse_statement("SELECT a, COUNT(*) FROM t GROUP BY a WITH ('k' = 'v')")
    assert grouped.properties == {"k": "v"}
    assert grouped.query.sql() == "SELECT a, COUNT(*) FROM t GROUP BY a"

    ksql_style = parse_statement("CREATE STREAM s WITH ('k' = 'v') AS SELECT a FROM t")
    assert ksql_style.properties == {"k": "v"}


def test_primary_key_markers() -> None:
    statement = parse_statement(
        "CREATE TABLE users AS SELECT id PRIMARY KEY, region AS r PRIMARY KEY, "
        "UPPER(name) PRIMARY KEY, email FROM user_events"
    )
    assert statement.primary_key == ("id", "r", "UPPER(name)")
    assert statement.query.sql() == "SELECT id, region AS r, UPPER(name), email FROM user_events"


def test_union_all_with_trailing_modifiers_belong_to_the_statement() -> None:
    statement = parse_statement(
        "CREATE STREAM merged AS\n"
        "SELECT id, v FROM a\n"
        "UNION ALL SELECT id, v FROM b\n"
        "UNION ALL SELECT id, v FROM c\n"
        "WINDOW TUMBLING(10s)\n"
        "EMIT FINAL\n"
        "WITH ('merged.type' = 'kafka_sink')"
    )
    assert isinstance(statement.query, exp.Union)
    assert statement.sources == ("a", "b", "c")
    assert statement.window is not None
    assert (statement.window.size_ms, statement.window.line) == (10_000, 5)
    assert statement.emit == "final"
    assert statement.properties == {"merged.type": "kafka_sink"}
    assert statement.query.sql() == (
        "SELECT id, v FROM a UNION ALL SELECT id, v FROM b UNION ALL SELECT id, v FROM c"
    )
    for select in statement.query.find_all(exp.Select):
        assert {key for key, value in select.args.items() if value} == {"expressions", "from_"}


def test_joins() -> None:
    statement = parse_statement(
        "SELECT o.id, c.name FROM orders o "
        "LEFT JOIN customers c ON o.customer_id = c.id AND o.region = c.region "
        "JOIN products AS p ON o.product_id = p.id"
    )
    assert statement.sources == ("orders",)
    assert statement.joins == ("customers", "products")
    joins = statement.query.args["joins"]
    assert [join.side for join in joins] == ["LEFT", ""]


def test_select_forms() -> None:
    statement = parse_statement(
        "SELECT DISTINCT a, b AS c FROM t WHERE a > 1 GROUP BY a, b HAVING COUNT(*) > 2"
    )
    query = statement.query
    assert query.args["distinct"] is not None
    assert [e.alias_or_name for e in query.expressions] == ["a", "c"]
    assert query.args["where"] is not None
    assert len(query.args["group"].expressions) == 2
    assert query.args["having"] is not None


def test_quoted_names() -> None:
    statement = parse_statement('SELECT "my field", `other` FROM "my.topic"')
    assert [e.name for e in statement.query.expressions] == ["my field", "other"]
    assert statement.sources == ("my.topic",)


def test_keywords_are_case_insensitive() -> None:
    statement = parse_statement(
        "create stream s as select a from t window tumbling(5s) emit changes with ('k' = 'v')"
    )
    assert statement.kind == "stream"
    assert statement.window is not None
    assert statement.emit == "changes"


def test_dialect_is_registered_with_sqlglot_and_prints_statements() -> None:
    import sqlglot

    from velostream.sql.dialect import StreamStatement

    sql = (
        "CREATE STREAM s AS SELECT id PRIMARY KEY, COUNT(*) FROM t GROUP BY id "
        "WINDOW SLIDING(1m, 30s, ts) EMIT FINAL WITH ('a' = 'b')"
    )
    node = sqlglot.parse_one(sql, dialect="velostream")
    assert isinstance(node, StreamStatement)
    assert node.sql(dialect="velostream") == sql
