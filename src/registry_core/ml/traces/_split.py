"""Held-out time: a trace cut in two at one moment, for training and evaluation."""

from __future__ import annotations

import bisect

from ...errors import InvalidArgumentError
from ._record import Catalogue, Episode, Trace

__all__ = ["split_by_time"]


def split_by_time(trace: Trace, train_fraction: float = 0.7) -> tuple[Trace, Trace]:
    """``(train, test)``: the requests before and from the moment ``train_fraction`` of the way
    through the trace's time span. The train trace's catalogue keeps only releases uploaded
    before the cut (nothing of the future leaks into training); the test trace keeps the whole
    catalogue (queries take ``now``). Episodes go to the side(s) they overlap, clipped."""
    if not (0.0 < train_fraction < 1.0):
        raise InvalidArgumentError(f"train_fraction must be in (0, 1), not {train_fraction!r}")
    reqs = trace.requests
    start, end = trace.start, trace.end
    cut = start + (end - start) * train_fraction
    i = bisect.bisect_left([r.time for r in reqs], cut)
    past = Catalogue(
        {
            name: kept
            for name, rels in trace.catalogue.projects.items()
            if (kept := [r for r in rels if r.time < cut])
        },
        dict(trace.catalogue.dependents),
    )
    train_eps = [
        Episode(e.label, e.start, min(e.end, cut), e.clients)
        for e in trace.episodes
        if e.start < cut
    ]
    test_eps = [
        Episode(e.label, max(e.start, cut), e.end, e.clients)
        for e in trace.episodes
        if e.end >= cut
    ]
    head, tail = reqs[:i], reqs[i:]
    head_clients = {r.client for r in head}
    tail_clients = {r.client for r in tail}
    frac = f"{train_fraction:g}"
    train = Trace(
        head,
        past,
        train_eps,
        f"{trace.source}:train<{frac}",
        {c: t for c, t in trace.clients.items() if c in head_clients},
    )
    test = Trace(
        tail,
        trace.catalogue,
        test_eps,
        f"{trace.source}:test>={frac}",
        {c: t for c, t in trace.clients.items() if c in tail_clients},
    )
    return train, test
