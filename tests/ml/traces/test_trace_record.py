"""Trace records: keys, catalogue queries, the digest, the summary and the time split."""

from __future__ import annotations

import dataclasses

import pytest

from registry_core.errors import InvalidArgumentError
from registry_core.ml.traces import (
    Catalogue,
    Episode,
    Release,
    Request,
    Trace,
    generate,
    split_by_time,
)


def _cat() -> Catalogue:
    return Catalogue(
        {
            "p": [
                Release("1.0", -10.0, (("p-1.0.tar.gz", 100),)),
                Release("1.1", 50.0, (("p-1.1.tar.gz", 110),)),
                Release("2.0", 90.0, (("p-2.0.tar.gz", 120), ("p-2.0-py3-none-any.whl", 99))),
            ]
        },
        {"p": 3},
    )


def test_keys():
    assert Request(0, "c", "file", "p", "p-1.0.tar.gz", "1.0", 1).key == "p/p-1.0.tar.gz"
    assert Request(0, "c", "metadata", "p", "f.whl", "1", 1).key == "p/f.whl.metadata"
    assert Request(0, "c", "page", "p", "", "", 1).key == "p/"
    assert Request(0, "c", "login", "", "", "", 1, route="/_/login").key == "/_/login"
    assert Request(0, "-", "file", "", "1234", "", 1).key == "1234"


def test_catalogue_queries_respect_now():
    cat = _cat()
    assert [r.version for r in cat.newer("p", "1.0", 60.0)] == ["1.1"]
    assert [r.version for r in cat.newer("p", "1.0", 100.0)] == ["1.1", "2.0"]
    assert [r.version for r in cat.newer("p", "", 0.0)] == ["1.0"]
    assert cat.newer("p", "2.0", 60.0) == []  # held a version from after now
    assert [r.version for r in cat.newer("p", "0.1-unknown", 60.0)] == ["1.0", "1.1"]
    assert cat.newer("nope", "1.0", 100.0) == []
    assert cat.latest("p", 49.0).version == "1.0" and cat.latest("p", -20.0) is None
    assert cat.release("p", "1.1").time == 50.0 and cat.release("p", "9") is None
    assert cat.file_size("p", "p-2.0-py3-none-any.whl") == 99
    assert cat.file_size("p", "x") is None


def test_digest_is_canonical_and_sensitive():
    reqs = [Request(float(i), "c", "file", "p", "p-1.0.tar.gz", "1.0", 100) for i in range(5)]
    eps = [Episode("scraper", 1.0, 2.0, frozenset({"c", "d"}))]
    a = Trace(list(reqs), _cat(), eps, "x")
    b = Trace(list(reqs), _cat(), list(eps), "y")  # the source is not data
    assert a.sha256() == b.sha256()
    changed = dataclasses.replace(reqs[2], size=101)
    assert Trace(reqs[:2] + [changed] + reqs[3:], _cat(), eps).sha256() != a.sha256()
    assert Trace(list(reqs), _cat(), []).sha256() != a.sha256()
    other = _cat()
    other.dependents["p"] = 4
    assert Trace(list(reqs), other, eps).sha256() != a.sha256()


def test_summary_counts():
    reqs = [
        Request(0.0, "a", "page", "p", "", "", 10),
        Request(86400.0, "a", "file", "p", "p-1.0.tar.gz", "1.0", 100),
        Request(86400.0, "b", "login", "", "", "", 5, status=401, label="credential_stuffing"),
    ]
    s = Trace(reqs, _cat(), [], "file:x", {"a": "dev"}).summary()
    assert s["requests"] == 3 and s["clients"] == 2 and s["projects"] == 1
    assert s["bytes"] == 115 and s["days"] == 1.0 and s["source"] == "file:x"
    assert s["by_kind"] == {"file": 1, "login": 1, "page": 1}
    assert s["by_label"] == {"credential_stuffing": 1, "normal": 2}
    assert s["by_status"] == {"2xx": 2, "4xx": 1}
    assert s["clients_by_type"] == {"dev": 1, "other": 1}


def test_split_by_time_holds_out_the_future():
    trace = generate(seed=7, days=3, clients=200)
    train, test = split_by_time(trace, 0.7)
    assert len(train) + len(test) == len(trace)
    cut = trace.start + (trace.end - trace.start) * 0.7
    assert train.end < cut <= test.start
    assert train.requests + test.requests == trace.requests
    assert all(r.time < cut for rels in train.catalogue.projects.values() for r in rels)
    assert test.catalogue is trace.catalogue
    assert train.source == trace.source + ":train<0.7"
    assert set(train.clients) == {r.client for r in train.requests}
    for e in train.episodes:
        assert e.end <= cut
    for e in test.episodes:
        assert e.start >= cut
    assert len(train.episodes) + len(test.episodes) >= len(trace.episodes)
    for bad in (0.0, 1.0, -1, 2):
        with pytest.raises(InvalidArgumentError):
            split_by_time(trace, bad)
