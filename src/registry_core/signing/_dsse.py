"""DSSE envelopes carrying in-toto statements that bind a delta patch to its base and target.

A patch statement (in-toto Statement v1, predicate type :data:`PATCH_PREDICATE`) names the
target file and its sha256 as the subject and the base file's and the patch's sha256 in the
predicate. :func:`sign_envelope` wraps it in a DSSE v1 envelope signed over the DSSE
pre-authentication encoding (PAE)::

    "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body

by every signer given (hybrid: one Ed25519 and one ML-DSA-65 signature; ML-DSA signs with
securesystemslib's TAP 21 pre-hash, like TUF metadata). :func:`verify_envelope` counts distinct
public keys with a valid signature against a threshold and, with ``require_algorithms``, needs a
valid signature of every named algorithm. Input is bounded (envelope at most 1 MiB, at most 16
signatures); every failure raises :class:`~registry_core.errors.SignatureError` saying what is
missing: which role, which key id, which algorithm, which digest.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import unicodedata
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from ..errors import InvalidArgumentError, SignatureError, SigningKeyError
from ._keys import ALGORITHMS, Signature, Signer, SSlibKey, key_algorithm

__all__ = [
    "MAX_ENVELOPE_BYTES",
    "MAX_SIGNATURES",
    "PATCH_PREDICATE",
    "PAYLOAD_TYPE",
    "STATEMENT_TYPE",
    "pae",
    "patch_statement",
    "sign_envelope",
    "verify_envelope",
    "verify_patch_envelope",
]

PATCH_PREDICATE = "https://registry-core.dev/delta-patch/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
MAX_ENVELOPE_BYTES = 1 << 20
MAX_SIGNATURES = 16
_MAX_SIG_B64 = 16 << 10  # ML-DSA-87 signatures are 4627 bytes
_MAX_NAME = 1024
_SHA256 = re.compile(r"[0-9a-f]{64}")
_B64 = re.compile(r"[A-Za-z0-9+/\-_]*={0,2}")


def pae(payload_type: str, payload: bytes) -> bytes:
    """The DSSE v1 pre-authentication encoding of ``payload`` (what is actually signed)."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def _hex_digest(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _SHA256.fullmatch(value.lower()):
        raise InvalidArgumentError(f"{what} must be a sha256 hex digest (64 hex digits)")
    return value.lower()


def patch_statement(
    target_name: str, target_sha256: str, base_sha256: str, patch_sha256: str
) -> dict[str, Any]:
    """The in-toto Statement v1 of one patch: subject = the target file (name and sha256),
    predicate = the base file's and the patch's sha256."""
    if (
        not isinstance(target_name, str)
        or not target_name
        or len(target_name) > _MAX_NAME
        or any(unicodedata.category(c) in ("Cc", "Cs") for c in target_name)
    ):
        raise InvalidArgumentError(
            "target_name must be a non-empty name without control characters (<= 1024)"
        )
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": target_name, "digest": {"sha256": _hex_digest(target_sha256, "target")}}
        ],
        "predicateType": PATCH_PREDICATE,
        "predicate": {
            "base": {"digest": {"sha256": _hex_digest(base_sha256, "base")}},
            "patch": {"digest": {"sha256": _hex_digest(patch_sha256, "patch")}},
        },
    }


def _canonical(statement: Mapping[str, Any]) -> bytes:
    try:
        return json.dumps(
            statement, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError (lone surrogates) included
        raise InvalidArgumentError(f"statement is not JSON-serialisable: {exc}") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any, what: str, limit: int) -> bytes:
    """Standard or URL-safe base64 (DSSE allows both), padding optional, strict otherwise."""
    if not isinstance(text, str) or len(text) > limit or not _B64.fullmatch(text):
        raise SignatureError(f"DSSE envelope: {what} is not base64")
    body = text.rstrip("=").replace("-", "+").replace("_", "/")
    body += "=" * (-len(body) % 4)
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(f"DSSE envelope: {what} is not base64") from None


def sign_envelope(statement: Mapping[str, Any], signers: Sequence[Signer]) -> bytes:
    """A DSSE JSON envelope of ``statement`` (payloadType in-toto) signed by every signer
    (a signer listed twice signs once)."""
    if not signers:
        raise SigningKeyError("sign_envelope: no signers given")
    if len(signers) > MAX_SIGNATURES:
        raise InvalidArgumentError(f"at most {MAX_SIGNATURES} signers")
    payload = _canonical(statement)
    message = pae(PAYLOAD_TYPE, payload)
    signatures = []
    seen: set[str] = set()
    for signer in signers:
        keyid = signer.public_key.keyid
        if keyid in seen:
            continue
        seen.add(keyid)
        sig = signer.sign(message)
        signatures.append({"keyid": sig.keyid, "sig": _b64(bytes.fromhex(sig.signature))})
    envelope = {"payload": _b64(payload), "payloadType": PAYLOAD_TYPE, "signatures": signatures}
    return json.dumps(envelope, separators=(",", ":")).encode("ascii")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate member {key!r}")
        out[key] = value
    return out


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data, object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise SignatureError(f"{what} is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise SignatureError(f"{what} is not valid JSON: {exc}") from None


def _short(key_id: str) -> str:
    return key_id[:16]


def verify_envelope(
    envelope: bytes,
    keys: Mapping[str, SSlibKey],
    threshold: int,
    *,
    require_algorithms: Collection[str] = (),
    role: str = "patches",
) -> dict[str, Any]:
    """Check a DSSE envelope against ``keys`` (``{key_id: SSlibKey}``, the role's trusted keys)
    and return its in-toto statement.

    At least ``threshold`` distinct keys must have a valid signature over the PAE, and every
    algorithm in ``require_algorithms`` (e.g. ``("ed25519", "ml-dsa-65")``) must be among
    them. Signatures whose key id is not in ``keys`` count for nothing; a key signing twice
    counts once. ``role`` only names the key set in error messages.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        raise InvalidArgumentError("threshold must be an integer >= 1")
    required = list(dict.fromkeys(require_algorithms))
    for alg in required:
        if alg not in ALGORITHMS:
            raise InvalidArgumentError(f"unknown algorithm {alg!r} in require_algorithms")
    if not isinstance(envelope, (bytes, bytearray, memoryview)):
        raise InvalidArgumentError("envelope must be bytes")
    if len(envelope) > MAX_ENVELOPE_BYTES:
        raise SignatureError(
            f"DSSE envelope larger than {MAX_ENVELOPE_BYTES} bytes ({len(envelope)}): refused"
        )
    doc = _json(bytes(envelope), "DSSE envelope")
    if not isinstance(doc, dict) or set(doc) - {"payload", "payloadType", "signatures"}:
        raise SignatureError("DSSE envelope: not an object of payload, payloadType, signatures")
    payload_type = doc.get("payloadType")
    if payload_type != PAYLOAD_TYPE:
        raise SignatureError(f"DSSE envelope: payloadType {payload_type!r} is not {PAYLOAD_TYPE!r}")
    payload = _unb64(doc.get("payload"), "payload", MAX_ENVELOPE_BYTES)
    sigs = doc.get("signatures")
    if not isinstance(sigs, list) or not sigs:
        raise SignatureError(f"DSSE envelope carries no signatures (role {role!r})")
    if len(sigs) > MAX_SIGNATURES:
        raise SignatureError(f"DSSE envelope: more than {MAX_SIGNATURES} signatures")

    message = pae(PAYLOAD_TYPE, payload)
    valid: dict[str, str] = {}  # key id -> algorithm
    material: set[tuple[str, str, str]] = set()
    bad: list[str] = []
    for entry in sigs:
        if not isinstance(entry, dict) or set(entry) - {"keyid", "sig"}:
            raise SignatureError("DSSE envelope: a signature is not an object of keyid, sig")
        keyid = entry.get("keyid", "")
        raw = _unb64(entry.get("sig"), "a signature", _MAX_SIG_B64)
        if not isinstance(keyid, str):
            raise SignatureError("DSSE envelope: a signature's keyid is not a string")
        key = keys.get(keyid)
        if key is None or keyid in valid:
            continue
        ident = (key.keytype, key.scheme, json.dumps(key.keyval, sort_keys=True))
        if ident in material:  # the same public key listed under two ids counts once
            continue
        try:
            key.verify_signature(Signature(keyid, raw.hex()), message)
        except Exception:
            bad.append(f"{key_algorithm(key) or key.scheme} key {_short(keyid)}")
            continue
        valid[keyid] = key_algorithm(key) or key.scheme
        material.add(ident)

    problems = []
    if len(valid) < threshold:
        missing = [
            f"{key_algorithm(k) or k.scheme} key {_short(kid)}"
            for kid, k in keys.items()
            if kid not in valid
        ]
        detail = [f"no valid signature by {', '.join(missing)}"] if missing else []
        if len(keys) < threshold:
            detail.append(f"only {len(keys)} trusted keys")
        if bad:
            detail.append(f"invalid signature by {', '.join(bad)}")
        problems.append(
            f"{len(valid)} of {threshold} required signatures valid for role {role!r}"
            + (f" ({'; '.join(detail)})" if detail else "")
        )
    have = set(valid.values())
    absent = [alg for alg in required if alg not in have]
    if absent:
        problems.append(
            f"no valid {' or '.join(absent)} signature for role {role!r} "
            f"(trusted {', '.join(absent)} keys: "
            + (
                ", ".join(_short(kid) for kid, k in keys.items() if key_algorithm(k) in absent)
                or "none"
            )
            + ")"
        )
    if problems:
        raise SignatureError("DSSE envelope refused: " + "; ".join(problems))

    statement = _json(payload, "DSSE payload")
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        raise SignatureError(f"DSSE payload is not an in-toto statement ({STATEMENT_TYPE})")
    return statement


def _digest_of(node: Any) -> str | None:
    if isinstance(node, dict) and isinstance(node.get("digest"), dict):
        value = node["digest"].get("sha256")
        if isinstance(value, str):
            return value.lower()
    return None


def verify_patch_envelope(
    envelope: bytes,
    keys: Mapping[str, SSlibKey],
    threshold: int,
    *,
    base_sha256: str,
    target_sha256: str,
    patch_sha256: str,
    require_algorithms: Collection[str] = (),
    target_name: str | None = None,
    role: str = "patches",
) -> dict[str, Any]:
    """Verify an envelope (see :func:`verify_envelope`) and that its patch statement binds
    exactly this base, target and patch (and ``target_name`` when given); returns the
    statement. :class:`SignatureError` names the digest that does not match."""
    expected = {
        "base": _hex_digest(base_sha256, "base_sha256"),
        "target": _hex_digest(target_sha256, "target_sha256"),
        "patch": _hex_digest(patch_sha256, "patch_sha256"),
    }
    statement = verify_envelope(
        envelope, keys, threshold, require_algorithms=require_algorithms, role=role
    )
    if statement.get("predicateType") != PATCH_PREDICATE:
        raise SignatureError(
            f"signed statement is not a patch statement (predicateType "
            f"{statement.get('predicateType')!r}, want {PATCH_PREDICATE!r})"
        )
    subjects = statement.get("subject")
    predicate = statement.get("predicate")
    if not isinstance(subjects, list) or len(subjects) != 1 or not isinstance(predicate, dict):
        raise SignatureError("signed patch statement has no single subject or no predicate")
    got = {
        "target": _digest_of(subjects[0]),
        "base": _digest_of(predicate.get("base")),
        "patch": _digest_of(predicate.get("patch")),
    }
    for what in ("target", "base", "patch"):
        if got[what] != expected[what]:
            raise SignatureError(
                f"signed patch statement: {what} sha256 {got[what]} is not the expected "
                f"{expected[what]}"
            )
    if target_name is not None and subjects[0].get("name") != target_name:
        raise SignatureError(
            f"signed patch statement names target {subjects[0].get('name')!r}, "
            f"not {target_name!r}"
        )
    return statement
