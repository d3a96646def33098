"""The velostream SQL dialect: a sqlglot Dialect with streaming extensions.

The dialect reads the statements of SPEC section 4 (``CREATE STREAM|TABLE name AS
SELECT ...``, ``SELECT ...``) and the clauses sqlglot does not know (``WINDOW
TUMBLING(5m)``, ``EMIT CHANGES|FINAL``, ``WITH ('key' = 'value')`` after the query,
``PRIMARY KEY`` after a select field). Each statement becomes a :class:`StreamStatement`
whose ``expression`` is the plain sqlglot query (a ``Select`` or a ``Union``); the
streaming clauses are held beside it, never inside it.

Every syntax error is raised as :class:`SyntaxFailure` (a sqlglot ``ParseError``, so
sqlglot's own backtracking keeps working) carrying the 1-based line and column of the
first character of the offending token; :mod:`velostream.sql.statements` turns it into
a :class:`~velostream.errors.SqlSyntaxError`.
"""

from __future__ import annotations

import typing as t

from sqlglot import exp, generator, parser, tokens
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError
from sqlglot.tokens import Token, TokenType

from velostream.errors import SqlValidationError
from velostream.sql import limits
from velostream.sql.durations import UNIT_HINT, format_duration, to_millis, unit_millis
from velostream.sql.functions import SUPPORTED_FUNCTIONS, suggestion, unsupported_message
from velostream.sql.types import ColumnDef, declared_type, unsupported_type_message

WINDOW_KINDS: dict[str, str] = {
    "TUMBLING": "tumbling",
    "SLIDING": "sliding",
    "HOPPING": "sliding",
    "SESSION": "session",
}

EMIT_MODES = ("CHANGES", "FINAL")

KEYWORDS: tuple[str, ...] = (
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP",
    "HAVING",
    "WINDOW",
    "EMIT",
    "CHANGES",
    "FINAL",
    "WITH",
    "JOIN",
    "LEFT",
    "UNION",
    "DISTINCT",
    "AND",
    "NOT",
    "NULL",
    "LIKE",
    "ILIKE",
    "BETWEEN",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "CAST",
    "INTERVAL",
    "CREATE",
    "STREAM",
    "TABLE",
    "PRIMARY",
    "TUMBLING",
    "SLIDING",
    "HOPPING",
    "SESSION",
    "TRUE",
    "FALSE",
)
"""The dialect's keywords, as "did you mean" suggests them for a misspelt word."""

# Clauses sqlglot knows that a continuous query cannot run: token -> how it is named.
UNSUPPORTED_CLAUSES: dict[TokenType, str] = {
    TokenType.ORDER_BY: "ORDER BY",
    TokenType.LIMIT: "LIMIT",
    TokenType.FETCH: "FETCH",
    TokenType.OFFSET: "OFFSET",
    TokenType.QUALIFY: "QUALIFY",
    TokenType.SORT_BY: "SORT BY",
    TokenType.CLUSTER_BY: "CLUSTER BY",
    TokenType.DISTRIBUTE_BY: "DISTRIBUTE BY",
    TokenType.CONNECT_BY: "CONNECT BY",
    TokenType.START_WITH: "START WITH",
    TokenType.PREWHERE: "PREWHERE",
    TokenType.MATCH_RECOGNIZE: "MATCH_RECOGNIZE",
    TokenType.TABLE_SAMPLE: "TABLESAMPLE",
    TokenType.LOCK: "LOCK",
    TokenType.FOR: "FOR UPDATE/SHARE",
    TokenType.PIVOT: "PIVOT",
    TokenType.UNPIVOT: "UNPIVOT",
    TokenType.INTO: "SELECT INTO",
}

# Table arguments sqlglot fills for clauses after a FROM/JOIN name, as they are named.
_TABLE_CLAUSES: dict[str, str] = {
    "sample": "TABLESAMPLE",
    "pivots": "PIVOT",
    "laterals": "LATERAL",
    "joins": "a nested JOIN",
    "hints": "a table hint",
    "version": "AS OF (time travel)",
    "system_time": "FOR SYSTEM_TIME",
    "partition": "PARTITION",
    "only": "ONLY",
    "ordinality": "WITH ORDINALITY",
    "changes": "CHANGES",
    "when": "AT/BEFORE",
    "format": "a table format",
    "pattern": "a table pattern",
    "rows_from": "ROWS FROM",
}

# Words that start a column constraint (after the type) in a column declaration.
_CONSTRAINT_WORDS = frozenset(
    {
        "NOT",
        "NULL",
        "PRIMARY",
        "PRIMARY KEY",
        "KEY",
        "DEFAULT",
        "UNIQUE",
        "CHECK",
        "REFERENCES",
        "CONSTRAINT",
        "COLLATE",
        "GENERATED",
        "AUTO_INCREMENT",
        "AUTOINCREMENT",
        "IDENTITY",
        "COMMENT",
        "HEADERS",
        "HEADER",
        "METADATA",
        "VIRTUAL",
        "AS",
    }
)

# Words that start a table constraint (in place of a column) in a column declaration.
_TABLE_CONSTRAINT_WORDS = frozenset(
    {"PRIMARY KEY", "CONSTRAINT", "UNIQUE", "CHECK", "FOREIGN KEY", "WATERMARK", "PERIOD", "LIKE"}
)

_CONSTRAINT_TOKENS = frozenset(
    {
        TokenType.PRIMARY_KEY,
        TokenType.NOT,
        TokenType.NULL,
        TokenType.DEFAULT,
        TokenType.UNIQUE,
        TokenType.CONSTRAINT,
        TokenType.COLLATE,
    }
)

# Tokens that cannot be a declared column's name.
_NOT_NAMES = frozenset(
    {
        TokenType.L_PAREN,
        TokenType.R_PAREN,
        TokenType.COMMA,
        TokenType.STRING,
        TokenType.NUMBER,
        TokenType.SEMICOLON,
        TokenType.DOT,
    }
)

# Type tokens that may follow a column named like a table constraint word (`check BOOLEAN`).
_DECLARABLE_TYPE_TOKENS = frozenset(
    {
        TokenType.TEXT,
        TokenType.VARCHAR,
        TokenType.BOOLEAN,
        TokenType.INT,
        TokenType.BIGINT,
        TokenType.DOUBLE,
        TokenType.DECIMAL,
        TokenType.TIMESTAMP,
    }
)

# Declared types as sqlglot's default dialect names them in the schema node.
_SQLGLOT_TYPES = {"STRING": "TEXT"}

# Wrappers sqlglot puts around a function call (OVER, FILTER, WITHIN GROUP, ...).
_CALL_WRAPPERS: tuple[type[exp.Expr], ...] = (
    exp.Window,
    exp.Filter,
    exp.WithinGroup,
    exp.IgnoreNulls,
    exp.RespectNulls,
    exp.HavingMax,
)


def source_position(sql: str, offset: int) -> tuple[int, int]:
    """Return the 1-based (line, column) of character `offset` of `sql`.

    Args:
        sql: the whole script.
        offset: a 0-based character offset into `sql`.

    Returns:
        ``(line, column)``, both 1-based.

    """
    offset = max(0, min(offset, len(sql)))
    line = sql.count("\n", 0, offset) + 1
    column = offset - (sql.rfind("\n", 0, offset) + 1) + 1
    return line, column


def node_position(node: exp.Expr | None) -> tuple[int, int] | None:
    """Return the (line, column) the parser recorded for `node` or its leftmost part.

    Args:
        node: a node of a parsed statement.

    Returns:
        ``(line, column)`` (1-based, first character), or None when nothing in the node
        carries a position.

    """
    if node is None:
        return None
    for sub in node.dfs():
        meta = sub._meta
        if meta and "pos" in meta:
            return t.cast(tuple[int, int], meta["pos"])
    return None


class SyntaxFailure(ParseError):
    """A syntax error at a known token (internal: becomes ``SqlSyntaxError``).

    Attributes:
        description: what is wrong, showing the offending token.
        line: 1-based line of the offending token.
        column: 1-based column of its first character.
        token: the offending token's text.

    """

    def __init__(self, description: str, *, line: int, column: int, token: str | None) -> None:
        # sqlglot reads `errors[0]` of a ParseError when it parses a fragment itself
        # (a type name through DataType.from_str, ...): give it the entry it expects.
        super().__init__(
            description,
            errors=[
                {
                    "description": description,
                    "line": line,
                    "col": column,
                    "start_context": "",
                    "highlight": token or "",
                    "end_context": "",
                    "into_expression": None,
                }
            ],
        )
        self.description = description
        self.line = line
        self.column = column
        self.token = token


# --------------------------------------------------------------------------- expressions


class StreamStatement(exp.Expression):
    """One statement: ``kind`` is "select", "stream" or "table"; ``this`` the name."""

    arg_types = {
        "kind": True,
        "this": False,
        "expression": True,
        "window": False,
        "emit": False,
        "properties": False,
    }


class StreamWindow(exp.Expression):
    """``WINDOW TUMBLING|SLIDING|SESSION(...)``; durations are integer milliseconds."""

    arg_types = {
        "kind": True,
        "size": False,
        "advance": False,
        "gap": False,
        "time_column": False,
    }


class EmitMode(exp.Expression):
    """``EMIT CHANGES`` or ``EMIT FINAL``; ``this`` is "changes" or "final"."""


class StreamProperties(exp.Expression):
    """The ``WITH ('key' = 'value', ...)`` clause after a query."""

    arg_types = {"expressions": True}


class StreamProperty(exp.Expression):
    """One ``'key' = value`` pair; ``this`` is the key, ``value`` the value (literals)."""

    arg_types = {"this": True, "value": True}


class PrimaryKeyField(exp.Expression):
    """A select field followed by ``PRIMARY KEY``; ``this`` is the field."""


# --------------------------------------------------------------------------- parser


def _describe(token: Token) -> str:
    if token.token_type == TokenType.STRING:
        return repr(f"'{token.text}'")
    if token.token_type == TokenType.IDENTIFIER:
        return repr(f'"{token.text}"')
    return repr(token.text)


def _unsupported_clause(clause: str) -> str:
    return f"{clause} is not supported in a continuous query"


def _friendly(message: str) -> str:
    if message.startswith("Invalid expression / Unexpected token"):
        return "unexpected token"
    if message.startswith("Required keyword: 'this' missing") or message.startswith(
        "Required keyword: 'expression' missing"
    ):
        return "expected an expression"
    if message.startswith("Required keyword:"):
        # sqlglot names its own classes: say only that something is missing
        return "incomplete expression"
    if " but got <Token" in message:
        # sqlglot prints its token object; the position and the token are shown anyway
        message = message.split(" but got <Token", 1)[0]
    if message.startswith("Expecting "):
        return "expected " + message[len("Expecting ") :]
    return message


class VelostreamParser(parser.Parser):
    """sqlglot parser extended with the statements and clauses of the velostream dialect."""

    # Only the clauses of the grammar; ORDER BY, LIMIT, QUALIFY, ... become syntax errors.
    # WINDOW is read after the whole query (see _parse_trailing_clauses), so that it
    # belongs to the statement even after a UNION ALL.
    QUERY_MODIFIER_PARSERS: t.ClassVar = {
        TokenType.WHERE: lambda self: ("where", self._parse_where()),
        TokenType.GROUP_BY: lambda self: ("group", self._parse_group_by()),
        TokenType.HAVING: lambda self: ("having", self._parse_having()),
    }
    # Kept whole: GROUP BY stops before these tokens instead of reading them as columns.
    QUERY_MODIFIER_TOKENS: t.ClassVar = parser.Parser.QUERY_MODIFIER_TOKENS

    _in_statement = False
    too_deep_at: Token | None = None
    """The operand being parsed when Python's recursion limit was hit, if it was."""

    # ----------------------------------------------------------------- errors

    def raise_error(self, message: str, token: Token | None = None) -> None:
        """Raise a :class:`SyntaxFailure` at `token` (default: the current token).

        Args:
            message: what is wrong.
            token: the offending token.

        Raises:
            SyntaxFailure: always.

        """
        at_end = not token and not self._curr
        token = token or self._curr or self._prev
        description = _friendly(message)
        if token:
            clause = None if at_end else UNSUPPORTED_CLAUSES.get(token.token_type)
            if clause is not None:
                description = _unsupported_clause(clause)
            else:
                shown = _describe(token)
                if at_end:
                    description = f"{description}: the statement ends after {shown}"
                else:
                    description = f"{description} at {shown}"
                description += self._keyword_hint(token, at_end)
            line, column = source_position(self.sql, token.start)
            raise SyntaxFailure(description, line=line, column=column, token=token.text)
        raise SyntaxFailure(f"{description}: empty statement", line=1, column=1, token=None)

    def _keyword_hint(self, token: Token, at_end: bool) -> str:
        # " (did you mean FROM ...)" when the failing token or the one before it is an
        # unquoted word close to a keyword (FORM, WHER), else "".
        index = self._tokens.index(token) if token in self._tokens else -1
        candidates = [(token, True)] if not at_end else []
        if index > 0:
            candidates.append((self._tokens[index - 1], False))
        elif at_end:
            candidates.append((token, False))
        for word, failing in candidates:
            if word.token_type != TokenType.VAR or len(word.text) < 3:
                continue
            upper = word.text.upper()
            if upper in KEYWORDS:
                continue
            close = suggestion(upper, KEYWORDS)
            if close is None:
                continue
            if failing:
                return f" (did you mean {close}?)"
            line, column = source_position(self.sql, word.start)
            return (
                f" (did you mean {close} instead of {word.text!r} at line {line}, column {column}?)"
            )
        return ""

    def _fail(self, message: str, token: Token | None = None) -> t.NoReturn:
        self.raise_error(message, token)
        raise AssertionError("raise_error always raises")

    def _validation_error(self, message: str, token: Token) -> SqlValidationError:
        line, column = source_position(self.sql, token.start)
        return SqlValidationError(message, line=line, column=column)

    def validate_expression(self, expression: t.Any, args: list | None = None) -> t.Any:
        """Validate a node; a function's wrong argument count is only recorded.

        A wrong number of arguments is a validation error, not a syntax error: it is
        kept in ``meta["arity_error"]`` and reported by the planner with its position.

        Args:
            expression: the node just built.
            args: the arguments of a function call, when the node is one.

        Returns:
            The node.

        """
        if args is not None and isinstance(expression, exp.Func):
            messages = expression.error_messages(args)
            if messages:
                expression.meta["arity_error"] = messages[0]
            return expression
        return super().validate_expression(expression, args)

    # ----------------------------------------------------------------- positions

    def _parse_unary(self) -> exp.Expr | None:
        # Every operand goes through here: give it the position of its first token when
        # sqlglot did not record one (CASE, NOT, unary minus, columns, parentheses, ...).
        start = self._curr
        try:
            node = super()._parse_unary()
        except RecursionError:
            # The deepest operand is where the nesting went too far: remember it (a plain
            # attribute store, which needs no frame) and let the error unwind.
            if self.too_deep_at is None:
                self.too_deep_at = start
            raise
        if node is not None and start:
            meta = node._meta
            if not meta or "start" not in meta:
                node.update_positions(start)
        return node

    def _parse_function_call(
        self,
        functions: dict[str, t.Callable] | None = None,
        anonymous: bool = False,
        optional_parens: bool = True,
        any_token: bool = False,
    ) -> exp.Expr | None:
        # A call of a function velostream does not run is parsed as an anonymous call
        # (sqlglot's builder is not run: it may rewrite the call into a look-alike, as
        # CONCAT_WS into a CONCAT, or fail on unexpected arguments) and rejected by name
        # when planned. Calls with a syntax of their own (EXTRACT(x FROM y), ...) are
        # rejected right here. The name as written is kept in meta["call"].
        token = self._curr
        if token is None:
            return None
        upper = token.text.upper()
        after_dot = self._prev is not None and self._prev.token_type == TokenType.DOT
        called = (
            self._next is not None
            and self._next.token_type == TokenType.L_PAREN
            and token.token_type != TokenType.IDENTIFIER
            and not after_dot
        )
        if called and not anonymous and upper not in SUPPORTED_FUNCTIONS and upper != "CASE":
            if upper in self.FUNCTION_PARSERS or upper in self.NO_PAREN_FUNCTION_PARSERS:
                raise self._validation_error(unsupported_message(token.text, known=True), token)
            if upper in self.FUNCTIONS:
                anonymous = True
        result = super()._parse_function_call(
            functions=functions,
            anonymous=anonymous,
            optional_parens=optional_parens,
            any_token=any_token,
        )
        if result is not None and upper != "CASE":
            node = result
            while isinstance(node, _CALL_WRAPPERS) and isinstance(node.this, exp.Expr):
                node = node.this
            if isinstance(node, exp.Func):
                node.meta["call"] = upper
        return result

    def _parse_select(
        self,
        nested: bool = False,
        table: bool = False,
        parse_subquery_alias: bool = True,
        parse_set_operation: bool = True,
        consume_pipe: bool = True,
    ) -> exp.Expr | None:
        start = self._curr
        query = super()._parse_select(
            nested=nested,
            table=table,
            parse_subquery_alias=parse_subquery_alias,
            parse_set_operation=parse_set_operation,
            consume_pipe=consume_pipe,
        )
        if isinstance(query, exp.Select) and start and not (query._meta or {}).get("start"):
            query.update_positions(start)
        return query

    def _record_positions(self, node: exp.Expr) -> None:
        for sub in node.walk():
            meta = sub._meta
            if meta and "start" in meta and "pos" not in meta:
                meta["pos"] = source_position(self.sql, meta["start"])

    # ----------------------------------------------------------------- statements

    def _parse_statement(self) -> exp.Expr | None:
        if self._in_statement:
            return super()._parse_statement()
        if not self._curr:
            return None
        if self._curr.token_type == TokenType.SEMICOLON:
            # A chunk holding only a ';' that carries a comment: no statement.
            self._advance()
            return None

        first, last = self._tokens[0], self._tokens[-1]
        self._in_statement = True
        try:
            statement = self._parse_stream_statement()
        finally:
            self._in_statement = False
        statement.meta["start"] = first.start
        statement.meta["end"] = last.end
        _balance_connectors(statement)
        self._record_positions(statement)
        deep = limits.too_deep_node(statement, _CLAUSE_NODES)
        if deep is not None:
            line, column = node_position(deep) or source_position(self.sql, first.start)
            raise SqlValidationError(limits.too_deep_message(), line=line, column=column)
        return statement

    def _parse_stream_statement(self) -> StreamStatement:
        name: exp.Expr | None = None
        properties: StreamProperties | None = None
        if self._match(TokenType.CREATE):
            if self._match(TokenType.STREAM) or self._match_text_seq("STREAM"):
                kind = "stream"
            elif self._match(TokenType.TABLE):
                kind = "table"
            else:
                self._fail("expected STREAM or TABLE after CREATE")
            name = self._parse_id_var(any_token=False)
            if name is None:
                self._fail(f"expected a name after CREATE {kind.upper()}")
            if self._curr and self._curr.token_type == TokenType.L_PAREN:
                if kind != "stream":
                    raise self._validation_error(
                        f"CREATE TABLE {name.name} (...) is not supported: a table is "
                        f"defined AS SELECT; declare a source with CREATE STREAM "
                        f"{name.name} (col TYPE, ...) WITH (...)",
                        self._curr,
                    )
                return self._parse_declaration(name)
            # ksqlDB writes the properties before AS: accept them there too.
            if self._match(TokenType.WITH):
                properties = self._parse_stream_properties()
            if not self._match(TokenType.ALIAS):
                self._fail(f"expected AS after CREATE {kind.upper()} {name.name}")
            self._reject_common_table_expression()
            if not self._match(TokenType.SELECT, advance=False):
                self._fail("expected SELECT after AS")
        elif self._match(TokenType.SELECT, advance=False):
            kind = "select"
        else:
            self._reject_common_table_expression()
            self._fail("expected SELECT, CREATE STREAM or CREATE TABLE")

        query = self._parse_select()
        if query is None:
            self._fail("expected SELECT")

        window, emit, trailing_properties = self._parse_trailing_clauses()
        if self._curr and self._curr.token_type == TokenType.UNION:
            self._fail("WINDOW, EMIT and WITH go after the last SELECT of a UNION ALL")
        if trailing_properties is not None:
            if properties is not None:
                self._fail("WITH properties are given twice", self._prev)
            properties = trailing_properties

        return StreamStatement(
            kind=kind,
            this=name,
            expression=query,
            window=window,
            emit=emit,
            properties=properties,
        )

    def _reject_common_table_expression(self) -> None:
        token = self._curr
        if token and token.token_type == TokenType.WITH and self._next:
            if self._next.token_type != TokenType.L_PAREN:
                raise self._validation_error(
                    "WITH ... AS (...) (a common table expression) is not supported: "
                    "define it as its own CREATE STREAM name AS SELECT ... and read that "
                    "stream",
                    token,
                )

    # ----------------------------------------------------------------- declarations

    def _parse_declaration(self, name: exp.Expr) -> StreamStatement:
        """``CREATE STREAM name (col TYPE, ...) [WITH (...)]``: a source and its columns."""
        open_paren = self._curr
        self._advance()
        columns: list[exp.ColumnDef] = []
        declared: list[ColumnDef] = []
        seen: dict[str, ColumnDef] = {}
        while True:
            column = self._parse_declared_column(name)
            previous = seen.get(column.name)
            if previous is not None:
                raise SqlValidationError(
                    f"column {column.name} is declared twice in CREATE STREAM {name.name} "
                    f"(first at line {previous.line}, column {previous.column})",
                    line=column.line,
                    column=column.column,
                )
            seen[column.name] = column
            declared.append(column)
            node = exp.ColumnDef(
                this=exp.to_identifier(column.name, quoted=not _plain_name(column.name)),
                kind=exp.DataType.build(_SQLGLOT_TYPES.get(column.sql_type, column.sql_type)),
            )
            node.meta["pos"] = (column.line, column.column)
            columns.append(node)
            if self._match(TokenType.COMMA):
                continue
            if not self._match(TokenType.R_PAREN):
                self._fail(f"expected ',' or ')' in the column list of CREATE STREAM {name.name}")
            break
        schema = exp.Schema(this=exp.Table(this=name.copy()), expressions=columns)
        schema.meta["columns"] = tuple(declared)
        schema.update_positions(open_paren)
        properties = None
        if self._match(TokenType.WITH):
            properties = self._parse_stream_properties()
        if self._curr and self._curr.token_type == TokenType.ALIAS:
            raise self._validation_error(
                f"CREATE STREAM {name.name} declares its columns, so it is a source: it "
                "cannot also be defined AS SELECT (drop the column list or the AS SELECT)",
                self._curr,
            )
        return StreamStatement(kind="stream", this=name, expression=schema, properties=properties)

    def _parse_declared_column(self, stream: exp.Expr) -> ColumnDef:
        name_token = self._curr
        if name_token is None or name_token.token_type in _NOT_NAMES:
            self._fail(f"expected a column name in the column list of CREATE STREAM {stream.name}")
        upper = name_token.text.upper()
        if name_token.token_type != TokenType.IDENTIFIER and (
            upper in _TABLE_CONSTRAINT_WORDS
            or name_token.token_type in (TokenType.PRIMARY_KEY, TokenType.FOREIGN_KEY)
        ):
            following = self._next
            if following is None or following.token_type not in _DECLARABLE_TYPE_TOKENS:
                raise self._validation_error(
                    f"{upper} is not supported in CREATE STREAM {stream.name} (...): declare "
                    "only columns, as name TYPE",
                    name_token,
                )
        self._advance()
        type_tokens: list[Token] = []
        depth = 0
        while self._curr and not (
            depth == 0 and self._curr.token_type in (TokenType.COMMA, TokenType.R_PAREN)
        ):
            if self._curr.token_type in (TokenType.L_PAREN, TokenType.LT):
                depth += 1
            elif self._curr.token_type in (TokenType.R_PAREN, TokenType.GT):
                depth -= 1
            type_tokens.append(self._curr)
            self._advance()
        if not type_tokens:
            self._fail(f"expected a type after column {name_token.text}")
        if self._curr is None:
            self._fail(f"expected ')' to close the column list of CREATE STREAM {stream.name}")

        first = type_tokens[0]
        params: list[str] | None = None
        rest = type_tokens[1:]
        if rest and rest[0].token_type == TokenType.L_PAREN:
            close = next(
                (i for i, tok in enumerate(rest) if tok.token_type == TokenType.R_PAREN), None
            )
            if close is not None:
                params = [""]
                for tok in rest[1:close]:
                    if tok.token_type == TokenType.COMMA:
                        params.append("")
                    else:
                        params[-1] += tok.text
                rest = rest[close + 1 :]
        line, column = source_position(self.sql, first.start)
        if rest and (
            rest[0].text.upper() in _CONSTRAINT_WORDS or rest[0].token_type in _CONSTRAINT_TOKENS
        ):
            constraint = self.sql[rest[0].start : type_tokens[-1].end + 1]
            raise self._validation_error(
                f"column constraint {constraint} is not supported for declared column "
                f"{name_token.text}: a declared column has a name and a type only "
                "(every declared column may be NULL)",
                rest[0],
            )
        written = self.sql[first.start : type_tokens[-1].end + 1]
        if rest or first.token_type in (TokenType.STRING, TokenType.NUMBER):
            # more words after the type, or no word at all: a type velostream does not run
            raise SqlValidationError(unsupported_type_message(written), line=line, column=column)
        sql_type, arrow_type = declared_type(first.text, params, written, line=line, column=column)
        name_line, name_column = source_position(self.sql, name_token.start)
        return ColumnDef(
            name=name_token.text,
            sql_type=sql_type,
            arrow_type=arrow_type,
            line=name_line,
            column=name_column,
        )

    def _parse_trailing_clauses(
        self,
    ) -> tuple[StreamWindow | None, EmitMode | None, StreamProperties | None]:
        window: StreamWindow | None = None
        emit: EmitMode | None = None
        properties: StreamProperties | None = None
        while self._curr:
            token = self._curr
            if self._match(TokenType.WINDOW):
                if window is not None:
                    self._fail("found a second WINDOW clause", token)
                window = self._parse_stream_window(token)
            elif token.token_type == TokenType.VAR and token.text.upper() == "EMIT":
                self._advance()
                if emit is not None:
                    self._fail("found a second EMIT clause", token)
                mode = self._curr
                if not mode or mode.text.upper() not in EMIT_MODES:
                    self._fail("expected CHANGES or FINAL after EMIT")
                self._advance()
                emit = self.expression(EmitMode(this=mode.text.lower()), token=token)
            elif self._match(TokenType.WITH):
                if properties is not None:
                    self._fail("found a second WITH clause", token)
                properties = self._parse_stream_properties()
            else:
                break
        return window, emit, properties

    # ----------------------------------------------------------------- WINDOW

    def _parse_stream_window(self, window_token: Token) -> StreamWindow:
        kind_token = self._curr
        if (
            not kind_token
            or kind_token.token_type in (TokenType.STRING, TokenType.IDENTIFIER)
            or kind_token.text.upper() not in WINDOW_KINDS
        ):
            self._fail("expected TUMBLING, SLIDING or SESSION after WINDOW")
        self._advance()
        kind = WINDOW_KINDS[kind_token.text.upper()]
        written = kind_token.text.upper()
        if not self._match(TokenType.L_PAREN):
            self._fail(f"expected '(' after {written}")

        args: dict[str, t.Any] = {"kind": kind}
        if kind == "tumbling":
            self._match_text_seq("SIZE")
            args["size"] = self._parse_duration_arg()
        elif kind == "sliding":
            self._match_text_seq("SIZE")
            args["size"] = self._parse_duration_arg()
            if not self._match(TokenType.COMMA):
                self._fail(f"{written} takes a size and an advance: expected ','")
            self._match_text_seq("ADVANCE", "BY")
            args["advance"] = self._parse_duration_arg()
        else:
            self._match_text_seq("GAP")
            args["gap"] = self._parse_duration_arg()

        if self._match(TokenType.COMMA):
            args["time_column"] = self._parse_time_column()
        if not self._match(TokenType.R_PAREN):
            self._fail(f"expected ')' to close {written}(...)")

        window = self.expression(StreamWindow(**args), token=window_token)
        if kind == "sliding" and args["advance"] > args["size"]:
            raise self._validation_error(
                f"SLIDING window advance ({format_duration(args['advance'])}) is larger "
                f"than its size ({format_duration(args['size'])})",
                kind_token,
            )
        return window

    def _parse_time_column(self) -> exp.Expr:
        if not self._curr or self._curr.token_type in (
            TokenType.R_PAREN,
            TokenType.COMMA,
            TokenType.STRING,
            TokenType.NUMBER,
        ):
            self._fail("expected the name of the time column")
        column = self._parse_column()
        if not isinstance(column, exp.Column) or isinstance(column.this, exp.Star):
            self._fail("expected the name of the time column")
        return column

    def _parse_duration_arg(self) -> int:
        """Read one duration (``5m``, ``250ms``, ``INTERVAL '5' MINUTE``, ...) as millis."""
        start = self._curr
        unit_token: Token | None = None
        if self._match(TokenType.INTERVAL):
            negative = self._match(TokenType.DASH)
            value_token = self._curr
            if value_token.token_type == TokenType.STRING:
                self._advance()
                parts = value_token.text.split()
                if len(parts) == 2:
                    number, unit = parts
                    unit_token = value_token
                elif len(parts) == 1:
                    number = parts[0]
                else:
                    self._fail("expected a number in the INTERVAL string", value_token)
            elif value_token.token_type == TokenType.NUMBER:
                self._advance()
                number = value_token.text
            else:
                self._fail("expected a number after INTERVAL")
            if unit_token is None:
                unit_token = self._curr
                if not unit_token:
                    self._fail("expected a time unit such as MINUTE after the INTERVAL value")
                self._advance()
                unit = unit_token.text
        elif self._curr.token_type == TokenType.STRING:
            # '5s' written as a string, as in a property value
            self._advance()
            compact = self._split_compact(start.text.strip())
            if compact is None:
                self._fail("expected a duration such as '30s', '5m' or INTERVAL '5' MINUTE", start)
            negative = False
            number, unit = compact
            unit_token = start
        else:
            negative = self._match(TokenType.DASH)
            number_token = self._curr
            if number_token.token_type != TokenType.NUMBER:
                self._fail("expected a duration such as 250ms, 30s, 5m, 1h or INTERVAL '5' MINUTE")
            self._advance()
            number = number_token.text
            digits = len(number) - len(number.lstrip("0123456789."))
            if 0 < digits < len(number) and number[digits:].isalpha():
                # `1e` is read as one NUMBER token (an exponent): its letters are the unit
                unit_at = digits
                fake = Token(
                    TokenType.VAR,
                    number[unit_at:],
                    number_token.line,
                    number_token.col,
                    number_token.start + unit_at,
                    number_token.end,
                )
                self._fail(f"unknown duration unit {fake.text!r} (use {UNIT_HINT})", fake)
            unit_token = self._curr
            if not unit_token or unit_token.token_type in (
                TokenType.COMMA,
                TokenType.R_PAREN,
            ):
                self._fail(
                    f"duration {number} needs a unit (ms, s, m, h or d), e.g. {number}s",
                    number_token,
                )
            if not self._is_connected() and unit_token.text.upper() not in (
                "MILLISECOND",
                "MILLISECONDS",
                "SECOND",
                "SECONDS",
                "MINUTE",
                "MINUTES",
                "HOUR",
                "HOURS",
                "DAY",
                "DAYS",
            ):
                self._fail(
                    f"duration {number} needs a unit (ms, s, m, h or d), e.g. {number}s",
                    number_token,
                )
            self._advance()
            unit = unit_token.text

        unit_ms = unit_millis(unit)
        if unit_ms is None:
            self._fail(f"unknown duration unit {unit!r} (use {UNIT_HINT})", unit_token)
        try:
            millis = to_millis(number, t.cast(int, unit_ms))
        except ValueError as exc:
            raise self._validation_error(f"invalid duration: {exc}", start) from None
        if negative:
            millis = -millis
        if millis <= 0:
            raise self._validation_error(
                f"a window duration must be positive, got {millis}ms", start
            )
        return millis

    @staticmethod
    def _split_compact(text: str) -> tuple[str, str] | None:
        index = len(text)
        while index > 0 and text[index - 1].isalpha():
            index -= 1
        number, unit = text[:index].strip(), text[index:]
        if not number or not unit:
            return None
        return number, unit

    # ----------------------------------------------------------------- WITH (...)

    def _parse_stream_properties(self) -> StreamProperties:
        if not self._match(TokenType.L_PAREN):
            self._fail("expected '(' after WITH")
        properties: list[StreamProperty] = []
        seen: set[str] = set()
        while not self._match(TokenType.R_PAREN):
            key_token = self._curr
            if not key_token or key_token.token_type != TokenType.STRING:
                self._fail("expected a quoted property key such as 'kafka.topic'")
            self._advance()
            if key_token.text in seen:
                raise self._validation_error(
                    f"property {key_token.text!r} is given twice in WITH", key_token
                )
            seen.add(key_token.text)
            if not self._match(TokenType.EQ):
                self._fail(f"expected '=' after the property key '{key_token.text}'")
            value = self._parse_property_value()
            prop = StreamProperty(this=exp.Literal.string(key_token.text), value=value)
            properties.append(self.expression(prop, token=key_token))
            if not self._match(TokenType.COMMA):
                if not self._match(TokenType.R_PAREN):
                    self._fail("expected ',' or ')' in the WITH properties")
                break
        return self.expression(StreamProperties(expressions=properties))

    def _parse_property_value(self) -> exp.Expr:
        token = self._curr
        if token and token.token_type == TokenType.STRING:
            self._advance()
            return exp.Literal.string(token.text)
        if token and token.token_type in (TokenType.TRUE, TokenType.FALSE):
            self._advance()
            return exp.Literal.string(token.text.lower())
        negative = self._match(TokenType.DASH)
        token = self._curr
        if token and token.token_type == TokenType.NUMBER:
            self._advance()
            return exp.Literal.string(("-" if negative else "") + token.text)
        self._fail("expected a property value: a quoted string, a number, TRUE or FALSE")

    # ----------------------------------------------------------------- SELECT parts

    def _parse_projections(self) -> tuple[list[exp.Expr], list[exp.Expr] | None]:
        # Strict list: `SELECT` with no field and `SELECT a, FROM t` are syntax errors.
        projections = [self._parse_projection()]
        while self._match(TokenType.COMMA):
            projections.append(self._parse_projection())
        return projections, None

    def _parse_projection(self) -> exp.Expr:
        field = self._parse_expression()
        if field is None:
            self._fail("expected a select field")
        if self._match(TokenType.PRIMARY_KEY):
            if isinstance(field, exp.Star):
                self._fail("PRIMARY KEY must follow a named field, not *", self._prev)
            return self.expression(PrimaryKeyField(this=field), token=self._prev)
        return field

    def _parse_group_by(self) -> exp.Group | None:
        group = self._parse_group()
        if group is not None and not group.expressions:
            self._fail("expected an expression after GROUP BY")
        return group

    def _parse_table_hints(self) -> list[exp.Expr] | None:
        # `FROM t WITH (...)` is the statement's properties, never a T-SQL table hint.
        return None

    def _parse_table_alias(
        self, alias_tokens: t.Collection[TokenType] | None = None
    ) -> exp.TableAlias | None:
        # `FROM t EMIT CHANGES`: EMIT starts a clause, it is not an alias of t.
        if self._curr and self._curr.token_type == TokenType.VAR:
            if self._curr.text.upper() == "EMIT":
                return None
        return super()._parse_table_alias(alias_tokens)

    def _relation_token(self, index: int) -> Token:
        if index < len(self._tokens):
            return self._tokens[index]
        return self._prev

    def _check_relation(self, relation: exp.Expr | None, token: Token) -> None:
        if isinstance(relation, exp.Table):
            for key, value in relation.args.items():
                if value and key not in ("this", "db", "catalog", "alias"):
                    name = _TABLE_CLAUSES.get(key, key.upper())
                    at = self._tokens.index(token) if token in self._tokens else self._index
                    keyword = next(
                        (
                            tok
                            for tok in self._tokens[at + 1 : self._index]
                            if tok.token_type in UNSUPPORTED_CLAUSES
                            or tok.text.upper() in name.upper().split()
                        ),
                        token,
                    )
                    self._fail(_unsupported_clause(name), keyword)
        if isinstance(relation, exp.Subquery):
            self._fail(
                "subqueries are not supported in FROM or JOIN: define the inner query as "
                "its own CREATE STREAM name AS SELECT ... and read that stream",
                token,
            )
        if not isinstance(relation, exp.Table) or not isinstance(relation.this, exp.Identifier):
            self._fail("FROM and JOIN take the name of a stream or table", token)

    def _parse_from(
        self,
        joins: bool = False,
        skip_from_token: bool = False,
        consume_pipe: bool = False,
    ) -> exp.From | None:
        index = self._index if skip_from_token else self._index + 1
        from_ = super()._parse_from(
            joins=joins, skip_from_token=skip_from_token, consume_pipe=consume_pipe
        )
        if from_ is not None:
            self._check_relation(from_.this, self._relation_token(index))
        return from_

    def _parse_join(
        self,
        skip_join_token: bool = False,
        parse_bracket: bool = False,
        alias_tokens: t.Collection[TokenType] | None = None,
    ) -> exp.Join | None:
        token = self._curr
        if token and token.token_type == TokenType.COMMA:
            # `FROM a, b` is not in the grammar; the comma may also end a projection list.
            return None
        join = super()._parse_join(
            skip_join_token=skip_join_token, parse_bracket=parse_bracket, alias_tokens=alias_tokens
        )
        if join is None:
            return None
        side = join.side
        kind = join.kind
        if join.method or side not in ("", "LEFT") or kind not in ("", "INNER", "OUTER"):
            self._fail("only JOIN and LEFT JOIN are supported", token)
        if kind == "INNER" and side:
            self._fail("only JOIN and LEFT JOIN are supported", token)
        if join.args.get("on") is None:
            self._fail("JOIN needs an ON condition (USING is not supported)", token)
        self._check_relation(join.this, token)
        return join.update_positions(token)

    def parse_set_operation(
        self, this: exp.Expr | None, consume_pipe: bool = False, intersect_only: bool = False
    ) -> exp.SetOperation | None:
        """Parse ``UNION ALL SELECT ...``; any other set operation is a syntax error.

        Args:
            this: the query on the left.
            consume_pipe: passed to sqlglot.
            intersect_only: passed to sqlglot.

        Returns:
            The union, or None when no set operation follows.

        """
        token = self._curr
        operation = super().parse_set_operation(
            this, consume_pipe=consume_pipe, intersect_only=intersect_only
        )
        if operation is None:
            return None
        if not isinstance(operation, exp.Union):
            what = "INTERSECT" if isinstance(operation, exp.Intersect) else "EXCEPT"
            self._fail(f"{what} is not supported (only UNION ALL is)", token)
        if operation.args.get("distinct"):
            self._fail(
                "UNION without ALL is not supported: removing duplicates needs the whole "
                "input (use UNION ALL)",
                token,
            )
        if (
            operation.args.get("by_name")
            or operation.args.get("side")
            or operation.args.get("kind")
        ):
            self._fail("only UNION ALL is supported", token)
        if not isinstance(operation.expression, exp.Select):
            self._fail("expected SELECT after UNION ALL", token)
        return operation.update_positions(token)


# The dialect's own clause nodes: not levels of an expression.
_CLAUSE_NODES: tuple[type[exp.Expr], ...] = (
    StreamStatement,
    StreamWindow,
    EmitMode,
    StreamProperties,
    StreamProperty,
    PrimaryKeyField,
    exp.Schema,
    exp.ColumnDef,
)


def _plain_name(name: str) -> bool:
    return name.isascii() and name.isidentifier()


def _balance_connectors(root: exp.Expr) -> None:
    """Rebuild every chain of three or more ``AND`` (or ``OR``) as a balanced tree.

    sqlglot builds ``a OR b OR c OR d`` as ``((a OR b) OR c) OR d``: a chain of n terms
    nests n levels, and a thousand-term filter would pass the engine's depth limit.
    ``AND`` and ``OR`` are associative under three-valued logic and the engine computes
    both sides of each, so ``(a OR b) OR (c OR d)`` is the same value at depth log2(n).
    The terms keep their order; parentheses written by the user are kept as written.
    """
    chains = [
        node
        for node in root.walk()
        if type(node) in (exp.And, exp.Or) and type(node.parent) is not type(node)
    ]
    for chain in chains:
        kind = type(chain)
        terms: list[exp.Expr] = []
        stack: list[exp.Expr] = [chain]
        while stack:
            node = stack.pop()
            if type(node) is kind:
                stack.append(node.expression)
                stack.append(node.this)
            else:
                terms.append(node)
        if len(terms) > 2:
            chain.replace(_balanced(kind, terms))


def _balanced(kind: type[exp.Expr], terms: list[exp.Expr]) -> exp.Expr:
    if len(terms) == 1:
        return terms[0]
    middle = (len(terms) + 1) // 2
    return kind(this=_balanced(kind, terms[:middle]), expression=_balanced(kind, terms[middle:]))


# --------------------------------------------------------------------------- generator


def _window_sql(gen: generator.Generator, node: StreamWindow) -> str:
    kind = node.args["kind"]
    if kind == "sliding":
        parts = [format_duration(node.args["size"]), format_duration(node.args["advance"])]
    elif kind == "session":
        parts = [format_duration(node.args["gap"])]
    else:
        parts = [format_duration(node.args["size"])]
    if node.args.get("time_column") is not None:
        parts.append(gen.sql(node.args["time_column"]))
    return f"WINDOW {kind.upper()}({', '.join(parts)})"


def _properties_sql(gen: generator.Generator, node: StreamProperties) -> str:
    return "WITH (" + ", ".join(gen.sql(prop) for prop in node.expressions) + ")"


def _statement_sql(gen: generator.Generator, node: StreamStatement) -> str:
    parts = []
    if isinstance(node.expression, exp.Schema):
        parts.append(f"CREATE STREAM {gen.sql(node.expression)}")
        if node.args.get("properties") is not None:
            parts.append(gen.sql(node.args["properties"]))
        return " ".join(parts)
    if node.args["kind"] != "select":
        parts.append(f"CREATE {node.args['kind'].upper()} {gen.sql(node.this)} AS")
    parts.append(gen.sql(node.expression))
    for key in ("window", "emit", "properties"):
        if node.args.get(key) is not None:
            parts.append(gen.sql(node.args[key]))
    return " ".join(parts)


class Velostream(Dialect):
    """The velostream dialect (``dialect="velostream"``)."""

    class Tokenizer(tokens.Tokenizer):
        """Default tokenizer; identifiers may also be quoted with backticks (ksqlDB)."""

        IDENTIFIERS: t.ClassVar = ['"', "`"]

    Parser = VelostreamParser

    class Generator(generator.Generator):
        """Default generator that can also print the streaming clauses."""

        TRANSFORMS: t.ClassVar = {
            **generator.Generator.TRANSFORMS,
            StreamStatement: _statement_sql,
            StreamWindow: _window_sql,
            EmitMode: lambda _gen, node: f"EMIT {node.this.upper()}",
            StreamProperties: _properties_sql,
            StreamProperty: lambda gen, node: (
                f"{gen.sql(node.this)} = {gen.sql(node.args['value'])}"
            ),
            PrimaryKeyField: lambda gen, node: f"{gen.sql(node.this)} PRIMARY KEY",
            # Name it as users write it (sqlglot's default prints VARIANCE_POP).
            exp.VariancePop: lambda gen, node: gen.func("VAR_POP", node.this),
        }


DIALECT = Velostream()
"""The one dialect instance used to tokenize, parse and print."""
