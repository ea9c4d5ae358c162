"""Issue 13, finding 5, in a real worker: a read-only database is named in the log, in the dead
letter and by the health probe (the faults themselves: tests/integration/test_database_faults.py).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import redis

from client.raw_message import task_id_of
from tests.support.messages import own_sessions_reset
from tests.support.probes import CLI, health
from tests.support.seeding import Seeder
from tests.support.workers import WorkerProcess, worker_env
from worker.db.faults import READ_ONLY
from worker.db.migrate import upgrade
from worker.security.hashing import Hasher

DEADLINE_S = 60.0


def test_finding_5_logs_dead_letters_and_the_probe_name_a_read_only_database(
    redis_url: str, redis_client: redis.Redis, hasher: Hasher, tmp_path: Path
) -> None:
    """Finding 5: the log and the dead letter said only `InternalError`, and the probe
    "healthy". A worker on a SQLite file opened read-only (mode=ro, what a read-only mount
    gives), one retry: the log says "retrying (database is read-only)", the dead letter's
    cause says it, and `account-reset health` says "unhealthy: database is read-only"."""
    path = tmp_path / "accounts.db"
    upgrade(f"sqlite:///{path}")
    seeder = Seeder(f"sqlite:///{path}", hasher)
    accountid = seeder.account().accountid
    seeder.engine.dispose()
    env = worker_env(
        redis_url=redis_url,
        database_url=f"sqlite:///file:{path}?mode=ro&uri=true",
        ACCOUNT_RESET_MAX_RETRIES="1",
        ACCOUNT_RESET_RETRY_BACKOFF_MAX_S="1",
    )
    queue, letters_key = env["ACCOUNT_RESET_QUEUE"], env["ACCOUNT_RESET_DEAD_LETTERS_KEY"]
    message = own_sessions_reset(accountid, queue)
    worker = WorkerProcess(env=env, log_path=tmp_path / "worker.log").start()
    try:
        redis_client.lpush(queue, message)
        command_id = task_id_of(message)
        assert worker.outcomes(redis_client, {command_id})[command_id].code == "internal-error"
        probe = health(env)
        listed = subprocess.run(
            [CLI, "failed", "list", "--json"], env=env, capture_output=True, text=True,
            timeout=DEADLINE_S, check=True,
        )  # fmt: skip
    finally:
        worker.stop()
        redis_client.delete(letters_key, env["ACCOUNT_RESET_EVENTS_STREAM"])
    [letter] = [json.loads(line) for line in listed.stdout.splitlines()]
    log = worker.log()
    print(f"\ndead letter: {letter['detail']} ({letter['cause']}); probe: {probe.stderr.strip()}")
    assert (letter["reason"], letter["detail"]) == ("retries-exhausted", "OperationalError")
    assert letter["cause"] == READ_ONLY
    assert "transient fault OperationalError, retrying (database is read-only)" in log
    assert "transient fault OperationalError, retries exhausted (database is read-only)" in log
    assert (probe.returncode, probe.stderr.strip()) == (1, "unhealthy: database is read-only")
