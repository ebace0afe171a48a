"""The layout codec: linear in shared references, with a work budget (R4), strict varints."""

from __future__ import annotations

import pytest

from registry_core.delta._deflate import DeflateParams
from registry_core.delta._layout import Deflate, Layout, Raw
from registry_core.delta._layout_codec import subtree_sizes
from registry_core.errors import CorruptPatchError

P = DeflateParams(6, 15, 8, 0)


def wide_base(k: int) -> Layout:
    return Layout("zip", (Deflate(k, P, (Deflate(1, P, (Raw(3),)),) * k), Raw(5)))


def test_subtree_sizes_one_walk():
    base = wide_base(4)
    deflates, totals = subtree_sizes(base)
    assert deflates == [5, 1, 1, 1, 1]
    assert totals == [9, 2, 2, 2, 2]  # Deflate + 4 x (Deflate + Raw)


def test_references_round_trip_and_share_subtrees():
    base = wide_base(300)
    refs = Layout("zip", tuple(Deflate(300, P, base.nodes[0].children, 0) for _ in range(50)))
    data = refs.to_bytes(relative_to=base)
    assert len(data) < 50 * 4 + 16  # each reference is a tag and a short varint
    parsed = Layout.from_bytes(data, relative_to=base)
    assert parsed == refs
    assert len(parsed.deflate_entries()) == 50 * 301


def test_work_budget_counts_referenced_subtrees():
    base = wide_base(1000)
    refs = Layout("zip", tuple(Deflate(1000, P, base.nodes[0].children, 0) for _ in range(60)))
    data = refs.to_bytes(relative_to=base)
    # 60 references x 2001 nodes each: within a budget of 200k, refused at 100k
    assert Layout.from_bytes(data, relative_to=base, max_nodes=200_000) == refs
    with pytest.raises(CorruptPatchError, match="max_nodes"):
        Layout.from_bytes(data, relative_to=base, max_nodes=100_000)


def test_non_minimal_varint_refused():
    good = Layout("raw", (Raw(5),)).to_bytes()
    assert good[-1] == 5
    with pytest.raises(CorruptPatchError):
        Layout.from_bytes(good[:-1] + b"\x85\x00")
