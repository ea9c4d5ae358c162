"""`account-reset health`: passes while the worker consumes, fails once it stops consuming
though it is still running and connected (the state Celery has been known to get into after a
Redis reconnect), made here with Celery's own remote control: cancel_consumer.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery

from tests.support import WorkerProcess, remove_health_files, worker_env

CLI = str(Path(sys.executable).parent / "account-reset")
DEADLINE_S = 60.0
MAX_AGE_S = "4"


def health(worker: WorkerProcess) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "health"], env=worker.env, capture_output=True, text=True, timeout=DEADLINE_S
    )


def wait_for_health(worker: WorkerProcess, code: int) -> subprocess.CompletedProcess[str]:
    deadline = time.monotonic() + DEADLINE_S
    while (result := health(worker)).returncode != code:
        if time.monotonic() > deadline:
            raise TimeoutError(f"health never exited {code}: {result.stderr}")
        time.sleep(0.5)  # each check runs the real probe; the deadline bounds the wait
    return result


@pytest.fixture
def worker(redis_url: str, database_url: str, tmp_path: Path) -> Iterator[WorkerProcess]:
    env = worker_env(
        redis_url=redis_url, database_url=database_url, ACCOUNT_RESET_HEALTH_MAX_AGE_S=MAX_AGE_S
    )
    running = WorkerProcess(env=env, log_path=tmp_path / "worker.log").start()
    yield running
    running.stop()
    remove_health_files(env)


def test_health_fails_when_the_worker_stops_consuming_though_still_connected(
    worker: WorkerProcess, redis_url: str
) -> None:
    queue = worker.env["ACCOUNT_RESET_QUEUE"]
    control = Celery(broker=redis_url, set_as_current=False)
    try:
        healthy = wait_for_health(worker, 0)
        control.control.cancel_consumer(queue, destination=[worker.nodename], reply=True)
        unhealthy = wait_for_health(worker, 1)
        still_connected = control.control.ping(destination=[worker.nodename], timeout=5)
        control.control.add_consumer(queue, destination=[worker.nodename], reply=True)
        recovered = wait_for_health(worker, 0)
    finally:
        control.close()

    print(f"\n{healthy.stdout.strip()} / {unhealthy.stderr.strip()} / {recovered.stdout.strip()}")
    assert healthy.stdout.startswith("healthy")
    assert unhealthy.stderr.startswith("unhealthy: last consumed")
    assert still_connected, "the worker should still answer: connected, not consuming"


def test_health_fails_without_a_worker(redis_url: str, database_url: str) -> None:
    env = worker_env(redis_url=redis_url, database_url=database_url)
    result = subprocess.run(
        [CLI, "health"], env=env, capture_output=True, text=True, timeout=DEADLINE_S
    )
    assert result.returncode == 1
    assert "no note" in result.stderr
