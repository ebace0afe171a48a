"""Action-cache tiers: where ``BuildCache.run`` keeps action results (AC) and blobs (CAS).

A tier maps an action key (64 hex) to the bytes of a REAPI ``ActionResult`` and a SHA-256
digest to a blob. ``LocalActionTier`` and ``RedisActionTier`` put both inside the existing
stores under the keys ``ac/<key>`` and ``cas/<sha256>``; ``BazelHTTPTier`` (cache/_bazel.py)
speaks the HTTP protocol of Bazel remote caches. Callers re-check every blob they read against
its digest (a tier may hand back anything); a mismatch is a miss. Remote tiers raise
:class:`~registry_core.errors.CacheError` on failures; ``BuildCache.run`` catches it, warns once
per tier and continues locally.
"""

from __future__ import annotations

import re
from typing import Protocol, runtime_checkable

from ..errors import CacheError, InvalidArgumentError, InvalidTypeError
from ._local import LocalStore
from ._reapi import Digest
from ._redis import RedisStore

__all__ = ["ActionTier", "LocalActionTier", "RedisActionTier", "check_action_key"]

_HEX64 = re.compile(r"[0-9a-f]{64}")


def check_action_key(key: object) -> str:
    """``key`` when it is 64 lowercase hex characters (an action key), else raise."""
    if not isinstance(key, str) or not _HEX64.fullmatch(key):
        raise InvalidArgumentError(
            f"an action key is 64 lowercase hex characters (SHA-256), got {key!r:.80}"
        )
    return key


def _check_digest(digest: object) -> Digest:
    if not isinstance(digest, Digest):
        raise InvalidTypeError(f"expected a Digest, got {type(digest).__name__}")
    return digest


@runtime_checkable
class ActionTier(Protocol):
    """One place action results and blobs live. ``None`` from a getter is a miss."""

    name: str

    def get_action(self, key: str) -> bytes | None: ...

    def put_action(self, key: str, data: bytes) -> None: ...

    def get_blob(self, digest: Digest) -> bytes | None: ...

    def has_blob(self, digest: Digest) -> bool: ...

    def put_blob(self, digest: Digest, data: bytes) -> None: ...

    def close(self) -> None: ...


class LocalActionTier:
    """The AC and CAS inside a :class:`LocalStore` (``ac/<key>``, ``cas/<sha256>``).

    Blobs are whole ``bytes`` in memory (LocalStore's interface): a blob larger than the
    store's ``max_bytes`` is not kept, and the action that needs it is then not cached.
    The LRU may evict a blob while its action result stays: a reader then finds the blob
    missing and treats the action as a miss.
    """

    # get_blob returns only a blob whose SHA-256 (checked on read) and size are the digest's,
    # so BuildCache.run does not hash it a second time.
    verifies_blobs = True

    def __init__(self, store: LocalStore, *, name: str = "local") -> None:
        if not isinstance(store, LocalStore):
            raise InvalidTypeError(f"store must be a LocalStore, got {type(store).__name__}")
        self.store = store
        self.name = name

    def get_action(self, key: str) -> bytes | None:
        return self.store.get("ac/" + check_action_key(key))

    def put_action(self, key: str, data: bytes) -> None:
        if not self.store.put("ac/" + check_action_key(key), data):
            raise CacheError(f"{self.name} tier: action result of {len(data)} bytes not stored")

    def get_blob(self, digest: Digest) -> bytes | None:
        """The blob when the stored value is exactly what ``digest`` names (else None)."""
        found = self.store.get_verified("cas/" + _check_digest(digest).hash)
        if found is None:
            return None
        data, sha = found
        if sha != digest.hash or len(data) != digest.size_bytes:
            return None
        return data

    def has_blob(self, digest: Digest) -> bool:
        return ("cas/" + _check_digest(digest).hash) in self.store

    def backfill(self, digests: dict[str, bytes], key: str, action: bytes) -> None:
        """Store blobs the caller has checked against their SHA-256 (the keys of
        ``digests``), then the action result: no second hash, no fsync (what is back-filled
        is also in the tier it came from; a torn object fails its check on read)."""
        put = self.store.put_known
        for h, data in digests.items():
            if not put("cas/" + h, data, sha256=h, fsync=False):
                raise CacheError(
                    f"{self.name} tier: blob of {len(data)} bytes exceeds the store's "
                    f"max_bytes={self.store.max_bytes}; not stored"
                )
        if not put("ac/" + check_action_key(key), action, fsync=False):
            raise CacheError(f"{self.name} tier: action result of {len(action)} bytes not stored")

    def put_blob(self, digest: Digest, data: bytes) -> None:
        if not self.store.put("cas/" + _check_digest(digest).hash, data):
            raise CacheError(
                f"{self.name} tier: blob of {len(data)} bytes exceeds the store's max_bytes="
                f"{self.store.max_bytes}; not stored"
            )

    def delete_action(self, key: str) -> None:
        """Forget an action result (one whose blobs turned out to be missing or corrupt)."""
        self.store.delete("ac/" + check_action_key(key))

    def delete_blob(self, digest: Digest) -> None:
        self.store.delete("cas/" + _check_digest(digest).hash)

    def close(self) -> None:
        self.store.close()

    def __repr__(self) -> str:
        return f"LocalActionTier({self.store!r})"


class RedisActionTier:
    """The AC and CAS inside a :class:`RedisStore` (``<prefix>ac/<key>``, ``<prefix>cas/<sha>``).

    The store's checked value format (magic, SHA-256, value) applies. Failures raise
    :class:`CacheError` even when the store was made with ``fail_open=True`` (a miss and an
    outage must be told apart here, so ``BuildCache.run`` can warn and stop asking). A blob over
    the store's ``max_value_bytes`` raises ``CacheError`` (the action then stays local only).
    """

    def __init__(self, store: RedisStore, *, name: str = "redis") -> None:
        if not isinstance(store, RedisStore):
            raise InvalidTypeError(f"store must be a RedisStore, got {type(store).__name__}")
        self.store = store
        self.name = name

    def _get(self, key: str) -> bytes | None:
        errors = self.store.errors
        value = self.store.get(key)  # raises CacheError unless fail_open
        if self.store.errors != errors:
            raise CacheError(f"{self.name} tier ({self.store.where}): GET failed (see log)")
        return value

    def _put(self, key: str, data: bytes) -> None:
        if len(data) > self.store.max_value_bytes:
            raise CacheError(
                f"{self.name} tier: {len(data)} bytes exceed max_value_bytes="
                f"{self.store.max_value_bytes}; kept local only"
            )
        errors = self.store.errors
        ok = self.store.put(key, data)
        if not ok or self.store.errors != errors:
            raise CacheError(f"{self.name} tier ({self.store.where}): SET failed (see log)")

    def get_action(self, key: str) -> bytes | None:
        return self._get("ac/" + check_action_key(key))

    def put_action(self, key: str, data: bytes) -> None:
        self._put("ac/" + check_action_key(key), data)

    def get_blob(self, digest: Digest) -> bytes | None:
        return self._get("cas/" + _check_digest(digest).hash)

    def has_blob(self, digest: Digest) -> bool:
        name = self.store.prefix + "cas/" + _check_digest(digest).hash
        try:
            return bool(self.store.client.exists(name))
        except Exception as exc:  # whatever redis-py raised
            raise CacheError(
                f"{self.name} tier ({self.store.where}): EXISTS failed: {type(exc).__name__}: "
                f"{exc}"
            ) from exc

    def put_blob(self, digest: Digest, data: bytes) -> None:
        self._put("cas/" + _check_digest(digest).hash, data)

    def close(self) -> None:
        self.store.close()

    def __repr__(self) -> str:
        return f"RedisActionTier({self.store!r})"
