"""Which source positions may be committed, and the commit order (SPEC sections 1 and 7).

A source hands the runtime each batch with its *positions* (per topic partition, the
first and last offset it holds). A position may be committed only once every row derived
from it is durable in every sink. Two things stand between a record and that:

- **open state**: a record folded into a window that has not closed (or a session, or a
  running aggregate without a window) still has output rows to come. After each batch the
  query says how far back its open state reaches (``Query.take_progress``: the latest row
  time of the batch, the earliest row time still held); a batch whose latest row time is
  older than everything held is *released*: all its rows have been emitted;
- **acknowledgement**: emitted rows are durable once the sinks are flushed (a Kafka
  sink's flush waits for the broker's acknowledgements).

:class:`OffsetTracker` keeps the batches not yet committed, in order, per statement.
:meth:`Checkpoint.run` is the commit order (as Quix Streams' checkpoint): flush every
sink the rows may have gone to (and the dead letters), then commit, per partition, the
offset of its oldest record not released (or one past its last record when all are).
After a crash the job re-reads from there: windows that were open are computed again
whole; rows already written may be written again (at-least-once), none is missing.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

logger = logging.getLogger("velostream.runtime")

#: ``held`` when every record read so far is held (a GROUP BY without a window).
HOLD_ALL = -(2**63)


class Committer(Protocol):
    """A source that can commit positions (a Kafka source)."""

    name: str

    def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        """Commit (topic, partition) -> the next offset to read."""
        ...


@dataclass
class _Entry:
    source: str
    #: (topic, partition, first offset, last offset) per partition of the batch.
    positions: Sequence[tuple[str, int, int, int]]
    latest: int | None
    released: bool = False


def releases(latest: int | None, held: int | None) -> bool:
    """Whether a batch whose latest row time is ``latest`` holds nothing open under ``held``.

    Args:
        latest: the latest row time of the batch's records (None: none, or no time).
        held: the earliest row time still held in open state (None: nothing held;
            :data:`HOLD_ALL`: everything).
    """
    if held is None:
        return True
    if held == HOLD_ALL:
        return False
    return latest is None or latest < held


@dataclass
class OffsetTracker:
    """The positions of one statement's input batches until they are committed.

    Attributes:
        committed: (source, topic, partition) -> the offset committed last.
    """

    _entries: list[_Entry] = field(default_factory=list)
    committed: dict[tuple[str, str, int], int] = field(default_factory=dict)
    #: The query held everything at the last release (a GROUP BY without a window).
    _holding_all: bool = False

    def add(
        self, source: str, positions: Sequence[tuple[str, int, int, int]], latest: int | None
    ) -> None:
        """Record a processed batch of ``source``: its positions and latest row time.

        While the query holds everything (a GROUP BY without a window keeps every record
        to the end of its input), nothing can be released batch by batch: the batch is
        merged into the previous one of its source, so a long run keeps one entry, not
        one per batch, and a release does not walk them all.
        """
        if not positions:
            return
        last = self._entries[-1] if self._entries else None
        if self._holding_all and last is not None and not last.released and last.source == source:
            ranges = {(t, p): (first, end) for t, p, first, end in last.positions}
            for t, p, first, end in positions:
                old = ranges.get((t, p))
                ranges[(t, p)] = (min(old[0], first), max(old[1], end)) if old else (first, end)
            last.positions = [(t, p, first, end) for (t, p), (first, end) in ranges.items()]
            if latest is not None:
                last.latest = latest if last.latest is None else max(last.latest, latest)
            return
        self._entries.append(_Entry(source, positions, latest))

    def release(self, held: int | None) -> None:
        """Mark the batches that hold nothing open under ``held`` (after a batch)."""
        self._holding_all = held == HOLD_ALL
        if self._holding_all:
            return  # nothing is released while everything is held
        for entry in self._entries:
            if not entry.released and releases(entry.latest, held):
                entry.released = True

    def forget(self, partitions: set[int]) -> None:
        """Drop the positions of partitions given up (a rebalance took them away)."""
        kept: list[_Entry] = []
        for entry in self._entries:
            entry.positions = [pos for pos in entry.positions if pos[1] not in partitions]
            if entry.positions:
                kept.append(entry)
        self._entries = kept
        for key in [k for k in self.committed if k[2] in partitions]:
            del self.committed[key]

    @property
    def pending(self) -> int:
        """Batches not committed yet."""
        return len(self._entries)

    def committable(self) -> dict[str, dict[tuple[str, int], int]]:
        """Source -> (topic, partition) -> next offset, for released batches; forgets them.

        Call it only once every row emitted so far is durable (the sinks flushed): a
        released batch's rows were all emitted before it was released.
        """
        oldest_open: dict[tuple[str, str, int], int] = {}
        done_to: dict[tuple[str, str, int], int] = {}
        kept: list[_Entry] = []
        for entry in self._entries:
            keys = [(entry.source, t, p) for t, p, _, _ in entry.positions]
            if entry.released and not any(key in oldest_open for key in keys):
                for (_, _, _, last), key in zip(entry.positions, keys, strict=True):
                    done_to[key] = max(done_to.get(key, -1), last + 1)
                continue
            # Kept until every older batch of its partitions is released too, so that
            # the commit then moves past it.
            kept.append(entry)
            if not entry.released:
                for (_, _, first, _), key in zip(entry.positions, keys, strict=True):
                    oldest_open.setdefault(key, first)
        offsets: dict[str, dict[tuple[str, int], int]] = {}
        for key in {*oldest_open, *done_to}:
            target = oldest_open.get(key, done_to.get(key))
            assert target is not None
            if target > self.committed.get(key, -1):
                source, topic, partition = key
                offsets.setdefault(source, {})[(topic, partition)] = target
                self.committed[key] = target
        self._entries = kept
        return offsets


class Checkpoint:
    """The commit order of one statement: flush sinks and dead letters, then commit.

    Attributes:
        commits: commits made (one per source with something new to commit).
    """

    def __init__(
        self,
        tracker: OffsetTracker,
        flushes: Sequence[Callable[[], None]],
        sources: Sequence[Any],
        *,
        retry: Callable[[Callable[[], None], str], None] | None = None,
        state: Callable[[Collection[int] | None], None] | None = None,
    ) -> None:
        """Create the checkpoint.

        Args:
            tracker: the statement's offset tracker.
            flushes: what makes every emitted row durable: the flush of each sink the
                statement's rows reach (its own, and those of the statements reading
                its output in-process), and of its dead letters.
            sources: the statement's sources; those with a ``commit`` method get their
                positions committed.
            retry: runs a commit of the named source, retrying transient failures
                (default: once).
            state: writes the statement's per-partition state to its changelog and
                waits for it (after the flushes, before the commit): what it holds is
                then durable and its positions committable.
        """
        self._retry = retry or (lambda call, _name: call())
        self.tracker = tracker
        self.flushes = list(flushes)
        self.sources = {s.name: s for s in sources if hasattr(s, "commit")}
        self.state = state
        self.commits = 0

    def run(self, partitions: Collection[int] | None = None) -> None:
        """Flush, write the state, then commit what the flush and the state made durable.

        Args:
            partitions: the partitions whose state to write (a revocation); None: all.

        Raises:
            SinkError: a sink could not make its rows durable (nothing is committed).
            SourceError: the broker refused the commit.
        """
        if not self.sources:
            for flush in self.flushes:
                flush()
            return
        for flush in self.flushes:
            flush()
        if self.state is not None:
            self.state(partitions)
        for name, offsets in self.tracker.committable().items():
            source = self.sources.get(name)
            if source is None or not offsets:
                continue
            self._retry(functools.partial(source.commit, offsets), name)
            self.commits += 1
            logger.debug("committed %s: %s", name, offsets)
