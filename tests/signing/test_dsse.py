"""DSSE patch envelopes: PAE per the spec, round trips for every algorithm and the hybrid pair,
interoperability with securesystemslib's DSSE, and every way verification must fail closed."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import timedelta

import pytest
from securesystemslib.dsse import Envelope
from securesystemslib.signer import CryptoSigner

from registry_core.errors import InvalidArgumentError, SignatureError, SigningKeyError
from registry_core.signing import (
    ALGORITHMS,
    PATCH_PREDICATE,
    PAYLOAD_TYPE,
    Keyring,
    pae,
    patch_statement,
    sign_envelope,
    verify_envelope,
    verify_patch_envelope,
)

T, B, P = (hashlib.sha256(x).hexdigest() for x in (b"target", b"base", b"patch"))
NAME = "demo/demo-1.1-py3-none-any.whl"


def _signer(algorithm: str) -> CryptoSigner:
    if algorithm == "ed25519":
        return CryptoSigner.generate_ed25519()
    return CryptoSigner.generate_mldsa(scheme=f"{algorithm}/1")


@pytest.fixture(scope="module")
def signers() -> dict[str, CryptoSigner]:
    return {alg: _signer(alg) for alg in ALGORITHMS}


def _keys(*signers: CryptoSigner) -> dict:
    return {s.public_key.keyid: s.public_key for s in signers}


def _doc(envelope: bytes) -> dict:
    return json.loads(envelope)


def _bytes(doc: dict) -> bytes:
    return json.dumps(doc).encode()


def test_pae_is_the_dsse_v1_encoding():
    # the DSSE specification's own example
    assert (
        pae("http://example.com/HelloWorld", b"hello world")
        == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    assert pae("", b"") == b"DSSEv1 0  0 "
    # lengths are of UTF-8 bytes, and agree with securesystemslib's DSSE
    body = "ünï".encode()
    assert pae("t/ü", body) == b"DSSEv1 4 t/\xc3\xbc 5 " + body
    assert pae(PAYLOAD_TYPE, body) == Envelope(body, PAYLOAD_TYPE, {}).pae()


def test_patch_statement_is_an_in_toto_statement_v1():
    st = patch_statement(NAME, T.upper(), B, P)
    assert st == {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": NAME, "digest": {"sha256": T}}],
        "predicateType": PATCH_PREDICATE,
        "predicate": {"base": {"digest": {"sha256": B}}, "patch": {"digest": {"sha256": P}}},
    }
    for bad in ("", "a" * 63, "g" * 64, None, 5):
        with pytest.raises(InvalidArgumentError):
            patch_statement(NAME, bad, B, P)  # type: ignore[arg-type]
    for name in ("", "a\nb", "x" * 1025, None):
        with pytest.raises(InvalidArgumentError, match="target_name"):
            patch_statement(name, T, B, P)  # type: ignore[arg-type]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_round_trip_for_every_algorithm(signers, algorithm):
    signer = signers[algorithm]
    st = patch_statement(NAME, T, B, P)
    env = sign_envelope(st, [signer])
    doc = _doc(env)
    assert doc["payloadType"] == PAYLOAD_TYPE and len(doc["signatures"]) == 1
    assert doc["signatures"][0]["keyid"] == signer.public_key.keyid
    keys = _keys(signer)
    assert verify_envelope(env, keys, 1, require_algorithms=[algorithm]) == st
    assert (
        verify_patch_envelope(
            env, keys, 1, base_sha256=B, target_sha256=T, patch_sha256=P, target_name=NAME
        )
        == st
    )
    # another algorithm's key set does not accept it
    other = signers["ed25519" if algorithm != "ed25519" else "ml-dsa-65"]
    with pytest.raises(SignatureError, match="0 of 1 required"):
        verify_envelope(env, _keys(other), 1)


def test_hybrid_round_trip_and_phases(signers):
    ed, pq = signers["ed25519"], signers["ml-dsa-65"]
    keys = _keys(ed, pq)
    st = patch_statement(NAME, T, B, P)
    env = sign_envelope(st, [ed, pq])
    both = ("ed25519", "ml-dsa-65")
    assert verify_envelope(env, keys, 2, require_algorithms=both) == st
    # phase 1: either signature suffices
    only_ed = sign_envelope(st, [ed])
    only_pq = sign_envelope(st, [pq])
    assert verify_envelope(only_ed, keys, 1) == st == verify_envelope(only_pq, keys, 1)
    # phase 2: both are required
    with pytest.raises(SignatureError, match=r"1 of 2 .*ml-dsa-65 key "):
        verify_envelope(only_ed, keys, 2)
    with pytest.raises(SignatureError, match="no valid ml-dsa-65 signature"):
        verify_envelope(only_ed, keys, 1, require_algorithms=both)
    with pytest.raises(SignatureError, match="no valid ed25519 signature"):
        verify_envelope(only_pq, keys, 1, require_algorithms=both)


def test_interoperates_with_securesystemslib_dsse(signers):
    ed, pq = signers["ed25519"], signers["ml-dsa-65"]
    st = patch_statement(NAME, T, B, P)
    ours = sign_envelope(st, [ed, pq])
    theirs = Envelope.from_dict(_doc(ours))
    assert set(theirs.verify([ed.public_key, pq.public_key], 2)) == set(_keys(ed, pq))
    assert json.loads(theirs.payload) == st
    made = Envelope(json.dumps(st).encode(), PAYLOAD_TYPE, {})
    made.sign(ed)
    made.sign(pq)
    assert verify_envelope(_bytes(made.to_dict()), _keys(ed, pq), 2) == st


def test_wrong_algorithm_is_named(signers):
    pq65 = signers["ml-dsa-65"]
    env = sign_envelope(patch_statement(NAME, T, B, P), [pq65])
    with pytest.raises(SignatureError, match="no valid ml-dsa-87 signature") as err:
        verify_envelope(env, _keys(pq65, signers["ml-dsa-87"]), 1, require_algorithms=["ml-dsa-87"])
    assert signers["ml-dsa-87"].public_key.keyid[:16] in str(err.value)
    with pytest.raises(InvalidArgumentError, match="unknown algorithm"):
        verify_envelope(env, _keys(pq65), 1, require_algorithms=["rsa"])
    # a key id that names a key of another algorithm: the signature does not verify
    wrong = {pq65.public_key.keyid: signers["ml-dsa-44"].public_key}
    with pytest.raises(SignatureError, match="invalid signature by ml-dsa-44 key"):
        verify_envelope(env, wrong, 1)


def test_tampered_payload_type_and_signature_fail(signers):
    ed, pq = signers["ed25519"], signers["ml-dsa-65"]
    keys = _keys(ed, pq)
    env = sign_envelope(patch_statement(NAME, T, B, P), [ed, pq])
    doc = _doc(env)
    forged = patch_statement(NAME, T, B, hashlib.sha256(b"evil").hexdigest())
    tampered = dict(doc, payload=base64.b64encode(json.dumps(forged).encode()).decode())
    with pytest.raises(SignatureError, match="0 of 1 required"):
        verify_envelope(_bytes(tampered), keys, 1)
    retyped = dict(doc, payloadType="application/json")
    with pytest.raises(SignatureError, match="payloadType"):
        verify_envelope(_bytes(retyped), keys, 1)
    for i in range(2):
        sigs = [dict(s) for s in doc["signatures"]]
        raw = bytearray(base64.b64decode(sigs[i]["sig"]))
        raw[len(raw) // 2] ^= 1
        sigs[i]["sig"] = base64.b64encode(bytes(raw)).decode()
        with pytest.raises(SignatureError, match="invalid signature"):
            verify_envelope(_bytes(dict(doc, signatures=sigs)), keys, 2)


def test_swapped_keys_fail(signers):
    ed, pq = signers["ed25519"], signers["ml-dsa-65"]
    env = sign_envelope(patch_statement(NAME, T, B, P), [ed, pq])
    strangers = [_signer("ed25519"), _signer("ml-dsa-65")]
    with pytest.raises(SignatureError, match="0 of 1"):
        verify_envelope(env, _keys(*strangers), 1)
    # the envelope's key ids swapped between its two signatures
    doc = _doc(env)
    a, b = doc["signatures"]
    a["keyid"], b["keyid"] = b["keyid"], a["keyid"]
    with pytest.raises(SignatureError, match="invalid signature by"):
        verify_envelope(_bytes(doc), _keys(ed, pq), 1)


def test_truncated_envelopes_fail_closed(signers):
    env = sign_envelope(patch_statement(NAME, T, B, P), [signers["ed25519"]])
    keys = _keys(signers["ed25519"])
    for cut in range(0, len(env), 7):
        with pytest.raises(SignatureError):
            verify_envelope(env[:cut], keys, 1)


def test_duplicate_signatures_by_one_key_count_once(signers):
    ed = signers["ed25519"]
    env = sign_envelope(patch_statement(NAME, T, B, P), [ed, ed])
    doc = _doc(env)
    assert len(doc["signatures"]) == 1  # signed once
    doc["signatures"] = doc["signatures"] * 2
    with pytest.raises(SignatureError, match="1 of 2 required"):
        verify_envelope(_bytes(doc), _keys(ed), 2)
    # the same public key trusted under a second id still counts once
    twice = {ed.public_key.keyid: ed.public_key, "f" * 64: ed.public_key}
    doc["signatures"][1] = dict(doc["signatures"][1], keyid="f" * 64)
    with pytest.raises(SignatureError, match="1 of 2 required"):
        verify_envelope(_bytes(doc), twice, 2)


def test_unknown_and_missing_keyids_count_for_nothing(signers):
    ed = signers["ed25519"]
    doc = _doc(sign_envelope(patch_statement(NAME, T, B, P), [ed]))
    del doc["signatures"][0]["keyid"]
    with pytest.raises(SignatureError, match="0 of 1"):
        verify_envelope(_bytes(doc), _keys(ed), 1)
    with pytest.raises(SignatureError, match="only 0 trusted keys"):
        verify_envelope(_bytes(doc), {}, 1)


def test_url_safe_and_unpadded_base64_are_accepted(signers):
    ed = signers["ed25519"]
    st = patch_statement(NAME + "?>>>", T, B, P)  # '>' makes '+' and '/' likely
    doc = _doc(sign_envelope(st, [ed]))
    doc["payload"] = base64.urlsafe_b64encode(base64.b64decode(doc["payload"])).decode()
    doc["payload"] = doc["payload"].rstrip("=")
    sig = doc["signatures"][0]
    sig["sig"] = base64.urlsafe_b64encode(base64.b64decode(sig["sig"])).decode().rstrip("=")
    assert verify_envelope(_bytes(doc), _keys(ed), 1) == st


def test_patch_binding_mismatches_are_named(signers):
    ed = signers["ed25519"]
    keys = _keys(ed)
    env = sign_envelope(patch_statement(NAME, T, B, P), [ed])
    other = hashlib.sha256(b"other").hexdigest()
    for field in ("base", "target", "patch"):
        args = {"base_sha256": B, "target_sha256": T, "patch_sha256": P}
        args[f"{field}_sha256"] = other
        with pytest.raises(SignatureError, match=f"{field} sha256 .* not the expected {other}"):
            verify_patch_envelope(env, keys, 1, **args)
    with pytest.raises(SignatureError, match="names target"):
        verify_patch_envelope(
            env, keys, 1, base_sha256=B, target_sha256=T, patch_sha256=P, target_name="x.whl"
        )
    not_patch = dict(patch_statement(NAME, T, B, P), predicateType="https://slsa.dev/provenance/v1")
    env2 = sign_envelope(not_patch, [ed])
    with pytest.raises(SignatureError, match="not a patch statement"):
        verify_patch_envelope(env2, keys, 1, base_sha256=B, target_sha256=T, patch_sha256=P)
    with pytest.raises(InvalidArgumentError):
        verify_patch_envelope(env, keys, 1, base_sha256="x", target_sha256=T, patch_sha256=P)


def test_signed_non_statement_payload_is_refused(signers):
    ed = signers["ed25519"]
    env = sign_envelope({"hello": "world"}, [ed])
    with pytest.raises(SignatureError, match="not an in-toto statement"):
        verify_envelope(env, _keys(ed), 1)


def test_expired_and_retired_keyring_keys_fail_closed(tmp_path):
    from datetime import datetime, timezone

    now = [datetime(2026, 1, 1, tzinfo=timezone.utc)]
    kr = Keyring(tmp_path, passphrase="pw", clock=lambda: now[0])
    ed, pq = kr.generate_hybrid("patches", valid_days=10)
    st = patch_statement(NAME, T, B, P)
    env = sign_envelope(st, kr.signers("patches"))
    assert verify_envelope(env, kr.public_keys("patches"), 2) == st
    kr.retire(pq.key_id)
    with pytest.raises(SigningKeyError, match="retired"):
        kr.signer(pq.key_id)
    # the verifier trusts only the role's active keys: the retired key's signature is ignored
    with pytest.raises(SignatureError, match="1 of 2 required"):
        verify_envelope(env, kr.public_keys("patches"), 2)
    with pytest.raises(SignatureError, match="no valid ml-dsa-65 signature"):
        verify_envelope(env, kr.public_keys("patches"), 1, require_algorithms=["ml-dsa-65"])
    now[0] += timedelta(days=10)
    with pytest.raises(SigningKeyError, match="expired"):
        sign_envelope(st, [kr.signer(ed.key_id)])
    with pytest.raises(SignatureError, match="only 0 trusted keys"):
        verify_envelope(env, kr.public_keys("patches"), 1)


def test_argument_errors(signers):
    ed = signers["ed25519"]
    env = sign_envelope(patch_statement(NAME, T, B, P), [ed])
    for threshold in (0, -1, True, 1.0):
        with pytest.raises(InvalidArgumentError, match="threshold"):
            verify_envelope(env, _keys(ed), threshold)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="bytes"):
        verify_envelope(env.decode(), _keys(ed), 1)  # type: ignore[arg-type]
    with pytest.raises(SigningKeyError, match="no signers"):
        sign_envelope(patch_statement(NAME, T, B, P), [])
    with pytest.raises(InvalidArgumentError, match="JSON"):
        sign_envelope({"x": object()}, [ed])
    with pytest.raises(InvalidArgumentError, match="JSON"):
        sign_envelope({"x": float("nan")}, [ed])
