"""``registry-core config validate | show | migrate``: run_config directly, and through
``python -m registry_core.cli`` once the command is wired into the CLI."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest
from test_config_parse import EXAMPLE

from registry_core.cli._config import add_config_parser, run_config
from registry_core.config import load


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="registry-core")
    add_config_parser(parser.add_subparsers(dest="command"))
    return run_config(parser.parse_args(["config", *argv]))


@pytest.fixture
def example(tmp_path):
    path = tmp_path / "registry.toml"
    path.write_text(EXAMPLE)
    return path


def test_validate_ok(example, capsys):
    assert _run("validate", str(example)) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{example}: valid: version 2; 2 tenants: acme (2 indexes, plan team")
    assert out.count("\n") == 1


def test_validate_names_key_and_line_on_one_line(example, capsys):
    example.write_text(EXAMPLE.replace('plan = "team"', 'plan = "gold"'))
    assert _run("validate", str(example)) == 2
    err = capsys.readouterr().err
    assert err == (
        f"registry-core config validate: error: {example}:20: tenants.acme.plan: "
        "unknown plan 'gold' (plans: free, team, enterprise)\n"
    )


def test_validate_checks_flags_against_the_catalogue(example, capsys):
    example.write_text(EXAMPLE.replace("QUIC_TRANSPORT = true", "QUIC_TRANSPRT = true"))
    assert _run("validate", str(example)) == 2
    err = capsys.readouterr().err
    assert f"{example}:17: flags.QUIC_TRANSPRT: unknown feature flag" in err
    assert "did you mean 'QUIC_TRANSPORT'" in err
    example.write_text(EXAMPLE.replace("QUIC_TRANSPORT = true", 'QUIC_TRANSPORT = "sometimes"'))
    assert _run("validate", str(example)) == 2
    assert f"{example}:17: flags.QUIC_TRANSPORT:" in capsys.readouterr().err


def test_show_prints_the_normalized_file(example, capsys, monkeypatch):
    monkeypatch.setenv("ACME_OIDC_SECRET", "s3cret-value")
    assert _run("show", str(example)) == 0
    out = capsys.readouterr().out
    assert "s3cret-value" not in out and 'client_secret_env = "ACME_OIDC_SECRET"' in out
    shown = example.parent / "shown.toml"
    shown.write_text(out)
    assert load(shown) == load(example)


def test_show_missing_file(tmp_path, capsys):
    assert _run("show", str(tmp_path / "nope.toml")) == 2
    assert "cannot read" in capsys.readouterr().err


def test_migrate_writes_atomically_and_refuses_to_overwrite(tmp_path, capsys):
    index = tmp_path / "index"
    index.mkdir()
    out = tmp_path / "registry.toml"
    argv = ["migrate", "-o", str(out), "--", "serve", str(index), "--plain-http", "--port", "0"]
    assert _run(*argv) == 0
    assert (
        capsys.readouterr().out
        == f"{out}: written: version 2; 1 tenant: default (1 index, plan free)\n"
    )
    config = load(out)
    assert config.default_tenant == "default" and config.server.port == 0
    assert config.index_directory("default", "main") == str(index)
    before = out.read_bytes()
    assert _run(*argv[:3], "--", "serve", str(index), "--self-signed") == 2
    assert "exists; give --force" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert _run("migrate", "--force", *argv[1:3], "--", "serve", str(index), "--self-signed") == 0
    assert load(out).server.tls == "self-signed"
    assert sorted(os.listdir(tmp_path)) == ["index", "registry.toml"]  # no temporary left


def test_migrate_to_stdout_and_errors(tmp_path, capsys):
    assert _run("migrate", "--", "serve", str(tmp_path), "--self-signed") == 0
    text = capsys.readouterr().out
    assert text.startswith("# registry-core config migrate -- serve ")
    assert 'default_tenant = "default"' in text
    assert _run("migrate", "--", "serve", str(tmp_path / "missing"), "--self-signed") == 2
    assert "not a directory" in capsys.readouterr().err
    assert _run("migrate") == 2
    assert "after --" in capsys.readouterr().err
    assert _run("migrate", "--", "serve", str(tmp_path), "--plain-http", "--host", "0.0.0.0") == 2
    err = capsys.readouterr().err
    assert err.startswith("registry-core config migrate: error: serve command line: ")
    assert err.count("\n") == 1


def _wired() -> bool:
    from registry_core.cli._main import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return "config" in sub.choices


def test_through_the_registry_core_command(example, tmp_path):
    if not _wired():
        if os.environ.get("CI") == "true":
            pytest.fail("registry-core config is not wired into cli/_main.py")
        pytest.skip("registry-core config is not wired into cli/_main.py yet")
    cmd = [sys.executable, "-m", "registry_core.cli", "config"]
    ok = subprocess.run([*cmd, "validate", str(example)], capture_output=True, text=True)
    assert ok.returncode == 0 and "valid" in ok.stdout, ok.stderr
    example.write_text(EXAMPLE.replace("publc", "x").replace("public = true", "publc = true"))
    bad = subprocess.run([*cmd, "validate", str(example)], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip().endswith(
        "tenants.acme.indexes[1].publc: unknown key; did you mean 'public'?"
    )
    out = tmp_path / "m.toml"
    m = subprocess.run(
        [*cmd, "migrate", "-o", str(out), "--", "serve", str(tmp_path), "--self-signed"],
        capture_output=True,
        text=True,
    )
    assert m.returncode == 0, m.stderr
    assert load(out).storage.directory == str(tmp_path)
