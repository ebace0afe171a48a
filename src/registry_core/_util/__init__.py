"""The one copy of mechanisms several components share (private to registry_core).

- :mod:`._singleflight`: concurrent identical calls share one execution (asyncio and threads).
- :mod:`._lru`: a locked LRU bounded by entries and/or total byte weight.
- :mod:`._atomic`: files replaced atomically, with the permissions a plain ``open()`` gives.
- :mod:`._buffers`: the one check that turns a bytes-like argument into a flat byte view.
- :mod:`._varint`: unsigned LEB128 integers, strict on decode.
- :mod:`._net`: ``is_loopback`` (where plain HTTP is acceptable: config checks and the CLI).
- :mod:`._sqlite`: the SQLite pragmas and versioned schema set-up the index database and the
  tenant store share.
- :mod:`._pg`: the PostgreSQL connection layer (pools per DSN, retries, error mapping) the
  index database and the tenant store share (psycopg imported on first use).
- :mod:`._isolated`: a setuptools build in a subprocess and an isolated pip/uv/twine
  environment (the demo, tests and benchmarks; imported only where used).
"""

from ._atomic import AtomicFile, atomic_write
from ._buffers import byte_view
from ._lru import LRU
from ._net import is_loopback
from ._singleflight import SingleFlight, ThreadSingleFlight
from ._varint import decode_uvarint, encode_uvarint

__all__ = [
    "LRU",
    "AtomicFile",
    "SingleFlight",
    "ThreadSingleFlight",
    "atomic_write",
    "byte_view",
    "decode_uvarint",
    "encode_uvarint",
    "is_loopback",
]
