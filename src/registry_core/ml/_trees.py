"""TreeEnsemble: gradient-boosted decision trees evaluated with numpy, converted from LightGBM.

LightGBM trains the trees; serving needs only numpy. :meth:`TreeEnsemble.from_lightgbm` reads a
booster's ``dump_model()`` JSON and flattens every tree into parallel arrays (split feature,
threshold, left and right child, missing-value rule, leaf value), so a batch is predicted by
walking all rows through all trees at once, one depth level per numpy step, and a single row by a
plain Python loop over lists (no numpy overhead per call). Decisions follow LightGBM's numerical
rule exactly: NaN becomes 0.0 unless the split's missing type is NaN; a value that is "missing"
for the split (NaN for ``NaN``, |x| <= 1e-35 for ``Zero``) goes the default direction; otherwise
``x <= threshold`` goes left. Trees are summed in LightGBM's order, so predictions agree with
``booster.predict`` to rounding (tested to 1e-9). Categorical splits and linear trees are refused.

Byte form (little-endian): ``b"RCTE"``, a format version byte, a u32 header length, that many
bytes of UTF-8 JSON (sizes, feature names, link), then the arrays ``tree_start`` (i4, n_trees+1),
``feature`` (i4), ``threshold`` (f8), ``left`` (i4), ``right`` (i4), ``flags`` (u1: missing type
in bits 0-1, default-left in bit 2) and ``value`` (f8), ``n_nodes`` each. :meth:`from_bytes`
checks every size against the bytes present and every tree's shape (children inside the tree and
after their parent, each node reached once, features in range), so corrupt bytes raise
:class:`~registry_core.errors.ModelError` and nothing is built.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ModelError

__all__ = ["TREES_MAGIC", "CompiledTrees", "TreeEnsemble"]

TREES_MAGIC = b"RCTE"
_VERSION = 1
_HEAD = struct.Struct("<4sBI")
_MAX_HEADER = 1 << 20
#: Bounds on untrusted model bytes: nodes, trees, features, outputs.
MAX_NODES = 1 << 22
MAX_TREES = 1 << 16
MAX_FEATURES = 1 << 16
MAX_OUTPUTS = 256

_MISSING_NONE, _MISSING_ZERO, _MISSING_NAN = 0, 1, 2
_MISSING_NAMES = {"None": _MISSING_NONE, "Zero": _MISSING_ZERO, "NaN": _MISSING_NAN}
_DEFAULT_LEFT = 4
#: LightGBM's kZeroThreshold (a float literal, 1e-35f, widened to double).
_ZERO = float(np.float32(1e-35))
_LINKS = ("identity", "sigmoid", "exp", "softmax")


def _objective_link(objective: str) -> tuple[str, float]:
    """Map LightGBM's objective string to our output link and its parameter."""
    name, *params = objective.split()
    if name in ("binary", "cross_entropy", "xentropy"):
        sigmoid = 1.0
        for p in params:
            if p.startswith("sigmoid:"):
                sigmoid = float(p.split(":", 1)[1])
        return "sigmoid", sigmoid
    if name in ("multiclass", "softmax"):
        return "softmax", 1.0
    if name in ("poisson", "gamma", "tweedie"):
        return "exp", 1.0
    if name in (
        "regression",
        "regression_l1",
        "l1",
        "l2",
        "huber",
        "fair",
        "quantile",
        "mape",
        "lambdarank",
        "rank_xendcg",
        "custom",
        "none",
    ):
        return "identity", 1.0
    raise ModelError(f"LightGBM objective {objective!r} is not supported by TreeEnsemble")


class TreeEnsemble:
    """A sum of regression trees plus ``base_score``, through an optional link (sigmoid,
    exp, softmax). With ``n_outputs`` > 1 tree ``i`` adds to output ``i % n_outputs``."""

    __slots__ = (
        "_depth",
        "_lists",
        "_walk",
        "average_output",
        "base_score",
        "feature",
        "feature_names",
        "flags",
        "left",
        "link",
        "link_param",
        "n_features",
        "n_outputs",
        "right",
        "threshold",
        "tree_start",
        "value",
    )

    def __init__(
        self,
        *,
        tree_start: Any,
        feature: Any,
        threshold: Any,
        left: Any,
        right: Any,
        flags: Any,
        value: Any,
        n_features: int,
        feature_names: Sequence[str] = (),
        link: str = "identity",
        link_param: float = 1.0,
        base_score: float = 0.0,
        n_outputs: int = 1,
        average_output: bool = False,
    ) -> None:
        self.tree_start = np.asarray(tree_start, dtype=np.int32)
        self.feature = np.asarray(feature, dtype=np.int32)
        self.threshold = np.asarray(threshold, dtype=np.float64)
        self.left = np.asarray(left, dtype=np.int32)
        self.right = np.asarray(right, dtype=np.int32)
        self.flags = np.asarray(flags, dtype=np.uint8)
        self.value = np.asarray(value, dtype=np.float64)
        self.n_features = int(n_features)
        names = tuple(str(n) for n in feature_names)
        self.feature_names = names or tuple(f"f{i}" for i in range(self.n_features))
        self.link = link
        self.link_param = float(link_param)
        self.base_score = float(base_score)
        self.n_outputs = int(n_outputs)
        self.average_output = bool(average_output)
        self._depth = self._validate()
        self._walk = self._walk_arrays()
        self._lists = (
            self.tree_start.tolist(),
            self.feature.tolist(),
            self.threshold.tolist(),
            self.left.tolist(),
            self.right.tolist(),
            self.flags.tolist(),
            self.value.tolist(),
        )

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def from_lightgbm(cls, booster: Any) -> TreeEnsemble:
        """Convert a ``lightgbm.Booster`` (or its ``dump_model()`` dict) exactly."""
        dump = booster if isinstance(booster, Mapping) else booster.dump_model()
        return cls.from_lightgbm_dump(dump)

    @classmethod
    def from_lightgbm_dump(cls, dump: Mapping[str, Any]) -> TreeEnsemble:
        """Build from LightGBM's ``dump_model()`` JSON (as a dict)."""
        try:
            link, param = _objective_link(str(dump.get("objective", "regression")))
            n_outputs = int(dump.get("num_tree_per_iteration", 1))
            n_features = int(dump["max_feature_idx"]) + 1
            names = [str(n) for n in dump.get("feature_names", [])]
            if link == "softmax" and n_outputs == 1:
                link = "identity"
            starts = [0]
            feature: list[int] = []
            threshold: list[float] = []
            left: list[int] = []
            right: list[int] = []
            flags: list[int] = []
            value: list[float] = []
            for info in dump["tree_info"]:
                if int(info.get("num_cat", 0)):
                    raise ModelError(
                        "tree has categorical splits; TreeEnsemble supports numerical splits "
                        "only (train with categorical features one-hot or ordinal-encoded)"
                    )
                base = starts[-1]
                stack = [info["tree_structure"]]
                parents: list[tuple[int, str] | None] = [None]
                while stack:
                    node = stack.pop()
                    parent = parents.pop()
                    idx = len(feature)
                    if parent is not None:
                        (left if parent[1] == "l" else right)[parent[0]] = idx - base
                    if "leaf_value" in node or "split_feature" not in node:
                        if "leaf_coeff" in node or "leaf_features" in node:
                            raise ModelError("linear trees are not supported by TreeEnsemble")
                        feature.append(-1)
                        threshold.append(0.0)
                        left.append(idx - base)
                        right.append(idx - base)
                        flags.append(0)
                        value.append(float(node["leaf_value"]))
                        continue
                    if node.get("decision_type", "<=") != "<=":
                        raise ModelError(
                            f"split decision {node.get('decision_type')!r} is not supported "
                            "(categorical split); TreeEnsemble supports '<=' only"
                        )
                    missing = _MISSING_NAMES.get(str(node.get("missing_type", "None")))
                    if missing is None:
                        raise ModelError(f"unknown missing_type {node.get('missing_type')!r}")
                    feature.append(int(node["split_feature"]))
                    threshold.append(float(node["threshold"]))
                    left.append(-1)
                    right.append(-1)
                    flags.append(missing | (_DEFAULT_LEFT if node.get("default_left") else 0))
                    value.append(0.0)
                    # pre-order: left subtree first, so push right then left
                    stack.append(node["right_child"])
                    parents.append((idx, "r"))
                    stack.append(node["left_child"])
                    parents.append((idx, "l"))
                starts.append(len(feature))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ModelError):
                raise
            raise ModelError(f"not a LightGBM model dump: {exc!r}") from None
        return cls(
            tree_start=starts,
            feature=feature,
            threshold=threshold,
            left=left,
            right=right,
            flags=flags,
            value=value,
            n_features=n_features,
            feature_names=names,
            link=link,
            link_param=param,
            n_outputs=n_outputs,
            average_output=bool(dump.get("average_output", False)),
        )

    def _validate(self) -> int:
        """Check shapes and tree structure; return the deepest tree's depth."""
        n = len(self.feature)
        if not 1 <= self.n_outputs <= MAX_OUTPUTS:
            raise ModelError(f"n_outputs {self.n_outputs} out of range 1..{MAX_OUTPUTS}")
        if not 0 <= self.n_features <= MAX_FEATURES:
            raise ModelError(f"n_features {self.n_features} out of range 0..{MAX_FEATURES}")
        if len(self.feature_names) != self.n_features:
            raise ModelError(
                f"{len(self.feature_names)} feature names for {self.n_features} features"
            )
        if self.link not in _LINKS:
            raise ModelError(f"unknown link {self.link!r} (one of {', '.join(_LINKS)})")
        if self.link == "softmax" and self.n_outputs < 2:
            raise ModelError("softmax link needs at least 2 outputs")
        if not math.isfinite(self.link_param) or not math.isfinite(self.base_score):
            raise ModelError("link parameter and base score must be finite")
        if n > MAX_NODES:
            raise ModelError(f"{n} nodes (at most {MAX_NODES})")
        for name in ("threshold", "left", "right", "flags", "value"):
            if len(getattr(self, name)) != n:
                raise ModelError(f"array {name} has {len(getattr(self, name))} entries, not {n}")
        starts = self.tree_start
        n_trees = len(starts) - 1
        if n_trees < 0 or n_trees > MAX_TREES:
            raise ModelError(f"tree count {n_trees} out of range 0..{MAX_TREES}")
        if starts[0] != 0 or starts[-1] != n or bool(np.any(np.diff(starts) < 1)):
            raise ModelError("tree offsets are not increasing from 0 to the node count")
        if n_trees % self.n_outputs:
            raise ModelError(f"{n_trees} trees do not divide into {self.n_outputs} outputs")
        if not (np.all(np.isfinite(self.value)) and np.all(~np.isinf(self.threshold))):
            raise ModelError("leaf values must be finite and thresholds not infinite")
        if bool(np.any(self.flags & ~np.uint8(7))) or bool(np.any((self.flags & 3) == 3)):
            raise ModelError("node flags out of range")
        internal = self.feature >= 0
        if bool(np.any(self.feature[internal] >= self.n_features)) or bool(
            np.any(self.feature < -1)
        ):
            raise ModelError(f"a split feature is outside 0..{self.n_features - 1}")
        if bool(np.any(np.isnan(self.threshold[internal]))):
            raise ModelError("a split threshold is NaN")
        idx = np.arange(n, dtype=np.int64)
        tree_of = np.repeat(np.arange(n_trees), np.diff(starts))
        local = idx - starts[tree_of]
        size = np.diff(starts)[tree_of]
        for child in (self.left, self.right):
            c = child.astype(np.int64)
            # a child is after its parent and inside the tree; a leaf points at itself
            ok_internal = (c > local) & (c < size)
            ok_leaf = c == local
            if not bool(np.all(np.where(internal, ok_internal, ok_leaf))):
                raise ModelError("a tree has a child index outside its tree or before its parent")
        # every non-root node has exactly one parent: a tree, not a graph
        incoming = np.zeros(n, dtype=np.int64)
        glob_l = self.left.astype(np.int64) + starts[tree_of]
        glob_r = self.right.astype(np.int64) + starts[tree_of]
        np.add.at(incoming, glob_l[internal], 1)
        np.add.at(incoming, glob_r[internal], 1)
        expected = np.ones(n, dtype=np.int64)
        expected[starts[:-1]] = 0
        if not np.array_equal(incoming, expected):
            raise ModelError("a tree node is reached twice or never (not a tree)")
        # depth: children come after parents, so one forward pass suffices
        depth = [0] * n
        gl, gr = glob_l.tolist(), glob_r.tolist()
        for i in np.flatnonzero(internal).tolist():
            depth[gl[i]] = depth[gr[i]] = depth[i] + 1
        return max(depth, default=0)

    def _walk_arrays(self) -> tuple[Any, ...]:
        """Arrays for the batch walk: global child pairs (a leaf is its own child), the
        feature to read at each node (0 at leaves), thresholds, missing rules."""
        sizes = np.diff(self.tree_start)
        roots = self.tree_start[:-1].astype(np.intp)
        offset = np.repeat(roots, sizes)
        child2 = np.empty(2 * len(self.feature), dtype=np.intp)
        child2[0::2] = self.left.astype(np.intp) + offset
        child2[1::2] = self.right.astype(np.intp) + offset
        is_leaf = self.feature < 0
        featg = np.where(is_leaf, 0, self.feature).astype(np.intp)
        missing = (self.flags & 3).astype(np.int8)
        dleft = (self.flags & _DEFAULT_LEFT) != 0
        has_zero = bool(np.any((missing == _MISSING_ZERO) & ~is_leaf))
        return roots, child2, featg, self.threshold, missing, dleft, is_leaf, has_zero

    # -- prediction -----------------------------------------------------------------------

    @property
    def n_trees(self) -> int:
        return len(self.tree_start) - 1

    def _check_x(self, X: Any) -> np.ndarray:
        arr = np.asarray(X, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)
        if arr.ndim != 2 or arr.shape[1] != self.n_features:
            raise ModelError(
                f"expected rows of {self.n_features} features, got shape {np.shape(X)}"
            )
        return arr

    def predict_raw(self, X: Any) -> np.ndarray:
        """Raw margins, shape (rows,) or (rows, n_outputs)."""
        x = self._check_x(X)
        rows = x.shape[0]
        n_trees = self.n_trees
        out = np.full((rows, self.n_outputs), self.base_score, dtype=np.float64)
        if n_trees == 0 or rows == 0:
            return out[:, 0] if self.n_outputs == 1 else out
        roots, child2, featg, thr, missing, dleft, is_leaf, has_zero = self._walk
        node = np.tile(roots, (rows, 1))  # (rows, n_trees) global node indices
        base = (np.arange(rows, dtype=np.intp) * self.n_features)[:, None]
        xf = x.ravel()
        general = has_zero or bool(np.isnan(xf).any())
        for step in range(self._depth):
            fv = xf[base + featg[node]] if self.n_features else np.zeros(node.shape)
            if general:  # LightGBM's missing-value rule, node by node
                mt = missing[node]
                nan = np.isnan(fv)
                fv = np.where(nan & (mt != _MISSING_NAN), 0.0, fv)
                is_missing = ((mt == _MISSING_ZERO) & (np.abs(fv) <= _ZERO)) | (
                    (mt == _MISSING_NAN) & nan
                )
                go_right = ~np.where(is_missing, dleft[node], fv <= thr[node])
            else:  # no NaN in X and no Zero-missing splits: a plain comparison
                go_right = fv > thr[node]
            node = child2[2 * node + go_right]
            if step % 4 == 3 and bool(is_leaf[node].all()):
                break
        leaves = self.value[node]  # (rows, n_trees)
        k = self.n_outputs
        for c in range(k):
            # sequential sum in LightGBM's tree order (cumsum is not pairwise)
            out[:, c] += np.cumsum(leaves[:, c::k], axis=1)[:, -1]
        if self.average_output:
            out = self.base_score + (out - self.base_score) / (n_trees // k)
        return out[:, 0] if k == 1 else out

    def _link(self, raw: np.ndarray) -> np.ndarray:
        if self.link == "sigmoid":
            with np.errstate(over="ignore"):  # exp(+big) = inf gives 0.0, as LightGBM does
                return 1.0 / (1.0 + np.exp(-self.link_param * raw))
        if self.link == "exp":
            with np.errstate(over="ignore"):
                return np.exp(raw)
        if self.link == "softmax":
            z = np.exp(raw - raw.max(axis=1, keepdims=True))
            return z / z.sum(axis=1, keepdims=True)
        return raw

    def predict(self, X: Any) -> np.ndarray:
        """Predictions per row (after the link): shape (rows,) or (rows, n_outputs)."""
        return self._link(self.predict_raw(X))

    def predict_one(self, row: Sequence[float]) -> float:
        """One row, one output, without numpy: the latency path."""
        if self.n_outputs != 1:
            raise ModelError("predict_one serves single-output models; use predict")
        if len(row) != self.n_features:
            raise ModelError(f"expected {self.n_features} features, got {len(row)}")
        starts, feat, thr, left, right, flags, value = self._lists
        total = 0.0
        for t in range(len(starts) - 1):
            base = starts[t]
            i = base
            f = feat[i]
            while f >= 0:
                x = float(row[f])
                fl = flags[i]
                mt = fl & 3
                if x != x and mt != _MISSING_NAN:
                    x = 0.0
                if (mt == _MISSING_ZERO and -_ZERO <= x <= _ZERO) or (
                    mt == _MISSING_NAN and x != x
                ):
                    nxt = left[i] if fl & _DEFAULT_LEFT else right[i]
                else:
                    nxt = left[i] if x <= thr[i] else right[i]
                i = base + nxt
                f = feat[i]
            total += value[i]
        return self._finish_one(total)

    def _finish_one(self, total: float) -> float:
        """The sum of one row's leaves to a prediction (average, base score, link)."""
        if self.average_output and self.n_trees:
            total /= self.n_trees
        raw = self.base_score + total
        if self.link == "sigmoid":
            z = -self.link_param * raw
            return 0.0 if z > 709.0 else 1.0 / (1.0 + math.exp(z))
        if self.link == "exp":
            return math.inf if raw > 709.0 else math.exp(raw)
        return raw

    # -- bytes ----------------------------------------------------------------------------

    def _header(self) -> dict[str, Any]:
        return {
            "n_features": self.n_features,
            "feature_names": list(self.feature_names),
            "link": self.link,
            "link_param": self.link_param,
            "base_score": self.base_score,
            "n_outputs": self.n_outputs,
            "average_output": self.average_output,
            "n_trees": self.n_trees,
            "n_nodes": len(self.feature),
        }

    def to_bytes(self) -> bytes:
        head = json.dumps(self._header(), sort_keys=True, separators=(",", ":")).encode()
        parts = [_HEAD.pack(TREES_MAGIC, _VERSION, len(head)), head]
        parts.append(self.tree_start.astype("<i4").tobytes())
        parts.append(self.feature.astype("<i4").tobytes())
        parts.append(self.threshold.astype("<f8").tobytes())
        parts.append(self.left.astype("<i4").tobytes())
        parts.append(self.right.astype("<i4").tobytes())
        parts.append(self.flags.astype("u1").tobytes())
        parts.append(self.value.astype("<f8").tobytes())
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> TreeEnsemble:
        """Parse and validate; :class:`ModelError` if anything is off."""
        view = memoryview(data).cast("B")
        if len(view) < _HEAD.size:
            raise ModelError("tree model truncated: no header")
        magic, version, head_len = _HEAD.unpack_from(view)
        if magic != TREES_MAGIC:
            raise ModelError("not a TreeEnsemble (bad magic)")
        if version != _VERSION:
            raise ModelError(f"TreeEnsemble format {version} is not supported (this reads 1)")
        if head_len > _MAX_HEADER or _HEAD.size + head_len > len(view):
            raise ModelError("tree model truncated: header does not fit")
        try:
            head = json.loads(bytes(view[_HEAD.size : _HEAD.size + head_len]))
            n_trees = int(head["n_trees"])
            n_nodes = int(head["n_nodes"])
            if not 0 <= n_trees <= MAX_TREES or not 0 <= n_nodes <= MAX_NODES:
                raise ModelError(f"tree model sizes out of range ({n_trees} trees, {n_nodes})")
            sizes = [
                ("tree_start", "<i4", n_trees + 1),
                ("feature", "<i4", n_nodes),
                ("threshold", "<f8", n_nodes),
                ("left", "<i4", n_nodes),
                ("right", "<i4", n_nodes),
                ("flags", "u1", n_nodes),
                ("value", "<f8", n_nodes),
            ]
            need = _HEAD.size + head_len + sum(np.dtype(d).itemsize * k for _, d, k in sizes)
            if need != len(view):
                raise ModelError(f"tree model is {len(view)} bytes, its header implies {need}")
            off = _HEAD.size + head_len
            arrays: dict[str, np.ndarray] = {}
            for name, dtype, count in sizes:
                arrays[name] = np.frombuffer(view, dtype=dtype, count=count, offset=off).copy()
                off += np.dtype(dtype).itemsize * count
            return cls(
                **arrays,
                n_features=int(head["n_features"]),
                feature_names=[str(n) for n in head["feature_names"]],
                link=str(head["link"]),
                link_param=float(head["link_param"]),
                base_score=float(head["base_score"]),
                n_outputs=int(head["n_outputs"]),
                average_output=bool(head["average_output"]),
            )
        except ModelError:
            raise
        except (KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
            raise ModelError(f"tree model header is malformed: {exc!r}") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TreeEnsemble):
            return NotImplemented
        return self.to_bytes() == other.to_bytes()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"TreeEnsemble({self.n_trees} trees, {len(self.feature)} nodes, "
            f"{self.n_features} features, link={self.link})"
        )


# -- compiled C (optional accelerator) -------------------------------------------------------

#: Largest ensemble :func:`compile_trees` turns into C (the source grows with the node count).
MAX_COMPILED_NODES = 1 << 18


def _c_double(value: float) -> str:
    return repr(float(value)) if math.isfinite(value) else ("1e308" if value > 0 else "-1e308")


def _tree_source(te: TreeEnsemble, t: int) -> list[str]:
    """One tree as nested C ``if``s, LightGBM's numerical rule inlined per node."""
    starts, feat, thr, left, right, flags, value = te._lists
    base = starts[t]
    out: list[str] = []

    def emit(i: int, depth: int) -> None:
        pad = "  " * depth
        f = feat[base + i]
        if f < 0:
            out.append(f"{pad}s += {_c_double(value[base + i])};")
            return
        fl = flags[base + i]
        mt = fl & 3
        dl = "1" if fl & _DEFAULT_LEFT else "0"
        x = f"x[{f}]"
        if mt == _MISSING_NAN:
            cond = f"(isnan({x}) ? {dl} : ({x} <= {_c_double(thr[base + i])}))"
        elif mt == _MISSING_ZERO:
            v = f"(isnan({x}) ? 0.0 : {x})"
            cond = (
                f"((fabs({v}) <= {_c_double(_ZERO)}) ? {dl} : ({v} <= {_c_double(thr[base + i])}))"
            )
        else:
            cond = f"((isnan({x}) ? 0.0 : {x}) <= {_c_double(thr[base + i])})"
        out.append(f"{pad}if {cond} {{")
        emit(left[base + i], depth + 1)
        out.append(f"{pad}}} else {{")
        emit(right[base + i], depth + 1)
        out.append(f"{pad}}}")

    emit(0, 1)
    return out


class CompiledTrees:
    """A single-output :class:`TreeEnsemble` compiled to a shared library with the system C
    compiler and called through ctypes: the same decisions and summation order, so the same
    predictions. Optional: it needs ``cc`` where it is built (serving falls back to numpy)."""

    def __init__(self, trees: TreeEnsemble, *, cc: str = "cc", opt: str = "-O2") -> None:
        import ctypes
        import os
        import subprocess
        import tempfile

        if trees.n_outputs != 1:
            raise ModelError("compiled trees serve single-output models only")
        if len(trees.feature) > MAX_COMPILED_NODES:
            raise ModelError(
                f"{len(trees.feature)} nodes: too many to compile (at most "
                f"{MAX_COMPILED_NODES})"
            )
        self.trees = trees
        src = ["#include <math.h>", "#include <stddef.h>"]
        for t in range(trees.n_trees):
            src.append(f"static double tree{t}(const double *x) {{\n  double s = 0.0;")
            src.extend(_tree_source(trees, t))
            src.append("  return s;\n}")
        src.append("double rc_predict_row(const double *x) {\n  double s = 0.0;")
        src.extend(f"  s += tree{t}(x);" for t in range(trees.n_trees))
        src.append("  return s;\n}")
        src.append(
            "void rc_predict_batch(const double *X, size_t n, size_t stride, double *out) {\n"
            "  for (size_t i = 0; i < n; i++) out[i] = rc_predict_row(X + i * stride);\n}"
        )
        with tempfile.TemporaryDirectory(prefix="rc-trees-") as tmp:
            c_path, so_path = os.path.join(tmp, "trees.c"), os.path.join(tmp, "trees.so")
            with open(c_path, "w") as f:
                f.write("\n".join(src) + "\n")
            try:
                subprocess.run(
                    [cc, opt, "-shared", "-fPIC", "-fno-fast-math", "-o", so_path, c_path, "-lm"],
                    check=True,
                    capture_output=True,
                    timeout=600,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                detail = getattr(exc, "stderr", b"") or b""
                raise ModelError(
                    f"compiling the trees with {cc} failed: {exc} {detail[-500:]!r}"
                ) from None
            self._lib = ctypes.CDLL(so_path)  # mapped: the file may go with the directory
            with open(so_path, "rb") as f:
                self.size = len(f.read())
        self._row = self._lib.rc_predict_row
        self._row.restype = ctypes.c_double
        self._row.argtypes = [ctypes.POINTER(ctypes.c_double)]
        self._batch = self._lib.rc_predict_batch
        self._batch.restype = None
        self._batch.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_size_t,
            ctypes.c_void_p,
        ]
        self._row_type = ctypes.c_double * trees.n_features
        self.n_features = trees.n_features
        self.n_outputs = 1
        self.feature_names = trees.feature_names

    def _finish(self, raw: Any) -> Any:
        te = self.trees
        if te.average_output and te.n_trees:
            raw = raw / te.n_trees
        return te._link(te.base_score + raw)

    def predict(self, X: Any) -> np.ndarray:
        x = np.ascontiguousarray(self.trees._check_x(X), dtype=np.float64)
        out = np.empty(x.shape[0], dtype=np.float64)
        self._batch(x.ctypes.data, x.shape[0], x.shape[1], out.ctypes.data)
        return self._finish(out)

    def predict_one(self, row: Sequence[float]) -> float:
        if len(row) != self.n_features:
            raise ModelError(f"expected {self.n_features} features, got {len(row)}")
        return self.trees._finish_one(self._row(self._row_type(*row)))
