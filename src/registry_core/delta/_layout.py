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
import os
import threading
import zlib
from collections.abc import Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
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
    RECON,
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
    "DEFAULT_MAX_IN_FLIGHT",
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
    "Rebuilder",
    "compressed_bytes_of_deflate_nodes",
    "default_max_expanded_size",
    "default_threads",
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

#: Content bytes of complete Deflate nodes waiting for or running in a worker beyond which
#: :meth:`Rebuilder.feed` blocks until the workers catch up (the streaming memory bound; one
#: larger node is still accepted).
DEFAULT_MAX_IN_FLIGHT = 64 << 20
#: Below this much content to recompress a Rebuilder runs serially (thread start-up costs more).
_PARALLEL_MIN_CONTENT = 256 << 10


def default_threads() -> int:
    """Rebuild threads by default: ``min(os.cpu_count(), 8)``."""
    return max(1, min(os.cpu_count() or 1, 8))


class _Job:
    """One Deflate node being rebuilt: its content and where its stream goes."""

    __slots__ = ("content", "dest", "dest_off", "node", "parent", "pending", "size")

    def __init__(self, node: Deflate, parent: _Job | None, dest_off: int, pending: int) -> None:
        self.node = node
        self.parent = parent
        self.dest_off = dest_off  # in the parent's content (the output when parent is None)
        self.pending = pending  # own CLOSE + Deflate children still to recompress
        self.content: Buffer | None = None  # a view of the fed bytes, or ``dest``
        self.dest: bytearray | None = None  # the content assembled here (children write in)
        self.size = node.content_size


class _Op(NamedTuple):
    """One step of the flattened layout, in expanded order."""

    kind: int
    length: int  # expanded bytes this op consumes
    job: _Job | None  # OPEN/CLOSE: the node's job; RAW/COPY: the parent's job (None: top)
    off: int  # RAW/COPY: where the bytes go in the parent's content (or the output)
    close: int  # OPEN of a node whose children are all Raw: index of its CLOSE, else -1
    copy_from: int  # COPY: old stream index
    clen: int  # COPY: the stream's length


_OPEN, _RAW, _COPY, _CLOSE = 0, 1, 2, 3


class Rebuilder:
    """Rebuild an artifact from its expanded form fed in order; complete deflate nodes are
    recompressed in a thread pool while later bytes are still arriving.

    ``feed`` the expanded form in any chunking, then ``finish`` returns the artifact (sizes
    checked; the caller verifies the digest). A nested stream (a ``.tar`` inside a
    ``.tar.gz``, a ``.json.gz`` inside a wheel) is recompressed into its parent's content, and
    the parent is recompressed once all its children are in place. ``threads`` (default
    :func:`default_threads`) workers run zlib's compressor and the C reconstruction, which
    release the GIL; ``threads=1`` is the serial path, with identical output.

    Memory: the output (allocated once, after the OutputTooLargeError check; ``finish``
    returns it as ``bytes``, one copy) plus the content of the Deflate nodes in flight: the
    open ones (at most one per nesting level, each at most its declared content size) and
    complete ones waiting for or running in a worker, at most ``max_in_flight`` bytes
    (``feed`` waits for the workers beyond that) or one node. A node whose content arrives
    whole inside one immutable ``bytes`` chunk is referenced, not copied.

    One deflate stream is one job: a single large member is recompressed by one thread. zlib
    can only split a stream at full-flush points (``Z_FULL_FLUSH`` resets the matcher), and
    neither the writers we reproduce (zipfile, gzip, tar) nor the layout format record any, so
    an artifact with one big member rebuilds at one core's zlib speed.
    """

    def __init__(
        self,
        layout: Layout,
        *,
        threads: int | None = None,
        max_output_size: int = DEFAULT_MAX_OUTPUT_SIZE,
        old_original: Buffer | None = None,
        old_layout: Layout | None = None,
        old_streams: Mapping[int, Buffer] | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> None:
        if not isinstance(layout, Layout):
            raise InvalidTypeError(f"layout must be a Layout, not {type(layout).__name__}")
        if threads is None:
            threads = default_threads()
        if threads < 1:
            raise InvalidArgumentError("threads must be >= 1")
        if max_in_flight < 0:
            raise InvalidArgumentError("max_in_flight must be >= 0")
        total = layout.original_size()
        if total > max_output_size:
            raise OutputTooLargeError(
                f"layout declares {total} output bytes, over max_output_size={max_output_size}"
            )
        self.layout = layout
        self.expanded_size = layout.expanded_size()
        self._old_original = old_original
        self._old_layout = old_layout
        self._old_streams = old_streams
        self._old_list: list[Buffer] | None = None
        self._max_in_flight = max_in_flight
        self._ops: list[_Op] = []
        work = self._flatten(layout.nodes, None)
        self._threads = threads if work >= _PARALLEL_MIN_CONTENT else 1
        self._out = bytearray(total)
        self._pos = 0  # expanded bytes fed
        self._op = 0  # next op
        self._op_done = 0  # bytes of the current op already consumed
        self._copied = False  # the current COPY op's stream is written
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._queued = 0  # content bytes of jobs ready and not yet recompressed
        self._running = 0  # jobs submitted to the pool and not finished
        self._error: BaseException | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._finished = False
        self._borrow = False  # rebuild(): every chunk stays valid until finish()
        try:
            self._advance(memoryview(b""), False)
        except BaseException:
            self._shutdown()
            raise

    # -- plan ---------------------------------------------------------------------------------

    def _flatten(self, nodes: tuple[Node, ...], parent: _Job | None) -> int:
        """Append the ops of ``nodes`` (children of ``parent``); return content to recompress."""
        ops = self._ops
        off = 0
        work = 0
        for node in nodes:
            if isinstance(node, Raw):
                if node.length:
                    ops.append(_Op(_RAW, node.length, parent, off, -1, 0, 0))
            elif node.copy_from is not None:
                ops.append(
                    _Op(_COPY, node.expanded_size, parent, off, -1, node.copy_from, node.clen)
                )
            else:
                kids = sum(
                    1 for c in node.children if isinstance(c, Deflate) and c.copy_from is None
                )
                job = _Job(node, parent, off, 1 + kids)
                at = len(ops)
                ops.append(_Op(_OPEN, node.expanded_size, job, off, -1, 0, 0))
                work += node.content_size + self._flatten(node.children, job)
                if all(isinstance(c, Raw) for c in node.children):
                    # its content is one contiguous range of the expanded form
                    ops[at] = ops[at]._replace(close=len(ops))
                ops.append(_Op(_CLOSE, 0, job, off, -1, 0, 0))
            off += node.original_size
        return work

    # -- feeding ------------------------------------------------------------------------------

    def feed(self, chunk: Buffer) -> None:
        """Take the next bytes of the expanded form. CorruptPatchError past its declared size;
        errors of earlier recompressions are raised here or at :meth:`finish`.

        A ``bytes`` chunk (immutable) may be referenced until :meth:`finish`; any other buffer
        is copied where needed and may be reused by the caller once ``feed`` returns."""
        if self._finished:
            raise InvalidArgumentError("Rebuilder: feed() after finish()")
        view = byte_view(chunk, "chunk")
        if self._pos + len(view) > self.expanded_size:
            self._shutdown()
            raise CorruptPatchError(
                f"expanded form is longer than the {self.expanded_size} bytes the layout needs"
            )
        self._raise_error()
        borrow = self._borrow or isinstance(view.obj, bytes)
        try:
            self._advance(view, borrow)
        except BaseException:
            self._shutdown()
            raise
        self._pos += len(view)
        self._raise_error()

    def _dest(self, job: _Job | None) -> bytearray:
        if job is None:
            return self._out
        assert job.dest is not None
        return job.dest

    def _advance(self, view: memoryview, borrow: bool) -> None:
        """Consume ``view`` op by op; stop at the first op that needs more bytes."""
        ops = self._ops
        n = len(view)
        i = 0
        while self._op < len(ops):
            op = ops[self._op]
            kind = op.kind
            if kind == _RAW:
                take = min(op.length - self._op_done, n - i)
                if take:
                    at = op.off + self._op_done
                    self._dest(op.job)[at : at + take] = view[i : i + take]
                    i += take
                    self._op_done += take
                if self._op_done < op.length:
                    return
            elif kind == _COPY:
                if not self._copied:
                    blob = self._old_stream(op.copy_from)
                    if len(blob) != op.clen:
                        raise CorruptPatchError(
                            f"layout: copied stream is {len(blob)} bytes, expected {op.clen}"
                        )
                    self._dest(op.job)[op.off : op.off + op.clen] = blob
                    self._copied = True
                take = min(op.length - self._op_done, n - i)
                i += take
                self._op_done += take
                if self._op_done < op.length:
                    return
                self._copied = False
            elif kind == _OPEN:
                job = op.job
                assert job is not None
                if op.close >= 0 and op.length:
                    if i == n:
                        return  # wait: the next chunk may hold the whole content
                    if borrow and n - i >= op.length:
                        job.content = view[i : i + op.length]
                        i += op.length
                        self._op = op.close
                        self._op_done = 0
                        continue
                job.dest = bytearray(job.size)
                job.content = job.dest
            else:  # _CLOSE
                job = op.job
                assert job is not None
                if job.content is None:
                    job.content = b""
                self._done_part(job)
            self._op += 1
            self._op_done = 0

    def _old_stream(self, index: int) -> Buffer:
        if self._old_streams is not None:
            blob = self._old_streams.get(index)
            if blob is None:
                raise CorruptPatchError(
                    f"layout: copy_from={index} names no stream of the old layout"
                )
            return blob
        if self._old_list is None:
            if self._old_original is None or self._old_layout is None:
                raise InvalidArgumentError(
                    "layout copies streams from the old artifact: pass old_original and "
                    "old_layout"
                )
            self._old_list = compressed_bytes_of_deflate_nodes(self._old_layout, self._old_original)
        if not 0 <= index < len(self._old_list):
            raise CorruptPatchError(f"layout: copy_from={index} names no stream of the old layout")
        return self._old_list[index]

    # -- jobs ---------------------------------------------------------------------------------

    def _done_part(self, job: _Job) -> None:
        """The feed of ``job`` is complete: run it now (serial) or hand it to a worker once
        its children are done."""
        if self._threads == 1:
            job.pending -= 1
            if job.pending == 0:
                self._run_chain(job)
            return
        with self._lock:
            job.pending -= 1
            if job.pending:
                return  # the last child's worker continues with it
            while self._queued > self._max_in_flight and self._running and self._error is None:
                self._idle.wait()
            self._queued += job.size
            self._running += 1
        try:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="rc-rebuild")
            self._pool.submit(self._worker, job)
        except BaseException:
            with self._lock:
                self._queued -= job.size
                self._running -= 1
            raise

    def _worker(self, job: _Job) -> None:
        try:
            self._run_chain(job)
        except BaseException as exc:  # re-raised in the feeding thread
            with self._lock:
                if self._error is None:
                    self._error = exc
        finally:
            with self._lock:
                self._running -= 1
                self._idle.notify_all()

    def _run_chain(self, job: _Job) -> None:
        """Recompress ``job``, then every parent whose last dependency it was."""
        serial = self._threads == 1
        cur: _Job | None = job
        while cur is not None:
            if self._error is not None:
                if not serial:
                    with self._lock:
                        self._queued -= cur.size
                return
            try:
                self._recompress(cur)
            finally:
                if not serial:
                    with self._lock:
                        self._queued -= cur.size
            parent = cur.parent
            if parent is None:
                return
            if serial:
                parent.pending -= 1
                ready = parent.pending == 0
            else:
                with self._lock:
                    parent.pending -= 1
                    ready = parent.pending == 0
                    if ready:
                        self._queued += parent.size
            cur = parent if ready else None

    def _recompress(self, job: _Job) -> None:
        node = job.node
        content = job.content
        assert content is not None
        dest = self._out if job.parent is None else job.parent.dest
        assert dest is not None
        at = job.dest_off
        out = memoryview(dest)[at : at + node.clen]
        try:
            if node.params.engine == RECON:
                from ._reconstruct import rebuild_stream_into

                rebuild_stream_into(content, node.params.record, out)
                produced = node.clen
            else:
                produced = 0
                for piece in deflate(content, node.params, clen=node.clen):
                    n = len(piece)
                    if produced + n > node.clen:
                        produced += n
                        break
                    out[produced : produced + n] = piece
                    produced += n
        except (zlib.error, ValueError) as exc:
            raise CorruptPatchError(f"layout: zlib refused {node.params}: {exc}") from None
        finally:
            out.release()
            job.content = None  # not needed any more: free it now
            job.dest = None
        if produced != node.clen:
            raise CorruptPatchError(
                f"layout: recompressed stream is not {node.clen} bytes "
                "(parameters or content do not match)"
            )

    # -- end ----------------------------------------------------------------------------------

    def _raise_error(self) -> None:
        if self._error is not None:
            self._shutdown()
            raise self._error

    def _shutdown(self) -> None:
        self._finished = True
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def finish(self) -> bytes:
        """The artifact, once every stream is recompressed. CorruptPatchError when fewer bytes
        than the layout's expanded size were fed or any stream did not rebuild."""
        if self._finished:
            self._raise_error()
            raise InvalidArgumentError("Rebuilder: finish() after finish() or an error")
        self._shutdown()
        if self._error is not None:
            raise self._error
        if self._pos != self.expanded_size:
            raise CorruptPatchError(
                f"expanded form is {self._pos} bytes but the layout needs {self.expanded_size}"
            )
        out, self._out = self._out, bytearray()
        return bytes(out)

    def close(self) -> None:
        """Stop the workers without a result (after an error elsewhere); idempotent."""
        self._shutdown()

    def __enter__(self) -> Rebuilder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def rebuild(
    layout: Layout,
    expanded: Buffer,
    *,
    old_original: Buffer | None = None,
    old_layout: Layout | None = None,
    max_output_size: int = DEFAULT_MAX_OUTPUT_SIZE,
    old_streams: Mapping[int, Buffer] | None = None,
    threads: int | None = None,
) -> bytes:
    """Recompress and reassemble the original bytes from the expanded form.

    Deflate nodes with ``copy_from`` take their compressed bytes from ``old_original`` (laid out
    by ``old_layout``), or from ``old_streams`` (preorder index -> compressed bytes, as
    :func:`expand_known` keeps them) when given. Raises OutputTooLargeError
    before allocating if the layout declares more than ``max_output_size`` bytes, and
    CorruptPatchError on any size inconsistency. The caller still verifies the result's digest.
    Streams are recompressed by ``threads`` workers (see :class:`Rebuilder`); ``expanded`` is
    read in place (members are not copied) and must not change during the call.
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
    with Rebuilder(
        layout,
        threads=threads,
        max_output_size=max_output_size,
        old_original=old_original,
        old_layout=old_layout,
        old_streams=old_streams,
    ) as rb:
        rb._borrow = True  # the whole form is here and unchanged until we return
        rb.feed(exp)
        return rb.finish()
