"""Delta negotiation headers (RFC 3229 instance manipulation, registry-core's ``rcdelta``), sans-IO.

A client that holds an older version of an artifact says so with its strong ETag; the server
may answer ``226 IM Used`` with a registry-core patch instead of the full body. ETags are the
quoted lowercase hex SHA-256 of the artifact bytes, so a client can name the version it holds
without having stored any metadata. See docs/wire.md for the full exchange.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import InvalidArgumentError
from . import _sf

__all__ = [
    "DELTA_ENGINES",
    "DELTA_MEDIA_TYPE",
    "ENGINE_ORDER",
    "IM_RCDELTA",
    "DeltaAsk",
    "delta_request_headers",
    "delta_response_headers",
    "etag_for",
    "etag_for_sha256",
    "etag_to_sha256",
    "format_delta_engines",
    "parse_delta_engines",
    "parse_delta_request",
    "parse_entity_tags",
    "parse_im",
]

IM_RCDELTA = "rcdelta"
#: Request field naming the deflate engines the client reproduces byte-exactly.
DELTA_ENGINES = "delta-engines"
#: Engine tokens, in the order they are written.
ENGINE_ORDER = {"zlib": 0, "miniz": 1, "recon": 2, "zstd-prefix": 3}
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
    """Parse ``A-IM`` / ``IM``: instance-manipulation tokens, lowercased, parameters dropped.

    The value is read as an RFC 8941 List (the one structured-field parser, ``_sf``) whose
    members must be Tokens; anything else raises InvalidArgumentError.
    """
    if len(value) > _MAX_FIELD:
        raise InvalidArgumentError("IM field is too long")
    out = []
    for member, _params in _sf.parse_list(value):
        if not isinstance(member, _sf.Token):
            raise InvalidArgumentError(f"malformed instance-manipulation {member!r}")
        out.append(str(member).lower())
    return out


def parse_delta_engines(value: str | None) -> frozenset[str] | None:
    """Parse ``Delta-Engines`` (an RFC 8941 List of Tokens, lowercased; parameters ignored).

    None when the field is absent (a client that predates the field: the server assumes the
    reference engines). An empty or malformed field gives the empty set: the client states it
    can rebuild no recompressed member, so only BINARY patches are useful to it.
    """
    if value is None:
        return None
    if len(value) > _MAX_FIELD:
        return frozenset()
    try:
        members = _sf.parse_list(value)
    except InvalidArgumentError:
        return frozenset()
    return frozenset(str(m).lower() for m, _p in members if isinstance(m, _sf.Token))


def format_delta_engines(engines: Iterable[str]) -> str:
    """``Delta-Engines`` value for the engines a client reproduces ("" when it has none)."""
    names = sorted(set(engines), key=lambda e: (ENGINE_ORDER.get(e, 99), e))
    return _sf.serialize_list([(_sf.Token(e), {}) for e in names])


@dataclass(frozen=True)
class DeltaAsk:
    """What a request asks for: entity tags it holds, whether it accepts ``rcdelta``, and the
    deflate engines it reproduces (``engines``: None when the request does not say; then the
    reference engines are assumed; an empty set: build BINARY patches only)."""

    etags: tuple[str, ...]
    wants_rcdelta: bool
    engines: frozenset[str] | None = None

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
    return DeltaAsk(tuple(tags), IM_RCDELTA in ims, parse_delta_engines(headers.get(DELTA_ENGINES)))


def delta_request_headers(
    have: bytes | None, *, have_sha256: bytes | None = None, engines: Iterable[str] | None = None
) -> dict[str, str]:
    """Client side: the headers that say "I hold ``have``; a registry-core patch is welcome".

    ``have_sha256`` (the SHA-256 of ``have``, when the caller already has it) saves hashing
    ``have`` again. ``engines``: the deflate engines this client reproduces, sent as
    ``Delta-Engines`` (None: the field is not sent).
    """
    headers = {"want-repr-digest": "sha-256=10"}
    if have is not None or have_sha256 is not None:
        headers["if-none-match"] = (
            etag_for_sha256(have_sha256) if have_sha256 is not None else etag_for(have or b"")
        )
        headers["a-im"] = IM_RCDELTA
        if engines is not None:
            headers[DELTA_ENGINES] = format_delta_engines(engines)
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
        "vary": "a-im, if-none-match, delta-engines",
    }
