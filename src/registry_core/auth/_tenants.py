"""Which tenant a request is for (sans-IO: a host and a path in, a route out).

A request whose host (lower-cased, port and trailing dot stripped) is one of a tenant's
domains belongs to that tenant, base path ``""``; it is never re-resolved by path (a host of
tenant A with a ``/t/B/`` path stays in A). Otherwise ``/t/<tenant>/...`` names the tenant
(base ``/t/<tenant>``). The tenant part must be a plain, valid, known name: percent-encoded
or dot segments never resolve. Without a match, the ``default`` tenant (v1: one tenant at
``/``) gets the whole path, or there is no route (the caller answers the uniform 404).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import InvalidArgumentError
from ._model import TENANT_NAME

__all__ = ["TENANT_NAME", "TenantResolver", "TenantRoute", "check_tenant_name", "normalize_host"]

_MAX_HOST = 255


def check_tenant_name(name: object) -> str:
    """``name`` unchanged when it is a valid tenant name (``[a-z0-9][a-z0-9-]{0,62}``), else
    InvalidArgumentError."""
    if not isinstance(name, str) or not TENANT_NAME.fullmatch(name):
        shown = name[:80] if isinstance(name, str) else type(name).__name__
        raise InvalidArgumentError(
            f"{shown!r} is not a valid tenant name (lower-case letters, digits and '-', "
            "starting with a letter or digit, at most 63)"
        )
    return name


def normalize_host(host: str | None) -> str | None:
    """The host part of a Host header, lower-cased, without port or trailing dot; None when
    absent or unusable."""
    if not host or len(host) > _MAX_HOST:
        return None
    host = host.strip().lower()
    if host.startswith("["):  # an IPv6 literal, maybe with a port
        end = host.find("]")
        if end < 0:
            return None
        return host[: end + 1]
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and ":" not in name:
        host = name
    host = host.rstrip(".")
    return host or None


@dataclass(frozen=True)
class TenantRoute:
    """A resolved tenant and the base path its URLs live under (``""`` or ``"/t/acme"``)."""

    tenant: str
    base: str


class TenantResolver:
    """Resolves ``(host, path)`` to a tenant. ``tenants``: tenant name -> its domains."""

    def __init__(
        self,
        tenants: Mapping[str, Sequence[str]],
        *,
        path_prefix: str = "/t/",
        default: str | None = None,
    ) -> None:
        if not path_prefix.startswith("/") or not path_prefix.endswith("/") or path_prefix == "/":
            raise InvalidArgumentError("path_prefix must look like '/t/'")
        self.path_prefix = path_prefix
        self._tenants = frozenset(check_tenant_name(t) for t in tenants)
        self._hosts: dict[str, str] = {}
        for tenant, domains in tenants.items():
            if isinstance(domains, str):
                raise InvalidArgumentError(f"tenant {tenant}: domains must be a list of names")
            for domain in domains:
                host = normalize_host(domain)
                if host is None:
                    raise InvalidArgumentError(f"tenant {tenant}: {domain!r} is not a host name")
                other = self._hosts.setdefault(host, tenant)
                if other != tenant:
                    raise InvalidArgumentError(
                        f"domain {host} is claimed by both tenants {other} and {tenant}"
                    )
        if default is not None and default not in self._tenants:
            raise InvalidArgumentError(f"default tenant {default!r} is not among the tenants")
        self.default = default

    @property
    def tenants(self) -> frozenset[str]:
        return self._tenants

    def resolve(self, host: str | None, path: str) -> tuple[TenantRoute, str] | None:
        """``(route, path inside the tenant)``, or None (answer the uniform 404)."""
        if not isinstance(path, str) or not path.startswith("/"):
            return None
        name = normalize_host(host)
        if name is not None:
            tenant = self._hosts.get(name)
            if tenant is not None:
                return TenantRoute(tenant, ""), path
        prefix = self.path_prefix
        if path.startswith(prefix) or path == prefix[:-1]:
            part, sep, rest = path[len(prefix) :].partition("/")
            if TENANT_NAME.fullmatch(part) and part in self._tenants:
                return TenantRoute(part, prefix + part), "/" + rest
        if self.default is not None:
            return TenantRoute(self.default, ""), path
        return None
