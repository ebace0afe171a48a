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


def _wheel(version: str) -> bytes:
    """A wheel-like zip whose deflated members make an archive-aware patch the smaller one."""
    import io
    import random
    import zipfile

    rnd = random.Random(5)
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(20):
            lines = [
                f"def f{i}_{j}(x):\n    return x * {rnd.randrange(10**6)}\n" for j in range(300)
            ]
            if i == 3:
                lines.insert(100, f"# version {version}\n")
            z.writestr(f"pkg/m{i}.py", "".join(lines))
    return b.getvalue()


def test_version():
    from registry_core import __version__

    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"registry-core {__version__}"


def test_flags_are_resolved_by_the_cli_from_the_project_file(tmp_path):
    """The CLI is an edge: it reads the nearest pyproject.toml (the library does not)."""
    (tmp_path / "a.whl").write_bytes(_wheel("1"))
    (tmp_path / "b.whl").write_bytes(_wheel("2"))

    def diff_method(cwd) -> str:
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "registry_core.cli",
                "diff",
                str(tmp_path / "a.whl"),
                str(tmp_path / "b.whl"),
                "-o",
                str(tmp_path / "p"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=cwd,
        )
        assert r.returncode == 0, r.stderr
        return DeltaAggregator.inspect((tmp_path / "p").read_bytes()).method

    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert diff_method(plain) == "ARCHIVE"
    off = tmp_path / "off"
    off.mkdir()
    (off / "pyproject.toml").write_text('[tool.registry-core.flags]\nDELTA_STABLE = "off"\n')
    assert diff_method(off) == "BINARY"


def test_bad_flag_file_is_one_line(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.registry-core.flags]\nNO_SUCH_FLAG = "on"\n')
    r = subprocess.run(
        [sys.executable, "-m", "registry_core.cli", "info", "missing"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr and "NO_SUCH_FLAG" in r.stderr


class _Terminal:
    """A stderr stand-in that says it is a terminal and tells the test when it was written."""

    def __init__(self) -> None:
        import threading

        self.written = threading.Event()
        self.parts: list[str] = []

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.parts.append(text)
        self.written.set()
        return len(text)

    def flush(self) -> None:
        pass


def test_progress_line_on_a_terminal_is_drawn_then_erased():
    from registry_core.cli import Progress

    term = _Terminal()
    ticks = iter(range(100))
    with Progress("diffing a -> b", term, delay=0, interval=3600, clock=lambda: next(ticks)):
        assert term.written.wait(30)  # the work "takes long": wait for the line, not for time
    assert term.parts[0] == "\rdiffing a -> b... 1s"
    assert term.parts[-1] == "\r\033[K"


def test_progress_is_silent_when_quick_or_not_a_terminal():
    import io

    from registry_core.cli import Progress

    term = _Terminal()
    with Progress("quick", term, delay=3600):
        pass  # ends before the delay: nothing drawn
    assert term.parts == []
    pipe = io.StringIO()
    with Progress("piped", pipe, delay=0, interval=0):
        pass
    assert pipe.getvalue() == ""
