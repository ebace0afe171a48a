"""Hostile flag sources (issue 10, R18 and R19): every malformed source is a FlagConfigError.

Each test writes the hostile source itself. At load time the error is raised; written to a file
that a running instance watches, the reload fails, the last good flags stay in force and
``reload_error`` says why (never an exception out of ``is_enabled``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc
import warnings
from pathlib import Path

import pytest

from registry_core.errors import FlagConfigError
from registry_core.flags import ENV_VAR, FeatureFlags, FlagReloadWarning, TargetingRule

NESTED = 5000  # arrays nested this deep made tomllib raise RecursionError


def _deep_array(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


# (file name, TOML text) pairs that crashed with a non-registry_core exception, or were
# accepted although docs/flags.md does not allow them.
HOSTILE_FILES = [
    ("flags.toml", "[flags.QUIC_TRANSPORT]\nrollout = inf\n"),  # OverflowError
    ("flags.toml", "[flags.QUIC_TRANSPORT]\nrollout = nan\n"),  # ValueError from int(nan)
    ("flags.toml", "[flags.QUIC_TRANSPORT]\nrollout = -inf\n"),
    ("flags.toml", f"[flags]\nQUIC_TRANSPORT = {_deep_array(NESTED)}\n"),  # RecursionError
    (
        "flags.toml",
        f"[flags.QUIC_TRANSPORT]\nattributes = {{ a = {_deep_array(NESTED)} }}\n",
    ),
    ("pyproject.toml", 'tool = "x"\n'),  # AttributeError
    ("pyproject.toml", "tool = 5\n"),
    ("pyproject.toml", '[tool]\nregistry-core = "flags"\n'),
    ("pyproject.toml", "[tool]\nregistry-core = [1, 2]\n"),
    ("flags.toml", "flags = 5\n"),
    ("flags.toml", "flags = [1, 2]\n"),
    # R19: rollouts outside the documented grammar (an integer 0..100 or "N%", ASCII digits)
    ("flags.toml", "[flags.QUIC_TRANSPORT]\nrollout = 25.7\n"),
    ("flags.toml", "[flags.QUIC_TRANSPORT]\nrollout = 25.0\n"),
    ("flags.toml", "[flags.QUIC_TRANSPORT]\nrollout = '5_0%'\n"),
    ("flags.toml", "[flags.QUIC_TRANSPORT]\nrollout = '+50%'\n"),
    ("flags.toml", "[flags.QUIC_TRANSPORT]\nrollout = '-0%'\n"),
    ("flags.toml", "[flags.QUIC_TRANSPORT]\nrollout = '\u0665\u0660%'\n"),  # Arabic-Indic 50
    ("flags.toml", "[flags.QUIC_TRANSPORT]\nrollout = '\uff15\uff10%'\n"),  # fullwidth 50
    ("flags.toml", "[flags.QUIC_TRANSPORT]\nrollout = ' 50%'\n"),
    ("flags.toml", "[flags.QUIC_TRANSPORT]\nrollout = '50 %'\n"),
    ("flags.toml", "[flags.QUIC_TRANSPORT]\nrollout = '50'\n"),
    ("flags.toml", "[flags.QUIC_TRANSPORT]\nrollout = '0x10%'\n"),
    ("flags.toml", "[flags.QUIC_TRANSPORT]\nrollout = 1e2\n"),
    ("flags.toml", "[flags]\nQUIC_TRANSPORT = '25.5%'\n"),
    ("flags.toml", "[flags]\nQUIC_TRANSPORT = '+25%'\n"),
    ("flags.toml", "[flags]\nQUIC_TRANSPORT = '2_5%'\n"),
    ("flags.toml", "[flags]\nQUIC_TRANSPORT = '\u0662\u0665%'\n"),
]
IDS = [f"{name}:{text[:40]!r}" for name, text in HOSTILE_FILES]


def _write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("name", "text"), HOSTILE_FILES, ids=IDS)
def test_hostile_file_at_load_is_a_flag_config_error(tmp_path, name, text):
    path = _write(tmp_path, name, text)
    with pytest.raises(FlagConfigError, match=str(path.name)):
        FeatureFlags(config=path, environ={})
    with pytest.raises(FlagConfigError):
        FeatureFlags.load(config=path, environ={})
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # nothing written


@pytest.mark.parametrize(("name", "text"), HOSTILE_FILES, ids=IDS)
def test_hostile_file_in_a_live_reload_keeps_the_last_good_flags(tmp_path, name, text):
    good = (
        "[tool.registry-core.flags]\nQUIC_TRANSPORT = true\n"
        if name == "pyproject.toml"
        else "[flags]\nQUIC_TRANSPORT = true\n"
    )
    path = _write(tmp_path, name, good)
    flags = FeatureFlags(config=path, environ={}, refresh_interval=0)
    assert flags.is_enabled("QUIC_TRANSPORT") and flags.reload_error is None
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(1, 1))  # a different signature even within the mtime resolution
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):  # every evaluation after the change: no exception, old values
            assert flags.is_enabled("QUIC_TRANSPORT") is True
            assert flags.is_enabled("QUIC_TRANSPORT", {"key": "client-1"}) is True
        assert flags.describe()["QUIC_TRANSPORT"].value is True
    assert isinstance(flags.reload_error, FlagConfigError)
    assert path.name in str(flags.reload_error)
    assert any(issubclass(w.category, FlagReloadWarning) for w in caught)


ENV_HOSTILE = [
    "QUIC_TRANSPORT=+50%",
    "QUIC_TRANSPORT=5_0%",
    "QUIC_TRANSPORT=25.7%",
    "QUIC_TRANSPORT=\u0665\u0660%",
    "QUIC_TRANSPORT=-0%",
    "QUIC_TRANSPORT=101%",
    "QUIC_TRANSPORT=1e2%",
    "QUIC_TRANSPORT=%",
    "QUIC_TRANSPORT=" + "9" * 5000 + "%",  # int() of 5000 digits: ValueError on 3.11+
]


@pytest.mark.parametrize("text", ENV_HOSTILE, ids=[t[:30] for t in ENV_HOSTILE])
def test_hostile_environment_string_is_a_flag_config_error(text):
    with pytest.raises(FlagConfigError, match=ENV_VAR):
        FeatureFlags(environ={ENV_VAR: text})
    live = {ENV_VAR: "QUIC_TRANSPORT=on"}
    flags = FeatureFlags(environ=live, refresh_interval=0)
    live[ENV_VAR] = text
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FlagReloadWarning)
        assert flags.is_enabled("QUIC_TRANSPORT") is True
    assert isinstance(flags.reload_error, FlagConfigError)


@pytest.mark.parametrize(
    "value",
    [25.7, float("inf"), float("nan"), True, "5_0%", "+50%", "\u0665\u0660%", "50", -1, 101],
    ids=repr,
)
def test_hostile_rollout_in_code_is_a_flag_config_error(value):
    with pytest.raises(FlagConfigError, match="rollout"):
        FeatureFlags({"QUIC_TRANSPORT": {"rollout": value}})
    with pytest.raises(FlagConfigError, match="rollout"):
        TargetingRule(rollout=value)


@pytest.mark.parametrize("value", [0, 50, 100, "0%", "7%", "100%", "007%"], ids=repr)
def test_documented_rollouts_are_accepted(value):
    expected = int(value[:-1]) if isinstance(value, str) else value
    flags = FeatureFlags({"QUIC_TRANSPORT": {"rollout": value}})
    rule = flags.describe()["QUIC_TRANSPORT"].value
    assert isinstance(rule, TargetingRule) and rule.rollout == expected


def test_deep_nesting_is_refused_with_bounded_memory(tmp_path):
    """A 200,000-deep array (400 KB) is refused without a traceback's worth of memory."""
    path = _write(tmp_path, "flags.toml", f"[flags]\nQUIC_TRANSPORT = {_deep_array(200_000)}\n")
    tracemalloc.start()
    try:
        with pytest.raises(FlagConfigError, match="nested"):
            FeatureFlags(config=path, environ={})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # measured 4.0 MiB (the 400 KB text, decoded, and the parser's frames up to the recursion
    # limit); allowance 16 MiB
    assert peak < 16 << 20, peak


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("pyproject.toml", 'tool = "x"\n'),
        ("pyproject.toml", "[tool.registry-core.flags]\n" "QUIC_TRANSPORT = { rollout = inf }\n"),
    ],
    ids=["tool-is-a-string", "rollout-inf"],
)
def test_flags_cli_reports_a_hostile_pyproject_without_a_traceback(tmp_path, name, text):
    _write(tmp_path, name, text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_CORE_FLAGS")}
    out = subprocess.run(
        [sys.executable, "-m", "registry_core.flags"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out
    assert "Traceback" not in out.stderr
    assert out.stderr.startswith("error: ") and "pyproject.toml" in out.stderr
