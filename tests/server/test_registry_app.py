"""RegistryApp over the real hypercorn server, exercised with plain httpx (the anchor client)."""

from __future__ import annotations

import hashlib
import ssl

import httpx
import pytest

from _servers import url
from registry_core.server import MemoryStorage, RegistryApp
from registry_core.server._storage import DirectoryStorage, validate_path
from registry_core.wire import etag_for, parse_digest

pytestmark = pytest.mark.network


@pytest.fixture(scope="module")
def client(pki):
    ca, _, _ = pki
    with httpx.Client(http2=True, verify=ssl.create_default_context(cafile=ca)) as c:
        yield c


def _get(client, server, path, **headers):
    return client.get(url(server, path, "127.0.0.1"), headers=headers)


def test_serves_file_at_its_path_with_etag_and_digests(client, server, artifacts):
    path = "/simple/pkg/pkg-1.1-py3-none-any.whl"
    r = _get(client, server, path)
    data = artifacts[1][path]
    assert r.status_code == 200 and r.http_version == "HTTP/2"
    assert r.content == data
    assert r.headers["etag"] == etag_for(data)
    assert parse_digest(r.headers["repr-digest"])["sha-256"] == hashlib.sha256(data).digest()
    assert r.headers["content-type"] == "application/zip"
    assert r.headers["accept-ranges"] == "bytes"


def test_if_none_match_gives_304(client, server, artifacts):
    data = artifacts[1]["/small.txt"]
    r = _get(client, server, "/small.txt", **{"if-none-match": etag_for(data)})
    assert r.status_code == 304 and r.content == b""
    r = _get(client, server, "/small.txt", **{"if-none-match": '"nope", ' + etag_for(data)})
    assert r.status_code == 304


def test_missing_and_escaping_paths_are_404(client, server):
    for path in ("/nope.whl", "/simple/../../etc/passwd", "/%2e%2e/etc/passwd", "/.hidden"):
        assert _get(client, server, path).status_code == 404, path


def test_post_is_405(client, server):
    r = client.post(url(server, "/small.txt", "127.0.0.1"), content=b"x")
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"


def test_head_has_headers_and_no_body(client, server, artifacts):
    r = client.head(url(server, "/blob/1mib.bin", "127.0.0.1"))
    assert r.status_code == 200 and r.content == b""
    assert int(r.headers["content-length"]) == 1 << 20


def test_text_is_compressed_with_negotiated_coding(client, server, artifacts):
    data = artifacts[1]["/simple/pkg/index.json"]
    for coding in ("zstd", "gzip", "br"):
        r = _get(client, server, "/simple/pkg/index.json", **{"accept-encoding": coding})
        assert r.headers["content-encoding"] == coding
        assert r.content == data  # httpx decodes
        assert int(r.headers["content-length"]) < len(data) // 4
    r = _get(client, server, "/simple/pkg/index.json", **{"accept-encoding": "identity"})
    assert "content-encoding" not in r.headers and r.content == data


def test_precompressed_artifacts_are_sent_as_is(client, server, artifacts):
    for path in ("/simple/pkg/pkg-1.0.tar.gz", "/log/build.log.gz"):
        for coding in ("zstd", "gzip", "br"):
            with client.stream(
                "GET", url(server, path, "127.0.0.1"), headers={"accept-encoding": coding}
            ) as r:
                raw = b"".join(r.iter_raw())
            assert r.headers["content-type"] == "application/gzip"
            assert "content-encoding" not in r.headers
            assert raw == artifacts[1][path]  # the stored bytes, not gzip inside zstd


def test_alt_svc_advertises_h3_on_same_port(client, server):
    r = _get(client, server, "/small.txt")
    assert r.headers["alt-svc"] == f'h3=":{server.port}"; ma=3600'


def test_alt_svc_withdrawn_when_quic_flag_off(artifacts):
    import asyncio

    from _servers import flags

    app = RegistryApp(artifacts[0], flags=flags(QUIC_TRANSPORT=False), alt_svc='h3=":1"')
    status, headers, _ = asyncio.run(app.handle("GET", "/small.txt", {}))
    assert status == 200 and "alt-svc" not in dict(headers)
    app = RegistryApp(artifacts[0], flags=flags(), alt_svc='h3=":1"')
    assert dict(asyncio.run(app.handle("GET", "/small.txt", {}))[1])["alt-svc"] == 'h3=":1"'


def test_dcz_against_an_older_version(client, server, artifacts):
    from registry_core.compress import Compressor, Dictionary
    from registry_core.wire._dictionary import available_dictionary

    old = artifacts[1]["/simple/pkg/pkg-1.0-py3-none-any.whl"]
    new = artifacts[1]["/simple/pkg/pkg-1.1-py3-none-any.whl"]
    r = client.get(
        url(server, "/simple/pkg/pkg-1.1-py3-none-any.whl", "127.0.0.1"),
        headers={
            "accept-encoding": "dcz",
            "available-dictionary": available_dictionary(hashlib.sha256(old).digest()),
        },
    )
    # httpx cannot decode dcz: read the raw body and decode with the old version.
    assert r.headers["content-encoding"] == "dcz"
    assert "available-dictionary" in r.headers["vary"]
    raw = r.content
    assert Compressor("dcz", dictionary=Dictionary(old)).decompress(raw) == new
    assert len(raw) < len(new) // 2


def test_use_as_dictionary_is_sent(client, server):
    r = _get(client, server, "/simple/pkg/pkg-1.0-py3-none-any.whl")
    assert r.headers["use-as-dictionary"] == 'match="/simple/pkg/*"'


def test_hypercorn_request_limit_is_raised_and_reaches_hypercorn(pki, goaway_server):
    """The default lifts hypercorn's 1000-requests-per-connection; an explicit one is applied
    (the goaway_server closes after 5, so 12 sequential requests need at least 2 connections)."""
    import inspect

    from registry_core.server import start_server

    default = inspect.signature(start_server).parameters["keep_alive_max_requests"].default
    assert default >= 1_000_000
    ca, _, _ = pki
    with httpx.Client(http2=True, verify=ssl.create_default_context(cafile=ca)) as c:
        ports = set()
        for _ in range(12):
            try:
                r = c.get(url(goaway_server, "/small.txt", "127.0.0.1"))
            except httpx.RemoteProtocolError:  # plain httpx does not replay after GOAWAY
                continue
            ports.add(r.extensions["network_stream"].get_extra_info("client_addr")[1])
    assert len(ports) >= 2


def test_storage_paths():
    assert validate_path("/a/b.whl") == "a/b.whl"
    for bad in ("/", "/a/../b", "/a//b", "/.git/config", "/a\\b", "/a\x00"):
        assert validate_path(bad) is None, bad


def test_memory_storage_and_sha_lookup():
    s = MemoryStorage({"a/x.bin": b"one", "a/y.bin": b"two"})
    assert s.find_by_sha256(hashlib.sha256(b"two").digest()) == "a/y.bin"
    assert s.find_by_sha256(hashlib.sha256(b"three").digest()) is None
    assert s.stat("a/x.bin").size == 3


def test_directory_storage_refuses_symlink_escape(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "secret").write_bytes(b"secret")
    (tmp_path / "root" / "link").symlink_to(tmp_path / "secret")
    s = DirectoryStorage(tmp_path / "root")
    assert s.stat("link") is None
