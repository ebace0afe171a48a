"""Expansion runs once (issue 9, delta internals): every deflate stream is inflated once per
side in diff and once in apply, and hashed once; counted through zlib.decompressobj, which
every inflation in delta/ goes through (the real function runs; the wrapper only counts)."""

from __future__ import annotations

import hashlib
import zlib

import pytest
from _delta_artifacts import module_source, sdist, wheel

from registry_core import DeltaAggregator


@pytest.fixture
def inflations(monkeypatch):
    calls: list[tuple] = []
    real = zlib.decompressobj

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(zlib, "decompressobj", counting)
    return calls


@pytest.fixture
def hashes(monkeypatch):
    sizes: list[int] = []
    real = hashlib.sha256

    def counting(data=b"", **kwargs):
        sizes.append(len(memoryview(data)))
        return real(data, **kwargs)

    monkeypatch.setattr(hashlib, "sha256", counting)
    return sizes


def nested_pair() -> tuple[bytes, bytes]:
    """Wheels whose zip members include a .json.gz: a gzip stream inside a deflated member."""
    old = wheel("1.0", modules=6, data_json_gz=True)
    new = wheel("1.1", modules=6, data_json_gz=True, changed={2: module_source(2, "2")})
    return old, new


def streams_of(agg: DeltaAggregator, data: bytes) -> int:
    from registry_core.delta._layout import expand

    layout, _ = expand(data)
    return len(layout.deflate_entries())


def test_nested_archive_inflated_once_per_side_in_diff_and_once_in_apply(inflations):
    agg = DeltaAggregator(archive_aware=True, full_margin=0.0)
    old, new = nested_pair()
    n_old, n_new = streams_of(agg, old), streams_of(agg, new)
    assert n_old == n_new == 6 + 1 + 2 + 1 + 1  # modules, __init__, METADATA, RECORD, .json.gz x2
    inflations.clear()
    patch = agg.diff(old, new)
    assert agg.inspect(patch).method == "ARCHIVE"
    # one inflation per stream of each side (before: + one per nested parent and side)
    assert len(inflations) == n_old + n_new
    inflations.clear()
    assert agg.apply(old, patch) == new
    # the base's streams once (before: + the nested parent again to copy its child)
    assert len(inflations) == n_old


def test_nested_sdist_inflated_once(inflations):
    agg = DeltaAggregator(archive_aware=True, full_margin=0.0)
    old = sdist("1.0")
    new = sdist("1.0", changed={3: module_source(3, "x") + b"# edit\n"})
    inflations.clear()
    patch = agg.diff(old, new)
    assert len(inflations) == streams_of(agg, old) + streams_of(agg, new)
    inflations.clear()
    assert agg.apply(old, patch) == new
    assert len(inflations) == streams_of(agg, old)


def test_target_streams_hashed_once(hashes):
    agg = DeltaAggregator(archive_aware=True, full_margin=0.0)
    old, new = nested_pair()
    n_old, n_new = streams_of(agg, old), streams_of(agg, new)
    hashes.clear()
    agg.diff(old, new)
    # the two artifacts, the trailers of the three candidate patches (archive, plain, zstd
    # prefix), and each stream of each side once (before: every target stream twice)
    assert len(hashes) == 2 + 3 + n_old + n_new


def test_raw_base_source_built_in_one_copy(monkeypatch):
    """A target stream no engine reproduces makes the delta source the expanded base followed
    by the base: joined once (before: bytes(old) copied, then the concatenation copied)."""
    import gzip
    import struct

    from registry_core.delta import _layout

    content_old = b"".join(module_source(i, "1") for i in range(12))
    content_new = content_old.replace(b"return x * 3", b"return x * 33")
    old = gzip.compress(content_old, compresslevel=9, mtime=0)
    # Huffman-only with memLevel 1: a deflate stream no searched parameter set reproduces
    odd = zlib.compressobj(1, zlib.DEFLATED, -15, 1, zlib.Z_HUFFMAN_ONLY)
    body = odd.compress(content_new) + odd.flush()
    new = (
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"
        + body
        + struct.pack("<II", zlib.crc32(content_new), len(content_new))
    )
    assert gzip.decompress(new) == content_new
    joins: list[int] = []
    real = _layout.Expansion.expanded

    def counted(self, *tail):
        joins.append(len(tail))
        return real(self, *tail)

    monkeypatch.setattr(_layout.Expansion, "expanded", counted)
    # without reconstruction (on by default, it rebuilds this stream) it stays compressed
    agg = DeltaAggregator(archive_aware=True, full_margin=0.0, reconstruct=False)
    patch = agg.diff(old, new)
    assert agg.last_stats["raw_base"] is True
    assert agg.apply(old, patch) == new
    assert sorted(joins) == [0, 1]  # each side joined once, the base with its tail (itself)


def test_diff_stays_within_max_expanded_size():
    """R5 with a small explicit limit: diff leaves streams compressed beyond it, so apply with
    the same options accepts the patch (before: diff ignored max_expanded_size)."""
    import io
    import zipfile

    def artifact(tag: bytes) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("pkg/big.txt", big)
            zf.writestr("pkg/__init__.py", b"V = " + tag + b"\n")
        return buf.getvalue()

    big = b"".join(module_source(i, "1", 100) for i in range(400))
    assert len(big) > 1 << 20
    old, new = artifact(b"1"), artifact(b"2")
    agg = DeltaAggregator(archive_aware=True, max_expanded_size=1 << 20)
    patch = agg.diff(old, new)
    assert agg.last_stats["expanded_target"] <= 1 << 20
    assert agg.apply(old, patch) == new


def test_one_default_expansion_limit():
    from registry_core.delta._layout import MAX_EXPANDED_CAP, default_max_expanded_size

    agg = DeltaAggregator()
    for size in (0, 1000, 1 << 20, 3 << 20, 40 << 20, 2 << 30):
        assert agg.expanded_limit(size) == default_max_expanded_size(size) <= MAX_EXPANDED_CAP
    assert DeltaAggregator(max_expanded_size=5).expanded_limit(1 << 30) == 5
