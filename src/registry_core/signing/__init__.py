"""Signing: keys (Ed25519, ML-DSA), DSSE patch envelopes, the TUF repository and its client.

An optional extra (``pip install 'registry-core[signing]'``: tuf, securesystemslib,
cryptography>=48): importing this package without it raises
:class:`~registry_core.errors.SigningError` naming that command. ``import registry_core`` and
``import registry_core.index`` never import it. Keys and envelopes load at import; the TUF
repository, client and report load on first use (``_LAZY``: one line per name).
"""

from __future__ import annotations

import importlib
from typing import Any

from ._dsse import (
    MAX_ENVELOPE_BYTES,
    MAX_SIGNATURES,
    PATCH_PREDICATE,
    PAYLOAD_TYPE,
    STATEMENT_TYPE,
    pae,
    patch_statement,
    sign_envelope,
    verify_envelope,
    verify_patch_envelope,
)
from ._keys import (
    ALGORITHMS,
    DEFAULT_PASSPHRASE_ENV,
    PQ_ALGORITHMS,
    KeyInfo,
    Keyring,
    key_algorithm,
    keyring_dir,
)

# name -> private module: loaded on first attribute access (others add one line each)
_LAZY: dict[str, str] = {
    "TufRepository": "._tuf",
    "TrustedIndex": "._client",
    "PatchEnvelopes": "._client",
    "TransportFetcher": "._client",
    "security_report": "._report",
    "Report": "._report",
}

__all__ = [
    "ALGORITHMS",
    "DEFAULT_PASSPHRASE_ENV",
    "MAX_ENVELOPE_BYTES",
    "MAX_SIGNATURES",
    "PATCH_PREDICATE",
    "PAYLOAD_TYPE",
    "PQ_ALGORITHMS",
    "STATEMENT_TYPE",
    "KeyInfo",
    "Keyring",
    "PatchEnvelopes",
    "Report",
    "TransportFetcher",
    "TrustedIndex",
    "TufRepository",
    "key_algorithm",
    "keyring_dir",
    "pae",
    "patch_statement",
    "security_report",
    "sign_envelope",
    "verify_envelope",
    "verify_patch_envelope",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
