"""docs/rbac.md is the specification: its two tables are parsed here and every role x action x
binding level x resource level is checked against authorize(), so the page and the code
cannot drift."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from registry_core.audit import MemorySink
from registry_core.auth import (
    ACTIONS,
    PERMISSIONS,
    ROLES,
    Policy,
    Principal,
    Resource,
    RoleBinding,
    authorize,
    grantable,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "rbac.md"
LEVELS = ("tenant", "index", "project")


def _tables() -> list[list[list[str]]]:
    """Every Markdown table of the page: rows of cells (the |---| separator dropped)."""
    tables: list[list[list[str]]] = []
    current: list[list[str]] | None = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line.startswith("|") and line.endswith("|"):
            cells = [c.strip() for c in line[1:-1].split("|")]
            if all(set(c) <= set("-: ") and c for c in cells):
                continue
            if current is None:
                current = []
                tables.append(current)
            current.append(cells)
        else:
            current = None
    return tables


def _table(header0: str) -> tuple[list[str], dict[str, dict[str, bool]]]:
    (table,) = [t for t in _tables() if t[0][0] == header0]
    header = table[0][1:]
    out: dict[str, dict[str, bool]] = {}
    for row in table[1:]:
        assert all(c in ("yes", "-") for c in row[1:]), row
        out[row[0]] = {h: c == "yes" for h, c in zip(header, row[1:], strict=True)}
    return header, out


def test_permission_table_is_the_code() -> None:
    header, table = _table("action")
    assert header == list(ROLES)
    assert list(table) == list(ACTIONS)
    for role in ROLES:
        assert PERMISSIONS[role] == {a for a in ACTIONS if table[a][role]}, role


def test_coverage_table_is_the_code() -> None:
    header, table = _table("binding level")
    assert header == list(LEVELS) and list(table) == list(LEVELS)
    for b, r in itertools.product(LEVELS, LEVELS):
        assert _res(b).covers(_res(r)) == table[b][r], (b, r)


def _res(level: str, tenant: str = "acme") -> Resource:
    return {
        "tenant": Resource(tenant),
        "index": Resource(tenant, "main"),
        "project": Resource(tenant, "main", "foo"),
    }[level]


_, PERMS = _table("action")
_, COVER = _table("binding level")


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("binding_level", LEVELS)
def test_matrix(role: str, binding_level: str) -> None:
    binding = RoleBinding("user:alice", role, _res(binding_level))
    policy = Policy([binding])
    alice = Principal("acme", "user:alice", "session")
    bob = Principal("acme", "user:bob", "session")
    sink = MemorySink()
    for action, level in itertools.product(ACTIONS, LEVELS):
        want = PERMS[action][role] and COVER[binding_level][level]
        got = authorize(alice, action, _res(level), policy, audit=sink)
        assert bool(got) == want, (role, binding_level, action, level, got)
        if want:
            assert got.role == role
        # siblings are never covered, other subjects never get it, other tenants never
        assert not authorize(bob, action, _res(level), policy)
        assert not authorize(alice, action, Resource("acme", "other", "foo"), policy) or (
            binding_level == "tenant" and PERMS[action][role]
        )
        assert not authorize(alice, action, Resource("acme", "main", "bar"), policy) or (
            binding_level != "project" and PERMS[action][role]
        )
        assert not authorize(
            Principal("globex", "user:alice", "session"), action, _res(level, "globex"), policy
        )
    denials = [e for e in sink.events if e.kind == "authz.denied"]
    expected = sum(
        not (PERMS[a][role] and COVER[binding_level][lv])
        for a, lv in itertools.product(ACTIONS, LEVELS)
    )
    assert len(denials) == expected  # every denial audited, nothing else


@pytest.mark.parametrize("subject", ["*", "authenticated", "group:devs"])
def test_special_subjects(subject: str) -> None:
    policy = Policy([RoleBinding(subject, "uploader", Resource("acme", "main"))])
    anon = Principal.anonymous("acme")
    member = Principal("acme", "user:x", "session", groups=frozenset({"group:devs"}))
    outsider = Principal("acme", "user:y", "token")
    target = Resource("acme", "main", "p")
    assert bool(authorize(anon, "upload", target, policy)) == (subject == "*")
    assert bool(authorize(member, "upload", target, policy))
    assert bool(authorize(outsider, "upload", target, policy)) == (subject != "group:devs")


def test_grantable_rules() -> None:
    for role in ROLES:
        assert grantable({"admin"}, role)
        assert grantable({"owner"}, role) == (role in ("reader", "uploader", "maintainer", "owner"))
        for other in ("reader", "uploader", "maintainer", "auditor"):
            assert not grantable({other}, role)
    assert not grantable(set(), "reader")
