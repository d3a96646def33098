"""Nesting: any depth is a SqlValidationError with a position, never a RecursionError,
and no plan the engine cannot read (serde_json's recursion limit) leaves the planner."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable

import pyarrow as pa
import pytest

import velostream as vs
from velostream.errors import SqlSyntaxError, SqlValidationError
from velostream.sql import parse_statement, plan
from velostream.sql.limits import MAX_EXPRESSION_DEPTH, SERDE_MAX_DEPTH, json_depth

CAP = MAX_EXPRESSION_DEPTH


def parens(n: int) -> str:
    return "SELECT " + "(" * n + "a" + ")" * n + " AS out FROM t"


def calls(n: int) -> str:
    return "SELECT " + "ABS(" * n + "a" + ")" * n + " AS out FROM t"


def nots(n: int) -> str:
    return "SELECT a FROM t WHERE " + "NOT " * n + "b"


def negations(n: int) -> str:
    return "SELECT " + "- " * n + "a AS out FROM t"


def not_parens(n: int) -> str:
    return "SELECT a FROM t WHERE " + "NOT (" * n + "b" + ")" * n


def sums(n: int) -> str:
    return "SELECT " + " + ".join(["a"] * n) + " AS out FROM t"


# builder, the depth of its argument n (operators and operands counted as levels)
SHAPES: dict[str, tuple[Callable[[int], str], Callable[[int], int]]] = {
    "parentheses": (parens, lambda n: n + 1),
    "function calls": (calls, lambda n: n + 1),
    "NOT chain": (nots, lambda n: n + 1),
    "unary minus chain": (negations, lambda n: n + 1),
    "NOT (...)": (not_parens, lambda n: 2 * n + 1),
    "chain of +": (sums, lambda n: n),
}


def outcome(sql: str) -> dict | SqlValidationError:
    try:
        return plan(parse_statement(sql))
    except SqlValidationError as error:
        return error


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("n", [10, CAP - 1, CAP, CAP + 1, 63, 64, 65, 200, 5000])
def test_any_nesting_plans_or_is_a_validation_error_with_a_position(shape: str, n: int) -> None:
    build, depth = SHAPES[shape]
    sql = build(n)
    result = outcome(sql)
    if depth(n) <= CAP:
        assert isinstance(result, dict), result
        assert json_depth(result) <= SERDE_MAX_DEPTH
    else:
        assert isinstance(result, SqlValidationError)
        assert result.message.startswith(f"expression nested too deeply: more than {CAP} levels")
        assert result.line == 1
        assert result.column is not None and 1 <= result.column <= len(sql)


def test_the_error_points_at_the_first_level_too_deep() -> None:
    sql = parens(CAP + 5)
    error = outcome(sql)
    assert isinstance(error, SqlValidationError)
    # "SELECT " then CAP parentheses: the next one is the first level too deep.
    assert error.column == len("SELECT ") + CAP + 1
    assert sql[error.column - 1] == "("


def test_deep_nesting_on_a_later_line() -> None:
    sql = "SELECT a\nFROM t\nWHERE " + "(" * 300 + "a = 1" + ")" * 300
    with pytest.raises(SqlValidationError) as info:
        parse_statement(sql)
    assert (info.value.line, info.value.column) == (3, 7 + CAP)


@pytest.mark.parametrize(
    "prefix",
    ["STRAIGHT_JOIN ", "INTERVAL ", ":= ", "@ ", "! ", "~ ", "+ ", "ARRAY ", "ANY "],
)
def test_long_runs_of_any_prefix_never_raise_recursion_error(prefix: str) -> None:
    sql = "SELECT " + prefix * 3000 + "a FROM t"
    with pytest.raises((SqlSyntaxError, SqlValidationError)) as info:
        plan(parse_statement(sql))
    assert info.value.line == 1
    assert info.value.column is not None


@pytest.mark.parametrize("terms", [2, 3, 100, 1000, 10000])
def test_long_or_chains_plan_balanced(terms: int) -> None:
    sql = "SELECT a FROM t WHERE " + " OR ".join(f"a = {i}" for i in range(terms))
    result = plan(parse_statement(sql))
    assert json_depth(result) <= 3 + 2 * terms.bit_length()
    # every term is there, in order
    text = json.dumps(result["filter"])
    assert text.count('"fn": "eq"') == terms


def test_a_thousand_or_terms_run_in_the_engine() -> None:
    sql = "SELECT a FROM t WHERE " + " OR ".join(f"a = {i}" for i in range(0, 2000, 2))
    query = vs.compile(sql)
    out = query.process(pa.record_batch({"a": pa.array([0, 1, 2, 998, 1998, 1999, None])}))
    assert out.column("a").to_pylist() == [0, 2, 998, 1998]


def test_long_and_chain_with_nulls_keeps_three_valued_logic() -> None:
    terms = " AND ".join(f"a <> {i}" for i in range(1, 101))
    query = vs.compile(f"SELECT a, {terms} AS ok FROM t")
    out = query.process(pa.record_batch({"a": pa.array([0, 5, None])}))
    assert out.column("ok").to_pylist() == [True, False, None]


def test_a_chain_of_plus_beyond_the_cap_is_named() -> None:
    with pytest.raises(SqlValidationError) as info:
        parse_statement(sums(CAP + 1))
    assert "nested too deeply" in info.value.message
    assert (info.value.line, info.value.column) == (1, 8)


def test_the_deepest_expression_allowed_runs_in_the_engine() -> None:
    # A function call is two JSON levels of the plan: the worst case for serde's limit.
    sql = calls(CAP - 1)
    result = plan(parse_statement(sql))
    assert SERDE_MAX_DEPTH - 8 <= json_depth(result) <= SERDE_MAX_DEPTH
    out = vs.compile(sql).process(pa.record_batch({"a": pa.array([-3, 4])}))
    assert out.column("out").to_pylist() == [3, 4]


def test_deep_parentheses_below_the_cap_run_in_the_engine() -> None:
    out = vs.compile(parens(CAP - 1)).process(pa.record_batch({"a": pa.array([7])}))
    assert out.column("out").to_pylist() == [7]


def test_parsing_deep_expressions_restores_the_recursion_limit() -> None:
    before = sys.getrecursionlimit()
    plan(parse_statement(calls(CAP - 1)))
    with pytest.raises(SqlValidationError):
        parse_statement(parens(5000))
    assert sys.getrecursionlimit() == before


def test_deep_expressions_parse_in_threads() -> None:
    errors: list[BaseException] = []
    results: list[int] = []

    def work() -> None:
        try:
            for _ in range(5):
                results.append(json_depth(plan(parse_statement(calls(CAP - 1)))))
        except BaseException as error:  # collected and re-raised by the test
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(results) == 20
