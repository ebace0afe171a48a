"""diff_file / apply_file: output permissions follow the umask (not mkstemp's 0600), inputs
that change while read are refused, nothing is written on failure."""

from __future__ import annotations

import os
import stat

import pytest
from _delta_artifacts import module_source, wheel

from registry_core import DeltaAggregator
from registry_core.delta import _files
from registry_core.errors import InvalidArgumentError


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_written_files_get_umask_permissions(tmp_path, umask022):
    old = wheel("1.0")
    new = wheel("1.1", changed={3: module_source(3, "2")})
    (tmp_path / "a.whl").write_bytes(old)
    (tmp_path / "b.whl").write_bytes(new)
    agg = DeltaAggregator()
    agg.diff_file(tmp_path / "a.whl", tmp_path / "b.whl", tmp_path / "p.rcd")
    agg.apply_file(tmp_path / "a.whl", tmp_path / "p.rcd", tmp_path / "out.whl")
    assert (tmp_path / "out.whl").read_bytes() == new
    for name in ("p.rcd", "out.whl"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name


def test_written_files_follow_a_stricter_umask(tmp_path):
    (tmp_path / "a").write_bytes(b"a" * 5000)
    (tmp_path / "b").write_bytes(b"a" * 4000 + b"b" * 1000)
    old = os.umask(0o077)
    try:
        DeltaAggregator().diff_file(tmp_path / "a", tmp_path / "b", tmp_path / "p")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "p").stat().st_mode) == 0o600


def test_input_truncated_mid_read_is_refused(tmp_path, monkeypatch):
    data = os.urandom(3 * _files.READ_CHUNK // 2 + 10)
    (tmp_path / "a").write_bytes(data)
    (tmp_path / "b").write_bytes(data[:-5])
    seen = []

    def truncate(path, done):
        seen.append(done)
        if os.fspath(path).endswith("a") and len(seen) == 1:
            os.truncate(path, 100)

    monkeypatch.setattr(_files, "_after_chunk", truncate)
    with pytest.raises(InvalidArgumentError, match="changed while it was being read"):
        DeltaAggregator().diff_file(tmp_path / "a", tmp_path / "b", tmp_path / "p")
    assert not (tmp_path / "p").exists()
    assert sorted(os.listdir(tmp_path)) == ["a", "b"]


def test_input_grown_mid_read_is_refused(tmp_path, monkeypatch):
    (tmp_path / "a").write_bytes(b"x" * 1000)

    def grow(path, done):
        with open(path, "ab") as f:
            f.write(b"more")

    monkeypatch.setattr(_files, "_after_chunk", grow)
    with pytest.raises(InvalidArgumentError):
        _files.read_stable(tmp_path / "a")


def test_input_rewritten_during_diff_is_refused(tmp_path, monkeypatch):
    (tmp_path / "a").write_bytes(b"a" * 5000)
    (tmp_path / "b").write_bytes(b"a" * 4000 + b"b" * 1000)
    real = DeltaAggregator.diff

    def diff_then_rewrite(self, old, new):
        (tmp_path / "b").write_bytes(b"rewritten")
        return real(self, old, new)

    monkeypatch.setattr(DeltaAggregator, "diff", diff_then_rewrite)
    with pytest.raises(InvalidArgumentError, match="changed"):
        DeltaAggregator().diff_file(tmp_path / "a", tmp_path / "b", tmp_path / "p")
    assert not (tmp_path / "p").exists()


def test_empty_files(tmp_path):
    (tmp_path / "a").write_bytes(b"")
    (tmp_path / "b").write_bytes(b"new")
    agg = DeltaAggregator()
    agg.diff_file(tmp_path / "a", tmp_path / "b", tmp_path / "p")
    agg.apply_file(tmp_path / "a", tmp_path / "p", tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == b"new"
