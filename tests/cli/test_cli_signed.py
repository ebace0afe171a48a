"""A signed registry from the command line: ``serve --sign`` publishes TUF metadata (hybrid
Ed25519 + ML-DSA-65) and signs its patches; ``proxy --tuf-root`` verifies every file and patch
against it; pip upgrades through the proxy as a delta. A proxy given another registry's root
refuses everything."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from _cli_run import Running, cli_env
from _cli_run import cli as _cli
from _packages import build_project, client_env, run, tool

pytestmark = pytest.mark.network

PASSPHRASE = "correct horse battery staple, signed registry test"


def _env() -> dict[str, str]:
    return cli_env(REGISTRY_CORE_KEY_PASSPHRASE=PASSPHRASE)


def _Running(args: list[str], cwd: Path) -> Running:
    return Running(args, cwd, env=_env())


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    root = tmp_path_factory.mktemp("signed-releases")
    return [build_project(root, "signed-e2e", v, payload_kb=256) for v in ("1.0", "1.1")]


def _token(index_dir: Path) -> str:
    made = subprocess.run(
        _cli("token", "create", str(index_dir)),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=_env(),
    )
    return made.stdout.strip()


def _twine(url: str, token: str, path: Path) -> None:
    run(
        [
            tool("twine"),
            "upload",
            "--non-interactive",
            "--disable-progress-bar",
            "--repository-url",
            f"{url}legacy/",
            str(path),
        ],
        env=client_env(TWINE_USERNAME="__token__", TWINE_PASSWORD=token),
    )


def _proxy(upstream: str, cache: Path, root: Path, cwd: Path) -> _Running:
    return _Running(
        [
            "proxy",
            "--upstream",
            upstream,
            "--cache-dir",
            str(cache),
            "--listen",
            "127.0.0.1:0",
            "--page-ttl",
            "0",
            "--tuf-root",
            str(root),
        ],
        cwd,
    )


def _pip(proxy: _Running, target: Path, *extra: str, check: bool = True):
    args = [tool("pip"), "install", "--target", str(target), "-q"]
    args += ["--index-url", f"{proxy.url}simple/", *extra, "signed-e2e"]
    return run(args, check=check)


def test_signed_serve_and_verifying_proxy(tmp_path, releases):
    index_dir = tmp_path / "index"
    index_dir.mkdir()
    token = _token(index_dir)
    server = _Running(["serve", str(index_dir), "--plain-http", "--port", "0", "--sign"], tmp_path)
    proxy = None
    try:
        assert "signed: TUF metadata" in server.line
        root = index_dir / ".registry-core" / "tuf" / "1.root.json"
        assert root.is_file()
        keys = list((index_dir / ".registry-core" / "keys").glob("*.pem"))
        assert keys and all(b"ENCRYPTED PRIVATE KEY" in k.read_bytes() for k in keys)
        _twine(server.url, token, releases[0].wheel)
        proxy = _proxy(server.url.rstrip("/"), tmp_path / "cache", root, tmp_path)
        target = tmp_path / "site"
        _pip(proxy, target)
        _twine(server.url, token, releases[1].wheel)
        _pip(proxy, target, "--upgrade")
        text = (target / "signed_e2e" / "__init__.py").read_text()
        assert "VERSION = '1.1'" in text
    finally:
        proxy_status = None if proxy is None else proxy.stop()
        assert server.stop() == 0
    assert proxy_status == 0
    assert "1 deltas" in proxy.rest, proxy.rest  # the upgrade: a signed, verified patch


def test_proxy_with_another_registrys_root_refuses(tmp_path, releases):
    """The proxy trusts only the root it was given: files of a registry signed with other
    keys are refused (nothing cached), so pip cannot install them through it."""
    index_dir, other_dir = tmp_path / "index", tmp_path / "other"
    index_dir.mkdir()
    other_dir.mkdir()
    token = _token(index_dir)
    server = _Running(["serve", str(index_dir), "--plain-http", "--port", "0", "--sign"], tmp_path)
    other = _Running(["serve", str(other_dir), "--plain-http", "--port", "0", "--sign"], tmp_path)
    proxy = None
    try:
        _twine(server.url, token, releases[0].wheel)
        wrong_root = other_dir / ".registry-core" / "tuf" / "1.root.json"
        proxy = _proxy(server.url.rstrip("/"), tmp_path / "cache", wrong_root, tmp_path)
        failed = _pip(proxy, tmp_path / "site", check=False)
        assert failed.returncode != 0
        assert not list((tmp_path / "cache").rglob("*.whl"))
    finally:
        if proxy is not None:
            proxy.stop()
        other.stop()
        server.stop()
