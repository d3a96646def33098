"""File paths of sources and sinks: resolution, globs, and whether a sink would write a source.

A file sink replaces its file when it first writes; if that file is one a source reads, the
input is gone. :func:`sink_overlaps_source` says whether a sink path designates a file a
source path or glob reads: paths are resolved (``~``, relative to the SQL file's directory,
``./x`` and ``x``, ``..``), symbolic links followed, hard links recognised, and a glob is
matched both against the files it matches now and, as a pattern, against the sink path (a
file the glob would match once written counts too).
"""

from __future__ import annotations

import fnmatch
import glob
import os
from pathlib import Path

__all__ = ["has_glob", "resolve_path", "sink_overlaps_source"]


def has_glob(pattern: str) -> bool:
    """Tell whether a path holds glob characters (``*``, ``?``, ``[``)."""
    return any(ch in pattern for ch in "*?[")


def resolve_path(value: str | os.PathLike[str], base_dir: str | os.PathLike[str] | None) -> Path:
    """Resolve a path property: ``~`` expanded, relative paths against ``base_dir``.

    Args:
        value: the path as written.
        base_dir: the SQL file's directory (default: the working directory).

    Returns:
        An absolute, normalised path (symbolic links are not followed).

    """
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = (Path(base_dir) if base_dir is not None else Path.cwd()) / path
    return Path(os.path.normpath(path))


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _real_pattern(pattern: Path) -> Path:
    """The pattern with its literal leading directories resolved (symbolic links followed)."""
    parts = pattern.parts
    literal = 0
    while literal < len(parts) and not has_glob(parts[literal]):
        literal += 1
    if literal == 0:
        return pattern
    return _real(Path(*parts[:literal])).joinpath(*parts[literal:])


def _matches(path: Path, pattern: Path) -> bool:
    """Whether ``glob.glob(pattern)`` would list ``path`` if it existed.

    One name per part; names starting with a dot only match parts that start with one.
    """
    names, parts = path.parts, pattern.parts
    if len(names) != len(parts):
        return False
    for name, part in zip(names, parts, strict=True):
        if not has_glob(part):
            if name != part:
                return False
            continue
        if name.startswith(".") and not part.startswith("."):
            return False
        if not fnmatch.fnmatchcase(name, part):
            return False
    return True


def sink_overlaps_source(
    sink_path: str | os.PathLike[str],
    source_pattern: str | os.PathLike[str],
    base_dir: str | os.PathLike[str] | None = None,
) -> bool:
    """Tell whether a file sink's path designates a file that a file source reads.

    Args:
        sink_path: the sink's ``path`` (as written, or already resolved).
        source_pattern: the source's ``path``: a file or a glob (as written, or resolved).
        base_dir: what relative paths resolve against (the SQL file's directory; default:
            the working directory).

    Returns:
        True when the sink would write a file the source reads now, or would read once it
        exists (a sink path the glob matches).

    """
    sink = resolve_path(sink_path, base_dir)
    pattern = resolve_path(source_pattern, base_dir)
    real_sink = _real(sink)
    if not has_glob(str(pattern)):
        return real_sink == _real(pattern) or _same_file(sink, pattern)
    for match in glob.glob(str(pattern)):
        candidate = Path(match)
        if _real(candidate) == real_sink or _same_file(sink, candidate):
            return True
    return _matches(sink, pattern) or _matches(real_sink, _real_pattern(pattern))
