"""Connection coalescing (RFC 9113 9.1.1, RFC 9114 3.3) and request coalescing, real server."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from _servers import RESOLVE, flags, url
from registry_core.errors import TransportError
from registry_core.transport import Transport

pytestmark = pytest.mark.network


def run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize("http3", [False, True], ids=["h2", "h3"])
def test_names_in_certificate_share_one_connection(pki, server, http3):
    async def main():
        async with Transport(verify=pki[0], resolve=RESOLVE, http3=http3, flags=flags()) as t:
            a = await t.get(url(server, "/small.txt", "registry.test"))
            b = await t.get(url(server, "/small.txt", "mirror.test"))
            c = await t.get(url(server, "/small.txt", "127.0.0.1"))
            return a, b, c, t.connections(), t.stats

    a, b, c, conns, stats = run(main())
    assert a.status == b.status == c.status == 200
    assert a.connection_id == b.connection_id == c.connection_id
    assert len(conns) == 1 and stats["coalesced_requests"] == 2
    assert conns[0].protocol == ("h3" if http3 else "h2")
    assert "mirror.test" in conns[0].cert_names


def test_name_outside_certificate_gets_its_own_connection_and_fails(pki, server):
    async def main():
        async with Transport(verify=pki[0], resolve=RESOLVE, http3=False, flags=flags()) as t:
            await t.get(url(server, "/small.txt", "registry.test"))
            try:
                await t.get(url(server, "/small.txt", "other.test"))
            finally:
                stats = dict(t.stats)
            return stats

    with pytest.raises(TransportError, match="verification failed"):
        run(main())


def test_name_outside_certificate_never_reuses_the_connection(pki, server):
    """Even with verification off, a name the certificate lacks is not coalesced."""

    async def main():
        async with Transport(verify=pki[0], resolve=RESOLVE, http3=False, flags=flags()) as t:
            await t.get(url(server, "/small.txt", "registry.test"))
            rec = t.connections()[0]
            return t.pool.choose(("https", "other.test", server.port), ["127.0.0.1"], ("h2",)), rec

    chosen, rec = run(main())
    assert chosen is None and "other.test" not in rec.cert_names


def test_coalesce_flag_off_opens_one_connection_per_name(pki, server):
    async def main():
        async with Transport(
            verify=pki[0], resolve=RESOLVE, http3=False, flags=flags(CONNECTION_COALESCE=False)
        ) as t:
            await t.get(url(server, "/small.txt", "registry.test"))
            await t.get(url(server, "/small.txt", "mirror.test"))
            return t.connections(), t.stats

    conns, stats = run(main())
    assert len(conns) == 2 and stats["coalesced_requests"] == 0


def test_different_resolved_address_is_not_coalesced(pki, server):
    # mirror.test resolving to 127.0.0.2 (also loopback on Linux) must get its own connection.
    resolve = {**RESOLVE, "mirror.test": "127.0.0.2"}

    async def main():
        async with Transport(verify=pki[0], resolve=resolve, http3=False, flags=flags()) as t:
            await t.get(url(server, "/small.txt", "registry.test"))
            # nothing listens on 127.0.0.2 (the server binds 127.0.0.1 only)
            with contextlib.suppress(TransportError):
                await t.get(url(server, "/small.txt", "mirror.test"))
            return t.stats

    stats = run(main())
    assert stats["coalesced_requests"] == 0


def test_421_retries_on_a_dedicated_connection(pki, server):
    """strict.test is in the certificate, but the server answers 421 on a shared connection."""

    async def main():
        async with Transport(verify=pki[0], resolve=RESOLVE, http3=False, flags=flags()) as t:
            await t.get(url(server, "/small.txt", "registry.test"))
            r = await t.get(url(server, "/small.txt", "strict.test"))
            again = await t.get(url(server, "/small.txt?2", "strict.test"))
            return r, again, t.connections(), t.stats

    r, again, conns, stats = run(main())
    assert r.status == 200 and again.status == 200
    assert stats["misdirected"] == 1  # the second request goes straight to the dedicated one
    assert len(conns) == 2 and r.connection_id == again.connection_id


@pytest.mark.parametrize("http3", [False, True], ids=["h2", "h3"])
def test_concurrent_identical_gets_share_one_request(pki, server, artifacts, http3):
    path = f"/coalesce/item{1 if http3 else 0}.txt"
    before = server.registry.hits[path]

    async def main():
        async with Transport(verify=pki[0], resolve=RESOLVE, http3=http3, flags=flags()) as t:
            rs = await asyncio.gather(*(t.get(url(server, path)) for _ in range(25)))
            return rs, t.stats

    rs, stats = run(main())
    assert all(r.content == artifacts[1][path] for r in rs)
    assert server.registry.hits[path] - before == 1
    assert stats["requests_coalesced"] == 24


def test_request_coalescing_can_be_turned_off(pki, server):
    path = "/coalesce/item2.txt"
    before = server.registry.hits[path]

    async def main():
        async with Transport(
            verify=pki[0], resolve=RESOLVE, http3=False, flags=flags(), coalesce_requests=False
        ) as t:
            await asyncio.gather(*(t.get(url(server, path)) for _ in range(5)))

    run(main())
    assert server.registry.hits[path] - before == 5


def test_many_in_flight_over_one_connection(pki, server, artifacts):
    async def main():
        async with Transport(verify=pki[0], resolve=RESOLVE, http3=False, flags=flags()) as t:
            paths = [f"/coalesce/item{i}.txt" for i in range(3, 35)]
            rs = await asyncio.gather(*(t.get(url(server, p)) for p in paths))
            return paths, rs, t.connections()

    paths, rs, conns = run(main())
    assert [r.content for r in rs] == [artifacts[1][p] for p in paths]
    assert len(conns) == 1
