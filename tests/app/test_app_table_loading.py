"""Tables of an application load at most 'table.load.max_parallel' at a time (SPEC 8)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

import velostream as vs


def write_rows(path: Path, rows: int) -> None:
    with path.open("w") as f:
        for i in range(rows):
            f.write(json.dumps({"id": i % 5000, "v": i}) + "\n")


def app_sql(tables: int) -> str:
    return ";\n".join(
        f"CREATE TABLE t{i} AS SELECT id PRIMARY KEY, v FROM s{i} "
        f"WITH ('s{i}.type' = 'file_source', 's{i}.path' = 's{i}.jsonl')"
        for i in range(tables)
    )


@pytest.mark.parametrize("parallel", [1, 4])
def test_table_loads_overlap_only_up_to_max_parallel(tmp_path: Path, parallel: int) -> None:
    for i in range(3):
        write_rows(tmp_path / f"s{i}.jsonl", 150_000)
    app = vs.Application.from_sql(
        app_sql(3), base_dir=tmp_path, properties={"table.load.max_parallel": str(parallel)}
    )
    app.run(until_end=True)
    spans = []
    for i in range(3):
        handle = app.registry.get(f"t{i}")
        assert handle is not None and handle.status == vs.TableStatus.READY
        assert handle.row_count == 5000
        spans.append((handle.progress.started_at, handle.progress.finished_at))
    spans.sort()
    overlaps = sum(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))
    if parallel == 1:
        assert overlaps == 0, spans
    else:
        assert overlaps == 2, spans  # all three started before the first one was READY


def test_max_parallel_must_be_a_positive_integer(tmp_path: Path) -> None:
    with pytest.raises(vs.ConfigError) as err:
        vs.Application.from_sql(
            app_sql(1), base_dir=tmp_path, properties={"table.load.max_parallel": "0"}
        )
    assert err.value.key == "table.load.max_parallel"
