"""Corrupted snapshots of a GROUP BY query with state (issue 9).

A real snapshot of a query with many groups and every kind of aggregate state (counts,
distinct sets, integer, float and decimal sums, averages, string minima, first/last
values, variances; uint64 keys beyond 2^63, NULL keys, NaN) is corrupted in every way
the brief lists: every single-bit flip (a loop over all of them), truncations, garbage,
spliced and foreign snapshots. Each must be refused with ``SnapshotError`` and leave the
receiving query's state exactly as it was (its own snapshot is byte-identical, and it
goes on to emit what an untouched query emits); the pristine snapshot restores exactly.

Payload corruptions re-framed with a correct checksum (what a producer bug or a
deliberate edit would give) have no checksum to catch them: there, restoring may succeed,
but neither it nor the processing that follows may crash or raise anything but a
``VelostreamError``. That part runs in a child process, so that an abort (a Rust panic
that unwinds nowhere, an allocation of a corrupted length) is reported, not fatal.
"""

from __future__ import annotations

import functools
import json
import os
import random
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from hostile_support import describe, hostile_settings, outcome
from hypothesis import given
from hypothesis import strategies as st

import velostream as vs

SQL = (
    "SELECT k, s, COUNT(*) AS n, COUNT(DISTINCT v) AS d, SUM(v) AS sv, AVG(f) AS af, "
    "SUM(f) AS sf, MIN(s) AS mn, MAX(f) AS mx, FIRST_VALUE(s) AS fv, LAST_VALUE(v) AS lv, "
    "SUM(m) AS sm, AVG(m) AS am, STDDEV(f) AS sd FROM t GROUP BY k, s"
)
PATHS = ["direct", "legacy"]


def batch(seed: int, rows: int = 12) -> pa.RecordBatch:
    rng = random.Random(seed)
    return pa.record_batch(
        {
            "k": pa.array(
                [rng.choice([1, 2, None, 2**63 + 5, 2**63 + 7, 2**64 - 1]) for _ in range(rows)],
                pa.uint64(),
            ),
            "s": [rng.choice(["a", "é", None, "", "\U0001f600", "a" * 30]) for _ in range(rows)],
            "v": [rng.choice([1, -5, None, 2**40, 7]) for _ in range(rows)],
            "f": [rng.choice([0.5, float("nan"), -0.0, None, 1e300, -2.25]) for _ in range(rows)],
            "m": pa.array(
                [
                    rng.choice([Decimal("1.25"), None, Decimal("-99999999.99"), Decimal("0.01")])
                    for _ in range(rows)
                ],
                pa.decimal128(10, 2),
            ),
        }
    )


PROBE = batch(99)


def probe(query: vs.Query) -> list[dict]:
    """What a query emits for the probe batch (this changes its state)."""
    return query.process(PROBE).to_pylist()


def with_state(path: str, *seeds: int) -> vs.Query:
    query = vs.compile(SQL, path=path)
    for seed in seeds:
        query.process(batch(seed))
    return query


def assert_same_rows(got: list[dict], want: list[dict], context: str) -> None:
    # NaN != NaN: compare the rows' text, which is exact for every value here
    assert repr(got) == repr(want), f"{context}\ngot  {got}\nwant {want}"


@pytest.mark.parametrize("path", PATHS)
def test_every_single_bit_flip_is_refused_and_changes_nothing(path: str) -> None:
    source = with_state(path, 1, 2, 3)
    blob = source.snapshot()
    expected_after_restore = probe(source)

    target = with_state(path, 4)  # a query with state of its own, which must survive
    before = target.snapshot()
    accepted = []
    changed = []
    for bit in range(len(blob) * 8):
        corrupted = bytearray(blob)
        corrupted[bit // 8] ^= 1 << (bit % 8)
        result = outcome(lambda c=bytes(corrupted), q=target: q.restore(c), f"bit {bit}")
        if result.ok or not isinstance(result.error, vs.SnapshotError):
            accepted.append((bit, describe(result.error)))
        if target.snapshot() != before:
            changed.append(bit)
            target = with_state(path, 4)  # start again from the known state
    assert not accepted, (
        f"{len(accepted)} of {len(blob) * 8} bit flips not refused: {accepted[:10]}"
    )
    assert not changed, f"{len(changed)} refused bit flips changed the state: bits {changed[:10]}"
    # The state left is the query's own: it emits what an untouched twin emits.
    assert_same_rows(probe(target), probe(with_state(path, 4)), "after the refused flips")
    # And the pristine snapshot restores exactly.
    restored = vs.compile(SQL, path=path).restore(blob)
    assert_same_rows(probe(restored), expected_after_restore, "the pristine snapshot")


@st.composite
def corruptions(draw: st.DrawFn, blob: bytes, foreign: bytes) -> tuple[str, bytes]:
    kind = draw(
        st.sampled_from(
            ["truncate", "append", "overwrite", "garbage", "splice", "foreign", "duplicate", "drop"]
        )
    )
    n = len(blob)
    if kind == "truncate":
        return kind, blob[: draw(st.integers(0, n - 1))]
    if kind == "append":
        return kind, blob + draw(st.binary(min_size=1, max_size=64))
    if kind == "overwrite":
        at = draw(st.integers(0, n - 1))
        patch = draw(st.binary(min_size=1, max_size=16))
        corrupted = blob[:at] + patch + blob[at + len(patch) :]
        return kind, corrupted[:n] if corrupted != blob else blob[:-1]
    if kind == "garbage":
        return kind, draw(st.binary(max_size=2 * n))
    if kind == "splice":  # the header of one snapshot, the payload of another
        at = draw(st.integers(1, min(n, len(foreign)) - 1))
        return kind, blob[:at] + foreign[at:]
    if kind == "foreign":
        return kind, foreign
    if kind == "duplicate":
        return kind, blob + blob
    at = draw(st.integers(0, n - 1))
    return kind, blob[:at] + blob[at + draw(st.integers(1, 8)) :]


# A snapshot of a different query (MIN instead of MAX): it must be refused as foreign.
FOREIGN_SQL = SQL.replace("MAX(f)", "MIN(f)")


@functools.cache
def _snapshots(path: str) -> tuple[bytes, bytes, vs.Query, bytes]:
    """(a snapshot, a foreign one, a query with state of its own, that query's snapshot)."""
    foreign_query = vs.compile(FOREIGN_SQL, path=path)
    foreign_query.process(batch(1))
    target = with_state(path, 4)
    return with_state(path, 1, 2).snapshot(), foreign_query.snapshot(), target, target.snapshot()


@pytest.mark.parametrize("path", PATHS)
@hostile_settings(150)
@given(data=st.data())
def test_truncated_garbage_and_foreign_snapshots_are_refused(
    path: str, data: st.DataObject
) -> None:
    blob, foreign, target, before = _snapshots(path)
    kind, corrupted = data.draw(corruptions(blob, foreign), label="corruption")
    if corrupted == blob:
        return
    context = f"{kind}: {len(corrupted)} bytes {corrupted[:48]!r}..."
    result = outcome(lambda: target.restore(corrupted), context)
    assert not result.ok, f"a corrupted snapshot was restored\n{context}"
    assert isinstance(result.error, vs.SnapshotError), f"{describe(result.error)}\n{context}"
    assert target.snapshot() == before, f"a refused snapshot changed the state\n{context}"


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("argument", [None, "text", 5, [1, 2], "bytearray", "memoryview"])
def test_restore_of_anything_but_a_snapshot_is_a_snapshot_error(
    path: str, argument: object
) -> None:
    blob = with_state(path, 1).snapshot()
    if argument == "bytearray":
        argument = bytearray(blob)
    elif argument == "memoryview":
        argument = memoryview(blob)
    target = with_state(path, 4)
    result = outcome(lambda: target.restore(argument), f"restore({type(argument).__name__})")
    if isinstance(argument, (bytearray, memoryview)):
        # a bytes-like object holding a good snapshot restores, or is refused clearly
        assert result.ok or isinstance(result.error, vs.SnapshotError)
    else:
        assert isinstance(result.error, vs.SnapshotError), describe(result.error)


# --------------------------------------------------------------------------- re-framed

_CHILD = r"""
import json, random, struct, sys, zlib
sys.path[:0] = json.loads(sys.argv[1])
import velostream as vs
from test_hostile_snapshots import SQL, PROBE, with_state

HEADER = 4 + 2 + 4 + 8 + 4
path = sys.argv[2]
blob = with_state(path, 1, 2, 3).snapshot()
assert blob[:4] == b"VSNP", blob[:4]
head, payload = blob[:HEADER], blob[HEADER:]

def frame(body):
    return head[:10] + struct.pack("<QI", len(body), zlib.crc32(body)) + body

bodies = []
rng = random.Random(7)
bits = sorted(rng.sample(range(len(payload) * 8), min(3000, len(payload) * 8)))
for bit in bits:
    b = bytearray(payload); b[bit // 8] ^= 1 << (bit % 8); bodies.append(("flip %d" % bit, bytes(b)))
for i in range(200):
    b = bytearray(payload)
    for _ in range(rng.randint(1, 4)):
        b[rng.randrange(len(b))] = rng.choice([0, 0xFF, 0x7F, 0x80, rng.randrange(256)])
    bodies.append(("bytes %d" % i, bytes(b)))
for cut in range(0, len(payload), max(1, len(payload) // 64)):
    bodies.append(("cut %d" % cut, payload[:cut]))

problems, restored = [], 0
query = with_state(path, 4)  # reused: a restore replaces its whole state or none of it
for name, body in bodies:
    try:
        query.restore(frame(body))
    except vs.InternalError as exc:
        problems.append([name, "restore", "InternalError: " + str(exc)[:200]]); continue
    except vs.VelostreamError:
        continue
    except BaseException as exc:
        problems.append([name, "restore", type(exc).__name__ + ": " + str(exc)[:200]]); continue
    restored += 1
    for step, call in (("process", lambda: query.process(PROBE)), ("metrics", query.metrics)):
        try:
            call()
        except vs.InternalError as exc:
            problems.append([name, step, "InternalError: " + str(exc)[:200]]); break
        except vs.VelostreamError:
            break
        except BaseException as exc:
            problems.append([name, step, type(exc).__name__ + ": " + str(exc)[:200]]); break
print(json.dumps({"cases": len(bodies), "restored": restored, "problems": problems}))
"""


def test_reframed_payload_corruptions_never_crash() -> None:
    """3000 sampled payload bit flips, 200 byte rewrites, 64 cuts, each re-framed.

    The direct path only: the legacy path restores through the same Rust processor.
    """
    path = "direct"
    here = Path(__file__).resolve().parent
    import_path = [str(here), str(Path(vs.__file__).resolve().parents[1])]
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(import_path), path],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(import_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, (
        f"the child process died (exit {child.returncode}): a corrupted snapshot crashed the "
        f"interpreter\nstderr: {child.stderr[-3000:]}"
    )
    report = json.loads(child.stdout.strip().splitlines()[-1])
    problems = report["problems"]
    assert not problems, (
        f"{len(problems)} of {report['cases']} re-framed corruptions ({report['restored']} "
        f"restored) gave a foreign exception or an InternalError: {problems[:8]}"
    )
