"""RedisLock on a real redis-server: one holder at a time, compare-and-delete release, extend
only by the holder, expiry hands the lease over, fencing numbers grow, hold() renews, Redis
down is a CacheError (never "not held")."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from _redis import free_port
from registry_core.cache import RedisStore
from registry_core.cache._lock import RedisLock
from registry_core.errors import CacheError, InvalidArgumentError

pytestmark = pytest.mark.network

HANG = 30  # generous bound for conditions that take milliseconds


@pytest.fixture
def store(redis_server, prefix):
    s = RedisStore(redis_server.url, prefix=prefix)
    yield s
    s.close()


@pytest.fixture
def raw(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


def test_one_holder_at_a_time(store, raw, prefix):
    a, b = RedisLock(store, "job", ttl_s=30), RedisLock(store, "job", ttl_s=30)
    fence = a.acquire()
    assert fence is not None and fence > 0 and a.held and a.fence == fence
    assert b.acquire() is None and not b.held
    assert a.locked() and b.locked()
    assert 0 < raw.pttl(f"{prefix}lock:job") <= 30_000  # SET ... PX: it expires on its own
    assert a.release() and not a.held and not a.locked()
    assert b.acquire() is not None
    assert RedisLock(store, "other").acquire() is not None  # names are independent


def test_release_and_extend_only_by_the_holder(store, raw, prefix):
    a, b = RedisLock(store, "job", ttl_s=30), RedisLock(store, "job", ttl_s=30)
    assert a.acquire()
    raw.delete(f"{prefix}lock:job")  # a's lease ends (as an expiry would) ...
    assert b.acquire()  # ... and b takes it
    assert not a.extend()  # a does not prolong b's lease
    assert not a.held
    assert not a.release()  # nor delete it (compare-and-delete)
    assert b.locked() and raw.get(f"{prefix}lock:job") is not None
    assert b.extend(60) and raw.pttl(f"{prefix}lock:job") > 30_000
    assert b.release()
    assert not b.release()  # twice: nothing to release


def test_fencing_numbers_grow_across_acquisitions_and_names(store):
    seen = []
    for name in ["a", "b", "a", "c", "a"]:
        lock = RedisLock(store, name)
        seen.append(lock.acquire())
        lock.release()
    assert all(isinstance(f, int) for f in seen)
    assert seen == sorted(seen) and len(set(seen)) == len(seen)


def test_expiry_hands_the_lease_over(store):
    dead = RedisLock(store, "job", ttl_s=0.05)  # a holder that dies: never releases
    assert dead.acquire()
    other = RedisLock(store, "job")
    deadline = time.monotonic() + HANG
    while (got := other.acquire()) is None:  # the lease ends by itself after its TTL
        assert time.monotonic() < deadline, "the lease never expired"
        time.sleep(0.01)
    assert got > dead.fence
    assert not dead.release() and other.locked()  # the dead one's late release does nothing


def test_exactly_one_of_many_racing_processes_wins(redis_server, prefix):
    stores = [RedisStore(redis_server.url, prefix=prefix) for _ in range(8)]
    locks = [RedisLock(s, "race") for s in stores]
    barrier = threading.Barrier(len(locks))
    results: list[int | None] = [None] * len(locks)

    def run(i: int) -> None:
        barrier.wait(HANG)
        results[i] = locks[i].acquire()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(locks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG)
    assert sum(r is not None for r in results) == 1
    for s in stores:
        s.close()


class _CountingLock(RedisLock):
    """Sets ``renewed`` after three successful renewals (an observation point, no fake)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.renewals = 0
        self.renewed = threading.Event()

    def extend(self, ttl_s=None):
        ok = super().extend(ttl_s)
        if ok:
            self.renewals += 1
            if self.renewals >= 3:
                self.renewed.set()
        return ok


def test_hold_renews_past_the_ttl_and_releases(store, raw, prefix):
    lock = _CountingLock(store, "long", ttl_s=0.15)
    assert lock.acquire()
    with lock.hold() as lost:
        # three renewals at TTL/3 each: the work has outlived one TTL, the lease is still ours
        assert lock.renewed.wait(HANG)
        assert not lost.is_set()
        assert RedisLock(store, "long").acquire() is None
    assert not lock.held and raw.exists(f"{prefix}lock:long") == 0


def test_hold_reports_a_lost_lease(store, raw, prefix):
    lock = RedisLock(store, "lost", ttl_s=0.15)
    assert lock.acquire()
    with lock.hold() as lost:
        raw.delete(f"{prefix}lock:lost")  # taken away (an expiry during a long pause)
        assert lost.wait(HANG)
    assert not lock.held
    with pytest.raises(InvalidArgumentError, match="needs the lease"), lock.hold():
        pass


def test_redis_down_is_an_error_not_a_free_lease(caplog):
    port = free_port()  # nothing listens there
    store = RedisStore(f"redis://:hunter2@127.0.0.1:{port}/0", timeout=1, retries=0)
    lock = RedisLock(store, "job")
    with pytest.raises(CacheError, match="acquire failed") as info:
        lock.acquire()
    assert "hunter2" not in str(info.value) and "***" in str(info.value)
    assert not lock.held
    with pytest.raises(CacheError, match="EXISTS failed"):
        lock.locked()
    assert "hunter2" not in repr(store)


def test_server_stopped_while_holding(private_redis):
    store = RedisStore(private_redis.url, timeout=1, retries=0)
    lock = RedisLock(store, "job", ttl_s=0.15)
    assert lock.acquire()
    with lock.hold() as lost:
        private_redis.stop()
        assert lost.wait(HANG)  # renewals fail: said, not hidden
    assert not lock.held  # released on the way out (the failure logged; the lease expires)


def test_arguments_are_checked_and_the_token_stays_out_of_repr(store):
    for bad in (0, -1, 0.001, "10", True, float("nan")):
        with pytest.raises(InvalidArgumentError, match="ttl_s"):
            RedisLock(store, "x", ttl_s=bad)
    with pytest.raises(InvalidArgumentError, match="RedisStore"):
        RedisLock("redis://127.0.0.1:6379/0", "x")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        RedisLock(store, "")
    lock = RedisLock(store, "x")
    assert lock.acquire()
    with pytest.raises(InvalidArgumentError, match="already held"):
        lock.acquire()
    assert lock._token is not None and lock._token.decode() not in repr(lock)
    assert "held, fence" in repr(lock)
    lock.release()
