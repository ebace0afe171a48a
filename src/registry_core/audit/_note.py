"""C2SP signed notes and tlog checkpoints, with Ed25519 and ML-DSA-65 signatures.

A checkpoint (c2sp.org/tlog-checkpoint) is the note text ``<origin>\\n<size>\\n<base64 root>\\n``
(then optional extension lines). A signed note (c2sp.org/signed-note) is that text, a blank
line and one line per signature: ``— <key name> base64(key ID || signature)``.

- Ed25519: signature type 0x01, RFC 8032 over the note text, key ID
  ``SHA-256(name || 0x0A || 0x01 || 32-byte public key)[:4]`` (what Go's sumdb/note checks).
- ML-DSA-65: the signed-note spec assigns no type byte to ML-DSA (0x01-0x05 are taken, 0xff
  is "a type without an assigned byte, followed by a longer identifier"), so registry-core uses
  ``0xff || "registry-core/ml-dsa-65"`` as the type, the key ID formula above with that type,
  and the signature of the Keyring's ``ml-dsa-65/1`` scheme (securesystemslib, TAP 21):
  ML-DSA-65 (FIPS 204, empty context) over ``"tuf" || 0x01 || SHA-512(note text)``. Verifiers
  that do not know the type ignore the line, as the spec requires.

Verifier keys are spelled ``<name>+<hex key ID>+<base64(type || public key)>`` (the "vkey" of
Go's sumdb/note), one per line in a key file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidArgumentError

__all__ = [
    "MLDSA65_TYPE",
    "Checkpoint",
    "NoteError",
    "NoteSigner",
    "NoteVerifier",
    "format_checkpoint",
    "keyring_signers",
    "open_note",
    "parse_checkpoint",
    "parse_vkeys",
    "sign_note",
    "verifiers_from_keyring",
]

ED25519_TYPE = b"\x01"
MLDSA65_TYPE = b"\xffregistry-core/ml-dsa-65"
_SIG_PREFIX = "\u2014 "
_MAX_NOTE = 64 * 1024
_MAX_SIGS = 16
_MAX_EXTENSIONS = 16


class NoteError(InvalidArgumentError):
    """A note, checkpoint or verifier key that is malformed or does not verify."""


def _check_name(name: str) -> str:
    if (
        not isinstance(name, str)
        or not name
        or "+" in name
        or any(c.isspace() for c in name)
        or any(ord(c) < 0x20 for c in name)
    ):
        raise NoteError(f"invalid key name {str(name)[:80]!r} (non-empty, no spaces, no '+')")
    return name


def key_id(name: str, sig_type: bytes, public: bytes) -> int:
    """``SHA-256(name || 0x0A || type || public key)[:4]`` as a big-endian uint32."""
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + sig_type + public).digest()
    return int.from_bytes(digest[:4], "big")


def _mldsa_payload(text: bytes) -> bytes:
    return b"tuf\x01" + hashlib.sha512(text).digest()


@dataclass(frozen=True)
class NoteVerifier:
    """One trusted key: name, type, raw public key (Ed25519: 32 bytes; ML-DSA-65: 1952)."""

    name: str
    sig_type: bytes
    public: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.sig_type == ED25519_TYPE:
            if len(self.public) != 32:
                raise NoteError("an Ed25519 public key is 32 bytes")
        elif self.sig_type == MLDSA65_TYPE:
            if len(self.public) != 1952:
                raise NoteError("an ML-DSA-65 public key is 1952 bytes")
        else:
            raise NoteError("unknown signature type (registry-core knows Ed25519 and ML-DSA-65)")

    @property
    def key_id(self) -> int:
        return key_id(self.name, self.sig_type, self.public)

    @property
    def algorithm(self) -> str:
        return "ed25519" if self.sig_type == ED25519_TYPE else "ml-dsa-65"

    def vkey(self) -> str:
        """``<name>+<hex key ID>+<base64(type || public key)>``."""
        blob = base64.b64encode(self.sig_type + self.public).decode()
        return f"{self.name}+{self.key_id:08x}+{blob}"

    @classmethod
    def from_vkey(cls, text: str) -> NoteVerifier:
        parts = text.strip().split("+", 2)  # the base64 key may hold "+"
        if len(parts) != 3:
            raise NoteError("a verifier key is <name>+<hex key id>+<base64 key>")
        name, hex_id, blob = parts
        try:
            raw = base64.b64decode(blob, validate=True)
            wanted = int(hex_id, 16)
        except (binascii.Error, ValueError):
            raise NoteError(f"verifier key {name[:80]!r}: bad hex or base64") from None
        if len(hex_id) != 8:
            raise NoteError(f"verifier key {name[:80]!r}: the key id is 8 hex digits")
        if raw[:1] == ED25519_TYPE:
            v = cls(name, ED25519_TYPE, raw[1:])
        elif raw.startswith(MLDSA65_TYPE):
            v = cls(name, MLDSA65_TYPE, raw[len(MLDSA65_TYPE) :])
        else:
            raise NoteError(f"verifier key {name[:80]!r}: unknown signature type")
        if v.key_id != wanted:
            raise NoteError(f"verifier key {name[:80]!r}: the key id does not match the key")
        return v

    def verify(self, text: bytes, signature: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature

        try:
            if self.sig_type == ED25519_TYPE:
                from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

                Ed25519PublicKey.from_public_bytes(self.public).verify(signature, text)
            else:
                from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PublicKey

                MLDSA65PublicKey.from_public_bytes(self.public).verify(
                    signature, _mldsa_payload(text)
                )
        except (InvalidSignature, ValueError):
            return False
        return True


def parse_vkeys(text: str) -> list[NoteVerifier]:
    """Verifier keys, one per line (blank lines and ``#`` comments skipped)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(NoteVerifier.from_vkey(line))
    if not out:
        raise NoteError("the key file holds no verifier key")
    return out


class NoteSigner:
    """Signs note text with one key of a :class:`~registry_core.signing.Keyring` (its signer
    checks at every signature that the key was not retired)."""

    def __init__(self, name: str, verifier: NoteVerifier, signer: Any) -> None:
        self.name = _check_name(name)
        self.verifier = verifier
        self._signer = signer

    def sign(self, text: bytes) -> bytes:
        sig = bytes.fromhex(self._signer.sign(text).signature)
        return self.verifier.key_id.to_bytes(4, "big") + sig

    def __repr__(self) -> str:
        return f"NoteSigner({self.name!r}, {self.verifier.algorithm}, {self.verifier.key_id:08x})"


def _raw_public(info: Any) -> tuple[bytes, bytes] | None:
    """(type, raw public key) of a keyring key usable for notes, else None."""
    keyval = info.public.keyval["public"]
    if info.algorithm == "ed25519":
        return ED25519_TYPE, bytes.fromhex(keyval)
    if info.algorithm == "ml-dsa-65":
        from cryptography.hazmat.primitives import serialization as ser

        key = ser.load_pem_public_key(keyval.encode("ascii"))
        return MLDSA65_TYPE, key.public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    return None


def _newest(infos: Iterable[Any]) -> dict[str, Any]:
    by_alg: dict[str, Any] = {}
    for info in infos:  # oldest first: the newest of each algorithm wins
        if info.algorithm in ("ed25519", "ml-dsa-65"):
            by_alg[info.algorithm] = info
    return by_alg


def keyring_signers(keyring: Any, name: str, *, role: str = "audit") -> list[NoteSigner]:
    """An Ed25519 and an ML-DSA-65 note signer from the newest active keys of ``role``."""
    by_alg = _newest(keyring.keys(role))
    missing = [a for a in ("ed25519", "ml-dsa-65") if a not in by_alg]
    if missing:
        from ..errors import SigningKeyError

        raise SigningKeyError(
            f"the keyring has no active {role!r} key for {', '.join(missing)} "
            f"(registry-core keys generate DIR --role {role})"
        )
    out = []
    for alg in ("ed25519", "ml-dsa-65"):
        info = by_alg[alg]
        raw = _raw_public(info)
        assert raw is not None
        verifier = NoteVerifier(name, raw[0], raw[1])
        out.append(NoteSigner(name, verifier, keyring.signer(info.key_id)))
    return out


def verifiers_from_keyring(
    keyring: Any, name: str, *, role: str = "audit", active_only: bool = False
) -> list[NoteVerifier]:
    """The note verifiers of every Ed25519 / ML-DSA-65 key of ``role`` (public halves only)."""
    out = []
    for info in keyring.keys(role, active_only=active_only):
        raw = _raw_public(info)
        if raw is not None:
            out.append(NoteVerifier(name, raw[0], raw[1]))
    return out


def sign_note(text: str, signers: Sequence[NoteSigner]) -> bytes:
    """The signed note: text (ending in a newline), a blank line, one line per signer."""
    if not text.endswith("\n") or "\n\n" in text or not signers:
        raise NoteError("a note text ends in a newline, has no blank line, and needs a signer")
    body = text.encode("utf-8")
    lines = [f"{_SIG_PREFIX}{s.name} {base64.b64encode(s.sign(body)).decode()}\n" for s in signers]
    return body + b"\n" + "".join(lines).encode("utf-8")


@dataclass(frozen=True)
class OpenedNote:
    """A note whose signatures were checked: its text, the verifiers that verified it and how
    many signature lines came from keys not given."""

    text: str
    verified: tuple[NoteVerifier, ...]
    unknown: int


def open_note(data: bytes, verifiers: Sequence[NoteVerifier]) -> OpenedNote:
    """Parse ``data`` and verify every signature from a known key; NoteError when malformed,
    when a known key's signature fails, or when no known key signed."""
    if len(data) > _MAX_NOTE:
        raise NoteError(f"note larger than {_MAX_NOTE} bytes")
    try:
        whole = data.decode("utf-8")
    except UnicodeDecodeError:
        raise NoteError("note is not UTF-8") from None
    if any(ord(c) < 0x20 and c != "\n" for c in whole):
        raise NoteError("note holds control characters")
    split = whole.rfind("\n\n")
    if split < 0:
        raise NoteError("note has no signature block")
    text, sigs = whole[: split + 1], whole[split + 2 :]
    if not sigs.endswith("\n"):
        raise NoteError("note signature block does not end in a newline")
    known = {(v.name, v.key_id): v for v in verifiers}
    verified: list[NoteVerifier] = []
    unknown = 0
    lines = sigs[:-1].split("\n")
    if len(lines) > _MAX_SIGS:
        raise NoteError(f"note has more than {_MAX_SIGS} signatures")
    body = text.encode("utf-8")
    for line in lines:
        if not line.startswith(_SIG_PREFIX):
            raise NoteError("malformed signature line")
        name, _, b64 = line[len(_SIG_PREFIX) :].partition(" ")
        try:
            _check_name(name)
            raw = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise NoteError("malformed signature line") from None
        if len(raw) < 5:
            raise NoteError("malformed signature line")
        v = known.get((name, int.from_bytes(raw[:4], "big")))
        if v is None:
            unknown += 1
            continue
        if not v.verify(body, raw[4:]):
            raise NoteError(f"the {v.algorithm} signature of {name} does not verify")
        if v not in verified:
            verified.append(v)
    if not verified:
        raise NoteError("no signature from a trusted key")
    return OpenedNote(text, tuple(verified), unknown)


@dataclass(frozen=True)
class Checkpoint:
    """A tlog checkpoint body."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()


def format_checkpoint(cp: Checkpoint) -> str:
    if not cp.origin or "\n" in cp.origin or len(cp.root) != 32 or cp.size < 0:
        raise NoteError("bad checkpoint fields")
    lines = [cp.origin, str(cp.size), base64.b64encode(cp.root).decode(), *cp.extensions]
    return "\n".join(lines) + "\n"


def parse_checkpoint(text: str) -> Checkpoint:
    """The fields of a checkpoint note text; NoteError when malformed."""
    if not text.endswith("\n"):
        raise NoteError("checkpoint does not end in a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3 or len(lines) > 3 + _MAX_EXTENSIONS:
        raise NoteError("checkpoint needs origin, size and root lines")
    origin, size, root = lines[:3]
    if not origin or not size.isascii() or not size.isdigit() or (size != "0" and size[0] == "0"):
        raise NoteError("checkpoint: bad origin or size")
    try:
        raw = base64.b64decode(root, validate=True)
    except binascii.Error:
        raise NoteError("checkpoint: the root is not base64") from None
    if len(raw) != 32 or base64.b64encode(raw).decode() != root:
        raise NoteError("checkpoint: the root is not a base64 SHA-256 hash")
    if any(not e for e in lines[3:]):
        raise NoteError("checkpoint: empty extension line")
    return Checkpoint(origin, int(size), raw, tuple(lines[3:]))
