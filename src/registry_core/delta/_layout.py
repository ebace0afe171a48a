"""Archive layouts: an artifact's compressed streams inflated, and the recipe to rebuild it exactly.

:func:`expand` turns an artifact (zip, gzip, or anything else) into its *expanded form* - the
same bytes with every deflate stream that can be reproduced replaced by its inflated content,
recursively (a ``.json.gz`` inside a wheel, a ``.tar`` inside a ``.tar.gz``) - plus a
:class:`Layout`, the tree that says where each stream was and which zlib parameters produce it
again. :func:`rebuild` goes back: recompress (or copy from an old artifact) and reassemble.
:func:`expand_known` expands again following a recorded layout, without any detection.

Offsets. The *original* of a node is the bytes it covers in its parent: the artifact for
top-level nodes, the inflated content of the enclosing Deflate node for nested ones. Raw nodes
contribute their bytes verbatim to the expanded form; a Deflate node contributes its children's
expanded bytes. The expanded form is thus one flat stream, and every node has one offset in it.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from typing import NamedTuple

from ..errors import (
    BaseMismatchError,
    CorruptPatchError,
    InvalidArgumentError,
    InvalidTypeError,
    OutputTooLargeError,
)
from ._deflate import Budget, Buffer, DeflateDetector, DeflateParams, Piece, deflate, inflate_raw
from ._gzip import GZIP_MAGIC, scan_gzip
from ._tar import scan_tar
from ._zip import LOCAL_SIG, scan_zip

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_OUTPUT_SIZE",
    "LAYOUT_VERSION",
    "MAX_EXPANDED_CAP",
    "Deflate",
    "DeflateEntry",
    "DeflateParams",
    "Layout",
    "Node",
    "Raw",
    "compressed_bytes_of_deflate_nodes",
    "default_max_expanded_size",
    "expand",
    "expand_known",
    "rebuild",
]

LAYOUT_VERSION = 1
DEFAULT_MAX_DEPTH = 3
#: Hard cap of the default expansion budget (see :func:`default_max_expanded_size`).
MAX_EXPANDED_CAP = 1 << 30
DEFAULT_MAX_OUTPUT_SIZE = 1 << 32
DEFAULT_MAX_NODES = 1 << 20
#: Deflate streams one :func:`expand` call may turn into nodes; later ones stay raw.
DEFAULT_MAX_STREAMS = 1 << 17
_MAX_NESTING = 16  # deepest node tree from_bytes accepts

_MAGIC = b"RCLY"
_KINDS = ("raw", "zip", "gzip")
_TAG_RAW, _TAG_DEFLATE, _TAG_DEFLATE_COPY, _TAG_BASE_REF = 0, 1, 2, 3


@dataclass(frozen=True)
class Raw:
    """``length`` bytes that are the same in the original and the expanded form."""

    length: int

    @property
    def original_size(self) -> int:
        return self.length

    @property
    def expanded_size(self) -> int:
        return self.length


@dataclass(frozen=True)
class Deflate:
    """``clen`` original bytes that are a raw deflate stream ``params`` reproduce exactly.

    ``children`` describe its inflated content (their original sizes add up to it); the
    expanded form holds their expanded bytes. ``copy_from``, set by the delta encoder, is the
    preorder index of a Deflate node of the *old* layout with identical compressed bytes:
    :func:`rebuild` copies those instead of recompressing.
    """

    clen: int
    params: DeflateParams
    children: tuple[Node, ...]
    copy_from: int | None = None

    @property
    def original_size(self) -> int:
        return self.clen

    @cached_property
    def content_size(self) -> int:
        """Size of the inflated content."""
        return sum(c.original_size for c in self.children)

    @cached_property
    def expanded_size(self) -> int:
        return sum(c.expanded_size for c in self.children)


Node = Raw | Deflate


class DeflateEntry(NamedTuple):
    """One Deflate node in preorder, with where it sits.

    ``offset`` is relative to the node's parent original (the artifact when ``parent`` is
    ``None``, else the inflated content of Deflate node number ``parent``); ``expanded_offset``
    is absolute in the expanded form.
    """

    index: int
    parent: int | None
    depth: int
    offset: int
    expanded_offset: int
    node: Deflate


@dataclass(frozen=True)
class Layout:
    """The tree that maps an artifact to its expanded form and back."""

    kind: str
    nodes: tuple[Node, ...]

    def original_size(self) -> int:
        """Length of the artifact this layout describes."""
        return sum(n.original_size for n in self.nodes)

    def expanded_size(self) -> int:
        """Length of the expanded form."""
        return sum(n.expanded_size for n in self.nodes)

    def deflate_entries(self) -> list[DeflateEntry]:
        """Every Deflate node in preorder (nested included), with parent, depth and offsets."""
        out: list[DeflateEntry] = []

        def walk(nodes: tuple[Node, ...], parent: int | None, depth: int, exp: int) -> None:
            off = 0
            for node in nodes:
                if isinstance(node, Deflate):
                    idx = len(out)
                    out.append(DeflateEntry(idx, parent, depth, off, exp, node))
                    walk(node.children, idx, depth + 1, exp)
                off += node.original_size
                exp += node.expanded_size

        walk(self.nodes, None, 0, 0)
        return out

    def deflate_nodes(self) -> list[tuple[int, int, Deflate]]:
        """``(original_offset, expanded_offset, node)`` for every Deflate node, in preorder.

        ``original_offset`` is in the artifact for top-level nodes and in the parent's
        inflated content for nested ones (see :meth:`deflate_entries` for the parent); use
        :func:`compressed_bytes_of_deflate_nodes` to get the compressed bytes of any node.
        """
        return [(e.offset, e.expanded_offset, e.node) for e in self.deflate_entries()]

    def with_copy_from(self, mapping: Mapping[int, int | None]) -> Layout:
        """A copy with ``copy_from`` of Deflate node ``i`` (preorder) set to ``mapping[i]``."""
        counter = [0]

        def walk(nodes: tuple[Node, ...]) -> tuple[Node, ...]:
            res: list[Node] = []
            for node in nodes:
                if isinstance(node, Deflate):
                    i = counter[0]
                    counter[0] += 1
                    kids = walk(node.children)
                    cf = mapping.get(i, node.copy_from)
                    node = replace(node, children=kids, copy_from=cf)
                res.append(node)
            return tuple(res)

        return Layout(self.kind, walk(self.nodes))

    def without_copy_from(self) -> Layout:
        """A copy with every ``copy_from`` cleared (what :func:`expand` returns)."""
        n = len(self.deflate_entries())
        return self.with_copy_from(dict.fromkeys(range(n)))

    # -- serialisation ------------------------------------------------------------------------

    def to_bytes(self, *, relative_to: Layout | None = None) -> bytes:
        """Compact binary form: ``RCLY``, version, kind, node count, nodes in preorder.

        Raw: tag 0, varint length. Deflate: tag 1 (2 with copy_from), varint clen, byte
        ``level | strategy << 4 | engine << 7``, byte ``wbits | mem_level << 4``,
        [varint copy_from],
        varint child count, children. Varints are unsigned LEB128.
        """
        if self.kind not in _KINDS:
            raise InvalidArgumentError(f"layout kind must be one of {_KINDS}, not {self.kind!r}")
        out = bytearray(_MAGIC)
        out.append(LAYOUT_VERSION)
        out.append(_KINDS.index(self.kind))
        _put_varint(out, len(self.nodes))
        base = relative_to.deflate_entries() if relative_to is not None else None
        expected = [0]

        def put(node: Node) -> None:
            if isinstance(node, Raw):
                out.append(_TAG_RAW)
                _put_varint(out, node.length)
                return
            k = node.copy_from
            if base is not None and k is not None and k < len(base):
                ref = base[k].node
                if replace(ref, copy_from=k) == node:
                    # Same node as the base's k-th: a reference (zigzag delta from the index
                    # right after the previous reference's subtree) is all it takes.
                    out.append(_TAG_BASE_REF)
                    delta = k - expected[0]
                    _put_varint(out, (delta << 1) ^ (delta >> 63))
                    expected[0] = k + 1 + _count_deflate(ref.children)
                    return
            p = node.params
            out.append(_TAG_DEFLATE if node.copy_from is None else _TAG_DEFLATE_COPY)
            _put_varint(out, node.clen)
            out.append(p.level | p.strategy << 4 | p.engine << 7)
            out.append(p.wbits | p.mem_level << 4)
            if node.copy_from is not None:
                _put_varint(out, node.copy_from)
            _put_varint(out, len(node.children))
            for child in node.children:
                put(child)

        for node in self.nodes:
            put(node)
        return bytes(out)

    @classmethod
    def from_bytes(
        cls, data: Buffer, *, max_nodes: int = DEFAULT_MAX_NODES, relative_to: Layout | None = None
    ) -> Layout:
        """Parse :meth:`to_bytes` output; raises CorruptPatchError on anything malformed.

        ``relative_to`` must be the layout the bytes were written relative to (if any).
        """
        try:
            buf = bytes(data)
        except TypeError as exc:
            raise InvalidTypeError("Layout.from_bytes needs a bytes-like object") from exc
        if len(buf) < 6 or buf[:4] != _MAGIC:
            raise CorruptPatchError("layout: bad magic (not a registry-core layout)")
        if buf[4] != LAYOUT_VERSION:
            raise CorruptPatchError(
                f"layout: version {buf[4]} is not supported (this build reads {LAYOUT_VERSION})"
            )
        if buf[5] >= len(_KINDS):
            raise CorruptPatchError(f"layout: unknown kind {buf[5]}")
        reader = _Reader(buf, 6, max_nodes)
        if relative_to is not None:
            reader.base = relative_to.deflate_entries()
        nodes = reader.nodes(reader.varint(), 0)
        if reader.pos != len(buf):
            raise CorruptPatchError("layout: trailing bytes after the last node")
        return cls(_KINDS[buf[5]], nodes)


def _put_varint(out: bytearray, value: int) -> None:
    if value < 0:
        raise InvalidArgumentError("layout sizes must be non-negative")
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)


def _count_deflate(nodes: tuple[Node, ...]) -> int:
    """Deflate nodes in a subtree (preorder numbering skips this many for a referenced node)."""
    return sum(1 + _count_deflate(n.children) for n in nodes if isinstance(n, Deflate))


class _Reader:
    def __init__(self, buf: bytes, pos: int, max_nodes: int) -> None:
        self.buf = buf
        self.pos = pos
        self.left = max_nodes
        self.base: list[DeflateEntry] | None = None
        self.expected = 0

    def byte(self) -> int:
        if self.pos >= len(self.buf):
            raise CorruptPatchError("layout: truncated")
        b = self.buf[self.pos]
        self.pos += 1
        return b

    def varint(self) -> int:
        value = 0
        for shift in range(0, 63, 7):
            b = self.byte()
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                if b == 0 and shift:
                    raise CorruptPatchError("layout: non-minimal varint")
                return value
        raise CorruptPatchError("layout: varint too long")

    def nodes(self, count: int, depth: int) -> tuple[Node, ...]:
        if depth > _MAX_NESTING:
            raise CorruptPatchError(f"layout: nodes nested deeper than {_MAX_NESTING}")
        if count > self.left or count * 2 > len(self.buf) - self.pos:
            raise CorruptPatchError("layout: node count exceeds the data or max_nodes")
        res: list[Node] = []
        for _ in range(count):
            self.left -= 1
            tag = self.byte()
            if tag == _TAG_RAW:
                res.append(Raw(self.varint()))
            elif tag in (_TAG_DEFLATE, _TAG_DEFLATE_COPY):
                clen = self.varint()
                a, b = self.byte(), self.byte()
                try:
                    params = DeflateParams(a & 0x0F, b & 0x0F, b >> 4, (a >> 4) & 0x07, a >> 7)
                except InvalidArgumentError as exc:
                    raise CorruptPatchError(f"layout: {exc}") from None
                copy_from = self.varint() if tag == _TAG_DEFLATE_COPY else None
                kids = self.nodes(self.varint(), depth + 1)
                res.append(Deflate(clen, params, kids, copy_from))
            elif tag == _TAG_BASE_REF and self.base is not None:
                z = self.varint()
                k = self.expected + ((z >> 1) ^ -(z & 1))
                if not 0 <= k < len(self.base):
                    raise CorruptPatchError("layout: reference to a node the base does not have")
                ref = self.base[k].node
                self.expected = k + 1 + _count_deflate(ref.children)
                res.append(replace(ref, copy_from=k))
            else:
                raise CorruptPatchError(f"layout: unknown node tag {tag}")
        return tuple(res)


# -- expansion -------------------------------------------------------------------------------


def default_max_expanded_size(input_size: int) -> int:
    """The default expansion budget: 200 times the input, at least 64 MiB, at most 1 GiB."""
    return min(MAX_EXPANDED_CAP, max(64 << 20, 200 * input_size))


def _view(data: object, what: str) -> memoryview:
    try:
        view = memoryview(data)  # type: ignore[arg-type]
    except TypeError:
        raise InvalidTypeError(f"{what} must be bytes-like, not {type(data).__name__}") from None
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    return view


_ALL_KEYS = object()  # history key for every stream of the artifact


class _Expander:
    def __init__(self, detector: DeflateDetector, max_depth: int, budget: int) -> None:
        self.detector = detector
        self.max_depth = max_depth
        self.budget = Budget(budget)
        self.streams_left = DEFAULT_MAX_STREAMS
        # Per producer key, what this artifact showed so far: [streams, reproduced, params].
        self.history: dict[object, list] = {}

    def find(self, comp: memoryview, content: bytes, key: object) -> DeflateParams | None:
        """Detect parameters, with a search narrowed by this artifact's own history.

        A producer whose streams here mostly fail is not zlib (GNU gzip on large inputs, Rust's
        miniz, Go): two guesses. One that mostly succeeds gets a short search for its odd
        streams (other tools sharing the key). The same failure rule applies to the artifact as
        a whole, so varying header fields per member does not buy a full search for each.
        Depends only on the artifact, so the layout's shape never depends on a shared
        detector's past.
        """
        hist = self.history.setdefault(key, [0, 0, {}])
        total = self.history.setdefault(_ALL_KEYS, [0, 0, {}])
        streams, reproduced, seen = hist
        limit = None
        if (streams >= 4 and reproduced * 4 < streams) or (
            total[0] >= 16 and total[1] * 4 < total[0]
        ):
            limit = 2
        elif streams >= 16 and reproduced * 2 >= streams:
            limit = 4
        # A producer that mostly reproduces with one engine is that engine: its odd streams are
        # not worth a full compression with the other (a miniz guess cannot stop early).
        engines = None
        if streams >= 8 and reproduced * 2 >= streams:
            engines = frozenset(p.engine for p in seen)
        params = self.detector.find(comp, content, key, limit=limit, include=seen, engines=engines)
        for h in (hist, total):
            h[0] += 1
            if params is not None:
                h[1] += 1
        if params is not None:
            seen[params] = None
        return params

    def region(
        self, buf: memoryview, depth: int, top: bool
    ) -> tuple[str, list[Node], list[Buffer]]:
        """Expand one region: detect its format and expand the pieces its scanner finds."""
        kind = "raw"
        pieces: list[Piece] | None = None
        head = bytes(buf[:4])
        if head[:3] == GZIP_MAGIC:
            pieces = scan_gzip(buf, self.budget)
            kind = "gzip"
        elif top or head == LOCAL_SIG:
            pieces = scan_zip(buf, allow_prefix=top)
            kind = "zip"
        if pieces is None:
            pieces = scan_tar(buf)
            kind = "raw"
        nodes: list[Node] = []
        chunks: list[Buffer] = []
        pos = 0
        for piece in pieces or ():
            if piece.start < pos:
                continue
            if piece.nested:
                if depth >= self.max_depth:
                    continue
                end = piece.start + piece.length
                _, sub_nodes, sub_chunks = self.region(buf[piece.start : end], depth + 1, False)
                if not any(isinstance(n, Deflate) for n in sub_nodes):
                    continue
            else:
                got = self.deflate(buf, piece, depth)
                if got is None:
                    continue
                node, sub_chunks = got
                sub_nodes = [node]
                end = piece.start + node.clen
            _raw(nodes, chunks, buf, pos, piece.start)
            nodes.extend(sub_nodes)
            chunks.extend(sub_chunks)
            pos = end
        _raw(nodes, chunks, buf, pos, len(buf))
        return kind, _merge_raw(nodes), chunks

    def deflate(
        self, buf: memoryview, piece: Piece, depth: int
    ) -> tuple[Deflate, list[Buffer]] | None:
        if self.streams_left <= 0:
            return None
        content = piece.content
        clen = piece.length
        if content is None:
            res = inflate_raw(buf[piece.start : piece.start + piece.length], self.budget)
            if res is None:
                return None
            content, clen = res
        comp = buf[piece.start : piece.start + clen]
        params = self.find(comp, content, piece.key)
        if params is None:
            self.budget.remaining += len(content)  # only the compressed bytes stay
            return None
        self.streams_left -= 1
        view = memoryview(content)
        if depth < self.max_depth and len(view) >= 18:
            _, kids, sub_chunks = self.region(view, depth + 1, False)
        else:
            kids = [Raw(len(view))] if len(view) else []
            sub_chunks = [view]
        return Deflate(clen, params, tuple(kids)), sub_chunks


def _raw(nodes: list[Node], chunks: list[Buffer], buf: memoryview, start: int, end: int) -> None:
    if end > start:
        nodes.append(Raw(end - start))
        chunks.append(buf[start:end])


def _merge_raw(nodes: list[Node]) -> list[Node]:
    out: list[Node] = []
    for node in nodes:
        if isinstance(node, Raw) and out and isinstance(out[-1], Raw):
            out[-1] = Raw(out[-1].length + node.length)
        elif not (isinstance(node, Raw) and node.length == 0):
            out.append(node)
    return out


def expand(
    data: Buffer,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_expanded_size: int | None = None,
    detector: DeflateDetector | None = None,
) -> tuple[Layout, bytes]:
    """Detect zip / gzip (and archives nested in them), inflate every stream that can be
    reproduced exactly, and return the layout plus the expanded bytes.

    Streams that cannot be reproduced stay raw (compressed bytes in the expanded form). Never
    raises on unusual input: anything unparseable is raw. ``max_depth`` bounds nesting (0: only
    the top-level archive); inflated content beyond ``max_expanded_size`` (default
    :func:`default_max_expanded_size`) stays compressed. Deterministic for a fresh detector.
    """
    buf = _view(data, "data")
    if max_depth < 0:
        raise InvalidArgumentError("max_depth must be >= 0")
    if max_expanded_size is not None and max_expanded_size < 0:
        raise InvalidArgumentError("max_expanded_size must be >= 0")
    if max_expanded_size is None:
        max_expanded_size = default_max_expanded_size(len(buf))
    exp = _Expander(detector or DeflateDetector(), max_depth, max_expanded_size)
    kind, nodes, chunks = exp.region(buf, 0, True)
    return Layout(kind, tuple(nodes)), b"".join(chunks)


# -- following a recorded layout -------------------------------------------------------------


def _inflate_exact(comp: Buffer, size: int) -> bytes:
    d = zlib.decompressobj(-15)
    try:
        out = d.decompress(comp, size + 1)
    except zlib.error as exc:
        raise CorruptPatchError(f"layout does not match the data: {exc}") from None
    if len(out) != size or not d.eof or d.unused_data or d.unconsumed_tail:
        raise CorruptPatchError(
            "layout does not match the data: a deflate stream's length or content size differs"
        )
    return out


def _check_size(layout: Layout, buf: memoryview) -> None:
    if not isinstance(layout, Layout):
        raise InvalidTypeError(f"layout must be a Layout, not {type(layout).__name__}")
    if layout.original_size() != len(buf):
        raise BaseMismatchError(
            f"data is {len(buf)} bytes but the layout describes {layout.original_size()}: "
            "not the artifact the layout was recorded from"
        )


def expand_known(layout: Layout, data: Buffer, *, max_expanded_size: int | None = None) -> bytes:
    """Expand ``data`` following ``layout`` (inflate only, no detection).

    Raises BaseMismatchError if the sizes differ and CorruptPatchError if a stream does not
    inflate to what the layout says; OutputTooLargeError beyond ``max_expanded_size``.
    """
    buf = _view(data, "data")
    _check_size(layout, buf)
    if max_expanded_size is not None and layout.expanded_size() > max_expanded_size:
        raise OutputTooLargeError(
            f"expanded form would be {layout.expanded_size()} bytes, over {max_expanded_size}"
        )
    chunks: list[Buffer] = []

    def walk(nodes: tuple[Node, ...], view: memoryview) -> None:
        pos = 0
        for node in nodes:
            if isinstance(node, Raw):
                chunks.append(view[pos : pos + node.length])
                pos += node.length
            else:
                content = _inflate_exact(view[pos : pos + node.clen], node.content_size)
                walk(node.children, memoryview(content))
                pos += node.clen

    walk(layout.nodes, buf)
    return b"".join(chunks)


def compressed_bytes_of_deflate_nodes(layout: Layout, data: Buffer) -> list[Buffer]:
    """The compressed bytes of every Deflate node of ``layout`` in ``data``, in preorder.

    Nested streams are found by inflating their parents (only parents that hold one).
    Raises like :func:`expand_known`.
    """
    buf = _view(data, "data")
    _check_size(layout, buf)
    out: list[Buffer] = []

    def walk(nodes: tuple[Node, ...], view: memoryview) -> None:
        pos = 0
        for node in nodes:
            if isinstance(node, Deflate):
                comp = view[pos : pos + node.clen]
                out.append(comp)
                if any(isinstance(c, Deflate) for c in node.children):
                    walk(node.children, memoryview(_inflate_exact(comp, node.content_size)))
            pos += node.original_size

    walk(layout.nodes, buf)
    return out


# -- rebuild ---------------------------------------------------------------------------------


def rebuild(
    layout: Layout,
    expanded: Buffer,
    *,
    old_original: Buffer | None = None,
    old_layout: Layout | None = None,
    max_output_size: int = DEFAULT_MAX_OUTPUT_SIZE,
) -> bytes:
    """Recompress and reassemble the original bytes from the expanded form.

    Deflate nodes with ``copy_from`` take their compressed bytes from ``old_original`` (laid out
    by ``old_layout``). Raises OutputTooLargeError before allocating if the layout declares more
    than ``max_output_size`` bytes, and CorruptPatchError on any size inconsistency. The caller
    still verifies the result's digest.
    """
    if not isinstance(layout, Layout):
        raise InvalidTypeError(f"layout must be a Layout, not {type(layout).__name__}")
    exp = _view(expanded, "expanded")
    total = layout.original_size()
    if total > max_output_size:
        raise OutputTooLargeError(
            f"layout declares {total} output bytes, over max_output_size={max_output_size}"
        )
    if layout.expanded_size() != len(exp):
        raise CorruptPatchError(
            f"expanded form is {len(exp)} bytes but the layout needs {layout.expanded_size()}"
        )
    old_streams: list[list[Buffer] | None] = [None]

    def old_stream(index: int) -> Buffer:
        if old_streams[0] is None:
            if old_original is None or old_layout is None:
                raise InvalidArgumentError(
                    "layout copies streams from the old artifact: pass old_original and old_layout"
                )
            old_streams[0] = compressed_bytes_of_deflate_nodes(old_layout, old_original)
        streams = old_streams[0]
        if not 0 <= index < len(streams):
            raise CorruptPatchError(f"layout: copy_from={index} names no stream of the old layout")
        return streams[index]

    def walk(nodes: tuple[Node, ...], pos: int, out: bytearray) -> int:
        for node in nodes:
            if isinstance(node, Raw):
                out += exp[pos : pos + node.length]
                pos += node.length
                continue
            if node.copy_from is not None:
                blob = old_stream(node.copy_from)
                if len(blob) != node.clen:
                    raise CorruptPatchError(
                        f"layout: copied stream is {len(blob)} bytes, expected {node.clen}"
                    )
                out += blob
                pos += node.expanded_size
                continue
            content = bytearray()
            pos = walk(node.children, pos, content)
            produced = 0
            try:
                for piece in deflate(content, node.params):
                    produced += len(piece)
                    if produced > node.clen:
                        break
                    out += piece
            except (zlib.error, ValueError) as exc:
                raise CorruptPatchError(f"layout: zlib refused {node.params}: {exc}") from None
            if produced != node.clen:
                raise CorruptPatchError(
                    f"layout: recompressed stream is not {node.clen} bytes "
                    "(parameters or content do not match)"
                )
        return pos

    out = bytearray()
    walk(layout.nodes, 0, out)
    return bytes(out)
