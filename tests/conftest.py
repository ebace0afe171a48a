"""Shared test configuration: hypothesis profiles and small data helpers.

``HYPOTHESIS_PROFILE`` picks a profile: ``default`` (quick, local), ``ci`` (more examples,
no deadline: sanitizer builds are slow) and ``expensive`` (long fuzzing runs by hand).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("default", max_examples=100, deadline=None)
settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "expensive", max_examples=5000, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
