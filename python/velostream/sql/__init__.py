"""The SQL front end: parse velostream SQL (a sqlglot dialect), validate it, plan it.

``parse_script``/``parse_statement`` turn text into :class:`Statement` records;
``plan`` turns a statement into the physical plan of ``docs/plan-format.md``;
``declared_schema`` gives the Arrow schema of ``CREATE STREAM name (col TYPE, ...)``.
"""

from velostream.sql.dialect import Velostream
from velostream.sql.durations import parse_duration
from velostream.sql.planner import plan
from velostream.sql.statements import Statement, WindowSpec, parse_script, parse_statement
from velostream.sql.types import ColumnDef, declared_schema

__all__ = [
    "ColumnDef",
    "Statement",
    "Velostream",
    "WindowSpec",
    "declared_schema",
    "parse_duration",
    "parse_script",
    "parse_statement",
    "plan",
]
