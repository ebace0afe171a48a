"""The compiled C core. Nothing outside this package imports cffi or ``_core`` directly.

``ffi`` and ``lib`` come from the out-of-line API-mode module built by ``_build.py``. At import
the core's compiled-in version is checked against the Python layer's, so a stale build (for
example an editable install whose C core was not rebuilt) fails loudly instead of misbehaving.
"""

from __future__ import annotations

from .._version import __version__
from ..errors import NativeCoreError

try:
    from ._core import ffi, lib
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise NativeCoreError(
        "registry-core's C core (registry_core._native._core) is not built or cannot be "
        f"loaded: {exc}. Reinstall with `pip install .` (a C compiler is required); there is "
        "no pure-Python fallback."
    ) from exc

CORE_VERSION: str = ffi.string(lib.rc_version()).decode()


def check_core_version(core_version: str, python_version: str) -> None:
    """Raise NativeCoreError unless the compiled core matches the Python layer."""
    if core_version != python_version:
        raise NativeCoreError(
            f"registry-core's C core is version {core_version} but the Python layer is "
            f"{python_version}: the compiled core is stale. Rebuild it with `pip install .` "
            "(or `make install` in a checkout)."
        )


check_core_version(CORE_VERSION, __version__)

ERRORS = {
    lib.RC_EINVAL: "invalid argument",
    lib.RC_ENOMEM: "out of memory",
    lib.RC_ECORRUPT: "malformed input",
    lib.RC_ERANGE: "size out of range",
}


def build_info() -> dict[str, object]:
    """What this installation is and can do.

    Keys: ``version`` and ``core_version`` (Python layer and compiled core, always equal),
    ``compiler``, ``cflags``; the core's compile-time capabilities ``simd_chunking`` (a SIMD
    chunking path: none exists, so False), ``asm_chunking`` (the x86-64 assembly gear update),
    ``pgo`` and ``sanitized``; ``engines``: for ``zlib`` and ``miniz``, whether the engine is
    ``present``, its ``version``, and whether it ``reproduces`` the reference deflate output
    (members it compressed are rebuilt byte-exactly; probed once per process on the first
    call, ~10 ms); and ``features``, a frozenset naming every capability that is on (e.g.
    ``{"asm_chunking", "zlib_reproduces", "miniz_reproduces"}``), as python-zstandard's
    ``backend_features`` does.
    """
    from ._info import build_info as _build_info

    return _build_info(lib, ffi, CORE_VERSION)


__all__ = ["CORE_VERSION", "ERRORS", "build_info", "check_core_version", "ffi", "lib"]
