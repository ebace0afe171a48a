"""The loopback demo (``server/_demo.run_demo``): the same release found twice (the venv's pip
equal to the interpreter's) is served once, two different artifacts under one name are refused
up front instead of one replacing the other on disk, and the demo leaves no folder behind."""

from __future__ import annotations

import tempfile

import pytest

from registry_core.errors import InvalidArgumentError
from registry_core.server._demo import local_artifacts, run_demo

pytestmark = pytest.mark.network


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    d = tmp_path / "tmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


def test_same_release_twice_is_served_once(private_tmp):
    (v0, a), (v1, b) = local_artifacts(2)
    lines: list[str] = []
    releases = [
        ("pip-24.0-py3-none-any.whl", a),
        ("pip-24.0-py3-none-any.whl", a),
        ("pip-24.1-py3-none-any.whl", b),
    ]
    report = run_demo(releases, protocols=("h2",), repeats=0, out=lines.append)
    steps = report["protocols"]["h2"]["steps"]
    assert [s["version"] for s in steps] == [
        "pip-24.0-py3-none-any.whl",
        "pip-24.1-py3-none-any.whl",
    ]
    assert "2 releases served" in lines[0]
    assert list(private_tmp.iterdir()) == []  # nothing left behind


def test_two_artifacts_with_one_name_are_refused(private_tmp):
    (_, a), (_, b) = local_artifacts(2)
    with pytest.raises(InvalidArgumentError, match="both named"):
        run_demo(
            [("pip-24.0-py3-none-any.whl", a), ("pip-24.0-py3-none-any.whl", b)],
            protocols=("h2",),
            repeats=0,
            out=lambda _: None,
        )
    assert list(private_tmp.iterdir()) == []


def test_one_distinct_release_is_refused(private_tmp):
    (_, a), _ = local_artifacts(2)
    with pytest.raises(InvalidArgumentError, match="two distinct releases"):
        run_demo([("x-1.whl", a), ("x-2.whl", a)], protocols=("h2",), repeats=0, out=lambda _: None)
