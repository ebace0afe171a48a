"""Feature flags as plain options for compress/: which gated codings are on.

The Compressor reads its ``flags`` once, at construction (or once per ``negotiate`` / ``auto``
call), through :func:`allowed_codings`, and keeps no reference to them. ``None`` means
:func:`registry_core.flags.default_flags`: the catalogue defaults unless the host called
``set_default_flags`` (nothing is read from the environment or a project file here).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import CompressionError

if TYPE_CHECKING:  # pragma: no cover
    from ..flags import FeatureFlags

#: The flag gating each coding (codings not listed are always available).
GATES = {"br": "BROTLI_COMPRESSION", "zstd": "ZSTD_COMPRESSION", "dcz": "ZSTD_COMPRESSION"}


_ALLOWED = {
    (zstd, br): frozenset(
        coding
        for coding, gate in GATES.items()
        if (gate == "ZSTD_COMPRESSION" and zstd) or (gate == "BROTLI_COMPRESSION" and br)
    )
    for zstd in (False, True)
    for br in (False, True)
}


_resolve: Callable[[FeatureFlags | None], FeatureFlags] | None = None


def allowed_codings(flags: FeatureFlags | None) -> frozenset[str]:
    """The gated codings ``flags`` turn on (read once; imported lazily: flags load on use)."""
    global _resolve
    if _resolve is None:
        from ..flags import resolve_flags

        _resolve = resolve_flags
    resolved = _resolve(flags)
    return _ALLOWED[
        resolved.is_enabled("ZSTD_COMPRESSION"), resolved.is_enabled("BROTLI_COMPRESSION")
    ]


def enabled(coding: str, allowed: frozenset[str]) -> bool:
    """Whether ``coding`` may be used, given :func:`allowed_codings`."""
    return coding not in GATES or coding in allowed


def require(coding: str, allowed: frozenset[str]) -> None:
    """Raise CompressionError if a flag turns ``coding`` off."""
    if not enabled(coding, allowed):
        raise CompressionError(
            f"content coding {coding!r} is disabled by the feature flag {GATES[coding]}; "
            "enable the flag or choose another coding (gzip is always available)"
        )
