"""registry_core.build_info(): compiled capabilities, reproduction engines, shipped licence.

Capabilities are reported the way python-zstandard's ``backend_features`` is: a set of names a
test (or a user) can assert on, backed here by the C core's own ``rc_features()`` bitmask and by
the same ``engine_reproduces`` probe that ``apply`` uses.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

import registry_core
from registry_core._native import _info, ffi, lib
from registry_core.delta import _deflate

pytestmark = pytest.mark.native  # `make sanitize` checks the sanitized build reports itself

ROOT = Path(__file__).resolve().parents[1]


def test_core_features_come_from_the_compiled_bitmask():
    info = registry_core.build_info()
    bits = lib.rc_features()
    assert info["simd_chunking"] is bool(bits & lib.RC_FEATURE_CDC_SIMD)
    assert info["asm_chunking"] is bool(bits & lib.RC_FEATURE_CDC_ASM)
    assert info["pgo"] is bool(bits & lib.RC_FEATURE_PGO) is bool(lib.rc_pgo())
    assert info["sanitized"] is bool(bits & lib.RC_FEATURE_SANITIZED) is bool(lib.rc_sanitized())
    # Only the bits the header defines are ever set.
    known = (
        lib.RC_FEATURE_CDC_SIMD
        | lib.RC_FEATURE_CDC_ASM
        | lib.RC_FEATURE_PGO
        | lib.RC_FEATURE_SANITIZED
    )
    assert bits & ~known == 0


def test_no_simd_chunking_path_is_claimed():
    """csrc/cdc.c has no SIMD path (the gear hash is a serial shift-add): say so."""
    assert registry_core.build_info()["simd_chunking"] is False
    assert "simd_chunking" not in registry_core.build_info()["features"]


def test_asm_gear_update_is_reported_where_it_is_compiled():
    compiler = ffi.string(lib.rc_compiler()).decode()
    expected = platform.machine() in ("x86_64", "AMD64") and compiler.startswith(("gcc", "clang"))
    assert registry_core.build_info()["asm_chunking"] is expected


def test_sanitized_build_says_so():
    info = registry_core.build_info()
    if os.environ.get("REGISTRY_CORE_EXPECT_SANITIZED") == "1":
        assert info["sanitized"] is True and "sanitized" in info["features"]
    else:
        assert info["sanitized"] is False


def test_engines_are_probed_with_engine_reproduces():
    engines = registry_core.build_info()["engines"]
    assert set(engines) == {"zlib", "miniz"}
    assert engines["zlib"]["present"] is True
    assert engines["zlib"]["version"] == __import__("zlib").ZLIB_RUNTIME_VERSION
    assert engines["zlib"]["reproduces"] is _deflate.engine_reproduces(_deflate.ZLIB)
    assert engines["miniz"]["present"] is True  # cramjam is a declared dependency
    assert engines["miniz"]["reproduces"] is _deflate.engine_reproduces(_deflate.MINIZ)


def test_features_name_every_capability_that_is_on():
    info = registry_core.build_info()
    expected = {k for k in _info.CORE_FEATURES if info[k]}
    expected |= {f"{k}_reproduces" for k, e in info["engines"].items() if e["reproduces"]}
    assert info["features"] == frozenset(expected)
    assert isinstance(info["features"], frozenset)


def test_a_non_reference_engine_is_reported_present_but_not_reproducing():
    """A platform whose zlib gives other bytes (zlib-ng compat) must not claim reproduction."""
    report = _info.engine_report(reproduces=lambda engine: engine != _deflate.ZLIB)
    assert report["zlib"] == {
        "present": True,
        "version": __import__("zlib").ZLIB_RUNTIME_VERSION,
        "reproduces": False,
    }
    assert report["miniz"]["reproduces"] is True


def test_import_stays_cheap_and_build_info_probes_lazily():
    code = (
        "import sys, registry_core\n"
        "lazy = ('cramjam', 'registry_core.delta', 'registry_core.delta._deflate')\n"
        "print(sorted(m for m in lazy if m in sys.modules))\n"
        "info = registry_core.build_info()\n"
        "print(sorted(m for m in lazy if m in sys.modules), sorted(info['features']))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, after = out.stdout.splitlines()
    assert before == "[]"
    assert after.startswith("['cramjam', 'registry_core.delta', 'registry_core.delta._deflate']")


# -- the licence ships ---------------------------------------------------------------------


def _distribution() -> importlib.metadata.Distribution:
    """The installed distribution: the one an installer wrote (it has a RECORD), not a
    ``src/registry_core.egg-info`` an in-tree build may leave on sys.path."""
    for dist in importlib.metadata.distributions(name="registry-core"):
        if dist.read_text("RECORD") is not None:
            return dist
    pytest.skip("registry-core is not installed (no distribution metadata to check)")


def test_installed_distribution_carries_the_license():
    """Wheel, sdist-built and editable installs all put LICENSE / NOTICE in the dist-info.

    (setuptools >= 77 with ``license-files`` in [project]; an install made before LICENSE
    existed needs ``make install`` again.)
    """
    dist = _distribution()
    assert dist.metadata["License-Expression"] == "Apache-2.0"
    assert set(dist.metadata.get_all("License-File") or []) >= {"LICENSE", "NOTICE"}
    shipped = {
        Path(str(f)).name: f for f in dist.files or [] if Path(str(f)).parent.name == "licenses"
    }
    assert {"LICENSE", "NOTICE"} <= set(shipped)
    license_text = shipped["LICENSE"].read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert "END OF TERMS AND CONDITIONS" in license_text
    notice = shipped["NOTICE"].read_text()
    assert "Copyright 2003-2005 Colin Percival" in notice


@pytest.mark.skipif(not (ROOT / "csrc").is_dir(), reason="needs the source tree")
def test_source_tree_carries_the_bsdiff_notice():
    match_c = (ROOT / "csrc" / "match.c").read_text()
    head = match_c[: match_c.index("#include")]
    assert "Copyright 2003-2005 Colin Percival" in head
    assert "Redistribution and use in source and binary forms" in head
    assert "POSSIBILITY OF SUCH DAMAGE" in head
    assert (ROOT / "LICENSE").read_text().count("Apache License") >= 1
    assert "Colin Percival" in (ROOT / "NOTICE").read_text()
