"""Flower against a real worker (task events on): it shows the commands, and no secret."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import Seeder
from tests.support import WorkerProcess, raw_protocol2_message, task_id_of, unique
from worker.dev.embedded_redis import free_port

DEADLINE_S = 60.0


@pytest.fixture
def flower(running_worker: WorkerProcess, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {**running_worker.env, "FLOWER_UNAUTHENTICATED_API": "true"}
    log = (tmp_path / "flower.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker", "flower", f"--port={port}",
         "--address=127.0.0.1"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=DEADLINE_S)
        log.close()


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:  # a local URL
        return json.loads(response.read())


def tasks_shown(flower: str, task_ids: set[str], timeout_s: float = DEADLINE_S) -> dict[str, Any]:
    """Flower's view of these tasks, once it has seen every one finish."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            shown = get(f"{flower}/api/tasks")
        except OSError:
            shown = {}  # Flower still starting
        if all(shown.get(i, {}).get("state") == "SUCCESS" for i in task_ids):
            return {i: shown[i] for i in task_ids}
        if time.monotonic() > deadline:
            raise TimeoutError(f"Flower did not show {task_ids}")
        time.sleep(0.25)  # polling Flower's API; the deadline bounds it


def watching(flower: str, worker: WorkerProcess, client: redis.Redis) -> None:
    """Until Flower shows a command's events: before that, it would miss the test's."""
    deadline = time.monotonic() + DEADLINE_S
    queue = worker.env["ACCOUNT_RESET_QUEUE"]
    while time.monotonic() < deadline:
        probe = raw_protocol2_message("reset-session-key", {"accountid": "acct_probe"}, queue)
        client.lpush(queue, probe)
        try:
            tasks_shown(flower, {task_id_of(probe)}, timeout_s=5)
        except TimeoutError:
            continue
        return
    raise TimeoutError("Flower never showed a command")


def test_flower_shows_each_command_with_its_arguments_redacted(
    flower: str, running_worker: WorkerProcess, seeder: Seeder, redis_client: redis.Redis
) -> None:
    queue = running_worker.env["ACCOUNT_RESET_QUEUE"]
    user = seeder.account()
    code = seeder.code(user)
    password = unique("FLOWER-SECRET")[:40]
    watching(flower, running_worker, redis_client)
    messages = [
        raw_protocol2_message(
            "reset-account-password",
            {"username": user.username, "secret-code": code, "new-password": password}, queue,
        ),
        raw_protocol2_message(
            "reset-session-key",
            {"accountid": user.accountid, "requester_accountid": user.accountid}, queue,
        ),
    ]  # fmt: skip
    redis_client.lpush(queue, *messages)
    running_worker.outcomes(redis_client, {task_id_of(m) for m in messages})

    shown = tasks_shown(flower, {task_id_of(m) for m in messages})
    details = [get(f"{flower}/api/task/info/{task_id}") for task_id in shown]

    everything = json.dumps([shown, details])
    print(f"\nFlower shows {len(shown)} tasks; kwargs: {[t['kwargs'] for t in shown.values()]}")
    for secret in (password, code, user.username):
        assert secret not in everything
    assert {t["name"] for t in shown.values()} == {"reset-account-password", "reset-session-key"}
    assert user.accountid in everything  # identifiers are shown
