from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "pacer", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("pacer")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def redis() -> Iterator[Any]:
    """A real redis-server on a free loopback port for the module's tests (``tests.servers.RedisServer``)."""
    from .servers import redis_server

    with redis_server() as server:
        yield server
