"""Planning: statements become the physical plan of docs/plan-format.md."""

from __future__ import annotations

import json
from typing import Any

import pytest

from velostream.sql import parse_statement, plan


def plan_of(sql: str) -> dict[str, Any]:
    """The plan, with the relation of column references checked and left out."""
    result = plan(parse_statement(sql))
    assert json.loads(json.dumps(result)) == result  # plain JSON data
    return strip_relation(result, result["input"])


def strip_relation(value: Any, source: str) -> Any:
    if isinstance(value, dict):
        if value.get("op") == "column":
            assert value.get("relation") == source, value
        return {k: strip_relation(v, source) for k, v in value.items() if k != "relation"}
    if isinstance(value, list):
        return [strip_relation(v, source) for v in value]
    return value


def strip_pos(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip_pos(v) for k, v in value.items() if k != "pos"}
    if isinstance(value, list):
        return [strip_pos(v) for v in value]
    return value


def col(name: str) -> dict[str, Any]:
    return {"op": "column", "name": name}


def lit(type_: str, value: Any) -> dict[str, Any]:
    return {"op": "literal", "type": type_, "value": value}


def binary(fn: str, left: Any, right: Any) -> dict[str, Any]:
    return {"op": "binary", "fn": fn, "left": left, "right": right}


def func(name: str, *args: Any) -> dict[str, Any]:
    return {"op": "func", "name": name, "args": list(args)}


def select_exprs(sql: str) -> list[Any]:
    return [item["expr"] for item in strip_pos(plan_of(sql))["select"]]


def test_select_where_full_plan_with_positions() -> None:
    sql = "SELECT id, price * qty AS notional\nFROM trades t\nWHERE t.price > 10.50"
    assert plan_of(sql) == {
        "version": 1,
        "input": "trades",
        "filter": {
            "op": "binary",
            "fn": "gt",
            "left": {"op": "column", "name": "price", "pos": [3, 7]},
            "right": {"op": "literal", "type": "decimal", "value": "10.50", "pos": [3, 17]},
            "pos": [3, 7],
        },
        "select": [
            {"name": "id", "expr": {"op": "column", "name": "id", "pos": [1, 8]}},
            {
                "name": "notional",
                "expr": {
                    "op": "binary",
                    "fn": "mul",
                    "left": {"op": "column", "name": "price", "pos": [1, 12]},
                    "right": {"op": "column", "name": "qty", "pos": [1, 20]},
                    "pos": [1, 12],
                },
            },
        ],
        "distinct": False,
        "group_by": [],
        "aggregates": [],
        "having": None,
        "emit": "changes",
        "window": None,
    }


def test_create_stream_plans_as_its_select() -> None:
    stream = plan_of("CREATE STREAM s AS SELECT a FROM t WHERE b WITH ('s.type' = 'file_sink')")
    select = plan_of("SELECT a FROM t WHERE b")
    assert strip_pos(stream) == strip_pos(select)


def test_star_and_distinct() -> None:
    result = plan_of("SELECT DISTINCT * FROM events EMIT CHANGES")
    assert result["select"] == [{"star": True, "pos": [1, 17]}]
    assert result["distinct"] is True
    assert result["emit"] == "changes"
    qualified = plan_of("SELECT e.* FROM events e")
    assert qualified["select"] == [{"star": True, "pos": [1, 8]}]


def test_output_names() -> None:
    result = strip_pos(
        plan_of(
            "SELECT t.price, price * qty, COUNT(*) AS n, UPPER(sym), price AS p, "
            "-- a comment\n qty + 1 FROM t GROUP BY t.price, price * qty, UPPER(sym), qty"
        )
    )
    assert [item["name"] for item in result["select"]] == [
        "price",
        "price * qty",
        "n",
        "UPPER(sym)",
        "p",
        "qty + 1",
    ]


def test_literals() -> None:
    assert select_exprs(
        "SELECT 1, 9223372036854775808, 2.50, 1e3, 'x', TRUE, false, NULL FROM t"
    ) == [
        lit("int64", 1),
        lit("decimal", "9223372036854775808"),
        lit("decimal", "2.50"),
        lit("float64", 1000.0),
        lit("utf8", "x"),
        lit("bool", True),
        lit("bool", False),
        lit("null", None),
    ]


def test_operators() -> None:
    assert select_exprs(
        "SELECT a + b, a - b, a * b, a / b, a % b, a = b, a <> b, a != b AS ne, a < b, a <= b, "
        "a > b, a >= b, a AND b, a OR b, a || b, -a, NOT a FROM t"
    ) == [
        binary("add", col("a"), col("b")),
        binary("sub", col("a"), col("b")),
        binary("mul", col("a"), col("b")),
        binary("div", col("a"), col("b")),
        binary("mod", col("a"), col("b")),
        binary("eq", col("a"), col("b")),
        binary("neq", col("a"), col("b")),
        binary("neq", col("a"), col("b")),
        binary("lt", col("a"), col("b")),
        binary("lte", col("a"), col("b")),
        binary("gt", col("a"), col("b")),
        binary("gte", col("a"), col("b")),
        binary("and", col("a"), col("b")),
        binary("or", col("a"), col("b")),
        binary("concat", col("a"), col("b")),
        {"op": "neg", "arg": col("a")},
        {"op": "not", "arg": col("a")},
    ]


def test_predicates() -> None:
    assert select_exprs(
        "SELECT a IS NULL, a IS NOT NULL, a IN (1, 2), a NOT IN ('x'), "
        "a BETWEEN 1 AND 5, a NOT BETWEEN 1 AND 5, s LIKE 'a%', s NOT LIKE '_b', "
        "s ILIKE 'c%', NOT (s ILIKE 'd') FROM t"
    ) == [
        {"op": "is_null", "arg": col("a"), "negated": False},
        {"op": "is_null", "arg": col("a"), "negated": True},
        {"op": "in_list", "arg": col("a"), "list": [lit("int64", 1), lit("int64", 2)], "negated": False},
        {"op": "in_list", "arg": col("a"), "list": [lit("utf8", "x")], "negated": True},
        {"op": "between", "arg": col("a"), "low": lit("int64", 1), "high": lit("int64", 5), "negated": False},
        {"op": "between", "arg": col("a"), "low": lit("int64", 1), "high": lit("int64", 5), "negated": True},
        {"op": "like", "arg": col("s"), "pattern": lit("utf8", "a%"), "negated": False, "case_insensitive": False},
        {"op": "like", "arg": col("s"), "pattern": lit("utf8", "_b"), "negated": True, "case_insensitive": False},
        {"op": "like", "arg": col("s"), "pattern": lit("utf8", "c%"), "negated": False, "case_insensitive": True},
        {"op": "like", "arg": col("s"), "pattern": lit("utf8", "d"), "negated": True, "case_insensitive": True},
    ]  # fmt: skip


def test_case_expressions() -> None:
    assert select_exprs(
        "SELECT CASE WHEN a > 1 THEN 'big' WHEN a > 0 THEN 'small' END, "
        "CASE status WHEN 1 THEN 'on' ELSE 'off' END FROM t"
    ) == [
        {
            "op": "case",
            "operand": None,
            "whens": [
                [binary("gt", col("a"), lit("int64", 1)), lit("utf8", "big")],
                [binary("gt", col("a"), lit("int64", 0)), lit("utf8", "small")],
            ],
            "else": None,
        },
        {
            "op": "case",
            "operand": col("status"),
            "whens": [[lit("int64", 1), lit("utf8", "on")]],
            "else": lit("utf8", "off"),
        },
    ]


@pytest.mark.parametrize(
    ("type_", "name"),
    [
        ("INT", "int32"),
        ("INTEGER", "int32"),
        ("BIGINT", "int64"),
        ("SMALLINT", "int16"),
        ("TINYINT", "int8"),
        ("DOUBLE", "float64"),
        ("FLOAT8", "float64"),
        ("FLOAT", "float32"),
        ("REAL", "float32"),
        ("VARCHAR", "utf8"),
        ("VARCHAR(20)", "utf8"),
        ("STRING", "utf8"),
        ("TEXT", "utf8"),
        ("CHAR", "utf8"),
        ("BOOLEAN", "bool"),
        ("DECIMAL", "decimal(18,3)"),
        ("DECIMAL(10, 2)", "decimal(10,2)"),
        ("NUMERIC(12,4)", "decimal(12,4)"),
        ("TIMESTAMP", "timestamp_ms"),
        ("DATE", "date32"),
    ],
)
def test_cast_types(type_: str, name: str) -> None:
    assert select_exprs(f"SELECT CAST(a AS {type_}) FROM t") == [
        {"op": "cast", "arg": col("a"), "to": name}
    ]


def test_scalar_functions() -> None:
    assert select_exprs(
        "SELECT COALESCE(a, b, 0), CONCAT(a, '-', b), UPPER(s), LOWER(s), "
        "SUBSTRING(s, 2), SUBSTRING(s, 2, 3), SUBSTRING(s FROM 1 FOR 4), LENGTH(s), "
        "CHAR_LENGTH(s) AS char_length, TRIM(s), LTRIM(s), RTRIM(s), ABS(x), ROUND(x), "
        "ROUND(x, 2), FLOOR(x), CEIL(x), CEILING(x) AS ceiling, NOW(), CURRENT_TIMESTAMP, FROM_UNIXTIME(ts) FROM t"
    ) == [
        func("coalesce", col("a"), col("b"), lit("int64", 0)),
        func("concat", col("a"), lit("utf8", "-"), col("b")),
        func("upper", col("s")),
        func("lower", col("s")),
        func("substring", col("s"), lit("int64", 2)),
        func("substring", col("s"), lit("int64", 2), lit("int64", 3)),
        func("substring", col("s"), lit("int64", 1), lit("int64", 4)),
        func("length", col("s")),
        func("length", col("s")),
        func("trim", col("s")),
        func("ltrim", col("s")),
        func("rtrim", col("s")),
        func("abs", col("x")),
        func("round", col("x")),
        func("round", col("x"), lit("int64", 2)),
        func("floor", col("x")),
        func("ceil", col("x")),
        func("ceil", col("x")),
        func("now"),
        func("now"),
        func("from_unixtime", col("ts")),
    ]


def test_keyword_named_columns_plan_as_columns() -> None:
    result = strip_pos(
        plan_of("SELECT key, value, status FROM t WHERE timestamp > 0 AND properties IS NULL")
    )
    assert [item["expr"] for item in result["select"]] == [col("key"), col("value"), col("status")]
    assert result["filter"] == binary(
        "and",
        binary("gt", col("timestamp"), lit("int64", 0)),
        {"op": "is_null", "arg": col("properties"), "negated": False},
    )


def test_system_columns_are_plain_columns() -> None:
    assert select_exprs("SELECT _event_time, _timestamp, _partition, _offset FROM t") == [
        col("_event_time"),
        col("_timestamp"),
        col("_partition"),
        col("_offset"),
    ]


def test_group_by_with_aggregates_and_having() -> None:
    result = plan_of(
        "SELECT sym, COUNT(*), SUM(qty) AS total, AVG(price) AS avg_price, "
        "MAX(price) - MIN(price) AS spread\n"
        "FROM trades\n"
        "WHERE qty > 0\n"
        "GROUP BY sym\n"
        "HAVING COUNT(*) > 1 AND total > 100"
    )
    assert result["aggregates"] == [
        {"fn": "count_star", "arg": None, "pos": [1, 13]},
        {"fn": "sum", "arg": {"op": "column", "name": "qty", "pos": [1, 27]}, "pos": [1, 23]},
        {"fn": "avg", "arg": {"op": "column", "name": "price", "pos": [1, 46]}, "pos": [1, 42]},
        {"fn": "max", "arg": {"op": "column", "name": "price", "pos": [1, 71]}, "pos": [1, 67]},
        {"fn": "min", "arg": {"op": "column", "name": "price", "pos": [1, 84]}, "pos": [1, 80]},
    ]
    stripped = strip_pos(result)
    assert stripped["group_by"] == [col("sym")]
    assert stripped["filter"] == binary("gt", col("qty"), lit("int64", 0))
    assert stripped["select"] == [
        {"name": "sym", "expr": {"op": "group_key", "index": 0}},
        {"name": "COUNT(*)", "expr": {"op": "agg", "index": 0}},
        {"name": "total", "expr": {"op": "agg", "index": 1}},
        {"name": "avg_price", "expr": {"op": "agg", "index": 2}},
        {
            "name": "spread",
            "expr": binary("sub", {"op": "agg", "index": 3}, {"op": "agg", "index": 4}),
        },
    ]
    # HAVING reuses COUNT(*) (deduplicated) and the alias `total`.
    assert stripped["having"] == binary(
        "and",
        binary("gt", {"op": "agg", "index": 0}, lit("int64", 1)),
        binary("gt", {"op": "agg", "index": 1}, lit("int64", 100)),
    )
    # The alias reference keeps its own position.
    assert result["having"]["right"]["left"]["pos"] == [5, 25]


def test_all_aggregate_functions() -> None:
    result = strip_pos(
        plan_of(
            "SELECT COUNT(x), COUNT(DISTINCT x), SUM(x), AVG(x), MIN(x), MAX(x), "
            "FIRST_VALUE(x), LAST_VALUE(x), STDDEV(x), STDDEV_SAMP(x), VARIANCE(x), "
            "VAR_SAMP(x) AS var_samp, STDDEV_POP(x), VAR_POP(x), count(*) FROM t"
        )
    )
    assert [(a["fn"], a["arg"]) for a in result["aggregates"]] == [
        ("count", col("x")),
        ("count_distinct", col("x")),
        ("sum", col("x")),
        ("avg", col("x")),
        ("min", col("x")),
        ("max", col("x")),
        ("first_value", col("x")),
        ("last_value", col("x")),
        ("stddev", col("x")),
        ("variance", col("x")),
        ("stddev_pop", col("x")),
        ("var_pop", col("x")),
        ("count_star", None),
    ]
    # STDDEV/STDDEV_SAMP and VARIANCE/VAR_SAMP are the same aggregate, planned once.
    assert [item["expr"]["index"] for item in result["select"]] == [
        0, 1, 2, 3, 4, 5, 6, 7, 8, 8, 9, 9, 10, 11, 12,
    ]  # fmt: skip
    assert result["group_by"] == []


def test_group_by_expression_matches_select_subexpressions() -> None:
    result = strip_pos(
        plan_of(
            "SELECT UPPER(t.sym) AS s, UPPER(sym) || '!' AS loud, price * 2, COUNT(*) "
            "FROM trades t GROUP BY UPPER(sym), price * 2"
        )
    )
    assert result["group_by"] == [
        func("upper", col("sym")),
        binary("mul", col("price"), lit("int64", 2)),
    ]
    assert [item["expr"] for item in result["select"]] == [
        {"op": "group_key", "index": 0},
        binary("concat", {"op": "group_key", "index": 0}, lit("utf8", "!")),
        {"op": "group_key", "index": 1},
        {"op": "agg", "index": 0},
    ]


def test_group_by_select_alias() -> None:
    result = strip_pos(
        plan_of("SELECT UPPER(sym) AS s, COUNT(*) AS n FROM trades GROUP BY s HAVING s <> 'X'")
    )
    assert result["group_by"] == [func("upper", col("sym"))]
    assert result["select"][0]["expr"] == {"op": "group_key", "index": 0}
    assert result["having"] == binary("neq", {"op": "group_key", "index": 0}, lit("utf8", "X"))


def test_having_with_case_and_arithmetic_on_aggregates() -> None:
    result = strip_pos(
        plan_of(
            "SELECT k, SUM(v) / COUNT(*) AS mean FROM t GROUP BY k "
            "HAVING CASE WHEN mean > 10 THEN TRUE ELSE SUM(v) > 100 END"
        )
    )
    mean = binary("div", {"op": "agg", "index": 0}, {"op": "agg", "index": 1})
    assert result["select"][1]["expr"] == mean
    assert result["having"] == {
        "op": "case",
        "operand": None,
        "whens": [[binary("gt", mean, lit("int64", 10)), lit("bool", True)]],
        "else": binary("gt", {"op": "agg", "index": 0}, lit("int64", 100)),
    }


def test_global_aggregate_without_group_by() -> None:
    result = strip_pos(plan_of("SELECT COUNT(*) AS n, SUM(x) + 1 FROM t"))
    assert result["group_by"] == []
    assert [item["expr"] for item in result["select"]] == [
        {"op": "agg", "index": 0},
        binary("add", {"op": "agg", "index": 1}, lit("int64", 1)),
    ]


def test_aggregate_arguments_are_expressions_over_input() -> None:
    result = strip_pos(plan_of("SELECT SUM(price * qty) AS notional FROM t WHERE t.qty > 0"))
    assert result["aggregates"] == [{"fn": "sum", "arg": binary("mul", col("price"), col("qty"))}]


def test_create_table_with_primary_key_or_group_by_plans() -> None:
    keyed = plan_of("CREATE TABLE users AS SELECT id PRIMARY KEY, name FROM user_events")
    assert [item["name"] for item in keyed["select"]] == ["id", "name"]
    grouped = plan_of("CREATE TABLE totals AS SELECT sym, COUNT(*) FROM trades GROUP BY sym")
    assert grouped["group_by"] == [{"op": "column", "name": "sym", "pos": [1, 66]}]


def test_emit_changes_is_the_default() -> None:
    assert plan_of("SELECT a FROM t")["emit"] == "changes"
    assert plan_of("SELECT a FROM t EMIT CHANGES")["emit"] == "changes"
    assert plan_of("SELECT a FROM t")["window"] is None
