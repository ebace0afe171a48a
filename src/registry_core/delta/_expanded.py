"""Method 5 EXPANDED: an artifact recompressed for a first download, rebuilt byte-exact.

A first download has no base to diff against, and zstd over deflate-compressed bytes gains
nothing. An EXPANDED patch is made against the *empty* base: its LAYOUT section is the target's
layout (which deflate streams it holds and how to reproduce each, :mod:`._layout`) and its
CONTENT section is the target's expanded form (every reproducible stream inflated) as one zstd
frame, level 19 by default, long-distance matching on, the window the smallest power of two
covering the expanded form (at most :data:`EXPANDED_MAX_WINDOW_LOG`). ``apply(b"", patch)``
decompresses the content, recompresses every stream with the recorded parameters and checks the
target SHA-256 (docs/delta-format.md, "Method 5").

Two decoders: :func:`decode` (a parsed patch in memory, what ``DeltaAggregator.apply`` uses) and
:class:`ExpandedDecoder` (sans-IO, fed the patch bytes as they arrive; the transport uses it so
decompression and recompression run while the body is still on the wire). Both bound every size
by the caller's limits before allocating for it and raise registry_core errors only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._util import byte_view
from ..errors import (
    CorruptPatchError,
    OutputTooLargeError,
)
from ._format import (
    LAYOUT_SECTION_LIMIT,
    MAGIC,
    SHA_LEN,
    Codec,
    Method,
    Patch,
    Section,
    encode_section,
    serialize,
)

if TYPE_CHECKING:  # pragma: no cover
    from ._layout import Layout

Buffer = bytes | bytearray | memoryview

#: log2 of the largest zstd window a CONTENT frame may use (128 MiB, zstd's default decoder
#: limit): the encoder never asks for more and the decoders refuse more (``max_window_size``),
#: so a hostile frame cannot make a client allocate a larger window.
EXPANDED_MAX_WINDOW_LOG = 27
EXPANDED_MAX_WINDOW = 1 << EXPANDED_MAX_WINDOW_LOG
#: SHA-256 of the empty byte string: the base of every EXPANDED patch.
EMPTY_SHA256 = hashlib.sha256(b"").digest()
#: Input fed to zstd per call in the streaming decoder. zstd's densest block (RLE) turns 4
#: bytes into 128 KiB, so one call yields at most ~32 MiB however hostile the frame; the
#: output is checked against the layout's expanded size after every call.
_FEED_SLICE = 1 << 10
#: Longest patch header before the first section (magic, version, method, flags, two varints,
#: two digests, the section count) and longest section header (kind, codec, two varints).
_MAX_HEADER = len(MAGIC) + 3 + 10 + 10 + 2 * SHA_LEN + 10
_MAX_SECTION_HEADER = 2 + 10 + 10


def window_log(size: int) -> int:
    """The smallest zstd window log covering ``size`` bytes, within zstd's minimum and
    :data:`EXPANDED_MAX_WINDOW_LOG`."""
    import zstandard

    return min(
        max(zstandard.WINDOWLOG_MIN, (max(1, size) - 1).bit_length()), EXPANDED_MAX_WINDOW_LOG
    )


def compress_content(expanded: Buffer, *, level: int = 19, ldm: bool = True) -> bytes:
    """The CONTENT frame: ``expanded`` as one zstd frame (content size written, no checksum or
    dictionary id: the patch's target SHA-256 verifies the output)."""
    import zstandard

    params = zstandard.ZstdCompressionParameters.from_level(
        level,
        source_size=len(expanded),
        window_log=window_log(len(expanded)),
        enable_ldm=ldm,
        write_content_size=1,
        write_checksum=0,
        write_dict_id=0,
    )
    return zstandard.ZstdCompressor(compression_params=params).compress(expanded)


def encode(
    new: Buffer,
    *,
    level: int = 19,
    max_expanded_size: int,
    reconstruct: bool = True,
    memo: Any = None,
    stats: dict[str, object] | None = None,
) -> bytes | None:
    """The EXPANDED patch of ``new``, or None when no stream of it can be expanded.

    The caller decides whether the patch is worth serving (it must be smaller than ``new``).
    ``max_expanded_size`` bounds the expanded form (what ``apply`` accepts for this target).
    """
    from ._deflate import StreamPolicy
    from ._layout import expand_artifact

    view = byte_view(new, "new")
    policy = StreamPolicy(memo=memo, reconstruct=reconstruct)
    x = expand_artifact(
        view, max_expanded_size=max(0, max_expanded_size - len(view)), policy=policy
    )
    if not x.digests:
        return None
    layout = x.layout
    expanded = x.expanded()
    del x
    frame = compress_content(expanded, level=level)
    if stats is not None:
        stats.update(
            expanded_target=len(expanded),
            target_streams=len(layout.deflate_entries()),
            reconstructed_streams=policy.reconstructed,
            failed_streams=policy.failed,
            window_log=window_log(len(expanded)),
            content_bytes=len(frame),
        )
    del expanded
    sections = [
        encode_section(Section.LAYOUT, layout.to_bytes(), level=level),
        (Section.CONTENT, Codec.STORED, len(frame), frame),
    ]
    return serialize(
        Method.EXPANDED,
        base_size=0,
        target_size=len(view),
        base_sha256=EMPTY_SHA256,
        target_sha256=hashlib.sha256(view).digest(),
        sections=sections,
    )


# -- checks shared by both decoders --------------------------------------------------------


def _check_header(base_size: int, base_sha256: bytes, target_size: int, max_output: int) -> None:
    if base_size != 0 or base_sha256 != EMPTY_SHA256:
        raise CorruptPatchError(
            "EXPANDED patch names a non-empty base (its base must be the empty byte string)"
        )
    if target_size > max_output:
        raise OutputTooLargeError(
            f"patch declares a {target_size}-byte output, above max_output_size={max_output}"
        )


def _read_layout(data: Buffer, target_size: int, limit: int) -> Layout:
    """The target's layout, checked against the declared size, the expansion limit, the engines
    this platform reproduces, and for copies (an EXPANDED layout has nothing to copy from)."""
    from ._aggregator import _check_engines
    from ._layout import Layout

    layout = Layout.from_bytes(data)
    if layout.original_size() != target_size:
        raise CorruptPatchError(
            f"EXPANDED layout describes {layout.original_size()} bytes, the patch {target_size}"
        )
    if layout.expanded_size() > limit:
        raise OutputTooLargeError(
            f"patch needs an expanded form of {layout.expanded_size()} bytes, above "
            f"max_expanded_size={limit}"
        )
    entries = layout.deflate_entries()
    if any(e.node.copy_from is not None for e in entries):
        raise CorruptPatchError("EXPANDED layout copies a stream from a base (it has none)")
    _check_engines(entries)
    return layout


def _check_frame(head: Buffer, expanded_size: int) -> None:
    """The CONTENT frame header: declares exactly the layout's expanded size, a window within
    :data:`EXPANDED_MAX_WINDOW`, and no dictionary."""
    import zstandard

    try:
        fp = zstandard.get_frame_parameters(head)
    except zstandard.ZstdError as exc:
        raise CorruptPatchError(f"EXPANDED content frame header is malformed: {exc}") from exc
    if fp.content_size != expanded_size:
        raise CorruptPatchError(
            f"EXPANDED content frame declares {fp.content_size} bytes, the layout {expanded_size}"
        )
    if fp.window_size > EXPANDED_MAX_WINDOW:
        raise OutputTooLargeError(
            f"EXPANDED content frame needs a {fp.window_size}-byte window, above the limit of "
            f"{EXPANDED_MAX_WINDOW}"
        )
    if fp.dict_id != 0:
        raise CorruptPatchError(f"EXPANDED content frame names dictionary id {fp.dict_id}")


def _rebuild(layout: Layout, expanded: Buffer, target_size: int, threads: int | None) -> bytes:
    from . import _layout

    builder = getattr(_layout, "Rebuilder", None)
    if builder is not None:
        rb = builder(layout, threads=threads, max_output_size=target_size)
        rb.feed(expanded)
        return bytes(rb.finish())
    return _layout.rebuild(layout, expanded, max_output_size=target_size)


def decode(
    p: Patch,
    *,
    max_output_size: int,
    expanded_limit: Callable[[int], int],
    threads: int | None = None,
) -> bytes:
    """Rebuild the target of a parsed EXPANDED patch (the caller verifies size and SHA-256)."""
    import zstandard

    _check_header(p.base_size, p.base_sha256, p.target_size, max_output_size)
    if list(p.sections) != [Section.LAYOUT, Section.CONTENT]:
        raise CorruptPatchError("EXPANDED patch sections must be LAYOUT then CONTENT")
    layout = _read_layout(
        p.section(Section.LAYOUT, limit=LAYOUT_SECTION_LIMIT),
        p.target_size,
        expanded_limit(p.target_size),
    )
    sec = p.sections[Section.CONTENT]
    if sec.codec != Codec.STORED or len(sec.payload) != sec.raw_len:
        raise CorruptPatchError("EXPANDED section CONTENT must be stored, with its own length")
    size = layout.expanded_size()
    _check_frame(sec.payload, size)
    dctx = zstandard.ZstdDecompressor(max_window_size=EXPANDED_MAX_WINDOW)
    try:
        expanded = dctx.decompress(sec.payload, max_output_size=size, allow_extra_data=False)
    except zstandard.ZstdError as exc:
        raise CorruptPatchError(f"EXPANDED content does not decompress: {exc}") from exc
    if len(expanded) != size:
        raise CorruptPatchError(
            f"EXPANDED content decompressed to {len(expanded)} bytes, the layout needs {size}"
        )
    return _rebuild(layout, expanded, p.target_size, threads)


__all__ = [
    "EMPTY_SHA256",
    "EXPANDED_MAX_WINDOW_LOG",
    "compress_content",
    "decode",
    "encode",
    "window_log",
]
