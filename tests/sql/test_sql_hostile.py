"""Hostile SQL text: whatever the text, parsing and planning end in a plan or in a
VelostreamError with a position, never in another exception."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from velostream.errors import SqlSyntaxError, SqlValidationError, VelostreamError
from velostream.sql import parse_script, plan
from velostream.sql.dialect import DIALECT

_TOKENIZER = DIALECT.tokenizer_class
WORDS = [
    *sorted(set(_TOKENIZER.KEYWORDS) | set(_TOKENIZER.SINGLE_TOKENS)),
    "a",
    "b",
    "t",
    "1",
    "2.5",
    "1e400",
    "99999999999999999999999999999999999999999",
    "'x'",
    "'",
    '"',
    "`",
    "${X}",
    "UPPER(",
    "CONCAT_WS(",
    "STRUCT(",
    "EXTRACT(",
    "\ufeff",
    "\n",
    "--",
    "/*",
    "5s",
    "INT",
    "DECIMAL(40, 2)",
]

STARTS = [
    "SELECT a, b FROM t WHERE a > 1 GROUP BY a",
    "CREATE STREAM s (a INT, b DECIMAL(12, 2)) WITH ('k' = 'v')",
    "CREATE STREAM s AS SELECT UPPER(a) AS x FROM t WINDOW TUMBLING(5s) EMIT FINAL",
    "SELECT a FROM t WHERE a IN (1, 2) AND NOT b LIKE 'x%' OR CASE WHEN a THEN 1 END = 1",
]


@st.composite
def hostile_sql(draw: st.DrawFn) -> str:
    tokens = draw(st.sampled_from(STARTS)).split(" ")
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(tokens)))
        action = draw(st.sampled_from(["insert", "delete", "repeat"]))
        if action == "delete" and tokens:
            del tokens[min(at, len(tokens) - 1)]
        elif action == "repeat":
            word = draw(st.sampled_from(WORDS))
            tokens.insert(at, " ".join([word] * draw(st.integers(2, 400))))
        else:
            tokens.insert(at, draw(st.sampled_from(WORDS)))
    return " ".join(tokens)


@pytest.fixture(autouse=True)
def _quiet_sqlglot() -> Iterator[None]:
    # sqlglot logs (does not raise) when it prints constructs of other dialects
    logging.disable(logging.WARNING)
    yield
    logging.disable(logging.NOTSET)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_sql())
def test_hostile_text_plans_or_raises_a_velostream_error(sql: str) -> None:
    try:
        statements = parse_script(sql)
    except (SqlSyntaxError, SqlValidationError) as error:
        assert error.line is not None and error.column is not None
        assert error.message
        return
    for statement in statements:
        try:
            plan(statement)
        except VelostreamError as error:
            assert str(error)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_unicode_never_raises_anything_else(text: str) -> None:
    try:
        for statement in parse_script(text):
            try:
                plan(statement)
            except VelostreamError:
                pass
    except VelostreamError:
        pass
