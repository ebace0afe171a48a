"""Tar (POSIX ustar / GNU / pax) scanner: finds members that are themselves archives.

A tar stays as it is in the expanded form (it is not compressed); only regular members whose
data starts like a gzip or zip archive (``.json.gz`` data files, vendored wheels) are offered
for nested expansion. Headers are checked by their checksum; the walk stops at the end marker
or at the first header that does not verify, and everything else stays raw.
"""

from __future__ import annotations

from ._deflate import Buffer, Piece

__all__ = ["scan_tar"]

_BLOCK = 512
_REGULAR = (b"0", b"\0", b"7")
_GZIP_MAGIC = b"\x1f\x8b\x08"
_ZIP_MAGIC = b"PK\x03\x04"


def _checksum_ok(hdr: bytes) -> bool:
    field = hdr[148:156]
    try:
        stored = int(field.replace(b"\0", b" ").strip() or b"-1", 8)
    except ValueError:
        return False
    unsigned = sum(hdr[:148]) + 8 * 32 + sum(hdr[156:])
    signed = unsigned - sum(b for b in hdr[:148] + hdr[156:] if b >= 128) * 2
    return stored in (unsigned, signed)


def _size(field: bytes) -> int:
    if field[0] & 0x80:  # GNU base-256
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.replace(b"\0", b" ").strip()
    return int(text, 8) if text else 0


def scan_tar(data: Buffer) -> list[Piece] | None:
    """Members of the tar in ``data`` that may hold archives; ``None`` if ``data`` is no tar."""
    buf = memoryview(data)
    n = len(buf)
    if n < 2 * _BLOCK or not _checksum_ok(bytes(buf[:_BLOCK])):
        return None
    pieces: list[Piece] = []
    pos = 0
    while pos + _BLOCK <= n:
        hdr = bytes(buf[pos : pos + _BLOCK])
        if not _checksum_ok(hdr):
            break
        try:
            size = _size(hdr[124:136])
        except ValueError:
            break
        start = pos + _BLOCK
        if start + size > n:
            break
        head = bytes(buf[start : start + 4])
        if (
            hdr[156:157] in _REGULAR
            and size >= 18
            and (head[:3] == _GZIP_MAGIC or head == _ZIP_MAGIC)
        ):
            pieces.append(Piece(start, size, nested=True))
        pos = start + (size + _BLOCK - 1) // _BLOCK * _BLOCK
    return pieces
