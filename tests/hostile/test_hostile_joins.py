"""Generated hostile input to stream-table joins: ON shapes, join.* values, tables and
streams of clashing types. Each is a result or a VelostreamError, never anything else."""

from __future__ import annotations

import pyarrow as pa
from hostile_support import hostile_settings, outcome
from hypothesis import given
from hypothesis import strategies as st

import velostream as vs

TYPES = [
    pa.int64(),
    pa.int32(),
    pa.uint64(),
    pa.string(),
    pa.float64(),
    pa.bool_(),
    pa.large_string(),
]
VALUES = {
    pa.int64(): st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
    pa.int32(): st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)),
    pa.uint64(): st.one_of(st.none(), st.integers(0, 2**64 - 1)),
    pa.string(): st.one_of(st.none(), st.text(max_size=6)),
    pa.large_string(): st.one_of(st.none(), st.text(max_size=6)),
    pa.float64(): st.one_of(st.none(), st.floats(allow_nan=True)),
    pa.bool_(): st.one_of(st.none(), st.booleans()),
}


@st.composite
def column(draw: st.DrawFn, rows: int) -> pa.Array:
    kind = draw(st.sampled_from(TYPES))
    return pa.array(draw(st.lists(VALUES[kind], min_size=rows, max_size=rows)), kind)


ON = st.sampled_from(
    [
        "s.k = t.k",
        "t.k = s.k",
        "s.k = t.k AND s.v = t.v",
        "CAST(s.k AS STRING) = t.k",
        "s.k + 1 = t.k",
        "s.k = t.v",
        "k = t.k",
        "s.k = k",
        "s.k = t.nope",
        "s.k = t.k OR s.v = t.v",
        "UPPER(s.v) = t.k",
    ]
)
PROPERTY_VALUES = st.one_of(
    st.sampled_from(
        ["emit_with_nulls", "skip_record", "use_defaults", "wait_and_retry", "fail", "", "x"]
    ),
    st.text(max_size=8),
)


@hostile_settings(max_examples=120)
@given(
    data=st.data(),
    on=ON,
    left=st.booleans(),
    strategy=PROPERTY_VALUES,
    default=st.text(max_size=6),
    timeout=st.sampled_from(["0s", "1ms", "-1s", "abc", "20ms", "10000000d"]),
    chunk=st.integers(1, 5),
)
def test_joins_on_hostile_input_give_rows_or_velostream_errors(
    data: st.DataObject,
    on: str,
    left: bool,
    strategy: str,
    default: str,
    timeout: str,
    chunk: int,
) -> None:
    rows, table_rows = data.draw(st.integers(0, 8)), data.draw(st.integers(0, 6))
    stream = pa.table({"k": data.draw(column(rows)), "v": data.draw(column(rows))})
    table = pa.table({"k": data.draw(column(table_rows)), "v": data.draw(column(table_rows))})
    kind = "LEFT JOIN" if left else "JOIN"
    sql = (
        f"SELECT s.k, t.v AS tv FROM s {kind} t ON {on} "
        f"WITH ('join.missing.strategy' = '{strategy.replace(chr(39), '')}', "
        f"'join.defaults.v' = '{default.replace(chr(39), '')}', 'join.wait.timeout' = '{timeout}')"
    )
    context = f"{sql}\nstream={stream.to_pylist()}\ntable={table.to_pylist()}"

    def run() -> list[pa.RecordBatch]:
        q = vs.compile(sql)
        q.attach_table("t", table)
        return [q.process(b) for b in stream.to_batches(max_chunksize=chunk)] + [q.flush()]

    result = outcome(run, context)
    if result.ok:
        out = pa.Table.from_batches(result.value)
        assert out.num_rows <= stream.num_rows, context
