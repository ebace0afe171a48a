"""The patch/artifact resource store of the MCP tools: URI encode/decode round trip (property
test), arbitrary strings never crash the decoder, the byte bound evicts, MIME types."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from registry_core.mcp._resources import KINDS, BlobStore, mime_for


@given(st.sampled_from(KINDS), st.binary(min_size=32, max_size=32))
def test_uri_round_trip(kind: str, raw: bytes) -> None:
    store = BlobStore("127.0.0.1:8080")
    digest = raw.hex()
    assert store.parse_uri(store.uri(kind, digest)) == (kind, digest)
    assert store.parse_uri(store.uri(kind, digest.upper())) == (kind, digest)


@given(st.text(max_size=300))
def test_parse_uri_never_raises(text: str) -> None:
    store = BlobStore("local")
    got = store.parse_uri(text)
    if got is not None:
        kind, digest = got
        assert kind in KINDS and len(digest) == 64 and int(digest, 16) >= 0
    assert store.parse_uri("registry://local/-/patch/" + text) in (None, ("patch", text.lower()))


def test_put_get_bound_and_mime() -> None:
    store = BlobStore("local", max_bytes=100)
    a = store.put("patch", b"a" * 60, "application/x")
    assert a.sha256 == hashlib.sha256(b"a" * 60).hexdigest() and a.size == 60
    assert store.get("patch", a.sha256.upper()) == a
    assert store.get("artifact", a.sha256) is None  # kinds are separate
    b = store.put("artifact", b"b" * 60, "application/zip")
    assert store.get("patch", a.sha256) is None and store.get("artifact", b.sha256) == b
    assert store.put("patch", b"c" * 101, "x") is not None  # too big to keep: not stored
    assert store.stats() == {"entries": 1, "bytes": 60}
    assert mime_for("x-1.0-py3-none-any.whl") == "application/zip"
    assert mime_for("x-1.0.tar.gz") == "application/gzip"
    assert mime_for("x.bin") == "application/octet-stream"
