"""API tokens through the Index: the tenant store holds them, the old signature keeps working,
legacy tokens of an index database are imported once."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import pytest

from _dists import make_wheel
from registry_core.auth import Principal, Scope, parse_token
from registry_core.errors import (
    AuthenticationError,
    InvalidArgumentError,
    PermissionDeniedError,
    TokenExpiredError,
)
from registry_core.index import Index, SQLiteIndexDB
from registry_core.storage import MemoryStorage

# -- through the Index -------------------------------------------------------------------------


def test_index_tokens(tmp_path: Path) -> None:
    with Index(tmp_path) as index:
        raw, record = index.create_token(description="ci")
        scoped_raw, scoped = index.create_token(scope="My_Project.Name")
        assert scoped.scope == "my-project-name"
        assert [t.token_id for t in index.tokens()] == [record.token_id, scoped.token_id]
        assert index.authenticate(raw, "whatever").token_id == record.token_id
        assert index.authenticate(scoped_raw, "my.project_name").token_id == scoped.token_id
        with pytest.raises(PermissionDeniedError):
            index.authenticate(scoped_raw, "other")
        # a right id with a wrong secret, and an unknown id
        tid, secret = parse_token(raw)
        wrong = f"rc-{tid}-{'A' * 43}"
        with pytest.raises(AuthenticationError, match="unknown API token"):
            index.authenticate(wrong, "x")
        with pytest.raises(AuthenticationError):
            index.authenticate(f"rc-{'0' * 16}-{secret}", "x")
        assert index.tokens()[0].last_used_ns is not None
        assert index.revoke_token(record.token_id)
        assert not index.revoke_token(record.token_id)
        assert not index.revoke_token("nope")
        with pytest.raises(AuthenticationError, match="revoked"):
            index.authenticate(raw, "x")
        assert index.tokens()[0].revoked_ns is not None
    # only the hash is at rest: the secret is nowhere in the database files
    secret_bytes = parse_token(raw)[1].encode()
    for f in (tmp_path / ".registry-core").iterdir():
        if f.is_file():
            assert secret_bytes not in f.read_bytes()


def test_invalid_scope() -> None:
    with Index(MemoryStorage()) as index:
        for bad in ("", "-x", "a b", "../x"):
            with pytest.raises(InvalidArgumentError):
                index.create_token(scope=bad)
        assert index.tokens() == []


def test_scopes_owner_expiry(tmp_path: Path) -> None:
    with Index(tmp_path, tenant="acme", name="pkgs") as index:
        assert str(index.resource()) == "pkgs" and index.resource("Foo_Bar").project == "foo-bar"
        raw, rec = index.create_token(scopes=["upload:pkgs/foo"], owner="user:alice")
        assert rec.owner == "user:alice" and [str(s) for s in rec.scopes] == ["upload:pkgs/foo"]
        principal = index.auth.authenticate_token(raw)
        assert principal.subject == "user:alice" and not principal.standalone
        # alice holds no role yet: her token's scope alone grants nothing
        assert not index.authorize(principal, "upload", "foo")
        index.auth.grant("user:alice", "maintainer", index.resource())
        assert index.authorize(principal, "upload", "foo")
        assert not index.authorize(principal, "upload", "bar")  # outside the token's scope
        assert not index.authorize(principal, "yank", "foo")  # her role could; the token not
        with pytest.raises(InvalidArgumentError):
            index.create_token("foo", scopes=["upload:pkgs/foo"])
        with pytest.raises(InvalidArgumentError):  # another index's name is fine, another
            index.create_token(scopes=[Scope.parse("globex", "read:*")])  # tenant's is not
        short, _ = index.create_token(expires_ns=2 * 10**18)
        assert index.auth.authenticate_token(short, now_ns=2 * 10**18 - 1).token_id
        with pytest.raises(TokenExpiredError) as info:
            index.auth.authenticate_token(short, now_ns=2 * 10**18)
        assert info.value.status == 401


def test_upload_with_a_principal_and_yank_rights(tmp_path: Path) -> None:
    data = make_wheel("yanky", "1.0")
    with Index(tmp_path) as index:
        anon = Principal.anonymous("default")
        with pytest.raises(AuthenticationError):
            index.upload("yanky-1.0-py3-none-any.whl", io.BytesIO(data), principal=anon)
        raw, _ = index.create_token()
        with pytest.raises(InvalidArgumentError):
            index.upload("yanky-1.0-py3-none-any.whl", io.BytesIO(data), token=raw, principal=anon)
        bob = Principal("default", "user:bob", "session")
        index.auth.grant("user:bob", "uploader", index.resource())
        # a new project needs "create", which an uploader does not have
        with pytest.raises(PermissionDeniedError):
            index.upload("yanky-1.0-py3-none-any.whl", io.BytesIO(data), principal=bob)
        index.auth.grant("user:bob", "maintainer", index.resource("yanky"))  # pending grant
        rec = index.upload("yanky-1.0-py3-none-any.whl", io.BytesIO(data), principal=bob)
        assert rec.uploader == "user:bob"
        token_principal = index.auth.authenticate_token(raw)
        with pytest.raises(PermissionDeniedError):  # read,upload,create only
            index.yank(rec.filename, principal=token_principal)
        with pytest.raises(PermissionDeniedError):  # refused before the lookup: no leak
            index.yank("nope-1.0.tar.gz", principal=token_principal)
        index.yank(rec.filename, "bad", principal=bob)
        index.unyank(rec.filename, principal=bob)
        index.yank(rec.filename)  # the local operator
        assert index.file(rec.filename).yanked == ""  # type: ignore[union-attr]
        other_tenant = Principal("globex", "user:bob", "session")
        from registry_core.errors import NotFoundError

        with pytest.raises(NotFoundError):
            index.require(other_tenant, "read")
        with pytest.raises(NotFoundError):
            index.require(anon, "read", hide=True)
        assert not index.authorize(anon, "read", "not a name!")
        with pytest.raises(NotFoundError):
            index.require(bob, "read", "not a name!", hide=True)


def _old_index_db(path: Path, rows: list[tuple[object, ...]]) -> None:
    """An index.sqlite3 as the registry-core before tenants wrote it (its token table)."""
    SQLiteIndexDB(path).close()  # today's schema still has that table, unchanged
    c = sqlite3.connect(path)
    with c:
        c.executemany("INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    c.close()


def test_legacy_tokens_are_imported(tmp_path: Path) -> None:
    from registry_core.auth import generate_token

    live, live_id, live_sha = generate_token()
    scoped, scoped_id, scoped_sha = generate_token()
    dead, dead_id, dead_sha = generate_token()
    _old_index_db(
        tmp_path / ".registry-core" / "index.sqlite3",
        [
            (live_id, live_sha, None, "ci", 1, None, None),
            (scoped_id, scoped_sha, "alpha", "", 2, None, 3),
            (dead_id, dead_sha, None, "", 3, 4, None),
        ],
    )
    for _ in range(2):  # idempotent: the second open imports nothing more
        with Index(tmp_path) as index:
            assert [t.token_id for t in index.tokens()] == [live_id, scoped_id, dead_id]
            p = index.authenticate(live, "anything")
            assert p.standalone and p.subject == f"token:{live_id}"
            assert index.authenticate(scoped, "alpha").token_id == scoped_id
            with pytest.raises(PermissionDeniedError):
                index.authenticate(scoped, "beta")
            with pytest.raises(AuthenticationError, match="revoked"):
                index.authenticate(dead, "x")
            assert [str(s) for s in index.auth.token(scoped_id).scopes] == [  # type: ignore[union-attr]
                "read,upload,create:main/alpha"
            ]
    # a token revoked in the tenant store stays revoked though the old row is live
    with Index(tmp_path) as index:
        assert index.revoke_token(live_id)
    with Index(tmp_path) as index, pytest.raises(AuthenticationError, match="revoked"):
        index.authenticate(live, "x")


def test_upload_audited(tmp_path: Path) -> None:
    from registry_core.audit import MemorySink

    sink = MemorySink()
    with Index(MemoryStorage(), audit=sink) as index:
        raw, rec = index.create_token()
        index.upload("aud-1.0-py3-none-any.whl", io.BytesIO(make_wheel("aud", "1.0")), token=raw)
        index.yank("aud-1.0-py3-none-any.whl")
        assert [e.kind for e in sink.events] == ["token.create", "upload", "yank"]
        up = sink.events[1]
        assert up.subject == f"token:{rec.token_id}" and up.resource == "main/aud"
        assert up.detail["created"] == "yes" and raw not in str(up.to_json())


def test_two_indexes_share_one_tenant_store(tmp_path: Path) -> None:
    """v2 layout: the tenant's indexes share its store; a grant on one index is not a grant on
    the other, and a token scoped to one cannot upload to the other."""
    from registry_core.auth import TenantStore

    (tmp_path / "main").mkdir()
    (tmp_path / "dev").mkdir()
    with TenantStore(tmp_path / "tenant.sqlite3", tenant="acme") as store:
        main = Index(tmp_path / "main", auth=store, name="main")
        dev = Index(tmp_path / "dev", auth=store, tenant="acme", name="dev")
        assert main.tenant == dev.tenant == "acme"
        raw, _ = main.create_token()  # read,upload,create:main
        data = make_wheel("shared", "1.0")
        main.upload("shared-1.0-py3-none-any.whl", io.BytesIO(data), token=raw)
        with pytest.raises(PermissionDeniedError):
            dev.upload("shared-1.0-py3-none-any.whl", io.BytesIO(data), token=raw)
        store.grant("user:d", "maintainer", dev.resource())
        d = Principal("acme", "user:d", "session")
        assert dev.authorize(d, "create", "x") and not main.authorize(d, "read")
        main.close()
        dev.close()
        assert store.tokens()  # the indexes did not close the store they were given
    with pytest.raises(InvalidArgumentError):
        Index(MemoryStorage(), auth=TenantStore(None, tenant="acme"), tenant="globex")
