"""`registry-core serve --config FILE`: every tenant of a schema-v2 file from one command, run
as a user runs it (a subprocess on loopback); the command line it refuses, in one line."""

from __future__ import annotations

import httpx
import pytest

from _cli_run import Running
from registry_core.auth import Scope, TenantStore
from registry_core.cli._main import main

CONFIG = """\
version = 2
[server]
host = "127.0.0.1"
port = 0
tls = "plain-http"
[storage]
directory = "{root}"

[tenants.acme]
domains = ["acme.test"]
[tenants.acme.roles]
"user:alice" = ["owner@*"]

[tenants.globex]
public = true
"""


def _write(tmp_path, text=CONFIG):
    path = tmp_path / "registry.toml"
    path.write_text(text.format(root=tmp_path / "root"))
    return path


def test_serve_config_serves_every_tenant(tmp_path):
    path = _write(tmp_path)
    # a token made before the server starts, in acme's own store (what `token create` writes)
    with TenantStore(
        tmp_path / "root" / "acme" / ".registry-core" / "tenant.sqlite3", tenant="acme"
    ) as store:
        raw, _ = store.create_token(owner="user:alice", scopes=[Scope.parse("acme", "read:*")])
    server = Running(["serve", "--config", str(path)], cwd=tmp_path)
    try:
        assert "2 tenant(s)" in server.line and "acme (hosts acme.test)" in server.line
        assert raw not in server.line
        with httpx.Client(base_url=server.url, timeout=30) as c:
            who = c.get("/t/acme/_/whoami", headers={"authorization": f"Bearer {raw}"})
            assert who.status_code == 200 and who.json()["subject"] == "user:alice"
            by_host = c.get(
                "/_/whoami", headers={"host": "acme.test", "authorization": f"Bearer {raw}"}
            )
            assert by_host.json()["tenant"] == "acme"
            assert c.get("/t/acme/main/simple/").content == b"404 Not Found\n"
            assert c.get("/t/globex/main/simple/").status_code == 200  # public
            assert c.get("/t/nope/main/simple/").content == b"404 Not Found\n"
    finally:
        assert server.stop() == 0
    assert (tmp_path / "root" / "globex" / "main").is_dir()


@pytest.mark.parametrize(
    "args, message",
    [
        (["serve", "DIR", "--config", "FILE"], "give DIR or --config FILE, not both"),
        (["serve", "--config", "FILE", "--port", "1"], "--port is set in the configuration"),
        (["serve", "--config", "FILE", "--plain-http"], "--plain-http is set in the config"),
        (["serve"], "DIR or --config FILE is required"),
        (["serve", "DIR"], "one of --certfile, --self-signed or --plain-http is required"),
    ],
)
def test_command_lines_refused_in_one_line(tmp_path, capsys, args, message):
    path = _write(tmp_path)
    (tmp_path / "DIR").mkdir()
    args = [str(path) if a == "FILE" else str(tmp_path / "DIR") if a == "DIR" else a for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_bad_config_file_names_its_line_and_key(tmp_path, capsys):
    path = _write(tmp_path, CONFIG.replace('plan = "free"\n', "") + 'plan = "platinum"\n')
    assert main(["serve", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{path}:" in err and "tenants.globex.plan" in err and "platinum" in err


def test_plain_http_config_on_a_public_address_is_refused(tmp_path, capsys):
    path = _write(tmp_path, CONFIG.replace('host = "127.0.0.1"', 'host = "0.0.0.0"'))
    assert main(["serve", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "plain-http" in err and "0.0.0.0" in err
    assert not (tmp_path / "root").exists()  # refused before anything was created
