"""The MCP server over streamable HTTP, behind a bearer token (``registry-core mcp
--transport http`` and plugin authors serving :func:`create_server` themselves)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ..errors import InvalidArgumentError

__all__ = ["MIN_TOKEN_CHARS", "BearerTokenApp", "http_app"]

#: a bearer token shorter than this is refused (guessable); `registry-core token create` and
#: ``secrets.token_urlsafe(32)`` give far more.
MIN_TOKEN_CHARS = 16

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BearerTokenApp:
    """ASGI wrapper: every HTTP request needs ``Authorization: Bearer <token>`` or gets 401.

    Only the token's SHA-256 is kept; the comparison is constant-time over digests (the
    length of the token is not leaked either). Lifespan events pass through untouched, so the
    wrapped app's startup and shutdown (the SDK's session manager) still run. WebSocket and
    other scopes are refused."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        if not isinstance(token, str) or len(token.strip()) < MIN_TOKEN_CHARS:
            raise InvalidArgumentError(
                f"the MCP bearer token must have at least {MIN_TOKEN_CHARS} characters"
            )
        self.app = app
        self._digest = hashlib.sha256(token.strip().encode()).digest()

    def __repr__(self) -> str:
        return f"BearerTokenApp({self.app!r}, token=<hidden>)"

    def authorized(self, header: bytes | None) -> bool:
        """True when ``header`` (the raw Authorization value) carries the token."""
        if header is None:
            return False
        scheme, _, credentials = header.partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        given = hashlib.sha256(credentials.strip()).digest()
        return hmac.compare_digest(given, self._digest)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            return  # websocket: closing without accepting refuses it
        header = None
        for name, value in scope.get("headers", ()):
            if name.lower() == b"authorization":
                header = bytes(value)
                break
        if self.authorized(header):
            await self.app(scope, receive, send)
            return
        body = b"401 Unauthorized: send Authorization: Bearer <token>\n"
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="registry-core mcp"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def http_app(server: Any, token: str, *, host: str = "127.0.0.1") -> BearerTokenApp:
    """The SDK server's streamable HTTP app at ``/mcp``, behind :class:`BearerTokenApp`.

    Tool calls are answered as plain JSON (``json_response``), not as one SSE stream per call:
    it saves a stream (and with most clients a connection) per call. Server-initiated messages
    still use the session's GET stream. ``host`` is the bound address (the SDK's DNS-rebinding
    protection is on for loopback)."""
    inner = server.streamable_http_app(host=host, streamable_http_path="/mcp", json_response=True)
    return BearerTokenApp(inner, token)
