"""RFC 9162 Merkle tree hashing and proofs against independent vectors, tile paths and bundles.

Vectors: the certificate-transparency RFC 6962 test vectors (8 leaves, the roots of every size,
inclusion and consistency proofs) as published in transparency-dev/merkle,
``proof/verify_test.go`` (``leaves``, ``roots``, ``inclusionProofs``, ``consistencyProofs``;
the same values as google/certificate-transparency's C++ ``merkle_tree_test.cc``). Their
inclusion vectors number leaves from 1; the tuples below use 0-based indexes.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry_core.audit._merkle import (
    EMPTY_ROOT,
    MemoryTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    tree_hash,
    verify_consistency,
    verify_inclusion,
)
from registry_core.audit._tiles import (
    TileError,
    decode_bundle,
    encode_bundle,
    entries_path,
    parse_path,
    tile_path,
    tile_width,
)

LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
ROOTS = [  # size 1..8
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
INCLUSION = [  # (0-based index, size, proof)
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (0, 1, []),
]
CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]


def _tree(entries: list[bytes]) -> MemoryTree:
    t = MemoryTree()
    for e in entries:
        t.append(e)
    return t


def test_hashes_are_domain_separated() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert (
        node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    )


def test_roots_of_every_size() -> None:
    t = _tree(LEAVES)
    assert tree_hash(t.hash_at, 0) == EMPTY_ROOT
    for size in range(1, 9):
        assert tree_hash(t.hash_at, size).hex() == ROOTS[size - 1], size


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_inclusion_vectors(index: int, size: int, proof: list[str]) -> None:
    t = _tree(LEAVES)
    got = inclusion_proof(t.hash_at, index, size)
    assert [p.hex() for p in got] == proof
    root = bytes.fromhex(ROOTS[size - 1])
    leaf = leaf_hash(LEAVES[index])
    assert verify_inclusion(leaf, index, size, got, root)
    # the CT tests' corruptions: wrong index, size, leaf, root, extra or missing hashes
    bad = [
        (leaf, index + 1, size, got, root),
        (leaf, index, size * 2, got, root),
        (leaf, index, size // 2, got, root),
        (leaf_hash(b"WrongLeaf"), index, size, got, root),
        (leaf, index, size, got, EMPTY_ROOT),
        (leaf, index, size, [*got, root], root),
        (leaf, index, size, [root, *got], root),
    ]
    if index:
        bad.append((leaf, index - 1, size, got, root))
    if got:
        bad.append((leaf, index, size, got[:-1], root))
        for i in range(len(got)):
            flipped = list(got)
            flipped[i] = bytes([flipped[i][0] ^ 8]) + flipped[i][1:]
            bad.append((leaf, index, size, flipped, root))
    for args in bad:
        assert not verify_inclusion(*args), args[1:3]


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY)
def test_consistency_vectors(old: int, new: int, proof: list[str]) -> None:
    t = _tree(LEAVES)
    got = consistency_proof(t.hash_at, old, new)
    assert [p.hex() for p in got] == proof
    r1, r2 = bytes.fromhex(ROOTS[old - 1]), bytes.fromhex(ROOTS[new - 1])
    assert verify_consistency(old, new, r1, r2, got)
    if not got:
        return
    bad = [
        (old - 1, new, r1, r2, got),
        (old + 1, new, r1, r2, got),
        (old, new * 2, r1, r2, got),
        (old, new, r2, r1, got),
        (old, new, r1, r2, []),
        (old, new, r1, r2, [*got, r1]),
        (old, new, r1, r2, [r2, *got]),
        (old, new, r1, r2, got[:-1]),
    ]
    for i in range(len(got)):
        flipped = list(got)
        flipped[i] = bytes([flipped[i][0] ^ 16]) + flipped[i][1:]
        bad.append((old, new, r1, r2, flipped))
    for args in bad:
        assert not verify_consistency(*args), args[:2]


def test_trivial_consistency() -> None:
    r = bytes.fromhex(ROOTS[0])
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(0, 1, EMPTY_ROOT, r, [])
    assert verify_consistency(1, 1, r, r, [])
    assert not verify_consistency(1, 1, r, EMPTY_ROOT, [])
    assert not verify_consistency(1, 1, r, r, [r])
    assert not verify_consistency(2, 1, r, r, [])
    with pytest.raises(ValueError):
        inclusion_proof(_tree(LEAVES).hash_at, 8, 8)
    with pytest.raises(ValueError):
        consistency_proof(_tree(LEAVES).hash_at, 5, 4)


@given(st.integers(1, 300), st.data())
def test_proofs_round_trip(size: int, data: st.DataObject) -> None:
    t = _tree([i.to_bytes(4, "big") for i in range(size)])
    root = tree_hash(t.hash_at, size)
    index = data.draw(st.integers(0, size - 1))
    proof = inclusion_proof(t.hash_at, index, size)
    assert verify_inclusion(t.hash_at(0, index), index, size, proof, root)
    assert not verify_inclusion(leaf_hash(b"other"), index, size, proof, root)
    old = data.draw(st.integers(1, size))
    cproof = consistency_proof(t.hash_at, old, size)
    old_root = tree_hash(t.hash_at, old)
    assert verify_consistency(old, size, old_root, root, cproof)
    if old < size:
        assert not verify_consistency(old, size, leaf_hash(b"x"), root, cproof)


@given(st.integers(0, 10**12), st.one_of(st.none(), st.integers(1, 255)), st.integers(0, 63))
def test_tile_paths_round_trip(n: int, width: int | None, level: int) -> None:
    w = 256 if width is None else width
    assert parse_path(tile_path(level, n, width)) == (level, n, w)
    assert parse_path(entries_path(n, width)) == (None, n, w)


def test_tile_paths() -> None:
    assert tile_path(0, 1234067) == "tile/0/x001/x234/067"
    assert tile_path(1, 0, 17) == "tile/1/000.p/17"
    assert entries_path(5, 3) == "tile/entries/005.p/3"
    for bad in (
        "tile/0/x000/001",
        "tile/00/001",
        "tile/0/01",
        "tile/0/001.p/0",
        "tile/0/001.p/256",
        "tile/0/001.p/08",
        "tile/x/001",
        "tile/0/x001",
        "tile/64/000",
        "tile/0/../000",
        "checkpoint",
    ):
        assert parse_path(bad) is None, bad
    # tlog-tiles' example: a tree of 70,000 entries
    assert [tile_width(0, 273, 70000), tile_width(1, 1, 70000), tile_width(2, 0, 70000)] == [
        112,
        17,
        1,
    ]
    assert tile_width(1, 0, 256) == 1 and tile_width(0, 1, 256) == 0


@given(st.lists(st.binary(max_size=300), max_size=256))
def test_bundles_round_trip(entries: list[bytes]) -> None:
    data = encode_bundle(entries)
    assert decode_bundle(data, len(entries)) == entries
    if data:
        with pytest.raises(TileError):
            decode_bundle(data[:-1], len(entries))
    with pytest.raises(TileError):
        decode_bundle(data + b"\x00\x00", len(entries))
