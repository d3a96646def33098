"""Declared source columns: their SQL types and the Arrow types they are read as.

``CREATE STREAM trades (symbol STRING, price DOUBLE, ...) WITH (...)`` declares a source
and its exact columns (SPEC section 4, as ksqlDB and Flink). Each column becomes a
:class:`ColumnDef`; :func:`declared_schema` gives the Arrow schema the source is read
with, no inference involved.

| SQL type | Arrow type |
|---|---|
| ``STRING``, ``VARCHAR`` | ``string`` |
| ``BOOLEAN`` | ``bool`` |
| ``INT``, ``INTEGER`` | ``int32`` |
| ``BIGINT`` | ``int64`` |
| ``DOUBLE`` | ``float64`` |
| ``DECIMAL(p, s)`` | ``decimal128(p, s)``, 1 <= p <= 38, 0 <= s <= p |
| ``TIMESTAMP`` | ``timestamp[ms, tz=UTC]`` |
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

import pyarrow as pa

from velostream.errors import SqlValidationError
from velostream.sql.functions import suggestion

if t.TYPE_CHECKING:
    from velostream.sql.statements import Statement

_SIMPLE: dict[str, pa.DataType] = {
    "STRING": pa.string(),
    "VARCHAR": pa.string(),
    "BOOLEAN": pa.bool_(),
    "INT": pa.int32(),
    "INTEGER": pa.int32(),
    "BIGINT": pa.int64(),
    "DOUBLE": pa.float64(),
    "TIMESTAMP": pa.timestamp("ms", tz="UTC"),
}

SUPPORTED_TYPES: tuple[str, ...] = (
    "STRING",
    "VARCHAR",
    "BOOLEAN",
    "INT",
    "INTEGER",
    "BIGINT",
    "DOUBLE",
    "DECIMAL(p, s)",
    "TIMESTAMP",
)
"""The types a declared column may have, as the error messages list them."""

_MAX_DECIMAL_PRECISION = 38


@dataclass(frozen=True)
class ColumnDef:
    """One declared column of ``CREATE STREAM name (col TYPE, ...)``.

    Attributes:
        name: the column name as written (without quotes).
        sql_type: the SQL type, upper case, e.g. ``STRING`` or ``DECIMAL(12, 2)``.
        arrow_type: the Arrow type values of the column are read as.
        line: 1-based line of the column name.
        column: 1-based column of the column name.

    """

    name: str
    sql_type: str
    arrow_type: pa.DataType
    line: int
    column: int


def _supported_list() -> str:
    return ", ".join(SUPPORTED_TYPES)


def unsupported_type_message(written: str) -> str:
    """Return the message rejecting the declared type `written`.

    Args:
        written: the type as written (its name and any parameters or further words).

    Returns:
        A message naming the type, the supported types and the nearest one.

    """
    head = written.split("(", 1)[0].split("<", 1)[0].strip().upper()
    close = suggestion(head, [name.split("(", 1)[0] for name in SUPPORTED_TYPES], cutoff=0.7)
    hint = f"; did you mean {close}?" if close is not None and close != head else ""
    return (
        f"type {written} is not supported for a declared column "
        f"(supported: {_supported_list()}){hint}"
    )


def declared_type(
    name: str, params: list[str] | None, written: str, *, line: int, column: int
) -> tuple[str, pa.DataType]:
    """Map one declared SQL type to its canonical text and its Arrow type.

    Args:
        name: the type name as written (one word, any case).
        params: the parenthesised parameters as written (``["12", "2"]``), or None when
            the type has no parentheses.
        written: the whole type as written, for messages.
        line: 1-based line of the type.
        column: 1-based column of the type.

    Returns:
        ``(sql_type, arrow_type)``, e.g. ``("DECIMAL(12, 2)", pa.decimal128(12, 2))``.

    Raises:
        SqlValidationError: the type is not one of :data:`SUPPORTED_TYPES`, or its
            parameters are wrong.

    """
    upper = name.upper()
    if upper == "DECIMAL":
        if not params:
            raise SqlValidationError(
                f"type {written} needs a precision and a scale: write DECIMAL(p, s)",
                line=line,
                column=column,
            )
        try:
            numbers = [int(param) for param in params]
        except ValueError:
            numbers = []
        if not numbers or len(numbers) > 2 or any(not p.isdigit() for p in params):
            raise SqlValidationError(
                f"invalid DECIMAL parameters in {written}: write DECIMAL(p, s) with integers",
                line=line,
                column=column,
            )
        precision = numbers[0]
        scale = numbers[1] if len(numbers) > 1 else 0
        if not 1 <= precision <= _MAX_DECIMAL_PRECISION:
            raise SqlValidationError(
                f"invalid DECIMAL precision in {written}: it must be 1 to "
                f"{_MAX_DECIMAL_PRECISION}, got {precision}",
                line=line,
                column=column,
            )
        if not 0 <= scale <= precision:
            raise SqlValidationError(
                f"invalid DECIMAL scale in {written}: it must be 0 to the precision "
                f"({precision}), got {scale}",
                line=line,
                column=column,
            )
        return f"DECIMAL({precision}, {scale})", pa.decimal128(precision, scale)
    arrow = _SIMPLE.get(upper)
    if arrow is None:
        raise SqlValidationError(unsupported_type_message(written), line=line, column=column)
    if params is not None:
        raise SqlValidationError(
            f"type {written} is not supported for a declared column: {upper} takes no "
            f"parameters (write {upper})",
            line=line,
            column=column,
        )
    return upper, arrow


def declared_schema(statement: Statement) -> pa.Schema:
    """Return the Arrow schema a declared source is read with.

    Args:
        statement: a ``CREATE STREAM name (col TYPE, ...)`` statement
            (``statement.is_declaration``).

    Returns:
        One nullable field per declared column, in order, with its declared type.

    Raises:
        SqlValidationError: the statement declares no columns.

    """
    if not statement.is_declaration:
        raise SqlValidationError(
            f"{_describe(statement)} declares no columns: only CREATE STREAM name "
            "(col TYPE, ...) has a declared schema",
            line=statement.line,
            column=statement.column,
        )
    return pa.schema(
        [pa.field(col.name, col.arrow_type, nullable=True) for col in statement.columns]
    )


def _describe(statement: Statement) -> str:
    if statement.kind == "select":
        return "a SELECT"
    return f"CREATE {statement.kind.upper()} {statement.name}"
