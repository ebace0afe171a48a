"""Machine learning for the registry: traces, smart caching, prediction, forecasting, anomalies.

An optional extra (``pip install 'registry-core[ml]'``; training adds ``[ml-train]``). Importing
this package is cheap: numpy and the model runtimes load when a model is first built or used.
See docs/ml.md.
"""

from __future__ import annotations

from ._artifact import ModelArtifact

__all__ = ["ModelArtifact"]
