"""How tables are fed and joined inside an application: in-process inputs, empty tables,
joins of in-process streams (SPEC section 8)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import velostream as vs


def lines(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


CUSTOMERS = [{"id": 1, "name": "ann"}, {"id": 2, "name": "bob"}, {"id": 1, "name": "anna"}]
ORDERS = [{"oid": i, "cid": 1 + i % 3, "amount": float(i)} for i in range(9)]


def test_a_stream_read_in_process_joins_a_table(tmp_path: Path) -> None:
    lines(tmp_path / "customers.jsonl", CUSTOMERS)
    lines(tmp_path / "orders.jsonl", ORDERS)
    sql = """
    CREATE TABLE customers AS SELECT id PRIMARY KEY, name FROM customers_src
      WITH ('customers_src.type' = 'file_source', 'customers_src.path' = 'customers.jsonl');
    CREATE STREAM big AS SELECT oid, cid, amount FROM orders WHERE amount >= 3
      WITH ('orders.type' = 'file_source', 'orders.path' = 'orders.jsonl');
    CREATE STREAM named AS SELECT b.oid, c.name FROM big b LEFT JOIN customers c ON b.cid = c.id
      WITH ('out.type' = 'file_sink', 'out.path' = 'out.jsonl');
    """
    vs.Application.from_sql(sql, base_dir=tmp_path).run(until_end=True)
    expected = {1: "anna", 2: "bob", 3: None}
    assert read(tmp_path / "out.jsonl") == [
        {"oid": o["oid"], "name": expected[o["cid"]]} for o in ORDERS if o["amount"] >= 3
    ]


def test_a_table_fed_in_process_is_ready_while_the_run_goes_on(tmp_path: Path) -> None:
    lines(tmp_path / "orders.jsonl", ORDERS)
    sql = """
    CREATE STREAM big AS SELECT oid, cid, amount FROM orders
      WITH ('orders.type' = 'file_source', 'orders.path' = 'orders.jsonl', 'orders.watch' = 'true');
    CREATE TABLE per_customer AS SELECT cid, COUNT(*) AS n FROM big GROUP BY cid;
    """
    app = vs.Application.from_sql(sql, base_dir=tmp_path)
    app.start()
    try:
        handle = app.registry.wait_for_table_ready("per_customer", timeout=20)
        assert sorted(handle.snapshot().to_pylist(), key=lambda r: r["cid"]) == [
            {"cid": 1, "n": 3},
            {"cid": 2, "n": 3},
            {"cid": 3, "n": 3},
        ]
    finally:
        app.stop(timeout=20)


def test_an_empty_table_with_declared_columns_can_be_joined(tmp_path: Path) -> None:
    (tmp_path / "customers.jsonl").write_text("")
    lines(tmp_path / "orders.jsonl", ORDERS[:3])
    sql = """
    CREATE STREAM customers_src (id BIGINT, name STRING)
      WITH ('customers_src.type' = 'file_source', 'customers_src.path' = 'customers.jsonl');
    CREATE TABLE customers AS SELECT id PRIMARY KEY, name FROM customers_src;
    CREATE STREAM named AS SELECT o.oid, c.name FROM orders o LEFT JOIN customers c ON o.cid = c.id
      WITH ('orders.type' = 'file_source', 'orders.path' = 'orders.jsonl',
            'out.type' = 'file_sink', 'out.path' = 'out.jsonl');
    """
    app = vs.Application.from_sql(sql, base_dir=tmp_path)
    # The tables are in the registry from the start (a health probe sees them LOADING).
    assert app.registry.names() == ["customers"]
    assert app.registry.get("customers").status == vs.TableStatus.LOADING
    app.run(until_end=True)
    assert read(tmp_path / "out.jsonl") == [{"oid": o["oid"], "name": None} for o in ORDERS[:3]]
    handle = app.registry.get("customers")
    assert handle is not None and handle.row_count == 0
    assert handle.schema is not None and handle.schema.names == ["id", "name"]


def test_an_empty_table_without_known_columns_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "customers.jsonl").write_text("")
    lines(tmp_path / "orders.jsonl", ORDERS[:3])
    sql = """
    CREATE TABLE customers AS SELECT id PRIMARY KEY, name FROM customers_src
      WITH ('customers_src.type' = 'file_source', 'customers_src.path' = 'customers.jsonl');
    CREATE STREAM named AS SELECT o.oid, c.name FROM orders o LEFT JOIN customers c ON o.cid = c.id
      WITH ('orders.type' = 'file_source', 'orders.path' = 'orders.jsonl',
            'out.type' = 'file_sink', 'out.path' = 'out.jsonl');
    """
    with pytest.raises(vs.SqlValidationError, match="declare its source's columns"):
        vs.Application.from_sql(sql, base_dir=tmp_path).run(until_end=True)


def test_joining_a_table_loaded_from_the_same_in_process_input_is_refused(tmp_path: Path) -> None:
    sql = """
    CREATE STREAM big AS SELECT oid, cid FROM orders
      WITH ('orders.type' = 'file_source', 'orders.path' = 'orders.jsonl');
    CREATE TABLE last_order AS SELECT cid PRIMARY KEY, oid FROM big;
    CREATE STREAM named AS SELECT b.oid, l.oid AS last FROM big b JOIN last_order l ON b.cid = l.cid
      WITH ('out.type' = 'file_sink', 'out.path' = 'out.jsonl');
    """
    started = time.monotonic()
    with pytest.raises(vs.ConfigError, match="could not be READY before 'named' reads"):
        vs.Application.from_sql(sql, base_dir=tmp_path)
    assert time.monotonic() - started < 5


def test_join_misses_are_counted_in_the_report_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lines(tmp_path / "customers.jsonl", CUSTOMERS[:2])
    lines(tmp_path / "orders.jsonl", ORDERS)
    sql = """
    CREATE TABLE customers AS SELECT id PRIMARY KEY, name FROM customers_src
      WITH ('customers_src.type' = 'file_source', 'customers_src.path' = 'customers.jsonl');
    CREATE STREAM named AS SELECT o.oid, c.name FROM orders o LEFT JOIN customers c ON o.cid = c.id
      WITH ('orders.type' = 'file_source', 'orders.path' = 'orders.jsonl',
            'out.type' = 'file_sink', 'out.path' = 'out.jsonl',
            'join.missing.strategy' = 'skip_record');
    """
    with caplog.at_level("WARNING", logger="velostream.runtime"):
        report = vs.Application.from_sql(sql, base_dir=tmp_path).run(until_end=True)
    assert report.statements["named"].join_misses == 3  # the orders of customer 3
    assert len(read(tmp_path / "out.jsonl")) == 6
    assert "3 rows without a match in a joined table" in report.summary()
    assert any("3 input rows had no match" in r.getMessage() for r in caplog.records)


def test_a_table_fed_by_two_streams_is_ready_with_both_inputs(tmp_path: Path) -> None:
    lines(tmp_path / "a.jsonl", [{"k": i, "v": "a"} for i in range(3000)])
    lines(tmp_path / "b.jsonl", [{"k": i, "v": "b"} for i in range(3000, 5000)])
    sql = """
    CREATE STREAM sa AS SELECT k, v FROM a
      WITH ('a.type' = 'file_source', 'a.path' = 'a.jsonl', 'a.watch' = 'true');
    CREATE STREAM sb AS SELECT k, v FROM b
      WITH ('b.type' = 'file_source', 'b.path' = 'b.jsonl', 'b.watch' = 'true');
    CREATE TABLE t AS SELECT k PRIMARY KEY, v FROM sa UNION ALL SELECT k, v FROM sb;
    """
    app = vs.Application.from_sql(sql, base_dir=tmp_path)
    app.start()
    try:
        handle = app.registry.wait_for_table_ready("t", timeout=20)
        assert handle.row_count == 5000  # every row of both inputs was in when READY
    finally:
        app.stop(timeout=20)
