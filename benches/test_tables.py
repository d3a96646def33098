"""Table bulk load from JSON Lines (issue 12: >= 2 M records/s), DuckDB beside it.

One file per session: 1 M JSON lines ``{"id", "name", "price", "qty"}`` with 200 000
distinct ids (each five times, in a seeded random order), so the loader's upserts replace
rows and the table ends with 200 000 rows, the last line of each id. velostream loads it
with :class:`velostream.ParallelLoader` into a ``PRIMARY KEY`` table (a fresh registry
per round: reading, decoding, the query, the upserts into the Rust key index); the rate is
lines in the file / seconds of ``load``. DuckDB (one thread) reads the same file with
``read_json`` into a native table in the same run: once as a plain copy, once keeping the
last row per id as velostream does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import velostream as vs
from conftest import record_rate

ROWS = 1_000_000
KEYS = 200_000
SEED = 20240611

SQL = "SELECT id PRIMARY KEY, name, price, qty FROM src"


def make_rows(rows: int = ROWS, keys: int = KEYS, seed: int = SEED) -> pa.Table:
    """The file's rows, the same for the same arguments: every id ``rows // keys`` times."""
    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.arange(rows, dtype=np.int64) % keys)
    names = pc.binary_join_element_wise(
        "item-", pc.cast(pa.array(rng.integers(0, 50_000, rows)), pa.string()), ""
    )
    return pa.table(
        {
            "id": ids,
            "name": names,
            "price": np.round(rng.uniform(1.0, 500.0, rows), 2),
            "qty": rng.integers(1, 1001, rows, dtype=np.int64),
        }
    )


@pytest.fixture(scope="session")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pa.Table]:
    """The JSON Lines file (written once) and the rows it holds, in file order."""
    rows = make_rows()
    path = tmp_path_factory.mktemp("table_load") / "src.jsonl"
    con = duckdb.connect()
    con.register("rows_arrow", rows)
    con.execute(f"COPY (SELECT * FROM rows_arrow) TO '{path}' (FORMAT json)")
    con.close()
    with path.open("rb") as f:
        assert f.readline().startswith(b'{"id":')
    return path, rows


def expected_table(rows: pa.Table) -> pa.Table:
    """The last row of each id, sorted by id: what the PRIMARY KEY table must hold."""
    position = pa.array(np.arange(rows.num_rows, dtype=np.int64))
    last = rows.append_column("pos", position).group_by("id").aggregate([("pos", "max")])
    return rows.take(last["pos_max"]).sort_by("id")


def load(path: Path) -> vs.TableRegistry:
    """Load the file into table ``t`` of a fresh registry; fails unless the load succeeded."""
    registry = vs.TableRegistry()
    properties = {"src.type": "file_source", "src.path": str(path), "src.format": "json"}
    result = vs.ParallelLoader(registry).load([vs.TableDefinition("t", SQL, properties=properties)])
    assert result.successful == ["t"], result
    return registry


def test_table_bulk_load_velostream(benchmark: Any, source: tuple[Path, pa.Table]) -> None:
    benchmark.group = "table_load"
    path, rows = source
    registries: list[vs.TableRegistry] = []
    benchmark.pedantic(
        lambda: registries.append(load(path)), rounds=3, warmup_rounds=1, iterations=1
    )
    handle = registries[-1].get("t")
    assert handle is not None and handle.key == ("id",)
    assert handle.row_count == KEYS
    assert handle.snapshot().sort_by("id").equals(expected_table(rows))
    record_rate(benchmark, ("table_load", "velostream"), ROWS)
    benchmark.extra_info["bytes"] = path.stat().st_size


@pytest.fixture()
def duck() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET threads = 1")
    return con


def test_table_bulk_load_duckdb(
    benchmark: Any, source: tuple[Path, pa.Table], duck: duckdb.DuckDBPyConnection
) -> None:
    """``read_json`` into a native table, one thread: the whole file, no keys."""
    benchmark.group = "table_load"
    path, rows = source

    def run() -> None:
        duck.execute(f"CREATE OR REPLACE TABLE t AS SELECT * FROM read_json('{path}')")

    benchmark.pedantic(run, rounds=3, warmup_rounds=1, iterations=1)
    assert duck.sql("SELECT * FROM t").to_arrow_table().equals(rows)
    record_rate(benchmark, ("table_load", "duckdb"), ROWS)
    benchmark.extra_info["threads"] = 1


def test_table_bulk_load_duckdb_last_per_key(
    benchmark: Any, source: tuple[Path, pa.Table], duck: duckdb.DuckDBPyConnection
) -> None:
    """The same work as the PRIMARY KEY table: the last line of each id (file order)."""
    benchmark.group = "table_load"
    path, rows = source

    def run() -> None:
        duck.execute(
            "CREATE OR REPLACE TABLE t AS SELECT id, name, price, qty FROM "
            f"(SELECT *, row_number() OVER () AS pos FROM read_json('{path}')) "
            "QUALIFY row_number() OVER (PARTITION BY id ORDER BY pos DESC) = 1"
        )

    benchmark.pedantic(run, rounds=3, warmup_rounds=1, iterations=1)
    got = duck.sql("SELECT * FROM t ORDER BY id").to_arrow_table()
    assert got.equals(expected_table(rows))
    record_rate(benchmark, ("table_load", "duckdb_last_per_key"), ROWS)
    benchmark.extra_info["threads"] = 1
