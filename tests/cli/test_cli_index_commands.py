"""``registry-core token`` (a v1 directory: the old usage) and ``registry-core index rebuild``,
run in-process with ``main``: what they print, what they store, and their one-line errors.
Scopes, owners, expiry and v2 tenants: tests/cli/test_cli_tokens.py."""

from __future__ import annotations

import shutil

import pytest
from hypothesis import given
from hypothesis import strategies as st

from _packages import build_project
from registry_core.auth import parse_token
from registry_core.cli import main
from registry_core.cli._proxy import parse_listen, parse_size
from registry_core.errors import AuthenticationError, PermissionDeniedError
from registry_core.index import Index


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("built")
    return [build_project(root, "cli-demo", v, payload_kb=8) for v in ("1.0", "1.1")]


def _one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"registry-core {command}: error: "), err
    assert "Traceback" not in err[0]
    return err[0]


def test_token_create_prints_only_the_token_and_stores_only_its_hash(tmp_path, capsys):
    args = ["token", "create", str(tmp_path), "--project", "Cli_Demo", "--description", "ci"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    raw = out.strip()
    token_id, secret = parse_token(raw)
    state = tmp_path / ".registry-core"
    db = b"".join(p.read_bytes() for p in state.glob("*.sqlite3*"))
    assert secret.encode() not in db and raw.encode() not in db
    with Index(tmp_path) as index:
        (record,) = index.tokens()
        assert record.token_id == token_id and record.scope == "cli-demo"
        assert record.description == "ci" and record.owner is None
        assert [str(s) for s in record.scopes] == ["read,upload,create:main/cli-demo"]
        principal = index.authenticate(raw, "cli-demo")
        assert principal.token_id == token_id
        with pytest.raises(PermissionDeniedError):
            index.authenticate(raw, "other-project")


def test_token_list_shows_no_secret_and_revoke_ends_a_token(tmp_path, capsys):
    assert main(["token", "create", str(tmp_path), "--description", "whole index"]) == 0
    raw = capsys.readouterr().out.strip()
    token_id, secret = parse_token(raw)
    assert main(["token", "list", str(tmp_path)]) == 0
    listing = capsys.readouterr().out
    (row,) = [ln for ln in listing.splitlines() if ln.startswith(token_id)]
    # ID OWNER SCOPES CREATED EXPIRES REVOKED DESCRIPTION
    cells = row.split()
    assert cells[:3] == [token_id, "-", "read,upload,create:main"]
    assert cells[4:6] == ["never", "-"] and "whole index" in row
    with Index(tmp_path) as index:
        stored = index.tokens()[0].secret_sha256
    assert secret not in listing and stored not in listing

    assert main(["token", "revoke", str(tmp_path), token_id]) == 0
    assert capsys.readouterr().out.strip() == f"revoked {token_id}"
    assert main(["token", "list", str(tmp_path)]) == 0
    (row,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(token_id)]
    assert row.split()[5] != "-"  # the revocation time
    with Index(tmp_path) as index, pytest.raises(AuthenticationError):
        index.authenticate(raw, "anything")

    assert main(["token", "revoke", str(tmp_path), "0123456789abcdef"]) == 2
    assert "0123456789abcdef" in _one_error_line(capsys, "token revoke")


@pytest.mark.parametrize("verb", [["create"], ["list"], ["revoke", "0123456789abcdef"]])
def test_token_commands_refuse_a_missing_directory(tmp_path, capsys, verb):
    missing = tmp_path / "nope"
    argv = ["token", verb[0], str(missing), *verb[1:]]
    assert main(argv) == 2
    assert "not a directory" in _one_error_line(capsys, f"token {verb[0]}")
    assert not missing.exists()  # never created by a typo


def test_index_rebuild_counts_added_unchanged_removed(tmp_path, capsys, built):
    (tmp_path / "cli-demo").mkdir()
    for b in built:
        shutil.copy(b.wheel, tmp_path / "cli-demo" / b.wheel.name)
    (tmp_path / "cli-demo" / "notes.txt").write_text("not a distribution\n")
    assert main(["index", "rebuild", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "added 2" in out and "skipped 1" in out and "1 projects" in out
    assert main(["index", "rebuild", str(tmp_path)]) == 0
    assert "unchanged 2" in capsys.readouterr().out
    (tmp_path / "cli-demo" / built[0].wheel.name).unlink()
    assert main(["index", "rebuild", str(tmp_path)]) == 0
    assert "removed 1" in capsys.readouterr().out
    with Index(tmp_path) as index:
        assert [f.filename for f in index.files("cli-demo")] == [built[1].wheel.name]


def test_index_rebuild_names_rejected_files(tmp_path, capsys):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "broken-1.0-py3-none-any.whl").write_bytes(b"not a zip")
    assert main(["index", "rebuild", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "rejected 1" in out and "broken-1.0-py3-none-any.whl" in out


def test_usage_errors_are_one_line(capsys):
    for argv, command in (
        (["token"], "token"),
        (["index"], "index"),
        (["proxy", "--listen", "nowhere"], "proxy"),
        (["proxy", "--max-cache-bytes", "lots"], "proxy"),
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        line = _one_error_line(capsys, command)
        assert "--help" in line


@given(st.integers(min_value=1, max_value=1 << 50), st.sampled_from(["", "B", "KiB", "MB", "GiB"]))
def test_sizes_parse_to_bytes(n, unit):
    factor = {"": 1, "B": 1, "KiB": 1 << 10, "MB": 10**6, "GiB": 1 << 30}[unit]
    assert parse_size(f"{n}{unit}") == n * factor
    assert parse_size(f" {n} {unit.lower()} ") == n * factor


@given(st.integers(min_value=0, max_value=65535))
def test_listen_addresses_parse(port):
    assert parse_listen(f"127.0.0.1:{port}") == ("127.0.0.1", port)
    assert parse_listen(f"[::1]:{port}") == ("::1", port)
    assert parse_listen(f"localhost:{port}") == ("localhost", port)
