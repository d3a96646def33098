"""Findings of issue 9 in the engine and at the boundary: each failed before the fix."""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal, localcontext

import duckdb
import pyarrow as pa
import pytest

import velostream as vs
from velostream import _core


def run(sql: str, batch: pa.RecordBatch) -> list[dict]:
    return vs.compile(sql).process(batch).to_pylist()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT a FROM t WHERE NULL",
        "SELECT a, COUNT(*) AS n FROM t GROUP BY a HAVING NULL",
        "SELECT a FROM t WHERE a > 1 AND NULL",
    ],
)
def test_null_conditions_keep_no_row(sql: str) -> None:
    # WHERE NULL / HAVING NULL raised pyo3_runtime.PanicException.
    assert run(sql, pa.record_batch({"a": [1, 2, 3]})) == []


def test_uint64_keys_above_2_63_are_their_own_groups() -> None:
    # They were cast to Int64 (NULL when out of range) and merged with the NULL group.
    u = pa.array([2**63 + 5, 2**63 + 7, None, 2**63 + 5, 1], pa.uint64())
    out = run("SELECT u, COUNT(*) AS n FROM t GROUP BY u", pa.record_batch({"u": u}))
    assert [r["n"] for r in out] == [1, 1, 1, 2, 1]
    con = duckdb.connect()
    con.register("t", pa.table({"u": u}))
    expected = dict(con.execute("SELECT u, COUNT(*) FROM t GROUP BY u").fetchall())
    final = {r["u"]: r["n"] for r in out}
    assert final == expected


def test_max_of_nan_is_nan_and_min_skips_it() -> None:
    out = run(
        "SELECT g, MAX(x) AS hi, MIN(x) AS lo FROM t GROUP BY g",
        pa.record_batch({"g": [1, 1, 1, 2], "x": [1.0, math.nan, 3.0, math.nan]}),
    )
    assert [r["lo"] for r in out] == [1.0, 1.0, 1.0, None] or out[3]["lo"] != out[3]["lo"]
    assert out[0]["hi"] == 1.0
    assert math.isnan(out[1]["hi"]) and math.isnan(out[2]["hi"])
    assert math.isnan(out[3]["hi"]) and math.isnan(out[3]["lo"])  # all NaN: NaN both


DOUBLES = [
    0.15,
    0.285,
    0.125,
    2.5,
    -2.5,
    1.005,
    15.0,
    25.0,
    -25.0,
    123.456,
    1e300,
    5e-324,
    1.23456789e-20,
    0.5,
    -0.0,
    9.995,
    2.675,
    1e22,
    4.35,
    1234567.891,
]


@pytest.mark.parametrize("digits", [-3, -1, 0, 1, 2, 3, 10, 22, 25, 30, 300])
def test_round_on_doubles_is_exact_and_agrees_with_duckdb(digits: int) -> None:
    # ROUND(0.15, 1) was 0.2 but ROUND(0.285, 2) was 0.28: no single rule.
    out = run(f"SELECT ROUND(x, {digits}) AS r FROM t", pa.record_batch({"x": DOUBLES}))
    con = duckdb.connect()
    for x, row in zip(DOUBLES, out, strict=True):
        # The oracle: the double's exact value rounded half away from zero.
        with localcontext(prec=2000):
            exact = Decimal(x).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
        assert row["r"] == float(exact), (x, digits, row["r"])
        if abs(digits) <= 22:  # beyond, DuckDB's own result is off by an ulp
            (expected,) = con.execute(f"SELECT ROUND(?::DOUBLE, {digits})", [x]).fetchone()
            assert row["r"] == expected, (x, digits, row["r"], expected)


def test_round_of_integers_to_negative_digits_never_wraps() -> None:
    # ROUND(x, -19) returned -8446744073709551616.
    batch = pa.record_batch({"i": pa.array([1, 4 * 10**18, -(4 * 10**18), 15, -15], pa.int64())})
    assert run("SELECT ROUND(i, -19) AS r FROM t", batch) == [{"r": 0}] * 5
    assert [r["r"] for r in run("SELECT ROUND(i, -1) AS r FROM t", batch)] == [
        0,
        4 * 10**18,
        -(4 * 10**18),
        20,
        -20,
    ]
    big = pa.record_batch({"i": pa.array([9 * 10**18], pa.int64())})
    with pytest.raises(vs.DataError, match="ROUND"):
        run("SELECT ROUND(i, -19) AS r FROM t", big)


def test_process_after_flush_is_a_clear_error() -> None:
    q = vs.compile("SELECT a, COUNT(*) AS n FROM t GROUP BY a")
    q.process(pa.record_batch({"a": [1]}))
    q.flush()
    with pytest.raises(vs.VelostreamError, match=r"process\(\) after flush\(\)"):
        q.process(pa.record_batch({"a": [1]}))


def test_schema_change_names_the_column_and_both_types() -> None:
    q = vs.compile("SELECT a, SUM(b) AS s FROM t GROUP BY a")
    q.process(pa.record_batch({"a": [1], "b": [1]}))
    with pytest.raises(vs.SqlValidationError) as info:
        q.process(pa.record_batch({"a": [1], "b": [1.5]}))
    assert "column 'b' was int64, now float64" in str(info.value)
    assert "Schema {" not in str(info.value)  # no Rust debug dump


def test_unknown_column_suggests_the_nearest() -> None:
    with pytest.raises(vs.SqlValidationError, match=r"did you mean 'amount'\?"):
        run("SELECT amout FROM t", pa.record_batch({"amount": [1]}))


@pytest.mark.parametrize(
    ("rows", "field", "message"),
    [
        ([{"a": 1}, {"a": "x"}], "a", "row 1"),
        ([{"a": 2**70}], "a", "row 0"),
        ([{"a": 1}, {"b": [1, "x"]}], "b", "row 1"),
    ],
)
def test_lists_of_dicts_are_converted_under_the_error_rules(
    rows: list, field: str, message: str
) -> None:
    # A raw pyarrow.lib.ArrowInvalid or OverflowError came out before.
    with pytest.raises(vs.DataError, match=message) as info:
        vs.compile("SELECT * FROM t").process(rows)
    assert info.value.field == field


@pytest.mark.parametrize("data", [[1, 2], "text", 3.5, {"a": [1]}, [{1: 2}]])
def test_anything_else_given_to_process_is_a_data_error(data: object) -> None:
    with pytest.raises(vs.DataError):
        vs.compile("SELECT * FROM t").process(data)


def test_a_panic_at_the_boundary_is_an_internal_error(capfd: pytest.CaptureFixture) -> None:
    with pytest.raises(vs.InternalError) as info:
        _core._panic_at_boundary("boom")
    # Rust's own panic report (message and backtrace) is not printed: the error says it.
    assert capfd.readouterr().err == ""
    assert info.value.component == "boundary test"
    assert "boom" in str(info.value)


# Snapshots ---------------------------------------------------------------------------

SQL = "SELECT k, COUNT(*) AS n, SUM(v) AS s, MAX(name) AS m FROM t GROUP BY k"


def _state_after(q: vs.Query) -> list[dict]:
    return q.process(pa.record_batch({"k": [1, 2], "v": [10, 20], "name": ["x", "y"]})).to_pylist()


def _snapshot() -> tuple[bytes, list[dict]]:
    q = vs.compile(SQL)
    q.process(pa.record_batch({"k": [1, 1, 2, 3], "v": [1, 2, 3, 4], "name": ["a", "b", "c", "d"]}))
    blob = q.snapshot()
    return blob, _state_after(q)


def test_every_single_bit_flip_of_a_snapshot_is_refused_and_changes_nothing() -> None:
    # Before: 9 of 784 flips panicked and 8 restored different state.
    blob, expected = _snapshot()
    fresh = _state_after(vs.compile(SQL))
    q = vs.compile(SQL)
    for bit in range(len(blob) * 8):
        corrupted = bytearray(blob)
        corrupted[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(vs.SnapshotError):
            q.restore(bytes(corrupted))
    # The refused snapshots left the state as it was (empty).
    assert _state_after(q) == fresh
    assert _state_after(vs.compile(SQL).restore(blob)) == expected


@pytest.mark.parametrize("cut", [0, 1, 5, 21, 22, 40, -1])
def test_truncated_or_foreign_snapshots_name_what_is_wrong(cut: int) -> None:
    blob, _ = _snapshot()
    with pytest.raises(vs.SnapshotError, match="snapshot"):
        vs.compile(SQL).restore(blob[:cut])
    with pytest.raises(vs.SnapshotError, match="trailing"):
        vs.compile(SQL).restore(blob + b"\0")
    with pytest.raises(vs.SnapshotError, match="different query"):
        vs.compile(SQL.replace("MAX", "MIN")).restore(blob)
    with pytest.raises(vs.SnapshotError, match="version"):
        vs.compile(SQL).restore(blob[:4] + b"\x01\x00" + blob[6:])


def test_a_snapshot_restores_into_the_same_query_written_differently() -> None:
    blob, expected = _snapshot()
    respaced = SQL.replace(" ", "\n   ").replace("SELECT\n", "SELECT /* c */\n")
    assert _state_after(vs.compile(respaced).restore(blob)) == expected


@pytest.mark.parametrize(
    "strings",
    [
        pa.array(["x", "y", "x", None]).dictionary_encode(),
        pa.array(["x", "y", "x", None], pa.large_string()),
        pa.array(["x", "y", "x", None], pa.string_view()),
    ],
    ids=["dictionary", "large", "view"],
)
def test_every_string_layout_computes_like_plain_strings(strings: pa.Array) -> None:
    # UPPER over a dictionary column panicked ("string array").
    batch = pa.record_batch({"k": strings, "v": [1, 2, 3, 4]})
    plain = pa.record_batch({"k": pa.array(["x", "y", "x", None]), "v": [1, 2, 3, 4]})
    for sql in [
        "SELECT k, COUNT(*) AS n, SUM(v) AS s FROM t GROUP BY k",
        "SELECT MIN(k) AS lo, MAX(k) AS hi, COUNT(DISTINCT k) AS d FROM t",
        "SELECT UPPER(k) AS u, k || 'a' AS c, LENGTH(k) AS n FROM t WHERE k = 'x' OR k IS NULL",
    ]:
        assert run(sql, batch) == run(sql, plain), sql


@pytest.mark.parametrize("sql", ["SELECT *, a FROM t", "SELECT a, * FROM t", "SELECT *, * FROM t"])
def test_star_that_repeats_a_name_is_refused(sql: str) -> None:
    # `SELECT *, a` wrote the column `a` twice (duplicate JSON keys in a sink).
    with pytest.raises(vs.SqlValidationError, match="duplicate output column name 'a'"):
        run(sql, pa.record_batch({"a": [1], "b": [2]}))
    assert run("SELECT *, a AS a2 FROM t", pa.record_batch({"a": [1]})) == [{"a": 1, "a2": 1}]


def test_an_empty_batch_evaluates_nothing() -> None:
    # The direct path raised DataError for a failing constant over 0 rows; the legacy
    # path (one call per record) never evaluated it.
    sql = "SELECT CAST(CAST(1 AS BIGINT) % CAST(0 AS BIGINT) AS INT) AS x FROM t"
    empty = pa.record_batch({"a": pa.array([], pa.int64())})
    for path in ("direct", "legacy"):
        assert vs.compile(sql, path=path).process(empty).num_rows == 0
    with pytest.raises(vs.DataError):
        vs.compile(sql).process(pa.record_batch({"a": [1]}))
