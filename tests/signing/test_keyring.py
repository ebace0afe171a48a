"""The keyring on disk: encrypted private keys, reopen, passphrases, validity, rotation,
retirement, and nothing half-written."""

from __future__ import annotations

import json
import os
import stat
import threading
from datetime import datetime, timedelta, timezone

import pytest

from registry_core.errors import SigningKeyError
from registry_core.signing import DEFAULT_PASSPHRASE_ENV, Keyring, keyring_dir

PASS = "correct horse battery staple"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now


def _all_bytes(directory) -> list[tuple[str, bytes]]:
    return [(p.name, p.read_bytes()) for p in sorted(directory.iterdir()) if p.is_file()]


def test_keyring_survives_reopen(tmp_path):
    kr = Keyring(tmp_path, passphrase=PASS)
    ed, pq = kr.generate_hybrid("root")
    single = kr.generate("timestamp", "ml-dsa-87", valid_days=7)
    again = Keyring(tmp_path, passphrase=PASS.encode())
    assert again.keys() == kr.keys() == [ed, pq, single]
    assert again.keys("root") == [ed, pq] and again.key(single.key_id) == single
    assert again.key(single.key_id[:12]) == single  # a unique prefix
    for info in (ed, pq, single):
        sig = again.signer(info.key_id).sign(b"x")
        info.public.verify_signature(sig, b"x")
    assert ed.pair == pq.key_id and pq.pair == ed.key_id and single.pair is None
    assert set(again.public_keys("root")) == {ed.key_id, pq.key_id}
    assert [s.public_key.keyid for s in again.signers("root")] == [ed.key_id, pq.key_id]


def test_no_plaintext_private_key_or_passphrase_on_disk(tmp_path):
    kr = Keyring(tmp_path, passphrase=PASS)
    kr.generate_hybrid("targets")
    kr.generate("bins", "ml-dsa-44")
    pems = sorted(tmp_path.glob("*.pem"))
    assert len(pems) == 3
    for pem in pems:
        data = pem.read_bytes()
        assert b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in data
        assert b"BEGIN PRIVATE KEY" not in data
        assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    for name, data in _all_bytes(tmp_path):
        assert PASS.encode() not in data, name
        assert b"PRIVATE KEY" not in data or name.endswith(".pem"), name
    doc = json.loads((tmp_path / "keyring.json").read_bytes())
    assert doc["format"] == 1 and len(doc["keys"]) == 3
    assert PASS not in repr(kr) and "locked" in repr(Keyring(tmp_path / "x"))


def test_new_keyring_directory_is_private(tmp_path):
    directory = tmp_path / "reg" / ".registry-core" / "keys"
    assert keyring_dir(tmp_path / "reg") == directory
    Keyring(directory, passphrase=PASS).generate("root", "ed25519")
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_wrong_or_missing_passphrase(tmp_path, monkeypatch):
    monkeypatch.delenv(DEFAULT_PASSPHRASE_ENV, raising=False)
    info = Keyring(tmp_path, passphrase=PASS).generate("root", "ml-dsa-65")
    with pytest.raises(SigningKeyError, match="wrong passphrase"):
        Keyring(tmp_path, passphrase="not it").signer(info.key_id)
    locked = Keyring(tmp_path)
    assert locked.keys() == [info]  # public keys need no passphrase
    with pytest.raises(SigningKeyError, match=DEFAULT_PASSPHRASE_ENV):
        locked.signer(info.key_id)
    with pytest.raises(SigningKeyError, match="passphrase"):
        locked.generate("root", "ed25519")
    with pytest.raises(SigningKeyError, match="passphrase"):
        Keyring(tmp_path, passphrase="").generate("root", "ed25519")
    assert len(Keyring(tmp_path).keys()) == 1
    monkeypatch.setenv(DEFAULT_PASSPHRASE_ENV, PASS)
    env = Keyring(tmp_path)
    env.signer(info.key_id).sign(b"x")
    assert PASS not in repr(env)


def test_plaintext_only_when_asked_for_and_never_loaded_silently(tmp_path, monkeypatch):
    monkeypatch.delenv(DEFAULT_PASSPHRASE_ENV, raising=False)
    plain = Keyring(tmp_path, insecure_plaintext=True)
    info = plain.generate("root", "ed25519")
    data = (tmp_path / f"{info.key_id}.pem").read_bytes()
    assert b"BEGIN PRIVATE KEY" in data and b"ENCRYPTED" not in data
    plain.signer(info.key_id).sign(b"x")
    with pytest.raises(SigningKeyError, match="unencrypted"):
        Keyring(tmp_path, passphrase=PASS).signer(info.key_id)


def test_expired_key_is_inactive_and_cannot_sign(tmp_path):
    clock = Clock()
    kr = Keyring(tmp_path, passphrase=PASS, clock=clock)
    info = kr.generate("timestamp", "ed25519", valid_days=1)
    kr.signer(info.key_id)
    clock.now += timedelta(days=1)
    assert kr.keys("timestamp") == []
    assert kr.keys("timestamp", active_only=False) == [info]
    assert kr.public_keys("timestamp") == {}
    with pytest.raises(SigningKeyError, match=r"timestamp key .* \(ed25519\) is expired"):
        kr.signer(info.key_id)
    # verification-only / rotation-away use: explicitly allowed
    kr.signer(info.key_id, allow_inactive=True).sign(b"x")
    fresh = Keyring(tmp_path, passphrase=PASS, clock=clock)
    with pytest.raises(SigningKeyError, match="expired"):
        fresh.signer(info.key_id)


def test_retire_destroys_private_key_and_keeps_public(tmp_path):
    clock = Clock()
    kr = Keyring(tmp_path, passphrase=PASS, clock=clock)
    ed, pq = kr.generate_hybrid("patches")
    kr.signer(pq.key_id)  # cached signer must be dropped too
    retired = kr.retire(pq.key_id[:10])
    assert retired.retired == clock.now and retired.key_id == pq.key_id
    assert not (tmp_path / f"{pq.key_id}.pem").exists()
    assert (tmp_path / f"{ed.key_id}.pem").exists()
    assert kr.keys("patches") == [ed]
    assert kr.keys("patches", active_only=False)[1] == retired
    for ring in (kr, Keyring(tmp_path, passphrase=PASS, clock=clock)):
        for allow in (False, True):
            with pytest.raises(SigningKeyError, match="retired"):
                ring.signer(pq.key_id, allow_inactive=allow)
    clock.now += timedelta(hours=1)
    assert kr.retire(pq.key_id).retired == retired.retired  # idempotent
    with pytest.raises(SigningKeyError, match="no key"):
        kr.retire("f" * 64)


def test_rotate_adds_a_pair_and_keeps_old_keys_until_retired(tmp_path):
    clock = Clock()
    kr = Keyring(tmp_path, passphrase=PASS, clock=clock)
    old = list(kr.generate_hybrid("root", pq="ml-dsa-87", valid_days=30))
    clock.now += timedelta(days=1)
    new, previous = kr.rotate("root")
    assert previous == old
    assert [k.algorithm for k in new] == ["ed25519", "ml-dsa-87"]
    assert all(k.not_after == clock.now + timedelta(days=30) for k in new)
    assert kr.keys("root") == old + new
    for info in old:
        kr.retire(info.key_id)
    assert kr.keys("root") == new
    fresh_new, fresh_old = kr.rotate("snapshot")
    assert fresh_old == [] and [k.algorithm for k in fresh_new] == ["ed25519", "ml-dsa-65"]


def test_key_lookup_errors(tmp_path):
    kr = Keyring(tmp_path, passphrase=PASS)
    a = kr.generate("root", "ed25519")
    with pytest.raises(SigningKeyError, match="no key"):
        kr.signer("0" * 64)
    with pytest.raises(SigningKeyError, match="no key"):
        kr.key(a.key_id[:4])  # prefixes shorter than 8 are not guessed
    (tmp_path / f"{a.key_id}.pem").unlink()
    with pytest.raises(SigningKeyError, match="not in"):
        kr.signer(a.key_id)


def test_swapped_private_key_file_is_refused(tmp_path):
    kr = Keyring(tmp_path, passphrase=PASS)
    a = kr.generate("root", "ml-dsa-65")
    b = kr.generate("root", "ml-dsa-65")
    (tmp_path / f"{a.key_id}.pem").write_bytes((tmp_path / f"{b.key_id}.pem").read_bytes())
    with pytest.raises(SigningKeyError, match="does not match"):
        Keyring(tmp_path, passphrase=PASS).signer(a.key_id)


@pytest.mark.parametrize(
    "content",
    [b"", b"{not json", b"[]", b'{"format": 2, "keys": []}', b'{"format": 1, "keys": {}}'],
)
def test_corrupt_keyring_file_is_a_signing_key_error(tmp_path, content):
    (tmp_path / "keyring.json").write_bytes(content)
    kr = Keyring(tmp_path, passphrase=PASS)
    with pytest.raises(SigningKeyError, match="corrupt keyring"):
        kr.keys()
    with pytest.raises(SigningKeyError, match="corrupt keyring"):
        kr.generate("root", "ed25519")
    assert not list(tmp_path.glob("*.pem"))


def test_tampered_public_key_in_keyring_json_is_refused(tmp_path):
    kr = Keyring(tmp_path, passphrase=PASS)
    a = kr.generate("root", "ed25519")
    b = kr.generate("root", "ed25519")
    doc = json.loads((tmp_path / "keyring.json").read_text())
    doc["keys"][0]["public"], doc["keys"][1]["public"] = (
        doc["keys"][1]["public"],
        doc["keys"][0]["public"],
    )
    (tmp_path / "keyring.json").write_text(json.dumps(doc))
    with pytest.raises(SigningKeyError, match="does not match its public key"):
        kr.keys()
    assert a.key_id != b.key_id


def test_failed_save_leaves_no_private_key_behind(tmp_path, monkeypatch):
    kr = Keyring(tmp_path, passphrase=PASS)
    kept = kr.generate("root", "ed25519")
    before = _all_bytes(tmp_path)

    def boom(keys):
        raise OSError("disk full")

    monkeypatch.setattr(kr, "_save", boom)
    with pytest.raises(OSError, match="disk full"):
        kr.generate_hybrid("targets")
    assert _all_bytes(tmp_path) == before
    assert Keyring(tmp_path, passphrase=PASS).keys() == [kept]


def test_concurrent_writers_lose_no_key(tmp_path):
    rings = [Keyring(tmp_path, passphrase=PASS) for _ in range(4)]
    barrier = threading.Barrier(len(rings))
    made: list[str] = []

    def work(ring: Keyring) -> None:
        barrier.wait()
        for _ in range(3):
            made.append(ring.generate("bins", "ed25519").key_id)

    threads = [threading.Thread(target=work, args=(r,)) for r in rings]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    listed = {k.key_id for k in Keyring(tmp_path, passphrase=PASS).keys(active_only=False)}
    assert listed == set(made) and len(made) == 12
    assert {p.stem for p in tmp_path.glob("*.pem")} == listed
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_a_kept_signer_fails_closed_once_its_key_is_retired(tmp_path):
    clock = Clock()
    kr = Keyring(tmp_path, passphrase=PASS, clock=clock)
    ed, pq = kr.generate_hybrid("timestamp", valid_days=1)
    kept, kept_pq = kr.signer(ed.key_id), kr.signer(pq.key_id)
    kept.sign(b"fine")
    assert PASS not in repr(kept) and "PRIVATE" not in repr(kept)
    clock.now += timedelta(days=1)
    # handed out while active: may finish a rotation away from its now expired key
    kept.sign(b"rotation")
    with pytest.raises(SigningKeyError, match="expired"):
        kr.signer(ed.key_id)
    # retired by another process: every signer of that key refuses
    Keyring(tmp_path, clock=clock).retire(ed.key_id)
    with pytest.raises(SigningKeyError, match="retired"):
        kept.sign(b"never")
    kept_pq.sign(b"the partner is not retired")
