"""Parallel table loading: waves, concurrency, failures, retries, timeouts, values vs DuckDB."""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

import velostream as vs
from velostream.runtime.resilience import RetryEvent
from velostream.tables import TableLoad, TableProgress, plan_table

NO_RETRY = vs.RetryPolicy(max_attempts=1, initial_backoff=0.01, max_backoff=0.01)


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> Path:
    with path.open("w") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
    return path


def trades(n: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "seq": i,
            "id": rng.randrange(n // 4 + 1),
            "sym": f"S{rng.randrange(13)}",
            "qty": rng.randrange(1, 100),
            "px": round(rng.uniform(1, 500), 2),
        }
        for i in range(n)
    ]


def file_props(name: str, path: Path, **extra: str) -> dict[str, str]:
    props = {f"{name}.type": "file_source", f"{name}.path": str(path), f"{name}.format": "json"}
    props.update({f"{name}.{k.replace('_', '.')}": v for k, v in extra.items()})
    return props


def rows_of(table: Any) -> list[tuple[Any, ...]]:
    data = table.to_pydict()
    return sorted(zip(*data.values(), strict=True))


def delayed_write(delay: float, files: list[tuple[Path, list[dict[str, Any]]]]) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        for path, records in files:
            tmp = path.with_suffix(".tmp")
            write_jsonl(tmp, records)
            tmp.rename(path)  # the file appears whole

    thread = threading.Thread(target=run)
    thread.start()
    return thread


# --------------------------------------------------------------------------- values


def test_group_by_table_holds_duckdb_latest_aggregate_per_key(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "trades.jsonl", trades(20_000))
    registry = vs.TableRegistry()
    definition = vs.TableDefinition(
        "by_sym",
        "SELECT sym, COUNT(*) AS n, SUM(qty) AS qty, MAX(px) AS top FROM trades GROUP BY sym",
        properties=file_props("trades", path, batch_size="1000"),
    )
    result = vs.ParallelLoader(registry).load([definition])
    assert result.successful == ["by_sym"]
    handle = registry.get("by_sym")
    assert handle is not None
    assert handle.key == ("sym",)
    assert handle.status is vs.TableStatus.READY
    expected = duckdb.sql(
        f"SELECT sym, COUNT(*), SUM(qty), MAX(px) FROM read_json('{path}') GROUP BY sym"
    ).fetchall()
    assert rows_of(handle.snapshot()) == sorted(expected)
    assert handle.row_count == len(expected)


def test_primary_key_table_holds_the_last_row_per_key(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "trades.jsonl", trades(5_000))
    registry = vs.TableRegistry()
    result = vs.ParallelLoader(registry).load(
        [
            vs.TableDefinition(
                "latest",
                "SELECT id PRIMARY KEY, sym, qty * px AS notional, seq FROM trades "
                "WITH ('trades.batch.size' = '700')",
                properties=file_props("trades", path),
            )
        ]
    )
    assert result.successful == ["latest"]
    expected = duckdb.sql(
        f"SELECT id, sym, qty * px, seq FROM read_json('{path}') "
        "QUALIFY row_number() OVER (PARTITION BY id ORDER BY seq DESC) = 1"
    ).fetchall()
    got = rows_of(registry.get("latest").snapshot())  # type: ignore[union-attr]
    assert [r[0] for r in got] == sorted(r[0] for r in expected)
    expected_by_id = {r[0]: r for r in expected}
    for row in got:
        want = expected_by_id[row[0]]
        assert row[1] == want[1] and row[3] == want[3]
        assert row[2] == pytest.approx(want[2])


def test_keyless_table_is_refused() -> None:
    registry = vs.TableRegistry()
    with pytest.raises(vs.SqlValidationError, match="needs a key"):
        vs.ParallelLoader(registry).load(
            [
                vs.TableDefinition(
                    "t", "SELECT a, b FROM src", properties={"src.type": "file_source"}
                )
            ]
        )
    assert registry.names() == []


def test_diamond_tables_read_tables_in_waves_as_duckdb(tmp_path: Path) -> None:
    records = trades(8_000)
    path = write_jsonl(tmp_path / "trades.jsonl", records)
    registry = vs.TableRegistry()
    defs = [
        vs.TableDefinition(
            "d",
            "SELECT key PRIMARY KEY, total FROM b UNION ALL SELECT key, total FROM c",
        ),
        vs.TableDefinition(
            "b",
            "SELECT CONCAT('sym-', sym) AS key, SUM(qty) AS total FROM a GROUP BY CONCAT('sym-', sym)",
        ),
        vs.TableDefinition(
            "c",
            "SELECT CONCAT('id-', CAST(id AS VARCHAR)) AS key, SUM(qty) AS total FROM a "
            "WHERE px > 250 GROUP BY CONCAT('id-', CAST(id AS VARCHAR))",
        ),
        vs.TableDefinition(
            "a",
            "SELECT id PRIMARY KEY, sym, qty, px FROM trades",
            properties=file_props("trades", path),
        ),
    ]
    result = vs.ParallelLoader(registry).load(defs)
    assert result.waves == [["a"], ["b", "c"], ["d"]]
    assert result.successful[0] == "a" and result.successful[-1] == "d"
    assert sorted(result.successful) == ["a", "b", "c", "d"]
    assert result.failed == {} and result.skipped == {}
    latest = (
        f"(SELECT * FROM read_json('{path}') "
        "QUALIFY row_number() OVER (PARTITION BY id ORDER BY seq DESC) = 1)"
    )
    expected = duckdb.sql(
        f"SELECT 'sym-' || sym, SUM(qty) FROM {latest} GROUP BY sym "
        f"UNION ALL SELECT 'id-' || CAST(id AS VARCHAR), SUM(qty) FROM {latest} "
        "WHERE px > 250 GROUP BY id"
    ).fetchall()
    assert rows_of(registry.get("d").snapshot()) == sorted(expected)  # type: ignore[union-attr]
    for name in "abcd":
        handle = registry.get(name)
        assert handle is not None and handle.status is vs.TableStatus.READY
    assert registry.get("c").source == "a: table"  # type: ignore[union-attr]


# --------------------------------------------------------------------------- concurrency


def _late_diamond(tmp_path: Path) -> tuple[list[vs.TableDefinition], list[tuple[Path, Any]]]:
    """a; b and c each wait for a file that appears later (and depend on a); d reads b, c."""
    a_path = write_jsonl(tmp_path / "a.jsonl", [{"k": i, "v": i} for i in range(100)])
    b_path, c_path = tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    wait = {"file_wait_timeout": "10s"}
    defs = [
        vs.TableDefinition(
            "a", "SELECT k PRIMARY KEY, v FROM a_src", (), file_props("a_src", a_path)
        ),
        vs.TableDefinition(
            "b", "SELECT k PRIMARY KEY, v FROM b_src", ("a",), file_props("b_src", b_path, **wait)
        ),
        vs.TableDefinition(
            "c", "SELECT k PRIMARY KEY, v FROM c_src", ("a",), file_props("c_src", c_path, **wait)
        ),
        vs.TableDefinition(
            "d", "SELECT k PRIMARY KEY, v FROM b UNION ALL SELECT k, v FROM c", ("a",)
        ),
    ]
    files = [
        (b_path, [{"k": i, "v": 10 * i} for i in range(0, 50)]),
        (c_path, [{"k": i, "v": 20 * i} for i in range(50, 100)]),
    ]
    return defs, files


def _span(registry: vs.TableRegistry, name: str) -> tuple[float, float]:
    handle = registry.get(name)
    assert handle is not None
    progress = handle.progress
    assert progress.started_at is not None and progress.finished_at is not None
    return progress.started_at, progress.finished_at


def test_wave_tables_load_concurrently(tmp_path: Path) -> None:
    defs, files = _late_diamond(tmp_path)
    registry = vs.TableRegistry()
    writer = delayed_write(0.4, files)
    result = vs.ParallelLoader(registry, max_parallel=4).load(defs)
    writer.join()
    assert result.waves == [["a"], ["b", "c"], ["d"]]
    assert result.failed == {}
    a, b, c, d = (_span(registry, n) for n in "abcd")
    assert a[1] <= min(b[0], c[0])
    assert b[0] < c[1] and c[0] < b[1], "b and c were not loading at the same time"
    assert d[0] >= max(b[1], c[1])
    snapshot = registry.get("d").snapshot()  # type: ignore[union-attr]
    assert rows_of(snapshot) == sorted(
        [(i, 10 * i) for i in range(50)] + [(i, 20 * i) for i in range(50, 100)]
    )


def test_max_parallel_one_serialises_a_wave(tmp_path: Path) -> None:
    defs, files = _late_diamond(tmp_path)
    registry = vs.TableRegistry()
    writer = delayed_write(0.3, files)
    result = vs.ParallelLoader(registry, max_parallel=1).load(defs)
    writer.join()
    assert result.waves == [["a"], ["b", "c"], ["d"]]
    assert result.successful == ["a", "b", "c", "d"]
    spans = [_span(registry, n) for n in "abcd"]
    for earlier, later in itertools.pairwise(spans):
        assert earlier[1] <= later[0], "two tables loaded at the same time"


# --------------------------------------------------------------------------- failures


def test_failed_table_skips_its_dependents(tmp_path: Path) -> None:
    good = write_jsonl(tmp_path / "good.jsonl", [{"k": 1, "v": 1}, {"k": 2, "v": 2}])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"k": 1, "v": 1}\n{"k": 2, "v": "not a number"}\n')
    defs = [
        vs.TableDefinition("ok", "SELECT k PRIMARY KEY, v FROM g", (), file_props("g", good)),
        vs.TableDefinition(
            "broken",
            "SELECT k PRIMARY KEY, v FROM src WITH ('error.strategy' = 'fail')",
            (),
            file_props("src", bad, schema_inference_rows="1"),
        ),
        vs.TableDefinition("child", "SELECT k PRIMARY KEY, v FROM broken"),
        vs.TableDefinition("grandchild", "SELECT k PRIMARY KEY, v FROM child", ("ok",)),
        vs.TableDefinition("sibling", "SELECT k PRIMARY KEY, v FROM ok"),
    ]
    registry = vs.TableRegistry()
    result = vs.ParallelLoader(registry, retry=vs.RetryPolicy(max_attempts=3)).load(defs)
    assert result.waves == [["broken", "ok"], ["child", "sibling"], ["grandchild"]]
    assert sorted(result.successful) == ["ok", "sibling"]
    assert list(result.failed) == ["broken"]
    assert isinstance(result.failed["broken"], vs.DataError)
    assert result.attempts["broken"] == 1  # bad data is not retried
    assert set(result.skipped) == {"child", "grandchild"}
    assert "'broken'" in result.skipped["child"]
    assert "'child'" in result.skipped["grandchild"]
    assert "'broken'" in result.skipped["grandchild"]
    for name in ("child", "grandchild"):
        handle = registry.get(name)
        assert handle is not None
        assert handle.status is vs.TableStatus.FAILED
        assert handle.progress.started_at is None, f"{name} was started"
        assert name not in result.attempts
        with pytest.raises(vs.TableNotReadyError) as info:
            registry.wait_for_table_ready(name, timeout=1.0)
        assert info.value.status == "failed"
    assert registry.get("broken").error is result.failed["broken"]  # type: ignore[union-attr]


def test_missing_file_fails_after_its_retries(tmp_path: Path) -> None:
    registry = vs.TableRegistry()
    retry = vs.RetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.01)
    result = vs.ParallelLoader(registry, retry=retry).load(
        [
            vs.TableDefinition(
                "t", "SELECT k PRIMARY KEY FROM src", (), file_props("src", tmp_path / "no.jsonl")
            )
        ]
    )
    assert result.attempts == {"t": 2}
    error = result.failed["t"]
    assert isinstance(error, vs.SourceError)
    assert "2 attempt" in str(error)
    assert "no.jsonl" in str(error)


def test_transient_failure_succeeds_on_retry(tmp_path: Path) -> None:
    path = tmp_path / "appears.jsonl"
    events: list[tuple[str, RetryEvent]] = []

    def file_appears_after_first_failure(table: str, event: RetryEvent) -> None:
        events.append((table, event))
        write_jsonl(path, [{"k": 1, "v": 1}, {"k": 1, "v": 2}, {"k": 2, "v": 3}])

    registry = vs.TableRegistry()
    loader = vs.ParallelLoader(registry, on_retry=file_appears_after_first_failure)
    result = loader.load(
        [vs.TableDefinition("t", "SELECT k PRIMARY KEY, v FROM src", (), file_props("src", path))]
    )
    assert result.successful == ["t"]
    assert result.attempts == {"t": 2}
    assert len(events) == 1
    table, event = events[0]
    assert table == "t" and event.attempt == 1
    assert isinstance(event.error, vs.SourceError)
    handle = registry.get("t")
    assert handle is not None and handle.error is None
    assert rows_of(handle.snapshot()) == [(1, 2), (2, 3)]


def test_table_timeout_stops_the_load(tmp_path: Path) -> None:
    never = tmp_path / "never.jsonl"
    ok = write_jsonl(tmp_path / "ok.jsonl", [{"k": 1}])
    defs = [
        vs.TableDefinition(
            "slow",
            "SELECT k PRIMARY KEY FROM src",
            (),
            file_props("src", never, file_wait_timeout="60s"),
        ),
        vs.TableDefinition("after", "SELECT k PRIMARY KEY FROM slow"),
        vs.TableDefinition("fine", "SELECT k PRIMARY KEY FROM o", (), file_props("o", ok)),
    ]
    registry = vs.TableRegistry()
    started = time.monotonic()
    result = vs.ParallelLoader(registry, table_timeout=0.3).load(defs)
    assert time.monotonic() - started < 5.0
    assert result.successful == ["fine"]
    error = result.failed["slow"]
    assert isinstance(error, vs.TableNotReadyError)
    assert error.table == "slow" and error.timeout == 0.3
    assert "'slow'" in result.skipped["after"]
    assert registry.get("slow").status is vs.TableStatus.FAILED  # type: ignore[union-attr]
    # The loading thread was told to stop, and did.
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(
        t.name == "velostream-table-slow" for t in threading.enumerate()
    ):
        time.sleep(0.02)
    assert not any(t.name == "velostream-table-slow" for t in threading.enumerate())


def test_stream_waits_for_a_table_the_loader_makes_ready(tmp_path: Path) -> None:
    path = tmp_path / "late.jsonl"
    registry = vs.TableRegistry()
    definition = vs.TableDefinition(
        "ref",
        "SELECT k PRIMARY KEY, v FROM src",
        (),
        file_props("src", path, file_wait_timeout="10s"),
    )
    outcome: list[Any] = []

    def reader() -> None:
        handle = registry.wait_for_table_ready("ref", timeout=10.0)
        outcome.append(handle.snapshot().num_rows)

    thread = threading.Thread(target=reader)
    thread.start()  # before the table exists
    writer = delayed_write(0.2, [(path, [{"k": 1, "v": 1}, {"k": 2, "v": 2}])])
    result = vs.ParallelLoader(registry).load([definition])
    writer.join()
    thread.join(10.0)
    assert result.successful == ["ref"]
    assert outcome == [2]  # the reader never saw a half-loaded table


# --------------------------------------------------------------------------- one table


def test_table_load_progress_and_reuse(tmp_path: Path) -> None:
    # Larger than the file source's first block (1 MiB), so it is read in several.
    records = [{"k": i % 100, "v": i, "pad": "x" * 100} for i in range(20_000)]
    path = write_jsonl(tmp_path / "t.jsonl", records)
    size = path.stat().st_size
    assert size > 2 << 20
    registry = vs.TableRegistry()
    definition = vs.TableDefinition(
        "t",
        "SELECT k, SUM(v) AS total FROM src GROUP BY k",
        properties=file_props("src", path, batch_size="1000"),
    )
    plan = plan_table(definition)
    assert plan.key == ("k",)
    handle = registry.create("t", key=plan.key, source=plan.describe())
    load = TableLoad(plan, registry)
    seen: list[dict[str, Any]] = []

    def on_progress(progress: TableProgress) -> None:
        seen.append(progress.as_dict())

    # flush=False: the table is kept up to date afterwards (its query goes on).
    assert load.bulk(handle, stop=threading.Event(), on_progress=on_progress, flush=False)
    assert handle.progress.total == size and handle.progress.unit == "bytes"
    assert len(seen) >= 20
    assert set(seen[0]) == {
        "records",
        "bytes",
        "records_per_second",
        "percent",
        "eta_seconds",
        "elapsed_seconds",
    }
    percents = [s["percent"] for s in seen]
    assert all(p is not None and 0 < p <= 100 for p in percents)
    assert percents == sorted(percents)
    assert any(s["eta_seconds"] is not None and s["eta_seconds"] > 0 for s in seen[:-1])
    assert percents[0] < 60
    assert seen[-1]["records"] == 20_000 and seen[-1]["bytes"] == size
    handle.mark_ready()
    final = handle.progress.as_dict()
    assert final["percent"] == 100.0 and final["eta_seconds"] == 0.0
    assert final["records_per_second"] > 0 and final["elapsed_seconds"] > 0
    # After the bulk load, the same query keeps its aggregates: one more batch updates a key.
    load.apply(pa.record_batch({"k": [5], "v": [1_000_000]}), handle)
    expected = sum(r["v"] for r in records if r["k"] == 5) + 1_000_000
    row = dict(zip(*handle.snapshot().to_pydict().values(), strict=True))
    assert row[5] == expected


def test_stopped_bulk_load_returns_false(tmp_path: Path) -> None:
    registry = vs.TableRegistry()
    plan = plan_table(
        vs.TableDefinition(
            "t",
            "SELECT k PRIMARY KEY FROM src",
            properties=file_props("src", tmp_path / "never.jsonl", file_wait_timeout="30s"),
        )
    )
    handle = registry.create("t", key=plan.key)
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    assert TableLoad(plan, registry).bulk(handle, stop=stop) is False
    assert time.monotonic() - started < 5.0


def test_definition_errors_are_raised_before_loading(tmp_path: Path) -> None:
    registry = vs.TableRegistry()
    loader = vs.ParallelLoader(registry)
    sink = {"out.type": "file_sink", "out.path": str(tmp_path / "out.jsonl")}
    with pytest.raises(vs.ConfigError, match="not a source"):
        loader.load([vs.TableDefinition("t", "SELECT k PRIMARY KEY FROM out", (), sink)])
    with pytest.raises(vs.SqlValidationError, match="creates table 'other'"):
        loader.load(
            [
                vs.TableDefinition(
                    "t",
                    "CREATE TABLE other AS SELECT k PRIMARY KEY FROM src",
                    properties=file_props("src", tmp_path / "x.jsonl"),
                )
            ]
        )
    registry.register("t", pa.table({"k": [1]}), key="k")
    with pytest.raises(vs.ConfigError, match="already registered"):
        loader.load([vs.TableDefinition("t", "SELECT k PRIMARY KEY FROM u")])
    with pytest.raises(vs.ConfigError):
        vs.ParallelLoader(registry, max_parallel=0)
    with pytest.raises(vs.ConfigError):
        vs.ParallelLoader(registry, table_timeout=-1)
    assert registry.names() == ["t"]


def test_create_table_statement_and_registered_input(tmp_path: Path) -> None:
    registry = vs.TableRegistry()
    registry.register("ref", pa.table({"k": [1, 2, 2], "v": [10, 20, 30]}), key="k")
    result = vs.ParallelLoader(registry).load(
        [vs.TableDefinition("t", "CREATE TABLE t AS SELECT k PRIMARY KEY, v + 1 AS w FROM ref")]
    )
    assert result.successful == ["t"]
    assert rows_of(registry.get("t").snapshot()) == [(1, 11), (2, 31)]  # type: ignore[union-attr]
