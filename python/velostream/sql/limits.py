"""How deeply an expression may nest, and the guards that keep every depth an error.

sqlglot parses recursively (about 20 Python frames per parenthesis), the planner and the
SQL printer recurse over the tree, and the Rust core reads the plan with ``serde_json``,
whose recursion limit is 128 nested arrays/objects, then binds it recursively. So one
rule caps every expression: :data:`MAX_EXPRESSION_DEPTH` levels, where each parenthesis,
operator, function call, ``CASE`` and operand counts one level. A function call takes
two JSON levels in the plan (the call and its argument list), a select field sits
three levels down and every node carries a ``pos`` list, so a depth of ``d`` needs at most
``2 * d + 3`` JSON levels: 60 gives 123, under serde's 127 with room to spare, and is far
beyond any query written by hand.

Three guards apply the rule:

- :func:`check_token_nesting` runs on the tokens before sqlglot parses them: brackets,
  ``CASE`` and runs of prefix operators (``NOT``, unary ``-``) cannot nest past the cap,
  so the parser's own recursion stays bounded (it needs :func:`recursion_headroom`).
- :func:`check_expression_depth` runs on each parsed statement: operator chains are
  built iteratively by sqlglot and can be as deep as they are long (``a + b + c ...``).
- :func:`json_depth` checks the finished plan against serde's limit.

``AND``/``OR`` chains do not count their length: the dialect balances them
(``a OR b OR c OR d`` becomes ``(a OR b) OR (c OR d)``, the same value under three-valued
logic), so a thousand ``OR`` terms nest ten levels.
"""

from __future__ import annotations

import sys
import threading
import typing as t
from collections.abc import Iterator
from contextlib import contextmanager

from sqlglot import exp
from sqlglot.tokens import Token, TokenType

MAX_EXPRESSION_DEPTH = 60
"""The deepest an expression may nest (see the module docstring for why 60)."""

SERDE_MAX_DEPTH = 127
"""The deepest JSON nesting the Rust core's ``serde_json`` reader accepts."""

_FRAMES_PER_LEVEL = 48
"""Python frames one nesting level may take while parsing (measured: about 24)."""

_HEADROOM = MAX_EXPRESSION_DEPTH * _FRAMES_PER_LEVEL + 1500


def too_deep_message() -> str:
    """Return the message of every "nested too deeply" error."""
    return (
        f"expression nested too deeply: more than {MAX_EXPRESSION_DEPTH} levels "
        "(each parenthesis, operator, function call and CASE is a level; "
        "split the expression or use simpler conditions)"
    )


# --------------------------------------------------------------------------- tokens

_OPENING = {TokenType.L_PAREN, TokenType.L_BRACKET, TokenType.L_BRACE}
_CLOSING = {TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.R_BRACE}
# Tokens that start an operand inside an operand: each one in a row nests the parser once.
_PREFIX = {
    TokenType.NOT,
    TokenType.DASH,
    TokenType.PLUS,
    TokenType.TILDE,
    TokenType.INTERVAL,
    TokenType.ANY,
    TokenType.ARRAY,
    TokenType.PARAMETER,
}


def check_token_nesting(tokens: list[Token]) -> Token | None:
    """Return the first token nested deeper than :data:`MAX_EXPRESSION_DEPTH`, if any.

    The level of a token is the number of brackets and ``CASE``s open around it, plus
    the prefix operators written right before each of them and right before the token.
    Each of those is at least one node of the parsed tree on the token's path, so a
    token over the cap means an expression over the cap.

    Args:
        tokens: the script's tokens.

    Returns:
        The offending token, or None.

    """
    # each open bracket/CASE: (its kind, the levels it adds: itself and its prefix run)
    stack: list[tuple[str, int]] = []
    level = 0
    run = 0
    for token in tokens:
        kind = token.token_type
        if kind in _PREFIX:
            run += 1
            if level + run > MAX_EXPRESSION_DEPTH:
                return token
            continue
        if kind in _OPENING or kind == TokenType.CASE:
            added = 1 + run
            stack.append(("case" if kind == TokenType.CASE else "bracket", added))
            level += added
            run = 0
            if level > MAX_EXPRESSION_DEPTH:
                return token
            continue
        if kind in _CLOSING:
            if stack and stack[-1][0] == "bracket":
                level -= stack.pop()[1]
        elif kind == TokenType.END:
            if stack and stack[-1][0] == "case":
                level -= stack.pop()[1]
        elif kind == TokenType.SEMICOLON:
            stack.clear()
            level = 0
        elif level + run + 1 > MAX_EXPRESSION_DEPTH:
            # an operand is a level of its own, inside everything open before it
            return token
        run = 0
    return None


# --------------------------------------------------------------------------- trees

# Nodes that are clauses or names, not levels of an expression.
_NOT_LEVELS: tuple[type[exp.Expr], ...] = (
    exp.Identifier,
    exp.Alias,
    exp.Select,
    exp.Union,
    exp.From,
    exp.Where,
    exp.Having,
    exp.Group,
    exp.Join,
    exp.Table,
    exp.TableAlias,
)


def too_deep_node(root: exp.Expr, not_levels: tuple[type[exp.Expr], ...] = ()) -> exp.Expr | None:
    """Return the first node (in source order) nested deeper than the cap, if any.

    Every node is a level but clauses, names and aliases (and `not_levels`); type names
    (``exp.DataType``) are not walked.

    Args:
        root: a statement or expression tree.
        not_levels: further node classes that are not levels (a dialect's clauses).

    Returns:
        The outermost, leftmost node at level ``MAX_EXPRESSION_DEPTH + 1``, or None.

    """
    skipped = _NOT_LEVELS + not_levels
    stack: list[tuple[exp.Expr, int]] = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, skipped):
            depth += 1
            if depth > MAX_EXPRESSION_DEPTH:
                return node
        children = [
            child
            for value in node.args.values()
            for child in (value if isinstance(value, list) else [value])
            if isinstance(child, exp.Expr) and not isinstance(child, exp.DataType)
        ]
        stack.extend((child, depth) for child in reversed(children))
    return None


def json_depth(value: t.Any) -> int:
    """Return how deeply JSON arrays and objects nest in `value` (a scalar is 0).

    Args:
        value: JSON-serialisable data (dicts, lists, scalars).

    Returns:
        The nesting depth as ``serde_json`` counts it.

    """
    deepest = 0
    stack: list[tuple[t.Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            depth += 1
            stack.extend((child, depth) for child in item.values())
        elif isinstance(item, list):
            depth += 1
            stack.extend((child, depth) for child in item)
        deepest = max(deepest, depth)
    return deepest


# --------------------------------------------------------------------------- recursion

_lock = threading.Lock()
_holders = 0
_saved_limit = 0


def _stack_depth() -> int:
    frame = sys._getframe()
    depth = 0
    while frame is not None:
        depth += 1
        frame = frame.f_back  # type: ignore[assignment]
    return depth


@contextmanager
def recursion_headroom() -> Iterator[None]:
    """Make sure the interpreter allows the recursion a capped expression needs.

    Parsing an expression at the cap takes more Python frames than the default limit of
    1000 allows. The limit is raised (never lowered) for the time of the block and put
    back when the last thread inside such a block leaves it.

    Yields:
        Nothing.

    """
    global _holders, _saved_limit
    needed = _stack_depth() + _HEADROOM
    with _lock:
        if _holders == 0:
            _saved_limit = sys.getrecursionlimit()
        _holders += 1
        if sys.getrecursionlimit() < needed:
            sys.setrecursionlimit(needed)
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0:
                sys.setrecursionlimit(_saved_limit)
