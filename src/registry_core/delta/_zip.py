"""Zip (PKWARE APPNOTE) scanner: finds the data of every member.

The central directory is the authority (it survives data descriptors, zip64, comments and data
prepended to the archive); if it is missing or unreadable, local headers are walked from the
start instead. Only positions are taken from the archive: every header byte stays raw in the
layout, so a wrong guess costs compression ratio, never correctness. Deflated members (method 8)
become deflate pieces; stored members (method 0) become nested pieces that may hold another
archive. Overlapping members (a zip-bomb trick) are dropped.
"""

from __future__ import annotations

import struct

from ._deflate import Buffer, Piece

__all__ = ["LOCAL_SIG", "scan_zip"]

LOCAL_SIG = b"PK\x03\x04"
_CENTRAL_SIG = b"PK\x01\x02"
_EOCD_SIG = b"PK\x05\x06"
_EOCD64_SIG = b"PK\x06\x06"
_LOC64_SIG = b"PK\x06\x07"
_DESCRIPTOR_SIG = b"PK\x07\x08"
_STORED, _DEFLATED = 0, 8
_MAX_COMMENT = 65535


def scan_zip(data: Buffer, *, allow_prefix: bool = True) -> list[Piece] | None:
    """Member data of the zip archive in ``data`` (sorted, non-overlapping); ``None`` if none.

    ``allow_prefix`` also accepts an archive found only through its end record (data
    prepended, e.g. a self-extractor); nested archives must start with a local header.
    """
    buf = memoryview(data)
    starts_local = bytes(buf[:4]) == LOCAL_SIG
    if not starts_local and not allow_prefix and bytes(buf[:4]) != _EOCD_SIG:
        return None
    entries = _central_entries(buf)
    if entries is None:
        if not starts_local:
            return None
        entries = _local_entries(buf)
    if not entries and not starts_local and bytes(buf[:4]) != _EOCD_SIG:
        return None  # a stray end-record signature in other data
    pieces: list[Piece] = []
    end = 0
    for start, csize, method, key in sorted(entries):
        if start < end or csize <= 0:
            continue
        if method == _DEFLATED:
            pieces.append(Piece(start, csize, key=key))
        elif method == _STORED and csize >= 18:
            pieces.append(Piece(start, csize, nested=True))
        else:
            continue
        end = start + csize
    return pieces


def _u16(buf: memoryview, pos: int) -> int:
    return buf[pos] | buf[pos + 1] << 8


def _u32(buf: memoryview, pos: int) -> int:
    return int.from_bytes(buf[pos : pos + 4], "little")


def _u64(buf: memoryview, pos: int) -> int:
    return int.from_bytes(buf[pos : pos + 8], "little")


def _find_eocd(buf: memoryview) -> int:
    n = len(buf)
    lo = max(0, n - 22 - _MAX_COMMENT)
    tail = bytes(buf[lo:])
    i = tail.rfind(_EOCD_SIG)
    fallback = -1
    while i >= 0:
        pos = lo + i
        if pos + 22 <= n:
            if pos + 22 + _u16(buf, pos + 20) == n:
                return pos
            if fallback < 0:
                fallback = pos
        i = tail.rfind(_EOCD_SIG, 0, i)
    return fallback


def _central_entries(buf: memoryview) -> list[tuple[int, int, int, tuple]] | None:
    n = len(buf)
    eocd = _find_eocd(buf)
    if eocd < 0:
        return None
    count = _u16(buf, eocd + 10)
    cd_size = _u32(buf, eocd + 12)
    cd_off = _u32(buf, eocd + 16)
    end_of_cd = eocd
    if 0xFFFF in (count,) or 0xFFFFFFFF in (cd_size, cd_off):
        loc = eocd - 20
        if loc >= 0 and bytes(buf[loc : loc + 4]) == _LOC64_SIG:
            rec = eocd - 20 - 56
            recorded = _u64(buf, loc + 8)
            if 0 <= recorded <= n - 56 and bytes(buf[recorded : recorded + 4]) == _EOCD64_SIG:
                rec = recorded
            if rec >= 0 and bytes(buf[rec : rec + 4]) == _EOCD64_SIG:
                count = _u64(buf, rec + 32)
                cd_size = _u64(buf, rec + 40)
                cd_off = _u64(buf, rec + 48)
                end_of_cd = rec
    cd_start = end_of_cd - cd_size
    if cd_start < 0:
        return None
    shift = cd_start - cd_off  # bytes prepended to the archive
    entries = []
    pos = cd_start
    for _ in range(min(count, cd_size // 46 + 1)):
        if pos + 46 > end_of_cd or bytes(buf[pos : pos + 4]) != _CENTRAL_SIG:
            break
        made_by = _u16(buf, pos + 4)
        flags = _u16(buf, pos + 8)
        method = _u16(buf, pos + 10)
        csize = _u32(buf, pos + 20)
        usize = _u32(buf, pos + 24)
        nlen, xlen, klen = _u16(buf, pos + 28), _u16(buf, pos + 30), _u16(buf, pos + 32)
        lho = _u32(buf, pos + 42)
        extra = buf[pos + 46 + nlen : min(pos + 46 + nlen + xlen, n)]
        if 0xFFFFFFFF in (csize, usize, lho):
            usize, csize, lho = _zip64_extra(extra, usize, csize, lho)
        pos += 46 + nlen + xlen + klen
        entry = _locate(buf, lho + shift, csize, method, ("zip", made_by, flags & 0x06))
        if entry is None and shift:
            entry = _locate(buf, lho, csize, method, ("zip", made_by, flags & 0x06))
        if entry is not None:
            entries.append(entry)
    return entries


def _zip64_extra(extra: memoryview, usize: int, csize: int, lho: int) -> tuple[int, int, int]:
    """Apply the zip64 extended-information extra field (id 1) to the 0xFFFFFFFF fields."""
    p = 0
    while p + 4 <= len(extra):
        hid, size = _u16(extra, p), _u16(extra, p + 2)
        body = extra[p + 4 : p + 4 + size]
        if hid == 1:
            q = 0
            vals = []
            while q + 8 <= len(body):
                vals.append(_u64(body, q))
                q += 8
            it = iter(vals)
            if usize == 0xFFFFFFFF:
                usize = next(it, usize)
            if csize == 0xFFFFFFFF:
                csize = next(it, csize)
            if lho == 0xFFFFFFFF:
                lho = next(it, lho)
            break
        p += 4 + size
    return usize, csize, lho


def _locate(buf: memoryview, lho: int, csize: int, method: int, key: tuple):
    n = len(buf)
    if lho < 0 or lho + 30 > n or bytes(buf[lho : lho + 4]) != LOCAL_SIG:
        return None
    start = lho + 30 + _u16(buf, lho + 26) + _u16(buf, lho + 28)
    if start + csize > n:
        return None
    return (start, csize, method, key)


def _local_entries(buf: memoryview) -> list[tuple[int, int, int, tuple]]:
    """Walk local headers from offset 0 (no usable central directory)."""
    n = len(buf)
    entries = []
    pos = 0
    while pos + 30 <= n and bytes(buf[pos : pos + 4]) == LOCAL_SIG:
        version, flags, method = struct.unpack_from("<HHH", buf, pos + 4)
        csize, usize = _u32(buf, pos + 18), _u32(buf, pos + 22)
        nlen, xlen = _u16(buf, pos + 26), _u16(buf, pos + 28)
        start = pos + 30 + nlen + xlen
        if start > n:
            break
        if 0xFFFFFFFF in (csize, usize):
            extra = buf[pos + 30 + nlen : start]
            usize, csize, _ = _zip64_extra(extra, usize, csize, 0)
        key = ("zip", version, flags & 0x06)
        if flags & 0x08 and csize == 0:
            # Size only in the data descriptor: a deflate stream finds its own end; stop after it.
            if method == _DEFLATED:
                entries.append((start, n - start, method, key))
            break
        if start + csize > n:
            break
        entries.append((start, csize, method, key))
        pos = start + csize
        if flags & 0x08:
            pos = _skip_descriptor(buf, pos)
    return entries


def _skip_descriptor(buf: memoryview, pos: int) -> int:
    """Offset of the next header after a data descriptor (signature optional, zip64 or not)."""
    for size in (16, 12, 24, 20):
        q = pos + size
        if bytes(buf[q : q + 4]) in (LOCAL_SIG, _CENTRAL_SIG):
            if size in (16, 24) and bytes(buf[pos : pos + 4]) != _DESCRIPTOR_SIG:
                continue
            return q
    return pos + (16 if bytes(buf[pos : pos + 4]) == _DESCRIPTOR_SIG else 12)
