"""Certificates by host name on disk: one PEM file per name (key + chain), replaced atomically.

One file per name, not a cert/key pair, so that a reader never sees a new key with an old
certificate: :meth:`CertificateStore.put` writes ``<name>.pem`` (mode 0600) in one rename.
The TLS server re-reads a file when it changes (see :mod:`._sni`): a renewal needs no restart.
"""

from __future__ import annotations

import datetime
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._util import atomic_write
from ..errors import InvalidArgumentError

__all__ = ["CertificateInfo", "CertificateStore", "normalize_name"]

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def normalize_name(name: str) -> str:
    """A DNS host name in the form the store keys by (lower case, no trailing dot).

    ``*.example.com`` is accepted (a wildcard certificate); anything else that is not a
    host name raises InvalidArgumentError (the name becomes a file name).
    """
    if not isinstance(name, str):
        raise InvalidArgumentError(f"host name must be a string, got {type(name).__name__}")
    host = name.strip().lower().rstrip(".")
    labels = host.split(".")
    if labels and labels[0] == "*":
        labels = labels[1:]
    if (
        len(host) > 253
        or len(labels) < 1
        or not all(_LABEL.match(label) for label in labels)
        or (host.startswith("*") and len(labels) < 2)
    ):
        raise InvalidArgumentError(f"{name!r} is not a DNS host name")
    return host


@dataclass(frozen=True)
class CertificateInfo:
    """What the store knows of one name's certificate (no key material)."""

    name: str
    path: str
    not_valid_before: datetime.datetime
    not_valid_after: datetime.datetime
    dns_names: tuple[str, ...]
    serial_number: int


class CertificateStore:
    """A directory of ``<host>.pem`` files: private key (PKCS#8) then the certificate chain.

    ``put`` checks that the key belongs to the first certificate and that the certificate
    covers the name, then replaces the file atomically (0600). The directory is created 0700.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CertificateStore({str(self.directory)!r})"

    def path(self, name: str) -> Path:
        """The file that holds ``name``'s key and chain (it may not exist)."""
        return self.directory / f"{normalize_name(name)}.pem"

    def names(self) -> list[str]:
        """The host names with a certificate, sorted."""
        return sorted(p.name[:-4] for p in self.directory.glob("*.pem") if p.is_file())

    def __contains__(self, name: object) -> bool:
        try:
            return isinstance(name, str) and self.path(name).is_file()
        except InvalidArgumentError:
            return False

    def put(self, name: str, chain_pem: bytes, key_pem: bytes) -> CertificateInfo:
        """Store ``name``'s certificate chain (PEM, leaf first) and private key (PEM)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        host = normalize_name(name)
        try:
            certs = x509.load_pem_x509_certificates(bytes(chain_pem))
        except ValueError:
            raise InvalidArgumentError(f"{host}: no PEM certificate in the chain") from None
        try:
            key = serialization.load_pem_private_key(bytes(key_pem), password=None)
        except (TypeError, ValueError):
            raise InvalidArgumentError(f"{host}: no usable unencrypted PEM private key") from None
        pub = serialization.PublicFormat.SubjectPublicKeyInfo
        der = serialization.Encoding.DER
        if certs[0].public_key().public_bytes(der, pub) != key.public_key().public_bytes(der, pub):
            raise InvalidArgumentError(
                f"{host}: the private key does not belong to the certificate"
            )
        if not _covers(_dns_names(certs[0]), host):
            raise InvalidArgumentError(f"{host}: the certificate does not name it")
        body = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ) + b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
        path = self.directory / f"{host}.pem"
        with self._lock:
            atomic_write(path, body, fsync=True, mode=0o600)
        return _info(host, path, certs[0])

    def info(self, name: str) -> CertificateInfo | None:
        """The stored certificate's validity and names, or None when there is none."""
        from cryptography import x509

        path = self.path(name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            cert = x509.load_pem_x509_certificates(data)[0]
        except ValueError:
            raise InvalidArgumentError(f"{path}: no PEM certificate in it") from None
        return _info(normalize_name(name), path, cert)

    def remove(self, name: str) -> None:
        """Forget ``name``'s certificate (served names fall back to the default)."""
        self.path(name).unlink(missing_ok=True)

    def lookup(self, server_name: str) -> Path | None:
        """The file for a TLS client's SNI name: the exact name, else ``*.<parent>``."""
        try:
            host = normalize_name(server_name)
        except InvalidArgumentError:
            return None
        exact = self.directory / f"{host}.pem"
        if exact.is_file():
            return exact
        parent = host.partition(".")[2]
        if parent and "." in parent:
            wild = self.directory / f"*.{parent}.pem"
            if wild.is_file():
                return wild
        return None


def _dns_names(cert: Any) -> tuple[str, ...]:
    from cryptography import x509

    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(n.lower() for n in sans.get_values_for_type(x509.DNSName))


def _covers(names: tuple[str, ...], host: str) -> bool:
    if host in names:
        return True
    parent = host.partition(".")[2]
    return not host.startswith("*") and bool(parent) and f"*.{parent}" in names


def _info(host: str, path: Path, cert: Any) -> CertificateInfo:
    return CertificateInfo(
        name=host,
        path=str(path),
        not_valid_before=cert.not_valid_before_utc,
        not_valid_after=cert.not_valid_after_utc,
        dns_names=_dns_names(cert),
        serial_number=cert.serial_number,
    )
