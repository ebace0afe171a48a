"""MurmurHash3 x86_32 and the Unleash gradual-rollout bucket, against published vectors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry_core.flags import MURMUR_BACKEND, FeatureFlags, murmur3_32, rollout_bucket
from registry_core.flags._murmur import rollout_bucket_mmh3, rollout_bucket_python

# Reference outputs of MurmurHash3_x86_32 (Austin Appleby's SMHasher reference implementation),
# covering every tail length (0..3 bytes) and several seeds.
MURMUR_VECTORS = [
    (b"", 0, 0x00000000),
    (b"", 1, 0x514E28B7),
    (b"", 0xFFFFFFFF, 0x81F16F39),
    (b"\x00\x00\x00\x00", 0, 0x2362F9DE),
    (b"\xff\xff\xff\xff", 0, 0x76293B50),
    (b"!Ce\x87", 0, 0xF55B516B),
    (b"!Ce\x87", 0x5082EDEE, 0x2362F9DE),
    (b"!Ce", 0, 0x7E4A8634),
    (b"!C", 0, 0xA0F7B07A),
    (b"!", 0, 0x72661CF4),
    (b"\x00\x00\x00", 0, 0x85F0B427),
    (b"\x00\x00", 0, 0x30F4C306),
    (b"\x00", 0, 0x514E28B7),
    (b"aaaa", 0x9747B28C, 0x5A97808A),
    (b"aaa", 0x9747B28C, 0x283E0130),
    (b"aa", 0x9747B28C, 0x5D211726),
    (b"a", 0x9747B28C, 0x7FA09EA6),
    (b"abcd", 0x9747B28C, 0xF0478627),
    (b"abc", 0x9747B28C, 0xC84A62DD),
    (b"ab", 0x9747B28C, 0x74875592),
    (b"Hello, world!", 0x9747B28C, 0x24884CBA),
    (b"The quick brown fox jumps over the lazy dog", 0x9747B28C, 0x2FA826CD),
    (b"hello", 0, 613153351),
]


@pytest.mark.parametrize(("data", "seed", "expected"), MURMUR_VECTORS)
def test_murmur3_reference_vectors(data, seed, expected):
    assert murmur3_32(data, seed) == expected


# Unleash client specification (github.com/Unleash/client-specification), the gradual-rollout
# test cases. Unleash buckets with murmur3_x86_32(f"{groupId}:{userId}", 0) % 100 + 1 and
# enables when the bucket <= percentage (scripts/generate-wanted-hash.ts in the same repo).
# Each row: (source file, groupId, stickiness value, percentage, expected enabled).
S03 = "specifications/03-gradual-rollout-user-id-strategy.json"
S10 = "specifications/10-flexible-rollout-strategy.json"
S12 = "specifications/12-custom-stickiness.json"
G12 = "Feature.flexible.rollout.custom.stickiness_50"
UNLEASH_ROLLOUT_VECTORS = [
    (S03, "AB12A", "123", 100, True),
    (S03, "AB12A", "122", 50, True),
    (S03, "AB12A", "155", 50, False),
    (S03, "AB12A", "122", 0, False),
    (S10, "Feature.flexibleRollout.10", "174", 10, True),
    (S10, "Feature.flexibleRollout.10", "499", 10, False),
    (S10, "Feature.flexibleRollout.userId.55", "25", 55, True),
    (S10, "Feature.flexibleRollout.sessionId.42", "147", 42, True),
    (S12, G12, "402", 50, False),
    (S12, G12, "388", 50, True),
    (S12, G12, "39", 50, True),
]
ROW = ("source", "group", "user", "percent", "expected")


@pytest.mark.parametrize(ROW, UNLEASH_ROLLOUT_VECTORS)
def test_unleash_rollout_vectors_through_bucket(source, group, user, percent, expected):
    assert (rollout_bucket(group, user) <= percent) is expected, source


@pytest.mark.parametrize(ROW, UNLEASH_ROLLOUT_VECTORS)
def test_unleash_rollout_vectors_through_feature_flags(source, group, user, percent, expected):
    """The same vectors, end to end through a configured rollout rule."""
    flags = FeatureFlags({"QUIC_TRANSPORT": {"rollout": percent, "group": group}})
    assert flags.is_enabled("QUIC_TRANSPORT", {"key": user}) is expected, source


@pytest.mark.parametrize(ROW, UNLEASH_ROLLOUT_VECTORS)
def test_unleash_rollout_vectors_through_pure_python(source, group, user, percent, expected):
    """The pure-Python hash alone meets the vectors, whichever backend is in use."""
    bucket = murmur3_32(f"{group}:{user}".encode(), 0) % 100 + 1
    assert (bucket <= percent) is expected, source


@given(st.binary(max_size=200), st.integers(0, 2**32 - 1))
def test_pure_python_equals_mmh3(data, seed):
    mmh3 = pytest.importorskip("mmh3")
    assert murmur3_32(data, seed) == mmh3.hash(data, seed, signed=False)


def test_backend_is_reported():
    try:
        import mmh3  # noqa: F401
    except ImportError:
        assert MURMUR_BACKEND == "python"
    else:
        assert MURMUR_BACKEND == "mmh3"


@given(st.text(max_size=30), st.text(max_size=30))
def test_bucket_is_murmur_of_utf8(group, key):
    data = f"{group}:{key}".encode("utf-8", "surrogatepass")
    assert rollout_bucket(group, key) == murmur3_32(data) % 100 + 1


def test_boundary_vectors_sit_exactly_on_the_percentage():
    # Three of the spec's vectors are enabled with bucket == percentage: "<=", not "<".
    assert rollout_bucket("Feature.flexibleRollout.10", "174") == 10
    assert rollout_bucket("Feature.flexibleRollout.userId.55", "25") == 55
    assert rollout_bucket("Feature.flexibleRollout.sessionId.42", "147") == 42


@given(st.binary(max_size=64), st.integers(0, 2**32 - 1))
def test_murmur3_is_32_bit_and_deterministic(data, seed):
    h = murmur3_32(data, seed)
    assert 0 <= h < 2**32
    assert murmur3_32(bytes(data), seed) == h


@given(st.text(max_size=20), st.text(max_size=40))
def test_bucket_range(group, key):
    assert 1 <= rollout_bucket(group, key) <= 100


def test_buckets_are_uniform_enough():
    counts = [0] * 101
    for i in range(20000):
        counts[rollout_bucket("QUIC_TRANSPORT", f"client-{i}")] += 1
    assert counts[0] == 0
    # 200 expected per bucket; a chi-square with 99 degrees of freedom stays far below 200.
    chi2 = sum((c - 200) ** 2 / 200 for c in counts[1:])
    assert chi2 < 200, chi2
    in_25 = sum(counts[1:26])
    assert 4500 < in_25 < 5500


def test_buckets_are_stable_across_processes():
    """Bucketing must not depend on Python's per-process string hash randomisation."""
    code = (
        "from registry_core.flags import rollout_bucket;"
        "print([rollout_bucket('G', f'k{i}') for i in range(50)])"
    )
    outs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        outs.add(out.stdout)
    outs.add(str([rollout_bucket("G", f"k{i}") for i in range(50)]) + "\n")
    assert len(outs) == 1


def test_pure_python_backend_meets_the_vectors_without_mmh3():
    """With mmh3 unavailable the cached pure-Python bucket is used and gives the same answers."""
    code = (
        "import sys; sys.modules['mmh3'] = None\n"
        "import json; from registry_core.flags import MURMUR_BACKEND, rollout_bucket\n"
        "print(MURMUR_BACKEND, json.dumps([rollout_bucket(g, u) for g, u in "
        + repr([(g, u) for _, g, u, _, _ in UNLEASH_ROLLOUT_VECTORS])
        + "]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    backend, _, buckets = out.stdout.strip().partition(" ")
    assert backend == "python"
    got = json.loads(buckets)
    for (source, _, _, percent, expected), bucket in zip(
        UNLEASH_ROLLOUT_VECTORS, got, strict=False
    ):
        assert (bucket <= percent) is expected, source


@pytest.mark.parametrize(ROW, UNLEASH_ROLLOUT_VECTORS)
def test_pure_python_bucket_in_process_meets_the_vectors_and_equals_mmh3(
    source, group, user, percent, expected
):
    """The pure-Python bucket function itself (the no-mmh3 backend), run in this process."""
    bucket = rollout_bucket_python(group, user)
    assert (bucket <= percent) is expected, source
    pytest.importorskip("mmh3")
    assert rollout_bucket_mmh3(group, user) == bucket


@given(st.text(max_size=30), st.text(max_size=30), st.integers(0, 2**32 - 1))
def test_pure_python_bucket_equals_mmh3_bucket(group, key, seed):
    pytest.importorskip("mmh3")
    assert rollout_bucket_python(group, key, seed) == rollout_bucket_mmh3(group, key, seed)
