"""registry_core.auth: its public names resolve, and importing it stays light (no redis,
httpx, joserfc or pysaml2 until one is used)."""

from __future__ import annotations

import subprocess
import sys

import registry_core.auth as auth


def test_every_public_name_resolves() -> None:
    assert sorted(set(auth.__all__)) == sorted(auth.__all__)
    for name in auth.__all__:
        assert getattr(auth, name) is not None, name


def test_rate_limit_and_sign_in_helpers_are_public() -> None:
    from registry_core.auth import _oidc, _ratelimit

    for name in (
        "Plan",
        "DEFAULT_PLANS",
        "LimitResult",
        "Limit",
        "RateLimiter",
        "MemoryRateLimiter",
        "RedisRateLimiter",
        "TieredLimiter",
        "gcra",
        "rate_limit_headers",
    ):
        assert name in auth.__all__ and getattr(auth, name) is getattr(_ratelimit, name)
    assert auth.safe_next_path is _oidc.safe_next_path


def test_import_is_light() -> None:
    heavy = ("redis", "httpx", "joserfc", "authlib", "saml2", "casbin", "hypercorn")
    code = (
        "import sys, registry_core.auth; "
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
