"""A message is always in its queue, its reserved list or the unacknowledged set.

The worker takes a message with BLMOVE into `<queue>:reserved` and records it as
unacknowledged in the same MULTI that removes it from there (worker/broker/transport.py). These
tests leave a message in the reserved list the way a worker killed in that instant would, and
push queue entries that are not kombu messages at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from client.raw_message import raw_protocol2_message, task_id_of
from tests.support.ids import unique
from tests.support.seeding import Seeder
from tests.support.workers import WorkerProcess, worker_env
from worker.broker.transport import reserved_key
from worker.streams.dead_letters import DeadLetterBox, Reason


@pytest.fixture
def quick_restore_worker(
    redis_url: str, database_url: str, tmp_path: Path, redis_client: redis.Redis
) -> Iterator[WorkerProcess]:
    env = worker_env(
        redis_url=redis_url,
        database_url=database_url,
        ACCOUNT_RESET_VISIBILITY_TIMEOUT_S="5",
        ACCOUNT_RESET_RESTORE_INTERVAL_S="1",
        ACCOUNT_RESET_RETRY_BACKOFF_MAX_S="2",
    )
    worker = WorkerProcess(env=env, log_path=tmp_path / "worker.log").start()
    yield worker
    worker.stop()
    queue = env["ACCOUNT_RESET_QUEUE"]
    redis_client.delete(
        queue,
        reserved_key(queue),
        reserved_key(queue) + ":seen",
        env["ACCOUNT_RESET_EVENTS_STREAM"],
        env["ACCOUNT_RESET_DEAD_LETTERS_KEY"],
    )


def session_key_command(queue: str, accountid: str) -> str:
    payload = {"accountid": accountid, "requester_accountid": accountid}
    return raw_protocol2_message("reset-session-key", payload, queue)


def test_a_message_taken_and_never_recorded_is_put_back_and_applied_once(
    quick_restore_worker: WorkerProcess, seeder: Seeder, redis_client: redis.Redis
) -> None:
    queue = quick_restore_worker.env["ACCOUNT_RESET_QUEUE"]
    user = seeder.account()
    orphan = session_key_command(queue, user.accountid)
    # What a worker killed between BLMOVE and its unacknowledged record leaves behind.
    redis_client.lpush(reserved_key(queue), orphan)

    found = quick_restore_worker.outcomes(redis_client, {task_id_of(orphan)})

    assert found[task_id_of(orphan)].status == "success"
    assert seeder.load(user.accountid).session_key_number == 2
    assert redis_client.llen(reserved_key(queue)) == 0
    assert "put back on" in quick_restore_worker.wait_for_log("put back on")


def test_queue_entries_that_are_not_kombu_messages_are_dead_lettered(
    quick_restore_worker: WorkerProcess, seeder: Seeder, redis_client: redis.Redis
) -> None:
    env = quick_restore_worker.env
    queue, letters_key = env["ACCOUNT_RESET_QUEUE"], env["ACCOUNT_RESET_DEAD_LETTERS_KEY"]
    secret = unique("distinctive-secret")
    not_kombu: list[str | bytes] = [
        f"not json {secret}",
        json.dumps({"body": secret, "headers": {"task": "reset-account-password"}}),
        json.dumps({"properties": {"delivery_tag": secret}, "body": secret}),
        json.dumps([secret]),
        b"\xff\xfe" + secret.encode(),
    ]
    user = seeder.account()
    good = session_key_command(queue, user.accountid)
    redis_client.rpush(queue, *not_kombu, good)  # taken from the right: oldest first

    found = quick_restore_worker.outcomes(redis_client, {task_id_of(good)})

    assert found[task_id_of(good)].status == "success"
    letters = DeadLetterBox(redis_client, letters_key, maxlen=None, sealer=None).all()
    print(f"\nnot kombu messages sent {len(not_kombu)}, dead letters {len(letters)}")
    assert [letter.reason for letter in letters] == [Reason.UNDECODABLE] * len(not_kombu)
    assert redis_client.llen(reserved_key(queue)) == 0
    assert secret not in str(redis_client.xrange(letters_key))
    assert secret not in quick_restore_worker.log()
