"""A signed registry on loopback for the client-side trust tests (slice C).

Real parts only: a Keyring, a TufRepository (python-tuf metadata, hybrid Ed25519 + ML-DSA-65
keys) whose metadata directory is served over TLS by one RegistryApp, and the artifacts served
over TLS by another RegistryApp whose patches are signed (``envelopes=PatchEnvelopes``). A
middleware in front of the file server can tamper with 226 responses (``tamper``).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from _servers import flags, make_versions
from registry_core.server import RegistryApp, start_server
from registry_core.signing import Keyring, patch_statement, sign_envelope
from registry_core.signing._client import PatchEnvelopes, TrustedIndex
from registry_core.signing._tuf import TufRepository
from registry_core.wire._digest import parse_digest

PASSPHRASE = "slice-c-test-passphrase"


def record(path: str, data: bytes) -> Any:
    """What TufRepository.add_targets reads of a FileRecord."""
    return SimpleNamespace(path=path, size=len(data), sha256=hashlib.sha256(data).hexdigest())


class Tamper:
    """ASGI middleware: rewrites the headers of 226 responses as ``mode`` says."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.mode: str | None = None
        self.envelope: bytes | None = None  # "replace": the envelope sent instead
        self.last_patch_sha: bytes | None = None  # of the last 226 sent (its Content-Digest)
        self.pages: dict[str, bytes] = {}  # path -> JSON Simple API page served as is

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.inner(scope, receive, send)
        page = self.pages.get(scope["path"])
        if page is not None:  # a Simple API project page (the proxy tests' upstream)
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"application/vnd.pypi.simple.v1+json"),
                        (b"content-length", str(len(page)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": page})
            return
        mode = self.mode

        async def wrapped(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and message["status"] == 226:
                headers = [(k, v) for k, v in message["headers"]]
                for k, v in headers:
                    if k.lower() == b"content-digest":
                        self.last_patch_sha = parse_digest(v.decode())["sha-256"]
                out = []
                for k, v in headers:
                    name = k.lower()
                    if name in (b"delta-envelope", b"link") and mode in ("drop", "replace"):
                        continue
                    if name == b"delta-envelope" and mode == "flip":
                        env = bytearray(base64.b64decode(v.strip(b":")))
                        doc = json.loads(bytes(env))
                        sig = bytearray(base64.b64decode(doc["signatures"][0]["sig"]))
                        sig[7] ^= 1
                        doc["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
                        if len(doc["signatures"]) > 1:
                            sig = bytearray(base64.b64decode(doc["signatures"][1]["sig"]))
                            sig[7] ^= 1
                            doc["signatures"][1]["sig"] = base64.b64encode(bytes(sig)).decode()
                        v = b":" + base64.b64encode(json.dumps(doc).encode()) + b":"
                    if name == b"delta-envelope" and mode == "link-only":
                        continue
                    out.append((k, v))
                if mode == "replace":
                    assert self.envelope is not None
                    out.append((b"delta-envelope", b":" + base64.b64encode(self.envelope) + b":"))
                message = {**message, "headers": out}
            await send(message)

        return await self.inner(scope, receive, wrapped)


@dataclass
class Stack:
    root: Path
    tuf_dir: Path
    keyring: Keyring
    repo: TufRepository
    app: RegistryApp
    tamper: Tamper
    files: Any  # ServerHandle
    meta: Any  # ServerHandle
    ca: str
    versions: list[tuple[str, bytes]] = field(default_factory=list)  # (path, bytes)

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.files.port}/{path}"

    @property
    def metadata_url(self) -> str:
        return f"https://127.0.0.1:{self.meta.port}/"

    def trusted(self, cache_dir: Path, **kw: Any) -> TrustedIndex:
        return TrustedIndex(
            self.repo.trusted_root(),
            self.metadata_url,
            cache_dir,
            target_base_url=f"https://127.0.0.1:{self.files.port}/",
            verify=self.ca,
            **kw,
        )

    def envelope_for(self, path: str, target: bytes, base: bytes, patch_sha: bytes) -> bytes:
        """An envelope signed with the real patch keys, for the given digests."""
        st = patch_statement(
            path,
            hashlib.sha256(target).hexdigest(),
            hashlib.sha256(base).hexdigest(),
            patch_sha.hex(),
        )
        return sign_envelope(st, self.keyring.signers("patches"))

    def close(self) -> None:
        self.files.stop()
        self.meta.stop()
        self.app.close()


def build_stack(tmp: Path, pki: tuple[str, str, str], *, bins: int = 4) -> Stack:
    """Registry dir with three wheel versions, all listed in TUF; both servers started."""
    ca, cert, key = pki
    root, tuf_dir = tmp / "registry", tmp / "tuf"
    keyring = Keyring(tmp / "keys", passphrase=PASSPHRASE)
    repo = TufRepository(tuf_dir, keyring, bins=bins, fsync=False)
    repo.init()
    versions = []
    for version, wheel in make_versions(3):
        path = f"pkg/pkg-{version}-py3-none-any.whl"
        (root / "pkg").mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(wheel)
        versions.append((path, wheel))
    repo.add_targets(record(p, d) for p, d in versions)
    app = RegistryApp(root, flags=flags(), envelopes=PatchEnvelopes(keyring))
    tamper = Tamper(app)
    files = start_server(tamper, certfile=cert, keyfile=key, quic=False)
    meta = start_server(
        RegistryApp(tuf_dir, patch_store=False), certfile=cert, keyfile=key, quic=False
    )
    return Stack(root, tuf_dir, keyring, repo, app, tamper, files, meta, ca, versions)
