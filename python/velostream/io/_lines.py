r"""Line ends of JSON Lines and CSV files, as the codec splits them.

A line ends at ``\n``, ``\r\n`` or a lone ``\r`` (old Mac files), in both formats. The
codec (``rust/codec/src/lines.rs``) splits a chunk the same way, so the lines a reader
counts and the lines the codec numbers agree. A chunk is never cut between the ``\r`` and
the ``\n`` of one line end: that would make an extra, empty line.
"""

from __future__ import annotations

from typing import BinaryIO

_HEADER_BLOCK = 64 << 10


def count_line_ends(data: bytes | bytearray) -> int:
    r"""Return the number of line ends in ``data`` (``\n``, ``\r\n``, a lone ``\r``).

    Args:
        data: bytes of a file; a ``\r`` at its very end counts as a line end.

    Returns:
        The number of line ends.

    """
    ends = data.count(b"\n")
    # `in` finds a byte several times faster than `count` counts one: most files have no
    # `\r` at all, and then one fast look says so.
    carriage_returns = data.count(b"\r") if b"\r" in data else 0
    if carriage_returns:
        ends += carriage_returns - data.count(b"\r\n")
    return ends


def last_line_end(data: bytes, *, final: bool) -> int:
    r"""Return the index of the last byte of the last complete line of ``data``, or -1.

    Args:
        data: bytes read from a file, from the start of a line.
        final: no byte follows ``data`` (the end of the file). Otherwise a ``\r`` at the
            very end is not taken as a line end: a ``\n`` may follow it.

    Returns:
        The index of the ``\n`` or lone ``\r`` ending the last complete line; -1 when
        ``data`` holds no complete line.

    """
    newline = data.rfind(b"\n")
    end = len(data) if final else len(data) - 1
    # Every `\r` after the last `\n` is lone (but the very last byte when more may follow).
    return max(newline, data.rfind(b"\r", newline + 1, end))


def read_line(handle: BinaryIO, limit: int | None = None) -> bytes:
    r"""Read one line from ``handle``, with its line end (``\n``, ``\r\n`` or a lone ``\r``).

    Like ``readline`` with the line ends of :func:`count_line_ends`. ``handle`` must be
    seekable: the bytes read past the line are given back.

    Args:
        handle: a binary file, seekable.
        limit: read at most this many bytes (None: no limit).

    Returns:
        The line; shorter than ``limit`` without a line end only at the end of the file,
        empty at the end of the file.

    """
    start = handle.tell()
    data = bytearray()
    searched = 0
    while limit is None or len(data) < limit:
        want = _HEADER_BLOCK if limit is None else min(_HEADER_BLOCK, limit - len(data))
        piece = handle.read(want)
        data += piece
        at_end = not piece or (limit is not None and len(data) >= limit)
        newline = data.find(b"\n", searched)
        carriage_return = data.find(b"\r", searched, newline if newline >= 0 else len(data))
        if carriage_return >= 0:
            if carriage_return + 1 < len(data):
                crlf = data[carriage_return + 1] == 0x0A
                return _give_back(handle, start, data, carriage_return + 1 + crlf)
            if at_end:
                return _give_back(handle, start, data, carriage_return + 1)
            searched = carriage_return  # a `\n` may follow: read on
        elif newline >= 0:
            return _give_back(handle, start, data, newline + 1)
        else:
            searched = len(data)
        if not piece:
            break
    return _give_back(handle, start, data, len(data))


def _give_back(handle: BinaryIO, start: int, data: bytearray, size: int) -> bytes:
    handle.seek(start + size)
    return bytes(data[:size])
