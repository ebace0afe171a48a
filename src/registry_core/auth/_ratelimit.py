"""Rate-limit tiers: GCRA per principal and per tenant, in-process or on Redis, and the IETF
RateLimit header fields.

The algorithm is the generic cell rate algorithm as Brandur Leach's *throttled* and
redis-cell describe it. A key stores one number, its *theoretical arrival time* (TAT). With
the emission interval ``T = 1/rate`` and the burst tolerance ``B * T`` (``B`` = burst), a
request of cost ``c`` arriving at ``now`` computes ``tat = max(TAT, now)`` and
``new_tat = tat + c * T``; it is allowed when ``now >= new_tat - B * T`` (then TAT becomes
``new_tat``), otherwise it is limited and may retry after exactly ``new_tat - B * T - now``.
Hence over any window of length ``t`` at most ``B + rate * t`` units are allowed (``T`` is
rounded up to whole clock units, so rounding never lets more through).

:func:`gcra` is that step, sans-IO: the stored TAT and the time are arguments.
:class:`MemoryRateLimiter` keeps TATs in a bounded LRU for one process;
:class:`RedisRateLimiter` runs the same step in ONE Lua script with the Redis server's ``TIME``
as the clock, so every instance sharing the server agrees on one budget; keys expire when
their TAT passes. :class:`TieredLimiter` applies a tenant's plan (free / team / enterprise)
per principal and per tenant, and degrades as configured when the backend fails.
:func:`rate_limit_headers` renders ``RateLimit-Policy`` / ``RateLimit`` of
draft-ietf-httpapi-ratelimit-headers-12 (November 2026) and ``Retry-After`` on a 429.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from .._util import LRU
from ..errors import InvalidArgumentError, RateLimitedError, RateLimiterUnavailableError

if TYPE_CHECKING:
    from ..audit import AuditSink
    from ._model import Principal

__all__ = [
    "DEFAULT_PLANS",
    "KINDS",
    "Limit",
    "LimitResult",
    "MemoryRateLimiter",
    "Plan",
    "RateLimiter",
    "RedisRateLimiter",
    "TieredLimiter",
    "gcra",
    "rate_limit_headers",
]

log = logging.getLogger("registry_core.ratelimit")

KINDS = ("read", "upload")
TENANT_FACTOR = 10  # a tenant's budget is this many times one principal's
MAX_RATE = 1_000_000.0  # per second: the Redis script counts microseconds
MIN_RATE = 1e-6
MAX_BURST = 1_000_000_000
MAX_KEY = 200  # longer keys are hashed
_LOG_EVERY_NS = 10 * 1_000_000_000


# -- plans and results --------------------------------------------------------------------------


def _check_limit(rate: float, burst: int, cost: int) -> None:
    if (
        isinstance(rate, bool)
        or not isinstance(rate, (int, float))
        or not math.isfinite(rate)
        or not MIN_RATE <= rate <= MAX_RATE
    ):
        raise InvalidArgumentError(
            f"rate must be a number of requests per second in [{MIN_RATE}, {MAX_RATE:.0f}]: "
            f"{rate!r}"
        )
    if isinstance(burst, bool) or not isinstance(burst, int) or not 1 <= burst <= MAX_BURST:
        raise InvalidArgumentError(f"burst must be an int in [1, {MAX_BURST}]: {burst!r}")
    if isinstance(cost, bool) or not isinstance(cost, int) or not 0 <= cost <= burst:
        raise InvalidArgumentError(
            f"cost must be an int in [0, burst={burst}] (a larger cost could never pass): "
            f"{cost!r}"
        )


@dataclass(frozen=True)
class Plan:
    """A tier's limits: ``rate`` requests/s with bursts of ``burst``; uploads separately."""

    name: str
    rate: float
    burst: int
    upload_rate: float
    upload_burst: int

    def __post_init__(self) -> None:
        # the tenant's budget is TENANT_FACTOR times these: it must be a valid limit too
        for rate, burst in ((self.rate, self.burst), (self.upload_rate, self.upload_burst)):
            _check_limit(rate, burst, 1)
            if rate * TENANT_FACTOR > MAX_RATE or burst * TENANT_FACTOR > MAX_BURST:
                raise InvalidArgumentError(
                    f"plan {self.name!r}: rate at most {MAX_RATE / TENANT_FACTOR:.0f}/s and "
                    f"burst at most {MAX_BURST // TENANT_FACTOR} (the tenant's budget is "
                    f"{TENANT_FACTOR} times a principal's)"
                )

    def limits(self, kind: str) -> tuple[float, int]:
        """(rate, burst) for a request kind ("read" or "upload")."""
        if kind == "read":
            return self.rate, self.burst
        if kind == "upload":
            return self.upload_rate, self.upload_burst
        raise InvalidArgumentError(f"unknown request kind {kind!r}; expected one of {KINDS}")


DEFAULT_PLANS: Mapping[str, Plan] = {
    "free": Plan("free", 20, 100, 0.2, 10),
    "team": Plan("team", 200, 1000, 2, 50),
    "enterprise": Plan("enterprise", 2000, 10000, 20, 200),
}


@dataclass(frozen=True)
class LimitResult:
    """One limiter decision. ``limit`` is the burst (the quota), ``remaining`` what may still be
    spent now, ``reset_s`` the time until the whole quota is back, ``retry_after_s`` the exact
    wait before this request would be allowed (0 when allowed). ``degraded``: the backend
    failed and the request was let through unchecked (fail open)."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: float
    retry_after_s: float
    policy: str
    window_s: float = 0.0  # the time one full quota takes to accrue (burst / rate)
    degraded: bool = False


class Limit(NamedTuple):
    """One key to check in :meth:`RateLimiter.hit_all`."""

    key: str
    rate: float
    burst: int
    cost: int = 1
    policy: str = ""


def _interval(rate: float, units_per_s: int) -> int:
    """The emission interval in clock units, rounded up (never lets more than ``rate`` by)."""
    return max(1, math.ceil(units_per_s / rate))


def _step(
    tat: int | None,
    now: int,
    *,
    interval: int,
    burst: int,
    cost: int,
    units_per_s: int,
    rate: float,
    policy: str,
) -> tuple[LimitResult, int]:
    """The GCRA step in any integer clock unit; returns (result, the TAT to store)."""
    tolerance = interval * burst
    base = now if tat is None or tat < now else tat
    if base > now + tolerance:  # a plan made stricter (or a tampered value): fully spent
        base = now + tolerance
    new_tat = base + interval * cost
    allow_at = new_tat - tolerance
    window = burst / rate
    if now >= allow_at:
        return (
            LimitResult(
                allowed=True,
                limit=burst,
                remaining=(now - allow_at) // interval,
                reset_s=(new_tat - now) / units_per_s,
                retry_after_s=0.0,
                policy=policy,
                window_s=window,
            ),
            new_tat,
        )
    return (
        LimitResult(
            allowed=False,
            limit=burst,
            remaining=max(0, (now - (base - tolerance)) // interval),
            reset_s=(base - now) / units_per_s,
            retry_after_s=(allow_at - now) / units_per_s,
            policy=policy,
            window_s=window,
        ),
        base,
    )


def gcra(
    tat_ns: int | None,
    now_ns: int,
    *,
    rate: float,
    burst: int,
    cost: int = 1,
    policy: str = "",
) -> tuple[LimitResult, int]:
    """One GCRA decision at ``now_ns`` for a key whose stored TAT is ``tat_ns`` (None: a new
    key). Returns the result and the TAT to store (unchanged when limited). Pure."""
    _check_limit(rate, burst, cost)
    return _step(
        tat_ns,
        now_ns,
        interval=_interval(rate, 1_000_000_000),
        burst=burst,
        cost=cost,
        units_per_s=1_000_000_000,
        rate=rate,
        policy=policy,
    )


def _key(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidArgumentError(f"a rate-limit key must be a non-empty str: {key!r:.60}")
    if len(key) > MAX_KEY:
        return "h:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return key


# -- backends -----------------------------------------------------------------------------------


class RateLimiter(Protocol):
    """A GCRA store: ``hit`` one key, or ``hit_all`` several atomically (all or nothing)."""

    def hit(
        self, key: str, *, rate: float, burst: int, cost: int = 1, policy: str = ""
    ) -> LimitResult: ...

    def hit_all(self, limits: Sequence[Limit]) -> list[LimitResult]: ...


def _batch(
    limits: Sequence[Limit], tats: Sequence[int | None], now: int, units_per_s: int
) -> tuple[list[LimitResult], list[int] | None]:
    """All-or-nothing over several keys: results, and the TATs to store (None: store none).
    When one key is limited, the others are reported as not charged (cost 0)."""
    steps = [
        _step(
            tat,
            now,
            interval=_interval(lim.rate, units_per_s),
            burst=lim.burst,
            cost=lim.cost,
            units_per_s=units_per_s,
            rate=lim.rate,
            policy=lim.policy,
        )
        for lim, tat in zip(limits, tats, strict=True)
    ]
    if all(result.allowed for result, _ in steps):
        return [result for result, _ in steps], [new for _, new in steps]
    results = []
    for lim, tat, (result, _) in zip(limits, tats, steps, strict=True):
        if result.allowed:
            result, _ = _step(
                tat,
                now,
                interval=_interval(lim.rate, units_per_s),
                burst=lim.burst,
                cost=0,
                units_per_s=units_per_s,
                rate=lim.rate,
                policy=lim.policy,
            )
        results.append(result)
    return results, None


def _checked(limits: Sequence[Limit]) -> list[Limit]:
    if not limits:
        raise InvalidArgumentError("hit_all needs at least one limit")
    out = []
    for lim in limits:
        if type(lim) is not Limit:
            lim = Limit(*lim)
        _check_limit(lim.rate, lim.burst, lim.cost)
        key = _key(lim.key)
        out.append(lim if key is lim.key else lim._replace(key=key))
    if len({lim.key for lim in out}) != len(out):
        raise InvalidArgumentError("hit_all was given the same key twice")
    return out


class MemoryRateLimiter:
    """GCRA state of one process: at most ``max_keys`` TATs in an LRU (a forgotten key is a
    fresh one, and the least recently used keys are the ones whose TAT has long passed).
    ``clock`` returns nanoseconds (monotonic by default; injected in tests)."""

    def __init__(
        self, clock: Callable[[], int] = time.monotonic_ns, *, max_keys: int = 100_000
    ) -> None:
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            raise InvalidArgumentError(f"max_keys must be a positive int: {max_keys!r}")
        self._clock = clock
        self._tats: LRU[str, int] = LRU(max_entries=max_keys)
        self._lock = threading.Lock()

    def hit(
        self, key: str, *, rate: float, burst: int, cost: int = 1, policy: str = ""
    ) -> LimitResult:
        return self.hit_all([Limit(key, rate, burst, cost, policy)])[0]

    def hit_all(self, limits: Sequence[Limit]) -> list[LimitResult]:
        limits = _checked(limits)
        with self._lock:
            now = self._clock()
            tats = [self._tats.get(lim.key) for lim in limits]
            results, new = _batch(limits, tats, now, 1_000_000_000)
            if new is not None:
                for lim, tat in zip(limits, new, strict=True):
                    self._tats.put(lim.key, tat)
        return results

    def __len__(self) -> int:
        return len(self._tats)

    def __repr__(self) -> str:
        return f"MemoryRateLimiter(keys={len(self._tats)}, max_keys={self._tats.max_entries})"


# The one script. KEYS: the rate-limit keys. ARGV[1]: "" (use the server's TIME) or a time in
# microseconds (tests only); then per key: emission interval, burst tolerance, increment (µs).
# All or nothing: TATs are written only when every key allows the request, each with a TTL
# that ends when its TAT passes (an expired key and an absent key mean the same). A stored
# value that is not a number counts as absent; one beyond now + tolerance (a plan made
# stricter, a tampered value) as fully spent, as in _step. Replies
# {allowed 0/1, now, tat_1 .. tat_n} with tat_i = max(stored TAT, now) before the request.
# Lua numbers are doubles: microseconds since 1970 (~1.8e15) stay exact below 2^53.
LUA = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local now
if ARGV[1] ~= "" then
  now = tonumber(ARGV[1])
else
  local t = redis.call("TIME")
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local reply = {1, now}
local news = {}
for i = 1, #KEYS do
  local j = 2 + (i - 1) * 3
  local tolerance = tonumber(ARGV[j + 1])
  local increment = tonumber(ARGV[j + 2])
  local tat = tonumber(redis.call("GET", KEYS[i]) or "")
  if tat == nil or tat < now then tat = now end
  if tat > now + tolerance then tat = now + tolerance end
  local new = tat + increment
  if now < new - tolerance then reply[1] = 0 end
  reply[i + 2] = tat
  news[i] = new
end
if reply[1] == 1 then
  for i = 1, #KEYS do
    local ttl = math.max(1, math.ceil((news[i] - now) / 1000))
    redis.call("SET", KEYS[i], string.format("%.0f", news[i]), "PX", ttl)
  end
end
return reply
"""
LUA_SHA = hashlib.sha1(LUA.encode()).hexdigest()
_MAX_KEYS_PER_CALL = 16


class RedisRateLimiter:
    """GCRA on a Redis server: one atomic Lua script per check (EVALSHA; loaded again after a
    NOSCRIPT, e.g. a server restart or SCRIPT FLUSH), the server's clock, keys under
    ``prefix`` that expire when idle. Every failure raises
    :class:`~registry_core.errors.RateLimiterUnavailableError` (the caller decides whether to
    fail open). ``redis`` is imported when the first one is made.

    After a connection failure or timeout the server is not asked again for
    ``retry_interval_s`` (checks fail at once, counted in ``skipped``), so an outage costs
    each request nothing rather than a timeout, and worker threads do not pile up behind a
    dead server; then one check probes it. ``clock`` (seconds, monotonic) is injectable."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 0.25,
        prefix: str = "rc:rl:",
        retry_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(timeout_s, (int, float)) or not 0 < timeout_s <= 60:
            raise InvalidArgumentError(f"timeout_s must be in (0, 60]: {timeout_s!r}")
        if not isinstance(retry_interval_s, (int, float)) or not 0 <= retry_interval_s <= 3600:
            raise InvalidArgumentError(
                f"retry_interval_s must be in [0, 3600]: {retry_interval_s!r}"
            )
        try:
            import redis
            from redis.backoff import ExponentialBackoff
            from redis.retry import Retry
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise RateLimiterUnavailableError(
                "RedisRateLimiter needs the 'redis' package: pip install 'registry-core[cache]'"
            ) from exc
        from ..cache._resp import bounded_parser

        opts: dict[str, Any] = {
            "socket_timeout": timeout_s,
            "socket_connect_timeout": timeout_s,
            # one quick retry (a connection the server closed); a check is on the request path
            "retry": Retry(ExponentialBackoff(cap=0.05, base=0.01), 1),
        }
        parser = bounded_parser(4096)  # our replies are short arrays of integers
        if parser is not None:
            opts["parser_class"] = parser
            opts["protocol"] = 2
        try:
            pool = redis.ConnectionPool.from_url(url, **opts)
        except (ValueError, TypeError) as exc:
            raise InvalidArgumentError(f"bad Redis URL for the rate limiter: {exc}") from exc
        kw = pool.connection_kwargs
        where = kw.get("path") or f"{kw.get('host', '?')}:{kw.get('port', '?')}"
        self._where = f"redis {where} db {kw.get('db', 0)}"  # never the password
        self._client = redis.Redis(connection_pool=pool)
        self._noscript = redis.exceptions.NoScriptError
        self._answered = redis.exceptions.ResponseError  # the server is up, it said no
        self.prefix = prefix
        self.retry_interval_s = float(retry_interval_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._down_until: float | None = None
        self._down_reason = ""
        self.scripts_loaded = 0  # how many times the script had to be (re)loaded
        self.failures = 0  # checks the server failed (connection, timeout, bad reply)
        self.skipped = 0  # checks refused at once while the server was considered down

    def hit(
        self, key: str, *, rate: float, burst: int, cost: int = 1, policy: str = ""
    ) -> LimitResult:
        return self.hit_all([Limit(key, rate, burst, cost, policy)])[0]

    def hit_all(self, limits: Sequence[Limit]) -> list[LimitResult]:
        return self._hit_all(limits, "")

    def _hit_all(self, limits: Sequence[Limit], now_us: str) -> list[LimitResult]:
        limits = _checked(limits)
        if len(limits) > _MAX_KEYS_PER_CALL:
            raise InvalidArgumentError(f"at most {_MAX_KEYS_PER_CALL} keys per check")
        keys = [self.prefix + lim.key for lim in limits]
        args: list[str | int] = [now_us]
        for lim in limits:
            interval = _interval(lim.rate, 1_000_000)
            args += [interval, interval * lim.burst, interval * lim.cost]
        reply = self._eval(keys, args)
        if (
            not isinstance(reply, list)
            or len(reply) != 2 + len(limits)
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in reply)
        ):
            raise RateLimiterUnavailableError(
                f"rate limiter backend {self._where} sent an unexpected reply {reply!r:.80}"
            )
        now, tats = reply[1], reply[2:]
        results, _ = _batch(limits, tats, now, 1_000_000)
        if bool(reply[0]) != all(r.allowed for r in results):  # the script and _step disagree
            raise RateLimiterUnavailableError(
                f"rate limiter backend {self._where}: script decision disagrees with GCRA"
            )
        return results

    def _eval(self, keys: list[str], args: list[str | int]) -> Any:
        with self._lock:
            if self._down_until is not None:
                wait = self._down_until - self._clock()
                if wait > 0:
                    self.skipped += 1
                    raise RateLimiterUnavailableError(
                        f"rate limiter backend {self._where} is down ({self._down_reason}); "
                        f"not asked again for {wait:.2f} s"
                    )
        try:
            try:
                reply = self._client.evalsha(LUA_SHA, len(keys), *keys, *args)
            except self._noscript:
                with self._lock:
                    self.scripts_loaded += 1
                sha = self._client.script_load(LUA)
                if sha != LUA_SHA:  # pragma: no cover - a server that hashes otherwise
                    raise RateLimiterUnavailableError(
                        f"rate limiter backend {self._where} returned script id {sha!r:.60}"
                    ) from None
                reply = self._client.evalsha(LUA_SHA, len(keys), *keys, *args)
        except Exception as exc:  # whatever redis-py raised: the backend is unavailable
            reason = f"{type(exc).__name__}: {exc}"
            with self._lock:
                self.failures += 1
                if not isinstance(exc, self._answered) and self.retry_interval_s > 0:
                    self._down_until = self._clock() + self.retry_interval_s
                    self._down_reason = reason[:200]
            if isinstance(exc, RateLimiterUnavailableError):
                raise
            raise RateLimiterUnavailableError(
                f"rate limiter backend {self._where} failed: {reason}"
            ) from exc
        with self._lock:
            self._down_until = None
        return reply

    def ping(self) -> bool:
        """True when the server answers; RateLimiterUnavailableError otherwise."""
        try:
            return self._client.ping() is True
        except Exception as exc:
            raise RateLimiterUnavailableError(
                f"rate limiter backend {self._where} failed: {type(exc).__name__}: {exc}"
            ) from exc

    def close(self) -> None:
        try:
            self._client.close()
        except Exception as exc:  # closing a broken connection is not worth a traceback
            log.debug("closing the rate limiter's Redis client (%s): %s", self._where, exc)

    def __enter__(self) -> RedisRateLimiter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisRateLimiter({self._where!r}, prefix={self.prefix!r})"


# -- tiers ------------------------------------------------------------------------------------


class TieredLimiter:
    """A tenant plan's limits, per principal and per tenant (``TENANT_FACTOR`` times the
    principal's), checked atomically: a request passes only when both keys allow it, and the
    stricter result is returned.

    Limited: :class:`~registry_core.errors.RateLimitedError` with ``retry_after`` and
    ``result`` (the :class:`LimitResult`, for the headers); audited "ratelimit.limited" at
    most once per key every 10 s. Backend down: reads pass with a ``degraded`` result
    (``fail_open_reads``), uploads raise RateLimiterUnavailableError (``fail_open_uploads``
    False); either way logged at most once every 10 s and audited "ratelimit.unavailable".
    """

    def __init__(
        self,
        limiter: RateLimiter,
        plans: Mapping[str, Plan] = DEFAULT_PLANS,
        *,
        fail_open_reads: bool = True,
        fail_open_uploads: bool = False,
        audit: AuditSink | None = None,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        for name, plan in plans.items():
            if not isinstance(plan, Plan):
                raise InvalidArgumentError(f"plan {name!r} is not a Plan: {plan!r:.60}")
        self.limiter = limiter
        self.plans = dict(plans)
        self.fail_open = {"read": fail_open_reads, "upload": fail_open_uploads}
        self.audit = audit
        self._clock = clock
        self._lock = threading.Lock()
        self._last_warning_ns: int | None = None
        self._unavailable_since_warning = 0
        self._limited_audited: LRU[str, tuple[int, int]] = LRU(max_entries=10_000)
        self.unavailable = 0  # checks the backend could not answer
        self.limited = 0  # requests refused

    def check(
        self, principal: Principal, plan: str, kind: str = "read", *, client: str | None = None
    ) -> LimitResult:
        """Charge one request of ``kind`` by ``principal`` on its tenant's ``plan``.

        ``client`` (e.g. the peer address) splits the anonymous budget per client; signed-in
        principals are keyed by subject alone."""
        try:
            limits = self.plans[plan]
        except KeyError:
            raise InvalidArgumentError(
                f"unknown rate-limit plan {plan!r}; known: {sorted(self.plans)}"
            ) from None
        rate, burst = limits.limits(kind)
        tenant = principal.tenant
        subject = principal.subject
        if not principal.authenticated and client:
            subject = f"{subject}@{client}"
        name = f"{limits.name}-{kind}"
        own = Limit(f"{tenant}:{subject}:{kind}", rate, burst, 1, name)
        shared = Limit(
            f"{tenant}::{kind}",
            rate * TENANT_FACTOR,
            burst * TENANT_FACTOR,
            1,
            f"{name}-tenant",
        )
        try:
            results = self.limiter.hit_all([own, shared])
        except RateLimiterUnavailableError as exc:
            return self._unavailable(principal, kind, name, rate, burst, exc)
        limited = [r for r in results if not r.allowed]
        if not limited:
            return min(results, key=lambda r: r.remaining)  # principal first on a tie
        result = max(limited, key=lambda r: r.retry_after_s)
        with self._lock:
            self.limited += 1
        self._audit_limited(own.key, principal, kind, result)
        hit_rate = shared.rate if result.policy == shared.policy else rate
        error = RateLimitedError(
            f"rate limit exceeded ({result.policy}: {result.limit} requests, "
            f"{hit_rate:g}/s); retry after {result.retry_after_s:.3f} s",
            retry_after=result.retry_after_s,
        )
        error.result = result  # type: ignore[attr-defined]
        raise error

    def _unavailable(
        self,
        principal: Principal,
        kind: str,
        name: str,
        rate: float,
        burst: int,
        exc: RateLimiterUnavailableError,
    ) -> LimitResult:
        fail_open = self.fail_open[kind]
        now = self._clock()
        with self._lock:
            self.unavailable += 1
            self._unavailable_since_warning += 1
            due = self._last_warning_ns is None or now - self._last_warning_ns >= _LOG_EVERY_NS
            if due:
                self._last_warning_ns = now
                count, self._unavailable_since_warning = self._unavailable_since_warning, 0
        if due:
            verdict = "let through (fail open)" if fail_open else "refused (fail closed)"
            log.warning(
                "rate limiter unavailable: %s; %s requests %s (%d since the last warning)",
                exc,
                kind,
                verdict,
                count,
            )
            self._emit(
                "ratelimit.unavailable",
                principal,
                "ok" if fail_open else "failed",
                kind,
                {"error": str(exc)[:200], "fail_open": str(fail_open).lower(), "count": str(count)},
            )
        if not fail_open:
            raise RateLimiterUnavailableError(
                f"rate limiter unavailable; {kind} requests are refused until it is back"
            ) from exc
        return LimitResult(
            allowed=True,
            limit=burst,
            remaining=burst,
            reset_s=0.0,
            retry_after_s=0.0,
            policy=name,
            window_s=burst / rate,
            degraded=True,
        )

    def _audit_limited(
        self, key: str, principal: Principal, kind: str, result: LimitResult
    ) -> None:
        if self.audit is None:
            return
        now = self._clock()
        with self._lock:
            last, suppressed = self._limited_audited.get(key) or (None, 0)
            if last is not None and now - last < _LOG_EVERY_NS:
                self._limited_audited.put(key, (last, suppressed + 1))
                return
            self._limited_audited.put(key, (now, 0))
        self._emit(
            "ratelimit.limited",
            principal,
            "denied",
            kind,
            {
                "policy": result.policy,
                "retry_after_s": f"{result.retry_after_s:.3f}",
                "suppressed": str(suppressed),
            },
        )

    def _emit(
        self,
        kind: str,
        principal: Principal,
        outcome: str,
        action: str,
        detail: Mapping[str, str],
    ) -> None:
        if self.audit is None:
            return
        from ..audit import AuditEvent

        self.audit.emit(
            AuditEvent(
                kind=kind,
                tenant=principal.tenant,
                subject=principal.subject,
                outcome=outcome,
                action=action,
                detail=dict(detail),
            )
        )


# -- headers ------------------------------------------------------------------------------------


def _sf_string(text: str) -> str:
    """An RFC 9651 sf-string: printable ASCII, with backslash and quote escaped."""
    safe = "".join(c if " " <= c <= "~" else "_" for c in text)
    return '"' + safe.replace("\\", "\\\\").replace('"', '\\"') + '"'


def rate_limit_headers(result: LimitResult) -> list[tuple[str, str]]:
    """Response headers for a decision (draft-ietf-httpapi-ratelimit-headers-12):

    ``RateLimit-Policy: "team-read";q=1000;w=5`` (quota = burst, window = burst / rate,
    rounded up to whole seconds), ``RateLimit: "team-read";r=999;t=1`` (remaining units,
    seconds until the whole quota is back, rounded up), and on a limited result
    ``Retry-After`` in whole seconds (rounded up, at least 1). A degraded (unchecked) result
    only states the policy."""
    name = _sf_string(result.policy or "default")
    window = max(1, math.ceil(result.window_s)) if result.window_s > 0 else None
    policy = f"{name};q={result.limit}" + (f";w={window}" if window is not None else "")
    headers = [("RateLimit-Policy", policy)]
    if result.degraded:
        return headers
    reset = max(0, math.ceil(result.reset_s))
    headers.append(("RateLimit", f"{name};r={max(0, result.remaining)};t={reset}"))
    if not result.allowed:
        headers.append(("Retry-After", str(max(1, math.ceil(result.retry_after_s)))))
    return headers
