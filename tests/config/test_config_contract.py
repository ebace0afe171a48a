"""What config shares with auth and the index without importing them: role and action names,
the tenant-name rule, resource strings and project-name normalization; and config stays out of
``import registry_core``."""

from __future__ import annotations

import subprocess
import sys

from _config_strategies import configs
from hypothesis import HealthCheck, given, settings

from registry_core.config import ACTIONS, ROLES
from registry_core.config._parse import NAME, canonical_project


def test_roles_and_actions_are_auths():
    from registry_core import auth

    assert auth.ROLES == ROLES
    assert auth.ACTIONS == ACTIONS


def test_tenant_name_rule_is_auths():
    from registry_core.auth._model import TENANT_NAME

    assert TENANT_NAME.pattern + r"\Z" == NAME.pattern


def test_project_normalization_is_the_indexes():
    from registry_core.index._names import normalize

    for name in ("Foo_Bar", "foo.bar", "FOO--bar", "a", "A-_.b"):
        assert canonical_project(name) == normalize(name)


@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_every_role_grant_is_a_valid_auth_resource(config):
    from registry_core.auth import Resource

    for tenant in config.tenants.values():
        for grant in tenant.roles:
            assert str(Resource.parse(tenant.name, grant.resource)) == grant.resource
        for grants in tenant.group_roles.values():
            for text in grants:
                role, _, resource = text.partition("@")
                assert role in ROLES
                assert str(Resource.parse(tenant.name, resource)) == resource


def test_import_registry_core_does_not_import_config():
    code = "import sys, registry_core; print('registry_core.config' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_config_imports_no_other_component():
    code = (
        "import sys, registry_core; before = set(sys.modules); "
        "import registry_core.config as c; "
        "c.parse(\"version = 2\\n[storage]\\ndirectory = 'd'\\n[tenants.a]\\n\"); "
        "print(sorted(m for m in set(sys.modules) - before if m.startswith('registry_core.') "
        "and not m.startswith(('registry_core.config', 'registry_core.errors', "
        "'registry_core._util'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
