"""Core metadata (PEP 658's ``.metadata`` file) from a wheel or an sdist, with bounded work.

Only one member is read: a wheel's ``{name}-{version}.dist-info/METADATA`` (exactly one
``.dist-info`` directory, named as the filename says), an sdist's ``{name}-{version}/PKG-INFO``
(tar.gz or legacy zip). So path tricks and symlinks in the archive do not matter; what is
bounded is the work: the member count (a zip's central directory is checked before it is
parsed), the metadata size (read with a byte cap, whatever the header claims: zip bombs), and
for a tar.gz the bytes decompressed while looking for the member.
"""

from __future__ import annotations

import gzip
import io
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, BinaryIO, TypeVar

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from ..errors import UploadRejectedError
from ._names import ParsedFilename, normalize

__all__ = ["MAX_MEMBERS", "CoreMetadata", "extract_metadata", "parse_core_metadata"]

MAX_MEMBERS = 100_000
_T = TypeVar("_T")
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    OSError,
    EOFError,
    ValueError,
    NotImplementedError,  # an unsupported compression method
    RuntimeError,  # an encrypted member
    zlib.error,
    struct.error,
)
_TAR_ERRORS = (tarfile.TarError, OSError, EOFError, ValueError, zlib.error, struct.error)


@dataclass(frozen=True)
class CoreMetadata:
    """The fields of a distribution's core metadata the index keeps."""

    name: str
    version: str
    requires_python: str | None = None


class _CappedReader(io.RawIOBase):
    """A forward-only reader that refuses to deliver more than ``cap`` bytes in total."""

    def __init__(self, inner: gzip.GzipFile | IO[bytes], cap: int, what: str) -> None:
        self._inner = inner
        self._left = cap
        self._cap = cap
        self._what = what

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._inner.read(min(len(b), self._left + 1))
        if len(data) > self._left:
            raise UploadRejectedError(
                f"{self._what}: more than {self._cap} bytes decompressed while looking for "
                "its metadata (a decompression bomb?)"
            )
        self._left -= len(data)
        b[: len(data)] = data
        return len(data)


def _zip_member_count(f: BinaryIO, size: int) -> int:
    """How many entries ``zipfile`` would build from this zip's central directory, counted
    without building them (and at most ``MAX_MEMBERS + 1``): the directory is located from
    the end records as ``zipfile`` does, then walked entry by entry. BadZipFile when the end
    records are missing or point outside the file."""
    tail_len = min(size, 22 + 0xFFFF)
    tail_start = size - tail_len
    f.seek(tail_start)
    tail = f.read(tail_len)
    pos = tail.rfind(b"PK\x05\x06")
    if pos < 0 or len(tail) - pos < 22:
        raise zipfile.BadZipFile("no end of central directory record")
    (count,) = struct.unpack_from("<H", tail, pos + 10)
    (cd_size,) = struct.unpack_from("<I", tail, pos + 12)
    cd_end = tail_start + pos
    loc = pos - 20
    if loc >= 0 and tail[loc : loc + 4] == b"PK\x06\x07":  # zip64: its record sits before
        rec_pos = tail_start + loc - 56
        if rec_pos < 0:
            raise zipfile.BadZipFile("zip64 end of central directory record out of range")
        f.seek(rec_pos)
        rec = f.read(56)
        if rec[:4] != b"PK\x06\x06":
            raise zipfile.BadZipFile("zip64 end of central directory record missing")
        (cd_size,) = struct.unpack_from("<Q", rec, 40)
        cd_end = rec_pos
    cd_start = cd_end - cd_size
    if cd_start < 0:
        raise zipfile.BadZipFile(f"central directory of {cd_size} bytes does not fit the file")
    f.seek(cd_start)
    directory = f.read(cd_size)
    n = i = 0
    while i + 46 <= len(directory) and directory[i : i + 4] == b"PK\x01\x02":
        n += 1
        if n > MAX_MEMBERS:
            break
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", directory, i + 28)
        i += 46 + name_len + extra_len + comment_len
    return n


def _stem(filename: str) -> str:
    for ext in (".whl", ".tar.gz", ".zip"):
        if filename.endswith(ext):
            return filename[: -len(ext)]
    return filename


def _read_zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int, filename: str) -> bytes:
    if info.file_size > cap:
        raise UploadRejectedError(
            f"{filename}: {info.filename} is {info.file_size} bytes, over the "
            f"{cap}-byte metadata limit"
        )
    with zf.open(info) as member:
        data = member.read(cap + 1)
    if len(data) > cap:
        raise UploadRejectedError(
            f"{filename}: {info.filename} is over the {cap}-byte metadata limit"
        )
    return data


def _open_zip(f: BinaryIO, filename: str, what: str) -> zipfile.ZipFile:
    f.seek(0, io.SEEK_END)
    size = f.tell()
    count = _zip_member_count(f, size)
    if count > MAX_MEMBERS:
        raise UploadRejectedError(
            f"{filename}: the archive has more than {MAX_MEMBERS} members (the limit)"
        )
    f.seek(0)
    zf = zipfile.ZipFile(f)
    if len(zf.infolist()) > MAX_MEMBERS:
        zf.close()
        raise UploadRejectedError(f"{filename}: more than {MAX_MEMBERS} members in the {what}")
    return zf


def _wheel_metadata(f: BinaryIO, filename: str, parsed: ParsedFilename, cap: int) -> bytes:
    with _open_zip(f, filename, "wheel") as zf:
        dist_infos = set()
        for info in zf.infolist():
            top = info.filename.split("/", 1)[0]
            if top.endswith(".dist-info") and "/" in info.filename:
                dist_infos.add(top)
        if not dist_infos:
            raise UploadRejectedError(f"{filename} is not a valid wheel: no .dist-info directory")
        if len(dist_infos) > 1:
            raise UploadRejectedError(
                f"{filename} is not a valid wheel: several .dist-info directories "
                f"({', '.join(sorted(dist_infos)[:5])})"
            )
        (dist_info,) = dist_infos
        name, _, version = dist_info[: -len(".dist-info")].rpartition("-")
        if normalize(name) != parsed.project or not _same_version(version, parsed.version):
            raise UploadRejectedError(
                f"{filename} is not a valid wheel: its {dist_info} directory does not match "
                f"the filename ({parsed.project} {parsed.version})"
            )
        wanted = f"{dist_info}/METADATA"
        members = [i for i in zf.infolist() if i.filename == wanted]
        if not members:
            raise UploadRejectedError(f"{filename} is not a valid wheel: no {wanted}")
        if len(members) > 1:
            raise UploadRejectedError(f"{filename} is not a valid wheel: {wanted} appears twice")
        return _read_zip_member(zf, members[0], cap, filename)


def _zip_sdist_metadata(f: BinaryIO, filename: str, cap: int) -> bytes:
    stem = _stem(filename)
    with _open_zip(f, filename, "sdist") as zf:
        candidates = [i for i in zf.infolist() if _is_pkg_info(i.filename)]
        member = _pick_pkg_info(candidates, lambda i: i.filename, stem, filename)
        return _read_zip_member(zf, member, cap, filename)


def _is_pkg_info(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and parts[1] == "PKG-INFO" and bool(parts[0])


def _pick_pkg_info(
    candidates: list[_T], name_of: Callable[[_T], str], stem: str, filename: str
) -> _T:
    exact = [c for c in candidates if name_of(c) == f"{stem}/PKG-INFO"]
    if len(exact) == 1:
        return exact[0]
    if len(exact) > 1:
        raise UploadRejectedError(f"{filename} is not a valid sdist: {stem}/PKG-INFO appears twice")
    if len(candidates) == 1:  # a legacy sdist whose directory is spelled differently
        return candidates[0]
    if not candidates:
        raise UploadRejectedError(f"{filename} is not a valid sdist: no {stem}/PKG-INFO")
    raise UploadRejectedError(
        f"{filename} is not a valid sdist: no {stem}/PKG-INFO and several other PKG-INFO files"
    )


def _tar_sdist_metadata(f: BinaryIO, filename: str, cap: int, max_unpacked: int) -> bytes:
    stem = _stem(filename)
    f.seek(0)
    gz = gzip.GzipFile(fileobj=f, mode="rb")
    capped = io.BufferedReader(_CappedReader(gz, max_unpacked, filename), 64 * 1024)
    found: list[bytes] = []
    others: list[bytes] = []
    with tarfile.open(fileobj=capped, mode="r|") as tf:
        count = 0
        for member in tf:
            count += 1
            if count > MAX_MEMBERS:
                raise UploadRejectedError(
                    f"{filename}: more than {MAX_MEMBERS} members in the sdist"
                )
            if not _is_pkg_info(member.name):
                continue
            if not member.isfile():
                raise UploadRejectedError(f"{filename}: {member.name} is not a regular file")
            if member.size > cap:
                raise UploadRejectedError(
                    f"{filename}: {member.name} is {member.size} bytes, over the "
                    f"{cap}-byte metadata limit"
                )
            extracted = tf.extractfile(member)
            if extracted is None:  # pragma: no cover - isfile() was checked
                continue
            data = extracted.read(cap + 1)
            if member.name == f"{stem}/PKG-INFO":
                found.append(data)
                break  # the one we want: the rest of the archive need not be decompressed
            others.append(data)
            if len(others) > 1:
                break
    if found:
        return found[0]
    if len(others) == 1:
        return others[0]
    if not others:
        raise UploadRejectedError(f"{filename} is not a valid sdist: no {stem}/PKG-INFO")
    raise UploadRejectedError(
        f"{filename} is not a valid sdist: no {stem}/PKG-INFO and several other PKG-INFO files"
    )


def _same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return False


def parse_core_metadata(data: bytes, what: str = "the metadata") -> CoreMetadata:
    """Name, Version and Requires-Python from core metadata bytes (RFC 822 style headers);
    UploadRejectedError when it lacks a name or a valid version, or has an invalid
    Requires-Python."""
    from packaging.metadata import parse_email

    try:
        raw, _unparsed = parse_email(data)
    except (ValueError, UnicodeError) as e:
        raise UploadRejectedError(f"{what} cannot be parsed: {e}") from None
    name = raw.get("name")
    version = raw.get("version")
    requires_python = raw.get("requires_python")
    if not name or not isinstance(name, str):
        raise UploadRejectedError(f"{what} has no Name")
    if not version or not isinstance(version, str):
        raise UploadRejectedError(f"{what} has no Version")
    try:
        version = str(Version(version))
    except InvalidVersion:
        raise UploadRejectedError(f"{what}: Version {version!r} is not a PEP 440 version") from None
    if requires_python is not None:
        requires_python = requires_python.strip() or None
    if requires_python is not None:
        try:
            SpecifierSet(requires_python)
        except InvalidSpecifier:
            raise UploadRejectedError(
                f"{what}: Requires-Python {requires_python!r} is not a valid specifier"
            ) from None
    return CoreMetadata(name=name.strip(), version=version, requires_python=requires_python)


def extract_metadata(
    f: BinaryIO,
    filename: str,
    parsed: ParsedFilename,
    *,
    max_metadata_bytes: int = 1 << 20,
    max_unpacked_bytes: int = 1 << 30,
) -> tuple[bytes, CoreMetadata]:
    """The core metadata file of the distribution in ``f`` (seekable) and its parsed fields,
    checked against the filename (same normalized name and version).

    UploadRejectedError when the archive is unreadable, breaks a bound, or disagrees with its
    filename.
    """
    kind = "wheel" if parsed.kind == "wheel" else "sdist"
    try:
        if parsed.kind == "wheel":
            data = _wheel_metadata(f, filename, parsed, max_metadata_bytes)
        elif filename.endswith(".zip"):
            data = _zip_sdist_metadata(f, filename, max_metadata_bytes)
        else:
            data = _tar_sdist_metadata(f, filename, max_metadata_bytes, max_unpacked_bytes)
    except UploadRejectedError:
        raise
    except (*_ZIP_ERRORS, *_TAR_ERRORS, gzip.BadGzipFile) as e:
        detail = str(e)
        detail = detail if len(detail) <= 200 else detail[:200] + "..."
        raise UploadRejectedError(
            f"{filename} is not a readable {kind}: {type(e).__name__}: {detail}"
        ) from None
    if len(data) > max_metadata_bytes:
        raise UploadRejectedError(
            f"{filename}: its core metadata is over the {max_metadata_bytes}-byte limit"
        )
    meta = parse_core_metadata(data, f"{filename}'s core metadata")
    if normalize(meta.name) != parsed.project:
        raise UploadRejectedError(
            f"{filename}: its metadata names project {meta.name!r}, the filename {parsed.project!r}"
        )
    if not _same_version(meta.version, parsed.version):
        raise UploadRejectedError(
            f"{filename}: its metadata says version {meta.version}, the filename {parsed.version}"
        )
    return data, meta
