"""The tenant routes under ``<base>/_/oidc/``: browser sign-in and trusted publishing.

- ``GET login?next=PATH``: 302 to the identity provider (state, nonce, PKCE S256 kept
  one-time in the tenant store). ``next`` must be a local path under the tenant's base.
- ``GET callback?code&state``: the code is exchanged and the ID token validated; a session
  cookie ``rc_session`` (HttpOnly, SameSite=Lax, Path=<base>/, Secure unless plain HTTP on
  loopback) and a 303 to ``next``. Any failure: 401 naming the reason, never a code or token.
- ``GET audience``: ``{"audience": ...}`` (as PyPI's ``/_/oidc/audience``).
- ``POST mint-token`` ``{"token": "<CI ID token>"}``: ``{"success": true, "token": "rc-...",
  "expires": <unix seconds>}``; refused: 401 ``{"success": false, "message": ...}``;
  a malformed request: 422. The body is bounded (64 KiB).

Anything else, or a part the tenant does not configure: the uniform 404.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import parse_qs

from ..errors import IdentityProviderError, InvalidArgumentError
from ._auth_middleware import send_not_found, send_text, session_cookie

__all__ = ["handle"]

log = logging.getLogger("registry_core.server.oidc")

MAX_BODY = 64 * 1024
MAX_QUERY = 8 * 1024
_NO_STORE = ("cache-control", "no-store")


async def _read_body(receive: Any, limit: int) -> bytes | None:
    """The request body, or None once it exceeds ``limit`` (the rest is drained, bounded)."""
    body = bytearray()
    too_big = False
    seen = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        seen += len(chunk)
        if not too_big:
            body += chunk
            too_big = len(body) > limit
        if not message.get("more_body") or seen > 16 * limit:
            return None if too_big else bytes(body)


async def _drain(receive: Any) -> None:
    await _read_body(receive, MAX_BODY)


async def _send_json(send: Any, status: int, doc: dict[str, Any], method: str = "GET") -> None:
    body = json.dumps(doc).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})


async def _redirect(send: Any, status: int, location: str, extra: list[tuple[str, str]]) -> None:
    headers = [
        (b"location", location.encode("ascii")),
        (b"content-length", b"0"),
        (b"cache-control", b"no-store"),
        *((k.encode("latin-1"), v.encode("latin-1")) for k, v in extra),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def _query(scope: Any) -> dict[str, str] | None:
    raw: bytes = scope.get("query_string", b"")
    if len(raw) > MAX_QUERY:
        return None
    try:
        parsed = parse_qs(raw.decode("ascii"), keep_blank_values=True, max_num_fields=32)
    except (UnicodeDecodeError, ValueError):
        return None
    if any(len(v) != 1 for v in parsed.values()):
        return None  # a repeated parameter is refused, not guessed at
    return {k: v[0] for k, v in parsed.items()}


def _base(runtime: Any, scope: Any, subpath: str) -> str:
    """The tenant base this request came in under (its path minus ``/_/oidc<subpath>``)."""
    path: str = scope.get("path", "")
    tail = "/_/oidc" + subpath
    if path.endswith(tail):
        return path[: len(path) - len(tail)]
    return str(getattr(runtime, "base", ""))


def _audit_failure(runtime: Any, reason: str) -> None:
    from ..audit import AuditEvent

    sink = getattr(runtime, "audit", None)
    if sink is None:
        return
    try:
        sink.emit(
            AuditEvent(
                kind="login.failed",
                tenant=runtime.name,
                subject="anonymous",
                outcome="failed",
                detail={"method": "oidc", "reason": reason[:200]},
            )
        )
    except Exception:  # sinks must not raise; a failing one must not break the answer
        log.exception("audit sink failed")


async def _sign_in(runtime: Any, identity: Any) -> str:
    sign_in = getattr(runtime, "sign_in", None)
    if sign_in is not None:
        return str(await asyncio.to_thread(sign_in, identity))
    store = runtime.store
    ttl = float(getattr(runtime.config, "session_ttl_s", 8 * 3600))
    await asyncio.to_thread(store.record_login, identity)
    return str(await asyncio.to_thread(store.create_session, identity, ttl_s=ttl))


async def _login(runtime: Any, scope: Any, send: Any, base: str) -> None:
    from ..auth import safe_next_path

    query = _query(scope)
    if query is None:
        await send_text(send, 400, "malformed query", [_NO_STORE])
        return
    next_path = safe_next_path(query.get("next"), base=base)
    try:
        url = await runtime.oidc.login_url(next_path)
    except IdentityProviderError as exc:
        log.warning("tenant %s: OIDC login unavailable: %s", runtime.name, exc)
        await send_text(send, 502, "the identity provider is not available", [_NO_STORE])
        return
    await _redirect(send, 302, url, [])


async def _callback(runtime: Any, scope: Any, send: Any, base: str) -> None:
    from ..auth import safe_next_path

    query = _query(scope)
    if query is None:
        await send_text(send, 400, "malformed query", [_NO_STORE])
        return
    if "error" in query:
        await asyncio.to_thread(runtime.oidc.cancel, query.get("state", ""))
        error = query["error"]
        shown = error if error.replace("_", "").isalnum() and len(error) <= 64 else "error"
        _audit_failure(runtime, f"identity provider answered {shown}")
        await send_text(
            send, 401, f"sign-in refused by the identity provider: {shown}", [_NO_STORE]
        )
        return
    try:
        identity, next_path = await runtime.oidc.complete_login(
            code=query.get("code", ""), state=query.get("state", ""), iss=query.get("iss")
        )
        session_id = await _sign_in(runtime, identity)
    except (IdentityProviderError, InvalidArgumentError) as exc:
        _audit_failure(runtime, str(exc))
        await send_text(send, 401, f"sign-in failed: {exc}", [_NO_STORE])
        return
    ttl = getattr(runtime.config, "session_ttl_s", 8 * 3600)
    cookie = session_cookie(scope, base, session_id, ttl_s=ttl)
    await _redirect(send, 303, safe_next_path(next_path, base=base), [("set-cookie", cookie)])


async def _mint(runtime: Any, receive: Any, send: Any) -> None:
    body = await _read_body(receive, MAX_BODY)
    if body is None:
        await _send_json(send, 413, {"success": False, "message": "request too large"})
        return
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    token = doc.get("token") if isinstance(doc, dict) else None
    if not isinstance(token, str) or not token:
        await _send_json(
            send, 422, {"success": False, "message": 'expected a JSON object {"token": "..."}'}
        )
        return
    try:
        raw, record = await runtime.publishing.exchange(token)
    except (IdentityProviderError, InvalidArgumentError) as exc:
        await _send_json(send, 401, {"success": False, "message": str(exc)})
        return
    expires = record.expires_ns // 1_000_000_000 if record.expires_ns is not None else None
    await _send_json(send, 200, {"success": True, "token": raw, "expires": expires})


async def handle(runtime: Any, scope: Any, receive: Any, send: Any, subpath: str) -> None:
    """Serve ``<base>/_/oidc<subpath>`` for ``runtime`` (a TenantRuntime)."""
    if subpath.startswith("/_/oidc/"):
        subpath = subpath[len("/_/oidc") :]
    method: str = scope.get("method", "GET")
    base = _base(runtime, scope, subpath)
    oidc = getattr(runtime, "oidc", None)
    publishing = getattr(runtime, "publishing", None)
    if subpath == "/mint-token" and method == "POST" and publishing is not None:
        await _mint(runtime, receive, send)
        return
    await _drain(receive)
    if method not in ("GET", "HEAD"):
        await send_not_found(send, method)
    elif subpath == "/login" and oidc is not None:
        await _login(runtime, scope, send, base)
    elif subpath == "/callback" and oidc is not None:
        await _callback(runtime, scope, send, base)
    elif subpath == "/audience" and publishing is not None:
        await _send_json(send, 200, {"audience": publishing.audience}, method)
    else:
        await send_not_found(send, method)
