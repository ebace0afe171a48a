"""The eviction policies: unit behaviour, invariants under any event sequence (hypothesis), and
agreement with small plain reference implementations written here (same hit/miss sequence)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry_core.errors import InvalidArgumentError
from registry_core.eviction import (
    POLICIES,
    EvictionPolicy,
    LRUEviction,
    S3FIFOEviction,
    SieveEviction,
    make_policy,
    replay,
)

# -- plain reference implementations -------------------------------------------------------


def ref_lru(trace: list[tuple[str, int]], cap: int) -> list[bool]:
    order: list[str] = []
    sizes: dict[str, int] = {}
    out = []
    for key, size in trace:
        if key in sizes:
            order.remove(key)
            order.append(key)
            out.append(True)
            continue
        out.append(False)
        if size > cap:
            continue
        while sum(sizes.values()) + size > cap:
            sizes.pop(order.pop(0))
        order.append(key)
        sizes[key] = size
    return out


def ref_sieve(trace: list[tuple[str, int]], cap: int) -> list[bool]:
    q: list[list] = []  # [key, size, visited], oldest first
    hand: int | None = None
    out = []
    for key, size in trace:
        found = [e for e in q if e[0] == key]
        if found:
            found[0][2] = True
            out.append(True)
            continue
        out.append(False)
        if size > cap:
            continue
        while sum(e[1] for e in q) + size > cap:
            i = 0 if hand is None else hand
            while q[i][2]:
                q[i][2] = False
                i = i + 1 if i + 1 < len(q) else 0
            del q[i]
            hand = i if i < len(q) else None
        q.append([key, size, False])
    return out


def ref_s3fifo(trace: list[tuple[str, int]], cap: int) -> list[bool]:
    """SOSP'23 Algorithm 1 with libCacheSim's choices (threshold 2, 2-bit main counter, main
    queue first when over its share, main insertion before the first eviction)."""
    small_cap = int(cap * 0.1)
    main_cap = cap - small_cap
    ghost_cap = int(cap * 0.9)
    small: list[list] = []  # [key, size, freq], oldest first
    main: list[list] = []
    ghost: list[list] = []  # [key, size]
    evicted_once = False
    out = []

    def used(q):
        return sum(e[1] for e in q)

    for key, size in trace:
        hit = [e for e in small + main if e[0] == key]
        if hit:
            hit[0][2] = min(hit[0][2] + 1, 3)
            out.append(True)
            continue
        out.append(False)
        if size > cap:
            continue
        g = [e for e in ghost if e[0] == key]  # looked up at the miss, before evicting
        if g:
            ghost.remove(g[0])
        while used(small) + used(main) + size > cap:
            evicted_once = True
            if used(main) > main_cap or not small:
                while True:
                    e = main.pop(0)
                    if e[2] >= 1:
                        e[2] -= 1
                        main.append(e)
                    else:
                        break
            else:
                while small:
                    e = small.pop(0)
                    if e[2] >= 2:
                        main.append([e[0], e[1], 0])
                    else:
                        if e[1] <= ghost_cap:
                            ghost.append([e[0], e[1]])
                            while used(ghost) > ghost_cap:
                                ghost.pop(0)
                        break
        if g or (not evicted_once and used(small) >= small_cap):
            main.append([key, size, 0])
        else:
            small.append([key, size, 0])
    return out


REFERENCES = {"lru": ref_lru, "sieve": ref_sieve, "s3fifo": ref_s3fifo}


def ours(name: str, trace: list[tuple[str, int]], cap: int) -> list[bool]:
    policy = make_policy(name, capacity_bytes=cap)
    timed = [(k, s, float(i)) for i, (k, s) in enumerate(trace)]
    return replay(policy, timed, cap, record=True).hits


traces = st.lists(st.tuples(st.integers(0, 20).map(lambda i: f"p/f{i}"), st.integers(1, 60)))


def _sized(trace):  # one size per key, as cached files have
    first: dict[str, int] = {}
    return [(k, first.setdefault(k, s)) for k, s in trace]


@pytest.mark.parametrize("name", POLICIES)
@settings(max_examples=150, deadline=None)
@given(trace=traces.map(_sized), cap=st.integers(1, 400))
def test_same_hits_as_the_reference(name, trace, cap):
    assert ours(name, trace, cap) == REFERENCES[name](trace, cap)


@pytest.mark.parametrize("name", POLICIES)
@settings(max_examples=100, deadline=None)
@given(keys=st.lists(st.integers(0, 30), max_size=300), cap=st.integers(1, 25))
def test_same_hits_as_the_reference_unit_sizes(name, keys, cap):
    trace = [(f"k{k}", 1) for k in keys]
    assert ours(name, trace, cap) == REFERENCES[name](trace, cap)


events = st.lists(
    st.one_of(
        st.tuples(st.just("insert"), st.integers(0, 12), st.integers(1, 100)),
        st.tuples(st.just("access"), st.integers(0, 12), st.just(0)),
        st.tuples(st.just("remove"), st.integers(0, 12), st.just(0)),
        st.tuples(st.just("choose"), st.just(0), st.integers(0, 400)),
    ),
    max_size=120,
)


@pytest.mark.parametrize("name", POLICIES)
@settings(max_examples=150, deadline=None)
@given(ops=events)
def test_invariants_for_any_event_sequence(name, ops):
    """Victims are held keys, named once, free at least what was asked unless every key is
    named; a removed key is never named again."""
    policy = make_policy(name, capacity_bytes=300)
    assert isinstance(policy, EvictionPolicy)
    held: dict[str, int] = {}
    gone: set[str] = set()
    for t, (op, i, n) in enumerate(ops):
        key = f"p/f{i}"
        if op == "insert" and key not in held:
            policy.record_insert(key, n, float(t))
            held[key] = n
            gone.discard(key)
        elif op == "access":
            policy.record_access(key, float(t))
        elif op == "remove":
            policy.record_remove(key)
            held.pop(key, None)
            gone.add(key)
        elif op == "choose":
            victims = policy.choose_victims(n)
            assert len(victims) == len(set(victims))
            assert set(victims) <= set(held) and not set(victims) & gone
            freed = sum(held[v] for v in victims)
            assert freed >= n or set(victims) == set(held)
            for v in victims:  # the caller's side of the contract
                policy.record_remove(v)
                del held[v]
                gone.add(v)
        assert len(policy) == len(held)  # type: ignore[arg-type]


def test_sieve_keeps_visited_objects_in_place():
    p = SieveEviction()
    for k in "abcd":
        p.record_insert(k, 10, 0.0)
    p.record_access("a", 1.0)  # the oldest, but visited
    assert p.choose_victims(10) == ["b"]  # a's bit cleared, b evicted, hand stays at c
    p.record_access("a", 2.0)
    assert p.choose_victims(10) == ["c"]
    assert p.choose_victims(15) == ["d", "a"]  # hand wraps to the tail: a's bit was cleared


def test_s3fifo_one_hit_wonders_leave_through_the_small_queue():
    p = S3FIFOEviction(100)
    for i in range(10):  # fills the cache: the small queue is full after one, then main
        p.record_insert(f"hot{i}", 10, 0.0)
    for i in range(10):
        p.record_access(f"hot{i}", 1.0)
    victims = []
    for i in range(30):  # a scan of objects seen once
        named = p.choose_victims(10)
        for v in named:
            p.record_remove(v)
        victims += named
        p.record_insert(f"scan{i}", 10, 2.0)
    assert sum(v.startswith("hot") for v in victims) <= 1  # the scan evicts itself
    assert p.small_bytes + p.main_bytes <= 100


def test_lru_choose_is_a_pure_query():
    p = LRUEviction()
    p.record_insert("a", 5, 0.0)
    assert p.choose_victims(1) == ["a"] == p.choose_victims(1)


def test_make_policy_by_name():
    assert isinstance(make_policy("LRU"), LRUEviction)
    assert isinstance(make_policy("S3-FIFO", capacity_bytes=10), S3FIFOEviction)
    with pytest.raises(InvalidArgumentError, match="expected one of lru, sieve, s3fifo"):
        make_policy("arc")
    with pytest.raises(InvalidArgumentError, match="learned needs a model"):
        make_policy("learned")
    with pytest.raises(InvalidArgumentError):
        S3FIFOEviction(0)


def test_replay_refuses_a_broken_policy():
    class Liar(LRUEviction):
        def choose_victims(self, need_bytes):
            return ["nope"]

    with pytest.raises(InvalidArgumentError, match="not cached"):
        replay(Liar(), [("a", 5, 0.0), ("b", 5, 1.0)], 6)


def test_proxy_reexports_the_policies():
    from registry_core import proxy
    from registry_core.proxy import _eviction

    assert proxy.LRUEviction is LRUEviction and proxy.EvictionPolicy is EvictionPolicy
    assert _eviction.SieveEviction is SieveEviction
