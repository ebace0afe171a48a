"""Alt-Svc (RFC 7838) parsing and a per-origin cache of HTTP/3 alternatives, sans-IO.

Time is passed in (``now``, seconds on any monotonic clock), so the cache is tested without
sleeping. Broken alternatives (handshake failed, UDP blocked) are remembered with an
exponentially growing back-off, as RFC 7838 section 2.4 suggests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .._util import LRU

__all__ = ["AltService", "AltSvcCache", "parse_alt_svc"]

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEMBER = re.compile(rf'\s*({_TOKEN})\s*=\s*"((?:[^"\\]|\\.)*)"\s*')
_PARAM = re.compile(rf'\s*;\s*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|{_TOKEN})\s*')
_MAX_FIELD = 4096


@dataclass(frozen=True)
class AltService:
    """One alternative: protocol id (ALPN, e.g. ``h3``), host ('' = same host), port, max age."""

    protocol: str
    host: str
    port: int
    max_age: float = 86400.0
    persist: bool = False


def _pct_decode(token: str) -> str:
    return re.sub(r"%([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), token)


def parse_alt_svc(value: str) -> list[AltService] | None:
    """Parse an ``Alt-Svc`` value; returns None for ``clear`` and skips malformed members.

    Malformed members are skipped rather than raised on: Alt-Svc is advisory, and a broken
    advertisement must only cost the optimisation, never the request.
    """
    value = value[:_MAX_FIELD]
    if value.strip().lower() == "clear":
        return None
    out: list[AltService] = []
    pos = 0
    while pos < len(value):
        m = _MEMBER.match(value, pos)
        if m is None:
            nxt = value.find(",", pos)
            if nxt < 0:
                break
            pos = nxt + 1
            continue
        proto, authority = _pct_decode(m.group(1)), m.group(2).replace("\\", "")
        pos = m.end()
        params: dict[str, str] = {}
        while True:
            p = _PARAM.match(value, pos)
            if p is None:
                break
            params[p.group(1).lower()] = p.group(2).strip('"')
            pos = p.end()
        if pos < len(value) and value[pos] == ",":
            pos += 1
        elif pos < len(value):
            nxt = value.find(",", pos)
            pos = len(value) if nxt < 0 else nxt + 1
            continue
        host, sep, port_s = authority.rpartition(":")
        if not sep or not port_s.isdigit() or not 0 < int(port_s) < 65536:
            continue
        try:
            max_age = float(int(params.get("ma", "86400")))
        except ValueError:
            max_age = 86400.0
        out.append(
            AltService(proto, host.strip("[]"), int(port_s), max_age, params.get("persist") == "1")
        )
    return out


class AltSvcCache:
    """Remembers, per origin, the HTTP/3 alternative advertised and whether it is broken."""

    def __init__(
        self,
        *,
        protocols: tuple[str, ...] = ("h3",),
        broken_base: float = 300.0,
        broken_max: float = 48 * 3600.0,
        max_entries: int = 1024,
    ) -> None:
        self.protocols = protocols
        self.broken_base = broken_base
        self.broken_max = broken_max
        # bounded: a client talking to many origins keeps the most recently used ones
        self._entries: LRU[tuple[str, str, int], tuple[AltService, float]] = LRU(max_entries)
        self._broken: LRU[tuple[str, str, int], tuple[float, int]] = LRU(max_entries)

    def update(self, origin: tuple[str, str, int], header: str, now: float) -> None:
        """Record the ``Alt-Svc`` header of a response from ``origin`` (scheme, host, port)."""
        parsed = parse_alt_svc(header)
        if parsed is None:
            self._entries.pop(origin, None)
            return
        for alt in parsed:
            if alt.protocol in self.protocols:
                self._entries.put(origin, (alt, now + alt.max_age))
                return

    def lookup(self, origin: tuple[str, str, int], now: float) -> AltService | None:
        """The usable alternative for ``origin`` now, or None (none, expired or broken)."""
        entry = self._entries.get(origin)
        if entry is None:
            return None
        alt, expires = entry
        if now >= expires:
            self._entries.discard(origin)
            return None
        broken = self._broken.get(origin)
        if broken is not None and now < broken[0]:
            return None
        return alt

    def mark_broken(self, origin: tuple[str, str, int], now: float) -> float:
        """Note a failed attempt; returns until when the alternative is not tried again."""
        _, failures = self._broken.get(origin) or (0.0, 0)
        until = now + min(self.broken_max, self.broken_base * (2**failures))
        self._broken.put(origin, (until, failures + 1))
        return until

    def mark_working(self, origin: tuple[str, str, int]) -> None:
        """Forget past failures after a successful use."""
        self._broken.pop(origin, None)

    def is_broken(self, origin: tuple[str, str, int], now: float) -> bool:
        broken = self._broken.get(origin)
        return broken is not None and now < broken[0]
