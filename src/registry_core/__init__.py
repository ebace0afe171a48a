"""registry-core: ship package updates with a fraction of the bandwidth.

The public names are re-exported here and loaded lazily, so ``import registry_core`` stays
cheap: the C core (small) loads now, while httpx, aioquic and hypercorn load only when the
component that needs them is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._native import build_info
from ._version import __version__
from .errors import RegistryCoreError

if TYPE_CHECKING:  # pragma: no cover
    from .compress import Compressor
    from .delta import DeltaAggregator
    from .flags import FeatureFlags
    from .index import Index
    from .proxy import ProxyApp
    from .transport import SyncTransport, Transport

__all__ = [
    "Compressor",
    "DeltaAggregator",
    "FeatureFlags",
    "Index",
    "ProxyApp",
    "RegistryCoreError",
    "SyncTransport",
    "Transport",
    "__version__",
    "build_info",
]

_LAZY = {
    "Compressor": "registry_core.compress",
    "DeltaAggregator": "registry_core.delta",
    "FeatureFlags": "registry_core.flags",
    "Index": "registry_core.index",
    "ProxyApp": "registry_core.proxy",
    "SyncTransport": "registry_core.transport",
    "Transport": "registry_core.transport",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'registry_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
