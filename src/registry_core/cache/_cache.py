"""BuildCache: a local tier and a remote tier behind the INCREMENTAL_CACHE flag.

``get`` looks locally, then remotely, and back-fills the local store from a remote hit;
``put`` writes through to both; ``get_or_build`` runs ``build_fn`` once per key at a time in
this process (single-flight: concurrent callers wait for the leader and share its result or
its exception). The flags are resolved once, at construction (``flags=None``: the catalogue
defaults, unless the host called ``set_default_flags``; nothing is read from the environment or
a project file here); the flag is then asked on every call, so a FeatureFlags that watches a
file turns the cache off and on without a restart. While it is off, ``get`` misses, ``put``
stores nothing and ``get_or_build`` just builds, and the first such call logs a warning on the
``registry_core.cache`` logger saying so and how to turn it on (INCREMENTAL_CACHE is
experimental, so it is off by default).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .._util import ThreadSingleFlight
from ..errors import InvalidTypeError
from ..flags import FeatureFlags, resolve_flags
from ._local import LocalStore, check_key, check_value
from ._redis import RedisStore
from ._statcache import StatCache
from ._tiers import ActionTier, RedisActionTier

if TYPE_CHECKING:
    from ._run import RunResult

__all__ = ["BuildCache", "CacheStats", "TierStats"]

FLAG = "INCREMENTAL_CACHE"
log = logging.getLogger("registry_core.cache")
_OFF_WARNING = (
    "BuildCache %r does nothing: the INCREMENTAL_CACHE feature flag is off (it is "
    "experimental, off by default), so every get misses, put stores nothing and get_or_build "
    "always builds. Turn it on with BuildCache(..., flags=FeatureFlags({'INCREMENTAL_CACHE': "
    "True})), or in the deployment's flags (REGISTRY_CORE_FLAGS=INCREMENTAL_CACHE=on or "
    "[tool.registry-core.flags] INCREMENTAL_CACHE = true) read with "
    "BuildCache(..., flags=FeatureFlags.load())"
)


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
    runs: int = 0  # BuildCache.run calls with the flag on
    run_hits: int = 0  # of which served from a tier without running the command
    saved_s: float = 0.0  # the recorded durations of the runs those hits replaced
    remote_warnings: int = 0  # remote tier failures during run (each logged once per tier)


class BuildCache:
    """Two-tier build cache (local first, remote second) gated by ``INCREMENTAL_CACHE``."""

    def __init__(
        self,
        local: LocalStore | None = None,
        remote: RedisStore | ActionTier | None = None,
        *,
        flags: FeatureFlags | None = None,
    ) -> None:
        if local is not None and not isinstance(local, LocalStore):
            raise InvalidTypeError(
                f"local must be a LocalStore or None, got {type(local).__name__}"
            )
        if remote is not None and not isinstance(remote, (RedisStore, ActionTier)):
            raise InvalidTypeError(
                "remote must be a RedisStore, an ActionTier (such as BazelHTTPTier) or None, "
                f"got {type(remote).__name__}"
            )
        self.local = local
        # get/put/get_or_build speak to a RedisStore; run() to an action tier (a RedisStore
        # is wrapped as RedisActionTier, keys ac/<key> and cas/<sha256> under its prefix).
        self.remote: RedisStore | None = remote if isinstance(remote, RedisStore) else None
        self.action_remote: ActionTier | None = (
            RedisActionTier(remote) if isinstance(remote, RedisStore) else remote
        )
        self._stat_cache: StatCache | None = None
        self._warned_tiers: set[str] = set()
        self._flags = resolve_flags(flags)  # resolved once; INCREMENTAL_CACHE asked per call
        self._lock = threading.Lock()
        self._flights: ThreadSingleFlight[bytes] = ThreadSingleFlight()
        self._stats = CacheStats(enabled=False)
        self._warned_off = False

    @property
    def enabled(self) -> bool:
        """Whether INCREMENTAL_CACHE is on now (asked on each call)."""
        return self._flags.is_enabled(FLAG)

    def _off(self) -> bool:
        if self.enabled:
            return False
        with self._lock:
            self._stats.disabled_calls += 1
            warn, self._warned_off = not self._warned_off, True
        if warn:
            log.warning(_OFF_WARNING, self)
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
        # A back-fill skips the fsyncs: the value is also remote, and a torn local object
        # fails its check on read (dropped, fetched again).
        if self.local is not None and self.local.put_known(key, value, fsync=False):
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

        def lead() -> bytes:
            built = self.get(key)  # a flight that just finished may have stored it
            if built is None:
                with self._lock:
                    self._stats.builds += 1
                built = check_value(build_fn())
                self.put(key, built)
            return built

        return self._flights.do(key, lead)

    # -- run --------------------------------------------------------------------------------

    @property
    def stat_cache(self) -> StatCache:
        """The stat cache of input digests: ``<local root>/stat.bin``, in memory without one."""
        with self._lock:
            if self._stat_cache is None:
                path = self.local.root / "stat.bin" if self.local is not None else None
                self._stat_cache = StatCache(path)
            return self._stat_cache

    def _note_remote_error(self, tier: str, message: str) -> None:
        with self._lock:
            self._stats.remote_warnings += 1
            first = tier not in self._warned_tiers
            self._warned_tiers.add(tier)
        if first:
            log.warning(
                "remote cache tier %r failed (%s); continuing with the local cache only "
                "(the build goes on; further failures of this tier are logged at debug level)",
                tier,
                message,
            )
        else:
            log.debug("remote cache tier %r failed again: %s", tier, message)

    def _count_run(self, *, hit: bool, saved_s: float) -> None:
        with self._lock:
            self._stats.runs += 1
            if hit:
                self._stats.run_hits += 1
                self._stats.saved_s += saved_s
        if self.local is not None:
            self.stat_cache.bump(
                **({"hits": 1, "saved_ms": round(saved_s * 1000)} if hit else {"misses": 1})
            )

    def run(
        self,
        argv: Sequence[str],
        *,
        inputs: Sequence[str] = (),
        outputs: Sequence[str] = (),
        env: Sequence[str] = (),
        cwd: str | os.PathLike[str] | None = None,
        cache_failures: bool = False,
        remote: ActionTier | None = None,
        environ: Mapping[str, str] | None = None,
        echo: bool = False,
        now_ns: int | None = None,
    ) -> RunResult:
        """Run ``argv`` in ``cwd``, or restore its outputs and replay its stdout/stderr and exit
        code from the cache when its action key (docs/cache.md) was seen before.

        ``inputs`` are globs relative to ``cwd``, ``outputs`` the files the command writes,
        ``env`` the names of the environment variables that count (read from ``environ``,
        default ``os.environ``, which is also the command's environment). ``remote`` overrides
        the remote tier given at construction. ``echo`` writes the command's stdout/stderr
        through to this process's as it runs (and the stored ones on a hit). A failed command
        is cached only with ``cache_failures=True``. Remote failures degrade to local with one
        warning per tier. With INCREMENTAL_CACHE off the command just runs (a kill switch).
        """
        from ._run import run_action

        return run_action(
            self,
            argv,
            inputs=inputs,
            outputs=outputs,
            env=env,
            cwd=cwd,
            cache_failures=cache_failures,
            remote=remote,
            environ=environ,
            echo=echo,
            now_ns=now_ns,
        )

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
                backfills=s.backfills,
                builds=s.builds,
                coalesced=self._flights.shared,
                disabled_calls=s.disabled_calls,
                local_bytes=local_bytes,
                runs=s.runs,
                run_hits=s.run_hits,
                saved_s=s.saved_s,
                remote_warnings=s.remote_warnings,
            )

    def __repr__(self) -> str:
        return f"BuildCache(local={self.local!r}, remote={self.remote!r})"
