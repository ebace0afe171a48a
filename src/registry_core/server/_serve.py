"""Serve a RegistryApp with hypercorn: TCP (HTTP/1.1, HTTP/2) and UDP (HTTP/3) on one port.

With ``tls=False`` it serves plain HTTP/1.1 on TCP only (no QUIC, no Alt-Svc): for a proxy on
loopback (pip and uv treat ``http://127.0.0.1`` as secure) and for tests. The limits below
apply the same way, minus the TLS handshake.

:func:`start_server` runs it on a background thread (tests, demos, embedding) and returns a
handle with the bound port once every listener is up with its certificate loaded;
:func:`serve` runs it in the foreground until interrupted (the ``registry-core serve`` command).

The accept loop is ours (hypercorn's protocol classes serve each connection), so that what a
connection may hold is bounded before any TLS work is done for it (:class:`ServerLimits`):

- a total and a per-IP connection cap, checked at ``accept`` (refused connections are reset
  before the TLS handshake; on Python 3.10, which lacks ``StreamWriter.start_tls``, after it);
- a TLS handshake deadline;
- a read timeout: a connection whose client sends nothing for ``read_timeout`` seconds while
  the server waits for it (request head, request body, next request) is closed; time the
  application spends computing an answer is not counted;
- a write timeout: a response that makes no progress for ``write_timeout`` seconds (a client
  that does not read; an HTTP/2 client that never opens its flow-control window) aborts the
  connection, and a closing connection whose unsent data the client never takes is aborted
  after ``close_timeout``, so nothing stays pinned in server memory;
- a client's EOF (close or half-close) closes the connection and frees its slot at once, even
  while the application still streams (SSE) or waits: the application is told
  ``http.disconnect``, its later sends raise, and it is cancelled after ``close_timeout``.

Certificates are loaded before anything is bound, so a missing or invalid file fails at once
with one line naming it; a bind failure names TCP or UDP and the address.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import fcntl
import ipaddress
import os
import re
import socket
import ssl
import struct
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._util import LRU, atomic_write
from ..errors import InvalidArgumentError, RegistryCoreError
from ._app import RegistryApp

if TYPE_CHECKING:
    from ..certs import CertificateStore, SNIContexts
    from ..flags import FeatureFlags

__all__ = [
    "SERVER_EXTRA_HINT",
    "ServerHandle",
    "ServerLimits",
    "make_self_signed",
    "self_signed_certificate",
    "serve",
    "start_server",
]

SERVER_EXTRA_HINT = (
    "registry-core serve needs the server extra: pip install 'registry-core[server]'"
)

#: hypercorn releases whose internals (protocol classes, QUIC server) this module was tested on.
HYPERCORN_SUPPORTED = ">=0.18,<0.19"


def _require_server_extra() -> None:
    """Import what serving needs, or fail with one message naming the extra to install."""
    try:
        import cryptography  # noqa: F401
        import hypercorn  # noqa: F401
    except ImportError as exc:
        missing = exc.name or "a server dependency"
        raise ModuleNotFoundError(
            f"{SERVER_EXTRA_HINT} ({missing} is not installed)", name=exc.name
        ) from None


def _hypercorn_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hypercorn")
    except PackageNotFoundError:
        return "unknown"


def _unsupported(what: str) -> RegistryCoreError:
    return RegistryCoreError(
        f"hypercorn {_hypercorn_version()} is not supported: {what} (registry-core's server is "
        f"tested with hypercorn{HYPERCORN_SUPPORTED}; install a version in that range)"
    )


# -- limits ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerLimits:
    """What one client, and all of them together, may hold on the server (docs/security.md).

    ``None`` for a timeout turns it off. Sizes are bytes, times seconds.
    """

    #: open TCP connections in total; more are reset at accept (before TLS).
    max_connections: int = 1000
    #: open TCP connections from one IP address; more are reset at accept.
    max_connections_per_ip: int = 64
    #: QUIC (HTTP/3) connections in total; Initial packets for more are dropped. (No per-IP
    #: cap: a QUIC Initial's source address is not validated, so one could be spoofed.)
    max_quic_connections: int = 1000
    #: a connection waiting on its client (request head or body, next request) that receives
    #: nothing for this long is closed. Application compute time does not count.
    read_timeout: float | None = 30.0
    #: a response that makes no progress for this long (the client does not read) aborts
    #: the connection.
    write_timeout: float | None = 30.0
    #: requests from one IP address the application works on at once (all protocols); more
    #: wait, in order, for one of them to end. ``None``: no limit.
    max_requests_per_ip: int | None = None
    #: TLS handshake deadline.
    handshake_timeout: float = 10.0
    #: a closing connection whose unsent bytes the client does not take is aborted after this.
    close_timeout: float = 5.0
    #: hypercorn: idle keep-alive connections are closed after this.
    keep_alive_timeout: float = 60.0
    #: hypercorn/h11: largest request head (request line and headers) accepted.
    h11_max_incomplete_size: int = 16 * 1024
    #: hypercorn/h2: largest HTTP/2 frame accepted (the protocol's minimum and default).
    h2_max_inbound_frame_size: int = 16 * 1024
    #: hypercorn/h2: concurrent streams per HTTP/2 connection.
    h2_max_concurrent_streams: int = 100
    #: hypercorn/h2: largest header list accepted.
    h2_max_header_list_size: int = 64 * 1024
    #: hypercorn: ASGI events queued per request before the protocol stops reading.
    max_app_queue_size: int = 10
    #: asyncio: unsent bytes buffered per connection before the response waits (backpressure).
    write_buffer_high: int = 64 * 1024

    def __post_init__(self) -> None:
        for name in (
            "max_connections",
            "max_connections_per_ip",
            "max_quic_connections",
            "h11_max_incomplete_size",
            "h2_max_inbound_frame_size",
            "h2_max_concurrent_streams",
            "h2_max_header_list_size",
            "max_app_queue_size",
            "write_buffer_high",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(f"{name} must be an integer >= 1, got {value!r}")
        m = self.max_requests_per_ip
        if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 1):
            raise InvalidArgumentError(
                f"max_requests_per_ip must be an integer >= 1 or None, " f"got {m!r}"
            )
        if not 16 * 1024 <= self.h2_max_inbound_frame_size <= (1 << 24) - 1:
            raise InvalidArgumentError(
                "h2_max_inbound_frame_size must be in 16384..16777215 "
                f"(RFC 9113), got {self.h2_max_inbound_frame_size}"
            )
        for name in (
            "read_timeout",
            "write_timeout",
            "handshake_timeout",
            "close_timeout",
            "keep_alive_timeout",
        ):
            value = getattr(self, name)
            if value is None and name in ("read_timeout", "write_timeout"):
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0 < value < float("inf")
            ):
                raise InvalidArgumentError(
                    f"{name} must be a number of seconds > 0, got " f"{value!r}"
                )


# -- certificates ------------------------------------------------------------------------------


def make_self_signed(names: list[str], directory: str | os.PathLike[str]) -> tuple[str, str]:
    """Write a self-signed certificate (ECDSA P-256, SANs = ``names``) and key; returns paths.

    The key file is created 0600; both files are replaced atomically.
    """
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
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = Path(directory)
    certfile, keyfile = directory / "registry-core-cert.pem", directory / "registry-core-key.pem"
    atomic_write(
        keyfile,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        mode=0o600,
    )
    atomic_write(certfile, cert.public_bytes(serialization.Encoding.PEM))
    return str(certfile), str(keyfile)


def _cache_home() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"


def _self_signed_reusable(certfile: Path, keyfile: Path, names: list[str]) -> bool:
    """The cached pair exists, matches, names exactly ``names`` and is valid for a day more."""
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(certfile.read_bytes())
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(certfile), str(keyfile), password=_no_password)
    except (OSError, ValueError, ssl.SSLError, _EncryptedKey):
        return False
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    have = {str(v) for v in sans.get_values_for_type(x509.IPAddress)}
    have |= set(sans.get_values_for_type(x509.DNSName))
    want = set()
    for name in names:
        try:
            want.add(str(ipaddress.ip_address(name)))
        except ValueError:
            want.add(name)
    expires = cert.not_valid_after_utc
    soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
    return have == want and expires > soon


def self_signed_certificate(host: str, names: list[str] | None = None) -> tuple[str, str]:
    """The self-signed certificate for ``host``, kept in one folder per host and reused.

    The folder is ``$XDG_CACHE_HOME/registry-core/self-signed/<host>`` (``~/.cache`` without
    XDG_CACHE_HOME), mode 0700; the key is 0600. A new pair is written when there is none, when
    it does not name ``names`` (default ``[host, "localhost"]``) or expires within a day;
    concurrent starts serialise on a lock file. Returns ``(certfile, keyfile)``.
    """
    names = list(names or [host, "localhost"])
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", host) or "_"
    if safe in (".", ".."):
        safe = safe.replace(".", "_")
    root = _cache_home() / "registry-core" / "self-signed"
    directory = root / safe
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask; an old folder is fixed
    certfile = directory / "registry-core-cert.pem"
    keyfile = directory / "registry-core-key.pem"
    with open(directory / ".lock", "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            if not _self_signed_reusable(certfile, keyfile, names):
                make_self_signed(names, directory)
            os.chmod(keyfile, 0o600)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    return str(certfile), str(keyfile)


class _EncryptedKey(Exception):
    pass


def _no_password() -> bytes:
    raise _EncryptedKey


def _check_pem(certfile: str, keyfile: str) -> None:
    """Name what is wrong with a certificate / key pair, before OpenSSL's terse errors."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        certs = x509.load_pem_x509_certificates(Path(certfile).read_bytes())
    except OSError as exc:
        raise InvalidArgumentError(f"TLS certificate {certfile}: {exc.strerror or exc}") from None
    except ValueError:
        raise InvalidArgumentError(
            f"TLS certificate {certfile}: no PEM certificate in it "
            "(expected -----BEGIN CERTIFICATE-----)"
        ) from None
    try:
        key = serialization.load_pem_private_key(Path(keyfile).read_bytes(), password=None)
    except OSError as exc:
        raise InvalidArgumentError(f"TLS private key {keyfile}: {exc.strerror or exc}") from None
    except TypeError:
        raise InvalidArgumentError(
            f"TLS private key {keyfile} is encrypted; give an "
            "unencrypted key (it is read at every start)"
        ) from None
    except Exception:  # cryptography raises ValueError or UnsupportedAlgorithm
        raise InvalidArgumentError(
            f"TLS private key {keyfile}: no usable PEM private key in "
            "it (expected -----BEGIN PRIVATE KEY-----)"
        ) from None
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    if certs[0].public_key().public_bytes(enc, pub) != key.public_key().public_bytes(enc, pub):
        raise InvalidArgumentError(
            f"TLS private key {keyfile} does not belong to the "
            f"certificate {certfile} (the first one in the file)"
        )


def _load_tls(
    config: Any, certfile: str, keyfile: str, quic: bool, minimum: str = "1.3"
) -> ssl.SSLContext:
    """The server's TLS context, with the certificate loaded and checked before any bind.

    Raises InvalidArgumentError naming the file and what is wrong with it.
    """
    for what, path in (("certificate", certfile), ("private key", keyfile)):
        p = Path(path)
        if not p.exists():
            raise InvalidArgumentError(f"TLS {what} {path}: no such file")
        if not p.is_file():
            raise InvalidArgumentError(f"TLS {what} {path}: not a regular file")
        if not os.access(p, os.R_OK):
            raise InvalidArgumentError(f"TLS {what} {path}: not readable by this user")
    _check_pem(certfile, keyfile)
    try:
        probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        probe.load_cert_chain(certfile, keyfile, password=_no_password)
    except _EncryptedKey:
        raise InvalidArgumentError(
            f"TLS private key {keyfile} is encrypted; give an "
            "unencrypted key (it is read at every start)"
        ) from None
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc.strerror or str(exc)
        raise InvalidArgumentError(
            f"TLS certificate {certfile} with key {keyfile} cannot be " f"loaded: {reason}"
        ) from None
    if quic:
        from aioquic.quic.configuration import QuicConfiguration

        try:
            QuicConfiguration(is_client=False).load_cert_chain(certfile, keyfile)
        except Exception as exc:  # aioquic raises ValueError / cryptography errors
            raise InvalidArgumentError(
                f"TLS certificate {certfile} with key {keyfile} cannot be "
                f"loaded for HTTP/3: {exc}"
            ) from None
    context: ssl.SSLContext = config.create_ssl_context()
    from ..wire._tls import tls_version

    context.minimum_version = tls_version(minimum)
    return context


def _install_sni(
    store: CertificateStore, config: Any, default: ssl.SSLContext, minimum: str
) -> SNIContexts:
    """Per-name contexts with the default's settings (hypercorn's ciphers, ALPN, options)."""
    from ..certs import CertificateStore
    from ..certs._sni import SNIContexts
    from ..wire._tls import tls_version

    if not isinstance(store, CertificateStore):
        raise InvalidArgumentError(
            f"certificates must be a CertificateStore, got {type(store).__name__}"
        )

    def make(pem: str) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.set_ciphers(config.ciphers)
        context.options = ssl.OP_NO_COMPRESSION
        context.minimum_version = tls_version(minimum)
        context.set_alpn_protocols(config.alpn_protocols)
        context.load_cert_chain(pem, password=_no_password)
        return context

    sni = SNIContexts(store, make)
    sni.install(default)
    return sni


# -- sockets -----------------------------------------------------------------------------------


def _check_port(port: object) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise InvalidArgumentError(
            f"port must be an integer in 0..65535 (0: any free port), " f"got {port!r}"
        )
    return port


def _bind_error(proto: str, host: str, port: int, exc: OSError) -> OSError:
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    why = exc.strerror or str(exc)
    hint = " (HTTP/3; --no-http3 serves TCP only)" if proto == "UDP" else ""
    err = OSError(exc.errno, f"cannot listen on {proto} {where}{hint}: {why}")
    return err


def _bind_pair(host: str, port: int, quic: bool) -> tuple[socket.socket, socket.socket | None]:
    """A TCP socket and (optionally) a UDP socket bound to the same port (port 0: pick one)."""
    _check_port(port)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        tcp = socket.socket(family, socket.SOCK_STREAM)
        try:
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tcp.bind((host, port))
        except OSError as exc:
            tcp.close()
            raise _bind_error("TCP", host, port, exc) from None
        bound = tcp.getsockname()[1]
        if not quic:
            return tcp, None
        udp = socket.socket(family, socket.SOCK_DGRAM)
        try:
            udp.bind((host, bound))
        except OSError as exc:
            tcp.close()
            udp.close()
            if port:
                raise _bind_error("UDP", host, port, exc) from None
            continue
        return tcp, udp
    raise OSError(
        f"cannot listen on {host}: no free port was free for both TCP and UDP " "after 50 tries"
    )


# -- QUIC tuning -------------------------------------------------------------------------------


class _TicketStore:
    """QUIC session tickets issued by this process (bounded; each ticket is used once)."""

    def __init__(self, limit: int = 10_000) -> None:
        self._tickets: LRU[bytes, Any] = LRU(max_entries=limit)

    def add(self, ticket: Any) -> None:
        self._tickets.put(ticket.ticket, ticket)

    def pop(self, label: bytes) -> Any:
        return self._tickets.pop(label)

    def __len__(self) -> int:
        return len(self._tickets)


def _install_quic_tuning() -> None:
    """Teach hypercorn's QUIC server what it lacks (once per process).

    1. Session tickets: hypercorn creates aioquic connections without a ticket handler, so
       clients can never resume (nor send 0-RTT). Connections are created with ours.
    2. ``registry_core_quic`` on the hypercorn Config: QuicConfiguration attributes to set
       (the datagram size, the idle timeout); configs without it are left untouched.
    3. ``registry_core_quic_max_connections`` on the Config: the cap on QUIC connections.

    (The 1024-datagram receive queue is set by our UDP server subclass, :func:`_udp_server`.)
    These reach into hypercorn's internals: when they are missing, this fails loudly naming
    the installed hypercorn version instead of serving HTTP/3 silently untuned.
    """
    try:
        from hypercorn.protocol import quic as _hq
    except ImportError as exc:
        raise _unsupported(f"hypercorn.protocol.quic cannot be imported ({exc})") from None
    hq: Any = _hq

    if getattr(hq, "_registry_core_tuned", False):
        return
    base_connection: Any = getattr(hq, "QuicConnection", None)
    protocol: Any = getattr(hq, "QuicProtocol", None)
    if not isinstance(base_connection, type) or not isinstance(protocol, type):
        raise _unsupported("hypercorn.protocol.quic.QuicConnection / QuicProtocol are missing")
    store = _TicketStore()

    class _TicketingConnection(base_connection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("session_ticket_fetcher", store.pop)
            kwargs.setdefault("session_ticket_handler", store.add)
            super().__init__(*args, **kwargs)

    base_init = vars(protocol).get("__init__")
    if base_init is None:
        raise _unsupported("QuicProtocol defines no __init__")

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        base_init(self, *args, **kwargs)
        tuning = getattr(self.config, "registry_core_quic", None)
        if tuning is None:
            return
        quic_config = getattr(self, "quic_config", None)
        if quic_config is None:
            raise _unsupported("QuicProtocol has no quic_config attribute")
        for name, value in tuning.items():
            if not hasattr(quic_config, name):
                raise _unsupported(f"aioquic's QuicConfiguration has no {name!r}")
            setattr(quic_config, name, value)

    base_handle = vars(protocol).get("handle")
    if base_handle is None:
        raise _unsupported("QuicProtocol defines no handle")
    from aioquic.buffer import Buffer
    from aioquic.quic.packet import PACKET_TYPE_INITIAL, pull_quic_header
    from hypercorn.events import RawData

    async def handle(self: Any, event: Any) -> None:
        # 3. ``registry_core_quic_max_connections``: a new connection (an Initial packet for
        #    an unknown connection ID) beyond the cap is dropped before aioquic builds state
        #    for it. Only long-header packets are looked at; the common case pays nothing.
        cap = getattr(self.config, "registry_core_quic_max_connections", None)
        if cap is not None and isinstance(event, RawData) and event.data[:1] >= b"\x80":
            try:
                header = pull_quic_header(Buffer(data=event.data), host_cid_length=8)
            except ValueError:
                return
            if (
                header.packet_type == PACKET_TYPE_INITIAL
                and header.destination_cid not in self.connections
                and len({id(c) for c in self.connections.values()}) >= cap
            ):
                stats = getattr(self.config, "registry_core_stats", None)
                if stats is not None:
                    stats.quic_refused += 1
                return
        await base_handle(self, event)

    hq.QuicConnection = _TicketingConnection
    setattr(protocol, "__init__", init)  # noqa: B010
    setattr(protocol, "handle", handle)  # noqa: B010
    hq._registry_core_tuned = True
    hq._registry_core_tickets = store


def _hypercorn_parts() -> tuple[Any, Any, Any, Any]:
    """hypercorn's Lifespan, TCPServer, UDPServer and WorkerContext, checked."""
    try:
        from hypercorn.asyncio.lifespan import Lifespan
        from hypercorn.asyncio.tcp_server import TCPServer
        from hypercorn.asyncio.udp_server import UDPServer
        from hypercorn.asyncio.worker_context import WorkerContext
    except ImportError as exc:
        raise _unsupported(f"its asyncio server classes cannot be imported ({exc})") from None
    import inspect

    expected = {
        TCPServer: ["app", "loop", "config", "context", "state", "reader", "writer"],
        UDPServer: ["app", "loop", "config", "context", "state"],
        Lifespan: ["app", "config", "loop", "lifespan_state"],
    }
    for cls, params in expected.items():
        got = list(inspect.signature(cls).parameters)
        if got != params:
            raise _unsupported(
                f"{cls.__name__}({', '.join(got)}) differs from the "
                f"({', '.join(params)}) this module calls"
            )
    return Lifespan, TCPServer, UDPServer, WorkerContext


def _config(
    certfile: str | None, keyfile: str | None, keep_alive_max_requests: int, limits: ServerLimits
) -> Any:
    from hypercorn.config import Config

    class _Config(Config):
        # The app sends Alt-Svc itself (so the QUIC_TRANSPORT flag can withdraw it).
        def response_headers(self, protocol: str) -> list[tuple[bytes, bytes]]:
            return [h for h in super().response_headers(protocol) if h[0] != b"alt-svc"]

    config = _Config()
    config.certfile, config.keyfile = certfile, keyfile
    config.alpn_protocols = ["h2", "http/1.1"]
    config.keep_alive_max_requests = keep_alive_max_requests
    config.keep_alive_timeout = limits.keep_alive_timeout
    config.read_timeout = None  # ours (_Reader): it does not count application compute time
    config.ssl_handshake_timeout = limits.handshake_timeout
    config.h11_max_incomplete_size = limits.h11_max_incomplete_size
    config.h2_max_inbound_frame_size = limits.h2_max_inbound_frame_size
    config.h2_max_concurrent_streams = limits.h2_max_concurrent_streams
    config.h2_max_header_list_size = limits.h2_max_header_list_size
    config.max_app_queue_size = limits.max_app_queue_size
    config.include_server_header = False
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 1.0
    return config


# -- per-connection guards ---------------------------------------------------------------------


def _reset(transport: Any) -> None:
    try:
        sock = transport.get_extra_info("socket")
    except AttributeError:  # an SSL transport whose protocol is already detached (closed)
        sock = None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class _Connection:
    """One accepted TCP connection: activity clock, what the application is doing, and a
    handle to abort it."""

    __slots__ = (
        "busy",
        "closer",
        "gone",
        "ip",
        "last",
        "loop",
        "reading",
        "reason",
        "sending",
        "transport",
        "watchdog",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, ip: str, transport: Any) -> None:
        self.loop = loop
        self.ip = ip
        self.transport = transport
        self.last = loop.time()
        self.busy = 0  # requests the application is computing (not waiting on the client)
        self.sending = 0
        self.reading = 0  # reads waiting on the client
        self.watchdog: asyncio.TimerHandle | None = None  # the read-timeout timer, when armed
        self.reason: str | None = None
        self.closer: asyncio.TimerHandle | None = None  # the close deadline, once closing
        self.gone = False  # the transport is gone (its slot released)

    def touch(self) -> None:
        self.last = self.loop.time()

    def abort(self, reason: str) -> None:
        """Reset the connection now: SO_LINGER 0 makes the kernel drop unsent bytes and send
        RST (a plain close would keep them queued for a client that never reads)."""
        if self.reason is None:
            self.reason = reason
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        _reset(self.transport)

    def client_eof(self, close_timeout: float) -> None:
        """The client closed (or half-closed) its side: close ours now.

        hypercorn tells the application ``http.disconnect`` at EOF but keeps the socket until
        the application returns, so an application that streams (SSE) or waits on anything
        but ``receive`` kept the connection in CLOSE-WAIT, and its per-IP slot, indefinitely.
        Bytes already queued are still flushed (a half-closed client may read them), for at
        most ``close_timeout``; later sends raise (see :class:`_Tracker`), and a handler that
        does not end is cancelled (see ``release`` in ``_run``)."""
        if self.transport.is_closing():
            return
        if self.reason is None:
            self.reason = "client closed"
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        self.transport.close()
        if self.transport.get_write_buffer_size():
            self.loop.call_later(close_timeout, self._unflushed)

    def _unflushed(self) -> None:
        if self.transport.get_write_buffer_size():
            _reset(self.transport)


@dataclass
class _Stats:
    accepted: int = 0
    open: int = 0
    refused_total: int = 0
    refused_per_ip: int = 0
    handshake_failures: int = 0
    read_timeouts: int = 0
    write_timeouts: int = 0
    close_aborts: int = 0
    quic_refused: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _Shutdown:
    """How the server stops: ``draining`` once :meth:`ServerHandle.drain` (or SIGTERM in
    :func:`serve`) began; ``grace`` is how long in-flight requests may still run then."""

    draining: bool = False
    grace: float | None = None


class _Gate:
    """The total and per-IP connection caps (one event loop: no lock needed)."""

    def __init__(self, limits: ServerLimits, stats: _Stats) -> None:
        self.limits = limits
        self.stats = stats
        self.per_ip: dict[str, int] = {}

    def admit(self, ip: str) -> bool:
        if self.stats.open >= self.limits.max_connections:
            self.stats.refused_total += 1
            return False
        if self.per_ip.get(ip, 0) >= self.limits.max_connections_per_ip:
            self.stats.refused_per_ip += 1
            return False
        self.per_ip[ip] = self.per_ip.get(ip, 0) + 1
        self.stats.open += 1
        self.stats.accepted += 1
        return True

    def release(self, ip: str) -> None:
        self.stats.open -= 1
        left = self.per_ip[ip] - 1
        if left:
            self.per_ip[ip] = left
        else:
            del self.per_ip[ip]


class _Reader:
    """hypercorn reads through this: ``read`` fails with TimeoutError once the client has sent
    nothing for ``timeout`` seconds while the server was waiting on it (the clock stands still
    while the application computes a response)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        conn: _Connection,
        timeout: float | None,
        stats: _Stats,
        close_timeout: float,
    ) -> None:
        self._reader = reader
        self._conn = conn
        self._timeout = timeout
        self._stats = stats
        self._close_timeout = close_timeout

    def at_eof(self) -> bool:
        return self._reader.at_eof()

    async def read(self, n: int = -1) -> bytes:
        conn, timeout = self._conn, self._timeout
        if timeout is None:
            data = await self._reader.read(n)
        else:
            # One timer per connection watches the silence (no task per read, as wait_for
            # would make): it resets the connection, which ends this read.
            conn.reading += 1
            if conn.watchdog is None:
                conn.watchdog = conn.loop.call_at(conn.last + timeout, self._check)
            try:
                data = await self._reader.read(n)
            except Exception:
                if conn.reason == "read timeout":
                    raise asyncio.TimeoutError from None  # what hypercorn expects of a timeout
                raise
            finally:
                conn.reading -= 1
            if conn.reason == "read timeout":
                raise asyncio.TimeoutError
        if not data and n:
            # EOF: hypercorn hands the protocol ``Closed`` next (the application is told
            # ``http.disconnect``); the connection and its budget must not wait for the app.
            conn.client_eof(self._close_timeout)
        conn.touch()
        return data

    def _check(self) -> None:
        conn, timeout = self._conn, self._timeout
        conn.watchdog = None
        if not conn.reading or conn.transport.is_closing() or timeout is None:
            return  # nothing waits on the client now: the next read arms the timer again
        if conn.busy or conn.sending:
            conn.touch()  # the application's time, not the client's
        due = conn.last + timeout
        if due <= conn.loop.time():
            self._stats.read_timeouts += 1
            conn.abort("read timeout")  # hypercorn alone would wait for its idle timer
            return
        conn.watchdog = conn.loop.call_at(due, self._check)


class _Writer:
    """hypercorn writes through this: a ``drain`` that makes no progress for ``timeout``
    seconds aborts the connection, and a close whose unsent bytes the client does not take
    within ``close_timeout`` aborts it too (asyncio would otherwise keep them forever)."""

    def __init__(
        self, writer: asyncio.StreamWriter, conn: _Connection, limits: ServerLimits, stats: _Stats
    ) -> None:
        self._writer = writer
        self._conn = conn
        self._timeout = limits.write_timeout
        self._close_timeout = limits.close_timeout
        self._stats = stats

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._writer.get_extra_info(name, default)

    def write(self, data: bytes) -> None:
        if not self._writer.transport.is_closing():  # after an abort: drop, do not log
            self._writer.write(data)

    def write_eof(self) -> None:
        self._writer.write_eof()

    def can_write_eof(self) -> bool:
        return self._writer.can_write_eof()

    def is_closing(self) -> bool:
        return self._writer.is_closing()

    async def drain(self) -> None:
        if self._timeout is None or not self._writer.transport.get_write_buffer_size():
            await self._writer.drain()  # nothing buffered: returns at once, no timer needed
        else:
            try:
                await asyncio.wait_for(self._writer.drain(), self._timeout)
            except asyncio.TimeoutError:
                self._stats.write_timeouts += 1
                self._conn.abort("write timeout")
                raise ConnectionResetError(
                    "the client read nothing for " f"{self._timeout:g}s"
                ) from None
        self._conn.touch()

    def close(self) -> None:
        # hypercorn closes an idle connection (keep-alive timeout, drain) with close() alone:
        # a TLS peer that never answers close_notify would keep it for asyncio's 30 s SSL
        # shutdown timeout. It gets ``close_timeout``, then it is reset.
        self._writer.close()
        conn = self._conn
        if conn.closer is None and not conn.gone:
            conn.closer = conn.loop.call_later(self._close_timeout, self._linger)

    def _linger(self) -> None:
        self._conn.closer = None
        if self._conn.gone:
            return
        self._stats.close_aborts += 1
        self._conn.abort("close timeout")

    async def wait_closed(self) -> None:
        # hypercorn awaits this after close(): a peer that takes neither the unsent bytes nor
        # the TLS close_notify would keep the connection (and its buffers) forever.
        try:
            await asyncio.wait_for(asyncio.shield(self._writer.wait_closed()), self._close_timeout)
        except asyncio.TimeoutError:
            self._stats.close_aborts += 1
            self._conn.abort("close timeout")


class _PerClient:
    """At most ``limit`` requests per client address in the application; the others wait in
    arrival order (one event loop: no lock). A waiter that is cancelled gives its turn on."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active: dict[str, int] = {}
        self.waiting: dict[str, collections.deque[asyncio.Future[None]]] = {}

    async def acquire(self, ip: str) -> None:
        if self.active.get(ip, 0) < self.limit:
            self.active[ip] = self.active.get(ip, 0) + 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.setdefault(ip, collections.deque()).append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release(ip)  # the turn was handed to us: hand it on
            else:
                queue = self.waiting.get(ip)
                if queue is not None and fut in queue:
                    queue.remove(fut)
                    if not queue:
                        del self.waiting[ip]
            raise

    def release(self, ip: str) -> None:
        queue = self.waiting.get(ip)
        while queue:
            fut = queue.popleft()
            if not fut.done():
                if not queue:
                    del self.waiting[ip]
                fut.set_result(None)  # the slot passes on; active stays the same
                return
        self.waiting.pop(ip, None)
        left = self.active[ip] - 1
        if left:
            self.active[ip] = left
        else:
            del self.active[ip]


class _Tracker:
    """ASGI middleware: tells each TCP connection's guards what its requests are doing.

    While the application computes, the read clock stands still; while it waits on
    ``receive`` the clock runs (a slow body is timed out); a ``send`` that does not complete
    within the write timeout (a client that does not read, or never opens its HTTP/2 window)
    aborts the connection.
    """

    def __init__(
        self,
        app: Any,
        connections: dict[tuple[str, int], _Connection],
        limits: ServerLimits,
        stats: _Stats,
    ) -> None:
        self.app = app
        self.connections = connections
        self.write_timeout = limits.write_timeout
        self.stats = stats
        m = limits.max_requests_per_ip
        self.per_client = _PerClient(m) if m is not None else None

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        client = scope.get("client") if scope["type"] == "http" else None
        conn = None
        if client and scope.get("http_version") != "3":
            conn = self.connections.get((client[0], client[1]))
            if conn is not None and conn.transport.is_closing():
                return  # its TCP connection is gone: nobody would read the answer
        if client and self.per_client is not None:
            ip = str(client[0])
            if conn is not None:
                conn.busy += 1  # waiting for a turn is the server's time, not the client's
            try:
                await self.per_client.acquire(ip)
            finally:
                if conn is not None:
                    conn.busy -= 1
                    conn.touch()
            try:
                if conn is None or not conn.transport.is_closing():
                    await self._call(scope, receive, send, conn)
            finally:
                self.per_client.release(ip)
        else:
            await self._call(scope, receive, send, conn)

    async def _call(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
        conn: _Connection | None,
    ) -> None:
        if conn is None:
            await self.app(scope, receive, send)
            return
        write_timeout = self.write_timeout

        async def tracked_receive() -> Any:
            conn.busy -= 1
            try:
                return await receive()
            finally:
                conn.busy += 1
                conn.touch()

        async def tracked_send(message: Any) -> None:
            if conn.transport.is_closing():
                # ASGI: send on a closed connection raises an OSError subclass, so that the
                # application stops producing (reading a 32 MiB file for a reset client).
                raise ConnectionResetError(f"the client connection is closed ({conn.reason})")
            conn.sending += 1
            timer = None
            if write_timeout is not None:

                def stalled() -> None:
                    self.stats.write_timeouts += 1
                    conn.abort("write timeout")

                timer = conn.loop.call_later(write_timeout, stalled)
            try:
                await send(message)
            finally:
                conn.sending -= 1
                conn.touch()
                if timer is not None:
                    timer.cancel()

        conn.busy += 1
        try:
            await self.app(scope, tracked_receive, tracked_send)
        finally:
            conn.busy -= 1
            conn.touch()


def _udp_server(base: Any) -> Any:
    class _UDPServer(base):
        """hypercorn's UDP server with a 1024-datagram receive queue instead of 10: it drops
        what does not fit, so a client opening 32 streams at once lost packets and waited for
        retransmission timers."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if not hasattr(self, "protocol_queue"):
                raise _unsupported("UDPServer has no protocol_queue")
            self.protocol_queue: asyncio.Queue[Any] = asyncio.Queue(1024)

    return _UDPServer


async def _drain_quic(quic: Any, deadline: float, udp_task: asyncio.Task[Any]) -> None:
    """Close HTTP/3 connections as their requests end, until none is left or ``deadline``.

    hypercorn refuses new QUIC connections and streams once terminated, but keeps idle ones
    until the client's idle timeout and blocks on its datagram queue meanwhile; here each
    connection with no request in flight gets a CONNECTION_CLOSE (the client knows at once).
    Checked every 50 ms: hypercorn has no event for "a stream ended".
    """
    loop = asyncio.get_running_loop()
    closed: set[int] = set()
    while not udp_task.done() and loop.time() < deadline:
        connections = getattr(quic, "connections", None)
        if not connections:
            return
        for connection in {id(c): c for c in connections.values()}.values():
            h3 = getattr(connection, "h3", None)
            if id(connection) in closed or (h3 is not None and getattr(h3, "streams", None)):
                continue
            closed.add(id(connection))
            with contextlib.suppress(Exception):
                connection.quic.close(reason_phrase="server shutting down")
                await quic.send_all(connection)
        await asyncio.sleep(0.05)


async def _run(
    app: Any,
    config: Any,
    ssl_context: ssl.SSLContext | None,
    tcp: socket.socket,
    udp: socket.socket | None,
    limits: ServerLimits,
    stop: asyncio.Event,
    ready: Callable[[], None],
    stats: _Stats,
    shutdown: _Shutdown | None = None,
) -> None:
    """Serve until ``stop`` is set; ``ready()`` is called once every listener is up.

    When ``stop`` is set the listener closes at once (new connections are refused), idle
    keep-alive connections are closed, HTTP/2 and HTTP/3 refuse new streams, and requests in
    flight may finish for ``shutdown.grace`` seconds (default: hypercorn's graceful timeout)
    before what remains is reset.

    ``ssl_context`` None: plain HTTP on TCP (hypercorn then speaks HTTP/1.1, and h2c to a client
    that asks for it, under the same limits).
    """
    from hypercorn.utils import wrap_app

    lifespan_cls, tcp_server, udp_server, worker_context = _hypercorn_parts()
    loop = asyncio.get_running_loop()
    connections: dict[tuple[str, int], _Connection] = {}
    tracker: Any = _Tracker(app, connections, limits, stats)
    wrapped = wrap_app(tracker, 0, "asgi")
    state: dict[str, Any] = {}
    lifespan = lifespan_cls(wrapped, config, loop, state)
    lifespan_task = loop.create_task(lifespan.handle_lifespan())
    await lifespan.wait_for_startup()
    if lifespan_task.done() and lifespan_task.exception() is not None:
        raise lifespan_task.exception()  # type: ignore[misc]
    context = worker_context(None)
    gate = _Gate(limits, stats)
    tasks: set[asyncio.Task[Any]] = set()
    # 3.11+: count before the handshake
    upgrade = ssl_context is not None and hasattr(asyncio.StreamWriter, "start_tls")

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        peer = writer.get_extra_info("peername") or ("", 0)
        ip = str(peer[0])
        if not gate.admit(ip):
            _reset(writer.transport)
            return
        key = (ip, int(peer[1]))
        released = False
        handler: asyncio.Future[Any] | None = None
        conn: _Connection | None = None

        def release(_: object = None) -> None:
            # Once the transport is gone the connection's budget is free, even if hypercorn's
            # handler still waits on its own timers (an idle timer outlives a half-sent head);
            # the handler is cancelled if it has not ended by itself after close_timeout.
            nonlocal released
            if not released:
                released = True
                gate.release(ip)
                if conn is not None and conn.watchdog is not None:
                    conn.watchdog.cancel()  # do not keep the connection alive in a timer
                    conn.watchdog = None
                if conn is not None:
                    conn.gone = True
                    if conn.closer is not None:
                        conn.closer.cancel()
                        conn.closer = None
                if handler is not None and not handler.done():
                    loop.call_later(limits.close_timeout, handler.cancel)

        def lost(fut: asyncio.Future[Any]) -> None:
            if not fut.cancelled():
                fut.exception()  # retrieved: a reset connection is not an error here
            release()

        watcher = loop.create_task(writer.wait_closed())
        watcher.add_done_callback(lost)
        try:
            if upgrade:
                try:
                    await writer.start_tls(  # type: ignore[attr-defined,unused-ignore]
                        ssl_context, ssl_handshake_timeout=limits.handshake_timeout
                    )
                except (OSError, ssl.SSLError, asyncio.TimeoutError, ConnectionError):
                    stats.handshake_failures += 1
                    _reset(writer.transport)
                    return
            writer.transport.set_write_buffer_limits(high=limits.write_buffer_high)
            conn = _Connection(loop, ip, writer.transport)
            conn.gone = released  # lost during the handshake: nothing to time out
            connections[key] = conn
            # A task of its own, so that cancelling a lingering handler (see release) does not
            # cancel this callback task, which asyncio would report as an error.
            handler = running = asyncio.ensure_future(
                tcp_server(
                    wrapped,
                    loop,
                    config,
                    context,
                    state,
                    _Reader(reader, conn, limits.read_timeout, stats, limits.close_timeout),
                    _Writer(writer, conn, limits, stats),
                )
            )
            await asyncio.wait({running})
        except asyncio.CancelledError:
            pass  # shutdown: a top-level callback task, nobody awaits it
        finally:
            if handler is not None:
                if not handler.done():
                    handler.cancel()  # this task was cancelled (shutdown)
                else:
                    with contextlib.suppress(asyncio.CancelledError):
                        handler.exception()  # hypercorn handles its own errors; retrieved
            if not writer.transport.is_closing():
                _reset(writer.transport)
            release()
            # Kept registered until the handler ends: a request hypercorn dispatches after the
            # transport went away must find its closed connection (and not run), not nothing.
            if conn is not None and connections.get(key) is conn:
                del connections[key]

    server = await asyncio.start_server(
        on_connection,
        sock=tcp,
        backlog=1024,
        ssl=None if upgrade else ssl_context,
        ssl_handshake_timeout=None if upgrade or ssl_context is None else limits.handshake_timeout,
    )
    udp_task: asyncio.Task[Any] | None = None
    udp_transport = None
    protocol: Any = None
    if udp is not None:
        udp_cls = _udp_server(udp_server)
        udp_transport, protocol = await loop.create_datagram_endpoint(
            lambda: udp_cls(wrapped, loop, config, context, state), sock=udp
        )
        udp_task = loop.create_task(protocol.run())
        await asyncio.sleep(0)  # let it build its QuicProtocol (loads the certificate)
        if udp_task.done():
            udp_task.result()  # raises what failed
    ready()
    waiters: set[asyncio.Future[Any]] = {loop.create_task(stop.wait())}
    if udp_task is not None:
        waiters.add(udp_task)
    try:
        done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for fut in done:
            if fut is udp_task:
                fut.result()
    finally:
        for fut in waiters:
            if fut is not udp_task:
                fut.cancel()
        grace = config.graceful_timeout
        if shutdown is not None and shutdown.grace is not None:
            grace = shutdown.grace
        server.close()  # the listening socket first: a new connection is refused from now on
        await context.terminated.set()
        if tasks:
            await asyncio.wait(set(tasks), timeout=grace)
        for conn in list(connections.values()):
            conn.abort("shutdown")
        if tasks:
            await asyncio.wait(set(tasks), timeout=limits.close_timeout + 1)
        if udp_task is not None:
            quic_protocol = getattr(protocol, "protocol", None)
            await _drain_quic(quic_protocol, loop.time() + grace, udp_task)
            if not udp_task.done():
                udp_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await udp_task
        if udp_transport is not None:
            udp_transport.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), config.graceful_timeout)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(lifespan.wait_for_shutdown(), config.graceful_timeout)
        lifespan_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await lifespan_task


# -- handles -----------------------------------------------------------------------------------


@dataclass
class ServerHandle:
    """A server running on a background thread; ``stop()`` (or leaving ``with``) shuts it down.

    ``stats``: connections accepted / open, refused by each cap (QUIC too), TLS handshake
    failures, read and write timeouts, closes aborted because the client took nothing.
    ``scheme``: ``"https"``, or ``"http"`` for a plain server (``certfile`` is then None).
    """

    app: RegistryApp
    host: str
    port: int
    certfile: str | None
    quic: bool
    limits: ServerLimits = field(default_factory=ServerLimits)
    scheme: str = "https"
    #: the per-name certificates (``start_server(certificates=...)``), else None.
    sni: SNIContexts | None = field(default=None, repr=False)
    _stats: _Stats = field(repr=False, default_factory=_Stats)
    _shutdown: _Shutdown = field(repr=False, default_factory=_Shutdown)
    _loop: asyncio.AbstractEventLoop = field(repr=False, default=None)  # type: ignore[assignment]
    _stop: asyncio.Event = field(repr=False, default=None)  # type: ignore[assignment]
    _thread: threading.Thread = field(repr=False, default=None)  # type: ignore[assignment]

    def url(self, path: str = "/", host: str | None = None) -> str:
        """``scheme://host:port/path`` for this server (``host`` defaults to the bound address;
        an IPv6 address is bracketed)."""
        name = host or self.host
        if ":" in name and not name.startswith("["):
            name = f"[{name}]"
        return f"{self.scheme}://{name}:{self.port}/{path.lstrip('/')}"

    @property
    def stats(self) -> dict[str, int]:
        return self._stats.as_dict()

    @property
    def draining(self) -> bool:
        """True from the moment :meth:`drain` began (a readiness probe answers 503 then)."""
        return self._shutdown.draining

    def drain(self, timeout_s: float = 30.0) -> None:
        """Shut down gracefully: what a load balancer's rolling restart needs.

        At once: :attr:`draining` turns True, the listening socket is closed (a new connection
        is refused), idle keep-alive connections are closed and HTTP/2 / HTTP/3 refuse new
        streams. Requests in flight may finish for up to ``timeout_s`` seconds (each
        connection closes after its last response); whatever still runs then is reset, and
        the server stops. Returns once it has stopped. Safe to call from any thread but the
        server's own, and more than once.
        """
        if (
            isinstance(timeout_s, bool)
            or not isinstance(timeout_s, (int, float))
            or not 0 <= timeout_s < float("inf")
        ):
            raise InvalidArgumentError(
                f"timeout_s must be a number of seconds >= 0, got {timeout_s!r}"
            )
        self._begin_drain(float(timeout_s))
        if self._thread is not None:
            self._thread.join(timeout_s + self.limits.close_timeout + 10.0)

    def _begin_drain(self, timeout_s: float) -> None:
        if self._shutdown.draining:
            return
        self._shutdown.grace = timeout_s
        self._shutdown.draining = True
        if self._thread is None or not self._thread.is_alive():
            return
        with contextlib.suppress(RuntimeError):  # loop already closed
            self._loop.call_soon_threadsafe(self._stop.set)

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None or not self._thread.is_alive():
            return
        with contextlib.suppress(RuntimeError):  # loop already closed
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
    quic: bool | None = None,
    keep_alive_max_requests: int = 1_000_000,
    keep_alive_timeout: float | None = None,
    names: list[str] | None = None,
    quic_max_datagram_size: int = 1200,
    http2: bool = True,
    limits: ServerLimits | None = None,
    flags: FeatureFlags | None = None,
    startup_timeout: float = 30.0,
    tls: bool = True,
    tls_minimum: str = "1.3",
    pq_key_exchange: bool = False,
    certificates: CertificateStore | None = None,
) -> ServerHandle:
    """Start hypercorn for ``app`` on a background thread; returns once every listener is up.

    ``certificates`` (custom domains, docs/domains.md): a TLS client whose SNI names a host
    the store holds gets that host's certificate (re-read when the file is renewed, no
    restart); other names, and clients without SNI, get ``certfile`` (or the self-signed
    one). TCP only: HTTP/3 (aioquic) serves one certificate per endpoint, the default one.

    ``tls_minimum``: the lowest TLS version a TCP client may use ("1.3", the default, or
    "1.2"); HTTP/3 is TLS 1.3 by definition.

    ``pq_key_exchange`` (flag PQ_KEY_EXCHANGE): HTTP/3 also accepts the hybrid X25519MLKEM768
    group, preferred when the client offers it. It patches aioquic's TLS for the whole process
    (every QUIC context, client or server, made afterwards offers it); ignored without QUIC.

    ``app``: a RegistryApp, any ASGI app, or a directory (served by ``RegistryApp(dir,
    flags=flags)``; ``flags`` is used only then). Without ``certfile``/``keyfile`` the
    self-signed certificate for ``host`` is used (:func:`self_signed_certificate`, one per
    host, reused). The certificate is loaded before anything is bound: a missing, unreadable,
    encrypted or mismatched file raises InvalidArgumentError; a port outside 0..65535 raises
    InvalidArgumentError; a bind failure raises OSError naming TCP or UDP and the address.

    ``quic`` (default: ``tls``) also serves HTTP/3 on the same UDP port and sets the app's
    ``Alt-Svc`` (sent while its QUIC_TRANSPORT flag is on).

    ``tls=False`` serves plain HTTP/1.1 on TCP only and ``handle.url()`` says ``http://``;
    ``certfile``/``keyfile``/``names``, ``quic=True`` and ``http2=False`` are refused with
    InvalidArgumentError then (they mean TLS). Every limit but the handshake deadline applies.

    ``limits``: :class:`ServerLimits` (connection caps, timeouts, protocol sizes);
    ``keep_alive_timeout`` overrides its field of that name.
    hypercorn's default of closing a connection after 1000 requests is raised to
    ``keep_alive_max_requests``. QUIC session tickets are issued (resumption and 0-RTT).
    ``quic_max_datagram_size``: UDP payload per QUIC packet; 1200 is safe on any path.
    """
    _require_server_extra()
    from hypercorn.config import Config

    if not hasattr(Config, "create_ssl_context"):
        raise _unsupported("Config.create_ssl_context is missing")
    if not isinstance(tls, bool):
        raise InvalidArgumentError(f"tls must be True or False, got {tls!r}")
    if not tls:
        given = [
            n
            for n, v in (("certfile", certfile), ("keyfile", keyfile), ("names", names))
            if v is not None
        ]
        if given:
            raise InvalidArgumentError(
                f"{' and '.join(given)} given with tls=False: a plain HTTP server has no "
                "certificate (drop them, or serve with TLS)"
            )
        if quic:
            raise InvalidArgumentError("quic=True needs TLS (HTTP/3 is always encrypted)")
        if not http2:
            raise InvalidArgumentError(
                "http2=False is about TLS ALPN; a plain HTTP server speaks HTTP/1.1"
            )
        if certificates is not None:
            raise InvalidArgumentError(
                "certificates given with tls=False: a plain HTTP server has no certificate"
            )
    quic = tls if quic is None else bool(quic)
    limits = limits or ServerLimits()
    if not isinstance(limits, ServerLimits):
        raise InvalidArgumentError(f"limits must be a ServerLimits, got {type(limits).__name__}")
    if keep_alive_timeout is not None:
        from dataclasses import replace

        limits = replace(limits, keep_alive_timeout=keep_alive_timeout)
    if not isinstance(app, RegistryApp) and isinstance(app, (str, os.PathLike)):
        app = RegistryApp(app, flags=flags)
    if (certfile is None) != (keyfile is None):
        raise InvalidArgumentError("give both certfile and keyfile, or neither (self-signed)")
    _check_port(port)
    ssl_context: ssl.SSLContext | None = None
    sni: SNIContexts | None = None
    if tls:
        if certfile is None:
            certfile, keyfile = self_signed_certificate(host, names)
        assert keyfile is not None
        config = _config(certfile, keyfile, keep_alive_max_requests, limits)
        if not http2:  # HTTP/1.1 only on TCP (clients without h2, tests of the ALPN fallback)
            config.alpn_protocols = ["http/1.1"]
        ssl_context = _load_tls(config, certfile, keyfile, quic, tls_minimum)
        if certificates is not None:
            sni = _install_sni(certificates, config, ssl_context, tls_minimum)
    else:
        config = _config(None, None, keep_alive_max_requests, limits)
    if quic:
        _install_quic_tuning()
        if pq_key_exchange:
            from ..transport._pqkex import install as install_pq_kex

            install_pq_kex()
        config.registry_core_quic = {
            "max_datagram_size": quic_max_datagram_size,
            "idle_timeout": limits.keep_alive_timeout,
        }
        config.registry_core_quic_max_connections = limits.max_quic_connections
    tcp, udp = _bind_pair(host, port, quic)
    try:
        bound_port = tcp.getsockname()[1]
        tcp.listen(1024)
        tcp.setblocking(False)
        if udp is not None:
            udp.setblocking(False)
    except OSError as exc:
        tcp.close()
        if udp is not None:
            udp.close()
        raise _bind_error("TCP", host, port, exc) from None
    if quic and isinstance(app, RegistryApp) and app.alt_svc is None:
        app.alt_svc = f'h3=":{bound_port}"; ma=3600'
    handle = ServerHandle(
        app, host, bound_port, certfile, quic, limits, scheme="https" if tls else "http"
    )
    config.registry_core_stats = handle._stats
    handle.sni = sni
    ready = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        handle._loop, handle._stop = loop, asyncio.Event()
        try:
            loop.run_until_complete(
                _run(
                    app,
                    config,
                    ssl_context,
                    tcp,
                    udp,
                    limits,
                    handle._stop,
                    ready.set,
                    handle._stats,
                    handle._shutdown,
                )
            )
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
            tcp.close()
            if udp is not None:
                udp.close()

    handle._thread = threading.Thread(
        target=run, name=f"registry-core-server:{bound_port}", daemon=True
    )
    handle._thread.start()
    if not ready.wait(startup_timeout):
        handle.stop()
        raise TimeoutError(
            f"the server on {host}:{bound_port} did not start within " f"{startup_timeout:g}s"
        )
    if errors:
        handle._thread.join(5)
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
    quic: bool | None = None,
    limits: ServerLimits | None = None,
    flags: FeatureFlags | None = None,
    announce: Callable[[str], Any] | None = None,
    tls: bool = True,
    drain_timeout: float = 30.0,
) -> None:
    """Serve ``directory`` in the foreground until Ctrl-C or SIGTERM (``registry-core serve``).

    SIGTERM drains (:meth:`ServerHandle.drain`): new connections are refused and requests in
    flight get ``drain_timeout`` seconds to finish; Ctrl-C stops at once.

    ``flags``: when None, ``FeatureFlags.load()`` is read here, once (environment and the
    nearest pyproject.toml), and passed to the RegistryApp; it also decides whether Alt-Svc
    advertises HTTP/3. ``announce`` receives the one "serving on" line (default: print to
    stdout), called only once every listener is up with the certificate loaded.

    ``tls=False``: plain HTTP/1.1 on TCP only (``quic`` defaults to ``tls``; certificate
    arguments are refused, see :func:`start_server`); the line then says ``http://``.
    """
    from ..flags import FeatureFlags

    if tls and certfile is None and not self_signed:
        raise InvalidArgumentError("TLS is required: pass --certfile/--keyfile or --self-signed")
    if not tls and self_signed:
        raise InvalidArgumentError("self_signed=True needs TLS (tls=False serves plain HTTP)")
    quic = tls if quic is None else bool(quic)
    _require_server_extra()
    if flags is None:
        flags = FeatureFlags.load()
    elif not isinstance(flags, FeatureFlags):
        raise InvalidArgumentError(
            f"flags must be a FeatureFlags or None, got " f"{type(flags).__name__}"
        )
    if isinstance(directory, RegistryApp):
        app = directory
    else:
        if not Path(directory).is_dir():
            raise InvalidArgumentError(f"{directory}: not a directory")
        app = RegistryApp(directory, flags=flags)
    advertise = quic and flags.is_enabled("QUIC_TRANSPORT")
    if not advertise:
        app.alt_svc = app.alt_svc or ""  # start_server sets it only when None
    handle = start_server(
        app,
        host=host,
        port=port,
        certfile=certfile,
        keyfile=keyfile,
        quic=quic,
        limits=limits,
        tls=tls,
        pq_key_exchange=flags.is_enabled("PQ_KEY_EXCHANGE"),
    )
    if tls:
        line = (
            f"registry-core: serving on {handle.url()} "
            f"(TCP h1/h2{' + UDP h3' if quic else ''}); certificate {handle.certfile}"
        )
    else:
        line = f"registry-core: serving on {handle.url()} (TCP h1, plain HTTP: no TLS)"
    if announce is None:
        print(line, flush=True)
    else:
        announce(line)
    import signal

    with contextlib.suppress(ValueError):  # not in the main thread: Ctrl-C only
        signal.signal(signal.SIGTERM, lambda *_: handle._begin_drain(drain_timeout))
    try:
        while handle._thread.is_alive():
            handle._thread.join(0.5)
    except KeyboardInterrupt:
        handle.stop()
