"""Feature-flag gates of the Compressor (imported lazily: flags are a leaf package)."""

from __future__ import annotations

from typing import Any

from ..errors import CompressionError

#: The flag gating each coding (codings not listed are always available).
GATES = {"br": "BROTLI_COMPRESSION", "zstd": "ZSTD_COMPRESSION", "dcz": "ZSTD_COMPRESSION"}


def resolve(flags: Any) -> Any:
    """``flags`` or the process-wide default (imported here: flags load on first use)."""
    from ..flags import resolve_flags

    return resolve_flags(flags)


def enabled(coding: str, flags: Any) -> bool:
    """Whether ``coding`` may be used under ``flags`` (already resolved)."""
    gate = GATES.get(coding)
    return gate is None or flags is None or bool(flags.is_enabled(gate))


def require(coding: str, flags: Any) -> None:
    """Raise CompressionError if a flag turns ``coding`` off."""
    if not enabled(coding, flags):
        raise CompressionError(
            f"content coding {coding!r} is disabled by the feature flag {GATES[coding]}; "
            "enable the flag or choose another coding (gzip is always available)"
        )
