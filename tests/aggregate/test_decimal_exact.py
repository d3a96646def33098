"""Decimal aggregates are exact (SPEC 12): SUM of decimal(p,s) is decimal(38,s), AVG of
decimal(p,s) is decimal(38, max(s,6)) rounded half away from zero. The oracle is plain
Python over ``Fraction``: the exact running sum and count of each group."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pyarrow as pa
import pytest
from agg_support import assert_rows, cut_points, hsettings, run_stream
from hypothesis import given
from hypothesis import strategies as st

D12 = pa.decimal128(12, 2)
D20 = pa.decimal128(20, 8)


def round_half_away(value: Fraction, scale: int) -> Decimal:
    scaled = value * 10**scale
    magnitude = abs(scaled)
    units = int(magnitude)  # floor of a non-negative value
    if magnitude - units >= Fraction(1, 2):
        units += 1
    if scaled < 0:
        units = -units
    return Decimal(units).scaleb(-scale)


@st.composite
def decimal_batches(draw: st.DrawFn) -> tuple[pa.RecordBatch, list[tuple[int, int]]]:
    n = draw(st.integers(0, 60))
    keys = draw(st.lists(st.sampled_from(["a", "b", "c", None]), min_size=n, max_size=n))
    cents = st.one_of(
        st.none(),
        st.integers(-3, 3),
        st.integers(-100_000, 100_000),
        st.integers(-(10**12) + 1, 10**12 - 1),
    )
    units = st.one_of(  # decimal(20,8): tiny values make AVG rounding ties frequent
        st.none(),
        st.integers(-2, 2),
        st.integers(-(10**9), 10**9),
        st.integers(-(10**20) + 1, 10**20 - 1),
    )
    d = [
        None if c is None else Decimal(c).scaleb(-2)
        for c in draw(st.lists(cents, min_size=n, max_size=n))
    ]
    e = [
        None if u is None else Decimal(u).scaleb(-8)
        for u in draw(st.lists(units, min_size=n, max_size=n))
    ]
    x = draw(st.lists(st.one_of(st.none(), st.integers(-5, 5)), min_size=n, max_size=n))
    batch = pa.record_batch(
        {
            "k": pa.array(keys, pa.string()),
            "d": pa.array(d, D12),
            "e": pa.array(e, D20),
            "x": pa.array(x, pa.int64()),
        }
    )
    return batch, draw(cut_points(n))


class Group:
    def __init__(self) -> None:
        self.sum = {"d": Fraction(0), "e": Fraction(0)}
        self.count = {"d": 0, "e": 0}
        self.min: dict[str, Decimal | None] = {"d": None, "e": None}
        self.max: dict[str, Decimal | None] = {"d": None, "e": None}
        self.first: dict[str, Decimal | None] = {"d": None, "e": None}
        self.last: dict[str, Decimal | None] = {"d": None, "e": None}
        self.distinct: dict[str, set[Decimal]] = {"d": set(), "e": set()}

    def add(self, col: str, value: Decimal | None) -> None:
        if value is None:
            return
        self.sum[col] += Fraction(value)
        self.count[col] += 1
        self.min[col] = value if self.min[col] is None else min(self.min[col], value)
        self.max[col] = value if self.max[col] is None else max(self.max[col], value)
        if self.first[col] is None:
            self.first[col] = value
        self.last[col] = value
        self.distinct[col].add(value)

    def total(self, col: str, scale: int) -> Decimal | None:
        if self.count[col] == 0:
            return None
        return round_half_away(self.sum[col], scale)  # exact: sum has `scale` digits

    def avg(self, col: str, scale: int) -> Decimal | None:
        if self.count[col] == 0:
            return None
        return round_half_away(self.sum[col] / self.count[col], max(scale, 6))


SELECT = (
    "k, SUM(d) AS sd, AVG(d) AS ad, SUM(e) AS se, AVG(e) AS ae, MIN(d) AS mind, "
    "MAX(e) AS maxe, FIRST_VALUE(d) AS fd, LAST_VALUE(e) AS le, COUNT(DISTINCT d) AS cdd"
)


def oracle_row(key: Any, g: Group) -> tuple[Any, ...]:
    return (
        key,
        g.total("d", 2),
        g.avg("d", 2),
        g.total("e", 8),
        g.avg("e", 8),
        g.min["d"],
        g.max["e"],
        g.first["d"],
        g.last["e"],
        len(g.distinct["d"]),
    )


HAVINGS: list[tuple[str | None, Callable[[Group], bool]]] = [
    (None, lambda g: True),
    ("SUM(d) > 0", lambda g: g.count["d"] > 0 and g.sum["d"] > 0),
    (
        "AVG(e) <= 0.00000001",
        lambda g: g.count["e"] > 0 and g.avg("e", 8) <= Decimal("0.00000001"),
    ),
    (
        "AVG(d) * 2 >= SUM(d) OR MIN(d) = 0.01",
        lambda g: (
            g.count["d"] > 0
            and (g.avg("d", 2) * 2 >= g.total("d", 2) or g.min["d"] == Decimal("0.01"))
        ),
    ),
]


@pytest.mark.parametrize(("having", "passes"), HAVINGS, ids=[str(h[0]) for h in HAVINGS])
@hsettings(max_examples=40)
@given(data=decimal_batches(), where=st.sampled_from([None, "x >= 0"]))
def test_decimal_aggregates_exact(having, passes, data, where) -> None:
    batch, pieces = data
    sql = f"SELECT {SELECT} FROM t"
    if where:
        sql += f" WHERE {where}"
    sql += " GROUP BY k"
    if having:
        sql += f" HAVING {having}"
    result = run_stream(sql, batch, pieces)

    out_schema = result.table.schema
    assert out_schema.field("sd").type == pa.decimal128(38, 2)
    assert out_schema.field("ad").type == pa.decimal128(38, 6)
    assert out_schema.field("se").type == pa.decimal128(38, 8)
    assert out_schema.field("ae").type == pa.decimal128(38, 8)

    groups: dict[Any, Group] = {}
    expected = []
    for row in batch.to_pylist():
        if where and not (row["x"] is not None and row["x"] >= 0):
            continue
        g = groups.setdefault(row["k"], Group())
        g.add("d", row["d"])
        g.add("e", row["e"])
        if passes(g):
            expected.append(oracle_row(row["k"], g))
    got = result.rows()
    assert_rows(got, expected, sql)
    # exact also in representation: every Decimal carries exactly the column's scale
    for row in got:
        for value, scale in zip(row[1:5], (2, 6, 8, 8), strict=True):
            if value is not None:
                assert value.as_tuple().exponent == -scale, (sql, row)
    assert result.flushed.num_rows == 0


@pytest.mark.parametrize(
    ("type_", "values", "expected"),
    [
        # scale 2 -> 6: 0.01 / 32 = 0.0003125 -> 0.000313 (half away from zero)
        (D12, ["0.01"] + ["0"] * 31, "0.000313"),
        (D12, ["-0.01"] + ["0"] * 31, "-0.000313"),
        # 0.02 / 3 = 0.0066666.. -> 0.006667 ; -0.02 / 3 -> -0.006667
        (D12, ["0.01", "0.01", "0"], "0.006667"),
        (D12, ["-0.01", "-0.01", "0"], "-0.006667"),
        # scale 8 stays 8: 0.5 ulp ties round away from zero (not to even)
        (D20, ["0.00000001", "0"], "0.00000001"),
        (D20, ["-0.00000001", "0"], "-0.00000001"),
        (D20, ["0.00000005", "0"], "0.00000003"),
        (D20, ["-0.00000005", "0"], "-0.00000003"),
        (D20, ["0.00000001", "0", "0"], "0.00000000"),
        # big values stay exact (no float round trip)
        (D20, ["999999999999.99999999", "999999999999.99999998"], "999999999999.99999999"),
        (D12, ["9999999999.99", "9999999999.98", "9999999999.99"], "9999999999.986667"),
    ],
)
def test_decimal_avg_rounding(type_, values, expected) -> None:
    batch = pa.record_batch({"d": pa.array([Decimal(v) for v in values], type_)})
    result = run_stream("SELECT AVG(d) AS a, SUM(d) AS s FROM t", batch, [(0, len(values))])
    last = result.rows()[-1]
    assert last[0] == Decimal(expected), (values, last)
    assert last[1] == sum(Decimal(v) for v in values)


def test_sum_of_many_large_decimals_exceeds_input_precision() -> None:
    """decimal(12,2) input, the sum needs more than 12 digits: decimal(38,2) holds it."""
    values = [Decimal("9999999999.99")] * 1000
    batch = pa.record_batch({"d": pa.array(values, D12)})
    result = run_stream("SELECT SUM(d) AS s FROM t", batch, [(0, 400), (400, 1000)])
    assert result.rows()[-1] == (Decimal("9999999999990.00"),)
