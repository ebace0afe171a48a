"""Hostile DSSE envelopes and keyring files: oversized, over-signed, deeply nested, ambiguous
(duplicate members) or malformed input is refused with SignatureError / SigningKeyError, never a
crash, a hang or an unbounded allocation."""

from __future__ import annotations

import base64
import json

import pytest
from securesystemslib.signer import CryptoSigner

from registry_core.errors import SignatureError, SigningKeyError
from registry_core.signing import (
    MAX_ENVELOPE_BYTES,
    MAX_SIGNATURES,
    PAYLOAD_TYPE,
    Keyring,
    pae,
    patch_statement,
    sign_envelope,
    verify_envelope,
)

ED = CryptoSigner.generate_ed25519()
KEYS = {ED.public_key.keyid: ED.public_key}
GOOD = sign_envelope(patch_statement("x/y-1.whl", "1" * 64, "2" * 64, "3" * 64), [ED])
DOC = json.loads(GOOD)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _signed_raw(payload: bytes) -> bytes:
    """An envelope whose signature over ``payload`` is valid (a trusted key signed garbage)."""
    sig = ED.sign(pae(PAYLOAD_TYPE, payload))
    return json.dumps(
        {
            "payload": _b64(payload),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [{"keyid": sig.keyid, "sig": _b64(bytes.fromhex(sig.signature))}],
        }
    ).encode()


def test_oversized_envelope_is_refused_before_parsing():
    big = b"[" * (MAX_ENVELOPE_BYTES + 1)
    with pytest.raises(SignatureError, match="larger than"):
        verify_envelope(big, KEYS, 1)
    padded = GOOD[:-1] + b" " * (MAX_ENVELOPE_BYTES - len(GOOD) + 1) + b"}"
    with pytest.raises(SignatureError, match="larger than"):
        verify_envelope(padded, KEYS, 1)


def test_too_many_signatures():
    doc = dict(DOC, signatures=DOC["signatures"] * (MAX_SIGNATURES + 1))
    with pytest.raises(SignatureError, match=f"more than {MAX_SIGNATURES}"):
        verify_envelope(json.dumps(doc).encode(), KEYS, 1)
    doc = dict(DOC, signatures=DOC["signatures"] * MAX_SIGNATURES)  # the bound itself is fine
    assert verify_envelope(json.dumps(doc).encode(), KEYS, 1)


@pytest.mark.parametrize(
    "envelope",
    [
        b"[" * 200_000,
        b'{"payload":' * 100_000,
        b"\xff\xfe\x00garbage",
        b'{"payload": 1' + b"1" * 5000 + b"}",  # int too large to parse
        b"null",
        b"[]",
        b'"string"',
        json.dumps(dict(DOC, extra=1)).encode(),
        json.dumps(dict(DOC, signatures="nope")).encode(),
        json.dumps(dict(DOC, signatures=[])).encode(),
        json.dumps(dict(DOC, signatures=[1])).encode(),
        json.dumps(
            dict(DOC, signatures=[{"keyid": 5, "sig": DOC["signatures"][0]["sig"]}])
        ).encode(),
        json.dumps(dict(DOC, signatures=[{"keyid": [], "sig": "AAAA"}])).encode(),
        json.dumps(dict(DOC, signatures=[dict(DOC["signatures"][0], x=1)])).encode(),
        json.dumps(dict(DOC, signatures=[{"keyid": "a", "sig": "A" * 20_000}])).encode(),
        json.dumps(dict(DOC, signatures=[{"keyid": "a", "sig": "!!!!"}])).encode(),
        json.dumps(dict(DOC, signatures=[{"keyid": "a", "sig": "A"}])).encode(),  # bad length
        json.dumps(dict(DOC, payload=None)).encode(),
        json.dumps(dict(DOC, payload="not*base64")).encode(),
        json.dumps(dict(DOC, payloadType=None)).encode(),
        json.dumps({k: v for k, v in DOC.items() if k != "payloadType"}).encode(),
    ],
    ids=lambda e: repr(e[:40]),
)
def test_malformed_envelopes_are_signature_errors(envelope):
    with pytest.raises(SignatureError):
        verify_envelope(envelope, KEYS, 1)


def test_duplicate_members_are_refused_not_resolved():
    # a parser keeping the last 'payload' would read the forged one; we refuse the ambiguity
    forged = _b64(json.dumps({"_type": "https://in-toto.io/Statement/v1", "evil": 1}).encode())
    text = GOOD.decode()
    ambiguous = text[:-1] + f',"payload":"{forged}"}}'
    with pytest.raises(SignatureError, match="duplicate member"):
        verify_envelope(ambiguous.encode(), KEYS, 1)
    payload = b'{"_type":"https://in-toto.io/Statement/v1","subject":[],"subject":[1]}'
    with pytest.raises(SignatureError, match="duplicate member"):
        verify_envelope(_signed_raw(payload), KEYS, 1)


@pytest.mark.parametrize(
    "payload",
    [b"[" * 100_000 + b"]" * 100_000, b"\xff\xff", b"[]", b"5", b'{"_type": "other"}'],
    ids=["nested", "not-utf8", "list", "number", "other-type"],
)
def test_signed_but_hostile_payloads_are_refused(payload):
    with pytest.raises(SignatureError, match="payload"):
        verify_envelope(_signed_raw(payload), KEYS, 1)


def test_many_invalid_post_quantum_signatures_are_bounded():
    # 16 signatures claiming trusted ML-DSA-87 keys: each is checked once, all fail, one error
    signers = [CryptoSigner.generate_mldsa(scheme="ml-dsa-87/1") for _ in range(2)]
    keys = {s.public_key.keyid: s.public_key for s in signers}
    fake = _b64(b"\0" * 4627)
    doc = dict(
        DOC,
        signatures=[{"keyid": list(keys)[i % 2], "sig": fake} for i in range(MAX_SIGNATURES)],
    )
    with pytest.raises(SignatureError, match="invalid signature by ml-dsa-87"):
        verify_envelope(json.dumps(doc).encode(), keys, 1)


def test_hostile_keyring_files(tmp_path):
    kr = Keyring(tmp_path, passphrase="pw")
    info = kr.generate("root", "ed25519")
    pem = tmp_path / f"{info.key_id}.pem"
    pem.write_bytes(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\ngarbage\n")
    with pytest.raises(SigningKeyError, match=info.key_id):
        Keyring(tmp_path, passphrase="pw").signer(info.key_id)
    pem.write_bytes(b"A" * (1 << 20))
    with pytest.raises(SigningKeyError, match="too large"):
        Keyring(tmp_path, passphrase="pw").signer(info.key_id)
    with open(tmp_path / "keyring.json", "wb") as f:
        f.truncate((16 << 20) + 1)
    with pytest.raises(SigningKeyError, match="larger than"):
        Keyring(tmp_path).keys()
    (tmp_path / "keyring.json").write_bytes(b"[" * 100_000)
    with pytest.raises(SigningKeyError, match="corrupt keyring"):
        Keyring(tmp_path).keys()
