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


def _temp_cert_dirs() -> set[str]:
    import tempfile

    return {p.name for p in Path(tempfile.gettempdir()).glob("registry-core-cert-*")}


def test_self_signed_folder_is_one_per_host_and_reused(tmp_path, monkeypatch):
    """Two starts without a certificate leave one folder (0700) with one key (0600), reused;
    nothing is left in the system temp folder."""
    import stat

    from registry_core.server import MemoryStorage, RegistryApp, start_server

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    before = _temp_cert_dirs()
    storage = MemoryStorage()
    storage.put("a.txt", b"a")
    certs = []
    for _ in range(2):
        with start_server(RegistryApp(storage), quic=False) as srv:
            certs.append(Path(srv.certfile).read_bytes())
    root = tmp_path / "cache" / "registry-core" / "self-signed"
    folders = [p for p in root.iterdir()]
    assert [p.name for p in folders] == ["127.0.0.1"]
    assert stat.S_IMODE(folders[0].stat().st_mode) == 0o700
    key = folders[0] / "registry-core-key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert certs[0] == certs[1]  # reused, not regenerated
    assert _temp_cert_dirs() == before


def test_self_signed_is_regenerated_when_names_change_or_files_break(tmp_path, monkeypatch):
    from registry_core.server import self_signed_certificate

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cert1, key1 = self_signed_certificate("127.0.0.1")
    first = Path(cert1).read_bytes()
    assert self_signed_certificate("127.0.0.1") == (cert1, key1)
    assert Path(cert1).read_bytes() == first
    cert2, _ = self_signed_certificate("127.0.0.1", ["127.0.0.1", "registry.test"])
    assert cert2 == cert1 and Path(cert2).read_bytes() != first  # new names: new pair
    Path(key1).write_text("truncated")
    self_signed_certificate("127.0.0.1", ["127.0.0.1", "registry.test"])
    from cryptography.hazmat.primitives import serialization

    serialization.load_pem_private_key(Path(key1).read_bytes(), password=None)  # repaired


def test_self_signed_host_cannot_escape_the_cache_folder(tmp_path, monkeypatch):
    from registry_core.server import self_signed_certificate

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "c"))
    for host in ("../../evil", "..", "a/b", "::1"):
        cert, _ = self_signed_certificate(host, ["localhost"])
        root = (tmp_path / "c" / "registry-core" / "self-signed").resolve()
        assert Path(cert).resolve().parent.parent == root
    assert not (tmp_path / "evil").exists()
