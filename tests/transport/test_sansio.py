"""Sans-IO transport pieces: Alt-Svc cache, coalescing pool, retry policy, single-flight."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry_core.transport import (
    AltService,
    AltSvcCache,
    CoalescingPool,
    RetryPolicy,
    SingleFlight,
    cert_covers,
    parse_alt_svc,
)

ORIGIN = ("https", "registry.test", 443)


# -- Alt-Svc -----------------------------------------------------------------------------------


def test_parse_alt_svc_rfc7838_examples():
    assert parse_alt_svc('h2="new.example.org:80"') == [AltService("h2", "new.example.org", 80)]
    assert parse_alt_svc('h3=":443"; ma=3600, h3-29=":8443"; persist=1') == [
        AltService("h3", "", 443, 3600.0),
        AltService("h3-29", "", 8443, 86400.0, True),
    ]
    assert parse_alt_svc("clear") is None
    assert parse_alt_svc('w%3Dx%3Ay="a:1"')[0].protocol == "w=x:y"


@given(st.text(max_size=200))
def test_parse_alt_svc_never_raises(value):
    result = parse_alt_svc(value)
    assert result is None or all(0 < a.port < 65536 for a in result)


def test_malformed_members_are_skipped():
    assert parse_alt_svc('h3=":99999", h3=nope, h3=":443"') == [AltService("h3", "", 443)]


def test_cache_expiry_clear_and_broken_backoff():
    c = AltSvcCache(broken_base=10)
    c.update(ORIGIN, 'h3=":443"; ma=100', now=0)
    assert c.lookup(ORIGIN, 50).port == 443
    assert c.lookup(ORIGIN, 100) is None  # expired
    c.update(ORIGIN, 'h2=":443", h3=":8443"', now=200)
    assert c.lookup(ORIGIN, 201).port == 8443
    assert c.mark_broken(ORIGIN, 300) == 310
    assert c.lookup(ORIGIN, 305) is None and c.lookup(ORIGIN, 311) is not None
    assert c.mark_broken(ORIGIN, 311) == 331  # doubles
    c.mark_working(ORIGIN)
    assert c.lookup(ORIGIN, 312) is not None
    c.update(ORIGIN, "clear", now=313)
    assert c.lookup(ORIGIN, 314) is None


# -- coalescing pool ---------------------------------------------------------------------------


def test_cert_covers():
    names = ("registry.test", "*.cdn.test", "127.0.0.1")
    assert cert_covers(names, "registry.test") and cert_covers(names, "REGISTRY.test.")
    assert cert_covers(names, "a.cdn.test") and not cert_covers(names, "a.b.cdn.test")
    assert not cert_covers(names, "cdn.test") and cert_covers(names, "127.0.0.1")
    assert not cert_covers(names, "127.0.0.2") and not cert_covers(("*.test",), "x.test")


def test_pool_coalesces_only_when_address_and_certificate_agree():
    p = CoalescingPool()
    rec = p.add(ORIGIN, "h2", ("10.0.0.1", 443), ("registry.test", "mirror.test"))
    m = ("https", "mirror.test", 443)
    assert p.choose(m, ["10.0.0.1"], ("h2",)) is rec
    assert p.choose(m, ["10.0.0.2"], ("h2",)) is None  # resolves elsewhere
    assert p.choose(("https", "other.test", 443), ["10.0.0.1"], ("h2",)) is None  # not in cert
    assert p.choose(("https", "mirror.test", 8443), ["10.0.0.1"], ("h2",)) is None  # port
    assert p.choose(m, ["10.0.0.1"], ("h3",)) is None  # protocol
    assert p.choose(m, ["10.0.0.1"], ("h2",), dedicated=True) is None
    p.misdirected(rec.conn_id, m)
    assert p.choose(m, ["10.0.0.1"], ("h2",)) is None
    p.coalesce = False
    assert p.choose(ORIGIN, ["10.0.0.1"], ("h2",)) is rec


def test_pool_respects_stream_limits_and_http11():
    p = CoalescingPool()
    a = p.add(ORIGIN, "h2", ("10.0.0.1", 443), ("registry.test",), max_streams=2)
    b = p.add(ORIGIN, "http/1.1", ("10.0.0.1", 443), ("registry.test",))
    for _ in range(2):
        p.acquire(a.conn_id)
    assert p.choose(ORIGIN, ["10.0.0.1"], ("h2", "http/1.1")) is b
    p.acquire(b.conn_id)
    assert p.choose(ORIGIN, ["10.0.0.1"], ("h2", "http/1.1")) is None
    p.release(a.conn_id)
    assert p.choose(ORIGIN, ["10.0.0.1"], ("h2",)) is a
    p.mark_unusable(a.conn_id)
    assert p.choose(ORIGIN, ["10.0.0.1"], ("h2",)) is None
    # http/1.1 connections are never shared across names
    p.release(b.conn_id)
    assert p.choose(("https", "mirror.test", 443), ["10.0.0.1"], ("http/1.1",)) is None


def test_pool_prefers_least_loaded():
    p = CoalescingPool()
    a = p.add(ORIGIN, "h2", ("10.0.0.1", 443), ("registry.test",))
    b = p.add(ORIGIN, "h2", ("10.0.0.1", 443), ("registry.test",))
    p.acquire(a.conn_id)
    assert p.choose(ORIGIN, ["10.0.0.1"], ("h2",)) is b


# -- retry policy ------------------------------------------------------------------------------


def test_retry_budgets_and_methods():
    r = RetryPolicy(max_attempts=3, max_replays=2)
    assert r.should_retry(1, "GET", unprocessed=False)
    assert not r.should_retry(3, "GET", unprocessed=False)
    assert not r.should_retry(1, "POST", unprocessed=False)
    assert r.should_retry(1, "POST", unprocessed=True, replays=2)
    assert not r.should_retry(1, "POST", unprocessed=True, replays=3)
    assert r.should_retry_status(1, "GET", 503) and not r.should_retry_status(1, "POST", 503)
    assert not r.should_retry_status(1, "GET", 500)


@given(st.integers(1, 30), st.floats(0, 0.999999))
def test_backoff_is_bounded_full_jitter(attempt, u):
    r = RetryPolicy(base=0.1, cap=2.0, rng=lambda: u)
    d = r.delay(attempt)
    assert 0 <= d <= min(2.0, 0.1 * 2 ** (attempt - 1))
    assert d == pytest.approx(u * min(2.0, 0.1 * 2 ** (attempt - 1)))


def test_first_replay_is_immediate_and_retry_after_is_honoured():
    r = RetryPolicy(base=0.1, cap=5, rng=lambda: 0.0)
    assert r.delay(1, unprocessed=True) == 0.0
    assert r.delay(2, retry_after=3.0) == 3.0
    assert r.delay(2, retry_after=60.0) == 5  # capped


# -- single flight -----------------------------------------------------------------------------


def test_single_flight_shares_result_and_exception():
    async def main():
        sf: SingleFlight[int] = SingleFlight()
        calls = 0
        gate = asyncio.Event()

        async def work():
            nonlocal calls
            calls += 1
            await gate.wait()
            return calls

        async def when_joined(shared: int) -> None:
            while sf.shared < shared:  # yields to the loop; no timing involved
                await asyncio.sleep(0)
            gate.set()

        results, _ = await asyncio.gather(
            asyncio.gather(*(sf.do("k", work) for _ in range(10))), when_joined(9)
        )
        assert results == [1] * 10 and calls == 1 and sf.shared == 9 and len(sf) == 0
        assert await sf.do("k", work) == 2  # a later call runs again

        gate.clear()

        async def boom():
            await gate.wait()
            raise ValueError("x")

        outs, _ = await asyncio.gather(
            asyncio.gather(*(sf.do("e", boom) for _ in range(3)), return_exceptions=True),
            when_joined(11),
        )
        assert all(isinstance(o, ValueError) for o in outs)

    asyncio.run(main())


def test_single_flight_cancel_one_waiter_keeps_the_call():
    async def main():
        sf: SingleFlight[str] = SingleFlight()
        gate = asyncio.Event()

        async def work():
            await gate.wait()
            return "done"

        a = asyncio.ensure_future(sf.do("k", work))
        b = asyncio.ensure_future(sf.do("k", work))
        await asyncio.sleep(0)
        a.cancel()
        await asyncio.sleep(0)
        gate.set()
        assert await b == "done"
        with pytest.raises(asyncio.CancelledError):
            await a

    asyncio.run(main())


def test_alt_svc_cache_is_bounded():
    """Origins are remembered in a bounded LRU: a client visiting many hosts does not grow."""
    cache = AltSvcCache(max_entries=4)
    for i in range(100):
        origin = ("https", f"h{i}.test", 443)
        cache.update(origin, 'h3=":443"', 0.0)
        cache.mark_broken(origin, 0.0)
    assert len(cache._entries) == 4 and len(cache._broken) == 4
    assert cache.lookup(("https", "h99.test", 443), 1e9) is None  # expired
    assert cache.is_broken(("https", "h98.test", 443), 1.0)
