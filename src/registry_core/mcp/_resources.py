"""The binary resources the tools hand back (patches, artifacts) and their URIs (sans-SDK).

Patches and downloaded artifacts are not inlined into tool results: a tool stores the bytes
here, content-addressed by SHA-256, and returns ``registry://{index}/-/{kind}/{sha256}`` with
its MIME type and size; the client reads the bytes as a blob resource. The store is a bounded
LRU (``max_bytes`` in total), so a long session cannot grow it without limit; an evicted
resource reads as not found and the tool that made it can simply be called again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .._util import LRU

__all__ = ["KINDS", "Blob", "BlobStore", "mime_for", "project_uri", "version_uri"]

KINDS = ("patch", "artifact")
PATCH_MIME = "application/vnd.registry-core.patch"


def mime_for(filename: str) -> str:
    """The MIME type of an artifact by its filename (wheels are zip files)."""
    if filename.endswith((".whl", ".zip")):
        return "application/zip"
    if filename.endswith((".tar.gz", ".tgz")):
        return "application/gzip"
    return "application/octet-stream"


def project_uri(index: str, project: str) -> str:
    return f"registry://{index}/{project}"


def version_uri(index: str, project: str, version: str) -> str:
    return f"registry://{index}/{project}/{version}"


@dataclass(frozen=True)
class Blob:
    """One stored resource: its bytes, MIME type and what it is."""

    kind: str
    sha256: str
    mime_type: str
    data: bytes
    name: str = ""

    @property
    def size(self) -> int:
        return len(self.data)


class BlobStore:
    """Content-addressed, bounded, thread-safe store of patch and artifact resources."""

    def __init__(self, index: str, *, max_bytes: int = 256 << 20) -> None:
        self.index = index
        self._lru: LRU[tuple[str, str], Blob] = LRU(
            max_bytes=max_bytes, weigh=lambda b: len(b.data)
        )

    def uri(self, kind: str, sha256: str) -> str:
        return f"registry://{self.index}/-/{kind}/{sha256}"

    def put(self, kind: str, data: bytes, mime_type: str, name: str = "") -> Blob:
        """Store ``data`` (idempotent); returns its Blob (kept only while it fits the bound)."""
        blob = Blob(kind, hashlib.sha256(data).hexdigest(), mime_type, bytes(data), name)
        self._lru.put((kind, blob.sha256), blob)
        return blob

    def get(self, kind: str, sha256: str) -> Blob | None:
        return self._lru.get((kind, sha256.lower()))

    def parse_uri(self, uri: str) -> tuple[str, str] | None:
        """(kind, sha256) of one of this store's URIs, else None."""
        prefix = f"registry://{self.index}/-/"
        if not uri.startswith(prefix):
            return None
        kind, _, digest = uri[len(prefix) :].partition("/")
        if kind not in KINDS or len(digest) != 64:
            return None
        try:
            int(digest, 16)
        except ValueError:
            return None
        return kind, digest.lower()

    def stats(self) -> dict[str, int]:
        return {"entries": len(self._lru), "bytes": self._lru.size}
