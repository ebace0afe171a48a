"""The proxy's cache: the LRU eviction policy (sans-IO, plus a property test that the bound
holds for any sequence of inserts and accesses), the on-disk state rebuilt at start
(temporaries of an interrupted write removed and never counted), a custom policy plugged in,
and a real proxy whose cache stays under its bound while serving more than fits."""

from __future__ import annotations

import httpx
from _proxy_support import PROJECT, run
from hypothesis import given
from hypothesis import strategies as st

from registry_core.proxy import EvictionPolicy, LRUEviction, ProxyApp
from registry_core.proxy._cache import FileCache


def _clock() -> float:
    return 0.0


def test_lru_evicts_least_recently_used_first():
    p = LRUEviction()
    for i, size in enumerate([10, 20, 30]):
        p.record_insert(f"p/f{i}", size, float(i))
    p.record_access("p/f0", 5.0)
    assert p.choose_victims(15) == ["p/f1"]
    assert p.choose_victims(25) == ["p/f1", "p/f2"]
    p.record_remove("p/f1")
    assert p.choose_victims(1000) == ["p/f2", "p/f0"]
    assert isinstance(p, EvictionPolicy)


@given(
    st.lists(
        st.tuples(st.sampled_from(["put", "touch"]), st.integers(0, 7), st.integers(1, 400)),
        max_size=40,
    )
)
def test_cache_never_exceeds_its_bound(tmp_path_factory, ops):
    root = tmp_path_factory.mktemp("bound")
    cache = FileCache(root, max_bytes=1000, clock=_clock)
    for op, i, size in ops:
        key = f"p/f{i}.tar.gz"
        if op == "put":
            assert cache.put(key, b"x" * size)
        else:
            cache.touch(key)
        assert cache.total <= 1000
        on_disk = sum(f.stat().st_size for f in (root / "files").rglob("*") if f.is_file())
        assert on_disk == cache.total
    assert not cache.put("p/huge.tar.gz", b"x" * 1001)  # over the bound alone: not stored


def test_state_rebuilt_at_start_temporaries_removed(tmp_path):
    cache = FileCache(tmp_path, max_bytes=10_000, clock=_clock)
    cache.put("p/a-1.0.tar.gz", b"a" * 100)
    cache.put("p/a-1.1.tar.gz", b"b" * 200)
    tmp = tmp_path / "files" / "p" / ".a-1.2.tar.gz.x1y2.tmp"
    tmp.write_bytes(b"half")
    again = FileCache(tmp_path, max_bytes=10_000, clock=_clock)
    assert again.total == 300 and sorted(again.keys("p")) == ["a-1.0.tar.gz", "a-1.1.tar.gz"]
    assert not tmp.exists()
    smaller = FileCache(tmp_path, max_bytes=250, clock=_clock)  # bound lowered: evicts
    assert smaller.total <= 250


class Biggest:
    """A custom policy: evict the largest file first."""

    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}

    def record_insert(self, key, size, now):
        self.sizes[key] = size

    def record_access(self, key, now):
        pass

    def record_remove(self, key):
        self.sizes.pop(key, None)

    def choose_victims(self, need_bytes):
        out, freed = [], 0
        for key, size in sorted(self.sizes.items(), key=lambda kv: -kv[1]):
            if freed >= need_bytes:
                break
            out.append(key)
            freed += size
        return out


def test_custom_policy_plugs_in(tmp_path):
    cache = FileCache(tmp_path, max_bytes=500, policy=Biggest(), clock=_clock)
    cache.put("p/small.tar.gz", b"s" * 100)
    cache.put("p/big.tar.gz", b"b" * 300)
    cache.put("p/new.tar.gz", b"n" * 200)
    assert sorted(cache.keys("p")) == ["new.tar.gz", "small.tar.gz"]
    assert cache.evictions == 1


def test_proxy_cache_stays_under_bound(upstream, built, tmp_path):
    files = [p for b in built.values() for p in (b.wheel, b.sdist)]
    sizes = [p.stat().st_size for p in files]
    bound = max(sizes) + min(sizes)  # never room for all four
    app = ProxyApp(upstream.base, tmp_path / "cache", verify=upstream.ca, max_cache_bytes=bound)

    async def main():
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://proxy.test"
        ) as c:
            out = []
            for p in files:
                out.append(await c.get(f"/files/{PROJECT}/{p.name}"))
                assert app.stats.cache_bytes <= bound
        await app.aclose()
        return out

    rs = run(main())
    assert [r.content for r in rs] == [p.read_bytes() for p in files]
    on_disk = sum(
        f.stat().st_size for f in (tmp_path / "cache" / "files").rglob("*") if f.is_file()
    )
    assert on_disk <= bound and app.stats.evictions >= 2
