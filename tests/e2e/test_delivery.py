"""Delivery guarantees with real worker nodes: duplicates, races, scale-out and a deploy.

Two `celery worker` processes with their own node names share one queue, on PostgreSQL and on
MariaDB.
"""

from __future__ import annotations

import random
import re
import signal
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from client.events import stream_outcomes
from client.raw_message import raw_protocol2_message, task_id_of
from schemas import CommandOutcome
from tests.support.celery_events import TaskEventRecorder
from tests.support.databases import wait_until_waiting
from tests.support.ids import unique
from tests.support.seeding import Seeder
from tests.support.waiting import poll_until
from tests.support.workers import WorkerProcess, worker_env
from worker.db.engine import create_db_engine
from worker.security.hashing import Hasher

DEADLINE_S = 60.0


@pytest.fixture(scope="module")
def server_seeder(server_database_url: str, hasher: Hasher) -> Iterator[Seeder]:
    seeder = Seeder(server_database_url, hasher)
    yield seeder
    seeder.engine.dispose()


@pytest.fixture(scope="module")
def two_nodes(
    redis_url: str, server_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[WorkerProcess]]:
    """Two nodes, one pool process each, so two messages in flight are on different nodes."""
    env = worker_env(
        redis_url=redis_url,
        database_url=server_database_url,
        ACCOUNT_RESET_WORKER_CONCURRENCY="1",
        ACCOUNT_RESET_DB_LOCK_TIMEOUT_S="30",
    )
    logs = tmp_path_factory.mktemp("nodes")
    nodes = [WorkerProcess(env=env, log_path=logs / f"node{i}.log") for i in range(2)]
    with TaskEventRecorder(redis_url) as recorder:
        for node in nodes:
            node.start()
        for name in [node.nodename for node in nodes]:
            recorder.wait_for(partial(is_from, name), DEADLINE_S)
    yield nodes
    for node in nodes:
        node.stop()
    client = redis.Redis.from_url(redis_url)
    client.delete(env["ACCOUNT_RESET_QUEUE"], env["ACCOUNT_RESET_EVENTS_STREAM"])
    client.close()


def is_from(nodename: str, event: dict[str, Any]) -> bool:
    return event.get("hostname") == nodename


def send(client: redis.Redis, node: WorkerProcess, task: str, **kwargs: str) -> str:
    """Push a raw protocol-2 message; returns its task id."""
    message = raw_protocol2_message(task, kwargs, node.env["ACCOUNT_RESET_QUEUE"])
    client.lpush(node.env["ACCOUNT_RESET_QUEUE"], message)
    return task_id_of(message)


def sent_behind_row_lock(
    seeder: Seeder, accountid: str, send_all: Callable[[], list[str]]
) -> list[str]:
    """Send while holding the account's row lock, until every command waits on it; then let
    them run one after the other, each on its own node."""
    engine = create_db_engine(seeder.engine.url.render_as_string(hide_password=False))
    try:
        with engine.connect() as holder:
            transaction = holder.begin()
            holder.execute(
                sa.text("SELECT 1 FROM accounts WHERE accountid = :id FOR UPDATE"),
                {"id": accountid},
            )
            ids = send_all()
            wait_until_waiting(engine, len(ids))
            transaction.commit()
    finally:
        engine.dispose()
    return ids


def processed_by(node: WorkerProcess, command_id: str) -> bool:
    return re.search(rf"processed command_id={re.escape(command_id)} ", node.log()) is not None


def events_of(client: redis.Redis, node: WorkerProcess) -> list[CommandOutcome]:
    return stream_outcomes(client, node.env["ACCOUNT_RESET_EVENTS_STREAM"])


def test_two_password_resets_racing_with_one_code_on_two_nodes(
    two_nodes: list[WorkerProcess], server_seeder: Seeder, redis_client: redis.Redis
) -> None:
    user = server_seeder.account()
    code = server_seeder.code(user)
    passwords = [unique("pw-a")[:20], unique("pw-b")[:20]]
    ids = sent_behind_row_lock(server_seeder, user.accountid, lambda: [
        send(redis_client, two_nodes[0], "reset-account-password",
             username=user.username, **{"new-password": pw, "secret-code": code})
        for pw in passwords
    ])  # fmt: skip
    found = two_nodes[0].outcomes(redis_client, set(ids))

    results = {task_id: found[task_id].code or "success" for task_id in ids}
    print(f"\nrace: {results}")
    assert sorted(results.values()) == ["invalid-reset-code", "success"]
    winner = passwords[[results[i] for i in ids].index("success")]
    account = server_seeder.load(user.accountid)
    assert server_seeder.hasher.password_matches(winner, account.password_hash or "")
    assert account.session_key_number == 2
    assert server_seeder.codes_of(user.accountid) == 0
    assert [processed_by(node, i) for node in two_nodes for i in ids].count(True) == 2
    assert all(any(processed_by(node, i) for i in ids) for node in two_nodes)


def test_wrong_codes_from_two_nodes_are_counted_once_each(
    two_nodes: list[WorkerProcess], server_seeder: Seeder, redis_client: redis.Redis
) -> None:
    """Twelve guesses at one account, spread over two nodes: five are checked, the rest refused
    unchecked, and after them even the right code is refused."""
    user = server_seeder.account()
    code = server_seeder.code(user)
    guesses = [
        send(redis_client, two_nodes[0], "reset-account-password", username=user.username,
             **{"new-password": "guessed-password", "secret-code": f"guess-{i}"})
        for i in range(12)
    ]  # fmt: skip
    found = two_nodes[0].outcomes(redis_client, set(guesses))
    right = send(redis_client, two_nodes[0], "reset-account-password", username=user.username,
                 **{"new-password": "guessed-password", "secret-code": code})  # fmt: skip
    refused = two_nodes[0].outcomes(redis_client, {right})[right]

    codes = Counter(str(found[i].code) for i in guesses)
    by_node = [sum(processed_by(node, i) for i in guesses) for node in two_nodes]
    print(f"\nguesses 12, codes {dict(codes)}, per node {by_node}, then the right code: "
          f"{refused.code}")  # fmt: skip
    assert codes == Counter({"invalid-reset-code": 5, "too-many-attempts": 7})
    assert refused.code == "too-many-attempts"
    assert all(by_node)
    assert server_seeder.codes_of(user.accountid) == 1


def test_two_commands_for_one_account_on_two_nodes_both_apply(
    two_nodes: list[WorkerProcess], server_seeder: Seeder, redis_client: redis.Redis
) -> None:
    user = server_seeder.account()
    ids = sent_behind_row_lock(server_seeder, user.accountid, lambda: [
        send(redis_client, two_nodes[0], "reset-session-key",
             accountid=user.accountid, requester_accountid=user.accountid)
        for _ in range(2)
    ])  # fmt: skip
    found = two_nodes[0].outcomes(redis_client, set(ids))

    assert {found[i].status for i in ids} == {"success"}
    assert server_seeder.load(user.accountid).session_key_number == 3
    assert all(any(processed_by(node, i) for i in ids) for node in two_nodes)


def test_duplicate_deliveries_and_producer_resends_apply_once(
    two_nodes: list[WorkerProcess], server_seeder: Seeder, redis_client: redis.Redis
) -> None:
    user = server_seeder.account()
    queue = two_nodes[0].env["ACCOUNT_RESET_QUEUE"]
    kwargs = {"accountid": user.accountid, "requester_accountid": user.accountid}
    # The same message delivered twice (a redelivery), and one command_id sent three times.
    duplicate = raw_protocol2_message("reset-session-key", kwargs, queue)
    command_id = unique("resent")
    resends = [
        raw_protocol2_message("reset-session-key", {**kwargs, "command_id": command_id}, queue)
        for _ in range(3)
    ]
    for message in [duplicate, duplicate, *resends]:
        redis_client.lpush(queue, message)

    def all_events() -> list[CommandOutcome]:
        ids = {task_id_of(duplicate), command_id}
        return [e for e in events_of(redis_client, two_nodes[0]) if e.command_id in ids]

    poll_until(lambda: len(all_events()) == 5, DEADLINE_S, "five events")
    events = all_events()
    per_command = Counter((e.command_id, e.event_id) for e in events)
    print(f"\nduplicates: sent 5 deliveries of 2 commands, events {dict(per_command)}")
    assert sorted(per_command.values()) == [2, 3]  # one event_id per command, repeated
    assert server_seeder.load(user.accountid).session_key_number == 3


def test_two_nodes_share_one_queue_and_apply_each_command_once(
    two_nodes: list[WorkerProcess], server_seeder: Seeder, redis_client: redis.Redis
) -> None:
    accounts = [server_seeder.account() for _ in range(20)]
    plan = [random.choice(accounts) for _ in range(200)]  # not security
    ids = [
        send(redis_client, two_nodes[0], "reset-session-key",
             accountid=a.accountid, requester_accountid=a.accountid)
        for a in plan
    ]  # fmt: skip
    found = two_nodes[0].outcomes(redis_client, set(ids), timeout_s=120)

    per_node = [sum(processed_by(node, i) for i in ids) for node in two_nodes]
    events = [e for e in events_of(redis_client, two_nodes[0]) if e.command_id in set(ids)]
    print(f"\nscale-out: sent {len(ids)}, events {len(events)}, per node {per_node}")
    assert {o.status for o in found.values()} == {"success"}
    assert len({e.event_id for e in events}) == len(ids)
    assert all(count > 0 for count in per_node)
    assert sum(per_node) == len(ids)
    for account, count in Counter(a.accountid for a in plan).items():
        assert server_seeder.load(account).session_key_number == 1 + count


def test_a_deploy_sigterm_mid_stream_loses_and_repeats_nothing(
    redis_url: str,
    server_database_url: str,
    server_seeder: Seeder,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    """Running tasks finish and are acknowledged, reserved ones go back at once. The
    visibility timeout is set far beyond the deadline, so nothing may rely on redelivery."""
    env = worker_env(
        redis_url=redis_url, database_url=server_database_url,
        ACCOUNT_RESET_VISIBILITY_TIMEOUT_S="600", ACCOUNT_RESET_PREFETCH_MULTIPLIER="4",
    )  # fmt: skip
    accounts = [server_seeder.account() for _ in range(10)]
    plan = [accounts[i % len(accounts)] for i in range(300)]
    worker = WorkerProcess(env=env, log_path=tmp_path / "worker.log").start()
    try:
        ids = [
            send(redis_client, worker, "reset-session-key",
                 accountid=a.accountid, requester_accountid=a.accountid)
            for a in plan
        ]  # fmt: skip
        poll_until(lambda: len(events_of(redis_client, worker)) >= 50, DEADLINE_S, "50 events")
        worker.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        assert worker.process.wait(timeout=DEADLINE_S) == 0  # type: ignore[union-attr]
        before_restart = len(events_of(redis_client, worker))
        worker.start()
        worker.outcomes(redis_client, set(ids), timeout_s=DEADLINE_S)
    finally:
        worker.stop()
        redis_client.delete(env["ACCOUNT_RESET_QUEUE"])
    events = events_of(redis_client, worker)
    repeats = len(events) - len({e.command_id for e in events})
    print(f"\ndeploy: sent {len(ids)}, done before SIGTERM {before_restart}, "
          f"events {len(events)}, repeated {repeats}")  # fmt: skip
    assert 0 < before_restart < len(ids)
    # Without the drain, every task that finished during the shutdown was unacknowledged and
    # repeated, after a 30 s stall. A result read just as the drain starts can still slip
    # through: its event is repeated with the same event_id, never its effect.
    assert repeats <= int(env["ACCOUNT_RESET_WORKER_CONCURRENCY"])
    assert {e.command_id for e in events} == set(ids)
    for account, count in Counter(a.accountid for a in plan).items():
        assert server_seeder.load(account).session_key_number == 1 + count
    redis_client.delete(env["ACCOUNT_RESET_EVENTS_STREAM"])
