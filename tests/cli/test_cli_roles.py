"""``registry-core role grant | revoke | list`` on a v1 directory and on a tenant of a v2
config: the local operator (file access) may grant anything; ``--as-token-file`` acts as that
token's principal through the one decision point (role.grant on the resource, then
``grantable``: an owner grants up to owner, never admin; an uploader nothing), denials audited;
config bindings are listed but not revocable here; bad input is one line and changes nothing.

The lead wires ``add_role_parser`` into ``registry-core``; until then (and always, to test the
module on its own) :func:`role` runs it through a parser of its own with the same one-line
error convention as ``main``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _mcp_harness import V2_CONFIG
from registry_core.auth import Resource, Scope, TenantStore
from registry_core.cli import build_parser
from registry_core.cli._main import _one_line_errors
from registry_core.cli._roles import AS_TOKEN_ENV, add_role_parser
from registry_core.index import Index


def role(*argv: str) -> int:
    """``registry-core role ARGV`` (through ``main`` once it is wired there)."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "role" not in sub.choices:
        add_role_parser(sub)
    try:
        args = parser.parse_args(["role", *argv])
        with _one_line_errors(args.command_name):
            return int(args.func(args) or 0)
    except SystemExit as exc:
        return int(exc.code or 0)


def _one_error_line(capsys, command: str) -> str:
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"registry-core {command}: error: "), err
    assert "Traceback" not in err[0]
    return err[0]


def _listed(capsys, *argv: str) -> list[dict[str, str]]:
    assert role("list", *argv, "--json") == 0
    return json.loads(capsys.readouterr().out)


def _stored(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [r for r in rows if r["source"] == "stored"]


@pytest.fixture()
def v1(tmp_path):
    Index(tmp_path).close()
    return str(tmp_path)


def test_grant_list_revoke_on_a_v1_directory(v1, capsys):
    assert role("grant", v1, "user:alice", "uploader", "main/Foo_Bar") == 0
    assert (
        capsys.readouterr().out.strip().startswith("granted uploader on main/foo-bar to user:alice")
    )
    assert role("grant", v1, "group:devs", "reader") == 0  # default resource: the tenant
    capsys.readouterr()
    rows = _listed(capsys, v1)
    assert [(r["subject"], r["role"], r["resource"], r["source"]) for r in rows] == [
        ("group:devs", "reader", "*", "stored"),
        ("*", "reader", "main", "config"),  # what serve DIR means: everyone reads
        ("user:alice", "uploader", "main/foo-bar", "stored"),
    ]
    assert all(r["granted_by"] == "local" for r in _stored(rows))
    assert [r["subject"] for r in _listed(capsys, v1, "--subject", "user:alice")] == ["user:alice"]
    with Index(v1) as index:
        policy = index.auth.policy()
        from registry_core.auth import Principal

        alice = Principal("default", "user:alice", "session")
        assert policy.roles(alice, Resource("default", "main", "foo-bar")) == {"uploader"}
    assert role("list", v1) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["SUBJECT", "ROLE", "RESOURCE", "SOURCE"]

    assert role("revoke", v1, "user:alice", "uploader", "main/foo-bar") == 0
    assert "revoked uploader" in capsys.readouterr().out
    assert role("revoke", v1, "user:alice", "uploader", "main/foo-bar") == 2
    assert "no uploader binding" in _one_error_line(capsys, "role revoke")
    assert [r["subject"] for r in _stored(_listed(capsys, v1))] == ["group:devs"]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["user:alice", "emperor"], "unknown role"),
        (["alice", "reader"], "kind:name"),
        (["user:alice", "reader", "other"], "no index 'other'"),
        (["user:alice", "reader", "main/a/b"], "resource"),
        (["user:alice"], "SUBJECT ROLE"),
        (["user:alice", "reader", "*", "extra"], "SUBJECT ROLE"),
        (["user:a lice", "reader"], "subject"),
    ],
)
def test_bad_grants_are_one_line_and_change_nothing(v1, capsys, argv, needle):
    assert role("grant", v1, *argv) == 2
    assert needle in _one_error_line(capsys, "role grant")
    assert _stored(_listed(capsys, v1)) == []


def test_a_missing_directory_is_never_created(tmp_path, capsys):
    missing = tmp_path / "nope"
    assert role("grant", str(missing), "user:alice", "reader") == 2
    assert "not a directory" in _one_error_line(capsys, "role grant")
    assert not missing.exists()


def _token_file(tmp_path: Path, store: TenantStore, owner: str | None, scopes: str) -> str:
    raw, _ = store.create_token(owner=owner, scopes=[Scope.parse(store.tenant, scopes)])
    path = tmp_path / f"token-{abs(hash((owner, scopes)))}"
    path.write_text(raw + "\n", encoding="utf-8")
    return str(path)


def test_as_token_grants_only_what_its_roles_allow(v1, tmp_path, capsys, caplog, monkeypatch):
    with Index(v1) as index:
        store = index.auth
        store.grant("user:olga", "owner", Resource("default", "main"))
        store.grant("user:uli", "uploader", Resource("default"))
        olga = _token_file(tmp_path, store, "user:olga", "role.grant,read:main")
        olga_read_only = _token_file(tmp_path, store, "user:olga", "read:main")
        uli = _token_file(tmp_path, store, "user:uli", "role.grant,upload:*")
        loose = _token_file(tmp_path, store, None, "role.grant:*")  # standalone: scopes only
    # an owner of the index grants maintainer (and owner) on it...
    assert role("grant", v1, "user:max", "maintainer", "main", "--as-token-file", olga) == 0
    assert "granted maintainer on main to user:max" in capsys.readouterr().out
    assert role("grant", v1, "user:ow", "owner", "main/foo", "--as-token-file", olga) == 0
    capsys.readouterr()
    caplog.set_level(logging.INFO, logger="registry_core.audit")
    for argv, token, needle in (
        (["user:max", "admin", "main"], olga, "may not grant admin"),  # owner: never admin
        (["user:max", "auditor", "main"], olga, "may not grant auditor"),
        (["user:max", "reader", "*"], olga, "may not role.grant on *"),  # above her binding
        (["user:max", "reader", "main"], olga_read_only, "outside"),  # scope lacks role.grant
        (["user:max", "reader", "main"], uli, "may not role.grant"),  # uploader: no grants
        (["user:max", "reader", "main"], loose, "may not grant"),  # no roles of its own
    ):
        assert role("grant", v1, *argv, "--as-token-file", token) == 2
        line = _one_error_line(capsys, "role grant")
        assert needle in line or (needle == "outside" and "may not role.grant" in line), line
        assert "rc-" not in line
    denied = [r.getMessage() for r in caplog.records if "authz.denied" in r.getMessage()]
    assert len(denied) >= 3 and all("rc-" not in d for d in denied)
    # an owner may revoke what she could grant; the env var names the token too
    monkeypatch.setenv(AS_TOKEN_ENV, Path(olga).read_text().strip())
    assert role("revoke", v1, "user:max", "maintainer", "main") == 0
    capsys.readouterr()
    assert role("list", v1) == 2  # as olga: listing every binding needs rights on the tenant
    assert "may not audit.read on *" in _one_error_line(capsys, "role list")
    monkeypatch.delenv(AS_TOKEN_ENV)
    assert {(r["subject"], r["granted_by"]) for r in _listed(capsys, v1)} >= {
        ("user:ow", "user:olga"),
        ("user:olga", ""),  # granted through the store's API above
    }
    monkeypatch.setenv(AS_TOKEN_ENV, "rc-0123456789abcdef-" + "z" * 43)
    assert role("grant", v1, "user:max", "reader", "main") == 2
    assert "zzzz" not in _one_error_line(capsys, "role grant")
    monkeypatch.delenv(AS_TOKEN_ENV)
    (tmp_path / "empty").write_text("\n")
    assert role("grant", v1, "user:max", "reader", "--as-token-file", str(tmp_path / "empty")) == 2
    assert "is empty" in _one_error_line(capsys, "role grant")


def test_list_as_a_token_needs_grant_or_audit_rights(v1, tmp_path, capsys):
    with Index(v1) as index:
        store = index.auth
        store.grant("user:aud", "auditor", Resource("default"))
        store.grant("user:rdr", "reader", Resource("default"))
        aud = _token_file(tmp_path, store, "user:aud", "audit.read:*")
        rdr = _token_file(tmp_path, store, "user:rdr", "read:*")
    assert len(_stored(_listed(capsys, v1, "--as-token-file", aud))) == 2
    assert role("list", v1, "--as-token-file", rdr) == 2
    assert "may not audit.read" in _one_error_line(capsys, "role list")


def test_v2_tenants_keep_their_own_roles(tmp_path, capsys):
    root = tmp_path / "root"
    root.mkdir()
    config = tmp_path / "registry.toml"
    config.write_text(V2_CONFIG.format(root=root.as_posix()), encoding="utf-8")
    acme = ["--config", str(config), "--tenant", "acme"]
    globex = ["--config", str(config), "--tenant", "globex"]
    rows = _listed(capsys, *acme)
    assert {(r["subject"], r["role"], r["resource"], r["source"]) for r in rows} == {
        ("user:alice", "owner", "*", "config"),
        ("group:engineering", "maintainer", "main", "config"),
    }
    assert role("grant", *acme, "user:bob", "uploader", "main/foo") == 0
    assert "acme" in capsys.readouterr().out
    assert ("user:bob", "stored") in {(r["subject"], r["source"]) for r in _listed(capsys, *acme)}
    assert "user:bob" not in {r["subject"] for r in _listed(capsys, *globex)}
    with TenantStore(
        root / "globex" / ".registry-core" / "tenant.sqlite3", tenant="globex"
    ) as store:
        assert store.bindings() == []
    # a config binding is the config file's to change
    assert role("revoke", *acme, "user:alice", "owner", "*") == 2
    assert "config file" in _one_error_line(capsys, "role revoke")
    # alice (owner@* from the config) grants with her token; globex's owner cannot in acme
    with TenantStore(root / "acme" / ".registry-core" / "tenant.sqlite3", tenant="acme") as store:
        alice = _token_file(tmp_path, store, "user:alice", "role.grant:*")
    with TenantStore(
        root / "globex" / ".registry-core" / "tenant.sqlite3", tenant="globex"
    ) as store:
        gina = _token_file(tmp_path, store, "user:gina", "role.grant:*")
    assert role("grant", *acme, "user:carl", "owner", "main", "--as-token-file", alice) == 0
    capsys.readouterr()
    assert role("grant", *acme, "user:carl", "reader", "--as-token-file", gina) == 2
    assert "unknown API token" in _one_error_line(capsys, "role grant")
    assert role("grant", *acme, "user:x", "reader", "nope") == 2
    assert "no index 'nope'" in _one_error_line(capsys, "role grant")
