"""`registry-core serve --self-signed`: the generated certificate is a proper end-entity
certificate that clients can pin (verify=the certificate file) over HTTP/2 and HTTP/3."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

pytestmark = pytest.mark.network


def test_self_signed_certificate_is_a_pinnable_leaf(tmp_path):
    from cryptography import x509

    from registry_core import Transport
    from registry_core.server import MemoryStorage, RegistryApp
    from registry_core.server._serve import make_self_signed, start_server

    cert_path, key_path = make_self_signed(["127.0.0.1", "localhost"], tmp_path)
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)

    storage = MemoryStorage()
    storage.put("simple/pkg/pkg-1.0.txt", b"hello registry")
    app = RegistryApp(storage)
    with start_server(app, certfile=cert_path, keyfile=key_path) as srv:

        from registry_core.flags import FeatureFlags

        quic = FeatureFlags(overrides={"QUIC_TRANSPORT": True})

        async def fetch(http3):
            async with Transport(verify=cert_path, http3=http3, flags=quic) as t:
                r = await t.get(srv.url("simple/pkg/pkg-1.0.txt"))
                return r.status, r.content, r.http_version

        assert asyncio.run(fetch(False)) == (200, b"hello registry", "HTTP/2")
        assert asyncio.run(fetch(True)) == (200, b"hello registry", "HTTP/3")
