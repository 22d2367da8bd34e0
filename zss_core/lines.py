"""Reading a byte stream line by line without ever holding more than a bounded line in memory.

A request line longer than the limit is a broken or hostile client: what was read of it is dropped once
it passes the limit, the rest is read and discarded in small pieces up to its newline, and the reader
hands out `LineTooLong` instead, so one 200 MB line costs at most the limit (16 MB), not the whole line
several times over (bytes, text, and the text encoded again to measure it).
Standard library only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import BinaryIO

DISCARD_CHUNK = 1 << 20  # bytes read at a time while skipping the rest of an oversize line


@dataclasses.dataclass(frozen=True)
class LineTooLong:
    """Stands for a line over the limit: its length in bytes (up to and including its newline)."""

    size: int
    limit: int


def bounded_lines(stream: BinaryIO, limit: int) -> Iterator[bytes | LineTooLong]:
    """Each line of `stream` (bytes, newline included) up to end of input; a line over `limit` bytes
    (newline not counted) comes as LineTooLong after its rest has been read and dropped.

    Read in pieces of DISCARD_CHUNK and dropped as soon as they pass the limit: an oversize line never
    holds more than the limit (`readline(limit)` would hold twice that while it joins its pieces)."""
    while True:
        pieces: list[bytes] = []
        size = 0
        while True:
            piece = stream.readline(DISCARD_CHUNK)
            size += len(piece)
            ended = not piece or piece.endswith(b"\n")
            ending = len(piece) - len(piece.rstrip(b"\r\n")) if ended else 0  # "\n" or "\r\n": not counted
            if size - ending > limit:
                pieces.clear()  # over the limit: keep nothing, count the rest
                if not ended:
                    size = _skip_line(stream, size)
                yield LineTooLong(size, limit)
                break
            pieces.append(piece)
            if ended:
                if size == 0:
                    return
                yield pieces[0] if len(pieces) == 1 else b"".join(pieces)
                break


def _skip_line(stream: BinaryIO, size: int) -> int:
    """Read and drop the rest of the current line; returns the line's whole size."""
    while True:
        piece = stream.readline(DISCARD_CHUNK)
        size += len(piece)
        if not piece or piece.endswith(b"\n"):
            return size
