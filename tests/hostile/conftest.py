"""The hostile-input suite (issue 9): generated SQL, WITH values, records, snapshots, files.

Every test here feeds velostream input a user or a broken producer could give it and
requires one of two outcomes: a correct result (compared with DuckDB where both compute
it) or a ``velostream.VelostreamError`` subclass with a message. Anything else (a pyarrow,
sqlglot or Python exception, a Rust panic, a crash, a changed input file) is a failure.

The helpers shared with the query tests (``vs_compare``, the expression grammar of
``test_expressions_property``) live in tests/query; that directory is put on the import
path here so they are reused rather than copied.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_QUERY_TESTS = Path(__file__).resolve().parents[1] / "query"
if str(_QUERY_TESTS) not in sys.path:
    sys.path.insert(0, str(_QUERY_TESTS))

pytest.register_assert_rewrite("hostile_support")
