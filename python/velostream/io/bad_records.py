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

#: A bad record: ``(location, reason, raw)``, or ``(location, reason, raw, field, value)``
#: when one value of a field is the problem.
BadRecord = tuple[str, str, bytes] | tuple[str, str, bytes, str | None, str | None]

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

    def flush(self) -> None:
        """Make the dead letters written so far durable."""
        with self._lock:
            self.sink.flush()

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

    def handle(self, source: str, bad: Sequence[BadRecord]) -> None:
        """Apply the strategy to some bad records of one source.

        Args:
            source: the source name.
            bad: ``(location, reason, raw)`` or ``(location, reason, raw, field, value)``
                per bad record, location like ``path:line``; ``field`` and ``value`` name
                the value that does not fit, when one value is the problem.

        Raises:
            DataError: with ``fail``, for the first record (message ``location: reason``,
                with its ``location``, ``field`` and ``value``: the value that does not
                fit, or the raw record when the whole record is the problem).

        """
        if not bad:
            return
        with self._lock:
            self.count += len(bad) if self.strategy != "fail" else 1
        if self.strategy == "fail":
            location, reason, raw, field, value = _unpack(bad[0])
            raise DataError(
                f"{location}: {reason} (source {source!r}; set 'error.strategy' to "
                "'log_and_continue' or 'dead_letter' to skip bad records)",
                location=location,
                field=field,
                value=value if value is not None else raw.decode("utf-8", errors="replace"),
            )
        if self.strategy == "log_and_continue":
            for record in bad:
                logger.warning(
                    "%s: bad record skipped (source %r): %s", record[0], source, record[1]
                )
            return
        assert self.dead_letters is not None
        self.dead_letters.write(
            source, [b[0] for b in bad], [b[1] for b in bad], [b[2] for b in bad]
        )
        for record in bad:
            logger.info(
                "%s: bad record sent to the dead-letter sink (source %r): %s",
                record[0],
                source,
                record[1],
            )


def _unpack(record: BadRecord) -> tuple[str, str, bytes, str | None, str | None]:
    if len(record) == 5:
        return record  # type: ignore[return-value]
    location, reason, raw = record[0], record[1], record[2]
    return location, reason, raw, None, None
