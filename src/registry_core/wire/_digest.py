"""RFC 9530 integrity fields, sans-IO: ``Content-Digest``, ``Repr-Digest`` and ``Want-*-Digest``.

The values are RFC 8941 dictionaries whose members are byte sequences (``sha-256=:base64:``);
the ``Want-`` fields carry integer preferences (0 = not acceptable, 10 = most wanted). Only
the algorithms RFC 9530 registers as active (``sha-256``, ``sha-512``) are computed here; the
deprecated ones are parsed but never trusted for verification.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from ..errors import DigestMismatchError, InvalidArgumentError
from . import _sf

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


def compute_digest(data: bytes, algorithm: str = "sha-256") -> bytes:
    """Hash ``data`` with an RFC 9530 algorithm token; raises on an unknown or insecure one."""
    name = ACTIVE_ALGORITHMS.get(algorithm)
    if name is None:
        raise InvalidArgumentError(
            f"digest algorithm {algorithm!r} is not supported; "
            f"use one of {sorted(ACTIVE_ALGORITHMS)}"
        )
    return hashlib.new(name, data).digest()


def format_digest(
    data: bytes | None = None,
    *,
    digests: dict[str, bytes] | None = None,
    algorithms: tuple[str, ...] = ("sha-256",),
) -> str:
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


def parse_digest(value: str | bytes) -> dict[str, bytes]:
    """Parse a ``Repr-Digest``/``Content-Digest`` value into ``{algorithm: digest bytes}``.

    The value is an RFC 8941 Dictionary (parsed by the one structured-field parser,
    :mod:`registry_core.wire._sf`, so parameters such as ``;note="a,b"`` are handled).
    Parameters on members are ignored. A field that is not a valid Dictionary, or whose members
    are not byte sequences, raises :class:`InvalidArgumentError` rather than being skipped, so a
    broken field is never mistaken for an absent one.
    """
    out: dict[str, bytes] = {}
    for key, (member, _params) in _sf.parse_dictionary(value).items():
        if not isinstance(member, bytes):
            raise InvalidArgumentError(f"digest member {key!r} is not a byte sequence")
        expected = ACTIVE_ALGORITHMS.get(key)
        if expected is not None and len(member) != hashlib.new(expected).digest_size:
            raise InvalidArgumentError(
                f"digest member {key!r} has {len(member)} bytes, expected "
                f"{hashlib.new(expected).digest_size}"
            )
        out[key] = member
    return out


def format_want_digest(preferences: dict[str, int]) -> str:
    """Field value for ``Want-Repr-Digest``/``Want-Content-Digest`` (preferences 0..10)."""
    parts = []
    for alg, pref in preferences.items():
        if not _KEY.match(alg) or not (0 <= int(pref) <= 10):
            raise InvalidArgumentError(f"invalid want-digest member {alg}={pref}")
        parts.append(f"{alg}={int(pref)}")
    return ", ".join(parts)


def parse_want_digest(value: str | bytes) -> dict[str, int]:
    """Parse a ``Want-*-Digest`` value (an RFC 8941 Dictionary of Integers 0..10); members with
    another type or range raise InvalidArgumentError."""
    out: dict[str, int] = {}
    for key, (member, _params) in _sf.parse_dictionary(value).items():
        if isinstance(member, bool) or not isinstance(member, int) or not 0 <= member <= 10:
            raise InvalidArgumentError(f"malformed want-digest member {key!r}")
        out[key] = member
    return out


def choose_algorithm(want: str | None, default: str = "sha-256") -> str | None:
    """The active algorithm a sender should use for a ``Want-*-Digest`` (None: none wanted)."""
    if not want:
        return default
    try:
        prefs = parse_want_digest(want)
    except InvalidArgumentError:
        return default
    ranked = sorted(
        ((p, a) for a, p in prefs.items() if a in ACTIVE_ALGORITHMS and p > 0), reverse=True
    )
    return ranked[0][1] if ranked else None


def verify_digest(
    data: bytes,
    field_value: str,
    *,
    what: str = "response",
    digests: dict[str, bytes] | None = None,
) -> str:
    """Check ``data`` against a digest field; returns the algorithm used.

    Raises :class:`DigestMismatchError` on a mismatch, and also when the field names no
    algorithm this library trusts (an unverifiable digest is treated as a failed one).
    ``digests``: a cache of digests of ``data`` (``{"sha-256": ...}``) used instead of hashing
    again, and filled with what this call computes, so several fields over the same bytes
    cost one hash.
    """
    try:
        announced = parse_digest(field_value)
    except InvalidArgumentError as exc:
        raise DigestMismatchError(f"{what}: unusable digest field: {exc}") from exc
    for alg in ("sha-512", "sha-256"):
        if alg in announced:
            actual = digests.get(alg) if digests is not None else None
            if actual is None:
                actual = compute_digest(data, alg)
                if digests is not None:
                    digests[alg] = actual
            if not hmac.compare_digest(actual, announced[alg]):
                raise DigestMismatchError(
                    f"{what}: {alg} of the {len(data)} bytes received does not match the digest "
                    "the server announced; the data was discarded, retry the download"
                )
            return alg
    raise DigestMismatchError(
        f"{what}: digest field names no supported algorithm ({sorted(announced)}); "
        f"expected one of {sorted(ACTIVE_ALGORITHMS)}"
    )
