"""HTTP semantics shared by the client and the server, sans-IO (no sockets here).

Submodules: ``_digest`` (RFC 9530 digest fields), ``_dictionary`` (RFC 9842 shared-dictionary
headers), ``_delta`` (registry-core delta negotiation headers).
"""
