"""Feature-flag lookups for the server, tolerant of the flags package not being installed."""

from __future__ import annotations

from typing import Any


def flag_enabled(flags: Any, name: str, default: bool = True) -> bool:
    """``flags.is_enabled(name)``, using ``default_flags()`` when ``flags`` is None.

    Before the flags component exists (or if it fails to load), every flag takes ``default``.
    """
    if flags is None:
        try:
            from ..flags import default_flags
        except ImportError:
            return default
        flags = default_flags()
    return bool(flags.is_enabled(name))
