"""Content types of stored artifacts: the media type of the file's bytes as they are stored.

``mimetypes.guess_type("x.tar.gz")`` answers ``("application/x-tar", "gzip")``: the first item
describes the bytes *after* decoding. A server that sends that type and then compresses the body
again hands clients a double-gzipped sdist. Here a compressed file is typed by its outer format
(``application/gzip``), and the server never adds a ``Content-Encoding`` to it: the bytes go out
as they are stored.
"""

from __future__ import annotations

import mimetypes

__all__ = ["content_type_for"]

# Checked first, longest suffix first: the formats a package registry serves.
_BY_SUFFIX: tuple[tuple[str, str], ...] = (
    (".whl.metadata", "text/plain; charset=utf-8"),  # PEP 658 / PEP 714 core metadata
    (".tar.gz", "application/gzip"),
    (".tar.bz2", "application/x-bzip2"),
    (".tar.xz", "application/x-xz"),
    (".tar.zst", "application/zstd"),
    (".tgz", "application/gzip"),
    (".gz", "application/gzip"),
    (".bz2", "application/x-bzip2"),
    (".xz", "application/x-xz"),
    (".zst", "application/zstd"),
    (".br", "application/octet-stream"),  # brotli has no registered media type
    (".whl", "application/zip"),
    (".egg", "application/zip"),
    (".zip", "application/zip"),
    (".jar", "application/java-archive"),
    (".tar", "application/x-tar"),
    (".json", "application/json"),
    (".metadata", "text/plain; charset=utf-8"),
    (".txt", "text/plain; charset=utf-8"),
    (".log", "text/plain; charset=utf-8"),
    (".md", "text/markdown; charset=utf-8"),
    (".html", "text/html; charset=utf-8"),
    (".asc", "application/pgp-signature"),
    (".sig", "application/octet-stream"),
)

# What mimetypes reports as an *encoding* becomes the media type of the stored bytes.
_ENCODING_TYPES = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "compress": "application/x-compress",
    "br": "application/octet-stream",
}


def content_type_for(path: str) -> str:
    """The ``Content-Type`` for the stored bytes of ``path`` (by its name)."""
    name = path.rsplit("/", 1)[-1].lower()
    for suffix, media in _BY_SUFFIX:
        if name.endswith(suffix):
            return media
    guessed, encoding = mimetypes.guess_type(name, strict=False)
    if encoding is not None:
        return _ENCODING_TYPES.get(encoding, "application/octet-stream")
    if guessed is None:
        return "application/octet-stream"
    if guessed.startswith("text/") and "charset" not in guessed:
        return guessed + "; charset=utf-8"
    return guessed
