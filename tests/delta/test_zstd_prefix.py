"""ZSTD_PREFIX patches (method 4): round trips, bounded and verified apply, chosen when smaller."""

from __future__ import annotations

import hashlib
import json
import random

import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from registry_core import DeltaAggregator
from registry_core.delta import _prefix
from registry_core.delta._format import Codec, Method, Section, parse, serialize
from registry_core.errors import (
    BaseMismatchError,
    CorruptPatchError,
    OutputTooLargeError,
)

AGG = DeltaAggregator()


def prefix_patch(old: bytes, new: bytes, frame: bytes | None = None, **over: object) -> bytes:
    """A ZSTD_PREFIX patch holding ``frame`` (default: the real frame of ``old`` -> ``new``)."""
    if frame is None:
        frame = _prefix.encode(old, new, level=3)
    header: dict = {
        "base_size": len(old),
        "target_size": len(new),
        "base_sha256": hashlib.sha256(old).digest(),
        "target_sha256": hashlib.sha256(new).digest(),
    }
    header.update(over)
    return serialize(
        Method.ZSTD_PREFIX, sections=[(Section.FRAME, Codec.STORED, len(frame), frame)], **header
    )


def index_json(n_files: int, seed: int = 7) -> bytes:
    """A PEP 691 JSON project page with ``n_files`` files (deterministic)."""
    rng = random.Random(seed)
    files = []
    for i in range(n_files):
        name = f"demo_pkg-1.{i // 2}.0" + ("-py3-none-any.whl" if i % 2 else ".tar.gz")
        files.append(
            {
                "filename": name,
                "url": f"https://files.example/packages/{rng.getrandbits(96):024x}/{name}",
                "hashes": {"sha256": f"{rng.getrandbits(256):064x}"},
                "requires-python": ">=3.9",
                "size": rng.randrange(10_000, 2_000_000),
                "upload-time": f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}T10:00:00.000000Z",
                "yanked": False,
                "core-metadata": {"sha256": f"{rng.getrandbits(256):064x}"} if i % 2 else False,
            }
        )
    versions = sorted({f"1.{i // 2}.0" for i in range(n_files)})
    doc = {"meta": {"api-version": "1.1"}, "name": "demo-pkg", "versions": versions}
    doc["files"] = files
    return json.dumps(doc, indent=1).encode()


@given(st.binary(max_size=3000), st.binary(max_size=3000), st.integers(0, 3000))
def test_frame_round_trip(base, extra, cut):
    target = base[:cut] + extra + base[cut // 2 :]
    frame = _prefix.encode(base, target, level=3)
    assert _prefix.decode(base, frame, len(target)) == target


@given(st.binary(max_size=2000), st.binary(max_size=2000))
def test_patch_round_trip_through_apply(base, target):
    patch = prefix_patch(base, target)
    assert AGG.inspect(patch).method == "ZSTD_PREFIX"
    assert AGG.apply(base, patch) == target


@given(st.binary(min_size=1, max_size=4000), st.integers(0, 2**32))
def test_diff_round_trip(base, seed):
    rng = random.Random(seed)
    target = bytearray(base)
    for _ in range(rng.randrange(1, 6)):
        i = rng.randrange(len(target) + 1)
        target[i:i] = rng.randbytes(rng.randrange(1, 30))
    patch = AGG.diff(base, bytes(target))
    assert AGG.apply(base, patch) == target


def test_chosen_on_a_json_index_where_binary_loses():
    old, new = index_json(400), index_json(402)
    binary_only = DeltaAggregator(prefix=False).diff(old, new)
    patch = AGG.diff(old, new)
    assert AGG.inspect(binary_only).method == "BINARY"
    assert AGG.inspect(patch).method == "ZSTD_PREFIX"
    assert len(patch) < len(binary_only)
    assert AGG.apply(old, patch) == new


def test_prefix_off_never_writes_it():
    old, new = index_json(100), index_json(101)
    assert DeltaAggregator(prefix=False).inspect(
        DeltaAggregator(prefix=False).diff(old, new)
    ).method in ("BINARY", "FULL")


def test_wrong_base_is_refused():
    old, new = index_json(50), index_json(51)
    patch = prefix_patch(old, new)
    with pytest.raises(BaseMismatchError):
        AGG.apply(old[:-1] + b"!", patch)


def test_frame_made_for_another_base_is_refused():
    old, new = index_json(50), index_json(51)
    other = index_json(50, seed=8)
    # The header names `old` (so the base check passes); the frame references `other`'s bytes.
    patch = prefix_patch(old, new, frame=_prefix.encode(other, new, level=3))
    with pytest.raises(CorruptPatchError):
        AGG.apply(old, patch)


@pytest.mark.parametrize("cut", [1, 5, 40])
def test_truncated_frame_is_refused(cut):
    old, new = index_json(50), index_json(51)
    frame = _prefix.encode(old, new, level=3)
    with pytest.raises(CorruptPatchError):
        AGG.apply(old, prefix_patch(old, new, frame=frame[:-cut]))


def test_truncated_patch_is_refused():
    old, new = index_json(20), index_json(21)
    patch = prefix_patch(old, new)
    for n in (len(patch) - 1, len(patch) // 2, 10):
        with pytest.raises(CorruptPatchError):
            AGG.apply(old, patch[:n])


def test_trailing_bytes_after_the_frame_are_refused():
    old, new = index_json(20), index_json(21)
    frame = _prefix.encode(old, new, level=3)
    with pytest.raises(CorruptPatchError, match="unused data|ZSTD_PREFIX"):
        AGG.apply(old, prefix_patch(old, new, frame=frame + b"\0"))


def test_frame_declaring_another_size_is_refused():
    old, new = index_json(20), index_json(21)
    bigger = new + b"x" * 1000
    frame = _prefix.encode(old, bigger, level=3)  # honest frame of a longer output
    with pytest.raises(CorruptPatchError, match="declares"):
        AGG.apply(old, prefix_patch(old, new, frame=frame))


def test_frame_without_content_size_is_refused():
    old, new = b"abc" * 100, b"abd" * 100
    cctx = zstandard.ZstdCompressor(write_content_size=False)
    frame = cctx.compress(new)
    with pytest.raises(CorruptPatchError, match="declares"):
        AGG.apply(old, prefix_patch(old, new, frame=frame))


def test_declared_output_above_the_limit_is_refused_before_decoding():
    old = b"a" * 100
    small = DeltaAggregator(max_output_size=1000)
    frame = _prefix.encode(old, b"b" * 10, level=3)
    patch = prefix_patch(old, b"b" * 10, frame=frame, target_size=10**9)
    with pytest.raises(OutputTooLargeError):
        small.apply(old, patch)


def test_compressed_frame_section_is_refused():
    old, new = b"abc" * 100, b"abd" * 100
    frame = _prefix.encode(old, new, level=3)
    patch = serialize(
        Method.ZSTD_PREFIX,
        base_size=len(old),
        target_size=len(new),
        base_sha256=hashlib.sha256(old).digest(),
        target_sha256=hashlib.sha256(new).digest(),
        sections=[(Section.FRAME, Codec.ZSTD, len(frame), zstandard.compress(frame))],
    )
    with pytest.raises(CorruptPatchError, match="stored"):
        parse(patch)


def test_unknown_method_is_named():
    old, new = b"abc", b"abd"
    patch = bytearray(prefix_patch(old, new))
    patch[5] = 9
    patch[-32:] = hashlib.sha256(patch[:-32]).digest()
    with pytest.raises(CorruptPatchError, match=r"unknown patch method 9 .*4 ZSTD_PREFIX"):
        AGG.apply(old, bytes(patch))


def test_window_limits():
    assert _prefix.fits(_prefix.MAX_WINDOW // 2, _prefix.MAX_WINDOW // 2)
    assert not _prefix.fits(_prefix.MAX_WINDOW, 1)
    frame = _prefix.encode(b"x" * 5000, b"y" * 5000 + b"x" * 5000, level=3)
    assert zstandard.get_frame_parameters(frame).window_size <= _prefix.MAX_WINDOW


def test_compose_of_prefix_patches_is_a_verified_chain():
    a, b, c = index_json(30), index_json(31), index_json(32)
    pab, pbc = prefix_patch(a, b), prefix_patch(b, c)
    composed = AGG.compose([pab, pbc])
    assert AGG.inspect(composed).method == "CHAIN"
    assert AGG.apply(a, composed) == c
    binary = DeltaAggregator(prefix=False).diff(b, c)
    mixed = AGG.compose([pab, binary])
    assert AGG.apply(a, mixed) == c
