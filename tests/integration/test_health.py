"""`account-reset health` fails where no worker has noted that it consumes."""

from __future__ import annotations

from tests.support.probes import health
from tests.support.workers import worker_env


def test_health_fails_without_a_worker(redis_url: str, database_url: str) -> None:
    env = worker_env(redis_url=redis_url, database_url=database_url)
    result = health(env)
    assert result.returncode == 1
    assert "no note" in result.stderr
