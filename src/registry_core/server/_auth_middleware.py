"""Authentication for the servers: who is asking, decided once per request.

A request carries at most one credential: an API token (HTTP Basic ``__token__:<token>``, as
pip, uv and twine send it, or ``Authorization: Bearer <token>``) or a browser session (the
``rc_session`` cookie set by an OIDC or SAML sign-in). :func:`authenticate` turns it into a
:class:`registry_core.auth.Principal` of one tenant (its :class:`TenantStore` decides), or the
anonymous principal when there is none. The principal and the tenant's name travel in the
ASGI scope under :data:`PRINCIPAL_KEY` and :data:`TENANT_KEY`, so the routes below never look
at credentials again.

The uniform "not found" (:func:`send_not_found`) is the one answer for an unknown tenant, an
unknown index and anything the caller may not see: byte-identical whatever the reason, so a
response never tells whether another tenant, index or project exists.

:class:`AuthMiddleware` wraps one ASGI app for one tenant store (an IndexApp served on its
own); :class:`registry_core.server.MultiTenantApp` does the same after resolving the tenant.
Both call :func:`authenticate_async`: on the event loop when the store can answer from its
caches without waiting, on a worker thread otherwise.

The sign-in routes (OIDC and SAML) share :func:`session_cookie` and
:func:`loopback_plain_http` from here: one cookie, one rule for when it may lack ``Secure``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._util import is_loopback
from ..errors import AuthenticationError, PackageIndexError
from ..telemetry._context import annotate

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ..auth import Principal, TenantStore

    Scope = dict[str, Any]
    Receive = Callable[[], Awaitable[dict[str, Any]]]
    Send = Callable[[dict[str, Any]], Awaitable[None]]

__all__ = [
    "NOT_FOUND_BODY",
    "PRINCIPAL_KEY",
    "SESSION_COOKIE",
    "TENANT_KEY",
    "AuthMiddleware",
    "Credentials",
    "authenticate",
    "authenticate_async",
    "authenticate_cached",
    "credentials",
    "loopback_plain_http",
    "principal_of",
    "send_not_found",
    "send_text",
    "session_cookie",
]

PRINCIPAL_KEY = "registry_core.principal"
TENANT_KEY = "registry_core.tenant"
SESSION_COOKIE = "rc_session"

NOT_FOUND_BODY = b"404 Not Found\n"
_NOT_FOUND_HEADERS = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", str(len(NOT_FOUND_BODY)).encode()),
]
_MAX_CREDENTIAL = 4096  # a token or session id is ~60 characters; anything longer is refused


@dataclass(frozen=True)
class Credentials:
    """The one credential of a request: ``kind`` "token" or "session"; ``secret`` never shown."""

    kind: str
    secret: str = field(repr=False)


async def send_not_found(send: Send, method: str = "GET") -> None:
    """The uniform 404: same status, headers and body for every reason."""
    await send({"type": "http.response.start", "status": 404, "headers": list(_NOT_FOUND_HEADERS)})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else NOT_FOUND_BODY})


async def send_text(
    send: Send,
    status: int,
    message: str,
    extra: Iterable[tuple[str, str]] = (),
    *,
    method: str = "GET",
) -> None:
    """A short plain-text answer (one line; CR/LF in ``message`` flattened)."""
    body = (message.replace("\r", " ").replace("\n", " ") + "\n").encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        *((k.encode("latin-1"), v.encode("latin-1")) for k, v in extra),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})


def _header_values(raw: Iterable[tuple[bytes, bytes]], name: bytes) -> list[str]:
    return [v.decode("latin-1").strip() for k, v in raw if k.lower() == name]


def credentials(raw_headers: Iterable[tuple[bytes, bytes]]) -> Credentials | None:
    """The request's credential, None without one.

    ``Authorization`` wins over the session cookie. A malformed or repeated ``Authorization``
    field, a Basic user other than ``__token__`` or an over-long value raises
    AuthenticationError (the message never repeats what was sent).
    """
    raw = list(raw_headers)
    values = _header_values(raw, b"authorization")
    if len(values) > 1:
        raise AuthenticationError("more than one Authorization field")
    if values and values[0]:
        value = values[0]
        if len(value) > _MAX_CREDENTIAL:
            raise AuthenticationError("the Authorization field is too long")
        scheme, _, rest = value.partition(" ")
        rest = rest.strip()
        if scheme.lower() == "bearer" and rest:
            return Credentials("token", rest)
        if scheme.lower() != "basic":
            raise AuthenticationError(
                "use HTTP Basic authentication with username __token__ (or a Bearer token)"
            )
        try:
            decoded = base64.b64decode(rest, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise AuthenticationError("malformed Basic credentials") from None
        user, sep, password = decoded.partition(":")
        if not sep or user != "__token__" or not password:
            raise AuthenticationError("the username must be __token__ and the password a token")
        return Credentials("token", password)
    for cookie_field in _header_values(raw, b"cookie"):
        for part in cookie_field.split(";"):
            name, sep, value = part.strip().partition("=")
            if sep and name == SESSION_COOKIE and value:
                if len(value) > _MAX_CREDENTIAL:
                    raise AuthenticationError("the session cookie is too long")
                return Credentials("session", value.strip('"'))
    return None


def authenticate(
    store: TenantStore, creds: Credentials | None, *, now_ns: int | None = None
) -> Principal:
    """The principal ``creds`` prove in ``store``'s tenant (blocking: the store may read its
    database). No credential, or an unknown or expired session: anonymous (the browser signs
    in again). A bad, revoked or expired token raises AuthenticationError/TokenExpiredError.
    """
    from ..auth import Principal

    if creds is None:
        return Principal.anonymous(store.tenant)
    if creds.kind == "token":
        return store.authenticate_token(creds.secret, now_ns=now_ns)
    session = store.session(creds.secret, now_ns=now_ns)
    return session if session is not None else Principal.anonymous(store.tenant)


def authenticate_cached(
    store: TenantStore, creds: Credentials | None, *, now_ns: int | None = None
) -> Principal | None:
    """:func:`authenticate` when it can be answered without blocking (from the store's
    verified caches, see :meth:`TenantStore.authenticate_cached`); None when it cannot (then
    call :func:`authenticate` on a worker thread). Never raises for a bad credential."""
    from ..auth import Principal

    if creds is None:
        return Principal.anonymous(store.tenant)
    if creds.kind == "token":
        return store.authenticate_cached(creds.secret, now_ns=now_ns)
    return store.session_cached(creds.secret, now_ns=now_ns)


async def authenticate_async(store: TenantStore, creds: Credentials | None) -> Principal:
    """:func:`authenticate` for an event loop: answered on the loop from the caches when they
    can (no thread hop: the common case of a client repeating its token), else on a worker
    thread (the first use, a write due, a busy store, a bad credential)."""
    principal = authenticate_cached(store, creds)
    if principal is not None:
        return principal
    return await asyncio.to_thread(authenticate, store, creds)


def loopback_plain_http(scope: Mapping[str, Any]) -> bool:
    """True when ``scope`` is plain HTTP served on a loopback address: the one case a session
    cookie may go without ``Secure`` (a browser would not send it back otherwise)."""
    if scope.get("scheme") != "http":
        return False
    host = (scope.get("server") or ("", None))[0]
    return isinstance(host, str) and is_loopback(host)


def session_cookie(
    scope: Mapping[str, Any], base: str, session_id: str, *, ttl_s: float = 8 * 3600
) -> str:
    """The ``Set-Cookie`` value of a new session (OIDC and SAML alike): HttpOnly, SameSite=Lax,
    ``Path=<base>/``, Secure unless :func:`loopback_plain_http`."""
    secure = "" if loopback_plain_http(scope) else "; Secure"
    return (
        f"{SESSION_COOKIE}={session_id}; Max-Age={int(ttl_s)}; Path={base or ''}/; HttpOnly; "
        f"SameSite=Lax{secure}"
    )


class AuthMiddleware:
    """ASGI wrapper putting the principal of ``store``'s tenant into every HTTP scope.

    For one app serving one tenant (an :class:`IndexApp` on its own, a test). A bad token is
    answered 401 with a ``WWW-Authenticate`` challenge; everything else passes through.
    """

    def __init__(self, app: Any, store: TenantStore) -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        annotate(tenant=self.store.tenant)
        try:
            creds = credentials(scope["headers"])
            principal = await authenticate_async(self.store, creds)
        except PackageIndexError as exc:
            await send_text(
                send,
                exc.status,
                str(exc),
                [("www-authenticate", 'Basic realm="registry-core"')],
                method=scope.get("method", "GET"),
            )
            return
        if principal.authenticated:
            annotate(subject=principal.subject)
        scope = {**scope, PRINCIPAL_KEY: principal, TENANT_KEY: self.store.tenant}
        await self.app(scope, receive, send)


def principal_of(scope: Mapping[str, Any]) -> Principal | None:
    """The principal the middleware put in ``scope``; None when none ran."""
    return scope.get(PRINCIPAL_KEY)
