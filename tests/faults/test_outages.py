"""The database stopped, and Redis restarted, mid-stream: nothing lost, nothing doubled.

Both servers are the test's own (tests/faults/services.py), so stopping them disturbs no one.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from tests.faults.harness import CommandStream
from tests.support.seeding import Seeder
from tests.support.services import PrivatePostgres, PrivateRedis
from tests.support.workers import WorkerProcess, worker_env
from worker.security.hashing import Hasher

COMMANDS = 400
# How long each outage lasts: the fault itself, not a wait for something to happen.
OUTAGE_S = 5.0


def test_the_database_stopped_mid_stream_loses_and_doubles_nothing(
    redis_url: str,
    private_postgres: PrivatePostgres,
    private_database_url: str,
    hasher: Hasher,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    database_url = private_database_url
    seeder = Seeder(database_url, hasher)
    env = worker_env(
        redis_url=redis_url,
        database_url=database_url,
        ACCOUNT_RESET_MAX_RETRIES="10",
        ACCOUNT_RESET_RETRY_BACKOFF_MAX_S="4",
        ACCOUNT_RESET_VISIBILITY_TIMEOUT_S="30",
    )
    worker = WorkerProcess(env=env, log_path=tmp_path / "worker.log").start()
    commands = CommandStream.plan(seeder, worker, accounts=40, count=COMMANDS)
    seeder.engine.dispose()  # its connections would not survive the stop either
    try:
        commands.push(redis_client)
        commands.wait_for_progress(redis_client, COMMANDS // 4)
        private_postgres.stop("fast")
        worker.wait_for_log(r"transient fault OperationalError, retrying")
        time.sleep(OUTAGE_S)
        private_postgres.start()
        retries = len(worker.log().split("retrying")) - 1
        commands.verify(seeder, redis_client, f"PostgreSQL stopped {OUTAGE_S:.0f}s")
    finally:
        worker.stop()
        seeder.engine.dispose()
        commands.delete(redis_client)
    print(f"retries logged during the outage: {retries}")
    assert "dead-lettered" not in worker.log()


@pytest.mark.parametrize("how", ["shutdown", "sigkill"])
def test_redis_restarted_mid_stream_loses_nothing(
    how: str, postgres_url: str, hasher: Hasher, tmp_path: Path
) -> None:
    """Broker, events and dead letters on a Redis with the append-only file, fsync always."""
    seeder = Seeder(postgres_url, hasher)
    with PrivateRedis() as broker:
        env = worker_env(
            redis_url=broker.url,
            database_url=postgres_url,
            ACCOUNT_RESET_VISIBILITY_TIMEOUT_S="10",
            ACCOUNT_RESET_RETRY_BACKOFF_MAX_S="4",
            ACCOUNT_RESET_MAX_RETRIES="10",
            ACCOUNT_RESET_RESTORE_INTERVAL_S="1",
        )
        worker = WorkerProcess(env=env, log_path=tmp_path / "worker.log").start()
        commands = CommandStream.plan(seeder, worker, accounts=40, count=COMMANDS)
        client = redis.Redis.from_url(broker.url)
        try:
            commands.push(client)
            commands.wait_for_progress(client, COMMANDS // 4)
            broker.kill() if how == "sigkill" else broker.stop()
            time.sleep(OUTAGE_S)
            broker.start()
            commands.verify(seeder, client, f"Redis {how} and restart")
        finally:
            worker.stop()
            seeder.engine.dispose()
