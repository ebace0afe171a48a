"""Delta-aware fetch end to end on the real server: rcdelta patches, dcz, 304, verification."""

from __future__ import annotations

import asyncio

import pytest

from _servers import RESOLVE, flags, make_versions, url
from registry_core.errors import DigestMismatchError, TransportError
from registry_core.transport import Transport

pytestmark = pytest.mark.network

V = "/simple/pkg/pkg-{}-py3-none-any.whl"


def run(coro):
    return asyncio.run(coro)


def make(pki, **kw):
    kw.setdefault("flags", flags())
    kw.setdefault("http3", False)
    return Transport(verify=pki[0], resolve=RESOLVE, **kw)


@pytest.mark.parametrize("http3", [False, True], ids=["h2", "h3"])
def test_delta_fetch_is_byte_exact_and_small(pki, server, artifacts, http3):
    old, new = artifacts[1][V.format("1.0")], artifacts[1][V.format("1.2")]

    async def main():
        async with make(pki, http3=http3) as t:
            data = await t.fetch(url(server, V.format("1.2")), have=old)
            return data, t.stats

    data, stats = run(main())
    assert data == new
    assert stats["fetch_delta"] == 1
    assert stats["fetch_bytes_wire"] < len(new) // 20, stats


def test_patch_is_computed_once_and_cached(pki, server, artifacts):
    old = artifacts[1][V.format("1.0")]
    before = server.registry.patches_computed

    async def main():
        async with make(pki, coalesce_requests=False) as t:
            a = await asyncio.gather(
                *(t.fetch(url(server, V.format("1.1")), have=old) for _ in range(3))
            )
            b = await t.fetch(url(server, V.format("1.1")), have=old)
            return a, b

    a, b = run(main())
    assert all(x == artifacts[1][V.format("1.1")] for x in [*a, b])
    assert server.registry.patches_computed - before == 1


def test_fetch_of_what_we_have_is_304(pki, server, artifacts):
    have = artifacts[1][V.format("1.1")]

    async def main():
        async with make(pki) as t:
            return await t.fetch(url(server, V.format("1.1")), have=have), t.stats

    data, stats = run(main())
    assert data == have and stats["fetch_not_modified"] == 1
    assert stats["fetch_bytes_wire"] == 0


def test_unknown_base_falls_back_to_full_artifact(pki, server, artifacts):
    async def main():
        async with make(pki) as t:
            return await t.fetch(url(server, V.format("1.1")), have=b"some other bytes"), t.stats

    data, stats = run(main())
    assert data == artifacts[1][V.format("1.1")] and stats["fetch_full"] == 1


def test_dcz_when_patches_are_off(pki, server, artifacts):
    old, new = artifacts[1][V.format("1.0")], artifacts[1][V.format("1.1")]

    async def main():
        async with make(pki, flags=flags(DELTA_AGGREGATOR=False)) as t:
            return await t.fetch(url(server, V.format("1.1")), have=old), t.stats

    data, stats = run(main())
    assert data == new and stats["fetch_dcz"] == 1
    assert stats["fetch_bytes_wire"] < len(new) // 4


def test_full_fetch_without_have_is_verified(pki, server, artifacts, tmp_path):
    dest = tmp_path / "pkg.whl"

    async def main():
        async with make(pki) as t:
            return await t.fetch(url(server, V.format("1.2")), dest=dest)

    data = run(main())
    assert data == artifacts[1][V.format("1.2")] == dest.read_bytes()


def test_patch_result_with_wrong_digest_raises_and_writes_nothing(pki, server, tmp_path):
    old = make_versions(2)[0][1]
    dest = tmp_path / "pkg.whl"
    dest.write_bytes(old)

    async def main():
        async with make(pki) as t:
            await t.fetch(url(server, "/evil/delta-bad-digest"), have=old, dest=dest)

    with pytest.raises(DigestMismatchError):
        run(main())
    assert dest.read_bytes() == old and len(list(tmp_path.iterdir())) == 1


def test_corrupt_patch_raises_transport_error(pki, server, tmp_path):
    old = make_versions(2)[0][1]

    async def main():
        async with make(pki) as t:
            await t.fetch(url(server, "/evil/delta-garbage"), have=old, dest=tmp_path / "x")

    with pytest.raises(TransportError):
        run(main())
    assert not list(tmp_path.iterdir())


def test_updates_follow_a_chain_of_versions(pki, server, artifacts):
    """A client following 1.0 -> 1.1 -> 1.2 moves a small fraction of the full bytes."""

    async def main():
        async with make(pki, http3=True) as t:
            have = await t.fetch(url(server, V.format("1.0")))
            for v in ("1.1", "1.2"):
                have = await t.fetch(url(server, V.format(v)), have=have)
            return have, t.stats

    have, stats = run(main())
    assert have == artifacts[1][V.format("1.2")]
    assert stats["fetch_delta"] == 2
    assert stats["fetch_bytes_wire"] < 0.5 * stats["fetch_bytes_full"]


def test_platform_without_reference_zlib_asks_for_a_binary_patch(
    pki, server, artifacts, monkeypatch
):
    """On a platform whose zlib does not give the reference output (zlib-ng compat), archive
    patches cannot be rebuilt: the client says so (Delta-Engines without zlib) and the server
    sends a BINARY patch it can apply, instead of an ARCHIVE patch thrown away for a full
    download."""
    from registry_core.delta import _deflate

    monkeypatch.setitem(_deflate._engine_ok, _deflate.ZLIB, False)
    old, new = artifacts[1][V.format("1.0")], artifacts[1][V.format("1.2")]

    async def main():
        async with make(pki) as t:
            return await t.fetch(url(server, V.format("1.2")), have=old), t.stats

    data, stats = run(main())
    assert data == new
    assert stats["fetch_delta"] == 1 and stats["fetch_delta_unusable"] == 0, stats
    assert stats["fetch_full"] == 0


def test_client_states_its_engines(pki, server, monkeypatch):
    from registry_core.delta import _deflate

    monkeypatch.setitem(_deflate._engine_ok, _deflate.ZLIB, False)
    monkeypatch.setitem(_deflate._engine_ok, _deflate.MINIZ, True)

    async def main():
        async with make(pki) as t:
            policy = await t._fetch_policy()
            return policy.plan(b"old").headers

    headers = run(main())
    assert headers["a-im"] == "rcdelta" and headers["delta-engines"] == "miniz, recon, zstd-prefix"


@pytest.mark.parametrize("http3", [False, True], ids=["h2", "h3"])
def test_platform_reproducing_no_engine_sends_an_empty_list_and_gets_binary(
    pki, server, artifacts, monkeypatch, http3
):
    """No reference engine at all: A-IM is still sent, with an empty Delta-Engines (which
    must survive HTTP/2 and HTTP/3 framing); the server answers a BINARY patch."""
    from registry_core.delta import DeltaAggregator, _deflate

    monkeypatch.setitem(_deflate._engine_ok, _deflate.ZLIB, False)
    monkeypatch.setitem(_deflate._engine_ok, _deflate.MINIZ, False)
    real_inspect = DeltaAggregator.inspect
    methods = []

    def inspect(patch):
        info = real_inspect(patch)
        methods.append(info.method)
        return info

    monkeypatch.setattr(DeltaAggregator, "inspect", staticmethod(inspect))
    old, new = artifacts[1][V.format("1.0")], artifacts[1][V.format("1.1")]

    async def main():
        async with make(pki, http3=http3) as t:
            return await t.fetch(url(server, V.format("1.1")), have=old), t.stats

    data, stats = run(main())
    assert data == new and stats["fetch_delta"] == 1, stats
    # a binary patch: BINARY, or ZSTD_PREFIX (this client names zstd-prefix) when smaller
    assert methods and set(methods) <= {"BINARY", "ZSTD_PREFIX"}, methods
