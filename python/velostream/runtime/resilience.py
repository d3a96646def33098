"""Retries with exponential backoff, and a circuit breaker around sinks (SPEC section 7).

Two small tools the job runtime wraps around its Kafka and file calls:

- :func:`retry_call` runs a call and retries it when it fails with a *transient* error
  (a broker that is down, a leader moving, a request that timed out, a full disk),
  sleeping between attempts by an exponential backoff with full jitter
  (:class:`RetryPolicy`, :class:`Backoff`). A permanent error, or a transient one that
  outlasts the retry budget, ends the call with a :class:`~velostream.errors.SourceError`
  or :class:`~velostream.errors.SinkError` naming the connector, the attempts and the
  last error (kept as ``__cause__``). The waits are ``stop_event.wait(delay)``: setting
  the event ends them at once.
- :class:`CircuitBreaker` counts consecutive failures of one sink; after
  ``failure_threshold`` of them it *opens*: calls are not sent to the failing sink for
  ``reset_timeout`` seconds, then one trial call goes through (*half-open*); its success
  closes the circuit, its failure opens it again. An open circuit never spins: a caller
  either waits until the trial is due (``when_open="wait"``, interruptible by the stop
  event) or gets a :class:`~velostream.errors.CircuitOpenError` at once
  (``when_open="raise"``).

How the runtime should combine them, for a sink (the runtime never drops data, so it
waits): one breaker per sink for the whole job, in ``"wait"`` mode, and every write or
flush as ``retry_call(lambda: breaker.call(write), policy=..., kind="sink", name=...)``:
each attempt goes through the breaker, a sink that keeps failing opens it and further
attempts wait for the trial instead of hammering the sink, and the retry budget bounds
the whole: when it is spent the job fails with a ``SinkError`` and commits nothing, so a
restart re-reads (at-least-once). ``"raise"`` suits a caller that has something else to
do while a sink is down (a health endpoint, a dead-letter sink that must not hold up the
main output).

A retried call is repeated whole: only calls that are safe to repeat may be retried (a
Kafka ``produce`` of a batch repeats messages, which at-least-once allows; a file sink
must rewind to the end of its last whole line before writing again).

Which errors are transient (:func:`is_transient_error`, the default classifier), looking
at the error and at the errors it was raised from (``__cause__``/``__context__``, so a
``SinkError`` raised ``from`` an ``OSError`` is classified by that ``OSError``):

- Kafka (:func:`is_transient_kafka_error`): a ``KafkaException`` or ``KafkaError`` that
  librdkafka marks ``retriable()``, or whose code is one of :data:`TRANSIENT_KAFKA_CODES`
  (connection and broker availability, timeouts, leadership and coordinator moves,
  throttling, a full local queue); never one marked ``fatal()``. Not transient:
  authentication and authorisation, invalid configuration, a message too large, an
  unknown topic (waiting for a topic is ``topic.wait.timeout``'s job: a misspelt topic
  must fail fast, not after the retry budget).
- Files and sockets (:func:`is_transient_os_error`): an ``OSError`` whose ``errno`` is in
  :data:`TRANSIENT_ERRNOS`: the resource is busy or temporarily unavailable, the network
  or the peer is unreachable or reset it, an NFS handle went stale, the disk or the quota
  is full (``ENOSPC``, ``EDQUOT``: an operator can free space, and failing instead
  would stop the job just the same, only sooner). Not transient: a missing file, a
  permission denied, a read-only file system, an I/O error of the device (``EIO``), a bad
  descriptor: retrying them cannot succeed.
- Nothing else: a :class:`~velostream.errors.VelostreamError` (bad data, bad
  configuration) is re-raised as it is, any other error is wrapped at once.

Statement properties (unprefixed ``WITH`` keys, declared in :mod:`velostream.config`;
:meth:`RetryPolicy.from_properties` and :meth:`CircuitBreaker.from_properties` read them):

==========================================  ====================  =======================
key                                         value                 default
==========================================  ====================  =======================
``retry.max.attempts``                      a positive integer    ``10`` (the first call
                                            (attempts in all,     and 9 retries)
                                            the first included)
``retry.backoff.initial``                   a positive duration   ``100ms``
``retry.backoff.max``                       a positive duration,  ``30s``
                                            ≥ the initial one
``circuit.breaker.failure.threshold``       a positive integer    ``5``
``circuit.breaker.reset.timeout``           a positive duration   ``30s``
==========================================  ====================  =======================

The backoff multiplier is 2. The delay before retry ``n`` (``n = 0`` for the first
retry) is drawn uniformly from ``[0, min(max, initial * 2**n)]`` ("full jitter"), so
clients that failed together do not retry together.
"""

from __future__ import annotations

import enum
import errno
import math
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal, TypeVar

from velostream.errors import (
    CircuitOpenError,
    ConfigError,
    SinkError,
    SourceError,
    VelostreamError,
)

__all__ = [
    "DEFAULT_BACKOFF_INITIAL",
    "DEFAULT_BACKOFF_MAX",
    "DEFAULT_BACKOFF_MULTIPLIER",
    "DEFAULT_FAILURE_THRESHOLD",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_RESET_TIMEOUT",
    "TRANSIENT_ERRNOS",
    "TRANSIENT_KAFKA_CODES",
    "Backoff",
    "CircuitBreaker",
    "CircuitMetrics",
    "CircuitState",
    "RetryEvent",
    "RetryPolicy",
    "RetryStats",
    "is_transient_error",
    "is_transient_kafka_error",
    "is_transient_os_error",
    "retry_call",
]

T = TypeVar("T")

#: Attempts in all (the first call included) unless ``retry.max.attempts`` says otherwise.
DEFAULT_MAX_ATTEMPTS = 10
#: Seconds: the cap of the first retry's delay (``retry.backoff.initial``).
DEFAULT_BACKOFF_INITIAL = 0.1
#: Seconds: no delay is longer (``retry.backoff.max``).
DEFAULT_BACKOFF_MAX = 30.0
#: Each retry's cap is this many times the previous one's.
DEFAULT_BACKOFF_MULTIPLIER = 2.0
#: Consecutive failures that open a circuit (``circuit.breaker.failure.threshold``).
DEFAULT_FAILURE_THRESHOLD = 5
#: Seconds an open circuit waits before its trial call (``circuit.breaker.reset.timeout``).
DEFAULT_RESET_TIMEOUT = 30.0

# `Event.wait` refuses timeouts above this (OverflowError); longer waits are clamped.
_WAIT_MAX = threading.TIMEOUT_MAX


# --------------------------------------------------------------------------- classifiers

#: Names of the ``confluent_kafka.KafkaError`` codes retried even when the error is not
#: marked ``retriable()`` (librdkafka marks few errors it raises to the application).
TRANSIENT_KAFKA_CODES: frozenset[str] = frozenset(
    {
        # Local: the connection, the brokers, the client's own timeouts and queue.
        "_TRANSPORT",
        "_ALL_BROKERS_DOWN",
        "_FAIL",
        "_RESOLVE",
        "_TIMED_OUT",
        "_TIMED_OUT_QUEUE",
        "_MSG_TIMED_OUT",
        "_QUEUE_FULL",
        "_WAIT_COORD",
        "_WAIT_CACHE",
        "_IN_PROGRESS",
        "_PREV_IN_PROGRESS",
        "_RETRY",
        "_ISR_INSUFF",
        "_NODE_UPDATE",
        # Broker: availability, leadership moves, coordinators, throttling.
        "REQUEST_TIMED_OUT",
        "NETWORK_EXCEPTION",
        "BROKER_NOT_AVAILABLE",
        "LEADER_NOT_AVAILABLE",
        "NOT_LEADER_FOR_PARTITION",
        "PREFERRED_LEADER_NOT_AVAILABLE",
        "REPLICA_NOT_AVAILABLE",
        "NOT_ENOUGH_REPLICAS",
        "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
        "KAFKA_STORAGE_ERROR",
        "FENCED_LEADER_EPOCH",
        "UNKNOWN_LEADER_EPOCH",
        "OFFSET_NOT_AVAILABLE",
        "FETCH_SESSION_ID_NOT_FOUND",
        "COORDINATOR_LOAD_IN_PROGRESS",
        "COORDINATOR_NOT_AVAILABLE",
        "NOT_COORDINATOR",
        "REBALANCE_IN_PROGRESS",
        "UNSTABLE_OFFSET_COMMIT",
        "CONCURRENT_TRANSACTIONS",
        "THROTTLING_QUOTA_EXCEEDED",
    }
)

#: ``errno`` values of an ``OSError`` that is retried (see the module documentation).
TRANSIENT_ERRNOS: frozenset[int] = frozenset(
    getattr(errno, name)
    for name in (
        "EAGAIN",
        "EWOULDBLOCK",
        "EINTR",
        "EBUSY",
        "ETIMEDOUT",
        "ECONNRESET",
        "ECONNREFUSED",
        "ECONNABORTED",
        "EPIPE",
        "ENETDOWN",
        "ENETUNREACH",
        "ENETRESET",
        "EHOSTDOWN",
        "EHOSTUNREACH",
        "ESTALE",
        "ENOBUFS",
        "ENOSPC",
        "EDQUOT",
    )
    if hasattr(errno, name)
)


def _kafka_classes() -> tuple[Any, Any] | None:
    try:
        from confluent_kafka import KafkaError, KafkaException
    except ImportError:  # no Kafka client, so no Kafka error either
        return None
    return KafkaError, KafkaException


def _transient_codes(kafka_error: Any) -> frozenset[int]:
    return frozenset(
        getattr(kafka_error, name) for name in TRANSIENT_KAFKA_CODES if hasattr(kafka_error, name)
    )


def is_transient_kafka_error(error: object) -> bool:
    """Tell whether a Kafka client error is worth retrying.

    Args:
        error: a ``confluent_kafka.KafkaException`` (its first argument is the
            ``KafkaError``), a ``KafkaError`` itself (as delivery reports and error
            callbacks hand them), or anything else (then False).

    Returns:
        True when the error is not fatal and is either marked ``retriable()`` by
        librdkafka or has one of the codes of :data:`TRANSIENT_KAFKA_CODES`.

    """
    classes = _kafka_classes()
    if classes is None:
        return False
    kafka_error, kafka_exception = classes
    candidate: Any = error
    if isinstance(candidate, kafka_exception):
        candidate = candidate.args[0] if candidate.args else None
    if not isinstance(candidate, kafka_error):
        return False
    if candidate.fatal():
        return False
    return bool(candidate.retriable()) or candidate.code() in _transient_codes(kafka_error)


def is_transient_os_error(error: object) -> bool:
    """Tell whether an ``OSError`` is worth retrying (its ``errno`` in :data:`TRANSIENT_ERRNOS`).

    Args:
        error: any object; only an ``OSError`` can be transient.

    Returns:
        True for a transient ``OSError`` (a ``TimeoutError`` without an errno included).

    """
    if not isinstance(error, OSError):
        return False
    if error.errno is None:
        return isinstance(error, TimeoutError)
    return error.errno in TRANSIENT_ERRNOS


def _chain(error: BaseException) -> Iterator[BaseException]:
    """``error`` and the errors it was raised from or while handling, each once."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        if current.__cause__ is not None:
            current = current.__cause__
        elif not current.__suppress_context__:
            current = current.__context__
        else:
            current = None


def is_transient_error(error: BaseException) -> bool:
    """The default classifier of :func:`retry_call`: a transient Kafka or OS error.

    The error and every error of its chain (``__cause__``, then ``__context__``) are
    looked at, so a ``SinkError`` raised ``from`` a full disk's ``OSError`` is transient.
    A :class:`~velostream.errors.CircuitOpenError` is not: an open circuit in ``"raise"``
    mode asks the caller to do something else, not to retry at once.

    Args:
        error: what the call raised.

    Returns:
        True when some error of the chain is transient.

    """
    if isinstance(error, CircuitOpenError):
        return False
    return any(is_transient_kafka_error(e) or is_transient_os_error(e) for e in _chain(error))


# --------------------------------------------------------------------------- backoff


def _property(
    properties: Mapping[str, str], key: str, default: float, *, integer: bool = False
) -> float:
    """A duration (in seconds) or an integer property, validated; the default when absent."""
    value = properties.get(key)
    if value is None:
        return default
    from velostream.config import STATEMENT_PROPERTIES, parse_duration_ms

    STATEMENT_PROPERTIES[key].check(key, value)  # ConfigError naming key and value
    if integer:
        return int(value.strip())
    return parse_duration_ms(value) / 1000.0


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a transient failure is retried.

    Attributes:
        initial_backoff: seconds: the cap of the delay before the first retry (> 0).
        multiplier: each retry's cap is the previous one's times this (≥ 1).
        max_backoff: seconds: no cap is above this (≥ ``initial_backoff``).
        max_attempts: attempts in all, the first call included (≥ 1; 1 means no retry);
            None: no limit on the number.
        max_elapsed: seconds since the first attempt after which no retry starts
            (> 0); None: no limit on the time. With both limits None, a call is retried
            until it succeeds or the stop event is set.

    Raises:
        ConfigError: a value out of its range (naming the field).

    """

    initial_backoff: float = DEFAULT_BACKOFF_INITIAL
    multiplier: float = DEFAULT_BACKOFF_MULTIPLIER
    max_backoff: float = DEFAULT_BACKOFF_MAX
    max_attempts: int | None = DEFAULT_MAX_ATTEMPTS
    max_elapsed: float | None = None

    def __post_init__(self) -> None:
        def bad(field: str, value: object, expected: str) -> ConfigError:
            return ConfigError(
                f"retry policy: {field} = {value!r}, expected {expected}",
                key=field,
                value=str(value),
            )

        if not (math.isfinite(self.initial_backoff) and self.initial_backoff > 0):
            raise bad("initial_backoff", self.initial_backoff, "a positive number of seconds")
        if not (math.isfinite(self.multiplier) and self.multiplier >= 1):
            raise bad("multiplier", self.multiplier, "a number ≥ 1")
        if not (math.isfinite(self.max_backoff) and self.max_backoff >= self.initial_backoff):
            raise bad(
                "max_backoff", self.max_backoff, f"seconds ≥ initial_backoff {self.initial_backoff}"
            )
        if self.max_attempts is not None and self.max_attempts < 1:
            raise bad("max_attempts", self.max_attempts, "a positive integer or None")
        if self.max_elapsed is not None and not (
            math.isfinite(self.max_elapsed) and self.max_elapsed > 0
        ):
            raise bad("max_elapsed", self.max_elapsed, "a positive number of seconds or None")

    @classmethod
    def from_properties(cls, properties: Mapping[str, str]) -> RetryPolicy:
        """The policy set by a statement's ``retry.*`` keys (defaults for absent ones).

        Args:
            properties: the statement's ``WITH`` properties (other keys are ignored).

        Returns:
            The policy.

        Raises:
            ConfigError: a bad value, or ``retry.backoff.max`` below
                ``retry.backoff.initial`` (naming the key and the value).

        """
        initial = _property(properties, "retry.backoff.initial", DEFAULT_BACKOFF_INITIAL)
        maximum = _property(properties, "retry.backoff.max", DEFAULT_BACKOFF_MAX)
        attempts = _property(properties, "retry.max.attempts", DEFAULT_MAX_ATTEMPTS, integer=True)
        if maximum < initial:
            # Name the key that was written (the maximum, unless only the initial was).
            key = (
                "retry.backoff.max"
                if "retry.backoff.max" in properties
                else "retry.backoff.initial"
            )
            raise ConfigError(
                f"property {key!r}: retry.backoff.max ({maximum:g}s) is shorter than "
                f"retry.backoff.initial ({initial:g}s)",
                key=key,
                value=properties.get(key),
            )
        return cls(initial_backoff=initial, max_backoff=maximum, max_attempts=int(attempts))

    def cap(self, retry: int) -> float:
        """The longest delay before retry number ``retry`` (0 for the first retry).

        Args:
            retry: how many retries came before this one (≥ 0).

        Returns:
            ``min(max_backoff, initial_backoff * multiplier ** retry)``, without overflow.

        """
        if retry <= 0:
            return min(self.max_backoff, self.initial_backoff)
        if self.multiplier == 1:
            return min(self.max_backoff, self.initial_backoff)
        # Past the exponent that reaches max_backoff every cap is max_backoff; stop there so
        # that `multiplier ** retry` never overflows.
        reach = math.log(self.max_backoff / self.initial_backoff, self.multiplier)
        if retry >= reach:
            return self.max_backoff
        return min(self.max_backoff, self.initial_backoff * self.multiplier**retry)

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """A delay before retry ``retry``, drawn uniformly from ``[0, cap(retry)]``.

        Args:
            retry: how many retries came before this one (≥ 0).
            rng: the random source (default: the ``random`` module's).

        Returns:
            Seconds to wait.

        """
        draw = rng.random() if rng is not None else random.random()
        return draw * self.cap(retry)


class Backoff:
    """The delays of one retried call under a :class:`RetryPolicy`.

    Call :meth:`next_delay` after each failed attempt: it says how long to wait before
    the next attempt, or None when the policy's attempts or time are spent.

    Args:
        policy: the policy.
        rng: the random source of the jitter (a seeded ``random.Random`` in tests).
        clock: monotonic seconds (``time.monotonic``); the budget's time starts when
            the ``Backoff`` is made.

    """

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self._rng = rng
        self._clock = clock
        self._started = clock()
        self.failures = 0

    @property
    def elapsed(self) -> float:
        """Seconds since the ``Backoff`` was made."""
        return self._clock() - self._started

    def next_delay(self) -> float | None:
        """Record one failed attempt; return the delay before the next one, or None.

        Returns:
            Seconds to wait before the next attempt (never past ``max_elapsed``), or None
            when no attempt is left.

        """
        self.failures += 1
        policy = self.policy
        if policy.max_attempts is not None and self.failures >= policy.max_attempts:
            return None
        delay = policy.delay(self.failures - 1, self._rng)
        if policy.max_elapsed is not None:
            remaining = policy.max_elapsed - self.elapsed
            if remaining <= 0:
                return None
            delay = min(delay, remaining)
        return delay


# --------------------------------------------------------------------------- retry_call


@dataclass(frozen=True)
class RetryEvent:
    """One retry about to happen, as :func:`retry_call` tells ``on_retry``.

    Attributes:
        attempt: the number of the attempt that failed (1 for the first call).
        delay: seconds the call now waits before attempt ``attempt + 1``.
        error: what the failed attempt raised.
        elapsed: seconds since the first attempt started.

    """

    attempt: int
    delay: float
    error: BaseException
    elapsed: float


class RetryStats:
    """Thread-safe counters of retried calls, shareable by every call of a job.

    Attributes:
        retries: retries made (attempts after a failed one).
        exhausted: calls that failed for good after retrying a transient error.

    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.retries = 0
        self.exhausted = 0

    def add(self, *, retries: int = 0, exhausted: int = 0) -> None:
        """Count retries made (and calls given up) outside :func:`retry_call`."""
        with self._lock:
            self.retries += retries
            self.exhausted += exhausted

    def as_dict(self) -> dict[str, int]:
        """The counters as a dict (``retries``, ``retry_exhausted``)."""
        with self._lock:
            return {"retries": self.retries, "retry_exhausted": self.exhausted}


Kind = Literal["source", "sink"]


def _failure(kind: Kind, name: str | None, message: str, cause: BaseException) -> VelostreamError:
    what = f"{kind} {name!r}" if name is not None else kind
    text = f"{what}: {message}: {type(cause).__name__}: {cause}"
    if kind == "source":
        return SourceError(text, source=name, cause=str(cause))
    return SinkError(text, sink=name, cause=str(cause))


def retry_call(
    fn: Callable[[], T],
    *,
    policy: RetryPolicy,
    kind: Kind,
    name: str | None = None,
    is_transient: Callable[[BaseException], bool] = is_transient_error,
    on_retry: Callable[[RetryEvent], None] | None = None,
    stop_event: threading.Event | None = None,
    stats: RetryStats | None = None,
    rng: random.Random | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Call ``fn()``, retrying transient failures with exponential backoff and full jitter.

    Args:
        fn: the call (safe to repeat whole).
        policy: attempts, delays and time budget.
        kind: ``"source"`` or ``"sink"``: a failure is a
            :class:`~velostream.errors.SourceError` or a
            :class:`~velostream.errors.SinkError`.
        name: the connector's name, for the error.
        is_transient: which errors are retried (default :func:`is_transient_error`).
        on_retry: told of each retry before its wait (a log line, a metric).
        stop_event: setting it ends a wait at once (then the call fails, see Raises);
            without one a wait is a plain sleep.
            Use the job's "give up" event, not the one that starts a graceful drain:
            a drain's flush must still retry.
        stats: counters to add to (retries made, calls that gave up).
        rng: the random source of the jitter.
        clock: monotonic seconds, for ``max_elapsed`` and :attr:`RetryEvent.elapsed`.

    Returns:
        What ``fn`` returned.

    Raises:
        SourceError | SinkError: (by ``kind``) the attempts or the time are spent, the
            stop event was set while waiting, or ``fn`` raised an error that is neither
            transient nor a VelostreamError. The message names the connector, the
            attempts and the last error; ``cause`` is its text and ``__cause__`` the error.
        VelostreamError: a non-transient VelostreamError raised by ``fn``, as it is.

    """
    backoff = Backoff(policy, rng=rng, clock=clock)
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except Exception as error:
            if not is_transient(error):
                if isinstance(error, VelostreamError):
                    raise
                raise _failure(
                    kind, name, "failed (not a transient error, not retried)", error
                ) from error
            delay = backoff.next_delay()
            if delay is None:
                if stats is not None:
                    stats.add(exhausted=1)
                raise _failure(
                    kind,
                    name,
                    f"gave up after {attempt} attempt(s) in {backoff.elapsed:.3f}s",
                    error,
                ) from error
            if stats is not None:
                stats.add(retries=1)
            if on_retry is not None:
                on_retry(RetryEvent(attempt, delay, error, backoff.elapsed))
            if stop_event is None:
                time.sleep(min(delay, _WAIT_MAX))
            elif stop_event.wait(min(delay, _WAIT_MAX)):
                raise _failure(
                    kind, name, f"stopped while waiting to retry after attempt {attempt}", error
                ) from error


# --------------------------------------------------------------------------- circuit breaker


class CircuitState(enum.Enum):
    """The states of a :class:`CircuitBreaker`."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class CircuitMetrics:
    """A snapshot of a breaker's counters.

    Attributes:
        state: the state now.
        opens: times the circuit opened (from closed, or again after a failed trial).
        failures: failed calls in all.
        trial_calls: trial calls let through in the half-open state.
        rejected: calls refused while open (``"raise"`` mode only).
        consecutive_failures: failures since the last success.
        opened_at: wall-clock time (``time.time()``) the circuit last opened, or None.

    """

    state: CircuitState
    opens: int
    failures: int
    trial_calls: int
    rejected: int
    consecutive_failures: int
    opened_at: float | None

    def as_dict(self) -> dict[str, Any]:
        """The metrics as a dict (the state as its text), for reports and endpoints."""
        return {
            "state": self.state.value,
            "opens": self.opens,
            "failures": self.failures,
            "trial_calls": self.trial_calls,
            "rejected": self.rejected,
            "consecutive_failures": self.consecutive_failures,
            "opened_at": self.opened_at,
        }


class _Admission(enum.Enum):
    CALL = "call"
    TRIAL = "trial"
    WAIT = "wait"


def _when(wall: float) -> str:
    return datetime.fromtimestamp(wall, tz=timezone.utc).isoformat(timespec="seconds")


class CircuitBreaker:
    """Stops calling a sink that keeps failing, then tries it again now and then.

    Closed: calls go through; ``failure_threshold`` consecutive failures open the
    circuit. Open: no call goes through for ``reset_timeout`` seconds. Half-open: the
    first caller after that makes one trial call while the others wait (or are refused);
    success closes the circuit, failure opens it again for another ``reset_timeout``.

    A call's own exception always reaches its caller: the breaker only counts it.

    Args:
        name: the sink's name (in errors).
        failure_threshold: consecutive failures that open the circuit (≥ 1).
        reset_timeout: seconds the circuit stays open before a trial (> 0).
        when_open: ``"wait"`` (default, what the runtime uses for sinks: nothing is
            dropped, the caller blocks until it may try) or ``"raise"`` (a
            :class:`~velostream.errors.CircuitOpenError` at once).
        stop_event: ends a ``"wait"`` when set, within ``poll_interval`` (then
            ``CircuitOpenError``).
        is_failure: which exceptions count as the sink's failures (default: all).
        clock: monotonic seconds (injectable for tests).
        wall_clock: epoch seconds, for "open since" in errors and metrics.
        poll_interval: seconds: a waiting caller reads ``clock`` and the stop event again
            at least this often (a trial's outcome wakes it at once).

    Raises:
        ConfigError: a threshold or timeout out of range.

    """

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = DEFAULT_FAILURE_THRESHOLD,
        reset_timeout: float = DEFAULT_RESET_TIMEOUT,
        when_open: Literal["wait", "raise"] = "wait",
        stop_event: threading.Event | None = None,
        is_failure: Callable[[BaseException], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        poll_interval: float = 0.1,
    ) -> None:
        if failure_threshold < 1:
            raise ConfigError(
                f"circuit breaker of {name!r}: failure threshold {failure_threshold} must be ≥ 1",
                key="circuit.breaker.failure.threshold",
                value=str(failure_threshold),
            )
        if not (math.isfinite(reset_timeout) and reset_timeout > 0):
            raise ConfigError(
                f"circuit breaker of {name!r}: reset timeout {reset_timeout} must be a positive "
                "number of seconds",
                key="circuit.breaker.reset.timeout",
                value=str(reset_timeout),
            )
        if when_open not in ("wait", "raise"):
            raise ConfigError(
                f"circuit breaker of {name!r}: when_open {when_open!r} must be 'wait' or 'raise'",
                key="when_open",
                value=str(when_open),
                allowed=("wait", "raise"),
            )
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self.when_open = when_open
        self._stop = stop_event if stop_event is not None else threading.Event()
        self._is_failure = is_failure
        self._clock = clock
        self._wall_clock = wall_clock
        self._poll = poll_interval
        # Everything below is guarded by _lock; `fn` always runs outside it.
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._state = CircuitState.CLOSED
        self._consecutive = 0
        self._opened_mono = 0.0
        self._opened_wall: float | None = None
        self._trial_running = False
        self._last_error: str | None = None
        self._opens = 0
        self._failures = 0
        self._trials = 0
        self._rejected = 0

    @classmethod
    def from_properties(
        cls, name: str, properties: Mapping[str, str], **options: Any
    ) -> CircuitBreaker:
        """A breaker set by a statement's ``circuit.breaker.*`` keys (defaults otherwise).

        Args:
            name: the sink's name.
            properties: the statement's ``WITH`` properties (other keys are ignored).
            **options: the other arguments of :class:`CircuitBreaker` (``when_open``,
                ``stop_event``, ...).

        Raises:
            ConfigError: a bad value (naming the key and the value).

        """
        threshold = _property(
            properties,
            "circuit.breaker.failure.threshold",
            DEFAULT_FAILURE_THRESHOLD,
            integer=True,
        )
        timeout = _property(properties, "circuit.breaker.reset.timeout", DEFAULT_RESET_TIMEOUT)
        return cls(name, failure_threshold=int(threshold), reset_timeout=timeout, **options)

    # -- state, under the lock

    def _refresh(self) -> None:
        if (
            self._state is CircuitState.OPEN
            and self._clock() - self._opened_mono >= self.reset_timeout
        ):
            self._state = CircuitState.HALF_OPEN

    def _open(self) -> None:
        self._state = CircuitState.OPEN
        self._opened_mono = self._clock()
        self._opened_wall = self._wall_clock()
        self._opens += 1

    def _refusal(self) -> CircuitOpenError:
        since = self._opened_wall if self._opened_wall is not None else self._wall_clock()
        if self._state is CircuitState.OPEN:
            retry_after = max(0.0, self.reset_timeout - (self._clock() - self._opened_mono))
            due = f"next trial in {retry_after:.1f}s"
        else:
            retry_after = 0.0
            due = "a trial call is in progress"
        return CircuitOpenError(
            f"sink {self.name!r}: circuit breaker open since {_when(since)} after "
            f"{self._consecutive} consecutive failure(s) (last: {self._last_error}); {due}",
            sink=self.name,
            cause=self._last_error,
            opened_at=since,
            retry_after=retry_after,
        )

    def _admit(self) -> tuple[_Admission, float]:
        """Whether the caller may call now (and as the trial), or how long to wait."""
        self._refresh()
        if self._state is CircuitState.CLOSED:
            return _Admission.CALL, 0.0
        if self._state is CircuitState.HALF_OPEN and not self._trial_running:
            self._trial_running = True
            self._trials += 1
            return _Admission.TRIAL, 0.0
        if self._state is CircuitState.OPEN:
            return _Admission.WAIT, self.reset_timeout - (self._clock() - self._opened_mono)
        return _Admission.WAIT, self._poll  # a trial is running: wait for its outcome

    # -- public

    @property
    def state(self) -> CircuitState:
        """The state now (an open circuit whose timeout has passed reads half-open)."""
        with self._lock:
            self._refresh()
            return self._state

    def metrics(self) -> CircuitMetrics:
        """A snapshot of the counters and the state."""
        with self._lock:
            self._refresh()
            return CircuitMetrics(
                state=self._state,
                opens=self._opens,
                failures=self._failures,
                trial_calls=self._trials,
                rejected=self._rejected,
                consecutive_failures=self._consecutive,
                opened_at=self._opened_wall if self._state is not CircuitState.CLOSED else None,
            )

    def call(self, fn: Callable[[], T]) -> T:
        """Call ``fn()`` through the breaker.

        Args:
            fn: the sink call.

        Returns:
            What ``fn`` returned.

        Raises:
            CircuitOpenError: the circuit is open (``"raise"`` mode), or the stop event
                was set while waiting (``"wait"`` mode). A ``SinkError``: it names the
                sink, since when the circuit is open and the last failure.
            Exception: whatever ``fn`` raised (counted, then re-raised as it is).

        """
        with self._lock:
            while True:
                admission, wait = self._admit()
                if admission is not _Admission.WAIT:
                    trial = admission is _Admission.TRIAL
                    break
                if self.when_open == "raise":
                    self._rejected += 1
                    raise self._refusal()
                if self._stop.is_set():
                    raise self._refusal()
                # Waiting releases the lock; a trial's outcome notifies the condition, and
                # the clock and the stop event are read again at least every poll interval.
                self._changed.wait(min(max(wait, 0.0), self._poll, _WAIT_MAX))
        try:
            result = fn()
        except BaseException as error:
            counts = isinstance(error, Exception) and (
                self._is_failure is None or self._is_failure(error)
            )
            with self._lock:
                if trial:
                    self._trial_running = False
                if counts:
                    self._record_failure(error, trial)
                self._changed.notify_all()
            raise
        with self._lock:
            self._record_success(trial)
            self._changed.notify_all()
        return result

    def _record_failure(self, error: BaseException, trial: bool) -> None:
        self._failures += 1
        self._consecutive += 1
        self._last_error = f"{type(error).__name__}: {error}"
        if trial:
            self._open()  # the trial failed: open again for another reset_timeout
        elif self._state is CircuitState.CLOSED and self._consecutive >= self.failure_threshold:
            self._open()
        # A call admitted while closed that fails after the circuit opened changes nothing.

    def _record_success(self, trial: bool) -> None:
        if trial:
            self._trial_running = False
            self._state = CircuitState.CLOSED
            self._consecutive = 0
            self._opened_wall = None
        elif self._state is CircuitState.CLOSED:
            self._consecutive = 0
        # A late success of a call admitted before the circuit opened does not close it:
        # only a trial does.
