"""DeltaAggregator with executable transforms: EXEC sections in BINARY and ARCHIVE patches,
kept only when smaller, exact apply, and nothing of it with ``exe=False``."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest
from _delta_artifacts import GCC, compile_library

from registry_core.delta import DeltaAggregator
from registry_core.delta._format import MAGIC, SHA_LEN, Section, parse
from registry_core.errors import CorruptPatchError

pytestmark = pytest.mark.native


def _wheel(lib: bytes, version: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in (
            ("pkg/__init__.py", f"__version__ = '{version}'\n".encode()),
            ("pkg/_native.so", lib),
            ("pkg-1.dist-info/METADATA", f"Name: pkg\nVersion: {version}\n".encode()),
        ):
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return buf.getvalue()


@pytest.fixture(scope="module")
def libs(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    if GCC is None:
        pytest.skip("gcc is not installed")
    tmp: Path = tmp_path_factory.mktemp("exe")
    old = compile_library(tmp, "old", extra=False, funcs=300)  # many calls through the PLT
    return old, compile_library(tmp, "new", extra=True, funcs=300)


def test_plain_pair_takes_the_exec_patch_when_smaller(libs: tuple[bytes, bytes]) -> None:
    old, new = libs
    with_exe = DeltaAggregator(prefix=False).diff(old, new)
    without = DeltaAggregator(prefix=False, exe=False).diff(old, new)
    assert Section.EXEC not in parse(without).sections
    p = parse(with_exe)
    assert Section.EXEC in p.sections  # on these gcc pairs the transform pays (tested apart)
    assert len(with_exe) < len(without)
    assert DeltaAggregator().apply(old, with_exe) == new


def test_archive_pair_carries_exec_and_rebuilds_exactly(libs: tuple[bytes, bytes]) -> None:
    old_lib, new_lib = libs
    old, new = _wheel(old_lib, "1.0"), _wheel(new_lib, "1.1")
    agg = DeltaAggregator(prefix=False)
    patch = agg.diff(old, new)
    without = DeltaAggregator(prefix=False, exe=False).diff(old, new)
    assert len(patch) < len(without)  # the library inside the wheel moved: the transform pays
    assert agg.apply(old, patch) == new
    p = parse(patch)
    assert p.method.name == "ARCHIVE" and Section.EXEC in p.sections
    assert Section.EXEC not in parse(without).sections


def test_no_code_no_transform() -> None:
    old, new = b"plain text " * 500, b"plain text " * 499 + b"changed"
    patch = DeltaAggregator().diff(old, new)
    assert Section.EXEC not in parse(patch).sections


def _refresh_trailer(body: bytes) -> bytes:
    return body + hashlib.sha256(body).digest()


def test_corrupt_exec_record_is_refused(libs: tuple[bytes, bytes]) -> None:
    old, new = libs
    patch = DeltaAggregator(prefix=False).diff(old, new)
    p = parse(patch)
    assert patch.startswith(MAGIC) and Section.EXEC in p.sections
    sec = p.sections[Section.EXEC]
    start = len(patch) - SHA_LEN - len(sec.payload)  # EXEC is the last section
    body = patch[:-SHA_LEN]
    for i in range(0, len(sec.payload), max(1, len(sec.payload) // 16)):
        mutated = bytearray(body)
        mutated[start + i] ^= 0xFF
        with pytest.raises(CorruptPatchError):
            DeltaAggregator().apply(old, _refresh_trailer(bytes(mutated)))
