"""ModelArtifact: one trained model with what is needed to trust and reproduce it.

Every model the training pipeline makes (next-download predictor, learned eviction, forecaster,
anomaly scorer) is one of these: a ``kind`` naming the loader, the model's own ``payload`` bytes,
its evaluation ``metrics`` on held-out data, the SHA-256 of the training trace, the feature names
it expects, the seed, and a model card in markdown. The model registry stores them and the
prediction gateway loads them, so both only deal with this one shape.

The byte form is ``b"RCML"``, a format version byte, a u32 big-endian length, that many bytes of
UTF-8 JSON (everything but the payload, plus the payload's SHA-256), then the payload.
``from_bytes``
checks the magic, the version, every length against the bytes present and the payload digest, so a
truncated or altered artifact raises :class:`~registry_core.errors.ModelError` and nothing loads.
No numpy here: the payload's own format belongs to the module of its kind.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ModelError

__all__ = ["ARTIFACT_MAGIC", "MAX_ARTIFACT_BYTES", "ModelArtifact"]

ARTIFACT_MAGIC = b"RCML"
_VERSION = 1
#: The largest artifact accepted (the roadmap's model budget is 2 MB; this bounds untrusted input).
MAX_ARTIFACT_BYTES = 64 << 20
_MAX_HEADER = 4 << 20
_HEAD = struct.Struct(">4sBI")
_KIND_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


@dataclass(frozen=True)
class ModelArtifact:
    """A trained model and its provenance. ``version`` is set by the model registry on publish
    (empty before); ``created`` is seconds since the epoch (0: now, at construction)."""

    kind: str
    payload: bytes
    metrics: Mapping[str, float] = field(default_factory=dict)
    data_sha256: str = ""
    feature_names: tuple[str, ...] = ()
    seed: int = 0
    card: str = ""
    name: str = ""
    version: str = ""
    created: float = 0.0
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.kind or not set(self.kind) <= _KIND_CHARS or len(self.kind) > 64:
            raise ModelError(f"model kind must be 1-64 of [a-z0-9-], not {self.kind!r}")
        if not isinstance(self.payload, (bytes, bytearray, memoryview)):
            raise ModelError(f"payload must be bytes, not {type(self.payload).__name__}")
        object.__setattr__(self, "payload", bytes(self.payload))
        for key, value in self.metrics.items():
            if not isinstance(key, str) or not isinstance(value, (int, float)):
                raise ModelError(f"metric {key!r} must be a named number, not {value!r}")
            if isinstance(value, float) and not math.isfinite(value):
                raise ModelError(f"metric {key!r} is not finite ({value!r})")
        object.__setattr__(self, "metrics", {k: float(v) for k, v in self.metrics.items()})
        object.__setattr__(self, "feature_names", tuple(self.feature_names))
        object.__setattr__(self, "params", dict(self.params))
        if self.created == 0.0:
            object.__setattr__(self, "created", time.time())

    @property
    def sha256(self) -> str:
        """SHA-256 of :meth:`to_bytes` (what the registry signs and the gateway checks)."""
        return hashlib.sha256(self.to_bytes()).hexdigest()

    @property
    def payload_sha256(self) -> str:
        return hashlib.sha256(self.payload).hexdigest()

    def header(self) -> dict[str, Any]:
        """Everything but the payload, as JSON-ready values."""
        return {
            "kind": self.kind,
            "name": self.name,
            "version": self.version,
            "metrics": dict(self.metrics),
            "data_sha256": self.data_sha256,
            "feature_names": list(self.feature_names),
            "seed": self.seed,
            "card": self.card,
            "created": self.created,
            "params": dict(self.params),
            "payload_sha256": self.payload_sha256,
            "payload_bytes": len(self.payload),
        }

    def to_bytes(self) -> bytes:
        head = json.dumps(self.header(), sort_keys=True, separators=(",", ":")).encode()
        if len(head) > _MAX_HEADER:
            raise ModelError(f"artifact header is {len(head)} bytes (at most {_MAX_HEADER})")
        out = _HEAD.pack(ARTIFACT_MAGIC, _VERSION, len(head)) + head + self.payload
        if len(out) > MAX_ARTIFACT_BYTES:
            raise ModelError(f"artifact is {len(out)} bytes (at most {MAX_ARTIFACT_BYTES})")
        return out

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> ModelArtifact:
        """Parse and check an artifact; :class:`ModelError` if anything is off."""
        view = memoryview(data)
        if len(view) > MAX_ARTIFACT_BYTES:
            raise ModelError(f"artifact is {len(view)} bytes (at most {MAX_ARTIFACT_BYTES})")
        if len(view) < _HEAD.size:
            raise ModelError(f"artifact truncated: {len(view)} bytes, no header")
        magic, version, head_len = _HEAD.unpack_from(view)
        if magic != ARTIFACT_MAGIC:
            raise ModelError("not a registry-core model artifact (bad magic)")
        if version != _VERSION:
            raise ModelError(f"model artifact format {version} is not supported (this reads 1)")
        if head_len > _MAX_HEADER or _HEAD.size + head_len > len(view):
            raise ModelError(f"artifact truncated: header of {head_len} bytes does not fit")
        try:
            head = json.loads(bytes(view[_HEAD.size : _HEAD.size + head_len]))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"artifact header is not JSON: {exc}") from None
        if not isinstance(head, dict):
            raise ModelError("artifact header is not a JSON object")
        payload = bytes(view[_HEAD.size + head_len :])
        try:
            if len(payload) != head["payload_bytes"]:
                raise ModelError(
                    f"artifact payload is {len(payload)} bytes, header says "
                    f"{head['payload_bytes']}"
                )
            if hashlib.sha256(payload).hexdigest() != head["payload_sha256"]:
                raise ModelError("artifact payload does not match its SHA-256")
            return cls(
                kind=str(head["kind"]),
                payload=payload,
                metrics=head["metrics"],
                data_sha256=str(head["data_sha256"]),
                feature_names=tuple(str(n) for n in head["feature_names"]),
                seed=int(head["seed"]),
                card=str(head["card"]),
                name=str(head["name"]),
                version=str(head["version"]),
                created=float(head["created"]),
                params=head["params"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ModelError):
                raise
            raise ModelError(f"artifact header is malformed: {exc!r}") from None
