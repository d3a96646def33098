"""The SQL front end: parse velostream SQL (a sqlglot dialect), validate it, plan it.

``parse_script``/``parse_statement`` turn text into :class:`Statement` records;
``plan`` turns a statement into the physical plan of ``docs/plan-format.md``.
"""

from velostream.sql.dialect import Velostream
from velostream.sql.durations import parse_duration
from velostream.sql.planner import plan
from velostream.sql.statements import Statement, WindowSpec, parse_script, parse_statement

__all__ = [
    "Statement",
    "Velostream",
    "WindowSpec",
    "parse_duration",
    "parse_script",
    "parse_statement",
    "plan",
]
