"""``registry-core token create | list | revoke`` with least-privilege scopes, owners and expiry,
on a v1 directory and on a tenant of a v2 config (``--config FILE --tenant NAME``): what is
stored where (the tenant's own store, nothing in the other tenant's), what the token may do
through the one decision point, and the one-line refusals that store nothing."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _mcp_harness import V2_CONFIG
from registry_core.auth import Principal, Resource, Scope, TenantStore, parse_token, require
from registry_core.cli import main
from registry_core.cli._index import open_target
from registry_core.cli._token import format_duration, parse_duration
from registry_core.errors import InvalidArgumentError, PermissionDeniedError
from registry_core.index import Index


def _one_error_line(capsys, command: str) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"registry-core {command}: error: "), err
    assert "Traceback" not in err[0]
    return err[0]


def _create(capsys, *argv: str) -> str:
    assert main(["token", "create", *argv]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    return out.strip()


@pytest.fixture()
def v2(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    config = tmp_path / "registry.toml"
    config.write_text(V2_CONFIG.format(root=root.as_posix()), encoding="utf-8")
    return root, str(config)


def _store(root: Path, tenant: str) -> TenantStore:
    return TenantStore(root / tenant / ".registry-core" / "tenant.sqlite3", tenant=tenant)


def test_scopes_owner_and_expiry_on_a_v1_directory(tmp_path, capsys):
    raw = _create(
        capsys,
        str(tmp_path),
        "--scope",
        "upload:main/foo",
        "--scope",
        "read:*",
        "--owner",
        "user:alice",
        "--expires",
        "12h",
        "--description",
        "ci job",
    )
    token_id, secret = parse_token(raw)
    before = time.time_ns()
    with Index(tmp_path) as index:
        (record,) = index.tokens()
        assert (record.owner, record.description) == ("user:alice", "ci job")
        assert sorted(str(s) for s in record.scopes) == ["read:*", "upload:main/foo"]
        assert record.expires_ns is not None
        assert 11.9 * 3600 < (record.expires_ns - before) / 1e9 <= 12 * 3600
        p = index.auth.authenticate_token(raw)
        assert (p.subject, p.standalone, p.tenant) == ("user:alice", False, "default")
        # alice holds no role yet: her token can do nothing; an uploader role on the index,
        # narrowed by the scopes: upload to foo, not to bar
        with pytest.raises(PermissionDeniedError):
            index.require(p, "upload", "foo")
        index.auth.grant("user:alice", "uploader", Resource("default", "main"))
        index.require(p, "upload", "foo")
        index.require(p, "read", "bar")
        with pytest.raises(PermissionDeniedError):
            index.require(p, "upload", "bar")

    assert main(["token", "list", str(tmp_path), "--json"]) == 0
    listing = capsys.readouterr().out
    (row,) = json.loads(listing)
    assert row["id"] == token_id and row["owner"] == "user:alice"
    assert sorted(row["scopes"]) == ["read:*", "upload:main/foo"]
    assert row["expires"] != "never" and row["revoked"] == "-"
    assert secret not in listing and raw not in listing
    assert main(["token", "list", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "user:alice" in table and "upload:main/foo" in table and secret not in table


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--expires", "soon"], "--expires"),
        (["--expires", "0d"], "--expires"),
        (["--expires", "99999w"], "ten years"),
        (["--scope", "upload"], "ACTION"),
        (["--scope", "fly:main"], "unknown action"),
        (["--scope", "upload:other/foo"], "no index 'other'"),
        (["--project", "not a name!"], "not a valid project name"),
        (["--index", "other"], "no index 'other'"),
        (["--owner", "alice"], "kind:name"),
        (["--owner", "group:devs"], "one subject"),
        (["--owner", "*"], "one subject"),
        (["--tenant", "acme"], "--tenant goes with --config"),
    ],
)
def test_bad_options_are_one_line_and_store_nothing(tmp_path, capsys, argv, needle):
    assert main(["token", "create", str(tmp_path), *argv]) == 2
    assert needle in _one_error_line(capsys, "token create")
    with Index(tmp_path) as index:
        assert index.tokens() == []


def test_no_directory_and_no_config(capsys):
    assert main(["token", "create"]) == 2
    assert "--config" in _one_error_line(capsys, "token create")
    assert main(["token", "revoke", "only-one-word-means-no-token-id"]) == 2
    assert "TOKEN_ID" in _one_error_line(capsys, "token revoke")


def test_v2_tenant_tokens_live_in_that_tenant_only(v2, capsys):
    root, config = v2
    raw = _create(capsys, "--config", config, "--tenant", "acme", "--project", "foo")
    token_id, secret = parse_token(raw)
    with _store(root, "acme") as acme, _store(root, "globex") as globex:
        (record,) = acme.tokens()
        assert record.token_id == token_id
        assert [str(s) for s in record.scopes] == ["read,upload,create:main/foo"]
        # the tenant's token_max_ttl_s (30 days) is the default lifetime
        assert record.expires_ns is not None
        assert 29.9 < (record.expires_ns - record.created_ns) / 86400e9 <= 30
        p = acme.authenticate_token(raw)
        assert p.tenant == "acme" and p.standalone
        assert globex.tokens() == []
        with pytest.raises(Exception, match="unknown API token"):
            globex.authenticate_token(raw)
    state = b"".join(p.read_bytes() for p in root.rglob("*.sqlite3*"))
    assert secret.encode() not in state
    assert not (root / "globex" / "main").exists()  # nothing created for the other tenant

    assert main(["token", "list", "--config", config, "--tenant", "globex"]) == 0
    assert token_id not in capsys.readouterr().out
    assert main(["token", "revoke", "--config", config, "--tenant", "globex", token_id]) == 2
    assert token_id in _one_error_line(capsys, "token revoke")
    assert main(["token", "revoke", "--config", config, "--tenant", "acme", token_id]) == 0
    assert capsys.readouterr().out.strip() == f"revoked {token_id}"
    with _store(root, "acme") as acme:
        assert acme.token(token_id).revoked_ns is not None


def test_v2_refusals(v2, capsys):
    root, config = v2
    for argv, needle in (
        (["--tenant", "acme", "--expires", "never"], "at most 30d"),
        (["--tenant", "acme", "--expires", "31d"], "at most 30d"),
        (["--tenant", "initech"], "no tenant 'initech'"),
        ([], "--config needs --tenant"),
        (["--tenant", "acme", str(root)], "expected --config FILE --tenant NAME"),
    ):
        assert main(["token", "create", "--config", config, *argv]) == 2
        assert needle in _one_error_line(capsys, "token create")
    with _store(root, "acme") as acme:
        assert acme.tokens() == []
    # globex has no token bound: never and long lifetimes are fine there
    raw = _create(capsys, "--config", config, "--tenant", "globex", "--expires", "never")
    with _store(root, "globex") as globex:
        assert globex.authenticate_token(raw).expires_ns is None
    bad = Path(config).with_name("bad.toml")
    bad.write_text("version = 2\n[tenants.acme]\n[storage]\ndirectory = 7\n", encoding="utf-8")
    assert main(["token", "list", "--config", str(bad), "--tenant", "acme"]) == 2
    line = _one_error_line(capsys, "token list")
    assert "bad.toml" in line and "directory" in line


def test_v2_token_for_an_owner_uses_the_config_roles(v2, capsys):
    """alice is owner@* in the config file: her token (narrowed to upload on main) may upload
    through the decision point with the store's policy (config bindings included)."""
    root, config = v2
    raw = _create(
        capsys,
        "--config",
        config,
        "--tenant",
        "acme",
        "--owner",
        "user:alice",
        "--scope",
        "upload:main",
    )
    target = open_target(argparse.Namespace(config=config, tenant="acme", directory=None))
    with target:
        p = target.store.authenticate_token(raw)
        require(p, "upload", Resource("acme", "main", "foo"), target.store.policy())
        with pytest.raises(PermissionDeniedError):  # owner may yank, the token's scope may not
            require(p, "yank", Resource("acme", "main", "foo"), target.store.policy())
        # the local operator (the command itself) is the tenant's admin
        require(Principal.local("acme"), "index.admin", Resource("acme"), target.store.policy())


@given(st.integers(min_value=1, max_value=10 * 365), st.sampled_from(["s", "m", "h", "d", "w"]))
def test_durations_round_trip(n, unit):
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit] * n
    if seconds > 10 * 366 * 86400:
        with pytest.raises(InvalidArgumentError):
            parse_duration(f"{n}{unit}")
        return
    assert parse_duration(f"{n}{unit}") == seconds
    assert parse_duration(f" {n}{unit.upper()} ") == seconds
    assert parse_duration(format_duration(seconds)) == seconds
    assert format_duration(parse_duration(format_duration(seconds))) == format_duration(seconds)


@given(st.text(max_size=12))
def test_durations_reject_junk_clearly(text):
    try:
        got = parse_duration(text)
    except InvalidArgumentError as exc:
        assert "--expires" in str(exc)
    else:
        assert got is None or got > 0
    assert parse_duration("never") is None and format_duration(None) == "never"


def _token_file(tmp_path: Path, raw: str, name: str) -> str:
    path = tmp_path / f"{name}.token"
    path.write_text(raw + "\n", encoding="utf-8")
    return str(path)


def test_as_token_creates_only_its_own_narrower_tokens(tmp_path, capsys):
    """An uploader's token (owner user:uma) mints a token of her own through token.create on
    every scope; another owner, a resource beyond her role, a standalone actor and a longer
    life than the acting token are refused; each refusal stores nothing."""
    directory = tmp_path / "idx"
    directory.mkdir()
    now = time.time_ns()
    with Index(directory) as index:
        index.auth.grant("user:uma", "uploader", Resource("default", "main", "foo"))
        uma, _ = index.auth.create_token(
            owner="user:uma",
            scopes=[Scope.parse("default", "token.create,read,upload:main")],
            expires_ns=now + 3600 * 10**9,
            now_ns=now,
        )
        loose, _ = index.auth.create_token(
            owner=None, scopes=[Scope.parse("default", "token.create:*")]
        )
    d = str(directory)
    acting = ["--as-token-file", _token_file(tmp_path, uma, "uma")]
    raw = _create(capsys, d, "--scope", "upload:main/foo", *acting)
    with Index(directory) as index:
        p = index.auth.authenticate_token(raw)
        assert (p.subject, p.standalone) == ("user:uma", False)
        assert p.expires_ns is not None and p.expires_ns <= now + 3600 * 10**9
        index.require(p, "upload", "foo")
        with pytest.raises(PermissionDeniedError):
            index.require(p, "upload", "bar")
        count = len(index.tokens())
    for argv, needle in (
        (["--scope", "upload:main/bar"], "may not token.create on main/bar"),
        (["--scope", "upload:*"], "may not token.create on *"),
        (["--scope", "upload:main/foo", "--owner", "user:other"], "for itself only"),
        (["--scope", "upload:main/foo", "--expires", "2h"], "longer than the acting token"),
        (["--scope", "upload:main/foo", "--expires", "never"], "longer than the acting token"),
    ):
        assert main(["token", "create", d, *argv, *acting]) == 2
        line = _one_error_line(capsys, "token create")
        assert needle in line and uma not in line, line
    loose_file = _token_file(tmp_path, loose, "loose")
    assert main(["token", "create", d, "--as-token-file", loose_file]) == 2
    assert "without an owner" in _one_error_line(capsys, "token create")
    with Index(directory) as index:
        assert len(index.tokens()) == count

    # list: her own tokens only; revoke: her own without token.revoke, others' refused
    assert main(["token", "list", d, "--json", *acting]) == 0
    mine = json.loads(capsys.readouterr().out)
    assert {r["owner"] for r in mine} == {"user:uma"} and len(mine) == 2
    with Index(directory) as index:
        other = next(t.token_id for t in index.tokens() if t.owner is None)
    assert main(["token", "revoke", d, other, *acting]) == 2
    assert "may not token.revoke" in _one_error_line(capsys, "token revoke")
    own = parse_token(raw)[0]
    assert main(["token", "revoke", d, own, *acting]) == 0
    assert capsys.readouterr().out.strip() == f"revoked {own}"
    with Index(directory) as index:
        assert index.auth.token(own).revoked_ns is not None
        assert index.auth.token(other).revoked_ns is None
