"""PatchStore: computed patches kept on disk, content-addressed, checked on read, bounded.

A patch is named by what it turns into what: ``(base sha256, target sha256, mode)``, so it
stays right whatever path the artifacts are served at, and a restarted server (or another
process on the same directory) serves it without diffing again. RegistryApp keeps its store
in ``DIR/.registry-core/patches/`` (a hidden directory: never served, never an artifact).

Each entry is one file ``<base[:2]>/<base>-<target>.<mode>`` written with
:func:`~registry_core._util.atomic_write` (readers see a whole entry or none). Its first bytes
are a header: a magic line and the SHA-256 of the payload that follows. A read checks both;
an entry that fails (truncated, flipped bits, foreign file) is deleted and reported missing,
so it is computed again. A "not worth sending" result is an entry with its own magic and no
payload: :meth:`PatchStore.get` returns ``b""`` for it, so it is not recomputed either.

The total size of the entries is bounded (``max_bytes``): a put that goes over it evicts
entries down to 90 % of the bound, chosen by an eviction ``policy`` (a
:class:`registry_core.eviction.EvictionPolicy`: least recently written or read by default; file
mtimes order the entries found at start, and a read touches its entry). The size is counted
from a scan at construction plus what this object wrote; entries written by another process
meanwhile are counted at the next construction.

:class:`RedisPatchCache` is the tier shared by several instances (on several machines): the
same pairs in Redis, each computed by one instance under a lease (``cache._lock.RedisLock``)
while the others wait for its result; see ``RegistryApp(shared_cache=...)``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from .._util import atomic_write
from ..errors import CacheError, InvalidArgumentError
from ..eviction import EvictionPolicy, LRUEviction

__all__ = [
    "PatchStore",
    "PatchStoreStats",
    "RedisPatchCache",
    "SharedPatchCacheStats",
    "SharedResult",
    "decode_shared",
    "encode_shared",
]

log = logging.getLogger("registry_core.server")

_PATCH_MAGIC = b"RCPATCH1\n"
_NOT_WORTH_MAGIC = b"RCNOPATCH1\n"
_HEADER = len(_PATCH_MAGIC) + 32
_MODE = re.compile(r"[a-z][a-z0-9]{0,15}\Z")
_ENTRY = re.compile(r"[0-9a-f]{64}-[0-9a-f]{64}\.[a-z][a-z0-9]{0,15}\Z")


@dataclass
class PatchStoreStats:
    """What the store did (for tests, benchmarks and operators)."""

    hits: int = 0  # patches read back whole and correct
    not_worth_hits: int = 0  # "not worth sending" markers read back
    misses: int = 0
    writes: int = 0
    corrupt: int = 0  # entries that failed their check on read (deleted)
    evicted: int = 0
    too_large: int = 0  # patches larger than the whole bound (not stored)
    write_errors: int = 0


def _hex(name: str, value: bytes) -> str:
    if not isinstance(value, (bytes, bytearray)) or len(value) != 32:
        raise InvalidArgumentError(f"{name} must be a 32-byte SHA-256 digest, got {value!r:.80}")
    return bytes(value).hex()


class PatchStore:
    """Patches on disk under ``directory`` (created on the first write), at most ``max_bytes``.

    ``get(base, target, mode)``: the patch bytes, ``b""`` for a remembered "not worth it", or
    None when there is no (intact) entry. ``put(base, target, mode, patch)`` stores one
    (``b""`` records "not worth it"). ``base``/``target`` are raw 32-byte SHA-256 digests,
    ``mode`` a short lower-case word (``"archive"``, ``"binary"``). Thread-safe; every method
    blocks on the file system (RegistryApp calls them in worker threads). ``policy`` picks
    the entries to evict (keys: entry paths; LRU when None); ``clock`` is the time it is given.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_bytes: int = 1 << 30,
        policy: EvictionPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise InvalidArgumentError(f"max_bytes must be an integer >= 1, got {max_bytes!r}")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.policy: EvictionPolicy = policy if policy is not None else LRUEviction()
        self._clock = clock
        self.stats = PatchStoreStats()
        self._lock = threading.Lock()
        # entry path -> size on disk (the policy holds the order)
        self._sizes: OrderedDict[str, int] = OrderedDict()
        self._total = 0
        self._scan()

    # -- bookkeeping -----------------------------------------------------------------------

    def _scan(self) -> None:
        """Count what is on disk; remove temporary files a crashed writer left behind."""
        found: list[tuple[int, str, int]] = []
        try:
            shards = list(os.scandir(self.directory))
        except FileNotFoundError:
            return
        except OSError as exc:  # writes will fail (and say so) too; reads find nothing
            log.warning("patch store: cannot read %s: %r", self.directory, exc)
            return
        for shard in shards:
            if not shard.is_dir(follow_symlinks=False) or len(shard.name) != 2:
                continue
            with contextlib.suppress(OSError):
                for entry in os.scandir(shard.path):
                    if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                        with contextlib.suppress(OSError):
                            os.unlink(entry.path)
                        continue
                    if not _ENTRY.match(entry.name) or not entry.is_file(follow_symlinks=False):
                        continue
                    st = entry.stat(follow_symlinks=False)
                    found.append((st.st_mtime_ns, entry.path, st.st_size))
        found.sort()
        with self._lock:
            now = self._clock()
            for _, path, size in found:  # oldest first
                self._sizes[path] = size
                self.policy.record_insert(path, size, now)
            self._total = sum(self._sizes.values())

    @property
    def total_bytes(self) -> int:
        """Bytes of the entries this store knows of."""
        return self._total

    def __len__(self) -> int:
        return len(self._sizes)

    def _path(self, base: bytes, target: bytes, mode: str) -> str:
        if not isinstance(mode, str) or not _MODE.match(mode):
            raise InvalidArgumentError(f"mode must be a short lower-case word, got {mode!r:.40}")
        b, t = _hex("base", base), _hex("target", target)
        return os.path.join(self.directory, b[:2], f"{b}-{t}.{mode}")

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self.stats, name, getattr(self.stats, name) + 1)

    def _forget(self, path: str) -> None:
        with self._lock:
            size = self._sizes.pop(path, None)
            if size is not None:
                self._total -= size
                self.policy.record_remove(path)

    def _drop(self, path: str) -> None:
        with contextlib.suppress(OSError):
            os.unlink(path)
        self._forget(path)

    # -- the two operations ------------------------------------------------------------------

    def get(self, base: bytes, target: bytes, mode: str) -> bytes | None:
        """The stored patch, ``b""`` for "not worth it", None when absent or corrupt."""
        path = self._path(base, target, mode)
        try:
            with open(path, "rb") as f:
                raw = f.read(self.max_bytes + _HEADER + 1)
        except (FileNotFoundError, NotADirectoryError):
            self._count("misses")
            self._forget(path)  # evicted or removed by another process
            return None
        except OSError as exc:
            log.warning("patch store: cannot read %s: %r", path, exc)
            self._count("misses")
            return None
        if raw == _NOT_WORTH_MAGIC:
            self._count("not_worth_hits")
            self._touch(path)
            return b""
        payload = raw[_HEADER:]
        if (
            not raw.startswith(_PATCH_MAGIC)
            or not payload
            or hashlib.sha256(payload).digest() != raw[len(_PATCH_MAGIC) : _HEADER]
        ):
            log.warning("patch store: %s failed its check; removed (it will be recomputed)", path)
            self._count("corrupt")
            self._count("misses")
            self._drop(path)
            return None
        self._count("hits")
        self._touch(path)
        return payload

    def put(self, base: bytes, target: bytes, mode: str, patch: bytes) -> bool:
        """Store ``patch`` (``b""``: not worth it) atomically; False when it was not stored
        (larger than the whole bound, or the write failed: logged, never raised)."""
        path = self._path(base, target, mode)
        if patch:
            body = [_PATCH_MAGIC, hashlib.sha256(patch).digest(), patch]
        else:
            body = [_NOT_WORTH_MAGIC]
        size = sum(len(p) for p in body)
        if size > self.max_bytes:
            self._count("too_large")
            return False
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            atomic_write(path, body)
        except OSError as exc:
            # a read-only or full disk: said once, then quietly (every patch would say it)
            level = logging.DEBUG if self.stats.write_errors else logging.WARNING
            log.log(level, "patch store: cannot write %s: %r", path, exc)
            self._count("write_errors")
            return False
        with self._lock:
            old = self._sizes.pop(path, None)
            if old is not None:  # replaced: the policy learns of it again below
                self.policy.record_remove(path)
            self._total += size - (old or 0)
            self.stats.writes += 1
            victims = self._victims()  # before the new entry is known: never a victim
            self._sizes[path] = size
            self.policy.record_insert(path, size, self._clock())
        for victim in victims:
            with contextlib.suppress(OSError):
                os.unlink(victim)
        return True

    def delete(self, base: bytes, target: bytes, mode: str) -> bool:
        """Remove one entry; True when there was one."""
        path = self._path(base, target, mode)
        try:
            os.unlink(path)
        except OSError:
            self._forget(path)
            return False
        self._forget(path)
        return True

    # -- eviction ------------------------------------------------------------------------------

    def _touch(self, path: str) -> None:
        with contextlib.suppress(OSError):
            os.utime(path)
        with self._lock:
            if path in self._sizes:
                self.policy.record_access(path, self._clock())

    def _victims(self) -> list[str]:
        """Under the lock, with ``_total`` already counting a new entry that is not in
        ``_sizes`` yet: the policy's victims, removed from the books, so the total is
        back under 90 % (the new entry is never one: the policy does not know it yet)."""
        if self._total <= self.max_bytes:
            return []
        goal = self.max_bytes * 9 // 10
        out = []
        for path in self.policy.choose_victims(self._total - goal):
            size = self._sizes.pop(path, None)
            self.policy.record_remove(path)
            if size is None:  # a policy naming what it was not told of: nothing to do
                continue
            self._total -= size
            self.stats.evicted += 1
            out.append(path)
        return out

    def __repr__(self) -> str:
        return (
            f"PatchStore({str(self.directory)!r}, {len(self._sizes)} entries, "
            f"{self._total} of {self.max_bytes} bytes)"
        )


# -- the tier shared by several instances (Redis) --------------------------------------------

_SHARED_MAGIC = b"RCSP1\n"
_SHARED_PATCH, _SHARED_NOT_WORTH = b"P", b"N"
_SHARED_OVERHEAD = len(_SHARED_MAGIC) + 64 + 16 + 2  # magic, digests, mode, newline, kind


def encode_shared(base: bytes, target: bytes, mode: str, patch: bytes) -> bytes:
    """The value kept in Redis for ``base -> target`` in ``mode``: a magic line, the pair and
    the mode it answers (so a value put under another key is never taken for this one), a kind
    byte and the patch (``b""``: not worth sending). RedisStore adds its SHA-256 around it."""
    b, t = _hex("base", base), _hex("target", target)
    if not isinstance(mode, str) or not _MODE.match(mode):
        raise InvalidArgumentError(f"mode must be a short lower-case word, got {mode!r:.40}")
    kind = _SHARED_PATCH if patch else _SHARED_NOT_WORTH
    return b"".join(
        [_SHARED_MAGIC, bytes.fromhex(b), bytes.fromhex(t), mode.encode(), b"\n", kind, patch]
    )


def decode_shared(raw: bytes, base: bytes, target: bytes, mode: str) -> bytes | None:
    """The patch in ``raw`` (``b""``: not worth sending) when it is a value of
    :func:`encode_shared` for exactly this pair and mode; None for anything else."""
    head = encode_shared(base, target, mode, b"")[:-1]  # everything up to the kind byte
    if len(raw) <= len(head) or not raw.startswith(head):
        return None
    kind, patch = raw[len(head) : len(head) + 1], raw[len(head) + 1 :]
    if kind == _SHARED_NOT_WORTH and not patch:
        return b""
    if kind == _SHARED_PATCH and patch:
        return patch
    return None


@dataclass
class SharedPatchCacheStats:
    """What one instance's shared cache did (each instance has its own counters)."""

    computed: int = 0  # patches this instance computed (holding the lease, or without Redis)
    shared_hits: int = 0  # results read from Redis (another instance's, or an earlier one)
    waited: int = 0  # computations this instance waited for (another instance held the lease)
    local_fallbacks: int = 0  # computed without the lease: Redis unreachable
    wait_timeouts: int = 0  # waited ``wait_s`` for a holder: computed without the lease
    rejected: int = 0  # values that failed their binding or the app's check: deleted
    not_shared: int = 0  # results not put in Redis (too large, a failed computation, an error)


class SharedResult(NamedTuple):
    """What :meth:`RedisPatchCache.get_or_compute` got: the patch (``b""``: not worth it),
    whether it is settled (safe to keep), and where it came from."""

    patch: bytes
    settled: bool
    source: str  # "shared" (from Redis), "computed" (here, with the lease), "local" (no lease)


class RedisPatchCache:
    """Patches shared by several RegistryApp instances through one Redis server, each computed
    once: ``RegistryApp(storage, shared_cache=RedisPatchCache("redis://host:6379/0"))``.

    The app looks in its memory cache and its PatchStore first, then here:
    :meth:`get_or_compute` reads the pair's value from Redis; on a miss it takes the pair's
    lease (:class:`~registry_core.cache._lock.RedisLock`, ``lock_ttl_s``, renewed while the
    computation runs), checks Redis again, computes, puts the result and releases. Instances
    that find the lease taken poll for the result with a backoff of 5 ms doubling to 250 ms;
    when the lease ends without a result (its holder died: the lease expired, or its
    computation failed) one of them takes it over; after ``wait_s`` a waiter computes on its
    own. Values are checked twice on read: RedisStore's SHA-256 envelope and the pair and mode
    they were put for (:func:`decode_shared`), then by the app's ``check`` (RegistryApp applies
    the patch to the base and compares the target's SHA-256); a value that fails is deleted and
    computed again, never served.

    When Redis fails, patches are computed locally (logged once, then quietly) and Redis is
    not asked again for ``down_retry_s``, so requests do not each wait for a timeout. Keys:
    ``prefix + "<base hex>-<target hex>.<mode>"`` (values, ``ttl`` seconds after their last
    read), ``prefix + "lock:patch:..."`` (leases), ``prefix + "fence"`` (the fencing counter).
    Give each tenant its own ``prefix``. ``redis`` is imported when one is made.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "registry-core:patches:",
        ttl: float | None = 7 * 86400.0,
        max_value_bytes: int = 64 << 20,
        lock_ttl_s: float = 10.0,
        wait_s: float = 30.0,
        timeout: float = 2.0,
        down_retry_s: float = 5.0,
    ) -> None:
        from ..cache._lock import _ttl_ms
        from ..cache._redis import RedisStore

        for name, value in (("wait_s", wait_s), ("down_retry_s", down_retry_s)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise InvalidArgumentError(f"{name} must be a number of seconds >= 0: {value!r}")
        _ttl_ms(lock_ttl_s)
        if not isinstance(prefix, str) or not prefix:
            raise InvalidArgumentError(f"prefix must be a non-empty string, got {prefix!r:.60}")
        if (
            isinstance(max_value_bytes, bool)
            or not isinstance(max_value_bytes, int)
            or max_value_bytes < 1
        ):
            raise InvalidArgumentError(
                f"max_value_bytes must be a positive int: {max_value_bytes!r}"
            )
        self.store = RedisStore(
            url,
            prefix=prefix,
            ttl=ttl,
            max_value_bytes=max_value_bytes + _SHARED_OVERHEAD,
            timeout=timeout,
            fail_open=False,  # failures come here as CacheError: counted, logged once
        )
        self.max_value_bytes = max_value_bytes
        self.lock_ttl_s = float(lock_ttl_s)
        self.wait_s = float(wait_s)
        self.down_retry_s = float(down_retry_s)
        self.stats = SharedPatchCacheStats()
        self._lock = threading.Lock()
        self._down_until = 0.0  # monotonic time before which Redis is not asked
        self._degraded = False  # Redis failed since it last answered (said once)
        self._closed = threading.Event()  # wakes waiters at close()

    # -- Redis availability ------------------------------------------------------------------

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self.stats, name, getattr(self.stats, name) + 1)

    def _is_down(self) -> bool:
        return time.monotonic() < self._down_until

    def _mark_down(self, exc: BaseException) -> None:
        with self._lock:
            first, self._degraded = not self._degraded, True
            self._down_until = time.monotonic() + self.down_retry_s
        log.log(
            logging.WARNING if first else logging.DEBUG,
            "shared patch cache unavailable, computing patches locally (Redis is asked again "
            "in %.0f s): %s",
            self.down_retry_s,
            exc,
        )

    def _mark_up(self) -> None:
        if self._degraded:
            with self._lock:
                was, self._degraded = self._degraded, False
            if was:
                log.info("shared patch cache at %s reachable again", self.store.where)

    # -- values ------------------------------------------------------------------------------

    @staticmethod
    def _key(base: bytes, target: bytes, mode: str) -> str:
        if not isinstance(mode, str) or not _MODE.match(mode):
            raise InvalidArgumentError(f"mode must be a short lower-case word, got {mode!r:.40}")
        return f"{_hex('base', base)}-{_hex('target', target)}.{mode}"

    def get(
        self,
        base: bytes,
        target: bytes,
        mode: str,
        check: Callable[[bytes], bool] | None = None,
    ) -> bytes | None:
        """The shared patch (``b""``: not worth it), or None (absent, rejected, Redis down).
        ``check(patch) -> bool``: False deletes the value (it is wrong); an exception leaves
        it (it could not be checked here) and is a miss."""
        key = self._key(base, target, mode)
        if self._is_down():
            return None
        try:
            raw = self.store.get(key)
        except CacheError as exc:
            self._mark_down(exc)
            return None
        self._mark_up()
        if raw is None:
            return None
        patch = decode_shared(raw, base, target, mode)
        if patch:
            try:
                ok = check is None or check(patch)
            except Exception as exc:
                log.warning("shared patch %s could not be checked here: %r", key, exc)
                return None
            if not ok:
                patch = None
        if patch is None:
            self._count("rejected")
            log.warning("shared patch %s failed its check; deleted (it will be recomputed)", key)
            try:
                self.store.delete(key)
            except CacheError as exc:
                self._mark_down(exc)
            return None
        return patch

    def put(self, base: bytes, target: bytes, mode: str, patch: bytes) -> bool:
        """Share ``patch`` (``b""``: not worth it); False when it was not (too large, Redis
        down: logged, never raised)."""
        key = self._key(base, target, mode)
        if len(patch) > self.max_value_bytes or self._is_down():
            self._count("not_shared")
            return False
        try:
            ok = self.store.put(key, encode_shared(base, target, mode, patch))
        except CacheError as exc:
            self._mark_down(exc)
            ok = False
        if not ok:
            self._count("not_shared")
        return ok

    # -- the single flight across instances ----------------------------------------------------

    def get_or_compute(
        self,
        base: bytes,
        target: bytes,
        mode: str,
        compute: Callable[[], tuple[bytes, bool]],
        *,
        check: Callable[[bytes], bool] | None = None,
    ) -> SharedResult:
        """The pair's patch from Redis, or ``compute()`` (-> ``(patch, settled)``) run by one
        instance at a time (blocking: call it in a worker thread). A settled result is put in
        Redis for the others; an unsettled one (a failure) is not."""
        from ..cache._lock import RedisLock

        hit = self.get(base, target, mode, check)
        if hit is not None:
            self._count("shared_hits")
            return SharedResult(hit, True, "shared")
        if self._is_down():
            return self._local(base, target, mode, compute)
        lock = RedisLock(
            self.store, "patch:" + self._key(base, target, mode), ttl_s=self.lock_ttl_s
        )
        deadline = time.monotonic() + self.wait_s
        delay = 0.005
        waited = False
        while True:
            try:
                fence = lock.acquire()
            except CacheError as exc:
                self._mark_down(exc)
                return self._local(base, target, mode, compute)
            if fence is not None:
                with lock.hold():
                    hit = self.get(base, target, mode, check)  # finished just before we came
                    if hit is not None:
                        self._count("shared_hits")
                        return SharedResult(hit, True, "shared")
                    patch, settled = compute()
                    self._count("computed")
                    if settled:
                        self.put(base, target, mode, patch)
                    else:
                        self._count("not_shared")
                    return SharedResult(patch, settled, "computed")
            if not waited:
                waited = True
                self._count("waited")
            while True:  # another instance holds the lease: its result, or its lease's end
                left = deadline - time.monotonic()
                if left <= 0 or self._closed.is_set():
                    self._count("wait_timeouts")
                    log.warning(
                        "shared patch %s: still computed elsewhere after %.1f s; computing here",
                        self._key(base, target, mode),
                        self.wait_s,
                    )
                    return self._local(base, target, mode, compute, fallback=False)
                self._closed.wait(min(delay, left))
                delay = min(delay * 2, 0.25)
                hit = self.get(base, target, mode, check)
                if hit is not None:
                    self._count("shared_hits")
                    return SharedResult(hit, True, "shared")
                if self._is_down():
                    return self._local(base, target, mode, compute)
                try:
                    if not lock.locked():
                        break  # released without a result, or expired: take it over
                except CacheError as exc:
                    self._mark_down(exc)
                    return self._local(base, target, mode, compute)

    def _local(
        self,
        base: bytes,
        target: bytes,
        mode: str,
        compute: Callable[[], tuple[bytes, bool]],
        *,
        fallback: bool = True,
    ) -> SharedResult:
        """Compute without the lease (Redis down, or its holder too slow); a settled result
        is still shared when Redis answers (it is the same whoever computes it)."""
        patch, settled = compute()
        self._count("computed")
        if fallback:
            self._count("local_fallbacks")
        if settled:
            self.put(base, target, mode, patch)
        return SharedResult(patch, settled, "local")

    def close(self) -> None:
        """Wake waiting computations (they compute on their own) and close the Redis client."""
        self._closed.set()
        self.store.close()

    def __repr__(self) -> str:
        return f"RedisPatchCache({self.store.where!r}, prefix={self.store.prefix!r})"
