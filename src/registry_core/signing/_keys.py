"""Signing keys and the keyring: Ed25519 and ML-DSA (FIPS 204) through securesystemslib.

Keys are securesystemslib :class:`~securesystemslib.signer.SSlibKey` /
:class:`~securesystemslib.signer.CryptoSigner` objects, so their ids (sha256 of the canonical
public key dict) and signature schemes (``ed25519``; ``ml-dsa-44/1``, ``ml-dsa-65/1``,
``ml-dsa-87/1`` with TAP 21's SHA-512 pre-hash) are exactly what python-tuf and its ``ngclient``
use.

A :class:`Keyring` is a directory (by default ``DIR/.registry-core/keys/`` of a registry):

- ``<key_id>.pem``: the private key, PKCS#8 PEM encrypted with the passphrase
  (cryptography's ``BestAvailableEncryption``: PBES2, AES-256-CBC, PBKDF2-HMAC-SHA256 with
  the 2048 rounds cryptography's PKCS#8 writer fixes), mode 0600. 2048 rounds slow a guesser
  little: the passphrase should be a generated high-entropy secret (the environment variable
  of a deployment), not a word. Unencrypted keys are written only when
  ``insecure_plaintext=True`` is passed explicitly.
- ``keyring.json``: public keys with role, algorithm, created, not_after, retired and the id of
  the key's hybrid partner, replaced atomically.

A key is *active* while it is neither retired nor past ``not_after``. :meth:`Keyring.signer`
refuses an inactive key unless ``allow_inactive=True`` (signing a root rotation with an
expired root key). Retiring a key destroys its private key file; its public key stays listed so
old signatures can still be checked.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ..errors import InvalidArgumentError, SigningError, SigningKeyError

_EXTRA_HINT = "pip install 'registry-core[signing]'"

try:
    from cryptography.hazmat.primitives import serialization as _ser
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.mldsa import (
        MLDSA44PrivateKey,
        MLDSA65PrivateKey,
        MLDSA87PrivateKey,
    )
    from securesystemslib.signer import (
        CryptoSigner,
        Signature,
        Signer,
        SSlibKey,
    )
except ImportError as _exc:  # pragma: no cover - exercised only without the extra
    raise SigningError(
        f"registry_core.signing needs the signing extra (tuf, securesystemslib, "
        f"cryptography>=48): {_EXTRA_HINT} ({_exc})"
    ) from _exc

__all__ = [
    "ALGORITHMS",
    "DEFAULT_PASSPHRASE_ENV",
    "PQ_ALGORITHMS",
    "KeyInfo",
    "Keyring",
    "key_algorithm",
    "keyring_dir",
]

#: Every algorithm a key may have, by registry-core's name.
ALGORITHMS = ("ed25519", "ml-dsa-44", "ml-dsa-65", "ml-dsa-87")
#: The post-quantum ones (FIPS 204 ML-DSA parameter sets).
PQ_ALGORITHMS = ("ml-dsa-44", "ml-dsa-65", "ml-dsa-87")
#: Where a passphrase comes from when none is passed.
DEFAULT_PASSPHRASE_ENV = "REGISTRY_CORE_KEY_PASSPHRASE"

# algorithm -> (securesystemslib keytype, scheme, cryptography private key class)
_SPECS: dict[str, tuple[str, str, Any]] = {
    "ed25519": ("ed25519", "ed25519", Ed25519PrivateKey),
    "ml-dsa-44": ("ml-dsa", "ml-dsa-44/1", MLDSA44PrivateKey),
    "ml-dsa-65": ("ml-dsa", "ml-dsa-65/1", MLDSA65PrivateKey),
    "ml-dsa-87": ("ml-dsa", "ml-dsa-87/1", MLDSA87PrivateKey),
}
_BY_SCHEME = {(kt, sch): alg for alg, (kt, sch, _cls) in _SPECS.items()}

_KEYRING_FILE = "keyring.json"
_LOCK_FILE = ".lock"
_FORMAT = 1
_MAX_KEYRING_BYTES = 16 << 20
_MAX_PEM_BYTES = 64 << 10
_KEY_ID = re.compile(r"[0-9a-f]{64}")
_ROLE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_MAX_VALID_DAYS = 100 * 366


def key_algorithm(key: Any) -> str | None:
    """The registry-core algorithm name of a securesystemslib key (``None`` if not one of
    :data:`ALGORITHMS`)."""
    return _BY_SCHEME.get((str(getattr(key, "keytype", "")), str(getattr(key, "scheme", ""))))


def keyring_dir(registry_dir: str | os.PathLike[str]) -> Path:
    """The default keyring directory of a registry: ``DIR/.registry-core/keys``."""
    from ..storage import STATE_DIR

    return Path(registry_dir) / STATE_DIR / "keys"


def _check_algorithm(algorithm: str) -> str:
    if algorithm not in _SPECS:
        raise InvalidArgumentError(
            f"unknown key algorithm {algorithm!r} (known: {', '.join(ALGORITHMS)})"
        )
    return algorithm


def _check_role(role: str) -> str:
    if not isinstance(role, str) or not _ROLE.fullmatch(role):
        raise InvalidArgumentError(
            f"invalid role name {role!r} (letters, digits, '_', '.', '-'; at most 64)"
        )
    return role


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise InvalidArgumentError("the keyring clock must return timezone-aware datetimes")
    return value.astimezone(timezone.utc)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def _parse_time(value: Any, what: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise SigningKeyError(f"corrupt keyring: {what} is not a timestamp")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SigningKeyError(f"corrupt keyring: {what} {value!r} is not a timestamp") from None
    if parsed.tzinfo is None:
        raise SigningKeyError(f"corrupt keyring: {what} {value!r} has no time zone")
    return parsed.astimezone(timezone.utc)


@dataclass(frozen=True)
class KeyInfo:
    """One key of the keyring: its public half and its life cycle (never private material)."""

    key_id: str
    algorithm: str
    role: str
    created: datetime
    not_after: datetime | None
    retired: datetime | None
    public: SSlibKey
    #: the key id of the other half of a hybrid (Ed25519 + ML-DSA) pair, if generated as one
    pair: str | None = None

    @property
    def post_quantum(self) -> bool:
        """Whether the key is an ML-DSA key."""
        return self.algorithm in PQ_ALGORITHMS

    def active_at(self, when: datetime) -> bool:
        """Neither retired nor expired at ``when``."""
        if self.retired is not None and self.retired <= when:
            return False
        return self.not_after is None or when < self.not_after

    def status_at(self, when: datetime) -> str:
        """``"active"``, ``"expired"`` or ``"retired"`` at ``when``."""
        if self.retired is not None and self.retired <= when:
            return "retired"
        if self.not_after is not None and when >= self.not_after:
            return "expired"
        return "active"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in ``keyring.json`` (public data only)."""
        return {
            "keyid": self.key_id,
            "algorithm": self.algorithm,
            "role": self.role,
            "created": _iso(self.created),
            "not_after": _iso(self.not_after),
            "retired": _iso(self.retired),
            "pair": self.pair,
            "public": self.public.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Any) -> KeyInfo:
        """Parse one ``keyring.json`` entry; :class:`SigningKeyError` on anything malformed."""
        if not isinstance(data, dict):
            raise SigningKeyError("corrupt keyring: a key entry is not an object")
        key_id = data.get("keyid")
        if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
            raise SigningKeyError(f"corrupt keyring: bad key id {key_id!r}")
        algorithm = data.get("algorithm")
        role = data.get("role")
        if algorithm not in _SPECS or not isinstance(role, str) or not _ROLE.fullmatch(role):
            raise SigningKeyError(f"corrupt keyring: key {key_id} has a bad algorithm or role")
        pair = data.get("pair")
        if pair is not None and (not isinstance(pair, str) or not _KEY_ID.fullmatch(pair)):
            raise SigningKeyError(f"corrupt keyring: key {key_id} has a bad pair id")
        try:
            public = SSlibKey.from_dict(key_id, dict(data["public"]))
        except Exception as exc:
            raise SigningKeyError(f"corrupt keyring: key {key_id}: {exc}") from None
        if key_algorithm(public) != algorithm:
            raise SigningKeyError(f"corrupt keyring: key {key_id} is not {algorithm}")
        if _default_keyid(public) != key_id:
            raise SigningKeyError(f"corrupt keyring: key {key_id} does not match its public key")
        created = _parse_time(data.get("created"), f"key {key_id} created")
        if created is None:
            raise SigningKeyError(f"corrupt keyring: key {key_id} has no creation time")
        return cls(
            key_id=key_id,
            algorithm=str(algorithm),
            role=role,
            created=created,
            not_after=_parse_time(data.get("not_after"), f"key {key_id} not_after"),
            retired=_parse_time(data.get("retired"), f"key {key_id} retired"),
            public=public,
            pair=pair,
        )


def _default_keyid(key: SSlibKey) -> str:
    from securesystemslib.signer._utils import compute_default_keyid

    return compute_default_keyid(key.keytype, key.scheme, key.keyval)


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Keyring:
    """A directory of signing keys, private halves encrypted at rest.

    ``passphrase`` (bytes or str) unlocks and encrypts private keys; ``None`` reads the
    environment variable ``REGISTRY_CORE_KEY_PASSPHRASE``; with neither, everything that needs a
    private key raises :class:`SigningKeyError` (listing public keys still works).
    ``insecure_plaintext=True`` stores new private keys unencrypted (tests, throwaway demos);
    without it an unencrypted key is never written. ``clock`` returns the current UTC time
    (tests move it to expire keys).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        passphrase: bytes | str | None = None,
        insecure_plaintext: bool = False,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.directory = Path(directory)
        if passphrase is None:
            env = os.environ.get(DEFAULT_PASSPHRASE_ENV)
            passphrase = env if env else None
        if isinstance(passphrase, str):
            passphrase = passphrase.encode("utf-8")
        if passphrase is not None and not isinstance(passphrase, bytes):
            raise InvalidArgumentError("passphrase must be bytes, str or None")
        self._passphrase: bytes | None = passphrase or None
        self._plaintext = bool(insecure_plaintext)
        self._clock = clock or _now
        self._lock = threading.RLock()
        self._signers: dict[str, _KeyringSigner] = {}
        self._cache: tuple[tuple[int, int, int, int], dict[str, KeyInfo]] | None = None

    def __repr__(self) -> str:  # never the passphrase
        locked = "unlocked" if self._passphrase is not None else "locked"
        return f"Keyring({str(self.directory)!r}, {locked})"

    # -- reading ---------------------------------------------------------------------------

    def now(self) -> datetime:
        """The keyring clock's current time (UTC)."""
        return _utc(self._clock())

    def _load(self) -> dict[str, KeyInfo]:
        """The keys in ``keyring.json`` (parsed again only when the file was replaced: it is
        always replaced atomically, so inode, size and mtime identify a version)."""
        path = self.directory / _KEYRING_FILE
        try:
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                version = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
                if self._cache is not None and self._cache[0] == version:
                    return dict(self._cache[1])
                raw = f.read(_MAX_KEYRING_BYTES + 1)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise SigningKeyError(f"cannot read keyring {path}: {exc}") from None
        if len(raw) > _MAX_KEYRING_BYTES:
            raise SigningKeyError(f"corrupt keyring {path}: larger than {_MAX_KEYRING_BYTES}")
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError):
            raise SigningKeyError(f"corrupt keyring {path}: not JSON") from None
        if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
            raise SigningKeyError(f"corrupt keyring {path}: unknown format")
        entries = doc.get("keys")
        if not isinstance(entries, list):
            raise SigningKeyError(f"corrupt keyring {path}: 'keys' is not a list")
        keys: dict[str, KeyInfo] = {}
        for entry in entries:
            info = KeyInfo.from_dict(entry)
            keys[info.key_id] = info
        self._cache = (version, dict(keys))
        return keys

    def _save(self, keys: Mapping[str, KeyInfo]) -> None:
        from .._util import atomic_write

        doc = {"format": _FORMAT, "keys": [k.to_dict() for k in _sorted(keys.values())]}
        data = json.dumps(doc, indent=1, sort_keys=True).encode("utf-8") + b"\n"
        atomic_write(self.directory / _KEYRING_FILE, data, fsync=True)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[dict[str, KeyInfo]]:
        """Read-modify-write under a thread lock and an exclusive file lock (other processes)."""
        import fcntl

        with self._lock:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.directory / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                keys = self._load()
                yield keys
            finally:
                os.close(fd)

    def keys(self, role: str | None = None, *, active_only: bool = True) -> list[KeyInfo]:
        """The keys (of ``role`` if given), oldest first; only active ones unless
        ``active_only=False``."""
        with self._lock:
            keys = self._load().values()
        now = self.now()
        return _sorted(
            k
            for k in keys
            if (role is None or k.role == role) and (not active_only or k.active_at(now))
        )

    def key(self, key_id: str) -> KeyInfo:
        """One key by its id (or a unique prefix of at least 8 hex digits)."""
        with self._lock:
            keys = self._load()
        return keys[self._resolve(keys, key_id)]

    def public_keys(self, role: str, *, active_only: bool = True) -> dict[str, SSlibKey]:
        """``{key_id: SSlibKey}`` of a role: the ``keys`` argument of envelope verification."""
        return {k.key_id: k.public for k in self.keys(role, active_only=active_only)}

    @staticmethod
    def _resolve(keys: Mapping[str, KeyInfo], key_id: str) -> str:
        if key_id in keys:
            return key_id
        if isinstance(key_id, str) and len(key_id) >= 8:
            found = [k for k in keys if k.startswith(key_id.lower())]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise SigningKeyError(f"key id prefix {key_id!r} is ambiguous")
        raise SigningKeyError(f"no key {key_id!r} in the keyring ({len(keys)} keys)")

    # -- private keys ----------------------------------------------------------------------

    def _require_passphrase(self, what: str) -> bytes | None:
        if self._passphrase is None and not self._plaintext:
            raise SigningKeyError(
                f"{what} needs the keyring passphrase: set {DEFAULT_PASSPHRASE_ENV} "
                "(or pass passphrase=/--passphrase-file)"
            )
        return self._passphrase

    def _pem_path(self, key_id: str) -> Path:
        return self.directory / f"{key_id}.pem"

    def _write_private(self, key_id: str, private_key: Any) -> None:
        from .._util import atomic_write

        passphrase = self._require_passphrase("storing a private key")
        encryption: Any
        if passphrase is not None:
            encryption = _ser.BestAvailableEncryption(passphrase)
        else:
            encryption = _ser.NoEncryption()  # only with insecure_plaintext=True
        pem = private_key.private_bytes(_ser.Encoding.PEM, _ser.PrivateFormat.PKCS8, encryption)
        atomic_write(self._pem_path(key_id), pem, fsync=True, mode=0o600)

    def _read_private(self, info: KeyInfo) -> Any:
        path = self._pem_path(info.key_id)
        passphrase = self._require_passphrase(f"signing with key {info.key_id}")
        try:
            with open(path, "rb") as f:
                pem = f.read(_MAX_PEM_BYTES + 1)
        except FileNotFoundError:
            raise SigningKeyError(
                f"the private key of {info.role} key {info.key_id} ({info.algorithm}) is not in "
                f"{self.directory}"
            ) from None
        except OSError as exc:
            raise SigningKeyError(f"cannot read private key {info.key_id}: {exc}") from None
        if len(pem) > _MAX_PEM_BYTES:
            raise SigningKeyError(f"private key file of {info.key_id} is too large")
        encrypted = b"ENCRYPTED PRIVATE KEY" in pem
        if not encrypted and not self._plaintext:
            raise SigningKeyError(
                f"private key {info.key_id} is stored unencrypted; refusing it without "
                "insecure_plaintext=True"
            )
        try:
            return _ser.load_pem_private_key(pem, passphrase if encrypted else None)
        except (ValueError, TypeError):
            raise SigningKeyError(
                f"cannot unlock private key {info.key_id}: wrong passphrase or corrupt file"
            ) from None
        except Exception as exc:  # UnsupportedAlgorithm and friends
            raise SigningKeyError(f"cannot load private key {info.key_id}: {exc}") from None

    def _check_active(self, key_id: str, allow_inactive: bool) -> KeyInfo:
        keys = self._load()
        info = keys[self._resolve(keys, key_id)]
        status = info.status_at(self.now())
        if status == "retired" or (status != "active" and not allow_inactive):
            when = info.retired if status == "retired" else info.not_after
            raise SigningKeyError(
                f"{info.role} key {info.key_id} ({info.algorithm}) is {status} "
                f"(since {_iso(when)}): it may not sign"
            )
        return info

    def signer(self, key_id: str, *, allow_inactive: bool = False) -> Signer:
        """A securesystemslib ``CryptoSigner`` for an active key (``SigningKeyError`` for an
        unknown, expired or retired key, a missing or wrong passphrase). ``allow_inactive``
        lets an expired key sign (a root rotation away from it); a retired key never signs:
        the signer checks at every ``sign()``, so one kept by a server refuses once its key
        is retired, here or by another process."""
        with self._lock:
            info = self._check_active(key_id, allow_inactive)
            cached = self._signers.get(info.key_id)
            if cached is not None:
                return cached
            private_key = self._read_private(info)
            try:
                signer = _KeyringSigner(private_key, info.public, keyring=self)
            except Exception:
                raise SigningKeyError(
                    f"private key file of {info.key_id} does not match its public key"
                ) from None
            self._signers[info.key_id] = signer
            return signer

    def signers(self, role: str) -> list[Signer]:
        """Signers for every active key of ``role`` (a hybrid pair gives two)."""
        return [self.signer(k.key_id) for k in self.keys(role)]

    # -- changing --------------------------------------------------------------------------

    def _new(self, role: str, algorithm: str, valid_days: int, now: datetime) -> tuple[Any, Any]:
        keytype, scheme, cls = _SPECS[algorithm]
        private_key = cls.generate()
        public = SSlibKey.from_crypto(private_key.public_key(), None, scheme)
        info = KeyInfo(
            key_id=public.keyid,
            algorithm=algorithm,
            role=role,
            created=now,
            not_after=now + timedelta(days=valid_days),
            retired=None,
            public=public,
        )
        return info, private_key

    @staticmethod
    def _check_days(valid_days: int) -> int:
        if (
            isinstance(valid_days, bool)
            or not isinstance(valid_days, int)
            or not 1 <= valid_days <= _MAX_VALID_DAYS
        ):
            raise InvalidArgumentError(f"valid_days must be 1..{_MAX_VALID_DAYS}")
        return valid_days

    def _add(self, pairs: list[tuple[KeyInfo, Any]]) -> list[KeyInfo]:
        self._require_passphrase("generating a key")
        with self._writing() as keys:
            written: list[str] = []
            try:
                for info, private_key in pairs:
                    self._write_private(info.key_id, private_key)
                    written.append(info.key_id)
                    keys[info.key_id] = info
                self._save(keys)
            except BaseException:
                for key_id in written:  # nothing half-written: no orphan private keys
                    with contextlib.suppress(OSError):
                        self._pem_path(key_id).unlink()
                raise
        return [info for info, _ in pairs]

    def generate(self, role: str, algorithm: str, *, valid_days: int = 365) -> KeyInfo:
        """Create one key for ``role``, valid for ``valid_days`` from now."""
        _check_role(role)
        _check_algorithm(algorithm)
        self._check_days(valid_days)
        (info,) = self._add([self._new(role, algorithm, valid_days, self.now())])
        return info

    def generate_hybrid(
        self, role: str, *, pq: str = "ml-dsa-65", valid_days: int = 365
    ) -> tuple[KeyInfo, KeyInfo]:
        """Create an Ed25519 + ML-DSA pair for ``role`` (each names the other as ``pair``)."""
        _check_role(role)
        if pq not in PQ_ALGORITHMS:
            raise InvalidArgumentError(
                f"the post-quantum half must be one of {', '.join(PQ_ALGORITHMS)}, not {pq!r}"
            )
        self._check_days(valid_days)
        now = self.now()
        (classical, c_priv), (quantum, q_priv) = (
            self._new(role, "ed25519", valid_days, now),
            self._new(role, pq, valid_days, now),
        )
        classical = replace(classical, pair=quantum.key_id)
        quantum = replace(quantum, pair=classical.key_id)
        self._add([(classical, c_priv), (quantum, q_priv)])
        return classical, quantum

    def rotate(
        self, role: str, *, valid_days: int | None = None
    ) -> tuple[list[KeyInfo], list[KeyInfo]]:
        """A new hybrid pair for ``role``; returns ``(new keys, the role's previously active
        keys)``. The old keys stay active until :meth:`retire` (so a TUF root rotation can be
        signed by old and new keys). The post-quantum algorithm and validity period follow the
        newest active ML-DSA key of the role (ML-DSA-65 and 365 days otherwise)."""
        _check_role(role)
        old = self.keys(role)
        pq = "ml-dsa-65"
        days = 365
        pq_old = [k for k in old if k.post_quantum]
        if pq_old:
            pq = pq_old[-1].algorithm
            if pq_old[-1].not_after is not None:
                days = max(1, (pq_old[-1].not_after - pq_old[-1].created).days)
        if valid_days is not None:
            days = valid_days
        new = list(self.generate_hybrid(role, pq=pq, valid_days=days))
        return new, old

    def retire(self, key_id: str) -> KeyInfo:
        """Mark a key retired now and destroy its private key file (idempotent). Its public key
        stays listed (``keys(active_only=False)``) to check old signatures."""
        with self._writing() as keys:
            resolved = self._resolve(keys, key_id)
            info = keys[resolved]
            if info.retired is None:
                info = replace(info, retired=self.now())
                keys[resolved] = info
                self._save(keys)
            with contextlib.suppress(FileNotFoundError):
                self._pem_path(resolved).unlink()
            self._signers.pop(resolved, None)
        return info


class _KeyringSigner(CryptoSigner):
    """A ``CryptoSigner`` that asks its keyring before every signature whether its key was
    retired (here or by another process): a signer kept by a long-running server fails closed
    once its key is retired. Expiry is checked when :meth:`Keyring.signer` hands it out (a
    kept signer may finish a rotation away from its expired key)."""

    def __init__(self, private_key: Any, public_key: SSlibKey, *, keyring: Keyring) -> None:
        super().__init__(private_key, public_key)
        self._keyring = keyring

    def sign(self, payload: bytes) -> Signature:
        with self._keyring._lock:
            self._keyring._check_active(self.public_key.keyid, True)  # retired: never
        return super().sign(payload)

    def __repr__(self) -> str:  # never private material
        return f"KeyringSigner({self.public_key.keyid[:16]}, {key_algorithm(self.public_key)})"


def _sorted(keys: Any) -> list[KeyInfo]:
    return sorted(keys, key=lambda k: (k.created, k.role, k.algorithm != "ed25519", k.key_id))
