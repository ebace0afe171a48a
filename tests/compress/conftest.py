"""Fixtures of the compress tests: real flags, real metadata documents."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _data import file_records, metadata_records


@pytest.fixture(scope="session")
def records() -> tuple[bytes, ...]:
    docs = metadata_records()
    if len(docs) < 40:  # a small environment: add real per-file records (RECORD entries)
        docs = docs + file_records()[: 400 - len(docs)]
    if len(docs) < 20:
        pytest.skip("fewer than 20 installed distributions to build metadata records from")
    return docs


@pytest.fixture(scope="session")
def trained(records):
    from registry_core.compress import Compressor

    return Compressor.train_dictionary(records[: len(records) // 2], size=4096)
