"""Errors: syntax errors point at the first character of the offending token;
validation errors carry the position of the offending construct."""

from __future__ import annotations

import pytest

from velostream.errors import SqlSyntaxError, SqlValidationError, VelostreamError
from velostream.sql import parse_script, parse_statement, plan


def syntax_error(sql: str) -> SqlSyntaxError:
    with pytest.raises(SqlSyntaxError) as info:
        parse_script(sql)
    return info.value


def validation_error(sql: str) -> SqlValidationError:
    with pytest.raises(SqlValidationError) as info:
        plan(parse_statement(sql))
    return info.value


def test_errors_are_velostream_errors() -> None:
    assert issubclass(SqlSyntaxError, VelostreamError)
    assert issubclass(SqlValidationError, VelostreamError)


def test_incomplete_where_points_at_last_token() -> None:
    error = syntax_error("SELECT a\nFROM t\nWHERE")
    assert (error.line, error.column, error.token) == (3, 1, "WHERE")
    assert "WHERE" in str(error)


def test_misspelt_from_points_at_the_stray_token() -> None:
    error = syntax_error("SELECT a FRM t")
    assert (error.line, error.column) == (1, 14)
    assert error.token == "t"
    assert "'t'" in error.message


def test_unknown_duration_unit_points_at_the_unit() -> None:
    error = syntax_error("SELECT * FROM t WINDOW TUMBLING(5x)")
    assert (error.line, error.column, error.token) == (1, 34, "x")
    assert "unknown duration unit 'x'" in error.message


def test_unknown_interval_unit_points_at_the_unit() -> None:
    error = syntax_error("SELECT *\nFROM t\nWINDOW TUMBLING(INTERVAL '5' FORTNIGHT)")
    assert (error.line, error.column, error.token) == (3, 30, "FORTNIGHT")


def test_column_is_the_first_character_of_a_long_token() -> None:
    # sqlglot reports the column of the *last* character; we report the first.
    error = syntax_error("SELECT a\n  FROM t\n  WHERE x = 1 ORDER BY x")
    assert (error.line, error.column) == (3, 15)
    assert error.token == "ORDER BY"


def test_error_in_second_statement_of_a_script() -> None:
    script = "SELECT a FROM t;\n\n-- next\nSELECT b,\n  FROM u;\n"
    error = syntax_error(script)
    assert (error.line, error.column, error.token) == (5, 3, "FROM")


def test_unterminated_string() -> None:
    error = syntax_error("SELECT a\nFROM t\nWHERE name = 'bob")
    assert (error.line, error.column) == (3, 14)
    assert "unterminated string" in error.message


def test_unterminated_comment() -> None:
    error = syntax_error("SELECT a FROM t /* never closed")
    assert (error.line, error.column) == (1, 17)
    assert "unterminated comment" in error.message


@pytest.mark.parametrize(
    ("sql", "token"),
    [
        ("UPDATE t SET a = 1", "UPDATE"),
        ("CREATE VIEW v AS SELECT a FROM t", "VIEW"),
        ("CREATE STREAM s SELECT a FROM t", "SELECT"),
        ("SELECT FROM t", "FROM"),
        ("SELECT a FROM t ORDER BY a", "ORDER BY"),
        ("SELECT a FROM t LIMIT 5", "LIMIT"),
        ("SELECT a FROM t, u", ","),
        ("SELECT a FROM (SELECT a FROM t)", "("),
        ("SELECT a FROM t UNION SELECT a FROM u", "UNION"),
        ("SELECT a FROM t INTERSECT SELECT a FROM u", "INTERSECT"),
        ("SELECT a FROM t RIGHT JOIN u ON t.a = u.a", "RIGHT"),
        ("SELECT a FROM t JOIN u USING (a)", "JOIN"),
        ("SELECT a FROM t WINDOW HOURLY(5s)", "HOURLY"),
        ("SELECT a FROM t WINDOW TUMBLING(5)", "5"),
        ("SELECT a FROM t WINDOW SLIDING(5s)", ")"),
        ("SELECT a FROM t WINDOW TUMBLING(5s, 10s)", "10"),
        ("SELECT a FROM t WINDOW TUMBLING(5s) WINDOW TUMBLING(5s)", "WINDOW"),
        ("SELECT a FROM t EMIT SOMETIMES", "SOMETIMES"),
        ("SELECT a FROM t WITH (key = 'v')", "key"),
        ("SELECT a FROM t WITH ('key' 'v')", "v"),
        ("SELECT a FROM t WINDOW TUMBLING(1s) UNION ALL SELECT a FROM u", "UNION"),
        ("SELECT * PRIMARY KEY FROM t", "PRIMARY KEY"),
    ],
)
def test_syntax_errors_name_the_offending_token(sql: str, token: str) -> None:
    error = syntax_error(sql)
    assert error.token == token
    assert error.line == 1
    assert sql[error.column - 1 :].startswith(token.split()[0]) or token == "v"


def test_parse_statement_requires_exactly_one_statement() -> None:
    with pytest.raises(SqlSyntaxError) as info:
        parse_statement("SELECT a FROM t;\nSELECT b FROM u")
    assert (info.value.line, info.value.column) == (2, 1)
    with pytest.raises(SqlSyntaxError):
        parse_statement("-- nothing here")


@pytest.mark.parametrize(
    ("sql", "line", "column"),
    [
        ("SELECT a FROM t WINDOW TUMBLING(0s)", 1, 33),
        ("SELECT a FROM t\nWINDOW SESSION(-5m)", 2, 16),
        ("SELECT a FROM t WINDOW TUMBLING(INTERVAL '0' SECOND)", 1, 33),
        ("SELECT a FROM t WINDOW TUMBLING(0.5ms)", 1, 33),
        ("SELECT a FROM t WINDOW SLIDING(5s, 10s)", 1, 24),
        ("SELECT a FROM t WITH ('k' = 'a', 'k' = 'b')", 1, 34),
    ],
)
def test_bad_durations_and_duplicate_keys_are_validation_errors(
    sql: str, line: int, column: int
) -> None:
    with pytest.raises(SqlValidationError) as info:
        parse_statement(sql)
    assert (info.value.line, info.value.column) == (line, column)


@pytest.mark.parametrize(
    ("sql", "line", "column", "words"),
    [
        ("SELECT a FROM t\nEMIT FINAL", 2, 1, "EMIT FINAL"),
        ("SELECT a FROM t WHERE COUNT(*) > 1", 1, 23, "WHERE"),
        ("SELECT SUM(COUNT(*)) FROM t", 1, 12, "nested"),
        ("SELECT AVG(x) FROM t GROUP BY MAX(y)", 1, 31, "GROUP BY"),
        ("SELECT sym,\n  qty, COUNT(*) FROM t GROUP BY sym", 2, 3, "column qty"),
        ("SELECT *, COUNT(*) FROM t", 1, 8, "SELECT *"),
        ("SELECT * FROM t GROUP BY a", 1, 8, "SELECT *"),
        ("SELECT a FROM t\nWHERE foo(a) > 1", 2, 7, "unknown function foo"),
        ("SELECT a FROM t WHERE UPPER(a, 1) = 'X'", 1, 23, "wrong number of arguments"),
        ("SELECT ROUND(a, 1, 2) FROM t", 1, 8, "wrong number of arguments"),
        ("SELECT FROM_UNIXTIME(a, b) FROM t", 1, 8, "wrong number of arguments"),
        ("SELECT NOW(1) FROM t", 1, 8, "wrong number of arguments"),
        ("SELECT SUBSTRING(s) FROM t", 1, 8, "wrong number of arguments"),
        ("CREATE TABLE x AS\nSELECT a FROM t", 1, 1, "needs a key"),
        ("SELECT _window_start FROM t", 1, 8, "_window_start"),
        ("SELECT a FROM t WHERE _window_end > 0", 1, 23, "_window_end"),
        ("SELECT x.a FROM trades t", 1, 8, "qualifier 'x'"),
        ("SELECT trades.a FROM trades t WHERE q.b = 1", 1, 37, "qualifier 'q'"),
        ("SELECT a FROM t HAVING a > 1", 1, 24, "HAVING"),
        ("SELECT CAST(a AS BLOB) FROM t", 1, 8, "CAST"),
        ("SELECT a FROM t WHERE a IN (SELECT b FROM u)", 1, 29, "subquer"),
        ("SELECT ROW_NUMBER() OVER (ORDER BY a) FROM t", 1, 8, "OVER"),
        ("SELECT a FROM t GROUP BY 1", 1, 26, "position"),
    ],
)
def test_validation_errors(sql: str, line: int, column: int, words: str) -> None:
    error = validation_error(sql)
    assert (error.line, error.column) == (line, column), error
    assert words in error.message


@pytest.mark.parametrize(
    ("sql", "line", "column", "words"),
    [
        ("SELECT TUMBLE_START() FROM t", 1, 8, "exists only in windowed queries"),
        ("SELECT a, _window_end FROM t", 1, 11, "exists only in windowed queries"),
        (
            "SELECT COUNT(*) FROM t WHERE TUMBLE_END() > 0 WINDOW TUMBLING(5s)",
            1,
            30,
            "use it in SELECT or HAVING",
        ),
        (
            "SELECT TUMBLE_START(ts) AS s, COUNT(*) FROM t WINDOW TUMBLING(5s)",
            1,
            8,
            "takes no arguments",
        ),
        (
            "SELECT HOP_START() AS s, COUNT(*) FROM t WINDOW TUMBLING(5s)",
            1,
            8,
            "belongs to a SLIDING window",
        ),
        (
            "SELECT k, COUNT(*) FROM t GROUP BY k, _window_start WINDOW TUMBLING(5s)",
            1,
            39,
            "cannot be a GROUP BY key",
        ),
        ("SELECT MAX(_window_end) FROM t WINDOW SESSION(5s)", 1, 12, "outside aggregates"),
    ],
)
def test_window_bounds_are_validated(sql: str, line: int, column: int, words: str) -> None:
    error = validation_error(sql)
    assert words in error.message, error.message
    assert (error.line, error.column) == (line, column), error


@pytest.mark.parametrize(
    ("sql", "kind", "line", "column"),
    [
        ("SELECT o.a FROM o\n  JOIN c ON o.k = c.k", "inner", 2, 3),
        ("SELECT o.a FROM o LEFT JOIN c ON o.k = c.k", "left", 1, 19),
    ],
)
def test_plan_of_a_join_keeps_kind_key_and_position(
    sql: str, kind: str, line: int, column: int
) -> None:
    planned = plan(parse_statement(sql))
    (join,) = planned["joins"]
    assert join["kind"] == kind
    assert join["pos"] == [line, column]
    assert join["on"][0]["table"] == "k"
    assert join["on"][0]["stream"]["relation"] == "o"
