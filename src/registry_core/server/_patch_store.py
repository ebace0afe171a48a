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

The total size of the entries is bounded (``max_bytes``): a put that goes over it evicts the
entries least recently written or read (file mtimes; a read touches its entry) down to 90 %
of the bound. The size is counted from a scan at construction plus what this object wrote;
entries written by another process meanwhile are counted at the next construction.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from .._util import atomic_write
from ..errors import InvalidArgumentError

__all__ = ["PatchStore", "PatchStoreStats"]

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
    blocks on the file system (RegistryApp calls them in worker threads).
    """

    def __init__(self, directory: str | os.PathLike[str], *, max_bytes: int = 1 << 30) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise InvalidArgumentError(f"max_bytes must be an integer >= 1, got {max_bytes!r}")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.stats = PatchStoreStats()
        self._lock = threading.Lock()
        # entry path -> size on disk, oldest first (by mtime at the scan, then use order)
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
            for _, path, size in found:
                self._sizes[path] = size
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
            old = self._sizes.pop(path, 0)
            self._sizes[path] = size
            self._total += size - old
            self.stats.writes += 1
            victims = self._victims()
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
                self._sizes.move_to_end(path)

    def _victims(self) -> list[str]:
        """Under the lock: the oldest entries to remove so the total is back under 90 %."""
        if self._total <= self.max_bytes:
            return []
        goal = self.max_bytes * 9 // 10
        out = []
        while self._total > goal and len(self._sizes) > 1:
            path, size = self._sizes.popitem(last=False)
            self._total -= size
            self.stats.evicted += 1
            out.append(path)
        return out

    def __repr__(self) -> str:
        return (
            f"PatchStore({str(self.directory)!r}, {len(self._sizes)} entries, "
            f"{self._total} of {self.max_bytes} bytes)"
        )
