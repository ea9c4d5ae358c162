"""The ACL users `account-reset redis-acl` prints, loaded into a real Redis: the worker runs as
its user, the producer can push commands but read nothing, the auditor can read the result
stream only.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from client import AccountResetClient, ClientSettings
from client.raw_message import raw_protocol2_message, task_id_of
from tests.support.messages import own_sessions_reset
from tests.support.probes import CLI
from tests.support.seeding import Seeder
from tests.support.services import PrivateRedis
from tests.support.waiting import poll_until
from tests.support.workers import WorkerProcess, worker_env

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
        raw = own_sessions_reset(second.accountid, queue)
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


def test_finding_7_waiting_needs_the_auditors_rights_and_says_so(
    acl_redis: PrivateRedis, database_url: str
) -> None:
    """Finding 7: `client.wait` as the producer ACL user failed with a NoPermissionError
    traceback. It now says, in one line, to read events as the auditor; with
    ACCOUNT_RESET_EVENTS_URL as the auditor user the same client waits and gets its event."""
    from schemas import CommandOutcome
    from schemas.events import EVENT_FIELD
    from tests.support.ids import unique

    env = worker_env(redis_url=acl_redis.url, database_url=database_url)
    load_acl_users(acl_redis, env)
    queue, stream = env["ACCOUNT_RESET_QUEUE"], env["ACCOUNT_RESET_EVENTS_STREAM"]
    as_producer = ClientSettings(
        broker_url=url_for(acl_redis, "producer"), queue=queue, events_stream=stream
    )
    with AccountResetClient(as_producer) as client:
        command_id = client.reset_session_key(unique("acct"))
        with pytest.raises(PermissionError, match="as the auditor user"):
            client.wait(command_id, timeout_s=5)
    outcome = CommandOutcome.success(
        command_id=command_id, command="reset-session-key", appid="test-app", accountid="a"
    )
    redis.Redis.from_url(acl_redis.url).xadd(stream, {EVENT_FIELD: outcome.model_dump_json()})
    waiting = as_producer.model_copy(update={"events_url": url_for(acl_redis, "auditor")})
    with AccountResetClient(waiting) as client:
        client.reset_session_key(unique("acct"), command_id=command_id)
        assert client.wait(command_id, timeout_s=30).event_id == outcome.event_id


def test_the_acl_file_shuts_the_default_user_out_and_stores_no_password(tmp_path: Path) -> None:
    """What compose loads (`redis-server --aclfile`): `redis-acl --acl-file` writes the three
    users with their passwords' SHA-256 (no password in the file), and the default user may PING
    and nothing else (finding 5: compose ran Redis open)."""
    from tests.support.workers import worker_env
    from worker.dev.processes import free_port

    passwords = {role: f"acl-file-pw-{role}" for role in ("producer", "worker", "auditor")}
    env = worker_env(redis_url="redis://127.0.0.1:1/0", database_url="sqlite:///unused.db")
    env |= {f"ACCOUNT_RESET_ACL_{role.upper()}_PASSWORD": pw for role, pw in passwords.items()}
    written = subprocess.run(
        [CLI, "redis-acl", "--acl-file"], env=env, capture_output=True, text=True, check=True,
        timeout=60,
    ).stdout  # fmt: skip
    assert not any(pw in written for pw in passwords.values())
    acl_path = tmp_path / "users.acl"
    acl_path.write_text(written)
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--aclfile", str(acl_path), "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        anonymous = redis.Redis(port=port)

        def answering() -> bool:
            try:
                return bool(anonymous.ping())
            except redis.ConnectionError:
                return False  # still starting

        poll_until(answering, DEADLINE_S, "the ACL redis-server answering")
        assert denied(lambda: anonymous.lrange(env["ACCOUNT_RESET_QUEUE"], 0, -1))
        assert denied(lambda: anonymous.lpush(env["ACCOUNT_RESET_QUEUE"], "x"))
        producer = redis.Redis(port=port, username="account-reset-producer",
                               password=passwords["producer"])  # fmt: skip
        assert producer.lpush(env["ACCOUNT_RESET_QUEUE"], "x") == 1
        assert denied(lambda: producer.lrange(env["ACCOUNT_RESET_QUEUE"], 0, -1))
        worker = redis.Redis(port=port, username="account-reset-worker",
                             password=passwords["worker"])  # fmt: skip
        assert worker.lrange(env["ACCOUNT_RESET_QUEUE"], 0, -1) == [b"x"]
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port, username="account-reset-worker", password="wrong").ping()
    finally:
        server.terminate()
        server.wait(timeout=DEADLINE_S)


def test_the_acl_file_needs_every_password() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACCOUNT_RESET")}
    refused = subprocess.run(
        [CLI, "redis-acl", "--acl-file"], env=env, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2
    assert "ACCOUNT_RESET_ACL_PRODUCER_PASSWORD" in refused.stderr
    assert "Traceback" not in refused.stderr
