"""Core metadata extraction from real setuptools builds and hand-made archives."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from packaging.version import Version

from _dists import core_metadata, make_sdist, make_wheel, make_zip_sdist
from _packages import Built, build_project
from registry_core.errors import UploadRejectedError
from registry_core.index import CoreMetadata, parse_filename
from registry_core.index._metadata import extract_metadata, parse_core_metadata
from registry_core.index._names import wheel_filename


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("build")
    return build_project(root, "Meta.Demo", "1.2.0", requires_python=">=3.9", payload_kb=4)


def _extract(path_or_bytes: Path | bytes, filename: str, **kw: int) -> tuple[bytes, CoreMetadata]:
    data = path_or_bytes.read_bytes() if isinstance(path_or_bytes, Path) else path_or_bytes
    return extract_metadata(io.BytesIO(data), filename, parse_filename(filename), **kw)


def test_real_wheel(built: Built) -> None:
    raw, meta = _extract(built.wheel, built.wheel.name)
    assert meta == CoreMetadata("Meta.Demo", "1.2.0", ">=3.9")
    with zipfile.ZipFile(built.wheel) as zf:
        assert raw == zf.read("meta_demo-1.2.0.dist-info/METADATA")


def test_real_sdist(built: Built) -> None:
    raw, meta = _extract(built.sdist, built.sdist.name)
    assert meta == CoreMetadata("Meta.Demo", "1.2.0", ">=3.9")
    assert raw.startswith(b"Metadata-Version:")


def test_legacy_zip_sdist() -> None:
    data = make_zip_sdist("legacy-0.3", pkg_info=core_metadata("Legacy", "0.3"))
    raw, meta = _extract(data, "legacy-0.3.zip")
    assert meta == CoreMetadata("Legacy", "0.3", None)
    assert raw == core_metadata("Legacy", "0.3")


def test_legacy_sdist_directory_spelled_differently() -> None:
    # an old sdist named Foo-1.0.tar.gz whose directory is foo-1.0: the only PKG-INFO is used
    data = make_sdist("foo-1.0", pkg_info=core_metadata("Foo", "1.0"))
    _, meta = _extract(data, "Foo-1.0.tar.gz")
    assert meta.name == "Foo"


def test_version_spelled_differently_is_the_same_version() -> None:
    data = make_wheel("pkg", "1.0", metadata=core_metadata("pkg", "1.0.0"))
    _, meta = _extract(data, "pkg-1.0-py3-none-any.whl")
    assert meta.version == "1.0.0"


def test_parse_core_metadata_fields() -> None:
    meta = parse_core_metadata(core_metadata("A", "2.0RC1", requires_python=" >=3.10 "))
    assert meta == CoreMetadata("A", "2.0rc1", ">=3.10")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"Metadata-Version: 2.1\nVersion: 1.0\n", "no Name"),
        (b"Metadata-Version: 2.1\nName: a\n", "no Version"),
        (b"Metadata-Version: 2.1\nName: a\nVersion: one\n", "not a PEP 440 version"),
        (core_metadata("a", "1.0", requires_python="three"), "Requires-Python"),
        (b"", "no Name"),
    ],
)
def test_parse_core_metadata_refusals(data: bytes, message: str) -> None:
    with pytest.raises(UploadRejectedError, match=message):
        parse_core_metadata(data)


def test_metadata_limit_is_configurable() -> None:
    big = core_metadata("pkg", "1.0", extra="Description: " + "x" * 5000)
    data = make_wheel("pkg", "1.0", metadata=big)
    with pytest.raises(UploadRejectedError, match="metadata limit"):
        _extract(data, "pkg-1.0-py3-none-any.whl", max_metadata_bytes=4096)
    raw, _ = _extract(data, "pkg-1.0-py3-none-any.whl", max_metadata_bytes=8192)
    assert raw == big


def test_zip64_end_records(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wheel whose end of central directory is the zip64 kind (written by zipfile when the
    entry count passes its limit, lowered here): members are counted from the zip64 record."""
    from registry_core.index import _metadata as metadata_mod

    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 2)
    data = make_wheel("pkg", "1.0", members={f"pkg/m{i}.py": b"" for i in range(10)})
    monkeypatch.undo()
    assert b"PK\x06\x06" in data and b"PK\x06\x07" in data
    _, meta = _extract(data, "pkg-1.0-py3-none-any.whl")
    assert meta.name == "pkg"
    monkeypatch.setattr(metadata_mod, "MAX_MEMBERS", 12)
    with pytest.raises(UploadRejectedError, match="more than 12 members"):
        _extract(data, "pkg-1.0-py3-none-any.whl")


_name_st = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,20}[A-Za-z0-9])?", fullmatch=True)
_version_st = st.builds(
    lambda rel, pre: ".".join(map(str, rel)) + pre,
    st.lists(st.integers(0, 999), min_size=1, max_size=4),
    st.sampled_from(["", "a1", "rc2", ".post3", ".dev4"]),
)
_rp_st = st.one_of(st.none(), st.sampled_from([">=3.8", ">=3.9,<4", "~=3.10", "!=3.11.*,>=3"]))


@given(_name_st, _version_st, _rp_st)
def test_metadata_round_trip(name: str, version: str, requires_python: str | None) -> None:
    """A wheel made with these fields gives them back, the name as written, the version
    normalized."""
    data = make_wheel(
        name, version, metadata=core_metadata(name, version, requires_python=requires_python)
    )
    filename = wheel_filename(name, version)
    raw, meta = _extract(data, filename)
    assert raw == core_metadata(name, version, requires_python=requires_python)
    assert meta == CoreMetadata(name, str(Version(version)), requires_python)
