"""Feature flags gate brotli and zstd (real FeatureFlags objects, overrides in code)."""

from __future__ import annotations

import pytest

from registry_core import Compressor
from registry_core.compress import Dictionary
from registry_core.errors import CompressionError, InvalidTypeError

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


def test_a_pyproject_in_the_working_directory_does_not_change_the_compressor(
    monkeypatch, tmp_path, records
):
    """Flags at the edges (issue 9): an embedding application's cwd is not configuration."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(flags_mod.ENV_VAR, raising=False)
    monkeypatch.delenv(flags_mod.ENV_FILE_VAR, raising=False)
    (tmp_path / "pyproject.toml").write_text(
        "[tool.registry-core.flags]\nBROTLI_COMPRESSION = false\nZSTD_COMPRESSION = false\n"
    )
    flags_mod.set_default_flags(None)
    assert Compressor("br").coding == "br" and Compressor("zstd").coding == "zstd"
    assert Compressor.negotiate("br, zstd;q=0.9, gzip;q=0.5") == "br"
    assert Compressor.auto(b"\n".join(records) * 50, "text/plain").coding == "zstd"
    assert flags_mod.flag_enabled(None, "BROTLI_COMPRESSION")
    # ... while an explicit FeatureFlags.load() reads it, and reaches the Compressor when passed
    loaded = flags_mod.FeatureFlags.load()
    with pytest.raises(CompressionError, match="BROTLI_COMPRESSION"):
        Compressor("br", flags=loaded)
    assert Compressor.negotiate("br, zstd;q=0.9, gzip;q=0.5", flags=loaded) == "gzip"


def test_set_default_flags_is_honoured_and_read_once_per_compressor():
    flags_mod.set_default_flags(_flags(BROTLI_COMPRESSION=False))
    try:
        with pytest.raises(CompressionError, match="BROTLI_COMPRESSION"):
            Compressor("br")
        assert Compressor.negotiate("br, gzip;q=0.5") == "gzip"
    finally:
        flags_mod.set_default_flags(None)
    # a Compressor built while a coding was on keeps working: flags are read at construction
    live = {flags_mod.ENV_VAR: "BROTLI_COMPRESSION=on"}
    flags = flags_mod.FeatureFlags(environ=live, refresh_interval=0)
    c = Compressor("br", flags=flags)
    live[flags_mod.ENV_VAR] = "BROTLI_COMPRESSION=off"
    assert c.decompress(c.compress(b"payload")) == b"payload"
    with pytest.raises(CompressionError):
        Compressor("br", flags=flags)


def test_flags_of_the_wrong_type_are_refused():
    with pytest.raises(InvalidTypeError, match="FeatureFlags"):
        Compressor("zstd", flags={"ZSTD_COMPRESSION": False})  # type: ignore[arg-type]
