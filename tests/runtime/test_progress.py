"""The live progress table of ``velostream run`` and the run summary's job counters (issue 11)."""

from __future__ import annotations

import re
import threading
import time
from io import StringIO

import pytest
from rich.console import Console

from velostream.runtime.progress import (
    Progress,
    RateMeter,
    RunSnapshot,
    StatementProgress,
    TableProgressView,
)
from velostream.runtime.report import RunReport, StatementReport

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class FakeClock:
    def __init__(self, now: float = 50.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def terminal() -> tuple[Console, StringIO]:
    out = StringIO()
    return Console(file=out, force_terminal=True, width=120), out


def rows(text: str) -> dict[str, list[str]]:
    """Statement name -> the cells of its row, from the last table drawn."""
    plain = ANSI.sub("", text)
    found: dict[str, list[str]] = {}
    for line in plain.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃]", line)[1:-1]]
        if len(cells) == 6 and cells[0] not in ("statement", ""):
            found[cells[0]] = cells[1:]
    return found


class Counters:
    """A run's counters, as the runtime would keep them (the snapshot reads them)."""

    def __init__(self) -> None:
        self.snapshots: list[RunSnapshot] = []
        self.calls = 0
        self.current = RunSnapshot()

    def __call__(self) -> RunSnapshot:
        self.calls += 1
        return self.current


def test_the_table_shows_each_statement_s_counters():
    counters = Counters()
    counters.current = RunSnapshot(
        statements={
            "enriched": StatementProgress(
                records_in=1_234_567, records_out=1_200_000, bad_records=3, lag={"trades": 42}
            ),
            "by_symbol": StatementProgress(records_in=10, records_out=2, lag={}),
        },
        retries=7,
        dead_letters=3,
        commits=12,
    )
    console, out = terminal()
    with Progress(counters, console=console, transient=False, refresh_per_second=20) as progress:
        assert progress.active
    assert not progress.active
    text = ANSI.sub("", out.getvalue())
    table = rows(text)
    assert table["enriched"] == ["1,234,567", "1,200,000", table["enriched"][2], "42", "3"]
    assert table["by_symbol"][:2] == ["10", "2"]
    assert table["by_symbol"][3:] == ["-", "0"]  # no source with a lag (a file)
    for header in ("statement", "in", "out", "records/s", "lag", "errors"):
        assert header in text
    assert "retries 7" in text and "dead letters 3" in text and "commits 12" in text
    assert counters.calls >= 2  # drawn at the start and at the end


def test_the_table_shows_each_table_s_load():
    counters = Counters()
    counters.current = RunSnapshot(
        statements={"enriched": StatementProgress(records_in=5)},
        tables={
            "customers": TableProgressView(
                status="loading",
                rows=4_000,
                records=5_000,
                records_per_second=2_500.0,
                percent=42.4,
                eta_seconds=3.0,
            ),
            "tiers": TableProgressView(status="ready", rows=3, records=3),
        },
    )
    console, out = terminal()
    with Progress(counters, console=console, transient=False, refresh_per_second=20):
        pass
    table = rows(ANSI.sub("", out.getvalue()))
    assert table["table customers"][:2] == ["5,000", "4,000 rows"]
    assert table["table customers"][3] == "loading 42 %, ETA 3s"
    assert table["table tiers"][1:4] == ["3 rows", "-", "ready"]


def test_records_per_second_come_from_two_snapshots():
    clock = FakeClock()
    counters = Counters()
    progress = Progress(counters, console=terminal()[0], clock=clock)
    counters.current = RunSnapshot(statements={"s": StatementProgress(records_in=1_000)})
    first = progress.render()
    clock.now += 2.0
    counters.current = RunSnapshot(statements={"s": StatementProgress(records_in=9_000)})
    second = progress.render()
    console, out = terminal()
    console.print(first)
    assert rows(out.getvalue())["s"][2] == "-"  # one snapshot: no rate yet
    console, out = terminal()
    console.print(second)
    assert rows(out.getvalue())["s"][2] == "4,000"  # 8 000 records in 2 s


def test_the_rate_is_smoothed_over_time():
    meter = RateMeter(half_life=2.0)
    assert meter.update("s", 0, 0.0) is None
    assert meter.update("s", 1000, 1.0) == pytest.approx(1000.0)
    # A burst 2 s (one half-life) later moves the rate half-way to the new plain rate.
    assert meter.update("s", 1000 + 2 * 3000, 3.0) == pytest.approx(2000.0)
    # Samples too close together are ignored, a counter that goes down counts as 0.
    assert meter.update("s", 10**9, 3.01) == pytest.approx(2000.0)
    assert meter.update("s", 0, 5.0) == pytest.approx(1000.0)
    assert meter.rate("other") is None


@pytest.mark.parametrize(
    ("lag", "shown"),
    [
        ({"a": 5, "b": 7}, "12"),
        ({"a": None}, "?"),
        ({"a": 5, "b": None}, "≥5"),
        ({"a": 1_500_000}, "1,500,000"),
        ({}, "-"),
    ],
)
def test_the_lag_column(lag, shown):
    counters = Counters()
    counters.current = RunSnapshot(statements={"s": StatementProgress(lag=lag)})
    console, out = terminal()
    console.print(Progress(counters, console=console).render())
    assert rows(out.getvalue())["s"][3] == shown


def test_the_table_is_redrawn_while_the_run_goes_on():
    counters = Counters()
    console, out = terminal()
    with Progress(counters, console=console, refresh_per_second=50, transient=False):
        for n in range(1, 6):
            counters.current = RunSnapshot(statements={"s": StatementProgress(records_in=n * 100)})
            time.sleep(0.1)
    text = ANSI.sub("", out.getvalue())
    assert counters.calls >= 10  # a thread takes snapshots on its own
    drawn = []  # the "in" cell of every frame's row of statement s
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) == 6 and cells[0] == "s":
            drawn.append(cells[1])
    # Several frames, with the counters of their moment, the last one the final counters.
    assert len(set(drawn)) >= 3, drawn
    assert drawn[-1] == "500"
    assert not [t for t in threading.enumerate() if t.name == "velostream-progress"]


def test_nothing_is_drawn_when_the_console_is_not_a_terminal():
    counters = Counters()
    out = StringIO()
    console = Console(file=out, force_terminal=False, width=120)
    with Progress(counters, console=console, refresh_per_second=50) as progress:
        assert not progress.active
        time.sleep(0.1)
    assert out.getvalue() == ""
    assert counters.calls == 0


def test_a_failing_snapshot_keeps_the_display_alive():
    state = {"fail": False}
    good = RunSnapshot(statements={"s": StatementProgress(records_in=5)})

    def snapshot() -> RunSnapshot:
        if state["fail"]:
            raise RuntimeError("counters busy")
        return good

    console, out = terminal()
    with Progress(snapshot, console=console, transient=False, refresh_per_second=50):
        time.sleep(0.05)
        state["fail"] = True
        time.sleep(0.1)
    assert rows(out.getvalue())["s"][0] == "5"


# --------------------------------------------------------------------------- the summary


def test_the_summary_shows_the_job_counters_that_are_not_zero():
    report = RunReport(
        statements={
            "a": StatementReport("a", records_in=10, records_out=8, retries=2, commits=3, lag=5),
            "b": StatementReport("b", records_in=4, dead_letters=1, commits=1, lag=None),
        },
        duration=1.5,
    )
    assert (report.retries, report.dead_letters, report.commits, report.lag) == (2, 1, 4, 5)
    end = report.summary().splitlines()[-1]
    assert end == (
        "finished in 1.500s: 14 records in, 8 out, 0 bad records, 1 dead letters written, "
        "2 retries, 4 commits, consumer lag 5 records"
    )


def test_the_summary_leaves_zero_counters_out():
    report = RunReport(statements={"a": StatementReport("a", records_in=1, lag=0)}, duration=1.0)
    assert report.lag == 0
    assert report.summary().splitlines()[-1] == (
        "finished in 1.000s: 1 records in, 0 out, 0 bad records"
    )
    assert RunReport().lag is None
