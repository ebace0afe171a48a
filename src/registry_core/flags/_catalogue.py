"""The flag catalogue: every feature flag the library knows, with its stage and default.

The default of a flag follows its stage, so graduating a feature is a one-word change:

* ``experimental``: off. Early work; turn it on to try it.
* ``beta``: on. Feature complete and tested; the flag stays as a kill switch.
* ``stable``: on. The flag remains only so a deployment can opt out while it migrates.
* ``deprecated``: off. The behaviour is on its way out; setting the flag warns.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["CATALOGUE", "Flag", "Stage", "stage_default"]


class Stage(str, enum.Enum):
    """Where a feature stands on the road from experiment to default behaviour."""

    EXPERIMENTAL = "experimental"
    BETA = "beta"
    STABLE = "stable"
    DEPRECATED = "deprecated"

    def __str__(self) -> str:
        return self.value


_STAGE_DEFAULTS = {
    Stage.EXPERIMENTAL: False,
    Stage.BETA: True,
    Stage.STABLE: True,
    Stage.DEPRECATED: False,
}


def stage_default(stage: Stage) -> bool:
    """The value a flag takes when no source sets it."""
    return _STAGE_DEFAULTS[stage]


@dataclass(frozen=True)
class Flag:
    """One catalogue entry: a named switch gating one component's behaviour."""

    name: str
    stage: Stage
    component: str
    description: str

    @property
    def default(self) -> bool:
        return stage_default(self.stage)


def _catalogue(*flags: Flag) -> Mapping[str, Flag]:
    return MappingProxyType({f.name: f for f in flags})


CATALOGUE: Mapping[str, Flag] = _catalogue(
    Flag(
        "QUIC_TRANSPORT",
        Stage.EXPERIMENTAL,
        "transport",
        "HTTP/3 over QUIC (aioquic): the client upgrades through Alt-Svc and the server "
        "advertises Alt-Svc. Off: HTTP/2 only, no Alt-Svc sent.",
    ),
    Flag(
        "PQ_KEY_EXCHANGE",
        Stage.EXPERIMENTAL,
        "transport",
        "HTTP/3 handshakes offer the hybrid X25519MLKEM768 group (draft-ietf-tls-ecdhe-mlkem) "
        "first, the classical groups (P-256, X25519, ...) kept as fallback; patches aioquic's "
        "TLS in this process. Off: classical key exchange only.",
    ),
    Flag(
        "LINUX_PARITY",
        Stage.BETA,
        "build",
        "Linux wheels ship the same native feature set as macOS (abi3 core for x86_64 and "
        "aarch64, same optimisation flags).",
    ),
    Flag(
        "BROTLI_COMPRESSION",
        Stage.BETA,
        "compress",
        "The brotli codec ('br'). Off: the Compressor refuses 'br' and negotiation never picks it.",
    ),
    Flag(
        "CONNECTION_COALESCE",
        Stage.BETA,
        "transport",
        "Cross-host connection reuse (RFC 9113 9.1.1, RFC 9114 3.3) when the address and the "
        "certificate match. Off: one connection per origin.",
    ),
    Flag(
        "INCREMENTAL_CACHE",
        Stage.EXPERIMENTAL,
        "cache",
        "The incremental build cache: reuse chunks and deltas computed by earlier builds, "
        "and whole build commands (`registry-core cache run`).",
    ),
    Flag(
        "DELTA_STABLE",
        Stage.STABLE,
        "delta",
        "Archive-aware deltas (zip, gzip, tar members diffed decompressed and rebuilt "
        "byte-exact) by default. Off: whole-file binary delta only.",
    ),
    Flag(
        "DELTA_AGGREGATOR",
        Stage.BETA,
        "delta",
        "DeltaAggregator aggregation: patch chains (compose), base choice (best_base) and "
        "batching (bundle / unbundle).",
    ),
    Flag(
        "ZSTD_COMPRESSION",
        Stage.BETA,
        "compress",
        "The zstd codec and shared-dictionary transport ('zstd', 'dcz'). Off: the Compressor "
        "refuses them and negotiation never picks them.",
    ),
    Flag(
        "ML_LEARNED_EVICTION",
        Stage.EXPERIMENTAL,
        "ml",
        "The learned cache eviction policy (gradient-boosted trees on request features) for the "
        "patch and proxy caches. Off: the configured simple policy (LRU, SIEVE or S3-FIFO).",
    ),
    Flag(
        "ML_PREDICTIVE_PREFETCH",
        Stage.EXPERIMENTAL,
        "ml",
        "Predicted next downloads drive patch precomputation on the server and prefetch in the "
        "proxy. Off: only the previous releases are precomputed and nothing is prefetched.",
    ),
    Flag(
        "ML_ANOMALY_DETECTION",
        Stage.EXPERIMENTAL,
        "ml",
        "Online anomaly scoring of requests and typosquatting / suspicious-content checks at "
        "upload ([ml] section), reported to the audit log and metrics; uploads are refused only "
        "with [ml] upload_checks = 'refuse'. Off: nothing is scored or checked.",
    ),
    Flag(
        "PGO_BUILDS",
        Stage.EXPERIMENTAL,
        "build",
        "Profile-guided optimisation of the C core at wheel build time (read by the build, "
        "reported by build_info()).",
    ),
)
