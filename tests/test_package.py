"""The package surface: exported names, build information, cheap import."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import registry_core


def test_public_names_are_pinned():
    assert sorted(registry_core.__all__) == [
        "Compressor",
        "DeltaAggregator",
        "FeatureFlags",
        "Index",
        "ProxyApp",
        "RegistryCoreError",
        "SyncTransport",
        "Transport",
        "__version__",
        "build_info",
    ]


@pytest.mark.native
def test_build_info_reports_the_core():
    info = registry_core.build_info()
    assert info["version"] == registry_core.__version__
    assert info["core_version"] == registry_core.__version__
    assert info["compiler"] and info["cflags"]
    assert isinstance(info["pgo"], bool)
    if os.environ.get("REGISTRY_CORE_EXPECT_SANITIZED") == "1":
        assert info["sanitized"] is True
    else:
        assert "-O3" in info["cflags"]


def test_import_is_cheap():
    heavy = (
        "httpx",
        "aioquic",
        "hypercorn",
        "zstandard",
        "brotli",
        "cramjam",
        "redis",
        "packaging",
        "sqlite3",
        "python_multipart",
        "registry_core.index",
        "registry_core.proxy",
    )
    code = f"import sys, registry_core; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_public_name_resolves():
    for name in registry_core.__all__:
        assert getattr(registry_core, name) is not None
    from registry_core.transport import SyncTransport

    assert registry_core.SyncTransport is SyncTransport


def test_unknown_attribute_raises_attribute_error():
    with pytest.raises(AttributeError):
        registry_core.NoSuchThing  # noqa: B018


def test_version_mismatch_is_detected():
    """A core compiled for another version is refused at import with a clear message."""
    from registry_core._native import check_core_version
    from registry_core.errors import NativeCoreError

    check_core_version("1.2.3", "1.2.3")
    with pytest.raises(NativeCoreError, match="stale"):
        check_core_version("0.0.9", "1.2.3")
    assert issubclass(NativeCoreError, ImportError)
