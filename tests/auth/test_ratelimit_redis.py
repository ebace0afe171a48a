"""The Redis rate limiter on a real redis-server: the one Lua script against the Python GCRA,
two instances sharing one budget, NOSCRIPT, TTLs, and the server killed mid-test."""

from __future__ import annotations

import logging
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _redis import REDIS_SERVER, RedisServer
from registry_core.audit import MemorySink
from registry_core.auth import Principal
from registry_core.auth._ratelimit import (
    Limit,
    MemoryRateLimiter,
    RedisRateLimiter,
    TieredLimiter,
)
from registry_core.errors import (
    InvalidArgumentError,
    RateLimitedError,
    RateLimiterUnavailableError,
)

pytestmark = pytest.mark.network


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis-ratelimit"))
    yield server
    server.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of this test's own, so the test may kill it."""
    server = RedisServer(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def prefix() -> str:
    return f"rl-{uuid.uuid4().hex}:"


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


# Rates whose emission interval is a whole number of microseconds: the script (µs) and the
# in-process limiter (ns) then make exactly the same decisions. Slow ones only: a key's TTL
# runs on the server's real clock while this test moves the script's clock by hand, so a key
# must outlive the test's real duration (its TTL is at least one interval: 0.5 s here).
exact_rates = st.sampled_from([0.1, 0.125, 0.25, 0.5, 1, 2])


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rate=exact_rates,
    burst=st.integers(1, 8),
    steps=st.lists(
        st.tuples(st.integers(0, 6_000_000), st.integers(0, 2), st.booleans()),
        min_size=1,
        max_size=40,
    ),
)
def test_script_decides_as_the_python_gcra(redis_server, rate, burst, steps):
    prefix = f"diff-{uuid.uuid4().hex}:"
    limiter = RedisRateLimiter(redis_server.url, prefix=prefix)
    now_us = 1_700_000_000_000_000
    clock = Clock(now_us * 1000)
    memory = MemoryRateLimiter(clock)
    for dt, cost, both in steps:
        now_us += dt
        clock.now = now_us * 1000
        cost = min(cost, burst)
        limits = [Limit("a", rate, burst, cost, "p")]
        if both:
            limits.append(Limit("b", rate / 2, burst + 1, cost, "q"))
        got = limiter._hit_all(limits, str(now_us))
        want = memory.hit_all(limits)
        assert [(r.allowed, r.remaining, r.limit, r.policy) for r in got] == [
            (r.allowed, r.remaining, r.limit, r.policy) for r in want
        ]
        for g, w in zip(got, want, strict=True):
            assert g.retry_after_s == pytest.approx(w.retry_after_s, abs=1e-6)
            assert g.reset_s == pytest.approx(w.reset_s, abs=1e-6)
    limiter.close()


def test_server_clock_burst_retry_and_ttl(redis_server, prefix):
    with RedisRateLimiter(redis_server.url, prefix=prefix) as limiter:
        results = [limiter.hit("k", rate=0.01, burst=3, policy="p") for _ in range(4)]
        assert [r.allowed for r in results] == [True, True, True, False]
        assert [r.remaining for r in results] == [2, 1, 0, 0]
        assert 90.0 < results[3].retry_after_s <= 100.0  # the server's clock moved a little
        raw = redis.Redis.from_url(redis_server.url)
        ttl = raw.pttl(prefix + "k")
        assert 290_000 < ttl <= 300_000  # the key lives until its TAT passes: 3 x 100 s
        limiter.hit("fast", rate=1000, burst=1)
        assert raw.pttl(prefix + "fast") <= 1  # 1 ms, or already gone (-2): idle keys expire
        assert raw.get(prefix + "k").isdigit()
        assert prefix in repr(limiter)


def test_foreign_values_are_bounded(redis_server, prefix):
    raw = redis.Redis.from_url(redis_server.url)
    limiter = RedisRateLimiter(redis_server.url, prefix=prefix)
    raw.set(prefix + "junk", b"not a number")
    assert limiter.hit("junk", rate=1, burst=2).remaining == 1  # counts as absent
    raw.set(prefix + "far", b"1e300")
    result = limiter.hit("far", rate=1, burst=2)
    assert not result.allowed and 0 < result.retry_after_s <= 1.0  # fully spent, not forever
    raw.hset(prefix + "hash", "a", "b")
    with pytest.raises(RateLimiterUnavailableError, match="WRONGTYPE"):
        limiter.hit("hash", rate=1, burst=2)
    limiter.close()


def test_two_instances_share_one_budget(redis_server, prefix):
    a = RedisRateLimiter(redis_server.url, prefix=prefix)
    b = RedisRateLimiter(redis_server.url, prefix=prefix)
    allowed = []
    barrier = threading.Barrier(4)

    def worker(limiter: RedisRateLimiter) -> None:
        barrier.wait()
        allowed.append(sum(limiter.hit("shared", rate=0.001, burst=25).allowed for _ in range(20)))

    threads = [threading.Thread(target=worker, args=(x,)) for x in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(allowed) == 25  # 80 tries over two instances and four threads: one budget
    tiers_a, tiers_b = TieredLimiter(a), TieredLimiter(b)
    alice = Principal(tenant="acme", subject="user:alice", method="token")
    seen = [tiers_a.check(alice, "free", "upload").remaining for _ in range(5)]
    seen += [tiers_b.check(alice, "free", "upload").remaining for _ in range(5)]
    assert seen == list(range(9, -1, -1))
    with pytest.raises(RateLimitedError):
        tiers_a.check(alice, "free", "upload")
    a.close()
    b.close()


def test_noscript_reloads_the_script(redis_server, prefix):
    limiter = RedisRateLimiter(redis_server.url, prefix=prefix)
    assert limiter.hit("k", rate=1, burst=5).remaining == 4
    loaded = limiter.scripts_loaded
    redis.Redis.from_url(redis_server.url).script_flush()
    assert limiter.hit("k", rate=1, burst=5).remaining == 3
    assert limiter.scripts_loaded == loaded + 1
    assert limiter.hit("k", rate=1, burst=5).remaining == 2
    assert limiter.scripts_loaded == loaded + 1
    limiter.close()


def test_bad_url_and_no_password_in_messages(private_redis):
    with pytest.raises(InvalidArgumentError):
        RedisRateLimiter("http://nope")
    url = f"redis://:s3cret-pw@127.0.0.1:{private_redis.port}/0"
    limiter = RedisRateLimiter(url)
    assert "s3cret" not in repr(limiter)
    with pytest.raises(RateLimiterUnavailableError) as info:
        limiter.hit("k", rate=1, burst=1)  # the server has no password: AUTH fails
    assert "s3cret" not in str(info.value)
    limiter.close()


def test_redis_killed_reads_fail_open_uploads_fail_closed(private_redis, prefix, caplog):
    sink = MemorySink()
    clock = Clock(0)
    limiter = RedisRateLimiter(private_redis.url, prefix=prefix)
    tiers = TieredLimiter(limiter, audit=sink, clock=clock)
    bob = Principal(tenant="acme", subject="user:bob", method="session")
    assert tiers.check(bob, "team").remaining == 999
    assert not tiers.check(bob, "team").degraded
    private_redis.stop()
    with caplog.at_level(logging.WARNING, "registry_core.ratelimit"):
        for _ in range(5):
            result = tiers.check(bob, "team")
            assert result.allowed and result.degraded and result.policy == "team-read"
        with pytest.raises(RateLimiterUnavailableError) as info:
            tiers.check(bob, "team", "upload")
        assert info.value.status == 503
    warnings = [r for r in caplog.records if r.name == "registry_core.ratelimit"]
    assert len(warnings) == 1 and "fail open" in warnings[0].getMessage()
    assert [e.kind for e in sink.events] == ["ratelimit.unavailable"]
    assert sink.events[0].detail["fail_open"] == "true"
    clock.now += 10 * 1_000_000_000
    caplog.clear()
    with (
        caplog.at_level(logging.WARNING, "registry_core.ratelimit"),
        pytest.raises(RateLimiterUnavailableError),
    ):
        tiers.check(bob, "team", "upload")
    (warning,) = caplog.records
    assert "fail closed" in warning.getMessage() and "(6 since the last warning)" in (
        warning.getMessage()
    )
    assert sink.events[-1].outcome == "failed" and sink.events[-1].detail["count"] == "6"
    assert tiers.unavailable == 7
    open_uploads = TieredLimiter(limiter, fail_open_uploads=True, fail_open_reads=False)
    assert open_uploads.check(bob, "team", "upload").degraded
    with pytest.raises(RateLimiterUnavailableError):
        open_uploads.check(bob, "team", "read")
    limiter.close()


def _start_again(port: int, workdir: Path) -> subprocess.Popen:
    """redis-server once more on the port a stopped RedisServer had."""
    assert REDIS_SERVER is not None
    argv = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir)]
    proc = subprocess.Popen(
        [*argv, "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:  # bounded wait for a condition (the server answering), not a sleep-then-assert
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as c:
                c.sendall(b"PING\r\n")
                if c.recv(16).startswith(b"+PONG"):
                    return proc
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"redis-server did not start again on port {port}")
        time.sleep(0.02)


def test_a_dead_server_is_not_asked_again_until_the_retry_interval(private_redis, tmp_path):
    now = [100.0]
    limiter = RedisRateLimiter(
        private_redis.url, prefix="cb:", retry_interval_s=2.0, clock=lambda: now[0]
    )
    assert limiter.hit("k", rate=1, burst=3).allowed
    private_redis.stop()
    with pytest.raises(RateLimiterUnavailableError, match="failed"):
        limiter.hit("k", rate=1, burst=3)
    assert (limiter.failures, limiter.skipped) == (1, 0)
    for _ in range(3):
        with pytest.raises(RateLimiterUnavailableError, match="is down .*not asked again"):
            limiter.hit("k", rate=1, burst=3)
    assert (limiter.failures, limiter.skipped) == (1, 3)
    proc = _start_again(private_redis.port, tmp_path)
    try:
        now[0] += 1.5  # still inside the interval: not asked, although it is back
        with pytest.raises(RateLimiterUnavailableError, match="is down"):
            limiter.hit("k", rate=1, burst=3)
        now[0] += 0.5  # the interval is over: one probe, and it answers
        result = limiter.hit("k", rate=1, burst=3)
        assert result.allowed and result.remaining == 2  # a fresh server: a fresh budget
        assert (limiter.failures, limiter.skipped) == (1, 4)
        assert limiter.hit("k", rate=1, burst=3).remaining == 1
    finally:
        proc.terminate()
        proc.wait(5)
    limiter.close()


def test_an_error_reply_does_not_mark_the_server_down(redis_server, prefix):
    raw = redis.Redis.from_url(redis_server.url)
    raw.hset(prefix + "hash", "a", "b")
    limiter = RedisRateLimiter(redis_server.url, prefix=prefix)
    with pytest.raises(RateLimiterUnavailableError, match="WRONGTYPE"):
        limiter.hit("hash", rate=1, burst=2)
    assert limiter.hit("other", rate=1, burst=2).allowed and limiter.skipped == 0
    limiter.close()
