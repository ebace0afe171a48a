"""A tenant's SAML routes under ``<base>/_/saml/``: login, assertion consumer, metadata.

- ``GET login?next=<local path>``: 302 to the IdP with a new AuthnRequest; sets the short-lived
  ``rc_saml`` cookie whose secret binds the answer to this browser (login CSRF).
- ``POST acs`` (form ``SAMLResponse``, ``RelayState``; body at most 256 KiB): the response is
  checked by :class:`registry_core.auth._saml.SAMLServiceProvider` (in a worker thread:
  xmlsec1 runs as a process), the login recorded, a session created; ``rc_session`` cookie
  (HttpOnly, SameSite=Lax, Secure unless plain HTTP on loopback, Path=<base>/) and 303 to the
  path stored with the request (never a posted URL: no open redirect). A refusal is a 401
  with a one-line reason (never the assertion) and an audit event ``login.failed``.
- ``GET metadata``: our SP metadata (``application/samlmetadata+xml``).

A tenant without SAML, or any other path: the uniform 404.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from ..errors import IdentityProviderError, InvalidArgumentError
from ._auth_middleware import loopback_plain_http, send_not_found, send_text, session_cookie

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    Scope = dict[str, Any]
    Receive = Callable[[], Awaitable[dict[str, Any]]]
    Send = Callable[[dict[str, Any]], Awaitable[None]]

__all__ = ["BINDING_COOKIE", "MAX_FORM_BYTES", "handle"]

BINDING_COOKIE = "rc_saml"
MAX_FORM_BYTES = 256 * 1024 + 4096  # the SAMLResponse limit plus RelayState and field names
_MAX_FIELDS = 8
_NO_STORE = ("cache-control", "no-store")


async def handle(runtime: Any, scope: Scope, receive: Receive, send: Send, subpath: str) -> None:
    """Answer ``<base>/_/saml/<subpath>`` for ``runtime`` (a TenantRuntime)."""
    method = scope.get("method", "GET")
    sp = getattr(runtime, "saml", None)
    route = subpath.strip("/")
    if sp is None or route not in ("login", "acs", "metadata"):
        await send_not_found(send, method)
        return
    if route == "acs":
        if method != "POST":
            await send_text(send, 405, "use POST", [("allow", "POST")], method=method)
            return
        await _acs(runtime, sp, scope, receive, send)
        return
    if method not in ("GET", "HEAD"):
        await send_text(send, 405, "use GET", [("allow", "GET, HEAD")], method=method)
        return
    if route == "metadata":
        body = await asyncio.to_thread(sp.metadata_xml)
        await _reply(
            send,
            200,
            [("content-type", "application/samlmetadata+xml"), ("content-length", str(len(body)))],
            b"" if method == "HEAD" else body,
        )
        return
    await _login(runtime, sp, scope, send)


def _base(runtime: Any) -> str:
    return str(getattr(runtime, "base", "") or "")


def _secure(scope: Scope) -> bool:
    """Cookies are Secure unless this is plain HTTP served on a loopback address."""
    return not loopback_plain_http(scope)


def _cookie(name: str, value: str, path: str, *, secure: bool, same_site: str, max_age: int) -> str:
    parts = [f"{name}={value}", f"Path={path}", f"Max-Age={max_age}", "HttpOnly"]
    if secure:
        parts.append("Secure")
    parts.append(f"SameSite={same_site}")
    return "; ".join(parts)


def _query_next(scope: Scope, base: str) -> str:
    from ..auth import safe_next_path  # the one open-redirect check

    raw = scope.get("query_string", b"") or b""
    try:
        values = parse_qs(raw.decode("latin-1"), max_num_fields=_MAX_FIELDS).get("next", [])
    except ValueError:
        values = []
    return safe_next_path(values[0] if len(values) == 1 else None, base=base)


async def _login(runtime: Any, sp: Any, scope: Scope, send: Send) -> None:
    base = _base(runtime)
    next_path = _query_next(scope, base)
    key = secrets.token_urlsafe(32)
    try:
        location = await asyncio.to_thread(sp.login_redirect, next_path, browser_key=key)
    except InvalidArgumentError as exc:
        await send_text(send, 400, str(exc))
        return
    secure = _secure(scope)
    binding = _cookie(
        BINDING_COOKIE,
        key,
        f"{base}/_/saml/",
        secure=secure,
        # the IdP posts back cross-site: the cookie must come along (None needs Secure)
        same_site="None" if secure else "Lax",
        max_age=600,
    )
    headers = [("location", location), ("set-cookie", binding), _NO_STORE]
    await _reply(send, 302, [*headers, ("content-length", "0")], b"")


def _cookie_value(scope: Scope, name: str) -> str | None:
    for k, v in scope.get("headers", []):
        if k.lower() != b"cookie":
            continue
        for part in v.decode("latin-1").split(";"):
            key, sep, value = part.strip().partition("=")
            if sep and key == name and value and len(value) <= 256:
                return value.strip('"')
    return None


async def _read_form(scope: Scope, receive: Receive) -> dict[str, list[str]] | tuple[int, str]:
    """The urlencoded form, or (status, message) when it is not one or too large."""
    ctype = ""
    length: int | None = None
    for k, v in scope.get("headers", []):
        name = k.lower()
        if name == b"content-type":
            ctype = v.decode("latin-1").split(";")[0].strip().lower()
        elif name == b"content-length":
            try:
                length = int(v)
            except ValueError:
                return 400, "bad Content-Length"
    if ctype != "application/x-www-form-urlencoded":
        return 415, "the SAML response is posted as application/x-www-form-urlencoded"
    if length is not None and length > MAX_FORM_BYTES:
        return 413, f"the form is larger than {MAX_FORM_BYTES} bytes"
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return 400, "the client went away"
        body = message.get("body", b"")
        size += len(body)
        if size > MAX_FORM_BYTES:
            return 413, f"the form is larger than {MAX_FORM_BYTES} bytes"
        chunks.append(body)
        if not message.get("more_body"):
            break
    try:
        text = b"".join(chunks).decode("ascii")
        return parse_qs(text, keep_blank_values=True, max_num_fields=_MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        return 400, "the form is not a urlencoded ASCII form"


async def _acs(runtime: Any, sp: Any, scope: Scope, receive: Receive, send: Send) -> None:
    form = await _read_form(scope, receive)
    if isinstance(form, tuple):
        status, message = form
        # the body may be left unread: an HTTP/1 connection must not be reused after this
        extra = [("connection", "close")] if scope.get("http_version", "1.1")[0] == "1" else []
        await send_text(send, status, message, extra)
        return
    responses = form.get("SAMLResponse", [])
    relays = form.get("RelayState", [])
    if len(responses) != 1 or len(relays) > 1:
        await send_text(send, 400, "the form needs one SAMLResponse and at most one RelayState")
        return
    base = _base(runtime)
    secure = _secure(scope)
    clear = _cookie(
        BINDING_COOKIE,
        "",
        f"{base}/_/saml/",
        secure=secure,
        same_site="None" if secure else "Lax",
        max_age=0,
    )
    key = _cookie_value(scope, BINDING_COOKIE)
    try:
        identity, next_path = await asyncio.to_thread(
            sp.complete_login, responses[0], relays[0] if relays else None, browser_key=key
        )
    except IdentityProviderError as exc:
        _audit_failure(runtime, str(exc))
        await send_text(send, 401, f"SAML sign-in refused: {exc}", [("set-cookie", clear)])
        return
    raw = await asyncio.to_thread(runtime.sign_in, identity)
    ttl = getattr(runtime.config, "session_ttl_s", 8 * 3600)
    session = session_cookie(scope, base, raw, ttl_s=ttl)  # the same cookie as OIDC's
    headers = [
        ("location", next_path),
        ("set-cookie", session),
        ("set-cookie", clear),
        _NO_STORE,
        ("content-length", "0"),
    ]
    await _reply(send, 303, headers, b"")


def _audit_failure(runtime: Any, reason: str) -> None:
    audit = getattr(runtime, "audit", None)
    if audit is None:
        return
    from ..audit import AuditEvent

    audit.emit(
        AuditEvent(
            kind="login.failed",
            tenant=str(getattr(runtime, "name", "")),
            subject="anonymous",
            outcome="failed",
            action="saml",
            detail={"reason": reason},
        )
    )


async def _reply(send: Send, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers],
        }
    )
    await send({"type": "http.response.body", "body": body})
