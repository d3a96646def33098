"""The velostream exception hierarchy (SPEC section 2).

Every exception derives from :class:`VelostreamError` and carries the fields a person
needs to fix the problem (line and column, the offending key or value, ...), not only a
message. The Rust core raises these same classes: it imports them from this module.
"""

from __future__ import annotations

from collections.abc import Sequence


class VelostreamError(Exception):
    """Base class of every error velostream raises."""


def _where(line: int | None, column: int | None) -> str:
    if line is None:
        return ""
    if column is None:
        return f"line {line}: "
    return f"line {line}, column {column}: "


class SqlSyntaxError(VelostreamError):
    """SQL text that does not parse.

    Attributes:
        line: 1-based line of the offending token.
        column: 1-based column of the first character of the offending token.
        token: the offending token's text, when there is one.
    """

    def __init__(
        self,
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
        token: str | None = None,
    ) -> None:
        self.message = message
        self.line = line
        self.column = column
        self.token = token
        super().__init__(f"{_where(line, column)}{message}")


class SqlValidationError(VelostreamError):
    """SQL that parses but cannot run: unknown column, aggregate misuse, bad duration, ...

    Attributes:
        line: 1-based line of the offending construct, when known.
        column: 1-based column of the offending construct, when known.
    """

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None) -> None:
        self.message = message
        self.line = line
        self.column = column
        super().__init__(f"{_where(line, column)}{message}")


class ConfigError(VelostreamError):
    """A bad or unknown configuration property.

    Attributes:
        key: the property key.
        value: the offending value (None when the key itself is unknown).
        allowed: the allowed values or the nearest known keys, when there are some.
        line: 1-based line of the key in a ``WITH`` clause, when it came from SQL.
        column: 1-based column of the key in a ``WITH`` clause, when it came from SQL.
    """

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        value: str | None = None,
        allowed: Sequence[str] = (),
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.message = message
        self.key = key
        self.value = value
        self.allowed = list(allowed)
        self.line = line
        self.column = column
        super().__init__(message)


class EventTimeError(VelostreamError):
    """Event time cannot be extracted from a record (SPEC section 5).

    Attributes:
        kind: one of missing_field, null_value, type_mismatch, invalid_timestamp,
            parse_error, auto_detect_failed.
        field: the configured event-time field.
        value: the offending value, as a string.
        format: the expected format, as a string.
        available_fields: the fields the record does have.
        row: the record's row in the batch it came in (0-based), when known.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        field: str | None = None,
        value: str | None = None,
        format: str | None = None,
        available_fields: Sequence[str] = (),
        row: int | None = None,
    ) -> None:
        self.message = message
        self.row = row
        self.kind = kind
        self.field = field
        self.value = value
        self.format = format
        self.available_fields = list(available_fields)
        super().__init__(message)


class CircularDependencyError(VelostreamError):
    """Table dependencies form a cycle; ``cycle`` lists it with first == last."""

    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle = list(cycle)
        super().__init__("circular table dependency: " + " -> ".join(self.cycle))


class MissingDependencyError(VelostreamError):
    """A table depends on a name that is neither a table nor a declared source."""

    def __init__(self, table: str, missing: str) -> None:
        self.table = table
        self.missing = missing
        super().__init__(
            f"table {table!r} depends on {missing!r}, which is neither a table nor a declared source"
        )


class TableNotReadyError(VelostreamError):
    """Waiting for a table timed out, or the table failed to load."""

    def __init__(self, table: str, timeout: float | None, status: str) -> None:
        self.table = table
        self.timeout = timeout
        self.status = status
        waited = f"after {timeout:g}s" if timeout is not None else "without a timeout"
        super().__init__(f"table {table!r} is not ready (status {status}, {waited})")


class SourceError(VelostreamError):
    """Reading a source failed after retries (or cannot start).

    Attributes:
        source: the source name.
        cause: what went wrong.
    """

    def __init__(
        self, message: str, *, source: str | None = None, cause: str | None = None
    ) -> None:
        self.source = source
        self.cause = cause if cause is not None else message
        super().__init__(message)


class SinkError(VelostreamError):
    """Writing a sink failed after retries.

    Attributes:
        sink: the sink name.
        cause: what went wrong.
    """

    def __init__(self, message: str, *, sink: str | None = None, cause: str | None = None) -> None:
        self.sink = sink
        self.cause = cause if cause is not None else message
        super().__init__(message)


class CircuitOpenError(SinkError):
    """A sink's circuit breaker is open: the sink kept failing and is not called for now.

    Attributes:
        sink: the sink name.
        cause: the sink's last failure, as text.
        opened_at: when the circuit opened (epoch seconds).
        retry_after: seconds until the breaker lets a trial call through (0 when a trial
            is already running).
    """

    def __init__(
        self,
        message: str,
        *,
        sink: str | None = None,
        cause: str | None = None,
        opened_at: float | None = None,
        retry_after: float = 0.0,
    ) -> None:
        super().__init__(message, sink=sink, cause=cause)
        self.opened_at = opened_at
        self.retry_after = retry_after


class TopicNotFoundError(SourceError):
    """A Kafka topic does not exist (after waiting for it, when configured)."""


class DataError(VelostreamError):
    """A record or value cannot be processed.

    Undecodable input, a failed CAST, an integer overflow, an integer division by zero.

    Attributes:
        location: where the bad data is (file and line, topic/partition/offset), if known.
        field: the field concerned, if known.
        value: the offending value as a string, if known.
        line: 1-based SQL line of the expression that failed, if known.
        column: 1-based SQL column of the expression that failed, if known.
    """

    def __init__(
        self,
        message: str,
        *,
        location: str | None = None,
        field: str | None = None,
        value: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.message = message
        self.location = location
        self.field = field
        self.value = value
        self.line = line
        self.column = column
        super().__init__(f"{_where(line, column)}{message}")


class SnapshotError(VelostreamError):
    """A snapshot that cannot be restored.

    It is corrupted, truncated, of another format version, or taken from a different
    query. The query's state is left as it was.
    """


class InternalError(VelostreamError):
    """A defect in velostream itself: a Rust panic caught at the boundary, a broken plan.

    The process survives; ``usable`` says whether the object that raised it may be used
    again (a query whose state may be half-updated is not).

    Attributes:
        component: the part of velostream that failed (``"processor"``, ``"codec"``, ...).
        usable: whether the raising object can still be used.
    """

    def __init__(self, message: str, *, component: str, usable: bool = False) -> None:
        self.message = message
        self.component = component
        self.usable = usable
        state = "" if usable else "; this object is no longer usable"
        super().__init__(
            f"internal error in velostream's {component}: {message}{state} "
            "(a defect: please report it)"
        )


__all__ = [
    "CircuitOpenError",
    "CircularDependencyError",
    "ConfigError",
    "DataError",
    "EventTimeError",
    "InternalError",
    "MissingDependencyError",
    "SinkError",
    "SnapshotError",
    "SourceError",
    "SqlSyntaxError",
    "SqlValidationError",
    "TableNotReadyError",
    "TopicNotFoundError",
    "VelostreamError",
]
