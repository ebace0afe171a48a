"""The FeatureFlags contract other components code against, the catalogue, the shared instance."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

import registry_core
import registry_core.flags as flags_pkg
from registry_core.errors import InvalidArgumentError, InvalidTypeError, UnknownFlagError
from registry_core.flags import (
    CATALOGUE,
    ENV_VAR,
    FeatureFlags,
    Stage,
    default_flags,
    flag_enabled,
    resolve_flags,
    set_default_flags,
)

CONTRACT_NAMES = {
    "QUIC_TRANSPORT",
    "LINUX_PARITY",
    "BROTLI_COMPRESSION",
    "CONNECTION_COALESCE",
    "INCREMENTAL_CACHE",
    "DELTA_STABLE",
    "DELTA_AGGREGATOR",
    "ZSTD_COMPRESSION",
    "PGO_BUILDS",
    "PQ_KEY_EXCHANGE",
    "ML_LEARNED_EVICTION",
    "ML_PREDICTIVE_PREFETCH",
    "ML_ANOMALY_DETECTION",
}


@pytest.fixture(autouse=True)
def _fresh_default():
    set_default_flags(None)
    yield
    set_default_flags(None)


def test_catalogue_is_the_contract():
    assert set(CATALOGUE) == CONTRACT_NAMES
    for name, flag in CATALOGUE.items():
        assert flag.name == name
        assert flag.description and flag.component
        assert isinstance(flag.stage, Stage)
    with pytest.raises(TypeError):
        CATALOGUE["NEW"] = CATALOGUE["QUIC_TRANSPORT"]  # read-only


def test_defaults_follow_the_stage():
    flags = FeatureFlags()
    expected = {Stage.EXPERIMENTAL: False, Stage.BETA: True, Stage.STABLE: True}
    for name, flag in CATALOGUE.items():
        assert flags.is_enabled(name) is expected[flag.stage] is flag.default
    # The behaviour the components rely on out of the box:
    assert not flags.is_enabled("QUIC_TRANSPORT")
    assert flags.is_enabled("BROTLI_COMPRESSION") and flags.is_enabled("ZSTD_COMPRESSION")
    assert flags.is_enabled("DELTA_STABLE") and flags.is_enabled("CONNECTION_COALESCE")


def test_public_names_are_pinned():
    assert sorted(flags_pkg.__all__) == sorted(
        [
            "CATALOGUE",
            "flag_enabled",
            "ENV_FILE_VAR",
            "ENV_VAR",
            "FeatureFlags",
            "Flag",
            "MURMUR_BACKEND",
            "FlagReloadWarning",
            "FlagState",
            "RegistryCoreProvider",
            "Stage",
            "TargetingRule",
            "default_flags",
            "murmur3_32",
            "resolve_flags",
            "rollout_bucket",
            "set_default_flags",
            "stage_default",
        ]
    )
    assert registry_core.FeatureFlags is FeatureFlags


def test_unknown_flag_names_the_closest_known_name():
    flags = FeatureFlags()
    with pytest.raises(UnknownFlagError, match="did you mean 'CONNECTION_COALESCE'"):
        flags.is_enabled("CONNECTION_COALESCING")
    with pytest.raises(UnknownFlagError, match="did you mean 'DELTA_STABLE'"):
        flags.is_enabled("delta_stable")
    with pytest.raises(UnknownFlagError):
        flags.is_enabled(None)  # type: ignore[arg-type]
    with pytest.raises(UnknownFlagError):
        flags.describe_one("NOPE")


def test_default_flags_are_the_catalogue_defaults_not_the_environment(monkeypatch, tmp_path):
    """Flags at the edges: nothing is read implicitly by components (issue 9)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(ENV_VAR, "QUIC_TRANSPORT=on,BROTLI_COMPRESSION=off")
    (tmp_path / "pyproject.toml").write_text(
        "[tool.registry-core.flags]\nINCREMENTAL_CACHE = true\nZSTD_COMPRESSION = false\n"
    )
    first = default_flags()
    assert first is default_flags() is resolve_flags(None)
    for name, flag in CATALOGUE.items():
        assert first.is_enabled(name) is flag.default
        assert flag_enabled(None, name) is flag.default
        assert first.describe()[name].source == f"default ({flag.stage})"
    assert first.config_path is None
    # the explicit call still reads both, as the CLI and `serve` do
    loaded = FeatureFlags.load()
    assert loaded.is_enabled("QUIC_TRANSPORT") and not loaded.is_enabled("BROTLI_COMPRESSION")
    assert loaded.is_enabled("INCREMENTAL_CACHE") and not loaded.is_enabled("ZSTD_COMPRESSION")
    assert loaded.config_path == (tmp_path / "pyproject.toml").resolve()


def test_set_default_flags_load_is_how_a_host_opts_in(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ENV_VAR, raising=False)
    py = tmp_path / "pyproject.toml"
    py.write_text("[tool.registry-core.flags]\nINCREMENTAL_CACHE = false\n")
    set_default_flags(FeatureFlags.load())
    flags = default_flags()
    assert not flag_enabled(None, "INCREMENTAL_CACHE")
    py.write_text("[tool.registry-core.flags]\nINCREMENTAL_CACHE = true \n")
    flags.refresh()  # what the next evaluation after the 1 s interval does
    assert flag_enabled(None, "INCREMENTAL_CACHE")
    set_default_flags(None)  # back to the catalogue defaults, not to a new load()
    assert not flag_enabled(None, "INCREMENTAL_CACHE")


def test_set_default_flags_and_resolve_flags():
    mine = FeatureFlags({"BROTLI_COMPRESSION": False})
    set_default_flags(mine)
    assert default_flags() is mine
    assert resolve_flags(None) is mine
    other = FeatureFlags()
    assert resolve_flags(other) is other
    with pytest.raises(InvalidTypeError, match="FeatureFlags"):
        resolve_flags({"BROTLI_COMPRESSION": False})  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError):
        set_default_flags("on")  # type: ignore[arg-type]


def test_bad_refresh_interval():
    with pytest.raises(InvalidArgumentError):
        FeatureFlags(refresh_interval=-1)


def test_concurrent_evaluation_during_reloads(tmp_path):
    """Readers never see an error or a half-applied configuration while the file flips."""
    path = tmp_path / "flags.toml"
    on = "[flags]\nQUIC_TRANSPORT = true\nPGO_BUILDS = true\n"
    off = "[flags]\nQUIC_TRANSPORT = false\nPGO_BUILDS = false\n"
    path.write_text(off)
    flags = FeatureFlags.load(config=path, environ={}, refresh_interval=0)
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                states = flags.describe()
                # both flags come from the same file version
                assert states["QUIC_TRANSPORT"].value == states["PGO_BUILDS"].value
                flags.is_enabled("QUIC_TRANSPORT")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(200):
        tmp = tmp_path / f"f{i}.toml"
        tmp.write_text(on if i % 2 == 0 else off)
        tmp.replace(path)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    flags.refresh()
    assert flags.is_enabled("QUIC_TRANSPORT") is False  # last write was "off" (i = 199)


def test_importing_flags_stays_light():
    code = (
        "import sys, registry_core.flags as f; f.FeatureFlags.load().is_enabled('QUIC_TRANSPORT');"
        "print(sorted(m for m in ('openfeature', 'httpx', 'zstandard', 'brotli', 'aioquic')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_flags_import_no_other_component():
    """Flags are a leaf: only registry_core.errors may be imported from the package."""
    code = (
        "import sys, registry_core.flags;"
        "print(sorted(m for m in sys.modules if m.startswith('registry_core.')"
        " and not m.startswith(('registry_core.flags', 'registry_core._native',"
        " 'registry_core._version', 'registry_core.errors'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_evaluate_details_returns_the_deciding_state():
    flags = FeatureFlags({"INCREMENTAL_CACHE": {"tenants": ["acme"]}})
    value, state = flags.evaluate_details("INCREMENTAL_CACHE", {"tenant": "acme"})
    assert value is True and state.targeted and state.source == "override"
    value, state = flags.evaluate_details("QUIC_TRANSPORT")
    assert value is False and state.source == "default (experimental)"
    with pytest.raises(UnknownFlagError, match="QUIC_TRANSPORT"):
        flags.evaluate_details("QUIC")


def test_overrides_must_be_a_mapping():
    with pytest.raises(InvalidTypeError, match="mapping"):
        FeatureFlags("QUIC_TRANSPORT=on")  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError, match="mapping"):
        FeatureFlags().with_overrides([("QUIC_TRANSPORT", True)])  # type: ignore[arg-type]
