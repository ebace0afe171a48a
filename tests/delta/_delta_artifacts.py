"""Test artifacts built with the real producers (zipfile, tarfile + gzip), offline and fast."""

from __future__ import annotations

import gzip
import io
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest


def module_source(i: int, version: str, lines: int = 40) -> bytes:
    body = "".join(f"def func_{i}_{k}(x):\n    return x * {k} + {i}\n\n" for k in range(lines))
    return f'"""Module {i} of release {version}."""\n\n{body}'.encode()


def wheel(
    version: str,
    *,
    modules: int = 20,
    changed: dict[int, bytes] | None = None,
    level: int = 6,
    data_json_gz: bool = False,
    lines: int = 40,
) -> bytes:
    """A wheel-shaped zip: modules, a dist-info with METADATA and RECORD."""
    changed = changed or {}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
        for i in range(modules):
            zf.writestr(f"pkg/mod_{i}.py", changed.get(i, module_source(i, "1", lines)))
        zf.writestr("pkg/__init__.py", f'__version__ = "{version}"\n'.encode())
        if data_json_gz:
            payload = b'{"version": "%s", "items": [%s]}' % (
                version.encode(),
                b",".join(b'{"id": %d, "name": "item-%d"}' % (k, k) for k in range(800)),
            )
            zf.writestr(
                "pkg/data/catalog.json.gz", gzip.compress(payload, compresslevel=9, mtime=0)
            )
        info = f"pkg-{version}.dist-info"
        zf.writestr(
            f"{info}/METADATA", f"Metadata-Version: 2.1\nName: pkg\nVersion: {version}\n".encode()
        )
        zf.writestr(
            f"{info}/RECORD", "".join(f"pkg/mod_{i}.py,,\n" for i in range(modules)).encode()
        )
    return buf.getvalue()


def sdist(version: str, *, modules: int = 15, changed: dict[int, bytes] | None = None) -> bytes:
    """An sdist-shaped .tar.gz (gzip level 9, as setuptools writes them)."""
    changed = changed or {}
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        files = {
            f"pkg-{version}/pkg/mod_{i}.py": changed.get(i, module_source(i, "1"))
            for i in range(modules)
        }
        files[f"pkg-{version}/PKG-INFO"] = f"Name: pkg\nVersion: {version}\n".encode()
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mtime = 1_700_000_000
            tf.addfile(ti, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), compresslevel=9, mtime=1_700_000_000)


# -- native code: small shared libraries compiled by gcc (executable-transform tests) --------

GCC = shutil.which("gcc")
needs_gcc = pytest.mark.skipif(GCC is None, reason="gcc is not installed")

FUNCS = 60


def _library_source(extra: bool, funcs: int) -> str:
    lines = ["#include <string.h>", "volatile int sink;", "static int table[256];"]
    for i in range(funcs):
        if extra and i == 3:
            lines += [
                "int inserted(int x) { int s = 0; for (int k = 0; k < x; k++) {",
                '  s += table[k & 255] * k; sink = s; } return s + (int)strlen("abc"); }',
            ]
        lines.append(
            f"__attribute__((noinline)) int f{i}(int x) {{ sink = x; table[{i}] += x; "
            f"return x * {i + 3} + (x > {i} ? f{max(i - 1, 0)}(x - 1) : {i}); }}"
        )
    calls = " + ".join(f"f{i}(x)" for i in range(funcs))
    lines.append(f"int entry(int x) {{ return {calls}; }}")
    return "\n".join(lines) + "\n"


def compile_library(tmp: Path, name: str, extra: bool, funcs: int = FUNCS) -> bytes:
    """A real x86-64/arm64 shared library built by gcc from generated C (``extra``: one more
    function inserted near the start, so later code moves: what a release does)."""
    src = tmp / f"{name}.c"
    src.write_text(_library_source(extra, funcs))
    out = tmp / f"{name}.so"
    subprocess.run(
        [GCC or "gcc", "-O1", "-fPIC", "-shared", "-fno-inline", str(src), "-o", str(out)],
        check=True,
        capture_output=True,
    )
    return out.read_bytes()
