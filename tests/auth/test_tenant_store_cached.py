"""TenantStore.authenticate_cached / session_cached: the never-blocking answers an event loop
asks first. They answer only from the verified caches, check the secret every time, write
nothing, honour revocation here and in other connections, and say "don't know" (None) when
the store is busy."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry_core.audit import MemorySink
from registry_core.auth import Identity, Scope, TenantStore, parse_token

T0 = 1_800_000_000 * 10**9
S = 10**9


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TenantStore]:
    s = TenantStore(tmp_path / "tenant.sqlite3", tenant="acme", audit=MemorySink())
    yield s
    s.close()


def _token(store: TenantStore, **kw: object) -> str:
    raw, _ = store.create_token(
        owner=None,
        scopes=[Scope.parse("acme", "read:main")],
        now_ns=T0,
        **kw,  # type: ignore[arg-type]
    )
    return raw


def _changes(store: TenantStore) -> int:
    conn = store._db.conn  # type: ignore[union-attr]
    assert conn is not None
    return conn.total_changes


def test_token_answered_from_the_cache_after_one_slow_authentication(store: TenantStore) -> None:
    raw = _token(store)
    assert store.authenticate_cached(raw, now_ns=T0 + 1) is None  # not cached yet
    slow = store.authenticate_token(raw, now_ns=T0 + 1)  # caches it, writes last_used
    before = _changes(store)
    fast = store.authenticate_cached(raw, now_ns=T0 + 2 * S)
    assert fast == slow
    assert _changes(store) == before  # no write on the fast path


def test_token_wrong_secret_malformed_and_none_are_not_answered(store: TenantStore) -> None:
    raw = _token(store)
    store.authenticate_token(raw, now_ns=T0 + 1)
    token_id, secret = parse_token(raw)
    wrong = raw[: -len(secret)] + ("A" if secret[0] != "A" else "B") + secret[1:]
    assert parse_token(wrong)[0] == token_id
    assert store.authenticate_cached(wrong, now_ns=T0 + 2) is None
    assert store.authenticate_cached("rc-garbage", now_ns=T0 + 2) is None
    assert store.authenticate_cached(None, now_ns=T0 + 2) is None


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1, max_size=80))
def test_a_cached_token_never_admits_another_secret(secret: str) -> None:
    with TenantStore(None, tenant="acme", audit=MemorySink()) as s:
        raw = _token(s)
        s.authenticate_token(raw, now_ns=T0 + 1)
        token_id, real = parse_token(raw)
        if secret != real:
            assert s.authenticate_cached(f"rc-{token_id}-{secret}", now_ns=T0 + 2) is None


def test_token_last_used_due_falls_back(store: TenantStore) -> None:
    raw = _token(store)
    store.authenticate_token(raw, now_ns=T0 + 1)
    assert store.authenticate_cached(raw, now_ns=T0 + 30 * S) is not None
    assert store.authenticate_cached(raw, now_ns=T0 + 61 * S) is None  # a write is due
    store.authenticate_token(raw, now_ns=T0 + 61 * S)
    assert store.authenticate_cached(raw, now_ns=T0 + 62 * S) is not None


def test_token_expired_falls_back(store: TenantStore) -> None:
    raw = _token(store, expires_ns=T0 + 10 * S)
    store.authenticate_token(raw, now_ns=T0 + 1)
    assert store.authenticate_cached(raw, now_ns=T0 + 5 * S) is not None
    assert store.authenticate_cached(raw, now_ns=T0 + 10 * S) is None


def test_revocation_here_takes_effect_at_once(store: TenantStore) -> None:
    raw = _token(store)
    p = store.authenticate_token(raw, now_ns=T0 + 1)
    assert store.authenticate_cached(raw, now_ns=T0 + 2) is not None
    assert p.token_id is not None and store.revoke_token(p.token_id)
    assert store.authenticate_cached(raw, now_ns=T0 + 3) is None


def test_revocation_by_another_connection_takes_effect_at_once(
    store: TenantStore, tmp_path: Path
) -> None:
    raw = _token(store)
    p = store.authenticate_token(raw, now_ns=T0 + 1)
    assert store.authenticate_cached(raw, now_ns=T0 + 2) is not None
    with TenantStore(tmp_path / "tenant.sqlite3", tenant="acme", audit=MemorySink()) as other:
        assert p.token_id is not None and other.revoke_token(p.token_id)
    assert store.authenticate_cached(raw, now_ns=T0 + 3) is None
    # and the cache is not refilled with the stale record
    assert store.authenticate_cached(raw, now_ns=T0 + 4) is None


def _held(store: TenantStore) -> tuple[threading.Event, threading.Event, threading.Thread]:
    """A thread holding the store's lock (as a worker in a transaction would) until released."""
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store._lock:
            holding.set()
            release.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    assert holding.wait(30)
    return holding, release, t


def test_busy_store_answers_none_without_waiting(store: TenantStore) -> None:
    raw = _token(store)
    store.authenticate_token(raw, now_ns=T0 + 1)
    sid = store.create_session(Identity("user:alice", "https://idp", "oidc"), now_ns=T0)
    assert store.session(sid, now_ns=T0 + 1) is not None
    _, release, t = _held(store)
    try:
        # would hang here (the holder waits for `release`) if the lock were awaited
        assert store.authenticate_cached(raw, now_ns=T0 + 2) is None
        assert store.session_cached(sid, now_ns=T0 + 2) is None
    finally:
        release.set()
        t.join(30)
    assert store.authenticate_cached(raw, now_ns=T0 + 3) is not None
    assert store.session_cached(sid, now_ns=T0 + 3) is not None


def test_session_cached(store: TenantStore, tmp_path: Path) -> None:
    ident = Identity("user:alice", "https://idp", "oidc", groups=frozenset({"devs"}))
    sid = store.create_session(ident, ttl_s=60, now_ns=T0)
    assert store.session_cached(sid, now_ns=T0 + 1) is None  # not cached yet
    slow = store.session(sid, now_ns=T0 + 1)
    assert slow is not None and slow.groups == frozenset({"group:devs"})
    before = _changes(store)
    assert store.session_cached(sid, now_ns=T0 + 2) == slow
    assert _changes(store) == before
    assert store.session_cached(sid + "x", now_ns=T0 + 2) is None
    assert store.session_cached("", now_ns=T0 + 2) is None
    assert store.session_cached("x" * 1000, now_ns=T0 + 2) is None
    assert store.session_cached(sid, now_ns=T0 + 60 * S) is None  # expired
    # sign-out elsewhere ends it here at once
    with TenantStore(tmp_path / "tenant.sqlite3", tenant="acme", audit=MemorySink()) as other:
        assert other.delete_session(sid)
    assert store.session_cached(sid, now_ns=T0 + 3) is None
    assert store.session(sid, now_ns=T0 + 3) is None


def test_sign_out_here_ends_the_cached_session(store: TenantStore) -> None:
    sid = store.create_session(Identity("user:bob", "https://idp", "saml"), now_ns=T0)
    assert store.session(sid, now_ns=T0 + 1) is not None
    assert store.session_cached(sid, now_ns=T0 + 2) is not None
    assert store.delete_session(sid)
    assert store.session_cached(sid, now_ns=T0 + 3) is None


def test_closed_store_answers_none(tmp_path: Path) -> None:
    s = TenantStore(tmp_path / "t.sqlite3", tenant="acme", audit=MemorySink())
    raw = _token(s)
    s.authenticate_token(raw, now_ns=T0 + 1)
    s.close()
    assert s.authenticate_cached(raw, now_ns=T0 + 2) is None
