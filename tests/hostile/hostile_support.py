"""Helpers of the hostile-input suite: outcomes, settings, Arrow values in plain Python.

The one rule every test of the suite checks is :func:`outcome`: whatever velostream does
with an input is either a return value or a ``VelostreamError`` subclass with a message.
"""

from __future__ import annotations

import hashlib
import os
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pyarrow as pa
from hypothesis import HealthCheck, Phase, settings

import velostream as vs

T = TypeVar("T")

# Shrinking a failing example of this suite can take minutes, and the suite must stay
# fast in CI even while a property fails: examples are derandomised (the same ones every
# run, so a failure is reproducible from its printed example) and shrinking is opt-in:
#   HOSTILE_SHRINK=1 pytest tests/hostile ...
# HOSTILE_EXAMPLES=<factor> multiplies every example count, to explore more locally.
_PHASES = [Phase.explicit, Phase.generate]
if os.environ.get("HOSTILE_SHRINK") == "1":
    _PHASES.append(Phase.shrink)
_FACTOR = float(os.environ.get("HOSTILE_EXAMPLES", "1"))


def hostile_settings(max_examples: int) -> settings:
    """Settings of every property of the suite: deterministic, no deadline, no database."""
    return settings(
        max_examples=max(1, int(max_examples * _FACTOR)),
        deadline=None,
        derandomize=True,
        database=None,
        phases=_PHASES,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.function_scoped_fixture,
        ],
    )


@dataclass
class Outcome:
    """What a call did: its value, or the VelostreamError it raised."""

    value: Any = None
    error: vs.VelostreamError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def outcome(call: Callable[[], T], context: str = "") -> Outcome:
    """Run ``call``; a value or a VelostreamError with a message is fine, nothing else is.

    Any other exception (including ``BaseException``s such as pyo3's ``PanicException``)
    fails the test with the exception, its traceback and ``context``. So does an
    ``InternalError``: it is a VelostreamError, but by its definition (SPEC section 2) a
    defect of velostream, which no input may provoke.
    """
    try:
        return Outcome(value=call())
    except vs.InternalError as exc:
        raise AssertionError(f"InternalError (a defect): {exc}\n{context}") from None
    except vs.VelostreamError as exc:
        assert str(exc).strip(), f"{type(exc).__name__} without a message\n{context}"
        return Outcome(error=exc)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        raise AssertionError(
            f"foreign exception {type(exc).__module__}.{type(exc).__qualname__}: {exc}\n"
            f"{context}\n{''.join(traceback.format_exception(exc, limit=-8))}"
        ) from None


def describe(exc: BaseException | None) -> str:
    return "no error" if exc is None else f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------- Arrow values

_TIME_FACTOR = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}


def py_values(array: pa.Array | pa.ChunkedArray) -> list[Any]:
    """An Arrow column as plain Python values that compare across engines.

    Dictionary arrays are decoded, timestamps become integer nanoseconds since the epoch
    (UTC, whatever the unit and zone), dates integer days, so that no conversion to
    ``datetime`` can fail or lose precision.
    """
    if isinstance(array, pa.ChunkedArray):
        array = (
            array.combine_chunks()
            if array.num_chunks
            else pa.array([], array.type)  # an empty result of any type
        )
    kind = array.type
    if pa.types.is_dictionary(kind):
        array = array.dictionary_decode()
        kind = array.type
    if pa.types.is_timestamp(kind):
        factor = _TIME_FACTOR[kind.unit]
        return [None if v is None else v * factor for v in array.cast(pa.int64()).to_pylist()]
    if pa.types.is_date32(kind):
        return array.cast(pa.int32()).to_pylist()
    if pa.types.is_date64(kind):  # milliseconds of whole days: as days, like date32
        return [None if v is None else v // 86_400_000 for v in array.cast(pa.int64()).to_pylist()]
    if pa.types.is_time(kind) or pa.types.is_duration(kind):
        factor = _TIME_FACTOR[kind.unit]
        raw = array.cast(pa.int32() if pa.types.is_time32(kind) else pa.int64())
        return [None if v is None else v * factor for v in raw.to_pylist()]
    if pa.types.is_interval(kind):  # DuckDB's INTERVAL, as nanoseconds (30-day months)
        return [
            None if v is None else (v.months * 30 + v.days) * 86_400 * 10**9 + v.nanoseconds
            for v in array.to_pylist()
        ]
    return array.to_pylist()


def py_rows(batch: pa.RecordBatch | pa.Table) -> list[tuple[Any, ...]]:
    columns = [py_values(column) for column in batch.columns]
    return list(zip(*columns, strict=True)) if columns else []


def duckdb_table(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    """A DuckDB result as an Arrow table (no DB-API copy warning)."""
    return con.sql(sql).to_arrow_table()


# --------------------------------------------------------------------------- files


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def digests(paths: Iterable[Path]) -> dict[Path, str]:
    return {path: digest(path) for path in paths}


def assert_unchanged(before: dict[Path, str], context: str) -> None:
    """Every input file still exists and is byte-identical to what it was."""
    for path, old in before.items():
        assert path.exists(), f"input file {path} was deleted\n{context}"
        new = digest(path)
        assert new == old, f"input file {path} was modified\n{context}"
