"""Messages that say what is wrong and where: did-you-mean, unsupported clauses named,
duplicate output names, literals out of range, ${VAR} outside WITH, unterminated
strings at their opening quote, a UTF-8 byte order mark."""

from __future__ import annotations

import pyarrow as pa
import pytest

import velostream as vs
from velostream.errors import SqlSyntaxError, SqlValidationError
from velostream.sql import parse_script, parse_statement, plan


def syntax_error(sql: str) -> SqlSyntaxError:
    with pytest.raises(SqlSyntaxError) as info:
        plan(parse_statement(sql))
    return info.value


def validation_error(sql: str) -> SqlValidationError:
    with pytest.raises(SqlValidationError) as info:
        plan(parse_statement(sql))
    return info.value


# ------------------------------------------------------------------ did you mean


@pytest.mark.parametrize(
    ("sql", "hint"),
    [
        ("SELECT a FORM t", "did you mean FROM instead of 'FORM' at line 1, column 10?"),
        (
            "SELECT a FROM t WHER a > 1",
            "did you mean WHERE instead of 'WHER' at line 1, column 17?",
        ),
        ("SELECT a FRM t", "did you mean FROM instead of 'FRM' at line 1, column 10?"),
        (
            "SELECT a, COUNT(*) AS n FROM t\nGRUOP BY a",
            "did you mean GROUP instead of 'GRUOP' at line 2, column 1?",
        ),
        ("SELCT a FROM t", "did you mean SELECT?"),
        ("CREATE STRAEM s AS SELECT a FROM t", "did you mean STREAM?"),
        ("SELECT a FROM t WINDOW TUMBLNG(5s)", "did you mean TUMBLING?"),
    ],
)
def test_misspelt_keywords_get_a_suggestion(sql: str, hint: str) -> None:
    error = syntax_error(sql)
    assert hint in error.message


def test_no_suggestion_when_nothing_is_close() -> None:
    error = syntax_error("SELECT a FROM t xyzzy plugh")
    assert "did you mean" not in error.message


def test_misspelt_function_gets_a_suggestion() -> None:
    error = validation_error("SELECT UPPPER(a) AS u FROM t")
    assert error.message == "unknown function UPPPER (did you mean UPPER?)"
    assert (error.line, error.column) == (1, 8)


# ------------------------------------------------------------------ clauses


@pytest.mark.parametrize(
    ("sql", "message", "column"),
    [
        ("SELECT a FROM t ORDER BY a", "ORDER BY is not supported in a continuous query", 17),
        ("SELECT a FROM t LIMIT 5", "LIMIT is not supported in a continuous query", 17),
        (
            "SELECT a FROM t WHERE a > 1 OFFSET 5",
            "OFFSET is not supported in a continuous query",
            29,
        ),
        (
            "SELECT a FROM t FETCH FIRST 5 ROWS ONLY",
            "FETCH is not supported in a continuous query",
            17,
        ),
        ("SELECT a FROM t QUALIFY a > 1", "QUALIFY is not supported in a continuous query", 17),
        (
            "SELECT a FROM t GROUP BY a ORDER BY a",
            "ORDER BY is not supported in a continuous query",
            28,
        ),
        ("SELECT a FROM t SORT BY a", "SORT BY is not supported in a continuous query", 17),
        ("SELECT a FROM t CLUSTER BY a", "CLUSTER BY is not supported in a continuous query", 17),
        (
            "SELECT a FROM t DISTRIBUTE BY a",
            "DISTRIBUTE BY is not supported in a continuous query",
            17,
        ),
        (
            "SELECT a FROM t TABLESAMPLE (10 PERCENT)",
            "TABLESAMPLE is not supported in a continuous query",
            17,
        ),
        (
            "SELECT a FROM t FOR UPDATE",
            "FOR UPDATE/SHARE is not supported in a continuous query",
            17,
        ),
        ("SELECT a FROM x ORDER BY a UNION ALL SELECT a FROM y", "ORDER BY is not supported", 17),
        ("SELECT a FROM t INTERSECT SELECT a FROM u", "INTERSECT is not supported", 17),
        ("SELECT a FROM t EXCEPT SELECT a FROM u", "EXCEPT is not supported", 17),
        ("SELECT a FROM t UNION SELECT a FROM u", "UNION without ALL is not supported", 17),
        ("SELECT a FROM (SELECT a FROM t)", "subqueries are not supported in FROM", 15),
    ],
)
def test_unsupported_clauses_are_named_at_their_keyword(
    sql: str, message: str, column: int
) -> None:
    error = syntax_error(sql)
    assert error.message.startswith(message)
    assert (error.line, error.column) == (1, column)


@pytest.mark.parametrize(
    ("sql", "message", "line", "column"),
    [
        ("WITH c AS (SELECT a FROM t) SELECT a FROM c", "common table expression", 1, 1),
        (
            "CREATE STREAM s AS\nWITH c AS (SELECT a FROM t) SELECT a FROM c",
            "common table expression",
            2,
            1,
        ),
        ("SELECT a FROM t WHERE a IN (SELECT b FROM u)", "subqueries are not supported", 1, 29),
        ("SELECT a FROM t WHERE EXISTS (SELECT b FROM u)", "subqueries are not supported", 1, 31),
        ("SELECT (SELECT MAX(b) FROM u) AS m FROM t", "subqueries are not supported", 1, 8),
        ("SELECT ROW_NUMBER() OVER (ORDER BY a) AS r FROM t", "window functions (OVER ...)", 1, 8),
        (
            "SELECT a FROM t WHERE s LIKE 'a!%' ESCAPE '!'",
            "LIKE ... ESCAPE is not supported",
            1,
            23,
        ),
        (
            "SELECT a IS NOT DISTINCT FROM b AS x FROM t",
            "IS NOT DISTINCT FROM is not supported",
            1,
            8,
        ),
        ("SELECT a COLLATE b AS x FROM t", "COLLATE is not supported", 1, 8),
        ("SELECT a[1] AS x FROM t", "a subscript [...] is not supported", 1, 8),
        ("SELECT COUNT(*) FILTER (WHERE a > 1) AS n FROM t", "FILTER (WHERE ...)", 1, 8),
        ("SELECT a & b AS x FROM t", "the bitwise operator & is not supported", 1, 8),
    ],
)
def test_unsupported_constructs_are_named(sql: str, message: str, line: int, column: int) -> None:
    with pytest.raises((SqlSyntaxError, SqlValidationError)) as info:
        plan(parse_statement(sql))
    assert message in info.value.message
    assert (info.value.line, info.value.column) == (line, column)


# ------------------------------------------------------------------ duplicate names


@pytest.mark.parametrize(
    ("sql", "name", "line", "column"),
    [
        ("SELECT a AS x, b AS x FROM t", "x", 1, 16),
        ("SELECT a, a FROM t", "a", 1, 11),
        ("SELECT a,\n  t.a FROM t", "a", 2, 3),
        ("SELECT UPPER(s), upper(s) FROM t", "UPPER(s)", 1, 18),
        ("SELECT k, COUNT(*), COUNT(*) FROM t GROUP BY k", "COUNT(*)", 1, 21),
        ("SELECT a AS k, b FROM t WHERE a > 0 GROUP BY a, b HAVING b > 1", None, None, None),
        ("CREATE TABLE x AS SELECT k PRIMARY KEY, v AS k FROM t", "k", 1, 41),
    ],
)
def test_duplicate_output_names_are_an_error_at_the_second(
    sql: str, name: str | None, line: int | None, column: int | None
) -> None:
    if name is None:
        plan(parse_statement(sql))
        return
    error = validation_error(sql)
    assert f"duplicate output column name {name!r}" in error.message
    assert (error.line, error.column) == (line, column)


def test_duplicate_output_names_never_reach_a_sink() -> None:
    with pytest.raises(SqlValidationError, match="duplicate output column name 'x'"):
        vs.compile("SELECT a AS x, b AS x FROM t")


def test_names_differing_in_case_are_different_columns() -> None:
    result = plan(parse_statement("SELECT a AS x, b AS X FROM t"))
    assert [item["name"] for item in result["select"]] == ["x", "X"]


# ------------------------------------------------------------------ literals


@pytest.mark.parametrize(
    ("literal", "words"),
    [
        ("1e400", "1e400 is out of the range of DOUBLE"),
        ("-1e400", "1e400 is out of the range of DOUBLE"),
        ("1.5E+309", "1.5E+309 is out of the range of DOUBLE"),
        ("1e-400", "1e-400 is out of the range of DOUBLE"),
        ("1" * 39, f"integer literal {'1' * 39} is out of the range of DECIMAL(38, 0)"),
        ("0." + "1" * 39, "is out of the range of DECIMAL"),
    ],
)
def test_numeric_literals_out_of_range_are_named(literal: str, words: str) -> None:
    sql = f"SELECT a FROM t WHERE a < {literal}"
    error = validation_error(sql)
    assert words in error.message
    assert error.line == 1
    assert sql[error.column - 1 :].lstrip("-").startswith(literal.lstrip("-"))


def test_1e400_never_reaches_the_engine_as_infinity() -> None:
    with pytest.raises(SqlValidationError, match="1e400 is out of the range of DOUBLE"):
        vs.compile("SELECT 1e400 AS big FROM t")


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("9223372036854775807", {"op": "literal", "type": "int64", "value": 2**63 - 1}),
        (
            "9223372036854775808",
            {"op": "literal", "type": "decimal", "value": "9223372036854775808"},
        ),
        ("-9223372036854775808", {"op": "literal", "type": "int64", "value": -(2**63)}),
        ("9" * 38, {"op": "literal", "type": "decimal", "value": "9" * 38}),
        ("1e308", {"op": "literal", "type": "float64", "value": 1e308}),
        ("1e-300", {"op": "literal", "type": "float64", "value": 1e-300}),
        ("0e-999", {"op": "literal", "type": "float64", "value": 0.0}),
    ],
)
def test_integer_literals_are_exact(literal: str, expected: dict) -> None:
    result = plan(parse_statement(f"SELECT {literal} AS v FROM t"))
    planned = dict(result["select"][0]["expr"])
    planned.pop("pos")
    assert planned == expected


def test_literals_beyond_int64_compute_exactly_in_the_engine() -> None:
    query = vs.compile(
        "SELECT a + 9223372036854775808 AS big, -9223372036854775808 AS least, "
        "99999999999999999999999 AS wide FROM t"
    )
    out = query.process(pa.record_batch({"a": pa.array([1, -1])}))
    assert [str(v) for v in out.column("big").to_pylist()] == [
        "9223372036854775809",
        "9223372036854775807",
    ]
    assert out.schema.field("least").type == pa.int64()
    assert out.column("least").to_pylist() == [-(2**63), -(2**63)]
    assert pa.types.is_decimal(out.schema.field("wide").type)
    assert [str(v) for v in out.column("wide").to_pylist()] == ["99999999999999999999999"] * 2


# ------------------------------------------------------------------ ${VAR}


@pytest.mark.parametrize(
    ("sql", "written", "line", "column"),
    [
        ("SELECT ${COL} FROM t", "${COL}", 1, 8),
        ("SELECT a\nFROM ${TOPIC}", "${TOPIC}", 2, 6),
        ("SELECT a FROM t WHERE b = ${LIMIT}", "${LIMIT}", 1, 27),
        ("CREATE STREAM ${NAME} AS SELECT a FROM t", "${NAME}", 1, 15),
    ],
)
def test_placeholders_outside_with_values_are_named(
    sql: str, written: str, line: int, column: int
) -> None:
    with pytest.raises(SqlSyntaxError) as info:
        parse_script(sql)
    assert info.value.message.startswith(f"{written} is not substituted here")
    assert "only done in WITH values" in info.value.message
    assert "STRUCT" not in info.value.message
    assert (info.value.line, info.value.column) == (line, column)


def test_placeholders_in_with_values_still_parse() -> None:
    statement = parse_statement("SELECT a FROM t WITH ('t.topic' = '${TOPIC}')")
    assert statement.properties == {"t.topic": "${TOPIC}"}


# ------------------------------------------------------------------ strings


def test_unterminated_string_is_reported_at_its_opening_quote() -> None:
    error = syntax_error("SELECT 'abc FROM t\nWHERE x = 1")
    assert (error.line, error.column) == (1, 8)
    assert "unterminated string literal" in error.message


def test_a_string_closed_by_the_next_quote_is_reported_where_the_quote_is_missing() -> None:
    # 'abc is never closed: the quote before y closes it, and the one after y is left open.
    error = syntax_error("SELECT 'abc FROM t\nWHERE x = 'y'")
    assert (error.line, error.column) == (1, 8)
    assert "closing quote is probably missing on line 1" in error.message
    assert "line 2, column 13" in error.message


def test_a_multi_line_string_in_an_earlier_statement_is_not_blamed() -> None:
    error = syntax_error("SELECT 'a\nb' AS s FROM t;\nSELECT 'x FROM t")
    assert (error.line, error.column) == (3, 8)


# ------------------------------------------------------------------ byte order mark


def test_a_utf8_byte_order_mark_is_ignored() -> None:
    script = "\ufeffCREATE STREAM s AS SELECT a FROM t;\nSELECT b FROM u"
    first, second = parse_script(script)
    assert (first.kind, first.name, first.line, first.column) == ("stream", "s", 1, 1)
    assert first.text.startswith("CREATE STREAM")
    assert (second.line, second.column) == (2, 1)
    statement = parse_statement("\ufeffSELECT a FROM t")
    assert statement.sources == ("t",)
    assert (
        vs.compile("\ufeffSELECT a FROM t").process(pa.record_batch({"a": pa.array([1])})).num_rows
        == 1
    )


def test_positions_after_a_byte_order_mark_count_from_the_text() -> None:
    with pytest.raises(SqlSyntaxError) as info:
        parse_script("\ufeffSELECT a FROM t ORDER BY a")
    assert (info.value.line, info.value.column) == (1, 17)
