"""registry_core._util atomic writes: all or nothing, umask permissions."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry_core._util import AtomicFile, atomic_write
from registry_core._util._atomic import default_file_mode


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_write_gets_plain_open_permissions(tmp_path: Path, umask_022: None) -> None:
    target = tmp_path / "out.bin"
    atomic_write(target, b"data")
    assert target.read_bytes() == b"data"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # not mkstemp's 0600
    assert default_file_mode() == 0o644


def test_umask_is_honoured(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        atomic_write(tmp_path / "private", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "private").stat().st_mode) == 0o600


def test_explicit_mode_and_chunks_and_fsync(tmp_path: Path) -> None:
    target = tmp_path / "chunks"
    atomic_write(target, iter([b"a", b"b", b"c"]), fsync=True, mode=0o640)
    assert target.read_bytes() == b"abc"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_failure_leaves_target_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "keep"
    target.write_bytes(b"old")

    def chunks() -> Iterator[bytes]:
        yield b"new"
        raise RuntimeError("producer failed")

    with pytest.raises(RuntimeError):
        atomic_write(target, chunks())
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep"]


def test_atomic_file_context(tmp_path: Path) -> None:
    target = tmp_path / "ctx"
    with AtomicFile(target) as f:
        f.write(b"part")
        assert not target.exists()  # invisible until the block ends
    assert target.read_bytes() == b"part"


def test_relative_path_in_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    atomic_write("rel.bin", b"r")
    assert (tmp_path / "rel.bin").read_bytes() == b"r"


def test_no_overwrite_mode_refuses_an_existing_target(tmp_path) -> None:
    from registry_core._util import AtomicFile

    target = tmp_path / "t.bin"
    target.write_bytes(b"old")
    with pytest.raises(FileExistsError), AtomicFile(target, overwrite=False) as f:
        f.write(b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.bin"]  # temp removed
    fresh = tmp_path / "fresh.bin"
    with AtomicFile(fresh, overwrite=False, fsync=True) as f:
        f.write(b"new")
    assert fresh.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh.bin", "t.bin"]
