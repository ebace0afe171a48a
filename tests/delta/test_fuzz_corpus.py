"""Replay of the atheris fuzz target (fuzz/fuzz_apply.py): saved crashers, seeds, mutations.

Every input must either succeed (and then rebuild the declared target exactly) or raise a
RegistryCoreError; ``one_input`` raises anything else. Inputs libFuzzer saved under
``fuzz/crashers/<mode>/`` are regression cases for bugs found by a fuzz run.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry_core import DeltaAggregator

ROOT = Path(__file__).resolve().parents[2]
FUZZ = ROOT / "fuzz"


def _load():
    spec = importlib.util.spec_from_file_location("fuzz_apply", FUZZ / "fuzz_apply.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("fuzz_apply", module)
    spec.loader.exec_module(module)
    return module


fz = _load()


def _saved(mode: str) -> list[Path]:
    folder = FUZZ / "crashers" / mode
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


# Saved inputs whose bug is reported but not fixed yet: strict xfail, so the fix turns them into
# an XPASS failure that asks for this entry to be removed.
KNOWN_BUGS: dict[str, str] = {}  # fixed: crash-685b28c7... (CHAIN target_size unchecked)

SAVED = [
    pytest.param(
        mode,
        p,
        id=f"{mode}/{p.name}",
        marks=[pytest.mark.xfail(reason=KNOWN_BUGS[p.name], strict=True, raises=AssertionError)]
        if p.name in KNOWN_BUGS
        else [],
    )
    for mode in fz.MODES
    for p in _saved(mode)
]


@pytest.mark.parametrize(("mode", "path"), SAVED)
def test_saved_crasher_is_handled(mode, path):
    fz.one_input(path.read_bytes(), mode)


def test_chain_patch_with_a_wrong_declared_size_is_refused():
    """Minimal form of the CHAIN finding: rewrite target_size, keep everything else valid."""
    from registry_core.delta._format import parse, serialize
    from registry_core.errors import CorruptPatchError

    agg = DeltaAggregator()
    chain = next(p for _, p in fz.patches() if agg.inspect(p).method == "CHAIN")
    p = parse(chain)
    sections = [(k, s.codec, s.raw_len, bytes(s.payload)) for k, s in p.sections.items()]
    lying = serialize(
        p.method,
        base_size=p.base_size,
        target_size=p.target_size + 256,
        base_sha256=p.base_sha256,
        target_sha256=p.target_sha256,
        sections=sections,
    )
    if p.target_size + 256 == len(agg.apply(fz.bases()[0], chain)):
        pytest.fail("test setup: the size change must make the header wrong")
    with pytest.raises(CorruptPatchError):
        agg.apply(fz.bases()[0], lying)


def test_seed_patches_rebuild_their_targets():
    agg = DeltaAggregator()
    artifacts = fz.artifacts()
    methods = set()
    for base_index, patch in fz.patches():
        out = agg.apply(fz.bases()[base_index], patch)
        info = agg.inspect(patch)
        assert hashlib.sha256(out).hexdigest() == info.target_sha256
        methods.add(info.method)
    # the seeds cover every kind of patch the fuzzer should start from
    assert {"ARCHIVE", "BINARY", "FULL", "ZSTD_PREFIX", "CHAIN"} <= methods
    assert [agg.apply(old, fz.patches()[i][1]) for i, (old, _) in enumerate(artifacts)] == [
        new for _, new in artifacts
    ]


@pytest.mark.parametrize("mode", fz.MODES)
def test_seeds_pass_the_harness(mode):
    seeds = fz.seeds(mode)
    assert len(seeds) >= 8
    for s in seeds:
        fz.one_input(s, mode)


def test_stored_sections_reach_apply():
    """The fixup seeds, with their trailer restored, are valid patches (not rejected early)."""
    agg = DeltaAggregator()
    for s in fz.seeds("fixup"):
        patch = s[1:] + hashlib.sha256(s[1:]).digest()
        base = fz.bases()[(s[0] >> 2) % len(fz.bases())]
        out = agg.apply(base, patch)
        assert hashlib.sha256(out).hexdigest() == agg.inspect(patch).target_sha256


@pytest.mark.parametrize("mode", fz.MODES)
def test_every_single_byte_change_is_handled(mode):
    """Deterministic sweep: each seed with one byte changed at spread positions."""
    for s in fz.seeds(mode):
        step = max(1, len(s) // 61)
        for pos in range(1, len(s), step):
            for value in (s[pos] ^ 0x01, s[pos] ^ 0x80, 0x00, 0xFF):
                fz.one_input(s[:pos] + bytes([value]) + s[pos + 1 :], mode)
        fz.one_input(s[: len(s) // 2], mode)


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=10_000),
    edits=st.lists(
        st.tuples(
            st.integers(min_value=1),
            st.binary(min_size=0, max_size=8),
            st.integers(min_value=0, max_value=8),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_random_splices_of_fixup_seeds_are_handled(seed, edits):
    seeds = fz.seeds("fixup")
    data = bytearray(seeds[seed % len(seeds)])
    for pos, insert, delete in edits:
        pos = 1 + pos % max(1, len(data) - 1)
        data[pos : pos + delete] = insert
    fz.one_input(bytes(data), "fixup")
