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

from .._util import byte_view, decode_uvarint
from ..errors import CorruptPatchError, InvalidArgumentError, OutputTooLargeError
from ._format import (
    LAYOUT_SECTION_LIMIT,
    MAGIC,
    SHA_LEN,
    VERSION,
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
    exe: bool = False,
    stats: dict[str, object] | None = None,
) -> bytes | None:
    """The EXPANDED patch of ``new``, or None when no stream of it can be expanded.

    The caller decides whether the patch is worth serving (it must be smaller than ``new``).
    ``max_expanded_size`` bounds the expanded form (what ``apply`` accepts for this target).
    With ``exe``, executable code in the expanded form (ELF / Mach-O / PE, :mod:`._exe`) is
    also tried with its branch targets made absolute before compression; kept (an EXEC section
    with the record) only when the patch gets smaller.
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
    exec_body = None
    if exe:
        from . import _exe

        record = _exe.plan(expanded)
        if record is not None:
            body = _exe.encode_record(None, record)
            frame_x = compress_content(_exe.forward(expanded, record), level=level)
            if len(frame_x) + len(body) + 4 < len(frame):
                frame, exec_body = frame_x, body
    if stats is not None:
        stats["exec"] = exec_body is not None
        stats.update(
            expanded_target=len(expanded),
            target_streams=len(layout.deflate_entries()),
            reconstructed_streams=policy.reconstructed,
            failed_streams=policy.failed,
            window_log=window_log(len(expanded)),
            content_bytes=len(frame),
        )
    del expanded
    sections = [encode_section(Section.LAYOUT, layout.to_bytes(), level=level)]
    if exec_body is not None:
        sections.append(encode_section(Section.EXEC, exec_body, level=level))
    sections.append((Section.CONTENT, Codec.STORED, len(frame), frame))
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


def _read_exec(data: Buffer, expanded_size: int) -> Any:
    """The EXEC record of an EXPANDED patch: target ranges only, inside the expanded form."""
    from ._exe import ExeLimits, decode_record

    src, tgt = decode_record(data, limits=ExeLimits(source_size=0, target_size=expanded_size))
    if src is not None or tgt is None:
        raise CorruptPatchError("EXPANDED section EXEC must hold target code ranges only")
    return tgt


def _exec_limit() -> int:
    from ._exe import MAX_RECORD_BYTES

    return MAX_RECORD_BYTES


_ORDERS = ([Section.LAYOUT, Section.CONTENT], [Section.LAYOUT, Section.EXEC, Section.CONTENT])


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
    from ._layout import rebuild

    return rebuild(layout, expanded, max_output_size=target_size, threads=threads)


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
    if list(p.sections) not in _ORDERS:
        raise CorruptPatchError("EXPANDED patch sections must be LAYOUT, [EXEC,] CONTENT")
    layout = _read_layout(
        p.section(Section.LAYOUT, limit=LAYOUT_SECTION_LIMIT),
        p.target_size,
        expanded_limit(p.target_size),
    )
    sec = p.sections[Section.CONTENT]
    if sec.codec != Codec.STORED or len(sec.payload) != sec.raw_len:
        raise CorruptPatchError("EXPANDED section CONTENT must be stored, with its own length")
    size = layout.expanded_size()
    record = None
    if Section.EXEC in p.sections:
        record = _read_exec(p.section(Section.EXEC, limit=_exec_limit()), size)
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
    if record is not None:
        from ._exe import inverse

        expanded = bytearray(expanded)
        inverse(expanded, record)
    return _rebuild(layout, expanded, p.target_size, threads)


# -- streaming -------------------------------------------------------------------------------

_HEADER, _SECTION, _LAYOUT, _CONTENT, _TRAILER, _DONE, _FAILED = range(7)
#: Bytes of a zstd frame header at most (magic, descriptor, window, dictionary id, size).
_FRAME_HEADER_MAX = 18


def _uvarint(buf: Buffer, pos: int) -> tuple[int, int] | None:
    """The varint at ``pos``, or None when ``buf`` ends inside it (more bytes are needed)."""
    end = min(len(buf), pos + 10)
    for i in range(pos, end):
        if not buf[i] & 0x80:
            return decode_uvarint(buf, pos)
    if end - pos >= 10:
        return decode_uvarint(buf, pos)  # over-long: refused there
    return None


class ExpandedDecoder:
    """Sans-IO decoder of an EXPANDED patch fed in pieces as they arrive; ``finish()`` returns
    the verified artifact.

    The header is checked as soon as it is complete (method, empty base, declared size against
    ``max_output_size``, the target digest against ``expected_sha256`` when given), then the
    LAYOUT section (bounded, checked against ``max_expanded_size`` and the engines this
    platform reproduces) before any content is decoded; CONTENT is decompressed as it arrives,
    its output never past the layout's expanded size. The patch trailer is hashed on the way
    and compared at ``finish()``, then the rebuilt artifact's SHA-256: nothing is returned
    before both match. The expanded bytes go straight to a :class:`~._layout.Rebuilder`, which
    recompresses complete deflate nodes in worker threads while the body is still arriving.
    Memory: the output (allocated once the layout is checked), the Rebuilder's in-flight node
    contents (bounded, see there), the layout section, zstd's window (at most 128 MiB) and at
    most ~32 MiB of zstd output per input slice (see ``_FEED_SLICE``); never the whole expanded
    form. Every malformed,
    truncated or over-long input raises a registry_core error; after an error the decoder
    refuses further use.
    """

    def __init__(
        self,
        *,
        max_output_size: int = 2 << 30,
        max_expanded_size: int | None = None,
        expected_sha256: bytes | None = None,
        threads: int | None = None,
    ) -> None:
        if max_output_size <= 0:
            raise InvalidArgumentError("max_output_size must be positive")
        if max_expanded_size is not None and max_expanded_size <= 0:
            raise InvalidArgumentError("max_expanded_size must be positive")
        if expected_sha256 is not None and len(expected_sha256) != SHA_LEN:
            raise InvalidArgumentError("expected_sha256 must be 32 bytes")
        self.max_output_size = max_output_size
        self.max_expanded_size = max_expanded_size
        self.expected_sha256 = expected_sha256
        self.threads = threads
        self._state = _HEADER
        self._buf = bytearray()  # the header, a section header, the layout or the trailer
        self._hash = hashlib.sha256()  # every byte before the trailer
        self._section = 0
        self._left = 0  # bytes left in the current section's payload
        self._layout_codec = Codec.STORED
        self._layout_raw = 0
        self.target_size = 0
        self.target_sha256 = b""
        self.layout: Layout | None = None
        self._expanded_size = 0
        self._head = bytearray()  # the CONTENT frame's first bytes, until its header is checked
        self._dobj: Any = None
        self._produced = 0
        self._rebuilder: Any = None
        self._order = _ORDERS[0]
        self._record: Any = None  # the EXEC record, when the patch has one
        self._held = bytearray()  # the expanded form, only with an EXEC record
        self.received = 0

    # -- public --------------------------------------------------------------------------------

    def feed(self, chunk: Buffer) -> None:
        """Take the next bytes of the patch (any size, including empty)."""
        view = byte_view(chunk, "chunk")
        if self._state == _FAILED:
            raise CorruptPatchError("ExpandedDecoder: an earlier error ended this decode")
        try:
            self.received += len(view)
            while len(view):
                view = self._step(view)
        except BaseException:
            self._fail()
            raise

    def close(self) -> None:
        """Stop the rebuild workers and drop what was decoded (after an error, or to abandon a
        download); ``finish`` and errors call it themselves."""
        self._fail()

    def _fail(self) -> None:
        self._state = _FAILED
        self._held = bytearray()
        if self._rebuilder is not None:
            self._rebuilder.close()
            self._rebuilder = None

    def finish(self) -> bytes:
        """The rebuilt artifact, once the trailer and the target SHA-256 both matched."""
        if self._state == _FAILED:
            raise CorruptPatchError("ExpandedDecoder: an earlier error ended this decode")
        try:
            return self._finish()
        finally:
            self._fail()  # one result per decoder

    # -- steps -----------------------------------------------------------------------------------

    def _step(self, view: memoryview) -> memoryview:
        state = self._state
        if state == _HEADER:
            return self._small(view, _MAX_HEADER, self._parse_header)
        if state == _SECTION:
            return self._small(view, _MAX_SECTION_HEADER, self._parse_section)
        if state == _LAYOUT:
            take = view[: self._left]
            self._buf += take
            self._hash.update(take)
            self._left -= len(take)
            if not self._left:
                self._buffered_done()
            return view[len(take) :]
        if state == _CONTENT:
            take = view[: self._left]
            self._hash.update(take)
            self._left -= len(take)
            self._content(take)
            if not self._left:
                if not self._dobj.eof:
                    raise CorruptPatchError("EXPANDED content frame is truncated")
                self._state = _TRAILER
            return view[len(take) :]
        if state == _TRAILER:
            take = view[: SHA_LEN - len(self._buf)]
            self._buf += take
            if len(self._buf) == SHA_LEN:
                self._state = _DONE
            return view[len(take) :]
        raise CorruptPatchError(
            f"EXPANDED patch is longer than it declares ({self.received} bytes received)"
        )

    def _small(
        self, view: memoryview, cap: int, parse: Callable[[bytearray], int | None]
    ) -> memoryview:
        """Accumulate a short header and parse it; the bytes past it are handed back."""
        old = len(self._buf)
        self._buf += view[: cap - old]
        used = parse(self._buf)
        if used is None:
            if len(self._buf) >= cap:  # pragma: no cover - the parsers decide within cap
                raise CorruptPatchError("EXPANDED patch header is malformed")
            return view[len(self._buf) - old :]
        self._hash.update(self._buf[:used])
        del self._buf[:]
        return view[used - old :]

    def _parse_header(self, buf: bytearray) -> int | None:
        if bytes(buf[:4]) != MAGIC[: len(buf[:4])]:
            raise CorruptPatchError("not a registry-core patch (bad magic)")
        if len(buf) < 7:
            return None
        version, method, flags = buf[4], buf[5], buf[6]
        if version != VERSION:
            raise CorruptPatchError(
                f"patch format version {version} is not supported by this reader (version "
                f"{VERSION}); upgrade registry-core"
            )
        if method != Method.EXPANDED:
            raise CorruptPatchError(f"not an EXPANDED patch (method {method})")
        if flags:
            raise CorruptPatchError(f"unknown patch flags {flags:#x} for an EXPANDED patch")
        got = _uvarint(buf, 7)
        if got is None:
            return None
        base_size, pos = got
        got = _uvarint(buf, pos)
        if got is None:
            return None
        target_size, pos = got
        if len(buf) < pos + 2 * SHA_LEN + 1:
            return None
        base_sha = bytes(buf[pos : pos + SHA_LEN])
        target_sha = bytes(buf[pos + SHA_LEN : pos + 2 * SHA_LEN])
        got = _uvarint(buf, pos + 2 * SHA_LEN)
        if got is None:
            return None
        count, pos = got
        _check_header(base_size, base_sha, target_size, self.max_output_size)
        if count not in (2, 3):
            raise CorruptPatchError(
                f"EXPANDED patch declares {count} sections (LAYOUT, optionally EXEC, CONTENT)"
            )
        self._order = _ORDERS[count - 2]
        if self.expected_sha256 is not None and target_sha != self.expected_sha256:
            raise CorruptPatchError("EXPANDED patch is for another target (its SHA-256 differs)")
        self.target_size, self.target_sha256 = target_size, target_sha
        self._state = _SECTION
        return pos

    def _parse_section(self, buf: bytearray) -> int | None:
        if len(buf) < 2:
            return None
        got = _uvarint(buf, 2)
        if got is None:
            return None
        raw_len, pos = got
        got = _uvarint(buf, pos)
        if got is None:
            return None
        stored_len, pos = got
        kind, codec = buf[0], buf[1]
        want = self._order[self._section]
        if kind != want:
            raise CorruptPatchError(
                f"EXPANDED patch section {self._section} must be {want.name} (kind {int(want)}), "
                f"not kind {kind}"
            )
        if codec not in (Codec.STORED, Codec.ZSTD) or (
            kind == Section.CONTENT and codec != Codec.STORED
        ):
            raise CorruptPatchError(f"EXPANDED section {want.name} has codec {codec}")
        if codec == Codec.STORED and raw_len != stored_len:
            raise CorruptPatchError(f"EXPANDED section {want.name} has the wrong length")
        self._left = stored_len
        self._section += 1
        if kind != Section.CONTENT:
            limit = LAYOUT_SECTION_LIMIT if kind == Section.LAYOUT else _exec_limit()
            if raw_len > limit or stored_len > limit:
                raise OutputTooLargeError(
                    f"EXPANDED section {want.name} declares {max(raw_len, stored_len)} bytes, "
                    f"above the limit of {limit}"
                )
            self._layout_codec, self._layout_raw = Codec(codec), raw_len
            self._state = _LAYOUT
            if not stored_len:
                self._buffered_done()
        else:
            self._state = _CONTENT
            if not stored_len:
                raise CorruptPatchError("EXPANDED section CONTENT is empty (no zstd frame)")
        return pos

    def _buffered_done(self) -> None:
        """A LAYOUT or EXEC section is complete: decode and check it."""
        from ._format import _zstd_decompress

        kind = self._order[self._section - 1]
        data = bytes(self._buf)
        del self._buf[:]
        if self._layout_codec == Codec.ZSTD:
            data = _zstd_decompress(memoryview(data), self._layout_raw, kind)
        self._state = _SECTION
        if kind == Section.EXEC:
            self._record = _read_exec(data, self._expanded_size)
            return
        limit = self.max_expanded_size
        if limit is None:
            from ._layout import default_max_expanded_size

            limit = default_max_expanded_size(self.target_size)
        self.layout = _read_layout(data, self.target_size, limit)
        self._expanded_size = self.layout.expanded_size()
        from ._layout import Rebuilder

        # Deflate nodes are recompressed in worker threads as their content arrives.
        self._rebuilder = Rebuilder(
            self.layout, threads=self.threads, max_output_size=self.target_size
        )

    def _content(self, data: memoryview) -> None:
        import zstandard

        if self._dobj is None:
            # The frame header is checked (size, window, no dictionary) before zstd sees it.
            need = min(_FRAME_HEADER_MAX, len(self._head) + len(data) + self._left)
            take = need - len(self._head)
            self._head += data[:take]
            if len(self._head) < need:
                return
            _check_frame(self._head, self._expanded_size)
            self._dobj = zstandard.ZstdDecompressor(
                max_window_size=EXPANDED_MAX_WINDOW
            ).decompressobj()
            head = memoryview(bytes(self._head))
            self._head = bytearray()
            self._decompress(head)
            data = data[take:]
        self._decompress(data)

    def _decompress(self, data: memoryview) -> None:
        import zstandard

        for i in range(0, len(data), _FEED_SLICE):
            if self._dobj.eof:
                raise CorruptPatchError("EXPANDED section CONTENT has bytes after its frame")
            try:
                out = self._dobj.decompress(data[i : i + _FEED_SLICE])
            except zstandard.ZstdError as exc:
                raise CorruptPatchError(f"EXPANDED content does not decompress: {exc}") from exc
            if not out:
                continue
            self._produced += len(out)
            if self._produced > self._expanded_size:
                raise CorruptPatchError(
                    f"EXPANDED content decompresses past the layout's {self._expanded_size} bytes"
                )
            if self._record is not None:
                self._held += out  # the inverse transform needs the whole expanded form
            else:
                self._rebuilder.feed(out)
        if self._dobj.eof and self._dobj.unused_data:
            raise CorruptPatchError("EXPANDED section CONTENT has bytes after its frame")

    def _finish(self) -> bytes:
        if self._state != _DONE:
            raise CorruptPatchError(f"EXPANDED patch is truncated ({self.received} bytes received)")
        if self._hash.digest() != bytes(self._buf):
            raise CorruptPatchError("patch checksum mismatch: the patch is corrupted or truncated")
        if self._produced != self._expanded_size:
            raise CorruptPatchError(
                f"EXPANDED content decompressed to {self._produced} bytes, the layout needs "
                f"{self._expanded_size}"
            )
        assert self._rebuilder is not None
        if self._record is not None:
            from ._exe import inverse

            inverse(self._held, self._record)
            self._rebuilder.feed(self._held)
            self._held = bytearray()
        out = self._rebuilder.finish()
        if len(out) != self.target_size:
            raise CorruptPatchError(
                f"rebuilt output is {len(out)} bytes but the patch declares {self.target_size}"
            )
        if hashlib.sha256(out).digest() != self.target_sha256:
            raise CorruptPatchError("rebuilt output does not match the target SHA-256 in the patch")
        return out


__all__ = [
    "EMPTY_SHA256",
    "EXPANDED_MAX_WINDOW_LOG",
    "ExpandedDecoder",
    "compress_content",
    "decode",
    "encode",
    "window_log",
]
