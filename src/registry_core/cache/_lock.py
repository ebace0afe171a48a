"""RedisLock: a lease on one name in Redis, so several processes do a piece of work once.

``acquire`` is ``SET name token NX PX ttl`` with a random 128-bit token, and, in the same Lua
script, ``INCR`` of a fencing counter: each successful acquisition gets a number larger than
every earlier one (on this Redis), which a resource can use to refuse a holder whose lease ran
out while it was paused. ``release`` and ``extend`` are Lua compare-and-delete /
compare-and-pexpire on the token, so a holder whose lease expired (and was taken by another)
never deletes or prolongs the other's lease. A holder that dies simply stops renewing: the
lease expires after ``ttl_s`` and another process takes it.

``hold()`` renews the lease every ``ttl_s / 3`` from a daemon thread while the caller works,
so the TTL can be short (fast takeover after a crash) while a long computation keeps its lease.

This is a lease for efficiency (do the work once), not a correctness lock: Redis failover or a
long pause can let two holders overlap (see Kleppmann's note on Redlock); use it for work whose
result is the same whoever does it, or check the fencing number where the result is kept.
It talks to Redis through a :class:`~registry_core.cache.RedisStore`'s client (one connection
layer: timeouts, fast retries, the bounded reply parser). Every Redis failure raises
:class:`~registry_core.errors.CacheError` (the store's ``fail_open`` does not apply: a caller
must know it does not hold the lease).
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import CacheError, InvalidArgumentError
from ._local import check_key
from ._redis import RedisStore

__all__ = ["RedisLock"]

log = logging.getLogger("registry_core.cache")

# KEYS[1] lock, KEYS[2] fencing counter; ARGV[1] token, ARGV[2] ttl in ms.
_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return 0
"""
# KEYS[1] lock; ARGV[1] token.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
# KEYS[1] lock; ARGV[1] token, ARGV[2] ttl in ms.
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


def _ttl_ms(ttl_s: Any) -> int:
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, (int, float)) or not ttl_s >= 0.01:
        raise InvalidArgumentError(f"ttl_s must be a number of seconds >= 0.01, got {ttl_s!r}")
    return max(10, int(ttl_s * 1000))


class RedisLock:
    """A lease named ``name`` (under the store's prefix, ``lock:`` namespace) for ``ttl_s``.

    ``acquire()`` -> the fencing number (> 0) when this object now holds the lease, None when
    another does. ``release()`` / ``extend()`` -> True when the lease was still this object's.
    ``locked()`` -> True when anybody holds it. One object holds at most one lease at a time;
    it is not reentrant. The fencing counter is one key per store prefix (``fence``), shared by
    every name, so numbers grow across names too and nothing accumulates per name.
    """

    def __init__(self, store: RedisStore, name: str, *, ttl_s: float = 10.0) -> None:
        if not isinstance(store, RedisStore):
            raise InvalidArgumentError(f"store must be a RedisStore, got {type(store).__name__}")
        self.store = store
        self.name = check_key(name)
        self.ttl_ms = _ttl_ms(ttl_s)
        self._key = f"{store.prefix}lock:{self.name}"
        self._fence_key = f"{store.prefix}fence"
        self._token: bytes | None = None
        self.fence: int | None = None  # the fencing number of the lease held, if any
        self._mutex = threading.Lock()  # the renewer thread and the caller share the token
        client = store.client
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)
        self._extend = client.register_script(_EXTEND)

    def _run(self, op: str, script: Any, keys: list[str], args: list[Any]) -> int:
        try:
            reply = script(keys=keys, args=args)
        except Exception as exc:  # whatever redis-py raised: the lease state is unknown
            raise CacheError(
                f"Redis lock {self.name!r} at {self.store.where}: {op} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if isinstance(reply, bool) or not isinstance(reply, int):
            raise CacheError(
                f"Redis lock {self.name!r} at {self.store.where}: {op} got an unexpected "
                f"reply {reply!r:.60}"
            )
        return reply

    @property
    def held(self) -> bool:
        """True while this object believes it holds the lease (it may have expired since)."""
        return self._token is not None

    def acquire(self) -> int | None:
        """Take the lease if nobody holds it: its fencing number, or None (held by another)."""
        with self._mutex:
            if self._token is not None:
                raise InvalidArgumentError(
                    f"RedisLock {self.name!r} is already held by this object"
                )
            token = secrets.token_hex(16).encode()
            fence = self._run(
                "acquire", self._acquire, [self._key, self._fence_key], [token, self.ttl_ms]
            )
            if fence <= 0:
                return None
            self._token, self.fence = token, fence
            return fence

    def release(self) -> bool:
        """Give the lease back; False when it had expired (and maybe been taken) already."""
        with self._mutex:
            token, self._token, self.fence = self._token, None, None
            if token is None:
                return False
            return self._run("release", self._release, [self._key], [token]) == 1

    def extend(self, ttl_s: float | None = None) -> bool:
        """Renew the lease for ``ttl_s`` (default: the lock's TTL) from now; False when it is
        no longer this object's (the object then no longer holds it)."""
        ms = self.ttl_ms if ttl_s is None else _ttl_ms(ttl_s)
        with self._mutex:
            token = self._token
            if token is None:
                return False
            if self._run("extend", self._extend, [self._key], [token, ms]) == 1:
                return True
            self._token = self.fence = None
            return False

    def locked(self) -> bool:
        """True when anybody holds the lease now."""
        try:
            return bool(self.store.client.exists(self._key))
        except Exception as exc:
            raise CacheError(
                f"Redis lock {self.name!r} at {self.store.where}: EXISTS failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    @contextmanager
    def hold(self) -> Iterator[threading.Event]:
        """While held (call after a successful :meth:`acquire`): renew every TTL/3 from a
        daemon thread; release on exit. Yields an event that is set when a renewal failed
        (the lease was lost or Redis is unreachable): the work may then be done twice."""
        if self._token is None:
            raise InvalidArgumentError(f"RedisLock {self.name!r}: hold() needs the lease")
        lost = threading.Event()
        stop = threading.Event()
        period = self.ttl_ms / 3000

        def renew() -> None:
            while not stop.wait(period):
                try:
                    ok = self.extend()
                except CacheError as exc:
                    log.warning("%s (the lease may expire)", exc)
                    ok = False
                if not ok:
                    lost.set()
                    return

        renewer = threading.Thread(target=renew, name="registry-core-lock-renew", daemon=True)
        renewer.start()
        try:
            yield lost
        finally:
            stop.set()
            renewer.join()
            try:
                self.release()
            except CacheError as exc:  # the lease expires on its own
                log.warning("%s (the lease expires after its TTL)", exc)

    def __repr__(self) -> str:  # the token stays out: whoever has it can release the lease
        state = f"held, fence {self.fence}" if self._token is not None else "not held"
        return f"RedisLock({self.name!r}, ttl_ms={self.ttl_ms}, {state})"
