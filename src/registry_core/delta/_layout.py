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

import hashlib
import zlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from typing import NamedTuple

from .._util import byte_view
from ..errors import (
    BaseMismatchError,
    CorruptPatchError,
    InvalidArgumentError,
    InvalidTypeError,
    OutputTooLargeError,
)
from ._deflate import (
    Budget,
    Buffer,
    DeflateDetector,
    DeflateParams,
    Piece,
    StreamPolicy,
    deflate,
    inflate_raw,
)
from ._gzip import GZIP_MAGIC, scan_gzip
from ._layout_codec import LAYOUT_VERSION, MAX_NESTING, decode_layout, encode_layout
from ._tar import scan_tar
from ._zip import LOCAL_SIG, scan_zip

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_OUTPUT_SIZE",
    "EXPANSION_RATIO",
    "LAYOUT_VERSION",
    "MAX_EXPANDED_CAP",
    "MIN_EXPANDED_LIMIT",
    "Deflate",
    "DeflateEntry",
    "DeflateParams",
    "Expansion",
    "Layout",
    "Node",
    "Raw",
    "compressed_bytes_of_deflate_nodes",
    "default_max_expanded_size",
    "expand",
    "expand_artifact",
    "expand_known",
    "rebuild",
]

DEFAULT_MAX_DEPTH = 3
#: The one default expansion limit, shared by diff and apply (see
#: :func:`default_max_expanded_size`): this many times the artifact...
EXPANSION_RATIO = 64
#: ... but at least this much (small artifacts may hold large members) ...
MIN_EXPANDED_LIMIT = 64 << 20
#: ... and at most this much, whatever the artifact's size.
MAX_EXPANDED_CAP = 1 << 30
DEFAULT_MAX_OUTPUT_SIZE = 1 << 32
DEFAULT_MAX_NODES = 1 << 20
#: Deflate streams one :func:`expand` call may turn into nodes; later ones stay raw.
DEFAULT_MAX_STREAMS = 1 << 17
_MAX_NESTING = MAX_NESTING


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

    index: int  # type: ignore[assignment]  # shadows tuple.index (public name, kept)
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
        """Compact binary form (docs/delta-format.md, :mod:`._layout_codec`): ``RCLY``, version,
        kind, node count, nodes in preorder; relative to ``relative_to``, nodes equal to one of
        its Deflate nodes are written as references."""
        return encode_layout(self, relative_to=relative_to)

    @classmethod
    def from_bytes(
        cls, data: Buffer, *, max_nodes: int = DEFAULT_MAX_NODES, relative_to: Layout | None = None
    ) -> Layout:
        """Parse :meth:`to_bytes` output; raises CorruptPatchError on anything malformed.

        ``relative_to`` must be the layout the bytes were written relative to (if any).
        Linear time; at most ``max_nodes`` nodes in the parsed tree (a reference counts its
        whole subtree).
        """
        return decode_layout(data, max_nodes=max_nodes, relative_to=relative_to)


# -- expansion -------------------------------------------------------------------------------


def default_max_expanded_size(size: int) -> int:
    """The default limit of an expanded form, for an artifact of ``size`` bytes:
    :data:`EXPANSION_RATIO` times it, at least :data:`MIN_EXPANDED_LIMIT`, at most
    :data:`MAX_EXPANDED_CAP`. ``diff`` never writes an archive patch whose expanded base or
    target exceeds this for the target's size, and ``apply`` refuses one that does: one limit.
    """
    return min(MAX_EXPANDED_CAP, max(MIN_EXPANDED_LIMIT, EXPANSION_RATIO * size))


class _Expander:
    def __init__(self, policy: StreamPolicy, max_depth: int, budget: int) -> None:
        self.policy = policy
        self.max_depth = max_depth
        self.budget = Budget(budget)
        self.streams_left = DEFAULT_MAX_STREAMS
        self.digests: list[bytes] = []  # SHA-256 of each Deflate node's compressed bytes

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
        digest = hashlib.sha256(comp).digest()  # once per stream: the policy and diff share it
        params = self.policy.params(comp, content, piece.key, digest)
        if params is None:
            self.budget.remaining += len(content)  # only the compressed bytes stay
            return None
        self.streams_left -= 1
        self.digests.append(digest)  # preorder: before the children are expanded
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


class Expansion(NamedTuple):
    """What :func:`expand_artifact` found: the layout, the pieces of the expanded form (join
    them, possibly with more bytes after), and the SHA-256 of every Deflate node's compressed
    bytes in preorder (each stream hashed once)."""

    layout: Layout
    chunks: list[Buffer]
    digests: list[bytes]

    def expanded(self, *tail: Buffer) -> bytes:
        """The expanded form, followed by ``tail`` (one allocation, one copy)."""
        return b"".join([*self.chunks, *tail])


def expand_artifact(
    data: Buffer,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_expanded_size: int | None = None,
    policy: StreamPolicy | None = None,
) -> Expansion:
    """:func:`expand` with the detection policy given and the expanded form left in pieces."""
    buf = byte_view(data, "data")
    if max_depth < 0:
        raise InvalidArgumentError("max_depth must be >= 0")
    if max_expanded_size is not None and max_expanded_size < 0:
        raise InvalidArgumentError("max_expanded_size must be >= 0")
    if max_expanded_size is None:
        max_expanded_size = default_max_expanded_size(len(buf))
    exp = _Expander(policy or StreamPolicy(), max_depth, max_expanded_size)
    kind, nodes, chunks = exp.region(buf, 0, True)
    return Expansion(Layout(kind, tuple(nodes)), chunks, exp.digests)


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
    got = expand_artifact(
        data,
        max_depth=max_depth,
        max_expanded_size=max_expanded_size,
        policy=StreamPolicy(detector),
    )
    return got.layout, got.expanded()


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


def expand_known(
    layout: Layout,
    data: Buffer,
    *,
    max_expanded_size: int | None = None,
    keep: Collection[int] = (),
    kept: dict[int, Buffer] | None = None,
    tail: Buffer | None = None,
) -> bytes:
    """Expand ``data`` following ``layout`` (inflate only, no detection), each stream once.

    Raises BaseMismatchError if the sizes differ and CorruptPatchError if a stream does not
    inflate to what the layout says; OutputTooLargeError beyond ``max_expanded_size``.
    The compressed bytes of the Deflate nodes numbered in ``keep`` (preorder) are put in
    ``kept`` on the way (what :func:`rebuild` copies), so nested parents need no second
    inflation; ``tail`` is appended to the result in the same single copy.
    """
    buf = byte_view(data, "data")
    _check_size(layout, buf)
    if max_expanded_size is not None and layout.expanded_size() > max_expanded_size:
        raise OutputTooLargeError(
            f"expanded form would be {layout.expanded_size()} bytes, over {max_expanded_size}"
        )
    chunks: list[Buffer] = []
    counter = 0

    def walk(nodes: tuple[Node, ...], view: memoryview, nested: bool) -> None:
        nonlocal counter
        pos = 0
        for node in nodes:
            if isinstance(node, Raw):
                chunks.append(view[pos : pos + node.length])
                pos += node.length
            else:
                comp = view[pos : pos + node.clen]
                if kept is not None and counter in keep:
                    # Top-level streams are views of the artifact; nested ones are copied
                    # (a view would keep the whole inflated parent alive).
                    kept[counter] = bytes(comp) if nested else comp
                counter += 1
                content = _inflate_exact(comp, node.content_size)
                walk(node.children, memoryview(content), True)
                pos += node.clen

    walk(layout.nodes, buf, False)
    if tail is not None:
        chunks.append(tail)
    return b"".join(chunks)


def compressed_bytes_of_deflate_nodes(layout: Layout, data: Buffer) -> list[Buffer]:
    """The compressed bytes of every Deflate node of ``layout`` in ``data``, in preorder.

    Nested streams are found by inflating their parents (only parents that hold one).
    Raises like :func:`expand_known`.
    """
    buf = byte_view(data, "data")
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
    old_streams: Mapping[int, Buffer] | None = None,
) -> bytes:
    """Recompress and reassemble the original bytes from the expanded form.

    Deflate nodes with ``copy_from`` take their compressed bytes from ``old_original`` (laid out
    by ``old_layout``), or from ``old_streams`` (preorder index -> compressed bytes, as
    :func:`expand_known` keeps them) when given. Raises OutputTooLargeError
    before allocating if the layout declares more than ``max_output_size`` bytes, and
    CorruptPatchError on any size inconsistency. The caller still verifies the result's digest.
    """
    if not isinstance(layout, Layout):
        raise InvalidTypeError(f"layout must be a Layout, not {type(layout).__name__}")
    exp = byte_view(expanded, "expanded")
    total = layout.original_size()
    if total > max_output_size:
        raise OutputTooLargeError(
            f"layout declares {total} output bytes, over max_output_size={max_output_size}"
        )
    if layout.expanded_size() != len(exp):
        raise CorruptPatchError(
            f"expanded form is {len(exp)} bytes but the layout needs {layout.expanded_size()}"
        )
    cache: list[list[Buffer] | None] = [None]

    def old_stream(index: int) -> Buffer:
        if old_streams is not None:
            blob = old_streams.get(index)
            if blob is None:
                raise CorruptPatchError(
                    f"layout: copy_from={index} names no stream of the old layout"
                )
            return blob
        if cache[0] is None:
            if old_original is None or old_layout is None:
                raise InvalidArgumentError(
                    "layout copies streams from the old artifact: pass old_original and old_layout"
                )
            cache[0] = compressed_bytes_of_deflate_nodes(old_layout, old_original)
        streams = cache[0]
        assert streams is not None
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
                for piece in deflate(content, node.params, clen=node.clen):
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
