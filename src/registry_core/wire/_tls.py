"""The TLS version floors client and server accept, shared by both sides.

1.3 is the default for the client (``Transport(tls_minimum=)``) and the server
(``start_server(tls_minimum=)``): every client and server this project talks to speaks it,
and it is what docs/security.md's checklist asks for; "1.2" is there for old middleboxes, by
choice. QUIC (HTTP/3) is always TLS 1.3.
"""

from __future__ import annotations

import ssl

from ..errors import InvalidArgumentError

__all__ = ["TLS_VERSIONS", "tls_version"]

TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def tls_version(name: str) -> ssl.TLSVersion:
    """The ``ssl.TLSVersion`` of a floor named "1.2" or "1.3" (InvalidArgumentError otherwise)."""
    try:
        return TLS_VERSIONS[name]
    except (KeyError, TypeError):
        raise InvalidArgumentError(
            f"tls_minimum must be one of {sorted(TLS_VERSIONS)}, not {name!r}"
        ) from None
