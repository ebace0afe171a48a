"""registry_core.chunking: the C FastCDC against the pure-Python reference, random and real data."""

from __future__ import annotations

import array
import hashlib
import importlib.util
import io
import mmap
import random
import shutil
import subprocess
import sysconfig
import tarfile
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from _reference_cdc import GEAR, masks, reference_chunks
from registry_core._native import ffi, lib
from registry_core.chunking import (
    DEFAULT_AVG_SIZE,
    DEFAULT_MAX_SIZE,
    DEFAULT_MIN_SIZE,
    chunks,
    iter_chunks,
)
from registry_core.errors import InvalidArgumentError, InvalidTypeError, RegistryCoreError

pytestmark = pytest.mark.native

ROOT = Path(__file__).resolve().parents[1]
STDLIB = Path(sysconfig.get_paths()["stdlib"])


@st.composite
def cdc_params(draw: st.DrawFn) -> tuple[int, int, int]:
    """Valid (min, avg, max), small enough for the slow reference."""
    avg = 1 << draw(st.integers(6, 11))
    min_size = draw(st.integers(64, avg))
    max_size = draw(st.integers(avg, 4 * avg + 300))
    return min_size, avg, max_size


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    """Random bytes, low-entropy text (long cut-free runs hit max_size) and repeats."""
    kind = draw(st.sampled_from(["random", "binary", "lowentropy", "repeat"]))
    if kind == "binary":
        return draw(st.binary(max_size=4000))
    n = draw(st.integers(0, 24000))
    rng = random.Random(draw(st.integers(0, 2**32)))
    if kind == "random":
        return rng.randbytes(n)
    if kind == "lowentropy":
        return bytes(rng.choice(b"ab \n") for _ in range(n))
    unit = rng.randbytes(rng.randint(1, 300))
    return (unit * (n // len(unit) + 1))[:n]


def stdlib_sources(min_bytes: int) -> bytes:
    """Concatenated real .py files of this Python's standard library (sorted, deterministic)."""
    out = bytearray()
    for path in sorted(STDLIB.glob("*.py")):
        out += path.read_bytes()
        if len(out) >= min_bytes:
            return bytes(out)
    pytest.skip(f"only {len(out)} bytes of stdlib sources under {STDLIB}")


def stdlib_tar(package: str) -> bytes:
    """A real tar archive (made by tarfile) of one stdlib package directory."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(
            STDLIB / package,
            arcname=package,
            filter=lambda ti: None if "__pycache__" in ti.name else ti,
        )
    return buf.getvalue()


def check_lengths(ends: list[int], total: int, min_size: int, max_size: int) -> None:
    assert (ends[-1] if ends else 0) == total
    starts = [0, *ends[:-1]]
    sizes = [e - s for s, e in zip(starts, ends, strict=False)]
    assert all(min_size <= s <= max_size for s in sizes[:-1])
    if sizes:
        assert 0 < sizes[-1] <= max_size


# -- gear table and masks ----------------------------------------------------------------------


def test_gear_table_header_is_what_the_generator_writes() -> None:
    script = ROOT / "scripts" / "gen_gear_table.py"
    spec = importlib.util.spec_from_file_location("gen_gear_table", script)
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert (ROOT / "csrc/gear_table.h").read_text() == gen.render()
    assert gen.gear_table() == GEAR


def test_core_gear_table_matches_reference() -> None:
    assert [lib.rc_gear_entry(i) for i in range(256)] == GEAR
    assert lib.rc_gear_entry(256) == 0
    assert len(set(GEAR)) == 256
    # Each bit position is set in roughly half of the entries (a broken generator would not be).
    for bit in range(64):
        ones = sum((g >> bit) & 1 for g in GEAR)
        assert 90 <= ones <= 166, (bit, ones)


@pytest.mark.parametrize("avg", [64, 256, 8192, 1 << 20, 1 << 31])
def test_params_masks(avg: int) -> None:
    params = ffi.new("rc_cdc_params *")
    assert lib.rc_cdc_params_init(params, 64, avg, avg) == lib.RC_OK
    mask_s, mask_l = masks(avg)
    bits = avg.bit_length() - 1
    assert (params.mask_s, params.mask_l) == (mask_s, mask_l)
    assert bin(mask_s).count("1") == bits + 2 and bin(mask_l).count("1") == bits - 2
    assert mask_s >> 63 == 0 and mask_l >> 63 == 0
    assert params.mask_s_ls == mask_s << 1 and params.mask_l_ls == mask_l << 1


# -- equality with the reference ---------------------------------------------------------------


@given(data=payloads(), params=cdc_params())
def test_matches_reference(data: bytes, params: tuple[int, int, int]) -> None:
    min_size, avg, max_size = params
    ends = chunks(data, min_size=min_size, avg_size=avg, max_size=max_size)
    assert ends == reference_chunks(data, min_size, avg, max_size)
    check_lengths(ends, len(data), min_size, max_size)


def test_matches_reference_default_sizes_random() -> None:
    data = random.Random(7).randbytes(400_000)
    ends = chunks(data)
    assert ends == reference_chunks(data, DEFAULT_MIN_SIZE, DEFAULT_AVG_SIZE, DEFAULT_MAX_SIZE)
    # On random bytes the mean chunk is a little above avg_size (min_size bytes are skipped).
    assert 0.9 * DEFAULT_AVG_SIZE <= len(data) / len(ends) <= 1.5 * DEFAULT_AVG_SIZE


@pytest.mark.parametrize("package", ["json", "email"])
@pytest.mark.parametrize(
    "sizes", [(DEFAULT_MIN_SIZE, DEFAULT_AVG_SIZE, DEFAULT_MAX_SIZE), (256, 1024, 4096)]
)
def test_real_tar_matches_reference(package: str, sizes: tuple[int, int, int]) -> None:
    data = stdlib_tar(package)
    assert len(data) > 50_000
    ends = chunks(data, min_size=sizes[0], avg_size=sizes[1], max_size=sizes[2])
    assert ends == reference_chunks(data, *sizes)
    check_lengths(ends, len(data), sizes[0], sizes[2])


def test_long_runs_are_cut_at_max_size() -> None:
    data = bytes(100_000)  # zero bytes: the hash never satisfies the mask after warm-up
    ends = chunks(data, min_size=1024, avg_size=4096, max_size=16384)
    assert ends == reference_chunks(data, 1024, 4096, 16384)


def test_empty_and_tiny() -> None:
    assert chunks(b"") == []
    assert chunks(b"x") == [1]
    assert chunks(b"x" * 100) == [100]


# -- the content-defined property --------------------------------------------------------------


@pytest.mark.parametrize("edit", ["insert", "delete", "replace"])
def test_edit_near_start_keeps_later_chunks(edit: str) -> None:
    old = stdlib_sources(1_500_000)
    at = 3000
    if edit == "insert":
        new = old[:at] + b"# hi\n" + old[at:]
    elif edit == "delete":
        new = old[:at] + old[at + 7 :]
    else:
        new = old[:at] + b"XYZ" + old[at + 3 :]

    def pieces(data: bytes) -> list[bytes]:
        return [bytes(v) for v in iter_chunks(data)]

    old_set = {hashlib.sha256(c).digest() for c in pieces(old)}
    new_chunks = pieces(new)
    later, pos = [], 0
    for c in new_chunks:
        if pos > at:
            later.append(c)
        pos += len(c)
    assert len(later) >= 100
    kept = sum(hashlib.sha256(c).digest() in old_set for c in later)
    kept_bytes = sum(len(c) for c in later if hashlib.sha256(c).digest() in old_set)
    assert kept / len(later) >= 0.98, (kept, len(later))
    assert kept_bytes / sum(map(len, later)) >= 0.98


# -- buffers, iter_chunks ----------------------------------------------------------------------


def test_any_buffer_gives_the_same_result(tmp_path: Path) -> None:
    data = random.Random(3).randbytes(200_000)
    want = chunks(data)
    assert chunks(bytearray(data)) == want
    assert chunks(memoryview(data)) == want
    assert chunks(array.array("B", data)) == want
    words = data[:100_000]
    assert chunks(array.array("I", words)) == chunks(words)  # element size does not matter
    path = tmp_path / "blob"
    path.write_bytes(data)
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        assert chunks(mm) == want
    # a slice of a larger buffer: offsets are relative to the slice
    assert chunks(memoryview(b"ab" + data)[2:]) == want


def test_iter_chunks_are_zero_copy_slices() -> None:
    data = bytearray(random.Random(5).randbytes(100_000))
    views = list(iter_chunks(data, min_size=512, avg_size=2048, max_size=8192))
    assert b"".join(views) == data
    assert [len(v) for v in views] == [
        b - a
        for a, b in zip(
            [0, *chunks(data, min_size=512, avg_size=2048, max_size=8192)],
            chunks(data, min_size=512, avg_size=2048, max_size=8192),
            strict=False,
        )
    ]
    assert all(isinstance(v, memoryview) and v.obj is data for v in views)


def test_concurrent_calls_agree() -> None:
    data = random.Random(11).randbytes(2_000_000)
    want = chunks(data)
    results: list[list[int]] = []

    def work() -> None:
        for _ in range(5):
            results.append(chunks(data))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 20 and all(r == want for r in results)


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sizes",
    [
        (63, 64, 128),  # min below 64
        (0, 64, 128),
        (-64, 64, 128),
        (4096, 2048, 8192),  # min > avg
        (1024, 8192, 4096),  # avg > max
        (64, 64, 2**31 + 1),  # max above 2**31
        (1024, 3000, 8192),  # avg not a power of two
    ],
)
def test_bad_sizes_raise_invalid_argument(sizes: tuple[int, int, int]) -> None:
    mn, avg, mx = sizes
    with pytest.raises(InvalidArgumentError) as info:
        chunks(b"data", min_size=mn, avg_size=avg, max_size=mx)
    assert isinstance(info.value, ValueError) and isinstance(info.value, RegistryCoreError)


@pytest.mark.parametrize("bad", [1024.0, "1024", None, True])
def test_non_int_sizes_raise_invalid_type(bad: object) -> None:
    with pytest.raises(InvalidTypeError):
        chunks(b"data", min_size=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["text", 12, [1, 2, 3], None, 3.5, object()])
def test_non_buffer_input_raises_invalid_type(bad: object) -> None:
    with pytest.raises(InvalidTypeError) as info:
        chunks(bad)
    assert isinstance(info.value, TypeError)


def test_non_contiguous_buffer_raises_invalid_type() -> None:
    with pytest.raises(InvalidTypeError):
        chunks(memoryview(b"abcdefgh")[::2])


def test_core_rejects_bad_arguments_directly() -> None:
    params = ffi.new("rc_cdc_params *")
    assert lib.rc_cdc_params_init(ffi.NULL, 64, 64, 64) == lib.RC_EINVAL
    assert lib.rc_cdc_params_init(params, 64, 96, 128) == lib.RC_EINVAL
    assert lib.rc_cdc_params_init(params, 64, 64, 2**31) == lib.RC_OK
    out = ffi.new("uint64_t[]", 4)
    assert lib.rc_cdc_find(ffi.NULL, ffi.NULL, 0, 1, out, 4) == lib.RC_EINVAL
    assert lib.rc_cdc_find(params, ffi.NULL, 10, 1, out, 4) == lib.RC_EINVAL
    assert lib.rc_cdc_find(params, ffi.NULL, 0, 1, out, 4) == 0
    buf = ffi.from_buffer(b"x" * 10)
    assert lib.rc_cdc_find(params, buf, 10, 1, ffi.NULL, 4) == lib.RC_EINVAL
    assert lib.rc_cdc_find(params, buf, 10, 1, ffi.NULL, 0) == 0
    # A struct filled by hand with inconsistent sizes is refused, not trusted.
    params.min_size = 10
    assert lib.rc_cdc_find(params, buf, 10, 1, out, 4) == lib.RC_EINVAL


def test_core_out_cap_and_non_final() -> None:
    data = random.Random(9).randbytes(100_000)
    want = chunks(data, min_size=256, avg_size=1024, max_size=4096)
    params = ffi.new("rc_cdc_params *")
    assert lib.rc_cdc_params_init(params, 256, 1024, 4096) == lib.RC_OK
    buf = ffi.from_buffer(data)
    out = ffi.new("uint64_t[]", 1)
    got, pos = [], 0
    while True:  # one offset per call, resuming at the last cut
        n = lib.rc_cdc_find(params, buf + pos, len(data) - pos, 1, out, 1)
        if n == 0:
            break
        assert n == 1
        pos += out[0]
        got.append(pos)
    assert got == want
    # Not final: the tail after the last certain cut is left unconsumed.
    out = ffi.new("uint64_t[]", len(want))
    n = lib.rc_cdc_find(params, buf, len(data), 0, out, len(want))
    assert n in (len(want) - 1, len(want))
    assert list(out[0:n]) == want[:n]
    assert len(data) - out[n - 1] < 4096


# -- the portable C path -----------------------------------------------------------------------

_WRAPPER = """
#include "cdc.c"
__attribute__((visibility("default")))
int x_init(rc_cdc_params *p, uint32_t a, uint32_t b, uint32_t c)
{ return rc_cdc_params_init(p, a, b, c); }
__attribute__((visibility("default"))) int64_t x_find(const rc_cdc_params *p, const uint8_t *d,
        size_t n, int f, uint64_t *o, size_t c) { return rc_cdc_find(p, d, n, f, o, c); }
"""


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_portable_c_loop_matches_reference(tmp_path: Path) -> None:
    """The plain-C loop (used where the x86-64 asm is not, e.g. aarch64 wheels) is exact too."""
    import ctypes

    (tmp_path / "wrap.c").write_text(_WRAPPER)
    lib_path = tmp_path / "libcdc_portable.so"
    subprocess.run(
        [
            "cc",
            "-O2",
            "-std=c99",
            "-fPIC",
            "-shared",
            "-DRC_CDC_NO_ASM",
            f"-I{ROOT / 'csrc'}",
            str(tmp_path / "wrap.c"),
            "-o",
            str(lib_path),
        ],
        check=True,
        capture_output=True,
    )
    clib = ctypes.CDLL(str(lib_path))
    clib.x_find.restype = ctypes.c_int64
    params = ffi.new("rc_cdc_params *")  # same layout; only its memory is used
    rng = random.Random(12)
    for k in range(60):
        avg = 1 << rng.randint(6, 12)
        min_size, max_size = rng.randint(64, avg), rng.randint(avg, 8 * avg)
        data = (
            rng.randbytes(rng.randint(0, 30_000))
            if k % 3
            else bytes(rng.choice(b"ab") for _ in range(rng.randint(0, 10_000)))
        )
        p = ctypes.c_void_p(int(ffi.cast("uintptr_t", params)))
        assert clib.x_init(p, min_size, avg, max_size) == 0
        out = (ctypes.c_uint64 * (len(data) // 64 + 2))()
        n = clib.x_find(p, data, ctypes.c_size_t(len(data)), 1, out, ctypes.c_size_t(len(out)))
        assert list(out[:n]) == reference_chunks(data, min_size, avg, max_size)
        assert list(out[:n]) == chunks(data, min_size=min_size, avg_size=avg, max_size=max_size)
