"""Serve a RegistryApp with hypercorn: TCP (HTTP/1.1, HTTP/2) and UDP (HTTP/3) on one port.

:func:`start_server` runs it on a background thread (tests, demos, embedding) and returns a
handle with the bound port; :func:`serve` runs it in the foreground until interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import os
import socket
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidArgumentError
from ._app import RegistryApp

__all__ = ["ServerHandle", "make_self_signed", "serve", "start_server"]


def make_self_signed(names: list[str], directory: str | os.PathLike[str]) -> tuple[str, str]:
    """Write a self-signed certificate (ECDSA P-256, SANs = ``names``) and key; returns paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = Path(directory)
    certfile, keyfile = directory / "registry-core-cert.pem", directory / "registry-core-key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    os.chmod(keyfile, 0o600)
    return str(certfile), str(keyfile)


def _bind_pair(host: str, port: int, quic: bool) -> tuple[socket.socket, socket.socket | None]:
    """A TCP socket and (optionally) a UDP socket bound to the same port (port 0: pick one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        tcp = socket.socket(family, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tcp.bind((host, port))
        bound = tcp.getsockname()[1]
        if not quic:
            return tcp, None
        udp = socket.socket(family, socket.SOCK_DGRAM)
        try:
            udp.bind((host, bound))
        except OSError:
            tcp.close()
            udp.close()
            if port:
                raise
            continue
        return tcp, udp
    raise OSError("could not bind TCP and UDP to the same free port")


class _TicketStore:
    """QUIC session tickets issued by this process (bounded; each ticket is used once)."""

    def __init__(self, limit: int = 10_000) -> None:
        import collections

        self._tickets: collections.OrderedDict[bytes, Any] = collections.OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()

    def add(self, ticket: Any) -> None:
        with self._lock:
            self._tickets[ticket.ticket] = ticket
            while len(self._tickets) > self._limit:
                self._tickets.popitem(last=False)

    def pop(self, label: bytes) -> Any:
        with self._lock:
            return self._tickets.pop(label, None)


def _install_quic_tuning() -> None:
    """Teach hypercorn's QUIC server two things it lacks (once per process).

    1. Session tickets: hypercorn creates aioquic connections without a ticket handler, so
       clients can never resume (nor send 0-RTT). Connections are created with ours.
    2. ``registry_core_quic`` on the hypercorn Config: QuicConfiguration attributes to set
       (the datagram size, for instance); configs without it are left untouched.
    3. For those configs, a 1024-datagram receive queue instead of 10: hypercorn drops what
       does not fit, so a client opening 32 streams at once lost packets and waited for
       retransmission timers.
    """
    from hypercorn.asyncio import udp_server as hu
    from hypercorn.protocol import quic as hq

    if getattr(hq, "_registry_core_tuned", False):
        return
    store = _TicketStore()
    base_connection = hq.QuicConnection

    class _TicketingConnection(base_connection):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("session_ticket_fetcher", store.pop)
            kwargs.setdefault("session_ticket_handler", store.add)
            super().__init__(*args, **kwargs)

    base_init = hq.QuicProtocol.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        base_init(self, *args, **kwargs)
        for name, value in getattr(self.config, "registry_core_quic", {}).items():
            setattr(self.quic_config, name, value)

    base_udp_init = hu.UDPServer.__init__

    def udp_init(self: Any, *args: Any, **kwargs: Any) -> None:
        base_udp_init(self, *args, **kwargs)
        if hasattr(self.config, "registry_core_quic"):
            self.protocol_queue = asyncio.Queue(1024)

    hq.QuicConnection = _TicketingConnection
    hq.QuicProtocol.__init__ = init
    hu.UDPServer.__init__ = udp_init
    hq._registry_core_tuned = True


def _config(certfile: str, keyfile: str, keep_alive_max_requests: int, keep_alive_timeout: float):
    from hypercorn.config import Config

    class _Config(Config):
        # The app sends Alt-Svc itself (so the QUIC_TRANSPORT flag can withdraw it).
        def response_headers(self, protocol: str) -> list[tuple[bytes, bytes]]:
            return [h for h in super().response_headers(protocol) if h[0] != b"alt-svc"]

    config = _Config()
    config.certfile, config.keyfile = certfile, keyfile
    config.alpn_protocols = ["h2", "http/1.1"]
    config.keep_alive_max_requests = keep_alive_max_requests
    config.keep_alive_timeout = keep_alive_timeout
    config.include_server_header = False
    config.accesslog = None
    config.errorlog = None
    config.h2_max_concurrent_streams = 256
    config.graceful_timeout = 1.0
    return config


@dataclass
class ServerHandle:
    """A server running on a background thread; ``stop()`` (or leaving ``with``) shuts it down."""

    app: RegistryApp
    host: str
    port: int
    certfile: str
    quic: bool
    _loop: asyncio.AbstractEventLoop = field(repr=False, default=None)  # type: ignore[assignment]
    _stop: asyncio.Event = field(repr=False, default=None)  # type: ignore[assignment]
    _thread: threading.Thread = field(repr=False, default=None)  # type: ignore[assignment]

    def url(self, path: str = "/", host: str | None = None) -> str:
        """``https://host:port/path`` for this server (``host`` defaults to the bound address)."""
        return f"https://{host or self.host}:{self.port}/{path.lstrip('/')}"

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None or not self._thread.is_alive():
            return
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(
    app: RegistryApp | Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    certfile: str | None = None,
    keyfile: str | None = None,
    quic: bool = True,
    keep_alive_max_requests: int = 1_000_000,
    keep_alive_timeout: float = 60.0,
    names: list[str] | None = None,
    quic_max_datagram_size: int = 1200,
    http2: bool = True,
) -> ServerHandle:
    """Start hypercorn for ``app`` on a background thread; returns once it accepts connections.

    Without ``certfile``/``keyfile`` a self-signed certificate for ``names`` (default: host and
    localhost) is generated. ``quic=True`` also serves HTTP/3 on the same UDP port and sets
    the app's ``Alt-Svc``. hypercorn's default of closing a connection after 1000 requests is
    raised to ``keep_alive_max_requests``. QUIC session tickets are issued (resumption and
    0-RTT for clients that keep them). ``quic_max_datagram_size``: UDP payload per QUIC
    packet; 1200 is safe on any path, larger values only suit known paths such as loopback.
    """
    from hypercorn.asyncio.run import worker_serve
    from hypercorn.config import Sockets
    from hypercorn.utils import wrap_app

    if not isinstance(app, RegistryApp) and isinstance(app, (str, os.PathLike)):
        app = RegistryApp(app)
    if (certfile is None) != (keyfile is None):
        raise InvalidArgumentError("give both certfile and keyfile, or neither (self-signed)")
    if certfile is None:
        tmp = tempfile.mkdtemp(prefix="registry-core-cert-")
        certfile, keyfile = make_self_signed(names or [host, "localhost"], tmp)
    tcp, udp = _bind_pair(host, port, quic)
    bound_port = tcp.getsockname()[1]
    tcp.listen(1024)
    tcp.setblocking(False)
    if udp is not None:
        udp.setblocking(False)
    config = _config(certfile, keyfile, keep_alive_max_requests, keep_alive_timeout)
    if not http2:  # HTTP/1.1 only on TCP (clients without h2, tests of the ALPN fallback)
        config.alpn_protocols = ["http/1.1"]
    if quic:
        _install_quic_tuning()
        config.registry_core_quic = {"max_datagram_size": quic_max_datagram_size}
    if quic and isinstance(app, RegistryApp) and app.alt_svc is None:
        app.alt_svc = f'h3=":{bound_port}"; ma=3600'
    handle = ServerHandle(app, host, bound_port, certfile, quic)
    ready = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        handle._loop, handle._stop = loop, asyncio.Event()
        sockets = Sockets([tcp], [], [udp] if udp is not None else [])
        loop.call_soon(ready.set)
        try:
            loop.run_until_complete(worker_serve(wrap_app(app, 0, "asgi"), config,
                                                 sockets=sockets,
                                                 shutdown_trigger=handle._stop.wait))
        except BaseException as exc:  # reported to the starter if it happens early
            errors.append(exc)
            ready.set()
        finally:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    handle._thread = threading.Thread(target=run, name=f"registry-core-server:{bound_port}",
                                      daemon=True)
    handle._thread.start()
    ready.wait(10)
    if errors:
        raise errors[0]
    return handle


def serve(
    directory: str | os.PathLike[str] | RegistryApp,
    *,
    host: str = "127.0.0.1",
    port: int = 8443,
    certfile: str | None = None,
    keyfile: str | None = None,
    self_signed: bool = False,
    quic: bool = True,
) -> None:
    """Serve ``directory`` in the foreground until Ctrl-C (the ``registry-core serve`` command)."""
    if certfile is None and not self_signed:
        raise InvalidArgumentError("TLS is required: pass --certfile/--keyfile or --self-signed")
    app = directory if isinstance(directory, RegistryApp) else RegistryApp(directory)
    handle = start_server(app, host=host, port=port, certfile=certfile, keyfile=keyfile, quic=quic)
    print(f"registry-core: serving on https://{host}:{handle.port}/ "
          f"(TCP h1/h2{' + UDP h3' if quic else ''}); certificate {handle.certfile}", flush=True)
    import signal

    with contextlib.suppress(ValueError):  # not in the main thread: Ctrl-C only
        signal.signal(signal.SIGTERM, lambda *_: handle._loop.call_soon_threadsafe(
            handle._stop.set))
    try:
        while handle._thread.is_alive():
            handle._thread.join(0.5)
    except KeyboardInterrupt:
        handle.stop()
