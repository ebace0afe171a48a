"""``registry-core index yank|unyank``: the PEP 592 flag set from the command line."""

from __future__ import annotations

import pytest

from _packages import build_project
from registry_core.cli import main
from registry_core.index import Index


@pytest.fixture
def registry(tmp_path):
    built = build_project(tmp_path / "src", "yanky", "1.0", payload_kb=4)
    root = tmp_path / "reg"
    root.mkdir()
    index = Index(root)
    raw, _ = index.create_token()
    with open(built.wheel, "rb") as f:
        index.upload(built.wheel.name, f, token=raw)
    index.close()
    return root, built.wheel.name


def test_yank_then_unyank(registry, capsys) -> None:
    root, name = registry
    assert main(["index", "yank", str(root), name, "--reason", "broken build"]) == 0
    assert "yanked (broken build)" in capsys.readouterr().out
    index = Index(root)
    try:
        record = index.file(name)
        assert record is not None and record.yanked == "broken build"
    finally:
        index.close()
    assert main(["index", "unyank", str(root), name]) == 0
    index = Index(root)
    try:
        record = index.file(name)
        assert record is not None and record.yanked is None
    finally:
        index.close()


def test_unknown_file_is_one_line_and_exit_2(registry, capsys) -> None:
    root, _ = registry
    assert main(["index", "yank", str(root), "nope-1.0.tar.gz"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope-1.0.tar.gz" in err[0]


def test_yank_needs_an_existing_directory(tmp_path, capsys) -> None:
    assert main(["index", "yank", str(tmp_path / "missing"), "x-1.0.tar.gz"]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert not (tmp_path / "missing").exists()


def test_yank_is_the_local_operators_and_audited(registry, capsys, caplog) -> None:
    """The command has file access: it acts as the local operator (allowed), and the index
    audits the yank under that subject."""
    import json
    import logging

    root, name = registry
    caplog.set_level(logging.INFO, logger="registry_core.audit")
    assert main(["index", "yank", str(root), name]) == 0
    assert main(["index", "unyank", str(root), name]) == 0
    events = [json.loads(r.getMessage()) for r in caplog.records if r.name == "registry_core.audit"]
    kinds = [
        (e["kind"], e["subject"], e["outcome"]) for e in events if e["kind"] in ("yank", "unyank")
    ]
    assert kinds == [("yank", "local", "ok"), ("unyank", "local", "ok")], events
