"""Live progress of ``velostream run`` on a terminal (SPEC section 3), drawn with ``rich``.

The runtime hands :class:`Progress` a function returning a :class:`RunSnapshot` (its
counters now); a thread calls it a few times a second and redraws one table: per
statement the records in and out, the input rate (records/s, from successive snapshots,
smoothed), the consumer lag of its sources and its bad records, per table its load
(status, rows, records/s, percent and ETA when the total is known), and under it the
job's retries, dead letters and commits. When the console is not a terminal (CI, a pipe, a
file) nothing is drawn and the function is never called, so logs stay clean; the run's
summary (:meth:`velostream.runtime.report.RunReport.summary`) is printed either way.

Usage::

    with Progress(runtime.snapshot):
        runtime.run()
    print(report.summary())
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.table import Table

__all__ = ["Progress", "RateMeter", "RunSnapshot", "StatementProgress", "TableProgressView"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StatementProgress:
    """The counters of one statement at one moment.

    Attributes:
        records_in: records its query received so far.
        records_out: records its query emitted so far.
        bad_records: bad input records so far (whatever the error strategy).
        lag: source name -> its consumer lag in records (the high watermark minus the
            position, summed over partitions), or None while unknown. A source without
            a lag (a file) is left out.

    """

    records_in: int = 0
    records_out: int = 0
    bad_records: int = 0
    lag: Mapping[str, int | None] = field(default_factory=dict)


@dataclass(frozen=True)
class TableProgressView:
    """The load of one table at one moment (SPEC section 8).

    Attributes:
        status: ``loading``, ``ready`` or ``failed``.
        rows: keys held.
        records: input records loaded so far.
        bytes: input bytes loaded so far.
        records_per_second: the load's rate.
        percent: 0 to 100 when the input's total is known (file sizes, Kafka high
            watermarks), else None.
        eta_seconds: seconds left at the current rate, when known.

    """

    status: str = "loading"
    rows: int = 0
    records: int = 0
    bytes: int = 0
    records_per_second: float = 0.0
    percent: float | None = None
    eta_seconds: float | None = None


@dataclass(frozen=True)
class RunSnapshot:
    """The counters of a run at one moment.

    Attributes:
        statements: statement name -> its counters, in display order.
        retries: retried calls so far (the whole job).
        dead_letters: dead letters written so far.
        commits: position commits so far.
        tables: table name -> its load, for the application's tables.

    """

    statements: Mapping[str, StatementProgress] = field(default_factory=dict)
    retries: int = 0
    dead_letters: int = 0
    commits: int = 0
    tables: Mapping[str, TableProgressView] = field(default_factory=dict)


class RateMeter:
    """Rates of growing counters, smoothed by an exponential moving average over time.

    The first rate of a key is the plain one between its first two samples; then each
    sample moves the rate towards the latest plain rate by ``1 - 0.5 ** (dt / half_life)``
    (a sample ``half_life`` seconds after the previous one weighs half).

    Args:
        half_life: seconds, see above (> 0).
        min_interval: samples closer than this to the previous one are ignored (the rate
            of a very short interval is noise).

    """

    def __init__(self, half_life: float = 2.0, min_interval: float = 0.05) -> None:
        self.half_life = half_life
        self.min_interval = min_interval
        self._last: dict[str, tuple[float, int]] = {}
        self._rates: dict[str, float] = {}

    def update(self, key: str, count: int, now: float) -> float | None:
        """Record that counter ``key`` reads ``count`` at time ``now``; return its rate.

        Args:
            key: the counter's name.
            count: its value (a counter that goes down restarts from there, at rate 0).
            now: monotonic seconds.

        Returns:
            Units per second, or None before two samples of ``key``.

        """
        last = self._last.get(key)
        if last is None:
            self._last[key] = (now, count)
            return None
        then, before = last
        elapsed = now - then
        if elapsed < self.min_interval:
            return self._rates.get(key)
        self._last[key] = (now, count)
        instant = max(count - before, 0) / elapsed
        rate = self._rates.get(key)
        if rate is None:
            rate = instant
        else:
            weight = 1.0 - math.pow(0.5, elapsed / self.half_life)
            rate += weight * (instant - rate)
        self._rates[key] = rate
        return rate

    def rate(self, key: str) -> float | None:
        """The current rate of ``key`` (None before two samples)."""
        return self._rates.get(key)


def _lag_text(lags: Mapping[str, int | None]) -> str:
    if not lags:
        return "-"
    known = [lag for lag in lags.values() if lag is not None]
    if not known:
        return "?"
    total = f"{sum(known):,}"
    # Some sources' lag is unknown: the total is a lower bound.
    return total if len(known) == len(lags) else f"≥{total}"


def _rate_text(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:,.0f}"


class Progress:
    """A live table of a run's progress, redrawn by a thread while the context is open.

    Args:
        snapshot: returns the run's counters now; called from the drawing thread (it
            must be cheap and thread-safe; an exception it raises is logged at DEBUG and
            the previous table stays).
        console: where to draw (default: a ``rich`` console on standard error, so that
            standard output stays the program's). Nothing is drawn unless
            ``console.is_terminal``.
        refresh_per_second: redraws per second (> 0).
        transient: erase the table when the context ends (the summary follows it).
        clock: monotonic seconds (for the rates).

    """

    def __init__(
        self,
        snapshot: Callable[[], RunSnapshot],
        *,
        console: Console | None = None,
        refresh_per_second: float = 4,
        transient: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._snapshot = snapshot
        self.console = console if console is not None else Console(stderr=True)
        self.refresh_per_second = refresh_per_second if refresh_per_second > 0 else 4
        self.transient = transient
        self._clock = clock
        self._rates = RateMeter()
        self._started = clock()
        self._last: RunSnapshot | None = None
        self._live: Live | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one render at a time (the thread and refresh())

    @property
    def active(self) -> bool:
        """Whether the table is being drawn (the console is a terminal, the context open)."""
        return self._live is not None

    def render(self) -> Table:
        """Take a snapshot now and return the table for it (also updates the rates)."""
        with self._lock:
            try:
                self._last = self._snapshot()
            except Exception:  # the display must never end the run
                _log.debug("progress snapshot failed", exc_info=True)
            return self._table(self._last or RunSnapshot(), self._clock())

    def _table(self, snap: RunSnapshot, now: float) -> Table:
        table = Table(
            title="velostream run",
            caption=(
                f"{now - self._started:,.1f}s · retries {snap.retries:,} · "
                f"dead letters {snap.dead_letters:,} · commits {snap.commits:,}"
            ),
        )
        table.add_column("statement", no_wrap=True)
        for name in ("in", "out", "records/s", "lag", "errors"):
            table.add_column(name, justify="right", no_wrap=True)
        for name, statement in snap.statements.items():
            rate = self._rates.update(name, statement.records_in, now)
            table.add_row(
                name,
                f"{statement.records_in:,}",
                f"{statement.records_out:,}",
                _rate_text(rate),
                _lag_text(statement.lag),
                f"{statement.bad_records:,}",
            )
        for name, load in snap.tables.items():
            done = f"{load.percent:.0f} %" if load.percent is not None else "?"
            eta = f", ETA {load.eta_seconds:,.0f}s" if load.eta_seconds else ""
            table.add_row(
                f"table {name}",
                f"{load.records:,}",
                f"{load.rows:,} rows",
                _rate_text(load.records_per_second if load.status == "loading" else None),
                f"{load.status} {done}{eta}" if load.status == "loading" else load.status,
                "",
            )
        return table

    def refresh(self) -> None:
        """Redraw now (no-op when not drawing)."""
        live = self._live
        if live is not None:
            live.update(self.render(), refresh=True)

    def _run(self) -> None:
        interval = 1.0 / self.refresh_per_second
        while not self._stop.wait(interval):
            self.refresh()

    def start(self) -> None:
        """Start drawing (only on a terminal; idempotent)."""
        if self._live is not None or not self.console.is_terminal:
            return
        self._stop.clear()
        # Lines written meanwhile to the stream the table is drawn on are printed above
        # it (rich's redirection); the other stream is left alone (stdout stays data).
        file = self.console.file
        self._live = Live(
            self.render(),
            console=self.console,
            auto_refresh=False,
            transient=self.transient,
            redirect_stdout=file is sys.stdout,
            redirect_stderr=file is sys.stderr,
        )
        self._live.start(refresh=True)
        self._thread = threading.Thread(target=self._run, name="velostream-progress", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Draw the last table and stop (idempotent)."""
        live, thread = self._live, self._thread
        if live is None:
            return
        self._stop.set()
        if thread is not None:
            thread.join()
        live.update(self.render(), refresh=True)
        live.stop()
        self._live = None
        self._thread = None

    def __enter__(self) -> Progress:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
