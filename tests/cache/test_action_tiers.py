"""LocalActionTier and RedisActionTier: the ActionTier protocol over the existing stores."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry_core.cache import (
    ActionTier,
    Digest,
    LocalActionTier,
    LocalStore,
    RedisActionTier,
    RedisStore,
    cache_key,
)
from registry_core.cache._key import cache_key_of_encoded, encode_part
from registry_core.errors import CacheError, InvalidArgumentError, InvalidTypeError

KEY = "ab" * 32


def exercise(tier: ActionTier) -> None:
    assert isinstance(tier, ActionTier)
    blob = b"object code"
    d = Digest.of(blob)
    assert tier.get_action(KEY) is None and tier.get_blob(d) is None and not tier.has_blob(d)
    tier.put_blob(d, blob)
    assert tier.has_blob(d) and tier.get_blob(d) == blob
    tier.put_action(KEY, b"\x20\x01")
    assert tier.get_action(KEY) == b"\x20\x01"
    with pytest.raises(InvalidArgumentError):
        tier.get_action("not-hex")
    with pytest.raises(InvalidTypeError):
        tier.get_blob("ab" * 32)  # type: ignore[arg-type]


def test_local_tier(tmp_path: Path) -> None:
    store = LocalStore(tmp_path, fsync=False)
    tier = LocalActionTier(store)
    exercise(tier)
    assert sorted(store.keys_lru()) == ["ac/" + KEY, "cas/" + Digest.of(b"object code").hash]


def test_local_tier_refuses_a_blob_over_the_bound(tmp_path: Path) -> None:
    tier = LocalActionTier(LocalStore(tmp_path, max_bytes=4, fsync=False))
    with pytest.raises(CacheError, match="max_bytes"):
        tier.put_blob(Digest.of(b"too large"), b"too large")


def test_redis_tier(redis_server, prefix) -> None:  # type: ignore[no-untyped-def]
    store = RedisStore(redis_server.url, prefix=prefix, max_value_bytes=64)
    tier = RedisActionTier(store)
    exercise(tier)
    assert store.client.exists(prefix + "ac/" + KEY)
    with pytest.raises(CacheError, match="max_value_bytes"):
        tier.put_blob(Digest.of(b"x" * 65), b"x" * 65)


def test_redis_tier_raises_even_when_the_store_fails_open(private_redis, prefix) -> None:  # type: ignore[no-untyped-def]
    store = RedisStore(private_redis.url, prefix=prefix, fail_open=True, timeout=0.5, retries=0)
    tier = RedisActionTier(store)
    private_redis.stop()
    for call in (
        lambda: tier.get_action(KEY),
        lambda: tier.put_action(KEY, b""),
        lambda: tier.has_blob(Digest.of(b"")),
        lambda: tier.put_blob(Digest.of(b""), b""),
    ):
        with pytest.raises(CacheError):
            call()


def test_encode_part_matches_cache_key() -> None:
    parts = ["s", b"b", 1, True, None, [1, "x"], {"k": "v", "a": None}]
    assert cache_key_of_encoded([encode_part(p) for p in parts], namespace="ns") == cache_key(
        *parts, namespace="ns"
    )
