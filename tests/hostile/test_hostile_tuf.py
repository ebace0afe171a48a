"""Hostile requests to the /tuf/ routes over a real loopback server, and hostile conditions
for the TufRepository: path tricks never reach a file outside the metadata, other methods
change nothing, concurrent uploads leave one consistent signed repository, an unreadable
metadata file is a 503, not a crash."""

from __future__ import annotations

import hashlib
import io
import socket
import threading

import httpx
import pytest
from tuf.api.metadata import Metadata
from tuf.ngclient import Updater, UpdaterConfig

from _servers import make_versions
from registry_core.index import Index
from registry_core.index._model import FileRecord
from registry_core.server import IndexApp, start_server
from registry_core.signing import Keyring, TufRepository

PASS = "hostile tuf"


@pytest.fixture(scope="module")
def keyring(tmp_path_factory):
    return Keyring(tmp_path_factory.mktemp("keys"), passphrase=PASS)


@pytest.fixture()
def site(tmp_path, keyring):
    store = tmp_path / "store"
    store.mkdir()
    index = Index(store)
    repo = TufRepository(index.storage.state_dir / "tuf", keyring, fsync=False, bins=4)
    repo.init()
    repo.attach(index)
    # a keyring inside the served tree, where a careless route would find it
    secret_ring = Keyring(index.storage.state_dir / "keys", passphrase=PASS)
    secret_ring.generate("root", "ed25519")
    app = IndexApp(index, tuf=repo)
    handle = start_server(app, tls=False)
    client = httpx.Client(base_url=handle.url(), timeout=60)
    try:
        yield index, repo, handle, client, app
    finally:
        client.close()
        handle.stop()
        app.close()
        index.close()


def _raw_get(handle, target: bytes) -> tuple[int, bytes]:
    """A request line sent as is (no client-side normalization of the path)."""
    host, port = handle.url().split("//", 1)[1].rstrip("/").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.mark.parametrize(
    "target",
    [
        b"/tuf/../.registry-core/keys/keyring.json",
        b"/tuf/..%2fkeys%2fkeyring.json",
        b"/tuf/%2e%2e/%2e%2e/store/.registry-core/index.sqlite3",
        b"/tuf/..%2F..%2Fkeys%2Fkeyring.json",
        b"/tuf/1.root.json%00.png",
        b"/tuf/1.root.json/",
        b"/tuf//1.root.json",
        b"/tuf/keys/keyring.json",
        b"/tuf/" + b"a" * 5000 + b".json",
        b"/tuf/1.root.json?../../keys",
        b"/tuf/",
        b"/tuf",
    ],
)
def test_path_tricks_never_leave_the_metadata(site, target):
    index, repo, handle, client, app = site
    status, body = _raw_get(handle, target)
    if target.startswith(b"/tuf/1.root.json?"):
        assert status == 200 and body == repo.trusted_root()  # the query is not the name
        return
    assert status in (400, 404), (target, status)
    assert b"PRIVATE" not in body and b"keyring" not in body.lower()
    # the private state next to the metadata is not served by the file server either
    assert client.get("/.registry-core/keys/keyring.json").status_code == 404
    assert client.get("/.registry-core/tuf/1.root.json").status_code == 404


def test_only_get_and_head(site):
    index, repo, handle, client, app = site
    before = sorted(p.name for p in repo.metadata_dir.iterdir())
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        r = client.request(method, "/tuf/timestamp.json", content=b"{}")
        assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
    assert sorted(p.name for p in repo.metadata_dir.iterdir()) == before
    head = client.head("/tuf/timestamp.json")
    get = client.get("/tuf/timestamp.json")
    assert head.status_code == get.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(get.content))
    assert get.headers["cache-control"] == "no-cache"
    again = client.get("/tuf/timestamp.json", headers={"if-none-match": get.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    versioned = client.get("/tuf/1.snapshot.json")
    assert versioned.status_code == 200 and "max-age" in versioned.headers["cache-control"]


def test_unreadable_metadata_is_a_503_and_the_server_goes_on(site, monkeypatch):
    index, repo, handle, client, app = site
    path = repo.metadata_dir / "1.targets.json"
    path.unlink()
    path.mkdir()  # a directory where a file should be: there is no such metadata file
    (path / "x").write_text("x")
    assert client.get("/tuf/1.targets.json").status_code == 404
    real = repo.read_file

    def failing_disk(name):  # an I/O error (EIO, EACCES) reading the file
        raise PermissionError(13, "Permission denied", name)

    monkeypatch.setattr(repo, "read_file", failing_disk)
    r = client.get("/tuf/timestamp.json")
    assert r.status_code == 503 and b"unavailable" in r.content
    monkeypatch.setattr(repo, "read_file", real)
    assert client.get("/tuf/timestamp.json").status_code == 200


def test_concurrent_uploads_leave_one_consistent_repository(site, tmp_path):
    index, repo, handle, client, app = site
    token, _ = index.create_token()
    versions = make_versions(8)
    errors: list[BaseException] = []

    def upload(i: int) -> None:
        try:
            version, data = versions[i]
            index.upload(f"pkg-{version}-py3-none-any.whl", io.BytesIO(data), token=token)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    # and direct batches from other threads at the same time
    def batch(j: int) -> None:
        try:
            body = f"batch {j}".encode()
            repo.add_targets(
                [
                    FileRecord(
                        project="other",
                        filename=f"other-{j}.{k}.tar.gz",
                        version=f"{j}.{k}",
                        kind="sdist",
                        path=f"other/other-{j}.{k}.tar.gz",
                        size=len(body) + k,
                        sha256=hashlib.sha256(body + bytes([k])).hexdigest(),
                        upload_time_ns=0,
                    )
                    for k in range(5)
                ]
            )
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(8)]
    threads += [threading.Thread(target=batch, args=(j,)) for j in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and not any(t.is_alive() for t in threads)
    assert len(repo.all_targets()) == 8 + 20
    # one version per change: every upload and batch is one snapshot version
    assert repo.metadata("snapshot").signed.version == 1 + 8 + 4
    updater = Updater(
        str(tmp_path / "client"),
        handle.url() + "tuf/",
        str(tmp_path),
        handle.url(),
        config=UpdaterConfig(prefix_targets_with_hash=False),
        bootstrap=repo.trusted_root(),
    )
    updater.refresh()
    for rec in index.files("pkg"):
        info = updater.get_targetinfo(rec.path)
        assert info is not None and info.hashes == {"sha256": rec.sha256}
    # every file on disk parses as metadata (nothing half-written)
    for p in repo.metadata_dir.iterdir():
        Metadata.from_bytes(p.read_bytes())
