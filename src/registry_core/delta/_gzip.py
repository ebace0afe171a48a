"""Gzip (RFC 1952) scanner: finds the raw deflate body of every member.

Header fields (FEXTRA, FNAME, FCOMMENT, FHCRC, MTIME, XFL, OS) and the CRC32/ISIZE trailer stay
raw bytes in the layout; only the body becomes a Deflate node. Several members in a row are
followed; anything after the last well-formed member (padding, garbage) stays raw.
"""

from __future__ import annotations

from ._deflate import Budget, Buffer, Piece, inflate_raw

__all__ = ["GZIP_MAGIC", "parse_header", "scan_gzip"]

GZIP_MAGIC = b"\x1f\x8b\x08"
_FHCRC, _FEXTRA, _FNAME, _FCOMMENT = 0x02, 0x04, 0x08, 0x10


def parse_header(buf: memoryview, pos: int) -> int | None:
    """Offset just past the gzip member header at ``pos``, or ``None`` if it is not one."""
    n = len(buf)
    if pos + 10 > n or bytes(buf[pos : pos + 3]) != GZIP_MAGIC:
        return None
    flg = buf[pos + 3]
    if flg & 0xE0:  # reserved bits must be zero
        return None
    p = pos + 10
    if flg & _FEXTRA:
        if p + 2 > n:
            return None
        p += 2 + (buf[p] | buf[p + 1] << 8)
    for bit in (_FNAME, _FCOMMENT):
        if flg & bit:
            end = _find_zero(buf, p)
            if end < 0:
                return None
            p = end + 1
    if flg & _FHCRC:
        p += 2
    return p if p <= n else None


def _find_zero(buf: memoryview, start: int) -> int:
    # Scan in windows so a long name never copies the whole buffer.
    n = len(buf)
    step = 4096
    while start < n:
        window = bytes(buf[start : start + step])
        i = window.find(b"\0")
        if i >= 0:
            return start + i
        start += len(window)
    return -1


def scan_gzip(data: Buffer, budget: Budget) -> list[Piece] | None:
    """Deflate bodies of the gzip members at the start of ``data``; ``None`` if not gzip.

    Bodies are inflated here (the member end is only known that way); each piece carries its
    content, and ``budget`` is charged for it.
    """
    buf = memoryview(data)
    if bytes(buf[:3]) != GZIP_MAGIC:
        return None
    pieces: list[Piece] = []
    pos = 0
    n = len(buf)
    while pos < n:
        body = parse_header(buf, pos)
        if body is None:
            break
        key = ("gzip", buf[pos + 8], buf[pos + 9])  # XFL, OS
        res = inflate_raw(buf[body:], budget)
        if res is None:
            break
        content, clen = res
        pieces.append(Piece(body, clen, key=key, content=content))
        pos = body + clen + 8
    return pieces
