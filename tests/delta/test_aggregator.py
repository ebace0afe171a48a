"""DeltaAggregator diff/apply: round trips, verification, limits, the worth-it rule."""

from __future__ import annotations

import gc
import os
import random

import pytest
from _delta_artifacts import module_source, sdist, wheel
from hypothesis import given
from hypothesis import strategies as st

from registry_core import DeltaAggregator
from registry_core.errors import (
    BaseMismatchError,
    CorruptPatchError,
    InvalidArgumentError,
    InvalidTypeError,
    OutputTooLargeError,
    RegistryCoreError,
)

AGG = DeltaAggregator(archive_aware=True)


def edit(data: bytes, seed: int, n: int = 5) -> bytes:
    """A few random inserts, deletes and overwrites."""
    rnd = random.Random(seed)
    b = bytearray(data)
    for _ in range(n):
        if not b:
            b += bytes([rnd.randrange(256)])
            continue
        i = rnd.randrange(len(b))
        op = rnd.randrange(3)
        if op == 0:
            b[i:i] = rnd.randbytes(rnd.randrange(1, 20))
        elif op == 1:
            del b[i : i + rnd.randrange(1, 20)]
        else:
            b[i] = rnd.randrange(256)
    return bytes(b)


@given(st.binary(max_size=3000), st.binary(max_size=3000))
def test_round_trip_arbitrary_pairs(old, new):
    patch = AGG.diff(old, new)
    assert AGG.apply(old, patch) == new


@given(st.binary(min_size=1, max_size=5000), st.integers(0, 2**32))
def test_round_trip_similar_pairs(old, seed):
    new = edit(old, seed)
    assert AGG.apply(old, AGG.diff(old, new)) == new


def test_similar_binary_is_small():
    old = os.urandom(200_000)
    new = edit(old, 1, n=10)
    patch = AGG.diff(old, new)
    # either plain method: the smaller is kept (ZSTD_PREFIX usually, on random bytes)
    assert AGG.inspect(patch).method in ("BINARY", "ZSTD_PREFIX")
    assert len(patch) < 2_000
    assert AGG.apply(old, patch) == new


def test_moved_blocks_are_found():
    blocks = [os.urandom(10_000) for _ in range(10)]
    old = b"".join(blocks)
    new = b"".join(reversed(blocks))
    patch = AGG.diff(old, new)
    assert len(patch) < 1_000
    assert AGG.apply(old, patch) == new


def test_wheel_update_uses_archive_mode_and_is_byte_exact():
    old = wheel("1.0", lines=300)
    changed = {
        i: module_source(i, "1", 300) + b"\ndef added():\n    return 42\n" for i in (3, 7, 11)
    }
    new = wheel("1.1", changed=changed, lines=300)
    patch = AGG.diff(old, new)
    info = AGG.inspect(patch)
    assert info.method == "ARCHIVE"
    assert AGG.last_stats["copied_streams"] >= 17  # unchanged members are copied, not re-sent
    assert AGG.apply(old, patch) == new
    plain = DeltaAggregator(archive_aware=False).diff(old, new)
    assert len(patch) * 2 < len(plain)


def test_sdist_update_is_small():
    old = sdist("1.0")
    new = sdist("1.1", changed={2: module_source(2, "1") + b"# changed\n"})
    patch = AGG.diff(old, new)
    assert AGG.inspect(patch).method == "ARCHIVE"
    assert AGG.apply(old, patch) == new
    # The gzip stream changes from the edit onwards; diffing the tar inside is what pays.
    plain = DeltaAggregator(archive_aware=False).diff(old, new)
    assert len(patch) * 3 < len(plain)


def test_nested_json_gz_member():
    old = wheel("1.0", data_json_gz=True)
    new = wheel("1.1", data_json_gz=True)
    patch = AGG.diff(old, new)
    assert AGG.apply(old, patch) == new
    assert len(patch) < len(new) * 0.1


def test_unrelated_content_gets_full_patch():
    old, new = os.urandom(50_000), os.urandom(50_000)
    patch = AGG.diff(old, new)
    assert AGG.inspect(patch).method == "FULL"
    assert len(patch) <= len(new) + 128
    assert AGG.apply(old, patch) == new


def test_wrong_base_is_refused():
    old = os.urandom(10_000)
    new = edit(old, 3)
    patch = AGG.diff(old, new)
    with pytest.raises(BaseMismatchError):
        AGG.apply(edit(old, 4), patch)
    with pytest.raises(BaseMismatchError):
        AGG.apply(old[:-1], patch)


def test_output_limit_refused_before_allocating():
    old = bytes(1000)
    new = bytes(5_000_000)
    patch = AGG.diff(old, new)
    small = DeltaAggregator(archive_aware=True, max_output_size=1_000_000)
    with pytest.raises(OutputTooLargeError):
        small.apply(old, patch)
    assert AGG.apply(old, patch) == new


@pytest.mark.parametrize("cut", [0, 1, 10, 40, -33, -1])
def test_truncated_patches_raise(cut):
    old = wheel("1.0")
    new = wheel("1.1", changed={1: b"x = 1\n"})
    patch = AGG.diff(old, new)
    bad = patch[:cut] if cut >= 0 else patch[: len(patch) + cut]
    with pytest.raises(CorruptPatchError):
        AGG.apply(old, bad)


FLIP_OLD = random.Random(5).randbytes(2_000)
FLIP_NEW = edit(FLIP_OLD, 7)
FLIP_PATCH = AGG.diff(FLIP_OLD, FLIP_NEW)


@given(st.data())
def test_bit_flips_raise(data):
    old = FLIP_OLD
    patch = bytearray(FLIP_PATCH)
    i = data.draw(st.integers(0, len(patch) - 1))
    patch[i] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(RegistryCoreError):
        AGG.apply(old, bytes(patch))


def test_bad_arguments():
    with pytest.raises(InvalidTypeError):
        AGG.diff("text", b"bytes")
    with pytest.raises(InvalidTypeError):
        AGG.apply(b"x", 12)
    with pytest.raises(InvalidArgumentError):
        DeltaAggregator(level=0)
    with pytest.raises(InvalidArgumentError):
        DeltaAggregator(max_output_size=0)
    with pytest.raises(CorruptPatchError):
        AGG.apply(b"", b"not a patch at all, clearly not one")


def test_accepts_any_buffer(tmp_path):
    import mmap

    old = wheel("1.0")
    new = wheel("1.1", changed={0: b"pass\n"})
    path = tmp_path / "old.whl"
    path.write_bytes(old)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        patch = AGG.diff(m, bytearray(new))
        assert AGG.apply(memoryview(old), patch) == new
        gc.collect()  # views of m may sit in reference cycles until collected


def test_flag_gates_archive_mode():
    from registry_core.flags import FeatureFlags

    off = DeltaAggregator(flags=FeatureFlags(overrides={"DELTA_STABLE": False}))
    on = DeltaAggregator(flags=FeatureFlags(overrides={"DELTA_STABLE": True}))
    assert (off.archive_aware, on.archive_aware) == (False, True)
    old = wheel("1.0", lines=300)
    changed = {i: b"import os\n" + module_source(i, "1", 300) for i in (1, 2, 5)}
    new = wheel("1.1", changed=changed, lines=300)
    assert off.inspect(off.diff(old, new)).method in ("BINARY", "FULL")
    assert on.inspect(on.diff(old, new)).method == "ARCHIVE"


def _odd_zip(text: bytes, keep: bytes = b"") -> bytes:
    """A zip whose member was deflated with a sync flush in the middle: no engine reproduces it."""
    import io
    import zipfile
    import zlib

    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    half = len(text) // 2
    comp = (
        c.compress(text[:half]) + c.flush(zlib.Z_SYNC_FLUSH) + c.compress(text[half:]) + c.flush()
    )
    info = zipfile.ZipInfo("odd.bin", (2024, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr(info, text)  # its compressed bytes are replaced below
        zf.writestr("keep.py", keep + module_source(1, "1", 400), zipfile.ZIP_DEFLATED)
    data = out.getvalue()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        zinfo = zf.infolist()[0]
    start = zinfo.header_offset + 30 + len(zinfo.filename)
    orig = data[start : start + zinfo.compress_size]
    import struct

    data = bytearray(data.replace(orig, comp))
    # fix compressed sizes in the local header and the central directory
    shift = len(comp) - len(orig)
    struct.pack_into("<I", data, zinfo.header_offset + 18, len(comp))
    cd = data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, cd + 20, len(comp))
    cd2 = data.find(b"PK\x01\x02", cd + 4)  # the second member's local header moved
    struct.pack_into("<I", data, cd2 + 42, struct.unpack_from("<I", data, cd2 + 42)[0] + shift)
    eocd = data.rfind(b"PK\x05\x06")
    struct.pack_into("<I", data, eocd + 16, cd)
    return bytes(data)


def test_unreproducible_members_use_the_raw_base():
    import io
    import zipfile

    text = module_source(3, "1", 400)
    old = _odd_zip(text)
    new = _odd_zip(text.replace(b"return x * 7", b"return x * 8"), b"import os\n")
    assert zipfile.ZipFile(io.BytesIO(new)).read("odd.bin") == text.replace(
        b"return x * 7", b"return x * 8"
    )
    # reconstruction (on by default) rebuilds such streams; without it they stay compressed
    agg = DeltaAggregator(archive_aware=True, reconstruct=False)
    patch = agg.diff(old, new)
    assert agg.inspect(patch).method == "ARCHIVE"
    assert agg.last_stats["raw_base"] is True
    assert agg.apply(old, patch) == new
    newer = _odd_zip(text.replace(b"return x * 7", b"return x * 9"), b"import sys\n")
    p2 = agg.diff(new, newer)
    composed = agg.compose([patch, p2])
    assert agg.apply(old, composed) == newer


def test_flags_are_checked():
    from registry_core.delta._format import parse, serialize

    p = parse(FLIP_PATCH)
    sections = [(k, s.codec, s.raw_len, bytes(s.payload)) for k, s in p.sections.items()]
    for flags in (0x01, 0x80):  # RAW_BASE on a non-ARCHIVE patch; an unknown bit
        bad = serialize(
            p.method,
            base_size=p.base_size,
            target_size=p.target_size,
            base_sha256=p.base_sha256,
            target_sha256=p.target_sha256,
            sections=sections,
            flags=flags,
        )
        with pytest.raises(CorruptPatchError):
            AGG.apply(FLIP_OLD, bad)


def test_one_aggregator_shared_by_threads():
    """cffi releases the GIL in the C core; concurrent diffs and applies must not interfere."""
    from concurrent.futures import ThreadPoolExecutor

    agg = DeltaAggregator(archive_aware=True)
    pairs = []
    for k in range(8):
        old = wheel(f"1.{k}", lines=120)
        changed = {k: b"import os\n" + module_source(k, "1", 120)}
        pairs.append((old, wheel(f"1.{k}.1", changed=changed, lines=120)))

    def work(pair):
        old, new = pair
        return agg.apply(old, agg.diff(old, new)) == new

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(work, pairs * 2))


def test_reference_engines_here():
    from registry_core.delta._deflate import MINIZ, ZLIB, engine_reproduces

    assert engine_reproduces(ZLIB) and engine_reproduces(MINIZ)


def test_non_reference_zlib_is_refused_up_front(monkeypatch):
    """A platform whose zlib gives other bytes gets a clear error before any work, and plain
    (BINARY) patches still apply there."""
    from registry_core.delta import _deflate
    from registry_core.errors import ReproductionUnavailableError

    old = wheel("1.0", lines=300)
    new = wheel("1.1", lines=300, changed={2: b"import os\n" + module_source(2, "1", 300)})
    patch = AGG.diff(old, new)
    plain = DeltaAggregator(archive_aware=False).diff(old, new)
    assert AGG.inspect(patch).method == "ARCHIVE"
    monkeypatch.setitem(_deflate._engine_ok, _deflate.ZLIB, False)
    with pytest.raises(ReproductionUnavailableError, match="reference deflate output"):
        AGG.apply(old, patch)
    assert AGG.apply(old, plain) == new
