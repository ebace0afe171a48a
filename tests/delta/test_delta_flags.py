"""Flags at the edges: DeltaAggregator reads ``flags`` once in __init__; without flags the
catalogue default of DELTA_STABLE applies, whatever the environment, a pyproject.toml in the
working directory or the process-wide default flags say."""

from __future__ import annotations

import pytest

from registry_core import DeltaAggregator
from registry_core.errors import InvalidTypeError
from registry_core.flags import FeatureFlags


def test_no_flags_means_the_catalogue_default(tmp_path, monkeypatch):
    monkeypatch.setenv("REGISTRY_CORE_FLAGS", "DELTA_STABLE=off")
    (tmp_path / "pyproject.toml").write_text(
        "[tool.registry-core.flags]\nDELTA_STABLE = false\n", encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)
    from registry_core.flags import _flags

    monkeypatch.setattr(_flags, "_default", FeatureFlags({"DELTA_STABLE": False}))
    assert DeltaAggregator().archive_aware is True


def test_explicit_flags_are_read_once():
    flags = FeatureFlags({"DELTA_STABLE": False})
    agg = DeltaAggregator(flags=flags)
    assert agg.archive_aware is False
    assert DeltaAggregator(flags=FeatureFlags({"DELTA_STABLE": True})).archive_aware is True
    assert DeltaAggregator(flags=flags, archive_aware=True).archive_aware is True


def test_flags_are_not_consulted_after_construction(monkeypatch):
    flags = FeatureFlags({"DELTA_STABLE": True})
    agg = DeltaAggregator(flags=flags)

    def refuse(*args, **kwargs):
        raise AssertionError("delta/ looked a flag up after __init__")

    monkeypatch.setattr(FeatureFlags, "is_enabled", refuse)
    old, new = b"a" * 3000, b"a" * 2000 + b"b" * 1000
    assert agg.apply(old, agg.diff(old, new)) == new


def test_flags_of_the_wrong_type():
    with pytest.raises(InvalidTypeError):
        DeltaAggregator(flags={"DELTA_STABLE": False})  # type: ignore[arg-type]


def test_delta_package_never_looks_flags_up_lazily():
    import pathlib

    import registry_core.delta as pkg

    for path in pathlib.Path(pkg.__file__).parent.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "flag_enabled" not in text and "default_flags" not in text, path.name
