"""The exceptions registry-core raises on purpose.

Every exception the library raises deliberately derives from :class:`RegistryCoreError`, so a
caller can catch the whole family with one ``except``. Argument errors also derive from the
builtin ``ValueError`` / ``TypeError`` so code written against the standard conventions keeps
working. Messages say what was wrong and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "AcmeError",
    "ArchiveError",
    "AuditLogError",
    "AuthenticationError",
    "BaseMismatchError",
    "CacheError",
    "ComposeError",
    "CompressionError",
    "ConfigError",
    "CorruptPatchError",
    "DatabaseUnavailableError",
    "DecompressionLimitError",
    "DeltaError",
    "DigestMismatchError",
    "DuplicateFileError",
    "FlagConfigError",
    "FlagError",
    "IdentityProviderError",
    "InvalidArgumentError",
    "InvalidTypeError",
    "MLError",
    "ModelError",
    "NativeCoreError",
    "NegotiationError",
    "NotFoundError",
    "OutputTooLargeError",
    "PackageIndexError",
    "PermissionDeniedError",
    "ProjectNotFoundError",
    "ProxyError",
    "RateLimitedError",
    "RateLimiterUnavailableError",
    "RegistryCoreError",
    "ReproductionUnavailableError",
    "ResponseTooLargeError",
    "SignatureError",
    "SigningError",
    "SigningKeyError",
    "StorageError",
    "TokenExpiredError",
    "TraceError",
    "TransportError",
    "UnknownFlagError",
    "UploadRejectedError",
    "UpstreamError",
]


class RegistryCoreError(Exception):
    """Base class of every exception registry-core raises on purpose."""


# -- arguments ---------------------------------------------------------------------------------


class InvalidArgumentError(RegistryCoreError, ValueError):
    """An argument has the right type but an unusable value (e.g. min_size > avg_size)."""


class InvalidTypeError(RegistryCoreError, TypeError):
    """An argument has the wrong type (e.g. a str where a bytes-like buffer is needed)."""


# -- native core -------------------------------------------------------------------------------


class NativeCoreError(RegistryCoreError, ImportError):
    """The compiled C core is missing, or does not match this Python layer's version."""


# -- delta -------------------------------------------------------------------------------------


class DeltaError(RegistryCoreError):
    """A delta could not be computed or applied."""


class CorruptPatchError(DeltaError, ValueError):
    """A patch is truncated, malformed, or produced output whose SHA-256 does not verify."""


class BaseMismatchError(DeltaError, ValueError):
    """The base given to ``apply`` is not the one the patch was made from."""


class OutputTooLargeError(DeltaError, ValueError):
    """Output would exceed the caller's ``max_output_size``; refused before allocating it."""


class ComposeError(DeltaError, ValueError):
    """Patches given to ``compose`` do not form a chain (target of one != base of the next)."""


class ReproductionUnavailableError(DeltaError):
    """This platform's deflate engine does not produce the reference output (zlib-ng in zlib
    compatibility mode, a patched system zlib...), so an archive patch that recompresses members
    cannot be applied here: fetch the full artifact or a plain (BINARY) patch instead."""


class ArchiveError(DeltaError, ValueError):
    """An archive (zip, gzip, tar) is malformed or uses a feature that cannot be handled."""


# -- compression -------------------------------------------------------------------------------


class CompressionError(RegistryCoreError, ValueError):
    """Compressed data is truncated or corrupt, or a codec cannot do what was asked."""


class DecompressionLimitError(CompressionError):
    """Decompressed output would exceed ``max_output_size`` (a decompression bomb)."""


class NegotiationError(CompressionError):
    """No acceptable content coding exists (only raised when the caller asks for strictness)."""


# -- transport ---------------------------------------------------------------------------------


class TransportError(RegistryCoreError):
    """A request failed: connection, protocol, status or verification problem."""


class DigestMismatchError(TransportError):
    """Downloaded bytes do not match the digest the server announced."""


class ResponseTooLargeError(TransportError):
    """A response body exceeded the configured size limit."""


# -- flags -------------------------------------------------------------------------------------


class FlagError(RegistryCoreError):
    """A feature-flag problem."""


class UnknownFlagError(FlagError, KeyError):
    """A flag name is not in the catalogue (the message names the closest known flag)."""

    def __str__(self) -> str:  # KeyError would repr() the message; keep it readable
        return str(self.args[0]) if self.args else ""


class FlagConfigError(FlagError, ValueError):
    """A flag source (environment string, TOML file, override) is malformed."""


# -- cache -------------------------------------------------------------------------------------


class CacheError(RegistryCoreError):
    """The build cache could not read or write an entry."""


# -- package index -----------------------------------------------------------------------------


class PackageIndexError(RegistryCoreError):
    """The package index refused or could not do an operation.

    ``status`` is the HTTP status the index's server answers with for it.
    """

    status = 500


class UploadRejectedError(PackageIndexError, ValueError):
    """An upload is invalid (filename, archive, metadata, digest, size); nothing was stored."""

    status = 400

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class DuplicateFileError(UploadRejectedError):
    """A file of that name already exists with other bytes; files are immutable (409)."""

    status = 409


class AuthenticationError(PackageIndexError):
    """No credentials, or an unknown, malformed or revoked token (401)."""

    status = 401


class PermissionDeniedError(PackageIndexError):
    """The credentials are valid but do not allow this operation (403)."""

    status = 403


class ProjectNotFoundError(PackageIndexError, LookupError):
    """No project (or file) of that name in the index (404)."""

    status = 404


class NotFoundError(PackageIndexError, LookupError):
    """No such tenant, index or resource *for this caller* (404). Raised alike for what does
    not exist and for what exists but the caller may not see, so the answer reveals nothing
    about another tenant."""

    status = 404


# -- identity, access control, rate limits ------------------------------------------------------


class TokenExpiredError(AuthenticationError):
    """The API token (or session) is past its expiry (401): create a new one."""


class IdentityProviderError(AuthenticationError):
    """An OIDC or SAML sign-in, or a trusted-publishing exchange, was refused (401): the ID
    token or assertion is forged, unsigned, expired, replayed, for another audience or
    recipient, or the provider could not be reached. The message says which check failed and
    never repeats the token."""


class RateLimitedError(PackageIndexError):
    """Too many requests for the caller's plan (429); ``retry_after`` is in seconds."""

    status = 429

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimiterUnavailableError(PackageIndexError):
    """The rate limiter's backend (Redis) failed and the request kind fails closed (503)."""

    status = 503


# -- storage and certificates ------------------------------------------------------------------


class DatabaseUnavailableError(PackageIndexError):
    """The database cannot answer now: unreachable, timed out or overloaded (503). Retrying
    later may succeed; nothing was half-written."""

    status = 503


class AuditLogError(InvalidArgumentError):
    """The audit log cannot be opened or used (locked by another writer, corrupt, bad entry)."""


class StorageError(RegistryCoreError, OSError):
    """A storage backend failed (an object store unreachable, refused or throttled past its
    retries). An OSError, so code treating storage I/O failures as such treats this one too."""


class AcmeError(RegistryCoreError):
    """The ACME server refused or failed an order (the message says which domain and why)."""


# -- configuration -------------------------------------------------------------------------------


class ConfigError(RegistryCoreError, ValueError):
    """A configuration file is invalid. ``source`` (file name), ``line`` (1-based, or None when
    unknown) and ``key`` (dotted path such as ``tenants.acme.plan``) say where; the message
    starts with ``source:line: key:``."""

    def __init__(
        self, message: str, *, source: str = "", line: int | None = None, key: str = ""
    ) -> None:
        where = source + (f":{line}" if line is not None else "")
        prefix = ": ".join(part for part in (where, key) if part)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.source = source
        self.line = line
        self.key = key


# -- proxy -------------------------------------------------------------------------------------


class ProxyError(RegistryCoreError):
    """The pull-through proxy could not serve a request."""


class UpstreamError(ProxyError, TransportError):
    """The proxy's upstream index failed, answered nonsense, or sent bytes that do not verify."""


# -- signing -----------------------------------------------------------------------------------


class SigningError(RegistryCoreError):
    """Keys, metadata or envelopes could not be produced or checked."""


class SigningKeyError(SigningError):
    """A signing key is missing, locked (no or wrong passphrase), expired, retired or of an
    algorithm that is not allowed."""


class SignatureError(SigningError):
    """Verification failed closed: the message names what is missing or wrong (which role,
    which key id, which algorithm, which digest)."""


class MLError(RegistryCoreError):
    """A failure of the optional ML layer (``registry_core.ml``): training, models, traces."""


class ModelError(MLError, ValueError):
    """A model artifact that cannot be used: unknown kind or version, truncated or corrupt bytes,
    a digest or signature that does not match, features that do not fit; nothing was loaded."""


class TraceError(MLError, ValueError):
    """An access trace that cannot be read: the message gives the file, the line or record and
    what was wrong."""
