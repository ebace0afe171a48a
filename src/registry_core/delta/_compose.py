"""Composing delta bodies: a->b and b->c into a->c, without b.

A three-stream body is read as a list of output segments, each either COPY (source bytes plus
difference bytes) or LIT (extra bytes). Composing maps every COPY of the second patch through
the segments of the first: a source byte that the first patch copied becomes a copy from a
with the two differences added; one the first patch wrote literally becomes a literal.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .._util import decode_uvarint, encode_uvarint
from ..errors import CorruptPatchError, OutputTooLargeError
from ._binary import Streams, add_bytes
from ._format import (
    FLAG_RAW_BASE,
    Method,
    Patch,
    Section,
    chain_members,
    chain_section,
    layouts_section,
    parse,
    read_layouts,
    read_streams,
    serialize,
    stream_sections,
)
from ._layout import Deflate, Layout, Node

if TYPE_CHECKING:  # pragma: no cover
    from ._aggregator import DeltaAggregator


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
        lenf, cp = decode_uvarint(ctrl, cp)
        lenx, cp = decode_uvarint(ctrl, cp)
        zseek, cp = decode_uvarint(ctrl, cp)
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
        encode_uvarint(ctrl, lenf)
        encode_uvarint(ctrl, lenx)
        encode_uvarint(ctrl, (seek << 1) ^ (seek >> 63))
    return Streams(bytes(ctrl), b"".join(diff), b"".join(extra), records=len(records))


# -- composing two patches ---------------------------------------------------------------------


def _shape(nodes: tuple[Node, ...]) -> tuple:
    """A layout's structure without parameters or copy_from (what decides the expanded form)."""
    return tuple(
        ("D", n.clen, _shape(n.children)) if isinstance(n, Deflate) else ("R", n.length)
        for n in nodes
    )


def compose_two(
    agg: DeltaAggregator, first: Patch, second: Patch, first_bytes: bytes, second_bytes: bytes
) -> bytes:
    """One patch doing ``first`` then ``second`` (merged when both are the same kind of delta,
    else a CHAIN). ``agg`` gives the options, limits and the full-patch writer."""
    header: dict[str, Any] = {
        "base_size": first.base_size,
        "target_size": second.target_size,
        "base_sha256": first.base_sha256,
        "target_sha256": second.target_sha256,
    }

    def chain(members: list) -> bytes:
        return serialize(Method.CHAIN, sections=[chain_section(members)], **header)

    if second.method == Method.FULL:
        target = second.section(Section.TARGET, limit=second.target_size)
        return agg.full_patch(target, base=b"", _header=header)
    if first.method == Method.FULL:
        # The intermediate is inside the first patch: run the second one on it.
        middle = first.section(Section.TARGET, limit=first.target_size)
        return agg.full_patch(agg.apply(middle, second_bytes), base=b"", _header=header)
    if first.method == Method.CHAIN:
        members = chain_members(first, max_size=len(first_bytes))
        last = bytes(members[-1])
        merged = compose_two(agg, parse(last), second, last, second_bytes)
        if parse(merged).method == Method.CHAIN:  # could not merge: append
            return chain([*members, second_bytes])
        return chain([*members[:-1], merged]) if len(members) > 1 else merged
    if second.method == Method.CHAIN:
        return chain([first_bytes, *chain_members(second, max_size=len(second_bytes))])
    if Method.ZSTD_PREFIX in (first.method, second.method):
        # A zstd frame is not a list of copies from the base: it cannot be merged with another
        # patch without the intermediate, so the two travel together.
        return chain([first_bytes, second_bytes])
    if first.method != second.method or (first.flags | second.flags) & FLAG_RAW_BASE:
        # A plain delta and an archive delta (or one reading the base's raw bytes) work on
        # different views of the intermediate artifact: without it they cannot be merged,
        # so they travel together.
        return chain([first_bytes, second_bytes])
    if first.method == Method.BINARY:
        s1 = read_streams(first, first.target_size, first.base_size)
        s2 = read_streams(second, second.target_size, second.base_size)
        streams = compose_streams(s1, s2)
        return serialize(
            Method.BINARY, sections=stream_sections(streams, level=agg.level), **header
        )
    old1, new1 = read_layouts(first)
    old2, new2 = read_layouts(second)
    if _shape(new1.nodes) != _shape(old2.nodes):
        # The intermediate was expanded differently (e.g. by another registry-core version).
        return chain([first_bytes, second_bytes])
    limit = agg.expanded_limit(max(first.target_size, second.target_size))
    sizes = (old1.expanded_size(), new1.expanded_size(), new2.expanded_size())
    if max(sizes) > limit:
        raise OutputTooLargeError(
            f"patches need an expanded form of {max(sizes)} bytes, above "
            f"max_expanded_size={limit}"
        )
    s1 = read_streams(first, sizes[1], sizes[0])
    s2 = read_streams(second, sizes[2], sizes[1])
    streams = compose_streams(s1, s2)
    # A stream the second patch copies from the intermediate is, in the first patch, either
    # copied from the base or rebuilt from content: take the first patch's node for it
    # (same shape, checked above), which says which, with real parameters.
    intermediate = [e.node for e in new1.deflate_entries()]

    def substitute(nodes: tuple[Node, ...]) -> tuple[Node, ...]:
        out: list[Node] = []
        for node in nodes:
            if isinstance(node, Deflate):
                if node.copy_from is not None:
                    if node.copy_from >= len(intermediate):
                        raise CorruptPatchError("patch layout copies a stream its base lacks")
                    node = intermediate[node.copy_from]
                else:
                    node = replace(node, children=substitute(node.children))
            out.append(node)
        return tuple(out)

    composed_layout = Layout(new2.kind, substitute(new2.nodes))
    sections = [
        layouts_section(old1, composed_layout, level=agg.level),
        *stream_sections(streams, level=agg.level),
    ]
    return serialize(Method.ARCHIVE, sections=sections, **header)
