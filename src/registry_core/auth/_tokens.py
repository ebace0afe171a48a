"""API tokens: ``rc-<token_id>-<secret>``, stored as a hash of the secret (sans-IO).

``token_id`` (16 hex digits) names the token in lists and logs; ``secret`` is 32 random bytes,
URL-safe base64 without padding. Only ``sha256(secret)`` is kept at rest. A fast hash is the
right tool here, not a password KDF (bcrypt, scrypt, argon2): those slow down guessing a
low-entropy password, while a 256-bit random secret cannot be guessed at any speed, so a
stolen database yields nothing usable and verifying costs microseconds per request. Hashes are
compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from ..errors import AuthenticationError
from ._model import TokenRecord

__all__ = ["PREFIX", "generate_token", "hash_secret", "parse_token", "verify_secret"]

PREFIX = "rc"
_ID_BYTES = 8
_SECRET_BYTES = 32
_MAX_TOKEN_LENGTH = 200
_ID = re.compile(r"^[0-9a-f]{16}$")
_SECRET = re.compile(r"^[A-Za-z0-9_-]{43}$")


def generate_token() -> tuple[str, str, str]:
    """A new token: ``(raw token, token_id, sha256 hex of its secret)``."""
    token_id = secrets.token_hex(_ID_BYTES)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(_SECRET_BYTES)).rstrip(b"=").decode()
    return f"{PREFIX}-{token_id}-{secret}", token_id, hash_secret(secret)


def parse_token(raw: str | None) -> tuple[str, str]:
    """``(token_id, secret)`` of a raw token; AuthenticationError when there is none or it is
    malformed (the message never repeats the token)."""
    if raw is None or raw == "":
        raise AuthenticationError("an API token is required (user __token__, password rc-...)")
    if not isinstance(raw, str) or len(raw) > _MAX_TOKEN_LENGTH:
        raise AuthenticationError("malformed API token")
    prefix, sep, rest = raw.strip().partition("-")
    token_id, sep2, secret = rest.partition("-")
    if prefix != PREFIX or not sep or not sep2 or not _ID.match(token_id):
        raise AuthenticationError("malformed API token (expected rc-<id>-<secret>)")
    if not _SECRET.match(secret):
        raise AuthenticationError("malformed API token (expected rc-<id>-<secret>)")
    return token_id, secret


def hash_secret(secret: str) -> str:
    """Hex SHA-256 of a token's secret: what is stored."""
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def verify_secret(secret: str, record: TokenRecord) -> bool:
    """Whether ``secret`` is the one ``record`` was made for (constant-time comparison)."""
    return hmac.compare_digest(hash_secret(secret), record.secret_sha256)
