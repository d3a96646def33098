"""What a run did: per statement records in/out, bad records, duration, connector counters."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StatementReport:
    """The outcome of one statement of a run.

    Attributes:
        name: the statement's name (the stream name).
        records_in: records the query received.
        records_out: records the query emitted (each written to every sink).
        errors: bad input records (undecodable, type errors), whatever the strategy.
        late_dropped: late records dropped by the statement's windows (counted, SPEC 12).
        join_misses: input rows whose key a joined table did not hold (what
            ``'join.missing.strategy'`` then did with them: NULLs, defaults, dropped).
        dead_lettered: records its query routed to the dead letters (late, or event
            time unreadable).
        duration: seconds from the statement's start (its first source starting to read)
            to its end (its inputs ended and its query flushed), its own time.
        sources: source name -> its counters.
        sinks: sink name -> its counters.
        retries: calls of its sources and sinks retried after a transient error.
        dead_letters: dead letters written for it (bad records under
            ``'error.strategy' = 'dead_letter'`` and what its query routed there).
        commits: source positions committed (Kafka offset commits).
        lag: its sources' consumer lag at the end, in records (None: unknown, or no
            source with a lag, such as a file).
        workers: worker threads of a partitioned statement (0: not partitioned).
        partitions: a partitioned statement's partitions held at the end -> their
            counters (``records_in``, ``records_out``, ``state_groups``, ``worker``).
        restored: partitions whose state was restored from the changelog.
        restore_seconds: time spent reading and restoring them.
        rebalances: partition assignments and revocations its consumer saw.
        duplicates_dropped: re-keyed records read twice from its repartition topic (a
            stage that wrote them again after a crash), dropped to count them once.

    """

    name: str
    records_in: int = 0
    records_out: int = 0
    errors: int = 0
    late_dropped: int = 0
    dead_lettered: int = 0
    join_misses: int = 0
    duration: float = 0.0
    sources: dict[str, dict[str, int]] = field(default_factory=dict)
    sinks: dict[str, dict[str, int]] = field(default_factory=dict)
    retries: int = 0
    dead_letters: int = 0
    commits: int = 0
    lag: int | None = None
    workers: int = 0
    partitions: dict[int, dict[str, int]] = field(default_factory=dict)
    restored: int = 0
    restore_seconds: float = 0.0
    rebalances: int = 0
    duplicates_dropped: int = 0


@dataclass
class RunReport:
    """The outcome of :meth:`velostream.Application.run`.

    Attributes:
        statements: statement name -> its report, in application order.
        duration: seconds the whole run took.
        error: the exception that ended the run, if it failed (``stop``/``start`` mode).

    """

    statements: dict[str, StatementReport] = field(default_factory=dict)
    duration: float = 0.0
    error: BaseException | None = None

    @property
    def records_in(self) -> int:
        """Records received by every statement together."""
        return sum(s.records_in for s in self.statements.values())

    @property
    def records_out(self) -> int:
        """Records emitted by every statement together."""
        return sum(s.records_out for s in self.statements.values())

    @property
    def errors(self) -> int:
        """Bad input records of every statement together."""
        return sum(s.errors for s in self.statements.values())

    @property
    def retries(self) -> int:
        """Retried calls of every statement together."""
        return sum(s.retries for s in self.statements.values())

    @property
    def dead_letters(self) -> int:
        """Dead letters written by every statement together."""
        return sum(s.dead_letters for s in self.statements.values())

    @property
    def commits(self) -> int:
        """Position commits of every statement together."""
        return sum(s.commits for s in self.statements.values())

    @property
    def lag(self) -> int | None:
        """The consumer lag of every statement together (None when none is known)."""
        known = [s.lag for s in self.statements.values() if s.lag is not None]
        return sum(known) if known else None

    def summary(self) -> str:
        """Return a short human-readable table of the run."""
        width = max([len("statement"), *(len(n) for n in self.statements)])
        lines = [
            f"{'statement':<{width}}  {'records in':>12}  {'records out':>12}  {'errors':>8}  {'seconds':>8}"
        ]
        for report in self.statements.values():
            lines.append(
                f"{report.name:<{width}}  {report.records_in:>12,}  {report.records_out:>12,}  "
                f"{report.errors:>8,}  {report.duration:>8.3f}"
            )
        for report in self.statements.values():
            if not report.workers:
                continue
            count = len(report.partitions)
            lines.append(
                f"  {report.name}: {count} partition{'s' if count != 1 else ''} on "
                f"{report.workers} worker{'s' if report.workers != 1 else ''}, "
                f"{report.rebalances:,} rebalances, {report.restored:,} partitions "
                f"restored in {report.restore_seconds:.3f}s"
                + (
                    f", {report.duplicates_dropped:,} re-keyed records read twice dropped"
                    if report.duplicates_dropped
                    else ""
                )
            )
            for worker in range(report.workers):
                held = {p: m for p, m in report.partitions.items() if m.get("worker") == worker}
                records = sum(m.get("records_in", 0) for m in held.values())
                shown = ", ".join(
                    f"partition {p}: {m.get('records_in', 0):,}" for p, m in sorted(held.items())
                )
                lines.append(
                    f"    worker {worker}: {records:,} records in"
                    + (f" ({shown})" if shown else "")
                )
        status = "failed" if self.error is not None else "finished"
        end = (
            f"{status} in {self.duration:.3f}s: {self.records_in:,} records in, "
            f"{self.records_out:,} out, {self.errors:,} bad records"
        )
        late = sum(s.late_dropped for s in self.statements.values())
        dead = sum(s.dead_lettered for s in self.statements.values())
        if late:
            end += f", {late:,} late records dropped"
        if dead:
            end += f", {dead:,} records sent to the dead letters by their query"
        misses = sum(s.join_misses for s in self.statements.values())
        if misses:
            end += f", {misses:,} rows without a match in a joined table"
        if self.dead_letters:
            end += f", {self.dead_letters:,} dead letters written"
        if self.retries:
            end += f", {self.retries:,} retries"
        if self.commits:
            end += f", {self.commits:,} commits"
        lag = self.lag
        if lag:
            end += f", consumer lag {lag:,} records"
        lines.append(end)
        return "\n".join(lines)
