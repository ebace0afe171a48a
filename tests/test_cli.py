"""The registry-core command line, run as a real subprocess."""

from __future__ import annotations

import subprocess
import sys

from registry_core import DeltaAggregator


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "registry_core.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_diff_apply_info(tmp_path):
    import io
    import zipfile

    def make(v: str) -> bytes:
        b = io.BytesIO()
        with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as z:
            for i in range(10):
                z.writestr(f"m{i}.py", (f"# {v if i == 3 else 0}\n" + "x = 1\n" * 500).encode())
        return b.getvalue()

    (tmp_path / "a.whl").write_bytes(make("1"))
    (tmp_path / "b.whl").write_bytes(make("2"))
    r = run("diff", str(tmp_path / "a.whl"), str(tmp_path / "b.whl"), "-o", str(tmp_path / "p"))
    assert r.returncode == 0, r.stderr
    assert "saved" in r.stdout and "patch" in r.stdout
    r = run("apply", str(tmp_path / "a.whl"), str(tmp_path / "p"), "-o", str(tmp_path / "c.whl"))
    assert r.returncode == 0, r.stderr
    assert "verified" in r.stdout
    assert (tmp_path / "c.whl").read_bytes() == (tmp_path / "b.whl").read_bytes()
    r = run("info", str(tmp_path / "p"))
    assert (
        r.returncode == 0
        and DeltaAggregator.inspect((tmp_path / "p").read_bytes()).method in r.stdout
    )


def test_errors_are_one_line(tmp_path):
    (tmp_path / "a").write_bytes(b"a" * 100)
    (tmp_path / "b").write_bytes(b"b" * 100)
    (tmp_path / "junk").write_bytes(b"junk" * 20)
    r = run("apply", str(tmp_path / "a"), str(tmp_path / "junk"), "-o", str(tmp_path / "out"))
    assert r.returncode == 2
    assert "error" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()
    r = run("diff", str(tmp_path / "missing"), str(tmp_path / "b"), "-o", str(tmp_path / "p"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
