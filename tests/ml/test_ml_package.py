"""registry_core.ml: cheap to import, and every lazily exported name resolves."""

from __future__ import annotations

import subprocess
import sys

import registry_core.ml as ml

HEAVY = ("numpy", "lightgbm", "sklearn", "river", "ai_edge_litert", "redis", "httpx")


def test_import_is_cheap():
    code = (
        "import sys, registry_core, registry_core.ml, registry_core.ml.traces;"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_exported_name_resolves():
    for name in ml.__all__:
        assert getattr(ml, name) is not None, name
    assert set(ml.__all__) <= set(dir(ml))


def test_unknown_name_is_an_attribute_error():
    try:
        ml.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("no AttributeError")
