"""RFC 9530 integrity fields, sans-IO: ``Content-Digest``, ``Repr-Digest`` and ``Want-*-Digest``.

The values are RFC 8941 dictionaries whose members are byte sequences (``sha-256=:base64:``);
the ``Want-`` fields carry integer preferences (0 = not acceptable, 10 = most wanted). Only
the algorithms RFC 9530 registers as active (``sha-256``, ``sha-512``) are computed here; the
deprecated ones are parsed but never trusted for verification.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re

from ..errors import DigestMismatchError, InvalidArgumentError

__all__ = [
    "ACTIVE_ALGORITHMS",
    "DigestMismatchError",
    "choose_algorithm",
    "compute_digest",
    "format_digest",
    "format_want_digest",
    "parse_digest",
    "parse_want_digest",
    "verify_digest",
]

#: Algorithm token (RFC 9530 section 5) -> hashlib name.
ACTIVE_ALGORITHMS: dict[str, str] = {"sha-256": "sha256", "sha-512": "sha512"}

_KEY = re.compile(r"[a-z*][a-z0-9_\-.*]*\Z")
_BYTES = re.compile(r":([A-Za-z0-9+/=]*):\Z")
_MAX_FIELD = 8192


def compute_digest(data: bytes, algorithm: str = "sha-256") -> bytes:
    """Hash ``data`` with an RFC 9530 algorithm token; raises on an unknown or insecure one."""
    name = ACTIVE_ALGORITHMS.get(algorithm)
    if name is None:
        raise InvalidArgumentError(
            f"digest algorithm {algorithm!r} is not supported; "
            f"use one of {sorted(ACTIVE_ALGORITHMS)}"
        )
    return hashlib.new(name, data).digest()


def format_digest(data: bytes | None = None, *, digests: dict[str, bytes] | None = None,
                  algorithms: tuple[str, ...] = ("sha-256",)) -> str:
    """Field value for ``Repr-Digest``/``Content-Digest``: from ``data`` or precomputed digests."""
    if digests is None:
        if data is None:
            raise InvalidArgumentError("format_digest needs data or digests")
        digests = {alg: compute_digest(data, alg) for alg in algorithms}
    parts = []
    for alg, value in digests.items():
        if not _KEY.match(alg):
            raise InvalidArgumentError(f"invalid digest algorithm token {alg!r}")
        parts.append(f"{alg}=:{base64.b64encode(value).decode('ascii')}:")
    return ", ".join(parts)


def _split_members(value: str) -> list[str]:
    if len(value) > _MAX_FIELD:
        raise InvalidArgumentError(f"digest field is {len(value)} characters, over {_MAX_FIELD}")
    return [m.strip() for m in value.split(",") if m.strip()]


def parse_digest(value: str) -> dict[str, bytes]:
    """Parse a ``Repr-Digest``/``Content-Digest`` value into ``{algorithm: digest bytes}``.

    Parameters on members are ignored (RFC 8941 allows them). Malformed members raise
    :class:`InvalidArgumentError` rather than being skipped, so a broken field is never
    mistaken for an absent one.
    """
    out: dict[str, bytes] = {}
    for member in _split_members(value):
        key, sep, rest = member.partition("=")
        key = key.strip()
        rest = rest.split(";", 1)[0].strip()
        if not sep or not _KEY.match(key):
            raise InvalidArgumentError(f"malformed digest member {member!r}")
        m = _BYTES.match(rest)
        if m is None:
            raise InvalidArgumentError(f"digest member {key!r} is not a byte sequence: {rest!r}")
        try:
            out[key] = base64.b64decode(m.group(1), validate=True)
        except binascii.Error as exc:
            raise InvalidArgumentError(f"digest member {key!r} has invalid base64") from exc
        expected = ACTIVE_ALGORITHMS.get(key)
        if expected is not None and len(out[key]) != hashlib.new(expected).digest_size:
            raise InvalidArgumentError(
                f"digest member {key!r} has {len(out[key])} bytes, expected "
                f"{hashlib.new(expected).digest_size}"
            )
    return out


def format_want_digest(preferences: dict[str, int]) -> str:
    """Field value for ``Want-Repr-Digest``/``Want-Content-Digest`` (preferences 0..10)."""
    parts = []
    for alg, pref in preferences.items():
        if not _KEY.match(alg) or not (0 <= int(pref) <= 10):
            raise InvalidArgumentError(f"invalid want-digest member {alg}={pref}")
        parts.append(f"{alg}={int(pref)}")
    return ", ".join(parts)


def parse_want_digest(value: str) -> dict[str, int]:
    """Parse a ``Want-*-Digest`` value; members with bad syntax raise InvalidArgumentError."""
    out: dict[str, int] = {}
    for member in _split_members(value):
        key, sep, rest = member.partition("=")
        key, rest = key.strip(), rest.split(";", 1)[0].strip()
        if not sep or not _KEY.match(key) or not rest.isdigit() or int(rest) > 10:
            raise InvalidArgumentError(f"malformed want-digest member {member!r}")
        out[key] = int(rest)
    return out


def choose_algorithm(want: str | None, default: str = "sha-256") -> str | None:
    """The active algorithm a sender should use for a ``Want-*-Digest`` (None: none wanted)."""
    if not want:
        return default
    try:
        prefs = parse_want_digest(want)
    except InvalidArgumentError:
        return default
    ranked = sorted(((p, a) for a, p in prefs.items() if a in ACTIVE_ALGORITHMS and p > 0),
                    reverse=True)
    return ranked[0][1] if ranked else None


def verify_digest(data: bytes, field_value: str, *, what: str = "response") -> str:
    """Check ``data`` against a digest field; returns the algorithm used.

    Raises :class:`DigestMismatchError` on a mismatch, and also when the field names no
    algorithm this library trusts (an unverifiable digest is treated as a failed one).
    """
    try:
        digests = parse_digest(field_value)
    except InvalidArgumentError as exc:
        raise DigestMismatchError(f"{what}: unusable digest field: {exc}") from exc
    for alg in ("sha-512", "sha-256"):
        if alg in digests:
            actual = compute_digest(data, alg)
            if not hmac.compare_digest(actual, digests[alg]):
                raise DigestMismatchError(
                    f"{what}: {alg} of the {len(data)} bytes received does not match the digest "
                    "the server announced; the data was discarded, retry the download"
                )
            return alg
    raise DigestMismatchError(
        f"{what}: digest field names no supported algorithm ({sorted(digests)}); "
        f"expected one of {sorted(ACTIVE_ALGORITHMS)}"
    )
