from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "pacer", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("pacer")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
