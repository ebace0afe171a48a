import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _servers import artifacts, goaway_server, pki, server, tcp_only_server  # noqa: F401


async def asgi_request(app, method, path, headers=(), *, client=("127.0.0.1", 40000), send=None):
    """Call ``app`` as an ASGI server would; returns (status, headers dict, body, messages).

    ``headers`` is a sequence of (name, value) pairs (repeats allowed); ``send`` replaces the
    collecting send (it still receives every message).
    """
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "2",
        "method": method,
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
        "client": client,
        "server": ("127.0.0.1", 443),
    }
    messages = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def collect(message):
        messages.append(message)
        if send is not None:
            await send(message)

    await app(scope, receive, collect)
    start = messages[0]
    hdrs = {k.decode("latin-1"): v.decode("latin-1") for k, v in start["headers"]}
    body = b"".join(m.get("body", b"") for m in messages[1:])
    return start["status"], hdrs, body, messages


@pytest.fixture
def call():
    """``call(app, method, path, headers)`` run to completion on a fresh event loop."""
    import asyncio

    def run(app, method, path, headers=(), **kw):
        return asyncio.run(asgi_request(app, method, path, headers, **kw))

    return run


@pytest.fixture(scope="session")
def releases():
    """Five successive wheel releases of one project: [(version, bytes)]."""
    from _servers import make_versions

    return make_versions(5)


@pytest.fixture
def asgi():
    """The coroutine function ``asgi_request`` (for tests that run their own event loop)."""
    return asgi_request
