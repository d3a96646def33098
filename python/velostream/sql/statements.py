"""Splitting a script into statements, and the :class:`Statement` record.

A script holds one or many statements separated by ``;`` with ``--`` and ``/* */``
comments. Each statement is parsed with the velostream dialect and described by a
:class:`Statement`: its kind and name, its own text and position, the plain sqlglot
query, and the streaming clauses (window, emit mode, ``WITH`` properties, primary key)
lifted off the query.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass, field
from typing import Literal

from sqlglot import exp
from sqlglot.errors import TokenError
from sqlglot.tokens import Token, TokenType

from velostream.errors import SqlSyntaxError, SqlValidationError
from velostream.sql import limits
from velostream.sql.dialect import (
    DIALECT,
    EmitMode,
    PrimaryKeyField,
    StreamProperties,
    StreamStatement,
    StreamWindow,
    SyntaxFailure,
    VelostreamParser,
    source_position,
)
from velostream.sql.types import ColumnDef

_BOM = "\ufeff"


@dataclass(frozen=True)
class WindowSpec:
    """The ``WINDOW`` clause of a statement.

    Attributes:
        kind: "tumbling", "sliding" or "session".
        size_ms: window size (tumbling, sliding); None for session windows.
        advance_ms: how far a sliding window moves; None otherwise.
        gap_ms: inactivity gap of a session window; None otherwise.
        time_column: the column named as the window's time column, if any.
        line: 1-based line of the ``WINDOW`` keyword.
        column: 1-based column of the ``WINDOW`` keyword.

    """

    kind: Literal["tumbling", "sliding", "session"]
    size_ms: int | None = None
    advance_ms: int | None = None
    gap_ms: int | None = None
    time_column: str | None = None
    line: int = 0
    column: int = 0


@dataclass(frozen=True)
class Statement:
    """One parsed statement of a script.

    Attributes:
        kind: "select", "stream" (``CREATE STREAM``) or "table" (``CREATE TABLE``).
        name: the name after ``CREATE STREAM|TABLE``; None for a ``SELECT``.
        text: the statement's own SQL text, without the trailing ``;``.
        line: 1-based line where the statement starts in the script.
        column: 1-based column where the statement starts in the script.
        query: the parsed query (``exp.Select`` or ``exp.Union``), without the streaming
            clauses and ``PRIMARY KEY`` markers; for a declaration
            (``CREATE STREAM name (col TYPE, ...)``) the ``exp.Schema`` of its columns.
        sources: the ``FROM`` names, one per ``SELECT`` of a ``UNION ALL``, in order.
        joins: the ``JOIN``ed table names, in order.
        emit: "changes" or "final" as written, None when there is no ``EMIT``.
        window: the ``WINDOW`` clause, or None.
        properties: the ``WITH`` properties, in order.
        property_positions: key -> (line, column) of the key in the script.
        primary_key: output column names marked ``PRIMARY KEY``.
        emit_position: (line, column) of the ``EMIT`` keyword, when there is one.
        columns: the declared columns of ``CREATE STREAM name (col TYPE, ...)``, in order;
            empty for every other statement.

    """

    kind: Literal["select", "stream", "table"]
    name: str | None
    text: str
    line: int
    column: int
    query: exp.Expression
    sources: tuple[str, ...] = ()
    joins: tuple[str, ...] = ()
    emit: Literal["changes", "final"] | None = None
    window: WindowSpec | None = None
    properties: dict[str, str] = field(default_factory=dict)
    property_positions: dict[str, tuple[int, int]] = field(default_factory=dict)
    primary_key: tuple[str, ...] = ()
    emit_position: tuple[int, int] | None = None
    columns: tuple[ColumnDef, ...] = ()

    @property
    def is_declaration(self) -> bool:
        """Whether this is ``CREATE STREAM name (col TYPE, ...)``: a source, no query."""
        return isinstance(self.query, exp.Schema)


def output_name(projection: exp.Expr) -> str:
    """Return the output column name of one select field (SPEC section 12).

    Args:
        projection: a select field (without its ``PRIMARY KEY`` marker).

    Returns:
        The alias; for an unaliased column reference its column name (without
        qualifier); otherwise the expression's SQL text as the dialect prints it.

    """
    if isinstance(projection, exp.Alias):
        return projection.alias
    if isinstance(projection, exp.Column) and not isinstance(projection.this, exp.Star):
        return projection.name
    return projection.sql(dialect=DIALECT, comments=False)


def relation_name(table: exp.Table) -> str:
    """Return the name of a ``FROM``/``JOIN`` relation (dotted when qualified).

    Args:
        table: the relation.

    Returns:
        For example ``trades`` or ``db.trades``.

    """
    return ".".join(part.name for part in table.parts)


def query_selects(query: exp.Expr) -> list[exp.Select]:
    """Return the SELECTs of a query: itself, or the operands of its UNION ALLs in order.

    Args:
        query: a ``Select`` or a ``Union`` of them.

    Returns:
        The ``Select`` nodes, left to right.

    """
    if isinstance(query, exp.Union):
        return query_selects(query.this) + query_selects(query.expression)
    if isinstance(query, exp.Subquery):
        return query_selects(query.this)
    if isinstance(query, exp.Select):
        return [query]
    return []


def parse_script(text: str) -> list[Statement]:
    """Parse a script of one or many statements separated by ``;``.

    A UTF-8 byte order mark at the start of the text is ignored.

    Args:
        text: the SQL script (comments allowed).

    Returns:
        The statements in order; empty for a script with no statement.

    Raises:
        SqlSyntaxError: the text does not parse (with line and column of the token).
        SqlValidationError: a duration is zero or negative, a ``WITH`` key repeats, an
            expression nests too deeply, a function is not supported, or a declared
            column is wrong.

    """
    if text.startswith(_BOM):
        text = text[len(_BOM) :]
    _reject_unencodable(text)
    tokens = _tokenize(text)
    _reject_placeholders(tokens, text)
    deep = limits.check_token_nesting(tokens)
    if deep is not None:
        line, column = source_position(text, deep.start)
        raise SqlValidationError(limits.too_deep_message(), line=line, column=column)
    parser = t.cast(VelostreamParser, DIALECT.parser())
    try:
        with limits.recursion_headroom():
            parsed = parser.parse(tokens, text)
    except SyntaxFailure as exc:
        raise SqlSyntaxError(
            exc.description, line=exc.line, column=exc.column, token=exc.token
        ) from None
    except RecursionError:
        # A construct the token check does not count nested past Python's limit; the
        # parser noted the operand it was reading.
        at = parser.too_deep_at or parser._curr or parser._prev
        line, column = source_position(text, at.start) if at else (1, 1)
        raise SqlValidationError(limits.too_deep_message(), line=line, column=column) from None
    except (SqlSyntaxError, SqlValidationError):
        raise
    except Exception as exc:
        # sqlglot failed on something it does not expect (a defect of the parser, seen
        # only on text that is not velostream SQL): report where it stopped.
        at = parser._curr or parser._prev
        line, column = source_position(text, at.start) if at else (1, 1)
        raise SqlSyntaxError(
            f"the SQL parser failed at {at.text!r} ({type(exc).__name__}: {exc}); this is "
            "not SQL velostream can run"
            if at
            else f"the SQL parser failed ({type(exc).__name__}: {exc})",
            line=line,
            column=column,
            token=at.text if at else None,
        ) from None
    return [_to_statement(node, text) for node in parsed if isinstance(node, StreamStatement)]


def parse_statement(text: str) -> Statement:
    """Parse exactly one statement (a trailing ``;`` is allowed).

    Args:
        text: the SQL text.

    Returns:
        The statement.

    Raises:
        SqlSyntaxError: the text does not parse, or holds no or several statements.
        SqlValidationError: a duration is zero or negative, or a ``WITH`` key repeats.

    """
    statements = parse_script(text)
    if not statements:
        raise SqlSyntaxError("expected a statement, found none", line=1, column=1)
    if len(statements) > 1:
        second = statements[1]
        raise SqlSyntaxError(
            f"expected one statement, found {len(statements)}",
            line=second.line,
            column=second.column,
            token=second.text.split(None, 1)[0],
        )
    return statements[0]


def _reject_unencodable(text: str) -> None:
    """Refuse text that is not Unicode text.

    A lone surrogate (U+D800 to U+DFFF alone) has no UTF-8 form, so no plan, name or value
    could carry it.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        line, column = source_position(text, exc.start)
        raise SqlSyntaxError(
            f"the SQL text holds the lone surrogate U+{ord(text[exc.start]):04X}, which is "
            "not a character (text that was decoded wrongly?)",
            line=line,
            column=column,
            token=text[exc.start],
        ) from None


def _tokenize(text: str) -> list[Token]:
    tokenizer = DIALECT.tokenizer()
    try:
        return tokenizer.tokenize(text)
    except TokenError:
        # The tokenizer stopped inside the token that starts at `_start`.
        core = getattr(tokenizer, "_core", None)
        start = getattr(core, "_start", None)
        if not isinstance(start, int):
            start = len(text)
        rest = text[start:]
        if rest.startswith("/*"):
            what = "unterminated comment"
        elif rest[:1] == "'":
            what = "unterminated string literal"
            opened = _runaway_string(getattr(core, "tokens", None), text, start)
            if opened is not None:
                raise opened from None
        elif rest[:1] in ('"', "`"):
            what = "unterminated quoted identifier"
        else:
            what = "invalid token"
        snippet = rest.split("\n", 1)[0][:20]
        line, column = source_position(text, start)
        raise SqlSyntaxError(
            f"{what} at {snippet!r}", line=line, column=column, token=snippet
        ) from None


def _runaway_string(tokens: object, text: str, failed_at: int) -> SqlSyntaxError | None:
    # A quote left open makes the next quote close it: the string then runs across a
    # line break and the statement's last quote is the one left unterminated. Report the
    # string that runs across lines, at its opening quote, where the quote is missing.
    if not isinstance(tokens, list):
        return None
    for token in reversed(tokens):
        if not isinstance(token, Token) or token.token_type == TokenType.SEMICOLON:
            return None
        if token.token_type == TokenType.STRING and "\n" in token.text:
            line, column = source_position(text, token.start)
            end_line, end_column = source_position(text, token.end)
            last_line, last_column = source_position(text, failed_at)
            first_line_text = text[token.start :].split("\n", 1)[0][:20]
            return SqlSyntaxError(
                f"unterminated string literal at {first_line_text!r}: a closing quote is "
                f"probably missing on line {line} (the string opened here runs to the quote "
                f"at line {end_line}, column {end_column}, and the quote at line "
                f"{last_line}, column {last_column} is never closed)",
                line=line,
                column=column,
                token=first_line_text,
            )
    return None


def _reject_placeholders(tokens: list[Token], text: str) -> None:
    """``${NAME}`` is replaced in ``WITH`` values only; anywhere else it is an error."""
    for index, token in enumerate(tokens[:-1]):
        following = tokens[index + 1]
        if (
            token.token_type == TokenType.VAR
            and token.text == "$"
            and following.token_type == TokenType.L_BRACE
            and following.start == token.end + 1
        ):
            closing = next(
                (
                    later
                    for later in tokens[index + 2 :]
                    if later.token_type in (TokenType.R_BRACE, TokenType.SEMICOLON)
                ),
                None,
            )
            end = (
                closing.end
                if closing is not None and closing.token_type == TokenType.R_BRACE
                else following.end
            )
            written = text[token.start : end + 1]
            line, column = source_position(text, token.start)
            raise SqlSyntaxError(
                f"{written} is not substituted here: ${{VAR}} substitution is only done in "
                f"WITH values, e.g. WITH ('key' = '{written}'); write the name itself in "
                "the query",
                line=line,
                column=column,
                token=written,
            )


def _to_statement(node: StreamStatement, script: str) -> Statement:
    start, end = node.meta["start"], node.meta["end"]
    line, column = source_position(script, start)
    query = node.expression
    properties, positions = _properties(node.args.get("properties"))
    if isinstance(query, exp.Schema):
        return Statement(
            kind="stream",
            name=node.this.name,
            text=script[start : end + 1],
            line=line,
            column=column,
            query=query,
            properties=properties,
            property_positions=positions,
            columns=tuple(query.meta["columns"]),
        )

    primary_key: list[str] = []
    selects = query_selects(query)
    for select in selects:
        for projection in list(select.expressions):
            if isinstance(projection, PrimaryKeyField):
                inner = projection.this
                projection.replace(inner)
                primary_key.append(output_name(inner))

    sources = tuple(
        relation_name(select.args["from_"].this) for select in selects if select.args.get("from_")
    )
    joins = tuple(
        relation_name(join.this) for select in selects for join in select.args.get("joins") or ()
    )

    emit_node = node.args.get("emit")
    emit = emit_node.this if isinstance(emit_node, EmitMode) else None

    name = node.this.name if node.this is not None else None
    return Statement(
        kind=node.args["kind"],
        name=name,
        text=script[start : end + 1],
        line=line,
        column=column,
        query=query,
        sources=sources,
        joins=joins,
        emit=emit,
        window=_window_spec(node.args.get("window")),
        properties=properties,
        property_positions=positions,
        primary_key=tuple(primary_key),
        emit_position=emit_node.meta["pos"] if isinstance(emit_node, EmitMode) else None,
    )


def _properties(
    node: StreamProperties | None,
) -> tuple[dict[str, str], dict[str, tuple[int, int]]]:
    properties: dict[str, str] = {}
    positions: dict[str, tuple[int, int]] = {}
    if isinstance(node, StreamProperties):
        for prop in node.expressions:
            key = prop.this.name
            properties[key] = prop.args["value"].name
            positions[key] = prop.meta["pos"]
    return properties, positions


def _window_spec(node: StreamWindow | None) -> WindowSpec | None:
    if node is None:
        return None
    line, column = node.meta["pos"]
    time_column = node.args.get("time_column")
    return WindowSpec(
        kind=node.args["kind"],
        size_ms=node.args.get("size"),
        advance_ms=node.args.get("advance"),
        gap_ms=node.args.get("gap"),
        time_column=time_column.name if time_column is not None else None,
        line=line,
        column=column,
    )
