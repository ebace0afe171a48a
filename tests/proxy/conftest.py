"""Real upstreams for the proxy tests (loopback only).

``upstream``: our own index (Index + IndexApp, files by RegistryApp with delta support) over
TLS from a trustme CA, holding two releases of a real setuptools project; a thin wrapper
(``_proxy_support.Counting``) counts requests per path and can answer 503 to everything
(``down``) to play an outage. ``built``: the releases (wheel + sdist each), built once.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _proxy_support import PROJECT, VERSIONS, Counting

from _packages import build_project
from _servers import pki  # noqa: F401


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """{version: Built} for PROJECT, real wheels and sdists."""
    root = tmp_path_factory.mktemp("proxy-build")
    return {v: build_project(root, PROJECT, v, payload_kb=96) for v in VERSIONS}


@pytest.fixture(scope="session")
def upstream(pki, built, tmp_path_factory):  # noqa: F811
    """Our index over TLS with both releases uploaded; yields (handle, Counting, ca path)."""
    from registry_core.index import Index
    from registry_core.server import IndexApp, start_server

    ca, cert, key = pki
    root = tmp_path_factory.mktemp("proxy-upstream")
    index = Index(root)
    raw, _ = index.create_token()
    for b in built.values():
        for path in (b.wheel, b.sdist):
            with open(path, "rb") as fh:
                index.upload(path.name, fh, token=raw)
    app = Counting(IndexApp(index))
    handle = start_server(app, certfile=cert, keyfile=key, quic=False)
    handle.counting = app
    handle.ca = ca
    handle.base = f"https://127.0.0.1:{handle.port}"
    yield handle
    handle.stop()
    index.close()
