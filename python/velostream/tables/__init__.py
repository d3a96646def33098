"""Tables: the registry of keyed tables, their dependencies, progress and parallel loading.

- :mod:`~velostream.tables.registry`: :class:`TableRegistry`, :class:`TableHandle`,
  :class:`TableStatus`;
- :mod:`~velostream.tables.dependencies`: what each table reads (sqlglot), merged with
  explicit dependencies;
- :mod:`~velostream.tables.progress`: :class:`TableProgress` per table;
- :mod:`~velostream.tables.source`: a table read as a bounded source (its snapshot);
- :mod:`~velostream.tables.loader`: :class:`TableDefinition`, :class:`TableLoad` (one
  table), :class:`ParallelLoader` (waves, parallelism, timeouts, retries),
  :class:`LoadResult`.
"""

from velostream.tables.dependencies import extract_dependencies, table_dependencies
from velostream.tables.loader import (
    LoadResult,
    ParallelLoader,
    TableDefinition,
    TableLoad,
    TablePlan,
    plan_table,
)
from velostream.tables.progress import TableProgress
from velostream.tables.registry import TableHandle, TableRegistry, TableStatus
from velostream.tables.source import TableSource

__all__ = [
    "LoadResult",
    "ParallelLoader",
    "TableDefinition",
    "TableHandle",
    "TableLoad",
    "TablePlan",
    "TableProgress",
    "TableRegistry",
    "TableSource",
    "TableStatus",
    "extract_dependencies",
    "plan_table",
    "table_dependencies",
]
