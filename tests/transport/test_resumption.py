"""QUIC session resumption and 0-RTT against the real server, and the HTTP/2 window setting."""

from __future__ import annotations

import asyncio

import pytest

from _servers import RESOLVE, flags, url
from registry_core.transport import Transport

pytestmark = pytest.mark.network


def run(coro):
    return asyncio.run(coro)


class Tickets(dict):
    """A session-ticket store that says when a ticket for a name arrives (aioquic hands the
    ticket over after the handshake, in a later packet): tests wait on that, not on a clock."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived: dict = {}

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        self.arrived.setdefault(key, asyncio.Event()).set()

    async def wait(self, name: str) -> None:
        event = self.arrived.setdefault(name, asyncio.Event())
        await asyncio.wait_for(event.wait(), 10)  # an upper bound for a hang, not a timing


def test_second_connection_resumes_with_0rtt_and_still_coalesces(pki, server, artifacts):
    tickets = Tickets()

    async def main():
        async with Transport(
            verify=pki[0], resolve=RESOLVE, http3=True, flags=flags(), session_tickets=tickets
        ) as t:
            await t.get(url(server, "/small.txt"))
            await tickets.wait("registry.test")  # the ticket arrives after the handshake
        assert "registry.test" in tickets
        async with Transport(
            verify=pki[0], resolve=RESOLVE, http3=True, flags=flags(), session_tickets=tickets
        ) as t:
            a = await t.get(url(server, "/small.txt?resumed"))
            b = await t.get(url(server, "/small.txt?other-name", "mirror.test"))
            conn = t._live[a.connection_id].conn
            return a, b, conn.resumed, t.stats, t.connections()

    a, b, resumed, stats, conns = run(main())
    assert a.content == artifacts[1]["/small.txt"] and a.http_version == "HTTP/3"
    assert stats["h3_0rtt"] == 1 and resumed
    # the resumed session carries no certificate: names come from the ticket's connection
    assert b.connection_id == a.connection_id and len(conns) == 1


def test_0rtt_to_a_dead_udp_port_falls_back_to_http2(pki, server, tcp_only_server):
    tickets = Tickets()

    async def main():
        async with Transport(
            verify=pki[0], resolve=RESOLVE, http3=True, flags=flags(), session_tickets=tickets
        ) as t:
            await t.get(url(server, "/small.txt"))
            await tickets.wait("registry.test")
        async with Transport(
            verify=pki[0],
            resolve=RESOLVE,
            flags=flags(),
            session_tickets=tickets,
            h3_connect_timeout=0.25,
        ) as t:
            await t.get(url(tcp_only_server, "/small.txt"))  # learns Alt-Svc over HTTP/2
            r = await t.get(url(tcp_only_server, "/small.txt?2"))  # 0-RTT into the void
            return r, t.stats

    r, stats = run(main())
    assert r.status == 200 and r.http_version == "HTTP/2"
    assert stats["h3_0rtt"] == 1 and stats["h3_fallbacks"] == 1


def test_http2_stream_window_is_16_mib(pki, server, artifacts):
    async def main():
        async with Transport(verify=pki[0], resolve=RESOLVE, http3=False, flags=flags()) as t:
            r = await t.get(url(server, "/blob/1mib.bin"))
            state = t._live[r.connection_id].conn._h2_state
            return r, state.local_settings.initial_window_size

    r, window = run(main())
    assert r.content == artifacts[1]["/blob/1mib.bin"] and window == 1 << 24


def test_tls_session_resumes_over_tcp(pki, server, artifacts):
    tickets: dict = {}

    async def main():
        async with Transport(
            verify=pki[0], resolve=RESOLVE, http3=False, flags=flags(), session_tickets=tickets
        ) as t:
            await t.get(url(server, "/small.txt"))
            first = t.stats.copy()
        async with Transport(
            verify=pki[0], resolve=RESOLVE, http3=False, flags=flags(), session_tickets=tickets
        ) as t:
            r = await t.get(url(server, "/small.txt?resumed"))
            return first, r, t.stats

    first, r, stats = run(main())
    assert first["tls_resumed"] == 0
    assert r.content == artifacts[1]["/small.txt"] and stats["tls_resumed"] == 1
