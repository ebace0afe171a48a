"""BuildCache: a local tier and a remote tier behind the INCREMENTAL_CACHE flag.

``get`` looks locally, then remotely, and back-fills the local store from a remote hit;
``put`` writes through to both; ``get_or_build`` runs ``build_fn`` once per key at a time in
this process (single-flight: concurrent callers wait for the leader and share its result or
its exception). The flag is asked on every call, so turning it off in the configuration
takes effect without a restart: while it is off, ``get`` misses, ``put`` stores nothing and
``get_or_build`` just builds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import InvalidTypeError
from ..flags import FeatureFlags, resolve_flags
from ._local import LocalStore, check_key, check_value
from ._redis import RedisStore

__all__ = ["BuildCache", "CacheStats", "TierStats"]

FLAG = "INCREMENTAL_CACHE"


@dataclass
class TierStats:
    """Counters of one tier."""

    hits: int = 0
    misses: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    writes: int = 0
    errors: int = 0


@dataclass
class CacheStats:
    """A snapshot of BuildCache counters; ``enabled`` is the flag's value when it was taken."""

    enabled: bool
    local: TierStats = field(default_factory=TierStats)
    remote: TierStats = field(default_factory=TierStats)
    backfills: int = 0
    builds: int = 0
    coalesced: int = 0  # get_or_build callers served by another caller's build
    disabled_calls: int = 0  # calls made while INCREMENTAL_CACHE was off
    local_bytes: int = 0  # bytes held by the local store now (each distinct value once)


class _Flight:
    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: bytes | None = None
        self.error: BaseException | None = None


class BuildCache:
    """Two-tier build cache (local first, remote second) gated by ``INCREMENTAL_CACHE``."""

    def __init__(
        self,
        local: LocalStore | None = None,
        remote: RedisStore | None = None,
        *,
        flags: FeatureFlags | None = None,
    ) -> None:
        if local is not None and not isinstance(local, LocalStore):
            raise InvalidTypeError(
                f"local must be a LocalStore or None, got {type(local).__name__}")
        if remote is not None and not isinstance(remote, RedisStore):
            raise InvalidTypeError(
                f"remote must be a RedisStore or None, got {type(remote).__name__}")
        self.local = local
        self.remote = remote
        self._flags = resolve_flags(flags)
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight] = {}
        self._stats = CacheStats(enabled=False)

    @property
    def enabled(self) -> bool:
        """Whether INCREMENTAL_CACHE is on now (asked on each call)."""
        return self._flags.is_enabled(FLAG)

    def _off(self) -> bool:
        if self.enabled:
            return False
        with self._lock:
            self._stats.disabled_calls += 1
        return True

    def get(self, key: str) -> bytes | None:
        """The value under ``key`` from the local tier, else the remote one (back-filled)."""
        check_key(key)
        if self._off():
            return None
        if self.local is not None:
            value = self.local.get(key)
            with self._lock:
                if value is None:
                    self._stats.local.misses += 1
                else:
                    self._stats.local.hits += 1
                    self._stats.local.bytes_read += len(value)
            if value is not None:
                return value
        if self.remote is None:
            return None
        errors = self.remote.errors
        value = self.remote.get(key)
        with self._lock:
            self._stats.remote.errors += self.remote.errors - errors
            if value is None:
                self._stats.remote.misses += 1
                return None
            self._stats.remote.hits += 1
            self._stats.remote.bytes_read += len(value)
        if self.local is not None and self.local.put(key, value):
            with self._lock:
                self._stats.backfills += 1
                self._stats.local.writes += 1
                self._stats.local.bytes_written += len(value)
        return value

    def put(self, key: str, value: bytes) -> bool:
        """Write ``value`` through to both tiers; False when the flag is off or nothing stored.

        A value above the remote's ``max_value_bytes`` is kept local only.
        """
        check_key(key)
        value = check_value(value)
        if self._off():
            return False
        stored = False
        if self.local is not None and self.local.put(key, value):
            stored = True
            with self._lock:
                self._stats.local.writes += 1
                self._stats.local.bytes_written += len(value)
        if self.remote is not None:
            if len(value) > self.remote.max_value_bytes:
                with self._lock:
                    self.remote.too_large += 1
                return stored
            errors = self.remote.errors
            ok = self.remote.put(key, value)
            with self._lock:
                self._stats.remote.errors += self.remote.errors - errors
                if ok:
                    stored = True
                    self._stats.remote.writes += 1
                    self._stats.remote.bytes_written += len(value)
        return stored

    def get_or_build(self, key: str, build_fn: Callable[[], bytes]) -> bytes:
        """The cached value, or ``build_fn()`` stored under ``key``; one build per key at a time."""
        check_key(key)
        if self._off():
            return check_value(build_fn())
        value = self.get(key)
        if value is not None:
            return value
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if leader:
                flight = self._flights[key] = _Flight()
            else:
                self._stats.coalesced += 1
        assert flight is not None
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            assert flight.value is not None
            return flight.value
        try:
            value = self.get(key)  # a flight that just finished may have stored it
            if value is None:
                with self._lock:
                    self._stats.builds += 1
                value = check_value(build_fn())
                self.put(key, value)
            flight.value = value
            return value
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()

    @property
    def stats(self) -> CacheStats:
        """A copy of the counters, with ``enabled`` set to the flag's current value."""
        enabled = self.enabled
        local_bytes = self.local.total_bytes if self.local is not None else 0
        with self._lock:
            s = self._stats
            return CacheStats(
                enabled=enabled,
                local=TierStats(**vars(s.local)),
                remote=TierStats(**vars(s.remote)),
                backfills=s.backfills, builds=s.builds, coalesced=s.coalesced,
                disabled_calls=s.disabled_calls, local_bytes=local_bytes,
            )

    def __repr__(self) -> str:
        return f"BuildCache(local={self.local!r}, remote={self.remote!r})"
