"""Our SIEVE, S3-FIFO and LRU against libCacheSim's on the same Zipf trace (unit and varied
sizes): LRU and SIEVE give the same hit for every request; S3-FIFO's miss ratio is within 0.002
for unit sizes (a few requests in a thousand are decided differently: see docs/ml.md) and 0.005
with sizes (libCacheSim does not admit an object as large as its small queue; ours must)."""

from __future__ import annotations

import os
import random

import pytest

from registry_core.eviction import make_policy, replay


def _libcachesim():
    try:
        import libcachesim
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("libcachesim is not installed, and CI=true: pip install libcachesim")
        pytest.skip("libcachesim is not installed (the bench extra)")
    return libcachesim


def _trace(seed: int, n_objects: int = 2000, n: int = 20_000) -> list[int]:
    rng = random.Random(seed)
    weights = [1 / (i + 1) ** 0.9 for i in range(n_objects)]
    return rng.choices(range(n_objects), weights=weights, k=n)


@pytest.mark.parametrize("sized", [False, True])
@pytest.mark.parametrize("fraction", [0.01, 0.1])
def test_miss_ratios_match_libcachesim(sized, fraction):
    lcs = _libcachesim()
    keys = _trace(7)
    rng = random.Random(3)
    size = {k: rng.randint(1, 100) if sized else 1 for k in set(keys)}
    cap = max(int(sum(size.values()) * fraction), 20)
    theirs = {"lru": lcs.LRU, "sieve": lcs.Sieve, "s3fifo": lcs.S3FIFO}
    for name, make in theirs.items():
        cache = make(cap)
        hits = [
            bool(cache.get(lcs.Request(obj_size=size[k], obj_id=k + 1, clock_time=i)))
            for i, k in enumerate(keys)
        ]
        requests = ((str(k), size[k], float(i)) for i, k in enumerate(keys))
        ours = replay(make_policy(name, capacity_bytes=cap), requests, cap, record=True).hits
        if name == "s3fifo":  # sized: libCacheSim refuses objects >= its small queue
            assert abs(sum(ours) - sum(hits)) / len(keys) < (0.005 if sized else 0.002), name
        else:
            assert ours == hits, name
