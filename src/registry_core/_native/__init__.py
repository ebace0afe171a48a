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
    """What was compiled: versions, compiler, flags, PGO and sanitizer status."""
    return {
        "version": __version__,
        "core_version": CORE_VERSION,
        "compiler": ffi.string(lib.rc_compiler()).decode(),
        "cflags": ffi.string(lib.rc_cflags()).decode(),
        "pgo": bool(lib.rc_pgo()),
        "sanitized": bool(lib.rc_sanitized()),
    }


__all__ = ["CORE_VERSION", "ERRORS", "build_info", "check_core_version", "ffi", "lib"]
