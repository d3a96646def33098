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
from velostream.sql.durations import UNIT_HINT, format_duration, to_millis, unit_millis

WINDOW_KINDS: dict[str, str] = {
    "TUMBLING": "tumbling",
    "SLIDING": "sliding",
    "HOPPING": "sliding",
    "SESSION": "session",
}

EMIT_MODES = ("CHANGES", "FINAL")


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
        super().__init__(description)
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


def _friendly(message: str) -> str:
    if message.startswith("Invalid expression / Unexpected token"):
        return "unexpected token"
    if message.startswith("Required keyword: 'this' missing") or message.startswith(
        "Required keyword: 'expression' missing"
    ):
        return "expected an expression"
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
            shown = _describe(token)
            if at_end:
                description = f"{description}: the statement ends after {shown}"
            else:
                description = f"{description} at {shown}"
            line, column = source_position(self.sql, token.start)
            raise SyntaxFailure(description, line=line, column=column, token=token.text)
        raise SyntaxFailure(f"{description}: empty statement", line=1, column=1, token=None)

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
        node = super()._parse_unary()
        if node is not None and start:
            meta = node._meta
            if not meta or "start" not in meta:
                node.update_positions(start)
        return node

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
        self._record_positions(statement)
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
            # ksqlDB writes the properties before AS: accept them there too.
            if self._match(TokenType.WITH):
                properties = self._parse_stream_properties()
            if not self._match(TokenType.ALIAS):
                self._fail(f"expected AS after CREATE {kind.upper()} {name.name}")
            if not self._match(TokenType.SELECT, advance=False):
                self._fail("expected SELECT after AS")
        elif self._match(TokenType.SELECT, advance=False):
            kind = "select"
        else:
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
        if (
            not isinstance(operation, exp.Union)
            or operation.args.get("distinct")
            or operation.args.get("by_name")
            or operation.args.get("side")
            or operation.args.get("kind")
        ):
            self._fail("only UNION ALL is supported", token)
        if not isinstance(operation.expression, exp.Select):
            self._fail("expected SELECT after UNION ALL", token)
        return operation.update_positions(token)


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
