"""Applications of tables over files: CTAS, stream-table joins, dependencies (issue 12).

A reference table (``CREATE TABLE customers AS SELECT id PRIMARY KEY, ...`` over a JSON
Lines file in which some customers are updated later, so the last row of a key must win),
a stream enriched by ``LEFT JOIN customers`` and a table aggregating that stream
(``GROUP BY tier``), run for real (``velostream run --until-end`` in a subprocess, and
the Python API) and checked against DuckDB reading the same files. Then each missing-data
strategy of the join, the rule that a stream reads nothing before the tables it joins are
READY, long-running loading of tables built from other statements, and the dependency
errors.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

import velostream as vs
from velostream.errors import CircularDependencyError, DataError, MissingDependencyError

TIERS = ["gold", "silver", "bronze"]

APP_SQL = """
CREATE TABLE customers AS
  SELECT id PRIMARY KEY, name, tier FROM customers_src
  WITH ('customers_src.type' = 'file_source', 'customers_src.path' = 'customers.jsonl');

CREATE STREAM enriched AS
  SELECT o.oid, o.cid, o.amount, c.name, c.tier
  FROM orders o LEFT JOIN customers c ON o.cid = c.id
  WITH ('orders.type' = 'file_source', 'orders.path' = 'orders.jsonl',
        'enriched.type' = 'file_sink', 'enriched.path' = 'enriched.jsonl');

CREATE TABLE totals AS
  SELECT tier, COUNT(*) AS orders, SUM(amount) AS total
  FROM enriched GROUP BY tier
  WITH ('totals_out.type' = 'file_sink', 'totals_out.path' = 'totals.jsonl');
"""


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def customers_data(count: int = 30, seed: int = 3) -> list[dict[str, Any]]:
    """Customers 1..count, then updates of some of them (customer 7 twice).

    ``seq`` is the line order (DuckDB picks the last row of each key by it); the table
    does not read it.
    """
    rng = random.Random(seed)
    rows = [{"id": i, "name": f"c{i}", "tier": rng.choice(TIERS)} for i in range(1, count + 1)]
    rows += [
        {"id": 3, "name": "c3-renamed", "tier": "gold"},
        {"id": 7, "name": "c7-first-move", "tier": "silver"},
        {"id": 12, "name": "c12-renamed", "tier": "bronze"},
        {"id": 7, "name": "c7-second-move", "tier": "bronze"},
    ]
    return [{**row, "seq": seq} for seq, row in enumerate(rows)]


def orders_data(count: int = 400, seed: int = 5) -> list[dict[str, Any]]:
    """Orders of customers 1..36 (31..36 unknown to the table) and a few with no customer."""
    rng = random.Random(seed)
    out = []
    for oid in range(count):
        cid: int | None = rng.randint(1, 36)
        if oid % 97 == 13:
            cid = None
        out.append({"oid": oid, "cid": cid, "amount": rng.randint(1, 500)})
    return out


def make_app(folder: Path) -> Path:
    write_jsonl(folder / "customers.jsonl", customers_data())
    write_jsonl(folder / "orders.jsonl", orders_data())
    app = folder / "app.sql"
    app.write_text(APP_SQL)
    return app


def duck(sql: str, folder: Path) -> list[dict[str, Any]]:
    """DuckDB's rows for ``sql`` (``{dir}`` is the folder of the JSON Lines files)."""
    con = duckdb.connect()
    result = con.sql(sql.replace("{dir}", str(folder)))
    return [dict(zip(result.columns, row, strict=True)) for row in result.fetchall()]


LAST_CUSTOMERS = """
    SELECT id, name, tier FROM read_json('{dir}/customers.jsonl', format = 'newline_delimited')
    QUALIFY row_number() OVER (PARTITION BY id ORDER BY seq DESC) = 1
"""
DUCK_ENRICHED = f"""
    WITH c AS ({LAST_CUSTOMERS})
    SELECT o.oid, o.cid, o.amount, c.name, c.tier
    FROM read_json('{{dir}}/orders.jsonl', format = 'newline_delimited') o
    LEFT JOIN c ON o.cid = c.id
    ORDER BY o.oid
"""
DUCK_TOTALS = f"""
    SELECT tier, COUNT(*) AS orders, SUM(amount)::BIGINT AS total
    FROM ({DUCK_ENRICHED}) GROUP BY tier
"""


def by_tier(rows: list[dict[str, Any]]) -> dict[str | None, dict[str, Any]]:
    """The last row of each tier (a sink of an EMIT CHANGES table gets every update)."""
    last: dict[str | None, dict[str, Any]] = {}
    for row in rows:
        last[row["tier"]] = row
    return last


def velostream_cli(folder: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "velostream", "run", str(folder / "app.sql"), *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# --------------------------------------------------------------------------- the application


def test_cli_run_until_end_gives_duckdbs_join_and_aggregate(tmp_path: Path) -> None:
    make_app(tmp_path)
    done = velostream_cli(tmp_path, "--until-end")
    assert done.returncode == 0, done.stderr

    expected = duck(DUCK_ENRICHED, tmp_path)
    got = sorted(read_jsonl(tmp_path / "enriched.jsonl"), key=lambda r: r["oid"])
    assert got == expected
    # The data exercises what matters: updated customers, unknown ones, NULL keys.
    assert {r["name"] for r in got} >= {"c3-renamed", "c7-second-move", "c12-renamed"}
    assert not {"c3", "c7", "c7-first-move", "c12"} & {r["name"] for r in got}
    assert any(r["cid"] is not None and r["cid"] > 30 and r["name"] is None for r in got)
    assert any(r["cid"] is None for r in got)

    expected_totals = {r["tier"]: r for r in duck(DUCK_TOTALS, tmp_path)}
    assert None in expected_totals  # the NULL tier of the orders no customer matched
    assert by_tier(read_jsonl(tmp_path / "totals.jsonl")) == expected_totals


def test_python_api_registry_tables_equal_duckdb(tmp_path: Path) -> None:
    app = vs.Application.from_file(make_app(tmp_path))
    report = app.run(until_end=True)
    assert report.statements["enriched"].records_out == len(orders_data())

    customers = app.registry.get("customers")
    totals = app.registry.get("totals")
    assert customers is not None and totals is not None
    assert customers.status is vs.TableStatus.READY and totals.status is vs.TableStatus.READY
    assert customers.key == ("id",) and totals.key == ("tier",)

    expected_customers = duck(LAST_CUSTOMERS + " ORDER BY id", tmp_path)
    assert sorted(customers.snapshot().to_pylist(), key=lambda r: r["id"]) == expected_customers
    assert customers.row_count == 30

    def tier_order(row: dict[str, Any]) -> tuple[bool, str]:
        return (row["tier"] is None, row["tier"] or "")

    expected_totals = sorted(duck(DUCK_TOTALS, tmp_path), key=tier_order)
    assert sorted(totals.snapshot().to_pylist(), key=tier_order) == expected_totals
    assert totals.row_count == len(expected_totals) == 4  # three tiers and NULL


# --------------------------------------------------------------------------- missing data


STRATEGY_CUSTOMERS = [{"id": 1, "name": "ann"}, {"id": 2, "name": "bob"}]
STRATEGY_ORDERS = [{"oid": 1, "cid": 1}, {"oid": 2, "cid": 99}, {"oid": 3, "cid": 2}]


def strategy_app(folder: Path, join: str, strategy: str | None, extra: str = "") -> Path:
    """Customers 1 and 2; orders of customers 1, 99 (unknown) and 2; ``strategy`` set."""
    if strategy is not None:
        extra = f", 'join.missing.strategy' = '{strategy}'{extra}"
    write_jsonl(folder / "customers.jsonl", STRATEGY_CUSTOMERS)
    write_jsonl(folder / "orders.jsonl", STRATEGY_ORDERS)
    app = folder / "app.sql"
    app.write_text(
        f"""
        CREATE TABLE customers AS SELECT id PRIMARY KEY, name FROM customers_src
          WITH ('customers_src.type' = 'file_source', 'customers_src.path' = 'customers.jsonl');
        CREATE STREAM enriched AS
          SELECT o.oid, c.name FROM orders o {join} customers c ON o.cid = c.id
          WITH ('orders.type' = 'file_source', 'orders.path' = 'orders.jsonl',
                'enriched.type' = 'file_sink', 'enriched.path' = 'enriched.jsonl'{extra});
        """
    )
    return app


@pytest.mark.parametrize(
    ("join", "strategy", "extra", "names"),
    [
        ("LEFT JOIN", "emit_with_nulls", "", ["ann", None, "bob"]),
        ("JOIN", "emit_with_nulls", "", ["ann", None, "bob"]),
        ("LEFT JOIN", "skip_record", "", ["ann", "bob"]),
        (
            "LEFT JOIN",
            "use_defaults",
            ", 'join.defaults.name' = 'unknown'",
            ["ann", "unknown", "bob"],
        ),
    ],
)
def test_missing_data_strategy(
    tmp_path: Path, join: str, strategy: str, extra: str, names: list[str | None]
) -> None:
    app = vs.Application.from_file(strategy_app(tmp_path, join, strategy, extra))
    app.run(until_end=True)
    assert [r["name"] for r in read_jsonl(tmp_path / "enriched.jsonl")] == names


@pytest.mark.parametrize("join", ["LEFT JOIN", "JOIN"])
def test_default_strategy_follows_the_join_kind(tmp_path: Path, join: str) -> None:
    path = strategy_app(tmp_path, join, None)
    vs.Application.from_file(path).run(until_end=True)
    got = [r["oid"] for r in read_jsonl(tmp_path / "enriched.jsonl")]
    assert got == ([1, 2, 3] if join == "LEFT JOIN" else [1, 3])


def test_fail_strategy_raises_a_data_error_naming_the_key(tmp_path: Path) -> None:
    app = vs.Application.from_file(strategy_app(tmp_path, "LEFT JOIN", "fail"))
    with pytest.raises(DataError, match=r"c\.id = 99") as info:
        app.run(until_end=True)
    assert "customers" in str(info.value)
    assert app.report is not None and app.report.error is info.value
    # From the command line: a runtime failure, exit code 1, the key on stderr.
    done = velostream_cli(tmp_path, "--until-end")
    assert done.returncode == 1, done.stderr
    assert "c.id = 99" in done.stderr


@pytest.mark.parametrize(
    ("join", "names"), [("LEFT JOIN", ["ann", None, "bob"]), ("JOIN", ["ann", "bob"])]
)
def test_wait_and_retry_waits_for_a_key_that_never_comes_then_follows_the_join_kind(
    tmp_path: Path, join: str, names: list[str | None]
) -> None:
    app = vs.Application.from_file(
        strategy_app(tmp_path, join, "wait_and_retry", ", 'join.wait.timeout' = '400ms'")
    )
    started = time.monotonic()
    app.run(until_end=True)
    elapsed = time.monotonic() - started
    assert elapsed >= 0.4
    assert elapsed < 5  # bounded
    assert [r["name"] for r in read_jsonl(tmp_path / "enriched.jsonl")] == names


# --------------------------------------------------------------------------- READY first


def test_the_stream_reads_nothing_before_its_table_is_ready(tmp_path: Path) -> None:
    customers = customers_data()
    known = [o for o in orders_data() if o["cid"] is not None and o["cid"] <= 30]
    write_jsonl(tmp_path / "orders.jsonl", known)  # there from the start
    app = vs.Application.from_sql(
        """
        CREATE TABLE customers AS SELECT id PRIMARY KEY, name, tier FROM customers_src
          WITH ('customers_src.type' = 'file_source', 'customers_src.path' = 'customers.jsonl',
                'customers_src.file.wait.timeout' = '20s');
        CREATE STREAM enriched AS
          SELECT o.oid, c.name, c.tier, _timestamp AS processed_at
          FROM orders o LEFT JOIN customers c ON o.cid = c.id
          WITH ('orders.type' = 'file_source', 'orders.path' = 'orders.jsonl',
                'enriched.type' = 'file_sink', 'enriched.path' = 'enriched.jsonl');
        """,
        base_dir=tmp_path,
    )
    written_at: list[float] = []

    def write_customers_later() -> None:
        time.sleep(0.5)
        staging = write_jsonl(tmp_path / "customers.staging", customers)
        written_at.append(time.time())
        os.replace(staging, tmp_path / "customers.jsonl")  # appears whole, at once

    writer = threading.Thread(target=write_customers_later)
    started = time.time()
    writer.start()
    try:
        app.run(until_end=True)
    finally:
        writer.join()
    # Monotonic and wall clocks, read together, to place the READY time on the wall clock.
    wall_minus_monotonic = time.time() - time.monotonic()

    rows = read_jsonl(tmp_path / "enriched.jsonl")
    assert len(rows) == len(known)
    # Every order found its customer: none was joined against a table not loaded yet.
    names = {r["id"]: r["name"] for r in customers}
    assert [r["name"] for r in rows] == [names[o["cid"]] for o in known]

    handle = app.registry.get("customers")
    assert handle is not None and handle.progress.finished_at is not None
    ready_ms = int((handle.progress.finished_at + wall_minus_monotonic) * 1000)
    first_processed = min(r["processed_at"] for r in rows)
    # `_timestamp` is the wall-clock time (ms) of the `process` call that joined the row:
    # every row was joined after the customers file appeared (0.5 s after the start) and
    # after the table turned READY (its load's finish time; 2 ms for the clock conversion).
    assert first_processed >= int(written_at[0] * 1000) >= int(started * 1000) + 500
    assert first_processed >= ready_ms - 2


# --------------------------------------------------------------------------- long-running


@pytest.fixture
def running_app(tmp_path: Path) -> Iterator[vs.Application]:
    write_jsonl(tmp_path / "customers.jsonl", customers_data())
    write_jsonl(tmp_path / "orders.jsonl", orders_data())
    sql = (
        APP_SQL.replace(
            "'customers_src.path' = 'customers.jsonl'",
            "'customers_src.path' = 'customers.jsonl', 'customers_src.watch' = 'true'",
        ).replace(
            "'orders.path' = 'orders.jsonl'",
            "'orders.path' = 'orders.jsonl', 'orders.watch' = 'true'",
        )
        + """
        CREATE TABLE names AS SELECT id PRIMARY KEY, name FROM customers;
        CREATE STREAM by_name AS SELECT o.oid, n.name FROM orders2 o JOIN names n ON o.cid = n.id
          WITH ('orders2.type' = 'file_source', 'orders2.path' = 'orders.jsonl',
                'by_name.type' = 'file_sink', 'by_name.path' = 'by_name.jsonl');
        """
    )
    app = vs.Application.from_sql(sql, base_dir=tmp_path)
    app.start()
    try:
        yield app
    finally:
        report = app.stop(timeout=30)
        assert report is not None and report.error is None, report


def test_tables_built_from_other_statements_get_ready_while_the_run_goes_on(
    running_app: vs.Application, tmp_path: Path
) -> None:
    # Three kinds of tables in a long-running run: over a watched file (customers), over
    # a stream of the application (totals), over another table (names). Each turns READY
    # once what its inputs held at the start is in, and the stream joining `names` starts.
    for name in ("customers", "totals", "names"):
        handle = running_app.registry.wait_for_table_ready(name, timeout=15)
        assert handle.status is vs.TableStatus.READY
    expected_totals = {r["tier"]: r for r in duck(DUCK_TOTALS, tmp_path)}
    totals = running_app.registry.get("totals")
    assert totals is not None
    assert {r["tier"]: r for r in totals.snapshot().to_pylist()} == expected_totals
    names = running_app.registry.get("names")
    assert names is not None and names.row_count == 30
    deadline = time.monotonic() + 15
    expected = duck(
        f"WITH c AS ({LAST_CUSTOMERS}) SELECT o.oid, c.name FROM "
        "read_json('{dir}/orders.jsonl', format = 'newline_delimited') o "
        "JOIN c ON o.cid = c.id ORDER BY o.oid",
        tmp_path,
    )
    path = tmp_path / "by_name.jsonl"
    while time.monotonic() < deadline:
        if path.exists() and len(read_jsonl(path)) >= len(expected):
            break
        time.sleep(0.05)
    assert sorted(read_jsonl(path), key=lambda r: r["oid"]) == expected


def test_a_table_over_a_watched_file_and_a_plain_one_gets_ready_while_the_run_goes_on(
    tmp_path: Path,
) -> None:
    orders = orders_data()
    write_jsonl(tmp_path / "first.jsonl", orders[:150])
    write_jsonl(tmp_path / "second.jsonl", orders[150:])
    app = vs.Application.from_sql(
        """
        CREATE TABLE by_oid AS
          SELECT oid PRIMARY KEY, cid, amount FROM first
          UNION ALL SELECT oid, cid, amount FROM second
          WITH ('first.type' = 'file_source', 'first.path' = 'first.jsonl', 'first.watch' = 'true',
                'second.type' = 'file_source', 'second.path' = 'second.jsonl');
        """,
        base_dir=tmp_path,
    )
    app.start()
    try:
        # The plain file ends, the watched one is followed: its run never ends, yet
        # everything both held at the start is in, so the table is READY.
        handle = app.registry.wait_for_table_ready("by_oid", timeout=15)
        assert sorted(handle.snapshot().to_pylist(), key=lambda r: r["oid"]) == orders
    finally:
        report = app.stop(timeout=30)
    assert report is not None and report.error is None


# --------------------------------------------------------------------------- dependencies


def test_a_cycle_between_two_tables_names_it() -> None:
    with pytest.raises(CircularDependencyError) as info:
        vs.Application.from_sql(
            """
            CREATE TABLE a AS SELECT s.id PRIMARY KEY, b.name FROM s1 s JOIN b ON s.id = b.id
              WITH ('s1.type' = 'file_source', 's1.path' = 'x.jsonl');
            CREATE TABLE b AS SELECT s.id PRIMARY KEY, a.name FROM s2 s JOIN a ON s.id = a.id
              WITH ('s2.type' = 'file_source', 's2.path' = 'y.jsonl');
            """
        )
    cycle = info.value.cycle
    assert cycle[0] == cycle[-1]
    assert sorted(cycle[:-1]) == ["a", "b"]
    assert "a -> b -> a" in str(info.value) or "b -> a -> b" in str(info.value)


def test_a_cycle_through_from_between_tables_names_it() -> None:
    with pytest.raises(CircularDependencyError) as info:
        vs.Application.from_sql(
            """
            CREATE TABLE a AS SELECT id PRIMARY KEY, name FROM b;
            CREATE TABLE b AS SELECT id PRIMARY KEY, name FROM c;
            CREATE TABLE c AS SELECT id PRIMARY KEY, name FROM a;
            """
        )
    cycle = info.value.cycle
    assert cycle[0] == cycle[-1] and sorted(cycle[:-1]) == ["a", "b", "c"]


def test_joining_an_unknown_name_is_a_missing_dependency() -> None:
    with pytest.raises(MissingDependencyError) as info:
        vs.Application.from_sql(
            """
            CREATE STREAM enriched AS SELECT o.oid, c.name FROM orders o JOIN clients c
              ON o.cid = c.id
              WITH ('orders.type' = 'file_source', 'orders.path' = 'orders.jsonl',
                    'enriched.type' = 'file_sink', 'enriched.path' = 'enriched.jsonl');
            """
        )
    assert info.value.table == "enriched"
    assert info.value.missing == "clients"
    assert "neither a table" in str(info.value)


def test_joining_a_stream_is_a_missing_dependency() -> None:
    with pytest.raises(MissingDependencyError) as info:
        vs.Application.from_sql(
            """
            CREATE STREAM people AS SELECT id, name FROM people_src
              WITH ('people_src.type' = 'file_source', 'people_src.path' = 'people.jsonl',
                    'people.type' = 'file_sink', 'people.path' = 'people_out.jsonl');
            CREATE STREAM enriched AS SELECT o.oid, p.name FROM orders o JOIN people p
              ON o.cid = p.id
              WITH ('orders.type' = 'file_source', 'orders.path' = 'orders.jsonl',
                    'enriched.type' = 'file_sink', 'enriched.path' = 'enriched.jsonl');
            """
        )
    assert (info.value.table, info.value.missing) == ("enriched", "people")
    assert "a stream, not a table" in str(info.value)
