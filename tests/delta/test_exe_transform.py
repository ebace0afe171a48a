"""Executable transforms (delta/_exe.py, csrc/exe_*.c): exact inverse on any bytes, bounded
record decoding, real ELF images compiled here with gcc diff smaller once transformed."""

from __future__ import annotations

import itertools
import struct
from pathlib import Path

import pytest
from _delta_artifacts import compile_library, needs_gcc
from hypothesis import given, settings
from hypothesis import strategies as st

from registry_core._native import lib
from registry_core.delta import DeltaAggregator
from registry_core.delta._exe import (
    ARCH_ARM64,
    ARCH_X86_64,
    ExeLimits,
    ExeRange,
    ExeRecord,
    decode_record,
    encode_record,
    forward,
    inverse,
    plan,
)
from registry_core.errors import CorruptPatchError, InvalidArgumentError

pytestmark = pytest.mark.native  # the C transform runs under `make sanitize` too

ranges_st = st.builds(
    lambda arch, bits, vaddr: (arch, bits if arch == ARCH_X86_64 else 0, vaddr),
    st.sampled_from([ARCH_X86_64, ARCH_ARM64]),
    st.integers(8, 32),
    st.integers(0, (1 << 40)),
)


def _record(size: int, cuts: list[int], specs: list[tuple[int, int, int]]) -> ExeRecord:
    points = sorted({min(c, size) for c in cuts})
    out = []
    for (start, end), (arch, bits, vaddr) in zip(itertools.pairwise(points), specs, strict=False):
        if end > start:
            out.append(ExeRange(start, end - start, arch, bits, 0, vaddr))
    return ExeRecord(tuple(out))


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=4096),
    st.lists(st.integers(0, 4096), max_size=8),
    st.lists(ranges_st, max_size=8),
)
def test_inverse_undoes_forward_on_any_bytes(data: bytes, cuts: list[int], specs: list) -> None:
    rec = _record(len(data), cuts, specs)
    out = forward(data, rec)
    assert len(out) == len(data)
    inverse(out, rec)
    assert bytes(out) == data


@settings(max_examples=200, deadline=None)
@given(
    st.binary(min_size=1, max_size=2048),
    st.integers(0, 1 << 32),
    st.integers(8, 32),
    st.sampled_from([1, 2]),
)
def test_core_transform_is_a_bijection(data: bytes, vaddr: int, bits: int, arch: int) -> None:
    from registry_core._native import ffi

    buf = bytearray(data)
    n = lib.rc_exe_transform(ffi.from_buffer(buf), len(buf), vaddr, arch, bits, 0)
    assert 0 <= n <= len(buf)
    assert lib.rc_exe_transform(ffi.from_buffer(buf), len(buf), vaddr, arch, bits, 1) == n
    assert bytes(buf) == data


def test_core_rejects_bad_arguments() -> None:
    from registry_core._native import ffi

    buf = bytearray(16)
    p = ffi.from_buffer(buf)
    assert lib.rc_exe_transform(p, 16, 0, 9, 25, 0) == lib.RC_EINVAL
    assert lib.rc_exe_transform(p, 16, 0, ARCH_X86_64, 7, 0) == lib.RC_EINVAL
    assert lib.rc_exe_transform(p, 16, 0, ARCH_X86_64, 33, 0) == lib.RC_EINVAL
    assert lib.rc_exe_transform(ffi.NULL, 1, 0, ARCH_X86_64, 25, 0) == lib.RC_EINVAL


def test_x86_call_becomes_absolute() -> None:
    # two calls to the same target from different places: equal bytes after the transform
    code = bytearray(64)
    code[0:5] = b"\xe8" + struct.pack("<i", 0x100 - 5)
    code[32:37] = b"\xe8" + struct.pack("<i", 0x100 - 37)
    rec = ExeRecord((ExeRange(0, 64, ARCH_X86_64, 25, 0, 0),))
    out = forward(bytes(code), rec)
    assert out[0:5] == out[32:37] == b"\xe8" + struct.pack("<i", 0x100)


def test_arm64_bl_becomes_absolute() -> None:
    bl = lambda pc, target: struct.pack("<I", 0x94000000 | (((target - pc) >> 2) & 0x3FFFFFF))  # noqa: E731
    code = bl(0x1000, 0x8000) + bl(0x1004, 0x8000) + bl(0x1008, 0x200)
    rec = ExeRecord((ExeRange(0, len(code), ARCH_ARM64, 0, 0, 0x1000),))
    out = forward(code, rec)
    assert out[0:4] == out[4:8]
    assert struct.unpack("<I", out[8:12])[0] & 0x3FFFFFF == 0x200 >> 2


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 1000), st.integers(1, 500), ranges_st), max_size=20),
    st.lists(st.tuples(st.integers(0, 1000), st.integers(1, 500), ranges_st), max_size=20),
)
def test_record_roundtrip(a: list, b: list) -> None:
    def build(items: list) -> ExeRecord | None:
        out, end = [], 0
        for gap, length, (arch, bits, vaddr) in items:
            out.append(ExeRange(end + gap, length, arch, bits, 7, vaddr))
            end += gap + length
        return ExeRecord(tuple(out)) if out else None

    src, tgt = build(a), build(b)
    data = encode_record(src, tgt)
    limits = ExeLimits(source_size=1 << 20, target_size=1 << 20)
    assert decode_record(data, limits=limits) == (src, tgt)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_record_decoding_of_any_bytes_is_bounded(data: bytes) -> None:
    limits = ExeLimits(source_size=4096, target_size=4096, max_ranges=16)
    try:
        src, tgt = decode_record(data, limits=limits)
    except CorruptPatchError:
        return
    for rec, size in ((src, 4096), (tgt, 4096)):
        if rec is not None:
            assert len(rec.ranges) <= 16
            assert all(r.offset + r.length <= size for r in rec.ranges)
            forward(bytes(size), rec)  # never raises: ranges fit


def test_record_limits_and_bad_ranges() -> None:
    rec = ExeRecord((ExeRange(10, 100, ARCH_X86_64, 25, 0, 0),))
    data = encode_record(rec, None)
    with pytest.raises(CorruptPatchError):
        decode_record(data, limits=ExeLimits(source_size=50, target_size=50))
    many = ExeRecord(tuple(ExeRange(i * 2, 1, ARCH_ARM64, 0, 0, 0) for i in range(10)))
    with pytest.raises(CorruptPatchError):
        decode_record(encode_record(many, None), limits=ExeLimits(100, 100, max_ranges=9))
    with pytest.raises(CorruptPatchError):
        decode_record(data + b"\0", limits=ExeLimits(1000, 1000))
    with pytest.raises(CorruptPatchError):
        forward(bytes(50), rec)
    with pytest.raises(InvalidArgumentError):
        inverse(b"x" * 200, rec)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(0, 3000), max_size=6))
def test_plan_on_hostile_bytes(noise: bytes, spots: list[int]) -> None:
    # plant magics at random places: plan must stay bounded and return in-buffer ranges only
    data = bytearray(noise)
    for s in spots:
        for magic in (b"\x7fELF\x02\x01", b"\xcf\xfa\xed\xfe\x07\x00\x00\x01", b"MZ"):
            if s + len(magic) <= len(data):
                data[s : s + len(magic)] = magic
    rec = plan(bytes(data))
    if rec is not None:
        end = 0
        for r in rec.ranges:
            assert r.offset >= end and r.offset + r.length <= len(data)
            end = r.offset + r.length
        out = forward(data, rec)
        inverse(out, rec)
        assert out == data


# ---- real ELF images -----------------------------------------------------------------------


@needs_gcc
def test_real_elf_roundtrip_and_smaller_patch(tmp_path: Path) -> None:
    old = compile_library(tmp_path, "old", extra=False)
    new = compile_library(tmp_path, "new", extra=True)
    ro, rn = plan(old), plan(new)
    assert ro is not None and rn is not None
    assert all(r.arch == ARCH_X86_64 or r.arch == ARCH_ARM64 for r in rn.ranges)
    fo, fn = forward(old, ro), forward(new, rn)
    back = bytearray(fn)
    inverse(back, rn)
    assert bytes(back) == new
    agg = DeltaAggregator(archive_aware=False, exe=False)  # the transform by hand here
    plain = agg.diff(old, new)
    transformed = agg.diff(fo, fn)
    record = encode_record(ro, rn)
    # the transformed patch applies to the transformed base and inverts to the target
    out = bytearray(agg.apply(fo, transformed))
    inverse(out, decode_record(record, limits=ExeLimits(len(old), len(new)))[1])
    assert bytes(out) == new
    assert len(transformed) + len(record) < len(plain)


@needs_gcc
def test_plan_finds_an_image_inside_a_larger_buffer(tmp_path: Path) -> None:
    image = compile_library(tmp_path, "one", extra=False)
    alone = plan(image)
    assert alone is not None
    wrapped = plan(b"\0junk" * 100 + image + b"tail")
    assert wrapped is not None
    assert [(r.offset - 500, r.length) for r in wrapped.ranges] == [
        (r.offset, r.length) for r in alone.ranges
    ]


@needs_gcc
def test_exec_section_in_a_binary_patch(tmp_path: Path) -> None:
    # what the aggregator wiring does: BINARY delta of the transformed pair + EXEC section
    from registry_core.delta import _binary
    from registry_core.delta._exe import source_for_apply, transform_pair
    from registry_core.delta._format import (
        Codec,
        Method,
        Section,
        parse,
        read_streams,
        serialize,
        stream_sections,
    )

    old = compile_library(tmp_path, "a", extra=False)
    new = compile_library(tmp_path, "b", extra=True)
    pair = transform_pair(old, new)
    assert pair is not None
    src_x, tgt_x, body = pair
    streams = _binary.encode(src_x, tgt_x)  # kept alive: sections may view its C buffers
    sections = [
        *stream_sections(streams, level=19),
        (Section.EXEC, Codec.STORED, len(body), body),
    ]
    import hashlib

    patch = serialize(
        Method.BINARY,
        sections=sections,
        base_size=len(old),
        target_size=len(new),
        base_sha256=hashlib.sha256(old).digest(),
        target_sha256=hashlib.sha256(new).digest(),
    )
    p = parse(patch)
    exec_body = p.sections[Section.EXEC].payload
    source, tgt_rec = source_for_apply(old, exec_body, target_size=p.target_size)
    out = bytearray(_binary.apply(source, read_streams(p, p.target_size, len(source)), len(new)))
    inverse(out, tgt_rec)
    assert bytes(out) == new
    assert transform_pair(old, b"no code here") is None


def test_max_record_bytes_covers_the_largest_record() -> None:
    from registry_core.delta._exe import DEFAULT_MAX_RANGES, MAX_RECORD_BYTES

    big = (1 << 63) - 1
    rec = ExeRecord(
        tuple(
            ExeRange(i * (1 << 50), 1 << 49, ARCH_X86_64, 32, big, big)
            for i in range(DEFAULT_MAX_RANGES)
        )
    )
    assert len(encode_record(rec, rec)) <= MAX_RECORD_BYTES


CRASHERS = Path(__file__).resolve().parents[2] / "fuzz" / "crashers"


def _replay_c_input(data: bytes) -> None:
    # the decoding of fuzz/c/fuzz_exe.c, run through the Python layer
    if len(data) < 12:
        return
    arch = 1 + (data[0] & 1)
    bits = 8 + data[1] % 25
    vaddr = struct.unpack_from("<Q", data, 2)[0]
    if data[10] & 1:
        vaddr &= 0xFFFFFF
    body = data[12:]
    body = body[min(data[11] % 8, len(body)) :]
    if not body:
        return
    rec = ExeRecord((ExeRange(0, len(body), arch, bits if arch == 1 else 0, 0, vaddr),))
    out = forward(body, rec)
    inverse(out, rec)
    assert bytes(out) == body


@pytest.mark.parametrize(
    "path",
    sorted((CRASHERS / "exe-c").glob("*")) + sorted((CRASHERS / "exe").glob("*")),
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_saved_fuzz_inputs(path: Path) -> None:
    data = path.read_bytes()
    if path.parent.name == "exe-c":
        _replay_c_input(data)
    else:
        import importlib.util

        spec = importlib.util.spec_from_file_location("fuzz_exe", CRASHERS.parent / "fuzz_exe.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.one_input(data)
