"""The last guard of apply / inspect / compose / unbundle: should a bound ever be missed, what
the decoders underneath raise still reaches the caller as a registry_core error. The bounds
keep real inputs from getting here (tests/hostile/test_hostile_delta.py), so the failure is
injected at the parser, the first thing every entry point runs."""

from __future__ import annotations

import struct
import zlib

import pytest
import zstandard

from registry_core import DeltaAggregator
from registry_core.delta import _aggregator, _bundle
from registry_core.errors import CorruptPatchError, OutputTooLargeError

FOREIGN = [
    (MemoryError(), OutputTooLargeError),
    (zstandard.ZstdError("bad frame"), CorruptPatchError),
    (zlib.error("bad stream"), CorruptPatchError),
    (struct.error("short"), CorruptPatchError),
    (IndexError("index"), CorruptPatchError),
    (RecursionError("deep"), CorruptPatchError),
]


@pytest.mark.parametrize("raised, expected", FOREIGN, ids=lambda x: type(x).__name__)
def test_foreign_errors_become_registry_core_errors(monkeypatch, raised, expected):
    def failing(*args, **kwargs):
        raise raised

    agg = DeltaAggregator()
    patch = agg.diff(b"a" * 1000, b"a" * 900 + b"b" * 100)
    monkeypatch.setattr(_aggregator, "parse", failing)
    monkeypatch.setattr(_bundle, "decode_uvarint", failing)
    for op in (
        lambda: agg.apply(b"a" * 1000, patch),
        lambda: agg.inspect(patch),
        lambda: agg.compose([patch, patch]),
        lambda: agg.unbundle(agg.bundle({"x": patch})),
    ):
        with pytest.raises(expected) as info:
            op()
        if expected is CorruptPatchError:
            assert info.value.__cause__ is raised
