"""Content types describe the stored bytes; stored-compressed files are never encoded again."""

from __future__ import annotations

import gzip
import io
import json
import tarfile

import pytest

from registry_core.compress import Compressor
from registry_core.flags import FeatureFlags
from registry_core.server import MemoryStorage, RegistryApp
from registry_core.storage._types import content_type_for

ON = {"ZSTD_COMPRESSION": True, "BROTLI_COMPRESSION": True}


@pytest.mark.parametrize(
    ("name", "media"),
    [
        ("pkg-1.0.tar.gz", "application/gzip"),
        ("pkg-1.0.TGZ", "application/gzip"),
        ("data.json.gz", "application/gzip"),
        ("pkg-1.0-py3-none-any.whl", "application/zip"),
        ("pkg-1.0.zip", "application/zip"),
        ("pkg-1.0.tar.bz2", "application/x-bzip2"),
        ("pkg-1.0.tar.xz", "application/x-xz"),
        ("pkg-1.0.tar", "application/x-tar"),
        ("pkg-1.0-py3-none-any.whl.metadata", "text/plain; charset=utf-8"),
        ("index.json", "application/json"),
        ("notes.txt", "text/plain; charset=utf-8"),
        ("blob.bin", "application/octet-stream"),
        ("noextension", "application/octet-stream"),
    ],
)
def test_content_type_for(name, media):
    assert content_type_for("a/b/" + name) == media


def _sdist() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        data = b"print('hello')\n" * 2000
        info = tarfile.TarInfo("pkg-1.0/setup.py")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_sdist_is_served_as_stored_bytes_never_double_gzipped(call):
    sdist = _sdist()
    app = RegistryApp(MemoryStorage({"p/pkg-1.0.tar.gz": sdist}), flags=FeatureFlags(overrides=ON))
    for coding in ("gzip", "zstd", "br", "gzip, zstd, br"):
        status, headers, body, _ = call(
            app, "GET", "/p/pkg-1.0.tar.gz", [("accept-encoding", coding)]
        )
        assert status == 200
        assert headers["content-type"] == "application/gzip"
        assert "content-encoding" not in headers
        assert body == sdist  # a client saving the raw body gets the sdist itself
        assert gzip.decompress(body)[:9] == b"pkg-1.0/s"
    assert app.stats.encodings_computed == 0


def test_wheel_is_not_encoded_and_json_is(call):
    from _servers import make_versions

    wheel = make_versions(1)[0][1]
    doc = json.dumps({"files": [f"pkg-{i}.whl" for i in range(3000)]}).encode()
    app = RegistryApp(
        MemoryStorage({"p/pkg-1.0-py3-none-any.whl": wheel, "p/index.json": doc}),
        flags=FeatureFlags(overrides=ON),
    )
    status, headers, body, _ = call(
        app, "GET", "/p/pkg-1.0-py3-none-any.whl", [("accept-encoding", "zstd")]
    )
    assert headers["content-type"] == "application/zip" and "content-encoding" not in headers
    assert body == wheel
    # equal preference: the coding and level Compressor.auto picks for the payload
    status, headers, body, _ = call(app, "GET", "/p/index.json", [("accept-encoding", "zstd, br")])
    assert headers["content-type"] == "application/json"
    advice = Compressor.auto(doc, content_type="application/json")
    assert (advice.coding, headers["content-encoding"]) == ("br", "br")
    assert body == Compressor("br", advice.level).compress(doc) and len(body) < len(doc) // 5
    big = doc * 4
    app.storage.put("p/big.json", big)
    status, headers, body, _ = call(app, "GET", "/p/big.json", [("accept-encoding", "br, zstd")])
    advice = Compressor.auto(big, content_type="application/json")
    assert (advice.coding, headers["content-encoding"]) == ("zstd", "zstd")
    # the level of Compressor.auto, without its long window (RFC 9659: 8 MiB for HTTP)
    assert body == Compressor("zstd", advice.level).compress(big)
    assert Compressor("zstd").decompress(body) == big


def test_encoding_is_refused_for_large_files(call):
    doc = b'{"a": 1}\n' * 20000
    app = RegistryApp(
        MemoryStorage({"big.json": doc}), flags=FeatureFlags(overrides=ON), max_encode_bytes=1000
    )
    status, headers, body, _ = call(app, "GET", "/big.json", [("accept-encoding", "gzip")])
    assert status == 200 and "content-encoding" not in headers and body == doc


def test_head_never_encodes_but_reports_a_cached_encoding(call):
    doc = b'{"name": "pkg", "files": []}\n' * 3000
    app = RegistryApp(MemoryStorage({"p/index.json": doc}), flags=FeatureFlags(overrides=ON))
    status, headers, body, _ = call(app, "HEAD", "/p/index.json", [("accept-encoding", "zstd")])
    assert status == 200 and body == b"" and "content-encoding" not in headers
    assert headers["content-length"] == str(len(doc)) and app.stats.encodings_computed == 0
    _, got, encoded, _ = call(app, "GET", "/p/index.json", [("accept-encoding", "zstd")])
    assert got["content-encoding"] == "zstd" and app.stats.encodings_computed == 1
    status, headers, body, _ = call(app, "HEAD", "/p/index.json", [("accept-encoding", "zstd")])
    assert headers["content-encoding"] == "zstd" and headers["content-length"] == str(len(encoded))
    assert body == b"" and app.stats.encodings_computed == 1
