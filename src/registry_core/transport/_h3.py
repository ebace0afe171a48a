"""HTTP/3 for httpx: an ``AsyncBaseTransport`` on aioquic's sans-IO QUIC and H3 state machines.

:class:`H3Connection` is one QUIC connection multiplexing requests, used by the coalescing
pool of :class:`~registry_core.transport.Transport`. (There is no separate httpx transport
class: ``Transport`` itself takes any ``httpx.AsyncBaseTransport`` as its seam.)
Session tickets are kept per server name so a later connection can resume (and send 0-RTT
requests) when the server issues them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpx
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN
from aioquic.h3.connection import H3Connection as _H3
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamReset

from ..errors import TransportError
from ._tls import _timeout

__all__ = ["H3ConnectError", "H3Connection", "H3StreamError"]

_SKIP_HEADERS = {
    b"host",
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"transfer-encoding",
    b"upgrade",
    b"te",
}


class H3ConnectError(TransportError):
    """The QUIC handshake failed or timed out (UDP blocked, no HTTP/3 server, bad certificate)."""


class H3StreamError(TransportError):
    """A request stream was reset or the connection closed under it.

    ``unprocessed`` is True when no response bytes had arrived and the connection was closed
    cleanly by the peer, so replaying the request is safe.
    """

    def __init__(self, message: str, *, unprocessed: bool = False) -> None:
        super().__init__(message)
        self.unprocessed = unprocessed


class _Stream:
    __slots__ = ("body", "ended", "headers")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.headers: asyncio.Future[list[tuple[bytes, bytes]]] = loop.create_future()
        self.body: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        self.ended = False

    def fail(self, exc: BaseException) -> None:
        if not self.headers.done():
            self.headers.set_exception(exc)
            self.headers.exception()
        if not self.ended:
            self.ended = True
            self.body.put_nowait(exc)


class _Protocol(QuicConnectionProtocol):
    def __init__(self, quic: QuicConnection, **kwargs: Any) -> None:
        super().__init__(quic, **kwargs)
        self.h3 = _H3(quic)
        self.streams: dict[int, _Stream] = {}
        self.terminated: str | None = None

    sock: socket.socket | None = None

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        """Feed this datagram and every other one already queued on the socket, then
        transmit once: asyncio delivers one datagram per loop turn, and building and sending
        ACKs after each of them is most of aioquic's receive cost on a bulk download."""
        quic, now = self._quic, self._loop.time()
        quic.receive_datagram(data, addr, now=now)  # type: ignore[arg-type]
        if self.sock is not None:
            for _ in range(256):
                try:
                    more, src = self.sock.recvfrom(65536)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                quic.receive_datagram(more, src, now=now)
        self._process_events()
        self.transmit()

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated):
            self.terminated = f"error {event.error_code}: {event.reason_phrase or 'closed'}"
            clean = event.error_code == 0
            for st in self.streams.values():
                st.fail(
                    H3StreamError(
                        f"HTTP/3 connection closed ({self.terminated})",
                        unprocessed=clean and not st.headers.done(),
                    )
                )
            self.streams.clear()
        elif isinstance(event, StreamReset):
            reset = self.streams.pop(event.stream_id, None)
            if reset is not None:
                reset.fail(
                    H3StreamError(
                        f"HTTP/3 stream reset by peer (code {event.error_code})",
                        unprocessed=event.error_code == 0x10B,
                    )
                )  # H3_REQUEST_REJECTED
        for ev in self.h3.handle_event(event):
            sid = getattr(ev, "stream_id", -1)
            stream = self.streams.get(sid)
            if stream is None:
                continue
            if isinstance(ev, HeadersReceived):
                if not stream.headers.done():
                    stream.headers.set_result(ev.headers)
            elif isinstance(ev, DataReceived) and ev.data:
                stream.body.put_nowait(ev.data)
            if getattr(ev, "stream_ended", False):
                stream.ended = True
                stream.body.put_nowait(None)
                self.streams.pop(sid, None)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.terminated is None:
            self.terminated = "socket closed"
        for st in self.streams.values():
            st.fail(H3StreamError("HTTP/3 connection lost"))
        self.streams.clear()


class _Body(httpx.AsyncByteStream):
    def __init__(self, conn: H3Connection, stream: _Stream, timeout: float | None) -> None:
        self._conn, self._stream, self._timeout = conn, stream, timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        queue = self._stream.body
        while True:
            if queue.empty():
                try:
                    async with _timeout(self._timeout):
                        item = await queue.get()
                except asyncio.TimeoutError:
                    raise httpx.ReadTimeout(f"HTTP/3 body stalled for {self._timeout}s") from None
            else:
                item = queue.get_nowait()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    async def aclose(self) -> None:
        self._conn._active -= 1
        if not self._stream.ended:  # abandoned early (size limit, error): stop the sender
            self._conn._abandon(self._stream)


def _peer_names(protocol: _Protocol) -> tuple[str, ...]:
    cert = getattr(protocol._quic.tls, "_peer_certificate", None)
    if cert is None:
        return ()
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
    names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return tuple(names)


class H3Connection:
    """One HTTP/3 connection: :meth:`connect`, then :meth:`handle_async_request` per request."""

    def __init__(
        self,
        protocol: _Protocol,
        transport: asyncio.DatagramTransport,
        address: tuple[str, int],
        server_name: str,
        port: int,
    ) -> None:
        self._protocol = protocol
        self._transport = transport
        self.address = address
        self.server_name = server_name
        self.port = port
        self._active = 0
        self.ticket_names: tuple[str, ...] = ()  # names of the session a ticket resumes
        self._handshake: asyncio.Future[None] | None = None
        self.early = False  # True when requests may leave as 0-RTT before the handshake

    @property
    def cert_names(self) -> tuple[str, ...]:
        """subjectAltNames of the server certificate (those of the resumed session when the
        connection was resumed; empty while a 0-RTT handshake is still running)."""
        return _peer_names(self._protocol) or self.ticket_names

    @property
    def resumed(self) -> bool:
        """Whether the TLS session was resumed from a ticket."""
        return bool(getattr(self._protocol._quic.tls, "session_resumed", False))

    async def wait_handshake(self, timeout: float) -> None:
        """Wait until the handshake completed (immediately true without 0-RTT)."""
        if self._handshake is not None and not self._handshake.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._handshake), timeout)
            except asyncio.TimeoutError:
                raise H3ConnectError(f"QUIC handshake with {self.server_name} timed out") from None

    @classmethod
    async def connect(
        cls,
        address: str,
        port: int,
        *,
        server_name: str,
        verify: bool | str | ssl.SSLContext = True,
        session_tickets: dict[str, Any] | None = None,
        timeout: float = 5.0,
        max_stream_data: int = 8 << 20,
        max_data: int = 32 << 20,
        max_datagram_size: int = 1200,
        early_data: bool = True,
        pq_kex: bool = False,
    ) -> H3Connection:
        """Handshake with ``address:port`` (an IP) presenting SNI ``server_name``.

        With a session ticket for ``server_name`` that allows early data (and ``early_data``),
        the connection is returned at once: idempotent requests then go out as 0-RTT, while
        other methods wait for the handshake (0-RTT data can be replayed by an attacker).

        ``pq_kex``: offer the hybrid X25519MLKEM768 group first (:mod:`._pqkex`; this patches
        aioquic's TLS for the whole process, so later connections offer it too).
        """
        if pq_kex:
            from ._pqkex import install

            install()
        config = QuicConfiguration(
            is_client=True,
            alpn_protocols=H3_ALPN,
            server_name=server_name,
            max_stream_data=max_stream_data,
            max_data=max_data,
            idle_timeout=30.0,
            max_datagram_size=max_datagram_size,
        )
        if verify is False:
            config.verify_mode = ssl.CERT_NONE
        elif isinstance(verify, str):
            config.load_verify_locations(cafile=verify)
        elif isinstance(verify, ssl.SSLContext):
            raise TransportError(
                "HTTP/3 needs verify=True/False or a CA bundle path, not an "
                "SSLContext (aioquic does its own TLS)"
            )
        if session_tickets is not None:  # single use, as TLS 1.3 recommends (RFC 8446 C.4)
            config.session_ticket = session_tickets.pop(server_name, None)
        holder: list[_Protocol] = []

        def store_ticket(ticket: Any) -> None:
            if session_tickets is None:
                return
            names = _peer_names(holder[0]) if holder else ()
            if not names and config.session_ticket is not None:  # resumed: no certificate
                names = getattr(config.session_ticket, "registry_core_names", ())
            ticket.registry_core_names = names  # the certificate the ticket vouches for
            session_tickets[server_name] = ticket

        quic = QuicConnection(configuration=config, session_ticket_handler=store_ticket)
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
        local = ("::", 0) if family == socket.AF_INET6 else ("0.0.0.0", 0)
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind(local)
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: _Protocol(quic), sock=sock
            )
        except BaseException:
            sock.close()
            raise
        protocol.sock = sock
        holder.append(protocol)
        ticket = config.session_ticket
        zero_rtt = bool(
            early_data and ticket is not None and ticket.max_early_data_size is not None
        )
        try:
            protocol.connect((address, port))
            handshake = asyncio.ensure_future(protocol.wait_connected())
            ticket_names = tuple(getattr(ticket, "registry_core_names", ()) if ticket else ())
            if zero_rtt:
                conn = cls(protocol, transport, (address, port), server_name, port)
                conn.ticket_names = ticket_names
                conn._handshake = handshake
                conn.early = True
                handshake.add_done_callback(lambda f: f.cancelled() or f.exception())
                return conn
            await asyncio.wait_for(handshake, timeout)
        except asyncio.TimeoutError:
            transport.close()
            raise H3ConnectError(
                f"QUIC handshake with {server_name} ({address}:{port}) timed "
                f"out after {timeout:.2f}s (UDP blocked or no HTTP/3 server)"
            ) from None
        except ConnectionError as exc:
            transport.close()
            raise H3ConnectError(
                f"QUIC handshake with {server_name} ({address}:{port}) "
                f"failed: {protocol.terminated or exc or 'connection closed'}"
            ) from exc
        if protocol.terminated is not None:
            transport.close()
            raise H3ConnectError(
                f"QUIC handshake with {server_name} failed: " f"{protocol.terminated}"
            )
        conn = cls(protocol, transport, (address, port), server_name, port)
        conn.ticket_names = ticket_names
        return conn

    def _abandon(self, stream: _Stream) -> None:
        for stream_id, st in list(self._protocol.streams.items()):
            if st is stream:
                del self._protocol.streams[stream_id]
                with contextlib.suppress(Exception):
                    self._protocol._quic.stop_stream(stream_id, 0x10C)  # H3_REQUEST_CANCELLED
                    self._protocol._quic.reset_stream(stream_id, 0x10C)
                self._protocol.transmit()
        stream.ended = True

    def is_available(self) -> bool:
        return self._protocol.terminated is None

    def is_closed(self) -> bool:
        return self._protocol.terminated is not None

    @property
    def active(self) -> int:
        return self._active

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` on a new stream; the response body streams as it arrives."""
        if self._protocol.terminated is not None:
            raise H3StreamError(
                f"HTTP/3 connection is closed ({self._protocol.terminated})", unprocessed=True
            )
        timeout = request.extensions.get("timeout", {}).get("read", 30.0)
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            await self.wait_handshake(timeout)  # never send non-idempotent data as 0-RTT
        body = request.content if request.method not in ("GET", "HEAD") else b""
        url = request.url
        authority = url.netloc.decode("ascii")
        headers = [
            (b":method", request.method.encode()),
            (b":scheme", b"https"),
            (b":authority", authority.encode()),
            (b":path", url.raw_path),
        ]
        headers += [
            (k.lower(), v) for k, v in request.headers.raw if k.lower() not in _SKIP_HEADERS
        ]
        quic = self._protocol._quic
        stream_id = quic.get_next_available_stream_id()
        st = _Stream(asyncio.get_running_loop())
        self._protocol.streams[stream_id] = st
        self._protocol.h3.send_headers(stream_id, headers, end_stream=not body)
        if body:
            self._protocol.h3.send_data(stream_id, body, end_stream=True)
        self._protocol.transmit()
        try:
            raw = await asyncio.wait_for(st.headers, timeout)
        except asyncio.TimeoutError:
            self._protocol.streams.pop(stream_id, None)
            raise httpx.ReadTimeout(f"no HTTP/3 response within {timeout}s") from None
        status = 0
        out: list[tuple[bytes, bytes]] = []
        for k, v in raw:
            if k == b":status":
                status = int(v)
            elif not k.startswith(b":"):
                out.append((k, v))
        self._active += 1
        return httpx.Response(
            status,
            headers=out,
            stream=_Body(self, st, timeout),
            extensions={"http_version": b"HTTP/3"},
            request=request,
        )

    async def aclose(self) -> None:
        # CONNECTION_CLOSE goes out now; waiting out the draining period (3 PTO) is pointless
        # for a client that is going away.
        if self._protocol.terminated is None:
            self._protocol.close()
        if self._handshake is not None and not self._handshake.done():
            self._handshake.cancel()
        self._transport.close()
