"""Executable-aware deltas: find machine code inside a buffer and make it diff well.

Compiled code that moved between two versions differs in every relative branch, call and
PC-relative data reference, although the targets (functions, constants) are mostly the same.
:func:`forward` rewrites those operands as image-relative absolute targets (the C core,
``rc_exe_transform``: x86-64 rel32 calls/jumps and rip-relative loads, arm64 BL/B, B.cond,
CBZ/CBNZ, ADR/ADRP), so both versions line up again before matching; :func:`inverse` undoes it
exactly after the patch is applied (the result is still checked against the target SHA-256).

:func:`plan` locates ELF (x86-64, aarch64), Mach-O (x86-64, arm64, thin or inside a fat file)
and PE32+ (x64, arm64) images at any offset of a buffer by their magic, validates the headers
against the buffer and returns the file ranges of their code sections (section tables, or the
executable ELF segments when there is no section table). Parsing is bounded: at most
``MAX_CANDIDATES`` magic hits, ``MAX_IMAGES`` images and ``MAX_RANGES`` ranges; every offset and
size read from a header is checked against the buffer before use and nothing a header says is
trusted further than that (a bad range only costs compression, never correctness, since the
transform is a bijection on any bytes).

The record of a buffer (:class:`ExeRecord`) names each range: buffer offset, length,
architecture, the x86-64 displacement window, the image's virtual-address base and the range's
address relative to it. :func:`encode_record` / :func:`decode_record` give the EXEC section's
bytes (docs/executables.md); decoding checks every range against the buffer sizes it will be
applied to and bounds the range count.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from .._native import ffi, lib
from .._util import byte_view, decode_uvarint, encode_uvarint
from ..errors import CorruptPatchError, InvalidArgumentError
from ._deflate import Buffer

__all__ = [
    "ARCH_ARM64",
    "ARCH_X86_64",
    "DEFAULT_MAX_RANGES",
    "MAX_RECORD_BYTES",
    "ExeLimits",
    "ExeRange",
    "ExeRecord",
    "decode_record",
    "encode_record",
    "forward",
    "inverse",
    "plan",
    "source_for_apply",
    "transform_pair",
]

ARCH_X86_64 = int(lib.RC_EXE_X86_64)
ARCH_ARM64 = int(lib.RC_EXE_ARM64)
ARCHES = (ARCH_X86_64, ARCH_ARM64)
X86_MIN_BITS = int(lib.RC_EXE_X86_MIN_BITS)
X86_MAX_BITS = int(lib.RC_EXE_X86_MAX_BITS)
X86_PLAN_MIN_BITS = 17  # the window plan() never goes below (128 KiB of image)

RECORD_VERSION = 1
DEFAULT_MAX_RANGES = 4096  # per record, encoded or decoded
# The largest EXEC section body a record pair within DEFAULT_MAX_RANGES can need (version byte,
# two counts, per range two bytes and four varints of at most 9 bytes): the limit a caller
# passes when it decompresses the section.
MAX_RECORD_BYTES = 1 + 2 * (9 + DEFAULT_MAX_RANGES * (2 + 4 * 9))
MAX_CANDIDATES = 65536  # magic hits examined per magic in one plan() call
MAX_IMAGES = 256
MAX_HEADER_ENTRIES = 65536  # sections / segments / load commands read per image
_ADDR_LIMIT = 1 << 63  # virtual addresses and bases must stay below (they are varints)

ELF_MAGIC = b"\x7fELF"
MACHO64_MAGIC = b"\xcf\xfa\xed\xfe"  # MH_MAGIC_64, little-endian
PE_MAGIC = b"MZ"

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


@dataclass(frozen=True)
class ExeRange:
    """One code range of a buffer: ``length`` bytes at ``offset``, whose first byte sits at
    virtual address ``base + vaddr`` of an image of architecture ``arch`` (``bits``: the x86-64
    displacement window, 0 for arm64)."""

    offset: int
    length: int
    arch: int
    bits: int
    base: int
    vaddr: int


@dataclass(frozen=True)
class ExeRecord:
    """The code ranges of one buffer, sorted by offset, disjoint."""

    ranges: tuple[ExeRange, ...]

    @property
    def code_bytes(self) -> int:
        """Bytes covered by the ranges."""
        return sum(r.length for r in self.ranges)


@dataclass(frozen=True)
class ExeLimits:
    """What :func:`decode_record` accepts: ranges inside ``source_size`` / ``target_size``
    bytes, at most ``max_ranges`` per record."""

    source_size: int
    target_size: int
    max_ranges: int = DEFAULT_MAX_RANGES


# ---- parsing --------------------------------------------------------------------------------


class _Reader:
    """Bounds-checked little-endian reads of a buffer; out of range reads return None."""

    def __init__(self, view: memoryview) -> None:
        self.view = view
        self.n = len(view)

    def u16(self, pos: int) -> int | None:
        return _U16.unpack_from(self.view, pos)[0] if 0 <= pos <= self.n - 2 else None

    def u32(self, pos: int) -> int | None:
        return _U32.unpack_from(self.view, pos)[0] if 0 <= pos <= self.n - 4 else None

    def u64(self, pos: int) -> int | None:
        return _U64.unpack_from(self.view, pos)[0] if 0 <= pos <= self.n - 8 else None


def _bits_for(span: int) -> int:
    """The x86-64 window covering every target of an image spanning ``span`` bytes."""
    return max(X86_PLAN_MIN_BITS, min(X86_MAX_BITS, span.bit_length() + 1))


def _clip(r: _Reader, start: int, size: int) -> int:
    """``size`` clipped to the buffer from ``start`` (0 when ``start`` is outside)."""
    if start < 0 or start >= r.n or size <= 0:
        return 0
    return min(size, r.n - start)


def _make(
    r: _Reader, start: int, size: int, arch: int, span: int, base: int, vaddr: int
) -> ExeRange | None:
    length = _clip(r, start, size)
    rel = vaddr - base
    if length == 0 or not 0 <= base < _ADDR_LIMIT or not 0 <= rel < _ADDR_LIMIT:
        return None
    bits = _bits_for(span) if arch == ARCH_X86_64 else 0
    return ExeRange(start, length, arch, bits, base, rel)


def _elf(r: _Reader, o: int) -> list[ExeRange]:
    if r.n - o < 64 or r.view[o + 4] != 2 or r.view[o + 5] != 1:  # ELFCLASS64, little-endian
        return []
    machine = r.u16(o + 18)
    arch = {62: ARCH_X86_64, 183: ARCH_ARM64}.get(machine or 0)
    if arch is None:
        return []
    phoff, shoff = r.u64(o + 32) or 0, r.u64(o + 40) or 0
    phentsize, phnum = r.u16(o + 54) or 0, r.u16(o + 56) or 0
    shentsize, shnum = r.u16(o + 58) or 0, r.u16(o + 60) or 0
    loads: list[tuple[int, int, int, int, int]] = []  # flags, offset, vaddr, filesz, memsz
    if phentsize == 56 and phnum > 0 and o + phoff + 56 * phnum <= r.n:
        for i in range(min(phnum, MAX_HEADER_ENTRIES)):
            p = o + phoff + 56 * i
            if r.u32(p) == 1:  # PT_LOAD
                loads.append(
                    (r.u32(p + 4) or 0, r.u64(p + 8) or 0, r.u64(p + 16) or 0,
                     r.u64(p + 32) or 0, r.u64(p + 40) or 0)
                )  # fmt: skip
    sections: list[tuple[int, int, int]] = []  # offset, addr, size
    if shentsize == 64 and shnum > 0 and o + shoff + 64 * shnum <= r.n:
        for i in range(min(shnum, MAX_HEADER_ENTRIES)):
            s = o + shoff + 64 * i
            if r.u32(s + 4) == 1 and (r.u64(s + 8) or 0) & 0x4:  # PROGBITS, SHF_EXECINSTR
                sections.append((r.u64(s + 24) or 0, r.u64(s + 16) or 0, r.u64(s + 32) or 0))
    if loads:
        base = min(v for _, _, v, _, _ in loads) & ~0xFFF
        span = max(v + m for _, _, v, _, m in loads) - base
    else:
        base = 0
        span = max((a + z for _, a, z in sections), default=0)
    if sections:
        found = (_make(r, o + off, size, arch, span, base, addr) for off, addr, size in sections)
    else:
        found = (
            _make(r, o + off, filesz, arch, span, base, vaddr)
            for flags, off, vaddr, filesz, _ in loads
            if flags & 1  # PF_X
        )
    return [x for x in found if x is not None]


def _macho(r: _Reader, o: int) -> list[ExeRange]:
    cputype = r.u32(o + 4)
    arch = {0x01000007: ARCH_X86_64, 0x0100000C: ARCH_ARM64}.get(cputype or 0)
    ncmds, sizeofcmds = r.u32(o + 16), r.u32(o + 20)
    if arch is None or ncmds is None or sizeofcmds is None or o + 32 + sizeofcmds > r.n:
        return []
    segments: list[tuple[int, int, int, int, list[tuple[int, int, int]]]] = []
    pos, end = o + 32, o + 32 + sizeofcmds
    for _ in range(min(ncmds, MAX_HEADER_ENTRIES)):
        cmd, cmdsize = r.u32(pos), r.u32(pos + 4)
        if cmd is None or cmdsize is None or cmdsize < 8 or pos + cmdsize > end:
            break
        if cmd == 0x19 and cmdsize >= 72:  # LC_SEGMENT_64
            vmaddr, vmsize = r.u64(pos + 24) or 0, r.u64(pos + 32) or 0
            fileoff, filesize = r.u64(pos + 40) or 0, r.u64(pos + 48) or 0
            nsects = min(r.u32(pos + 64) or 0, (cmdsize - 72) // 80)
            sects = []
            for i in range(nsects):
                s = pos + 72 + 80 * i
                flags = r.u32(s + 64) or 0
                if flags & 0x80000400 and flags & 0xFF != 1:  # instructions, not zerofill
                    sects.append((r.u32(s + 48) or 0, r.u64(s + 32) or 0, r.u64(s + 40) or 0))
            segments.append((vmaddr, vmsize, fileoff, filesize, sects))
        pos += cmdsize
    mapped = [s for s in segments if s[3] > 0]
    if not mapped:
        return []
    text = [s for s in mapped if s[2] == 0]
    base = (text[0] if text else min(mapped))[0]
    span = max(v + z for v, z, _, _, _ in mapped) - base
    found = (
        _make(r, o + off, size, arch, span, base, addr)
        for _, _, _, _, sects in mapped
        for off, addr, size in sects
    )
    return [x for x in found if x is not None]


def _pe(r: _Reader, o: int) -> list[ExeRange]:
    lfanew = r.u32(o + 0x3C)
    if lfanew is None or lfanew < 0x40 or lfanew > 0x10000:
        return []
    pe = o + lfanew
    if bytes(r.view[pe : pe + 4]) != b"PE\0\0":
        return []
    arch = {0x8664: ARCH_X86_64, 0xAA64: ARCH_ARM64}.get(r.u16(pe + 4) or 0)
    nsec, sizeopt = r.u16(pe + 6) or 0, r.u16(pe + 20) or 0
    opt = pe + 24
    if arch is None or r.u16(opt) != 0x20B or sizeopt < 64:  # PE32+ only
        return []
    image_base, size_of_image = r.u64(opt + 24), r.u32(opt + 56)
    table = opt + sizeopt
    if image_base is None or size_of_image is None or table + 40 * nsec > r.n:
        return []
    out = []
    for i in range(nsec):
        s = table + 40 * i
        vsize, va = r.u32(s + 8) or 0, r.u32(s + 12) or 0
        rawsize, rawptr = r.u32(s + 16) or 0, r.u32(s + 20) or 0
        if (r.u32(s + 36) or 0) & 0x20000020:  # CNT_CODE or MEM_EXECUTE
            size = min(rawsize, vsize) if vsize else rawsize
            x = _make(r, o + rawptr, size, arch, size_of_image, image_base, image_base + va)
            if x is not None:
                out.append(x)
    return out


def _hits(data: bytes, magic: bytes) -> Iterator[int]:
    pos = data.find(magic)
    count = 0
    while pos >= 0 and count < MAX_CANDIDATES:
        yield pos
        count += 1
        pos = data.find(magic, pos + 1)


def plan(target: Buffer, *, max_ranges: int = DEFAULT_MAX_RANGES) -> ExeRecord | None:
    """The code ranges of the executable images found in ``target``, or None when there is
    none. Bounded: ``MAX_CANDIDATES`` magic hits per format, ``MAX_IMAGES`` images and
    ``max_ranges`` ranges; overlapping ranges (an image inside another) keep the first."""
    view = byte_view(target, "target")
    data = bytes(view) if not isinstance(target, bytes) else target
    r = _Reader(view)
    found: list[ExeRange] = []
    images = 0
    for magic, parse in ((ELF_MAGIC, _elf), (MACHO64_MAGIC, _macho), (PE_MAGIC, _pe)):
        for o in _hits(data, magic):
            if images >= MAX_IMAGES:
                break
            ranges = parse(r, o)
            if ranges:
                images += 1
                found.extend(ranges)
    found.sort(key=lambda x: (x.offset, -x.length))
    kept: list[ExeRange] = []
    for x in found:
        if kept and x.offset < kept[-1].offset + kept[-1].length:
            continue
        kept.append(x)
        if len(kept) >= max_ranges:
            break
    return ExeRecord(tuple(kept)) if kept else None


# ---- transform ------------------------------------------------------------------------------


def _check(record: ExeRecord, size: int) -> None:
    end = 0
    for x in record.ranges:
        if x.offset < end or x.length <= 0 or x.offset + x.length > size:
            raise CorruptPatchError("executable record: a range is outside the buffer or unsorted")
        if x.arch not in ARCHES:
            raise CorruptPatchError(f"executable record: unknown architecture {x.arch}")
        end = x.offset + x.length


def _run(buf: bytearray, record: ExeRecord, inverse: int) -> int:
    _check(record, len(buf))
    if not record.ranges:
        return 0
    ptr = ffi.from_buffer(buf)
    total = 0
    ranges = reversed(record.ranges) if inverse else iter(record.ranges)
    for x in ranges:
        n = lib.rc_exe_transform(ptr + x.offset, x.length, x.vaddr, x.arch, x.bits, inverse)
        if n < 0:
            raise CorruptPatchError(f"executable record: range rejected by the core ({n})")
        total += n
    return total


def forward(buf: Buffer, record: ExeRecord | None) -> bytearray:
    """A copy of ``buf`` with the relative references of ``record``'s ranges made absolute."""
    out = bytearray(byte_view(buf, "buf"))
    if record is not None:
        _run(out, record, 0)
    return out


def inverse(buf: bytearray, record: ExeRecord | None) -> None:
    """Undo :func:`forward` on ``buf`` in place (exactly: ``inverse(forward(x, r), r)`` gives
    ``x`` for any bytes ``x`` and any record that fits them)."""
    if not isinstance(buf, bytearray):
        raise InvalidArgumentError("inverse() rewrites its buffer in place: pass a bytearray")
    if record is not None:
        _run(buf, record, 1)


def count_rewrites(buf: Buffer, record: ExeRecord) -> int:
    """How many operands :func:`forward` rewrites (for statistics and benchmarks)."""
    out = bytearray(byte_view(buf, "buf"))
    return _run(out, record, 0)


# ---- record codec ---------------------------------------------------------------------------


def _encode_one(out: bytearray, record: ExeRecord | None, max_ranges: int) -> None:
    ranges = record.ranges if record is not None else ()
    if len(ranges) > max_ranges:
        raise InvalidArgumentError(f"executable record holds more than {max_ranges} ranges")
    encode_uvarint(out, len(ranges))
    end = 0
    for x in ranges:
        if x.offset < end or x.length <= 0 or x.arch not in ARCHES:
            raise InvalidArgumentError("executable record ranges must be sorted and disjoint")
        out.append(x.arch)
        out.append(x.bits)
        encode_uvarint(out, x.offset - end)
        encode_uvarint(out, x.length)
        encode_uvarint(out, x.base)
        encode_uvarint(out, x.vaddr)
        end = x.offset + x.length


def encode_record(
    src_rec: ExeRecord | None, tgt_rec: ExeRecord | None, *, max_ranges: int = DEFAULT_MAX_RANGES
) -> bytes:
    """The EXEC section body: version byte, then the source's and the target's records (each a
    varint range count, then per range: arch byte, bits byte, varint gap from the previous
    range's end, varint length, varint base, varint image-relative address)."""
    out = bytearray([RECORD_VERSION])
    _encode_one(out, src_rec, max_ranges)
    _encode_one(out, tgt_rec, max_ranges)
    return bytes(out)


def _decode_one(
    data: memoryview, pos: int, size: int, max_ranges: int
) -> tuple[ExeRecord | None, int]:
    count, pos = decode_uvarint(data, pos, "executable record")
    if count > max_ranges:
        raise CorruptPatchError(f"executable record declares {count} ranges (limit {max_ranges})")
    ranges = []
    end = 0
    for _ in range(count):
        if pos + 2 > len(data):
            raise CorruptPatchError("executable record is truncated")
        arch, bits = data[pos], data[pos + 1]
        pos += 2
        if arch == ARCH_X86_64:
            if not X86_MIN_BITS <= bits <= X86_MAX_BITS:
                raise CorruptPatchError(f"executable record: x86-64 window of {bits} bits")
        elif arch == ARCH_ARM64:
            if bits != 0:
                raise CorruptPatchError("executable record: arm64 range with a window")
        else:
            raise CorruptPatchError(f"executable record: unknown architecture {arch}")
        gap, pos = decode_uvarint(data, pos, "executable record")
        length, pos = decode_uvarint(data, pos, "executable record")
        base, pos = decode_uvarint(data, pos, "executable record")
        vaddr, pos = decode_uvarint(data, pos, "executable record")
        offset = end + gap
        if length == 0 or offset + length > size:
            raise CorruptPatchError("executable record: a range is empty or outside the buffer")
        ranges.append(ExeRange(offset, length, arch, bits, base, vaddr))
        end = offset + length
    return (ExeRecord(tuple(ranges)) if ranges else None), pos


def decode_record(data: Buffer, *, limits: ExeLimits) -> tuple[ExeRecord | None, ExeRecord | None]:
    """Parse an EXEC section body into ``(src_rec, tgt_rec)``; CorruptPatchError unless every
    range is non-empty, sorted, disjoint and inside its buffer and the counts are within
    ``limits.max_ranges``, with nothing left over."""
    view = byte_view(data, "data")
    if len(view) < 1 or view[0] != RECORD_VERSION:
        raise CorruptPatchError("executable record: unknown version")
    src, pos = _decode_one(view, 1, limits.source_size, limits.max_ranges)
    tgt, pos = _decode_one(view, pos, limits.target_size, limits.max_ranges)
    if pos != len(view):
        raise CorruptPatchError("executable record: trailing bytes")
    return src, tgt


# ---- aggregator hooks -----------------------------------------------------------------------


def transform_pair(
    source: Buffer, target: Buffer, *, max_ranges: int = DEFAULT_MAX_RANGES
) -> tuple[bytearray, bytearray, bytes] | None:
    """``(forward(source), forward(target), EXEC section body)`` for a diff, or None when the
    target holds no code (nothing to gain). The caller keeps the result only when the patch
    built from it (plus the body) is smaller than without."""
    tgt_rec = plan(target, max_ranges=max_ranges)
    if tgt_rec is None:
        return None
    src_rec = plan(source, max_ranges=max_ranges)
    body = encode_record(src_rec, tgt_rec, max_ranges=max_ranges)
    return forward(source, src_rec), forward(target, tgt_rec), body


def source_for_apply(
    source: Buffer, body: Buffer, *, target_size: int, max_ranges: int = DEFAULT_MAX_RANGES
) -> tuple[bytearray, ExeRecord | None]:
    """Decode an untrusted EXEC section body against the buffers it applies to (``source`` and
    a target of ``target_size`` bytes) and return ``(forward(source), target record)``; after
    the delta is applied, ``inverse(target, record)`` gives the target back."""
    limits = ExeLimits(len(byte_view(source, "source")), target_size, max_ranges)
    src_rec, tgt_rec = decode_record(body, limits=limits)
    return forward(source, src_rec), tgt_rec
