"""Issue 15, target 5: a worker's main process and two pool processes in ≤ 150 MB (PSS).

Before: about 195 MB, each pool process loading its runtime's modules (the database driver,
the dialect, prometheus-client) on its own after the fork and copying the pages the garbage
collector wrote to. The main process now loads them and freezes the collector's objects just
before its pool forks (worker/app.py), so the pool shares them.
"""

from __future__ import annotations

from pathlib import Path

import redis

from bench.processes import _kb
from client.events import wait_for_outcomes
from client.raw_message import raw_protocol2_message, task_id_of
from tests.support.seeding import Seeder
from tests.support.workers import worker_env
from worker.dev.processes import WorkerProcess
from worker.security.hashing import Hasher

DEADLINE_S = 60.0
COMMANDS = 50
MAX_PSS_MB = 150


def test_issue_15_main_and_two_pool_processes_stay_within_150_mb(
    redis_url: str, postgres_url: str, hasher: Hasher, redis_client: redis.Redis, tmp_path: Path
) -> None:
    seeder = Seeder(postgres_url, hasher)
    env = worker_env(redis_url=redis_url, database_url=postgres_url)
    queue, stream = env["ACCOUNT_RESET_QUEUE"], env["ACCOUNT_RESET_EVENTS_STREAM"]
    worker = WorkerProcess(env=env, log_path=tmp_path / "worker.log")
    worker.start("--concurrency=2").wait_until_ready()
    try:
        users = [seeder.account() for _ in range(COMMANDS)]
        commands = [
            raw_protocol2_message(
                "reset-session-key",
                {"accountid": u.accountid, "requester_accountid": u.accountid},
                queue,
            )
            for u in users
        ]
        redis_client.lpush(queue, *commands)
        done = wait_for_outcomes(
            redis_client, stream, {task_id_of(c) for c in commands}, timeout_s=DEADLINE_S
        )
        assert len(done) == COMMANDS
        pids = worker.pids()
        assert len(pids) == 3
        pss_mb = sum(_kb(pid, "Pss:") for pid in pids) / 1024
    finally:
        worker.stop()
        redis_client.delete(queue, stream)
        seeder.engine.dispose()
    assert pss_mb <= MAX_PSS_MB, f"{pss_mb:.0f} MB"
