"""The binary form of a :class:`~registry_core.delta._layout.Layout` (layout format versions 1, 2).

``RCLY``, version byte, kind byte, varint node count, then the nodes in preorder. Version 2 adds
reconstructed Deflate nodes (tags 4 and 5); a layout without one is still written as version 1,
so older readers keep reading what they can rebuild.

- Raw: tag 0, varint length.
- Deflate: tag 1 (2 with ``copy_from``), varint clen, byte ``level | strategy << 4 | engine << 7``,
  byte ``wbits | mem_level << 4``, [varint copy_from], varint child count, children.
- Reconstructed Deflate (version 2): tag 4 (5 with ``copy_from``), varint clen, varint record
  length, the correction record, [varint copy_from], varint child count, children.
- Reference (only in a layout written relative to another): tag 3, zigzag varint of
  ``k - expected``, where ``expected`` is the preorder index right after the previous
  reference's subtree; the node is the base's Deflate node ``k`` (whole subtree) with
  ``copy_from = k``.

Varints are unsigned LEB128, strict (:mod:`registry_core._util._varint`).

Parsing is linear and budgeted: subtree sizes of the base are computed once (a reference does
not recount its subtree), and every node the parsed tree holds - a reference counts as its whole
subtree, since every later walk visits it - is charged to ``max_nodes``, so a few hundred bytes
cannot describe a tree that takes minutes to walk.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from .._util import byte_view, decode_uvarint, encode_uvarint
from ..errors import CorruptPatchError, InvalidArgumentError, InvalidTypeError
from ._deflate import Buffer, DeflateParams

if TYPE_CHECKING:  # pragma: no cover
    from ._layout import Layout, Node

__all__ = ["LAYOUT_VERSION", "MAX_NESTING", "decode_layout", "encode_layout"]

LAYOUT_VERSION = 2  # the newest version written; 1 and 2 are read
READ_VERSIONS = (1, 2)
MAX_NESTING = 16  # deepest node tree decode_layout accepts
MAGIC = b"RCLY"
KINDS = ("raw", "zip", "gzip")
TAG_RAW, TAG_DEFLATE, TAG_DEFLATE_COPY, TAG_BASE_REF = 0, 1, 2, 3
TAG_RECON, TAG_RECON_COPY = 4, 5  # version 2
_RECON = 2  # DeflateParams.engine of a reconstructed stream


def _put(out: bytearray, value: int) -> None:
    if value < 0:
        raise InvalidArgumentError("layout sizes must be non-negative")
    encode_uvarint(out, value)


def _has_recon(nodes: tuple[Node, ...]) -> bool:
    from ._layout import Deflate

    stack = list(nodes)
    while stack:
        node = stack.pop()
        if isinstance(node, Deflate):
            if node.params.engine == _RECON:
                return True
            stack.extend(node.children)
    return False


def subtree_sizes(layout: Layout) -> tuple[list[int], list[int]]:
    """For every Deflate node of ``layout`` in preorder: Deflate nodes in its subtree (itself
    included) and all nodes in its subtree (itself included). One walk."""
    from ._layout import Deflate

    deflates: list[int] = []
    totals: list[int] = []

    def walk(nodes: tuple[Node, ...]) -> tuple[int, int]:
        d = t = 0
        for node in nodes:
            t += 1
            if isinstance(node, Deflate):
                idx = len(deflates)
                deflates.append(0)
                totals.append(0)
                sd, st = walk(node.children)
                deflates[idx] = 1 + sd
                totals[idx] = 1 + st
                d += 1 + sd
                t += st
        return d, t

    walk(layout.nodes)
    return deflates, totals


def encode_layout(layout: Layout, *, relative_to: Layout | None = None) -> bytes:
    from ._layout import Raw

    if layout.kind not in KINDS:
        raise InvalidArgumentError(f"layout kind must be one of {KINDS}, not {layout.kind!r}")
    out = bytearray(MAGIC)
    out.append(2 if _has_recon(layout.nodes) else 1)
    out.append(KINDS.index(layout.kind))
    _put(out, len(layout.nodes))
    base = relative_to.deflate_entries() if relative_to is not None else None
    sizes = subtree_sizes(relative_to)[0] if relative_to is not None else []
    expected = 0

    def put(node: Node) -> None:
        nonlocal expected
        if isinstance(node, Raw):
            out.append(TAG_RAW)
            _put(out, node.length)
            return
        k = node.copy_from
        if (
            base is not None
            and k is not None
            and k < len(base)
            and replace(base[k].node, copy_from=k) == node
        ):
            # Same node as the base's k-th: a reference is all it takes.
            out.append(TAG_BASE_REF)
            delta = k - expected
            _put(out, (delta << 1) ^ (delta >> 63))
            expected = k + sizes[k]
            return
        p = node.params
        if p.engine == _RECON:
            out.append(TAG_RECON if node.copy_from is None else TAG_RECON_COPY)
            _put(out, node.clen)
            _put(out, len(p.record))
            out.extend(p.record)
        else:
            out.append(TAG_DEFLATE if node.copy_from is None else TAG_DEFLATE_COPY)
            _put(out, node.clen)
            out.append(p.level | p.strategy << 4 | p.engine << 7)
            out.append(p.wbits | p.mem_level << 4)
        if node.copy_from is not None:
            _put(out, node.copy_from)
        _put(out, len(node.children))
        for child in node.children:
            put(child)

    for node in layout.nodes:
        put(node)
    return bytes(out)


class _Reader:
    def __init__(
        self, buf: memoryview, max_nodes: int, relative_to: Layout | None, version: int = 1
    ) -> None:
        self.buf = buf
        self.version = version
        self.pos = 6
        self.left = max_nodes
        self.base = relative_to.deflate_entries() if relative_to is not None else None
        self.sizes, self.totals = (
            subtree_sizes(relative_to) if relative_to is not None else ([], [])
        )
        self.expected = 0

    def byte(self) -> int:
        if self.pos >= len(self.buf):
            raise CorruptPatchError("layout: truncated")
        b = self.buf[self.pos]
        self.pos += 1
        return b

    def varint(self) -> int:
        value, self.pos = decode_uvarint(self.buf, self.pos, "layout")
        return value

    def charge(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise CorruptPatchError(
                "layout: describes more nodes than max_nodes (references count their subtree)"
            )

    def nodes(self, count: int, depth: int) -> tuple[Node, ...]:
        from ._layout import Deflate, Raw

        if depth > MAX_NESTING:
            raise CorruptPatchError(f"layout: nodes nested deeper than {MAX_NESTING}")
        if count > self.left or count * 2 > len(self.buf) - self.pos:
            raise CorruptPatchError("layout: node count exceeds the data or max_nodes")
        res: list[Node] = []
        for _ in range(count):
            tag = self.byte()
            if tag == TAG_RAW:
                self.charge(1)
                res.append(Raw(self.varint()))
            elif tag in (TAG_DEFLATE, TAG_DEFLATE_COPY):
                self.charge(1)
                clen = self.varint()
                a, b = self.byte(), self.byte()
                try:
                    params = DeflateParams(a & 0x0F, b & 0x0F, b >> 4, (a >> 4) & 0x07, a >> 7)
                except InvalidArgumentError as exc:
                    raise CorruptPatchError(f"layout: {exc}") from None
                copy_from = self.varint() if tag == TAG_DEFLATE_COPY else None
                kids = self.nodes(self.varint(), depth + 1)
                res.append(Deflate(clen, params, kids, copy_from))
            elif tag in (TAG_RECON, TAG_RECON_COPY) and self.version >= 2:
                self.charge(1)
                clen = self.varint()
                rlen = self.varint()
                if rlen == 0 or rlen > len(self.buf) - self.pos:
                    raise CorruptPatchError("layout: correction record empty or truncated")
                record = bytes(self.buf[self.pos : self.pos + rlen])
                self.pos += rlen
                params = DeflateParams(0, 15, 8, 0, _RECON, record)
                copy_from = self.varint() if tag == TAG_RECON_COPY else None
                kids = self.nodes(self.varint(), depth + 1)
                res.append(Deflate(clen, params, kids, copy_from))
            elif tag == TAG_BASE_REF and self.base is not None:
                z = self.varint()
                k = self.expected + ((z >> 1) ^ -(z & 1))
                if not 0 <= k < len(self.base):
                    raise CorruptPatchError("layout: reference to a node the base does not have")
                self.charge(self.totals[k])
                self.expected = k + self.sizes[k]
                res.append(replace(self.base[k].node, copy_from=k))
            else:
                raise CorruptPatchError(f"layout: unknown node tag {tag}")
        return tuple(res)


def decode_layout(data: Buffer, *, max_nodes: int, relative_to: Layout | None = None) -> Layout:
    from ._layout import Layout

    buf = byte_view(data, "layout")
    if len(buf) < 6 or bytes(buf[:4]) != MAGIC:
        raise CorruptPatchError("layout: bad magic (not a registry-core layout)")
    if buf[4] not in READ_VERSIONS:
        raise CorruptPatchError(
            f"layout: version {buf[4]} is not supported (this build reads {READ_VERSIONS})"
        )
    if buf[5] >= len(KINDS):
        raise CorruptPatchError(f"layout: unknown kind {buf[5]}")
    if relative_to is not None and not isinstance(relative_to, Layout):
        raise InvalidTypeError("relative_to must be a Layout")
    reader = _Reader(buf, max_nodes, relative_to, buf[4])
    nodes = reader.nodes(reader.varint(), 0)
    if reader.pos != len(buf):
        raise CorruptPatchError("layout: trailing bytes after the last node")
    return Layout(KINDS[buf[5]], nodes)
