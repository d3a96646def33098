"""Reading a SQL file as text: UTF-8, byte-order marks honoured, bad bytes located.

A UTF-8 byte-order mark is skipped; UTF-16 and UTF-32 files with a byte-order mark are
decoded. Anything else must be UTF-8: the first byte that is not is reported with its
byte offset, line and column, and a NUL character (a UTF-16 file without a byte-order
mark, or a binary file) likewise.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from velostream.errors import ConfigError, SqlSyntaxError

# Longest first: the UTF-32 little-endian mark starts with the UTF-16 one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le", "UTF-32"),
    (codecs.BOM_UTF32_BE, "utf-32-be", "UTF-32"),
    (codecs.BOM_UTF8, "utf-8", "UTF-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "UTF-16"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "UTF-16"),
)

_SAVE_AS_UTF8 = "save the file as UTF-8"


def _position(text: str) -> tuple[int, int]:
    """The 1-based line and column just after ``text`` (the decoded text before a spot)."""
    line = text.count("\n") + 1
    return line, len(text) - (text.rfind("\n") + 1) + 1


def decode_sql(data: bytes, file: str) -> str:
    """Decode the bytes of a SQL file.

    Args:
        data: the file's bytes.
        file: the file's name, for messages.

    Returns:
        The text, without a byte-order mark.

    Raises:
        SqlSyntaxError: bytes that do not decode, or a NUL character, with the byte offset,
            line and column of the first one.

    """
    start, encoding, label = 0, "utf-8", "UTF-8"
    for bom, bom_encoding, bom_label in _BOMS:
        if data.startswith(bom):
            start, encoding, label = len(bom), bom_encoding, bom_label
            break
    body = data[start:]
    # In UTF-8, a NUL byte is a NUL character: found on the bytes, it is reported even
    # when an undecodable byte follows it (UTF-16 without a byte-order mark).
    nul_byte = body.find(b"\x00") if label == "UTF-8" else -1
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError as exc:
        if 0 <= nul_byte < exc.start:
            raise _nul_error(file, body, nul_byte, start, encoding, label) from None
        offset = start + exc.start
        line, column = _position(body[: exc.start].decode(encoding, errors="replace"))
        bad = body[exc.start : exc.end]
        raise SqlSyntaxError(
            f"{file} is not valid {label}: byte 0x{bad[0]:02x} at byte offset {offset} "
            f"(line {line}, column {column}) cannot be decoded ({exc.reason}); "
            + (_SAVE_AS_UTF8 if label == "UTF-8" else "the file is cut or corrupt"),
            line=line,
            column=column,
            token=bad.hex(),
        ) from None
    nul = text.find("\x00")
    if nul >= 0:
        raise _nul_error(file, body, len(text[:nul].encode(encoding)), start, encoding, label)
    return text


def _nul_error(
    file: str, body: bytes, at: int, start: int, encoding: str, label: str
) -> SqlSyntaxError:
    """The error for a NUL character at byte ``at`` of ``body`` (after a mark of ``start``)."""
    line, column = _position(body[:at].decode(encoding, errors="replace"))
    looks_utf16 = label == "UTF-8" and (
        body[1::2].count(0) > len(body) // 4 or body[0::2].count(0) > len(body) // 4
    )
    hint = (
        "the file looks like UTF-16 without a byte-order mark; " + _SAVE_AS_UTF8
        if looks_utf16
        else "a SQL file is text; " + _SAVE_AS_UTF8
    )
    return SqlSyntaxError(
        f"{file} holds a NUL character at byte offset {start + at} (line {line}, column "
        f"{column}): {hint}",
        line=line,
        column=column,
        token="\\x00",
    )


def read_sql_file(path: Path) -> str:
    """Read and decode a SQL file.

    Args:
        path: the file.

    Returns:
        Its text.

    Raises:
        ConfigError: the file cannot be read: missing, a directory, no permission (key
            ``file``).
        SqlSyntaxError: its bytes are not text (see :func:`decode_sql`).

    """
    try:
        if path.is_dir():
            raise IsADirectoryError(21, "Is a directory, not a SQL file")
        data = path.read_bytes()
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(
            f"cannot read {str(path)!r}: {reason}", key="file", value=str(path)
        ) from None
    return decode_sql(data, str(path))
