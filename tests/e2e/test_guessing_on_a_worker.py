"""Guessing stopped in real workers: the per-source limit through the client and the worker's
metrics, and the start check that refuses a Redis that may evict the attempt counts (against a
redis-server of the test's own). The rules themselves: tests/integration/test_guessing.py.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import redis

from client import AccountResetClient, ClientSettings
from tests.support.databases import migrated_sqlite
from tests.support.guessing import source_limited_env, wrong_codes_from_one_device
from tests.support.ids import unique
from tests.support.probes import Answer, health, health_until, metrics
from tests.support.seeding import Seeder
from tests.support.services import PrivateRedis
from tests.support.workers import WorkerProcess, worker_env
from worker.security.hashing import Hasher

DEADLINE_S = 60.0


def test_a_worker_limits_sources_by_its_settings_and_never_shows_one(
    redis_url: str, redis_client: redis.Redis, hasher: Hasher, tmp_path: Path
) -> None:
    """Through the client and a real worker: MAX_SOURCE_ATTEMPTS=3, six wrong codes over three
    accounts from one device: 3 checked, 3 too-many-attempts, on the worker's metric too; the
    device id is in no log line (DEBUG), no key and no event."""
    database_url = migrated_sqlite(tmp_path)
    seeder = Seeder(database_url, hasher)
    prefix = unique("code-attempts")
    env = source_limited_env(redis_url=redis_url, database_url=database_url, prefix=prefix)
    stream = env["ACCOUNT_RESET_EVENTS_STREAM"]
    source = unique("device-id")
    worker = WorkerProcess(env=env, log_path=tmp_path / "worker.log").start()
    client = AccountResetClient(
        ClientSettings(broker_url=redis_url, queue=env["ACCOUNT_RESET_QUEUE"], events_stream=stream)
    )
    try:
        sent = wrong_codes_from_one_device(client, seeder, source=source)
        found = worker.outcomes(redis_client, set(sent), DEADLINE_S)
        scraped = metrics(env["ACCOUNT_RESET_METRICS_PORT"])
        keys = [key.decode() for key in redis_client.scan_iter(f"{prefix}:*", count=1000)]
        events = str(redis_client.xrange(stream))
    finally:
        client.close()
        worker.stop()
        for key in redis_client.scan_iter(f"{prefix}:*", count=1000):
            redis_client.delete(key)
        redis_client.delete(stream, env["ACCOUNT_RESET_QUEUE"])
        seeder.engine.dispose()

    codes = Counter(str(found[command_id].code) for command_id in sent)
    print(f"\nsix wrong codes from one device, MAX_SOURCE_ATTEMPTS=3: {dict(codes)}")
    assert codes == Counter({"invalid-reset-code": 3, "too-many-attempts": 3})
    assert 'account_reset_guesses_refused_total{limit="source"} 3.0' in scraped
    assert "account_reset_guesses_checked_total 3.0" in scraped
    assert any(":source:" in key for key in keys)
    assert source not in str(keys) + events + worker.log()


def health_once_noted(env: dict[str, str]) -> Answer:
    """The probe's answer once the worker has noted that it consumes (within seconds)."""
    return health_until(
        env, lambda answer: not (answer.returncode and "no note" in answer.stderr), "a note"
    )


def test_finding_2_a_redis_that_may_evict_the_counts_is_refused_at_start(
    hasher: Hasher, tmp_path: Path
) -> None:
    """Finding 2: under maxmemory-policy volatile-lru a queue flood evicted the counts and
    guessing resumed inside the window. A worker whose Redis has maxmemory 64mb and volatile-lru
    exits at start with one line saying so; with noeviction it serves, `account-reset health`
    says the counts cannot be evicted, and turns unhealthy once the policy is changed live."""
    database_url = migrated_sqlite(tmp_path)
    seeder = Seeder(database_url, hasher)
    with PrivateRedis() as private:
        admin = redis.Redis.from_url(private.url)
        admin.config_set("maxmemory", "64mb")
        admin.config_set("maxmemory-policy", "volatile-lru")
        env = worker_env(redis_url=private.url, database_url=database_url)
        refused = WorkerProcess(env=env, log_path=tmp_path / "refused.log").start()
        assert refused.process is not None
        exit_code = refused.process.wait(timeout=DEADLINE_S)
        refusal = [line for line in refused.log().splitlines() if "refusing to start" in line]

        admin.config_set("maxmemory-policy", "noeviction")
        serving = WorkerProcess(env=env, log_path=tmp_path / "serving.log").start()
        try:
            user = seeder.account()
            client = AccountResetClient(
                ClientSettings(
                    broker_url=private.url,
                    queue=env["ACCOUNT_RESET_QUEUE"],
                    events_stream=env["ACCOUNT_RESET_EVENTS_STREAM"],
                )
            )
            served = client.wait(client.reset_session_key(user.accountid), timeout_s=DEADLINE_S)
            client.close()
            healthy = health_once_noted(env)
            admin.config_set("maxmemory-policy", "allkeys-lru")
            unhealthy = health(env)
        finally:
            serving.stop()
            seeder.engine.dispose()
            admin.close()

    print(f"\nvolatile-lru: exit {exit_code}, {refusal}\nnoeviction: {served.status}, health:"
          f" {healthy.stdout.strip()}\nallkeys-lru live: {unhealthy.stderr.strip()}")  # fmt: skip
    assert exit_code != 0
    assert refusal == [
        "refusing to start: the Redis holding the attempt counts (ACCOUNT_RESET_EVENTS_URL, else"
        " _BROKER_URL) has maxmemory 67108864 bytes with maxmemory-policy volatile-lru, so it may"
        " evict the counts and let guessing resume: set maxmemory-policy noeviction there (or"
        " maxmemory 0)"
    ]
    assert served.status == "success"
    assert healthy.returncode == 0
    assert "attempt counts cannot be evicted (maxmemory 67108864, maxmemory-policy noeviction)" in (
        healthy.stdout
    )
    assert unhealthy.returncode == 1
    assert "maxmemory-policy allkeys-lru" in unhealthy.stderr
