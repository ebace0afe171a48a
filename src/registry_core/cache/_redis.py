"""RedisStore: the remote tier, on a real Redis server through the ``redis`` package.

Each value is stored as ``b"RC1" || sha256(value) (32 bytes) || value`` under ``prefix + key``,
and verified on read: a value that fails verification, or a key holding another Redis type
(WRONGTYPE), is a corrupt entry: deleted, counted, a miss. Reads are bounded twice: GETRANGE
asks for at most the size limit, and the reply parser (:mod:`._resp`) refuses any reply larger
than that, so neither a huge foreign value nor a hostile server makes the client allocate more.
Every failure, whatever redis-py raised, is a :class:`CacheError` (or, with ``fail_open``, a
counted miss). ``redis`` is imported when the first RedisStore is made, not with
``registry_core``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import CacheError, InvalidArgumentError
from ._local import check_key, check_value
from ._resp import bounded_parser

__all__ = ["RedisStore"]

log = logging.getLogger("registry_core.cache")

MAGIC = b"RC1"
_HEADER = len(MAGIC) + 32


def _redact(url: str) -> str:
    """``url`` without its password (messages and reprs never carry it)."""
    try:
        parts = urlsplit(url)
        if "password" in parts.query.lower():  # redis-py also takes ?password=
            return f"{parts.scheme}://{parts.hostname or ''}{parts.path} (query redacted)"
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        if parts.port is not None:
            host += f":{parts.port}"
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
    except ValueError:
        return "<unparsable Redis URL>"


class RedisStore:
    """Values on a Redis server, with SHA-256 verification, a size limit and an optional TTL.

    Connection problems raise :class:`~registry_core.errors.CacheError`; with ``fail_open=True``
    they count as a miss (``get``) or a skipped write (``put``) instead, are logged as a warning
    on the ``registry_core.cache`` logger and counted in ``errors``, so a build goes on without
    the remote tier but never silently.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 6379,
        db: int = 0,
        prefix: str = "registry-core:cache:",
        ttl: float | None = None,
        max_value_bytes: int = 64 << 20,
        timeout: float = 2.0,
        retries: int = 1,
        fail_open: bool = False,
    ) -> None:
        if ttl is not None and (not isinstance(ttl, (int, float)) or ttl <= 0):
            raise InvalidArgumentError(f"ttl must be a positive number of seconds or None: {ttl!r}")
        if (
            isinstance(max_value_bytes, bool)
            or not isinstance(max_value_bytes, int)
            or max_value_bytes <= 0
        ):
            raise InvalidArgumentError(
                f"max_value_bytes must be a positive int: {max_value_bytes!r}"
            )
        try:
            import redis
            from redis.backoff import ExponentialBackoff
            from redis.retry import Retry
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise CacheError(
                "RedisStore needs the 'redis' package: pip install 'registry-core[cache]'"
            ) from exc
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise InvalidArgumentError(f"retries must be an int >= 0: {retries!r}")
        # A cache should fail fast: redis-py's default (3 retries with backoff) takes ~4 s
        # to report a server that is down; ours retries ``retries`` times within 100 ms.
        opts: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "retry": Retry(ExponentialBackoff(cap=0.1, base=0.02), retries),
        }
        parser = bounded_parser(_HEADER + max_value_bytes + 1)  # GETRANGE asks for one over
        if parser is not None:
            opts["parser_class"] = parser
            opts["protocol"] = 2  # the bounded parser speaks RESP2
        if url is not None:
            self._where = _redact(url)
            try:
                pool = redis.ConnectionPool.from_url(url, **opts)
            except ValueError as exc:
                raise InvalidArgumentError(f"bad Redis URL {url!r}: {exc}") from exc
        else:
            self._where = f"redis://{host}:{port}/{db}"
            pool = redis.ConnectionPool(host=host, port=port, db=db, **opts)
        self._client = redis.Redis(connection_pool=pool)
        self._response_error = redis.exceptions.ResponseError
        self.prefix = prefix
        self.ttl = ttl
        self.max_value_bytes = max_value_bytes
        self.fail_open = fail_open
        self._lock = threading.Lock()
        self.errors = 0  # operations that failed and, with fail_open, were turned into misses
        self.corrupt = 0  # values that failed verification and were deleted
        self.too_large = 0  # values refused or skipped for exceeding max_value_bytes

    def _failed(self, op: str, exc: BaseException) -> None:
        with self._lock:
            self.errors += 1
        msg = f"Redis cache at {self._where} failed during {op}: {exc}"
        if not self.fail_open:
            raise CacheError(
                msg + "; check that the server is running and reachable, "
                "or pass fail_open=True to treat it as a miss"
            ) from exc
        log.warning("%s (fail_open: treated as a miss)", msg)

    @property
    def client(self) -> Any:
        """The redis-py client (bounded reply parser, timeouts, fast retries), for the other
        parts of this package that speak Redis (:class:`~registry_core.cache._lock.RedisLock`),
        so there is one Redis connection layer, configured once."""
        return self._client

    @property
    def where(self) -> str:
        """The server's URL as given (for messages)."""
        return self._where

    def ping(self) -> bool:
        """True when the server answers; False (or CacheError without fail_open) otherwise."""
        try:
            reply = self._client.ping()
        except Exception as exc:  # any failure of the client or the reply: see _failed
            self._failed("PING", exc)
            return False
        if reply is not True:
            self._failed("PING", CacheError(f"unexpected reply {reply!r:.60}"))
            return False
        return True

    def _wrong_type(self, exc: Exception) -> bool:
        return isinstance(exc, self._response_error) and "WRONGTYPE" in str(exc)

    def _drop_corrupt(self, name: str, why: str) -> None:
        with self._lock:
            self.corrupt += 1
        log.warning("Redis cache value %s %s; deleted (treated as a miss)", name, why)
        try:
            self._client.delete(name)
        except Exception as exc:
            self._failed("DEL", exc)

    def get(self, key: str) -> bytes | None:
        """The verified value under ``key``, or None (absent, corrupt, too large, or fail_open)."""
        name = self.prefix + check_key(key)
        try:
            pipe = self._client.pipeline(transaction=False)
            pipe.getrange(name, 0, _HEADER + self.max_value_bytes)  # inclusive: one byte over
            if self.ttl is not None:
                pipe.pexpire(name, int(self.ttl * 1000))
            replies = pipe.execute()
        except Exception as exc:
            if self._wrong_type(exc):  # a key of another type: a corrupt entry, not an outage
                self._drop_corrupt(name, "is not a string (WRONGTYPE)")
                return None
            self._failed("GET", exc)
            return None
        raw = replies[0] if isinstance(replies, list) and replies else None
        if raw is not None and not isinstance(raw, bytes):
            self._failed("GET", CacheError(f"unexpected reply type {type(raw).__name__}"))
            return None
        if not raw:
            return None
        if len(raw) > _HEADER + self.max_value_bytes:
            with self._lock:
                self.too_large += 1
            log.warning(
                "Redis cache value %s exceeds max_value_bytes=%d; treated as a miss",
                name,
                self.max_value_bytes,
            )
            return None
        value = raw[_HEADER:]
        if raw[:3] != MAGIC or hashlib.sha256(value).digest() != raw[3:_HEADER]:
            self._drop_corrupt(name, "failed SHA-256 verification")
            return None
        return value

    def put(self, key: str, value: bytes) -> bool:
        """Store ``value``; raises CacheError when it exceeds ``max_value_bytes``."""
        name = self.prefix + check_key(key)
        value = check_value(value)
        if len(value) > self.max_value_bytes:
            with self._lock:
                self.too_large += 1
            raise CacheError(
                f"value of {len(value)} bytes exceeds the Redis store's max_value_bytes="
                f"{self.max_value_bytes}; raise the limit or keep such values local"
            )
        blob = MAGIC + hashlib.sha256(value).digest() + value
        try:
            if self.ttl is not None:
                reply = self._client.set(name, blob, px=int(self.ttl * 1000))
            else:
                reply = self._client.set(name, blob)
        except Exception as exc:
            self._failed("SET", exc)
            return False
        if reply is not True:  # anything but +OK: not stored
            self._failed("SET", CacheError(f"unexpected reply {reply!r:.60}"))
            return False
        return True

    def delete(self, key: str) -> bool:
        """Remove ``key``; True when it existed."""
        name = self.prefix + check_key(key)
        try:
            return self._client.delete(name) == 1
        except Exception as exc:
            self._failed("DEL", exc)
            return False

    def close(self) -> None:
        try:
            self._client.close()
        except Exception as exc:  # closing a broken connection is not worth a traceback
            log.debug("closing the Redis client of %s: %s", self._where, exc)

    def __enter__(self) -> RedisStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisStore({self._where!r}, prefix={self.prefix!r}, ttl={self.ttl!r})"
