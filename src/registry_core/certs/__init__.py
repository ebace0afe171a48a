"""Custom domains: certificates per host name, chosen by SNI, issued and renewed by ACME.

:class:`CertificateStore` keeps one atomically replaced file per name; ``start_server(...,
certificates=store)`` serves each name its own certificate (re-read when renewed);
:class:`AcmeManager` obtains them from an ACME (RFC 8555) server with HTTP-01 (needs the
``acme`` extra: ``pip install 'registry-core[acme]'``). See docs/domains.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._store import CertificateInfo, CertificateStore, normalize_name

if TYPE_CHECKING:
    from ._acme import AcmeManager, renewal_due
    from ._sni import SNIContexts

__all__ = [
    "AcmeManager",
    "CertificateInfo",
    "CertificateStore",
    "SNIContexts",
    "normalize_name",
    "renewal_due",
]


def __getattr__(name: str) -> Any:
    if name in ("AcmeManager", "renewal_due"):
        from . import _acme

        return getattr(_acme, name)
    if name == "SNIContexts":
        from ._sni import SNIContexts

        return SNIContexts
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
