"""Hypothesis profiles: CI fuzzes with a fixed budget and a fixed seed (reproducible),
``STRANGLER_FUZZ=N`` runs a longer, randomised search of N examples per property:

    STRANGLER_FUZZ=20000 .venv/bin/python -m pytest tests/unit/stomp/test_properties.py
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,  # the same examples every run: a CI failure reproduces locally
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("STRANGLER_FUZZ", "0") or 0) or 10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile("fuzz" if os.environ.get("STRANGLER_FUZZ") else "ci")
