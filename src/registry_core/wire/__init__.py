"""HTTP semantics shared by the client and the server, sans-IO (no sockets here).

Submodules: ``_sf`` (the one RFC 8941 structured-field parser and serializer, used by every
field below), ``_digest`` (RFC 9530 digest fields), ``_dictionary`` (RFC 9842 shared-dictionary
headers), ``_delta`` (registry-core delta negotiation headers). The field formats are
specified in docs/wire.md.
"""

from __future__ import annotations

from ._delta import (
    DELTA_ENGINES,
    DELTA_MEDIA_TYPE,
    IM_RCDELTA,
    DeltaAsk,
    delta_request_headers,
    delta_response_headers,
    etag_for,
    etag_for_sha256,
    etag_to_sha256,
    format_delta_engines,
    parse_delta_engines,
    parse_delta_request,
    parse_entity_tags,
    parse_im,
)
from ._dictionary import (
    DICTIONARY_VARY,
    UseAsDictionary,
    available_dictionary,
    build_dictionary_id,
    build_use_as_dictionary,
    parse_available_dictionary,
    parse_dictionary_id,
    parse_use_as_dictionary,
)
from ._digest import (
    ACTIVE_ALGORITHMS,
    choose_algorithm,
    compute_digest,
    format_digest,
    format_want_digest,
    parse_digest,
    parse_want_digest,
    verify_digest,
)

__all__ = [
    "ACTIVE_ALGORITHMS",
    "DELTA_ENGINES",
    "DELTA_MEDIA_TYPE",
    "DICTIONARY_VARY",
    "IM_RCDELTA",
    "DeltaAsk",
    "UseAsDictionary",
    "available_dictionary",
    "build_dictionary_id",
    "build_use_as_dictionary",
    "choose_algorithm",
    "compute_digest",
    "delta_request_headers",
    "delta_response_headers",
    "etag_for",
    "etag_for_sha256",
    "etag_to_sha256",
    "format_delta_engines",
    "format_digest",
    "format_want_digest",
    "parse_available_dictionary",
    "parse_delta_engines",
    "parse_delta_request",
    "parse_dictionary_id",
    "parse_digest",
    "parse_entity_tags",
    "parse_im",
    "parse_use_as_dictionary",
    "parse_want_digest",
    "verify_digest",
]
