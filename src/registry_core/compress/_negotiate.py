"""Server-side content-coding negotiation (RFC 9110 section 12.5.3), pure and total.

Rules, in order:

- No header (``None``): the client said nothing; answer ``identity`` (RFC 9110 allows any
  coding, but a client that did not ask may not decode one).
- Empty header: only ``identity`` is acceptable.
- Each member is ``coding *( OWS ";" OWS parameter )``; the ``q`` parameter is a qvalue
  (``0`` to ``1`` with at most three decimals). Codings and parameter names are
  case-insensitive; ``x-gzip`` is ``gzip``.
- A coding listed explicitly takes its own q; ``*`` gives its q to every coding not listed;
  ``identity`` is acceptable unless excluded by ``identity;q=0`` or by ``*;q=0`` without an
  explicit ``identity``. ``q=0`` means "not acceptable".
- Among acceptable codings the highest q wins; equal q goes to the server's preference order.
- If a coding is listed twice, the highest q given to it counts.

Malformed input never raises: a member whose coding is not a token, or whose q is not a valid
qvalue, is ignored (as if absent). If nothing usable remains the answer is ``identity``. When
even ``identity`` is excluded the answer is ``identity`` as well (RFC 9110 lets the server send
an unencoded response or 415), unless the caller asked for ``strict=True``, which raises
NegotiationError instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..errors import NegotiationError

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_QVALUE = re.compile(r"^(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)$")
_ALIASES = {"x-gzip": "gzip"}


def parse_accept_encoding(header: str) -> dict[str, float]:
    """Map each coding of an Accept-Encoding value to its q (malformed members dropped)."""
    prefs: dict[str, float] = {}
    for member in header.split(","):
        parts = member.split(";")
        coding = parts[0].strip(" \t").lower()
        if not coding:
            continue  # empty list elements are allowed (RFC 9110 5.6.1)
        if not _TOKEN.match(coding):
            continue
        coding = _ALIASES.get(coding, coding)
        q = 1.0
        ok = True
        for param in parts[1:]:
            name, sep, value = param.partition("=")
            name = name.strip(" \t").lower()
            value = value.strip(" \t")
            if name == "q":
                if not sep or not _QVALUE.match(value):
                    ok = False
                    break
                q = float(value)
                break  # "q" ends the coding's parameters; accept-ext beyond are ignored
        if not ok:
            continue
        prefs[coding] = max(q, prefs.get(coding, 0.0)) if coding in prefs else q
    return prefs


def negotiate(
    header: str | bytes | None,
    available: Sequence[str],
    *,
    strict: bool = False,
) -> str:
    """The coding of ``available`` (server preference order) to use for ``header``."""
    if header is None:
        return "identity"
    if isinstance(header, (bytes, bytearray)):
        header = bytes(header).decode("latin-1")
    if not isinstance(header, str):
        return "identity"
    prefs = parse_accept_encoding(header)
    star = prefs.get("*")
    order = list(dict.fromkeys(available))  # server preference; it may rank identity itself
    if "identity" not in order:
        order.append("identity")
    best, best_q = None, 0.0
    for coding in order:
        if coding in prefs:
            q = prefs[coding]
        elif coding == "identity":
            q = 0.0 if star == 0.0 else 0.001  # acceptable unless excluded, lowest rank
        else:
            q = star if star is not None else 0.0
        if q > best_q:  # strict ">" keeps the server's order among equals
            best, best_q = coding, q
    if best is not None:
        return best
    if strict:
        raise NegotiationError(
            f"no acceptable content coding: the client accepts {header!r}, the server offers "
            f"{list(available)}; answer 406/415, or send identity"
        )
    return "identity"
