"""``registry_core.build_info()``: what this installation can do, in the manner of
python-zstandard's ``backend_features``.

The C core reports what was compiled (``rc_features()``, a bitmask decided by the preprocessor
in ``csrc/rc_features.h``); the deflate reproduction engines are probed here, lazily, on the
first call: ``import registry_core`` imports neither ``zlib`` users nor ``cramjam``. The probe is
:func:`registry_core.delta._deflate.engine_reproduces` itself (one check per process, cached
there), so what ``build_info()`` says is exactly what ``apply`` will decide.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from .._version import __version__

#: The C core's capability bits (``RC_FEATURE_*`` in ``csrc/registry_core.h``) by the name
#: build_info() reports them under.
CORE_FEATURES = {
    "simd_chunking": "RC_FEATURE_CDC_SIMD",
    "asm_chunking": "RC_FEATURE_CDC_ASM",
    "pgo": "RC_FEATURE_PGO",
    "sanitized": "RC_FEATURE_SANITIZED",
}

#: Deflate engines a compressed member can be rebuilt with: (engine id in delta._deflate,
#: module that provides it).
ENGINES = {"zlib": ("ZLIB", "zlib"), "miniz": ("MINIZ", "cramjam")}


def core_features(lib: Any) -> dict[str, bool]:
    """The compile-time capability flags of the loaded core, by name."""
    bits = int(lib.rc_features())
    return {name: bool(bits & int(getattr(lib, const))) for name, const in CORE_FEATURES.items()}


def _module_version(module: Any) -> str | None:
    for attr in ("ZLIB_RUNTIME_VERSION", "__version__"):
        value = getattr(module, attr, None)
        if isinstance(value, str):
            return value
    return None


def engine_report(
    reproduces: Callable[[int], bool] | None = None,
) -> dict[str, dict[str, object]]:
    """For each deflate engine: present (its module imports), version, and reproduces (it gives
    the reference bytes, so members compressed by it are rebuilt exactly).

    ``reproduces`` defaults to :func:`registry_core.delta._deflate.engine_reproduces`.
    """
    from ..delta import _deflate

    probe = reproduces if reproduces is not None else _deflate.engine_reproduces
    report: dict[str, dict[str, object]] = {}
    for name, (const, module_name) in ENGINES.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            report[name] = {"present": False, "version": None, "reproduces": False}
            continue
        report[name] = {
            "present": True,
            "version": _module_version(module),
            "reproduces": bool(probe(getattr(_deflate, const))),
        }
    return report


def build_info(lib: Any, ffi: Any, core_version: str) -> dict[str, object]:
    """See :func:`registry_core.build_info` (``_native.build_info`` binds the loaded core)."""
    flags = core_features(lib)
    engines = engine_report()
    features = {name for name, on in flags.items() if on}
    features |= {f"{name}_reproduces" for name, e in engines.items() if e["reproduces"]}
    return {
        "version": __version__,
        "core_version": core_version,
        "compiler": ffi.string(lib.rc_compiler()).decode(),
        "cflags": ffi.string(lib.rc_cflags()).decode(),
        **flags,
        "engines": engines,
        "features": frozenset(features),
    }
