"""v1 -> v2: single_tenant (what serve DIR means) and from_serve_args (a serve command line),
pinned to the serve command's own parser so a new serve option cannot be dropped silently."""

from __future__ import annotations

import os

import pytest

from registry_core.config import (
    DEFAULT_TENANT,
    IndexConfig,
    ServerConfig,
    dump,
    from_serve_args,
    parse,
    single_tenant,
)
from registry_core.config._migrate import SERVE_DESTS, serve_parser
from registry_core.errors import ConfigError


def test_single_tenant_is_the_v1_layout(tmp_path):
    c = single_tenant(tmp_path, port=9000)
    assert c.default_tenant == DEFAULT_TENANT
    t = c.tenants[DEFAULT_TENANT]
    assert t.public and t.indexes == (IndexConfig("main", "", directory="."),)
    # no file moves: the tenant store and the index are DIR itself
    assert c.tenant_directory(DEFAULT_TENANT) == str(tmp_path)
    assert c.index_directory(DEFAULT_TENANT, "main") == str(tmp_path)
    assert c.server.port == 9000 and c.server.tls == "self-signed"
    assert parse(dump(c)) == c


def test_single_tenant_validates_like_a_file():
    with pytest.raises(ConfigError, match="--port: must be between 0 and 65535"):
        single_tenant("d", port=70000)
    with pytest.raises(ConfigError, match="unknown server option"):
        single_tenant("d", colour="blue")
    with pytest.raises(ConfigError, match="refused on 0.0.0.0"):
        single_tenant("d", host="0.0.0.0", tls="plain-http")


def test_from_serve_args_maps_every_option(tmp_path):
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    c = from_serve_args(
        [
            "registry-core",
            "serve",
            str(tmp_path),
            "--host",
            "0.0.0.0",
            "--port",
            "8444",
            "--certfile",
            str(cert),
            "--keyfile",
            str(key),
            "--sign",
            "--no-http3",
            "--max-connections",
            "10",
            "--max-connections-per-ip",
            "2",
            "--read-timeout",
            "off",
            "--write-timeout",
            "5",
            "--max-requests-per-ip",
            "3",
        ]
    )
    assert c.server == ServerConfig(
        host="0.0.0.0",
        port=8444,
        tls="files",
        certfile=str(cert),
        keyfile=str(key),
        sign=True,
        http3=False,
        max_connections=10,
        max_connections_per_ip=2,
        read_timeout=None,
        write_timeout=5.0,
        max_requests_per_ip=3,
    )
    assert c.storage.directory == str(tmp_path)


def test_from_serve_args_makes_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    c = from_serve_args(["serve", "idx", "--plain-http"])
    assert c.storage.directory == os.path.join(str(tmp_path), "idx")
    assert c.server.tls == "plain-http"
    assert c.server.url() == "http://127.0.0.1:8443"


def test_defaults_match_the_serve_command():
    _, serve = serve_parser()
    defaults = ServerConfig()
    for dest in ("host", "port", "max_connections", "max_connections_per_ip"):
        assert serve.get_default(dest) == getattr(defaults, dest), dest
    for dest in ("read_timeout", "write_timeout", "max_requests_per_ip"):
        assert serve.get_default(dest) == getattr(defaults, dest), dest


def test_every_serve_option_is_understood():
    """A new serve option must be mapped here (or say it has no file equivalent)."""
    _, serve = serve_parser()
    dests = {a.dest for a in serve._actions if a.dest != "help"}
    assert dests <= SERVE_DESTS | {"func"}, dests - SERVE_DESTS


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "d", "--plain-http", "--host", "0.0.0.0"], "refused on 0.0.0.0"),
        (["serve", "d", "--certfile", "c.pem"], "--keyfile: missing"),
        (["serve", "d"], "one of --certfile, --self-signed or --plain-http"),
        (["serve", "--config", "c.toml"], "nothing to migrate"),
        (["serve", "--self-signed"], "names no DIR"),
        (["serve", "d", "--self-signed", "--port", "x"], "invalid int value"),
        (["serve", "d", "--self-signed", "--bogus"], "unrecognized arguments"),
        (["proxy", "d"], "expected a serve command line"),
        ([], "expected a serve command line"),
        (["serve", "--help"], "--help"),
    ],
)
def test_bad_serve_command_lines(argv, message):
    with pytest.raises(ConfigError) as caught:
        from_serve_args(argv)
    assert message in str(caught.value)
    assert str(caught.value).startswith("serve command line")


def test_from_serve_namespace_is_what_serve_builds(tmp_path):
    """serve's own v1 config (cli/_serve.py) and from_serve_namespace agree."""
    from registry_core.cli import _serve
    from registry_core.config import from_serve_namespace

    parser, _ = serve_parser()
    ns = parser.parse_args(["serve", str(tmp_path), "--plain-http", "--port", "0", "--no-http3"])
    ours = from_serve_namespace(ns)
    assert ours.storage.directory == str(tmp_path)
    assert ours.server.tls == "plain-http" and not ours.server.http3
    if hasattr(_serve, "_v1_config"):
        assert _serve._v1_config(ns) == ours
