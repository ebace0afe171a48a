"""TLS 1.3 is the floor on both sides by default; 1.2 only when asked for (``tls_minimum``)."""

from __future__ import annotations

import asyncio
import socket
import ssl

import pytest

from registry_core.errors import InvalidArgumentError, TransportError
from registry_core.server import MemoryStorage, RegistryApp, start_server
from registry_core.transport import Transport

pytestmark = pytest.mark.network


def _handshake(port: int, ca: str, version: ssl.TLSVersion) -> str:
    """The version negotiated by a stdlib client capped at ``version`` (raises if refused)."""
    ctx = ssl.create_default_context(cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = version
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return tls.version() or ""


@pytest.fixture(params=["1.3", "1.2"])
def floor_server(request, pki):
    _, cert, key = pki
    app = RegistryApp(MemoryStorage({"a.txt": b"hello"}))
    handle = start_server(app, certfile=cert, keyfile=key, quic=False, tls_minimum=request.param)
    yield request.param, handle
    handle.stop()


def test_server_floor(floor_server, pki) -> None:
    floor, handle = floor_server
    ca = pki[0]
    assert _handshake(handle.port, ca, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    if floor == "1.3":
        with pytest.raises(ssl.SSLError):
            _handshake(handle.port, ca, ssl.TLSVersion.TLSv1_2)
    else:
        assert _handshake(handle.port, ca, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"


def test_transport_client_floor_is_on_the_wire(pki) -> None:
    """A stdlib TLS server capped at 1.2: Transport refuses it by default, 1.2 connects."""
    ca, cert, key = pki
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert, key)
    sctx.maximum_version = ssl.TLSVersion.TLSv1_2
    sctx.set_alpn_protocols(["http/1.1"])

    async def main() -> tuple[object, object]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                await writer.drain()
            except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=sctx)
        port = server.sockets[0].getsockname()[1]
        url = f"https://127.0.0.1:{port}/x"
        results: list[object] = []
        async with server:
            for minimum in ("1.3", "1.2"):
                try:
                    async with Transport(verify=ca, http3=False, tls_minimum=minimum) as t:
                        results.append((await t.get(url)).content)
                except TransportError as exc:
                    results.append(exc)
        return results[0], results[1]

    refused, accepted = asyncio.run(main())
    assert isinstance(refused, TransportError)
    assert accepted == b"ok"


def test_bad_floor_names_are_refused(pki) -> None:
    with pytest.raises(InvalidArgumentError):
        Transport(tls_minimum="1.1")
    _, cert, key = pki
    with pytest.raises(InvalidArgumentError):
        start_server(RegistryApp(MemoryStorage()), certfile=cert, keyfile=key, tls_minimum="1.0")
