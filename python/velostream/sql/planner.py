"""Validation of a parsed statement and its translation into the physical plan.

The plan is plain JSON-serialisable data, the contract with the Rust core described in
``docs/plan-format.md``. Everything the core cannot run yet (windows, joins, UNION ALL,
window functions) is rejected here with a :class:`~velostream.errors.SqlValidationError`
naming the construct and its position, as is every query that is not valid SQL for the
engine (aggregate misuse, unknown functions, bad qualifiers, ...).
"""

from __future__ import annotations

import json
import math
import typing as t
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from sqlglot import exp

from velostream.errors import SqlValidationError
from velostream.sql import limits
from velostream.sql.dialect import DIALECT, VelostreamParser, node_position
from velostream.sql.functions import (
    SUPPORTED_FUNCTIONS,
    WINDOW_BOUND_FUNCTIONS,
    unsupported_message,
)
from velostream.sql.statements import (
    Statement,
    WindowSpec,
    output_name,
    query_selects,
    relation_name,
)

PLAN_VERSION = 1

Plan = dict[str, t.Any]
PlanExpr = dict[str, t.Any]

_INT64_MAX = 2**63 - 1
_MAX_DECIMAL_DIGITS = 38

_BINARY_OPS: dict[type[exp.Expr], str] = {
    exp.Add: "add",
    exp.Sub: "sub",
    exp.Mul: "mul",
    exp.Div: "div",
    exp.Mod: "mod",
    exp.EQ: "eq",
    exp.NEQ: "neq",
    exp.LT: "lt",
    exp.LTE: "lte",
    exp.GT: "gt",
    exp.GTE: "gte",
    exp.And: "and",
    exp.Or: "or",
    exp.DPipe: "concat",
}

_AGGREGATES: dict[type[exp.Expr], str] = {
    exp.Sum: "sum",
    exp.Avg: "avg",
    exp.Min: "min",
    exp.Max: "max",
    exp.FirstValue: "first_value",
    exp.LastValue: "last_value",
    exp.Stddev: "stddev",
    exp.StddevSamp: "stddev",
    exp.StddevPop: "stddev_pop",
    exp.Variance: "variance",
    exp.VariancePop: "var_pop",
}

# sqlglot function node -> (plan name, the argument keys in order, how many are required)
_SCALARS: dict[type[exp.Expr], tuple[str, tuple[str, ...], int]] = {
    exp.Upper: ("upper", ("this",), 1),
    exp.Lower: ("lower", ("this",), 1),
    exp.Length: ("length", ("this",), 1),
    exp.Abs: ("abs", ("this",), 1),
    exp.Round: ("round", ("this", "decimals"), 1),
    exp.Floor: ("floor", ("this",), 1),
    exp.Ceil: ("ceil", ("this",), 1),
    exp.Substring: ("substring", ("this", "start", "length"), 2),
}

# Functions sqlglot does not know: name -> (plan name, min args, max args)
_ANONYMOUS: dict[str, tuple[str, int, int]] = {
    "NOW": ("now", 0, 0),
    "FROM_UNIXTIME": ("from_unixtime", 1, 1),
}


_AGGREGATE_CLASSES: frozenset[type[exp.Expr]] = frozenset({exp.Count, *_AGGREGATES})

# Function nodes the planner computes (see _function).
_FUNCTION_NODES: frozenset[type[exp.Expr]] = frozenset(
    {exp.Anonymous, exp.CurrentTimestamp, exp.Concat, exp.Coalesce, exp.Trim, *_SCALARS}
)

# Every name sqlglot parses as a function of some dialect (the rest are unknown names).
_KNOWN_FUNCTIONS = frozenset(VelostreamParser.FUNCTIONS) | frozenset(
    VelostreamParser.FUNCTION_PARSERS
)

# How the unsupported constructs sqlglot parses are named in messages.
_CONSTRUCTS: dict[type[exp.Expr], str] = {
    exp.Filter: "FILTER (WHERE ...) on an aggregate",
    exp.WithinGroup: "WITHIN GROUP",
    exp.IgnoreNulls: "IGNORE NULLS",
    exp.RespectNulls: "RESPECT NULLS",
    exp.HavingMax: "HAVING MAX/MIN inside an aggregate",
    exp.Escape: "LIKE ... ESCAPE",
    exp.Collate: "COLLATE",
    exp.NullSafeEQ: "IS NOT DISTINCT FROM",
    exp.NullSafeNEQ: "IS DISTINCT FROM",
    exp.Interval: "an INTERVAL value (durations go in WINDOW)",
    exp.Placeholder: "a parameter placeholder",
    exp.Parameter: "a parameter",
    exp.Struct: "a struct value {...}",
    exp.Array: "an ARRAY value",
    exp.Bracket: "a subscript [...]",
    exp.Dot: "field access a.b on a value",
    exp.Tuple: "a row value (a, b, ...)",
    exp.JSONExtract: "JSON access ->",
    exp.JSONExtractScalar: "JSON access ->>",
    exp.IntDiv: "integer division DIV",
    exp.BitwiseAnd: "the bitwise operator &",
    exp.BitwiseOr: "the bitwise operator |",
    exp.BitwiseXor: "the bitwise operator ^",
    exp.BitwiseNot: "the bitwise operator ~",
    exp.BitwiseLeftShift: "the bitwise operator <<",
    exp.BitwiseRightShift: "the bitwise operator >>",
    exp.SimilarTo: "SIMILAR TO",
    exp.Glob: "GLOB",
    exp.RegexpLike: "regular expression matching",
    exp.Xor: "XOR",
    exp.Lambda: "a lambda (x -> ...)",
    exp.PropertyEQ: "a named argument :=",
    exp.Kwarg: "a named argument =>",
    exp.TryCast: "TRY_CAST (use CAST)",
    exp.JSONCast: "a JSON cast",
    exp.HexString: "a hexadecimal literal",
    exp.BitString: "a bit-string literal",
    exp.ByteString: "a byte-string literal",
    exp.RawString: "a raw string literal",
    exp.National: "a national string literal N'...'",
    exp.UnicodeString: "a unicode string literal U&'...'",
    exp.Var: "a bare word",
}

# SELECT arguments sqlglot fills for clauses the planner cannot run, as they are named.
_CLAUSE_NAMES: dict[str, str] = {
    "with_": "WITH ... AS (a common table expression)",
    "kind": "SELECT AS STRUCT/VALUE",
    "hint": "a query hint",
    "into": "SELECT INTO",
    "operation_modifiers": "a SELECT modifier",
    "exclude": "EXCLUDE",
    "match": "MATCH_RECOGNIZE",
    "laterals": "LATERAL",
    "connect": "CONNECT BY",
    "pivots": "PIVOT",
    "prewhere": "PREWHERE",
    "qualify": "QUALIFY",
    "windows": "a named WINDOW",
    "distribute": "DISTRIBUTE BY",
    "sort": "SORT BY",
    "cluster": "CLUSTER BY",
    "order": "ORDER BY",
    "limit": "LIMIT/TOP",
    "offset": "OFFSET",
    "locks": "FOR UPDATE/SHARE",
    "sample": "TABLESAMPLE",
    "settings": "SETTINGS",
    "format": "FORMAT",
    "options": "OPTION (...)",
    "for_": "FOR",
}

_WINDOW_COLUMNS = {"_window_start", "_window_end"}

_SIMPLE_TYPES: dict[exp.DType, str] = {
    exp.DType.BOOLEAN: "bool",
    exp.DType.TINYINT: "int8",
    exp.DType.SMALLINT: "int16",
    exp.DType.INT: "int32",
    exp.DType.BIGINT: "int64",
    exp.DType.UTINYINT: "uint8",
    exp.DType.USMALLINT: "uint16",
    exp.DType.UINT: "uint32",
    exp.DType.UBIGINT: "uint64",
    exp.DType.FLOAT: "float32",
    exp.DType.DOUBLE: "float64",
    exp.DType.VARCHAR: "utf8",
    exp.DType.NVARCHAR: "utf8",
    exp.DType.CHAR: "utf8",
    exp.DType.NCHAR: "utf8",
    exp.DType.TEXT: "utf8",
    exp.DType.DATE: "date32",
    exp.DType.TIMESTAMP: "timestamp_ms",
}

_DEFAULT_DECIMAL = (18, 3)

# Select arguments the planner understands; any other one set is an unsupported clause.
_SELECT_ARGS = {"expressions", "from_", "where", "group", "having", "distinct", "joins"}


def plan(statement: Statement) -> Plan:
    """Validate a statement and build its physical plan (``docs/plan-format.md``).

    ``CREATE STREAM x AS SELECT ...`` plans as its SELECT; ``CREATE TABLE`` also needs a
    key (``PRIMARY KEY`` fields or ``GROUP BY`` keys).

    Args:
        statement: a statement from :func:`~velostream.sql.parse_statement` or
            :func:`~velostream.sql.parse_script`.

    Returns:
        The plan: a dict of JSON-serialisable values.

    Raises:
        SqlValidationError: the statement cannot run (with line and column where known),
            including constructs a later release adds (WINDOW, JOIN, UNION ALL), a
            declaration (``CREATE STREAM name (col TYPE, ...)``, which has no query),
            duplicate output names and literals out of range.

    """
    if statement.is_declaration:
        raise SqlValidationError(
            f"CREATE STREAM {statement.name} (...) declares a source; it has no query to run",
            line=statement.line,
            column=statement.column,
        )
    with limits.recursion_headroom():
        try:
            result = _plan(statement)
        except RecursionError:
            # The depth rule of the parser makes this unreachable; never let it escape.
            raise SqlValidationError(
                limits.too_deep_message(), line=statement.line, column=statement.column
            ) from None
    if limits.json_depth(result) > limits.SERDE_MAX_DEPTH:
        raise SqlValidationError(
            limits.too_deep_message(), line=statement.line, column=statement.column
        )
    return result


def _plan(statement: Statement) -> Plan:
    _reject_not_yet_supported(statement)
    selects = query_selects(statement.query)
    if len(selects) != 1 or not isinstance(statement.query, exp.Select):
        raise _error("only a single SELECT can be planned", statement.query, statement)
    select = selects[0]
    _check_select_shape(select, statement)

    if statement.kind == "table" and not statement.primary_key:
        group = select.args.get("group")
        if group is None or not group.expressions:
            raise SqlValidationError(
                f"CREATE TABLE {statement.name} needs a key: mark a select field "
                "PRIMARY KEY or use GROUP BY",
                line=statement.line,
                column=statement.column,
            )

    if statement.emit == "final" and statement.window is None:
        line, column = statement.emit_position or (statement.line, statement.column)
        raise SqlValidationError(
            "EMIT FINAL needs a WINDOW (without a window every change is emitted: "
            "use EMIT CHANGES)",
            line=line,
            column=column,
        )

    table = select.args["from_"].this
    source = relation_name(table)
    stream = table.alias or source
    qualifiers = {source.lower(): stream, table.name.lower(): stream, stream.lower(): stream}
    joins: list[tuple[exp.Join, str, str]] = []
    for join in select.args.get("joins") or ():
        name = relation_name(join.this)
        relation = join.this.alias or name
        names = {name.lower(), join.this.name.lower(), relation.lower()}
        if join.this.alias:
            # An aliased relation is known by its alias only, as in SQL.
            names = {relation.lower()}
        for qualifier in names:
            if qualifier in qualifiers:
                raise _error(
                    f"two relations of the query are named {qualifier!r}: give the JOINed "
                    "one an alias (JOIN t AS x)",
                    join.this,
                    statement,
                )
            qualifiers[qualifier] = relation
        joins.append((join, name, relation))
    planner = _SelectPlanner(select, qualifiers, source, statement.window, joined=bool(joins))
    planned = planner.build(source, statement)
    if joins:
        planned["input_relation"] = stream
        planned["joins"] = [planner.join(join, name, relation) for join, name, relation in joins]
    return planned


# --------------------------------------------------------------------------- checks


def _error(
    message: str, node: exp.Expr | None, statement: Statement | None = None
) -> SqlValidationError:
    position = node_position(node)
    if position is None and statement is not None:
        position = (statement.line, statement.column)
    if position is None:
        return SqlValidationError(message)
    return SqlValidationError(message, line=position[0], column=position[1])


def _reject_not_yet_supported(statement: Statement) -> None:
    for union in statement.query.find_all(exp.Union):
        # A UNION ALL is planned one SELECT at a time (velostream.query.UnionQuery).
        raise _error(
            "a UNION ALL is planned one SELECT at a time (velostream.compile makes a "
            "UnionQuery of them)",
            union,
            statement,
        )


def _check_select_shape(select: exp.Select, statement: Statement) -> None:
    for key, value in select.args.items():
        if value and key not in _SELECT_ARGS:
            name = _CLAUSE_NAMES.get(key, key.upper())
            where = value[0] if isinstance(value, list) and value else value
            node = where if isinstance(where, exp.Expr) else select
            raise _error(f"{name} is not supported in a continuous query", node, statement)
    if select.args.get("from_") is None:
        raise _error("SELECT needs a FROM clause naming the input stream", select, statement)
    distinct = select.args.get("distinct")
    if distinct is not None and distinct.args.get("on") is not None:
        raise _error("DISTINCT ON is not supported", distinct.args["on"], statement)
    group = select.args.get("group")
    if group is not None:
        for key in ("grouping_sets", "cube", "rollup", "totals", "all"):
            if group.args.get(key) is not None:
                raise _error(
                    f"GROUP BY {key.upper().replace('_', ' ')} is not supported", group, statement
                )
    for sub in select.find_all(exp.Subquery, exp.Select):
        if sub is not select:
            raise _error("subqueries are not supported", sub, statement)
    for window in select.find_all(exp.Window):
        raise _error("window functions (OVER ...) are not supported", window, statement)


# --------------------------------------------------------------------------- planning


def _strip_positions(value: t.Any) -> t.Any:
    if isinstance(value, dict):
        return {k: _strip_positions(v) for k, v in value.items() if k != "pos"}
    if isinstance(value, list):
        return [_strip_positions(v) for v in value]
    return value


def _shape(value: t.Any) -> str:
    """Return a key comparing plan expressions regardless of where they were written."""
    return json.dumps(_strip_positions(value), sort_keys=True)


def _function_name(node: exp.Expr) -> str:
    """The function's name as written (as sqlglot names it when it was not a call)."""
    if type(node) is exp.Anonymous:
        return str(node.name)
    written = node.meta.get("call") if node._meta else None
    if written:
        return str(written)
    if isinstance(node, exp.Func):
        return node.sql_name()
    return node.key.upper()


def _contains_column(node: exp.Expr) -> bool:
    return any(True for _ in node.find_all(exp.Column))


def _contains_window_bound(node: exp.Expr, windowed: bool) -> bool:
    """Whether `node` reads the window's bounds.

    That is ``_window_start``/``_window_end`` or TUMBLE_START(), ..., and in a windowed
    query also ksqlDB's bare WINDOWSTART / WINDOWEND.
    """
    for sub in node.walk():
        if isinstance(sub, exp.Column):
            if sub.name.lower() in _WINDOW_COLUMNS:
                return True
            if windowed and not sub.table and sub.name.upper() in ("WINDOWSTART", "WINDOWEND"):
                return True
        if isinstance(sub, exp.Anonymous) and str(sub.this).upper() in WINDOW_BOUND_FUNCTIONS:
            return True
    return False


def _is_aggregate(node: exp.Expr) -> bool:
    return type(node) in _AGGREGATE_CLASSES


def _contains_aggregate(node: exp.Expr) -> bool:
    return any(type(sub) in _AGGREGATE_CLASSES for sub in node.walk())


def _check_call(node: exp.Expr) -> None:
    # Reject a call whose written name velostream does not run, or whose node is not the
    # one that name stands for (sqlglot rewrites some calls into others).
    written = node.meta.get("call") if node._meta else None
    if not written or type(node) is exp.Anonymous:
        return
    allowed = SUPPORTED_FUNCTIONS.get(written)
    if allowed is None or type(node) not in allowed:
        raise _error(unsupported_message(written, known=True), node)


def _construct_name(node: exp.Expr) -> str:
    name = _CONSTRUCTS.get(type(node))
    if name is not None:
        return name
    if isinstance(node, exp.Func) and node.meta.get("call"):
        return f"function {_function_name(node).upper()}"
    try:
        text = node.sql(dialect=DIALECT, comments=False)
    except Exception:  # a node sqlglot cannot print: name it by its kind
        text = node.key.upper()
    return f"expression {text}"


@dataclass
class _Scope:
    """How expressions are planned at one place of the query.

    ``grouped`` is False for row context (WHERE, GROUP BY, aggregate arguments, SELECT of a
    query without aggregation) and True for SELECT/HAVING of an aggregated query, where
    column references must go through group keys and aggregates.
    """

    clause: str
    grouped: bool = False
    inside_aggregate: exp.Expr | None = None
    aliases: dict[str, exp.Expr] = field(default_factory=dict)


# Window functions by the window kind they belong to (WINDOWSTART/END: any kind).
_WINDOW_BOUNDS: dict[str, tuple[str | None, str]] = {
    "TUMBLE_START": ("tumbling", "window_start"),
    "TUMBLE_END": ("tumbling", "window_end"),
    "HOP_START": ("sliding", "window_start"),
    "HOP_END": ("sliding", "window_end"),
    "SESSION_START": ("session", "window_start"),
    "SESSION_END": ("session", "window_end"),
    "WINDOWSTART": (None, "window_start"),
    "WINDOWEND": (None, "window_end"),
}


#: The longest window duration (rust/engine/src/processor.rs MAX_DURATION_MS).
_MAX_DURATION_MS = 100_000_000_000_000


def _window_plan(window: WindowSpec) -> PlanExpr:
    for what, millis in (
        ("size", window.size_ms),
        ("advance", window.advance_ms),
        ("gap", window.gap_ms),
    ):
        if millis is not None and millis > _MAX_DURATION_MS:
            raise SqlValidationError(
                f"the {window.kind.upper()} window {what} ({millis}ms) is longer than the "
                f"longest duration velostream computes with ({_MAX_DURATION_MS}ms, about "
                "3 000 years)",
                line=window.line,
                column=window.column,
            )
    planned: PlanExpr = {"kind": window.kind, "pos": [window.line, window.column]}
    if window.kind == "tumbling":
        planned["size_ms"] = window.size_ms
    elif window.kind == "sliding":
        planned["size_ms"] = window.size_ms
        planned["advance_ms"] = window.advance_ms
    else:
        planned["gap_ms"] = window.gap_ms
    if window.time_column is not None:
        planned["time_column"] = window.time_column
    return planned


class _SelectPlanner:
    def __init__(
        self,
        select: exp.Select,
        qualifiers: dict[str, str],
        source: str = "",
        window: WindowSpec | None = None,
        *,
        joined: bool = False,
    ) -> None:
        self.select = select
        # Qualifier (lower case) -> the relation name plans use for it.
        self.qualifiers = qualifiers
        self.source = source
        self.joined = joined
        self.window = window
        self.group_keys: list[str] = []
        self.group_by: list[PlanExpr] = []
        self.aggregates: list[PlanExpr] = []
        self.aggregate_keys: list[str] = []

    # ----------------------------------------------------------------- statement

    def build(self, source: str, statement: Statement) -> Plan:
        select = self.select
        where = select.args.get("where")
        having = select.args.get("having")
        group = select.args.get("group")
        projections = list(select.expressions)

        filter_ = self.expr(where.this, _Scope("WHERE")) if where is not None else None

        aliases = {
            projection.alias.lower(): projection.this
            for projection in projections
            if isinstance(projection, exp.Alias)
        }
        if group is not None:
            for item in group.expressions:
                self._add_group_key(item, aliases)

        aggregated = bool(self.group_by) or any(
            _contains_aggregate(node)
            for node in [*projections, *([having.this] if having is not None else [])]
        )

        select_items: list[PlanExpr] = []
        scope = _Scope("SELECT", grouped=aggregated)
        first_with_name: dict[str, exp.Expr] = {}
        for projection in projections:
            item = self._select_item(projection, scope, aggregated)
            name = item.get("name")
            if name is not None and "\x00" in name:
                raise _error(
                    f"output column name {name!r} holds a NUL character, which Arrow cannot "
                    "carry in a column name: give it an alias with AS",
                    projection,
                )
            if name is not None:
                first = first_with_name.setdefault(name, projection)
                if first is not projection:
                    raise _duplicate_name(name, first, projection)
            select_items.append(item)

        having_expr = None
        if having is not None:
            if not aggregated:
                raise _error("HAVING needs GROUP BY or an aggregate", having.this)
            having_expr = self.expr(having.this, _Scope("HAVING", grouped=True, aliases=aliases))

        return {
            "version": PLAN_VERSION,
            "input": source,
            "filter": filter_,
            "select": select_items,
            "distinct": select.args.get("distinct") is not None,
            "group_by": self.group_by,
            "aggregates": self.aggregates,
            "having": having_expr,
            "emit": statement.emit or ("final" if self.window is not None else "changes"),
            "window": _window_plan(self.window) if self.window is not None else None,
        }

    def _add_group_key(self, item: exp.Expr, aliases: dict[str, exp.Expr]) -> None:
        if isinstance(item, exp.Literal) and not item.is_string:
            raise _error("GROUP BY by position is not supported: name the expression", item)
        if isinstance(item, exp.Column) and not item.table and item.name.lower() in aliases:
            aliased = aliases[item.name.lower()]
            # `SELECT UPPER(sym) AS s ... GROUP BY s` groups by the aliased expression.
            if not (isinstance(aliased, exp.Column) and aliased.name == item.name):
                item = aliased
        for column in item.find_all(exp.Column):
            if column.name.lower() in _WINDOW_COLUMNS:
                raise _error(
                    f"{column.name} cannot be a GROUP BY key: the WINDOW clause already groups "
                    "rows by window",
                    column,
                )
        for aggregate in item.walk():
            if not _is_aggregate(aggregate):
                continue
            raise _error(
                f"aggregate {aggregate.sql(dialect=DIALECT, comments=False)} is not allowed in "
                "GROUP BY",
                aggregate,
            )
        planned = self.expr(item, _Scope("GROUP BY"))
        self.group_by.append(planned)
        self.group_keys.append(_shape(planned))

    def _select_item(self, projection: exp.Expr, scope: _Scope, aggregated: bool) -> PlanExpr:
        star = projection
        relation = None
        if isinstance(star, exp.Column) and isinstance(star.this, exp.Star):
            relation = self._check_qualifier(star)
            star = star.this
        if isinstance(star, exp.Star):
            if aggregated:
                raise _error("SELECT * cannot be used with GROUP BY or aggregates", projection)
            if star.args.get("except_") or star.args.get("replace") or star.args.get("rename"):
                raise _error("SELECT * EXCEPT/REPLACE is not supported", projection)
            item: PlanExpr = {"star": True}
            if self.joined and relation is not None:
                item["relation"] = relation
            position = node_position(projection)
            if position is not None:
                item["pos"] = list(position)
            return item
        value = projection.this if isinstance(projection, exp.Alias) else projection
        return {"name": output_name(projection), "expr": self.expr(value, scope)}

    # ----------------------------------------------------------------- expressions

    def expr(self, node: exp.Expr, scope: _Scope) -> PlanExpr:
        """Plan one expression in `scope`."""
        if type(node) is exp.Paren:
            return self.expr(node.this, scope)
        _check_call(node)

        if type(node) is exp.Column and node.name.lower() in _WINDOW_COLUMNS:
            return self._window_bound(node, "window_" + node.name.lower()[len("_window_") :], scope)
        if (
            type(node) is exp.Column
            and self.window is not None
            and not node.table
            and node.name.upper() in ("WINDOWSTART", "WINDOWEND")
        ):
            # ksqlDB's pseudo columns, written without parentheses.
            op = "window_start" if node.name.upper() == "WINDOWSTART" else "window_end"
            return self._window_bound(node, op, scope)

        if scope.grouped:
            # An expression over the window's bounds is computed per window, from its
            # parts: it is never a GROUP BY key.
            if (
                _contains_column(node)
                and not _contains_aggregate(node)
                and not _contains_window_bound(node, self.window is not None)
            ):
                shape = _shape(self.expr(node, _Scope(scope.clause)))
                if shape in self.group_keys:
                    return self._with_pos(
                        {"op": "group_key", "index": self.group_keys.index(shape)}, node
                    )
            if _is_aggregate(node):
                return self._aggregate(node)
            if isinstance(node, exp.Column):
                alias = scope.aliases.get(node.name.lower()) if not node.table else None
                if alias is not None:
                    planned = self.expr(alias, _Scope(scope.clause, grouped=True))
                    position = node_position(node)
                    if position is not None:
                        planned["pos"] = list(position)
                    return planned
                raise _error(
                    f"column {node.name} must appear in GROUP BY or inside an aggregate", node
                )
        elif _is_aggregate(node):
            text = node.sql(dialect=DIALECT, comments=False)
            if scope.inside_aggregate is not None:
                outer = scope.inside_aggregate.sql(dialect=DIALECT, comments=False)
                raise _error(f"aggregate calls cannot be nested: {text} inside {outer}", node)
            hint = " (use HAVING)" if scope.clause == "WHERE" else ""
            raise _error(f"aggregate {text} is not allowed in {scope.clause}{hint}", node)

        return self._with_pos(self._plain(node, scope), node)

    def _window_bound(self, node: exp.Expr, op: str, scope: _Scope) -> PlanExpr:
        """``_window_start`` / ``_window_end`` (or TUMBLE_START, ...) of a windowed query."""
        name = node.sql(dialect=DIALECT, comments=False)
        if self.window is None:
            raise _error(f"{name} exists only in windowed queries (add a WINDOW)", node)
        if not scope.grouped or scope.inside_aggregate is not None:
            raise _error(
                f"{name} is known once rows are grouped into windows: use it in SELECT or "
                "HAVING, outside aggregates",
                node,
            )
        if isinstance(node, exp.Column):
            self._check_qualifier(node)
        return self._with_pos({"op": op}, node)

    def _with_pos(self, planned: PlanExpr, node: exp.Expr) -> PlanExpr:
        if "pos" not in planned:
            position = node_position(node)
            if position is not None:
                planned["pos"] = list(position)
        return planned

    def _aggregate(self, node: exp.Expr) -> PlanExpr:
        arity = node.meta.get("arity_error")
        name = _function_name(node)
        if arity:
            raise _error(f"wrong number of arguments for {name}: {arity}", node)
        inner = _Scope("an aggregate", inside_aggregate=node)
        arg: PlanExpr | None
        if type(node) is exp.Count:
            this = node.this
            if node.expressions:
                raise _error("COUNT takes one argument", node)
            if type(this) is exp.Star:
                fn, arg = "count_star", None
            elif type(this) is exp.Distinct:
                if len(this.expressions) != 1:
                    raise _error("COUNT(DISTINCT ...) takes one argument", node)
                fn, arg = "count_distinct", self.expr(this.expressions[0], inner)
            elif this is None:
                raise _error("COUNT needs an argument: COUNT(*) or COUNT(x)", node)
            else:
                fn, arg = "count", self.expr(this, inner)
        elif type(node) in _AGGREGATES:
            if type(node.this) is exp.Distinct:
                raise _error(f"{name}(DISTINCT ...) is not supported", node)
            extra = [k for k, v in node.args.items() if k != "this" and v]
            if extra:
                raise _error(f"wrong number of arguments for {name}", node)
            fn, arg = _AGGREGATES[type(node)], self.expr(node.this, inner)
        else:
            raise _error(f"unknown function {name}", node)

        aggregate: PlanExpr = {"fn": fn, "arg": arg}
        position = node_position(node)
        if position is not None:
            aggregate["pos"] = list(position)
        key = _shape(aggregate)
        if key not in self.aggregate_keys:
            self.aggregate_keys.append(key)
            self.aggregates.append(aggregate)
        return self._with_pos({"op": "agg", "index": self.aggregate_keys.index(key)}, node)

    def _check_qualifier(self, column: exp.Column) -> str | None:
        """The relation a column's qualifier names (None when unqualified)."""
        if column.args.get("db") is not None or column.args.get("catalog") is not None:
            raise _error(
                f"column reference {column.sql(dialect=DIALECT)} has too many parts", column
            )
        qualifier = column.table
        if not qualifier:
            return None
        if qualifier.lower() not in self.qualifiers:
            known = ", ".join(sorted(self.qualifiers))
            raise _error(
                f"unknown qualifier {qualifier!r} in {column.sql(dialect=DIALECT, comments=False)}"
                f" (the query reads {known})",
                column,
            )
        return self.qualifiers[qualifier.lower()]

    # ----------------------------------------------------------------- joins

    def join(self, join: exp.Join, table: str, relation: str) -> PlanExpr:
        """Plan one ``[LEFT] JOIN table ON stream_expr = table.col [AND ...]``."""
        conditions: list[exp.Expr] = []
        pending = [join.args["on"]]
        while pending:
            node = pending.pop()
            while type(node) is exp.Paren:
                node = node.this
            if type(node) is exp.And:
                pending.extend([node.expression, node.this])
            else:
                conditions.append(node)
        keys = [self._join_key(condition, table, relation) for condition in conditions]
        planned: PlanExpr = {
            "table": table,
            "relation": relation,
            "kind": "left" if join.side == "LEFT" else "inner",
            "on": keys,
        }
        position = node_position(join)
        if position is not None:
            planned["pos"] = list(position)
        return planned

    def _reads(self, node: exp.Expr, relation: str) -> bool:
        """Whether ``node`` names a column qualified with ``relation``."""
        return any(
            column.table and self.qualifiers.get(column.table.lower()) == relation
            for column in node.find_all(exp.Column)
        )

    def _join_key(self, condition: exp.Expr, table: str, relation: str) -> PlanExpr:
        shown = condition.sql(dialect=DIALECT, comments=False)
        if type(condition) is not exp.EQ:
            raise _error(
                f"JOIN {table} ON: {shown} is not an equality; a stream-table join's ON "
                f"equates stream expressions with the table's key columns ({relation}.col), "
                "joined by AND (other conditions go in WHERE)",
                condition,
            )
        sides = [condition.this, condition.expression]

        def is_table_column(node: exp.Expr) -> bool:
            return (
                type(node) is exp.Column
                and bool(node.table)
                and self.qualifiers.get(node.table.lower()) == relation
            )

        marked = [side for side in sides if is_table_column(side)]
        if len(marked) == 1:
            key = marked[0]
        elif not marked:
            # `ON s.k = id`: the unqualified bare column is the table's when the other
            # side names its relations.
            bare = [side for side in sides if type(side) is exp.Column and not side.table]
            other = [side for side in sides if side not in bare]
            if len(bare) != 1 or not all(
                column.table for side in other for column in side.find_all(exp.Column)
            ):
                raise _error(
                    f"JOIN {table} ON: qualify the table's key column in {shown} "
                    f"({relation}.col) so it is clear which side is the table's",
                    condition,
                )
            key = bare[0]
        else:
            raise _error(
                f"JOIN {table} ON: {shown} compares two columns of the table; ON equates "
                "stream expressions with the table's key columns",
                condition,
            )
        stream = sides[1] if key is sides[0] else sides[0]
        if self._reads(stream, relation):
            raise _error(f"JOIN {table} ON: {shown} reads the table on both sides", condition)
        if _contains_aggregate(stream):
            raise _error(f"JOIN {table} ON: aggregates are not allowed in ON", stream)
        planned: PlanExpr = {
            "stream": self.expr(stream, _Scope("ON")),
            "table": t.cast(exp.Column, key).name,
        }
        position = node_position(condition)
        if position is not None:
            planned["pos"] = list(position)
        return planned

    def _plain(self, node: exp.Expr, scope: _Scope) -> PlanExpr:
        # Dispatch on exact classes: a subclass (ConcatWs of Concat, TryCast of Cast,
        # ...) is another construct and must not run as its parent.
        def sub(child: exp.Expr) -> PlanExpr:
            return self.expr(child, scope)

        kind = type(node)
        if kind is exp.Column:
            column = t.cast(exp.Column, node)
            if isinstance(column.this, exp.Star):
                raise _error("* is only allowed as a select field", node)
            relation = self._check_qualifier(column)
            if not self.joined:
                relation = self.source
            return {"op": "column", "name": column.name, "relation": relation}

        if kind is exp.Literal:
            return _literal(t.cast(exp.Literal, node))
        if kind is exp.Boolean:
            return {"op": "literal", "type": "bool", "value": bool(node.this)}
        if kind is exp.Null:
            return {"op": "literal", "type": "null", "value": None}

        op = _BINARY_OPS.get(kind)
        if op is not None:
            return {"op": "binary", "fn": op, "left": sub(node.this), "right": sub(node.expression)}

        if kind is exp.Neg:
            folded = _negative_literal(node)
            if folded is not None:
                return folded
            return {"op": "neg", "arg": sub(node.this)}
        if kind is exp.Not:
            return self._negated(t.cast(exp.Not, node), scope)
        if kind is exp.Is:
            return self._is_null(t.cast(exp.Is, node), scope, negated=False)
        if kind is exp.In:
            return self._in_list(t.cast(exp.In, node), scope, negated=False)
        if kind is exp.Between:
            return self._between(t.cast(exp.Between, node), scope, negated=False)
        if kind is exp.Like or kind is exp.ILike:
            return self._like(t.cast(exp.Like, node), scope, negated=False)
        if kind is exp.Case:
            whens = node.args["ifs"]
            for when in whens:
                if type(when) is not exp.If:
                    raise _error(f"{_construct_name(when)} is not supported", when)
            return {
                "op": "case",
                "operand": sub(node.this) if node.this is not None else None,
                "whens": [[sub(when.this), sub(when.args["true"])] for when in whens],
                "else": sub(node.args["default"]) if node.args.get("default") is not None else None,
            }
        if kind is exp.Cast:
            cast = t.cast(exp.Cast, node)
            if cast.args.get("safe"):
                raise _error("TRY_CAST is not supported: use CAST", node)
            if cast.args.get("format") is not None:
                raise _error("CAST ... FORMAT is not supported", node)
            return {"op": "cast", "arg": sub(cast.this), "to": _type_name(cast.to, node)}
        if kind in (exp.Subquery, exp.Select, exp.Exists, exp.Union):
            raise _error("subqueries are not supported", node)
        if kind is exp.Window:
            raise _error("window functions (OVER ...) are not supported", node)
        if kind in _FUNCTION_NODES or (isinstance(node, exp.Func) and node.meta.get("call")):
            return self._function(t.cast(exp.Func, node), scope)
        raise _error(f"{_construct_name(node)} is not supported", node)

    def _negated(self, node: exp.Not, scope: _Scope) -> PlanExpr:
        inner = node.this
        negatable = (exp.Is, exp.In, exp.Between, exp.Like, exp.ILike)
        while type(inner) is exp.Paren and type(inner.this) in negatable:
            inner = inner.this
        kind = type(inner)
        if kind is exp.Is:
            return self._is_null(t.cast(exp.Is, inner), scope, negated=True)
        if kind is exp.In:
            return self._in_list(t.cast(exp.In, inner), scope, negated=True)
        if kind is exp.Between:
            return self._between(t.cast(exp.Between, inner), scope, negated=True)
        if kind is exp.Like or kind is exp.ILike:
            return self._like(t.cast(exp.Like, inner), scope, negated=True)
        return {"op": "not", "arg": self.expr(node.this, scope)}

    def _is_null(self, node: exp.Is, scope: _Scope, negated: bool) -> PlanExpr:
        if type(node.expression) is not exp.Null:
            raise _error(
                f"IS {node.expression.sql(dialect=DIALECT)} is not supported (only IS [NOT] NULL)",
                node,
            )
        negated = negated != bool(node.args.get("negate"))
        return self._with_pos(
            {"op": "is_null", "arg": self.expr(node.this, scope), "negated": negated}, node
        )

    def _in_list(self, node: exp.In, scope: _Scope, negated: bool) -> PlanExpr:
        if node.args.get("query") is not None or node.args.get("unnest") is not None:
            raise _error("IN with a subquery is not supported", node)
        if node.args.get("field") is not None or not node.expressions:
            raise _error("IN needs a list of values: x IN (a, b, ...)", node)
        return self._with_pos(
            {
                "op": "in_list",
                "arg": self.expr(node.this, scope),
                "list": [self.expr(item, scope) for item in node.expressions],
                "negated": negated,
            },
            node,
        )

    def _between(self, node: exp.Between, scope: _Scope, negated: bool) -> PlanExpr:
        if node.args.get("symmetric"):
            raise _error("BETWEEN SYMMETRIC is not supported", node)
        return self._with_pos(
            {
                "op": "between",
                "arg": self.expr(node.this, scope),
                "low": self.expr(node.args["low"], scope),
                "high": self.expr(node.args["high"], scope),
                "negated": negated,
            },
            node,
        )

    def _like(self, node: exp.Like | exp.ILike, scope: _Scope, negated: bool) -> PlanExpr:
        negated = negated != bool(node.args.get("negate"))
        return self._with_pos(
            {
                "op": "like",
                "arg": self.expr(node.this, scope),
                "pattern": self.expr(node.expression, scope),
                "negated": negated,
                "case_insensitive": type(node) is exp.ILike,
            },
            node,
        )

    def _function(self, node: exp.Func, scope: _Scope) -> PlanExpr:
        name = _function_name(node)
        arity = node.meta.get("arity_error")
        kind = type(node)
        if kind is exp.Anonymous:
            upper = name.upper()
            if upper in WINDOW_BOUND_FUNCTIONS:
                window_kind, op = _WINDOW_BOUNDS[upper]
                if node.expressions:
                    raise _error(
                        f"{upper} takes no arguments: it is the bound of the statement's WINDOW",
                        node,
                    )
                if (
                    self.window is not None
                    and window_kind is not None
                    and window_kind != self.window.kind
                ):
                    raise _error(
                        f"{upper} belongs to a {window_kind.upper()} window, and this statement's "
                        f"WINDOW is {self.window.kind.upper()}",
                        node,
                    )
                return self._window_bound(node, op, scope)
            known = _ANONYMOUS.get(upper)
            if known is None:
                raise _error(unsupported_message(name, known=upper in _KNOWN_FUNCTIONS), node)
            plan_name, least, most = known
            args = node.expressions
            if not least <= len(args) <= most:
                expected = str(least) if least == most else f"{least} to {most}"
                raise _error(
                    f"wrong number of arguments for {upper}: expected {expected}, got {len(args)}",
                    node,
                )
            return self._call(plan_name, args, scope)
        if arity:
            raise _error(f"wrong number of arguments for {name}: {arity}", node)

        if kind is exp.CurrentTimestamp:
            if node.this is not None:
                raise _error("CURRENT_TIMESTAMP takes no argument", node)
            return self._call("now", [], scope)
        if kind is exp.Concat:
            return self._call("concat", node.expressions, scope)
        if kind is exp.Coalesce:
            return self._call("coalesce", [node.this, *node.expressions], scope)
        if kind is exp.Trim:
            if node.args.get("expression") is not None or node.args.get("collation") is not None:
                raise _error("TRIM of specific characters is not supported", node)
            position = str(node.args.get("position") or "BOTH").upper()
            plan_name = {"LEADING": "ltrim", "TRAILING": "rtrim"}.get(position, "trim")
            return self._call(plan_name, [node.this], scope)

        scalar = _SCALARS.get(kind)
        if scalar is None:
            raise _error(unsupported_message(name, known=True), node)
        plan_name, keys, required = scalar
        for key, value in node.args.items():
            if key not in keys and isinstance(value, exp.Expr):
                raise _error(f"wrong number of arguments for {name}", node)
        args = [node.args.get(key) for key in keys]
        while args and args[-1] is None:
            args.pop()
        if len(args) < required or any(arg is None for arg in args):
            raise _error(f"wrong number of arguments for {name}", node)
        return self._call(plan_name, t.cast(list[exp.Expr], args), scope)

    def _call(self, name: str, args: list[exp.Expr], scope: _Scope) -> PlanExpr:
        return {"op": "func", "name": name, "args": [self.expr(arg, scope) for arg in args]}


def _literal(node: exp.Literal) -> PlanExpr:
    """Plan a literal exactly: an integer as int64 or, beyond it, as an exact decimal."""
    text = str(node.this)
    if node.is_string:
        return {"op": "literal", "type": "utf8", "value": text}
    if text.isascii() and text.isdigit():
        value = int(text)
        if value <= _INT64_MAX:
            return {"op": "literal", "type": "int64", "value": value}
        if len(text.lstrip("0")) > _MAX_DECIMAL_DIGITS:
            raise _error(
                f"integer literal {_shown(text)} is out of the range of DECIMAL(38, 0): "
                f"it has more than {_MAX_DECIMAL_DIGITS} digits",
                node,
            )
        return {"op": "literal", "type": "decimal", "value": text}
    if "e" in text.lower():
        try:
            number = float(text)
        except ValueError:
            raise _error(f"invalid numeric literal {_shown(text)}", node) from None
        if math.isinf(number):
            raise _error(f"{_shown(text)} is out of the range of DOUBLE", node)
        if number == 0.0 and _nonzero(text):
            raise _error(
                f"{_shown(text)} is out of the range of DOUBLE (too close to zero: it would "
                "be read as 0)",
                node,
            )
        return {"op": "literal", "type": "float64", "value": number}
    integer, _, fraction = text.partition(".")
    if not (integer + fraction).isdigit() or not (integer + fraction).isascii():
        raise _error(f"invalid numeric literal {_shown(text)}", node)
    precision = max(len((integer + fraction).lstrip("0")), len(fraction), 1)
    if precision > _MAX_DECIMAL_DIGITS:
        raise _error(
            f"decimal literal {_shown(text)} is out of the range of DECIMAL: it has more "
            f"than {_MAX_DECIMAL_DIGITS} digits",
            node,
        )
    return {"op": "literal", "type": "decimal", "value": text}


def _negative_literal(node: exp.Expr) -> PlanExpr | None:
    """``-9223372036854775808`` is the smallest BIGINT, not the negation of a decimal."""
    operand = node.this
    if type(operand) is exp.Literal and not operand.is_string:
        text = str(operand.this)
        if text.isascii() and text.isdigit() and int(text) == _INT64_MAX + 1:
            return {"op": "literal", "type": "int64", "value": -(_INT64_MAX + 1)}
    return None


def _nonzero(text: str) -> bool:
    try:
        return Decimal(text) != 0
    except InvalidOperation:
        return False


def _shown(text: str) -> str:
    return text if len(text) <= 60 else f"{text[:28]}...{text[-28:]} ({len(text)} characters)"


def _duplicate_name(name: str, first: exp.Expr, second: exp.Expr) -> SqlValidationError:
    where = node_position(first)
    at = f" (first at line {where[0]}, column {where[1]})" if where else ""
    return _error(
        f"duplicate output column name {name!r}{at}: give one of them another alias with AS",
        second,
    )


def _type_name(data_type: exp.DataType, node: exp.Expr) -> str:
    kind = data_type.this
    if kind in (exp.DType.DECIMAL, exp.DType.BIGDECIMAL):
        params = [param.this for param in data_type.expressions]
        if not params:
            precision, scale = _DEFAULT_DECIMAL
        else:
            try:
                numbers = [int(param.name) for param in params]
            except ValueError:
                raise _error(f"invalid DECIMAL parameters in {data_type.sql()}", node) from None
            precision = numbers[0]
            scale = numbers[1] if len(numbers) > 1 else 0
            if len(numbers) > 2 or not 0 < precision <= 38 or not 0 <= scale <= precision:
                raise _error(f"invalid DECIMAL parameters in {data_type.sql()}", node)
        return f"decimal({precision},{scale})"
    name = _SIMPLE_TYPES.get(kind)
    if name is None:
        raise _error(f"unsupported type {data_type.sql(dialect=DIALECT)} in CAST", node)
    return name
