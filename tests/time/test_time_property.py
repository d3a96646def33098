"""Property tests of event-time parsing against Python's datetime, and against hostile text.

The oracle computes epoch millis exactly with timedelta arithmetic (``(dt - EPOCH) //
1 ms``: floor, so sub-millisecond parts round down also before 1970).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from fractions import Fraction

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from velostream.errors import ConfigError, EventTimeError
from velostream.time import parse_timestamps

UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)
KINDS = {"null_value", "type_mismatch", "invalid_timestamp", "parse_error", "auto_detect_failed"}

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

offsets = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
aware = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=offsets
)
naive = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31))


def millis(dt: datetime) -> int:
    return (dt - EPOCH) // MS


def offset_text(dt: datetime, style: str) -> str:
    delta = dt.utcoffset()
    assert delta is not None
    minutes = delta // timedelta(minutes=1)
    if style == "Z" and minutes == 0:
        return "Z"
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    if style == "compact":
        return f"{sign}{hours:02d}{rest:02d}"
    if style == "hours" and rest == 0:
        return f"{sign}{hours:02d}"
    return f"{sign}{hours:02d}:{rest:02d}"


@st.composite
def rfc3339(draw: st.DrawFn) -> tuple[str, int]:
    """An RFC 3339 text of a random aware datetime, and its epoch millis."""
    dt = draw(aware)
    separator = draw(st.sampled_from(["T", "t", " "]))
    extra = draw(st.text("0123456789", max_size=3))  # digits beyond microseconds: truncated
    fraction_digits = draw(st.integers(0, 6))
    micro = f"{dt.microsecond:06d}"
    fraction = "" if fraction_digits == 0 else "." + micro[:fraction_digits]
    if fraction_digits == 6:
        fraction += extra
    kept = int(micro[:fraction_digits].ljust(6, "0")) if fraction_digits else 0
    zone = offset_text(dt, draw(st.sampled_from(["Z", "colon", "compact", "hours"])))
    text = (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}{separator}"
        f"{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}{fraction}{zone}"
    )
    return text, millis(dt.replace(microsecond=kept))


@given(st.lists(rfc3339(), max_size=40))
@SETTINGS
def test_rfc3339_against_datetime(cases: list[tuple[str, int]]) -> None:
    texts = [text for text, _ in cases]
    expected = [ms for _, ms in cases]
    assert parse_timestamps(texts, "iso8601").to_pylist() == expected
    assert parse_timestamps(texts).to_pylist() == expected


@given(st.lists(aware, max_size=40))
@SETTINGS
def test_python_isoformat_against_datetime(values: list[datetime]) -> None:
    for timespec in ("auto", "milliseconds", "seconds", "minutes"):
        texts = [dt.isoformat(timespec=timespec) for dt in values]
        got = parse_timestamps(texts, "iso8601").to_pylist()
        parsed_back = [datetime.fromisoformat(text) for text in texts]
        assert got == [millis(dt) for dt in parsed_back]


@given(st.lists(aware, max_size=40))
@SETTINGS
def test_aware_datetime_objects(values: list[datetime]) -> None:
    assert parse_timestamps(values).to_pylist() == [millis(dt) for dt in values]


@given(st.lists(naive, max_size=40), st.integers(0, 9))
@SETTINGS
def test_patterns_against_datetime(values: list[datetime], nanos_extra: int) -> None:
    texts = [
        f"{dt.day:02d}/{dt.month:02d}/{dt.year:04d} {dt.hour:02d}:{dt.minute:02d}:"
        f"{dt.second:02d}.{dt.microsecond:06d}{nanos_extra}"
        for dt in values
    ]
    expected = [millis(dt.replace(tzinfo=UTC)) for dt in values]
    assert parse_timestamps(texts, "%d/%m/%Y %H:%M:%S%.f").to_pylist() == expected
    dates = [f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}" for dt in values]
    midnight = [millis(datetime(dt.year, dt.month, dt.day, tzinfo=UTC)) for dt in values]
    assert parse_timestamps(dates, "%Y-%m-%d").to_pylist() == midnight
    assert parse_timestamps(dates).to_pylist() == midnight  # auto-detect: a bare date


@given(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=50))
@SETTINGS
def test_epoch_integers(values: list[int]) -> None:
    array = pa.array(values, pa.int64())
    assert parse_timestamps(array, "epoch_millis").to_pylist() == values
    assert parse_timestamps(array).to_pylist() == values
    assert parse_timestamps([str(v) for v in values]).to_pylist() == values
    fits = [v for v in values if abs(v) <= (2**63 - 1) // 1000]
    assert parse_timestamps(pa.array(fits, pa.int64()), "epoch").to_pylist() == [
        v * 1000 for v in fits
    ]
    overflow = [v for v in values if abs(v) > (2**63 - 1) // 1000]
    if overflow:
        try:
            parse_timestamps(pa.array(overflow, pa.int64()), "epoch_seconds")
        except EventTimeError as err:
            assert err.kind == "invalid_timestamp"
            assert err.value == str(overflow[0])
        else:
            raise AssertionError("an overflowing epoch_seconds value was accepted")


@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(0, 10**16), st.text("0123456789", max_size=12)),
        max_size=40,
    )
)
@SETTINGS
def test_numeric_strings_against_fractions(parts: list[tuple[bool, int, str]]) -> None:
    texts = [
        ("-" if neg else "") + str(whole) + (f".{frac}" if frac else "")
        for neg, whole, frac in parts
    ]
    for format, scale in (("epoch_seconds", 1000), ("epoch_millis", 1)):
        exact = [Fraction(text) * scale for text in texts]
        expected = [e.__floor__() for e in exact]
        if all(-(2**63) <= e < 2**63 for e in expected):
            assert parse_timestamps(texts, format).to_pylist() == expected


@given(
    st.lists(
        st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12),
        max_size=40,
    )
)
@SETTINGS
def test_epoch_seconds_floats(values: list[float]) -> None:
    # Rounded to the nearest microsecond, then down to the millisecond.
    expected = [(Fraction(round(Fraction(v) * 1_000_000)) / 1000).__floor__() for v in values]
    assert parse_timestamps(pa.array(values, pa.float64()), "epoch_seconds").to_pylist() == expected


FORMATS = [
    None,
    "epoch_millis",
    "epoch_seconds",
    "epoch",
    "iso8601",
    "ISO8601",
    "%Y-%m-%d %H:%M:%S",
    "%s",
    "%d/%m/%Y %H:%M:%S%.f%z",
    "%a, %d %b %Y %I:%M:%S %p",
]


@st.composite
def mutated_rfc3339(draw: st.DrawFn) -> str:
    """A valid RFC 3339 text with one character replaced, inserted or deleted."""
    text, _ = draw(rfc3339())
    at = draw(st.integers(0, len(text) - 1))
    char = draw(st.sampled_from("0123456789-+:.,TZtz 9"))
    edit = draw(st.sampled_from(["replace", "insert", "delete"]))
    if edit == "replace":
        return text[:at] + char + text[at + 1 :]
    if edit == "insert":
        return text[:at] + char + text[at:]
    return text[:at] + text[at + 1 :]


hostile_text = st.one_of(
    st.text(),
    st.binary().map(lambda b: b.decode("latin1")),
    st.text("0123456789-+:.,TZtz WAM", max_size=40),
    rfc3339().flatmap(lambda case: st.integers(0, len(case[0])).map(lambda k: case[0][:k])),
    mutated_rfc3339(),
)


@given(st.lists(st.one_of(st.none(), hostile_text), max_size=20), st.sampled_from(FORMATS))
@SETTINGS
def test_hostile_text_is_a_value_or_an_event_time_error(
    texts: list[str | None], format: str | None
) -> None:
    for type_ in (pa.string(), pa.large_string(), pa.string_view()):
        array = pa.array(texts, type_)
        try:
            result = parse_timestamps(array, format, field="ts")
        except EventTimeError as err:
            assert err.kind in KINDS
            assert err.field == "ts"
            assert isinstance(err.format, str)
            row = int(str(err).split("(row ", 1)[1].split(")", 1)[0])
            text = texts[row]
            if text is None:
                assert (err.kind, err.value) == ("null_value", "NULL")
            elif len(text.encode()) <= 256:
                assert err.value == text
            # The reported row fails on its own, and every row before it parses.
            try:
                parse_timestamps(array.slice(row, 1), format)
            except EventTimeError as alone:
                assert alone.kind == err.kind
            else:
                raise AssertionError(f"row {row} was reported but parses on its own")
            assert len(parse_timestamps(array.slice(0, row), format)) == row
        else:
            assert len(result) == len(texts) and result.null_count == 0
            assert None not in texts


@given(st.lists(st.one_of(mutated_rfc3339(), rfc3339().map(lambda case: case[0])), max_size=20))
@SETTINGS
def test_near_valid_iso_text_agrees_with_python_when_both_accept(texts: list[str]) -> None:
    for text in texts:
        try:
            ours = parse_timestamps([text], "iso8601").to_pylist()[0]
        except EventTimeError as err:
            assert err.kind in {"parse_error", "invalid_timestamp"}
            continue
        try:
            theirs = datetime.fromisoformat(text.replace("z", "Z").replace("t", "T"))
        except ValueError:
            continue  # a layout Python does not read (e.g. a "+05" offset)
        if theirs.tzinfo is not None:
            assert ours == millis(theirs), text


@given(st.lists(hostile_text, max_size=5), st.text(max_size=30))
@SETTINGS
def test_hostile_format_text_is_a_format_or_a_config_error(texts: list[str], format: str) -> None:
    try:
        parse_timestamps(texts, format)
    except ConfigError as err:
        assert err.key == "event.time.format"
        assert err.value == format
    except EventTimeError as err:
        assert err.kind in KINDS
