"""compose (chains without intermediates), bundle/unbundle, best_base, file forms, inspect."""

from __future__ import annotations

import itertools
import random

import pytest
from _delta_artifacts import module_source, sdist, wheel
from hypothesis import event, given, settings
from hypothesis import strategies as st

from registry_core import DeltaAggregator
from registry_core.errors import ComposeError, CorruptPatchError, InvalidArgumentError

AGG = DeltaAggregator(archive_aware=True)


def releases(n: int) -> list[bytes]:
    out = []
    mods: dict[int, bytes] = {}
    rnd = random.Random(9)
    for v in range(n):
        k = rnd.randrange(30)
        mods[k] = f"# release {v}\n".encode() + module_source(k, "1", 300)
        out.append(wheel(f"1.{v}", modules=30, changed=dict(mods), lines=300))
    return out


def test_compose_wheel_chain():
    rel = releases(4)
    patches = [AGG.diff(a, b) for a, b in itertools.pairwise(rel)]
    composed = AGG.compose(patches)
    assert AGG.apply(rel[0], composed) == rel[-1]
    methods = {AGG.inspect(p).method for p in patches}
    if methods == {"ARCHIVE"}:
        assert AGG.inspect(composed).method == "ARCHIVE"
        assert len(composed) <= sum(len(p) for p in patches)
    else:  # mixed kinds travel together: the sum plus one header
        assert len(composed) <= sum(len(p) for p in patches) + 128


def test_compose_archive_patches_merges_them():
    """Three archive deltas of a wheel become one archive delta, smaller than their sum."""

    def text(seed: int) -> bytes:
        rnd = random.Random(seed)
        return bytes(rnd.choice(b"abcdefgh \n") for _ in range(6000))

    big = {i: text(i) for i in range(6)}
    rel = []
    for v in range(4):
        mods = dict(big)
        for k in range(v + 1):
            mods[k] = b"# v%d\n" % v + big[k]
        rel.append(wheel(f"1.{v}", modules=6, changed=mods))
    patches = [AGG.diff(a, b) for a, b in itertools.pairwise(rel)]
    assert {AGG.inspect(p).method for p in patches} == {"ARCHIVE"}
    composed = AGG.compose(patches)
    assert AGG.inspect(composed).method == "ARCHIVE"
    assert AGG.apply(rel[0], composed) == rel[-1]
    assert len(composed) <= sum(len(p) for p in patches)


def test_compose_sdist_chain():
    rel = [sdist(f"1.{v}", changed={v: module_source(v, "x") + b"# edit\n"}) for v in range(3)]
    patches = [AGG.diff(a, b) for a, b in itertools.pairwise(rel)]
    composed = AGG.compose(patches)
    assert AGG.apply(rel[0], composed) == rel[-1]


def edit(data: bytes, rnd: random.Random) -> tuple[bytes, int, int]:
    """Three random insertions, each followed by a deletion of up to 9 bytes (once the data
    has more than 10); returns the edited bytes and how many bytes were inserted / deleted."""
    b = bytearray(data)
    inserted = deleted = 0
    for _ in range(3):
        i = rnd.randrange(len(b) + 1)
        piece = rnd.randbytes(rnd.randrange(0, 40))
        b[i:i] = piece
        inserted += len(piece)
        if len(b) > 10:
            j = rnd.randrange(len(b))
            n = min(rnd.randrange(0, 10), len(b) - j)
            del b[j : j + n]  # from b itself: `del b[j:][:n]` deleted from a copy
            deleted += n
    return bytes(b), inserted, deleted


def test_edit_really_deletes():
    """The chain property's edits delete bytes: most seeds delete some, and the length shows it."""
    deleting = 0
    for seed in range(50):
        data, inserted, deleted = edit(b"x" * 500, random.Random(seed))
        assert len(data) == 500 + inserted - deleted
        deleting += deleted > 0
    assert deleting >= 40


@settings(max_examples=40)
@given(
    st.binary(min_size=1, max_size=3000), st.lists(st.integers(0, 2**32), min_size=2, max_size=4)
)
def test_compose_binary_chain(start, seeds):
    versions = [start]
    deleted = 0
    for seed in seeds:
        data, _, gone = edit(versions[-1], random.Random(seed))
        deleted += gone
        versions.append(data or b"\x00")
    event("some bytes deleted" if deleted else "insertions only")
    patches = [AGG.diff(a, b) for a, b in itertools.pairwise(versions)]
    composed = AGG.compose(patches)
    assert AGG.apply(versions[0], composed) == versions[-1]


def test_compose_with_full_patches():
    a, b, c = random.randbytes(5000), random.randbytes(5000), random.randbytes(5000)
    c2 = c[:2500] + b"!" + c[2500:]
    patches = [AGG.diff(a, b), AGG.diff(b, c), AGG.diff(c, c2)]
    assert AGG.inspect(patches[0]).method == "FULL"
    assert AGG.apply(a, AGG.compose(patches)) == c2


def test_compose_refuses_broken_chain():
    a, b, c = b"a" * 100, b"b" * 100, b"c" * 100
    with pytest.raises(ComposeError):
        AGG.compose([AGG.diff(a, b), AGG.diff(a, c)])
    with pytest.raises(InvalidArgumentError):
        AGG.compose([])


def test_bundle_round_trip_and_integrity():
    rel = releases(3)
    entries = {"pkg-a": AGG.diff(rel[0], rel[1]), "pkg-b": AGG.diff(rel[1], rel[2]), "ünï": b""}
    blob = AGG.bundle(entries)
    assert AGG.unbundle(blob) == entries
    bad = bytearray(blob)
    bad[len(bad) // 2] ^= 0x40
    with pytest.raises(CorruptPatchError):
        AGG.unbundle(bytes(bad))
    with pytest.raises(CorruptPatchError):
        AGG.unbundle(blob[:-1])
    with pytest.raises(CorruptPatchError):
        AGG.unbundle(blob, max_entries=2)


@given(st.dictionaries(st.text(min_size=1, max_size=20), st.binary(max_size=100), max_size=8))
def test_bundle_property(entries):
    assert AGG.unbundle(AGG.bundle(entries)) == entries


def test_best_base_picks_the_closest_release():
    rel = releases(6)
    target = rel[5]
    candidates = {f"v{i}": rel[i] for i in (0, 2, 4)}
    choice = AGG.best_base(candidates, target)
    sizes = {k: len(AGG.diff(v, target)) for k, v in candidates.items()}
    assert choice == min(sizes, key=sizes.get)
    assert AGG.best_base([rel[0], rel[4]], target) == 1


def test_file_forms(tmp_path):
    rel = releases(2)
    (tmp_path / "a.whl").write_bytes(rel[0])
    (tmp_path / "b.whl").write_bytes(rel[1])
    info = AGG.diff_file(tmp_path / "a.whl", tmp_path / "b.whl", tmp_path / "p.rcd")
    assert info.method == "ARCHIVE" and info.patch_size == (tmp_path / "p.rcd").stat().st_size
    AGG.apply_file(tmp_path / "a.whl", tmp_path / "p.rcd", tmp_path / "out.whl")
    assert (tmp_path / "out.whl").read_bytes() == rel[1]
    # a wrong base writes nothing
    (tmp_path / "wrong.whl").write_bytes(rel[1])
    with pytest.raises(Exception):  # noqa: B017 - BaseMismatchError, checked elsewhere
        AGG.apply_file(tmp_path / "wrong.whl", tmp_path / "p.rcd", tmp_path / "out2.whl")
    assert not (tmp_path / "out2.whl").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_empty_inputs():
    for old, new in [(b"", b""), (b"", b"x"), (b"x", b"")]:
        assert AGG.apply(old, AGG.diff(old, new)) == new


def test_target_layout_is_sent_relative_to_the_base():
    """Unchanged members cost a few bytes each in the layout section, not a full node."""
    from registry_core.delta._layout import Layout, expand

    old = wheel("1.0", modules=60, lines=300)
    new = wheel(
        "1.1", modules=60, lines=300, changed={7: b"import os\n" + module_source(7, "1", 300)}
    )
    patch = AGG.diff(old, new)
    assert AGG.inspect(patch).method == "ARCHIVE"
    raw, _stored = AGG.inspect(patch).sections["LAYOUTS"]
    old_layout, _ = expand(old)
    new_layout, _ = expand(new)
    # the target's layout is mostly references: well under half its absolute encoding
    assert raw - len(old_layout.to_bytes()) < len(new_layout.to_bytes()) // 2
    assert AGG.apply(old, patch) == new
    marked = new_layout.with_copy_from({i: i for i in range(0, 60) if i != 7})
    encoded = marked.to_bytes(relative_to=old_layout)
    assert Layout.from_bytes(encoded, relative_to=old_layout) == marked
    assert len(encoded) < len(marked.to_bytes()) // 2  # the rest is the Raw headers between
