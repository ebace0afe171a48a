"""Real clients (pip, uv, twine) against an IndexApp served over HTTPS on loopback.

The server's certificate comes from the trustme CA in ``tests/_servers.py``; clients trust it
through ``--cert`` (pip, twine) or ``SSL_CERT_FILE`` (uv) and run in ``client_env()``, so no
other index or configuration can answer for us.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _packages import Built, build_project, client_env
from _servers import pki  # noqa: F401
from registry_core.index import Index
from registry_core.server import IndexApp, RegistryApp, start_server


@dataclass
class Site:
    """One running index: its app, the index, an upload token and the CA bundle."""

    app: IndexApp
    index: Index
    token: str
    url: str
    ca: str

    @property
    def files(self) -> RegistryApp:
        return self.app.files

    def env(self, **extra: str) -> dict[str, str]:
        """``client_env()`` trusting only our CA: this machine's CA variables
        (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, SSL_CERT_FILE, ...) would otherwise win over
        ``--cert`` in requests (pip, twine) and over everything in uv."""
        ca = self.ca
        return client_env(
            REQUESTS_CA_BUNDLE=ca, CURL_CA_BUNDLE=ca, SSL_CERT_FILE=ca, SSL_CERT_DIR="", **extra
        )

    def simple(self) -> str:
        return self.url + "simple/"

    def upload_url(self) -> str:
        return self.url + "legacy/"

    def file_hits(self, filename: str) -> int:
        """Requests the file server answered for ``filename`` (any project directory)."""
        rec = self.index.file(filename)
        assert rec is not None, filename
        return self.files.hits[rec.path] + self.files.hits["/" + rec.path]


@pytest.fixture(scope="session")
def releases(tmp_path_factory) -> dict[str, Built]:
    """alpha 1.0 (needs beta), alpha 1.1 (to be yanked), alpha 2.0 (requires Python >= 4),
    beta 1.0 and 2.0: enough to see which files a resolver chooses and fetches."""
    root = tmp_path_factory.mktemp("releases")
    out = {
        "alpha-1.0": build_project(root, "alpha", "1.0", dependencies=["beta"], payload_kb=8),
        "alpha-1.1": build_project(root, "alpha", "1.1", dependencies=["beta"], payload_kb=8),
        "alpha-2.0": build_project(root, "alpha", "2.0", requires_python=">=4", payload_kb=8),
        "beta-1.0": build_project(root, "beta", "1.0", payload_kb=8),
        "beta-2.0": build_project(root, "beta", "2.0", payload_kb=8),
    }
    return out


def _start(root: Path, pki_paths) -> tuple[Site, object]:
    ca, cert, key = pki_paths
    store = root / "store"
    store.mkdir()
    index = Index(store)
    token, _ = index.create_token(description="tests")
    app = IndexApp(index)
    handle = start_server(app, certfile=cert, keyfile=key, quic=False)
    return Site(app, index, token, handle.url(), ca), handle


@pytest.fixture()
def empty_site(tmp_path, pki):  # noqa: F811 (the fixture imported above)
    """An empty index over HTTPS (for the upload tests)."""
    site, handle = _start(tmp_path, pki)
    try:
        yield site
    finally:
        handle.stop()
        site.app.close()
        site.index.close()


@pytest.fixture(scope="module")
def full_site(tmp_path_factory, pki, releases):  # noqa: F811
    """An index holding every release (alpha 1.1 yanked), over HTTPS."""
    site, handle = _start(tmp_path_factory.mktemp("site"), pki)
    for built in releases.values():
        for path in (built.wheel, built.sdist):
            with open(path, "rb") as f:
                site.index.upload(path.name, f, token=site.token)
    site.index.yank(releases["alpha-1.1"].wheel.name, "broken")
    site.index.yank(releases["alpha-1.1"].sdist.name, "broken")
    try:
        yield site
    finally:
        handle.stop()
        site.app.close()
        site.index.close()
