"""Properties of the access-control model (hypothesis): text round trips, covers() is a
partial order, no decision crosses tenants, token scopes never widen their owner's roles."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry_core.audit import MemorySink
from registry_core.auth import (
    ACTIONS,
    ROLES,
    Decision,
    Policy,
    Principal,
    Resource,
    RoleBinding,
    Scope,
    TokenRecord,
    authorize,
    may_revoke,
    require,
)
from registry_core.errors import (
    AuthenticationError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    TokenExpiredError,
)

TENANTS = st.sampled_from(["acme", "globex", "t-1"])
INDEXES = st.sampled_from(["main", "dev", "a_b"])
PROJECTS = st.sampled_from(["foo", "bar", "foo-bar", "x1"])


@st.composite
def resources(draw: st.DrawFn, tenant: st.SearchStrategy[str] = TENANTS) -> Resource:
    t = draw(tenant)
    level = draw(st.integers(0, 2))
    if level == 0:
        return Resource(t)
    if level == 1:
        return Resource(t, draw(INDEXES))
    return Resource(t, draw(INDEXES), draw(PROJECTS))


ACTION_SETS = st.frozensets(st.sampled_from(ACTIONS), min_size=1)
SCOPES = st.builds(Scope, ACTION_SETS, resources(st.just("acme")))
BINDINGS = st.builds(
    RoleBinding,
    st.sampled_from(["user:alice", "user:bob", "group:devs", "*", "authenticated"]),
    st.sampled_from(ROLES),
    resources(),
)
PRINCIPALS = st.builds(
    Principal,
    TENANTS,
    st.sampled_from(["user:alice", "user:bob", "anonymous"]),
    st.just("session"),
    st.frozensets(st.sampled_from(["group:devs", "group:ops"])),
)


@given(resources())
def test_resource_text_round_trip(r: Resource) -> None:
    assert Resource.parse(r.tenant, str(r)) == r


@given(SCOPES)
def test_scope_text_round_trip(s: Scope) -> None:
    assert Scope.parse("acme", str(s)) == s


@given(st.text(max_size=30))
def test_resource_parse_never_crashes(text: str) -> None:
    try:
        r = Resource.parse("acme", text)
    except InvalidArgumentError:
        return
    assert Resource.parse("acme", str(r)) == r


@given(st.text(max_size=40))
def test_scope_parse_never_crashes(text: str) -> None:
    try:
        s = Scope.parse("acme", text)
    except InvalidArgumentError:
        return
    assert Scope.parse("acme", str(s)) == s


@pytest.mark.parametrize(
    "text", ["", "/", "main/", "/foo", "main/foo/bar", "Main", "../x", "main/-x", "main/a b", "*x"]
)
def test_bad_resources(text: str) -> None:
    with pytest.raises(InvalidArgumentError):
        Resource.parse("acme", text)


@pytest.mark.parametrize("text", ["", "read", ":main", "read:", "fly:main", "read,,upload:main"])
def test_bad_scopes(text: str) -> None:
    with pytest.raises(InvalidArgumentError):
        Scope.parse("acme", text)


@given(st.lists(resources(), max_size=10))
def test_resources_sort_parents_first(rs: list[Resource]) -> None:
    ordered = sorted(rs)
    for i, a in enumerate(ordered):
        for b in ordered[i + 1 :]:
            assert not (b.covers(a) and a != b)  # a parent never sorts after its child


@given(resources(), resources(), resources())
def test_covers_is_a_partial_order(a: Resource, b: Resource, c: Resource) -> None:
    assert a.covers(a)
    if a.covers(b) and b.covers(a):
        assert a == b
    if a.covers(b) and b.covers(c):
        assert a.covers(c)
    if a.covers(b):
        assert a.tenant == b.tenant


@settings(max_examples=300)
@given(
    PRINCIPALS,
    st.sampled_from(ACTIONS),
    resources(),
    st.lists(BINDINGS, max_size=12),
    st.booleans(),
)
def test_never_across_tenants(
    p: Principal, action: str, r: Resource, bindings: list[RoleBinding], standalone: bool
) -> None:
    if standalone:  # the widest possible token: every action on the whole tenant
        p = Principal(
            p.tenant,
            "token:x",
            "token",
            standalone=True,
            scopes=(Scope(frozenset(ACTIONS), Resource(r.tenant)),),
        )
    decision = authorize(p, action, r, Policy(bindings))
    if p.tenant != r.tenant:
        assert not decision and decision.reason == "cross-tenant"
        with pytest.raises(NotFoundError):
            require(p, action, r, Policy(bindings))
    local = Principal.local(p.tenant)
    assert bool(authorize(local, action, r, Policy(()))) == (r.tenant == p.tenant)


@settings(max_examples=300)
@given(
    st.sampled_from(ACTIONS),
    resources(st.just("acme")),
    st.lists(BINDINGS, max_size=12),
    st.lists(SCOPES, min_size=1, max_size=4),
    st.frozensets(st.sampled_from(["group:devs", "group:ops"])),
)
def test_token_scopes_never_widen_roles(
    action: str,
    r: Resource,
    bindings: list[RoleBinding],
    scopes: list[Scope],
    groups: frozenset[str],
) -> None:
    policy = Policy(bindings)
    owner = Principal("acme", "user:alice", "session", groups=groups)
    token = Principal("acme", "user:alice", "token", groups=groups, scopes=tuple(scopes))
    by_owner = authorize(owner, action, r, policy)
    by_token = authorize(token, action, r, policy)
    if by_token:
        assert by_owner  # never more than the owner
        assert any(s.allows(action, r) for s in scopes)
    if by_owner and any(s.allows(action, r) for s in scopes):
        assert by_token  # and exactly the intersection


def test_expiry_and_require_errors() -> None:
    policy = Policy([RoleBinding("user:a", "reader", Resource("acme"))])
    r = Resource("acme", "main")
    p = Principal("acme", "user:a", "token", expires_ns=100)
    assert authorize(p, "read", r, policy, now_ns=99)
    assert authorize(p, "read", r, policy, now_ns=100) == Decision(False, "expired")
    with pytest.raises(TokenExpiredError):
        require(p, "read", r, policy, now_ns=100)
    with pytest.raises(AuthenticationError) as info:
        require(Principal.anonymous("acme"), "read", r, policy)
    assert info.value.status == 401
    with pytest.raises(PermissionDeniedError, match="user:a may not upload on main"):
        require(Principal("acme", "user:a", "session"), "upload", r, policy)
    with pytest.raises(NotFoundError) as nf:
        require(Principal("acme", "user:a", "session"), "upload", r, policy, hide=True)
    assert nf.value.status == 404 and str(nf.value) == "404 Not Found"
    with pytest.raises(InvalidArgumentError):
        authorize(p, "fly", r, policy)


def test_denials_are_audited_without_other_tenants_names() -> None:
    sink = MemorySink()
    p = Principal("acme", "user:a", "session")
    authorize(p, "read", Resource("globex", "secret-index"), Policy(()), audit=sink)
    authorize(p, "read", Resource("acme", "main"), Policy(()), audit=sink)
    a, b = sink.events
    assert a.kind == b.kind == "authz.denied" and a.outcome == "denied"
    assert "globex" not in str(a.to_json()) and "secret" not in str(a.to_json())
    assert b.resource == "main" and b.detail["reason"] == "no role permits it"


def test_may_revoke() -> None:
    scope = Scope(frozenset({"upload"}), Resource("acme", "main", "foo"))
    rec = TokenRecord("0123456789abcdef", "x" * 64, "user:alice", (scope,), "", 1)
    policy = Policy([RoleBinding("user:olga", "owner", Resource("acme", "main"))])
    assert may_revoke(Principal("acme", "user:alice", "session"), rec, policy)  # own token
    assert not may_revoke(Principal("acme", "user:bob", "session"), rec, policy)
    assert may_revoke(Principal("acme", "user:olga", "session"), rec, policy)  # token.revoke
    assert not may_revoke(Principal("globex", "user:alice", "session"), rec, policy)
    assert not may_revoke(Principal("acme", "user:alice", "token", expires_ns=5), rec, policy)
    standalone = TokenRecord("1123456789abcdef", "x" * 64, None, (scope,), "", 1)
    itself = Principal("acme", "token:1123456789abcdef", "token", standalone=True)
    assert may_revoke(itself, standalone, policy)


def test_policy_speed_structure() -> None:
    """bindings_for looks only at the caller's subject, groups, '*' and 'authenticated'."""
    many = [RoleBinding(f"user:u{i}", "reader", Resource("acme")) for i in range(1000)]
    policy = Policy([*many, RoleBinding("*", "reader", Resource("acme", "pub"))])
    assert len(policy) == 1001
    p = Principal("acme", "user:u7", "session", groups=frozenset({"group:g"}))
    assert [b.subject for b in policy.bindings_for(p)] == ["*", "user:u7"]
    assert policy.roles(p, Resource("acme", "pub")) == {"reader"}
    assert policy.roles(Principal.anonymous("acme"), Resource("acme", "x")) == set()
