"""Sources: environment string, TOML files, precedence, describe(), reload without restart."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry_core.errors import FlagConfigError, FlagError, UnknownFlagError
from registry_core.flags import (
    CATALOGUE,
    ENV_FILE_VAR,
    ENV_VAR,
    FeatureFlags,
    Flag,
    FlagReloadWarning,
    Stage,
    TargetingRule,
)
from registry_core.flags._sources import parse_env

NAMES = sorted(CATALOGUE)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def bump(path: Path, text: str) -> None:
    """Rewrite a file so its signature surely changes, even on coarse-mtime filesystems."""
    before = os.stat(path)
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))


# -- environment ------------------------------------------------------------------------------


def test_env_words_and_percentages():
    env = {ENV_VAR: " QUIC_TRANSPORT=on, BROTLI_COMPRESSION=OFF ,ZSTD_COMPRESSION=false,"
                    "PGO_BUILDS=1,LINUX_PARITY=0,INCREMENTAL_CACHE=yes,DELTA_STABLE=No,"
                    "CONNECTION_COALESCE=25%,"}  # fmt: skip
    flags = FeatureFlags(environ=env)
    assert flags.is_enabled("QUIC_TRANSPORT")
    assert not flags.is_enabled("BROTLI_COMPRESSION")
    assert not flags.is_enabled("ZSTD_COMPRESSION")
    assert flags.is_enabled("PGO_BUILDS")
    assert not flags.is_enabled("LINUX_PARITY")
    assert flags.is_enabled("INCREMENTAL_CACHE")
    assert not flags.is_enabled("DELTA_STABLE")
    state = flags.describe()["CONNECTION_COALESCE"]
    assert isinstance(state.value, TargetingRule) and state.value.rollout == 25
    assert state.source == f"env {ENV_VAR}"


@pytest.mark.parametrize(
    ("text", "error", "match"),
    [
        ("QUIC_TRANSPORT", FlagConfigError, "malformed item 'QUIC_TRANSPORT'"),
        ("QUIC_TRANSPORT=", FlagConfigError, "malformed item"),
        ("=on", FlagConfigError, "malformed item"),
        ("QUIC_TRANSPORT=maybe", FlagConfigError, "'maybe' is not one of"),
        ("QUIC_TRANSPORT=150%", FlagConfigError, "outside 0..100"),
        ("QUIC_TRANSPORT=2.5%", FlagConfigError, "whole percentage"),
        ("QUIC_TRANSPORT=on,QUIC_TRANSPORT=off", FlagConfigError, "given twice"),
        ("QUIK_TRANSPORT=on", UnknownFlagError, "did you mean 'QUIC_TRANSPORT'"),
        ("quic_transport=on", UnknownFlagError, "did you mean 'QUIC_TRANSPORT'"),
        ("BROTLI=on", UnknownFlagError, "BROTLI_COMPRESSION"),
    ],
)
def test_env_errors_name_the_source(text, error, match):
    with pytest.raises(error, match=match) as info:
        FeatureFlags(environ={ENV_VAR: text})
    assert ENV_VAR in str(info.value)


def test_unknown_name_far_from_everything_lists_the_catalogue():
    with pytest.raises(UnknownFlagError, match="known flags: QUIC_TRANSPORT"):
        FeatureFlags(environ={ENV_VAR: "ZZZZZZZZZZZZZZZZZZZZ=on"})


value_words = st.sampled_from(["on", "off", "true", "false", "1", "0", "yes", "no", "ON", "Off"])


@given(
    st.dictionaries(
        st.sampled_from(NAMES),
        st.one_of(value_words, st.integers(0, 100).map(lambda p: f"{p}%")),
    ),
    st.sampled_from(["", " ", "  "]),
)
def test_env_parse_matches_its_input(spec, pad):
    """Every well-formed string parses to exactly what it says."""
    text = ",".join(f"{pad}{k}{pad}={pad}{v}{pad}" for k, v in spec.items())
    parsed = parse_env(text, CATALOGUE)
    assert set(parsed) == set(spec)
    for name, word in spec.items():
        value = parsed[name]
        if word.endswith("%"):
            assert isinstance(value, TargetingRule) and value.rollout == int(word[:-1])
        else:
            assert value is (word.lower() in {"on", "true", "1", "yes"})


@given(st.text(max_size=40))
def test_env_parse_garbage_raises_only_flag_errors(text):
    try:
        parse_env(text, CATALOGUE)
    except (FlagConfigError, UnknownFlagError) as exc:
        assert ENV_VAR in str(exc)


# -- files ------------------------------------------------------------------------------------


def test_explicit_file_with_flags_table(tmp_path):
    path = write(
        tmp_path / "flags.toml",
        """
[flags]
QUIC_TRANSPORT = true
BROTLI_COMPRESSION = "off"
CONNECTION_COALESCE = "40%"

[flags.INCREMENTAL_CACHE]
tenants = ["acme"]
attributes = { region = "eu" }
""",
    )
    flags = FeatureFlags.load(config=path, environ={})
    assert flags.is_enabled("QUIC_TRANSPORT")
    assert not flags.is_enabled("BROTLI_COMPRESSION")
    assert flags.is_enabled("INCREMENTAL_CACHE", {"tenant": "acme"})
    assert not flags.is_enabled(
        "INCREMENTAL_CACHE", {"tenant": "x", "attributes": {"region": "us"}}
    )
    desc = flags.describe()
    assert desc["QUIC_TRANSPORT"].source == f"file {path} [flags]"
    assert desc["DELTA_STABLE"].source == "default (stable)"
    assert flags.config_path == path


def test_pyproject_found_by_walking_up_from_cwd(tmp_path, monkeypatch):
    write(
        tmp_path / "pyproject.toml",
        """
[project]
name = "host-registry"

[tool.registry-core.flags]
QUIC_TRANSPORT = "on"
DELTA_STABLE = false
""",
    )
    deep = tmp_path / "src" / "pkg" / "sub"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    flags = FeatureFlags.load(environ={})
    assert flags.is_enabled("QUIC_TRANSPORT")
    assert not flags.is_enabled("DELTA_STABLE")
    assert flags.describe()["QUIC_TRANSPORT"].source == (
        f"file {tmp_path.resolve() / 'pyproject.toml'} [tool.registry-core.flags]"
    )


def test_pyproject_without_the_table_sets_nothing(tmp_path):
    write(tmp_path / "pyproject.toml", "[project]\nname = 'x'\n")
    flags = FeatureFlags.load(environ={}, start=tmp_path)
    assert all(s.source.startswith("default") for s in flags.describe().values())


def test_discovery_can_be_turned_off(tmp_path):
    write(tmp_path / "pyproject.toml", "[tool.registry-core.flags]\nQUIC_TRANSPORT = true\n")
    assert FeatureFlags.load(environ={}, start=tmp_path).is_enabled("QUIC_TRANSPORT")
    off = FeatureFlags.load(environ={}, start=tmp_path, discover=False)
    assert not off.is_enabled("QUIC_TRANSPORT")
    assert off.config_path is None


def test_file_named_by_environment(tmp_path):
    path = write(tmp_path / "ops" / "flags.toml", "[flags]\nPGO_BUILDS = true\n")
    flags = FeatureFlags.load(environ={ENV_FILE_VAR: str(path)}, start=tmp_path)
    assert flags.is_enabled("PGO_BUILDS")
    assert flags.config_path == path


@pytest.mark.parametrize(
    ("name", "text", "error", "match"),
    [
        ("flags.toml", "[flags\nQUIC_TRANSPORT = true", FlagConfigError, "invalid TOML"),
        ("flags.toml", "[other]\nx = 1\n", FlagConfigError, r"no \[flags\] table"),
        ("flags.toml", "flags = 3\n", FlagConfigError, "must be a table"),
        ("flags.toml", "[flags]\nQUIC_TRANSPORT = 1\n", FlagConfigError, "is not true/false"),
        ("flags.toml", "[flags]\nQUIC_TRANSPORT = 'sometimes'\n", FlagConfigError, "sometimes"),
        ("flags.toml", "[flags]\nQUIC_TRANSPRT = true\n", UnknownFlagError, "QUIC_TRANSPORT"),
        ("flags.toml", "[flags.QUIC_TRANSPORT]\nrolout = 5\n", FlagConfigError, "'rollout'"),
        ("pyproject.toml", "[tool.registry-core.flags]\nZSTD = true\n", UnknownFlagError, "ZSTD_"),
        ("pyproject.toml", "[tool.registry-core]\nflags = 'on'\n", FlagConfigError, "table"),
    ],
)
def test_invalid_files_name_the_file(tmp_path, name, text, error, match):
    path = write(tmp_path / name, text)
    with pytest.raises(error, match=match) as info:
        FeatureFlags.load(config=path, environ={})
    assert str(path) in str(info.value)


def test_binary_and_missing_files(tmp_path):
    path = tmp_path / "flags.toml"
    path.write_bytes(b"[flags]\n\xff\xfe = true\n")
    with pytest.raises(FlagConfigError, match="not UTF-8"):
        FeatureFlags.load(config=path, environ={})
    with pytest.raises(FlagConfigError, match="does not exist"):
        FeatureFlags.load(config=tmp_path / "nope.toml", environ={})
    with pytest.raises(FlagConfigError, match="does not exist"):
        FeatureFlags(config=tmp_path / "nope.toml")


# -- precedence and describe ------------------------------------------------------------------


def test_precedence_override_env_file_default(tmp_path):
    path = write(
        tmp_path / "flags.toml",
        "[flags]\nQUIC_TRANSPORT = true\nBROTLI_COMPRESSION = false\nPGO_BUILDS = true\n",
    )
    env = {ENV_VAR: "QUIC_TRANSPORT=off,BROTLI_COMPRESSION=on"}
    flags = FeatureFlags.load({"BROTLI_COMPRESSION": False}, config=path, environ=env)
    desc = flags.describe()
    assert (desc["BROTLI_COMPRESSION"].value, desc["BROTLI_COMPRESSION"].source) == (
        False,
        "override",
    )
    assert (desc["QUIC_TRANSPORT"].value, desc["QUIC_TRANSPORT"].source) == (
        False,
        f"env {ENV_VAR}",
    )
    assert (desc["PGO_BUILDS"].value, desc["PGO_BUILDS"].source) == (True, f"file {path} [flags]")
    assert (desc["LINUX_PARITY"].value, desc["LINUX_PARITY"].source) == (True, "default (beta)")
    assert desc["QUIC_TRANSPORT"].stage is Stage.EXPERIMENTAL
    assert set(desc) == set(CATALOGUE)
    assert (
        str(desc["QUIC_TRANSPORT"])
        == "QUIC_TRANSPORT [experimental] = off (from env REGISTRY_CORE_FLAGS)"
    )


def test_constructor_is_hermetic(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, "QUIC_TRANSPORT=on")
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "pyproject.toml", "[tool.registry-core.flags]\nPGO_BUILDS = true\n")
    assert not FeatureFlags().is_enabled("QUIC_TRANSPORT")
    assert not FeatureFlags().is_enabled("PGO_BUILDS")
    loaded = FeatureFlags.load()
    assert loaded.is_enabled("QUIC_TRANSPORT") and loaded.is_enabled("PGO_BUILDS")


def test_with_overrides_layers_on_the_same_sources(tmp_path):
    path = write(tmp_path / "flags.toml", "[flags]\nPGO_BUILDS = true\n")
    base = FeatureFlags.load(config=path, environ={ENV_VAR: "QUIC_TRANSPORT=on"})
    derived = base.with_overrides({"QUIC_TRANSPORT": False})
    assert derived.is_enabled("PGO_BUILDS") and not derived.is_enabled("QUIC_TRANSPORT")
    assert base.is_enabled("QUIC_TRANSPORT")


def test_unknown_override_names_the_closest():
    with pytest.raises(UnknownFlagError, match="did you mean 'BROTLI_COMPRESSION'") as info:
        FeatureFlags({"BROTLI_COMPRESION": False})
    assert "override" in str(info.value)
    assert isinstance(info.value, KeyError)


# -- reload -----------------------------------------------------------------------------------


def test_changed_file_is_picked_up_without_restart(tmp_path):
    path = write(tmp_path / "flags.toml", "[flags]\nQUIC_TRANSPORT = false\n")
    flags = FeatureFlags.load(config=path, environ={}, refresh_interval=0)
    assert not flags.is_enabled("QUIC_TRANSPORT")
    bump(path, "[flags]\nQUIC_TRANSPORT = true\n")
    assert flags.is_enabled("QUIC_TRANSPORT")  # next evaluation re-checks (interval 0)
    bump(path, "[flags]\n")
    assert not flags.is_enabled("QUIC_TRANSPORT")
    assert flags.describe()["QUIC_TRANSPORT"].source == "default (experimental)"


def test_reload_is_rate_limited(tmp_path):
    path = write(tmp_path / "flags.toml", "[flags]\nQUIC_TRANSPORT = false\n")
    flags = FeatureFlags.load(config=path, environ={}, refresh_interval=3600)
    bump(path, "[flags]\nQUIC_TRANSPORT = true\n")
    assert not flags.is_enabled("QUIC_TRANSPORT")  # not re-checked within the interval
    assert flags.refresh() is True  # an explicit refresh checks now
    assert flags.is_enabled("QUIC_TRANSPORT")
    assert flags.refresh() is False


def test_atomic_replace_is_picked_up(tmp_path):
    path = write(tmp_path / "flags.toml", "[flags]\nQUIC_TRANSPORT = false\n")
    flags = FeatureFlags.load(config=path, environ={}, refresh_interval=3600)
    new = write(tmp_path / "flags.toml.new", "[flags]\nQUIC_TRANSPORT = true\n")
    os.replace(new, path)  # same size, maybe same mtime: the inode differs
    flags.refresh()
    assert flags.is_enabled("QUIC_TRANSPORT")


def test_broken_file_on_reload_keeps_last_good_values_and_warns(tmp_path):
    path = write(tmp_path / "flags.toml", "[flags]\nQUIC_TRANSPORT = true\n")
    flags = FeatureFlags.load(config=path, environ={}, refresh_interval=3600)
    bump(path, "[flags]\nQUIC_TRANSPORT = tru\n")
    with pytest.warns(FlagReloadWarning, match=r"invalid TOML.*keeping its previous"):
        flags.refresh()
    assert isinstance(flags.reload_error, FlagConfigError)
    assert flags.is_enabled("QUIC_TRANSPORT")
    bump(path, "[flags]\nQUIC_TRANSPORT = false\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        flags.refresh()
    assert flags.reload_error is None
    assert not flags.is_enabled("QUIC_TRANSPORT")


def test_deleted_file_on_reload_warns(tmp_path):
    path = write(tmp_path / "flags.toml", "[flags]\nQUIC_TRANSPORT = true\n")
    flags = FeatureFlags.load(config=path, environ={}, refresh_interval=3600)
    path.unlink()
    with pytest.warns(FlagReloadWarning, match="was removed"):
        flags.refresh()
    assert flags.is_enabled("QUIC_TRANSPORT")


def test_environment_change_is_picked_up(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, "QUIC_TRANSPORT=off")
    flags = FeatureFlags.load(start=tmp_path, refresh_interval=0)
    assert not flags.is_enabled("QUIC_TRANSPORT")
    monkeypatch.setenv(ENV_VAR, "QUIC_TRANSPORT=on")
    assert flags.is_enabled("QUIC_TRANSPORT")
    monkeypatch.setenv(ENV_VAR, "QUIC_TRANSPORT=sideways")
    with pytest.warns(FlagReloadWarning, match=ENV_VAR):
        assert flags.is_enabled("QUIC_TRANSPORT")


# -- deprecated stage -------------------------------------------------------------------------


def test_deprecated_flags_default_off_and_warn_when_set():
    catalogue = {
        "OLD_WIRE": Flag("OLD_WIRE", Stage.DEPRECATED, "wire", "old header names"),
        "NEW": Flag("NEW", Stage.BETA, "wire", "new"),
    }
    flags = FeatureFlags(catalogue=catalogue)
    assert not flags.is_enabled("OLD_WIRE") and flags.is_enabled("NEW")
    with pytest.warns(DeprecationWarning, match="OLD_WIRE is deprecated"):
        flags = FeatureFlags({"OLD_WIRE": True}, catalogue=catalogue)
    assert flags.is_enabled("OLD_WIRE")


def test_a_broken_file_does_not_hold_back_an_environment_change(monkeypatch, tmp_path):
    path = write(tmp_path / "flags.toml", "[flags]\nPGO_BUILDS = true\n")
    monkeypatch.setenv(ENV_VAR, "QUIC_TRANSPORT=off")
    flags = FeatureFlags.load(config=path, refresh_interval=3600)
    bump(path, "[flags]\nPGO_BUILDS = tru\n")
    monkeypatch.setenv(ENV_VAR, "QUIC_TRANSPORT=on")
    with pytest.warns(FlagReloadWarning, match="invalid TOML"):
        flags.refresh()
    assert flags.is_enabled("QUIC_TRANSPORT")  # the environment change applied
    assert flags.is_enabled("PGO_BUILDS")  # the file's last good value kept


# -- TOML properties --------------------------------------------------------------------------

idents = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-_0123456789", min_size=1, max_size=8)
rules = st.fixed_dictionaries(
    {},
    optional={
        "enabled": st.booleans(),
        "rollout": st.integers(0, 100),
        "group": idents,
        "tenants": st.lists(idents, max_size=3),
        "exclude_keys": st.lists(idents, max_size=3),
        "attributes": st.dictionaries(idents, st.one_of(idents, st.lists(idents, min_size=1))),
    },
)
toml_values = st.one_of(
    st.booleans(), st.sampled_from(["on", "off", "yes", "0"]), st.integers(0, 100), rules
)


def to_toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f'"{value}%"'
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string of this alphabet is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(to_toml(v) for v in value) + "]"
    items = []
    for k, v in value.items():
        # a rule's rollout is a TOML integer; an attribute that happens to be named
        # "rollout" holds strings like any other attribute
        raw = k == "rollout" and isinstance(v, int) and not isinstance(v, bool)
        items.append(f"{k} = {v if raw else to_toml(v)}")
    return "{ " + ", ".join(items) + " }"


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(NAMES), toml_values, max_size=5))
def test_toml_file_parses_to_what_it_says(tmp_path, spec):
    path = tmp_path / "flags.toml"
    path.write_text("[flags]\n" + "".join(f"{k} = {to_toml(v)}\n" for k, v in spec.items()))
    flags = FeatureFlags(config=path)
    desc = flags.describe()
    for name, written in spec.items():
        value = desc[name].value
        assert desc[name].source == f"file {path} [flags]"
        if isinstance(written, bool):
            assert value is written
        elif isinstance(written, str):
            assert value is (written in {"on", "yes"})
        elif isinstance(written, int):
            assert isinstance(value, TargetingRule) and value.rollout == written
        else:
            assert value == TargetingRule.from_mapping(written)
            assert value.rollout == written.get("rollout")
            assert value.tenants == frozenset(written.get("tenants", ()))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=120))
def test_corrupt_files_raise_only_flag_errors(tmp_path, junk):
    """Random bytes after a valid header: either parsed or a FlagError naming the file."""
    path = tmp_path / "flags.toml"
    path.write_bytes(b"[flags]\nQUIC_TRANSPORT = true\n" + junk)
    try:
        FeatureFlags(config=path)
    except FlagError as exc:
        assert str(path) in str(exc)
