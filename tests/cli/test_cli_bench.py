"""`velostream bench`: the old-vs-direct comparison from the command line (SPEC section 3)."""

import json
import subprocess
import sys


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "velostream", "bench", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_bench_json_has_the_specified_shape_for_every_workload_so_far() -> None:
    done = _bench("--records", "20000", "--legacy-records", "500", "--format", "json")
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert set(results) == {"select_where", "group_by_continuous", "tumbling_window"}
    for figures in results.values():
        assert set(figures) == {"direct_rps", "legacy_rps", "ratio"}
        assert all(isinstance(v, float) and v > 0 for v in figures.values())
        assert (
            abs(figures["ratio"] - figures["direct_rps"] / figures["legacy_rps"])
            < 1e-6 * figures["ratio"]
        )


def test_bench_table_names_each_workload() -> None:
    done = _bench(
        "--records", "5000", "--legacy-records", "200", "--workload", "group_by_continuous"
    )
    assert done.returncode == 0, done.stderr
    assert "group_by_continuous" in done.stdout
    assert "select_where" not in done.stdout
    assert "legacy rec/s" in done.stdout


def test_bench_rejects_an_unknown_workload() -> None:
    done = _bench("--records", "1000", "--workload", "nope")
    assert done.returncode == 2
    assert "nope" in done.stderr
