"""Access traces for the ML layer: records, readers of real logs, a documented generator.

``generate()`` makes registry traffic from published figures (docs/ml.md, "Data"); the readers
replay real logs (our JSON access log, nginx "combined", libCacheSim's oracleGeneral) so every
model can be measured on one's own traffic. No numpy here.
"""

from __future__ import annotations

from ._catalogue import infer_catalogue
from ._generate import TrafficModel, diurnal_profile, generate
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

__all__ = [
    "CLIENT_TYPES",
    "KINDS",
    "Catalogue",
    "Episode",
    "Release",
    "Request",
    "Trace",
    "TrafficModel",
    "client_type",
    "diurnal_profile",
    "generate",
    "infer_catalogue",
    "summarize",
]
