"""Feature flags gate brotli and zstd (real FeatureFlags objects, overrides in code)."""

from __future__ import annotations

import pytest

from registry_core import Compressor
from registry_core.compress import Dictionary
from registry_core.errors import CompressionError

flags_mod = pytest.importorskip("registry_core.flags")


def _flags(**values):
    return flags_mod.FeatureFlags(overrides=values)


def test_brotli_off_refuses_br_and_negotiation_skips_it():
    off = _flags(BROTLI_COMPRESSION=False)
    with pytest.raises(CompressionError, match="BROTLI_COMPRESSION"):
        Compressor("br", flags=off)
    assert Compressor.negotiate("br", flags=off) == "identity"
    assert Compressor.negotiate("br, gzip;q=0.5", flags=off) == "gzip"
    assert Compressor.negotiate("br, gzip;q=0.5", flags=_flags(BROTLI_COMPRESSION=True)) == "br"


def test_zstd_off_refuses_zstd_and_dcz():
    off = _flags(ZSTD_COMPRESSION=False)
    with pytest.raises(CompressionError, match="ZSTD_COMPRESSION"):
        Compressor("zstd", flags=off)
    with pytest.raises(CompressionError, match="ZSTD_COMPRESSION"):
        Compressor("dcz", dictionary=Dictionary(b"x" * 100), flags=off)
    assert Compressor.negotiate("zstd, br;q=0.9", flags=off) == "br"
    assert Compressor.negotiate("dcz, zstd", ("dcz", "zstd", "gzip"), flags=off) == "identity"
    Compressor("gzip", flags=off)  # gzip is never gated


def test_auto_respects_flags(records):
    doc = b"\n".join(records) * 50
    both_off = _flags(ZSTD_COMPRESSION=False, BROTLI_COMPRESSION=False)
    assert Compressor.auto(doc, "text/plain", flags=both_off).coding == "gzip"
    assert Compressor.auto(doc, "text/plain", flags=_flags(ZSTD_COMPRESSION=False)).coding == "br"
    small = Compressor.auto(records[0], flags=_flags(BROTLI_COMPRESSION=False))
    assert (small.coding, small.level) == ("zstd", 19)


def test_environment_source_turns_brotli_off():
    """A deployment's REGISTRY_CORE_FLAGS reaches the Compressor through FeatureFlags.load."""
    env = {flags_mod.ENV_VAR: "BROTLI_COMPRESSION=off"}
    loaded = flags_mod.FeatureFlags.load(environ=env, discover=False)
    with pytest.raises(CompressionError, match="BROTLI_COMPRESSION"):
        Compressor("br", flags=loaded)
    assert Compressor.negotiate("br, gzip;q=0.1", flags=loaded) == "gzip"
