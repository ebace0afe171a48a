"""Real servers on loopback for the transport and server tests (imported by their conftests).

A trustme CA issues one leaf for ``registry.test``, ``mirror.test``, ``strict.test`` and
``127.0.0.1`` (not ``other.test``); hypercorn serves a RegistryApp over TCP (h1/h2) and UDP
(h3) on one port from a background thread. The artifacts are real: zip "wheels" and tar.gz
"sdists" built with zipfile/tarfile from source files of the running Python.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

from registry_core.flags import FeatureFlags
from registry_core.server import RegistryApp, start_server

NAMES = ["registry.test", "mirror.test", "strict.test", "127.0.0.1"]
RESOLVE = {
    "registry.test": "127.0.0.1",
    "mirror.test": "127.0.0.1",
    "strict.test": "127.0.0.1",
    "other.test": "127.0.0.1",
}
ON = {
    "QUIC_TRANSPORT": True,
    "CONNECTION_COALESCE": True,
    "DELTA_AGGREGATOR": True,
    "ZSTD_COMPRESSION": True,
}


def flags(**over: bool) -> FeatureFlags:
    """FeatureFlags with transport features on, then ``over`` applied."""
    return FeatureFlags(overrides={**ON, **over})


def _stdlib_sources(count: int, seed: int) -> list[tuple[str, bytes]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.glob("*.py") if p.stat().st_size < 60_000)
    rng = random.Random(seed)
    return [(p.name, p.read_bytes()) for p in rng.sample(files, count)]


def make_wheel(version: str, sources: list[tuple[str, bytes]]) -> bytes:
    """A wheel-shaped zip: the package sources plus dist-info metadata naming ``version``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in sources:
            zf.writestr(
                zipfile.ZipInfo(f"pkg/{name}", (2024, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED
            )
        # a fixed date: a plain name would stamp the clock's time (2 s resolution), so the test
        # and its server, building the "same" wheel a moment apart, could disagree on its bytes
        zf.writestr(
            zipfile.ZipInfo(f"pkg-{version}.dist-info/METADATA", (2024, 1, 1, 0, 0, 0)),
            f"Metadata-Version: 2.1\nName: pkg\nVersion: {version}\n",
            zipfile.ZIP_DEFLATED,
        )
    return buf.getvalue()


def make_versions(n: int = 3) -> list[tuple[str, bytes]]:
    """``n`` successive wheel versions: each edits a few files of the previous one."""
    sources = _stdlib_sources(24, seed=5)
    rng = random.Random(11)
    out = []
    for i in range(n):
        version = f"1.{i}"
        out.append((version, make_wheel(version, sources)))
        for _ in range(3):  # the next release touches three modules
            j = rng.randrange(len(sources))
            name, data = sources[j]
            sources[j] = (name, data + f"\n# change {i}.{j}\nVALUE_{i} = {i}\n".encode())
    return out


def make_sdist(version: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in _stdlib_sources(8, seed=3):
            info = tarfile.TarInfo(f"pkg-{version}/pkg/{name}")
            info.size, info.mtime = len(data), 1_700_000_000
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def build_tree(root: Path) -> dict[str, bytes]:
    """Write the artifact tree; returns {url path: bytes}."""
    files: dict[str, bytes] = {}
    for version, wheel in make_versions(3):
        files[f"simple/pkg/pkg-{version}-py3-none-any.whl"] = wheel
    files["simple/pkg/pkg-1.0.tar.gz"] = make_sdist("1.0")
    index = {"name": "pkg", "files": sorted(files)}
    files["simple/pkg/index.json"] = json.dumps(index, indent=2).encode() * 20
    files["small.txt"] = b"registry-core says hello\n"
    files["blob/1mib.bin"] = random.Random(1).randbytes(1 << 20)
    files["log/build.log.gz"] = gzip.compress(b"build ok\n" * 1000, mtime=0)
    for i in range(40):
        files[f"coalesce/item{i}.txt"] = f"item {i}\n".encode() * 50
    for path, data in files.items():
        p = root / path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return {"/" + k: v for k, v in files.items()}


class HostileApp:
    """A RegistryApp with misbehaving paths under ``/evil/`` (the network path stays real)."""

    def __init__(self, inner: RegistryApp) -> None:
        self.inner = inner
        self.counts: dict[str, int] = {}
        self.first_host: dict[tuple, str] = {}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.inner(scope, receive, send)
        path = scope["path"]
        self.counts[path] = self.counts.get(path, 0) + 1
        host = dict(scope["headers"]).get(b"host", b"").decode()
        host = host or next((v.decode() for k, v in scope["headers"] if k == b":authority"), "")
        conn = (scope.get("http_version"), tuple(scope.get("client") or ()))
        self.first_host.setdefault(conn, host.split(":")[0])

        async def reply(status, headers, body):
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [(k.encode(), v.encode()) for k, v in headers],
                }
            )
            await send({"type": "http.response.body", "body": body})

        body = b"x" * 5000
        if path == "/evil/wrong-digest":
            return await reply(
                200,
                [("content-length", "5000"), ("content-digest", "sha-256=:" + "A" * 43 + "=:")],
                body,
            )
        if path == "/evil/wrong-etag":
            return await reply(
                200, [("content-length", "5000"), ("etag", '"' + "ab" * 32 + '"')], body
            )
        if path == "/evil/truncated":
            return await reply(200, [("content-length", "10000")], body)
        if path == "/evil/no-digest":
            return await reply(200, [("content-length", "5000")], body)
        if path == "/evil/big":
            return await reply(200, [], b"y" * (3 << 20))
        if path == "/evil/bomb":
            import zstandard

            bomb = zstandard.ZstdCompressor().compress(b"\0" * (64 << 20))
            return await reply(
                200, [("content-encoding", "zstd"), ("content-length", str(len(bomb)))], bomb
            )
        if path in ("/evil/delta-bad-digest", "/evil/delta-garbage"):
            from registry_core.delta import DeltaAggregator
            from registry_core.wire import etag_for, format_digest

            versions = make_versions(2)
            old, new = versions[0][1], versions[1][1]
            patch = DeltaAggregator().diff(old, new)
            if path == "/evil/delta-garbage":
                patch = patch[:20] + bytes(b ^ 0x55 for b in patch[20:])
            return await reply(
                226,
                [
                    ("im", "rcdelta"),
                    ("delta-base", etag_for(old)),
                    ("etag", etag_for(new)),
                    ("repr-digest", format_digest(new + b"!")),
                    ("content-length", str(len(patch))),
                ],
                patch,
            )
        if path == "/evil/flaky" and self.counts[path] <= 2:
            return await reply(503, [("content-length", "0")], b"")
        if path == "/evil/flaky":
            return await reply(200, [("content-length", "2")], b"ok")
        if host.startswith("strict.test") and self.first_host[conn] != "strict.test":
            return await reply(421, [("content-length", "0")], b"")
        return await self.inner(scope, receive, send)


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """(ca bundle path, certfile, keyfile) from a trustme CA."""
    import trustme

    ca = trustme.CA()
    leaf = ca.issue_cert(*NAMES)
    d = tmp_path_factory.mktemp("pki")
    ca_path, cert, key = d / "ca.pem", d / "cert.pem", d / "key.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    leaf.private_key_pem.write_to_path(str(key))
    with open(cert, "wb") as f:
        for blob in leaf.cert_chain_pems:
            f.write(blob.bytes())
    return str(ca_path), str(cert), str(key)


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory):
    root = tmp_path_factory.mktemp("artifacts")
    return root, build_tree(root)


@pytest.fixture(scope="session")
def server(pki, artifacts):
    """The main server: TCP+UDP on one port, Alt-Svc on, hostile paths under /evil/."""
    _, cert, key = pki
    app = RegistryApp(artifacts[0], flags=flags())
    handle = start_server(HostileApp(app), certfile=cert, keyfile=key)
    app.alt_svc = f'h3=":{handle.port}"; ma=3600'
    handle.registry = app
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def tcp_only_server(pki, artifacts):
    """Advertises h3 in Alt-Svc but has no UDP listener (the UDP-blocked case)."""
    _, cert, key = pki
    app = RegistryApp(artifacts[0], flags=flags())
    handle = start_server(app, certfile=cert, keyfile=key, quic=False)
    app.alt_svc = f'h3=":{handle.port}"; ma=3600'
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def goaway_server(pki, artifacts):
    """Closes every connection after 5 requests (hypercorn sends GOAWAY)."""
    _, cert, key = pki
    app = RegistryApp(artifacts[0], flags=flags())
    handle = start_server(app, certfile=cert, keyfile=key, keep_alive_max_requests=5)
    yield handle
    handle.stop()


def url(handle, path: str, host: str = "registry.test") -> str:
    return f"https://{host}:{handle.port}{path}"
