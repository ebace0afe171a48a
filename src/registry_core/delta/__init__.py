"""DeltaAggregator: archive-aware binary deltas between artifact versions.

See docs/delta-format.md for the patch and bundle formats and docs/archives.md for how zip and
gzip artifacts are expanded and rebuilt byte-exactly.
"""

from ._aggregator import DeltaAggregator, PatchInfo
from ._expanded import EXPANDED_MAX_WINDOW_LOG, ExpandedDecoder

__all__ = ["EXPANDED_MAX_WINDOW_LOG", "DeltaAggregator", "ExpandedDecoder", "PatchInfo"]
