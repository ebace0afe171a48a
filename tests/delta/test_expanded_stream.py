"""ExpandedDecoder: fed in any chunk sizes it equals the one-shot apply; truncation, extension,
reuse and wrong targets are refused with registry_core errors."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry_core import DeltaAggregator
from registry_core.delta import ExpandedDecoder
from registry_core.errors import CorruptPatchError, InvalidArgumentError, RegistryCoreError

_spec = importlib.util.spec_from_file_location(
    "expanded_method_helpers", Path(__file__).with_name("test_expanded_method.py")
)
_helpers = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("expanded_method_helpers", _helpers)
_spec.loader.exec_module(_helpers)

AGG = DeltaAggregator(level=3)
DATA = _helpers.wheel(11)
PATCH = AGG.recompress(DATA)


def _feed(patch: bytes, sizes: list[int]) -> bytes:
    d = ExpandedDecoder()
    pos, i = 0, 0
    while pos < len(patch):
        n = sizes[i % len(sizes)] if sizes else len(patch)
        d.feed(patch[pos : pos + n])
        d.feed(b"")  # empty feeds are harmless
        pos += n
        i += 1
    return d.finish()


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(1, 4096), min_size=1, max_size=20))
def test_any_chunking_equals_the_one_shot_apply(sizes):
    assert _feed(PATCH, sizes) == AGG.apply(b"", PATCH) == DATA


def test_byte_by_byte():
    assert _feed(PATCH, [1]) == DATA


def test_every_truncation_is_refused_at_finish():
    for cut in range(0, len(PATCH), max(1, len(PATCH) // 300)):
        d = ExpandedDecoder()
        d.feed(PATCH[:cut])
        with pytest.raises(CorruptPatchError):
            d.finish()
    d = ExpandedDecoder()
    d.feed(PATCH[:-1])
    with pytest.raises(CorruptPatchError, match="truncated"):
        d.finish()


def test_a_body_longer_than_declared_is_refused():
    for extra in (b"\x00", PATCH):
        d = ExpandedDecoder()
        with pytest.raises(CorruptPatchError, match="longer"):
            d.feed(PATCH + extra)
    d = ExpandedDecoder()
    d.feed(PATCH)
    with pytest.raises(CorruptPatchError, match="longer"):
        d.feed(b"x")


def test_a_wrong_trailer_is_refused_at_finish_only():
    bad = PATCH[:-1] + bytes([PATCH[-1] ^ 1])
    d = ExpandedDecoder()
    d.feed(bad)  # everything but the trailer is fine
    with pytest.raises(CorruptPatchError, match="checksum"):
        d.finish()


def test_expected_target_digest():
    ok = ExpandedDecoder(expected_sha256=hashlib.sha256(DATA).digest())
    ok.feed(PATCH)
    assert ok.finish() == DATA
    with pytest.raises(CorruptPatchError, match="another target"):
        ExpandedDecoder(expected_sha256=b"\x00" * 32).feed(PATCH)
    with pytest.raises(InvalidArgumentError):
        ExpandedDecoder(expected_sha256=b"short")


def test_other_methods_and_garbage_are_refused_early():
    plain = AGG.diff(_helpers.wheel(1), DATA)
    with pytest.raises(CorruptPatchError, match="not an EXPANDED"):
        ExpandedDecoder().feed(plain)
    with pytest.raises(CorruptPatchError, match="magic"):
        ExpandedDecoder().feed(b"PK\x03\x04")
    with pytest.raises(CorruptPatchError, match="magic"):
        ExpandedDecoder().feed(b"R" + b"x")


def test_a_decoder_is_single_use_and_stays_failed():
    d = ExpandedDecoder()
    d.feed(PATCH)
    assert d.finish() == DATA
    with pytest.raises(CorruptPatchError):
        d.finish()
    f = ExpandedDecoder()
    with pytest.raises(CorruptPatchError):
        f.feed(b"XXXX")
    with pytest.raises(CorruptPatchError, match="earlier error"):
        f.feed(PATCH)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10**9), st.integers(1, 512))
def test_random_damage_fed_in_chunks_is_refused(seed, chunk):
    import random

    rng = random.Random(seed)
    bad = bytearray(PATCH)
    for _ in range(rng.randint(1, 4)):
        bad[rng.randrange(len(bad))] ^= 1 << rng.randrange(8)
    if bytes(bad) == PATCH:
        return
    d = ExpandedDecoder()
    with pytest.raises(RegistryCoreError):
        for pos in range(0, len(bad), chunk):
            d.feed(bytes(bad[pos : pos + chunk]))
        d.finish()


def test_threads_and_close():
    for threads in (1, 2):
        d = ExpandedDecoder(threads=threads)
        d.feed(PATCH)
        assert d.finish() == DATA
    d = ExpandedDecoder()
    d.feed(PATCH[: len(PATCH) // 2])  # the layout is in, content is being rebuilt
    d.close()
    with pytest.raises(CorruptPatchError, match="earlier error"):
        d.feed(PATCH[len(PATCH) // 2 :])


def test_nested_sdist_streams_in_small_chunks():
    data = _helpers.sdist(5)
    patch = DeltaAggregator().recompress(data)
    assert patch is not None
    assert _feed(patch, [13, 1, 500]) == data
