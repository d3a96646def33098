"""The functions velostream runs, by the name they are written with.

sqlglot knows several hundred functions and builds a node for each (often shared by
aliases of other dialects, sometimes rewritten into other nodes, as ``CONCAT_WS`` into a
subclass of ``CONCAT``). velostream runs only the calls listed in
:data:`SUPPORTED_FUNCTIONS`, each matched by the name as written *and* the exact node
class sqlglot built for it; every other call the dialect parses is rejected by name
(:func:`unsupported_message`), never run as a look-alike.
"""

from __future__ import annotations

import difflib

from sqlglot import exp

# written name -> the exact sqlglot classes the parser builds for it
SUPPORTED_FUNCTIONS: dict[str, tuple[type[exp.Expr], ...]] = {
    # strings
    "UPPER": (exp.Upper,),
    "LOWER": (exp.Lower,),
    "CONCAT": (exp.Concat,),
    "SUBSTRING": (exp.Substring,),
    "SUBSTR": (exp.Substring,),
    "LENGTH": (exp.Length,),
    "CHAR_LENGTH": (exp.Length,),
    "CHARACTER_LENGTH": (exp.Length,),
    "TRIM": (exp.Trim,),
    "LTRIM": (exp.Trim,),
    "RTRIM": (exp.Trim,),
    # math
    "ABS": (exp.Abs,),
    "ROUND": (exp.Round,),
    "FLOOR": (exp.Floor,),
    "CEIL": (exp.Ceil,),
    "CEILING": (exp.Ceil,),
    # conditional and conversion
    "COALESCE": (exp.Coalesce,),
    "CAST": (exp.Cast,),
    # time
    "NOW": (exp.Anonymous,),
    "CURRENT_TIMESTAMP": (exp.CurrentTimestamp,),
    "FROM_UNIXTIME": (exp.Anonymous,),
    # aggregates
    "COUNT": (exp.Count,),
    "SUM": (exp.Sum,),
    "AVG": (exp.Avg,),
    "MIN": (exp.Min,),
    "MAX": (exp.Max,),
    "FIRST_VALUE": (exp.FirstValue,),
    "LAST_VALUE": (exp.LastValue,),
    "STDDEV": (exp.Stddev,),
    "STDDEV_SAMP": (exp.StddevSamp,),
    "STDDEV_POP": (exp.StddevPop,),
    "VARIANCE": (exp.Variance,),
    "VAR_SAMP": (exp.Variance,),
    "VAR_POP": (exp.VariancePop,),
}
"""Every function call velostream runs: written name -> node classes sqlglot builds."""

WINDOW_BOUND_FUNCTIONS = frozenset(
    {
        "TUMBLE_START",
        "TUMBLE_END",
        "HOP_START",
        "HOP_END",
        "SESSION_START",
        "SESSION_END",
        "WINDOWSTART",
        "WINDOWEND",
    }
)
"""The bounds of the statement's window (``_window_start`` / ``_window_end``), as
Flink's group-window functions and ksqlDB's WINDOWSTART/WINDOWEND name them."""

# What to write instead of a function velostream does not run (when it is not a typo).
_INSTEAD: dict[str, str] = {
    "CONCAT_WS": "CONCAT(a, sep, b, ...) or a || sep || b",
    "IFNULL": "COALESCE",
    "NVL": "COALESCE",
    "ISNULL": "COALESCE or IS NULL",
    "IF": "CASE WHEN ... THEN ... ELSE ... END",
    "IIF": "CASE WHEN ... THEN ... ELSE ... END",
    "LEN": "LENGTH",
    "LCASE": "LOWER",
    "UCASE": "UPPER",
    "MOD": "the % operator",
    "STDEV": "STDDEV",
    "VARIANCE_SAMP": "VAR_SAMP",
    "VARIANCE_POP": "VAR_POP",
    "TRY_CAST": "CAST",
    "SAFE_CAST": "CAST",
    "CONVERT": "CAST",
    "TRY_CONVERT": "CAST",
    "CURRENT_DATE": "CAST(NOW() AS DATE)",
    "LOCALTIMESTAMP": "NOW()",
}


def suggestion(
    word: str, candidates: list[str] | tuple[str, ...], cutoff: float = 0.75
) -> str | None:
    """Return the candidate closest to `word` (compared in upper case), if one is close.

    Args:
        word: what was written.
        candidates: the names it may have meant.
        cutoff: the least similarity (0..1) of a suggestion.

    Returns:
        The closest candidate, or None.

    """
    matches = difflib.get_close_matches(word.upper(), list(candidates), n=1, cutoff=cutoff)
    return matches[0] if matches else None


def unsupported_message(written: str, *, known: bool) -> str:
    """Return the message rejecting a call of `written`.

    Args:
        written: the function name as written.
        known: whether sqlglot knows the function (a function of some SQL dialect that
            velostream does not run) rather than a name nobody defines.

    Returns:
        ``function X is not supported`` or ``unknown function x``, with what to write
        instead or the nearest supported name.

    """
    upper = written.upper()
    message = f"function {upper} is not supported" if known else f"unknown function {written}"
    instead = _INSTEAD.get(upper)
    if instead is not None:
        return f"{message} (use {instead})"
    close = suggestion(upper, sorted(SUPPORTED_FUNCTIONS))
    if close is not None:
        return f"{message} (did you mean {close}?)"
    return message
