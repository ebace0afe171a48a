"""server/_auth_middleware: the event-loop authentication (cache first, worker thread on a
miss), the one session cookie of both sign-ins, and the tenant's static bindings (publishers
included)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from registry_core.audit import MemorySink
from registry_core.auth import Identity, Principal, Resource, RoleBinding, Scope, TenantStore
from registry_core.config import parse
from registry_core.server._auth_middleware import (
    PRINCIPAL_KEY,
    SESSION_COOKIE,
    AuthMiddleware,
    Credentials,
    authenticate_async,
    authenticate_cached,
    loopback_plain_http,
    session_cookie,
)
from registry_core.server._tenancy import static_bindings


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TenantStore]:
    s = TenantStore(tmp_path / "tenant.sqlite3", tenant="acme", audit=MemorySink())
    yield s
    s.close()


def _raw_token(store: TenantStore) -> str:
    raw, _ = store.create_token(owner="user:alice", scopes=[Scope.parse("acme", "read:*")])
    return raw


def test_authenticate_cached_kinds(store: TenantStore) -> None:
    assert authenticate_cached(store, None) == Principal.anonymous("acme")
    raw = _raw_token(store)
    creds = Credentials("token", raw)
    assert authenticate_cached(store, creds) is None  # first use: the worker thread's job
    first = asyncio.run(authenticate_async(store, creds))
    assert first.subject == "user:alice" and first.method == "token"
    assert authenticate_cached(store, creds) == first  # now from the cache, on the loop
    sid = store.create_session(Identity("user:bob", "https://idp", "oidc"))
    screds = Credentials("session", sid)
    assert authenticate_cached(store, screds) is None
    assert asyncio.run(authenticate_async(store, screds)).subject == "user:bob"
    assert authenticate_cached(store, screds) is not None
    # an unknown session is anonymous (the slow path says so), a bad token an error
    assert asyncio.run(authenticate_async(store, Credentials("session", "nope"))).subject == (
        "anonymous"
    )


async def _call(app: Any, headers: list[tuple[bytes, bytes]]) -> tuple[int, Any]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": headers}
    await app(scope, receive, send)
    return sent[0]["status"], sent


def test_middleware_cached_and_revoked(store: TenantStore) -> None:
    seen: list[Principal] = []

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope[PRINCIPAL_KEY])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    app = AuthMiddleware(inner, store)
    raw = _raw_token(store)
    basic = base64.b64encode(f"__token__:{raw}".encode()).decode()
    headers = [(b"authorization", f"Basic {basic}".encode())]

    async def run() -> list[int]:
        return [(await _call(app, headers))[0] for _ in range(3)]

    assert asyncio.run(run()) == [200, 200, 200]
    assert {p.subject for p in seen} == {"user:alice"}
    token_id = seen[0].token_id
    assert token_id is not None and store.revoke_token(token_id)
    status, sent = asyncio.run(_call(app, headers))
    assert status == 401 and b"revoked" in sent[1]["body"]
    assert raw.encode() not in sent[1]["body"]


@pytest.mark.parametrize(
    "scheme, host, plain",
    [
        ("http", "127.0.0.1", True),
        ("http", "::1", True),
        ("http", "localhost", True),
        ("http", "10.0.0.1", False),
        ("https", "127.0.0.1", False),
        ("http", None, False),
    ],
)
def test_session_cookie_secure_unless_plain_loopback(
    scheme: str, host: str | None, plain: bool
) -> None:
    scope = {"scheme": scheme, "server": (host, 80)}
    assert loopback_plain_http(scope) is plain
    cookie = session_cookie(scope, "/t/acme", "SID", ttl_s=3600)
    attrs = [a.strip() for a in cookie.split(";")]
    assert attrs[0] == f"{SESSION_COOKIE}=SID"
    assert {"Max-Age=3600", "Path=/t/acme/", "HttpOnly", "SameSite=Lax"} <= set(attrs)
    assert ("Secure" in attrs) is not plain
    assert "Path=/" in [a.strip() for a in session_cookie(scope, "", "SID").split(";")]


def test_static_bindings_include_the_publishers() -> None:
    config = parse(
        """
version = 2
[storage]
directory = "/tmp/unused"
[tenants.acme]
[[tenants.acme.publishers]]
name = "widget-release"
issuer = "https://token.actions.githubusercontent.com"
index = "main"
project = "widget"
repository = "octo/widget"
workflow = "release.yml"
create = true
[[tenants.acme.publishers]]
name = "gadget-release"
issuer = "https://token.actions.githubusercontent.com"
index = "main"
project = "gadget"
repository = "octo/gadget"
workflow = "release.yml"
"""
    )
    out = static_bindings(config.tenants["acme"])
    mine = {(b.subject, b.role, b.resource) for b in out if b.subject.startswith("publisher:")}
    assert mine == {
        ("publisher:widget-release", "maintainer", Resource("acme", "main", "widget")),
        ("publisher:gadget-release", "uploader", Resource("acme", "main", "gadget")),
    }
    assert all(isinstance(b, RoleBinding) and b.granted_by == "config" for b in out)
