"""The ACL users `account-reset redis-acl` prints, loaded into a real Redis: the worker runs as
its user, the producer can push commands but read nothing, the auditor can read the result
stream only.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from client import AccountResetClient, ClientSettings
from tests.conftest import Seeder
from tests.faults.services import PrivateRedis
from tests.support import WorkerProcess, raw_protocol2_message, task_id_of, worker_env

CLI = str(Path(sys.executable).parent / "account-reset")
DEADLINE_S = 60.0


def url_for(server: PrivateRedis, user: str) -> str:
    return server.url.replace("redis://", f"redis://account-reset-{user}:pw-{user}@")


@pytest.fixture
def acl_redis() -> Iterator[PrivateRedis]:
    with PrivateRedis() as server:
        yield server


def load_acl_users(server: PrivateRedis, env: dict[str, str]) -> list[str]:
    printed = subprocess.run(
        [CLI, "redis-acl"], env=env, capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    admin = redis.Redis.from_url(server.url)
    for line in printed:
        words = line.split()
        assert words[:2] == ["ACL", "SETUSER"]
        role = words[2].removeprefix("account-reset-")
        admin.execute_command(*words, f">pw-{role}")  # type: ignore[no-untyped-call]
    return printed


def denied(action: Callable[[], Any]) -> bool:
    try:
        action()
    except redis.exceptions.NoPermissionError:
        return True
    return False


def test_the_producer_pushes_but_reads_nothing_and_the_worker_runs_as_its_user(
    acl_redis: PrivateRedis, database_url: str, seeder: Seeder, tmp_path: Path
) -> None:
    env = worker_env(redis_url=url_for(acl_redis, "worker"), database_url=database_url)
    env["ACCOUNT_RESET_CACHE_URL"] = acl_redis.url  # the dashboard's cache is not the broker's
    queue, stream = env["ACCOUNT_RESET_QUEUE"], env["ACCOUNT_RESET_EVENTS_STREAM"]
    letters, attempts = env["ACCOUNT_RESET_DEAD_LETTERS_KEY"], "account-reset:code-attempts:x"
    printed = load_acl_users(acl_redis, env)
    worker = WorkerProcess(env=env, log_path=tmp_path / "worker.log").start()
    producer = redis.Redis.from_url(url_for(acl_redis, "producer"))
    auditor = redis.Redis.from_url(url_for(acl_redis, "auditor"))
    admin = redis.Redis.from_url(acl_redis.url)
    try:
        first, second = seeder.account(), seeder.account()
        client = AccountResetClient(
            ClientSettings(broker_url=url_for(acl_redis, "producer"), queue=queue)
        )
        by_client = client.reset_session_key(first.accountid)
        client.close()
        raw = raw_protocol2_message(
            "reset-session-key",
            {"accountid": second.accountid, "requester_accountid": second.accountid},
            queue,
        )
        producer.lpush(queue, raw)
        found = worker.outcomes(auditor, {by_client, task_id_of(raw)}, DEADLINE_S)
        poison = raw_protocol2_message("no-such-task", {}, queue)
        producer.lpush(queue, poison)
        worker.wait_for_log("dead-lettered task no-such-task", DEADLINE_S)

        refused = {
            "producer reads the queue": denied(lambda: producer.lrange(queue, 0, -1)),
            "producer reads the stream": denied(lambda: producer.xrange(stream)),
            "producer reads the dead letters": denied(lambda: producer.xrange(letters)),
            "producer reads attempt counts": denied(lambda: producer.get(attempts)),
            "producer pushes elsewhere": denied(lambda: producer.lpush("other-queue", "x")),
            "producer deletes the queue": denied(lambda: producer.delete(queue)),
            "producer publishes events": denied(lambda: producer.publish("celeryev", "x")),
            "auditor reads the dead letters": denied(lambda: auditor.xrange(letters)),
            "auditor pushes commands": denied(lambda: auditor.lpush(queue, raw)),
            "auditor writes the stream": denied(lambda: auditor.xadd(stream, {"a": "b"})),
        }
        worker_denials = [
            entry for entry in admin.acl_log() if entry.get("username") == "account-reset-worker"
        ]
    finally:
        worker.stop()
    print(
        f"\nACL users: {len(printed)}; refused as expected: {sum(refused.values())}/{len(refused)}"
    )
    assert {found[i].status for i in found} == {"success"}
    assert seeder.load(first.accountid).session_key_number == 2
    assert refused == dict.fromkeys(refused, True)
    assert worker_denials == []
    assert len(auditor.xrange(stream) or []) == 2
