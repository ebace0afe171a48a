"""start_server(certificates=store): the certificate by SNI, hot reload, last good kept;
the HTTP-01 challenge app. Real TLS on loopback; certificates from a trustme CA."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path

import pytest
import trustme
from cryptography import x509

from registry_core.certs import AcmeManager, CertificateStore
from registry_core.errors import InvalidArgumentError
from registry_core.server import start_server


async def hello(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"hi"})


def leaf_for(
    port: int, name: str, cafile: str, alpn: list[str] | None = None
) -> tuple[x509.Certificate, str | None]:
    ctx = ssl.create_default_context(cafile=cafile)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=20) as raw,
        ctx.wrap_socket(raw, server_hostname=name) as tls,
    ):
        return x509.load_der_x509_certificate(
            tls.getpeercert(binary_form=True)
        ), tls.selected_alpn_protocol()


def put(store: CertificateStore, ca: trustme.CA, name: str) -> int:
    leaf = ca.issue_cert(name)
    return store.put(
        name, b"".join(p.bytes() for p in leaf.cert_chain_pems), leaf.private_key_pem.bytes()
    ).serial_number


def test_sni_choice_reload_and_last_good(tmp_path: Path) -> None:
    ca = trustme.CA()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    store = CertificateStore(tmp_path / "certs")
    serials = {name: put(store, ca, name) for name in ("acme.test", "globex.test")}
    with start_server(hello, quic=False, certificates=store, tls_minimum="1.2") as handle:
        for name, serial in serials.items():
            cert, alpn = leaf_for(handle.port, name, str(bundle), ["h2", "http/1.1"])
            assert cert.serial_number == serial
            assert alpn == "h2"  # the per-name context keeps the server's ALPN
        # A name added while running is served at once; a replaced file is re-read.
        new = put(store, ca, "initech.test")
        assert leaf_for(handle.port, "initech.test", str(bundle))[0].serial_number == new
        renewed = put(store, ca, "acme.test")
        assert leaf_for(handle.port, "acme.test", str(bundle))[0].serial_number == renewed
        # A broken file: the last good certificate stays in service.
        store.path("acme.test").write_bytes(b"garbage")
        assert leaf_for(handle.port, "acme.test", str(bundle))[0].serial_number == renewed
        assert handle.sni.load_failures == 1
        # Removed: the default certificate answers.
        store.remove("globex.test")
        default = Path(handle.certfile).read_bytes()
        cert, _ = leaf_for(handle.port, "localhost", handle.certfile)
        assert cert == x509.load_pem_x509_certificate(default)
        with pytest.raises(ssl.SSLCertVerificationError):
            leaf_for(handle.port, "globex.test", str(bundle))


def test_certificates_need_tls_and_a_store(tmp_path) -> None:
    store = CertificateStore(tmp_path)
    with pytest.raises(InvalidArgumentError, match="tls=False"):
        start_server(hello, tls=False, certificates=store)
    with pytest.raises(InvalidArgumentError, match="CertificateStore"):
        start_server(hello, quic=False, certificates=str(tmp_path))  # type: ignore[arg-type]


async def call(app, path: str, method: str = "GET") -> tuple[int, bytes]:
    sent = []

    async def send(message) -> None:
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    await app({"type": "http", "method": method, "path": path, "headers": []}, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_challenge_app_answers_pending_tokens_only(tmp_path) -> None:
    manager = AcmeManager(
        CertificateStore(tmp_path),
        directory_url="https://a.example/dir",
        email=None,
        domains=["a.test"],
    )
    manager._pending["tok-1"] = b"tok-1.thumb"
    app = manager.challenge_app
    assert app is not None
    assert asyncio.run(call(app, "/.well-known/acme-challenge/tok-1")) == (200, b"tok-1.thumb")
    assert asyncio.run(call(app, "/.well-known/acme-challenge/tok-1", "HEAD")) == (200, b"")
    assert asyncio.run(call(app, "/.well-known/acme-challenge/tok-2"))[0] == 404
    assert asyncio.run(call(app, "/.well-known/acme-challenge/tok-1", "POST"))[0] == 404
    assert asyncio.run(call(app, "/elsewhere"))[0] == 404
    wrapped = manager.wrap(hello)
    assert asyncio.run(call(wrapped, "/elsewhere")) == (200, b"hi")
    assert asyncio.run(call(wrapped, "/.well-known/acme-challenge/tok-1")) == (200, b"tok-1.thumb")
