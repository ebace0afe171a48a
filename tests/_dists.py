"""Hand-made distributions (bytes) for the index tests: valid small ones, and the malformed
archives the hostile cases need (built with zipfile / tarfile, no build backend).

Real builds come from ``_packages.build_project``; these exist because a build backend will
not produce a wheel with two ``.dist-info`` directories or a 2 MB METADATA.
"""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile


def core_metadata(
    name: str, version: str, *, requires_python: str | None = None, extra: str = ""
) -> bytes:
    """A minimal core metadata file (Metadata-Version 2.1)."""
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    if requires_python is not None:
        lines.append(f"Requires-Python: {requires_python}")
    return ("\n".join(lines) + "\n" + extra + "\n").encode()


def _member(path: str) -> zipfile.ZipInfo:
    """A zip member with a fixed date: the same call gives the same bytes at any time (a plain
    name would stamp the clock's time, so two builds a moment apart could differ)."""
    return zipfile.ZipInfo(path, (2024, 1, 1, 0, 0, 0))


def make_wheel(
    name: str,
    version: str,
    *,
    metadata: bytes | None = None,
    dist_info: str | None = None,
    members: dict[str, bytes] | None = None,
    with_metadata: bool = True,
    compression: int = zipfile.ZIP_DEFLATED,
) -> bytes:
    """A wheel of ``name`` ``version``: ``{dist_info}/METADATA`` (default: escaped name and
    version) plus ``members``."""
    escaped = name.replace("-", "_").replace(".", "_")
    dist_info = dist_info or f"{escaped}-{version}.dist-info"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        zf.writestr(_member(f"{escaped}/__init__.py"), b"VALUE = 1\n", compression)
        if with_metadata:
            meta = metadata or core_metadata(name, version)
            zf.writestr(_member(f"{dist_info}/METADATA"), meta, compression)
        wheel = b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\n"
        zf.writestr(_member(f"{dist_info}/WHEEL"), wheel, compression)
        for path, data in (members or {}).items():
            zf.writestr(_member(path), data, compression)
    return buf.getvalue()


def make_sdist(
    stem: str,
    *,
    pkg_info: bytes | None,
    members: dict[str, bytes] | None = None,
    before: dict[str, bytes] | None = None,
    symlink_pkg_info: bool = False,
) -> bytes:
    """A tar.gz sdist with ``{stem}/PKG-INFO`` (when ``pkg_info`` is not None); ``before``:
    members written ahead of it (for decompression bounds), ``members`` after it."""
    buf = io.BytesIO()
    # mtime=0 in the gzip header, for the same reason as _member
    with (
        gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tf,
    ):

        def add(path: str, data: bytes) -> None:
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))

        for path, data in (before or {}).items():
            add(path, data)
        if symlink_pkg_info:
            info = tarfile.TarInfo(f"{stem}/PKG-INFO")
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tf.addfile(info)
        elif pkg_info is not None:
            add(f"{stem}/PKG-INFO", pkg_info)
        add(f"{stem}/setup.py", b"from setuptools import setup\nsetup()\n")
        for path, data in (members or {}).items():
            add(path, data)
    return buf.getvalue()


def make_zip_sdist(stem: str, *, pkg_info: bytes | None) -> bytes:
    """A legacy .zip sdist with ``{stem}/PKG-INFO``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        if pkg_info is not None:
            zf.writestr(_member(f"{stem}/PKG-INFO"), pkg_info, zipfile.ZIP_DEFLATED)
        setup = b"from setuptools import setup\nsetup()\n"
        zf.writestr(_member(f"{stem}/setup.py"), setup, zipfile.ZIP_DEFLATED)
    return buf.getvalue()
