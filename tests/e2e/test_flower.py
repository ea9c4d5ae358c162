"""Flower against a real worker (task events on): it shows the commands, and no secret."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from client.raw_message import raw_protocol2_message, task_id_of
from tests.support.flower import start_flower
from tests.support.ids import unique
from tests.support.messages import own_sessions_reset
from tests.support.probes import http_until
from tests.support.seeding import Seeder
from tests.support.waiting import poll_until
from tests.support.workers import WorkerProcess

DEADLINE_S = 60.0
# The states Flower gives a task once its last event is in.
FINISHED = ("SUCCESS", "FAILURE")


@pytest.fixture
def flower(running_worker: WorkerProcess, tmp_path: Path) -> Iterator[str]:
    process, url = start_flower(running_worker.env, tmp_path / "flower.log")
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=DEADLINE_S)


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:  # a local URL
        return json.loads(response.read())


def tasks_shown(flower: str, task_ids: set[str], timeout_s: float = DEADLINE_S) -> dict[str, Any]:
    """Flower's view of these tasks, once it has seen every one finish."""

    def finished(status: int, body: bytes) -> bool:
        shown = json.loads(body) if status == 200 else {}
        return all(shown.get(i, {}).get("state") in FINISHED for i in task_ids)

    _, body = http_until(f"{flower}/api/tasks", finished, f"Flower showing {task_ids}", timeout_s)
    shown = json.loads(body)
    return {i: shown[i] for i in task_ids}


def watching(flower: str, worker: WorkerProcess, client: redis.Redis) -> None:
    """Until Flower shows a command's events: before that, it would miss the test's."""
    queue = worker.env["ACCOUNT_RESET_QUEUE"]

    def shows_a_probe() -> bool:
        probe = raw_protocol2_message("reset-session-key", {"accountid": "acct_probe"}, queue)
        client.lpush(queue, probe)
        try:
            tasks_shown(flower, {task_id_of(probe)}, timeout_s=5)
        except TimeoutError:
            return False
        return True

    poll_until(shows_a_probe, DEADLINE_S, "Flower showing a command", interval_s=0)


def failures_counted(flower: str, worker: WorkerProcess) -> int:
    """Flower's Failed counter for the worker (its workers page)."""
    shown = get(f"{flower}/workers?json=1")["data"]
    return sum(w.get("task-failed", 0) for w in shown if w["hostname"] == worker.nodename)


def test_flower_shows_each_command_redacted_and_a_refused_one_failed_with_its_code(
    flower: str, running_worker: WorkerProcess, seeder: Seeder, redis_client: redis.Redis
) -> None:
    """Identifiers shown, secrets never. Finding 6 (issue 16): Flower showed a refused command
    (`invalid-reset-code`) as a green SUCCESS with the result 'failure' and no code, and its
    Failed counter stayed at 0; it is a FAILURE now, with its code, and counted."""
    queue = running_worker.env["ACCOUNT_RESET_QUEUE"]
    user = seeder.account()
    code = seeder.code(user)
    password, wrong_code = unique("FLOWER-SECRET")[:40], unique("WRONG-CODE")
    watching(flower, running_worker, redis_client)
    failed_before = failures_counted(flower, running_worker)
    refused, applied = (
        raw_protocol2_message(
            "reset-account-password",
            {"username": user.username, "secret-code": secret, "new-password": password}, queue,
        )
        for secret in (wrong_code, code)
    )  # fmt: skip
    sessions = own_sessions_reset(user.accountid, queue)
    messages = [refused, applied, sessions]
    redis_client.lpush(queue, *messages)
    running_worker.outcomes(redis_client, {task_id_of(m) for m in messages})

    shown = tasks_shown(flower, {task_id_of(m) for m in messages})
    details = [get(f"{flower}/api/task/info/{task_id}") for task_id in shown]

    everything = json.dumps([shown, details])
    print(f"\nFlower shows {len(shown)} tasks; kwargs: {[t['kwargs'] for t in shown.values()]}")
    for secret in (password, code, wrong_code, user.username):
        assert secret not in everything
    assert {t["name"] for t in shown.values()} == {"reset-account-password", "reset-session-key"}
    assert user.accountid in everything  # identifiers are shown
    states = {i: (t["state"], t["exception"]) for i, t in shown.items()}
    assert states == {
        task_id_of(refused): ("FAILURE", "CommandRefused('invalid-reset-code')"),
        task_id_of(applied): ("SUCCESS", None),
        task_id_of(sessions): ("SUCCESS", None),
    }
    assert failures_counted(flower, running_worker) > failed_before
