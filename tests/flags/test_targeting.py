"""Targeting rules: include/exclude lists, attribute constraints, rollouts, context checks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry_core.errors import FlagConfigError, InvalidArgumentError, InvalidTypeError
from registry_core.flags import FeatureFlags, TargetingRule, rollout_bucket

F = "INCREMENTAL_CACHE"


def flags_with(rule):
    return FeatureFlags({F: rule})


def test_tenant_include_list_is_the_audience():
    flags = flags_with({"tenants": ["acme", "globex"]})
    assert flags.is_enabled(F, {"tenant": "acme"})
    assert flags.is_enabled(F, {"tenant": "globex", "key": "c1"})
    assert not flags.is_enabled(F, {"tenant": "initech"})
    assert not flags.is_enabled(F)  # no context: not in the audience


def test_key_include_and_exclusions_win_in_order():
    flags = flags_with({"keys": ["vip"], "exclude_tenants": ["banned"], "exclude_keys": ["bad"]})
    assert flags.is_enabled(F, {"key": "vip"})
    assert not flags.is_enabled(F, {"key": "vip", "tenant": "banned"})  # exclusion first
    assert not flags.is_enabled(F, {"key": "other"})


def test_exclusions_alone_leave_everyone_else_on():
    flags = flags_with({"exclude_tenants": ["legacy"]})
    assert flags.is_enabled(F)
    assert flags.is_enabled(F, {"tenant": "acme"})
    assert not flags.is_enabled(F, {"tenant": "legacy"})


def test_attribute_equals_and_in():
    flags = flags_with({"attributes": {"region": "eu", "plan": ["pro", "team"]}})
    assert flags.is_enabled(F, {"attributes": {"region": "eu", "plan": "pro"}})
    assert flags.is_enabled(F, {"attributes": {"region": "eu", "plan": "team", "x": 1}})
    assert not flags.is_enabled(F, {"attributes": {"region": "us", "plan": "pro"}})
    assert not flags.is_enabled(F, {"attributes": {"region": "eu"}})  # plan missing
    assert not flags.is_enabled(F, {"attributes": {"region": "eu", "plan": ["pro"]}})
    assert not flags.is_enabled(F)


def test_include_list_with_attributes_grants_both():
    flags = flags_with({"tenants": ["acme"], "attributes": {"region": "eu"}})
    assert flags.is_enabled(F, {"tenant": "acme", "attributes": {"region": "us"}})
    assert flags.is_enabled(F, {"tenant": "other", "attributes": {"region": "eu"}})
    assert not flags.is_enabled(F, {"tenant": "other", "attributes": {"region": "us"}})


def test_numeric_attribute_values():
    flags = flags_with({"attributes": {"tier": [1, 2]}})
    assert flags.is_enabled(F, {"attributes": {"tier": 2}})
    assert not flags.is_enabled(F, {"attributes": {"tier": 3}})


def test_include_tenant_bypasses_rollout_and_constraints():
    flags = flags_with({"tenants": ["acme"], "attributes": {"region": "eu"}, "rollout": 0})
    assert flags.is_enabled(F, {"tenant": "acme"})
    assert not flags.is_enabled(F, {"tenant": "other", "key": "k", "attributes": {"region": "eu"}})


def test_rollout_is_sticky_per_key_and_matches_the_bucket():
    flags = flags_with({"rollout": 30})
    for i in range(300):
        key = f"client-{i}"
        expected = rollout_bucket(F, key) <= 30
        assert flags.is_enabled(F, {"key": key}) is expected
        assert flags.is_enabled(F, {"key": key, "tenant": "t"}) is expected  # sticky
    share = sum(flags.is_enabled(F, {"key": f"c{i}"}) for i in range(10000)) / 10000
    assert 0.27 < share < 0.33


def test_rollout_without_a_sticky_id_is_off():
    flags = flags_with({"rollout": 100})
    assert not flags.is_enabled(F)
    assert not flags.is_enabled(F, {"tenant": "acme"})
    assert flags.is_enabled(F, {"key": "anyone"})


def test_rollout_0_and_100():
    keys = [f"k{i}" for i in range(500)]
    assert not any(flags_with("0%").is_enabled(F, {"key": k}) for k in keys)
    assert all(flags_with("100%").is_enabled(F, {"key": k}) for k in keys)


def test_rollout_grows_monotonically():
    """Raising a rollout only adds keys: nobody who had the feature loses it."""
    keys = [f"k{i}" for i in range(2000)]
    previous: set[str] = set()
    for pct in (5, 10, 25, 50, 75, 100):
        flags = flags_with(f"{pct}%")
        now = {k for k in keys if flags.is_enabled(F, {"key": k})}
        assert previous <= now
        previous = now


def test_rollout_by_tenant_and_by_attribute():
    by_tenant = flags_with({"rollout": 50, "stickiness": "tenant", "group": "g"})
    for t in ("a", "b", "c", "d", "e", "f"):
        expected = rollout_bucket("g", t) <= 50
        assert by_tenant.is_enabled(F, {"tenant": t, "key": "x"}) is expected
        assert by_tenant.is_enabled(F, {"tenant": t, "key": "y"}) is expected
    by_attr = flags_with({"rollout": 50, "stickiness": "org", "group": "g"})
    assert by_attr.is_enabled(F, {"attributes": {"org": 7}}) is (rollout_bucket("g", "7") <= 50)
    assert not by_attr.is_enabled(F, {"key": "k"})


def test_disabled_rule_is_a_kill_switch():
    flags = flags_with({"enabled": False, "tenants": ["acme"]})
    assert not flags.is_enabled(F, {"tenant": "acme"})


def test_context_is_validated_when_a_rule_reads_it():
    flags = flags_with({"tenants": ["acme"]})
    with pytest.raises(InvalidArgumentError, match="tenat"):
        flags.is_enabled(F, {"tenat": "acme"})
    with pytest.raises(InvalidTypeError, match="mapping"):
        flags.is_enabled(F, "acme")
    with pytest.raises(InvalidTypeError, match="attributes"):
        flags.is_enabled(F, {"attributes": ["region"]})
    with pytest.raises(InvalidTypeError, match="'key' must be a str"):
        flags.is_enabled(F, {"key": 42})


@pytest.mark.parametrize(
    ("rule", "match"),
    [
        ({"rollot": 5}, "did you mean 'rollout'"),
        ({"rollout": 101}, "outside 0..100"),
        ({"rollout": "x%"}, "whole percentage"),
        ({"rollout": True}, "whole percentage"),
        ({"enabled": "yes"}, "enabled must be true or false"),
        ({"tenants": [1, 2]}, "list of strings"),
        ({"attributes": {"region": []}}, "non-empty list"),
        ({"attributes": {"region": {"a": 1}}}, "scalar"),
        ({"attributes": ["region"]}, "table"),
        ({"group": ""}, "group"),
        ({"stickiness": 3}, "stickiness"),
    ],
)
def test_bad_rules_name_the_source(rule, match):
    with pytest.raises(FlagConfigError, match=match) as info:
        flags_with(rule)
    assert "override" in str(info.value)
    assert F in str(info.value)


def test_rule_from_mapping_and_str():
    rule = TargetingRule.from_mapping({"tenants": ["acme"], "rollout": "10%"})
    assert rule.rollout == 10
    assert rule.tenants == frozenset({"acme"})
    assert "rollout 10% by key" in str(rule) and "tenants=acme" in str(rule)
    assert FeatureFlags({F: rule}).is_enabled(F, {"tenant": "acme"})


@given(
    st.lists(st.text(min_size=1, max_size=8), max_size=5),
    st.lists(st.text(min_size=1, max_size=8), max_size=5),
    st.text(min_size=1, max_size=8),
    st.integers(0, 100),
    st.text(max_size=8),
)
def test_rule_properties(included, excluded, tenant, pct, key):
    """Exclusion always wins; inclusion (not excluded) always enables; otherwise the bucket."""
    flags = flags_with({"tenants": included, "exclude_tenants": excluded, "rollout": pct})
    got = flags.is_enabled(F, {"tenant": tenant, "key": key})
    if tenant in excluded:
        assert got is False
    elif tenant in included:
        assert got is True
    else:
        assert got is (rollout_bucket(F, key) <= pct)


def test_any_mapping_is_a_context():
    from types import MappingProxyType

    flags = flags_with({"tenants": ["acme"], "attributes": {"region": "eu"}})
    ctx = MappingProxyType({"tenant": "x", "attributes": MappingProxyType({"region": "eu"})})
    assert flags.is_enabled(F, ctx)
    assert flags.is_enabled(F, MappingProxyType({"tenant": "acme"}))
    with pytest.raises(InvalidArgumentError):
        flags.is_enabled(F, MappingProxyType({"tenants": "acme"}))
