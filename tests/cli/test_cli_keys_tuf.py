"""``registry-core keys rotate`` and ``keys phase`` on a registry that publishes TUF metadata:
they go through the repository, so what clients see changes with the keyring."""

from __future__ import annotations

import json

import pytest

from registry_core.cli import main

pytest.importorskip("tuf")  # the signing extra is in the test extra: CI always has it

PASSPHRASE = "a long passphrase for the keys cli tests"


@pytest.fixture
def registry(tmp_path, monkeypatch):
    monkeypatch.setenv("REGISTRY_CORE_KEY_PASSPHRASE", PASSPHRASE)
    from registry_core.signing import TufRepository

    TufRepository.for_registry(tmp_path, bins=0).init()
    return tmp_path


def _root(directory) -> dict:
    tuf = directory / ".registry-core" / "tuf"
    newest = max(tuf.glob("*.root.json"), key=lambda p: int(p.name.split(".")[0]))
    return json.loads(newest.read_text())


def test_rotate_a_tuf_role_publishes_a_new_root(registry, capsys) -> None:
    before = _root(registry)["signed"]
    assert main(["keys", "rotate", str(registry), "--role", "targets"]) == 0
    out = capsys.readouterr().out
    assert "re-signed with the new targets keys" in out
    after = _root(registry)["signed"]
    assert after["version"] == before["version"] + 1
    assert set(after["roles"]["targets"]["keyids"]).isdisjoint(before["roles"]["targets"]["keyids"])
    new_ids = {line.split()[0] for line in out.splitlines() if "  targets  " in line}
    assert new_ids == set(after["roles"]["targets"]["keyids"])


def test_phase_two_requires_both_signatures(registry, capsys) -> None:
    assert _root(registry)["signed"]["roles"]["snapshot"]["threshold"] == 1
    assert main(["keys", "phase", str(registry), "--role", "snapshot", "--phase", "2"]) == 0
    assert "phase 2" in capsys.readouterr().out
    role = _root(registry)["signed"]["roles"]["snapshot"]
    assert role["threshold"] == 2 and len(role["keyids"]) == 2


def test_phase_without_tuf_is_one_line_exit_2(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("REGISTRY_CORE_KEY_PASSPHRASE", PASSPHRASE)
    assert main(["keys", "phase", str(tmp_path), "--role", "root", "--phase", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "publishes no TUF metadata" in err[0]


def test_reopened_repository_keeps_its_published_phase(registry, capsys) -> None:
    """Each command reopens the repository with default settings: a rotation after phase 2
    must keep phase 2 (before, the reopened repository wrote its default, phase 1)."""
    assert main(["keys", "phase", str(registry), "--role", "root", "--phase", "2"]) == 0
    assert main(["keys", "rotate", str(registry), "--role", "root"]) == 0
    root = _root(registry)["signed"]
    assert root["roles"]["root"]["threshold"] == 2
    assert main(["keys", "rotate", str(registry), "--role", "patches"]) == 0
    assert _root(registry)["signed"]["roles"]["root"]["threshold"] == 2


def test_reopening_with_other_phases_is_refused(registry) -> None:
    from registry_core.errors import InvalidArgumentError
    from registry_core.signing import TufRepository

    assert main(["keys", "phase", str(registry), "--role", "timestamp", "--phase", "2"]) == 0
    with pytest.raises(InvalidArgumentError, match="set_phase"):
        TufRepository.for_registry(registry, phases={"timestamp": 1}).init()
