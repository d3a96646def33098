"""Stream-table joins in the embedded API: ``[LEFT] JOIN table ON ...`` with
``Query.attach_table`` (SPEC sections 2, 4 and 8), checked against DuckDB."""

from __future__ import annotations

import threading
import time

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import velostream as vs

ORDERS = pa.table(
    {
        "oid": pa.array([1, 2, 3, 4, 5, 6], pa.int64()),
        "cid": pa.array([10, 20, 30, 10, None, 40], pa.int64()),
        "region": ["eu", "us", "eu", "eu", "us", "us"],
        "amount": [1.5, 2.0, 3.0, 4.0, 5.0, 6.0],
    }
)
CUSTOMERS = pa.table(
    {
        "id": pa.array([10, 20, 40, 50], pa.int64()),
        "name": ["ann", "bob", "dan", "eve"],
        "tier": ["gold", "silver", "gold", "bronze"],
    }
)


def run(sql: str, tables: dict[str, pa.Table], stream: pa.Table, **kw: object) -> pa.Table:
    q = vs.compile(sql, **kw)  # type: ignore[arg-type]
    for name, table in tables.items():
        q.attach_table(name, table)
    out = [q.process(b) for b in stream.to_batches(max_chunksize=2)]
    out.append(q.flush())
    return pa.Table.from_batches(out)


def duck(sql: str, **tables: pa.Table) -> list[tuple]:
    con = duckdb.connect()
    for name, table in tables.items():
        con.register(name, table)
    return con.sql(sql).fetchall()


def rows(table: pa.Table) -> list[tuple]:
    return [tuple(r.values()) for r in table.to_pylist()]


@pytest.mark.parametrize("kind", ["JOIN", "LEFT JOIN"])
def test_join_equals_duckdb(kind: str) -> None:
    sql = (
        f"SELECT o.oid, c.name, tier, amount * 2 AS dbl FROM orders o {kind} customers c "
        "ON o.cid = c.id"
    )
    out = run(sql, {"customers": CUSTOMERS}, ORDERS)
    assert rows(out) == duck(sql + " ORDER BY oid", orders=ORDERS, customers=CUSTOMERS)


def test_inner_join_is_the_default_skip_and_counts_misses() -> None:
    q = vs.compile("SELECT oid FROM orders JOIN customers ON orders.cid = customers.id")
    q.attach_table("customers", CUSTOMERS)
    out = q.process(ORDERS)
    assert out.column("oid").to_pylist() == [1, 2, 4, 6]
    # Order 3 (no customer 30) and order 5 (NULL key, which equals nothing).
    assert q.metrics()["join_misses"] == 2


def test_composite_and_string_keys_with_the_key_order_of_on_free() -> None:
    prices = pa.table(
        {
            "market": ["eu", "eu", "us", "us"],
            "sym": ["A", "B", "A", "B"],
            "px": [1.0, 2.0, 3.0, 4.0],
        }
    )
    trades = pa.table(
        {
            "sym": ["A", "B", "A", "C", "B"],
            "venue": ["us", "eu", "eu", "eu", "us"],
            "q": [1, 2, 3, 4, 5],
        }
    )
    # ON lists the key columns in the other order than the table's columns.
    sql = (
        "SELECT t.sym, t.venue, p.px * t.q AS notional FROM trades AS t "
        "LEFT JOIN prices AS p ON t.venue = p.market AND p.sym = t.sym"
    )
    out = run(sql, {"prices": prices}, trades)
    expected = duck(sql, trades=trades, prices=prices)
    assert sorted(rows(out), key=repr) == sorted(expected, key=repr)
    assert len(out) == 5


def test_star_of_one_relation_and_unqualified_columns() -> None:
    sql = "SELECT o.*, name FROM orders o JOIN customers c ON o.cid = c.id WHERE tier = 'gold'"
    out = run(sql, {"customers": CUSTOMERS}, ORDERS)
    assert out.schema.names == ["oid", "cid", "region", "amount", "name"]
    assert rows(out) == duck(sql + " ORDER BY oid", orders=ORDERS, customers=CUSTOMERS)


def test_aggregate_over_a_join_equals_duckdb() -> None:
    sql = (
        "SELECT c.tier, COUNT(*) AS n, SUM(o.amount) AS total FROM orders o "
        "JOIN customers c ON o.cid = c.id GROUP BY c.tier"
    )
    out = run(sql, {"customers": CUSTOMERS}, ORDERS)
    # EMIT CHANGES: the last row per tier is the final aggregate.
    latest = {r["tier"]: (r["tier"], r["n"], r["total"]) for r in out.to_pylist()}
    expected = duck(sql, orders=ORDERS, customers=CUSTOMERS)
    assert sorted(latest.values()) == sorted(expected)


def test_tumbling_window_over_a_join_equals_duckdb() -> None:
    events = pa.table(
        {
            "ts": pa.array([0, 500, 1200, 1800, 2500, 3100, 3900], pa.int64()),
            "cid": pa.array([10, 20, 10, 40, 20, 10, 99], pa.int64()),
            "amount": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
        }
    )
    sql = (
        "SELECT c.tier, COUNT(*) AS n, SUM(e.amount) AS total, _window_start AS ws "
        "FROM events e JOIN customers c ON e.cid = c.id GROUP BY c.tier "
        "WINDOW TUMBLING(1s) WITH ('event.time.field' = 'ts')"
    )
    out = run(sql, {"customers": CUSTOMERS}, events)
    expected = duck(
        "SELECT c.tier, COUNT(*), SUM(e.amount), (e.ts // 1000) * 1000 AS ws FROM events e "
        "JOIN customers c ON e.cid = c.id GROUP BY c.tier, ws",
        events=events,
        customers=CUSTOMERS,
    )
    assert sorted(rows(out)) == sorted(expected)


def test_legacy_path_returns_the_same_rows() -> None:
    sql = "SELECT o.oid, c.name FROM orders o LEFT JOIN customers c ON o.cid = c.id"
    direct = run(sql, {"customers": CUSTOMERS}, ORDERS)
    legacy = run(sql, {"customers": CUSTOMERS}, ORDERS, path="legacy")
    assert direct.equals(legacy)


def test_two_joins_the_second_keyed_by_the_first() -> None:
    tiers = pa.table({"tier": ["gold", "silver"], "discount": [0.2, 0.1]})
    sql = (
        "SELECT o.oid, c.name, t.discount FROM orders o JOIN customers c ON o.cid = c.id "
        "LEFT JOIN tiers t ON c.tier = t.tier"
    )
    out = run(sql, {"customers": CUSTOMERS, "tiers": tiers}, ORDERS)
    assert rows(out) == duck(sql + " ORDER BY oid", orders=ORDERS, customers=CUSTOMERS, tiers=tiers)


def test_last_row_of_a_key_wins_in_an_attached_table() -> None:
    table = pa.table({"id": [10, 10], "name": ["old", "new"]})
    out = run(
        "SELECT oid, c.name FROM orders o JOIN customers c ON o.cid = c.id",
        {"customers": table},
        ORDERS,
    )
    assert out.column("name").to_pylist() == ["new", "new"]


# ----------------------------------------------------------------- missing-data strategies


def with_strategy(strategy: str, kind: str = "LEFT JOIN", extra: str = "") -> vs.Query:
    q = vs.compile(
        f"SELECT o.oid, c.name, c.id FROM orders o {kind} customers c ON o.cid = c.id "
        f"WITH ('join.missing.strategy' = '{strategy}'{extra})"
    )
    q.attach_table("customers", CUSTOMERS)
    return q


def test_emit_with_nulls() -> None:
    out = with_strategy("emit_with_nulls", kind="JOIN").process(ORDERS)
    assert out.column("name").to_pylist() == ["ann", "bob", None, "ann", None, "dan"]


def test_skip_record_on_a_left_join() -> None:
    q = with_strategy("skip_record")
    out = q.process(ORDERS)
    assert out.column("oid").to_pylist() == [1, 2, 4, 6]
    assert q.metrics()["join_misses"] == 2


def test_use_defaults_typed_per_column() -> None:
    q = with_strategy(
        "use_defaults", extra=", 'join.defaults.name' = 'unknown', 'join.defaults.id' = '-1'"
    )
    out = q.process(ORDERS)
    assert out.column("name").to_pylist() == ["ann", "bob", "unknown", "ann", "unknown", "dan"]
    assert out.column("id").to_pylist() == [10, 20, -1, 10, -1, 40]
    assert out.schema.field("id").type == pa.int64()


def test_use_defaults_value_that_does_not_fit_the_column() -> None:
    q = with_strategy("use_defaults", extra=", 'join.defaults.id' = 'abc'")
    with pytest.raises(vs.SqlValidationError, match=r"join\.defaults\.id = 'abc'"):
        q.process(ORDERS)


def test_defaults_without_use_defaults_are_refused() -> None:
    q = with_strategy("skip_record", extra=", 'join.defaults.name' = 'x'")
    with pytest.raises(vs.SqlValidationError, match="use_defaults"):
        q.process(ORDERS)


def test_fail_names_the_key() -> None:
    q = with_strategy("fail")
    with pytest.raises(vs.DataError, match=r"c\.id = 30 \(row 2") as err:
        q.process(ORDERS)
    assert err.value.value == "30"


def test_wait_and_retry_times_out_then_falls_back_to_the_join_kind() -> None:
    q = with_strategy("wait_and_retry", extra=", 'join.wait.timeout' = '200ms'")
    started = time.monotonic()
    out = q.process(ORDERS)
    assert time.monotonic() - started >= 0.2
    assert out.column("name").to_pylist() == ["ann", "bob", None, "ann", None, "dan"]
    inner = with_strategy("wait_and_retry", kind="JOIN", extra=", 'join.wait.timeout' = '50ms'")
    assert inner.process(ORDERS).column("oid").to_pylist() == [1, 2, 4, 6]


def test_wait_and_retry_does_not_wait_when_every_key_is_found() -> None:
    q = with_strategy("wait_and_retry", extra=", 'join.wait.timeout' = '10s'")
    started = time.monotonic()
    # Orders 1 and 2 find their customers; order 5's key is NULL, which nothing can
    # match, so it is not waited for.
    out = q.process(ORDERS.take([0, 1, 4]))
    assert time.monotonic() - started < 1.0
    assert out.column("name").to_pylist() == ["ann", "bob", None]


# ----------------------------------------------------------------- errors


def test_unattached_table_is_named() -> None:
    q = vs.compile("SELECT oid FROM orders o JOIN customers c ON o.cid = c.id")
    with pytest.raises(vs.SqlValidationError, match=r"attach_table\('customers'"):
        q.process(ORDERS)


def test_attaching_an_unknown_table() -> None:
    q = vs.compile("SELECT oid FROM orders o JOIN customers c ON o.cid = c.id")
    with pytest.raises(vs.SqlValidationError, match="joins no table of that name"):
        q.attach_table("clients", CUSTOMERS)


def test_on_column_missing_from_the_attached_table() -> None:
    q = vs.compile("SELECT oid FROM orders o JOIN customers c ON o.cid = c.cust_id")
    with pytest.raises(vs.SqlValidationError, match="cust_id"):
        q.attach_table("customers", CUSTOMERS)


def test_null_key_in_an_attached_table_matches_nothing() -> None:
    q = vs.compile("SELECT oid, c.name FROM orders o LEFT JOIN customers c ON o.cid = c.id")
    q.attach_table(
        "customers", pa.table({"id": pa.array([10, None], pa.int64()), "name": ["ann", "nul"]})
    )
    assert q.process(ORDERS).column("name").to_pylist() == ["ann", None, None, "ann", None, None]


@pytest.mark.parametrize(
    ("on", "message"),
    [
        ("o.cid > c.id", "not an equality"),
        ("cid = id", "qualify the table's key column"),
        ("c.id = c.id", "two columns of the table"),
        ("o.cid + c.id = c.id", "two columns of the table|both sides"),
        ("o.cid = c.id OR o.oid = c.id", "not an equality"),
    ],
)
def test_on_shapes_refused_with_position(on: str, message: str) -> None:
    with pytest.raises(vs.SqlValidationError, match=message) as err:
        vs.compile(f"SELECT oid FROM orders o JOIN customers c ON {on}")
    assert err.value.line == 1 and err.value.column is not None


def test_a_pyarrow_table_is_keyed_by_the_on_columns() -> None:
    regions = pa.table({"code": ["eu", "eu", "us"], "rate": [1, 2, 3]})
    q = vs.compile("SELECT oid, r.rate FROM orders o JOIN regions r ON o.region = r.code")
    q.attach_table("regions", regions)
    assert q.process(ORDERS).column("rate").to_pylist() == [2, 3, 2, 2, 3, 3]


def test_on_type_mismatch_is_a_validation_error() -> None:
    q = vs.compile("SELECT oid FROM orders o JOIN customers c ON o.region = c.id")
    q.attach_table("customers", CUSTOMERS)
    with pytest.raises(vs.SqlValidationError, match="cast it"):
        q.process(ORDERS)


def test_ambiguous_unqualified_column() -> None:
    table = pa.table({"id": [10], "amount": [9.0]})
    q = vs.compile("SELECT amount FROM orders o JOIN customers c ON o.cid = c.id")
    q.attach_table("customers", table)
    with pytest.raises(vs.SqlValidationError, match=r"ambiguous.*o\.amount or c\.amount"):
        q.process(ORDERS)


def test_same_name_twice_needs_an_alias() -> None:
    with pytest.raises(vs.SqlValidationError, match="give the JOINed one an alias"):
        vs.compile("SELECT oid FROM orders JOIN orders ON orders.cid = orders.oid")


def test_right_join_is_refused() -> None:
    with pytest.raises(vs.SqlSyntaxError, match="only JOIN and LEFT JOIN"):
        vs.compile("SELECT oid FROM orders o RIGHT JOIN customers c ON o.cid = c.id")


def test_snapshot_restore_keeps_the_attached_tables() -> None:
    sql = (
        "SELECT c.tier, COUNT(*) AS n FROM orders o JOIN customers c ON o.cid = c.id "
        "GROUP BY c.tier"
    )
    q = vs.compile(sql)
    q.attach_table("customers", CUSTOMERS)
    q.process(ORDERS.slice(0, 3))
    blob = q.snapshot()
    q.restore(blob)
    out = q.process(ORDERS.slice(3))
    assert out.to_pylist() == [{"tier": "gold", "n": 2}, {"tier": "gold", "n": 3}]


def test_reattaching_a_table_is_seen_by_the_next_batch() -> None:
    q = vs.compile("SELECT oid, c.name FROM orders o JOIN customers c ON o.cid = c.id")
    q.attach_table("customers", CUSTOMERS)
    assert q.process(ORDERS.slice(0, 1)).column("name").to_pylist() == ["ann"]
    q.attach_table("customers", pa.table({"id": [10], "name": ["anna"], "tier": ["x"]}))
    assert q.process(ORDERS.slice(0, 1)).column("name").to_pylist() == ["anna"]


# ----------------------------------------------------------------- property test


keys = st.one_of(st.none(), st.integers(min_value=-3, max_value=6))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stream=st.lists(st.tuples(keys, st.integers(-5, 5)), max_size=40),
    table=st.lists(st.tuples(st.integers(-3, 6), st.text(max_size=3)), max_size=12),
    left=st.booleans(),
    chunk=st.integers(1, 7),
)
def test_join_matches_duckdb_on_generated_input(
    stream: list[tuple[int | None, int]], table: list[tuple[int, str]], left: bool, chunk: int
) -> None:
    s = pa.table(
        {
            "seq": pa.array(range(len(stream)), pa.int64()),
            "k": pa.array([k for k, _ in stream], pa.int64()),
            "v": pa.array([v for _, v in stream], pa.int64()),
        }
    )
    latest = dict(table)  # the last row of a key wins
    t = pa.table(
        {
            "k": pa.array(list(latest), pa.int64()),
            "label": pa.array(list(latest.values()), pa.string()),
        }
    )
    kind = "LEFT JOIN" if left else "JOIN"
    sql = f"SELECT s.seq, s.v + 1 AS v1, t.label FROM s {kind} t ON s.k = t.k"
    q = vs.compile(sql)
    q.attach_table(
        "t",
        pa.table(
            {
                "k": pa.array([k for k, _ in table], pa.int64()),
                "label": pa.array([x for _, x in table], pa.string()),
            }
        ),
    )
    out = [q.process(b) for b in s.to_batches(max_chunksize=chunk)] if len(s) else []
    got = [tuple(r.values()) for b in out for r in b.to_pylist()]
    assert got == duck(sql + " ORDER BY seq", s=s, t=t)


def customers_handle(registry: vs.TableRegistry, rows: pa.Table) -> vs.TableHandle:
    handle = registry.create("customers", key="id", source="test")
    for batch in rows.to_batches():
        handle.upsert(batch)
    return handle


def test_a_registry_table_is_shared_updates_are_seen_by_later_batches() -> None:
    """The table is shared with its loader: lookups see each upsert once it is made,
    also while another thread keeps upserting."""
    registry = vs.TableRegistry()
    handle = customers_handle(registry, CUSTOMERS.select(["id", "name"]))
    handle.mark_ready()
    q = vs.compile("SELECT oid, c.name FROM orders o LEFT JOIN customers c ON o.cid = c.id")
    q.attach_table("customers", handle)
    assert q.process(ORDERS.slice(0, 1)).column("name").to_pylist() == ["ann"]
    stop = threading.Event()

    def load() -> None:
        i = 0
        while not stop.is_set():
            handle.upsert(
                pa.record_batch({"id": pa.array([i % 100], pa.int64()), "name": [str(i)]})
            )
            i += 1

    loader = threading.Thread(target=load)
    loader.start()
    try:
        for _ in range(200):
            q.process(ORDERS)
    finally:
        stop.set()
        loader.join()
    handle.upsert(pa.record_batch({"id": pa.array([10], pa.int64()), "name": ["final"]}))
    assert q.process(ORDERS.slice(0, 1)).column("name").to_pylist() == ["final"]


def test_wait_and_retry_finds_a_key_that_arrives_while_waiting() -> None:
    registry = vs.TableRegistry()
    handle = customers_handle(registry, CUSTOMERS.select(["id", "name"]).slice(0, 1))
    handle.mark_ready()
    q = vs.compile(
        "SELECT oid, c.name FROM orders o LEFT JOIN customers c ON o.cid = c.id "
        "WITH ('join.missing.strategy' = 'wait_and_retry', 'join.wait.timeout' = '10s')"
    )
    q.attach_table("customers", handle)
    late = pa.record_batch({"id": pa.array([30], pa.int64()), "name": ["cat"]})
    timer = threading.Timer(0.2, handle.upsert, args=(late,))
    started = time.monotonic()
    timer.start()
    out = q.process(ORDERS.take([0, 2]))
    waited = time.monotonic() - started
    timer.join()
    assert out.column("name").to_pylist() == ["ann", "cat"]
    assert 0.15 <= waited < 5.0


def test_a_loading_table_under_fail_raises_table_not_ready() -> None:
    registry = vs.TableRegistry()
    handle = customers_handle(registry, CUSTOMERS)
    q = vs.compile(
        "SELECT oid FROM orders o JOIN customers c ON o.cid = c.id "
        "WITH ('join.missing.strategy' = 'fail')"
    )
    q.attach_table("customers", handle)
    with pytest.raises(vs.TableNotReadyError) as err:
        q.process(ORDERS)
    assert (err.value.table, err.value.status) == ("customers", "loading")
    handle.mark_ready()
    with pytest.raises(vs.DataError, match=r"c\.id = 30"):
        q.process(ORDERS)


def test_a_loading_table_under_wait_and_retry_is_waited_for() -> None:
    registry = vs.TableRegistry()
    handle = customers_handle(registry, CUSTOMERS)
    q = vs.compile(
        "SELECT oid, c.name FROM orders o JOIN customers c ON o.cid = c.id "
        "WITH ('join.missing.strategy' = 'wait_and_retry', 'join.wait.timeout' = '5s')"
    )
    q.attach_table("customers", handle)
    timer = threading.Timer(0.2, handle.mark_ready)
    started = time.monotonic()
    timer.start()
    out = q.process(ORDERS.slice(0, 2))
    timer.join()
    assert time.monotonic() - started >= 0.15
    assert out.column("name").to_pylist() == ["ann", "bob"]


def test_a_registry_table_without_rows_yet_is_not_ready() -> None:
    registry = vs.TableRegistry()
    handle = registry.create("customers", key="id")
    q = vs.compile("SELECT oid FROM orders o JOIN customers c ON o.cid = c.id")
    with pytest.raises(vs.TableNotReadyError) as err:
        q.attach_table("customers", handle)
    assert err.value.status == "loading"


def test_join_must_use_a_registry_table_key() -> None:
    registry = vs.TableRegistry()
    handle = customers_handle(registry, CUSTOMERS)
    handle.mark_ready()
    q = vs.compile("SELECT oid FROM orders o JOIN customers c ON o.region = c.tier")
    q.attach_table("customers", handle)
    with pytest.raises(vs.SqlValidationError, match=r"by the table's key \(id\)"):
        q.process(ORDERS)


def test_union_all_branches_join_their_tables() -> None:
    q = vs.compile(
        "SELECT o.oid, c.name FROM orders o JOIN customers c ON o.cid = c.id "
        "UNION ALL SELECT r.oid, r.region AS name FROM returns r"
    )
    q.attach_table("customers", CUSTOMERS)
    with pytest.raises(vs.SqlValidationError, match="no SELECT of the UNION ALL joins"):
        q.attach_table("tiers", CUSTOMERS)
    out = q.process(ORDERS, input="orders")
    assert out.column("name").to_pylist() == ["ann", "bob", "ann", "dan"]
    assert q.process(ORDERS.slice(0, 1), input="returns").column("name").to_pylist() == ["eu"]
