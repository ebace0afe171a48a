"""The registry-core patch container (format version 1), sans-IO.

Layout (all integers are unsigned LEB128 varints unless noted; see docs/delta-format.md)::

    magic   b"RCDP"
    version u8 = 1
    method  u8: 0 FULL, 1 BINARY, 2 ARCHIVE, 3 CHAIN
    flags   u8: bit 0 RAW_BASE (ARCHIVE only: the delta source is the expanded base followed
            by the base itself); readers reject other bits
    base_size, target_size
    base_sha256 (32 bytes), target_sha256 (32 bytes)
    section_count, then per section: kind u8, codec u8 (0 stored, 1 zstd), raw_len,
        stored_len, bytes
    trailer: SHA-256 (32 bytes) of every byte before it

Sections by method: FULL has TARGET; BINARY has CTRL, DIFF, EXTRA; ARCHIVE has LAYOUTS
(the base's and the target's layout in one section), CTRL, DIFF, EXTRA; CHAIN has PATCHES.
Parsing checks the trailer first, so a corrupted patch is refused
before anything is decompressed, and every declared size is checked against caller limits before
a byte is allocated for it.
"""

from __future__ import annotations

import enum
import hashlib
import io
from dataclasses import dataclass, field

from ..errors import CorruptPatchError, OutputTooLargeError

MAGIC = b"RCDP"
FLAG_RAW_BASE = 0x01
VERSION = 1
SHA_LEN = 32
_MAX_SECTIONS = 16
# zstd's highest levels cost ~40x level 13 on multi-MB sections for ~10% in size (measured on the
# DIFF stream of a native wheel: 20 MB -> 1.71 MB in 21 s at 19, 1.96 MB in 2.8 s at 13).
BIG_SECTION = 8 << 20
BIG_SECTION_LEVEL = 13


class Method(enum.IntEnum):
    FULL = 0
    BINARY = 1
    ARCHIVE = 2
    CHAIN = 3  # patches applied in sequence (compose of patches that cannot be merged)


class Section(enum.IntEnum):
    TARGET = 0
    CTRL = 1
    DIFF = 2
    EXTRA = 3
    LAYOUTS = 4  # uvarint len(old layout), old layout, new layout (one zstd frame)
    PATCHES = 5  # uvarint count, then per patch: uvarint length, a complete non-CHAIN patch


class Codec(enum.IntEnum):
    STORED = 0
    ZSTD = 1


REQUIRED = {
    Method.FULL: (Section.TARGET,),
    Method.BINARY: (Section.CTRL, Section.DIFF, Section.EXTRA),
    Method.ARCHIVE: (Section.LAYOUTS, Section.CTRL, Section.DIFF, Section.EXTRA),
    Method.CHAIN: (Section.PATCHES,),
}


def put_uvarint(out: bytearray, value: int) -> None:
    if value < 0:
        raise ValueError("varint must be non-negative")
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def get_uvarint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Decode a varint at ``pos``; returns (value, new_pos). Raises CorruptPatchError."""
    value = 0
    shift = 0
    for _ in range(10):
        if pos >= len(data):
            raise CorruptPatchError("patch is truncated (inside a varint)")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if value >= 1 << 63:
                raise CorruptPatchError("patch holds an out-of-range integer")
            return value, pos
        shift += 7
    raise CorruptPatchError("patch holds an over-long varint")


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

    def section(self, kind: Section, *, limit: int) -> bytes:
        """Decompress one section, refusing a declared size above ``limit``."""
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
        return _zstd_decompress(sec.payload, sec.raw_len, kind)


def _zstd_decompress(payload: memoryview, raw_len: int, kind: Section) -> bytes:
    import zstandard

    try:
        reader = zstandard.ZstdDecompressor().stream_reader(
            io.BytesIO(payload), read_across_frames=False
        )
        with reader:
            data = reader.read(raw_len + 1) if raw_len else reader.read(1)
            # stream_reader.read may return short reads; keep reading up to the declared size.
            while len(data) <= raw_len:
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
    put_uvarint(out, base_size)
    put_uvarint(out, target_size)
    out += base_sha256
    out += target_sha256
    put_uvarint(out, len(sections))
    for kind, codec, raw_len, payload in sections:
        out += bytes((int(kind), int(codec)))
        put_uvarint(out, raw_len)
        put_uvarint(out, len(payload))
        out += payload
    out += hashlib.sha256(out).digest()
    return bytes(out)


def parse(patch: bytes | bytearray | memoryview) -> Patch:
    """Parse and integrity-check a patch (trailer first); sections stay compressed."""
    view = memoryview(patch).cast("B") if not isinstance(patch, memoryview) else patch.cast("B")
    if len(view) < len(MAGIC) + 3 + 2 * SHA_LEN + 2 + SHA_LEN:
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
        raise CorruptPatchError(f"unknown patch method {method}") from None
    if flags & ~FLAG_RAW_BASE or (flags and method_e != Method.ARCHIVE):
        raise CorruptPatchError(f"unknown patch flags {flags:#x} for a {method_e.name} patch")
    pos = 7
    base_size, pos = get_uvarint(body, pos)
    target_size, pos = get_uvarint(body, pos)
    if pos + 2 * SHA_LEN > len(body):
        raise CorruptPatchError("patch is truncated (in the digests)")
    base_sha = bytes(body[pos : pos + SHA_LEN])
    target_sha = bytes(body[pos + SHA_LEN : pos + 2 * SHA_LEN])
    pos += 2 * SHA_LEN
    count, pos = get_uvarint(body, pos)
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
        raw_len, pos = get_uvarint(body, pos)
        stored_len, pos = get_uvarint(body, pos)
        if stored_len > len(body) - pos:
            raise CorruptPatchError(f"patch section {kind.name} runs past the end of the patch")
        if kind in result.sections:
            raise CorruptPatchError(f"patch section {kind.name} appears twice")
        result.sections[kind] = RawSection(kind, codec, raw_len, body[pos : pos + stored_len])
        pos += stored_len
    if pos != len(body):
        raise CorruptPatchError("patch has trailing bytes after its sections")
    missing = [s.name for s in REQUIRED[method_e] if s not in result.sections]
    extra = [s.name for s in result.sections if s not in REQUIRED[method_e]]
    if missing or extra:
        raise CorruptPatchError(
            f"{method_e.name} patch has missing sections {missing} / unexpected sections {extra}"
        )
    return result
