"""FeatureFlags: the catalogue, layered sources, targeting and rollouts, an OpenFeature provider.

Flags are a leaf: they import no other registry_core component. Components take
``flags: FeatureFlags | None = None`` and call :func:`resolve_flags` once, at construction:
None means :func:`default_flags`, which is the catalogue's stage defaults unless the host called
:func:`set_default_flags`. Only :meth:`FeatureFlags.load` (called by the CLI, or by a host that
asks) reads the environment and ``pyproject.toml``. The OpenFeature provider loads
``openfeature`` only when it is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._catalogue import CATALOGUE, Flag, Stage, stage_default
from ._flags import (
    FeatureFlags,
    FlagReloadWarning,
    FlagState,
    default_flags,
    flag_enabled,
    resolve_flags,
    set_default_flags,
)
from ._murmur import MURMUR_BACKEND, murmur3_32, rollout_bucket
from ._sources import ENV_FILE_VAR, ENV_VAR
from ._targeting import TargetingRule

if TYPE_CHECKING:  # pragma: no cover
    from ._openfeature import RegistryCoreProvider

__all__ = [
    "CATALOGUE",
    "ENV_FILE_VAR",
    "ENV_VAR",
    "MURMUR_BACKEND",
    "FeatureFlags",
    "Flag",
    "FlagReloadWarning",
    "FlagState",
    "RegistryCoreProvider",
    "Stage",
    "TargetingRule",
    "default_flags",
    "flag_enabled",
    "murmur3_32",
    "resolve_flags",
    "rollout_bucket",
    "set_default_flags",
    "stage_default",
]


def __getattr__(name: str) -> Any:
    if name == "RegistryCoreProvider":
        from ._openfeature import RegistryCoreProvider

        globals()[name] = RegistryCoreProvider
        return RegistryCoreProvider
    raise AttributeError(f"module 'registry_core.flags' has no attribute {name!r}")
