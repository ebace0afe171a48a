"""Keys of every algorithm: securesystemslib key ids and schemes, signatures python-tuf accepts,
the keyring.json entry format and key life-cycle states."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from securesystemslib.signer import Signature, SSlibKey
from securesystemslib.signer._utils import compute_default_keyid
from tuf.api.metadata import Metadata, Root, Targets

from registry_core.errors import InvalidArgumentError, SigningKeyError
from registry_core.signing import ALGORITHMS, PQ_ALGORITHMS, KeyInfo, Keyring, key_algorithm

SCHEMES = {
    "ed25519": ("ed25519", "ed25519"),
    "ml-dsa-44": ("ml-dsa", "ml-dsa-44/1"),
    "ml-dsa-65": ("ml-dsa", "ml-dsa-65/1"),
    "ml-dsa-87": ("ml-dsa", "ml-dsa-87/1"),
}


@pytest.fixture(scope="module")
def ring(tmp_path_factory):
    kr = Keyring(tmp_path_factory.mktemp("keys"), passphrase="module pass")
    infos = {alg: kr.generate("targets", alg) for alg in ALGORITHMS}
    return kr, infos


def test_algorithm_names():
    assert ALGORITHMS == ("ed25519", "ml-dsa-44", "ml-dsa-65", "ml-dsa-87")
    assert set(PQ_ALGORITHMS) == set(ALGORITHMS) - {"ed25519"}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_algorithm_signs_and_verifies_with_tuf_ids_and_schemes(ring, algorithm):
    kr, infos = ring
    info = infos[algorithm]
    keytype, scheme = SCHEMES[algorithm]
    assert (info.public.keytype, info.public.scheme) == (keytype, scheme)
    assert key_algorithm(info.public) == algorithm
    assert info.post_quantum == (algorithm != "ed25519")
    # the key id is securesystemslib's (what python-tuf computes for the same key)
    assert info.key_id == info.public.keyid
    assert info.key_id == compute_default_keyid(keytype, scheme, info.public.keyval)
    signer = kr.signer(info.key_id)
    assert signer.public_key == info.public
    sig = signer.sign(b"payload")
    info.public.verify_signature(sig, b"payload")
    with pytest.raises(Exception, match="verify"):
        info.public.verify_signature(sig, b"payloae")
    # a key loaded back from its JSON form (as a client reads root.json) verifies too
    again = SSlibKey.from_dict(info.key_id, info.public.to_dict())
    again.verify_signature(Signature(sig.keyid, sig.signature), b"payload")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_python_tuf_verifies_metadata_signed_with_a_keyring_key(ring, algorithm):
    kr, infos = ring
    info = infos[algorithm]
    root = Metadata(Root())
    root.signed.add_key(info.public, "targets")
    targets = Metadata(Targets())
    targets.sign(kr.signer(info.key_id))
    root.verify_delegate("targets", targets)  # raises if python-tuf disagrees
    targets.signed.version += 1  # tampered after signing
    with pytest.raises(Exception, match="targets"):
        root.verify_delegate("targets", targets)


def test_key_algorithm_of_foreign_keys():
    assert key_algorithm(object()) is None
    rsa = SSlibKey("x" * 64, "rsa", "rsassa-pss-sha256", {"public": "pem"})
    assert key_algorithm(rsa) is None


def _info(ring, **changes):
    _kr, infos = ring
    base = infos["ed25519"]
    data = base.to_dict()
    data.update(changes)
    return data


def test_keyinfo_dict_round_trip_holds_no_private_material(ring):
    _kr, infos = ring
    for info in infos.values():
        data = info.to_dict()
        assert KeyInfo.from_dict(data) == info
        assert set(data["public"]) == {"keytype", "scheme", "keyval"}
        assert set(data["public"]["keyval"]) == {"public"}
        assert "PRIVATE" not in str(data)


@pytest.mark.parametrize(
    "changes",
    [
        {"keyid": "../../etc/passwd"},
        {"keyid": "0" * 64},  # does not match the public key
        {"algorithm": "rsa"},
        {"algorithm": "ml-dsa-65"},  # not what the public key is
        {"role": "bad role"},
        {"created": None},
        {"created": "yesterday"},
        {"created": "2026-01-01T00:00:00"},  # no time zone
        {"not_after": 5},
        {"pair": "nope"},
        {"public": {"keytype": "ed25519"}},
    ],
)
def test_keyinfo_from_dict_refuses_malformed_entries(ring, changes):
    with pytest.raises(SigningKeyError, match="corrupt keyring"):
        KeyInfo.from_dict(_info(ring, **changes))
    with pytest.raises(SigningKeyError):
        KeyInfo.from_dict(["not", "a", "dict"])


def test_status_at_expired_and_retired(ring):
    _kr, infos = ring
    info = infos["ml-dsa-65"]
    assert info.not_after is not None
    assert info.status_at(info.created) == "active" and info.active_at(info.created)
    assert info.status_at(info.not_after) == "expired"
    assert not info.active_at(info.not_after + timedelta(seconds=1))
    later = info.created + timedelta(days=1)
    from dataclasses import replace

    retired = replace(info, retired=later)
    assert retired.status_at(later - timedelta(seconds=1)) == "active"
    assert retired.status_at(later) == "retired"


def test_arguments_are_checked(tmp_path):
    kr = Keyring(tmp_path, passphrase="x")
    with pytest.raises(InvalidArgumentError, match="unknown key algorithm"):
        kr.generate("root", "rsa-2048")
    with pytest.raises(InvalidArgumentError, match="role"):
        kr.generate("../root", "ed25519")
    for days in (0, -1, True, 1.5, 10**9):
        with pytest.raises(InvalidArgumentError, match="valid_days"):
            kr.generate("root", "ed25519", valid_days=days)
    with pytest.raises(InvalidArgumentError, match="post-quantum"):
        kr.generate_hybrid("root", pq="ed25519")
    with pytest.raises(InvalidArgumentError, match="passphrase"):
        Keyring(tmp_path, passphrase=1234)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="timezone"):
        Keyring(tmp_path, passphrase="x", clock=lambda: datetime(2026, 1, 1)).keys()
    assert not list(tmp_path.iterdir())  # nothing written by refused calls


def test_aware_clock_in_other_zone_is_normalised(tmp_path):
    tz = timezone(timedelta(hours=5))
    kr = Keyring(tmp_path, passphrase="x", clock=lambda: datetime(2026, 1, 1, 5, tzinfo=tz))
    info = kr.generate("root", "ed25519", valid_days=2)
    assert info.created == datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert info.created.tzinfo == timezone.utc
    assert info.not_after == datetime(2026, 1, 3, tzinfo=timezone.utc)


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


def test_imports_stay_cheap_and_the_extra_is_named_when_missing():
    heavy = ("tuf", "securesystemslib", "cryptography")
    probe = (
        "import sys, registry_core, registry_core.index\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r})))\n"
        "import registry_core.signing\n"
        "print('tuf' in sys.modules)\n"
    )
    done = _python(probe)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["[]", "False"]  # keys/envelopes need no python-tuf
    missing = _python(
        "import sys\nsys.modules['securesystemslib'] = None\n"
        "from registry_core.errors import SigningError\n"
        "try:\n    import registry_core.signing\n"
        "except SigningError as e:\n    print(e)\n"
    )
    assert missing.returncode == 0, missing.stderr
    assert "pip install 'registry-core[signing]'" in missing.stdout


def test_public_names_are_pinned_and_resolve() -> None:
    import registry_core.signing as signing

    assert sorted(signing.__all__) == sorted(
        [
            "ALGORITHMS",
            "DEFAULT_PASSPHRASE_ENV",
            "MAX_ENVELOPE_BYTES",
            "MAX_SIGNATURES",
            "PATCH_PREDICATE",
            "PAYLOAD_TYPE",
            "PQ_ALGORITHMS",
            "STATEMENT_TYPE",
            "KeyInfo",
            "Keyring",
            "PatchEnvelopes",
            "Report",
            "TransportFetcher",
            "TrustedIndex",
            "TufRepository",
            "key_algorithm",
            "keyring_dir",
            "pae",
            "patch_statement",
            "security_report",
            "sign_envelope",
            "verify_envelope",
            "verify_patch_envelope",
        ]
    )
    for name in signing.__all__:
        assert getattr(signing, name) is not None
