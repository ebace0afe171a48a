"""``first_downloads="auto"``: an EXPANDED first download only from origins measured slow.

The decision is sans-IO (:meth:`FetchPolicy.wants_first_download` from a number); the number is
a per-origin EWMA (:class:`ThroughputEstimate`) of plain ``200`` bodies of at least 256 KiB.
Requests go to a real loopback hypercorn server (TLS, the trustme CA) that records each
request's ``Delta-Engines`` and answers a plain 200; every decision is made from observations
fed through :meth:`Transport.observe_throughput`, never from timing.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from _servers import RESOLVE, flags
from registry_core.errors import InvalidArgumentError
from registry_core.server import start_server
from registry_core.transport import ThroughputEstimate, Transport
from registry_core.transport._policy import FetchPolicy
from registry_core.transport._throughput import (
    DEFAULT_FIRST_DOWNLOAD_BELOW,
    MIN_SAMPLE_BYTES,
    first_download_mode,
    origin_of,
)

ENGINES = frozenset({"zlib", "miniz", "recon", "zstd-prefix"})
SLOW = (1 << 20, 1.0)  # 1 MiB/s: well under the default 4 MB/s
FAST = (1 << 30, 1.0)  # 1 GiB/s


def run(coro):
    return asyncio.run(coro)


def body_of(size: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])


def sf_digest(data: bytes) -> str:
    return "sha-256=:" + base64.b64encode(hashlib.sha256(data).digest()).decode() + ":"


class PlainApp:
    """``/<size>/<name>``: ``size`` deterministic bytes, a plain verified 200 to every request
    (also to one naming ``expanded``); ``seen`` records (host, path, Delta-Engines)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.seen.append((headers.get("host", ""), scope["path"], headers.get("delta-engines", "")))
        body = body_of(int(scope["path"].strip("/").split("/")[0]))
        hdrs = [
            ("etag", f'"{hashlib.sha256(body).hexdigest()}"'),
            ("repr-digest", sf_digest(body)),
            ("content-digest", sf_digest(body)),
            ("content-type", "application/octet-stream"),
            ("content-length", str(len(body))),
        ]
        enc = [(k.encode(), v.encode()) for k, v in hdrs]
        await send({"type": "http.response.start", "status": 200, "headers": enc})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def plain(pki):
    app = PlainApp()
    handle = start_server(app, certfile=pki[1], keyfile=pki[2], quic=False)
    handle.app = app
    yield handle
    handle.stop()


def client(pki, **kw):
    kw.setdefault("flags", flags())
    return Transport(verify=pki[0], resolve=RESOLVE, http3=False, **kw)


def url(handle, name, size=1000, host="registry.test"):
    return f"https://{host}:{handle.port}/{size}/{name}"


def fetch_all(pki, handle, urls, seed=(), **kw):
    """Fetch ``urls`` in order on one Transport after feeding it ``seed`` observations
    ((url, bytes, seconds)); returns the Delta-Engines each request sent, and the Transport."""
    handle.app.seen.clear()

    async def main():
        async with client(pki, **kw) as t:
            for where, nbytes, seconds in seed:
                assert t.observe_throughput(where, nbytes, seconds)
            for u in urls:
                got = await t.fetch(u)
                assert got == body_of(int(u.split("/")[3]))
            return t

    t = run(main())
    return [engines for _host, _path, engines in handle.app.seen], t


def asks_expanded(engines: str) -> bool:
    return "expanded" in [e.strip() for e in engines.split(",")]


# -- the wire: what a first download asks for ----------------------------------------------------


def test_auto_is_the_default_and_asks_plainly_before_anything_is_measured(pki, plain):
    sent, t = fetch_all(pki, plain, [url(plain, "a.whl")])
    assert t.first_downloads == "auto"
    assert len(sent) == 1 and not asks_expanded(sent[0])


def test_auto_asks_for_expanded_from_an_origin_measured_slow(pki, plain):
    u = url(plain, "b.whl")
    sent, _ = fetch_all(pki, plain, [u], seed=[(u, *SLOW)])
    assert len(sent) == 1 and asks_expanded(sent[0]), sent


def test_auto_stays_plain_from_an_origin_measured_fast(pki, plain):
    u = url(plain, "c.whl")
    sent, _ = fetch_all(pki, plain, [u], seed=[(u, *FAST)])
    assert len(sent) == 1 and not asks_expanded(sent[0]), sent


def test_the_estimate_is_per_origin(pki, plain):
    """Slow on mirror.test says nothing about registry.test (same server, another host)."""
    here, there = url(plain, "d.whl"), url(plain, "d.whl", host="mirror.test")
    sent, _ = fetch_all(pki, plain, [here, there], seed=[(there, *SLOW)])
    assert [asks_expanded(e) for e in sent] == [False, True], sent


def test_first_download_below_is_the_threshold(pki, plain):
    u = url(plain, "e.whl")
    sent, _ = fetch_all(pki, plain, [u], seed=[(u, *FAST)], first_download_below=2 << 30)
    assert asks_expanded(sent[0])  # 1 GiB/s is "slow" under a 2 GiB/s threshold


@pytest.mark.parametrize("mode", ["always", True])
def test_always_asks_without_any_estimate(pki, plain, mode):
    sent, t = fetch_all(pki, plain, [url(plain, "f.whl")], first_downloads=mode)
    assert t.first_downloads == "always" and asks_expanded(sent[0])


@pytest.mark.parametrize("mode", ["never", False])
def test_never_asks_even_when_slow(pki, plain, mode):
    u = url(plain, "g.whl")
    sent, t = fetch_all(pki, plain, [u], seed=[(u, *SLOW)], first_downloads=mode)
    assert t.first_downloads == "never" and not asks_expanded(sent[0])


def test_plain_bodies_feed_the_estimate_small_ones_do_not(pki, plain):
    """A plain 200 of >= 256 KiB is a sample of its origin; a small one is not (its time is
    latency). Only the count is checked: the rate itself is whatever loopback did."""
    small, big = url(plain, "s.whl"), url(plain, "big.whl", size=MIN_SAMPLE_BYTES + 1)
    _, t = fetch_all(pki, plain, [small])
    assert t.throughput.samples(origin_of(small)) == 0
    assert t.throughput.get(origin_of(small)) is None
    _, t = fetch_all(pki, plain, [big, big])
    assert t.throughput.samples(origin_of(big)) == 2
    assert t.throughput.get(origin_of(big)) > 0
    assert t.throughput.get(origin_of(url(plain, "x", host="mirror.test"))) is None


def test_bad_options_are_refused():
    for bad in ("sometimes", None, 1, ""):
        with pytest.raises(InvalidArgumentError):
            Transport(first_downloads=bad)
    with pytest.raises(InvalidArgumentError):
        Transport(first_download_below=-1)
    with pytest.raises(InvalidArgumentError):
        FetchPolicy(delta=True, dcz=False, engines=ENGINES, first_downloads="maybe")


# -- sans-IO: the policy ---------------------------------------------------------------------


def test_policy_auto_decides_from_the_number_it_is_given():
    p = FetchPolicy(delta=True, dcz=False, engines=ENGINES)
    assert p.first_downloads == "auto" and p.first_download_below == DEFAULT_FIRST_DOWNLOAD_BELOW
    assert not p.plan(None).first  # nothing measured: plain, which measures
    slow = p.plan(None, throughput=DEFAULT_FIRST_DOWNLOAD_BELOW / 2)
    assert slow.first and asks_expanded(slow.headers["delta-engines"])
    assert not p.plan(None, throughput=DEFAULT_FIRST_DOWNLOAD_BELOW).first  # strictly below
    assert not p.plan(None, throughput=DEFAULT_FIRST_DOWNLOAD_BELOW * 10).first
    held = p.plan(b"old", throughput=1.0)  # a held version never names expanded
    assert not held.first and not asks_expanded(held.headers["delta-engines"])


def test_policy_always_never_and_an_incapable_platform():
    always = FetchPolicy(delta=True, dcz=False, engines=ENGINES, first_downloads="always")
    assert always.plan(None).first and always.plan(None, throughput=1e12).first
    never = FetchPolicy(delta=True, dcz=False, engines=ENGINES, first_downloads="never")
    assert not never.plan(None, throughput=1.0).first
    for incapable in (
        FetchPolicy(delta=False, dcz=False, engines=ENGINES, first_downloads="always"),
        FetchPolicy(delta=True, dcz=False, engines=frozenset({"zlib"}), first_downloads="auto"),
    ):
        assert incapable.first_downloads == "never"
        assert not incapable.plan(None, throughput=1.0).first


def test_first_download_mode():
    assert first_download_mode(True) == "always" and first_download_mode(False) == "never"
    assert [first_download_mode(m) for m in ("auto", "ALWAYS", " never ")] == [
        "auto",
        "always",
        "never",
    ]


# -- sans-IO: the estimate -------------------------------------------------------------------


def test_origin_of_spells_out_the_port_and_lowercases():
    assert origin_of("https://Registry.TEST/x.whl") == "https://registry.test:443"
    assert origin_of("https://registry.test:443/y") == "https://registry.test:443"
    assert origin_of("http://h.test/z") == "http://h.test:80"
    assert origin_of("https://h.test:8443/z") != origin_of("https://h.test/z")


def test_ewma_small_bodies_and_bad_durations():
    est = ThroughputEstimate(alpha=0.5)
    o = "https://a.test:443"
    assert est.get(o) is None and est.samples(o) == 0
    assert not est.observe(o, MIN_SAMPLE_BYTES - 1, 0.001)  # latency, not bandwidth
    for seconds in (0.0, -1.0, float("nan"), float("inf")):
        assert not est.observe(o, 1 << 20, seconds)
    assert est.get(o) is None
    assert est.observe(o, 1_000_000, 1.0) and est.get(o) == 1_000_000
    assert est.observe(o, 3_000_000, 1.0) and est.get(o) == 2_000_000  # halfway (alpha 0.5)
    assert est.samples(o) == 2


def test_the_estimate_is_bounded_least_recently_observed_first():
    est = ThroughputEstimate(max_origins=3)
    for i in range(3):
        est.observe(f"https://o{i}.test:443", 1 << 20, 1.0)
    est.observe("https://o0.test:443", 1 << 20, 1.0)  # o0 is now the most recent
    est.observe("https://o3.test:443", 1 << 20, 1.0)
    assert len(est) == 3
    assert est.get("https://o1.test:443") is None  # the least recently observed went
    assert all(est.get(f"https://o{i}.test:443") is not None for i in (0, 2, 3))
    with pytest.raises(InvalidArgumentError):
        ThroughputEstimate(max_origins=0)
    with pytest.raises(InvalidArgumentError):
        ThroughputEstimate(alpha=0)


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=1 << 32),
            st.floats(min_value=1e-6, max_value=1e4, allow_nan=False),
        ),
        max_size=50,
    )
)
def test_the_ewma_stays_within_the_samples(samples):
    """Whatever is fed, the estimate lies between the smallest and largest sampled rate."""
    est = ThroughputEstimate()
    rates = [n / s for n, s in samples if n >= MIN_SAMPLE_BYTES]
    for n, s in samples:
        est.observe("o", n, s)
    got = est.get("o")
    if not rates:
        assert got is None
    else:
        assert got is not None and min(rates) * (1 - 1e-9) <= got <= max(rates) * (1 + 1e-9)
        assert est.samples("o") == len(rates)


def test_proxy_and_cli_take_the_modes(tmp_path):
    from registry_core.cli._proxy import add_proxy_parser
    from registry_core.proxy import ProxyApp

    assert ProxyApp("https://x.test", tmp_path / "c").first_downloads == "auto"
    assert ProxyApp("https://x.test", tmp_path / "c", first_downloads=False).first_downloads == (
        "never"
    )
    with pytest.raises(InvalidArgumentError):
        ProxyApp("https://x.test", tmp_path / "c", first_downloads="often")
    parser = argparse.ArgumentParser()
    add_proxy_parser(parser.add_subparsers())
    base = ["proxy", "--upstream", "https://x.test", "--cache-dir", "c"]
    assert parser.parse_args(base).first_downloads == "auto"
    assert parser.parse_args([*base, "--first-downloads", "always"]).first_downloads == "always"
    assert parser.parse_args([*base, "--no-first-downloads"]).first_downloads == "never"
