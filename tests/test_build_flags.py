"""The C core's build flags (src/registry_core/_native/_build.py): the default stays -O3, each
size/link knob adds exactly its flags, bad values are refused, and what build_info() reports
names every choice but no profile path. Also the PGO training script's requirement reader."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "src" / "registry_core" / "_native" / "_build.py"
pytestmark = pytest.mark.skipif(not (ROOT / "csrc").is_dir(), reason="needs the source tree")

KNOBS = (
    "REGISTRY_CORE_OPT",
    "REGISTRY_CORE_LTO",
    "REGISTRY_CORE_GC_SECTIONS",
    "REGISTRY_CORE_STRIP",
    "REGISTRY_CORE_SANITIZE",
    "REGISTRY_CORE_PGO",
    "REGISTRY_CORE_PGO_DIR",
)
DEFAULT = "-std=c99 -O3 -fvisibility=hidden -Wall -Wextra -Werror=implicit-function-declaration"


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def build(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    for knob in KNOBS:
        monkeypatch.delenv(knob, raising=False)
    return _load(BUILD, "_rc_build_under_test")


def _reported(build: ModuleType) -> str:
    compile_args, link_args, _, _ = build._flags()
    return str(build._reported_flags(compile_args, link_args))


def test_default_flags_are_unchanged(build: ModuleType) -> None:
    compile_args, link_args, sanitize, pgo = build._flags()
    assert " ".join(compile_args) == DEFAULT
    assert link_args == [] and sanitize is False and pgo is False
    assert _reported(build) == DEFAULT


@pytest.mark.parametrize(
    ("env", "compile_extra", "link_extra"),
    [
        ({"REGISTRY_CORE_LTO": "1"}, ["-flto"], ["-flto", "-O3"]),
        (
            {"REGISTRY_CORE_GC_SECTIONS": "1"},
            ["-ffunction-sections", "-fdata-sections"],
            ["-Wl,--gc-sections" if sys.platform.startswith("linux") else "-Wl,-dead_strip"],
        ),
        (
            {"REGISTRY_CORE_STRIP": "1"},
            [],
            ["-s" if sys.platform.startswith("linux") else "-Wl,-x"],
        ),
        ({"REGISTRY_CORE_STRIP": "0", "REGISTRY_CORE_LTO": "0"}, [], []),
    ],
)
def test_each_knob_adds_its_flags(
    build: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    compile_extra: list[str],
    link_extra: list[str],
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    compile_args, link_args, _, _ = build._flags()
    assert compile_args == DEFAULT.split() + compile_extra
    assert link_args == link_extra
    for flag in compile_extra + link_extra:
        assert flag in _reported(build).split()


@pytest.mark.parametrize("level", ["2", "s"])
def test_optimisation_level(build: ModuleType, monkeypatch: pytest.MonkeyPatch, level: str) -> None:
    monkeypatch.setenv("REGISTRY_CORE_OPT", level)
    compile_args, _, _, _ = build._flags()
    assert f"-O{level}" in compile_args and "-O3" not in compile_args


@pytest.mark.parametrize(
    ("knob", "value"),
    [("REGISTRY_CORE_OPT", "fast"), ("REGISTRY_CORE_OPT", "0"), ("REGISTRY_CORE_LTO", "yes")],
)
def test_bad_values_are_refused(
    build: ModuleType, monkeypatch: pytest.MonkeyPatch, knob: str, value: str
) -> None:
    monkeypatch.setenv(knob, value)
    with pytest.raises(RuntimeError, match=knob):
        build._flags()


def test_sanitized_build_keeps_symbols(build: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGISTRY_CORE_SANITIZE", "1")
    monkeypatch.setenv("REGISTRY_CORE_STRIP", "1")
    compile_args, link_args, sanitize, _ = build._flags()
    assert sanitize and "-O1" in compile_args and "-O3" not in compile_args
    assert "-s" not in link_args  # ASan reports need the symbols


def test_profile_paths_are_not_reported(
    build: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("REGISTRY_CORE_PGO_DIR", str(tmp_path / "secret-dir"))
    for mode, pgo in (("generate", False), ("use", True)):
        monkeypatch.setenv("REGISTRY_CORE_PGO", mode)
        compile_args, link_args, _, used = build._flags()
        assert used is pgo
        assert any(str(tmp_path) in a for a in compile_args)
        assert "secret-dir" not in _reported(build)
        assert _reported(build).startswith(DEFAULT)


def test_pgo_training_reads_the_runtime_requirements() -> None:
    train = _load(ROOT / "scripts" / "pgo_train.py", "_rc_pgo_train_under_test")
    text = (ROOT / "pyproject.toml").read_text()
    reqs = train.runtime_requirements(text)
    assert "cffi>=1.16" in reqs and all(re.match(r"^[A-Za-z0-9]", r) for r in reqs)
    block = text[text.index("\ndependencies = [") : text.index("\n]", text.index("\ndependencies"))]
    assert len(reqs) == len(re.findall(r'^\s*"', block, re.M))
