"""Access traces for the ML layer: records, readers of real logs, a documented generator.

``generate()`` makes registry traffic from published figures (docs/ml.md, "Data"); the readers
replay real logs (our JSON access log, nginx "combined", libCacheSim's oracleGeneral) so every
model can be measured on one's own traffic. No numpy here.
"""

from __future__ import annotations

from ._catalogue import infer_catalogue
from ._generate import TrafficModel, diurnal_profile, generate
from ._readers import (
    ReadStats,
    classify,
    client_id,
    infer_held,
    load_trace,
    read_access_log,
    read_nginx,
    read_oracle_general,
    write_access_log,
    write_oracle_general,
)
from ._record import (
    CLIENT_TYPES,
    KINDS,
    Catalogue,
    Episode,
    Release,
    Request,
    Trace,
    client_type,
    summarize,
)
from ._split import split_by_time

__all__ = [
    "CLIENT_TYPES",
    "KINDS",
    "Catalogue",
    "Episode",
    "ReadStats",
    "Release",
    "Request",
    "Trace",
    "TrafficModel",
    "classify",
    "client_id",
    "client_type",
    "diurnal_profile",
    "generate",
    "infer_catalogue",
    "infer_held",
    "load_trace",
    "read_access_log",
    "read_nginx",
    "read_oracle_general",
    "split_by_time",
    "summarize",
    "write_access_log",
    "write_oracle_general",
]
