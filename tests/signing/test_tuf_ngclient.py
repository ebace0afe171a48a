"""python-tuf's own client (``tuf.ngclient.Updater``, a client nobody here wrote) against our
TUF metadata, served by IndexApp over real HTTP on loopback, for a wheel twine uploaded.

Accepted: refresh, targetinfo, verified download (phase 1 and phase 2; Ed25519 alone or
ML-DSA alone in phase 1). Refused: a tampered file, metadata rolled back (timestamp, and a
snapshot behind a timestamp signed with the real key), a frozen (expired) timestamp, metadata
signed by an unknown key, an expired delegated role, phase-2 metadata with only an Ed25519
signature. Plain HTTP: the metadata is signed, so TLS is not what protects it here.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from securesystemslib.signer import MLDSA_65_1, CryptoSigner
from tuf.api.exceptions import (
    BadVersionNumberError,
    ExpiredMetadataError,
    LengthOrHashMismatchError,
    UnsignedMetadataError,
)
from tuf.api.metadata import Metadata, MetaFile, TargetFile
from tuf.api.serialization.json import JSONSerializer
from tuf.ngclient import Updater, UpdaterConfig

from _packages import build_project, client_env, run, tool
from registry_core.index import Index
from registry_core.index._model import FileRecord
from registry_core.server import IndexApp, start_server
from registry_core.server._tuf_routes import TufApp
from registry_core.signing import Keyring, TufRepository

PASS = "ngclient tests"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


COMPACT = JSONSerializer(compact=True)


@pytest.fixture(scope="module")
def keyring(tmp_path_factory):
    return Keyring(tmp_path_factory.mktemp("keys"), passphrase=PASS)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A real setuptools wheel and sdist."""
    return build_project(tmp_path_factory.mktemp("build"), "tuf-demo", "1.0", payload_kb=16)


@dataclass
class Registry:
    root: Path
    index: Index
    repo: TufRepository
    tuf: TufApp
    url: str
    token: str
    keyring: Keyring
    clients: Path

    def updater(self, name: str = "client") -> Updater:
        d = self.clients / name
        d.mkdir(exist_ok=True)
        return Updater(
            str(d),
            self.url + "/tuf/",
            str(self.clients),
            self.url + "/",
            config=UpdaterConfig(prefix_targets_with_hash=False),
            bootstrap=self.repo.trusted_root(),
        )

    def upload(self, filename: str, data: bytes) -> FileRecord:
        return self.index.upload(filename, io.BytesIO(data), token=self.token)


@pytest.fixture
def make_registry(tmp_path, keyring):
    stack = []

    def make(refresh_interval: float | None = None, **repo_kw: Any) -> Registry:
        root = tmp_path / f"reg{len(stack)}"
        root.mkdir()
        index = Index(root)
        repo = TufRepository(index.storage.state_dir / "tuf", keyring, fsync=False, **repo_kw)
        repo.init()
        repo.attach(index)
        token, _ = index.create_token()
        # by default the server does not refresh on its own here: the tests play the
        # repository's clock and the attacker's files
        tuf = TufApp(repo, refresh_interval=refresh_interval)
        app = IndexApp(index, tuf=tuf)
        server = start_server(app, tls=False)
        handle = server.__enter__()
        stack.append((server, app, index))
        clients = tmp_path / f"clients{len(stack)}"
        clients.mkdir()
        url = handle.url().rstrip("/")
        return Registry(root, index, repo, tuf, url, token, keyring, clients)

    yield make
    for server, app, index in reversed(stack):
        server.__exit__(None, None, None)
        app.close()
        index.close()


def wheel_bytes(built) -> bytes:
    return built.wheel.read_bytes()


# -- forging helpers: what an attacker (or a broken repository) would publish ---------------


def read(reg: Registry, name: str) -> Metadata:
    return Metadata.from_bytes((reg.repo.metadata_dir / name).read_bytes())


def write(reg: Registry, name: str, md: Metadata) -> bytes:
    data = md.to_bytes(COMPACT)
    (reg.repo.metadata_dir / name).write_bytes(data)
    return data


def right_signers(reg: Registry, name: str) -> list:
    delegator = {"bins": "targets", "patches": "targets"}.get(name, "root")
    if name.startswith("bin-"):
        delegator = "bins"
    role = reg.repo.metadata(delegator).signed.get_delegated_role(name)
    return [reg.keyring.signer(k) for k in role.keyids]


def sign(md: Metadata, signers: list) -> None:
    md.signatures.clear()
    for s in signers:
        md.sign(s, append=True)


def forge(reg: Registry, name: str, *, mutate=None, signers=None, expires=None) -> None:
    """Publish a new version of ``name`` signed by ``signers`` (default the right keys), with
    the snapshot and timestamp above it re-signed correctly, as the repository would."""
    ts = read(reg, "timestamp.json")
    snap = read(reg, f"{ts.signed.snapshot_meta.version}.snapshot.json")

    def finish(md: Metadata, role: str) -> None:
        if role == name:
            if mutate is not None:
                mutate(md.signed)
            if expires is not None:
                md.signed.expires = expires
        md.signed.version += 1
        sign(md, signers if role == name and signers is not None else right_signers(reg, role))

    if name not in ("snapshot", "timestamp"):
        version = snap.signed.meta[f"{name}.json"].version
        md = read(reg, f"{version}.{name}.json")
        finish(md, name)
        write(reg, f"{md.signed.version}.{name}.json", md)
        snap.signed.meta[f"{name}.json"] = MetaFile(md.signed.version)
    finish(snap, "snapshot")
    data = write(reg, f"{snap.signed.version}.snapshot.json", snap)
    ts.signed.snapshot_meta = MetaFile(
        snap.signed.version, len(data), {"sha256": hashlib.sha256(data).hexdigest()}
    )
    finish(ts, "timestamp")
    write(reg, "timestamp.json", ts)


def only(reg: Registry, name: str, keytype: str) -> list:
    return [s for s in right_signers(reg, name) if s.public_key.keytype == keytype]


# -- accepted --------------------------------------------------------------------------------


def test_twine_upload_then_ngclient_downloads_the_verified_wheel(make_registry, built, tmp_path):
    reg = make_registry()
    run(
        [
            tool("twine"),
            "upload",
            "--non-interactive",
            "--disable-progress-bar",
            "--repository-url",
            f"{reg.url}/legacy/",
            str(built.wheel),
            str(built.sdist),
        ],
        env=client_env(TWINE_USERNAME="__token__", TWINE_PASSWORD=reg.token),
    )
    wheel = reg.index.file(built.wheel.name)
    sdist = reg.index.file(built.sdist.name)
    assert wheel is not None and sdist is not None
    updater = reg.updater()
    updater.refresh()
    for record, path in ((wheel, built.wheel), (sdist, built.sdist)):
        info = updater.get_targetinfo(record.path)
        assert info is not None, record.path
        assert info.length == path.stat().st_size
        assert info.hashes == {"sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
        out = updater.download_target(info, str(tmp_path / record.filename))
        assert Path(out).read_bytes() == path.read_bytes()
        # a second call finds the verified local copy
        assert updater.find_cached_target(info, out) == out
    assert updater.get_targetinfo("tuf-demo/tuf_demo-9.9-py3-none-any.whl") is None
    # the client walked timestamp -> snapshot -> targets -> bins -> the file's bin
    fetched = sorted(p.name for p in (reg.clients / "client").iterdir() if p.is_file())
    assert {"timestamp.json", "snapshot.json", "targets.json", "bins.json", "root.json"} <= set(
        fetched
    )
    assert {reg.repo.role_for(wheel.path) + ".json"} <= set(fetched)


def test_a_later_upload_reaches_an_existing_client(make_registry, built):
    reg = make_registry(bins=0)
    first = reg.upload(built.wheel.name, wheel_bytes(built))
    updater = reg.updater()
    updater.refresh()
    assert updater.get_targetinfo(first.path) is not None
    second = reg.upload(built.sdist.name, built.sdist.read_bytes())
    again = reg.updater()  # the same client directory: it starts from what it trusted
    again.refresh()
    assert again.get_targetinfo(second.path).length == second.size


def test_phase_2_accepted_with_both_signatures(make_registry, built, tmp_path):
    phases = dict.fromkeys(("root", "targets", "snapshot", "timestamp", "bins", "patches"), 2)
    reg = make_registry(phases=phases)
    record = reg.upload(built.wheel.name, wheel_bytes(built))
    updater = reg.updater()
    updater.refresh()
    info = updater.get_targetinfo(record.path)
    assert Path(updater.download_target(info, str(tmp_path / "w.whl"))).read_bytes() == (
        wheel_bytes(built)
    )


@pytest.mark.parametrize("keytype", ["ed25519", "ml-dsa"])
def test_phase_1_either_signature_suffices(make_registry, built, keytype):
    reg = make_registry()
    record = reg.upload(built.wheel.name, wheel_bytes(built))
    bin_name = reg.repo.role_for(record.path)
    forge(reg, bin_name, signers=only(reg, bin_name, keytype))
    forge(reg, "timestamp", signers=only(reg, "timestamp", keytype))
    updater = reg.updater()
    updater.refresh()
    assert updater.get_targetinfo(record.path).length == record.size


def test_the_server_resigns_a_stale_timestamp_before_serving_it(make_registry, built):
    """The refresh schedule: a repository idle past its timestamp's expiry serves a fresh
    one to the next client (TufApp refreshes on a timestamp request)."""
    clock = Clock(datetime.now(timezone.utc) - timedelta(days=2))
    reg = make_registry(refresh_interval=0, clock=clock)
    record = reg.upload(built.wheel.name, wheel_bytes(built))
    assert reg.repo.metadata("timestamp").signed.expires < datetime.now(timezone.utc)
    clock.now = datetime.now(timezone.utc)  # two days later, no upload in between
    updater = reg.updater()
    updater.refresh()
    assert updater.get_targetinfo(record.path) is not None
    assert reg.tuf.stats["refreshes"] == 1
    assert reg.repo.metadata("timestamp").signed.expires > clock.now


@pytest.mark.parametrize("phase", [1, 2])
def test_a_classical_only_client(make_registry, built, monkeypatch, phase):
    """A client whose cryptography cannot verify ML-DSA (< 48): securesystemslib then counts
    each ML-DSA signature as unverified (its own code path, switched on here as that
    environment would). Phase 1 keeps it working on Ed25519; phase 2 locks it out."""
    import securesystemslib.signer._key as sslib_key

    reg = make_registry(
        phases=dict.fromkeys(("root", "targets", "snapshot", "timestamp", "bins", "patches"), phase)
    )
    record = reg.upload(built.wheel.name, wheel_bytes(built))
    monkeypatch.setattr(
        sslib_key, "MLDSA_IMPORT_ERROR", "'cryptography>=48.0.0' required for ML-DSA support"
    )
    if phase == 1:
        updater = reg.updater()
        updater.refresh()
        assert updater.get_targetinfo(record.path).length == record.size
    else:  # not even its trusted root verifies: "root was signed by 1/2 keys"
        with pytest.raises(UnsignedMetadataError, match="root was signed by 1/2 keys"):
            reg.updater().refresh()


# -- refused ---------------------------------------------------------------------------------


def test_tampered_file_refused(make_registry, built, tmp_path):
    reg = make_registry()
    record = reg.upload(built.wheel.name, wheel_bytes(built))
    stored = reg.root / record.path
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01  # same length, one bit
    stored.write_bytes(bytes(data))
    updater = reg.updater()
    updater.refresh()
    info = updater.get_targetinfo(record.path)
    # the server sends the bytes it has; ngclient's own check against the signed hash refuses
    with pytest.raises(LengthOrHashMismatchError, match="does not match expected hash"):
        updater.download_target(info, str(tmp_path / "tampered.whl"))
    assert not (tmp_path / "tampered.whl").exists()


def test_rollback_of_timestamp_refused(make_registry, built):
    reg = make_registry()
    reg.upload(built.wheel.name, wheel_bytes(built))
    old = (reg.repo.metadata_dir / "timestamp.json").read_bytes()
    reg.upload(built.sdist.name, built.sdist.read_bytes())
    reg.updater().refresh()  # the client now trusts the newer timestamp
    (reg.repo.metadata_dir / "timestamp.json").write_bytes(old)  # a mirror serving old files
    with pytest.raises(BadVersionNumberError):
        reg.updater().refresh()


def test_rollback_of_snapshot_behind_a_validly_signed_timestamp_refused(make_registry, built):
    reg = make_registry()
    reg.upload(built.wheel.name, wheel_bytes(built))
    old_snapshot = read(reg, "timestamp.json").signed.snapshot_meta.version
    reg.upload(built.sdist.name, built.sdist.read_bytes())
    reg.updater().refresh()
    # the timestamp key signs a newer timestamp naming the older snapshot
    ts = read(reg, "timestamp.json")
    data = (reg.repo.metadata_dir / f"{old_snapshot}.snapshot.json").read_bytes()
    ts.signed.snapshot_meta = MetaFile(
        old_snapshot, len(data), {"sha256": hashlib.sha256(data).hexdigest()}
    )
    ts.signed.version += 1
    sign(ts, right_signers(reg, "timestamp"))
    write(reg, "timestamp.json", ts)
    with pytest.raises(BadVersionNumberError):
        reg.updater().refresh()


def test_freeze_attack_expired_timestamp_refused(make_registry, built, keyring):
    reg = make_registry()
    record = reg.upload(built.wheel.name, wheel_bytes(built))
    reg.updater().refresh()
    # the repository's own code, on a clock two days behind: its timestamp is already stale
    past = datetime.now(timezone.utc) - timedelta(days=2)
    stale = TufRepository(reg.repo.metadata_dir, keyring, clock=lambda: past, fsync=False)
    stale.init()
    stale.refresh_timestamp()
    assert stale.metadata("timestamp").signed.expires < datetime.now(timezone.utc)
    for name in ("client", "fresh"):  # a client that saw the repository before, and a new one
        with pytest.raises(ExpiredMetadataError):
            reg.updater(name).refresh()
    # the repository on the right clock recovers: refresh() re-signs the expired timestamp
    reg.repo.init()  # reload what the stale writer left
    assert "timestamp" in reg.repo.refresh()
    updater = reg.updater("fresh")
    updater.refresh()
    assert updater.get_targetinfo(record.path) is not None


def test_timestamp_signed_by_an_unknown_key_refused(make_registry, built):
    reg = make_registry()
    reg.upload(built.wheel.name, wheel_bytes(built))
    strangers = [CryptoSigner.generate_ed25519(), CryptoSigner.generate_mldsa(MLDSA_65_1)]
    forge(reg, "timestamp", signers=strangers)
    with pytest.raises(UnsignedMetadataError):
        reg.updater().refresh()


def test_bin_signed_by_an_unknown_key_refused(make_registry, built):
    reg = make_registry()
    record = reg.upload(built.wheel.name, wheel_bytes(built))
    bin_name = reg.repo.role_for(record.path)
    evil = b"evil wheel"

    def swap(signed):
        signed.targets[record.path] = TargetFile(
            len(evil), {"sha256": hashlib.sha256(evil).hexdigest()}, record.path
        )

    strangers = [CryptoSigner.generate_ed25519(), CryptoSigner.generate_mldsa(MLDSA_65_1)]
    forge(reg, bin_name, mutate=swap, signers=strangers)
    updater = reg.updater()
    updater.refresh()  # top-level metadata is fine
    with pytest.raises(UnsignedMetadataError):
        updater.get_targetinfo(record.path)


def test_expired_delegated_role_refused(make_registry, built):
    reg = make_registry()
    record = reg.upload(built.wheel.name, wheel_bytes(built))
    bin_name = reg.repo.role_for(record.path)
    forge(reg, bin_name, expires=datetime.now(timezone.utc).replace(microsecond=0) - timedelta(1))
    updater = reg.updater()
    updater.refresh()
    with pytest.raises(ExpiredMetadataError):
        updater.get_targetinfo(record.path)


def test_phase_2_refuses_ed25519_alone(make_registry, built):
    phases = dict.fromkeys(("root", "targets", "snapshot", "timestamp", "bins", "patches"), 2)
    reg = make_registry(phases=phases)
    record = reg.upload(built.wheel.name, wheel_bytes(built))
    bin_name = reg.repo.role_for(record.path)
    forge(reg, bin_name, signers=only(reg, bin_name, "ed25519"))
    updater = reg.updater()
    updater.refresh()
    with pytest.raises(UnsignedMetadataError):
        updater.get_targetinfo(record.path)
    forge(reg, "timestamp", signers=only(reg, "timestamp", "ed25519"))
    with pytest.raises(UnsignedMetadataError):
        reg.updater("other").refresh()


# -- size -----------------------------------------------------------------------------------


def _records(n: int) -> list[FileRecord]:
    out = []
    for i in range(n):
        filename = f"proj{i % 997}-{i}.0-py3-none-any.whl"
        out.append(
            FileRecord(
                project=f"proj{i % 997}",
                filename=filename,
                version=f"{i}.0",
                kind="wheel",
                path=f"proj{i % 997}/{filename}",
                size=1000 + i,
                sha256=hashlib.sha256(str(i).encode()).hexdigest(),
                upload_time_ns=0,
            )
        )
    return out


def test_metadata_bytes_per_refresh_10k_targets(make_registry, capsys):
    """What a new client downloads to verify one file of an index of 10,000 files."""
    records = _records(10_000)
    sizes = {}
    for bins in (0, 16, 256):
        reg = make_registry(bins=bins)
        reg.repo.add_targets(records)
        before = reg.tuf.stats["bytes"]
        updater = reg.updater()
        updater.refresh()
        info = updater.get_targetinfo(records[4321].path)
        assert info is not None and info.length == records[4321].size
        sizes[bins] = reg.tuf.stats["bytes"] - before
    with capsys.disabled():
        print(
            "\nTUF metadata bytes per new-client refresh + one targetinfo, 10,000 targets: "
            + ", ".join(f"bins={b}: {s:,}" for b, s in sizes.items())
        )
    assert sizes[16] < sizes[0] / 5
    assert sizes[256] < sizes[16]
