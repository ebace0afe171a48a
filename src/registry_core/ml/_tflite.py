"""TFLite runtime (#70): write a :class:`DenseNet` as a .tflite flatbuffer and run it on LiteRT.

:func:`to_tflite` builds the model file with the ``flatbuffers`` builder directly against the
TFLite schema (tensorflow/lite/schema/schema.fbs: ``Model`` version 3, file identifier ``TFL3``,
buffer 0 the empty sentinel): one ``FULLY_CONNECTED`` operator per layer (weights stored
``[outputs, inputs]`` as the op expects, float32, 16-byte aligned), ReLU fused into it, sigmoid
as a ``LOGISTIC`` and softmax as a ``SOFTMAX`` (beta 1) after it. The input's batch dimension is
dynamic (``shape_signature`` -1), so :class:`TFLiteModel` resizes it to the batch it is given.
No TensorFlow is needed to write or run it: writing needs ``flatbuffers`` (the ``[ml-train]``
extra), running needs ``ai-edge-litert`` (the ``[ml]`` extra).

Trees do not map onto TFLite's operators; they are served by :class:`~.TreeEnsemble` (numpy and
a pure-Python single-row path). ``benchmarks/ml/bench_ml_runtime.py`` measures both.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ModelError
from ._dense import DenseNet

__all__ = ["MAX_TFLITE_BYTES", "TFLITE_IDENTIFIER", "TFLiteModel", "to_tflite"]

TFLITE_IDENTIFIER = b"TFL3"
#: Largest .tflite accepted (the roadmap's budget is 2 MB; this bounds untrusted input).
MAX_TFLITE_BYTES = 64 << 20

# schema.fbs constants (BuiltinOperator, ActivationFunctionType, BuiltinOptions, TensorType)
_OP_FULLY_CONNECTED = 9
_OP_LOGISTIC = 14
_OP_SOFTMAX = 25
_ACT_NONE = 0
_ACT_RELU = 1
_OPTIONS_FULLY_CONNECTED = 8
_OPTIONS_SOFTMAX = 9
_FLOAT32 = 0
_SCHEMA_VERSION = 3


def _flatbuffers() -> Any:
    try:
        import flatbuffers
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "writing .tflite models needs flatbuffers: pip install 'registry-core[ml-train]'"
        ) from exc
    return flatbuffers


def _interpreter_class() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "running .tflite models needs ai-edge-litert: pip install 'registry-core[ml]'"
        ) from exc
    return Interpreter


def to_tflite(net: DenseNet, *, description: str = "registry-core DenseNet") -> bytes:
    """The .tflite flatbuffer computing ``net`` (float32, dynamic batch)."""
    fb = _flatbuffers()
    b = fb.Builder(1024 + 4 * net.n_params)

    def ivec(values: Sequence[int]) -> int:
        b.StartVector(4, len(values), 4)
        for v in reversed(values):
            b.PrependInt32(int(v))
        return int(b.EndVector())

    def offvec(offsets: Sequence[int]) -> int:
        b.StartVector(4, len(offsets), 4)
        for o in reversed(offsets):
            b.PrependUOffsetTRelative(o)
        return int(b.EndVector())

    def data_vec(raw: bytes) -> int:
        b.StartVector(1, len(raw), 16)
        b.head = b.head - len(raw)
        b.Bytes[b.head : b.head + len(raw)] = raw
        return int(b.EndVector())

    # tensors: (name, shape, signature or None, buffer index); buffers: raw bytes (0: sentinel)
    buffers: list[bytes] = [b""]
    tensors: list[tuple[str, list[int], list[int] | None, int]] = []
    ops: list[tuple[int, list[int], list[int], int]] = []  # (opcode index, in, out, act/beta)
    opcodes: list[int] = []

    def tensor(name: str, shape: list[int], sig: list[int] | None, data: bytes | None) -> int:
        buffers.append(data or b"")  # activations get an empty buffer, as the converter does
        tensors.append((name, shape, sig, len(buffers) - 1))
        return len(tensors) - 1

    def opcode(code: int) -> int:
        if code not in opcodes:
            opcodes.append(code)
        return opcodes.index(code)

    width = net.n_features
    current = tensor("input", [1, width], [-1, width], None)
    graph_input = current
    for i, (w, bias, act) in enumerate(net.layers):
        out_w = int(w.shape[1])
        kernel = tensor(f"dense{i}/kernel", [out_w, width], None, w.T.astype("<f4").tobytes())
        bias_t = tensor(f"dense{i}/bias", [out_w], None, bias.astype("<f4").tobytes())
        fused = _ACT_RELU if act == "relu" else _ACT_NONE
        dense_out = tensor(f"dense{i}/out", [1, out_w], [-1, out_w], None)
        ops.append((opcode(_OP_FULLY_CONNECTED), [current, kernel, bias_t], [dense_out], fused))
        current = dense_out
        if act == "sigmoid":
            nxt = tensor(f"dense{i}/sigmoid", [1, out_w], [-1, out_w], None)
            ops.append((opcode(_OP_LOGISTIC), [current], [nxt], 0))
            current = nxt
        elif act == "softmax":
            nxt = tensor(f"dense{i}/softmax", [1, out_w], [-1, out_w], None)
            ops.append((opcode(_OP_SOFTMAX), [current], [nxt], 0))
            current = nxt
        width = out_w
    graph_output = current

    # flatbuffers are built back to front: leaves (vectors, strings) before the tables using them
    buffer_offs = []
    for raw in buffers:
        data_off = data_vec(raw) if raw else 0
        b.StartObject(3)
        if data_off:
            b.PrependUOffsetTRelativeSlot(0, data_off, 0)
        buffer_offs.append(b.EndObject())
    tensor_offs = []
    for name, shape, sig, buf in tensors:
        name_off = b.CreateString(name)
        shape_off = ivec(shape)
        sig_off = ivec(sig) if sig is not None else 0
        b.StartObject(10)
        b.PrependUOffsetTRelativeSlot(0, shape_off, 0)
        b.PrependInt8Slot(1, _FLOAT32, 0)
        b.PrependUint32Slot(2, buf, 0)
        b.PrependUOffsetTRelativeSlot(3, name_off, 0)
        if sig_off:
            b.PrependUOffsetTRelativeSlot(7, sig_off, 0)
        tensor_offs.append(b.EndObject())
    op_offs = []
    for code_index, ins, outs, param in ops:
        code = opcodes[code_index]
        options = 0
        options_type = 0
        if code == _OP_FULLY_CONNECTED:
            b.StartObject(5)
            b.PrependInt8Slot(0, param, 0)
            options, options_type = b.EndObject(), _OPTIONS_FULLY_CONNECTED
        elif code == _OP_SOFTMAX:
            b.StartObject(1)
            b.PrependFloat32Slot(0, 1.0, 0.0)
            options, options_type = b.EndObject(), _OPTIONS_SOFTMAX
        ins_off, outs_off = ivec(ins), ivec(outs)
        b.StartObject(14)
        b.PrependUint32Slot(0, code_index, 0)
        b.PrependUOffsetTRelativeSlot(1, ins_off, 0)
        b.PrependUOffsetTRelativeSlot(2, outs_off, 0)
        if options:
            b.PrependUint8Slot(3, options_type, 0)
            b.PrependUOffsetTRelativeSlot(4, options, 0)
        op_offs.append(b.EndObject())
    tensors_vec = offvec(tensor_offs)
    inputs_vec, outputs_vec = ivec([graph_input]), ivec([graph_output])
    ops_vec = offvec(op_offs)
    sub_name = b.CreateString("main")
    b.StartObject(6)
    b.PrependUOffsetTRelativeSlot(0, tensors_vec, 0)
    b.PrependUOffsetTRelativeSlot(1, inputs_vec, 0)
    b.PrependUOffsetTRelativeSlot(2, outputs_vec, 0)
    b.PrependUOffsetTRelativeSlot(3, ops_vec, 0)
    b.PrependUOffsetTRelativeSlot(4, sub_name, 0)
    subgraph = b.EndObject()
    code_offs = []
    for code in opcodes:
        b.StartObject(4)
        b.PrependInt8Slot(0, min(code, 127), 0)  # deprecated_builtin_code (codes < 127)
        b.PrependInt32Slot(2, 1, 1)
        b.PrependInt32Slot(3, code, 0)
        code_offs.append(b.EndObject())
    codes_vec = offvec(code_offs)
    subgraphs_vec = offvec([subgraph])
    buffers_vec = offvec(buffer_offs)
    desc = b.CreateString(description)
    b.StartObject(8)
    b.PrependUint32Slot(0, _SCHEMA_VERSION, 0)
    b.PrependUOffsetTRelativeSlot(1, codes_vec, 0)
    b.PrependUOffsetTRelativeSlot(2, subgraphs_vec, 0)
    b.PrependUOffsetTRelativeSlot(3, desc, 0)
    b.PrependUOffsetTRelativeSlot(4, buffers_vec, 0)
    model = b.EndObject()
    b.Finish(model, file_identifier=TFLITE_IDENTIFIER)
    return bytes(b.Output())


class TFLiteModel:
    """A .tflite model (one float32 input ``[batch, features]``, one output) on LiteRT.

    The interpreter is not thread-safe, so calls are serialised by a lock; a gateway serving
    many threads keeps one model per worker or accepts the lock (measured in the bench)."""

    def __init__(self, data: bytes | bytearray | memoryview, *, num_threads: int = 1) -> None:
        raw = bytes(data)
        if len(raw) > MAX_TFLITE_BYTES:
            raise ModelError(f".tflite model is {len(raw)} bytes (at most {MAX_TFLITE_BYTES})")
        if len(raw) < 8 or raw[4:8] != TFLITE_IDENTIFIER:
            raise ModelError("not a .tflite model (no TFL3 file identifier)")
        interpreter_cls = _interpreter_class()
        try:
            self._interp = interpreter_cls(model_content=raw, num_threads=num_threads)
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f".tflite model does not load: {exc}") from None
        ins = self._interp.get_input_details()
        outs = self._interp.get_output_details()
        if len(ins) != 1 or len(outs) != 1:
            raise ModelError(f".tflite model has {len(ins)} inputs and {len(outs)} outputs, not 1")
        if ins[0]["dtype"] != np.float32 or len(ins[0]["shape"]) != 2:
            raise ModelError(".tflite model input must be float32 [batch, features]")
        self._in = int(ins[0]["index"])
        self._out = int(outs[0]["index"])
        self.n_features = int(ins[0]["shape"][1])
        self.feature_names: tuple[str, ...] = tuple(f"f{i}" for i in range(self.n_features))
        self.n_outputs = int(outs[0]["shape"][-1])
        self._batch = int(ins[0]["shape"][0])
        self._lock = threading.Lock()
        self.size = len(raw)
        self._data = raw

    def to_bytes(self) -> bytes:
        return self._data

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> TFLiteModel:
        return cls(data)

    def predict(self, X: Any) -> np.ndarray:
        """Outputs per row: (rows,) for one output, else (rows, k), float32."""
        x = np.asarray(X, dtype=np.float32)
        if x.ndim == 1:
            x = x.reshape(1, -1)
        if x.ndim != 2 or x.shape[1] != self.n_features or x.shape[0] < 1:
            raise ModelError(f"expected rows of {self.n_features} features, got {np.shape(X)}")
        x = np.ascontiguousarray(x)
        with self._lock:
            if x.shape[0] != self._batch:
                self._interp.resize_tensor_input(self._in, list(x.shape), strict=True)
                self._interp.allocate_tensors()
                self._batch = x.shape[0]
            self._interp.set_tensor(self._in, x)
            self._interp.invoke()
            out = np.array(self._interp.get_tensor(self._out))
        return out[:, 0] if self.n_outputs == 1 else out

    def predict_one(self, row: Sequence[float]) -> float:
        if self.n_outputs != 1:
            raise ModelError("predict_one serves single-output models; use predict")
        return float(self.predict(np.asarray(row, dtype=np.float32).reshape(1, -1))[0])
