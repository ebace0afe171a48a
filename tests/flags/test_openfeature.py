"""The OpenFeature provider, exercised through the OpenFeature SDK's client."""

from __future__ import annotations

import asyncio

import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

from registry_core.flags import (
    FeatureFlags,
    RegistryCoreProvider,
    rollout_bucket,
    set_default_flags,
)


@pytest.fixture
def client():
    flags = FeatureFlags(
        {
            "QUIC_TRANSPORT": True,
            "BROTLI_COMPRESSION": False,
            "INCREMENTAL_CACHE": {"tenants": ["acme"], "attributes": {"region": "eu"}},
            "CONNECTION_COALESCE": {"rollout": 50, "exclude_tenants": ["legacy"]},
        }
    )
    api.set_provider(RegistryCoreProvider(flags), domain="registry-core-tests")
    yield api.get_client("registry-core-tests")
    api.clear_providers()


def test_boolean_evaluation(client):
    assert client.get_boolean_value("QUIC_TRANSPORT", False) is True
    assert client.get_boolean_value("BROTLI_COMPRESSION", True) is False
    details = client.get_boolean_details("QUIC_TRANSPORT", False)
    assert details.reason == Reason.STATIC
    assert details.variant == "on"
    assert details.flag_metadata == {"stage": "experimental", "source": "override"}
    assert details.error_code is None


def test_context_mapping_tenant_and_attributes(client):
    acme = EvaluationContext(attributes={"tenant": "acme"})
    assert client.get_boolean_value("INCREMENTAL_CACHE", False, acme) is True
    eu = EvaluationContext(attributes={"tenant": "other", "region": "eu"})
    assert client.get_boolean_value("INCREMENTAL_CACHE", False, eu) is True
    us = EvaluationContext(attributes={"tenant": "other", "region": "us"})
    assert client.get_boolean_value("INCREMENTAL_CACHE", True, us) is False
    details = client.get_boolean_details("INCREMENTAL_CACHE", False, acme)
    assert details.reason == Reason.TARGETING_MATCH


def test_targeting_key_is_the_rollout_key(client):
    for i in range(100):
        key = f"client-{i}"
        ctx = EvaluationContext(targeting_key=key)
        expected = rollout_bucket("CONNECTION_COALESCE", key) <= 50
        assert client.get_boolean_value("CONNECTION_COALESCE", not expected, ctx) is expected
    legacy = EvaluationContext(targeting_key="client-1", attributes={"tenant": "legacy"})
    assert client.get_boolean_value("CONNECTION_COALESCE", True, legacy) is False


def test_global_evaluation_context_is_merged(client):
    api.set_evaluation_context(EvaluationContext(attributes={"tenant": "acme"}))
    try:
        assert client.get_boolean_value("INCREMENTAL_CACHE", False) is True
    finally:
        api.clear_evaluation_context()


def test_unknown_flag_reports_flag_not_found_with_the_closest_name(client):
    details = client.get_boolean_details("QUIC_TRANSPROT", True)
    assert details.value is True  # the caller's default, as the OpenFeature spec requires
    assert details.error_code == ErrorCode.FLAG_NOT_FOUND
    assert "did you mean 'QUIC_TRANSPORT'" in details.error_message


def test_non_boolean_types_are_a_type_mismatch(client):
    details = client.get_string_details("QUIC_TRANSPORT", "x")
    assert details.value == "x"
    assert details.error_code == ErrorCode.TYPE_MISMATCH
    assert client.get_integer_details("QUIC_TRANSPORT", 3).error_code == ErrorCode.TYPE_MISMATCH


def test_bad_context_is_invalid_context(client):
    ctx = EvaluationContext(attributes={"tenant": 42})
    details = client.get_boolean_details("INCREMENTAL_CACHE", False, ctx)
    assert details.error_code == ErrorCode.INVALID_CONTEXT


def test_async_evaluation(client):
    async def main():
        return await client.get_boolean_value_async("QUIC_TRANSPORT", False)

    assert asyncio.run(main()) is True


def test_provider_without_flags_follows_default_flags():
    set_default_flags(FeatureFlags({"PGO_BUILDS": True}))
    try:
        api.set_provider(RegistryCoreProvider(), domain="rc-default")
        client = api.get_client("rc-default")
        assert client.get_boolean_value("PGO_BUILDS", False) is True
        set_default_flags(FeatureFlags({"PGO_BUILDS": False}))
        assert client.get_boolean_value("PGO_BUILDS", True) is False
        assert api.get_provider_metadata("rc-default").name == "registry-core"
    finally:
        set_default_flags(None)
        api.clear_providers()
