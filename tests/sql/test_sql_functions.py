"""Every function the dialect parses is run exactly as written, or rejected by name."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from sqlglot import exp
from sqlglot.tokens import TokenType

import velostream as vs
from velostream.errors import SqlSyntaxError, SqlValidationError, VelostreamError
from velostream.sql import parse_statement, plan
from velostream.sql.dialect import DIALECT, VelostreamParser
from velostream.sql.functions import SUPPORTED_FUNCTIONS

# One call of every supported function, as a user writes it.
EXAMPLES: dict[str, str] = {
    "UPPER": "UPPER(s)",
    "LOWER": "LOWER(s)",
    "CONCAT": "CONCAT(s, '-', s)",
    "SUBSTRING": "SUBSTRING(s, 2, 3)",
    "SUBSTR": "SUBSTR(s, 2)",
    "LENGTH": "LENGTH(s)",
    "CHAR_LENGTH": "CHAR_LENGTH(s)",
    "CHARACTER_LENGTH": "CHARACTER_LENGTH(s)",
    "TRIM": "TRIM(s)",
    "LTRIM": "LTRIM(s)",
    "RTRIM": "RTRIM(s)",
    "ABS": "ABS(x)",
    "ROUND": "ROUND(x, 1)",
    "FLOOR": "FLOOR(x)",
    "CEIL": "CEIL(x)",
    "CEILING": "CEILING(x)",
    "COALESCE": "COALESCE(x, 0)",
    "CAST": "CAST(x AS BIGINT)",
    "NOW": "NOW()",
    "CURRENT_TIMESTAMP": "CURRENT_TIMESTAMP",
    "FROM_UNIXTIME": "FROM_UNIXTIME(x)",
    "COUNT": "COUNT(x)",
    "SUM": "SUM(x)",
    "AVG": "AVG(x)",
    "MIN": "MIN(x)",
    "MAX": "MAX(x)",
    "FIRST_VALUE": "FIRST_VALUE(x)",
    "LAST_VALUE": "LAST_VALUE(x)",
    "STDDEV": "STDDEV(x)",
    "STDDEV_SAMP": "STDDEV_SAMP(x)",
    "STDDEV_POP": "STDDEV_POP(x)",
    "VARIANCE": "VARIANCE(x)",
    "VAR_SAMP": "VAR_SAMP(x)",
    "VAR_POP": "VAR_POP(x)",
}

ARGUMENT_LISTS = ["", "a", "a, 1", "a, 'x', 2"]


def dialect_function_names() -> list[str]:
    """Every name the dialect's parser turns into a call: its FUNCTIONS table and the
    names with a syntax of their own; names the tokenizer reads as keywords that cannot
    start a call (AND, OR, APPLY) and CASE (syntax, tested elsewhere) are left out."""
    parser = VelostreamParser
    names = set(parser.FUNCTIONS) | set(parser.FUNCTION_PARSERS)
    names |= set(parser.NO_PAREN_FUNCTION_PARSERS)
    callable_names = []
    for name in sorted(names):
        token = DIALECT.tokenizer().tokenize(name)[0]
        if token.token_type in parser.FUNC_TOKENS or token.token_type == TokenType.VAR:
            callable_names.append(name)
    return callable_names


def test_every_supported_function_has_an_example_that_plans() -> None:
    assert set(EXAMPLES) == set(SUPPORTED_FUNCTIONS)
    for name, call in EXAMPLES.items():
        result = plan(parse_statement(f"SELECT {call} AS out FROM t"))
        assert result["select"], name


def test_the_walk_covers_the_whole_function_table() -> None:
    names = dialect_function_names()
    assert len(names) > 600
    assert {"CONCAT_WS", "UPPER", "EXTRACT", "IFNULL", "STRUCT", "IF"} <= set(names)


@pytest.mark.parametrize("name", dialect_function_names())
def test_every_function_of_the_dialect_plans_or_is_rejected_by_name(name: str) -> None:
    if name in SUPPORTED_FUNCTIONS:
        plan(parse_statement(f"SELECT {EXAMPLES[name]} AS out FROM t"))
        return
    for arguments in ARGUMENT_LISTS:
        sql = f"SELECT {name}({arguments}) AS out FROM t"
        with pytest.raises(SqlValidationError) as info:
            plan(parse_statement(sql))
        assert name.upper() in info.value.message.upper(), (sql, info.value.message)
        assert (info.value.line, info.value.column) == (1, 8), sql


def _func_classes() -> Iterator[type[exp.Func]]:
    seen: set[type[exp.Func]] = set()
    stack: list[type[exp.Func]] = [exp.Func]
    while stack:
        for sub in stack.pop().__subclasses__():
            if sub not in seen:
                seen.add(sub)
                stack.append(sub)
                yield sub


# Nodes the planner computes, whatever wrote them (a call or the syntax).
PLANNED_NODES = {cls for classes in SUPPORTED_FUNCTIONS.values() for cls in classes} | {
    exp.And,
    exp.Or,
    exp.Case,
    exp.If,
}


def test_every_function_node_the_dialect_can_produce_is_planned_or_rejected() -> None:
    # Each sqlglot function class, printed by the dialect and parsed back: when the
    # dialect builds that class from the text, the planner computes it only if it is
    # a supported node; any other is a SqlValidationError, never a look-alike.
    logging.disable(logging.WARNING)  # sqlglot warns about classes it cannot print
    try:
        produced = []
        for cls in _func_classes():
            required: dict[str, Any] = {
                key: [exp.column("a")] if key == "expressions" else exp.column("a")
                for key, needed in cls.arg_types.items()
                if needed
            }
            try:
                text = cls(**required).sql(dialect=DIALECT)
            except Exception:
                continue  # sqlglot cannot print it: no text produces it
            sql = f"SELECT {text} AS out FROM t"
            try:
                statement = parse_statement(sql)
            except VelostreamError:
                continue
            if not any(type(node) is cls for node in statement.query.walk()):
                continue
            produced.append(cls)
            if cls in PLANNED_NODES:
                continue
            with pytest.raises(SqlValidationError) as info:
                plan(statement)
            message = info.value.message
            assert "not supported" in message or "unknown function" in message, (sql, message)
            assert info.value.line == 1, sql
    finally:
        logging.disable(logging.NOTSET)
    assert exp.Upper in produced
    assert exp.Collate in produced


@pytest.mark.parametrize(
    ("call", "words"),
    [
        ("CONCAT_WS(',', a, b)", "function CONCAT_WS is not supported"),
        ("IFNULL(a, 0)", "function IFNULL is not supported (use COALESCE)"),
        ("NVL(a, 0)", "function NVL is not supported (use COALESCE)"),
        ("LEN(s)", "function LEN is not supported (use LENGTH)"),
        ("MOD(a, 2)", "function MOD is not supported (use the % operator)"),
        ("LIKE(a, 'x')", "function LIKE is not supported"),
        ("DATE_TO_DATE_STR(a)", "function DATE_TO_DATE_STR is not supported"),
        ("TS_OR_DS_TO_DATE_STR(a)", "function TS_OR_DS_TO_DATE_STR is not supported"),
        ("EXTRACT(YEAR FROM a)", "function EXTRACT is not supported"),
        ("TRY_CAST(a AS INT)", "function TRY_CAST is not supported (use CAST)"),
        ("IF(a > 1, 1, 2)", "function IF is not supported"),
        ("STRUCT(a, 1)", "function STRUCT is not supported"),
        ("VAR_MAP(a)", "function VAR_MAP is not supported"),
        ("UPPPER(a)", "unknown function UPPPER (did you mean UPPER?)"),
        ("COALESC(a, 1)", "unknown function COALESC (did you mean COALESCE?)"),
        ("CURRENT_DATE", "function CURRENT_DATE is not supported"),
    ],
)
def test_unsupported_calls_are_named(call: str, words: str) -> None:
    with pytest.raises(SqlValidationError) as info:
        plan(parse_statement(f"SELECT x,\n  {call} AS out FROM t"))
    assert words in info.value.message
    assert (info.value.line, info.value.column) == (2, 3)


def test_concat_ws_is_not_computed_as_concat() -> None:
    # It used to run as CONCAT(sep, a, b): ',ab' instead of 'a,b'.
    with pytest.raises(SqlValidationError, match="CONCAT_WS"):
        vs.compile("SELECT CONCAT_WS(',', a, b) AS j FROM t")


def test_supported_aliases_plan_as_their_function() -> None:
    result = plan(
        parse_statement(
            "SELECT CEILING(x) AS c, SUBSTR(s, 2) AS s2, CHARACTER_LENGTH(s) AS n FROM t"
        )
    )
    assert [item["expr"]["name"] for item in result["select"]] == ["ceil", "substring", "length"]


def test_window_functions_are_named_by_over() -> None:
    with pytest.raises(SqlValidationError) as info:
        plan(parse_statement("SELECT a, SUM(a) OVER (PARTITION BY b) AS s FROM t"))
    assert "OVER" in info.value.message
    assert (info.value.line, info.value.column) == (1, 11)


def test_functions_with_their_own_syntax_are_rejected_when_parsed() -> None:
    # EXTRACT(... FROM ...) cannot be read as a plain call: it is rejected by name at once.
    with pytest.raises(SqlValidationError) as info:
        parse_statement("SELECT a FROM t WHERE POSITION('x' IN s) > 0")
    assert info.value.message.startswith("function POSITION is not supported")
    assert (info.value.line, info.value.column) == (1, 23)


def test_a_parser_failure_inside_sqlglot_is_a_syntax_error() -> None:
    # sqlglot parses `STRUCT(...)` as a type through a second parser; it used to fail
    # with an IndexError on velostream's errors.
    with pytest.raises(SqlValidationError, match="function STRUCT is not supported"):
        plan(parse_statement("SELECT STRUCT(a) AS s FROM t"))
    with pytest.raises(SqlSyntaxError):
        parse_statement("SELECT CAST(a) FROM t")
