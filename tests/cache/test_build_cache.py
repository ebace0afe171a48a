from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import pytest

from registry_core.cache import BuildCache, LocalStore, RedisStore, cache_key
from registry_core.errors import CacheError, InvalidTypeError
from registry_core.flags import FeatureFlags


def on() -> FeatureFlags:
    return FeatureFlags(overrides={"INCREMENTAL_CACHE": True})


def off() -> FeatureFlags:
    return FeatureFlags(overrides={"INCREMENTAL_CACHE": False})


def test_flag_on_second_get_hits(tmp_path: Path):
    cache = BuildCache(LocalStore(tmp_path), flags=on())
    key = cache_key(b"source", {"cc": "gcc 13.2"})
    assert cache.get(key) is None
    assert cache.put(key, b"object code")
    assert cache.get(key) == b"object code"
    st = cache.stats
    assert st.enabled and st.local.hits == 1 and st.local.misses == 1
    assert st.local.bytes_written == st.local.bytes_read == len(b"object code")
    assert st.local_bytes == len(b"object code")


def test_flag_off_always_misses_and_writes_nothing(tmp_path: Path, redis_server, prefix):
    local = LocalStore(tmp_path)
    remote = RedisStore(redis_server.url, prefix=prefix)
    cache = BuildCache(local, remote, flags=off())
    key = cache_key(b"source")
    assert cache.put(key, b"object code") is False
    assert cache.get(key) is None
    assert len(local) == 0 and remote.get(key) is None  # nothing written to either tier
    calls = []
    assert cache.get_or_build(key, lambda: calls.append(1) or b"built") == b"built"
    assert cache.get_or_build(key, lambda: calls.append(1) or b"built") == b"built"
    assert calls == [1, 1] and len(local) == 0
    st = cache.stats
    assert not st.enabled and st.disabled_calls == 4 and st.local.hits == st.local.misses == 0
    assert st.local_bytes == 0


def test_flag_off_by_default_in_the_catalogue(tmp_path: Path):
    cache = BuildCache(LocalStore(tmp_path), flags=FeatureFlags(environ={}))
    assert not cache.enabled  # experimental: off unless turned on


def test_flag_is_read_on_each_call(tmp_path: Path):
    cfg = tmp_path / "flags.toml"
    cfg.write_text("[flags]\nINCREMENTAL_CACHE = true\n")
    flags = FeatureFlags(config=cfg, environ={}, refresh_interval=0)
    cache = BuildCache(LocalStore(tmp_path / "c"), flags=flags)
    cache.put("k", b"v")
    assert cache.get("k") == b"v"
    cfg.write_text("[flags]\nINCREMENTAL_CACHE = false\n")  # same size: move the mtime too
    os.utime(cfg, (time.time() + 5, time.time() + 5))
    assert cache.get("k") is None and not cache.stats.enabled


def test_backfill_from_remote_to_local(tmp_path: Path, redis_server, prefix):
    remote = RedisStore(redis_server.url, prefix=prefix)
    writer = BuildCache(LocalStore(tmp_path / "machine-a"), remote, flags=on())
    key = cache_key(b"input")
    writer.put(key, b"artifact")
    local_b = LocalStore(tmp_path / "machine-b")
    reader = BuildCache(local_b, remote, flags=on())
    assert key not in local_b
    assert reader.get(key) == b"artifact"  # remote hit
    assert local_b.get(key) == b"artifact"  # back-filled
    remote.delete(key)
    assert reader.get(key) == b"artifact"  # now served locally
    st = reader.stats
    assert (st.remote.hits, st.local.misses, st.local.hits, st.backfills) == (1, 1, 1, 1)


def test_remote_down_strict_and_fail_open(tmp_path: Path, private_redis, prefix):
    strict = BuildCache(
        LocalStore(tmp_path / "a"),
        RedisStore(private_redis.url, prefix=prefix, timeout=1.0),
        flags=on(),
    )
    lenient = BuildCache(
        LocalStore(tmp_path / "b"),
        RedisStore(private_redis.url, prefix=prefix, timeout=1.0, fail_open=True),
        flags=on(),
    )
    private_redis.stop()
    with pytest.raises(CacheError):
        strict.get("k")
    assert lenient.get("k") is None
    assert lenient.put("k", b"v") is True  # stored locally, remote skipped and counted
    assert lenient.get("k") == b"v"
    assert lenient.stats.remote.errors == 2


def test_single_flight_builds_once(tmp_path: Path):
    cache = BuildCache(LocalStore(tmp_path), flags=on())
    calls = 0
    started = threading.Event()
    release = threading.Event()

    def build() -> bytes:
        nonlocal calls
        calls += 1
        started.set()
        release.wait(30)
        return b"expensive"

    results: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get_or_build("k", build)))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    assert started.wait(30)
    # wait (bounded, on a condition, not a fixed sleep) until the 7 others joined the flight
    joined = threading.Event()
    for _ in range(30_000):
        if cache.stats.coalesced == 7:
            joined.set()
            break
        joined.wait(0.001)
    assert joined.is_set(), cache.stats
    release.set()
    for t in threads:
        t.join(30)
    assert calls == 1 and results == [b"expensive"] * 8
    assert cache.stats.builds == 1
    assert cache.get_or_build("k", build) == b"expensive" and calls == 1


def test_single_flight_shares_the_error_then_retries(tmp_path: Path):
    cache = BuildCache(LocalStore(tmp_path), flags=on())

    def fail() -> bytes:
        raise RuntimeError("compiler crashed")

    with pytest.raises(RuntimeError, match="compiler crashed"):
        cache.get_or_build("k", fail)
    assert cache.get("k") is None
    assert cache.get_or_build("k", lambda: b"ok") == b"ok"
    with pytest.raises(InvalidTypeError):
        cache.get_or_build("k2", lambda: "not bytes")  # type: ignore[return-value,arg-type]


def test_value_too_large_for_remote_stays_local(tmp_path: Path, redis_server, prefix):
    remote = RedisStore(redis_server.url, prefix=prefix, max_value_bytes=10)
    cache = BuildCache(LocalStore(tmp_path), remote, flags=on())
    assert cache.put("k", b"x" * 11)
    assert remote.get("k") is None and cache.get("k") == b"x" * 11


def test_bad_arguments(tmp_path: Path):
    with pytest.raises(InvalidTypeError):
        BuildCache(local=str(tmp_path), flags=on())  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError):
        BuildCache(flags={"INCREMENTAL_CACHE": True})  # type: ignore[arg-type]


def test_flag_off_logs_one_warning_saying_how_to_turn_it_on(tmp_path: Path, caplog):
    """The README example used to do nothing silently while INCREMENTAL_CACHE was off."""
    cache = BuildCache(LocalStore(tmp_path))  # no flags: catalogue defaults, the flag is off
    with caplog.at_level(logging.WARNING, "registry_core.cache"):
        assert cache.get_or_build("k", lambda: b"built") == b"built"
        assert cache.get("k") is None and cache.put("k", b"v") is False
    warnings = [r for r in caplog.records if r.name == "registry_core.cache"]
    assert len(warnings) == 1, warnings  # once per cache, not once per call
    text = warnings[0].getMessage()
    assert "INCREMENTAL_CACHE" in text and "off" in text
    assert "FeatureFlags({'INCREMENTAL_CACHE': True})" in text and "FeatureFlags.load()" in text
    caplog.clear()
    with caplog.at_level(logging.WARNING, "registry_core.cache"):
        BuildCache(LocalStore(tmp_path / "on"), flags=on()).get_or_build("k", lambda: b"x")
    assert not [r for r in caplog.records if "INCREMENTAL_CACHE" in r.getMessage()]


def test_no_flags_ignores_the_working_directory_and_honours_set_default_flags(
    tmp_path: Path, monkeypatch
):
    from registry_core.flags import ENV_VAR, set_default_flags

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(ENV_VAR, "INCREMENTAL_CACHE=on")
    (tmp_path / "pyproject.toml").write_text(
        "[tool.registry-core.flags]\nINCREMENTAL_CACHE = true\n"
    )
    set_default_flags(None)
    assert not BuildCache(LocalStore(tmp_path / "a")).enabled  # nothing read implicitly
    assert BuildCache(LocalStore(tmp_path / "b"), flags=FeatureFlags.load()).enabled
    set_default_flags(on())
    try:
        assert BuildCache(LocalStore(tmp_path / "c")).enabled
    finally:
        set_default_flags(None)
