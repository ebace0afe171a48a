"""Transport against the real server: HTTP/2, HTTP/3, Alt-Svc upgrade and UDP-blocked fallback."""

from __future__ import annotations

import asyncio

import pytest

from _servers import RESOLVE, flags, url
from registry_core.errors import TransportError
from registry_core.transport import SyncTransport, Transport

pytestmark = pytest.mark.network


def run(coro):
    return asyncio.run(coro)


def make(pki, **kw):
    kw.setdefault("flags", flags())
    kw.setdefault("resolve", RESOLVE)
    return Transport(verify=pki[0], **kw)


def test_http2_get(pki, server, artifacts):
    async def main():
        async with make(pki, http3=False) as t:
            r = await t.get(url(server, "/small.txt"))
            return r

    r = run(main())
    assert r.status == 200 and r.http_version == "HTTP/2"
    assert r.content == artifacts[1]["/small.txt"]


def test_http2_decodes_negotiated_coding(pki, server, artifacts):
    async def main():
        async with make(pki, http3=False) as t:
            return await t.get(url(server, "/simple/pkg/index.json"))

    r = run(main())
    assert r.headers["content-encoding"] in ("zstd", "br", "gzip")
    assert r.content == artifacts[1]["/simple/pkg/index.json"]
    assert len(r.raw_content) < len(r.content) // 4


def test_http3_required(pki, server, artifacts):
    async def main():
        async with make(pki, http3=True) as t:
            rs = [await t.get(url(server, p)) for p in ("/small.txt", "/blob/1mib.bin")]
            return rs, t.stats

    (small, big), stats = run(main())
    assert small.http_version == big.http_version == "HTTP/3"
    assert small.content == artifacts[1]["/small.txt"]
    assert big.content == artifacts[1]["/blob/1mib.bin"]
    assert stats["connections_h3"] == 1 and stats["connections_h2"] == 0


def test_alt_svc_upgrades_to_http3(pki, server):
    async def main():
        async with make(pki) as t:
            first = await t.get(url(server, "/small.txt"))
            second = await t.get(url(server, "/small.txt", "registry.test") + "?2")
            return first, second, t.stats

    first, second, stats = run(main())
    assert first.http_version == "HTTP/2"  # nothing known yet about the origin
    assert second.http_version == "HTTP/3"  # learnt from Alt-Svc
    assert stats["connections_h2"] == 1 and stats["connections_h3"] == 1


def test_quic_flag_off_never_uses_http3(pki, server):
    async def main():
        async with make(pki, flags=flags(QUIC_TRANSPORT=False)) as t:
            return [
                (await t.get(url(server, f"/small.txt?{i}"))).http_version for i in range(3)
            ], t.stats

    versions, stats = run(main())
    assert versions == ["HTTP/2"] * 3 and stats["connections_h3"] == 0


def test_fallback_to_http2_when_udp_is_closed(pki, tcp_only_server, monkeypatch):
    """The HTTP/3 attempt is bounded by h3_connect_timeout (checked on the connect call, not
    with a clock), falls back within the same attempt on the open HTTP/2 connection, and the
    broken alternative is remembered."""
    from registry_core.transport import _h3

    real_connect = _h3.H3Connection.connect.__func__
    timeouts = []

    async def connect(cls, *args, **kw):
        timeouts.append(kw.get("timeout"))
        return await real_connect(cls, *args, **kw)

    monkeypatch.setattr(_h3.H3Connection, "connect", classmethod(connect))

    async def main():
        async with make(pki, h3_connect_timeout=0.25) as t:
            first = await t.get(url(tcp_only_server, "/small.txt"))  # learns the false Alt-Svc
            r = await t.get(url(tcp_only_server, "/small.txt?fallback"))
            r3 = await t.get(url(tcp_only_server, "/small.txt?again"))
            return first, r, r3, t.stats

    first, r, r3, stats = run(main())
    assert r.status == 200 and r.http_version == "HTTP/2"
    assert timeouts == [0.25]  # one HTTP/3 try, bounded by h3_connect_timeout
    assert stats["h3_fallbacks"] == 1 and stats["retries"] == 0 and stats["replays"] == 0
    assert r.connection_id == first.connection_id  # same attempt, same HTTP/2 connection
    assert r3.http_version == "HTTP/2" and stats["connections_h3"] == 0


def test_http3_required_but_udp_closed_raises(pki, tcp_only_server):
    async def main():
        async with make(pki, http3=True, connect_timeout=0.3, retry=None) as t:
            await t.get(url(tcp_only_server, "/small.txt"))

    with pytest.raises(TransportError, match="HTTP/3"):
        run(main())


def test_sync_wrapper(pki, server, artifacts):
    with SyncTransport(verify=pki[0], resolve=RESOLVE, flags=flags(), http3=False) as t:
        r = t.get(url(server, "/small.txt"))
        assert r.content == artifacts[1]["/small.txt"]
        assert t.fetch(url(server, "/blob/1mib.bin")) == artifacts[1]["/blob/1mib.bin"]


def test_wrong_ca_fails_verification(server, tmp_path):
    import trustme

    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))

    async def main():
        async with Transport(verify=str(other), resolve=RESOLVE, http3=False) as t:
            await t.get(url(server, "/small.txt"))

    with pytest.raises(TransportError, match="verif"):
        run(main())


def test_only_https(pki):
    async def main():
        async with make(pki) as t:
            await t.get("http://registry.test/x")

    with pytest.raises(ValueError):
        run(main())


def test_http11_only_server(pki, artifacts):
    """ALPN falls back to HTTP/1.1: one request per connection at a time, no coalescing."""
    from _servers import ON
    from registry_core.server import RegistryApp, start_server

    _, cert, key = pki
    app = RegistryApp(artifacts[0], flags=flags())
    with start_server(app, certfile=cert, keyfile=key, quic=False, http2=False) as h1:

        async def main():
            async with make(pki, http3=False, flags=flags(**ON)) as t:
                rs = await asyncio.gather(
                    *(t.get(url(h1, f"/coalesce/item{i}.txt")) for i in range(4))
                )
                other = await t.get(url(h1, "/small.txt", "mirror.test"))
                return rs, other, t.connections()

        rs, other, conns = run(main())
    assert {r.http_version for r in rs} == {"HTTP/1.1"}
    assert [r.content for r in rs] == [artifacts[1][f"/coalesce/item{i}.txt"] for i in range(4)]
    # no multiplexing: concurrent requests needed several connections (some reused in turn)
    assert 2 <= len({r.connection_id for r in rs}) <= 4
    assert other.connection_id not in {r.connection_id for r in rs}
    assert {c.protocol for c in conns} == {"http/1.1"}
