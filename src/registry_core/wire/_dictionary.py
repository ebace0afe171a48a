"""RFC 9842 (Compression Dictionary Transport) header fields, sans-IO.

- ``Use-As-Dictionary`` (response): an RFC 8941 Dictionary with ``match`` (sf-string, URL
  pattern, required), ``match-dest`` (inner list of sf-strings, default empty), ``id``
  (sf-string of at most 1024 characters, default empty) and ``type`` (token, default ``raw``).
- ``Available-Dictionary`` (request): an sf-binary Item, the 32-byte SHA-256 of the dictionary,
  written ``:base64:``.
- ``Dictionary-ID`` (request): an sf-string Item echoing the ``id`` of the dictionary.

Builders return the field value as ``str``. Parsers never raise on bad input: they return None
(RFC 9842 and RFC 8941 say an invalid field is ignored as a whole). Unknown dictionary keys and
parameters are ignored, as RFC 8941 requires. The URL-pattern matching of ``match`` itself
(the URL Pattern standard) is not implemented here.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidArgumentError
from . import _sf
from ._sf import InnerList, Item, Token

__all__ = [
    "DICTIONARY_VARY",
    "MAX_ID_LENGTH",
    "UseAsDictionary",
    "available_dictionary",
    "build_dictionary_id",
    "build_use_as_dictionary",
    "parse_available_dictionary",
    "parse_dictionary_id",
    "parse_sf_dictionary",
    "parse_sf_item",
    "parse_use_as_dictionary",
]

#: What a response whose coding depends on the dictionary must list in ``Vary``.
DICTIONARY_VARY = "accept-encoding, available-dictionary"
MAX_ID_LENGTH = 1024

# -- RFC 8941 structured fields: through the one parser in _sf -----------------------------------


def parse_sf_dictionary(value: str | bytes) -> dict[str, Item | InnerList] | None:
    """Parse an RFC 8941 Dictionary; None if the value is not valid."""
    try:
        return _sf.parse_dictionary(value)
    except InvalidArgumentError:
        return None


def parse_sf_item(value: str | bytes) -> Item | None:
    """Parse an RFC 8941 Item; None if the value is not valid."""
    try:
        return _sf.parse_item(value)
    except InvalidArgumentError:
        return None


def _sf_string(value: str) -> str:
    if not all(" " <= c <= "~" for c in value):
        raise ValueError(f"sf-string allows printable ASCII only, got {value!r}")
    return _sf.serialize_bare_item(value)


# -- RFC 9842 fields ---------------------------------------------------------------------------


@dataclass(frozen=True)
class UseAsDictionary:
    """A parsed ``Use-As-Dictionary`` value."""

    match: str
    match_dest: tuple[str, ...] = field(default=())
    id: str = ""
    type: str = "raw"


def build_use_as_dictionary(
    match: str, *, match_dest: Iterable[str] = (), id: str = "", type: str = "raw"
) -> str:
    """The ``Use-As-Dictionary`` value for a response usable as a dictionary."""
    if not isinstance(match, str) or not match:
        raise InvalidArgumentError("Use-As-Dictionary needs a non-empty match pattern")
    if len(id) > MAX_ID_LENGTH:
        raise InvalidArgumentError(f"dictionary id longer than {MAX_ID_LENGTH} characters")
    if not re.fullmatch(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*", type):
        raise InvalidArgumentError(f"dictionary type must be a token, got {type!r}")
    try:
        parts = [f"match={_sf_string(match)}"]
        dests = list(match_dest)
        if dests:
            parts.append("match-dest=(" + " ".join(_sf_string(d) for d in dests) + ")")
        if id:
            parts.append(f"id={_sf_string(id)}")
    except ValueError as exc:
        raise InvalidArgumentError(str(exc)) from None
    if type != "raw":
        parts.append(f"type={type}")
    return ", ".join(parts)


def parse_use_as_dictionary(value: str | bytes | None) -> UseAsDictionary | None:
    """Parse ``Use-As-Dictionary``; None when absent or invalid (RFC 9842 section 2.1)."""
    if value is None:
        return None
    parsed = parse_sf_dictionary(value)
    if not parsed or "match" not in parsed:
        return None
    match = parsed["match"][0]
    if not isinstance(match, str) or isinstance(match, Token) or not match:
        return None
    dests: tuple[str, ...] = ()
    if "match-dest" in parsed:
        members = parsed["match-dest"][0]
        if not isinstance(members, list):
            return None
        if not all(isinstance(v, str) and not isinstance(v, Token) for v, _ in members):
            return None
        dests = tuple(str(v) for v, _ in members)
    ident = ""
    if "id" in parsed:
        v = parsed["id"][0]
        if not isinstance(v, str) or isinstance(v, Token) or len(v) > MAX_ID_LENGTH:
            return None
        ident = str(v)
    kind = "raw"
    if "type" in parsed:
        v = parsed["type"][0]
        if not isinstance(v, Token):
            return None
        kind = str(v)
    return UseAsDictionary(str(match), dests, ident, kind)


def _hash_of(dictionary: Any) -> bytes:
    digest = dictionary if isinstance(dictionary, (bytes, bytearray)) else dictionary.sha256
    if len(digest) != 32:
        raise InvalidArgumentError("a dictionary hash is the 32-byte SHA-256 of the dictionary")
    return bytes(digest)


def available_dictionary(dictionary: Any) -> str:
    """``Available-Dictionary`` for a dictionary (anything with ``.sha256``) or its hash."""
    return ":" + base64.b64encode(_hash_of(dictionary)).decode("ascii") + ":"


def parse_available_dictionary(value: str | bytes | None) -> bytes | None:
    """The 32-byte hash in ``Available-Dictionary``; None when absent or invalid."""
    if value is None:
        return None
    item = parse_sf_item(value)
    if item is None or not isinstance(item[0], bytes) or len(item[0]) != 32:
        return None
    return item[0]


def build_dictionary_id(ident: str) -> str:
    """``Dictionary-ID`` value (an sf-string) echoing a dictionary's ``id``."""
    if len(ident) > MAX_ID_LENGTH:
        raise InvalidArgumentError(f"dictionary id longer than {MAX_ID_LENGTH} characters")
    try:
        return _sf_string(ident)
    except ValueError as exc:
        raise InvalidArgumentError(str(exc)) from None


def parse_dictionary_id(value: str | bytes | None) -> str | None:
    """The id in ``Dictionary-ID``; None when absent or invalid."""
    if value is None:
        return None
    item = parse_sf_item(value)
    if item is None or not isinstance(item[0], str) or isinstance(item[0], Token):
        return None
    if len(item[0]) > MAX_ID_LENGTH:
        return None
    return str(item[0])
