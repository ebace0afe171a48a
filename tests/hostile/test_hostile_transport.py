"""Hostile responses for the client (issue 10: R5, R12, oversized bodies, digests, headers).

Each test builds the hostile server here: a small ASGI app driven in-process through the
Transport's seam (``httpx.ASGITransport``), answering with crafted 226 patches (correct
Content-Digest, so only the patch itself is hostile), oversized bodies, SF edge cases in digest
fields and garbage headers. Expected: the full artifact (one retry without delta headers,
digest-checked) or a ``registry_core.errors`` class; never another exception; nothing left on
disk but a complete ``dest``. Peak memory is bounded with tracemalloc (allowance measured
below); no wall-clock assertions.

Measured on the fixed tree (tracemalloc peak during one whole fetch, patch and fallback
included, 2-core VM): chain bomb 1.3 MiB, declared 2 GiB target 0.1 MiB, archive patch on a
non-reference zlib 0.1 MiB. Before (checked on the previous tree with the loopback variants at
the end of this file, which need no seam): the chain bomb escaped as a bare MemoryError, the
declared-2-GiB and corrupt patches raised TransportError on every try.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import tracemalloc
import zipfile

import httpx
import pytest
import zstandard

from registry_core.delta import DeltaAggregator
from registry_core.delta._format import Codec, Method, Section, serialize
from registry_core.errors import (
    DigestMismatchError,
    RegistryCoreError,
    ResponseTooLargeError,
    TransportError,
)
from registry_core.flags import FeatureFlags
from registry_core.transport import Transport
from registry_core.wire import etag_for, format_digest

MiB = 1 << 20
#: Peak traced allocation allowed while a hostile patch is dropped: measured 0.1-1.3 MiB
#: (above); 16 MiB leaves room and still catches any buffer of the declared sizes.
PEAK_ALLOWANCE = 16 * MiB
URL = "https://registry.test/pkg/pkg-1.1-py3-none-any.whl"
FLAGS = FeatureFlags(overrides={"DELTA_AGGREGATOR": True, "ZSTD_COMPRESSION": True})


def wheel(version: str, extra: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(12):
            body = b"".join(b"def f%d_%d(x):\n    return x * %d\n" % (i, j, j) for j in range(300))
            zf.writestr(
                zipfile.ZipInfo(f"pkg/mod{i}.py", (2024, 1, 1, 0, 0, 0)),
                body + extra,
                zipfile.ZIP_DEFLATED,
            )
        zf.writestr("pkg.dist-info/METADATA", f"Name: pkg\nVersion: {version}\n")
    return buf.getvalue()


OLD, NEW = wheel("1.0"), wheel("1.1", b"# changed\n")


class HostileServer:
    """226 with ``patch`` to any request carrying A-IM (whatever Delta-Engines says); the
    artifact, with its digests, otherwise. ``full_headers`` overrides the 200's headers."""

    def __init__(
        self,
        patch: bytes | None,
        *,
        target: bytes = NEW,
        patch_headers: dict[str, str] | None = None,
        full_headers: dict[str, str] | None = None,
        full_body: bytes | None = None,
    ):
        self.patch, self.target = patch, target
        self.patch_headers = patch_headers or {}
        self.full_headers, self.full_body = full_headers, full_body
        self.requests: list[dict[str, str]] = []

    async def __call__(self, scope, receive, send):
        assert scope["type"] == "http"
        req = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        self.requests.append(req)
        if "a-im" in req and self.patch is not None:
            status, body = 226, self.patch
            headers = {
                "im": "rcdelta",
                "etag": etag_for(self.target),
                "repr-digest": format_digest(self.target),
                "content-digest": format_digest(body),
                **self.patch_headers,
            }
        else:
            status, body = 200, self.target if self.full_body is None else self.full_body
            headers = {"etag": etag_for(self.target), "content-digest": format_digest(body)}
            if self.full_headers is not None:
                headers = self.full_headers
        headers.setdefault("content-length", str(len(body)))
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": body})


def fetch(app, *, have=OLD, dest=None, **kw):
    async def main():
        async with Transport(transport=httpx.ASGITransport(app=app), flags=FLAGS, **kw) as t:
            return await t.fetch(URL, have=have, dest=dest), t.stats

    tracemalloc.start()
    try:
        data, stats = asyncio.run(main())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return data, stats, peak


def header(base: bytes, target: bytes, target_size: int | None = None) -> dict:
    return {
        "base_size": len(base),
        "target_size": len(target) if target_size is None else target_size,
        "base_sha256": hashlib.sha256(base).digest(),
        "target_sha256": hashlib.sha256(target).digest(),
    }


def assert_full_fallback(app, stats, counter, tmp_path, dest):
    assert stats[counter] == 1 and stats["fetch_delta_fallbacks"] == 1, stats
    assert stats["fetch_full"] == 1 and stats["fetch_delta"] == 0
    assert len(app.requests) == 2
    retry = app.requests[1]
    assert not {"a-im", "if-none-match", "available-dictionary", "delta-engines"} & set(retry)
    assert dest.read_bytes() == NEW
    assert [p.name for p in tmp_path.iterdir()] == [dest.name]


# -- R5: patches the client cannot apply within its limits -> the full artifact, once ----------


def test_r5_archive_patch_on_a_non_reference_zlib_falls_back(monkeypatch, tmp_path):
    """A server that ignores Delta-Engines sends an ARCHIVE patch this platform cannot
    rebuild (zlib-ng compat simulated): the client takes the full artifact."""
    from registry_core.delta import _deflate

    patch = DeltaAggregator(archive_aware=True).diff(OLD, NEW)
    assert DeltaAggregator.inspect(patch).method == "ARCHIVE"
    monkeypatch.setitem(_deflate._engine_ok, _deflate.ZLIB, False)
    app, dest = HostileServer(patch), tmp_path / "pkg.whl"
    data, stats, peak = fetch(app, dest=dest)
    assert data == NEW
    # zlib gone: the reference set is incomplete (recon, the C core's own, stays listed)
    assert app.requests[0]["delta-engines"] in ("miniz, recon, zstd-prefix", "recon, zstd-prefix")
    assert_full_fallback(app, stats, "fetch_delta_unusable", tmp_path, dest)
    assert peak < PEAK_ALLOWANCE


def test_r5_patch_declaring_a_target_over_the_limit_falls_back(tmp_path):
    sections = [(Section.TARGET, Codec.STORED, len(NEW), NEW)]
    patch = serialize(Method.FULL, sections=sections, **header(OLD, NEW, 2 << 30))
    app, dest = HostileServer(patch), tmp_path / "pkg.whl"
    data, stats, peak = fetch(app, dest=dest, max_response_size=4 * MiB)
    assert data == NEW
    assert_full_fallback(app, stats, "fetch_delta_too_large", tmp_path, dest)
    assert peak < PEAK_ALLOWANCE


def test_r5_corrupt_patch_falls_back(tmp_path):
    patch = bytearray(DeltaAggregator().diff(OLD, NEW))
    for i in range(60, len(patch) - 40, 7):
        patch[i] ^= 0x5A
    app, dest = HostileServer(bytes(patch)), tmp_path / "pkg.whl"
    data, stats, _ = fetch(app, dest=dest)
    assert data == NEW
    assert_full_fallback(app, stats, "fetch_delta_failed", tmp_path, dest)


def test_r5_patch_for_another_base_falls_back(tmp_path):
    patch = DeltaAggregator().diff(wheel("0.9"), NEW)
    app, dest = HostileServer(patch), tmp_path / "pkg.whl"
    data, stats, _ = fetch(app, dest=dest)
    assert data == NEW
    assert_full_fallback(app, stats, "fetch_delta_failed", tmp_path, dest)


# -- R12: what used to escape Transport.fetch ----------------------------------------------------


def test_r12_chain_bomb_is_a_fallback_not_a_memory_error(tmp_path):
    """A CHAIN patch whose PATCHES section declares 512 GiB of output: MemoryError escaped
    fetch (only DeltaError was caught). Now: dropped, full artifact, memory bounded."""
    frame = zstandard.ZstdCompressor().compress(b"\x01" + b"\x00" * 64)
    sections = [(Section.PATCHES, Codec.ZSTD, 1 << 39, frame)]
    patch = serialize(Method.CHAIN, sections=sections, **header(OLD, NEW))
    app, dest = HostileServer(patch), tmp_path / "pkg.whl"
    data, stats, peak = fetch(app, dest=dest)
    assert data == NEW
    assert stats["fetch_delta_too_large"] + stats["fetch_delta_failed"] == 1, stats
    assert stats["fetch_delta_fallbacks"] == 1 and dest.read_bytes() == NEW
    assert peak < PEAK_ALLOWANCE


def test_r12_fallback_that_fails_verification_writes_nothing(tmp_path):
    sections = [(Section.TARGET, Codec.STORED, len(NEW), NEW)]
    patch = serialize(Method.FULL, sections=sections, **header(OLD, NEW, 2 << 30))
    app = HostileServer(patch, full_body=NEW + b"tampered")
    with pytest.raises(DigestMismatchError):
        fetch(app, dest=tmp_path / "pkg.whl", max_response_size=4 * MiB)
    assert not list(tmp_path.iterdir())


def test_r12_a_226_answering_the_fallback_is_an_error(tmp_path):
    class Always226(HostileServer):
        async def __call__(self, scope, receive, send):
            scope = {**scope, "headers": [*scope["headers"], (b"a-im", b"rcdelta")]}
            await super().__call__(scope, receive, send)

    patch = bytes(64)  # not a patch at all
    app = Always226(patch)
    with pytest.raises(TransportError, match="226"):
        fetch(app, dest=tmp_path / "pkg.whl")
    assert not list(tmp_path.iterdir()) and len(app.requests) == 2


# -- oversized responses ---------------------------------------------------------------------


def test_oversized_patch_body_is_refused_before_reading(tmp_path):
    app = HostileServer(b"\0" * (2 * MiB))
    with pytest.raises(ResponseTooLargeError):
        fetch(app, dest=tmp_path / "x", max_response_size=1 * MiB)
    assert not list(tmp_path.iterdir())


def test_lying_content_length_is_refused(tmp_path):
    body = b"y" * (2 * MiB)
    app = HostileServer(
        None, full_body=body, full_headers={"content-length": "10", "etag": etag_for(body)}
    )
    with pytest.raises(RegistryCoreError):
        fetch(app, have=None, dest=tmp_path / "x", max_response_size=1 * MiB)
    assert not list(tmp_path.iterdir())


# -- digests with structured-field edge cases ------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


@pytest.mark.parametrize(
    "field",
    [
        f'sha-256=:{_b64(NEW)}:;note="a,b"',  # a comma inside a parameter string
        f'sha-256=:{_b64(b"wrong")}:, sha-256=:{_b64(NEW)}:',  # RFC 8941: the last value wins
        f'unixsum=:AAAA:;x="(1 2)", sha-256=:{_b64(NEW)}:;y=?1',
    ],
)
def test_valid_structured_digest_fields_verify(field):
    app = HostileServer(None, full_headers={"content-digest": field})
    data, stats, _ = fetch(app, have=None)
    assert data == NEW and stats["fetch_full"] == 1


@pytest.mark.parametrize(
    "field",
    [
        f'sha-256=:{_b64(b"wrong")}:;note="a,b"',
        f'sha-256=:{_b64(NEW)}:, sha-256=:{_b64(b"wrong")}:',
        f"sha-256=:{_b64(NEW)}:,",  # trailing comma: the field is invalid as a whole
        f'sha-256=:{_b64(NEW)}:;note="a,b',  # unterminated string
        "sha-256=:" + "A" * 20000 + ":",  # over the field bound
        f"sha-256={_b64(NEW)}",  # a token, not a byte sequence
        "sha-256=:\u00e9:",  # non-ASCII
        "md5=:AAAAAAAAAAAAAAAAAAAAAA==:",  # nothing this client trusts
    ],
)
def test_bad_digest_fields_are_digest_errors_and_write_nothing(field, tmp_path):
    app = HostileServer(None, full_headers={"content-digest": field})
    with pytest.raises(DigestMismatchError):
        fetch(app, have=None, dest=tmp_path / "x")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("field", ['sha-256=:x:;note="a,b"', "garbage((", ""])
def test_bad_repr_digest_on_a_226_is_a_digest_error(field, tmp_path):
    patch = DeltaAggregator().diff(OLD, NEW)
    app = HostileServer(patch, patch_headers={"repr-digest": field})
    with pytest.raises(DigestMismatchError):
        fetch(app, dest=tmp_path / "x")
    assert not list(tmp_path.iterdir())


# -- hostile headers never crash ---------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"alt-svc": 'h3=":443"; ma=' + "9" * 60000},
        {"alt-svc": ", ".join(f'h3="h{i}.example:{i % 65535 + 1}"' for i in range(5000))},
        {"alt-svc": "\\" * 50000 + '"'},
        {"use-as-dictionary": 'match="' + "a" * 60000},
        {"etag": '"' + "g" * 64 + '"'},
        {"content-encoding": "identity, identity"},
        {"content-encoding": "x" * 10000},
    ],
)
def test_hostile_headers_never_crash(headers):
    base = {"etag": etag_for(NEW), "content-digest": format_digest(NEW)}
    app = HostileServer(None, full_headers={**base, **headers})
    try:
        data, _, _ = fetch(app, have=None)
    except RegistryCoreError:
        return
    assert data == NEW


@pytest.mark.parametrize("im", ['"rcdelta"', "rcdelta,,", "vcdiff", "r" * 20000, "rc delta"])
def test_hostile_im_on_a_226_is_a_transport_error(im):
    patch = DeltaAggregator().diff(OLD, NEW)
    app = HostileServer(patch, patch_headers={"im": im})
    with pytest.raises(TransportError):
        fetch(app)


# -- the same patches over a real server on loopback (the network path, not the seam) ----------


class _Dispatch:
    """An ASGI app routing each path to one HostileServer (hypercorn also sends lifespan)."""

    def __init__(self) -> None:
        self.apps: dict[str, HostileServer] = {}

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await self.apps[scope["path"]](scope, receive, send)


@pytest.fixture(scope="module")
def hostile_loopback(tmp_path_factory):
    import trustme

    from registry_core.server import start_server

    ca = trustme.CA()
    leaf = ca.issue_cert("registry.test", "127.0.0.1")
    d = tmp_path_factory.mktemp("hostile-pki")
    ca_path, cert, key = d / "ca.pem", d / "cert.pem", d / "key.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    leaf.private_key_pem.write_to_path(str(key))
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    dispatch = _Dispatch()
    handle = start_server(dispatch, certfile=str(cert), keyfile=str(key), quic=False)
    yield handle, dispatch, str(ca_path)
    handle.stop()


def _chain_bomb() -> bytes:
    frame = zstandard.ZstdCompressor().compress(b"\x01" + b"\x00" * 64)
    return serialize(
        Method.CHAIN, sections=[(Section.PATCHES, Codec.ZSTD, 1 << 39, frame)], **header(OLD, NEW)
    )


def _declares_2_gib() -> bytes:
    return serialize(
        Method.FULL,
        sections=[(Section.TARGET, Codec.STORED, len(NEW), NEW)],
        **header(OLD, NEW, 2 << 30),
    )


def _corrupt() -> bytes:
    patch = bytearray(DeltaAggregator().diff(OLD, NEW))
    for i in range(60, len(patch) - 40, 7):
        patch[i] ^= 0x5A
    return bytes(patch)


@pytest.mark.network
@pytest.mark.parametrize(
    "make_patch",
    [_chain_bomb, _declares_2_gib, _corrupt],
    ids=["chain-bomb", "declares-2GiB", "corrupt"],
)
def test_r5_r12_over_loopback_fall_back_to_the_full_artifact(
    hostile_loopback, make_patch, tmp_path
):
    handle, dispatch, ca = hostile_loopback
    path = f"/pkg/{make_patch.__name__}.whl"
    app = dispatch.apps[path] = HostileServer(make_patch())
    dest = tmp_path / "pkg.whl"

    async def main():
        async with Transport(
            verify=ca,
            resolve={"registry.test": "127.0.0.1"},
            http3=False,
            flags=FLAGS,
            max_response_size=64 * MiB,
        ) as t:
            data = await t.fetch(f"https://registry.test:{handle.port}{path}", have=OLD, dest=dest)
            return data, t.stats

    data, stats = asyncio.run(main())
    assert data == NEW == dest.read_bytes()
    assert stats["fetch_delta_fallbacks"] == 1 and stats["fetch_full"] == 1, stats
    assert len(app.requests) == 2 and "a-im" not in app.requests[1]
    assert [p.name for p in tmp_path.iterdir()] == ["pkg.whl"]
