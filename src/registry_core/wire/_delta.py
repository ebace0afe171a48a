"""Delta negotiation headers (RFC 3229 instance manipulation, registry-core's ``rcdelta``), sans-IO.

A client that holds an older version of an artifact says so with its strong ETag; the server
may answer ``226 IM Used`` with a registry-core patch instead of the full body. ETags are the
quoted lowercase hex SHA-256 of the artifact bytes, so a client can name the version it holds
without having stored any metadata. See docs/wire.md for the full exchange.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from ..errors import InvalidArgumentError

__all__ = [
    "DELTA_MEDIA_TYPE",
    "IM_RCDELTA",
    "DeltaAsk",
    "delta_request_headers",
    "delta_response_headers",
    "etag_for",
    "etag_for_sha256",
    "etag_to_sha256",
    "parse_delta_request",
    "parse_entity_tags",
    "parse_im",
]

IM_RCDELTA = "rcdelta"
DELTA_MEDIA_TYPE = "application/vnd.registry-core.patch"
_ETAG = re.compile(r'\s*(W/)?"([\x21\x23-\x7e]*)"\s*')
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_MAX_FIELD = 8192
_MAX_TAGS = 32


def etag_for(data: bytes) -> str:
    """Strong ETag of an artifact's bytes: ``"<lowercase hex SHA-256>"``."""
    return f'"{hashlib.sha256(data).hexdigest()}"'


def etag_for_sha256(sha256: bytes) -> str:
    """Strong ETag from an already computed 32-byte SHA-256 digest."""
    if len(sha256) != 32:
        raise InvalidArgumentError(f"a SHA-256 digest has 32 bytes, got {len(sha256)}")
    return f'"{sha256.hex()}"'


def etag_to_sha256(etag: str) -> bytes | None:
    """The SHA-256 named by one of our strong ETags, or None if it is not one."""
    m = _ETAG.fullmatch(etag)
    if m is None or m.group(1) or not _HEX64.match(m.group(2)):
        return None
    return bytes.fromhex(m.group(2))


def parse_entity_tags(value: str) -> list[str] | None:
    """Parse ``If-None-Match``; returns the tags as written (with quotes), or None for ``*``.

    Raises InvalidArgumentError on malformed lists or more than 32 tags (a bounded amount of
    work per request).
    """
    if len(value) > _MAX_FIELD:
        raise InvalidArgumentError("If-None-Match field is too long")
    if value.strip() == "*":
        return None
    tags: list[str] = []
    pos = 0
    while pos < len(value):
        m = _ETAG.match(value, pos)
        if m is None:
            raise InvalidArgumentError(f"malformed entity tag list at {value[pos:pos + 20]!r}")
        tags.append(f'{m.group(1) or ""}"{m.group(2)}"')
        pos = m.end()
        if pos < len(value):
            if value[pos] != ",":
                raise InvalidArgumentError(f"malformed entity tag list at {value[pos:pos + 20]!r}")
            pos += 1
        if len(tags) > _MAX_TAGS:
            raise InvalidArgumentError(f"If-None-Match lists more than {_MAX_TAGS} entity tags")
    return tags


def parse_im(value: str) -> list[str]:
    """Parse ``A-IM`` / ``IM``: instance-manipulation tokens, lowercased, parameters dropped."""
    if len(value) > _MAX_FIELD:
        raise InvalidArgumentError("IM field is too long")
    out = []
    for member in value.split(","):
        token = member.split(";", 1)[0].strip().lower()
        if token:
            if not re.fullmatch(r"[a-z0-9!#$%&'*+.^_`|~-]+", token):
                raise InvalidArgumentError(f"malformed instance-manipulation token {token!r}")
            out.append(token)
    return out


@dataclass(frozen=True)
class DeltaAsk:
    """What a request asks for: entity tags it holds and whether it accepts ``rcdelta``."""

    etags: tuple[str, ...]
    wants_rcdelta: bool

    def base_sha256s(self) -> list[bytes]:
        """SHA-256 digests of the versions the client holds (only our strong ETags count)."""
        return [s for s in (etag_to_sha256(t) for t in self.etags) if s is not None]


def parse_delta_request(headers: dict[str, str]) -> DeltaAsk:
    """Server side: read ``If-None-Match`` and ``A-IM`` from lower-cased request headers.

    Malformed fields are treated as absent (the server then answers with the full body),
    since a broken optimisation hint must never fail a download.
    """
    try:
        tags = parse_entity_tags(headers.get("if-none-match", "")) or []
    except InvalidArgumentError:
        tags = []
    try:
        ims = parse_im(headers.get("a-im", ""))
    except InvalidArgumentError:
        ims = []
    return DeltaAsk(tuple(tags), IM_RCDELTA in ims)


def delta_request_headers(have: bytes | None) -> dict[str, str]:
    """Client side: the headers that say "I hold ``have``; a registry-core patch is welcome"."""
    headers = {"want-repr-digest": "sha-256=10"}
    if have is not None:
        headers["if-none-match"] = etag_for(have)
        headers["a-im"] = IM_RCDELTA
    return headers


def delta_response_headers(base_etag: str, target_etag: str, repr_digest: str) -> dict[str, str]:
    """Server side: headers of a ``226 IM Used`` response carrying a patch."""
    return {
        "im": IM_RCDELTA,
        "delta-base": base_etag,
        "etag": target_etag,
        "repr-digest": repr_digest,
        "content-type": DELTA_MEDIA_TYPE,
        "cache-control": "no-transform",
        "vary": "a-im, if-none-match",
    }
