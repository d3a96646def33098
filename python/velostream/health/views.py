"""The JSON bodies of the health API, built from a :class:`~velostream.TableRegistry`.

Every function here reads the registry (and the optional run callables) at the moment it
is called and returns plain JSON values: dicts, lists, strings, finite numbers, booleans
and None. Nothing is cached, so a response is always current.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

from velostream.tables.registry import TableHandle, TableRegistry, TableStatus

__all__ = [
    "ProgressCallable",
    "StatementsCallable",
    "jsonable",
    "progress_view",
    "statement_counters",
    "table_view",
    "tables_view",
]

#: Returns run-wide progress (e.g. ``{"retries": 0, "dead_letters": 0, "commits": 3}``).
ProgressCallable = Callable[[], Mapping[str, Any]]

#: Returns ``{statement: counters}``; the counters of a statement are a mapping (or a
#: dataclass such as :class:`velostream.runtime.progress.StatementProgress`) of counter
#: name to number, e.g. ``{"records_in": 10, "records_out": 7, "bad_records": 0}``, and
#: optionally ``"lag"``: ``{source: records or None}``.
StatementsCallable = Callable[[], Mapping[str, Any]]


def jsonable(value: Any) -> Any:
    """``value`` as strict JSON values.

    Mappings become dicts with string keys, dataclass instances dicts of their fields,
    tuples, lists and sets lists, enums their value, NaN and infinities None, and
    anything else that is not a JSON scalar its ``str``.

    Args:
        value: any value.

    Returns:
        A value ``json.dumps(..., allow_nan=False)`` accepts.

    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, TableStatus):
        return value.value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    return str(value)


def _error_text(error: BaseException | None) -> str | None:
    if error is None:
        return None
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def table_view(handle: TableHandle) -> dict[str, Any]:
    """One table's health: what ``GET /health/table/{name}`` answers.

    Args:
        handle: the table.

    Returns:
        ``name``, ``status`` (``"loading"``, ``"ready"`` or ``"failed"``),
        ``row_count``, ``bytes``, ``source`` (str or None), ``key`` (list of column
        names), ``error`` (``"ExceptionType: message"`` when failed, else None) and
        ``progress`` (:meth:`velostream.tables.TableProgress.as_dict`).

    """
    # Status first: a table turns FAILED with its error set under the same lock, so a
    # FAILED status read here is always followed by reading that error.
    status = handle.status
    error = handle.error if status is TableStatus.FAILED else None
    return {
        "name": handle.name,
        "status": status.value,
        "row_count": handle.row_count,
        "bytes": handle.bytes,
        "source": handle.source,
        "key": list(handle.key),
        "error": _error_text(error),
        "progress": jsonable(handle.progress.as_dict()),
    }


def tables_view(registry: TableRegistry) -> dict[str, Any]:
    """Every table's health: what ``GET /health/tables`` answers.

    Args:
        registry: the tables.

    Returns:
        ``tables`` (name -> :func:`table_view` without ``name``), ``ready`` (every table
        is ``READY``; True for no tables) and ``count``.

    """
    tables: dict[str, Any] = {}
    for handle in registry.handles():
        view = table_view(handle)
        del view["name"]
        tables[handle.name] = view
    return {
        "tables": tables,
        "ready": all(t["status"] == TableStatus.READY.value for t in tables.values()),
        "count": len(tables),
    }


def statement_counters(statements: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The statements' counters as plain dicts (dataclass counters converted).

    Args:
        statements: what a :data:`StatementsCallable` returned.

    Returns:
        ``{statement: {counter: value}}`` in JSON values.

    """
    out: dict[str, dict[str, Any]] = {}
    for name, counters in statements.items():
        value = jsonable(counters)
        out[str(name)] = value if isinstance(value, dict) else {"value": value}
    return out


def progress_view(
    registry: TableRegistry,
    *,
    progress: ProgressCallable | None = None,
    statements: StatementsCallable | None = None,
) -> dict[str, Any]:
    """Load and run progress: what ``GET /health/progress`` answers.

    Args:
        registry: the tables.
        progress: run-wide progress, if the server has it.
        statements: per-statement counters, if the server has them.

    Returns:
        ``tables`` (name -> its progress dict), ``statements`` (statement -> counters;
        ``{}`` without a ``statements`` callable) and ``run`` (the ``progress`` mapping;
        None without one).

    """
    return {
        "tables": {h.name: jsonable(h.progress.as_dict()) for h in registry.handles()},
        "statements": statement_counters(statements()) if statements is not None else {},
        "run": jsonable(progress()) if progress is not None else None,
    }
