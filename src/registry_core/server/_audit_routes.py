"""The tenant routes under ``<base>/_/audit/``: the tenant's audit log, read-only, as static
C2SP tlog-tiles resources (docs/audit.md).

- ``GET checkpoint``: the newest signed checkpoint (a fresh one is signed first when entries
  were added since the last), ``text/plain; charset=utf-8``, ``cache-control: no-cache``.
- ``GET tile/<L>/<N>[.p/<W>]``, ``GET tile/entries/<N>[.p/<W>]``: tiles and entry bundles,
  ``application/octet-stream``, immutable (``private``: they are access-controlled).

Only callers with ``audit.read`` on the tenant see any of it; everyone else, any other method,
a path that is not exactly one of these, a tenant without an audit log, a resource that does
not exist: the uniform 404 (denials are audited by the authorization check).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ._auth_middleware import PRINCIPAL_KEY, send_not_found

__all__ = ["handle"]

log = logging.getLogger("registry_core.server.audit")

_MAX_DRAIN = 64 * 1024


async def _drain(receive: Any) -> None:
    seen = 0
    while seen <= _MAX_DRAIN:
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body"):
            return


def _may_read(runtime: Any, principal: Any) -> bool:
    from ..auth import Resource, authorize

    if principal is None:
        return False
    decision = authorize(
        principal,
        "audit.read",
        Resource(runtime.name),
        runtime.store.policy(),
        audit=getattr(runtime, "audit", None),
    )
    return bool(decision.allowed)


async def handle(runtime: Any, scope: Any, receive: Any, send: Any, subpath: str) -> None:
    """Answer one request for ``<base>/_/audit<subpath>``."""
    method: str = scope.get("method", "GET")
    await _drain(receive)
    audit_log = getattr(runtime, "audit_log", None)
    rel = subpath[1:] if subpath.startswith("/") else ""
    if method not in ("GET", "HEAD") or audit_log is None or not rel:
        await send_not_found(send, method)
        return
    if not await asyncio.to_thread(_may_read, runtime, scope.get(PRINCIPAL_KEY)):
        await send_not_found(send, method)
        return
    if rel == "checkpoint":
        data = await asyncio.to_thread(audit_log.latest_checkpoint)
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"cache-control", b"no-cache"),
        ]
    else:
        data = await asyncio.to_thread(audit_log.read_static, rel)
        headers = [
            (b"content-type", b"application/octet-stream"),
            (b"cache-control", b"private, max-age=31536000, immutable"),
        ]
    if data is None:
        await send_not_found(send, method)
        return
    headers.append((b"content-length", str(len(data)).encode()))
    headers.append((b"x-content-type-options", b"nosniff"))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else data})
