"""Records of every Arrow type, as GROUP BY keys and aggregate inputs, against DuckDB.

Each example builds a table with a key column ``k`` and a value column ``v`` of two
random Arrow types (signed and unsigned integers at their limits, uint64 at and beyond
2^63, float32/float64 with NaN, infinities and -0.0, decimals at their precision, plain,
large, view and dictionary strings (dictionaries with duplicate and unused entries),
booleans, timestamps of every unit with and without a zone, dates, binary, and types the
boundary may refuse), with NULLs, and a small integer column ``g``. It feeds the table
to ``SELECT k, COUNT(*), COUNT(v), COUNT(DISTINCT v), SUM(v), AVG(v), MIN(v), MAX(v),
FIRST_VALUE(v), LAST_VALUE(v) FROM t GROUP BY k`` in random batch splits (empty and
sliced batches included, or as one chunked Table).

Under ``EMIT CHANGES`` every input row emits one row, in input order, holding its group's
running aggregates; so the row emitted for the last input row of a group must equal
DuckDB's ``GROUP BY`` over the whole input (the group as DuckDB forms it, so a key
velostream merges or splits wrongly shows as a wrong count). FIRST_VALUE/LAST_VALUE are
compared with DuckDB's first/last non-NULL value in input order. When the whole query is
refused, each aggregate is tried alone (by ``k`` and by ``g``): every query ends in rows
or a ``VelostreamError`` subclass with a message, never another exception.

The second property feeds ``process`` lists of dicts with random JSON-like values (mixed
types, huge integers, NaN, nested lists and dicts, None, bytes): rows that hold exactly
the values given, or a ``DataError``.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from hostile_support import duckdb_table, hostile_settings, outcome, py_rows, py_values
from hypothesis import given
from hypothesis import strategies as st
from vs_compare import ROW_ID, same_value, with_row_id

import velostream as vs

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
NAN, INF = float("nan"), float("inf")

STRINGS = ["", "a", "A", "a ", " a", "é", "e\u0301", "\U0001f600", "\x00", "ß", "z" * 40]


def _dictionary(values: list[Any], rng: random.Random) -> pa.Array:
    """A dictionary array of ``values`` in one of several layouts.

    Plain encoding, int8 indices, a dictionary holding every value twice (equal values
    under different indices) and unused entries, or a NULL inside the dictionary.
    """
    layout = rng.choice(["plain", "int8", "duplicates", "null_entry"])
    if layout == "plain":
        return pa.array(values, pa.string()).dictionary_encode()
    if layout == "int8":
        return (
            pa.array(values, pa.string())
            .dictionary_encode()
            .cast(pa.dictionary(pa.int8(), pa.string()))
        )
    entries = [s for s in STRINGS if s in values] or ["unused"]
    if layout == "duplicates":
        dictionary = pa.array([*entries, *entries, "never used"], pa.string())
        indices = [
            None if v is None else entries.index(v) + rng.choice([0, len(entries)]) for v in values
        ]
    else:
        dictionary = pa.array([*entries, None], pa.string())
        indices = [len(entries) if v is None else entries.index(v) for v in values]
    return pa.DictionaryArray.from_arrays(pa.array(indices, pa.int32()), dictionary)


@dataclass(frozen=True)
class Kind:
    """An Arrow type, a pool of hostile values, and how to build an array of them."""

    type: pa.DataType
    pool: tuple[Any, ...]
    numeric: bool = False
    build: Callable[[list[Any], random.Random], pa.Array] | None = None

    def array(self, values: list[Any], rng: random.Random) -> pa.Array:
        if self.build is not None:
            return self.build(values, rng)
        return pa.array(values, self.type)


def _ints(bits: int) -> tuple[int, ...]:
    top = 2 ** (bits - 1) - 1
    return (top, -top - 1, top - 1, 0, 1, -1, 5, 5, 7)


def _uints(bits: int) -> tuple[int, ...]:
    top = 2**bits - 1
    return (top, top - 1, 0, 1, 5, 5, 2 ** (bits - 1), 2 ** (bits - 1) + 5)


def _timestamps(unit: str) -> tuple[int, ...]:
    # |2^40| seconds is far beyond year 9999 but inside DuckDB's range in every unit
    scale = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[unit]
    limit = 2**40 if unit == "s" else 2**62 // scale * scale // 4
    return (0, 1, -1, 1_700_000_000 * scale, 1_700_000_000 * scale + 1, limit, -limit)


def _decimals(places: int, digits: int) -> tuple[Decimal, ...]:
    top = 10**digits - 1
    units = (top, -top, 0, 1, -1, 150, 150, 10**places)
    return tuple(Decimal(f"{u}E-{places}") for u in units)


KINDS: dict[str, Kind] = {
    **{f"int{b}": Kind(getattr(pa, f"int{b}")(), _ints(b), True) for b in (8, 16, 32, 64)},
    **{f"uint{b}": Kind(getattr(pa, f"uint{b}")(), _uints(b), True) for b in (8, 16, 32, 64)},
    "float32": Kind(
        pa.float32(), (NAN, INF, -INF, -0.0, 0.0, 3.4028234663852886e38, 1e-45, 1.5, -2.25), True
    ),
    "float64": Kind(
        pa.float64(),
        (NAN, INF, -INF, -0.0, 0.0, 1.7976931348623157e308, 5e-324, 1.5, -2.25, 0.1, 0.2),
        True,
    ),
    "decimal(10,2)": Kind(pa.decimal128(10, 2), _decimals(2, 10), True),
    "decimal(38,0)": Kind(pa.decimal128(38, 0), _decimals(0, 38), True),
    "decimal(38,10)": Kind(pa.decimal128(38, 10), _decimals(10, 38), True),
    "string": Kind(pa.string(), tuple(STRINGS)),
    "large_string": Kind(pa.large_string(), tuple(STRINGS)),
    "string_view": Kind(pa.string_view(), tuple(STRINGS)),
    "dictionary": Kind(pa.dictionary(pa.int32(), pa.string()), tuple(STRINGS), build=_dictionary),
    "bool": Kind(pa.bool_(), (True, False)),
    **{
        f"timestamp({unit}, {tz})": Kind(pa.timestamp(unit, tz=tz), _timestamps(unit))
        for unit in ("s", "ms", "us", "ns")
        for tz in (None, "UTC", "Asia/Kolkata")
    },
    "date32": Kind(pa.date32(), (0, 1, -1, 19_000, -719_162, 2_932_896)),
    "binary": Kind(pa.binary(), (b"", b"a", b"\x00", b"\xff\xfe", b"a\x00", b"\x00a")),
    # Types the boundary may refuse (then with a VelostreamError, never anything else).
    "large_binary": Kind(pa.large_binary(), (b"", b"a", b"\xff")),
    "fixed_size_binary": Kind(pa.binary(2), (b"ab", b"\x00\x00", b"\xff\xff")),
    "float16": Kind(pa.float16(), (1.5, -0.0, INF, NAN), True),
    "time32": Kind(pa.time32("ms"), (0, 1, 86_399_999)),
    "duration": Kind(pa.duration("ms"), (0, 1, -1, INT64_MAX)),
    "date64": Kind(pa.date64(), (0, 86_400_000)),
    "list": Kind(pa.list_(pa.int64()), ((), (1,), (1, None), (INT64_MAX,))),
    "struct": Kind(pa.struct([("x", pa.int64())]), ({"x": 1}, {"x": None}, {"x": 2})),
    "null": Kind(pa.null(), (None,)),
}

# Aggregates: (velostream SQL, DuckDB SQL, order-sensitive); {v} is the value column.
AGGREGATES = {
    "c": ("COUNT(v)", "COUNT(v)"),
    "cd": ("COUNT(DISTINCT v)", "COUNT(DISTINCT v)"),
    "s": ("SUM(v)", "SUM(v)"),
    "a": ("AVG(v)", "AVG(v)"),
    "mn": ("MIN(v)", "MIN(v)"),
    "mx": ("MAX(v)", "MAX(v)"),
    "fv": ("FIRST_VALUE(v)", f"arg_min(v, {ROW_ID}) FILTER (WHERE v IS NOT NULL)"),
    "lv": ("LAST_VALUE(v)", f"arg_max(v, {ROW_ID}) FILTER (WHERE v IS NOT NULL)"),
}


@st.composite
def grouped_inputs(draw: st.DrawFn) -> tuple[str, str, pa.RecordBatch, list[tuple[int, int]], bool]:
    """(key kind, value kind, batch of k/g/v, [lo, hi) pieces, as one Table?)."""
    key = draw(st.sampled_from(sorted(KINDS)), label="key type")
    value = draw(st.sampled_from(sorted(KINDS)), label="value type")
    n = draw(st.integers(0, 40), label="rows")
    rng = random.Random(draw(st.integers(0, 2**32), label="seed"))
    distinct = rng.randint(1, 6)  # few distinct keys, so that groups collide

    def column(kind: Kind, pool_size: int | None) -> pa.Array:
        pool = list(kind.pool)
        if pool_size is not None:
            pool = rng.sample(pool, min(pool_size, len(pool)))
        values = [None if rng.random() < 0.2 else rng.choice(pool) for _ in range(n)]
        return kind.array(values, rng)

    batch = pa.RecordBatch.from_arrays(
        [
            column(KINDS[key], distinct),
            pa.array(
                [None if rng.random() < 0.2 else rng.randint(0, 3) for _ in range(n)], pa.int32()
            ),
            column(KINDS[value], None),
        ],
        names=["k", "g", "v"],
    )
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=5), label="cuts"))
    bounds = [0, *cuts, n]
    pieces = list(itertools.pairwise(bounds))
    return key, value, batch, pieces, draw(st.booleans(), label="as table")


def _run_velostream(sql: str, batch: pa.RecordBatch, pieces: list[tuple[int, int]], as_table: bool):
    query = vs.compile(sql)
    slices = [batch.slice(lo, hi - lo) for lo, hi in pieces]
    if as_table:
        outputs = [query.process(pa.Table.from_batches(slices, schema=batch.schema))]
    else:
        outputs = [query.process(piece) for piece in slices]
    rest = query.flush()
    assert rest.num_rows == 0, f"{sql}: flush of an EMIT CHANGES query returned rows"
    rows = [row for out in outputs for row in py_rows(out)]
    assert len(rows) == batch.num_rows, (
        f"{sql}: {batch.num_rows} input rows emitted {len(rows)} rows (EMIT CHANGES emits one "
        "row per input row)"
    )
    return rows


def _close_float(got: Any, want: Any, scale: Any) -> bool:
    """A float aggregate equal up to the rounding of a sum of values of this scale."""
    if not isinstance(got, float) or not isinstance(want, (float, int, Decimal)):
        return same_value(got, want)
    want = float(want)
    if not (math.isfinite(got) and math.isfinite(want)):
        return same_value(got, want)
    bound = 1e-9 * max(abs(want), float(scale or 0.0)) + 1e-300
    return abs(got - want) <= bound


def _decimal_average(total: Decimal, count: int, scale: int) -> Decimal:
    """AVG of decimals as documented: exact, to max(scale, 6) places, half away from 0."""
    with localcontext() as context:
        context.prec = 100
        return (total / count).quantize(Decimal(1).scaleb(-max(scale, 6)), ROUND_HALF_UP)


def check_grouped(
    con: duckdb.DuckDBPyConnection,
    batch: pa.RecordBatch,
    pieces: list[tuple[int, int]],
    as_table: bool,
    key: str,
    aggregates: list[str],
    value_kind: Kind,
    context: str,
) -> bool:
    """One GROUP BY query in both engines; returns whether velostream computed it."""
    select = ", ".join(f"{AGGREGATES[name][0]} AS {name}" for name in aggregates)
    sql = f"SELECT {key}, COUNT(*) AS n{', ' + select if select else ''} FROM t GROUP BY {key}"
    context = f"{sql}\n{context}"
    result = outcome(lambda: _run_velostream(sql, batch, pieces, as_table), context)
    if not result.ok:
        return False
    duck_select = ", ".join(f"{AGGREGATES[name][1]} AS {name}" for name in aggregates)
    # scale: the sum of the magnitudes, which bounds the rounding error of a float sum;
    # exact: the exact sum of decimals, for velostream's exact decimal AVG
    numeric = value_kind.numeric
    is_decimal = pa.types.is_decimal(value_kind.type)
    duck_sql = (
        f"SELECT max({ROW_ID}) AS last, {key}, COUNT(*) AS n"
        f"{', ' + duck_select if duck_select else ''}, "
        f"{'SUM(abs(CAST(v AS DOUBLE)))' if numeric else 'NULL'} AS scale, COUNT(v) AS count, "
        f"{'SUM(v)' if is_decimal else 'NULL'} AS exact FROM t GROUP BY {key}"
    )
    try:
        con.register("t", with_row_id(batch))
        expected = py_rows(duckdb_table(con, duck_sql))
    except duckdb.Error:
        return True  # DuckDB does not compute it: velostream's rows cannot be checked
    finally:
        con.unregister("t")
    names = [key, "n", *aggregates]
    for last, *want, scale, count, exact in expected:
        got = result.value[last]
        for name, g, w in zip(names, got, want, strict=True):
            if name == "a" and isinstance(g, Decimal) and exact is not None:
                ok = g == _decimal_average(exact, count, value_kind.type.scale)
            elif name in ("s", "a"):
                ok = _close_float(g, w, scale if name == "s" else (scale or 0.0) / max(1, count))
            else:
                ok = same_value(g, w)
            assert ok, (
                f"group {want[0]!r} (its last row is input row {last}): {name} is {g!r} in "
                f"velostream, {w!r} in DuckDB\nvelostream row {got!r}\nDuckDB row {want!r}\n"
                f"{context}"
            )
    return True


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect(config={"threads": 1})
    yield connection
    connection.close()


@hostile_settings(150)
@given(inputs=grouped_inputs())
def test_every_arrow_type_groups_and_aggregates_like_duckdb(
    con: duckdb.DuckDBPyConnection,
    inputs: tuple[str, str, pa.RecordBatch, list[tuple[int, int]], bool],
) -> None:
    key_kind, value_kind, batch, pieces, as_table = inputs
    context = (
        f"k: {key_kind}, v: {value_kind}, pieces {pieces}, as table {as_table}\n"
        f"k = {py_values(batch.column(0))}\ng = {batch.column(1).to_pylist()}\n"
        f"v = {py_values(batch.column(2))}"
    )
    names = list(AGGREGATES)
    kind = KINDS[value_kind]
    if check_grouped(con, batch, pieces, as_table, "k", names, kind, context):
        return
    # Refused as a whole: each aggregate alone, by the hostile key and by a plain one.
    for name in names:
        for key in ("k", "g"):
            check_grouped(con, batch, pieces, as_table, key, [name], kind, context)


# --------------------------------------------------------------------------- lists of dicts

# No NUL in field names: see test_a_field_name_with_a_nul_is_kept_or_refused.
FIELD_NAMES = ["a", "b", "A", "é", "", "a b", "1", "\U0001f600"]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, 1, -1, INT64_MAX, INT64_MIN, 2**63, 2**64, -(2**63) - 1, 2**70, 2**53 + 1]),
    st.integers(-1000, 1000),
    st.sampled_from([NAN, INF, -INF, -0.0, 0.5, 1e308, 5e-324]),
    st.text(alphabet=["a", "é", "\x00", "\U0001f600", '"', "'", "\\"], max_size=4),
    st.sampled_from([b"", b"\xff", b"a"]),
)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(FIELD_NAMES), inner, max_size=3),
    )


json_values = st.recursive(json_scalars, _containers, max_leaves=6)
rows_of_dicts = st.lists(
    st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=3), max_size=5
)


def same_json(given: Any, got: Any) -> bool:
    """The value came back as given: same type family, same value, NaN as NaN.

    An int may come back as a float only if it is exactly that float; a dict may gain
    keys with None (a struct column holds every field of every row).
    """
    if given is None or got is None:
        return given is None and got is None
    if isinstance(given, bool) or isinstance(got, bool):
        return type(given) is type(got) and given == got
    if isinstance(given, (int, float)) and isinstance(got, (int, float)):
        if isinstance(given, float) and math.isnan(given):
            return isinstance(got, float) and math.isnan(got)
        return given == got
    if isinstance(given, str) or isinstance(got, str):
        return type(given) is type(got) and given == got
    if isinstance(given, bytes):
        return isinstance(got, bytes) and given == got
    if isinstance(given, list):
        return (
            isinstance(got, list)
            and len(given) == len(got)
            and all(same_json(a, b) for a, b in zip(given, got, strict=True))
        )
    if isinstance(given, dict):
        if not isinstance(got, dict) or not set(given) <= set(got):
            return False
        return all(same_json(given.get(key), got[key]) for key in got)
    return given == got


@hostile_settings(200)
@given(rows=rows_of_dicts)
def test_lists_of_dicts_give_their_values_back_or_a_data_error(rows: list[dict[str, Any]]) -> None:
    context = f"process({rows!r})"
    result = outcome(lambda: vs.compile("SELECT * FROM t").process(rows), context)
    if not result.ok:
        assert isinstance(result.error, vs.DataError), (
            f"{type(result.error).__name__} instead of DataError: {result.error}\n{context}"
        )
        return
    batch = result.value
    names = list(dict.fromkeys(name for row in rows for name in row))
    assert batch.schema.names == names, (
        f"the columns are {batch.schema.names}, the records' fields {names}\n{context}"
    )
    assert batch.num_rows == len(rows), (
        f"{len(rows)} records in, {batch.num_rows} rows out\n{context}"
    )
    for name, column in zip(names, batch.columns, strict=True):
        try:
            values = column.to_pylist()
        except ValueError as exc:  # e.g. a struct with two fields of the same name
            raise AssertionError(
                f"column {name!r} ({column.type}) is unreadable: {exc}\n{context}"
            ) from None
        for index, (row, got) in enumerate(zip(rows, values, strict=True)):
            assert same_json(row.get(name), got), (
                f"row {index}, field {name!r}: given {row.get(name)!r}, got {got!r}\n{context}"
            )


@pytest.mark.parametrize(
    "data",
    [
        [{"a\x00x": 1, "a\x00y": 2}],
        pa.record_batch({"a\x00x": [1], "a\x00y": [2]}),
        [{"s": {"\x00": 1, "": 2}}],
    ],
    ids=["dicts", "batch", "nested"],
)
def test_a_field_name_with_a_nul_is_kept_or_refused(data: Any) -> None:
    """Arrow's C interface ends names at a NUL: such names must not be cut silently
    (two columns would come out with the same name, and SELECT would pick one)."""
    result = outcome(lambda: vs.compile("SELECT * FROM t").process(data))
    if result.ok:
        given = (
            data.schema
            if isinstance(data, pa.RecordBatch)
            else pa.RecordBatch.from_pylist(data).schema
        )
        assert result.value.schema == given, f"{given} came out as {result.value.schema}"


@pytest.mark.parametrize("kind", [pa.float64(), pa.float32()])
def test_count_distinct_counts_minus_zero_and_zero_once(
    con: duckdb.DuckDBPyConnection, kind: pa.DataType
) -> None:
    """-0.0 = 0.0 in SQL: GROUP BY already puts them in one group; DISTINCT must agree."""
    values = pa.array([-0.0, 0.0, 1.5, float("nan"), float("nan"), None], kind)
    batch = pa.record_batch({"v": values})
    sql = "SELECT COUNT(DISTINCT v) AS d, COUNT(*) AS n FROM t"
    got = outcome(lambda: vs.compile(sql).process(batch), sql)
    con.register("t", batch)
    try:
        want = con.sql(sql).fetchall()[-1]
    finally:
        con.unregister("t")
    if got.ok:
        last = got.value.to_pylist()[-1]
        assert (last["d"], last["n"]) == want, f"{sql} over {values}: {last}, DuckDB {want}"
