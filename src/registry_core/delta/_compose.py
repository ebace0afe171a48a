"""Composing delta bodies: a->b and b->c into a->c, without b.

A three-stream body is read as a list of output segments, each either COPY (source bytes plus
difference bytes) or LIT (extra bytes). Composing maps every COPY of the second patch through
the segments of the first: a source byte that the first patch copied becomes a copy from a
with the two differences added; one the first patch wrote literally becomes a literal.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from ..errors import CorruptPatchError
from ._binary import Streams, add_bytes
from ._format import get_uvarint, put_uvarint


@dataclass
class Segment:
    start: int  # offset in the output
    length: int
    src: int  # COPY: offset in the source; LIT: -1
    data: bytes  # COPY: difference bytes; LIT: the literal bytes


def segments(streams: Streams) -> list[Segment]:
    """Decode a body into output segments (validated: every range inside its stream)."""
    out: list[Segment] = []
    cp = dp = ep = np = op = 0
    ctrl = streams.ctrl
    while cp < len(ctrl):
        lenf, cp = get_uvarint(ctrl, cp)
        lenx, cp = get_uvarint(ctrl, cp)
        zseek, cp = get_uvarint(ctrl, cp)
        if dp + lenf > len(streams.diff) or ep + lenx > len(streams.extra):
            raise CorruptPatchError("patch control stream points past its data streams")
        if lenf:
            if op < 0:
                raise CorruptPatchError("patch copies from before the start of its base")
            out.append(Segment(np, lenf, op, bytes(streams.diff[dp : dp + lenf])))
        np += lenf
        dp += lenf
        if lenx:
            out.append(Segment(np, lenx, -1, bytes(streams.extra[ep : ep + lenx])))
        np += lenx
        ep += lenx
        op += lenf + ((zseek >> 1) ^ -(zseek & 1))
    return out


def compose_streams(first: Streams, second: Streams) -> Streams:
    """The body of ``second`` after ``first``, reading the first patch's source directly."""
    segs1 = segments(first)
    starts = [s.start for s in segs1]
    result: list[Segment] = []

    def emit(start: int, length: int, src: int, data: bytes) -> None:
        if result:
            last = result[-1]
            if src < 0 and last.src < 0:
                last.data += data
                last.length += length
                return
            if src >= 0 and last.src >= 0 and last.src + last.length == src:
                last.data += data
                last.length += length
                return
        result.append(Segment(start, length, src, data))

    for seg in segments(second):
        if seg.src < 0:
            emit(seg.start, seg.length, -1, seg.data)
            continue
        pos, done = seg.src, 0
        while done < seg.length:
            i = bisect.bisect_right(starts, pos) - 1
            if i < 0 or pos >= segs1[i].start + segs1[i].length:
                raise CorruptPatchError("second patch reads past the output of the first")
            s1 = segs1[i]
            off = pos - s1.start
            n = min(seg.length - done, s1.length - off)
            combined = add_bytes(s1.data[off : off + n], seg.data[done : done + n])
            emit(seg.start + done, n, s1.src + off if s1.src >= 0 else -1, combined)
            pos += n
            done += n
    return to_streams(result)


def to_streams(segs: list[Segment]) -> Streams:
    """Serialise output segments back into ctrl / diff / extra records."""
    # Group into records: an optional COPY followed by an optional LIT.
    records: list[tuple[int, int, int | None]] = []  # (lenf, lenx, copy source or None)
    diff: list[bytes] = []
    extra: list[bytes] = []
    i = 0
    while i < len(segs):
        lenf, src = 0, None
        if segs[i].src >= 0:
            lenf, src = segs[i].length, segs[i].src
            diff.append(segs[i].data)
            i += 1
        lenx = 0
        if i < len(segs) and segs[i].src < 0:
            lenx = segs[i].length
            extra.append(segs[i].data)
            i += 1
        records.append((lenf, lenx, src))
    if records and records[0][2]:
        records.insert(0, (0, 0, None))  # an empty record whose seek moves the cursor first
    ctrl = bytearray()
    cursor = 0
    for k, (lenf, lenx, src) in enumerate(records):
        if src is not None and src != cursor:
            raise AssertionError("internal: compose lost track of the source cursor")
        cursor += lenf
        nxt = records[k + 1][2] if k + 1 < len(records) else None
        seek = 0 if nxt is None else nxt - cursor
        cursor += seek
        put_uvarint(ctrl, lenf)
        put_uvarint(ctrl, lenx)
        put_uvarint(ctrl, (seek << 1) ^ (seek >> 63))
    return Streams(bytes(ctrl), b"".join(diff), b"".join(extra), records=len(records))
