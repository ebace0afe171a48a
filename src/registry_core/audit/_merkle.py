"""RFC 9162 (section 2.1) Merkle tree hashing, proofs and their verification, sans-IO.

Leaves hash as ``SHA-256(0x00 || entry)``, interior nodes as ``SHA-256(0x01 || left || right)``
(domain separation: a leaf can never pass for a node). Every function that builds something
reads the tree through ``hash_at(level, index)``: the hash of the complete subtree of ``2**level``
leaves starting at leaf ``index * 2**level`` (the "stored hashes" of a log, served as tiles), so
one code path computes roots and proofs from memory, from tile files or from HTTP.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "HashAt",
    "MemoryTree",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion",
    "subtree_hash",
    "tree_hash",
    "verify_consistency",
    "verify_inclusion",
]

#: The hash of the empty tree (SHA-256 of nothing).
EMPTY_ROOT = hashlib.sha256(b"").digest()

HashAt = Callable[[int, int], bytes]

_sha256 = hashlib.sha256


def leaf_hash(entry: bytes) -> bytes:
    """``SHA-256(0x00 || entry)``."""
    return _sha256(b"\x00" + bytes(entry)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return _sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _check_size(*sizes: int) -> None:
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ValueError(f"tree sizes and indexes must be non-negative integers, not {s!r}")


def subtree_hash(hash_at: HashAt, start: int, end: int) -> bytes:
    """MTH(D[start:end]) for a range whose start is aligned as RFC 9162's recursion makes it
    (``start`` a multiple of the largest power of two not above ``end - start``)."""
    n = end - start
    if n <= 0:
        raise ValueError("an empty range has no subtree hash")
    # the right spine: complete aligned subtrees, largest first, folded right to left
    parts: list[bytes] = []
    while n:
        if n & (n - 1) == 0 and start % n == 0:
            level = n.bit_length() - 1
            parts.append(hash_at(level, start >> level))
            break
        k = _split(n)
        level = k.bit_length() - 1
        if start % k:
            raise ValueError(f"range [{start}, {end}) is not aligned for RFC 9162")
        parts.append(hash_at(level, start >> level))
        start += k
        n -= k
    h = parts[-1]
    for p in reversed(parts[:-1]):
        h = node_hash(p, h)
    return h


def tree_hash(hash_at: HashAt, size: int) -> bytes:
    """The root hash of the tree of the first ``size`` entries."""
    _check_size(size)
    return EMPTY_ROOT if size == 0 else subtree_hash(hash_at, 0, size)


def inclusion_proof(hash_at: HashAt, index: int, size: int) -> list[bytes]:
    """RFC 9162 PATH(index, D[0:size]): the audit path of leaf ``index``, leaf level first."""
    _check_size(index, size)
    if index >= size:
        raise ValueError(f"leaf {index} is not in a tree of size {size}")
    proof: list[bytes] = []
    lo, hi, m = 0, size, index
    while hi - lo > 1:
        k = _split(hi - lo)
        if m < k:
            proof.append(subtree_hash(hash_at, lo + k, hi))
            hi = lo + k
        else:
            proof.append(subtree_hash(hash_at, lo, lo + k))
            lo += k
            m -= k
    proof.reverse()
    return proof


def consistency_proof(hash_at: HashAt, old_size: int, new_size: int) -> list[bytes]:
    """RFC 9162 PROOF(old_size, D[0:new_size]) (empty when ``old_size`` is 0 or equal)."""
    _check_size(old_size, new_size)
    if old_size > new_size:
        raise ValueError(f"no consistency proof from size {old_size} to smaller {new_size}")
    if old_size == 0 or old_size == new_size:
        return []
    proof: list[bytes] = []
    lo, hi, m, complete = 0, new_size, old_size, True
    while True:
        n = hi - lo
        if m == n:
            if not complete:
                proof.append(subtree_hash(hash_at, lo, hi))
            break
        k = _split(n)
        if m <= k:
            proof.append(subtree_hash(hash_at, lo + k, hi))
            hi = lo + k
        else:
            proof.append(subtree_hash(hash_at, lo, lo + k))
            lo += k
            m -= k
            complete = False
    proof.reverse()
    return proof


def root_from_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """The root an inclusion proof leads to (RFC 9162 section 2.1.3.2); ValueError when the
    proof cannot be one for ``index`` in ``size`` (wrong length, bad hash sizes)."""
    _check_size(index, size)
    if index >= size:
        raise ValueError(f"leaf {index} is not in a tree of size {size}")
    if len(leaf) != 32 or any(len(p) != 32 for p in proof):
        raise ValueError("hashes are 32 bytes")
    fn, sn, r = index, size - 1, bytes(leaf)
    for p in proof:
        if sn == 0:
            raise ValueError("inclusion proof too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ValueError("inclusion proof too short")
    return r


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Whether ``proof`` shows leaf hash ``leaf`` at ``index`` in the tree ``root`` of ``size``."""
    try:
        return root_from_inclusion(leaf, index, size, proof) == bytes(root)
    except ValueError:
        return False


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Whether ``proof`` shows the tree ``old_root`` of ``old_size`` is a prefix of the tree
    ``new_root`` of ``new_size`` (RFC 9162 section 2.1.4.2)."""
    try:
        _check_size(old_size, new_size)
    except ValueError:
        return False
    if old_size > new_size or any(len(p) != 32 for p in proof):
        return False
    if old_size == new_size:
        return not proof and bytes(old_root) == bytes(new_root)
    if old_size == 0:
        return not proof
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, bytes(old_root))
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == bytes(old_root) and sr == bytes(new_root)


class MemoryTree:
    """Stored hashes of a tree held in lists (tests, verification of a fetched copy)."""

    def __init__(self) -> None:
        self.levels: list[list[bytes]] = [[]]

    def __len__(self) -> int:
        return len(self.levels[0])

    def append_hash(self, h: bytes) -> None:
        """Add one leaf hash (and every subtree it completes)."""
        level = 0
        self.levels[0].append(h)
        while len(self.levels[level]) % 2 == 0:
            row = self.levels[level]
            parent = node_hash(row[-2], row[-1])
            level += 1
            if level == len(self.levels):
                self.levels.append([])
            self.levels[level].append(parent)

    def append(self, entry: bytes) -> None:
        self.append_hash(leaf_hash(entry))

    def hash_at(self, level: int, index: int) -> bytes:
        try:
            return self.levels[level][index]
        except IndexError:
            raise ValueError(f"no complete subtree at level {level} index {index}") from None
