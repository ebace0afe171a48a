"""TenantStore: tokens (expiry, revocation through the cache, hash at rest), roles and the
compiled policy, users, sessions, one-time pending state, replay memory, threads, processes.
Every behaviour test runs on SQLite and on PostgreSQL (``db_backend``; a real server started
by the test, tests/_postgres.py)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from registry_core.audit import MemorySink
from registry_core.auth import (
    Identity,
    Principal,
    Resource,
    Scope,
    TenantStore,
    authorize,
    parse_token,
)
from registry_core.auth._store import MAX_PENDING
from registry_core.errors import AuthenticationError, InvalidArgumentError, TokenExpiredError

T0 = 1_800_000_000 * 10**9
S = 10**9


def _scope(text: str = "upload,create:main") -> Scope:
    return Scope.parse("acme", text)


class Backend:
    """Where the tests' stores live: ``open()`` a store there (several see the same rows)."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.path = tmp_path / "tenant.sqlite3"
        self.location: str | Path = self.path
        if kind == "postgres":
            from _postgres import shared_server

            self.server = shared_server()
            self.location = self.dsn = self.server.create_database("ts")

    def open(self, tenant: str = "acme", **kw: Any) -> TenantStore:
        return TenantStore(self.location, tenant=tenant, **kw)

    def rows(self, table: str, tenant: str = "acme") -> list[Any]:
        if self.kind == "sqlite":
            with sqlite3.connect(self.path) as c:
                rows = c.execute(f"SELECT * FROM {table}").fetchall()
            c.close()
            return rows
        return self.server.execute(self.dsn, f'SELECT * FROM "tenant_{tenant}".{table}')

    def stored_bytes(self) -> bytes:
        if self.kind == "sqlite":
            return b"".join(f.read_bytes() for f in self.path.parent.iterdir() if f.is_file())
        tables = ("tokens", "bindings", "users", "sessions", "pending", "replay")
        return repr([self.rows(t) for t in tables]).encode()

    def newer_schema(self) -> None:
        if self.kind == "sqlite":
            c = sqlite3.connect(self.path)
            c.execute("PRAGMA user_version = 99")
            c.close()
        else:
            self.server.execute(
                self.dsn,
                "INSERT INTO tenant_acme.schema_migrations (component, version) "
                "VALUES ('tenant_store', 99)",
            )


@pytest.fixture(params=["sqlite", "postgres"])
def db_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return Backend(request.param, tmp_path)


@pytest.fixture
def store(db_backend: Backend) -> Iterator[TenantStore]:
    s = db_backend.open(audit=MemorySink())
    yield s
    s.close()


def _sink(store: TenantStore) -> MemorySink:
    assert isinstance(store.audit, MemorySink)
    return store.audit


def test_token_lifecycle(store: TenantStore) -> None:
    raw, rec = store.create_token(
        owner=None, scopes=[_scope()], description="ci", expires_ns=T0 + 3600 * S, now_ns=T0
    )
    assert rec.token_id in raw and store.token(rec.token_id) == rec
    p = store.authenticate_token(raw, now_ns=T0 + 1)
    assert p == Principal(
        tenant="acme",
        subject=f"token:{rec.token_id}",
        method="token",
        scopes=(_scope(),),
        standalone=True,
        expires_ns=T0 + 3600 * S,
        token_id=rec.token_id,
    )
    assert store.token(rec.token_id).last_used_ns == T0 + 1  # type: ignore[union-attr]
    store.authenticate_token(raw, now_ns=T0 + 2)  # within the minute: not written again
    assert store.token(rec.token_id).last_used_ns == T0 + 1  # type: ignore[union-attr]
    store.authenticate_token(raw, now_ns=T0 + 61 * S)
    assert store.token(rec.token_id).last_used_ns == T0 + 61 * S  # type: ignore[union-attr]
    with pytest.raises(TokenExpiredError):
        store.authenticate_token(raw, now_ns=T0 + 3600 * S)
    # revocation takes effect at once although the record is cached
    assert store.revoke_token(rec.token_id, by="user:olga", now_ns=T0 + 5)
    assert not store.revoke_token(rec.token_id)
    with pytest.raises(AuthenticationError, match="revoked"):
        store.authenticate_token(raw, now_ns=T0 + 6)
    kinds = [(e.kind, e.subject) for e in _sink(store).events]
    assert kinds == [("token.create", f"token:{rec.token_id}"), ("token.revoke", "user:olga")]
    assert raw not in repr(_sink(store).events) and parse_token(raw)[1] not in repr(rec)


def test_token_errors(store: TenantStore) -> None:
    raw, rec = store.create_token(owner="user:alice", scopes=[_scope()])
    tid, secret = parse_token(raw)
    for bad in (None, "", "rc-x", f"rc-{tid}-{'A' * 43}", f"rc-{'0' * 16}-{secret}"):
        with pytest.raises(AuthenticationError) as info:
            store.authenticate_token(bad)
        assert info.value.status == 401 and secret not in str(info.value)
    store.authenticate_token(raw)  # cached now: a wrong secret for that id is still refused
    with pytest.raises(AuthenticationError):
        store.authenticate_token(f"rc-{tid}-{'B' * 43}")
    for scopes in ([], [Scope.parse("globex", "read:*")], "read:*", ["read:*"]):
        with pytest.raises(InvalidArgumentError):
            store.create_token(owner=None, scopes=scopes)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        store.create_token(owner="nobody", scopes=[_scope()])
    with pytest.raises(InvalidArgumentError):
        store.create_token(owner=None, scopes=[_scope()], expires_ns=1, now_ns=T0)
    with pytest.raises(InvalidArgumentError):
        store.create_token(owner=None, scopes=[_scope()], description="x" * 501)
    assert [t.token_id for t in store.tokens()] == [rec.token_id]
    assert [t.token_id for t in store.tokens(owner="user:alice")] == [rec.token_id]
    assert store.tokens(owner=None) == []


def test_owned_token_carries_the_users_groups(store: TenantStore) -> None:
    store.record_login(Identity("user:alice", "https://idp", "oidc", groups=frozenset({"devs"})))
    store.grant("group:devs", "maintainer", Resource("acme", "main"))
    raw, _ = store.create_token(owner="user:alice", scopes=[_scope("upload,yank:main")])
    p = store.authenticate_token(raw)
    assert p.groups == {"group:devs"} and not p.standalone
    assert authorize(p, "yank", Resource("acme", "main", "x"), store.policy())
    assert not authorize(p, "create", Resource("acme", "main", "x"), store.policy())  # scope


def test_hash_at_rest(db_backend: Backend) -> None:
    with db_backend.open() as s:
        s.ping()
        raw, _ = s.create_token(owner=None, scopes=[_scope()])
        session = s.create_session(Identity("user:a", "https://idp", "oidc"))
        s.authenticate_token(raw)
        secret = parse_token(raw)[1].encode()
        stored = db_backend.stored_bytes()
        assert secret not in stored and session.encode() not in stored
        assert len(db_backend.rows("tokens")) == 1 and len(db_backend.rows("sessions")) == 1
    if db_backend.kind == "sqlite":
        assert db_backend.path.stat().st_mode & 0o077 == 0  # private to its owner


def test_roles_and_policy_cache(store: TenantStore) -> None:
    main = Resource("acme", "main")
    p = store.policy()
    assert store.policy() is p  # compiled once
    b = store.grant("user:bob", "uploader", main, by="user:olga")
    assert b.granted_by == "user:olga" and store.grant("user:bob", "uploader", main) == b
    assert store.policy() is not p and len(store.policy()) == 1
    assert store.bindings() == [b]
    with pytest.raises(InvalidArgumentError):
        store.grant("user:bob", "emperor", main)
    with pytest.raises(InvalidArgumentError):
        store.grant("user:bob", "reader", Resource("globex"))
    with pytest.raises(InvalidArgumentError):
        store.grant("bob", "reader", main)
    assert store.revoke_role("user:bob", "uploader", main)
    assert not store.revoke_role("user:bob", "uploader", main)
    assert len(store.policy()) == 0
    assert [e.kind for e in _sink(store).events] == ["role.grant", "role.grant", "role.revoke"]


def test_static_bindings(tmp_path: Path) -> None:
    from registry_core.auth import RoleBinding

    static = [RoleBinding("*", "reader", Resource("acme"))]
    with TenantStore(None, tenant="acme", static_bindings=static) as s:
        assert s.bindings() == [] and len(s.policy()) == 1
        assert authorize(Principal.anonymous("acme"), "read", Resource("acme", "x"), s.policy())
    with pytest.raises(InvalidArgumentError):
        TenantStore(None, tenant="globex", static_bindings=static)
    with pytest.raises(InvalidArgumentError):
        TenantStore(None, tenant="Not A Tenant")


def test_other_process_changes_are_seen(db_backend: Backend) -> None:
    """Two stores on one database (two server processes): a revocation or a grant in one
    takes effect in the other at once, although the other had cached the token and the
    policy."""
    with db_backend.open() as a, db_backend.open(busy_timeout=5.0) as b:
        raw, rec = a.create_token(owner=None, scopes=[_scope()])
        b.authenticate_token(raw)
        policy = b.policy()
        a.revoke_token(rec.token_id)
        with pytest.raises(AuthenticationError, match="revoked"):
            b.authenticate_token(raw)
        a.grant("user:x", "reader", Resource("acme"))
        assert b.policy() is not policy and len(b.policy()) == 1


def test_users(store: TenantStore) -> None:
    ident = Identity(
        "user:alice", "https://idp", "saml", email="a@x", name="Alice", groups=frozenset({"b", "a"})
    )
    store.record_login(ident, now_ns=T0)
    store.record_login(ident, now_ns=T0 + 5)
    (user,) = store.users()
    assert user == {
        "subject": "user:alice",
        "issuer": "https://idp",
        "method": "saml",
        "email": "a@x",
        "name": "Alice",
        "groups": ["a", "b"],
        "first_login_ns": T0,
        "last_login_ns": T0 + 5,
    }
    assert [e.kind for e in _sink(store).events] == ["login", "login"]


def test_sessions(store: TenantStore) -> None:
    ident = Identity("user:alice", "https://idp", "oidc", groups=frozenset({"devs"}))
    raw = store.create_session(ident, ttl_s=60, now_ns=T0)
    p = store.session(raw, now_ns=T0 + 59 * S)
    assert p is not None and p.subject == "user:alice" and p.method == "session"
    assert p.groups == {"group:devs"} and p.expires_ns == T0 + 60 * S
    assert store.session(raw, now_ns=T0 + 60 * S) is None  # expired (and removed)
    assert store.session(raw, now_ns=T0) is None
    other = store.create_session(ident, now_ns=T0)
    assert store.session(other, now_ns=T0) is not None
    assert store.delete_session(other) and not store.delete_session(other)
    assert store.session(other, now_ns=T0) is None  # the cache forgot it too
    for junk in (None, "", "x" * 10_000, "nope"):
        assert store.session(junk) is None  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        store.create_session(ident, ttl_s=0)


def test_pending_is_one_time(store: TenantStore) -> None:
    store.put_pending("oidc:state1", {"nonce": "n", "verifier": "v"}, ttl_s=600, now_ns=T0)
    assert store.take_pending("oidc:state1", now_ns=T0 + 1) == {"nonce": "n", "verifier": "v"}
    assert store.take_pending("oidc:state1", now_ns=T0 + 2) is None
    store.put_pending("k", {"a": "b"}, ttl_s=1, now_ns=T0)
    assert store.take_pending("k", now_ns=T0 + S) is None  # expired
    assert store.take_pending("x" * 1000) is None
    for key, value in (("", {}), ("k" * 300, {}), ("k", {"a": "x" * 20_000}), ("k", {"a": 1})):
        with pytest.raises(InvalidArgumentError):
            store.put_pending(key, value, ttl_s=10)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        store.put_pending("k", {}, ttl_s=10**9)
    assert MAX_PENDING >= 10_000


def test_pending_rows_are_bounded(
    db_backend: Backend, store: TenantStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from registry_core.auth import _store

    monkeypatch.setattr(_store, "MAX_PENDING", 5)
    for i in range(12):  # logins started and never finished (anyone may start one)
        store.put_pending(f"k{i}", {"i": str(i)}, ttl_s=600, now_ns=T0 + i)
    assert store.take_pending("k0", now_ns=T0 + 20) is None  # the oldest were dropped
    assert store.take_pending("k11", now_ns=T0 + 20) == {"i": "11"}
    assert len(db_backend.rows("pending")) == 4


def test_first_use(store: TenantStore) -> None:
    assert store.first_use("saml", "id-1", expires_ns=T0 + 10 * S, now_ns=T0)
    assert not store.first_use("saml", "id-1", expires_ns=T0 + 10 * S, now_ns=T0 + S)
    assert store.first_use("jti", "id-1", expires_ns=T0 + 10 * S, now_ns=T0)  # other kind
    # after it expired the row is forgotten (what it protected is expired too)
    assert store.first_use("saml", "id-1", expires_ns=T0 + 100 * S, now_ns=T0 + 11 * S)
    with pytest.raises(InvalidArgumentError):
        store.first_use("saml", "x" * 2000, expires_ns=T0)


def test_expired_rows_are_purged(db_backend: Backend) -> None:
    with db_backend.open() as s:
        s.put_pending("a", {}, ttl_s=1, now_ns=T0)
        s.first_use("saml", "x", expires_ns=T0 + S, now_ns=T0)
        s.create_session(Identity("user:a", "i", "oidc"), ttl_s=1, now_ns=T0)
        s.put_pending("b", {}, ttl_s=600, now_ns=T0 + 120 * S)  # a minute later: purge runs
        counts = [len(db_backend.rows(t)) for t in ("pending", "replay", "sessions")]
    assert counts == [1, 0, 0]


def test_threads(store: TenantStore) -> None:
    raws = [store.create_token(owner=None, scopes=[_scope()])[0] for _ in range(4)]
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []
    seen: list[str] = []

    def work(i: int) -> None:
        try:
            barrier.wait()
            for j in range(50):
                p = store.authenticate_token(raws[(i + j) % 4])
                assert p.token_id is not None
                assert store.first_use("jti", f"{i}-{j}", expires_ns=T0 * 2)
                store.put_pending(f"s{i}-{j}", {"v": str(j)}, ttl_s=60)
                assert store.take_pending(f"s{i}-{j}") == {"v": str(j)}
                if j % 10 == 0:
                    store.grant(f"user:u{i}", "reader", Resource("acme"))
                    store.policy()
            seen.append("ok")
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(seen) == 8
    assert len(store.policy()) == 8


def test_legacy_import(store: TenantStore) -> None:
    rows = [
        ("0123456789abcdef", "e" * 64, None, "ci", 1, None, None),
        ("1123456789abcdef", "f" * 64, "alpha", "", 2, 3, None),
    ]
    assert store.import_legacy_tokens(rows, index="main") == 2
    assert store.import_legacy_tokens(rows, index="main") == 0
    a, b = store.tokens()
    assert a.owner is None and [str(s) for s in a.scopes] == ["read,upload,create:main"]
    assert b.revoked_ns == 3 and [str(s) for s in b.scopes] == ["read,upload,create:main/alpha"]


def test_closed_and_newer_schema(db_backend: Backend) -> None:
    s = db_backend.open()
    s.close()
    s.close()
    with pytest.raises(InvalidArgumentError):
        s.tokens()
    with pytest.raises(InvalidArgumentError):
        s.create_token(owner=None, scopes=[_scope()])
    db_backend.newer_schema()
    with pytest.raises(AuthenticationError, match="newer"):
        db_backend.open()


# -- PostgreSQL only ---------------------------------------------------------------------------


@pytest.fixture
def pg() -> Backend:
    return Backend("postgres", Path("/nonexistent"))


def test_pg_tenants_are_isolated(pg: Backend) -> None:
    with pg.open("acme") as a, pg.open("globex") as g:
        raw, rec = a.create_token(owner=None, scopes=[_scope()])
        a.grant("user:x", "reader", Resource("acme"))
        a.put_pending("k", {"v": "1"}, ttl_s=60)
        assert g.tokens() == [] and g.bindings() == [] and g.take_pending("k") is None
        with pytest.raises(AuthenticationError):
            g.authenticate_token(raw)
        assert a.first_use("saml", "id", expires_ns=T0 * 2)
        assert g.first_use("saml", "id", expires_ns=T0 * 2)  # another tenant's memory
        assert a.take_pending("k") == {"v": "1"} and a.token(rec.token_id) == rec


def test_pg_revocation_is_immediate_across_instances(pg: Backend) -> None:
    """Two stores with their own connection pools (two instances): the other's cached token,
    session and policy are dropped at the next check, every time."""
    a = pg.open()
    b = pg.open(busy_timeout=3.0)  # other settings: another pool, other connections
    try:
        assert b._db._pool is not a._db._pool  # type: ignore[union-attr]
        ident = Identity("user:a", "https://idp", "oidc")
        for _ in range(3):
            raw, rec = a.create_token(owner=None, scopes=[_scope()])
            session = a.create_session(ident)
            assert b.authenticate_token(raw).token_id == rec.token_id
            assert b.session(session) is not None
            policy = b.policy()
            assert a.revoke_token(rec.token_id) and a.delete_session(session)
            with pytest.raises(AuthenticationError, match="revoked"):
                b.authenticate_token(raw)
            assert b.session(session) is None
            a.grant("user:y", "reader", Resource("acme"))
            assert b.policy() is not policy
            a.revoke_role("user:y", "reader", Resource("acme"))
        # own writes are not taken for another's: the cache survives them
        raw, _ = b.create_token(owner=None, scopes=[_scope()])
        b.authenticate_token(raw)
        p = b.policy()
        b.create_token(owner=None, scopes=[_scope()])
        assert b.policy() is p
    finally:
        a.close()
        b.close()


def test_pg_cached_answers_defer_to_a_worker(pg: Backend) -> None:
    """The never-blocking path cannot read the counter without a round trip: it says "don't
    know" (the caller asks on a worker thread), never a stale yes."""
    with pg.open() as s:
        raw, _ = s.create_token(owner=None, scopes=[_scope()])
        assert s.authenticate_token(raw, now_ns=T0) is not None
        assert s.authenticate_cached(raw, now_ns=T0 + 1) is None
        session = s.create_session(Identity("user:a", "i", "oidc"))
        assert s.session(session) is not None and s.session_cached(session) is None


def test_pg_reconnect_repr_and_schema(pg: Backend) -> None:
    with pg.open() as s:
        raw, _ = s.create_token(owner=None, scopes=[_scope()])
        assert pg.server.terminate_backends(pg.dsn) >= 1
        assert s.authenticate_token(raw).method == "token"  # a dropped connection: reconnected
        assert pg.server.terminate_backends(pg.dsn) >= 1
        s.grant("user:z", "reader", Resource("acme"))  # a write, too
        assert pg.server.password not in repr(s) and pg.server.password not in s.path
    rows = pg.server.execute(pg.dsn, "SELECT component, version FROM tenant_acme.schema_migrations")
    assert rows == [("tenant_store", 1)]


def test_pg_long_tenant_names_get_distinct_schemas(pg: Backend) -> None:
    from registry_core.auth._store_sql import schema_name

    a, b = "a" * 62 + "b", "a" * 62 + "c"
    assert schema_name(a) != schema_name(b) and len(schema_name(a)) <= 63
    with pg.open(a) as sa, pg.open(b) as sb:
        sa.grant("user:x", "reader", Resource(a))
        assert sb.bindings() == [] and len(sa.bindings()) == 1


def test_pg_nul_is_a_clear_error(pg: Backend) -> None:
    with pg.open() as s, pytest.raises(InvalidArgumentError, match="cannot be stored"):
        s.put_pending("k\x00", {}, ttl_s=60)
