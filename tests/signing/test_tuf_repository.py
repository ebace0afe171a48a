"""TufRepository without HTTP: the roles it writes, hybrid keys and thresholds, consistent
snapshots, target updates, sync/attach with a real Index, refresh, phases, and failures that
leave the published metadata as it was. Every check of a signature uses python-tuf's own
verification (``verify_delegate``), never ours."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata

from registry_core.errors import InvalidArgumentError, SignatureError, SigningError, SigningKeyError
from registry_core.index import Index
from registry_core.index._model import FileRecord
from registry_core.signing import Keyring, TufRepository

PASS = "tuf repository tests"


class Clock:
    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now


def record(i: int, *, project: str = "demo", data: bytes | None = None) -> FileRecord:
    body = data if data is not None else f"file {i}".encode()
    filename = f"{project}-1.{i}-py3-none-any.whl"
    return FileRecord(
        project=project,
        filename=filename,
        version=f"1.{i}",
        kind="wheel",
        path=f"{project}/{filename}",
        size=len(body),
        sha256=hashlib.sha256(body).hexdigest(),
        upload_time_ns=0,
    )


@pytest.fixture(scope="module")
def keyring(tmp_path_factory):
    """One keyring for the module (key generation and PKCS#8 encryption once)."""
    return Keyring(tmp_path_factory.mktemp("keys"), passphrase=PASS)


def open_repo(tmp_path, keyring, **kw) -> TufRepository:
    repo = TufRepository(tmp_path / "tuf", keyring, fsync=False, **kw)
    repo.init()
    return repo


def read(repo: TufRepository, name: str) -> Metadata:
    return Metadata.from_bytes((repo.metadata_dir / name).read_bytes())


def current(repo: TufRepository) -> dict[str, Metadata]:
    """The published repository as a client walks it: timestamp -> snapshot -> roles."""
    ts = read(repo, "timestamp.json")
    snap = read(repo, f"{ts.signed.snapshot_meta.version}.snapshot.json")
    out = {"timestamp": ts, "snapshot": snap}
    for filename, meta in snap.signed.meta.items():
        out[filename[:-5]] = read(repo, f"{meta.version}.{filename}")
    version = 1
    while (repo.metadata_dir / f"{version + 1}.root.json").exists():
        version += 1
    out["root"] = read(repo, f"{version}.root.json")
    return out


def verify_all(md: dict[str, Metadata]) -> None:
    """Every role verifies against its delegator with python-tuf."""
    root = md["root"]
    root.verify_delegate("root", root)
    for name in ("targets", "snapshot", "timestamp"):
        root.verify_delegate(name, md[name])
    targets = md["targets"]
    targets.verify_delegate("patches", md["patches"])
    if "bins" in md:
        targets.verify_delegate("bins", md["bins"])
        for name in md:
            if name.startswith("bin-"):
                md["bins"].verify_delegate(name, md[name])


def test_init_writes_every_role_signed_by_a_hybrid_pair(tmp_path, keyring):
    repo = open_repo(tmp_path, keyring)
    md = current(repo)
    assert sorted(md) == sorted(
        ["root", "targets", "snapshot", "timestamp", "patches", "bins"]
        + [f"bin-{i:x}" for i in range(16)]
    )
    verify_all(md)
    root = md["root"].signed
    assert root.consistent_snapshot is True
    for name in ("root", "targets", "snapshot", "timestamp"):
        role = root.roles[name]
        kinds = sorted(root.keys[k].keytype for k in role.keyids)
        assert kinds == ["ed25519", "ml-dsa"] and role.threshold == 1
        assert {root.keys[k].scheme for k in role.keyids} == {"ed25519", "ml-dsa-65/1"}
        # the role's file carries both signatures
        assert set(md[name].signatures) == set(role.keyids)
    delegations = md["targets"].signed.delegations
    assert list(delegations.roles) == ["patches", "bins"]
    assert delegations.roles["patches"].paths == []
    assert delegations.roles["bins"].terminating
    succinct = md["bins"].signed.delegations.succinct_roles
    assert succinct.number_of_bins == 16 and succinct.name_prefix == "bin"
    # the keys are the keyring's, per role
    for role in ("root", "targets", "snapshot", "timestamp", "bins", "patches"):
        assert {k.key_id for k in keyring.keys(role)} >= set(
            repo._current_keyids(role) if role != "bins" else delegations.roles["bins"].keyids
        )
    keys, threshold = repo.patch_keys()
    assert set(keys) == set(delegations.roles["patches"].keyids) and threshold == 1
    assert repo.trusted_root() == (repo.metadata_dir / "1.root.json").read_bytes()
    # nothing private is published
    for p in repo.metadata_dir.iterdir():
        assert b"PRIVATE" not in p.read_bytes()


def test_reopen_loads_and_init_is_idempotent(tmp_path, keyring):
    repo = open_repo(tmp_path, keyring)
    repo.add_targets([record(1)])
    before = sorted(p.name for p in repo.metadata_dir.iterdir())
    again = open_repo(tmp_path, keyring)
    assert sorted(p.name for p in repo.metadata_dir.iterdir()) == before
    assert again.target(record(1).path).hashes == {"sha256": record(1).sha256}
    assert again.metadata("timestamp").signed.version == 2
    with pytest.raises(InvalidArgumentError, match="16 hash bins"):
        TufRepository(tmp_path / "tuf", keyring, bins=0).init()


def test_add_targets_new_versions_then_snapshot_then_timestamp(tmp_path, keyring):
    repo = open_repo(tmp_path, keyring)
    recs = [record(i) for i in range(20)]
    assert repo.add_targets(recs) == 20
    md = current(repo)
    verify_all(md)
    assert md["timestamp"].signed.version == 2 and md["snapshot"].signed.version == 2
    snap_bytes = (repo.metadata_dir / "2.snapshot.json").read_bytes()
    meta = md["timestamp"].signed.snapshot_meta
    assert meta.length == len(snap_bytes)
    assert meta.hashes == {"sha256": hashlib.sha256(snap_bytes).hexdigest()}
    listed = {}
    for name, role_md in md.items():
        if name.startswith("bin-"):
            for path, target in role_md.signed.targets.items():
                assert repo.role_for(path) == name
                listed[path] = target
    assert set(listed) == {r.path for r in recs}
    for r in recs:
        assert listed[r.path].length == r.size
        assert listed[r.path].hashes == {"sha256": r.sha256}
    changed = {repo.role_for(r.path) for r in recs}
    for name in changed:
        assert md[name].signed.version == 2
    for name in {f"bin-{i:x}" for i in range(16)} - changed:
        assert md[name].signed.version == 1
    # the same records again change nothing; other bytes at a path replace its entry
    assert repo.add_targets(recs) == 0
    assert read(repo, "timestamp.json").signed.version == 2
    assert repo.add_targets([record(3, data=b"other bytes")]) == 1
    assert repo.target(record(3).path).hashes == {
        "sha256": hashlib.sha256(b"other bytes").hexdigest()
    }
    assert repo.remove_targets([record(3).path, "demo/absent.whl"]) == 1
    assert repo.target(record(3).path) is None
    verify_all(current(repo))


def test_without_bins_targets_json_holds_the_files(tmp_path, keyring):
    repo = open_repo(tmp_path, keyring, bins=0)
    repo.add_targets([record(1), record(2)])
    md = current(repo)
    assert sorted(md) == ["patches", "root", "snapshot", "targets", "timestamp"]
    verify_all(md)
    assert set(md["targets"].signed.targets) == {record(1).path, record(2).path}
    assert list(md["targets"].signed.delegations.roles) == ["patches"]
    assert repo.role_for("demo/x.whl") == "targets"
    with pytest.raises(InvalidArgumentError, match="bins"):
        repo.rotate_keys("bins")


def test_old_versions_pruned_roots_kept(tmp_path, keyring):
    repo = open_repo(tmp_path, keyring, bins=0, keep_versions=2, keep_seconds=0)
    for i in range(5):
        repo.add_targets([record(i)])
    names = {p.name for p in repo.metadata_dir.iterdir()}
    assert {"5.targets.json", "6.targets.json", "6.snapshot.json", "5.snapshot.json"} <= names
    assert "4.targets.json" not in names and "1.snapshot.json" not in names
    assert "1.root.json" in names


def test_bad_arguments(tmp_path, keyring):
    for bins in (-1, 3, 1, 1 << 15, "16"):
        with pytest.raises(InvalidArgumentError):
            TufRepository(tmp_path, keyring, bins=bins)
    with pytest.raises(InvalidArgumentError, match="phase"):
        TufRepository(tmp_path, keyring, phases={"timestamp": 3})
    with pytest.raises(InvalidArgumentError, match="unknown role"):
        TufRepository(tmp_path, keyring, phases={"mirror": 1})
    with pytest.raises(SigningError, match="init"):
        TufRepository(tmp_path / "none", keyring).add_targets([record(1)])
    repo = open_repo(tmp_path, keyring, bins=0)
    before = (repo.metadata_dir / "timestamp.json").read_bytes()
    for bad in ("../etc/passwd", "/abs/x.whl", "a//b.whl", ""):
        with pytest.raises(InvalidArgumentError):
            repo.add_targets([record(1), FileRecord(**{**record(2).__dict__, "path": bad})])
    assert (repo.metadata_dir / "timestamp.json").read_bytes() == before
    assert repo.target(record(1).path) is None  # the batch is all or nothing


def test_phases_set_thresholds(tmp_path, keyring):
    repo = open_repo(tmp_path, keyring, phases={"timestamp": 2, "bins": 2, "patches": 2})
    md = current(repo)
    verify_all(md)
    assert md["root"].signed.roles["timestamp"].threshold == 2
    assert md["root"].signed.roles["snapshot"].threshold == 1
    assert md["targets"].signed.delegations.roles["bins"].threshold == 2
    assert md["bins"].signed.delegations.succinct_roles.threshold == 2
    assert repo.patch_keys()[1] == 2
    # python-tuf refuses phase-2 metadata carrying only the Ed25519 signature
    ts = md["timestamp"]
    root = md["root"].signed
    ed = next(k for k in root.roles["timestamp"].keyids if root.keys[k].keytype == "ed25519")
    ts.signatures = {ed: ts.signatures[ed]}
    with pytest.raises(UnsignedMetadataError):
        md["root"].verify_delegate("timestamp", ts)
    # set_phase publishes the change
    repo.set_phase("snapshot", 2)
    md = current(repo)
    verify_all(md)
    assert md["root"].signed.version == 2 and md["root"].signed.roles["snapshot"].threshold == 2
    repo.set_phase("bins", 1)
    assert current(repo)["bins"].signed.delegations.succinct_roles.threshold == 1


def test_refresh_resigns_what_is_due(tmp_path, keyring):
    clock = Clock()
    repo = open_repo(tmp_path, keyring, clock=clock)
    assert repo.refresh() == []
    clock.now += timedelta(hours=13)
    assert repo.refresh() == ["timestamp"]
    md = current(repo)
    assert md["timestamp"].signed.version == 2 and md["snapshot"].signed.version == 1
    assert md["timestamp"].signed.expires > clock.now + timedelta(hours=23)
    clock.now += timedelta(days=4)
    assert sorted(repo.refresh()) == ["snapshot", "timestamp"]
    clock.now += timedelta(days=46)  # targets, bins, patches: half of 90 days gone
    due = repo.refresh()
    assert {"targets", "bins", "patches", "bin-0", "bin-f", "snapshot", "timestamp"} <= set(due)
    clock.now += timedelta(days=140)
    assert "root" in repo.refresh()
    md = current(repo)
    verify_all(md)
    assert md["root"].signed.version == 2
    for name, role_md in md.items():
        assert role_md.signed.expires > clock.now, name


def test_index_sync_attach_and_yank(tmp_path, keyring):
    from _servers import make_versions

    (tmp_path / "reg").mkdir()
    index = Index(tmp_path / "reg")
    raw, _ = index.create_token()
    calls = []
    index.on_upload = calls.append  # an earlier hook keeps running after attach
    (v1, w1), (v2, w2) = make_versions(2)
    first = index.upload("pkg-1.0-py3-none-any.whl", io.BytesIO(w1), token=raw)
    repo = open_repo(tmp_path, keyring)
    repo.attach(index)
    assert repo.target(first.path).hashes == {"sha256": first.sha256}
    second = index.upload("pkg-1.1-py3-none-any.whl", io.BytesIO(w2), token=raw)
    assert calls == [first, second]
    assert repo.target(second.path).length == len(w2)
    verify_all(current(repo))
    # a yank changes nothing in TUF: the yanked file is still served and must still verify
    before = (repo.metadata_dir / "timestamp.json").read_bytes()
    index.yank(second.filename, "broken")
    assert repo.sync(index) == (0, 0)
    assert (repo.metadata_dir / "timestamp.json").read_bytes() == before
    # a file removed from storage leaves the metadata after a rebuild + sync
    index.storage.delete(first.path)
    index.rebuild()
    assert repo.sync(index) == (0, 1)
    assert repo.target(first.path) is None and repo.target(second.path) is not None
    index.close()


def test_locked_keyring_publishes_nothing(tmp_path, keyring, monkeypatch):
    monkeypatch.delenv("REGISTRY_CORE_KEY_PASSPHRASE", raising=False)
    locked = Keyring(tmp_path / "locked")
    repo = TufRepository(tmp_path / "tuf", locked)
    with pytest.raises(SigningKeyError, match="passphrase"):
        repo.init()
    assert not repo.initialized


def test_a_signing_failure_leaves_the_published_metadata(tmp_path, keyring):
    ring = Keyring(tmp_path / "keys", passphrase=PASS)
    repo = open_repo(tmp_path, ring, bins=0)
    repo.add_targets([record(1)])
    published = {p.name: p.read_bytes() for p in repo.metadata_dir.iterdir()}
    # the targets keys are retired behind the repository's back: it cannot sign any more
    for key in ring.keys("targets"):
        ring.retire(key.key_id)
    fresh = TufRepository(repo.metadata_dir, Keyring(tmp_path / "keys", passphrase=PASS), bins=0)
    fresh.init()
    with pytest.raises(SigningKeyError, match="retired"):
        fresh.add_targets([record(2)])
    assert {p.name: p.read_bytes() for p in repo.metadata_dir.iterdir()} == published
    assert fresh.target(record(2).path) is None  # memory matches the disk again


def test_a_keyring_whose_signatures_do_not_verify_is_refused(tmp_path, keyring):
    repo = open_repo(tmp_path, keyring, bins=0)

    class Swapped:
        """Answers every key id with the snapshot key's signer (a misconfigured keyring)."""

        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def signer(self, key_id):
            return self.inner.signer(keyring.keys("snapshot")[-1].key_id)

    bad = TufRepository(repo.metadata_dir, Swapped(keyring), bins=0, fsync=False)
    bad.init()
    before = (repo.metadata_dir / "timestamp.json").read_bytes()
    with pytest.raises(SignatureError, match="role targets"):
        bad.add_targets([record(1)])
    assert (repo.metadata_dir / "timestamp.json").read_bytes() == before


def test_corrupt_metadata_on_disk_is_a_clear_error(tmp_path, keyring):
    repo = open_repo(tmp_path, keyring, bins=0)
    (repo.metadata_dir / "timestamp.json").write_bytes(b'{"signed": {"_type": "time')
    with pytest.raises(SigningError, match="timestamp.json"):
        TufRepository(repo.metadata_dir, keyring, bins=0).init()
    (repo.metadata_dir / "timestamp.json").unlink()
    (repo.metadata_dir / "timestamp.json").write_text(json.dumps({"x": 1}))
    with pytest.raises(SigningError, match="unreadable"):
        TufRepository(repo.metadata_dir, keyring, bins=0).init()


def test_read_file_only_serves_metadata_names(tmp_path, keyring):
    repo = open_repo(tmp_path, keyring, bins=0)
    (tmp_path / "secret.json").write_text("{}")
    assert repo.read_file("timestamp.json") is not None
    assert repo.read_file("1.root.json") is not None
    for name in (
        "../secret.json",
        "..",
        "",
        "1.root.json/",
        "x/1.root.json",
        "root",
        "01.root.json",
        "1.ROOT.json",
        "a" * 200 + ".json",
        "7.root.json",
    ):
        assert repo.read_file(name) is None, name


def test_import_of_server_and_index_stays_cheap():
    code = (
        "import sys, registry_core, registry_core.index, registry_core.server;"
        "from registry_core.server import _tuf_routes;"
        "bad = [m for m in ('tuf', 'securesystemslib', 'cryptography') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_old_versions_kept_for_keep_seconds_and_rescanned_after_a_restart(tmp_path, keyring):
    repo = open_repo(tmp_path, keyring, bins=0, keep_versions=2)  # keep_seconds: 300
    for i in range(5):
        repo.add_targets([record(i)])
    names = {p.name for p in repo.metadata_dir.iterdir()}
    # a client that read an old timestamp a moment ago still finds its files
    assert {f"{v}.targets.json" for v in range(1, 7)} <= names
    reopened = TufRepository(repo.metadata_dir, keyring, bins=0, keep_versions=2, keep_seconds=0)
    reopened.init()
    reopened.add_targets([record(9)])
    names = {p.name for p in repo.metadata_dir.iterdir()}
    assert {"6.targets.json", "7.targets.json"} <= names
    assert not {f"{v}.targets.json" for v in range(1, 6)} & names
    assert not {f"{v}.snapshot.json" for v in range(1, 6)} & names


def test_for_registry_uses_the_registry_state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("REGISTRY_CORE_KEY_PASSPHRASE", PASS)
    repo = TufRepository.for_registry(tmp_path, fsync=False, bins=0)
    repo.init()
    assert repo.metadata_dir == tmp_path / ".registry-core" / "tuf"
    assert (repo.metadata_dir / "1.root.json").is_file()
    ring = Keyring(tmp_path / ".registry-core" / "keys", passphrase=PASS)
    root_keys = set(repo.metadata("root").signed.roles["root"].keyids)
    assert root_keys == {k.key_id for k in ring.keys("root")}
