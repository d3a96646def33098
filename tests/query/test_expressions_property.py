"""Property tests: random expressions over random Arrow data (with NULLs) evaluate to the
same values in velostream as in DuckDB, in projections and in WHERE, on both paths.

The generator is typed so that every expression is valid in both dialects and means the
same thing in both. What it leaves out on purpose:

- float -> int casts (velostream truncates like Flink, DuckDB rounds);
- ``/`` with a DECIMAL operand (DuckDB returns DOUBLE, velostream a DECIMAL; see
  ``test_decimal_division`` in test_query_api.py for the checks that do apply);
- ``%`` with an integer divisor that can be zero (both engines raise; a dedicated test
  checks that);
- casts to VARCHAR of anything but integers, strings and decimal columns (text formats
  of floats differ between engines).
"""

from __future__ import annotations

import os

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from vs_compare import assert_same_batches, assert_same_rows, duckdb_rows, rows_of

import velostream as vs

SCHEMA = pa.schema(
    [
        ("i1", pa.int64()),
        ("i2", pa.int64()),
        ("f1", pa.float64()),
        ("f2", pa.float64()),
        ("s1", pa.string()),
        ("s2", pa.string()),
        ("b1", pa.bool_()),
        ("d1", pa.decimal128(10, 2)),
    ]
)
ALL_COLUMNS = ", ".join(SCHEMA.names)

INT_COLS = ["i1", "i2"]
FLOAT_COLS = ["f1", "f2"]
STR_COLS = ["s1", "s2"]
ALPHABET = ["a", "B", "é", " ", "%", "_", "x"]
LITERAL_ALPHABET = [*ALPHABET, "'"]

# VS_PROPERTY_EXAMPLES=2000 pytest ... explores more (the default keeps the suite fast).
SETTINGS = settings(
    max_examples=int(os.environ.get("VS_PROPERTY_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
    # no "explain" phase: it re-runs failing examples under coverage and costs ~20 s
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
)


def nullable(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(st.none(), strategy, strategy, strategy)


ints = nullable(st.integers(-50, 50))
floats = nullable(
    st.one_of(
        st.sampled_from([0.0, -0.0, 0.5, -0.5, 1.5, -2.5, 2.675, 1.25, 100.0, 1e-3]),
        st.floats(-1000, 1000, allow_nan=False, allow_infinity=False),
    )
)
strings = nullable(st.text(alphabet=ALPHABET, max_size=6))
bools = nullable(st.booleans())
decimals = nullable(
    st.decimals(min_value=-1000, max_value=1000, places=2, allow_nan=False, allow_infinity=False)
)


@st.composite
def batches(draw: st.DrawFn) -> pa.RecordBatch:
    n = draw(st.integers(0, 25))
    columns = {
        "i1": draw(st.lists(ints, min_size=n, max_size=n)),
        "i2": draw(st.lists(ints, min_size=n, max_size=n)),
        "f1": draw(st.lists(floats, min_size=n, max_size=n)),
        "f2": draw(st.lists(floats, min_size=n, max_size=n)),
        "s1": draw(st.lists(strings, min_size=n, max_size=n)),
        "s2": draw(st.lists(strings, min_size=n, max_size=n)),
        "b1": draw(st.lists(bools, min_size=n, max_size=n)),
        "d1": draw(st.lists(decimals, min_size=n, max_size=n)),
    }
    return pa.RecordBatch.from_pydict(columns, schema=SCHEMA)


def sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class Grammar:
    """Draws typed SQL expressions; ``dec`` enables DECIMAL sub-expressions."""

    def __init__(self, draw: st.DrawFn, dec: bool) -> None:
        self.draw = draw
        self.dec = dec

    def pick(self, options: list):
        return self.draw(st.sampled_from(options))

    def expr(self, ty: str, depth: int) -> str:
        return getattr(self, f"gen_{ty}")(depth)

    # ---- integers (BIGINT in both engines; values stay far from overflow)
    def int_leaf(self) -> str:
        kind = self.pick(["col", "col", "lit", "neglit", "null"])
        if kind == "col":
            return self.pick(INT_COLS)
        if kind == "lit":
            return str(self.draw(st.integers(0, 9)))
        if kind == "neglit":
            return f"(-{self.draw(st.integers(1, 9))})"
        return "CAST(NULL AS BIGINT)"

    def gen_int(self, depth: int) -> str:
        if depth <= 0 or self.draw(st.integers(0, 3)) == 0:
            return self.int_leaf()
        d = depth - 1
        kind = self.pick(
            ["arith", "arith", "mod", "neg", "abs", "case", "coalesce", "length", "cast"]
        )
        if kind == "arith":
            op = self.pick(["+", "-", "*"])
            return f"({self.gen_int(d)} {op} {self.gen_int(d)})"
        if kind == "mod":
            divisor = self.pick([str(self.draw(st.integers(1, 9))), "(-3)"])
            return f"({self.gen_int(d)} % {divisor})"
        if kind == "neg":
            return f"(-{self.gen_int(d)})"
        if kind == "abs":
            return f"ABS({self.gen_int(d)})"
        if kind == "case":
            return self.case("int", d)
        if kind == "coalesce":
            return self.coalesce("int", d)
        if kind == "length":
            return f"LENGTH({self.gen_str(d)})"
        return f"CAST({self.gen_int(d)} AS BIGINT)"

    # ---- floats (DOUBLE); integer operands mix in
    def float_leaf(self) -> str:
        kind = self.pick(["col", "col", "lit", "cast"])
        if kind == "col":
            return self.pick(FLOAT_COLS)
        if kind == "lit":
            value = self.pick(["2.5e0", "0.0e0", "1e1", "CAST(0.5 AS DOUBLE)", "(-1.5e0)"])
            return value
        return f"CAST({self.pick(INT_COLS)} AS DOUBLE)"

    def num(self, depth: int) -> str:
        return self.gen_int(depth) if self.draw(st.booleans()) else self.gen_float(depth)

    def gen_float(self, depth: int) -> str:
        if depth <= 0 or self.draw(st.integers(0, 3)) == 0:
            return self.float_leaf()
        d = depth - 1
        kind = self.pick(
            [
                "arith",
                "arith",
                "div",
                "intdiv",
                "mod",
                "neg",
                "abs",
                "round",
                "floor",
                "ceil",
                "case",
                "coalesce",
                "cast",
            ]
        )
        if kind == "arith":
            op = self.pick(["+", "-", "*"])
            return f"({self.gen_float(d)} {op} {self.num(d)})"
        if kind == "div":
            return f"({self.num(d)} / {self.num(d)})"
        if kind == "intdiv":
            return f"({self.gen_int(d)} / {self.gen_int(d)})"
        if kind == "mod":
            return f"({self.num(d)} % {self.gen_float(d)})"
        if kind == "neg":
            return f"(-{self.gen_float(d)})"
        if kind == "abs":
            return f"ABS({self.gen_float(d)})"
        if kind == "round":
            if self.draw(st.booleans()):
                return f"ROUND({self.num(d)})"
            return f"ROUND({self.num(d)}, {self.draw(st.integers(0, 3))})"
        if kind == "floor":
            return f"FLOOR({self.num(d)})"
        if kind == "ceil":
            return f"CEIL({self.num(d)})"
        if kind == "case":
            return self.case("float", d)
        if kind == "coalesce":
            args = [self.num(d) for _ in range(self.draw(st.integers(1, 3)))]
            return f"COALESCE({self.gen_float(d)}, {', '.join(args)})"
        return f"CAST({self.gen_int(d)} AS DOUBLE)"

    # ---- decimals (DECIMAL(p, s)); exact in both engines
    def dec_leaf(self) -> str:
        kind = self.pick(["col", "col", "lit", "cast"])
        if kind == "col":
            return "d1"
        if kind == "lit":
            return self.pick(["1.25", "0.5", "10.00", "(-2.75)", "0.01"])
        return f"CAST({self.pick(INT_COLS)} AS DECIMAL(10, 2))"

    def gen_dec(self, depth: int) -> str:
        depth = min(depth, 2)
        if depth <= 0 or self.draw(st.integers(0, 3)) == 0:
            return self.dec_leaf()
        d = depth - 1
        kind = self.pick(
            ["add", "add", "mul", "mod", "neg", "abs", "round", "floor", "ceil", "case", "coal"]
        )
        if kind == "add":
            op = self.pick(["+", "-"])
            other = self.gen_dec(d) if self.draw(st.booleans()) else self.gen_int(d)
            return f"({self.gen_dec(d)} {op} {other})"
        if kind == "mul":
            return f"({self.gen_dec(d)} * {self.pick(['d1', '1.5', '(-0.25)', 'i1', '3'])})"
        if kind == "mod":
            return f"({self.gen_dec(d)} % {self.pick(['0.7', '2', '(-1.5)'])})"
        if kind == "neg":
            return f"(-{self.gen_dec(d)})"
        if kind == "abs":
            return f"ABS({self.gen_dec(d)})"
        if kind == "round":
            if self.draw(st.booleans()):
                return f"ROUND({self.gen_dec(d)})"
            return f"ROUND({self.gen_dec(d)}, {self.draw(st.integers(0, 2))})"
        if kind == "floor":
            return f"FLOOR({self.gen_dec(d)})"
        if kind == "ceil":
            return f"CEIL({self.gen_dec(d)})"
        if kind == "case":
            return self.case("dec", d)
        return self.coalesce("dec", d)

    # ---- strings (VARCHAR)
    def str_literal(self) -> str:
        return sql_string(self.draw(st.text(alphabet=LITERAL_ALPHABET, max_size=4)))

    def str_leaf(self) -> str:
        kind = self.pick(["col", "col", "lit"])
        if kind == "col":
            return self.pick(STR_COLS)
        return self.str_literal()

    def gen_str(self, depth: int) -> str:
        if depth <= 0 or self.draw(st.integers(0, 3)) == 0:
            return self.str_leaf()
        d = depth - 1
        options = [
            "upper",
            "lower",
            "trim",
            "ltrim",
            "rtrim",
            "substring",
            "substring2",
            "concat",
            "pipes",
            "case",
            "coalesce",
            "cast_int",
            "cast_str",
        ]
        if self.dec:
            options.append("cast_dec")
        kind = self.pick(options)
        if kind in ("upper", "lower", "trim", "ltrim", "rtrim"):
            return f"{kind.upper()}({self.gen_str(d)})"
        if kind == "substring":
            start = self.draw(st.integers(1, 6))
            length = self.draw(st.integers(0, 4))
            return f"SUBSTRING({self.gen_str(d)}, {start}, {length})"
        if kind == "substring2":
            return f"SUBSTRING({self.gen_str(d)}, {self.draw(st.integers(1, 6))})"
        if kind == "concat":
            args = [self.gen_str(d) for _ in range(self.draw(st.integers(1, 3)))]
            return f"CONCAT({', '.join(args)})"
        if kind == "pipes":
            return f"({self.gen_str(d)} || {self.gen_str(d)})"
        if kind == "case":
            return self.case("str", d)
        if kind == "coalesce":
            return self.coalesce("str", d)
        if kind == "cast_int":
            return f"CAST({self.gen_int(d)} AS VARCHAR)"
        if kind == "cast_dec":
            return "CAST(d1 AS VARCHAR)"
        return f"CAST({self.gen_str(d)} AS VARCHAR)"

    # ---- booleans
    def comparable(self, depth: int) -> tuple[str, str]:
        kinds = ["num", "num", "str", "bool"]
        if self.dec:
            kinds += ["dec", "dec"]
        kind = self.pick(kinds)
        if kind == "num":
            return self.num(depth), self.num(depth)
        if kind == "str":
            return self.gen_str(depth), self.gen_str(depth)
        if kind == "bool":
            return self.gen_bool(depth), self.gen_bool(depth)
        other = self.gen_dec(depth) if self.draw(st.booleans()) else self.num(depth)
        return self.gen_dec(depth), other

    def gen_bool(self, depth: int) -> str:
        if depth <= 0 or self.draw(st.integers(0, 4)) == 0:
            return self.pick(["b1", "b1", "TRUE", "FALSE", "CAST(NULL AS BOOLEAN)"])
        d = depth - 1
        kind = self.pick(
            [
                "cmp",
                "cmp",
                "cmp",
                "and",
                "or",
                "not",
                "isnull",
                "in",
                "between",
                "like",
                "case",
                "coalesce",
            ]
        )
        if kind == "cmp":
            left, right = self.comparable(d)
            op = self.pick(["=", "<>", "<", "<=", ">", ">="])
            return f"({left} {op} {right})"
        if kind in ("and", "or"):
            return f"({self.gen_bool(d)} {kind.upper()} {self.gen_bool(d)})"
        if kind == "not":
            return f"(NOT {self.gen_bool(d)})"
        if kind == "isnull":
            types = ["int", "float", "str", "bool"] + (["dec"] if self.dec else [])
            negated = " NOT" if self.draw(st.booleans()) else ""
            return f"({self.expr(self.pick(types), d)} IS{negated} NULL)"
        if kind == "in":
            negated = "NOT " if self.draw(st.booleans()) else ""
            if self.draw(st.booleans()):
                arg = self.gen_int(d)
                items = [str(v) for v in self.draw(st.lists(st.integers(-5, 5), min_size=1))]
            else:
                arg = self.gen_str(d)
                items = [
                    sql_string(v)
                    for v in self.draw(
                        st.lists(st.text(alphabet=ALPHABET, max_size=2), min_size=1, max_size=4)
                    )
                ]
            if self.draw(st.integers(0, 4)) == 0:
                items.append("NULL")
            return f"({arg} {negated}IN ({', '.join(items)}))"
        if kind == "between":
            negated = "NOT " if self.draw(st.booleans()) else ""
            return f"({self.num(d)} {negated}BETWEEN {self.num(d)} AND {self.num(d)})"
        if kind == "like":
            negated = "NOT " if self.draw(st.booleans()) else ""
            pattern = self.draw(st.text(alphabet=[*ALPHABET, "%", "_", "%"], max_size=4))
            return f"({self.gen_str(d)} {negated}LIKE {sql_string(pattern)})"
        if kind == "case":
            return self.case("bool", d)
        return self.coalesce("bool", d)

    # ---- shared forms
    def case(self, ty: str, depth: int) -> str:
        branches = self.draw(st.integers(1, 3))
        if self.draw(st.booleans()):
            whens = " ".join(
                f"WHEN {self.gen_bool(depth)} THEN {self.expr(ty, depth)}" for _ in range(branches)
            )
            operand = ""
        elif self.draw(st.booleans()):
            operand = f" {self.gen_int(depth)}"
            whens = " ".join(
                f"WHEN {self.draw(st.integers(-3, 3))} THEN {self.expr(ty, depth)}"
                for _ in range(branches)
            )
        else:
            operand = f" {self.gen_str(depth)}"
            whens = " ".join(
                f"WHEN {sql_string(self.draw(st.text(alphabet=ALPHABET, max_size=2)))} "
                f"THEN {self.expr(ty, depth)}"
                for _ in range(branches)
            )
        otherwise = f" ELSE {self.expr(ty, depth)}" if self.draw(st.booleans()) else ""
        return f"CASE{operand} {whens}{otherwise} END"

    def coalesce(self, ty: str, depth: int) -> str:
        args = [self.expr(ty, depth) for _ in range(self.draw(st.integers(1, 4)))]
        return f"COALESCE({', '.join(args)})"


@st.composite
def expressions(draw: st.DrawFn, ty: str, dec: bool = False, depth: int = 3) -> str:
    return Grammar(draw, dec).expr(ty, draw(st.integers(0, depth)))


def run_both(
    con: duckdb.DuckDBPyConnection,
    batch: pa.RecordBatch,
    select_list: str,
    where: str | None = None,
) -> None:
    """Run one query in DuckDB and velostream (both paths) and compare the rows."""
    sql = f"SELECT {select_list} FROM t" + (f" WHERE {where}" if where else "")
    try:
        expected = duckdb_rows(con, "t", batch, select_list, where)
    except (duckdb.InvalidInputException, duckdb.OutOfRangeException) as error:
        # a data error in DuckDB (e.g. an overflow): velostream must reject the data too
        with pytest.raises(vs.DataError):
            vs.compile(sql).process(batch)
        del error
        return
    query = vs.compile(sql)
    direct = query.process(batch)
    assert query.output_schema == direct.schema
    context = f"{sql}\ndata: {batch.to_pydict()}"
    assert_same_rows(rows_of(direct), expected, context)
    legacy = vs.compile(sql, path="legacy").process(batch)
    assert_same_batches(direct, legacy, "direct vs legacy: " + context)


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    yield connection
    connection.close()


@pytest.mark.parametrize("ty", ["int", "float", "str", "bool"])
@SETTINGS
@given(data=st.data(), batch=batches())
def test_projection_matches_duckdb(
    con: duckdb.DuckDBPyConnection, ty: str, data: st.DataObject, batch: pa.RecordBatch
) -> None:
    exprs = [data.draw(expressions(ty), label="expr")]
    exprs += data.draw(
        st.lists(
            expressions(data.draw(st.sampled_from(["int", "float", "str", "bool"]))), max_size=2
        ),
        label="more",
    )
    select_list = ", ".join(f"{e} AS c{i}" for i, e in enumerate(exprs))
    run_both(con, batch, select_list)


@SETTINGS
@given(predicate=expressions("bool", depth=4), batch=batches())
def test_where_matches_duckdb(
    con: duckdb.DuckDBPyConnection, predicate: str, batch: pa.RecordBatch
) -> None:
    run_both(con, batch, ALL_COLUMNS, predicate)


@SETTINGS
@given(data=st.data(), batch=batches())
def test_projection_and_where_match_duckdb(
    con: duckdb.DuckDBPyConnection, data: st.DataObject, batch: pa.RecordBatch
) -> None:
    ty = data.draw(st.sampled_from(["int", "float", "str"]))
    select_list = f"s1, {data.draw(expressions(ty), label='expr')} AS c0, i1"
    run_both(con, batch, select_list, data.draw(expressions("bool"), label="where"))


@pytest.mark.parametrize("ty", ["dec", "bool", "str"])
@SETTINGS
@given(data=st.data(), batch=batches())
def test_decimal_expressions_match_duckdb(
    con: duckdb.DuckDBPyConnection, ty: str, data: st.DataObject, batch: pa.RecordBatch
) -> None:
    expr = data.draw(expressions(ty, dec=True), label="expr")
    where = data.draw(expressions("bool", dec=True, depth=2), label="where")
    run_both(con, batch, f"{expr} AS c0, d1", where)


@SETTINGS
@given(batch=batches(), cut=st.integers(0, 25), predicate=expressions("bool"))
def test_split_input_gives_the_same_rows(batch: pa.RecordBatch, cut: int, predicate: str) -> None:
    """A stateless query over a Table of two chunks returns the rows of one batch.

    (An empty Table is covered by test_query_api.py::test_process_empty_table.)
    """
    assume(batch.num_rows > 0)
    sql = f"SELECT i1, f1 + i2 AS x, UPPER(s1) AS u FROM t WHERE {predicate}"
    whole = vs.compile(sql).process(batch)
    cut = min(cut, batch.num_rows)
    table = pa.Table.from_batches([batch.slice(0, cut), batch.slice(cut)], schema=batch.schema)
    query = vs.compile(sql)
    split = query.process(table)
    assert_same_batches(whole, split, sql)
    assert query.metrics()["records_in"] == batch.num_rows
    assert query.metrics()["records_out"] == whole.num_rows
