"""TenantResolver (sans-IO): host matching (case, port, trailing dot), /t/<tenant> paths,
crafted paths, and a host-matched request that names another tenant in its path."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry_core.auth import TenantResolver, TenantRoute, check_tenant_name
from registry_core.errors import InvalidArgumentError

R = TenantResolver({"acme": ["pkgs.acme.test", "acme.test"], "globex": []})


@pytest.mark.parametrize(
    "host", ["acme.test", "ACME.test", "acme.test:8443", "acme.test.", "Acme.Test.:443"]
)
def test_host(host: str) -> None:
    assert R.resolve(host, "/simple/") == (TenantRoute("acme", ""), "/simple/")


def test_host_wins_over_path() -> None:
    # a host of tenant A with a /t/B/ path stays in A (a 404 there), never re-resolved
    assert R.resolve("acme.test", "/t/globex/simple/") == (
        TenantRoute("acme", ""),
        "/t/globex/simple/",
    )


@pytest.mark.parametrize(
    ("path", "inner"),
    [("/t/globex/simple/", "/simple/"), ("/t/globex", "/"), ("/t/globex/", "/")],
)
def test_path(path: str, inner: str) -> None:
    for host in (None, "", "other.test", "127.0.0.1:8443", "[::1]:8443"):
        assert R.resolve(host, path) == (TenantRoute("globex", "/t/globex"), inner)
    assert R.resolve(None, "/t/acme/x") == (TenantRoute("acme", "/t/acme"), "/x")


@pytest.mark.parametrize(
    "path",
    [
        "/t/../globex/x",
        "/t/%61cme/x",
        "/t/%2e%2e/x",
        "/t/ACME/x",
        "/t/acme./x",
        "/t//acme/x",
        "/t/nope/x",
        "/t/",
        "/t",
        "/",
        "/simple/",
        "t/acme/x",
        "",
    ],
)
def test_no_route(path: str) -> None:
    assert R.resolve("unknown.test", path) is None


def test_default_tenant_gets_the_rest() -> None:
    v1 = TenantResolver({"default": []}, default="default")
    assert v1.resolve("localhost:8443", "/simple/") == (TenantRoute("default", ""), "/simple/")
    # a project named "t": its files stay the default tenant's
    assert v1.resolve(None, "/t/t-1.0.tar.gz") == (TenantRoute("default", ""), "/t/t-1.0.tar.gz")
    both = TenantResolver({"default": [], "acme": ["acme.test"]}, default="default")
    assert both.resolve(None, "/t/acme/x") == (TenantRoute("acme", "/t/acme"), "/x")
    assert both.resolve(None, "/t/%61cme/x") == (TenantRoute("default", ""), "/t/%61cme/x")


def test_construction_errors() -> None:
    with pytest.raises(InvalidArgumentError):
        TenantResolver({"a": ["x.test"], "b": ["X.test."]})  # one domain, two tenants
    with pytest.raises(InvalidArgumentError):
        TenantResolver({"Bad_Name": []})
    with pytest.raises(InvalidArgumentError):
        TenantResolver({"a": []}, default="b")
    with pytest.raises(InvalidArgumentError):
        TenantResolver({"a": "a.test"})  # type: ignore[dict-item]
    with pytest.raises(InvalidArgumentError):
        TenantResolver({"a": []}, path_prefix="t")


@pytest.mark.parametrize("name", ["a", "acme", "a-1", "0", "x" * 63])
def test_names_ok(name: str) -> None:
    assert check_tenant_name(name) == name


@pytest.mark.parametrize("name", ["", "-a", "A", "a_b", "a.b", "x" * 64, "..", "a/b", 5])
def test_names_bad(name: object) -> None:
    with pytest.raises(InvalidArgumentError):
        check_tenant_name(name)


@given(st.text(max_size=60), st.one_of(st.none(), st.text(max_size=40)))
def test_resolve_is_total_and_stays_in_known_tenants(path: str, host: str | None) -> None:
    got = R.resolve(host, path)
    if got is not None:
        route, inner = got
        assert route.tenant in ("acme", "globex") and inner.startswith("/")
        if route.base:
            assert path.startswith(route.base) and route.base == f"/t/{route.tenant}"
