from __future__ import annotations

import hashlib
import logging
import socket

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from registry_core.cache import RedisStore
from registry_core.errors import CacheError, InvalidArgumentError

pytestmark = pytest.mark.network


@settings(max_examples=30)
@given(key=st.text(min_size=1, max_size=40), value=st.binary(max_size=4096))
def test_round_trip_on_real_server(redis_server, key, value):
    store = RedisStore(redis_server.url, prefix="rt:")
    assert store.put(key, value)
    assert store.get(key) == value
    raw = redis.Redis.from_url(redis_server.url).get("rt:" + key)
    assert raw == b"RC1" + hashlib.sha256(value).digest() + value  # the documented format


def test_host_port_form_and_missing_key(redis_server, prefix):
    store = RedisStore(host="127.0.0.1", port=redis_server.port, prefix=prefix)
    assert store.ping()
    assert store.get("absent") is None
    assert store.put("k", b"") and store.get("k") == b""  # empty value is a hit, not a miss
    assert store.delete("k") and store.get("k") is None


def test_tampered_value_is_a_miss_and_deleted(redis_server, prefix, caplog):
    store = RedisStore(redis_server.url, prefix=prefix)
    store.put("k", b"payload")
    raw = redis.Redis.from_url(redis_server.url)
    blob = raw.get(prefix + "k")
    raw.set(prefix + "k", blob[:-1] + b"X")
    with caplog.at_level(logging.WARNING, "registry_core.cache"):
        assert store.get("k") is None
    assert store.corrupt == 1 and raw.exists(prefix + "k") == 0
    assert "verification" in caplog.text
    raw.set(prefix + "j", b"not ours")
    assert store.get("j") is None and store.corrupt == 2


def test_size_limit(redis_server, prefix):
    store = RedisStore(redis_server.url, prefix=prefix, max_value_bytes=100)
    assert store.put("ok", b"x" * 100)
    with pytest.raises(CacheError, match="max_value_bytes"):
        store.put("big", b"x" * 101)
    big = RedisStore(redis_server.url, prefix=prefix)
    big.put("big", b"y" * 5000)
    assert store.get("big") is None and store.too_large == 2  # bounded read, not returned
    assert big.get("big") == b"y" * 5000


def test_ttl_is_set_and_refreshed(redis_server, prefix):
    store = RedisStore(redis_server.url, prefix=prefix, ttl=30)
    store.put("k", b"v")
    raw = redis.Redis.from_url(redis_server.url)
    assert 0 < raw.pttl(prefix + "k") <= 30_000
    raw.pexpire(prefix + "k", 5_000)
    assert store.get("k") == b"v"
    assert raw.pttl(prefix + "k") > 5_000  # a hit slides the expiry
    with pytest.raises(InvalidArgumentError):
        RedisStore(redis_server.url, ttl=0)


def test_server_down_raises_cache_error(private_redis, prefix):
    store = RedisStore(private_redis.url, prefix=prefix, timeout=1.0)
    store.put("k", b"v")
    private_redis.stop()
    with pytest.raises(CacheError, match=r"failed during GET.*fail_open=True"):
        store.get("k")
    with pytest.raises(CacheError, match="SET"):
        store.put("k", b"v")
    assert store.errors == 2


def test_server_down_fail_open_is_a_counted_logged_miss(private_redis, prefix, caplog):
    store = RedisStore(private_redis.url, prefix=prefix, timeout=1.0, fail_open=True)
    store.put("k", b"v")
    private_redis.stop()
    with caplog.at_level(logging.WARNING, "registry_core.cache"):
        assert store.get("k") is None
        assert store.put("k", b"v") is False
    assert store.errors == 2
    assert "fail_open" in caplog.text


def test_nothing_listening_raises_cache_error():
    with socket.socket() as s:  # a port that was free a moment ago, nothing listens on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = RedisStore(host="127.0.0.1", port=port, timeout=0.5)
    with pytest.raises(CacheError, match=f"127.0.0.1:{port}"):
        store.get("k")
    with pytest.raises(InvalidArgumentError, match="URL"):
        RedisStore("http://not-redis")


def test_the_bounded_reply_parser_is_in_use(redis_server, prefix):
    """cache/_resp.py extends redis-py's private RESP2 parser; if a redis-py release moves it,
    the store silently falls back to the unbounded default parser: fail here instead."""
    from registry_core.cache._resp import bounded_parser

    parser = bounded_parser(1 << 20)
    assert parser is not None, f"redis-py {redis.__version__}: no RESP2 parser to bound"
    store = RedisStore(redis_server.url, prefix=prefix)
    assert store.put("k", b"v") and store.get("k") == b"v"
    conn = store._client.connection_pool.get_connection()
    try:
        assert type(conn._parser).__name__ == "BoundedRESP2Parser"
    finally:
        store._client.connection_pool.release(conn)
