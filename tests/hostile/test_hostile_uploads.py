"""Hostile uploads at the service level: malformed, lying and oversized archives, bad names
and digests. Each is refused with a clear UploadRejectedError (400, or 413 for size), in
bounded work, and leaves nothing behind: no file, no row, no staging leftovers."""

from __future__ import annotations

import io
import os
import random
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from _dists import core_metadata, make_sdist, make_wheel, make_zip_sdist
from registry_core.errors import UploadRejectedError
from registry_core.index import Index
from registry_core.index import _metadata as metadata_mod
from registry_core.storage import MemoryStorage

WHEEL = "pkg-1.0-py3-none-any.whl"
SDIST = "pkg-1.0.tar.gz"


@pytest.fixture
def index(tmp_path: Path) -> Iterator[Index]:
    with Index(tmp_path, max_unpacked_bytes=4 << 20) as ix:
        ix.token = ix.create_token()[0]  # type: ignore[attr-defined]
        yield ix
        # nothing of a refused upload remains: no artifact, no row, no staging file
        assert list(ix.storage.walk()) == []
        assert ix.db.files() == [] and ix.projects() == []
        leftovers = [
            os.path.join(d, f)
            for d, _, fs in os.walk(tmp_path)
            for f in fs
            if not f.startswith(("index.sqlite3", "tenant.sqlite3"))  # the databases
        ]
        assert leftovers == []


def _refused(index: Index, filename: str, data: bytes, match: str, status: int = 400) -> str:
    with pytest.raises(UploadRejectedError) as info:
        index.upload(filename, io.BytesIO(data), token=index.token)  # type: ignore[attr-defined]
    assert info.value.status == status, str(info.value)
    assert info.value.__class__ is UploadRejectedError
    msg = str(info.value)
    assert match.lower() in msg.lower(), msg
    return msg


def _patch_zip(
    data: bytes,
    member: str,
    *,
    size: int | None = None,
    flags: int | None = None,
    method: int | None = None,
) -> bytes:
    """Rewrite fields of ``member`` in its local header and central directory entry."""
    b = bytearray(data)
    name = member.encode()
    for sig, off_flags, off_method, off_size, off_nlen, off_name in (
        (b"PK\x03\x04", 6, 8, 22, 26, 30),
        (b"PK\x01\x02", 8, 10, 24, 28, 46),
    ):
        i = 0
        while (i := b.find(sig, i)) >= 0:
            (nlen,) = struct.unpack_from("<H", b, i + off_nlen)
            if bytes(b[i + off_name : i + off_name + nlen]) == name:
                if size is not None:
                    struct.pack_into("<I", b, i + off_size, size)
                if flags is not None:
                    struct.pack_into("<H", b, i + off_flags, flags)
                if method is not None:
                    struct.pack_into("<H", b, i + off_method, method)
            i += 4
    return bytes(b)


def _patch_eocd_cd_size(data: bytes, cd_size: int) -> bytes:
    b = bytearray(data)
    pos = b.rfind(b"PK\x05\x06")
    struct.pack_into("<I", b, pos + 12, cd_size)
    return bytes(b)


# -- wheels ------------------------------------------------------------------------------------

META = "pkg-1.0.dist-info/METADATA"


def test_metadata_names_another_project(index: Index) -> None:
    data = make_wheel("pkg", "1.0", metadata=core_metadata("evil", "1.0"))
    _refused(index, WHEEL, data, "names project 'evil'")


def test_metadata_has_another_version(index: Index) -> None:
    data = make_wheel("pkg", "1.0", metadata=core_metadata("pkg", "6.6.6"))
    _refused(index, WHEEL, data, "says version 6.6.6")


def test_missing_metadata(index: Index) -> None:
    _refused(index, WHEEL, make_wheel("pkg", "1.0", with_metadata=False), f"no {META}")


def test_no_dist_info(index: Index) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("pkg/__init__.py", b"")
    _refused(index, WHEEL, buf.getvalue(), "no .dist-info directory")


def test_two_dist_info_dirs(index: Index) -> None:
    data = make_wheel(
        "pkg", "1.0", members={"other-1.0.dist-info/METADATA": core_metadata("other", "1.0")}
    )
    _refused(index, WHEEL, data, "several .dist-info directories")


def test_dist_info_named_for_another_project(index: Index) -> None:
    data = make_wheel("pkg", "1.0", dist_info="evil-1.0.dist-info")
    _refused(index, WHEEL, data, "does not match the filename")


def test_metadata_twice(index: Index) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(META, core_metadata("pkg", "1.0"))
        with pytest.warns(UserWarning, match="Duplicate name"):
            zf.writestr(META, core_metadata("evil", "1.0"))
    _refused(index, WHEEL, buf.getvalue(), "appears twice")


def test_huge_metadata(index: Index) -> None:
    big = core_metadata("pkg", "1.0", extra="Description: " + "x" * (2 << 20))
    _refused(index, WHEEL, make_wheel("pkg", "1.0", metadata=big), "metadata limit")


def test_zip_bomb_metadata_with_lying_size(index: Index) -> None:
    """METADATA inflates to 16 MiB but its headers claim 100 bytes: the read stops at the cap
    (and the CRC check fails); nothing near 16 MiB is ever held."""
    bomb = core_metadata("pkg", "1.0") + b"\0" * (16 << 20)
    data = _patch_zip(make_wheel("pkg", "1.0", metadata=bomb), META, size=100)
    assert len(data) < 1 << 20
    _refused(index, WHEEL, data, "not a readable wheel")


def test_zip_bomb_metadata_honest_size(index: Index) -> None:
    bomb = core_metadata("pkg", "1.0") + b"\0" * (16 << 20)
    _refused(index, WHEEL, make_wheel("pkg", "1.0", metadata=bomb), "metadata limit")


def test_encrypted_member(index: Index) -> None:
    data = _patch_zip(make_wheel("pkg", "1.0"), META, flags=0x1)
    _refused(index, WHEEL, data, "not a readable wheel")


def test_unknown_compression_method(index: Index) -> None:
    data = _patch_zip(make_wheel("pkg", "1.0"), META, method=99)
    _refused(index, WHEEL, data, "not a readable wheel")


def test_truncated_zip(index: Index) -> None:
    data = make_wheel("pkg", "1.0")
    _refused(index, WHEEL, data[: len(data) // 2], "not a readable wheel")
    _refused(index, WHEEL, data[:-10], "not a readable wheel")


def test_not_a_zip(index: Index) -> None:
    noise = random.Random(7).randbytes(50_000)
    _refused(index, WHEEL, noise, "not a readable wheel")
    _refused(index, WHEEL, b"PK\x05\x06" + b"\0" * 18, "not a valid wheel: no .dist-info")


def test_central_directory_larger_than_the_file(index: Index) -> None:
    data = _patch_eocd_cd_size(make_wheel("pkg", "1.0"), 200 << 20)
    _refused(index, WHEEL, data, "does not fit the file")


def test_too_many_members(index: Index, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metadata_mod, "MAX_MEMBERS", 50)
    members = {f"pkg/m{i}.py": b"" for i in range(60)}
    _refused(index, WHEEL, make_wheel("pkg", "1.0", members=members), "more than 50 members")
    # at the limit: accepted (the count is exact, not an estimate from the directory size)
    monkeypatch.setattr(metadata_mod, "MAX_MEMBERS", 63)
    with Index(MemoryStorage()) as other:
        token = other.create_token()[0]
        data = make_wheel("pkg", "1.0", members=members)
        assert other.upload(WHEEL, io.BytesIO(data), token=token).filename == WHEEL
    monkeypatch.setattr(metadata_mod, "MAX_MEMBERS", 50)
    tar = make_sdist("pkg-1.0", pkg_info=core_metadata("pkg", "1.0"), before=members)
    _refused(index, SDIST, tar, "more than 50 members")


def test_undecodable_metadata(index: Index) -> None:
    data = make_wheel("pkg", "1.0", metadata=b"Metadata-Version: 2.1\nName: p\xff\xfekg\n")
    _refused(index, WHEEL, data, "pkg-1.0-py3-none-any.whl")


def test_invalid_requires_python(index: Index) -> None:
    meta = core_metadata("pkg", "1.0", requires_python="not a specifier")
    _refused(index, WHEEL, make_wheel("pkg", "1.0", metadata=meta), "Requires-Python")


# -- sdists ------------------------------------------------------------------------------------


def test_sdist_without_pkg_info(index: Index) -> None:
    _refused(index, SDIST, make_sdist("pkg-1.0", pkg_info=None), "no pkg-1.0/PKG-INFO")
    _refused(index, "pkg-1.0.zip", make_zip_sdist("pkg-1.0", pkg_info=None), "no pkg-1.0/PKG-INFO")


def test_sdist_pkg_info_for_another_project(index: Index) -> None:
    data = make_sdist("pkg-1.0", pkg_info=core_metadata("evil", "1.0"))
    _refused(index, SDIST, data, "names project")


def test_sdist_pkg_info_symlink(index: Index) -> None:
    data = make_sdist("pkg-1.0", pkg_info=None, symlink_pkg_info=True)
    _refused(index, SDIST, data, "not a regular file")


def test_sdist_huge_pkg_info(index: Index) -> None:
    big = core_metadata("pkg", "1.0", extra="Description: " + "x" * (2 << 20))
    _refused(index, SDIST, make_sdist("pkg-1.0", pkg_info=big), "metadata limit")


def test_sdist_decompression_bomb(index: Index) -> None:
    """16 MiB of zeros ahead of PKG-INFO: the scan stops at max_unpacked_bytes (4 MiB)."""
    data = make_sdist(
        "pkg-1.0", pkg_info=core_metadata("pkg", "1.0"), before={"pkg-1.0/z.bin": bytes(16 << 20)}
    )
    assert len(data) < 1 << 20
    _refused(index, SDIST, data, "decompression bomb")


def test_sdist_not_gzip_or_truncated(index: Index) -> None:
    _refused(index, SDIST, random.Random(3).randbytes(10_000), "not a readable sdist")
    good = make_sdist(
        "pkg-1.0", pkg_info=core_metadata("pkg", "1.0"), before={"pkg-1.0/a": b"x" * 5000}
    )
    _refused(index, SDIST, good[:40], "not a readable sdist")
    _refused(index, "pkg-1.0.zip", good, "not a readable sdist")


# -- names, digests, sizes, content ------------------------------------------------------------


@pytest.mark.parametrize(
    "filename",
    [
        "../pkg-1.0.tar.gz",
        "pkg/../../pkg-1.0.tar.gz",
        ".pkg-1.0.tar.gz",
        "pkg-1.0.exe",
        "pkg-1.0.tar.gz\x00.whl",
        "pkg-1.0-py3-none-any.whl/",
        "C:\\pkg-1.0.tar.gz",
        "pkg-../../x-py3-none-any.whl",
    ],
)
def test_hostile_filenames(index: Index, filename: str) -> None:
    _refused(index, filename, make_sdist("pkg-1.0", pkg_info=core_metadata("pkg", "1.0")), "")


def test_digest_mismatch(index: Index) -> None:
    data = make_wheel("pkg", "1.0")
    with pytest.raises(UploadRejectedError, match="sha256 digest sent") as info:
        index.upload(WHEEL, io.BytesIO(data), token=index.token, sha256="0" * 64)  # type: ignore[attr-defined]
    assert info.value.status == 400


def test_oversize_stops_reading(tmp_path: Path) -> None:
    class Endless(io.RawIOBase):
        """An upload that never ends: only a bounded prefix may be read."""

        read_bytes = 0

        def readable(self) -> bool:
            return True

        def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
            self.read_bytes += len(b)
            b[:] = b"\0" * len(b)
            return len(b)

    with Index(tmp_path, max_file_bytes=1 << 20) as index:
        raw, _ = index.create_token()
        body = Endless()
        with pytest.raises(UploadRejectedError) as info:
            index.upload(WHEEL, body, token=raw)  # type: ignore[arg-type]
        assert info.value.status == 413
        assert body.read_bytes <= (1 << 20) + 1
        assert list(index.storage.walk()) == []


def test_empty_and_text_content(index: Index) -> None:
    _refused(index, WHEEL, b"", "is empty")
    with pytest.raises(UploadRejectedError, match="not binary"):
        index.upload(WHEEL, io.StringIO("text"), token=index.token)  # type: ignore[attr-defined,arg-type]
