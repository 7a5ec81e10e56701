"""Test configuration shared by proofs/ and tests/.

hypothesis profiles: ``ci`` (default: few examples, fast enough for a 2-core machine) and
``thorough`` (many examples; run with ``HYPOTHESIS_PROFILE=thorough pytest proofs``).
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "thorough",
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
