"""Retries with backoff and the sinks' circuit breaker (issue 11, SPEC section 7)."""

from __future__ import annotations

import errno
import itertools
import logging
import random
import socket
import threading
import time
from datetime import datetime, timezone

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from hypothesis import given, settings
from hypothesis import strategies as st

import velostream as vs
from velostream import config
from velostream.errors import (
    CircuitOpenError,
    ConfigError,
    DataError,
    SinkError,
    SourceError,
)
from velostream.runtime.resilience import (
    Backoff,
    CircuitBreaker,
    CircuitState,
    RetryEvent,
    RetryPolicy,
    RetryStats,
    is_transient_error,
    is_transient_kafka_error,
    is_transient_os_error,
    retry_call,
)

OPENED_AT = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc).timestamp()


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Boom(OSError):
    """A transient failure (a connection reset) raised by the tests' calls."""

    def __init__(self, text: str = "connection reset") -> None:
        super().__init__(errno.ECONNRESET, text)


def failing(times: int, result: object = "ok", error: type[BaseException] = Boom):
    """A call that fails ``times`` times, then returns ``result``; counts its calls."""
    calls = {"n": 0}

    def fn():
        calls["n"] += 1
        if calls["n"] <= times:
            raise error()
        return result

    return fn, calls


class AlwaysHigh(random.Random):
    """A random source whose draws are all 0.99 (the jitter's long end)."""

    def random(self) -> float:
        return 0.99


def fast(**kwargs) -> RetryPolicy:
    return RetryPolicy(initial_backoff=0.001, max_backoff=0.002, **kwargs)


# --------------------------------------------------------------------------- backoff


def test_the_caps_grow_by_the_multiplier_up_to_the_maximum():
    policy = RetryPolicy(initial_backoff=0.1, multiplier=2, max_backoff=1.0)
    caps = [policy.cap(n) for n in range(7)]
    assert caps == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0])


def test_a_huge_retry_number_does_not_overflow():
    policy = RetryPolicy(initial_backoff=0.001, multiplier=10, max_backoff=60)
    assert policy.cap(10**9) == 60
    assert 0 <= policy.delay(10**9, random.Random(1)) <= 60


def test_the_jitter_covers_the_whole_range_from_zero_to_the_cap():
    policy = RetryPolicy(initial_backoff=1.0, max_backoff=1.0)
    rng = random.Random(7)
    delays = [policy.delay(0, rng) for _ in range(2000)]
    assert all(0 <= d <= 1.0 for d in delays)
    # Full jitter, not "cap ± a little": both ends of the range are reached.
    assert min(delays) < 0.05 and max(delays) > 0.95


policies = st.builds(
    RetryPolicy,
    initial_backoff=st.floats(0.001, 10),
    multiplier=st.floats(1, 10),
    max_backoff=st.floats(10, 1000),
    max_attempts=st.integers(1, 40),
)


@settings(max_examples=200, deadline=None)
@given(policy=policies, seed=st.integers(0, 2**32))
def test_the_schedule_has_one_delay_per_retry_each_within_its_cap(policy, seed):
    backoff = Backoff(policy, rng=random.Random(seed), clock=FakeClock())
    delays = []
    while (delay := backoff.next_delay()) is not None:
        delays.append(delay)
        assert len(delays) < 100
    assert len(delays) == policy.max_attempts - 1
    caps = [policy.cap(n) for n in range(len(delays))]
    assert all(a <= b for a, b in itertools.pairwise(caps))  # never shrinks
    for n, (delay, cap) in enumerate(zip(delays, caps, strict=True)):
        assert 0 <= delay <= cap <= policy.max_backoff
        assert cap == pytest.approx(
            min(policy.max_backoff, policy.initial_backoff * policy.multiplier**n)
        )


@settings(max_examples=100, deadline=None)
@given(
    max_elapsed=st.floats(0.5, 100),
    steps=st.lists(st.floats(0, 20), min_size=1, max_size=30),
    seed=st.integers(0, 2**32),
)
def test_no_delay_reaches_past_the_time_budget(max_elapsed, steps, seed):
    clock = FakeClock()
    policy = RetryPolicy(
        initial_backoff=1, max_backoff=50, max_attempts=None, max_elapsed=max_elapsed
    )
    backoff = Backoff(policy, rng=random.Random(seed), clock=clock)
    for step in steps:
        clock.advance(step)
        delay = backoff.next_delay()
        if backoff.elapsed >= max_elapsed:
            assert delay is None
            break
        assert delay is not None
        assert backoff.elapsed + delay <= max_elapsed + 1e-9


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"initial_backoff": 0}, "initial_backoff"),
        ({"initial_backoff": float("nan")}, "initial_backoff"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"initial_backoff": 2, "max_backoff": 1}, "max_backoff"),
        ({"max_backoff": float("inf")}, "max_backoff"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_elapsed": -1}, "max_elapsed"),
    ],
)
def test_a_policy_out_of_range_is_a_config_error(kwargs, field):
    with pytest.raises(ConfigError) as info:
        RetryPolicy(**kwargs)
    assert info.value.key == field
    assert field in str(info.value)


# --------------------------------------------------------------------------- properties


def test_the_properties_set_the_policy_and_the_breaker():
    properties = {
        "retry.max.attempts": "4",
        "retry.backoff.initial": "250ms",
        "retry.backoff.max": "2s",
        "circuit.breaker.failure.threshold": "3",
        "circuit.breaker.reset.timeout": "1m",
        "error.strategy": "fail",
    }
    config.validate_statement_properties(properties)
    policy = RetryPolicy.from_properties(properties)
    assert (policy.max_attempts, policy.initial_backoff, policy.max_backoff) == (4, 0.25, 2.0)
    breaker = CircuitBreaker.from_properties("out", properties, when_open="raise")
    assert (breaker.failure_threshold, breaker.reset_timeout, breaker.when_open) == (
        3,
        60.0,
        "raise",
    )


def test_absent_properties_give_the_documented_defaults():
    policy = RetryPolicy.from_properties({})
    assert (policy.max_attempts, policy.initial_backoff, policy.max_backoff) == (10, 0.1, 30.0)
    breaker = CircuitBreaker.from_properties("out", {})
    assert (breaker.failure_threshold, breaker.reset_timeout, breaker.when_open) == (
        5,
        30.0,
        "wait",
    )
    for key in (
        "retry.max.attempts",
        "retry.backoff.initial",
        "retry.backoff.max",
        "circuit.breaker.failure.threshold",
        "circuit.breaker.reset.timeout",
    ):
        assert config.STATEMENT_PROPERTIES[key].default is not None


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("retry.max.attempts", "0"),
        ("retry.max.attempts", "three"),
        ("retry.backoff.initial", "0s"),
        ("retry.backoff.initial", "-1s"),
        ("retry.backoff.initial", "fast"),
        ("retry.backoff.max", "2d"),
        ("circuit.breaker.failure.threshold", "-2"),
        ("circuit.breaker.reset.timeout", "0ms"),
        ("circuit.breaker.reset.timeout", "99999999999999999999d"),
    ],
)
def test_a_bad_value_is_a_config_error_naming_the_key(key, value):
    if key.startswith("retry."):
        read = lambda: RetryPolicy.from_properties({key: value})  # noqa: E731
    else:
        read = lambda: CircuitBreaker.from_properties("out", {key: value})  # noqa: E731
    for check in (
        lambda: config.validate_statement_properties({key: value}),
        read,
        lambda: vs.compile("SELECT a FROM t", properties={key: value}),
    ):
        with pytest.raises(ConfigError) as info:
            check()
        assert info.value.key == key
        assert info.value.value == value


def test_the_keys_are_statement_keys_a_query_accepts():
    query = vs.compile(
        "SELECT a FROM t",
        properties={"retry.max.attempts": "3", "circuit.breaker.reset.timeout": "5s"},
    )
    assert query is not None
    with pytest.raises(ConfigError) as info:
        config.validate_statement_properties({"retry.max.attempt": "3"})
    assert info.value.allowed[0] == "retry.max.attempts"


def test_a_maximum_below_the_initial_backoff_is_a_config_error():
    with pytest.raises(ConfigError) as info:
        RetryPolicy.from_properties({"retry.backoff.initial": "5s", "retry.backoff.max": "1s"})
    assert info.value.key == "retry.backoff.max"
    assert "shorter than retry.backoff.initial" in str(info.value)


# --------------------------------------------------------------------------- classifiers


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_real_client_s_unreachable_broker_errors_are_transient():
    # A real librdkafka client against a port nobody listens on: its own errors, which it
    # does not mark retriable(), are classified by their codes.
    logger = logging.getLogger("test.resilience.kafka")
    address = f"127.0.0.1:{closed_port()}"
    producer = Producer({"bootstrap.servers": address, "logger": logger})
    with pytest.raises(KafkaException) as info:
        producer.list_topics(timeout=0.5)
    assert info.value.args[0].code() == KafkaError._TRANSPORT
    assert not info.value.args[0].retriable()
    assert is_transient_kafka_error(info.value)
    assert is_transient_error(info.value)

    reports: list[KafkaError] = []
    producer = Producer(
        {
            "bootstrap.servers": address,
            "message.timeout.ms": 300,
            "logger": logger,
            "on_delivery": lambda error, _message: reports.append(error),
        }
    )
    producer.produce("t", b"x")
    producer.flush(10)
    assert [e.code() for e in reports] == [KafkaError._MSG_TIMED_OUT]
    assert is_transient_kafka_error(reports[0])  # a delivery report's KafkaError as it is


def test_a_real_client_s_configuration_error_is_not_transient():
    with pytest.raises(KafkaException) as info:
        Producer({"bootstrap.servers": "x:1", "acks": "seven"})
    assert not is_transient_kafka_error(info.value)
    assert not is_transient_error(info.value)


@pytest.mark.parametrize(
    "code",
    [
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._TIMED_OUT,
        KafkaError._QUEUE_FULL,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_ENOUGH_REPLICAS,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.REBALANCE_IN_PROGRESS,
    ],
)
def test_kafka_codes_that_pass_are_transient(code):
    assert is_transient_kafka_error(KafkaException(KafkaError(code)))
    assert is_transient_kafka_error(KafkaError(code))
    # Fatal wins over everything.
    assert not is_transient_kafka_error(KafkaError(code, fatal=True))


@pytest.mark.parametrize(
    "code",
    [
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError._INVALID_ARG,
        KafkaError._SSL,
        KafkaError.INVALID_CONFIG,
    ],
)
def test_kafka_codes_that_do_not_pass_are_permanent(code):
    assert not is_transient_kafka_error(KafkaException(KafkaError(code)))


def test_a_kafka_error_the_client_marks_retriable_is_transient():
    assert not is_transient_kafka_error(KafkaError(KafkaError.INVALID_RECORD))
    assert is_transient_kafka_error(KafkaError(KafkaError.INVALID_RECORD, retriable=True))


def test_other_objects_are_not_kafka_errors():
    for other in (KafkaException("text only"), KafkaException(), ValueError("x"), None, 5):
        assert not is_transient_kafka_error(other)


@pytest.mark.parametrize(
    ("code", "transient"),
    [
        (errno.ENOSPC, True),
        (errno.EDQUOT, True),
        (errno.EAGAIN, True),
        (errno.ECONNRESET, True),
        (errno.ECONNREFUSED, True),
        (errno.ETIMEDOUT, True),
        (errno.ESTALE, True),
        (errno.ENOENT, False),
        (errno.EACCES, False),
        (errno.EROFS, False),
        (errno.EIO, False),
        (errno.EISDIR, False),
    ],
)
def test_os_errors_by_errno(code, transient):
    assert is_transient_os_error(OSError(code, "x")) is transient
    assert is_transient_error(OSError(code, "x")) is transient


def test_a_real_missing_file_is_permanent_and_a_timeout_is_transient(tmp_path):
    with pytest.raises(OSError) as info:
        (tmp_path / "missing").read_text()
    assert not is_transient_error(info.value)
    assert is_transient_os_error(TimeoutError())
    assert not is_transient_os_error(ValueError())


def test_the_chain_of_a_wrapped_error_is_looked_at():
    def wrapped(cause: BaseException) -> SinkError:
        try:
            raise cause
        except OSError as exc:
            try:
                raise SinkError("file sink 'out': cannot write", sink="out") from exc
            except SinkError as error:
                return error

    assert is_transient_error(wrapped(OSError(errno.ENOSPC, "No space left on device")))
    assert not is_transient_error(wrapped(OSError(errno.EACCES, "Permission denied")))
    # A chain that loops ends.
    a, b = ValueError("a"), ValueError("b")
    a.__cause__, b.__cause__ = b, a
    assert not is_transient_error(a)
    assert not is_transient_error(CircuitOpenError("open", sink="out"))


# --------------------------------------------------------------------------- retry_call


def test_transient_failures_are_retried_and_counted():
    fn, calls = failing(2, result=42)
    stats = RetryStats()
    events: list[RetryEvent] = []
    policy = RetryPolicy(initial_backoff=0.001, max_backoff=0.004, max_attempts=5)
    result = retry_call(
        fn, policy=policy, kind="sink", name="out", on_retry=events.append, stats=stats
    )
    assert result == 42
    assert calls["n"] == 3
    assert [e.attempt for e in events] == [1, 2]
    assert all(isinstance(e.error, Boom) for e in events)
    assert [0 <= e.delay <= policy.cap(n) for n, e in enumerate(events)] == [True, True]
    assert stats.as_dict() == {"retries": 2, "retry_exhausted": 0}


def test_exhausted_attempts_are_a_sink_error_with_the_last_cause():
    errors: list[Boom] = []

    def fn():
        errors.append(Boom(f"reset #{len(errors) + 1}"))
        raise errors[-1]

    stats = RetryStats()
    with pytest.raises(SinkError) as info:
        retry_call(fn, policy=fast(max_attempts=3), kind="sink", name="out", stats=stats)
    error = info.value
    assert type(error) is SinkError
    assert len(errors) == 3
    assert error.sink == "out"
    assert error.__cause__ is errors[-1]
    assert error.cause == str(errors[-1])
    assert str(error).startswith("sink 'out': gave up after 3 attempt(s) in ")
    assert "reset #3" in str(error)
    assert stats.as_dict() == {"retries": 2, "retry_exhausted": 1}


def test_exhausted_attempts_of_a_source_are_a_source_error():
    fn, _ = failing(10, error=lambda: KafkaException(KafkaError(KafkaError._ALL_BROKERS_DOWN)))
    with pytest.raises(SourceError) as info:
        retry_call(fn, policy=fast(max_attempts=2), kind="source", name="trades")
    assert info.value.source == "trades"
    assert isinstance(info.value.__cause__, KafkaException)
    assert "source 'trades': gave up after 2 attempt(s)" in str(info.value)
    assert "_ALL_BROKERS_DOWN" in str(info.value)


def test_the_time_budget_ends_the_retries():
    clock = FakeClock()

    def fn():
        clock.advance(1.0)  # each attempt takes a second
        raise Boom()

    policy = RetryPolicy(
        initial_backoff=0.001, max_backoff=0.001, max_attempts=None, max_elapsed=2.5
    )
    with pytest.raises(SinkError) as info:
        retry_call(fn, policy=policy, kind="sink", name="out", clock=clock)
    assert "gave up after 3 attempt(s) in 3.000s" in str(info.value)


def test_a_permanent_error_is_not_retried_and_is_wrapped():
    fn, calls = failing(1, error=lambda: PermissionError(errno.EACCES, "Permission denied"))
    with pytest.raises(SinkError) as info:
        retry_call(fn, policy=fast(), kind="sink", name="out")
    assert calls["n"] == 1
    assert "not a transient error, not retried" in str(info.value)
    assert isinstance(info.value.__cause__, PermissionError)


def test_a_velostream_error_that_is_not_transient_passes_as_it_is():
    raised = DataError("bad value", field="x")

    def fn():
        raise raised

    with pytest.raises(DataError) as info:
        retry_call(fn, policy=fast(), kind="sink", name="out")
    assert info.value is raised


def test_a_keyboard_interrupt_is_not_caught():
    fn, calls = failing(1, error=KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        retry_call(fn, policy=fast(), kind="sink", name="out")
    assert calls["n"] == 1


def test_a_custom_classifier_decides_what_is_retried():
    fn, calls = failing(2, error=lambda: ValueError("flaky"))
    result = retry_call(
        fn,
        policy=fast(),
        kind="source",
        name="t",
        is_transient=lambda e: isinstance(e, ValueError),
    )
    assert (result, calls["n"]) == ("ok", 3)


def test_the_stop_event_interrupts_a_wait():
    stop = threading.Event()
    fn, calls = failing(100)
    policy = RetryPolicy(initial_backoff=60, max_backoff=60, max_attempts=5)
    rng = AlwaysHigh()  # the first delay is drawn from [0, 60]: make it long
    timer = threading.Timer(0.2, stop.set)
    started = time.monotonic()
    timer.start()
    try:
        with pytest.raises(SinkError) as info:
            retry_call(fn, policy=policy, kind="sink", name="out", stop_event=stop, rng=rng)
    finally:
        timer.cancel()
    assert time.monotonic() - started < 5
    assert calls["n"] == 1
    assert "stopped while waiting to retry after attempt 1" in str(info.value)
    assert isinstance(info.value.__cause__, Boom)


def test_the_first_attempt_runs_even_when_stopping():
    stop = threading.Event()
    stop.set()
    fn, calls = failing(0)
    assert retry_call(fn, policy=fast(), kind="sink", stop_event=stop) == "ok"
    fn, calls = failing(5)
    with pytest.raises(SinkError, match="stopped while waiting"):
        retry_call(fn, policy=fast(), kind="sink", stop_event=stop)
    assert calls["n"] == 1


def test_retries_from_many_threads_are_all_counted():
    stats = RetryStats()
    results: list[object] = []

    def worker(i: int) -> None:
        fn, _ = failing(3, result=i)
        results.append(retry_call(fn, policy=fast(max_attempts=5), kind="sink", stats=stats))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(8))
    assert stats.retries == 24


# --------------------------------------------------------------------------- circuit breaker


def breaker(clock: FakeClock, **kwargs) -> CircuitBreaker:
    options = {"failure_threshold": 3, "reset_timeout": 10.0, "when_open": "raise"}
    options.update(kwargs)
    return CircuitBreaker("out", clock=clock, wall_clock=lambda: OPENED_AT, **options)


def fail_once(cb: CircuitBreaker) -> None:
    with pytest.raises(Boom):
        cb.call(failing(1)[0])


def test_consecutive_failures_open_the_circuit():
    clock = FakeClock()
    cb = breaker(clock)
    fail_once(cb)
    fail_once(cb)
    assert cb.call(lambda: "ok") == "ok"  # a success resets the count
    fail_once(cb)
    fail_once(cb)
    assert cb.state is CircuitState.CLOSED
    fail_once(cb)
    metrics = cb.metrics()
    assert metrics.state is CircuitState.OPEN
    assert (metrics.opens, metrics.failures, metrics.consecutive_failures) == (1, 5, 3)
    assert metrics.opened_at == OPENED_AT


def test_an_open_circuit_refuses_calls_saying_since_when():
    clock = FakeClock()
    cb = breaker(clock)
    for _ in range(3):
        fail_once(cb)
    clock.advance(4)
    fn, calls = failing(0)
    with pytest.raises(CircuitOpenError) as info:
        cb.call(fn)
    error = info.value
    assert isinstance(error, SinkError)
    assert calls["n"] == 0
    assert error.sink == "out"
    assert error.opened_at == OPENED_AT
    assert error.retry_after == pytest.approx(6.0)
    assert str(error) == (
        "sink 'out': circuit breaker open since 2024-05-06T07:08:09+00:00 after 3 consecutive "
        "failure(s) (last: Boom: [Errno 104] connection reset); next trial in 6.0s"
    )
    assert error.cause == "Boom: [Errno 104] connection reset"
    assert cb.metrics().rejected == 1


def test_after_the_timeout_one_trial_success_closes_the_circuit():
    clock = FakeClock()
    cb = breaker(clock)
    for _ in range(3):
        fail_once(cb)
    clock.advance(9.99)
    assert cb.state is CircuitState.OPEN
    clock.advance(0.01)
    assert cb.state is CircuitState.HALF_OPEN
    assert cb.call(lambda: "back") == "back"
    metrics = cb.metrics()
    assert (metrics.state, metrics.trial_calls, metrics.consecutive_failures) == (
        CircuitState.CLOSED,
        1,
        0,
    )
    assert metrics.opened_at is None
    # Closed again: it takes the full threshold to open it again.
    fail_once(cb)
    fail_once(cb)
    assert cb.state is CircuitState.CLOSED


def test_a_failed_trial_opens_the_circuit_again_for_a_full_timeout():
    clock = FakeClock()
    cb = breaker(clock)
    for _ in range(3):
        fail_once(cb)
    clock.advance(10)
    fail_once(cb)  # the trial
    metrics = cb.metrics()
    assert (metrics.state, metrics.opens, metrics.trial_calls) == (CircuitState.OPEN, 2, 1)
    clock.advance(9)
    with pytest.raises(CircuitOpenError):
        cb.call(lambda: None)
    clock.advance(1)
    assert cb.state is CircuitState.HALF_OPEN


def test_half_open_lets_only_one_trial_through():
    clock = FakeClock()
    cb = breaker(clock)
    for _ in range(3):
        fail_once(cb)
    clock.advance(10)
    inside, release = threading.Event(), threading.Event()

    def slow_trial():
        inside.set()
        release.wait(10)
        return "trial"

    results: list[object] = []
    trial = threading.Thread(target=lambda: results.append(cb.call(slow_trial)))
    trial.start()
    assert inside.wait(5)
    with pytest.raises(CircuitOpenError, match="a trial call is in progress"):
        cb.call(lambda: "second")
    release.set()
    trial.join()
    assert results == ["trial"]
    assert cb.state is CircuitState.CLOSED
    assert cb.metrics().trial_calls == 1


def test_a_late_success_does_not_close_an_open_circuit():
    clock = FakeClock()
    cb = breaker(clock)
    inside, release = threading.Event(), threading.Event()

    def slow():
        inside.set()
        release.wait(10)
        return "late"

    results: list[object] = []
    slow_call = threading.Thread(target=lambda: results.append(cb.call(slow)))
    slow_call.start()  # admitted while closed
    assert inside.wait(5)
    for _ in range(3):
        fail_once(cb)
    release.set()
    slow_call.join()
    assert results == ["late"]
    assert cb.state is CircuitState.OPEN  # only a trial closes it


def test_an_interrupted_trial_frees_the_trial_slot():
    clock = FakeClock()
    cb = breaker(clock)
    for _ in range(3):
        fail_once(cb)
    clock.advance(10)
    with pytest.raises(KeyboardInterrupt):
        cb.call(failing(1, error=KeyboardInterrupt)[0])
    assert cb.state is CircuitState.HALF_OPEN  # not counted as the sink's failure
    assert cb.call(lambda: "ok") == "ok"
    assert cb.metrics().trial_calls == 2


def test_errors_that_are_not_failures_are_not_counted():
    clock = FakeClock()
    cb = breaker(clock, is_failure=lambda e: not isinstance(e, DataError))

    def bad_data():
        raise DataError("bad row")

    for _ in range(5):
        with pytest.raises(DataError):
            cb.call(bad_data)
    metrics = cb.metrics()
    assert (metrics.state, metrics.failures) == (CircuitState.CLOSED, 0)


def test_waiting_mode_blocks_until_the_trial_is_due_without_spinning():
    clock = FakeClock()
    cb = breaker(clock, when_open="wait", poll_interval=0.05)
    for _ in range(3):
        fail_once(cb)
    results: list[object] = []
    caller = threading.Thread(target=lambda: results.append(cb.call(lambda: "written")))
    reads = clock.reads
    caller.start()
    time.sleep(0.5)
    assert results == [] and caller.is_alive()
    # Woken at most every poll interval (10 times in 0.5 s), not spinning on the clock.
    assert clock.reads - reads < 60
    clock.advance(10)
    caller.join(5)
    assert results == ["written"]
    metrics = cb.metrics()
    assert (metrics.state, metrics.trial_calls, metrics.rejected) == (CircuitState.CLOSED, 1, 0)


def test_waiters_behind_a_trial_go_as_soon_as_it_succeeds():
    clock = FakeClock()
    cb = breaker(clock, when_open="wait", poll_interval=5.0)  # woken by the trial, not a poll
    for _ in range(3):
        fail_once(cb)
    clock.advance(10)
    inside, release = threading.Event(), threading.Event()

    def slow_trial():
        inside.set()
        release.wait(10)
        return "trial"

    results: list[object] = []
    trial = threading.Thread(target=lambda: results.append(cb.call(slow_trial)))
    trial.start()
    assert inside.wait(5)
    waiter = threading.Thread(target=lambda: results.append(cb.call(lambda: "after")))
    waiter.start()
    time.sleep(0.1)
    assert results == []
    started = time.monotonic()
    release.set()
    waiter.join(5)
    trial.join(5)
    assert time.monotonic() - started < 2
    assert sorted(results) == ["after", "trial"]


def test_the_stop_event_ends_a_wait_for_the_circuit():
    clock = FakeClock()
    stop = threading.Event()
    cb = breaker(clock, when_open="wait", stop_event=stop, poll_interval=0.05)
    for _ in range(3):
        fail_once(cb)
    errors: list[BaseException] = []

    def call():
        try:
            cb.call(lambda: "never")
        except CircuitOpenError as exc:
            errors.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.2)
    assert caller.is_alive()
    stop.set()
    caller.join(5)
    assert not caller.is_alive()
    assert len(errors) == 1 and "circuit breaker open since" in str(errors[0])


def test_a_breaker_out_of_range_is_a_config_error():
    with pytest.raises(ConfigError) as info:
        CircuitBreaker("out", failure_threshold=0)
    assert info.value.key == "circuit.breaker.failure.threshold"
    with pytest.raises(ConfigError) as info:
        CircuitBreaker("out", reset_timeout=0)
    assert info.value.key == "circuit.breaker.reset.timeout"
    with pytest.raises(ConfigError):
        CircuitBreaker("out", when_open="spin")  # type: ignore[arg-type]


# The model: what SPEC section 7 says, step by step, for a breaker in "raise" mode.
operations = st.lists(
    st.one_of(st.just("ok"), st.just("fail"), st.floats(0, 15).map(lambda s: ("advance", s))),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops=operations, threshold=st.integers(1, 4))
def test_the_breaker_follows_its_state_machine(ops, threshold):
    clock = FakeClock()
    cb = breaker(clock, failure_threshold=threshold, reset_timeout=10.0)
    state, consecutive, opened, opens, failures, trials, rejected = "closed", 0, 0.0, 0, 0, 0, 0
    for op in ops:
        if isinstance(op, tuple):
            clock.advance(op[1])
        else:
            if state == "open" and clock.now - opened >= 10.0:
                state = "half_open"
            if state == "open":
                with pytest.raises(CircuitOpenError):
                    cb.call(lambda: None)
                rejected += 1
            else:
                trial = state == "half_open"
                trials += trial
                if op == "ok":
                    cb.call(lambda: None)
                    state, consecutive = "closed", 0
                else:
                    fail_once(cb)
                    failures += 1
                    consecutive += 1
                    if trial or consecutive >= threshold:
                        state, opened, opens = "open", clock.now, opens + 1
        model = state
        if model == "open" and clock.now - opened >= 10.0:
            model = "half_open"
        metrics = cb.metrics()
        assert metrics.state.value == model
        assert (metrics.opens, metrics.failures, metrics.trial_calls, metrics.rejected) == (
            opens,
            failures,
            trials,
            rejected,
        )
        assert metrics.consecutive_failures == consecutive


def test_many_threads_keep_the_counters_consistent():
    cb = CircuitBreaker("out", failure_threshold=3, reset_timeout=0.001, when_open="raise")
    lock = threading.Lock()
    tally = {"called": 0, "failed": 0, "rejected": 0}
    rng = random.Random(3)
    plan = [rng.random() < 0.4 for _ in range(8 * 300)]

    def worker(index: int) -> None:
        for fail in plan[index::8]:

            def fn(fail: bool = fail) -> None:
                with lock:
                    tally["called"] += 1
                if fail:
                    raise Boom()

            try:
                cb.call(fn)
            except Boom:
                with lock:
                    tally["failed"] += 1
            except CircuitOpenError:
                with lock:
                    tally["rejected"] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    metrics = cb.metrics()
    assert tally["called"] + tally["rejected"] == len(plan)
    assert metrics.failures == tally["failed"]
    assert metrics.rejected == tally["rejected"]
    assert metrics.opens >= 1
    assert metrics.trial_calls <= metrics.opens  # one trial per opening at most


def test_retries_through_a_waiting_breaker_get_a_flaky_sink_through():
    # The composition the runtime uses for a sink: each attempt goes through the breaker;
    # the sink fails 5 times, the breaker opens after 2, the attempts wait for its trials.
    cb = CircuitBreaker("out", failure_threshold=2, reset_timeout=0.05, poll_interval=0.01)
    fn, calls = failing(5, result="written")
    stats = RetryStats()
    result = retry_call(
        lambda: cb.call(fn),
        policy=RetryPolicy(initial_backoff=0.001, max_backoff=0.002, max_attempts=10),
        kind="sink",
        name="out",
        stats=stats,
    )
    assert result == "written"
    assert calls["n"] == 6
    metrics = cb.metrics()
    assert metrics.state is CircuitState.CLOSED
    assert metrics.opens >= 2  # opened, then opened again by failed trials
    assert metrics.trial_calls >= 2
    assert metrics.rejected == 0  # waiting, never refusing: nothing dropped
    assert stats.retries == 5
