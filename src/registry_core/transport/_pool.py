"""Which open connection may carry a request for which origin: connection coalescing, sans-IO.

RFC 9113 section 9.1.1 and RFC 9114 section 3.3: a connection to one origin may carry
requests for another when the other name resolves to the address the connection is connected
to and the certificate the server presented covers that name. A ``421 Misdirected Request``
means the server disagrees; that origin then gets a connection of its own. The pool keeps only
bookkeeping (ids, names, addresses, load); the caller owns the sockets.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

__all__ = ["CoalescingPool", "ConnectionRecord", "cert_covers"]

Origin = tuple[str, str, int]  # (scheme, host, port)


def _label_match(pattern: str, host: str) -> bool:
    # RFC 6125 section 6.4.3: a wildcard only as the whole left-most label, matching one label.
    p_labels, h_labels = pattern.split("."), host.split(".")
    if len(p_labels) != len(h_labels) or (len(p_labels) < 3 and p_labels[0] == "*"):
        return False
    if p_labels[0] == "*":
        return h_labels[0] != "" and p_labels[1:] == h_labels[1:]
    return p_labels == h_labels


def cert_covers(names: tuple[str, ...], host: str) -> bool:
    """Whether a certificate with these subjectAltNames (DNS names, IPs as text) covers ``host``."""
    host = host.lower().rstrip(".")
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        ip = None
    for name in names:
        name = name.lower().rstrip(".")
        if ip is not None:
            try:
                if ipaddress.ip_address(name) == ip:
                    return True
            except ValueError:
                continue
        elif _label_match(name, host):
            return True
    return False


@dataclass
class ConnectionRecord:
    """What the pool knows about one connection."""

    conn_id: int
    origin: Origin
    protocol: str  # "h2", "h3" or "http/1.1"
    address: tuple[str, int]
    cert_names: tuple[str, ...]
    max_streams: int = 100
    active: int = 0
    usable: bool = True
    refused_origins: set[Origin] = field(default_factory=set)

    @property
    def multiplexed(self) -> bool:
        return self.protocol in ("h2", "h3")


class CoalescingPool:
    """Connection choice. ``coalesce=False`` (the CONNECTION_COALESCE flag off) matches exact
    origins only, as httpx does."""

    def __init__(self, *, coalesce: bool = True) -> None:
        self.coalesce = coalesce
        self._conns: dict[int, ConnectionRecord] = {}
        self._next_id = 1

    def add(
        self,
        origin: Origin,
        protocol: str,
        address: tuple[str, int],
        cert_names: tuple[str, ...],
        max_streams: int = 100,
    ) -> ConnectionRecord:
        """Register a freshly opened connection; returns its record (with a new id)."""
        rec = ConnectionRecord(
            self._next_id, origin, protocol, address, tuple(cert_names), max_streams
        )
        self._next_id += 1
        self._conns[rec.conn_id] = rec
        return rec

    def remove(self, conn_id: int) -> None:
        self._conns.pop(conn_id, None)

    def mark_unusable(self, conn_id: int) -> None:
        """The connection is draining (GOAWAY) or broken: no new requests on it."""
        rec = self._conns.get(conn_id)
        if rec is not None:
            rec.usable = False

    def misdirected(self, conn_id: int, origin: Origin) -> None:
        """The server answered 421 for ``origin`` on this connection: never coalesce it there."""
        rec = self._conns.get(conn_id)
        if rec is not None:
            rec.refused_origins.add(origin)

    def _has_room(self, rec: ConnectionRecord) -> bool:
        limit = rec.max_streams if rec.multiplexed else 1
        return rec.usable and rec.active < limit

    def choose(
        self,
        origin: Origin,
        addresses: list[str],
        protocols: tuple[str, ...],
        *,
        dedicated: bool = False,
    ) -> ConnectionRecord | None:
        """An open connection that may carry a request for ``origin``, or None (open one).

        ``addresses``: what the origin's host resolves to. ``protocols``: acceptable protocols
        in order of preference. ``dedicated``: only a connection opened for this very origin
        (after a 421). Among candidates the least loaded wins.
        """
        best: ConnectionRecord | None = None
        for proto in protocols:
            for rec in self._conns.values():
                if rec.protocol != proto or not self._has_room(rec):
                    continue
                if rec.origin == origin:
                    pass
                elif (
                    dedicated
                    or not self.coalesce
                    or not rec.multiplexed
                    or origin in rec.refused_origins
                    or rec.origin[0] != origin[0]
                    or rec.address[1] != origin[2]
                    or rec.address[0] not in addresses
                    or not cert_covers(rec.cert_names, origin[1])
                ):
                    continue
                if (
                    best is None
                    or rec.active < best.active
                    or (
                        rec.origin == origin and best.origin != origin and rec.active == best.active
                    )
                ):
                    best = rec
            if best is not None:
                return best
        return None

    def acquire(self, conn_id: int) -> None:
        self._conns[conn_id].active += 1

    def release(self, conn_id: int) -> None:
        rec = self._conns.get(conn_id)
        if rec is not None and rec.active > 0:
            rec.active -= 1

    def get(self, conn_id: int) -> ConnectionRecord | None:
        return self._conns.get(conn_id)

    def records(self) -> list[ConnectionRecord]:
        return list(self._conns.values())
