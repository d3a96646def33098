"""The health and metrics server over real HTTP: tables loaded for real, waits, metrics."""

from __future__ import annotations

import http.client
import json
import random
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import velostream as vs
from velostream.health import HealthServer, parse_http_address


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> Path:
    with path.open("w") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
    return path


def file_props(name: str, path: Path, **extra: str) -> dict[str, str]:
    props = {f"{name}.type": "file_source", f"{name}.path": str(path), f"{name}.format": "json"}
    props.update({f"{name}.{k.replace('_', '.')}": v for k, v in extra.items()})
    return props


class Response:
    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        assert self.headers["Content-Type"] == "application/json", self.headers["Content-Type"]
        return json.loads(self.body)


def request(
    server: HealthServer,
    method: str,
    path: str,
    *,
    timeout: float = 30.0,
    headers: dict[str, str] | None = None,
) -> Response:
    host, port = server.address
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, headers=headers or {})
        answer = conn.getresponse()
        return Response(answer.status, answer.headers, answer.read())
    finally:
        conn.close()


def scrape(server: HealthServer) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Sample name -> {sorted labels: value}, from /metrics parsed by prometheus_client."""
    answer = request(server, "GET", "/metrics")
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("text/plain")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(answer.body.decode()):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[labels] = sample.value
    return samples


@pytest.fixture
def registry() -> vs.TableRegistry:
    return vs.TableRegistry()


@pytest.fixture
def server(registry: vs.TableRegistry) -> Iterator[HealthServer]:
    with HealthServer(registry) as running:
        yield running


@pytest.fixture
def loaded(tmp_path: Path) -> tuple[vs.TableRegistry, dict[str, int], Path]:
    """Two tables bulk-loaded from JSON Lines by the real loader; their distinct keys."""
    rng = random.Random(3)
    customers = [{"id": i % 700, "tier": rng.choice("abc"), "seq": i} for i in range(2_000)]
    prices = [{"sym": f"S{i % 37}", "px": rng.uniform(1, 9)} for i in range(500)]
    customers_path = write_jsonl(tmp_path / "customers.jsonl", customers)
    prices_path = write_jsonl(tmp_path / "prices.jsonl", prices)
    registry = vs.TableRegistry()
    result = vs.ParallelLoader(registry).load(
        [
            vs.TableDefinition(
                "customers",
                "SELECT id PRIMARY KEY, tier, seq FROM c",
                properties=file_props("c", customers_path, batch_size="256"),
            ),
            vs.TableDefinition(
                "prices",
                "SELECT sym PRIMARY KEY, px FROM p",
                properties=file_props("p", prices_path),
            ),
        ]
    )
    assert sorted(result.successful) == ["customers", "prices"]
    counts = {
        "customers": len({c["id"] for c in customers}),
        "prices": len({p["sym"] for p in prices}),
    }
    return registry, counts, customers_path


# --------------------------------------------------------------------------- tables


def test_tables_and_one_table_of_a_real_load(
    loaded: tuple[vs.TableRegistry, dict[str, int], Path],
) -> None:
    registry, counts, customers_path = loaded
    with HealthServer(registry) as server:
        answer = request(server, "GET", "/health/tables")
        assert answer.status == 200
        body = answer.json()
        assert body["ready"] is True
        assert body["count"] == 2
        assert set(body["tables"]) == {"customers", "prices"}
        customers = body["tables"]["customers"]
        assert customers["status"] == "ready"
        assert customers["row_count"] == counts["customers"] == 700
        assert customers["bytes"] == registry.get("customers").bytes > 0  # type: ignore[union-attr]
        assert customers["key"] == ["id"]
        assert customers["error"] is None
        assert str(customers_path) in customers["source"]
        assert customers["progress"]["records"] == 2_000
        assert customers["progress"]["bytes"] == customers_path.stat().st_size
        assert customers["progress"]["percent"] == 100.0
        assert body["tables"]["prices"]["row_count"] == counts["prices"] == 37

        one = request(server, "GET", "/health/table/prices")
        assert one.status == 200
        prices = one.json()
        assert prices["name"] == "prices"
        assert prices["row_count"] == 37
        assert prices["key"] == ["sym"]
        assert {k: v for k, v in prices.items() if k != "name"} == body["tables"]["prices"]


def test_an_empty_registry_is_ready(server: HealthServer) -> None:
    answer = request(server, "GET", "/health/tables")
    assert answer.status == 200
    assert answer.json() == {"tables": {}, "ready": True, "count": 0}


def test_a_loading_table_makes_tables_503_and_its_wait_time_out(
    registry: vs.TableRegistry, server: HealthServer
) -> None:
    registry.register("ref", pa.table({"k": [1, 2], "v": ["a", "b"]}), key="k")
    registry.create("slow", key="k", source="a test")

    answer = request(server, "GET", "/health/tables")
    assert answer.status == 503
    body = answer.json()
    assert body["ready"] is False
    assert body["tables"]["slow"]["status"] == "loading"
    assert body["tables"]["ref"]["status"] == "ready"

    started = time.monotonic()
    waited = request(server, "POST", "/health/table/slow/wait?timeout=0.3")
    elapsed = time.monotonic() - started
    assert waited.status == 408
    body = waited.json()
    assert body["status"] == "loading"
    assert body["name"] == "slow"
    assert body["timeout"] == 0.3
    assert "not ready after 0.3s" in body["error"]
    assert 0.3 <= elapsed < 5


def test_a_wait_blocked_on_a_loading_table_returns_when_it_turns_ready(
    registry: vs.TableRegistry, server: HealthServer
) -> None:
    handle = registry.create("late", key="k")
    answers: list[Response] = []
    waiter = threading.Thread(
        target=lambda: answers.append(request(server, "POST", "/health/table/late/wait"))
    )
    started = time.monotonic()
    waiter.start()
    time.sleep(0.4)
    assert waiter.is_alive() and not answers  # blocked: the table is still loading
    # Meanwhile the server answers other requests.
    assert request(server, "GET", "/health/table/late").json()["status"] == "loading"

    def load() -> None:
        handle.upsert(pa.record_batch({"k": [1, 2, 3, 1], "v": [1.0, 2.0, 3.0, 4.0]}))
        handle.mark_ready()

    loader = threading.Thread(target=load)
    loader.start()
    loader.join()
    waiter.join(10)
    assert not waiter.is_alive()
    elapsed = time.monotonic() - started
    [answer] = answers
    assert answer.status == 200
    body = answer.json()
    assert body["status"] == "ready"
    assert body["row_count"] == 3
    assert 0.4 <= elapsed < 5


def test_a_failed_table_shows_its_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"k": 1, "v": 1}\n{"k": 2, "v": "not a number"}\n')
    registry = vs.TableRegistry()
    result = vs.ParallelLoader(registry, retry=vs.RetryPolicy(max_attempts=1)).load(
        [
            vs.TableDefinition(
                "broken",
                "SELECT k PRIMARY KEY, v FROM src WITH ('error.strategy' = 'fail')",
                properties=file_props("src", bad, schema_inference_rows="1"),
            ),
            vs.TableDefinition("child", "SELECT k PRIMARY KEY, v FROM broken"),
        ]
    )
    assert list(result.failed) == ["broken"]
    with HealthServer(registry) as server:
        answer = request(server, "GET", "/health/table/broken")
        assert answer.status == 200
        broken = answer.json()
        assert broken["status"] == "failed"
        assert broken["error"] == f"DataError: {result.failed['broken']}"
        assert "bad.jsonl:2: type mismatch for field 'v'" in broken["error"]

        tables = request(server, "GET", "/health/tables")
        assert tables.status == 503
        assert tables.json()["tables"]["child"]["status"] == "failed"
        assert "'broken'" in tables.json()["tables"]["child"]["error"]

        started = time.monotonic()
        waited = request(server, "POST", "/health/table/broken/wait?timeout=20")
        assert time.monotonic() - started < 5  # a failed table does not wait
        assert waited.status == 409
        body = waited.json()
        assert body["status"] == "failed"
        assert body["error"] == broken["error"]


def test_a_table_marked_failed_while_waited_for_answers_409(
    registry: vs.TableRegistry, server: HealthServer
) -> None:
    handle = registry.create("t", key="k")
    timer = threading.Timer(0.3, handle.mark_failed, [vs.SourceError("disk on fire", source="t")])
    timer.start()
    waited = request(server, "POST", "/health/table/t/wait?timeout=20")
    timer.join()
    assert waited.status == 409
    assert "disk on fire" in waited.json()["error"]
    assert waited.json()["status"] == "failed"


# --------------------------------------------------------------------------- unknown, bad


def test_unknown_table_and_path_404(server: HealthServer) -> None:
    answer = request(server, "GET", "/health/table/nope")
    assert answer.status == 404
    assert answer.json()["status"] == "unknown"
    assert "nope" in answer.json()["error"]

    answer = request(server, "GET", "/health/elsewhere")
    assert answer.status == 404
    assert "/health/tables" in answer.json()["error"]
    assert request(server, "GET", "/").status == 404
    assert request(server, "GET", "/health/table/").status == 404


def test_waiting_for_an_unknown_table_waits_then_404(
    registry: vs.TableRegistry, server: HealthServer
) -> None:
    started = time.monotonic()
    answer = request(server, "POST", "/health/table/ghost/wait?timeout=0.3")
    assert time.monotonic() - started >= 0.3
    assert answer.status == 404
    assert answer.json()["status"] == "unknown"
    assert answer.json()["name"] == "ghost"

    # A table registered while waited for is found (SPEC: it may still be registered).
    timer = threading.Timer(
        0.3, registry.register, ["later", pa.table({"k": [7], "v": [1]})], {"key": "k"}
    )
    timer.start()
    answer = request(server, "POST", "/health/table/later/wait?timeout=20")
    timer.join()
    assert answer.status == 200
    assert answer.json()["row_count"] == 1


@pytest.mark.parametrize(
    "query",
    [
        "timeout=abc",
        "timeout=-1",
        "timeout=301",
        "timeout=nan",
        "timeout=inf",
        "timeout=",
        "timeout=1&timeout=2",
        "timout=5",
    ],
)
def test_bad_wait_timeout_400(registry: vs.TableRegistry, server: HealthServer, query: str) -> None:
    registry.register("t", pa.table({"k": [1]}), key="k")
    answer = request(server, "POST", f"/health/table/t/wait?{query}")
    assert answer.status == 400
    assert answer.json()["error"]


def test_good_wait_timeouts(registry: vs.TableRegistry, server: HealthServer) -> None:
    registry.register("t", pa.table({"k": [1]}), key="k")
    for query in ("", "?timeout=0", "?timeout=2.5", "?timeout=300"):
        answer = request(server, "POST", f"/health/table/t/wait{query}")
        assert answer.status == 200, query


def test_wrong_method_405(registry: vs.TableRegistry, server: HealthServer) -> None:
    registry.register("t", pa.table({"k": [1]}), key="k")
    for method, path, allowed in [
        ("POST", "/health/tables", "GET"),
        ("DELETE", "/health/table/t", "GET"),
        ("GET", "/health/table/t/wait", "POST"),
        ("PUT", "/metrics", "GET"),
        ("POST", "/health/progress", "GET"),
    ]:
        answer = request(server, method, path)
        assert answer.status == 405, (method, path)
        assert answer.headers["Allow"] == allowed
        assert method in answer.json()["error"]


def test_a_failing_callable_answers_500_and_the_server_goes_on(
    registry: vs.TableRegistry,
) -> None:
    def statements() -> dict[str, Any]:
        raise RuntimeError("counters unavailable")

    registry.register("t", pa.table({"k": [1, 2]}), key="k")
    with HealthServer(registry, statements=statements) as server:
        for path in ("/metrics", "/health/progress"):
            answer = request(server, "GET", path)
            assert answer.status == 500
            assert "counters unavailable" in answer.json()["error"]
        answer = request(server, "GET", "/health/tables")
        assert answer.status == 200
        assert answer.json()["tables"]["t"]["row_count"] == 2


# --------------------------------------------------------------------------- progress, metrics


def test_progress_of_tables_statements_and_run(
    loaded: tuple[vs.TableRegistry, dict[str, int], Path],
) -> None:
    registry, _, customers_path = loaded
    counters = {"enrich": {"records_in": 10, "records_out": 8, "bad_records": 2}}
    with HealthServer(
        registry, statements=lambda: counters, progress=lambda: {"retries": 1, "commits": 4}
    ) as server:
        answer = request(server, "GET", "/health/progress")
        assert answer.status == 200
        body = answer.json()
        assert body["tables"]["customers"]["records"] == 2_000
        assert body["tables"]["customers"]["bytes"] == customers_path.stat().st_size
        assert body["tables"]["prices"]["records"] == 500
        assert body["statements"] == counters
        assert body["run"] == {"retries": 1, "commits": 4}


def test_metrics_parsed_with_exact_rows_status_and_load_counters(
    loaded: tuple[vs.TableRegistry, dict[str, int], Path],
) -> None:
    registry, counts, customers_path = loaded
    registry.create("pending", key="k")
    with HealthServer(registry) as server:
        samples = scrape(server)
    for name, rows in counts.items():
        labels = (("table", name),)
        assert samples["velostream_table_rows"][labels] == rows
        assert samples["velostream_table_bytes"][labels] == registry.get(name).bytes  # type: ignore[union-attr]
        assert samples["velostream_table_status"][(("status", "ready"), ("table", name))] == 1
        assert samples["velostream_table_status"][(("status", "loading"), ("table", name))] == 0
        assert samples["velostream_table_status"][(("status", "failed"), ("table", name))] == 0
        assert samples["velostream_table_load_records_per_second"][labels] > 0
        assert samples["velostream_table_load_percent"][labels] == 100
    customers = (("table", "customers"),)
    assert samples["velostream_table_load_records_total"][customers] == 2_000
    assert samples["velostream_table_load_bytes_total"][customers] == customers_path.stat().st_size
    pending = (("table", "pending"),)
    assert samples["velostream_table_rows"][pending] == 0
    assert samples["velostream_table_status"][(("status", "loading"), ("table", "pending"))] == 1
    assert pending not in samples["velostream_table_load_percent"]  # total unknown
    # A dedicated registry: the process-wide default one knows nothing of velostream.
    assert b"velostream_" not in generate_latest(REGISTRY)


def test_metrics_are_read_at_scrape_time(registry: vs.TableRegistry) -> None:
    handle = registry.create("growing", key="k")
    handle.progress.start()
    counters = {"s": {"records_in": 0, "records_out": 0, "lag": {"topic": 5, "file": None}}}
    with HealthServer(registry, statements=lambda: counters) as server:
        samples = scrape(server)
        assert samples["velostream_table_rows"][(("table", "growing"),)] == 0
        assert samples["velostream_statement_records_in_total"][(("statement", "s"),)] == 0
        handle.upsert(pa.record_batch({"k": list(range(10)), "v": [1] * 10}))
        handle.upsert(pa.record_batch({"k": list(range(5, 15)), "v": [2] * 10}))
        counters["s"] = {"records_in": 1234, "records_out": 1000, "lag": {"topic": 0}}
        counters["t"] = {"records_in": 7, "records_out": 7, "note": "text is skipped"}
        samples = scrape(server)
    assert samples["velostream_table_rows"][(("table", "growing"),)] == 15
    assert samples["velostream_table_load_records_total"][(("table", "growing"),)] == 20
    assert samples["velostream_statement_records_in_total"] == {
        (("statement", "s"),): 1234,
        (("statement", "t"),): 7,
    }
    assert samples["velostream_statement_records_out_total"][(("statement", "s"),)] == 1000
    assert samples["velostream_statement_lag_records"] == {
        (("source", "topic"), ("statement", "s")): 0
    }
    assert not any("note" in name for name in samples)


def test_metrics_from_statement_dataclasses(registry: vs.TableRegistry) -> None:
    from velostream.runtime.progress import StatementProgress

    snapshot = {"q": StatementProgress(records_in=9, records_out=4, bad_records=1, lag={"k": 3})}
    with HealthServer(registry, statements=lambda: snapshot) as server:
        samples = scrape(server)
        progress = request(server, "GET", "/health/progress").json()
    assert samples["velostream_statement_records_in_total"][(("statement", "q"),)] == 9
    assert samples["velostream_statement_bad_records_total"][(("statement", "q"),)] == 1
    assert samples["velostream_statement_lag_records"][(("source", "k"), ("statement", "q"))] == 3
    assert progress["statements"]["q"] == {
        "records_in": 9,
        "records_out": 4,
        "bad_records": 1,
        "lag": {"k": 3},
    }


def test_metrics_openmetrics_on_request(registry: vs.TableRegistry, server: HealthServer) -> None:
    registry.register("t", pa.table({"k": [1, 2, 3]}), key="k")
    answer = request(
        server, "GET", "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("application/openmetrics-text")
    assert answer.body.endswith(b"# EOF\n")
    assert b'velostream_table_rows{table="t"} 3.0' in answer.body


# --------------------------------------------------------------------------- concurrency, lifecycle


def test_concurrent_requests_are_all_answered(
    loaded: tuple[vs.TableRegistry, dict[str, int], Path],
) -> None:
    registry, counts, _ = loaded
    handle = registry.create("gate", key="k")
    with HealthServer(registry) as server:
        # Two waits blocked on a loading table while many other requests come and go.
        with ThreadPoolExecutor(max_workers=10) as pool:
            waits = [
                pool.submit(request, server, "POST", "/health/table/gate/wait?timeout=30")
                for _ in range(2)
            ]
            paths = ["/health/tables", "/health/table/customers", "/metrics", "/health/progress"]
            calls = [pool.submit(request, server, "GET", paths[i % 4]) for i in range(80)]
            answers = [call.result(timeout=30) for call in calls]
            assert all(not w.done() for w in waits)
            handle.upsert(pa.record_batch({"k": [1]}))
            handle.mark_ready()
            waited = [w.result(timeout=10) for w in waits]
    assert [w.status for w in waited] == [200, 200]
    for i, answer in enumerate(answers):
        path = paths[i % 4]
        assert answer.status == (503 if path == "/health/tables" else 200), path
        if path == "/health/table/customers":
            assert answer.json()["row_count"] == counts["customers"]
        if path == "/metrics":
            assert b'velostream_table_rows{table="prices"} 37.0' in answer.body


def test_stop_frees_the_port_and_answers_blocked_waits(registry: vs.TableRegistry) -> None:
    registry.create("never", key="k")
    server = HealthServer(registry).start()
    host, port = server.address
    assert host == "127.0.0.1"
    assert server.url == f"http://127.0.0.1:{port}"
    answers: list[Response] = []
    waiter = threading.Thread(
        target=lambda: answers.append(
            request(server, "POST", "/health/table/never/wait?timeout=60")
        )
    )
    waiter.start()
    time.sleep(0.3)
    started = time.monotonic()
    server.stop()
    waiter.join(10)
    assert time.monotonic() - started < 5
    assert [a.status for a in answers] == [503]
    assert "stopping" in answers[0].json()["error"]
    server.stop()  # idempotent

    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, port), timeout=5).close()
    # The port is free: another listener can take it (SO_REUSEADDR only lets it past the
    # TIME_WAIT of closed connections; Linux refuses it while anyone still listens there),
    # and a new server too.
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        probe.listen()
    with HealthServer(registry, port=port) as again:
        assert again.address == (host, port)
        assert request(again, "GET", "/health/table/never").json()["status"] == "loading"
    with pytest.raises(vs.ConfigError):
        server.start()


def test_a_busy_port_is_a_config_error(registry: vs.TableRegistry) -> None:
    with HealthServer(registry) as first:
        with pytest.raises(vs.ConfigError) as info:
            HealthServer(registry, port=first.address[1])
        assert info.value.key == "http"
        assert str(first.address[1]) in str(info.value)
        assert request(first, "GET", "/health/tables").status == 200


def test_parse_http_address() -> None:
    assert parse_http_address(":8080") == ("127.0.0.1", 8080)
    assert parse_http_address("8080") == ("127.0.0.1", 8080)
    assert parse_http_address("0.0.0.0:9100") == ("0.0.0.0", 9100)
    assert parse_http_address("[::1]:0") == ("::1", 0)
    for bad in ("", ":", "host:port", ":70000", "::1:80", "a:-1"):
        with pytest.raises(vs.ConfigError):
            parse_http_address(bad)
