"""The registry-core patch container (format version 1), sans-IO.

Layout (all integers are unsigned LEB128 varints unless noted; see docs/delta-format.md)::

    magic   b"RCDP"
    version u8 = 1
    method  u8: 0 FULL, 1 BINARY, 2 ARCHIVE, 3 CHAIN, 4 ZSTD_PREFIX, 5 EXPANDED
    flags   u8: bit 0 RAW_BASE (ARCHIVE only: the delta source is the expanded base followed
            by the base itself); readers reject other bits
    base_size, target_size
    base_sha256 (32 bytes), target_sha256 (32 bytes)
    section_count, then per section: kind u8, codec u8 (0 stored, 1 zstd), raw_len,
        stored_len, bytes
    trailer: SHA-256 (32 bytes) of every byte before it

Sections by method: FULL has TARGET; BINARY has CTRL, DIFF, EXTRA; ARCHIVE has LAYOUTS
(the base's and the target's layout in one section), CTRL, DIFF, EXTRA; CHAIN has PATCHES;
ZSTD_PREFIX has FRAME (stored: a zstd frame of the target with the base as its dictionary);
EXPANDED has LAYOUT then CONTENT (stored: one zstd frame of the target's expanded form; the base
is empty; see :mod:`._expanded`).
Parsing checks the trailer first, so a corrupted patch is refused
before anything is decompressed, and every declared size is checked against caller limits before
a byte is allocated for it.
"""

from __future__ import annotations

import enum
import hashlib
import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .._util import byte_view, decode_uvarint, encode_uvarint
from ..errors import CorruptPatchError, OutputTooLargeError

if TYPE_CHECKING:  # pragma: no cover
    from ._binary import Streams
    from ._layout import Layout

MAGIC = b"RCDP"
FLAG_RAW_BASE = 0x01
VERSION = 1
SHA_LEN = 32
#: The shortest well-formed patch: header with one-byte sizes, digests, a section count of 0.
MIN_PATCH_SIZE = len(MAGIC) + 3 + 2 + 2 * SHA_LEN + 1 + SHA_LEN
_MAX_SECTIONS = 16
#: Members a CHAIN patch may hold (compose merges same-kind patches, so real chains are short).
MAX_CHAIN_MEMBERS = 1 << 12
#: Largest LAYOUTS section: two layouts of at most ``DEFAULT_MAX_NODES`` nodes, each node at
#: most 30 bytes (tag, three 9-byte varints, two parameter bytes).
LAYOUT_SECTION_LIMIT = 64 << 20
# zstd's highest levels cost ~40x level 13 on multi-MB sections for ~10% in size (measured on the
# DIFF stream of a native wheel: 20 MB -> 1.71 MB in 21 s at 19, 1.96 MB in 2.8 s at 13).
BIG_SECTION = 8 << 20
BIG_SECTION_LEVEL = 13


class Method(enum.IntEnum):
    FULL = 0
    BINARY = 1
    ARCHIVE = 2
    CHAIN = 3  # patches applied in sequence (compose of patches that cannot be merged)
    ZSTD_PREFIX = 4  # the target as a zstd frame with the base as raw-content dictionary
    EXPANDED = 5  # against the empty base: the target's layout plus its expanded content


class Section(enum.IntEnum):
    TARGET = 0
    CTRL = 1
    DIFF = 2
    EXTRA = 3
    LAYOUTS = 4  # uvarint len(old layout), old layout, new layout (one zstd frame)
    PATCHES = 5  # uvarint count, then per patch: uvarint length, a complete non-CHAIN patch
    FRAME = 6  # one zstd frame decoded with the base as its dictionary (codec STORED)
    LAYOUT = 7  # EXPANDED: the target's layout alone
    CONTENT = 8  # EXPANDED: the target's expanded form (one zstd frame, codec STORED)
    EXEC = 9  # optional in BINARY / ARCHIVE: executable code transforms (delta/_exe.py)


class Codec(enum.IntEnum):
    STORED = 0
    ZSTD = 1


REQUIRED = {
    Method.FULL: (Section.TARGET,),
    Method.BINARY: (Section.CTRL, Section.DIFF, Section.EXTRA),
    Method.ARCHIVE: (Section.LAYOUTS, Section.CTRL, Section.DIFF, Section.EXTRA),
    Method.CHAIN: (Section.PATCHES,),
    Method.ZSTD_PREFIX: (Section.FRAME,),
    Method.EXPANDED: (Section.LAYOUT, Section.CONTENT),
}
#: Sections a method may carry besides its required ones.
OPTIONAL: dict[Method, tuple[Section, ...]] = {
    Method.BINARY: (Section.EXEC,),
    Method.ARCHIVE: (Section.EXEC,),
    Method.EXPANDED: (Section.EXEC,),  # between LAYOUT and CONTENT: see delta/_expanded.py
}


@dataclass
class RawSection:
    """A section as stored: still compressed."""

    kind: Section
    codec: Codec
    raw_len: int
    payload: memoryview


@dataclass
class Patch:
    """A parsed patch: header fields plus its (still compressed) sections."""

    method: Method
    base_size: int
    target_size: int
    base_sha256: bytes
    target_sha256: bytes
    sections: dict[Section, RawSection] = field(default_factory=dict)
    flags: int = 0

    def section(self, kind: Section, *, limit: int, one_buffer: bool = False) -> bytes:
        """Decompress one section, refusing a declared size above ``limit``.

        The declared size is only an upper bound: memory is taken as the decoder really
        produces output (never ``raw_len`` up front), so a tiny section declaring gigabytes
        costs nothing before it is refused. Large sections are decoded in growing pieces joined
        at the end (a transient second copy); with ``one_buffer`` (a FULL patch's target,
        returned to the caller as is) a first pass only counts the output, then one buffer of
        the proven size is filled: twice the decoding time, never twice the memory.
        """
        sec = self.sections[kind]
        if sec.raw_len > limit:
            raise OutputTooLargeError(
                f"patch section {kind.name} declares {sec.raw_len} bytes, above the limit of "
                f"{limit}; raise max_output_size if this patch is trusted"
            )
        if sec.codec == Codec.STORED:
            if len(sec.payload) != sec.raw_len:
                raise CorruptPatchError(f"patch section {kind.name} has the wrong length")
            return bytes(sec.payload)
        if one_buffer and sec.raw_len > _FIRST_READ:
            _zstd_decompress(sec.payload, sec.raw_len, kind, keep=False)
            return _zstd_decompress_exact(sec.payload, sec.raw_len, kind)
        return _zstd_decompress(sec.payload, sec.raw_len, kind)

    def peek(self, kind: Section, n: int) -> bytes:
        """The first ``n`` decoded bytes of a section (fewer if it is shorter), decoding no
        more than that: lets a reader check a section's own header before decoding it."""
        sec = self.sections[kind]
        if sec.codec == Codec.STORED:
            return bytes(sec.payload[:n])
        import zstandard

        try:
            reader = zstandard.ZstdDecompressor().stream_reader(
                io.BytesIO(sec.payload), read_across_frames=False
            )
            with reader:
                out = b""
                while len(out) < n:
                    piece = reader.read(n - len(out))
                    if not piece:
                        break
                    out += piece
                return out
        except zstandard.ZstdError as exc:
            raise CorruptPatchError(
                f"patch section {kind.name} does not decompress: {exc}"
            ) from exc


#: First read of a zstd section; each later read asks for at most what was produced so far,
#: so the buffers held are never more than twice the real output.
_FIRST_READ = 1 << 20


def _zstd_decompress_exact(payload: memoryview, raw_len: int, kind: Section) -> bytes:
    """One ``raw_len`` buffer: only once a first pass proved the section really is that long."""
    import zstandard

    try:
        reader = zstandard.ZstdDecompressor().stream_reader(
            io.BytesIO(payload), read_across_frames=False
        )
        with reader:
            data = reader.read(raw_len + 1)
            while len(data) <= raw_len:  # stream_reader.read may return short reads
                more = reader.read(raw_len + 1 - len(data))
                if not more:
                    break
                data += more
    except zstandard.ZstdError as exc:
        raise CorruptPatchError(f"patch section {kind.name} does not decompress: {exc}") from exc
    if len(data) != raw_len:
        raise CorruptPatchError(
            f"patch section {kind.name} decompressed to {len(data)} bytes, expected {raw_len}"
        )
    return data


def _zstd_decompress(
    payload: memoryview, raw_len: int, kind: Section, *, keep: bool = True
) -> bytes:
    import zstandard

    chunks: list[bytes] = []
    produced = 0
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(
            io.BytesIO(payload), read_across_frames=False
        )
        with reader:
            while produced <= raw_len:
                want = min(raw_len + 1 - produced, max(_FIRST_READ, produced if keep else 0))
                piece = reader.read(want)
                if not piece:
                    break
                if keep:
                    chunks.append(piece)
                produced += len(piece)
    except zstandard.ZstdError as exc:
        raise CorruptPatchError(f"patch section {kind.name} does not decompress: {exc}") from exc
    if produced != raw_len:
        raise CorruptPatchError(
            f"patch section {kind.name} decompressed to "
            f"{'more than ' if produced > raw_len else ''}{produced} bytes, expected {raw_len}"
        )
    if len(chunks) == 1:
        return chunks[0]
    data = b"".join(chunks)
    chunks.clear()
    return data


def encode_section(
    kind: Section, data: bytes | memoryview, *, level: int
) -> tuple[Section, Codec, int, bytes | memoryview]:
    """Compress a section with zstd, storing it instead when that is not smaller (no copy of
    ``data`` is made: a stored section's payload is ``data`` itself)."""
    import zstandard

    raw = data
    if len(raw):
        if len(raw) > BIG_SECTION:
            level = min(level, BIG_SECTION_LEVEL)
        params = zstandard.ZstdCompressionParameters.from_level(
            level, source_size=len(raw), enable_ldm=len(raw) > BIG_SECTION
        )
        comp = zstandard.ZstdCompressor(compression_params=params).compress(raw)
        if len(comp) < len(raw):
            return kind, Codec.ZSTD, len(raw), comp
    return kind, Codec.STORED, len(raw), raw


def serialize(
    method: Method,
    *,
    base_size: int,
    target_size: int,
    base_sha256: bytes,
    target_sha256: bytes,
    sections: list[tuple[Section, Codec, int, bytes]],
    flags: int = 0,
) -> bytes:
    """Write a patch; the trailer is the SHA-256 of everything before it."""
    out = bytearray(MAGIC)
    out += bytes((VERSION, int(method), flags))
    encode_uvarint(out, base_size)
    encode_uvarint(out, target_size)
    out += base_sha256
    out += target_sha256
    encode_uvarint(out, len(sections))
    for kind, codec, raw_len, payload in sections:
        out += bytes((int(kind), int(codec)))
        encode_uvarint(out, raw_len)
        encode_uvarint(out, len(payload))
        out += payload
    out += hashlib.sha256(out).digest()
    return bytes(out)


def parse(patch: bytes | bytearray | memoryview) -> Patch:
    """Parse and integrity-check a patch (trailer first); sections stay compressed."""
    view = byte_view(patch, "patch")
    if len(view) < MIN_PATCH_SIZE:
        raise CorruptPatchError(f"patch is truncated ({len(view)} bytes)")
    if bytes(view[:4]) != MAGIC:
        raise CorruptPatchError("not a registry-core patch (bad magic)")
    version, method, flags = view[4], view[5], view[6]
    if version != VERSION:
        raise CorruptPatchError(
            f"patch format version {version} is not supported by this reader (version {VERSION}); "
            "upgrade registry-core"
        )
    body, trailer = view[:-SHA_LEN], view[-SHA_LEN:]
    if hashlib.sha256(body).digest() != bytes(trailer):
        raise CorruptPatchError("patch checksum mismatch: the patch is corrupted or truncated")
    try:
        method_e = Method(method)
    except ValueError:
        raise CorruptPatchError(
            f"unknown patch method {method} (this reader knows "
            f"{', '.join(f'{m.value} {m.name}' for m in Method)}); upgrade registry-core"
        ) from None
    if flags & ~FLAG_RAW_BASE or (flags and method_e != Method.ARCHIVE):
        raise CorruptPatchError(f"unknown patch flags {flags:#x} for a {method_e.name} patch")
    pos = 7
    base_size, pos = decode_uvarint(body, pos)
    target_size, pos = decode_uvarint(body, pos)
    if pos + 2 * SHA_LEN > len(body):
        raise CorruptPatchError("patch is truncated (in the digests)")
    base_sha = bytes(body[pos : pos + SHA_LEN])
    target_sha = bytes(body[pos + SHA_LEN : pos + 2 * SHA_LEN])
    pos += 2 * SHA_LEN
    count, pos = decode_uvarint(body, pos)
    if count > _MAX_SECTIONS:
        raise CorruptPatchError(f"patch declares {count} sections")
    result = Patch(method_e, base_size, target_size, base_sha, target_sha, flags=flags)
    for _ in range(count):
        if pos + 2 > len(body):
            raise CorruptPatchError("patch is truncated (in a section header)")
        kind_b, codec_b = body[pos], body[pos + 1]
        pos += 2
        try:
            kind, codec = Section(kind_b), Codec(codec_b)
        except ValueError:
            raise CorruptPatchError(f"unknown section kind {kind_b} or codec {codec_b}") from None
        raw_len, pos = decode_uvarint(body, pos)
        stored_len, pos = decode_uvarint(body, pos)
        if stored_len > len(body) - pos:
            raise CorruptPatchError(f"patch section {kind.name} runs past the end of the patch")
        if kind in result.sections:
            raise CorruptPatchError(f"patch section {kind.name} appears twice")
        result.sections[kind] = RawSection(kind, codec, raw_len, body[pos : pos + stored_len])
        pos += stored_len
    if pos != len(body):
        raise CorruptPatchError("patch has trailing bytes after its sections")
    missing = [s.name for s in REQUIRED[method_e] if s not in result.sections]
    allowed = REQUIRED[method_e] + OPTIONAL.get(method_e, ())
    extra = [s.name for s in result.sections if s not in allowed]
    if missing or extra:
        raise CorruptPatchError(
            f"{method_e.name} patch has missing sections {missing} / unexpected sections {extra}"
        )
    frame = result.sections.get(Section.FRAME)
    if frame is not None and frame.codec != Codec.STORED:
        raise CorruptPatchError("ZSTD_PREFIX patch section FRAME must be stored (codec 0)")
    return result


# -- section helpers shared by diff, apply and compose --------------------------------------

# zstd releases the GIL: large stream sections compress side by side (measured on a native
# wheel: 1.42 s -> 1.0 s for the three sections on 2 cores).
_PARALLEL_SECTIONS = 1 << 20


def stream_sections(streams: Streams, *, level: int) -> list:
    """CTRL, DIFF and EXTRA sections of a delta body (in parallel threads above 1 MiB)."""
    jobs = [
        (Section.CTRL, streams.ctrl),
        (Section.DIFF, streams.diff),
        (Section.EXTRA, streams.extra),
    ]
    if sum(len(data) for _, data in jobs) < _PARALLEL_SECTIONS:
        return [encode_section(kind, data, level=level) for kind, data in jobs]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(lambda job: encode_section(*job, level=level), jobs))


def _uvarint_len(value: int) -> int:
    return max(1, (value.bit_length() + 6) // 7)


def ctrl_limit(out_size: int, source_size: int) -> int:
    """The largest CTRL section a body producing ``out_size`` bytes from ``source_size`` can
    need (what any encoder of the format writes; larger is refused before decoding).

    Every record but the first produces at least one byte, so there are at most
    ``out_size + 1``; each is ``lenf, lenx, zigzag(seek)`` with ``varint(n) <= 1 + n / 128``
    (so the lengths cost ``2 + (lenf + lenx) / 128``) and ``|seek| <= source_size``.
    """
    seek = _uvarint_len(2 * source_size + 1)
    return (out_size + 1) * (2 + seek) + out_size // 128 + 1


def read_streams(p: Patch, out_size: int, source_size: int) -> Streams:
    """The delta body of ``p`` for an output of ``out_size`` bytes read from ``source_size``.

    Each section is bounded by what such an output can need (DIFF and EXTRA by ``out_size``
    together, CTRL by :func:`ctrl_limit`) before it is decompressed, and the decoded DIFF and
    EXTRA must add up to ``out_size`` exactly (every output byte comes from one of them) before
    the caller allocates the output.
    """
    from ._binary import Streams

    declared = p.sections[Section.DIFF].raw_len + p.sections[Section.EXTRA].raw_len
    if declared != out_size:
        raise CorruptPatchError(
            f"patch difference and extra streams declare {declared} bytes for a "
            f"{out_size}-byte output (they must add up to it)"
        )
    ctrl = p.section(Section.CTRL, limit=ctrl_limit(out_size, source_size))
    diff = p.section(Section.DIFF, limit=out_size)
    extra = p.section(Section.EXTRA, limit=out_size - len(diff))
    return Streams(ctrl=ctrl, diff=diff, extra=extra)


def chain_section(members: list[bytes] | list[memoryview]) -> tuple:
    """The PATCHES section of a CHAIN patch (always stored: members are compressed already)."""
    body = bytearray()
    encode_uvarint(body, len(members))
    for m in members:
        encode_uvarint(body, len(m))
        body += m
    return (Section.PATCHES, Codec.STORED, len(body), bytes(body))


def chain_members(p: Patch, *, max_size: int) -> list[memoryview]:
    """The member patches of a CHAIN patch, as views into its decoded PATCHES section.

    The section is bounded by ``max_size`` (stored sections by the patch itself); the member
    count by :data:`MAX_CHAIN_MEMBERS` and by how many complete patches the section can hold,
    before any member is read.
    """
    # The member count first, from the section's first bytes: a count the declared size
    # cannot hold is refused before the section is decoded.
    raw_len = p.sections[Section.PATCHES].raw_len
    count, _ = decode_uvarint(p.peek(Section.PATCHES, 10), 0, "chain patch")
    if count == 0 or count > MAX_CHAIN_MEMBERS or count > raw_len // (MIN_PATCH_SIZE + 1):
        raise CorruptPatchError(
            f"chain patch declares {count} members (at most {MAX_CHAIN_MEMBERS}, each a "
            f"complete patch of at least {MIN_PATCH_SIZE} bytes)"
        )
    body = p.section(Section.PATCHES, limit=max_size)
    count, pos = decode_uvarint(body, 0, "chain patch")
    view = memoryview(body)
    members = []
    for _ in range(count):
        n, pos = decode_uvarint(body, pos, "chain patch")
        if n < MIN_PATCH_SIZE or n > len(body) - pos:
            raise CorruptPatchError("chain patch member is truncated or too short to be a patch")
        member = view[pos : pos + n]
        if member[5] == Method.CHAIN:
            raise CorruptPatchError("chain patches do not nest")
        members.append(member)
        pos += n
    if pos != len(body):
        raise CorruptPatchError("chain patch has trailing bytes after its members")
    return members


def layouts_section(old: Layout, new: Layout, *, level: int) -> tuple:
    """The LAYOUTS section: the base's layout, then the target's written relative to it."""
    body = bytearray()
    old_bytes = old.to_bytes()
    encode_uvarint(body, len(old_bytes))
    body += old_bytes
    body += new.to_bytes(relative_to=old)
    return encode_section(Section.LAYOUTS, body, level=level)


def read_layouts(p: Patch) -> tuple[Layout, Layout]:
    """The base's and the target's layouts of an ARCHIVE patch (bounded, work-budgeted)."""
    from ._layout import Layout

    body = p.section(Section.LAYOUTS, limit=LAYOUT_SECTION_LIMIT)
    n, pos = decode_uvarint(body, 0, "patch layout section")
    if n > len(body) - pos:
        raise CorruptPatchError("patch layout section is truncated")
    view = memoryview(body)
    old = Layout.from_bytes(view[pos : pos + n])
    return old, Layout.from_bytes(view[pos + n :], relative_to=old)
