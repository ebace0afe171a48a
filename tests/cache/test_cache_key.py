from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry_core.cache import cache_key
from registry_core.errors import CacheError, InvalidArgumentError, InvalidTypeError

scalars = st.one_of(
    st.binary(max_size=64), st.text(max_size=32), st.integers(), st.booleans(), st.none()
)
parts = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def test_known_vector_pins_the_encoding():
    # Recomputed here from the documented encoding (docs/cache.md), independently of the code.
    u64 = struct.Struct(">Q").pack
    h = hashlib.sha256(b"registry-core/cache-key/v1\x00")
    h.update(b"n" + u64(7) + b"default")
    h.update(u64(2))
    h.update(b"B" + u64(3) + b"abc")
    h.update(b"M" + u64(1) + b"K" + u64(3) + b"Scc" + b"S" + u64(4) + b"gcc1")
    assert cache_key(b"abc", {"cc": "gcc1"}) == h.hexdigest()


def test_length_prefix_separates_boundaries():
    assert cache_key("ab", "c") != cache_key("a", "bc")
    assert cache_key(b"ab", b"c") != cache_key(b"abc")
    assert cache_key(["a", "b"]) != cache_key("a", "b")


def test_types_and_namespace_are_separated():
    keys = {
        cache_key(b"1"),
        cache_key("1"),
        cache_key(1),
        cache_key(True),
        cache_key(None),
        cache_key(["1"]),
        cache_key({"1": None}),
        cache_key(b"1", namespace="other"),
    }
    assert len(keys) == 8


def test_mapping_order_does_not_matter_values_do():
    assert cache_key({"cc": "gcc 13", "ld": "bfd 2.41"}) == cache_key(
        {"ld": "bfd 2.41", "cc": "gcc 13"}
    )
    assert cache_key({"cc": "gcc 13"}) != cache_key({"cc": "gcc 14"})


def test_file_hashes_by_content_streamed(tmp_path: Path):
    data = bytes(range(256)) * 9000  # > 1 MiB chunk: several reads
    f = tmp_path / "input.o"
    f.write_bytes(data)
    g = tmp_path / "other-name.o"
    g.write_bytes(data)
    assert cache_key(f) == cache_key(data) == cache_key(g)
    g.write_bytes(data[:-1] + b"\x00")
    assert cache_key(g) != cache_key(f)
    assert cache_key(str(f)) != cache_key(f)  # a str is text, never a path


def test_missing_file_and_bad_types_raise(tmp_path: Path):
    with pytest.raises(CacheError, match="cannot read"):
        cache_key(tmp_path / "absent")
    with pytest.raises(InvalidTypeError):
        cache_key(1.5)
    with pytest.raises(InvalidTypeError):
        cache_key({1: "x"})
    nested: list = []
    for _ in range(40):
        nested = [nested]
    with pytest.raises(InvalidArgumentError):
        cache_key(nested)


@given(st.lists(parts, max_size=4))
def test_stable(xs):
    assert cache_key(*xs) == cache_key(*xs)
    assert len(cache_key(*xs)) == 64


@given(st.lists(parts, max_size=4), st.lists(parts, max_size=4))
def test_different_inputs_different_keys(a, b):
    def norm(x):  # the key is defined on values where dict order and tuple/list do not count
        if isinstance(x, dict):
            return ("d", sorted((k, norm(v)) for k, v in x.items()))
        if isinstance(x, list):
            return ("l", [norm(i) for i in x])
        return (type(x).__name__, x)

    if repr([norm(x) for x in a]) != repr([norm(x) for x in b]):
        assert cache_key(*a) != cache_key(*b)
    else:
        assert cache_key(*a) == cache_key(*b)


@given(st.binary(max_size=4096))
def test_file_equals_bytes(tmp_path_factory, data):
    f = tmp_path_factory.mktemp("k") / "f"
    f.write_bytes(data)
    assert cache_key(f, namespace="x") == cache_key(data, namespace="x")
