"""DenseNet: a small fully connected network evaluated with numpy in float32.

Layers are ``(W, b, activation)`` with ``W`` of shape (inputs, outputs), ``b`` of (outputs,) and
the activation one of ``relu``, ``sigmoid``, ``linear``, ``softmax``. Weights are float32, the
type the TFLite runtime uses (:mod:`registry_core.ml._tflite` writes the same net as a .tflite
flatbuffer), so the two agree to float32 rounding.

Byte form (little-endian): ``b"RCDN"``, a format version byte, a u32 header length, that many
bytes of UTF-8 JSON (feature names, per layer its shape and activation), then per layer ``W``
(f4, row-major) and ``b`` (f4). :meth:`DenseNet.from_bytes` checks the sizes against the bytes
present, that consecutive layers fit and that every weight is finite, raising
:class:`~registry_core.errors.ModelError` otherwise.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ModelError

__all__ = ["ACTIVATIONS", "DENSE_MAGIC", "DenseNet"]

DENSE_MAGIC = b"RCDN"
_VERSION = 1
_HEAD = struct.Struct("<4sBI")
_MAX_HEADER = 1 << 20
ACTIVATIONS = ("linear", "relu", "sigmoid", "softmax")
#: Bounds on untrusted model bytes.
MAX_LAYERS = 64
MAX_WIDTH = 1 << 14
MAX_PARAMS = 1 << 24


def _activate(name: str, z: np.ndarray) -> np.ndarray:
    if name == "relu":
        return np.maximum(z, np.float32(0))
    if name == "sigmoid":
        # split by sign so exp never overflows
        out = np.empty_like(z)
        pos = z >= 0
        out[pos] = np.float32(1) / (np.float32(1) + np.exp(-z[pos]))
        ez = np.exp(z[~pos])
        out[~pos] = ez / (np.float32(1) + ez)
        return out
    if name == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return z


class DenseNet:
    """A stack of dense layers; ``predict`` returns (rows,) for one output, else (rows, k)."""

    __slots__ = ("feature_names", "layers", "n_features", "n_outputs")

    def __init__(
        self,
        layers: Sequence[tuple[Any, Any, str]],
        *,
        feature_names: Sequence[str] = (),
    ) -> None:
        if not 1 <= len(layers) <= MAX_LAYERS:
            raise ModelError(f"a DenseNet has 1..{MAX_LAYERS} layers, not {len(layers)}")
        built: list[tuple[np.ndarray, np.ndarray, str]] = []
        params = 0
        for i, layer in enumerate(layers):
            try:
                w_in, b_in, act = layer
            except (TypeError, ValueError):
                raise ModelError(f"layer {i} is not (W, b, activation)") from None
            w = np.array(w_in, dtype=np.float32, order="C")
            b = np.array(b_in, dtype=np.float32)
            if w.ndim != 2 or b.ndim != 1 or b.shape[0] != w.shape[1]:
                raise ModelError(
                    f"layer {i}: W must be (inputs, outputs) and b (outputs,), "
                    f"got {w.shape} and {b.shape}"
                )
            if not (1 <= w.shape[0] <= MAX_WIDTH and 1 <= w.shape[1] <= MAX_WIDTH):
                raise ModelError(f"layer {i}: width out of range 1..{MAX_WIDTH}: {w.shape}")
            if built and built[-1][0].shape[1] != w.shape[0]:
                raise ModelError(
                    f"layer {i} takes {w.shape[0]} inputs, layer {i - 1} gives "
                    f"{built[-1][0].shape[1]}"
                )
            if act not in ACTIVATIONS:
                raise ModelError(f"layer {i}: activation {act!r} not in {ACTIVATIONS}")
            if act == "softmax" and i != len(layers) - 1:
                raise ModelError("softmax is only allowed on the last layer")
            if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
                raise ModelError(f"layer {i}: weights must be finite")
            params += w.size + b.size
            if params > MAX_PARAMS:
                raise ModelError(f"more than {MAX_PARAMS} parameters")
            w.setflags(write=False)
            b.setflags(write=False)
            built.append((w, b, str(act)))
        self.layers: tuple[tuple[np.ndarray, np.ndarray, str], ...] = tuple(built)
        self.n_features = int(built[0][0].shape[0])
        self.n_outputs = int(built[-1][0].shape[1])
        names = tuple(str(n) for n in feature_names)
        if names and len(names) != self.n_features:
            raise ModelError(f"{len(names)} feature names for {self.n_features} inputs")
        self.feature_names = names or tuple(f"f{i}" for i in range(self.n_features))

    @classmethod
    def from_sklearn(
        cls, model: Any, *, scaler: Any = None, feature_names: Sequence[str] = ()
    ) -> DenseNet:
        """Convert a fitted scikit-learn ``MLPClassifier`` / ``MLPRegressor`` (or a
        ``Pipeline`` of a ``StandardScaler`` and one), folding the scaler into the first
        layer: ``(x - mean) / scale @ W + b == x @ (W / scale) + (b - (mean / scale) @ W)``.
        Hidden activations relu, logistic, identity; a binary classifier ends in sigmoid
        (probability of class 1), a multi-class one in softmax, a regressor in linear."""
        steps = getattr(model, "steps", None)
        if steps is not None:
            if len(steps) == 2 and scaler is None:
                scaler, model = steps[0][1], steps[1][1]
            elif len(steps) == 1:
                model = steps[0][1]
            else:
                raise ModelError("a Pipeline of (StandardScaler, MLP) or (MLP,) is supported")
        coefs = getattr(model, "coefs_", None)
        intercepts = getattr(model, "intercepts_", None)
        if coefs is None or intercepts is None:
            raise ModelError(f"{type(model).__name__} is not a fitted scikit-learn MLP")
        hidden = {"relu": "relu", "logistic": "sigmoid", "identity": "linear"}.get(
            str(getattr(model, "activation", ""))
        )
        if hidden is None:
            raise ModelError(f"MLP activation {model.activation!r} is not supported (use relu)")
        out = {"logistic": "sigmoid", "softmax": "softmax", "identity": "linear"}.get(
            str(getattr(model, "out_activation_", ""))
        )
        if out is None:
            raise ModelError(f"MLP output {getattr(model, 'out_activation_', None)!r} unsupported")
        weights = [np.asarray(w, dtype=np.float64) for w in coefs]
        biases = [np.asarray(b, dtype=np.float64) for b in intercepts]
        if scaler is not None:
            n_in = weights[0].shape[0]
            raw_mean = getattr(scaler, "mean_", None)
            raw_scale = getattr(scaler, "scale_", None)
            mean = np.zeros(n_in) if raw_mean is None else np.asarray(raw_mean, np.float64)
            scale = np.ones(n_in) if raw_scale is None else np.asarray(raw_scale, np.float64)
            if mean.shape != (n_in,) or scale.shape != (n_in,):
                raise ModelError(f"the scaler does not have {n_in} features")
            w0 = weights[0] / scale[:, None]
            biases[0] = biases[0] - mean @ w0
            weights[0] = w0
        acts = [hidden] * (len(weights) - 1) + [out]
        names = feature_names or tuple(getattr(model, "feature_names_in_", ()))
        return cls(list(zip(weights, biases, acts, strict=True)), feature_names=names)

    def _check_x(self, X: Any) -> np.ndarray:
        arr = np.asarray(X, dtype=np.float32)
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)
        if arr.ndim != 2 or arr.shape[1] != self.n_features:
            raise ModelError(
                f"expected rows of {self.n_features} features, got shape {np.shape(X)}"
            )
        if not np.all(np.isfinite(arr)):
            raise ModelError("DenseNet inputs must be finite (impute missing values first)")
        return arr

    def predict(self, X: Any) -> np.ndarray:
        """Outputs per row, float32: (rows,) when the net has one output, else (rows, k)."""
        h = self._check_x(X)
        for w, b, act in self.layers:
            h = _activate(act, h @ w + b)
        return h[:, 0] if self.n_outputs == 1 else h

    def predict_one(self, row: Sequence[float]) -> float:
        """One row, one output, as a Python float."""
        if self.n_outputs != 1:
            raise ModelError("predict_one serves single-output models; use predict")
        return float(self.predict(np.asarray(row, dtype=np.float32).reshape(1, -1))[0])

    @property
    def n_params(self) -> int:
        return sum(w.size + b.size for w, b, _ in self.layers)

    def to_bytes(self) -> bytes:
        head = {
            "feature_names": list(self.feature_names),
            "layers": [[int(w.shape[0]), int(w.shape[1]), act] for w, _, act in self.layers],
        }
        raw = json.dumps(head, sort_keys=True, separators=(",", ":")).encode()
        parts = [_HEAD.pack(DENSE_MAGIC, _VERSION, len(raw)), raw]
        for w, b, _ in self.layers:
            parts.append(w.astype("<f4").tobytes())
            parts.append(b.astype("<f4").tobytes())
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> DenseNet:
        """Parse and validate; :class:`ModelError` if anything is off."""
        view = memoryview(data).cast("B")
        if len(view) < _HEAD.size:
            raise ModelError("dense model truncated: no header")
        magic, version, head_len = _HEAD.unpack_from(view)
        if magic != DENSE_MAGIC:
            raise ModelError("not a DenseNet (bad magic)")
        if version != _VERSION:
            raise ModelError(f"DenseNet format {version} is not supported (this reads 1)")
        if head_len > _MAX_HEADER or _HEAD.size + head_len > len(view):
            raise ModelError("dense model truncated: header does not fit")
        try:
            head = json.loads(bytes(view[_HEAD.size : _HEAD.size + head_len]))
            specs = [(int(i), int(o), str(a)) for i, o, a in head["layers"]]
            if not 1 <= len(specs) <= MAX_LAYERS:
                raise ModelError(f"a DenseNet has 1..{MAX_LAYERS} layers, not {len(specs)}")
            for i, o, _ in specs:
                if not (1 <= i <= MAX_WIDTH and 1 <= o <= MAX_WIDTH):
                    raise ModelError(f"layer shape out of range: {i}x{o}")
            params = sum(i * o + o for i, o, _ in specs)
            if params > MAX_PARAMS:
                raise ModelError(f"more than {MAX_PARAMS} parameters")
            need = _HEAD.size + head_len + 4 * params
            if need != len(view):
                raise ModelError(f"dense model is {len(view)} bytes, its header implies {need}")
            off = _HEAD.size + head_len
            layers = []
            for i, o, act in specs:
                w = np.frombuffer(view, dtype="<f4", count=i * o, offset=off).reshape(i, o)
                off += 4 * i * o
                b = np.frombuffer(view, dtype="<f4", count=o, offset=off)
                off += 4 * o
                layers.append((w, b, act))
            return cls(layers, feature_names=[str(n) for n in head["feature_names"]])
        except ModelError:
            raise
        except (KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
            raise ModelError(f"dense model header is malformed: {exc!r}") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DenseNet):
            return NotImplemented
        return self.to_bytes() == other.to_bytes()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shape = "-".join([str(self.n_features)] + [str(w.shape[1]) for w, _, _ in self.layers])
        return f"DenseNet({shape}, {self.n_params} params)"
