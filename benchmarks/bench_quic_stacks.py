"""aioquic against qh3: HTTP/3 throughput, request latency and handshake cost on loopback.

Servers, each in a subprocess (so its CPU time is its own): a minimal H3 server on aioquic, the same
on qh3, registry_core's hypercorn server (aioquic) and that server with hypercorn's aioquic names
pointed at qh3. Clients, in this process: a minimal H3 client on aioquic, the same on qh3, and
registry_core's own ``transport._h3.H3Connection`` ("rc"); httpx over HTTP/2 against hypercorn is
the anchor. For every (client, server) pair it measures:

* bulk download throughput of 1 MiB and 16 MiB bodies (median of several runs, one connection);
* p50/p99 latency of sequential small GETs on one connection;
* new-connection handshake time p50/p99, full and resumed from a session ticket;
* CPU seconds spent by the client and by the server process during the downloads.

Both stacks get the same QUIC settings (flow-control windows, datagram size). Each stack uses
its own asyncio glue (``S.asyncio.connect`` / ``S.asyncio.serve``) as its users would.

    .venv/bin/python benchmarks/bench_quic_stacks.py [--quick] [--datagram 1200]

Writes ``benchmarks/results/quic_stacks.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

STACKS = ("aioquic", "qh3")
CLIENTS = (*STACKS, "rc")  # rc: registry_core.transport._h3.H3Connection (aioquic, batched receive)
SERVERS = (*STACKS, "hypercorn", "hypercorn-qh3")  # hypercorn: registry_core.server.start_server
MIB = 1 << 20
MAX_DATA = 32 << 20  # same windows as registry_core.transport._h3 uses
MAX_STREAM_DATA = 8 << 20
RESULTS = Path(__file__).resolve().parent / "results" / "quic_stacks.json"


def _stack(name: str) -> Any:
    """The modules of one stack under the same names (qh3 mirrors aioquic's layout)."""
    mods = {
        k: importlib.import_module(f"{name}.{k}")
        for k in ("asyncio", "h3.connection", "h3.events", "quic.configuration", "quic.events")
    }

    class S:
        connect = mods["asyncio"].connect
        serve = mods["asyncio"].serve
        Protocol = mods["asyncio"].QuicConnectionProtocol
        H3 = mods["h3.connection"].H3Connection
        ALPN = mods["h3.connection"].H3_ALPN
        HeadersReceived = mods["h3.events"].HeadersReceived
        DataReceived = mods["h3.events"].DataReceived
        Config = mods["quic.configuration"].QuicConfiguration
        ConnectionTerminated = mods["quic.events"].ConnectionTerminated
        version = (
            importlib.import_module(name).__version__
            if hasattr(importlib.import_module(name), "__version__")
            else "?"
        )

    return S


def _config(S: Any, *, is_client: bool, datagram: int) -> Any:
    cfg = S.Config(
        is_client=is_client,
        alpn_protocols=S.ALPN,
        max_data=MAX_DATA,
        max_stream_data=MAX_STREAM_DATA,
        max_datagram_size=datagram,
        idle_timeout=30.0,
        max_datagram_frame_size=65536,
    )
    # ^ qh3's H3Connection always advertises SETTINGS_H3_DATAGRAM=1, and both stacks close the
    # connection (H3_SETTINGS_ERROR) when a peer does so without the QUIC transport parameter;
    # setting it on every endpoint keeps all four pairs comparable.
    if hasattr(cfg, "probe_datagram_size"):  # qh3 only: PMTU probing would change the size
        cfg.probe_datagram_size = False
    return cfg


# ---------------------------------------------------------------------------------- server side


def _serve(stack: str, port: int, certfile: str, keyfile: str, datagram: int) -> None:
    """Minimal H3 server: GET /<n> answers n bytes; GET /cpu answers this process's CPU time."""
    S = _stack(stack)
    bodies: dict[int, bytes] = {}

    class Server(S.Protocol):
        def __init__(self, *a: Any, **k: Any) -> None:
            super().__init__(*a, **k)
            self.h3 = S.H3(self._quic)

        def quic_event_received(self, event: Any) -> None:
            for ev in self.h3.handle_event(event):
                if isinstance(ev, S.HeadersReceived):
                    path = dict(ev.headers).get(b":path", b"/")[1:]
                    if path == b"cpu":
                        body = repr(time.process_time()).encode()
                    else:
                        n = int(path or b"0")
                        body = bodies.get(n)
                        if body is None:
                            body = bodies[n] = os.urandom(n)
                    length = str(len(body)).encode()
                    self.h3.send_headers(
                        ev.stream_id, [(b":status", b"200"), (b"content-length", length)]
                    )
                    self.h3.send_data(ev.stream_id, body, end_stream=True)
                    self.transmit()

    async def main() -> None:
        cfg = _config(S, is_client=False, datagram=datagram)
        cfg.load_cert_chain(certfile, keyfile)
        tickets: dict[bytes, Any] = {}
        await S.serve(
            "127.0.0.1",
            port,
            configuration=cfg,
            create_protocol=Server,
            session_ticket_fetcher=tickets.pop,
            session_ticket_handler=lambda t: tickets.__setitem__(t.ticket, t),
        )
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until EOF

    asyncio.run(main())


def _swap_hypercorn_to_qh3() -> None:
    """Point hypercorn's QUIC/H3 modules at qh3's classes (hypercorn imports aioquic by name)."""
    import qh3.h3.connection as h3c
    import qh3.h3.events as h3e
    import qh3.h3.exceptions as h3x
    import qh3.quic.configuration as qc
    import qh3.quic.connection as qconn
    import qh3.quic.events as qe
    import qh3.quic.packet as qp
    from hypercorn.protocol import h3 as hh3
    from hypercorn.protocol import quic as hq

    for name in (
        "ConnectionIdIssued",
        "ConnectionIdRetired",
        "ConnectionTerminated",
        "ProtocolNegotiated",
    ):
        setattr(hq, name, getattr(qe, name))
    hq.Buffer, hq.H3_ALPN, hq.QuicConfiguration = qp.Buffer, h3c.H3_ALPN, qc.QuicConfiguration
    hq.QuicConnection = qconn.QuicConnection
    hq.encode_quic_version_negotiation = qp.encode_quic_version_negotiation
    hq.PACKET_TYPE_INITIAL, hq.pull_quic_header = qp.PACKET_TYPE_INITIAL, qp.pull_quic_header
    hh3.H3Connection, hh3.DataReceived, hh3.HeadersReceived = (
        h3c.H3Connection,
        h3e.DataReceived,
        h3e.HeadersReceived,
    )
    hh3.NoAvailablePushIDError, hh3.QuicConnection, hh3.QuicEvent = (
        h3x.NoAvailablePushIDError,
        qconn.QuicConnection,
        qe.QuicEvent,
    )


def _serve_hypercorn(kind: str, port: int, certfile: str, keyfile: str, datagram: int) -> None:
    """registry_core's hypercorn server (session tickets, receive queue, datagram size) with a
    minimal ASGI app: GET /<n> answers n bytes, GET /cpu this process's CPU time."""
    from registry_core.server import _serve

    bodies: dict[int, bytes] = {}

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"][1:]
        if path == "cpu":
            body = repr(time.process_time()).encode()
        else:
            n = int(path or "0")
            body = bodies.get(n)
            if body is None:
                body = bodies[n] = os.urandom(n)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    if kind == "hypercorn-qh3":
        _swap_hypercorn_to_qh3()
        from hypercorn.protocol import quic as hq

        base = hq.QuicProtocol.__init__

        def init(self: Any, *a: Any, **k: Any) -> None:  # same settings as in _config
            base(self, *a, **k)
            self.quic_config.probe_datagram_size = False
            self.quic_config.max_datagram_frame_size = 65536

        hq.QuicProtocol.__init__ = init
    handle = _serve.start_server(
        app, port=port, certfile=certfile, keyfile=keyfile, quic_max_datagram_size=datagram
    )
    print("ready", flush=True)
    sys.stdin.read()
    handle.stop()


class ServerProc:
    def __init__(self, stack: str, certfile: str, keyfile: str, datagram: int) -> None:
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s,
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t,
        ):
            t.bind(("127.0.0.1", 0))  # hypercorn wants the TCP port too
            self.port = t.getsockname()[1]
            s.bind(("127.0.0.1", self.port))
        self.proc = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve",
                stack,
                "--port",
                str(self.port),
                "--cert",
                certfile,
                "--key",
                keyfile,
                "--datagram",
                str(datagram),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if line.strip() != "ready":
            self.close()
            raise RuntimeError(f"{stack} server did not start")
        self.pid = self.proc.pid

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------------------------- client side


def _client_protocol(S: Any) -> type:
    class Client(S.Protocol):
        def __init__(self, *a: Any, **k: Any) -> None:
            super().__init__(*a, **k)
            self.h3 = S.H3(self._quic)
            self.waiters: dict[int, tuple[asyncio.Future[int], list[int]]] = {}

        async def get(self, path: str) -> bytes | int:
            sid = self._quic.get_next_available_stream_id()
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self.waiters[sid] = (fut, [])
            self.h3.send_headers(
                sid,
                [
                    (b":method", b"GET"),
                    (b":scheme", b"https"),
                    (b":authority", b"localhost"),
                    (b":path", path.encode()),
                ],
                end_stream=True,
            )
            self.transmit()
            return await fut

        def quic_event_received(self, event: Any) -> None:
            if isinstance(event, S.ConnectionTerminated):
                for fut, _ in self.waiters.values():
                    if not fut.done():
                        fut.set_exception(ConnectionError(event.reason_phrase))
            for ev in self.h3.handle_event(event):
                w = self.waiters.get(getattr(ev, "stream_id", -1))
                if w is None:
                    continue
                if isinstance(ev, S.DataReceived):
                    w[1].append(ev.data)
                if ev.stream_ended:
                    del self.waiters[ev.stream_id]
                    w[0].set_result(b"".join(w[1]))

    return Client


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q / 100 * (len(xs) - 1)))]


@contextlib.asynccontextmanager
async def _open(
    kind: str, port: int, cafile: str, datagram: int, ticket: list[Any], resume: bool
) -> AsyncIterator[Any]:
    """A connected client of ``kind`` with ``get(path) -> bytes`` and ``resumed()``.

    ``ticket[0]``: the session ticket to resume from (when ``resume``); receives the new one.
    """
    if kind == "h2":  # the anchor: httpx over TCP+TLS, HTTP/2 (hypercorn servers only)
        import httpx

        async with httpx.AsyncClient(http2=True, verify=cafile) as client:

            class H2:
                async def get(self, path: str) -> bytes:
                    r = await client.get(f"https://localhost:{port}{path}")
                    assert r.http_version == "HTTP/2", r.http_version
                    return r.content

            yield H2()
        return
    if kind == "rc":
        import httpx

        from registry_core.transport._h3 import H3Connection

        tickets = {"localhost": ticket[0]} if resume and ticket[0] is not None else {}
        conn = await H3Connection.connect(
            "127.0.0.1",
            port,
            server_name="localhost",
            verify=cafile,
            session_tickets=tickets,
            max_datagram_size=datagram,
            early_data=False,
        )

        class RC:
            async def get(self, path: str) -> bytes:
                r = await conn.handle_async_request(
                    httpx.Request("GET", f"https://localhost:{port}{path}")
                )
                body = b"".join([c async for c in r.stream])
                await r.stream.aclose()
                return body

            def resumed(self) -> bool:
                return conn.resumed

            def keep_ticket(self) -> None:
                if "localhost" in tickets:
                    ticket[0] = tickets["localhost"]

        try:
            yield RC()
        finally:
            await conn.aclose()
        return
    S = _stack(kind)
    c = _config(S, is_client=True, datagram=datagram)
    c.server_name = "localhost"
    c.load_verify_locations(cafile=cafile)
    c.session_ticket = ticket[0] if resume else None
    async with S.connect(
        "127.0.0.1",
        port,
        configuration=c,
        create_protocol=_client_protocol(S),
        session_ticket_handler=lambda t: ticket.__setitem__(0, t),
    ) as p:
        p.resumed = lambda: bool(getattr(p._quic.tls, "session_resumed", False))
        p.keep_ticket = lambda: None
        yield p


async def _measure(
    cs: str, ss: str, port: int, cafile: str, datagram: int, quick: bool
) -> dict[str, Any]:
    out: dict[str, Any] = {"client": cs, "server": ss}
    runs = {MIB: 3 if quick else 9, 16 * MIB: 2 if quick else 5}
    async with _open(cs, port, cafile, datagram, [None], False) as p:
        for size, n in runs.items():
            body = await p.get(f"/{size}")  # warm-up: server builds the body, cwnd opens
            assert len(body) == size, (len(body), size)
            speeds, cpu_c, cpu_s = [], 0.0, 0.0
            for _ in range(n):
                s0 = float(await p.get("/cpu"))
                c0, t0 = time.process_time(), time.perf_counter()
                body = await p.get(f"/{size}")
                dt = time.perf_counter() - t0
                cpu_c += time.process_time() - c0
                cpu_s += float(await p.get("/cpu")) - s0
                assert len(body) == size
                speeds.append(size / dt / 1e6)
            key = f"{size // MIB}MiB"
            out[f"{key}_MBps"] = round(statistics.median(speeds), 1)
            out[f"{key}_MBps_all"] = [round(x, 1) for x in speeds]
            # CPU milliseconds per MiB moved, each side (the server's includes two tiny /cpu GETs)
            out[f"{key}_cpu_ms_per_MiB_client"] = round(1000 * cpu_c / (n * size / MIB), 2)
            out[f"{key}_cpu_ms_per_MiB_server"] = round(1000 * cpu_s / (n * size / MIB), 2)
        lat = []
        for _ in range(20):
            await p.get("/100")
        for _ in range(200):
            t0 = time.perf_counter()
            await p.get("/100")
            lat.append((time.perf_counter() - t0) * 1000)
        out["small_get_p50_ms"] = round(_pct(lat, 50), 3)
        out["small_get_p99_ms"] = round(_pct(lat, 99), 3)

    if cs == "h2":  # QUIC handshakes only
        return out
    # handshakes: full, then resumed from the ticket of the previous connection
    n = 10 if quick else 40
    for label, resume in (("full", False), ("resumed", True)):
        times, resumed = [], 0
        ticket: list[Any] = [None]
        for i in range(n + 1):
            t0 = time.perf_counter()
            async with _open(cs, port, cafile, datagram, ticket, resume) as p:
                dt = (time.perf_counter() - t0) * 1000
                await p.get("/0")  # the ticket arrives after the handshake
                p.keep_ticket()
                if i:  # the first one only fetches a ticket
                    times.append(dt)
                    resumed += p.resumed()
        out[f"handshake_{label}_p50_ms"] = round(_pct(times, 50), 2)
        out[f"handshake_{label}_p99_ms"] = round(_pct(times, 99), 2)
        out[f"handshake_{label}_resumed"] = f"{resumed}/{n}"
    return out


def _certs(tmp: str) -> tuple[str, str, str]:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    paths = [os.path.join(tmp, n) for n in ("ca.pem", "cert.pem", "key.pem")]
    ca.cert_pem.write_to_path(paths[0])
    cert.cert_chain_pems[0].write_to_path(paths[1])
    cert.private_key_pem.write_to_path(paths[2])
    return paths[0], paths[1], paths[2]


async def _qh3_default_get(port: int, cafile: str) -> str:
    """A qh3 client with qh3's default configuration (as a first trial would use it)."""
    S = _stack("qh3")
    c = S.Config(is_client=True, alpn_protocols=S.ALPN, server_name="localhost")
    c.load_verify_locations(cafile=cafile)
    async with S.connect(
        "127.0.0.1", port, configuration=c, create_protocol=_client_protocol(S)
    ) as p:
        return f"ok ({len(await p.get('/100'))} bytes)"


def _interop_checks(tmp: str, trust_ca: str, cert: str, key: str, datagram: int) -> dict[str, str]:
    """qh3's default client against registry_core's hypercorn server, with a CA-issued
    certificate (trustme) and with registry_core's own --self-signed certificate."""
    from registry_core.server._serve import make_self_signed

    own_cert, own_key = make_self_signed(["127.0.0.1", "localhost"], tmp)
    out = {}
    for label, (ca, c, k) in {
        "trustme_ca_leaf": (trust_ca, cert, key),
        "registry_core_self_signed": (own_cert, own_cert, own_key),
    }.items():
        server = ServerProc("hypercorn", c, k, datagram)
        try:
            out[label] = asyncio.run(asyncio.wait_for(_qh3_default_get(server.port, ca), 10))
        except Exception as exc:  # the failure is the result
            out[label] = f"FAILED: {exc!r}"
        finally:
            server.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--serve", choices=SERVERS)
    ap.add_argument("--port", type=int)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--datagram", type=int, default=1200)
    ap.add_argument("--quick", action="store_true", help="fewer runs (smoke test)")
    ap.add_argument("--pairs", default="all", help="e.g. aioquic-aioquic,qh3-qh3")
    ap.add_argument("--out", default=str(RESULTS))
    a = ap.parse_args()
    if a.serve in ("hypercorn", "hypercorn-qh3"):
        _serve_hypercorn(a.serve, a.port, a.cert, a.key, a.datagram)
        return
    if a.serve:
        _serve(a.serve, a.port, a.cert, a.key, a.datagram)
        return
    pairs = (
        [(c, s) for s in SERVERS for c in CLIENTS] + [("h2", "hypercorn")]
        if a.pairs == "all"
        else [tuple(p.split("-", 1)) for p in a.pairs.split(",")]
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ca, cert, key = _certs(tmp)
        interop = _interop_checks(tmp, ca, cert, key, a.datagram)
        print(f"qh3 default client -> registry_core hypercorn server: {interop}", file=sys.stderr)
        for cs, ss in pairs:
            server = ServerProc(ss, cert, key, a.datagram)
            try:
                row = asyncio.run(
                    asyncio.wait_for(_measure(cs, ss, server.port, ca, a.datagram, a.quick), 180)
                )
                row["interop"] = "ok"
            except Exception as exc:  # an interop failure is a result
                row = {"client": cs, "server": ss, "interop": f"FAILED: {exc!r}"}
            finally:
                server.close()
            rows.append(row)
            print(f"{cs:>8} client -> {ss:<8} server: {row}", file=sys.stderr, flush=True)
    cols = [
        ("1MiB_MBps", "1MiB MB/s"),
        ("16MiB_MBps", "16MiB MB/s"),
        ("16MiB_cpu_ms_per_MiB_client", "cli ms/MiB"),
        ("16MiB_cpu_ms_per_MiB_server", "srv ms/MiB"),
        ("small_get_p50_ms", "GET p50"),
        ("small_get_p99_ms", "GET p99"),
        ("handshake_full_p50_ms", "hs p50"),
        ("handshake_full_p99_ms", "hs p99"),
        ("handshake_resumed_p50_ms", "res p50"),
        ("handshake_resumed_p99_ms", "res p99"),
    ]
    print(f"| client  | server  | {' | '.join(h for _, h in cols)} | interop |")
    print("|" + "---|" * (len(cols) + 3))
    for r in rows:
        vals = " | ".join(str(r.get(k, "-")) for k, _ in cols)
        print(f"| {r['client']} | {r['server']} | {vals} | {r['interop'][:60]} |")
    import aioquic
    import qh3

    doc = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "aioquic": aioquic.__version__,
        "qh3": qh3.__version__,
        "datagram_size": a.datagram,
        "max_data": MAX_DATA,
        "max_stream_data": MAX_STREAM_DATA,
        "quick": a.quick,
        "rows": rows,
        "qh3_default_client_vs_hypercorn": interop,
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
