"""Machine learning for the registry: traces, smart caching, prediction, forecasting, anomalies.

An optional extra (``pip install 'registry-core[ml]'``; training adds ``[ml-train]``). Importing
this package is cheap: every name below is loaded from its module when first used (PEP 562), so
numpy, LightGBM, river and the TFLite runtime load only with the part that needs them. The data
layer is the subpackage :mod:`registry_core.ml.traces`. See docs/ml.md.

- traces: ``generate``, ``load_trace``, ``TrafficModel``, ``Trace``, ``Request``
- models and runtimes: ``ModelArtifact``, ``TreeEnsemble``, ``CompiledTrees``, ``DenseNet``,
  ``TFLiteModel``, ``to_tflite``
- model registry and gateway: ``ModelRegistry``, ``ModelVersion``, ``PredictionGateway``
- features and prediction: ``FeatureExtractor``, ``InMemoryFeatureStore``,
  ``RedisFeatureStore``, ``Predictor``, ``FilePrediction``, ``PredictivePrecompute``,
  ``Calibrator``; training: ``train``, ``evaluate``
- caching: ``LearnedEviction`` (the simple policies are in :mod:`registry_core.eviction`)
- operations: ``Forecaster``, ``ScalingAdvisor``, ``AnomalyScorer``, ``TyposquatCheck``,
  ``ContentCheck``
"""

from __future__ import annotations

import importlib
from typing import Any

from ._artifact import ModelArtifact

_LAZY: dict[str, tuple[str, str]] = {
    # traces
    "generate": (".traces", "generate"),
    "load_trace": (".traces", "load_trace"),
    "TrafficModel": (".traces", "TrafficModel"),
    "Trace": (".traces", "Trace"),
    "Request": (".traces", "Request"),
    "split_by_time": (".traces", "split_by_time"),
    # runtimes
    "TreeEnsemble": ("._trees", "TreeEnsemble"),
    "CompiledTrees": ("._trees", "CompiledTrees"),
    "DenseNet": ("._dense", "DenseNet"),
    "TFLiteModel": ("._tflite", "TFLiteModel"),
    "to_tflite": ("._tflite", "to_tflite"),
    # registry and gateway
    "ModelRegistry": ("._registry", "ModelRegistry"),
    "ModelVersion": ("._registry", "ModelVersion"),
    "PredictionGateway": ("._gateway", "PredictionGateway"),
    "GatewayResult": ("._gateway", "GatewayResult"),
    "RefreshReport": ("._gateway", "RefreshReport"),
    # features, prediction, calibration, training
    "FEATURE_NAMES": ("._features", "FEATURE_NAMES"),
    "FeatureExtractor": ("._features", "FeatureExtractor"),
    "FeatureStore": ("._features", "FeatureStore"),
    "InMemoryFeatureStore": ("._features", "InMemoryFeatureStore"),
    "RedisFeatureStore": ("._features", "RedisFeatureStore"),
    "offline_features": ("._features", "offline_features"),
    "FilePrediction": ("._predict", "FilePrediction"),
    "Predictor": ("._predict", "Predictor"),
    "PredictivePrecompute": ("._predict", "PredictivePrecompute"),
    "make_examples": ("._predict", "make_examples"),
    "load_predictor": ("._predict", "load_predictor"),
    "Calibrator": ("._calibrate", "Calibrator"),
    "train": ("._train", "train"),
    "train_next_download": ("._train", "train_next_download"),
    "evaluate": ("._train", "evaluate"),
    # caching
    "LearnedEviction": ("._learned_cache", "LearnedEviction"),
    # operations
    "Forecaster": ("._forecast", "Forecaster"),
    "Forecast": ("._forecast", "Forecast"),
    "ScalingAdvisor": ("._scaling", "ScalingAdvisor"),
    "ScalingHint": ("._scaling", "ScalingHint"),
    "scaling_endpoint": ("._scaling", "scaling_endpoint"),
    "AnomalyScorer": ("._anomaly", "AnomalyScorer"),
    "StreamFeatures": ("._anomaly", "StreamFeatures"),
    "TyposquatCheck": ("._typosquat", "TyposquatCheck"),
    "ContentCheck": ("._content", "ContentCheck"),
    "scan_archive": ("._content", "scan_archive"),
}

__all__ = ["ModelArtifact", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'registry_core.ml' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module, __name__), attr)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
