"""Hostile SQL text through ``vs.compile`` and ``velostream.sql.parse_script`` (issue 9).

Random text, and valid statements mutated token by token (deleted, duplicated, swapped,
replaced by keywords, punctuation, quotes, comment markers, NUL, a BOM, lone surrogates,
other scripts), must end in a result or in ``SqlSyntaxError`` / ``SqlValidationError`` /
``ConfigError`` with a message: never ``RecursionError``, ``IndexError``, ``KeyError``,
``AttributeError``, a sqlglot exception, or an ``InternalError``. A statement that
compiles is then fed a batch, which must give rows or a ``VelostreamError``.

Deep nesting (parentheses, NOT, unary minus, CASE, function calls, long operator chains)
runs in a child process: a C stack overflow would kill the interpreter, and that must
show as a failure of one test, not as the end of the suite.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from hostile_support import describe, hostile_settings, outcome
from hypothesis import given
from hypothesis import strategies as st

import velostream as vs
from velostream.sql import parse_script

SQL_ERRORS = (vs.SqlSyntaxError, vs.SqlValidationError, vs.ConfigError)

SEEDS = [
    "SELECT a, b * 2 AS c FROM t WHERE s LIKE 'x%' AND a BETWEEN 1 AND 10",
    "SELECT s, COUNT(*) AS n, SUM(b) AS total, AVG(a) FROM t GROUP BY s HAVING COUNT(*) > 1",
    "SELECT CASE WHEN a > 0 THEN 'pos' WHEN a < 0 THEN 'neg' ELSE 'zero' END AS sign FROM t",
    "SELECT CAST(a AS DOUBLE) / 3, COALESCE(s, 'none'), UPPER(TRIM(s)) || '!' FROM t",
    "SELECT DISTINCT s FROM t WHERE a IN (1, 2, 3) OR s IS NULL EMIT CHANGES",
    "CREATE STREAM out AS SELECT a, s FROM t WHERE NOT (a <> 5) "
    "WITH ('error.strategy' = 'log_and_continue')",
    "SELECT SUBSTRING(s, 2, 3) AS x, ROUND(b, 2), ABS(-a), FLOOR(b), CEIL(b) FROM t -- comment",
    "/* block */ SELECT a FROM t WHERE b >= 1.5e3 AND s <> 'it''s'",
    "SELECT MIN(s), MAX(b), FIRST_VALUE(a), LAST_VALUE(s), COUNT(DISTINCT a) FROM t",
    "SELECT a FROM t WINDOW TUMBLING(5s) EMIT FINAL",
]

VOCABULARY = [
    "SELECT", "FROM", "WHERE", "GROUP", "BY", "HAVING", "AS", "AND", "OR", "NOT", "NULL",
    "CASE", "WHEN", "THEN", "ELSE", "END", "CAST", "IN", "BETWEEN", "LIKE", "IS", "WITH",
    "EMIT", "CHANGES", "FINAL", "WINDOW", "TUMBLING", "CREATE", "STREAM", "TABLE", "JOIN",
    "ON", "UNION", "ALL", "DISTINCT", "INTERVAL", "PRIMARY", "KEY", "LIMIT", "ORDER",
    "(", ")", ",", ";", "'", '"', "`", "*", "/", "%", "+", "-", "||", "=", "<>", "<=", ".",
    "--", "/*", "*/", "?", "$", "${X}", "::", "[", "]", "{", "}", "\\",
    "\x00", "\ufeff", "\u202e", "\ud800", "\udfff", "\U0001f600", "é", "日本", "Ω",
    "\r\n", "\n", "\t", "\x0b", "\x0c",
    "1e400", "-1e400", "99999999999999999999999999999999999999999", "0x1F", "1.", ".5",
    "9223372036854775808", "-0", "NaN", "Infinity", "5s", "0s", "-5m", "1y", "250ms",
    "a", "b", "s", "t", "_event_time", "_window_start", "x" * 300,
    "((((((((", "))))))))", "'unterminated", "/* unterminated", "\"quoted ident\"",
    "CONCAT_WS", "LEFT", "NOW()", "TUMBLE_START", "COUNT(*)",
]  # fmt: skip

_TOKEN = re.compile(r"'(?:[^']|'')*'|\w+|\s+|.", re.DOTALL)


@st.composite
def mutated_statements(draw: st.DrawFn) -> str:
    tokens = _TOKEN.findall(draw(st.sampled_from(SEEDS), label="seed"))
    rng = random.Random(draw(st.integers(0, 2**32), label="seed"))
    for _ in range(draw(st.integers(1, 6), label="mutations")):
        kind = rng.choice(["delete", "insert", "swap", "replace", "duplicate", "chars"])
        at = rng.randrange(len(tokens)) if tokens else 0
        if kind == "delete" and tokens:
            del tokens[at]
        elif kind == "insert":
            tokens.insert(at, rng.choice([*VOCABULARY, " "]))
        elif kind == "swap" and len(tokens) > 1:
            other = rng.randrange(len(tokens))
            tokens[at], tokens[other] = tokens[other], tokens[at]
        elif kind == "replace" and tokens:
            tokens[at] = rng.choice(VOCABULARY)
        elif kind == "duplicate" and tokens:
            tokens[at:at] = tokens[at : at + rng.randint(1, 4)]
        elif tokens:  # characters inside a token
            text = tokens[at]
            cut = rng.randrange(len(text) + 1)
            tokens[at] = text[:cut] + rng.choice(VOCABULARY)[:2] + text[cut + 1 :]
    text = "".join(tokens)
    if rng.random() < 0.1:
        text = "\ufeff" + text
    if rng.random() < 0.1:
        text = text.replace("\n", "\r\n").replace(" ", "\n")
    return text


random_text = st.one_of(
    st.text(max_size=60),
    st.text(
        alphabet=st.characters(categories=("Cs", "Cc", "Lu", "Ll", "Nd", "Po", "Zs", "So")),
        max_size=30,
    ),  # lone surrogates too
    st.lists(st.sampled_from(VOCABULARY), max_size=25).map("".join),
    st.lists(st.sampled_from(VOCABULARY), max_size=25).map(" ".join),
)

DATA = pa.record_batch(
    {"a": [1, -2, None, 2**62], "b": [1.5, float("nan"), None, -0.0], "s": ["x", "it's", None, ""]}
)


def check_text(text: str) -> None:
    context = f"SQL text: {text!r}"
    parsed = outcome(lambda: parse_script(text), "parse_script: " + context)
    if not parsed.ok:
        assert isinstance(parsed.error, SQL_ERRORS), (
            f"parse_script: {describe(parsed.error)}\n{context}"
        )
    compiled = outcome(lambda: vs.compile(text), "compile: " + context)
    if not compiled.ok:
        assert isinstance(compiled.error, SQL_ERRORS), (
            f"compile: {describe(compiled.error)}\n{context}"
        )
        return
    outcome(lambda: compiled.value.process(DATA), "process: " + context)
    outcome(compiled.value.flush, "flush: " + context)


@hostile_settings(400)
@given(text=mutated_statements())
def test_mutated_statements_parse_or_raise_a_sql_error(text: str) -> None:
    check_text(text)


@hostile_settings(250)
@given(text=random_text)
def test_random_text_parses_or_raises_a_sql_error(text: str) -> None:
    check_text(text)


@pytest.mark.parametrize(
    "text",
    [
        "\ufeffSELECT a FROM t",
        "SELECT a FROM t\x00",
        "SELECT 'a\x00b' AS x FROM t",
        "SELECT a FROM t WHERE s = '\ud800'",
        'SELECT "\ud800" FROM t',
        "SELECT a\r\nFROM t\r\nWHERE a > 1\r\n",
        "SELECT a FROM t; SELECT b FROM t",
        ";;;",
        "",
        "   \n\t ",
        "-- only a comment",
        "SELECT 1e400 AS x FROM t",
        "SELECT -1e400 AS x FROM t",
        "SELECT 1e-400 AS x FROM t",
        "SELECT 99999999999999999999999999999999999999999 AS x FROM t",
        "SELECT 1.0000000000000000000000000000000000000001 AS x FROM t",
        "SELECT ${VAR} FROM t",
        "SELECT a FROM t WITH ('error.strategy' = 'fail', 'error.strategy' = 'fail')",
        "SELECT a FROM t WITH ()",
        "SELECT a FROM t WINDOW TUMBLING(0s)",
        "SELECT a FROM t WINDOW TUMBLING(99999999999999999999d)",
        "SELECT a FROM t WINDOW TUMBLING(-5s)",
        "SELECT a FROM t WINDOW SESSION(1e400s)",
        "SELECT INTERVAL '99999999999999999999' MINUTE AS i FROM t",
        "SELECT CAST(a AS DECIMAL(99, 200)) FROM t",
        "SELECT CAST(a AS DECIMAL(0, 0)) FROM t",
        "SELECT CAST(a AS DECIMAL(-1, 2)) FROM t",
        "SELECT CAST(a AS VARCHAR(99999999999999999999)) FROM t",
        "SELECT ROUND(b, 99999999999999999999) FROM t",
        "SELECT SUBSTRING(s, 99999999999999999999) FROM t",
        "SELECT a FROM t WHERE a IN ()",
        "SELECT a AS x, b AS x FROM t",
        "SELECT * , * FROM t",
        "SELECT t.a, t.t.a FROM t",
        "SELECT COUNT(*) FROM t GROUP BY 1",
        "SELECT COUNT(COUNT(a)) FROM t",
        "SELECT a FROM t HAVING a > 1",
        "SELECT SUM(s) FROM t",
        "SELECT a FROM",
        "SELECT a FROM t t2 t3",
        "CREATE STREAM AS SELECT a FROM t",
        "CREATE STREAM s (a INT, b DOUBLE, s STRING) WITH ('s.type' = 'file_source')",
        "CREATE STREAM s (a INT, a INT) WITH ('s.type' = 'file_source')",
        "CREATE STREAM s (a DECIMAL(99, 2)) WITH ('s.type' = 'file_source')",
        "CREATE STREAM s () WITH ('s.type' = 'file_source')",
        "CREATE TABLE x AS SELECT a FROM t",
        "SELECT CONCAT_WS() FROM t",
        "SELECT CONCAT() FROM t",
        "SELECT COALESCE() FROM t",
        "SELECT UPPER() FROM t",
        "SELECT UPPER(s, s) FROM t",
    ],
)
def test_edge_statements_parse_or_raise_a_sql_error(text: str) -> None:
    check_text(text)


# --------------------------------------------------------------------------- deep nesting

DEEP = {
    "parentheses": ("a", "({})"),
    "not": ("a > 0", "NOT ({})"),
    "minus": ("a", "-({})"),
    "case": ("a", "CASE WHEN a > 0 THEN {} ELSE 0 END"),
    "upper": ("s", "UPPER({})"),
    "coalesce": ("a", "COALESCE({}, 1)"),
    "plus chain": ("a", "{} + 1"),
    "and chain": ("a > 0", "{} AND a > 0"),
    "concat chain": ("s", "{} || 'x'"),
}
DEPTHS = [50, 100, 200, 500, 1000]

_CHILD = r"""
import json, sys
sys.path[:0] = json.loads(sys.argv[1])
import pyarrow as pa
import velostream as vs
from test_hostile_sql_text import DATA, DEEP, DEPTHS
results = {}
for name, (seed, step) in DEEP.items():
    for depth in DEPTHS:
        text = seed
        for _ in range(depth):
            text = step.format(text)
        sql = "SELECT " + text + " AS deep FROM t"
        try:
            vs.compile(sql).process(DATA)
            outcome = "ok"
        except vs.InternalError as exc:
            outcome = "InternalError: " + str(exc)[:160]
        except (vs.SqlSyntaxError, vs.SqlValidationError) as exc:
            outcome = "sql error" if str(exc).strip() else "sql error without a message"
        except BaseException as exc:
            outcome = type(exc).__name__ + ": " + str(exc)[:160]
        results["%s x%d" % (name, depth)] = outcome
        print(json.dumps(results), flush=True)
"""


def test_deep_nesting_parses_or_raises_a_sql_error() -> None:
    here = Path(__file__).resolve().parent
    import_path = [str(here), str(Path(vs.__file__).resolve().parents[1])]
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(import_path)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(import_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = child.stdout.strip().splitlines()
    results = json.loads(lines[-1]) if lines else {}
    assert child.returncode == 0, (
        f"the child process died (exit {child.returncode}) after {list(results)[-1:]}: "
        f"{child.stderr[-2000:]}"
    )
    bad = {case: result for case, result in results.items() if result not in ("ok", "sql error")}
    assert not bad, f"{len(bad)} of {len(results)} deep expressions: {bad}"


# --------------------------------------------------------------------------- functions

# Functions sqlglot parses (several under another internal name). Each must compute or be
# refused with an error naming the function as written.
FUNCTIONS = [
    "CONCAT_WS('-', s, s)", "LEFT(s, 2)", "RIGHT(s, 2)", "REPLACE(s, 'a', 'b')",
    "REVERSE(s)", "LPAD(s, 5, '*')", "RPAD(s, 5, '*')", "POSITION('x' IN s)",
    "STRPOS(s, 'x')", "INITCAP(s)", "GREATEST(a, 0)", "LEAST(a, 0)", "NULLIF(a, 3)",
    "SIGN(a)", "SQRT(b)", "POWER(a, 2)", "EXP(b)", "LN(b)", "LOG10(b)", "LOG(2, b)",
    "TRUNC(b)", "ASCII(s)", "CHR(65)", "REPEAT(s, 2)", "SPLIT_PART(s, 'x', 1)",
    "STARTS_WITH(s, 'x')", "REGEXP_LIKE(s, 'x')", "IIF(a > 0, 1, 2)", "IF(a > 0, 1, 2)",
    "RANDOM()", "UUID()", "MD5(s)", "DATE_TRUNC('day', NOW())", "CURRENT_DATE",
    "OCTET_LENGTH(s)", "TO_CHAR(b)", "JSON_EXTRACT(s, '$.a')", "ARRAY_AGG(a)",
    "STRING_AGG(s, ',')", "APPROX_DISTINCT(a)", "MEDIAN(b)",
]  # fmt: skip


@pytest.mark.parametrize("call", FUNCTIONS)
def test_a_function_is_computed_or_refused_by_the_name_written(call: str) -> None:
    name = call.split("(", 1)[0].strip()
    sql = f"SELECT {call} AS f FROM t"
    result = outcome(lambda: vs.compile(sql).process(DATA), sql)
    if not result.ok:
        assert name.lower() in str(result.error).lower(), (
            f"{sql}: the error does not name {name}: {describe(result.error)}"
        )
