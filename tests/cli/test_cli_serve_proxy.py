"""``registry-core serve`` and ``registry-core proxy`` as a user runs them: console script
subprocesses on loopback, twine uploading with a token made by ``token create``, pip installing
and upgrading through the proxy, ``proxy warm`` filling a cache; and the refusals."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from _cli_run import Running as _Running
from _cli_run import cli as _cli
from _packages import build_project, client_env, run, tool
from registry_core.cli import main

pytestmark = pytest.mark.network


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    root = tmp_path_factory.mktemp("releases")
    return [build_project(root, "cli-e2e", v, payload_kb=256) for v in ("1.0", "1.1")]


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


def _installed_version(target: Path) -> str:
    text = (target / "cli_e2e" / "__init__.py").read_text()
    return text.split("VERSION = ", 1)[1].split("\n", 1)[0].strip("'\"")


def test_serve_upload_then_pip_upgrade_through_the_proxy(tmp_path, releases):
    index_dir = tmp_path / "index"
    index_dir.mkdir()
    made = subprocess.run(
        _cli("token", "create", str(index_dir), "--project", "cli-e2e"),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    token = made.stdout.strip()
    assert made.stdout == token + "\n" and token.startswith("rc-")

    server = _Running(["serve", str(index_dir), "--plain-http", "--port", "0"], tmp_path)
    proxy = None
    try:
        assert server.url.startswith("http://127.0.0.1:")
        assert f"uploads {server.url}legacy/" in server.line
        assert token not in server.line
        _twine(server.url, token, releases[0].wheel)
        upstream = server.url.rstrip("/")
        proxy = _Running(
            [
                "proxy",
                "--upstream",
                upstream,
                "--cache-dir",
                str(tmp_path / "cache"),
                "--listen",
                "127.0.0.1:0",
                "--page-ttl",
                "0",
            ],
            tmp_path,
        )
        target = tmp_path / "site"
        pip = [
            tool("pip"),
            "install",
            "--target",
            str(target),
            "-q",
            "--index-url",
            f"{proxy.url}simple/",
        ]
        run([*pip, "cli-e2e"])
        assert _installed_version(target) == "1.0"
        _twine(server.url, token, releases[1].wheel)
        run([*pip, "--upgrade", "cli-e2e"])
        assert _installed_version(target) == "1.1"

        # warm a second cache from a requirements file, without serving
        req = tmp_path / "requirements.txt"
        req.write_text("# pinned\ncli-e2e==1.1\n")
        warmed = subprocess.run(
            _cli(
                "proxy",
                "warm",
                "-r",
                str(req),
                "--upstream",
                upstream,
                "--cache-dir",
                str(tmp_path / "cache2"),
            ),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert warmed.returncode == 0, warmed.stderr
        assert "warmed 1 files" in warmed.stdout and warmed.stdout.count("\n") == 1
        assert any((tmp_path / "cache2").rglob(releases[1].wheel.name))
    finally:
        proxy_status = None if proxy is None else proxy.stop()
        assert server.stop() == 0
    assert proxy_status == 0
    # the upgrade came over the upstream link as a delta (the line printed at stop)
    assert "proxy stopped" in proxy.rest and "1 deltas" in proxy.rest, proxy.rest


def test_proxy_warm_failure_is_one_line(tmp_path, capsys):
    """An upstream nobody listens on: the report line, then one error line, exit 2."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    req = tmp_path / "req.txt"
    req.write_text("nothing-here==1.0\n")
    argv = [
        "proxy",
        "warm",
        "-r",
        str(req),
        "--upstream",
        f"http://127.0.0.1:{port}",
        "--cache-dir",
        str(tmp_path / "c"),
    ]
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("registry-core proxy warm: error: "), err


@pytest.mark.parametrize(
    ("argv", "command", "says"),
    [
        (["serve", "{dir}", "--plain-http", "--host", "0.0.0.0"], "serve", "loopback"),
        (["serve", "{dir}/missing", "--plain-http"], "serve", "not a directory"),
        (
            [
                "proxy",
                "--upstream",
                "https://pypi.org",
                "--cache-dir",
                "{dir}",
                "--listen",
                "0.0.0.0:3141",
            ],
            "proxy",
            "loopback",
        ),
        (["proxy", "--cache-dir", "{dir}"], "proxy", "--upstream"),
        (["proxy", "--upstream", "ftp://example.org", "--cache-dir", "{dir}"], "proxy", "http"),
        (
            [
                "proxy",
                "--upstream",
                "https://pypi.org",
                "--cache-dir",
                "{dir}",
                "--certfile",
                "{dir}/c.pem",
            ],
            "proxy",
            "--keyfile",
        ),
        (
            ["proxy", "warm", "-r", "{dir}/r.txt", "--cache-dir", "{dir}"],
            "proxy warm",
            "--upstream",
        ),
    ],
)
def test_refusals_are_one_line_before_anything_listens(tmp_path, capsys, argv, command, says):
    argv = [a.replace("{dir}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "serving on" not in captured.out
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"registry-core {command}: error: "), err
    assert says in err[0]


def test_serve_and_proxy_over_tls(tmp_path):
    """With a certificate, both print https URLs and answer over TLS (the upload URL too)."""
    import ssl
    import urllib.request

    from registry_core.server import make_self_signed

    cert, key = make_self_signed(["127.0.0.1"], tmp_path)
    index_dir = tmp_path / "index"
    index_dir.mkdir()
    server = _Running(
        [
            "serve",
            str(index_dir),
            "--certfile",
            cert,
            "--keyfile",
            key,
            "--port",
            "0",
            "--no-http3",
        ],
        tmp_path,
    )
    proxy = None
    try:
        assert server.url.startswith("https://127.0.0.1:")
        assert f"uploads {server.url}legacy/" in server.line
        ctx = ssl.create_default_context(cafile=cert)
        with urllib.request.urlopen(f"{server.url}simple/", context=ctx, timeout=30) as r:
            assert r.status == 200
        proxy = _Running(
            [
                "proxy",
                "--upstream",
                server.url,
                "--cache-dir",
                str(tmp_path / "cache"),
                "--cafile",
                cert,
                "--certfile",
                cert,
                "--keyfile",
                key,
                "--listen",
                "127.0.0.1:0",
            ],
            tmp_path,
        )
        assert proxy.url.startswith("https://127.0.0.1:")
        with urllib.request.urlopen(f"{proxy.url}simple/", context=ctx, timeout=30) as r:
            assert r.status == 200
    finally:
        if proxy is not None:
            assert proxy.stop() == 0
        assert server.stop() == 0
