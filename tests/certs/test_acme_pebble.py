"""ACME end to end against Debian's pebble (tests/_pebble.py): HTTP-01 answered by our
challenge app on a real server, certificates issued for two tenant domains, served by SNI
and verified against pebble's root; a renewal swaps the served certificate without a restart.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509

from _pebble import start_pebble
from registry_core.certs import AcmeManager, CertificateStore
from registry_core.server import start_server

DOMAINS = ["acme.test", "globex.test"]


async def hello(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"hi"})


def served_cert(port: int, server_name: str, cafile: str | None) -> x509.Certificate:
    """The leaf a TLS client sending SNI ``server_name`` gets (verified when ``cafile``)."""
    if cafile is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=cafile)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=20) as raw,
        ctx.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n".encode())
        reply = b""
        while chunk := tls.recv(4096):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"hi")
    return x509.load_der_x509_certificate(der)


@pytest.fixture
def acme_setup(tmp_path: Path):
    holder: dict = {}

    async def challenges(scope, receive, send) -> None:
        await holder["manager"].challenge_app(scope, receive, send)

    http01 = start_server(challenges, tls=False)
    pebble = None
    try:
        pebble = start_pebble(tmp_path / "pebble", http_port=http01.port, domains=DOMAINS)
        store = CertificateStore(tmp_path / "certs")
        manager = AcmeManager(
            store,
            directory_url=pebble.directory_url,
            email="ops@example.org",
            domains=DOMAINS,
            ca_bundle=pebble.ca_bundle,
        )
        holder["manager"] = manager
        yield pebble, store, manager, tmp_path
    finally:
        if pebble is not None:
            pebble.stop()
        http01.stop()


def test_issue_serve_by_sni_and_renew_without_restart(acme_setup) -> None:
    pebble, store, manager, tmp_path = acme_setup
    assert manager.due() == DOMAINS
    assert asyncio.run(manager.ensure()) == DOMAINS
    assert manager.due() == []
    assert asyncio.run(manager.ensure()) == []  # nothing due: no order
    for name in DOMAINS:
        path = store.path(name)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key_file = store.directory / ".acme" / "account-key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    root = tmp_path / "pebble-root.pem"
    root.write_bytes(pebble.root_pem())
    with start_server(hello, quic=False, certificates=store) as handle:
        certs = {name: served_cert(handle.port, name, str(root)) for name in DOMAINS}
        for name, cert in certs.items():
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            assert sans.get_values_for_type(x509.DNSName) == [name]
        # Unknown names (and the default) get the server's own certificate.
        default = x509.load_pem_x509_certificate(Path(handle.certfile).read_bytes())
        assert served_cert(handle.port, "unknown.test", None) == default
        with pytest.raises(ssl.SSLCertVerificationError):
            served_cert(handle.port, "unknown.test", str(root))
        loads = handle.sni.loads

        # Renewal: a clock two thirds into acme.test's lifetime makes it due; the server
        # picks the new file up at the next handshake.
        info = store.info("acme.test")
        assert info is not None
        late = info.not_valid_after - (info.not_valid_after - info.not_valid_before) / 4
        manager._now = lambda: late
        assert manager.due() == DOMAINS
        manager.domains = ["acme.test"]
        assert asyncio.run(manager.ensure()) == ["acme.test"]
        renewed = served_cert(handle.port, "acme.test", str(root))
        assert renewed.serial_number != certs["acme.test"].serial_number
        assert renewed.serial_number == store.info("acme.test").serial_number
        assert served_cert(handle.port, "globex.test", str(root)) == certs["globex.test"]
        assert handle.sni.loads == loads + 1


def test_unknown_domain_order_fails_with_a_clear_error(acme_setup, tmp_path) -> None:
    pebble, store, manager, _ = acme_setup
    other = AcmeManager(
        store,
        directory_url=pebble.directory_url,
        email=None,
        domains=["nowhere.test"],  # the DNS server answers NXDOMAIN
        ca_bundle=pebble.ca_bundle,
        timeout_s=30,
    )
    from registry_core.certs._acme import AcmeError

    with pytest.raises(AcmeError, match="nowhere.test"):
        other.ensure_sync()
    assert "nowhere.test" not in store


def test_acme_server_tls_is_verified(acme_setup) -> None:
    """Without pebble's CA the ACME directory's certificate is refused (verification is on)."""
    pebble, store, _, _ = acme_setup
    from registry_core.certs._acme import AcmeError

    unverified = AcmeManager(
        store, directory_url=pebble.directory_url, email=None, domains=["acme.test"]
    )
    with pytest.raises(AcmeError, match="certificate verify failed|SSL"):
        unverified.ensure_sync()
