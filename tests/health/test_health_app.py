"""The health and metrics API of a running application, over real HTTP (issue 12).

A long-running application (a reference table over a watched JSON Lines file, a stream
of watched orders joining it, a table of totals built from that stream) serves its
health: ``app.serve_health(0)`` in-process, and ``velostream run --http 127.0.0.1:0`` in
a subprocess. The answers are checked against the application's registry and the data;
``/metrics`` is parsed by prometheus_client's text parser.
"""

from __future__ import annotations

import http.client
import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families

import velostream as vs

TIERS = ["gold", "silver", "bronze"]

CUSTOMERS = [{"id": i, "name": f"c{i}", "tier": TIERS[i % 3]} for i in range(1, 21)]
# Customer 5 moves to gold later in the file: 20 rows, 21 lines.
CUSTOMERS.append({"id": 5, "name": "c5", "tier": "gold"})
ORDERS = [{"oid": i, "cid": i % 25 + 1, "amount": i % 7 + 1} for i in range(300)]

APP_SQL = """
CREATE TABLE customers AS
  SELECT id PRIMARY KEY, name, tier FROM customers_src
  WITH ('customers_src.type' = 'file_source', 'customers_src.path' = 'customers.jsonl',
        'customers_src.watch' = 'true');

CREATE STREAM enriched AS
  SELECT o.oid, o.amount, c.name, c.tier
  FROM orders o LEFT JOIN customers c ON o.cid = c.id
  WITH ('orders.type' = 'file_source', 'orders.path' = 'orders.jsonl', 'orders.watch' = 'true',
        'enriched.type' = 'file_sink', 'enriched.path' = 'enriched.jsonl');

CREATE TABLE totals AS
  SELECT tier, COUNT(*) AS orders, SUM(amount) AS total FROM enriched GROUP BY tier;
"""


def write_jsonl(path: Path, records: list[dict[str, Any]], mode: str = "w") -> None:
    with path.open(mode) as f:
        f.write("".join(json.dumps(r) + "\n" for r in records))


def make_app(folder: Path) -> Path:
    write_jsonl(folder / "customers.jsonl", CUSTOMERS)
    write_jsonl(folder / "orders.jsonl", ORDERS)
    (folder / "app.sql").write_text(APP_SQL)
    return folder / "app.sql"


def expected_totals() -> dict[str | None, tuple[int, int]]:
    tiers = {c["id"]: c["tier"] for c in CUSTOMERS}  # the last row of each id wins
    totals: dict[str | None, tuple[int, int]] = {}
    for order in ORDERS:
        tier = tiers.get(order["cid"])
        count, total = totals.get(tier, (0, 0))
        totals[tier] = (count + 1, total + order["amount"])
    return totals


def request(base: str, method: str, path: str, timeout: float = 30) -> tuple[int, str, bytes]:
    """(status, content type, body) of one real HTTP request to ``base`` + ``path``."""
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    try:
        conn.request(method, path)
        answer = conn.getresponse()
        return answer.status, answer.headers.get("Content-Type", ""), answer.read()
    finally:
        conn.close()


def get_json(base: str, path: str, method: str = "GET") -> tuple[int, Any]:
    status, content_type, body = request(base, method, path)
    assert content_type == "application/json", (content_type, body)
    return status, json.loads(body)


def scrape(base: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Sample name -> {sorted labels: value}, from /metrics parsed by prometheus_client."""
    status, content_type, body = request(base, "GET", "/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def eventually(check: Any, timeout: float = 15) -> Any:
    """Call ``check`` until it returns a truthy value (which is returned)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[vs.Application, str]]:
    app = vs.Application.from_file(make_app(tmp_path))
    server = app.serve_health(0)
    try:
        app.start()
        try:
            yield app, server.url
        finally:
            report = app.stop(timeout=30)
            assert report is not None and report.error is None, report
    finally:
        server.stop()


def test_health_endpoints_during_a_run(running: tuple[vs.Application, str], tmp_path: Path) -> None:
    app, base = running
    # The wait blocks until the table (built from the stream of orders) is READY.
    status, body = get_json(base, "/health/table/totals/wait?timeout=20", method="POST")
    assert status == 200, body
    assert body["name"] == "totals" and body["status"] == "ready"
    assert body["row_count"] == len(expected_totals()) == 4  # three tiers and NULL
    assert app.registry.wait_for_table_ready("customers", timeout=0).status is vs.TableStatus.READY

    status, tables = get_json(base, "/health/tables")
    assert status == 200
    assert tables["ready"] is True and tables["count"] == 2
    assert tables["tables"]["customers"]["status"] == "ready"
    assert tables["tables"]["customers"]["row_count"] == 20
    assert tables["tables"]["customers"]["key"] == ["id"]
    assert tables["tables"]["totals"]["row_count"] == 4
    assert tables["tables"]["totals"]["key"] == ["tier"]

    status, customers = get_json(base, "/health/table/customers")
    assert status == 200
    assert customers["name"] == "customers" and customers["status"] == "ready"
    assert customers["row_count"] == 20
    assert customers["error"] is None
    assert str(tmp_path / "customers.jsonl") in customers["source"]
    assert customers["progress"]["records"] == len(CUSTOMERS)
    assert customers["progress"]["bytes"] == (tmp_path / "customers.jsonl").stat().st_size

    status, progress = get_json(base, "/health/progress")
    assert status == 200
    assert set(progress["statements"]) == {"customers", "enriched", "totals"}
    assert progress["statements"]["enriched"]["records_in"] == len(ORDERS)
    assert progress["statements"]["enriched"]["records_out"] == len(ORDERS)
    assert progress["statements"]["customers"]["records_in"] == len(CUSTOMERS)
    assert set(progress["tables"]) == {"customers", "totals"}
    assert progress["run"] is not None

    totals = app.registry.get("totals")
    assert totals is not None
    got = {r["tier"]: (r["orders"], r["total"]) for r in totals.snapshot().to_pylist()}
    assert got == expected_totals()

    samples = scrape(base)
    rows = samples["velostream_table_rows"]
    assert rows[(("table", "customers"),)] == 20 == app.registry.get("customers").row_count  # type: ignore[union-attr]
    assert rows[(("table", "totals"),)] == 4 == totals.row_count
    status_samples = samples["velostream_table_status"]
    assert status_samples[(("status", "ready"), ("table", "customers"))] == 1
    assert status_samples[(("status", "loading"), ("table", "customers"))] == 0
    records_in = samples["velostream_statement_records_in_total"]
    assert records_in[(("statement", "enriched"),)] == len(ORDERS)

    # The table keeps loading as its watched file grows: the API follows it.
    write_jsonl(tmp_path / "customers.jsonl", [{"id": 99, "name": "new", "tier": "gold"}], "a")
    eventually(lambda: get_json(base, "/health/table/customers")[1]["row_count"] == 21)
    assert scrape(base)["velostream_table_rows"][(("table", "customers"),)] == 21


def test_cli_http_serves_the_health_api_during_the_run(tmp_path: Path) -> None:
    make_app(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "velostream", "run", "app.sql", "--http", "127.0.0.1:0"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    stderr: list[str] = []

    def read_stderr() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            stderr.append(line)
            lines.put(line)

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        base = None
        deadline = time.monotonic() + 30
        while base is None:
            assert process.poll() is None, "".join(stderr)
            assert time.monotonic() < deadline, "no health URL on stderr: " + "".join(stderr)
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                continue
            found = re.search(r"health and metrics API on (http://127\.0\.0\.1:\d+)", line)
            base = found.group(1) if found else None
        assert not base.endswith(":0")

        def ready() -> Any:
            status, body = get_json(base, "/health/tables")
            # (The server is up a moment before the run registers its tables: an empty
            # registry answers 200 too.)
            return body if status == 200 and body["count"] == 2 else None

        tables = eventually(ready, timeout=30)
        assert tables["ready"] is True
        assert {t["status"] for t in tables["tables"].values()} == {"ready"}
        assert tables["tables"]["customers"]["row_count"] == 20
        assert tables["tables"]["totals"]["row_count"] == 4
        assert process.poll() is None  # still running: the sources are watched

        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    reader.join(timeout=5)
    assert process.returncode == 0, "".join(stderr)
    assert "finished" in out
    # The server stopped with the run.
    with pytest.raises(OSError):
        request(base, "GET", "/health/tables", timeout=2)
