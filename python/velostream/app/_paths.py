"""What an application writes, against what it reads: no input is ever opened for writing.

A file sink opens its file for writing (truncating it) at its first write, so a sink whose
file is also read by the application (a source's file or glob, the SQL file, a config
file) would destroy its input. :func:`overlap` says whether a written path and a read path
or glob name the same file, however they are spelled: relative to different directories,
``./x`` against ``x``, through symbolic links or hard links, or a written path that a
source's glob matches (now, or once the sink has created it).

The io layer is to get the same check as a public helper; this private one serves the
application until then.
"""

from __future__ import annotations

import fnmatch
import glob
import os

_GLOB_CHARACTERS = "*?["


def has_glob(pattern: str) -> bool:
    """Return True when ``pattern`` holds glob characters (as the file source sees it)."""
    return any(ch in pattern for ch in _GLOB_CHARACTERS)


def _real(path: str) -> str:
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):
        return os.path.normpath(path)


def _spellings(path: str) -> set[str]:
    """The path as written (normalised) and with every symbolic link resolved."""
    normal = os.path.normpath(path)
    return {normal, _real(normal)}


def _same_inode(a: str, b: str) -> bool:
    """True when both exist and are one file (a hard link, a case-insensitive name, ...)."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Say whether two absolute paths (no globs) name one file.

    Args:
        a: a path.
        b: another path.

    Returns:
        True when they are equal once normalised or once symbolic links are resolved, or
        are the same existing file (hard links).

    """
    a, b = os.fspath(a), os.fspath(b)
    return bool(_spellings(a) & _spellings(b)) or _same_inode(a, b)


def _pattern_spellings(pattern: str) -> set[str]:
    """The glob as written and with the links of its literal directories resolved."""
    normal = os.path.normpath(pattern)
    parts = normal.split(os.sep)
    first = next(i for i, part in enumerate(parts) if has_glob(part))
    literal = os.sep.join(parts[:first]) or os.sep
    return {normal, os.path.join(_real(literal), *parts[first:])}


def _glob_matches(path: str, pattern: str) -> bool:
    """Match like :func:`glob.glob` (component by component, hidden names need a dot)."""
    names = path.split(os.sep)
    patterns = pattern.split(os.sep)
    if len(names) != len(patterns):
        return False
    for name, part in zip(names, patterns, strict=True):
        if not has_glob(part):
            if name != part:
                return False
        elif (name.startswith(".") and not part.startswith(".")) or not fnmatch.fnmatchcase(
            name, part
        ):
            return False
    return True


def overlap(written: str | os.PathLike[str], read: str | os.PathLike[str]) -> bool:
    """Say whether writing ``written`` would write a file that ``read`` names.

    Args:
        written: the absolute path a sink writes.
        read: the absolute path or glob a source (or the application) reads.

    Returns:
        True when both name the same file: equal once normalised, equal once symbolic links
        are resolved, the same existing file (hard links), or ``written`` matched by the
        glob ``read`` (or the same file as one of its current matches).

    """
    written, read = os.fspath(written), os.fspath(read)
    if not has_glob(read):
        return same_file(written, read)
    writes = _spellings(written)
    for pattern in _pattern_spellings(read):
        if any(_glob_matches(write, pattern) for write in writes):
            return True
    # A file the glob matches now may be the written file under another name.
    try:
        matches = glob.glob(read)
    except (OSError, ValueError):
        matches = []
    return any(same_file(written, match) for match in matches)
