"""What happens to records that cannot be decoded: ``'error.strategy'`` (SPEC section 7).

- ``fail`` (default): raise :class:`~velostream.errors.DataError` naming the location
  (``file:line``) and the problem;
- ``log_and_continue``: log one WARNING line per bad record (with its location) and go on;
- ``dead_letter``: write the raw record with the reason to the dead-letter sink (one
  record ``{source, location, reason, raw}``), log it at INFO, and go on.

Every bad record is counted, whatever the strategy.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import pyarrow as pa

from velostream.errors import ConfigError, DataError
from velostream.io.base import Sink

logger = logging.getLogger("velostream.io")

STRATEGIES = ("fail", "log_and_continue", "dead_letter")

#: The schema of dead-letter records.
DEAD_LETTER_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string()),
        pa.field("location", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("raw", pa.string()),
    ]
)


class DeadLetterWriter:
    """Writes dead letters (``source, location, reason, raw``) to a sink; thread-safe."""

    def __init__(self, sink: Sink) -> None:
        """Wrap ``sink``, which receives batches of :data:`DEAD_LETTER_SCHEMA`."""
        self.sink = sink
        self._lock = threading.Lock()
        self.count = 0

    def write(
        self, source: str, locations: Sequence[str], reasons: Sequence[str], raws: Sequence[bytes]
    ) -> None:
        """Write dead letters (parallel sequences, one element per bad record)."""
        batch = pa.record_batch(
            [
                pa.array([source] * len(locations), pa.string()),
                pa.array(list(locations), pa.string()),
                pa.array(list(reasons), pa.string()),
                pa.array([raw.decode("utf-8", errors="replace") for raw in raws], pa.string()),
            ],
            schema=DEAD_LETTER_SCHEMA,
        )
        with self._lock:
            self.sink.write(batch)
            self.count += len(locations)

    def close(self) -> None:
        """Flush and close the dead-letter sink."""
        with self._lock:
            self.sink.close()


class BadRecordPolicy:
    """Applies the statement's ``'error.strategy'`` to bad input records and counts them.

    Attributes:
        strategy: ``fail``, ``log_and_continue`` or ``dead_letter``.
        count: bad records seen so far.

    """

    def __init__(
        self, strategy: str = "fail", dead_letters: DeadLetterWriter | None = None
    ) -> None:
        """Create the policy.

        Args:
            strategy: ``fail``, ``log_and_continue`` or ``dead_letter``.
            dead_letters: where dead letters go; required for ``dead_letter``.

        Raises:
            ConfigError: an unknown strategy, or ``dead_letter`` without a destination.

        """
        if strategy not in STRATEGIES:
            raise ConfigError(
                f"invalid value {strategy!r} for 'error.strategy'",
                key="error.strategy",
                value=strategy,
                allowed=STRATEGIES,
            )
        if strategy == "dead_letter" and dead_letters is None:
            raise ConfigError(
                "'error.strategy' = 'dead_letter' needs a destination: set 'dead_letter.path' "
                "(a JSON Lines file) or 'dead_letter.sink' (the name of a declared sink)",
                key="error.strategy",
                value=strategy,
            )
        self.strategy = strategy
        self.dead_letters = dead_letters
        self.count = 0
        self._lock = threading.Lock()

    def handle(self, source: str, bad: Sequence[tuple[str, str, bytes]]) -> None:
        """Apply the strategy to some bad records of one source.

        Args:
            source: the source name.
            bad: ``(location, reason, raw)`` per bad record, location like ``path:line``.

        Raises:
            DataError: with ``fail``, for the first record (message ``location: reason``).

        """
        if not bad:
            return
        with self._lock:
            self.count += len(bad) if self.strategy != "fail" else 1
        if self.strategy == "fail":
            location, reason, raw = bad[0]
            raise DataError(
                f"{location}: {reason} (source {source!r}; set 'error.strategy' to "
                "'log_and_continue' or 'dead_letter' to skip bad records)",
                location=location,
                value=raw.decode("utf-8", errors="replace"),
            )
        if self.strategy == "log_and_continue":
            for location, reason, _raw in bad:
                logger.warning("%s: bad record skipped (source %r): %s", location, source, reason)
            return
        assert self.dead_letters is not None
        self.dead_letters.write(
            source, [b[0] for b in bad], [b[1] for b in bad], [b[2] for b in bad]
        )
        for location, reason, _raw in bad:
            logger.info(
                "%s: bad record sent to the dead-letter sink (source %r): %s",
                location,
                source,
                reason,
            )
