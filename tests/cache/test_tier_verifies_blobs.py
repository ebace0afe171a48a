"""Which tiers' blobs ``BuildCache.run`` trusts without hashing them again: those that say so."""

from __future__ import annotations

from pathlib import Path

from registry_core.cache import LocalActionTier, LocalStore
from registry_core.cache._bazel import BazelHTTPTier
from registry_core.cache._run import _verifies_blobs


class Plain:
    """A tier that does not check what it returns."""


class Claims:
    verifies_blobs = "yes"  # only the value True counts


def test_the_attribute_decides(tmp_path: Path) -> None:
    with BazelHTTPTier("http://127.0.0.1:9") as bazel:  # no request is made
        assert BazelHTTPTier.verifies_blobs is True and _verifies_blobs(bazel)
    assert _verifies_blobs(LocalActionTier(LocalStore(tmp_path / "c")))
    assert not _verifies_blobs(Plain()) and not _verifies_blobs(Claims())
