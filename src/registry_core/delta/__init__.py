"""DeltaAggregator: archive-aware binary deltas between artifact versions.

See docs/delta-format.md for the patch and bundle formats and docs/archives.md for how zip and
gzip artifacts are expanded and rebuilt byte-exactly.
"""

from ._aggregator import DeltaAggregator, PatchInfo

__all__ = ["DeltaAggregator", "PatchInfo"]
