"""GCRA (sans-IO), the in-process limiter, the plan tiers and the RateLimit header fields."""

from __future__ import annotations

import math
import re
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry_core.audit import MemorySink
from registry_core.auth import Principal
from registry_core.auth._ratelimit import (
    DEFAULT_PLANS,
    TENANT_FACTOR,
    Limit,
    LimitResult,
    MemoryRateLimiter,
    Plan,
    TieredLimiter,
    gcra,
    rate_limit_headers,
)
from registry_core.errors import InvalidArgumentError, RateLimitedError

S = 1_000_000_000


class Clock:
    """A hand-driven nanosecond clock."""

    def __init__(self, now: int = 10**15) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def ns(seconds: float) -> int:
    return round(seconds * S)


# -- gcra ---------------------------------------------------------------------------------------


def test_burst_then_limited_with_exact_retry_after():
    tat, now = None, 5 * S
    for i in range(10):
        result, tat = gcra(tat, now, rate=2, burst=10)
        assert result.allowed and result.remaining == 9 - i and result.limit == 10
    result, after = gcra(tat, now, rate=2, burst=10, policy="p")
    assert not result.allowed and after == tat and result.remaining == 0
    assert result.retry_after_s == 0.5 and result.reset_s == 5.0 and result.policy == "p"
    assert not gcra(tat, now + ns(0.5) - 1, rate=2, burst=10)[0].allowed
    assert gcra(tat, now + ns(0.5), rate=2, burst=10)[0].allowed


def test_idle_key_refills_to_burst_only():
    result, tat = gcra(None, 0, rate=1, burst=3)
    result, _ = gcra(tat, 3600 * S, rate=1, burst=3)
    assert result.allowed and result.remaining == 2  # an hour idle still gives burst, not 3600


def test_a_stricter_plan_leaves_the_key_fully_spent_not_blocked_for_long():
    _, tat = gcra(None, 0, rate=1, burst=100, cost=100)  # TAT 100 s ahead
    result, new = gcra(tat, 0, rate=1, burst=5)  # the plan now allows bursts of 5
    assert not result.allowed and result.retry_after_s == 1.0 and result.reset_s == 5.0
    assert new == 5 * S


def test_cost_and_peek():
    result, tat = gcra(None, 0, rate=1, burst=5, cost=3)
    assert result.allowed and result.remaining == 2
    peek, same = gcra(tat, 0, rate=1, burst=5, cost=0)
    assert peek.allowed and peek.remaining == 2 and same == tat
    result, _ = gcra(tat, 0, rate=1, burst=5, cost=3)
    assert not result.allowed and result.remaining == 2 and result.retry_after_s == 1.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate": 0, "burst": 1},
        {"rate": -1, "burst": 1},
        {"rate": math.inf, "burst": 1},
        {"rate": math.nan, "burst": 1},
        {"rate": True, "burst": 1},
        {"rate": 1, "burst": 0},
        {"rate": 1, "burst": 1.5},
        {"rate": 1, "burst": 2, "cost": 3},  # could never pass
        {"rate": 1, "burst": 2, "cost": -1},
        {"rate": 1e7, "burst": 1},
    ],
)
def test_bad_limits_are_refused(kwargs):
    with pytest.raises(InvalidArgumentError):
        gcra(None, 0, **kwargs)


rates = st.sampled_from([0.2, 1, 2, 3, 7.5, 20, 200, 2000])
arrivals = st.lists(st.tuples(st.integers(0, 2 * S), st.integers(0, 3)), min_size=1, max_size=60)


@settings(max_examples=150)
@given(rate=rates, burst=st.integers(1, 12), steps=arrivals)
def test_never_more_than_burst_plus_rate_t_over_any_window(rate, burst, steps):
    tat, now, allowed = None, 0, []
    for dt, cost in steps:
        now += dt
        cost = min(cost, burst)
        result, tat = gcra(tat, now, rate=rate, burst=burst, cost=cost)
        assert 0 <= result.remaining <= burst
        if result.allowed:
            allowed.append((now, cost))
    for i in range(len(allowed)):
        spent = 0
        for j in range(i, len(allowed)):
            spent += allowed[j][1]
            window_s = (allowed[j][0] - allowed[i][0]) / S
            assert spent <= burst + rate * window_s + 1e-9


@settings(max_examples=150)
@given(rate=rates, burst=st.integers(1, 12), steps=arrivals)
def test_retry_after_is_exact_and_remaining_is_what_passes(rate, burst, steps):
    tat, now = None, 0
    for dt, cost in steps:
        now += dt
        cost = max(1, min(cost, burst))
        result, new = gcra(tat, now, rate=rate, burst=burst, cost=cost)
        assert result.remaining >= 0 and result.retry_after_s >= 0 and result.reset_s >= 0
        if not result.allowed:
            wait = round(result.retry_after_s * S)
            assert wait > 0 and new == max(tat or now, now)
            assert gcra(new, now + wait, rate=rate, burst=burst, cost=cost)[0].allowed
            assert not gcra(new, now + wait - 1, rate=rate, burst=burst, cost=cost)[0].allowed
        else:
            assert result.retry_after_s == 0
            probe = new  # exactly `remaining` more unit requests pass at this instant
            for _ in range(result.remaining):
                ok, probe = gcra(probe, now, rate=rate, burst=burst)
                assert ok.allowed
            assert not gcra(probe, now, rate=rate, burst=burst)[0].allowed
        tat = new


# -- MemoryRateLimiter ----------------------------------------------------------------------


def test_memory_limiter_uses_its_clock():
    clock = Clock()
    limiter = MemoryRateLimiter(clock)
    assert [limiter.hit("k", rate=1, burst=2).allowed for _ in range(3)] == [True, True, False]
    assert limiter.hit("other", rate=1, burst=2).allowed  # keys are independent
    clock.now += S
    assert limiter.hit("k", rate=1, burst=2).allowed
    assert not limiter.hit("k", rate=1, burst=2).allowed


def test_hit_all_is_all_or_nothing():
    limiter = MemoryRateLimiter(Clock())
    assert limiter.hit("small", rate=1, burst=1).allowed
    results = limiter.hit_all([Limit("big", 1, 5), Limit("small", 1, 1)])
    assert [r.allowed for r in results] == [True, False]
    assert results[0].remaining == 5  # reported as not charged
    assert limiter.hit("big", rate=1, burst=5).remaining == 4  # and indeed not charged
    with pytest.raises(InvalidArgumentError):
        limiter.hit_all([])
    with pytest.raises(InvalidArgumentError):
        limiter.hit_all([Limit("a", 1, 1), Limit("a", 1, 1)])
    with pytest.raises(InvalidArgumentError):
        limiter.hit("", rate=1, burst=1)


def test_memory_limiter_is_bounded_and_hashes_long_keys():
    limiter = MemoryRateLimiter(Clock(), max_keys=50)
    for i in range(500):
        limiter.hit(f"k{i}", rate=1, burst=1)
    assert len(limiter) == 50
    long = "x" * 10_000
    assert limiter.hit(long, rate=1, burst=1).allowed
    assert not limiter.hit(long, rate=1, burst=1).allowed
    with pytest.raises(InvalidArgumentError):
        MemoryRateLimiter(max_keys=0)


def test_memory_limiter_is_thread_safe():
    limiter = MemoryRateLimiter(Clock())  # frozen clock: exactly `burst` pass, whoever asks
    allowed = []
    barrier = threading.Barrier(4)

    def worker():
        barrier.wait()
        allowed.append(sum(limiter.hit("k", rate=1, burst=300).allowed for _ in range(200)))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(allowed) == 300


# -- TieredLimiter ------------------------------------------------------------------------------


def alice(tenant: str = "acme") -> Principal:
    return Principal(tenant=tenant, subject="user:alice", method="token")


def test_plans():
    assert DEFAULT_PLANS["free"] == Plan("free", 20, 100, 0.2, 10)
    assert DEFAULT_PLANS["team"].limits("upload") == (2, 50)
    with pytest.raises(InvalidArgumentError):
        DEFAULT_PLANS["team"].limits("delete")
    with pytest.raises(InvalidArgumentError):
        Plan("bad", 0, 1, 1, 1)
    with pytest.raises(InvalidArgumentError, match="tenant's budget"):
        Plan("huge", 200_000, 10, 1, 1)  # the tenant's 2M/s would be out of range
    with pytest.raises(InvalidArgumentError, match="tenant's budget"):
        Plan("huge", 1, 10, 1, 200_000_000)


def test_principal_limit_raises_with_retry_after_and_result():
    clock = Clock()
    sink = MemorySink()
    tiers = TieredLimiter(MemoryRateLimiter(clock), audit=sink, clock=clock)
    for i in range(10):  # free plan: uploads burst 10 at 0.2/s
        result = tiers.check(alice(), "free", "upload")
        assert result.allowed and result.remaining == 9 - i and result.policy == "free-upload"
    with pytest.raises(RateLimitedError) as info:
        tiers.check(alice(), "free", "upload")
    assert info.value.status == 429 and info.value.retry_after == 5.0
    assert info.value.result.policy == "free-upload" and not info.value.result.allowed
    assert "retry after 5.000 s" in str(info.value)
    assert tiers.check(alice(), "free", "read").allowed  # reads have their own budget
    assert tiers.check(alice("globex"), "free", "upload").allowed  # other tenant: own budget
    (event,) = sink.events
    assert (event.kind, event.tenant, event.subject, event.outcome, event.action) == (
        "ratelimit.limited",
        "acme",
        "user:alice",
        "denied",
        "upload",
    )
    for _ in range(5):  # audited at most once per key every 10 s
        with pytest.raises(RateLimitedError):
            tiers.check(alice(), "free", "upload")
    assert len(sink.events) == 1
    clock.now += 10 * S
    for _ in range(11):
        try:
            tiers.check(alice(), "free", "upload")
        except RateLimitedError:
            break
    assert len(sink.events) == 2 and sink.events[1].detail["suppressed"] == "5"
    assert tiers.limited == 7


def test_tenant_budget_is_shared_by_its_principals():
    clock = Clock()
    tiers = TieredLimiter(MemoryRateLimiter(clock), clock=clock)
    burst = DEFAULT_PLANS["free"].upload_burst
    passed = 0
    for n in range(TENANT_FACTOR + 5):
        who = Principal(tenant="acme", subject=f"user:u{n}", method="session")
        for _ in range(burst):
            try:
                tiers.check(who, "free", "upload")
                passed += 1
            except RateLimitedError as exc:
                assert exc.result.policy == "free-upload-tenant"
                assert "(free-upload-tenant: 100 requests, 2/s)" in str(exc)
    assert passed == burst * TENANT_FACTOR
    other = Principal(tenant="globex", subject="user:u0", method="session")
    assert tiers.check(other, "free", "upload").allowed


def test_stricter_result_is_returned():
    tiers = TieredLimiter(MemoryRateLimiter(Clock()))
    result = tiers.check(alice(), "team")
    assert result.policy == "team-read" and result.remaining == 999  # not the tenant's 9999


def test_anonymous_budget_split_by_client():
    tiers = TieredLimiter(MemoryRateLimiter(Clock()), {"tiny": Plan("tiny", 1, 1, 1, 1)})
    anon = Principal.anonymous("acme")
    assert tiers.check(anon, "tiny", client="192.0.2.1").allowed
    assert tiers.check(anon, "tiny", client="192.0.2.2").allowed
    with pytest.raises(RateLimitedError):
        tiers.check(anon, "tiny", client="192.0.2.1")
    assert tiers.check(alice(), "tiny", client="192.0.2.1").allowed  # keyed by subject


def test_unknown_plan_or_kind():
    tiers = TieredLimiter(MemoryRateLimiter(Clock()))
    with pytest.raises(InvalidArgumentError, match="unknown rate-limit plan"):
        tiers.check(alice(), "platinum")
    with pytest.raises(InvalidArgumentError, match="unknown request kind"):
        tiers.check(alice(), "free", "delete")
    with pytest.raises(InvalidArgumentError):
        TieredLimiter(MemoryRateLimiter(), {"x": (1, 2)})  # type: ignore[dict-item]


# -- headers ------------------------------------------------------------------------------------

SF_STRING = r'"(?:[\x20-\x21\x23-\x5b\x5d-\x7e]|\\["\\])*"'
POLICY = re.compile(rf"^{SF_STRING};q=(\d{{1,15}})(?:;w=(\d{{1,15}}))?$")
LIMIT = re.compile(rf"^{SF_STRING};r=(\d{{1,15}});t=(\d{{1,15}})$")


def test_headers_of_an_allowed_and_a_limited_result():
    ok = LimitResult(True, 1000, 999, 0.005, 0.0, "team-read", window_s=5.0)
    assert rate_limit_headers(ok) == [
        ("RateLimit-Policy", '"team-read";q=1000;w=5'),
        ("RateLimit", '"team-read";r=999;t=1'),
    ]
    limited = LimitResult(False, 10, 0, 50.0, 4.2, "free-upload", window_s=50.0)
    assert rate_limit_headers(limited) == [
        ("RateLimit-Policy", '"free-upload";q=10;w=50'),
        ("RateLimit", '"free-upload";r=0;t=50'),
        ("Retry-After", "5"),
    ]
    degraded = LimitResult(True, 10, 10, 0.0, 0.0, "free-read", window_s=5.0, degraded=True)
    assert rate_limit_headers(degraded) == [("RateLimit-Policy", '"free-read";q=10;w=5')]


@given(
    allowed=st.booleans(),
    limit=st.integers(1, 10**9),
    remaining=st.integers(0, 10**9),
    reset=st.floats(0, 1e6),
    retry=st.floats(0, 1e6),
    window=st.floats(0, 1e6),
    policy=st.text(max_size=30),
)
def test_headers_are_structured_fields(allowed, limit, remaining, reset, retry, window, policy):
    result = LimitResult(allowed, limit, remaining, reset, retry, policy, window_s=window)
    headers = dict(rate_limit_headers(result))
    m = POLICY.match(headers["RateLimit-Policy"])
    assert m and int(m.group(1)) == limit
    assert (m.group(2) is None) == (window == 0)
    m = LIMIT.match(headers["RateLimit"])
    assert m and int(m.group(1)) == remaining and int(m.group(2)) >= reset
    if allowed:
        assert "Retry-After" not in headers
    else:
        wait = int(headers["Retry-After"])
        assert wait >= 1 and wait >= retry  # never tells a client to come back too early
